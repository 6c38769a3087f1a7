//! Cross-entropy split across class shards (vocab parallelism) and row groups (data
//! parallelism), run in one process: every random problem is split into 1..4 class
//! shards (uneven, some empty, some owning no target) and 1..3 row groups, the
//! collectives are done by hand (MAX, then SUM over the class shards; SUM of the
//! counts over the row groups), and the losses and gradients must equal the
//! single-process `cross_entropy` within 1e-6 (f32) and 1e-12 (f64), relative.
mod common;

use common::Rng;
use xent::{
    cross_entropy_into, cross_entropy_shard_grad_into, cross_entropy_shard_stats,
    linear_cross_entropy_shard_grad_into, linear_cross_entropy_shard_stats,
    linear_cross_entropy_with_grad, ClassShard, CrossEntropyOptions, Float, GradOut,
    LinearCrossEntropyOptions, LinearGradOut, LinearInputs, Reduction, ShardStats, Targets,
};

/// The relative tolerance of a type: 1e-6 for f32, 1e-12 for f64 (the bar).
fn rel_tol<T: Float>() -> f64 {
    if size_of::<T>() == 4 {
        1e-6
    } else {
        1e-12
    }
}

/// `|got − want| ≤ rel·scale`, NaN only where the other is NaN.
fn close(what: &str, got: f64, want: f64, rel: f64, scale: f64) {
    if want.is_nan() || got.is_nan() {
        assert!(
            want.is_nan() && got.is_nan(),
            "{what}: got {got}, want {want}"
        );
        return;
    }
    let bound = rel * scale.max(want.abs());
    assert!(
        (got - want).abs() <= bound,
        "{what}: got {got}, want {want}, |diff| {:e} > {bound:e}",
        (got - want).abs()
    );
}

/// [`close`] to the single-process value `want`, unless `got` is at least as close
/// as `want` to the exact value `truth` (the same inputs in f64): the f32
/// single-process kernels sum a K-dim row's classes one after the other in each
/// lane, and can be 1.6e-6 off where the sharded sums are not.
fn close3(what: &str, got: f64, want: f64, truth: f64, rel: f64, scale: f64) {
    if (got - truth).abs() <= (want - truth).abs() {
        return;
    }
    close(what, got, want, rel, scale);
}

/// One random problem and how it is split.
#[derive(Debug, Clone)]
struct Case {
    n: usize,
    c: usize,
    /// K-dim trailing size (`None`: `(N, C)`).
    inner: Option<usize>,
    /// A `(C,)` input.
    unbatched: bool,
    weight: bool,
    /// The share of ignored rows (1: all ignored).
    ignored: f64,
    /// `ignore_index` (−100, or a class).
    ignore_index: i64,
    eps: f64,
    probs: bool,
    z: f64,
    cap: Option<f64>,
    reduction: Reduction,
    /// Class cut points: shard `s` holds classes `cuts[s]..cuts[s + 1]`.
    cuts: Vec<usize>,
    /// Row groups (data-parallel ranks) over `N`.
    dp: usize,
    /// A non-unit upstream gradient.
    upstream: bool,
    /// All targets in the first class shard's classes (the others own none).
    targets_in_first: bool,
}

impl Case {
    fn random(rng: &mut Rng) -> Case {
        let unbatched = rng.below(8) == 0;
        let inner = (!unbatched && rng.below(4) == 0).then(|| 1 + rng.below(3));
        let c = [1, 2, 3, 5, 17, 64, 100, 257, 1000, 2500][rng.below(10)];
        let n = if unbatched { 1 } else { rng.below(9) };
        let probs = rng.below(4) == 0;
        let p = 1 + rng.below(4);
        let mut cuts: Vec<usize> = (0..p - 1).map(|_| rng.below(c + 1)).collect();
        cuts.push(0);
        cuts.push(c);
        cuts.sort_unstable();
        let ignored = [0.0, 0.0, 0.3, 1.0][rng.below(4)];
        Case {
            n,
            c,
            inner,
            unbatched,
            weight: rng.below(2) == 0,
            ignored: if probs { 0.0 } else { ignored },
            ignore_index: if !probs && rng.below(4) == 0 {
                rng.below(c) as i64
            } else {
                -100
            },
            eps: [0.0, 0.0, 0.1, 1.0][rng.below(4)],
            probs,
            z: [0.0, 0.0, 1e-4, 0.5][rng.below(4)],
            cap: [None, None, Some(5.0), Some(30.0)][rng.below(4)],
            reduction: [Reduction::None, Reduction::Mean, Reduction::Sum][rng.below(3)],
            cuts,
            dp: if unbatched { 1 } else { 1 + rng.below(3) },
            upstream: rng.below(2) == 0,
            targets_in_first: rng.below(6) == 0,
        }
    }

    fn shape(&self, classes: usize, n: usize) -> Vec<usize> {
        match (self.unbatched, self.inner) {
            (true, _) => vec![classes],
            (false, None) => vec![n, classes],
            (false, Some(d)) => vec![n, classes, d],
        }
    }

    fn inner(&self) -> usize {
        self.inner.unwrap_or(1)
    }
}

/// `x[n0..n1, c0..c1, :]` of an `(N, C, inner)` array.
fn slice<T: Copy>(
    x: &[T],
    c: usize,
    inner: usize,
    (n0, n1): (usize, usize),
    (c0, c1): (usize, usize),
) -> Vec<T> {
    let mut out = Vec::with_capacity((n1 - n0) * (c1 - c0) * inner);
    for n in n0..n1 {
        for k in c0..c1 {
            let at = (n * c + k) * inner;
            out.extend_from_slice(&x[at..at + inner]);
        }
    }
    out
}

/// The MAX all-reduce (NaN-ignoring, as MPI's) and the SUM all-reduce over a group's
/// class shards.
fn all_reduce(group: &mut [ShardStats]) {
    let rows = group[0].rows();
    let max: Vec<f64> = (0..rows)
        .map(|r| {
            group
                .iter_mut()
                .map(|s| s.max_mut()[r])
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    for s in group.iter_mut() {
        s.max_mut().copy_from_slice(&max);
    }
    let sums: Vec<f64> = (0..4 * rows)
        .map(|k| group.iter_mut().map(|s| s.sums_mut()[k]).sum())
        .collect();
    for s in group.iter_mut() {
        s.sums_mut().copy_from_slice(&sums);
    }
}

/// The class indices or the probabilities of a case.
fn pick<'a, T: Float>(probs: bool, t: &'a [i64], p: &'a [T]) -> Targets<'a, T> {
    if probs {
        Targets::Probabilities(p)
    } else {
        Targets::Indices(t.into())
    }
}

fn run_case<T: Float>(case: &Case, seed: u64) {
    let mut rng = Rng::new(seed);
    let (n, c, inner) = (case.n, case.c, case.inner());
    let shape = case.shape(c, n);
    let outer = if case.unbatched { 1 } else { n };
    let rows = outer * inner;
    let x: Vec<T> = rng
        .logits(outer * c * inner, 3.0)
        .into_iter()
        .map(T::from_f64)
        .collect();
    let weight: Vec<T> = (0..c)
        .map(|_| T::from_f64(0.1 + 2.0 * rng.uniform()))
        .collect();
    let first = (case.cuts[1] - case.cuts[0]).max(1).min(c);
    let idx: Vec<i64> = (0..rows)
        .map(|_| {
            if rng.uniform() < case.ignored {
                case.ignore_index
            } else if case.targets_in_first {
                (case.cuts[0] + rng.below(first)).min(c - 1) as i64
            } else {
                rng.below(c) as i64
            }
        })
        .collect();
    let probs: Vec<T> = (0..x.len()).map(|_| T::from_f64(rng.uniform())).collect();
    let loss_rows = if case.reduction == Reduction::None {
        rows
    } else {
        1
    };
    let upstream: Vec<T> = (0..loss_rows)
        .map(|_| {
            T::from_f64(if case.upstream {
                0.5 + rng.uniform()
            } else {
                1.0
            })
        })
        .collect();

    let mut opts = CrossEntropyOptions::<T>::default()
        .ignore_index(if case.probs { -100 } else { case.ignore_index })
        .label_smoothing(case.eps)
        .reduction(case.reduction)
        .z_loss(case.z);
    if case.weight {
        opts = opts.weight(&weight);
    }
    if let Some(cap) = case.cap {
        opts = opts.softcap(cap);
    }

    // The single-process reference.
    let mut want = vec![T::ZERO; loss_rows];
    let mut want_g = vec![T::ZERO; x.len()];
    let want_z = cross_entropy_into(
        &x,
        &shape,
        pick(case.probs, &idx, &probs),
        &opts,
        &mut want,
        Some(GradOut::new(&mut want_g).grad_output(&upstream)),
    )
    .unwrap();
    // The exact values: the same inputs in f64.
    let truth = {
        let x64: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
        let p64: Vec<f64> = probs.iter().map(|v| v.to_f64()).collect();
        let w64: Vec<f64> = weight.iter().map(|v| v.to_f64()).collect();
        let u64_: Vec<f64> = upstream.iter().map(|v| v.to_f64()).collect();
        let mut o = CrossEntropyOptions::<f64>::default()
            .ignore_index(opts.ignore_index)
            .label_smoothing(case.eps)
            .reduction(case.reduction)
            .z_loss(case.z);
        if case.weight {
            o = o.weight(&w64);
        }
        if let Some(cap) = case.cap {
            o = o.softcap(cap);
        }
        let mut l = vec![0.0; loss_rows];
        let mut g = vec![0.0; x.len()];
        let z = cross_entropy_into(
            &x64,
            &shape,
            pick(case.probs, &idx, &p64),
            &o,
            &mut l,
            Some(GradOut::new(&mut g).grad_output(&u64_)),
        )
        .unwrap();
        (l, g, z)
    };

    // Row groups over N, class shards over C.
    let groups: Vec<(usize, usize)> = (0..case.dp)
        .map(|k| (k * outer / case.dp, (k + 1) * outer / case.dp))
        .collect();
    let shards: Vec<(usize, usize)> = case.cuts.windows(2).map(|w| (w[0], w[1])).collect();
    let mut stats: Vec<Vec<ShardStats>> = groups
        .iter()
        .map(|&(n0, n1)| {
            let r = (n0 * inner, n1 * inner);
            shards
                .iter()
                .map(|&(c0, c1)| {
                    let xs = slice(&x, c, inner, (n0, n1), (c0, c1));
                    let ps = slice(&probs, c, inner, (n0, n1), (c0, c1));
                    let sh = case.shape(c1 - c0, n1 - n0);
                    cross_entropy_shard_stats(
                        &xs,
                        &sh,
                        pick(case.probs, &idx[r.0..r.1], &ps),
                        &opts,
                        ClassShard::new(c0, c),
                    )
                    .unwrap()
                })
                .collect()
        })
        .collect();
    for group in stats.iter_mut() {
        all_reduce(group);
    }
    let counts = stats.iter().fold([0.0; 2], |acc, g| {
        let k = g[0].counts();
        [acc[0] + k[0], acc[1] + k[1]]
    });

    let rel = rel_tol::<T>();
    let mut got = vec![0.0f64; loss_rows];
    let mut got_z = 0.0;
    let mut got_g = vec![T::ZERO; x.len()];
    for (k, &(n0, n1)) in groups.iter().enumerate() {
        let r = (n0 * inner, n1 * inner);
        let go = match case.reduction {
            Reduction::None => &upstream[r.0..r.1],
            _ => &upstream[..],
        };
        let mut group_loss: Option<Vec<T>> = None;
        for (s, &(c0, c1)) in shards.iter().enumerate() {
            let st = &mut stats[k][s];
            let mut loss = vec![
                T::ZERO;
                if case.reduction == Reduction::None {
                    r.1 - r.0
                } else {
                    1
                }
            ];
            let z = st.finish(counts, &mut loss).unwrap();
            // The class shards of one row group agree exactly.
            match &group_loss {
                Some(l) => assert_eq!(
                    l.iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>(),
                    loss.iter()
                        .map(|v| v.to_f64().to_bits())
                        .collect::<Vec<_>>(),
                    "{case:?}"
                ),
                None => {
                    if case.reduction == Reduction::None {
                        for (i, v) in loss.iter().enumerate() {
                            got[r.0 + i] = v.to_f64();
                        }
                    } else {
                        got[0] += loss[0].to_f64();
                    }
                    got_z += z.map_or(0.0, |z| z.to_f64());
                    group_loss = Some(loss.clone());
                }
            }
            let xs = slice(&x, c, inner, (n0, n1), (c0, c1));
            let ps = slice(&probs, c, inner, (n0, n1), (c0, c1));
            let sh = case.shape(c1 - c0, n1 - n0);
            let mut g = vec![T::ZERO; xs.len()];
            cross_entropy_shard_grad_into(
                &xs,
                &sh,
                pick(case.probs, &idx[r.0..r.1], &ps),
                &opts,
                ClassShard::new(c0, c),
                st,
                GradOut::new(&mut g).grad_output(go),
            )
            .unwrap();
            // Scatter the shard's gradient into the global one.
            let mut it = g.into_iter();
            for nn in n0..n1 {
                for kk in c0..c1 {
                    for i in 0..inner {
                        got_g[(nn * c + kk) * inner + i] = it.next().unwrap();
                    }
                }
            }
        }
    }

    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        close3(
            &format!("loss[{i}] {case:?}"),
            *g,
            w.to_f64(),
            truth.0[i],
            rel,
            0.0,
        );
    }
    if let Some(wz) = want_z {
        let tz = truth.2.unwrap_or(f64::NAN);
        close3(&format!("z {case:?}"), got_z, wz.to_f64(), tz, rel, 0.0);
    }
    // Gradients relative to their row's prefactor: the size of the terms that cancel
    // in `p_y − 1` (upstream scale × target weight, plus the z term's).
    let kept: Vec<bool> = idx
        .iter()
        .map(|&t| case.probs || t != case.ignore_index)
        .collect();
    let w_of = |k: usize| if case.weight { weight[k].to_f64() } else { 1.0 };
    let d_loss: f64 = if case.probs {
        rows as f64
    } else {
        (0..rows)
            .filter(|&r| kept[r])
            .map(|r| w_of(idx[r] as usize))
            .sum()
    };
    let d_z = kept.iter().filter(|&&k| k).count() as f64;
    for r in 0..rows {
        let (nn, i) = (r / inner, r % inner);
        let at = |k: usize| (nn * c + k) * inner + i;
        let g = upstream[if case.reduction == Reduction::None {
            r
        } else {
            0
        }]
        .to_f64();
        let (s_ce, s_z) = match case.reduction {
            Reduction::Mean => (g / d_loss, g / d_z),
            _ => (g, g),
        };
        let xt = |k: usize| {
            let v = x[at(k)].to_f64();
            case.cap.map_or(v, |cap| cap * (v / cap).tanh())
        };
        let m = (0..c).map(xt).fold(f64::NEG_INFINITY, f64::max);
        let lse = m + (0..c).map(|k| (xt(k) - m).exp()).sum::<f64>().ln();
        let mag = if case.probs {
            (0..c)
                .map(|k| {
                    w_of(k) * ((1.0 - case.eps) * probs[at(k)].to_f64() + case.eps / c as f64).abs()
                })
                .sum()
        } else {
            (0..c).map(w_of).fold(0.0, f64::max)
        };
        let pre = (s_ce * mag).abs() + (s_z * 2.0 * case.z * lse).abs();
        for k in 0..c {
            let (g, w) = (got_g[at(k)].to_f64(), want_g[at(k)].to_f64());
            let t = truth.1[at(k)];
            close3(
                &format!("grad row {r} class {k} {case:?}"),
                g,
                w,
                t,
                rel,
                pre,
            );
        }
    }
}

#[test]
fn random_splits_match_single_process_f64() {
    let mut rng = Rng::new(17);
    for seed in 0..400 {
        let case = Case::random(&mut rng);
        run_case::<f64>(&case, seed);
    }
}

#[test]
fn random_splits_match_single_process_f32() {
    let mut rng = Rng::new(1717);
    for seed in 0..400 {
        let case = Case::random(&mut rng);
        run_case::<f32>(&case, seed);
    }
}

/// Named cases the random ones may miss.
fn named_cases() -> Vec<Case> {
    let base = Case {
        n: 6,
        c: 37,
        inner: None,
        unbatched: false,
        weight: true,
        ignored: 0.3,
        ignore_index: -100,
        eps: 0.1,
        probs: false,
        z: 1e-3,
        cap: Some(10.0),
        reduction: Reduction::Mean,
        cuts: vec![0, 10, 10, 30, 37],
        dp: 2,
        upstream: true,
        targets_in_first: false,
    };
    let mut v = vec![base.clone()];
    // Every row ignored: mean is NaN, sum 0, gradient 0.
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        v.push(Case {
            ignored: 1.0,
            reduction,
            ..base.clone()
        });
    }
    // More shards than classes: empty shards.
    v.push(Case {
        c: 3,
        cuts: vec![0, 1, 1, 3, 3],
        ..base.clone()
    });
    // Only the first shard owns targets.
    v.push(Case {
        targets_in_first: true,
        ..base.clone()
    });
    // K-dim, probabilities, every option.
    v.push(Case {
        inner: Some(3),
        probs: true,
        ignored: 0.0,
        ..base.clone()
    });
    v.push(Case {
        inner: Some(2),
        reduction: Reduction::None,
        ..base.clone()
    });
    // A row group with no rows (3 groups over 2 rows).
    v.push(Case {
        n: 2,
        dp: 3,
        ..base.clone()
    });
    // Long shards: several 2048-class chunks per shard.
    v.push(Case {
        c: 9000,
        n: 3,
        cuts: vec![0, 4097, 9000],
        ..base.clone()
    });
    v
}

#[test]
fn named_splits_match_single_process() {
    for (i, case) in named_cases().iter().enumerate() {
        run_case::<f64>(case, i as u64);
        run_case::<f32>(case, i as u64);
    }
}

#[test]
fn statistics_out_of_protocol_are_errors() {
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let opts = CrossEntropyOptions::default();
    // A shard beyond the global class count.
    let err = cross_entropy_shard_stats(&x, &[2, 2], &[0i64, 1][..], &opts, ClassShard::new(3, 4))
        .unwrap_err();
    assert_eq!(err.to_string(), "class shard = classes 3..5 of 4 is invalid: expected a range of classes within the global class count");
    // A target out of the global range names its row.
    let err = cross_entropy_shard_stats(&x, &[2, 2], &[0i64, 4][..], &opts, ClassShard::new(0, 4))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "target 4 at index [1] is out of bounds for 4 classes"
    );
    // Weights are the global vector.
    let w = [1.0f32; 2];
    let err = cross_entropy_shard_stats(
        &x,
        &[2, 2],
        &[0i64, 1][..],
        &opts.weight(&w),
        ClassShard::new(0, 4),
    )
    .unwrap_err();
    assert!(err.to_string().contains("4"), "{err}");
    // The gradient needs finished statistics of the same call.
    let mut st =
        cross_entropy_shard_stats(&x, &[2, 2], &[0i64, 1][..], &opts, ClassShard::new(0, 4))
            .unwrap();
    let mut g = [0.0f32; 4];
    let err = cross_entropy_shard_grad_into(
        &x,
        &[2, 2],
        &[0i64, 1][..],
        &opts,
        ClassShard::new(0, 4),
        &st,
        GradOut::new(&mut g),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not finished"), "{err}");
    let counts = st.counts();
    st.finish(counts, &mut [0.0f32]).unwrap();
    let other = opts.label_smoothing(0.1);
    let err = cross_entropy_shard_grad_into(
        &x,
        &[2, 2],
        &[0i64, 1][..],
        &other,
        ClassShard::new(0, 4),
        &st,
        GradOut::new(&mut g),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("same input, shard and options"),
        "{err}"
    );
    assert!(ClassShard::even(4, 0, 0).is_err());
    assert!(ClassShard::even(4, 2, 2).is_err());
}

fn run_linear<T: Float>(
    seed: u64,
    (n, d, v): (usize, usize, usize),
    cuts: &[usize],
    eps: f64,
    z: f64,
    reduction: Reduction,
    bias: bool,
) {
    let mut rng = Rng::new(seed);
    let h: Vec<T> = rng
        .logits(n * d, 1.0)
        .into_iter()
        .map(T::from_f64)
        .collect();
    let w: Vec<T> = rng
        .logits(v * d, 0.5)
        .into_iter()
        .map(T::from_f64)
        .collect();
    let b: Vec<T> = rng.logits(v, 0.5).into_iter().map(T::from_f64).collect();
    let weight: Vec<T> = (0..v).map(|_| T::from_f64(0.5 + rng.uniform())).collect();
    let y: Vec<i64> = (0..n)
        .map(|r| {
            if r % 5 == 3 {
                -100
            } else {
                rng.below(v) as i64
            }
        })
        .collect();
    let ce = CrossEntropyOptions::default()
        .weight(&weight)
        .label_smoothing(eps)
        .z_loss(z)
        .reduction(reduction);
    // A small scratch budget: several row blocks.
    let opts = LinearCrossEntropyOptions::from(ce).scratch_bytes(4 * (v + d) * 5);
    let mut inputs = LinearInputs::new(&h, [n, d], &w, [v, d]);
    if bias {
        inputs = inputs.linear_bias(&b);
    }
    let (want, wg) = linear_cross_entropy_with_grad(inputs, &y[..], &opts).unwrap();

    let shards: Vec<(usize, usize)> = cuts.windows(2).map(|k| (k[0], k[1])).collect();
    let mut stats: Vec<ShardStats> = shards
        .iter()
        .map(|&(c0, c1)| {
            let mut li = LinearInputs::new(&h, [n, d], &w[c0 * d..c1 * d], [c1 - c0, d]);
            if bias {
                li = li.linear_bias(&b[c0..c1]);
            }
            linear_cross_entropy_shard_stats(li, &y[..], &opts, ClassShard::new(c0, v)).unwrap()
        })
        .collect();
    all_reduce(&mut stats);
    let rel = rel_tol::<T>();
    let mut dh = vec![0.0f64; n * d];
    for (st, &(c0, c1)) in stats.iter_mut().zip(&shards) {
        let mut loss = vec![T::ZERO; want.values().len()];
        let counts = st.counts();
        st.finish(counts, &mut loss).unwrap();
        for (g, w) in loss.iter().zip(want.values()) {
            close("linear loss", g.to_f64(), w.to_f64(), rel, 0.0);
        }
        let mut li = LinearInputs::new(&h, [n, d], &w[c0 * d..c1 * d], [c1 - c0, d]);
        if bias {
            li = li.linear_bias(&b[c0..c1]);
        }
        let (mut gh, mut gw, mut gb) = (
            vec![T::ZERO; n * d],
            vec![T::ZERO; (c1 - c0) * d],
            vec![T::ZERO; c1 - c0],
        );
        let mut out = LinearGradOut::new().hidden(&mut gh).linear_weight(&mut gw);
        if bias {
            out = out.linear_bias(&mut gb);
        }
        linear_cross_entropy_shard_grad_into(li, &y[..], &opts, ClassShard::new(c0, v), st, out)
            .unwrap();
        for (acc, g) in dh.iter_mut().zip(&gh) {
            *acc += g.to_f64();
        }
        let scale = wg
            .linear_weight
            .iter()
            .map(|g| g.to_f64().abs())
            .fold(0.0, f64::max);
        for (i, g) in gw.iter().enumerate() {
            close(
                "dW",
                g.to_f64(),
                wg.linear_weight[c0 * d + i].to_f64(),
                rel * 10.0,
                scale,
            );
        }
        if let Some(wb) = &wg.linear_bias {
            for (i, g) in gb.iter().enumerate() {
                close("db", g.to_f64(), wb[c0 + i].to_f64(), rel * 10.0, scale);
            }
        }
    }
    let scale = wg
        .hidden
        .iter()
        .map(|g| g.to_f64().abs())
        .fold(0.0, f64::max);
    for (g, w) in dh.iter().zip(&wg.hidden) {
        close("dh", *g, w.to_f64(), rel * 10.0, scale);
    }
}

#[test]
fn linear_shards_match_single_process() {
    for (i, reduction) in [Reduction::Mean, Reduction::Sum, Reduction::None]
        .into_iter()
        .enumerate()
    {
        let seed = i as u64;
        run_linear::<f64>(
            seed,
            (13, 7, 50),
            &[0, 17, 17, 40, 50],
            0.1,
            1e-3,
            reduction,
            true,
        );
        run_linear::<f32>(
            seed,
            (13, 7, 50),
            &[0, 17, 17, 40, 50],
            0.1,
            1e-3,
            reduction,
            true,
        );
        run_linear::<f64>(seed, (9, 5, 3), &[0, 1, 3], 0.0, 0.0, reduction, false);
        run_linear::<f32>(seed, (9, 5, 3), &[0, 1, 3], 0.0, 0.0, reduction, false);
    }
}

/// bf16 logits (computed in f32, f32 gradients): the shards' rows run the same
/// kernels on the same widened values as one process.
#[test]
fn bf16_shards_match_single_process() {
    use xent::bf16;
    let mut rng = Rng::new(99);
    for (shape, cuts) in [
        (vec![5usize, 300], vec![0usize, 100, 101, 300]),
        (vec![3, 40, 2], vec![0, 17, 40]),
    ] {
        let c = shape[1];
        let inner: usize = shape[2..].iter().product();
        let n = shape[0];
        let len: usize = shape.iter().product();
        let x: Vec<bf16> = rng
            .logits(len, 3.0)
            .into_iter()
            .map(bf16::from_f64)
            .collect();
        let y: Vec<i64> = (0..n * inner)
            .map(|r| {
                if r % 4 == 3 {
                    -100
                } else {
                    rng.below(c) as i64
                }
            })
            .collect();
        let w: Vec<f32> = (0..c).map(|_| 0.5 + rng.uniform() as f32).collect();
        let opts = CrossEntropyOptions::<f32>::default()
            .weight(&w)
            .label_smoothing(0.1)
            .z_loss(1e-3)
            .softcap(20.0);
        let mut want = [0.0f32];
        let mut want_g = vec![0.0f32; len];
        cross_entropy_into(
            &x,
            &shape,
            &y[..],
            &opts,
            &mut want,
            Some(GradOut::new_acc(&mut want_g)),
        )
        .unwrap();
        let shards: Vec<(usize, usize)> = cuts.windows(2).map(|k| (k[0], k[1])).collect();
        let block = |(c0, c1): (usize, usize)| slice(&x, c, inner, (0, n), (c0, c1));
        let local_shape = |(c0, c1): (usize, usize)| {
            let mut s = shape.clone();
            s[1] = c1 - c0;
            s
        };
        let mut stats: Vec<ShardStats> = shards
            .iter()
            .map(|&sh| {
                cross_entropy_shard_stats(
                    &block(sh),
                    &local_shape(sh),
                    &y[..],
                    &opts,
                    ClassShard::new(sh.0, c),
                )
                .unwrap()
            })
            .collect();
        all_reduce(&mut stats);
        let scale = want_g.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        for (st, &sh) in stats.iter_mut().zip(&shards) {
            let mut loss = [0.0f32];
            let counts = st.counts();
            st.finish(counts, &mut loss).unwrap();
            close("bf16 loss", loss[0] as f64, want[0] as f64, 1e-6, 0.0);
            let mut g = vec![0.0f32; (sh.1 - sh.0) * n * inner];
            let out = GradOut::<bf16>::new_acc(&mut g);
            cross_entropy_shard_grad_into(
                &block(sh),
                &local_shape(sh),
                &y[..],
                &opts,
                ClassShard::new(sh.0, c),
                st,
                out,
            )
            .unwrap();
            let want_block = slice(&want_g, c, inner, (0, n), sh);
            for (a, b) in g.iter().zip(&want_block) {
                close("bf16 grad", *a as f64, *b as f64, 1e-6, scale);
            }
        }
    }
}
