//! The per-row outputs and the logit scale of the class-sharded cross-entropy: every
//! random problem is split into P = 1..4 class shards (uneven, some empty), the two
//! collectives are done by hand (the max-location reduction of `MaxLoc::max`, then
//! the SUM), and `lse`, `entropy`, `argmax`, `z`, the loss and the gradient must
//! equal those of the single-process `cross_entropy_stats_into` on the whole rows,
//! with every option combined (weights, `ignore_index`, label smoothing, probability
//! targets, z-loss, soft-capping, logit scale, denominator, reductions, K-dim).
mod common;

use common::{Rng, Tol};
use xent::{
    cross_entropy_shard_grad_into, cross_entropy_shard_row_stats, cross_entropy_stats_into,
    linear_cross_entropy_shard_grad_into, linear_cross_entropy_shard_row_stats,
    linear_cross_entropy_stats_into, ClassShard, CrossEntropyOptions, Error, Float, GradOut,
    LinearCrossEntropyOptions, LinearGradOut, LinearInputs, MaxLoc, Reduction, RowOutputs,
    ShardStats, Targets,
};

/// The per-row outputs and loss of one call, in f64.
#[derive(Debug, Default)]
struct Outs {
    loss: Vec<f64>,
    lse: Vec<f64>,
    entropy: Vec<f64>,
    argmax: Vec<i64>,
    z: Vec<f64>,
}

/// Runs `f` with row-output buffers for `rows` rows and `loss_len` losses.
fn outs<A: Float>(
    rows: usize,
    loss_len: usize,
    f: impl FnOnce(&mut [A], RowOutputs<'_, A>),
) -> Outs {
    let (mut loss, mut lse, mut ent, mut z) = (
        vec![A::ZERO; loss_len],
        vec![A::ZERO; rows],
        vec![A::ZERO; rows],
        vec![A::ZERO; rows],
    );
    let mut argmax = vec![-1i64; rows];
    f(
        &mut loss,
        RowOutputs::new()
            .lse(&mut lse)
            .entropy(&mut ent)
            .argmax(&mut argmax)
            .z(&mut z),
    );
    let w = |v: Vec<A>| v.into_iter().map(|a| a.to_f64()).collect();
    Outs {
        loss: w(loss),
        lse: w(lse),
        entropy: w(ent),
        argmax,
        z: w(z),
    }
}

/// The two all-reduces of a group of class shards, by hand.
fn all_reduce(group: &mut [ShardStats]) {
    let rows = group[0].rows();
    for r in 0..rows {
        let m = group
            .iter_mut()
            .fold(MaxLoc::EMPTY, |a, s| a.max(s.max_loc_mut()[r]));
        group.iter_mut().for_each(|s| s.max_loc_mut()[r] = m);
    }
    let len = group[0].sums_mut().len();
    assert_eq!(len, 5 * rows);
    let sums: Vec<f64> = (0..len)
        .map(|k| group.iter_mut().map(|s| s.sums_mut()[k]).sum())
        .collect();
    group
        .iter_mut()
        .for_each(|s| s.sums_mut().copy_from_slice(&sums));
}

fn compare(tol: Tol, what: &str, got: &Outs, want: &Outs) {
    tol.check_all(&format!("{what} loss"), &got.loss, &want.loss);
    tol.check_all(&format!("{what} lse"), &got.lse, &want.lse);
    tol.check_all(&format!("{what} entropy"), &got.entropy, &want.entropy);
    tol.check_all(&format!("{what} z"), &got.z, &want.z);
    assert_eq!(got.argmax, want.argmax, "{what} argmax");
}

/// `x[n, c0..c1, :]` of an `(N, C, inner)` array.
fn cols<T: Copy>(
    x: &[T],
    (n, c, inner): (usize, usize, usize),
    (c0, c1): (usize, usize),
) -> Vec<T> {
    let mut out = Vec::with_capacity(n * (c1 - c0) * inner);
    for r in 0..n {
        out.extend_from_slice(&x[(r * c + c0) * inner..(r * c + c1) * inner]);
    }
    out
}

/// Random class cuts into `p` shards of `c` classes (some may be empty).
fn cuts(rng: &mut Rng, c: usize, p: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..p - 1).map(|_| rng.below(c + 1)).collect();
    cuts.push(0);
    cuts.push(c);
    cuts.sort_unstable();
    cuts
}

fn random_opts<'a, A: Float>(
    rng: &mut Rng,
    weight: Option<&'a [A]>,
    probs: bool,
    c: usize,
) -> CrossEntropyOptions<'a, A> {
    let reduction = [Reduction::None, Reduction::Mean, Reduction::Sum][rng.below(3)];
    let mut o = CrossEntropyOptions::default()
        .label_smoothing([0.0, 0.0, 0.1][rng.below(3)])
        .z_loss([0.0, 1e-3, 0.5][rng.below(3)])
        .logit_scale([1.0, 0.5, 3.0][rng.below(3)])
        .reduction(reduction);
    if !probs && rng.below(4) == 0 {
        o = o.ignore_index(rng.below(c) as i64);
    }
    if let Some(cap) = [None, Some(5.0), Some(30.0)][rng.below(3)] {
        o = o.softcap(cap);
    }
    if let Some(w) = weight {
        o = o.weight(w);
    }
    if reduction == Reduction::Mean && rng.below(3) == 0 {
        o = o.denominator(7.0);
    }
    o
}

fn ce_case<A: Float + xent::Element<Acc = A>>(rng: &mut Rng, tol_of: fn(usize) -> Tol) {
    let c = [1, 2, 3, 17, 100, 257][rng.below(6)];
    let n = 1 + rng.below(6);
    let inner = if rng.below(4) == 0 {
        1 + rng.below(3)
    } else {
        1
    };
    let probs = rng.below(4) == 0;
    let shape: Vec<usize> = if inner > 1 {
        vec![n, c, inner]
    } else {
        vec![n, c]
    };
    let rows = n * inner;
    let mut xs: Vec<f64> = rng.logits(n * c * inner, 4.0);
    // Ties (argmax to the lowest index) and special values in some rows.
    if c > 2 && rng.below(2) == 0 {
        xs[1] = xs[0];
        xs[c - 1] = xs.iter().take(c).fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    }
    if rng.below(5) == 0 {
        let at = rng.below(xs.len());
        xs[at] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.below(3)];
    }
    let x: Vec<A> = xs.iter().map(|&v| A::from_f64(v)).collect();
    let weight: Vec<A> = (0..c).map(|_| A::from_f64(0.5 + rng.uniform())).collect();
    let weight = (rng.below(2) == 0).then_some(&weight[..]);
    let opts = random_opts(rng, weight, probs, c);
    let y: Vec<i64> = (0..rows)
        .map(|_| match rng.below(5) {
            0 => -100,
            _ => rng.below(c) as i64,
        })
        .collect();
    let y: Vec<i64> = y
        .into_iter()
        .map(|v| if v < 0 { opts.ignore_index } else { v })
        .collect();
    let p: Vec<A> = (0..n * c * inner)
        .map(|_| A::from_f64(rng.uniform()))
        .collect();
    let opts = if probs { opts.ignore_index(-100) } else { opts };
    fn target<'t, A: Float>(y: &'t [i64], t: Option<&'t [A]>) -> Targets<'t, A> {
        match t {
            Some(t) => Targets::Probabilities(t),
            None => Targets::Indices(y.into()),
        }
    }
    let loss_len = if opts.reduction == Reduction::None {
        rows
    } else {
        1
    };
    let mut want_grad = vec![A::ZERO; x.len()];
    let want = outs::<A>(rows, loss_len, |loss, ro| {
        let t = target(&y, probs.then_some(&p[..]));
        let g = Some(GradOut::new(&mut want_grad));
        cross_entropy_stats_into(&x, &shape, t, &opts, loss, g, ro).unwrap();
    });
    let tol = tol_of(c);
    for parts in 1..=4 {
        let cuts = cuts(rng, c, parts);
        let dims = (n, c, inner);
        let shards: Vec<(ClassShard, usize)> = cuts
            .windows(2)
            .map(|w| (ClassShard::new(w[0], c), w[1] - w[0]))
            .collect();
        let local_shape = |len: usize| {
            let mut s = shape.clone();
            s[1] = len;
            s
        };
        let mut stats: Vec<ShardStats> = shards
            .iter()
            .map(|&(sh, len)| {
                let xl = cols(&x, dims, (sh.offset, sh.offset + len));
                let pl = cols(&p, dims, (sh.offset, sh.offset + len));
                let t = target(&y, probs.then_some(&pl[..]));
                cross_entropy_shard_row_stats(&xl, &local_shape(len), t, &opts, sh).unwrap()
            })
            .collect();
        all_reduce(&mut stats);
        for (s, &(sh, len)) in stats.iter_mut().zip(&shards) {
            let counts = s.counts();
            let got = outs::<A>(rows, loss_len, |loss, ro| {
                s.finish_rows(counts, loss, ro).unwrap();
            });
            compare(tol, &format!("P={parts} shard {}", sh.offset), &got, &want);
            let xl = cols(&x, dims, (sh.offset, sh.offset + len));
            let pl = cols(&p, dims, (sh.offset, sh.offset + len));
            let mut g = vec![A::ZERO; xl.len()];
            let t = target(&y, probs.then_some(&pl[..]));
            let go = GradOut::new(&mut g);
            cross_entropy_shard_grad_into(&xl, &local_shape(len), t, &opts, sh, s, go).unwrap();
            let wg = cols(&want_grad, dims, (sh.offset, sh.offset + len));
            let (g, wg): (Vec<f64>, Vec<f64>) = g
                .iter()
                .zip(&wg)
                .map(|(a, b)| (a.to_f64(), b.to_f64()))
                .unzip();
            tol.check_all(&format!("P={parts} grad"), &g, &wg);
        }
    }
}

fn f32_tol(c: usize) -> Tol {
    let t = Tol::f32_rows(c);
    Tol {
        abs: 4.0 * t.abs,
        rel: 4.0 * t.rel,
    }
}

#[test]
fn sharded_row_outputs_equal_the_single_process_ones_f64() {
    let mut rng = Rng::new(0x5eed_0028);
    for _ in 0..300 {
        ce_case::<f64>(&mut rng, Tol::f64_rows);
    }
}

#[test]
fn sharded_row_outputs_equal_the_single_process_ones_f32() {
    let mut rng = Rng::new(0x5eed_0029);
    for _ in 0..300 {
        ce_case::<f32>(&mut rng, f32_tol);
    }
}

#[test]
fn sharded_linear_row_outputs_equal_the_single_process_ones() {
    let mut rng = Rng::new(0x5eed_0030);
    for _ in 0..60 {
        let (n, d, c) = (
            1 + rng.below(9),
            1 + rng.below(16),
            [1, 3, 17, 100][rng.below(4)],
        );
        let h: Vec<f64> = rng.logits(n * d, 1.0);
        let w: Vec<f64> = rng.logits(c * d, 1.0);
        let b: Vec<f64> = rng.logits(c, 1.0);
        let bias = rng.below(2) == 0;
        let y: Vec<i64> = (0..n)
            .map(|_| {
                if rng.below(5) == 0 {
                    -100
                } else {
                    rng.below(c) as i64
                }
            })
            .collect();
        let ce = random_opts::<f64>(&mut rng, None, false, c);
        let y: Vec<i64> = y
            .into_iter()
            .map(|v| if v < 0 { ce.ignore_index } else { v })
            .collect();
        let mut opts = LinearCrossEntropyOptions::default();
        opts.cross_entropy = ce;
        fn inputs<'a>(
            h: &'a [f64],
            d: usize,
            w: &'a [f64],
            b: Option<&'a [f64]>,
        ) -> LinearInputs<'a, f64> {
            let i = LinearInputs::new(h, [h.len() / d, d], w, [w.len() / d, d]);
            match b {
                Some(b) => i.linear_bias(b),
                None => i,
            }
        }
        let loss_len = if ce.reduction == Reduction::None {
            n
        } else {
            1
        };
        let mut dh = vec![0.0; n * d];
        let mut dw = vec![0.0; c * d];
        let want = outs::<f64>(n, loss_len, |loss, ro| {
            let g = LinearGradOut::new().hidden(&mut dh).linear_weight(&mut dw);
            let bb = bias.then_some(&b[..]);
            linear_cross_entropy_stats_into(
                inputs(&h, d, &w, bb),
                &y[..],
                &opts,
                loss,
                Some(g),
                ro,
            )
            .unwrap();
        });
        let tol = Tol::f64_rows(c);
        for parts in 1..=4 {
            let cuts = cuts(&mut rng, c, parts);
            let shards: Vec<(ClassShard, usize)> = cuts
                .windows(2)
                .map(|k| (ClassShard::new(k[0], c), k[1] - k[0]))
                .collect();
            let ws: Vec<Vec<f64>> = shards
                .iter()
                .map(|&(sh, len)| w[sh.offset * d..(sh.offset + len) * d].to_vec())
                .collect();
            let bs: Vec<Vec<f64>> = shards
                .iter()
                .map(|&(sh, len)| b[sh.offset..sh.offset + len].to_vec())
                .collect();
            let mut stats: Vec<ShardStats> = shards
                .iter()
                .enumerate()
                .map(|(i, &(sh, _))| {
                    let bb = bias.then_some(&bs[i][..]);
                    linear_cross_entropy_shard_row_stats(
                        inputs(&h, d, &ws[i], bb),
                        &y[..],
                        &opts,
                        sh,
                    )
                    .unwrap()
                })
                .collect();
            all_reduce(&mut stats);
            let mut dh_sum = vec![0.0; n * d];
            for (i, (s, &(sh, len))) in stats.iter_mut().zip(&shards).enumerate() {
                let counts = s.counts();
                let got = outs::<f64>(n, loss_len, |loss, ro| {
                    s.finish_rows(counts, loss, ro).unwrap();
                });
                compare(tol, &format!("linear P={parts}"), &got, &want);
                let (mut gh, mut gw) = (vec![0.0; n * d], vec![0.0; len * d]);
                let g = LinearGradOut::new().hidden(&mut gh).linear_weight(&mut gw);
                let bb = bias.then_some(&bs[i][..]);
                linear_cross_entropy_shard_grad_into(
                    inputs(&h, d, &ws[i], bb),
                    &y[..],
                    &opts,
                    sh,
                    s,
                    g,
                )
                .unwrap();
                dh_sum.iter_mut().zip(&gh).for_each(|(a, b)| *a += b);
                tol.check_all("linear dW", &gw, &dw[sh.offset * d..(sh.offset + len) * d]);
            }
            tol.check_all("linear dh", &dh_sum, &dh);
        }
    }
}

#[test]
fn row_outputs_need_row_statistics_and_the_max_location() {
    let x = [1.0f64, 2.0, 3.0];
    let opts = CrossEntropyOptions::default();
    let sh = ClassShard::full(3);
    let mut plain = xent::cross_entropy_shard_stats(&x, &[1, 3], &[0i64][..], &opts, sh).unwrap();
    // No outputs asked: finish_rows is finish.
    let (mut l1, mut l2) = ([0.0], [0.0]);
    let z1 = plain
        .finish_rows([1.0; 2], &mut l1, RowOutputs::new())
        .unwrap();
    let z2 = plain.finish([1.0; 2], &mut l2).unwrap();
    assert_eq!((l1, z1), (l2, z2));
    let mut lse = [0.0];
    let err = plain
        .finish_rows([1.0; 2], &mut [0.0], RowOutputs::new().lse(&mut lse))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "row outputs",
                ..
            }
        ),
        "{err}"
    );
    let mut rows = cross_entropy_shard_row_stats(&x, &[1, 3], &[0i64][..], &opts, sh).unwrap();
    rows.max_mut();
    let mut am = [0i64];
    let err = rows
        .finish_rows([1.0; 2], &mut [0.0], RowOutputs::new().argmax(&mut am))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { name: "argmax", .. }),
        "{err}"
    );
    let mut short = [0.0; 2];
    let err = rows
        .finish_rows([1.0; 2], &mut [0.0], RowOutputs::new().entropy(&mut short))
        .unwrap_err();
    assert!(matches!(err, Error::OutputLength { .. }), "{err}");
    // With the max location (P = 1: nothing to reduce), all outputs.
    rows.max_loc_mut();
    let mut loss = [0.0];
    rows.finish_rows(
        [1.0; 2],
        &mut loss,
        RowOutputs::new().argmax(&mut am).lse(&mut lse),
    )
    .unwrap();
    assert_eq!(am, [2]);
    let want = 3.0 + ((-2.0f64).exp() + (-1.0f64).exp() + 1.0).ln();
    assert!((lse[0] - want).abs() < 1e-15);
    assert!((loss[0] - (want - 1.0)).abs() < 1e-14);
}
