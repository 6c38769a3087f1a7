//! The one-pass class-sharded linear cross-entropy
//! (`linear_cross_entropy_shard_into`), run in one process: each of the `DP × TP`
//! ranks is a thread, and the collectives of `ShardReduce` are done through shared
//! memory (MAX or max-location, then SUM over a row group's class shards; SUM of the
//! counts over the row groups). The losses, row outputs and gradients must equal the
//! single-process `linear_cross_entropy_stats_into` within 1e-6 (f32) and 1e-12
//! (f64), relative (gradients 10×), and with one row group they must equal the
//! two-call protocol's bit for bit.
mod common;

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use common::Rng;
use xent::{
    linear_cross_entropy_shard_grad_into, linear_cross_entropy_shard_into,
    linear_cross_entropy_shard_row_stats, linear_cross_entropy_shard_stats,
    linear_cross_entropy_stats_into, ClassShard, CrossEntropyOptions, Float,
    LinearCrossEntropyOptions, LinearGradOut, LinearInputs, MaxLoc, Reduction, RowOutputs,
    ShardReduce, ShardStats,
};

/// The relative tolerance of a type: 1e-6 for f32, 1e-12 for f64.
fn rel_tol<T: Float>() -> f64 {
    if size_of::<T>() == 4 {
        1e-6
    } else {
        1e-12
    }
}

/// `|got − want| ≤ rel·max(scale, |want|)`, NaN only where the other is NaN.
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

/// The largest magnitude of `v`, as the scale of an absolute bound.
fn scale_of<T: Float>(v: &[T]) -> f64 {
    v.iter().map(|g| g.to_f64().abs()).fold(0.0, f64::max)
}

/// One group of threads that all-reduce together: every member deposits its buffer,
/// waits for the others, and folds all of them in rank order. A member that never
/// comes (collectives that do not pair up) fails the test after a minute instead of
/// hanging it.
struct Group<X> {
    size: usize,
    state: Mutex<Slots<X>>,
    turn: Condvar,
}

/// The members' deposits, how many arrived at the barrier, and its generation.
struct Slots<X> {
    parts: Vec<Option<Vec<X>>>,
    arrived: usize,
    generation: u64,
}

impl<X: Copy> Group<X> {
    fn new(size: usize) -> Self {
        Group {
            size,
            state: Mutex::new(Slots {
                parts: vec![None; size],
                arrived: 0,
                generation: 0,
            }),
            turn: Condvar::new(),
        }
    }

    /// Waits until all `size` members have arrived at this generation.
    fn barrier(&self, mut st: MutexGuard<'_, Slots<X>>) {
        let generation = st.generation;
        st.arrived += 1;
        if st.arrived == self.size {
            st.arrived = 0;
            st.generation += 1;
            self.turn.notify_all();
            return;
        }
        let (st, timeout) = self
            .turn
            .wait_timeout_while(st, Duration::from_secs(60), |s| s.generation == generation)
            .unwrap();
        assert!(!timeout.timed_out(), "a collective did not pair up");
        drop(st);
    }

    fn all_reduce(&self, rank: usize, buf: &mut [X], fold: impl Fn(X, X) -> X) {
        {
            let mut st = self.state.lock().unwrap();
            st.parts[rank] = Some(buf.to_vec());
            self.barrier(st);
        }
        {
            let st = self.state.lock().unwrap();
            let parts: Vec<&Vec<X>> = st.parts.iter().map(|p| p.as_ref().unwrap()).collect();
            for p in &parts {
                assert_eq!(p.len(), buf.len(), "all-reduce of different lengths");
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = parts[1..].iter().fold(parts[0][i], |a, p| fold(a, p[i]));
            }
        }
        // Nobody deposits again before every member has read.
        let st = self.state.lock().unwrap();
        self.barrier(st);
    }
}

/// A rank's view of its tensor-parallel group (MAX, max-location, SUM) and its
/// data-parallel group (SUM of the counts).
struct Member<'g> {
    tp: (&'g Group<f64>, &'g Group<MaxLoc>, usize),
    dp: (&'g Group<f64>, usize),
    starts: usize,
    blocks: usize,
}

impl ShardReduce for Member<'_> {
    fn start(&mut self, counts: Option<&mut [f64; 2]>) -> xent::Result<()> {
        self.starts += 1;
        if let Some(c) = counts {
            self.dp.0.all_reduce(self.dp.1, c, |a, b| a + b);
        }
        Ok(())
    }

    fn block(&mut self, stats: &mut ShardStats) -> xent::Result<()> {
        self.blocks += 1;
        let (sum, loc, rank) = self.tp;
        if stats.sums_per_row() == 4 {
            // MPI's MAX: NaN-ignoring.
            sum.all_reduce(rank, stats.max_mut(), f64::max);
        } else {
            loc.all_reduce(rank, stats.max_loc_mut(), MaxLoc::max);
        }
        sum.all_reduce(rank, stats.sums_mut(), |a, b| a + b);
        Ok(())
    }
}

/// The `index`-th of `parts` even ranges of `0..len`.
fn even(len: usize, parts: usize, index: usize) -> (usize, usize) {
    let (base, extra) = (len / parts, len % parts);
    let start = index * base + index.min(extra);
    (start, start + base + usize::from(index < extra))
}

/// A problem: `h`, `W`, `b`, class weights, targets.
struct Problem<T> {
    n: usize,
    d: usize,
    v: usize,
    h: Vec<T>,
    w: Vec<T>,
    b: Vec<T>,
    weight: Vec<T>,
    y: Vec<i64>,
    go: Vec<T>,
}

impl<T: Float> Problem<T> {
    fn new(seed: u64, (n, d, v): (usize, usize, usize), ignore_index: i64) -> Self {
        let mut rng = Rng::new(seed);
        let mut vals = |len: usize, s: f64| -> Vec<T> {
            rng.logits(len, s).into_iter().map(T::from_f64).collect()
        };
        let (h, w, b, go) = (
            vals(n * d, 1.0),
            vals(v * d, 0.7),
            vals(v, 0.5),
            vals(n, 1.0),
        );
        let weight = (0..v).map(|_| T::from_f64(0.5 + rng.uniform())).collect();
        let y = (0..n)
            .map(|r| {
                if r % 4 == 2 {
                    ignore_index
                } else {
                    rng.below(v) as i64
                }
            })
            .collect();
        Problem {
            n,
            d,
            v,
            h,
            w,
            b,
            weight,
            y,
            go,
        }
    }
}

/// How a case is run.
#[derive(Debug, Clone)]
struct Split {
    /// Class cuts `[0, .., V]` (a tensor-parallel group of `cuts.len() − 1` shards).
    cuts: Vec<usize>,
    /// Row groups.
    dp: usize,
    bias: bool,
    rows_out: bool,
    /// Rows of logits and hidden states the scratch holds.
    block: usize,
}

/// What one rank computed.
struct RankOut<T> {
    loss: Vec<T>,
    z: Option<T>,
    dh: Vec<T>,
    dw: Vec<T>,
    db: Vec<T>,
    lse: Vec<T>,
    entropy: Vec<T>,
    argmax: Vec<i64>,
    zrow: Vec<T>,
    starts: usize,
    blocks: usize,
}

/// Runs the one-pass form on `DP × TP` threads.
fn run_pass<T: Float>(
    p: &Problem<T>,
    opts: &LinearCrossEntropyOptions<'_, T>,
    split: &Split,
) -> Vec<Vec<RankOut<T>>> {
    let tp = split.cuts.len() - 1;
    let (n, d, v) = (p.n, p.d, p.v);
    let reduction = opts.cross_entropy.reduction;
    let tp_groups: Vec<(Group<f64>, Group<MaxLoc>)> = (0..split.dp)
        .map(|_| (Group::new(tp), Group::new(tp)))
        .collect();
    let dp_groups: Vec<Group<f64>> = (0..tp).map(|_| Group::new(split.dp)).collect();
    std::thread::scope(|s| {
        let handles: Vec<Vec<_>> = (0..split.dp)
            .map(|dr| {
                (0..tp)
                    .map(|tr| {
                        let (tpg, dpg) = (&tp_groups[dr], &dp_groups[tr]);
                        s.spawn(move || {
                            let (n0, n1) = even(n, split.dp, dr);
                            let (c0, c1) = (split.cuts[tr], split.cuts[tr + 1]);
                            let rows = n1 - n0;
                            let mut inputs = LinearInputs::new(
                                &p.h[n0 * d..n1 * d],
                                [rows, d],
                                &p.w[c0 * d..c1 * d],
                                [c1 - c0, d],
                            );
                            if split.bias {
                                inputs = inputs.linear_bias(&p.b[c0..c1]);
                            }
                            let none = reduction == Reduction::None;
                            let mut o = RankOut {
                                loss: vec![T::ZERO; if none { rows } else { 1 }],
                                z: None,
                                dh: vec![T::ZERO; rows * d],
                                dw: vec![T::ZERO; (c1 - c0) * d],
                                db: vec![T::ZERO; c1 - c0],
                                lse: vec![T::ZERO; rows],
                                entropy: vec![T::ZERO; rows],
                                argmax: vec![0; rows],
                                zrow: vec![T::ZERO; rows],
                                starts: 0,
                                blocks: 0,
                            };
                            let mut member = Member {
                                tp: (&tpg.0, &tpg.1, tr),
                                dp: (dpg, dr),
                                starts: 0,
                                blocks: 0,
                            };
                            let mut grad = LinearGradOut::new()
                                .hidden(&mut o.dh)
                                .linear_weight(&mut o.dw);
                            if split.bias {
                                grad = grad.linear_bias(&mut o.db);
                            }
                            if none {
                                grad = grad.grad_output(&p.go[n0..n1]);
                            }
                            let row_outputs = if split.rows_out {
                                RowOutputs::new()
                                    .lse(&mut o.lse)
                                    .entropy(&mut o.entropy)
                                    .argmax(&mut o.argmax)
                                    .z(&mut o.zrow)
                            } else {
                                RowOutputs::new()
                            };
                            o.z = linear_cross_entropy_shard_into(
                                inputs,
                                &p.y[n0..n1],
                                opts,
                                ClassShard::new(c0, v),
                                &mut member,
                                &mut o.loss,
                                Some(grad),
                                row_outputs,
                            )
                            .unwrap();
                            o.starts = member.starts;
                            o.blocks = member.blocks;
                            o
                        })
                    })
                    .collect()
            })
            .collect();
        handles
            .into_iter()
            .map(|g| g.into_iter().map(|h| h.join().unwrap()).collect())
            .collect()
    })
}

/// The single-process reference: loss, z, ∂h, ∂W, ∂b and the row outputs.
fn reference<T: Float>(
    p: &Problem<T>,
    opts: &LinearCrossEntropyOptions<'_, T>,
    bias: bool,
) -> RankOut<T> {
    let (n, d, v) = (p.n, p.d, p.v);
    let none = opts.cross_entropy.reduction == Reduction::None;
    let mut o = RankOut {
        loss: vec![T::ZERO; if none { n } else { 1 }],
        z: None,
        dh: vec![T::ZERO; n * d],
        dw: vec![T::ZERO; v * d],
        db: vec![T::ZERO; v],
        lse: vec![T::ZERO; n],
        entropy: vec![T::ZERO; n],
        argmax: vec![0; n],
        zrow: vec![T::ZERO; n],
        starts: 0,
        blocks: 0,
    };
    let mut inputs = LinearInputs::new(&p.h, [n, d], &p.w, [v, d]);
    if bias {
        inputs = inputs.linear_bias(&p.b);
    }
    let mut grad = LinearGradOut::new()
        .hidden(&mut o.dh)
        .linear_weight(&mut o.dw)
        .linear_bias(&mut o.db);
    if none {
        grad = grad.grad_output(&p.go);
    }
    let rows = RowOutputs::new()
        .lse(&mut o.lse)
        .entropy(&mut o.entropy)
        .argmax(&mut o.argmax)
        .z(&mut o.zrow);
    o.z = linear_cross_entropy_stats_into(inputs, &p.y[..], opts, &mut o.loss, Some(grad), rows)
        .unwrap();
    o
}

/// The two-call protocol on one row group's class shards (in turn, no threads): the
/// statistics, the collectives by hand, `finish_rows`, then the gradients.
fn two_call<T: Float>(
    p: &Problem<T>,
    opts: &LinearCrossEntropyOptions<'_, T>,
    split: &Split,
) -> Vec<RankOut<T>> {
    let (n, d, v) = (p.n, p.d, p.v);
    let none = opts.cross_entropy.reduction == Reduction::None;
    let shards: Vec<(usize, usize)> = split.cuts.windows(2).map(|k| (k[0], k[1])).collect();
    let inputs = |c0: usize, c1: usize| {
        let i = LinearInputs::new(&p.h, [n, d], &p.w[c0 * d..c1 * d], [c1 - c0, d]);
        if split.bias {
            i.linear_bias(&p.b[c0..c1])
        } else {
            i
        }
    };
    let mut stats: Vec<ShardStats> = shards
        .iter()
        .map(|&(c0, c1)| {
            let sh = ClassShard::new(c0, v);
            if split.rows_out {
                linear_cross_entropy_shard_row_stats(inputs(c0, c1), &p.y[..], opts, sh)
            } else {
                linear_cross_entropy_shard_stats(inputs(c0, c1), &p.y[..], opts, sh)
            }
            .unwrap()
        })
        .collect();
    for r in 0..n {
        if split.rows_out {
            let m = stats
                .iter_mut()
                .fold(MaxLoc::EMPTY, |a, s| a.max(s.max_loc_mut()[r]));
            stats.iter_mut().for_each(|s| s.max_loc_mut()[r] = m);
        } else {
            let m = stats
                .iter_mut()
                .map(|s| s.max_mut()[r])
                .fold(f64::NEG_INFINITY, f64::max);
            stats.iter_mut().for_each(|s| s.max_mut()[r] = m);
        }
    }
    let len = stats[0].sums_mut().len();
    let sums: Vec<f64> = (0..len)
        .map(|k| {
            let parts: Vec<f64> = stats.iter_mut().map(|s| s.sums_mut()[k]).collect();
            parts[1..].iter().fold(parts[0], |a, b| a + b)
        })
        .collect();
    stats
        .iter_mut()
        .for_each(|s| s.sums_mut().copy_from_slice(&sums));
    stats
        .iter_mut()
        .zip(&shards)
        .map(|(st, &(c0, c1))| {
            let mut o = RankOut {
                loss: vec![T::ZERO; if none { n } else { 1 }],
                z: None,
                dh: vec![T::ZERO; n * d],
                dw: vec![T::ZERO; (c1 - c0) * d],
                db: vec![T::ZERO; c1 - c0],
                lse: vec![T::ZERO; n],
                entropy: vec![T::ZERO; n],
                argmax: vec![0; n],
                zrow: vec![T::ZERO; n],
                starts: 0,
                blocks: 0,
            };
            let rows = if split.rows_out {
                RowOutputs::new()
                    .lse(&mut o.lse)
                    .entropy(&mut o.entropy)
                    .argmax(&mut o.argmax)
                    .z(&mut o.zrow)
            } else {
                RowOutputs::new()
            };
            let counts = st.counts();
            o.z = st.finish_rows(counts, &mut o.loss, rows).unwrap();
            let mut grad = LinearGradOut::new()
                .hidden(&mut o.dh)
                .linear_weight(&mut o.dw);
            if split.bias {
                grad = grad.linear_bias(&mut o.db);
            }
            if none {
                grad = grad.grad_output(&p.go);
            }
            let sh = ClassShard::new(c0, v);
            linear_cross_entropy_shard_grad_into(inputs(c0, c1), &p.y[..], opts, sh, st, grad)
                .unwrap();
            o
        })
        .collect()
}

/// `got` and `want` bit for bit.
fn same_bits<T: Float>(what: &str, got: &[T], want: &[T]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: {g} against the two-call protocol's {w}"
        );
    }
    assert_eq!(got.len(), want.len(), "{what}");
}

fn check<T: Float>(p: &Problem<T>, opts: &LinearCrossEntropyOptions<'_, T>, split: &Split) {
    let ctx = format!("{split:?} {:?}", opts.cross_entropy);
    let (n, d) = (p.n, p.d);
    let none = opts.cross_entropy.reduction == Reduction::None;
    let got = run_pass(p, opts, split);
    let want = reference(p, opts, split.bias);
    let rel = rel_tol::<T>();
    let tp = split.cuts.len() - 1;

    for group in &got {
        for o in group {
            assert_eq!(o.starts, 1, "{ctx}");
            assert_eq!(o.blocks, group[0].blocks, "{ctx}");
            // Blocks of `split.block` rows, as the single process's.
            assert_eq!(
                o.blocks,
                o.dh.len().div_ceil(d).div_ceil(split.block),
                "{ctx}"
            );
        }
    }
    // The loss and z: the SUM over the row groups (or their rows in order); every
    // class shard of a row group holds the same values.
    let mut loss = vec![0.0f64; if none { n } else { 1 }];
    let (mut z, mut r0) = (0.0, 0);
    for (dr, group) in got.iter().enumerate() {
        let (n0, n1) = even(n, split.dp, dr);
        for o in group {
            same_bits(
                &format!("{ctx} loss across shards"),
                &o.loss,
                &group[0].loss,
            );
        }
        let o = &group[0];
        if none {
            for (l, g) in loss[n0..n1].iter_mut().zip(&o.loss) {
                *l = g.to_f64();
            }
        } else {
            loss[0] += o.loss[0].to_f64();
        }
        z += o.z.map_or(0.0, |z| z.to_f64());
        assert_eq!(o.z.is_some(), want.z.is_some(), "{ctx}");
        if split.rows_out {
            for r in 0..n1 - n0 {
                close(
                    &format!("{ctx} lse"),
                    o.lse[r].to_f64(),
                    want.lse[n0 + r].to_f64(),
                    rel,
                    1.0,
                );
                close(
                    &format!("{ctx} entropy"),
                    o.entropy[r].to_f64(),
                    want.entropy[n0 + r].to_f64(),
                    rel * 10.0,
                    1.0,
                );
                close(
                    &format!("{ctx} z row"),
                    o.zrow[r].to_f64(),
                    want.zrow[n0 + r].to_f64(),
                    rel,
                    1.0,
                );
                assert_eq!(
                    o.argmax[r],
                    want.argmax[n0 + r],
                    "{ctx} argmax row {}",
                    n0 + r
                );
            }
        }
        // ∂h: the SUM over the class shards.
        let dh_scale = scale_of(&want.dh);
        for i in 0..(n1 - n0) * d {
            let parts: Vec<f64> = group.iter().map(|o| o.dh[i].to_f64()).collect();
            let sum = parts[1..].iter().fold(parts[0], |a, b| a + b);
            close(
                &format!("{ctx} dh"),
                sum,
                want.dh[n0 * d + i].to_f64(),
                rel * 10.0,
                dh_scale,
            );
        }
        r0 += n1 - n0;
    }
    assert_eq!(r0, n);
    for (g, w) in loss.iter().zip(&want.loss) {
        close(&format!("{ctx} loss"), *g, w.to_f64(), rel, 0.0);
    }
    if let Some(wz) = want.z {
        close(&format!("{ctx} z"), z, wz.to_f64(), rel, 0.0);
    }
    // ∂W and ∂b: each class shard's, the SUM over the row groups.
    let (dw_scale, db_scale) = (scale_of(&want.dw), scale_of(&want.db));
    for tr in 0..tp {
        let (c0, c1) = (split.cuts[tr], split.cuts[tr + 1]);
        for i in 0..(c1 - c0) * d {
            let sum: f64 = got.iter().map(|g| g[tr].dw[i].to_f64()).sum();
            close(
                &format!("{ctx} dW"),
                sum,
                want.dw[c0 * d + i].to_f64(),
                rel * 10.0,
                dw_scale,
            );
        }
        if split.bias {
            for i in 0..c1 - c0 {
                let sum: f64 = got.iter().map(|g| g[tr].db[i].to_f64()).sum();
                close(
                    &format!("{ctx} db"),
                    sum,
                    want.db[c0 + i].to_f64(),
                    rel * 10.0,
                    db_scale,
                );
            }
        }
    }
    if split.dp > 1 {
        return;
    }
    // One row group: the two-call protocol's values bit for bit (the same blocks).
    let calls = two_call(p, opts, split);
    for (o, c) in got[0].iter().zip(&calls) {
        same_bits(&format!("{ctx} loss"), &o.loss, &c.loss);
        same_bits(
            &format!("{ctx} z"),
            &[o.z.unwrap_or(T::ZERO)],
            &[c.z.unwrap_or(T::ZERO)],
        );
        if split.rows_out {
            same_bits(&format!("{ctx} lse"), &o.lse, &c.lse);
            same_bits(&format!("{ctx} entropy"), &o.entropy, &c.entropy);
            same_bits(&format!("{ctx} z rows"), &o.zrow, &c.zrow);
            assert_eq!(o.argmax, c.argmax, "{ctx}");
        }
        same_bits(&format!("{ctx} dh"), &o.dh, &c.dh);
        same_bits(&format!("{ctx} dW"), &o.dw, &c.dw);
        same_bits(&format!("{ctx} db"), &o.db, &c.db);
    }
}

/// Every option, every reduction, 1..4 class shards (uneven, one empty), 1..2 row
/// groups, blocks of 1, 3, 5 and 16 rows over odd `N`.
fn run_all<T: Float>() {
    let (d, v) = (7, 50);
    let splits: [(&[usize], usize); 6] = [
        (&[0, 50], 1),
        (&[0, 25, 50], 1),
        (&[0, 17, 17, 40, 50], 1),
        (&[0, 13, 26, 38, 50], 1),
        (&[0, 50], 2),
        (&[0, 17, 34, 50], 2),
    ];
    let mut case = 0u64;
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for (k, &(cuts, dp)) in splits.iter().enumerate() {
            for block in [1usize, 3, 5, 16] {
                case += 1;
                let n = [13, 21, 9, 37][(case % 4) as usize];
                let ignore_index = if case.is_multiple_of(2) { -100 } else { 3 };
                let p = Problem::<T>::new(case, (n, d, v), ignore_index);
                let mut ce = CrossEntropyOptions::default()
                    .ignore_index(ignore_index)
                    .reduction(reduction);
                match case % 4 {
                    0 => ce = ce.weight(&p.weight).label_smoothing(0.1).z_loss(1e-3),
                    1 => ce = ce.softcap(3.0).logit_scale(0.7).z_loss(1e-2),
                    2 => ce = ce.weight(&p.weight).logit_scale(1.3).label_smoothing(0.05),
                    _ => ce = ce.softcap(2.5).weight(&p.weight),
                }
                if reduction == Reduction::Mean && case.is_multiple_of(5) {
                    ce = ce.denominator(17.0);
                }
                // The scratch of `block` rows of all `V` classes and `D` hidden states.
                let opts = LinearCrossEntropyOptions::from(ce)
                    .scratch_bytes(block * (v + d) * size_of::<T>());
                let split = Split {
                    cuts: cuts.to_vec(),
                    dp,
                    bias: k % 2 == 0,
                    rows_out: !case.is_multiple_of(3),
                    block,
                };
                check(&p, &opts, &split);
            }
        }
    }
}

#[test]
fn one_pass_matches_single_process_f64() {
    run_all::<f64>();
}

#[test]
fn one_pass_matches_single_process_f32() {
    run_all::<f32>();
}

/// One process, no collectives.
struct Alone;

impl ShardReduce for Alone {
    fn start(&mut self, _counts: Option<&mut [f64; 2]>) -> xent::Result<()> {
        Ok(())
    }
    fn block(&mut self, _stats: &mut ShardStats) -> xent::Result<()> {
        Ok(())
    }
}

/// bf16 inputs (logits and gradients in f32, `∂h` and `∂W` multiplied in bf16 or f32):
/// one pass equals the two calls bit for bit, over several blocks.
#[test]
fn one_pass_bf16_equals_two_calls() {
    use xent::{bf16, GradPrecision};
    let (n, d, v) = (21, 9, 40);
    let mut rng = Rng::new(5);
    let h: Vec<bf16> = rng
        .logits(n * d, 1.0)
        .into_iter()
        .map(bf16::from_f64)
        .collect();
    let w: Vec<bf16> = rng
        .logits(v * d, 0.5)
        .into_iter()
        .map(bf16::from_f64)
        .collect();
    let y: Vec<i64> = (0..n as i64)
        .map(|r| if r % 6 == 1 { -100 } else { (r * 7) % 40 })
        .collect();
    for precision in [GradPrecision::default(), GradPrecision::F32] {
        let ce = CrossEntropyOptions::default()
            .label_smoothing(0.1)
            .z_loss(1e-3);
        let opts = LinearCrossEntropyOptions::from(ce)
            .scratch_bytes(4 * (v + d) * 4)
            .grad_precision(precision);
        let inputs = LinearInputs::new(&h, [n, d], &w, [v, d]);
        let shard = ClassShard::full(v);
        let (mut loss, mut dh, mut dw) = ([0.0f32], vec![0.0f32; n * d], vec![0.0f32; v * d]);
        let grad = LinearGradOut::new().hidden(&mut dh).linear_weight(&mut dw);
        let z = linear_cross_entropy_shard_into(
            inputs,
            &y[..],
            &opts,
            shard,
            &mut Alone,
            &mut loss,
            Some(grad),
            RowOutputs::new(),
        )
        .unwrap();

        let mut st = linear_cross_entropy_shard_stats(inputs, &y[..], &opts, shard).unwrap();
        let mut want_loss = [0.0f32];
        let counts = st.counts();
        let want_z = st.finish(counts, &mut want_loss).unwrap();
        let (mut wdh, mut wdw) = (vec![0.0f32; n * d], vec![0.0f32; v * d]);
        let grad = LinearGradOut::new()
            .hidden(&mut wdh)
            .linear_weight(&mut wdw);
        linear_cross_entropy_shard_grad_into(inputs, &y[..], &opts, shard, &st, grad).unwrap();
        same_bits("bf16 loss", &loss, &want_loss);
        same_bits("bf16 z", &[z.unwrap()], &[want_z.unwrap()]);
        same_bits("bf16 dh", &dh, &wdh);
        same_bits("bf16 dW", &dw, &wdw);
    }
}
