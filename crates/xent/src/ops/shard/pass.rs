//! The class-sharded linear cross-entropy in one pass: each row block's logits are
//! formed once, and the caller's collectives run between the block's forward and its
//! backward.

use super::linear::{check_linear, LinearWalk};
use super::{new_stats, ClassShard, ShardStats, Stage, Want};
use crate::dtype::{Element, Float};
use crate::error::Result;
use crate::indices::ClassIndices;
use crate::ops::check_len;
use crate::ops::linear::{
    checked_grad_parts, LinearCrossEntropyOptions, LinearGradOut, LinearInputs,
};
use crate::ops::stats::RowOutputs;
use crate::options::Reduction;
use crate::targets::Targets;

/// The collectives of [`linear_cross_entropy_shard_into`], which the caller performs
/// (this crate does no communication; `xent-mpi` does them over MPI).
///
/// Every process of a tensor-parallel group (the class shards of the same rows) makes
/// the same calls in the same order, with buffers of the same lengths: one
/// [`ShardReduce::start`], then one [`ShardReduce::block`] per row block. The blocks
/// depend only on what every class shard shares (`N`, `D`, the global `C`, the
/// element type and `scratch_bytes`), never on the shard's own class count, so the
/// collectives pair up also when `C` does not split evenly.
pub trait ShardReduce {
    /// Called once, after every check of the call has passed and before the first
    /// block. `counts` is `Some` when the loss is a `mean` without a given
    /// [`denominator`](crate::CrossEntropyOptions::denominator): this process's
    /// [`ShardStats::counts`], to SUM over the data-parallel ranks (the processes that
    /// hold the same class shard of other rows), or to leave as they are when this
    /// process's rows are all the rows. The gradient of the first block needs them.
    ///
    /// A caller whose processes must agree that every one of them got here (a check
    /// may fail on one process only) can do it here, before any other collective.
    ///
    /// # Errors
    /// An error here ends the call with it, before any block.
    fn start(&mut self, counts: Option<&mut [f64; 2]>) -> Result<()>;

    /// All-reduces one row block's statistics across the class shards of its rows, as
    /// the whole batch's are in step 2 of
    /// [`cross_entropy_shard_stats`](crate::cross_entropy_shard_stats): MAX of
    /// [`ShardStats::max_mut`] (or, when [`ShardStats::sums_per_row`] is 5, the
    /// max-location reduction of [`ShardStats::max_loc_mut`]), then one SUM of
    /// [`ShardStats::sums_mut`]. `stats` holds the block's rows only.
    ///
    /// # Errors
    /// An error here ends the call with it; the gradients are then partly written.
    fn block(&mut self, stats: &mut ShardStats) -> Result<()>;
}

/// [`linear_cross_entropy_shard_stats`](crate::linear_cross_entropy_shard_stats),
/// the collectives and
/// [`linear_cross_entropy_shard_grad_into`](crate::linear_cross_entropy_shard_grad_into)
/// in one pass over the row blocks, forming each block's logits `h·W_shardᵀ + b_shard`
/// once (three GEMMs per block, not four): the block's partial statistics, then
/// `reduce.block` (the all-reduces across the class shards), then the block's logit
/// gradient from the reduced statistics, in place, and its products `∂h`, `∂W`, `∂b`.
///
/// The arguments are those of the two-call protocol: `inputs` with this shard's rows
/// of `W` and `b`, the global class-index `target`, `opts`, `shard`. `loss_out`,
/// `grad` and `rows_out` are as for
/// [`linear_cross_entropy_stats_into`](crate::linear_cross_entropy_stats_into) on this
/// process's rows (1 element of loss for `mean`/`sum`, one per row for `none`; `∂W`
/// and `∂b` of the shard's classes), the loss and row outputs in any float type `A`,
/// as [`ShardStats::finish_rows`] writes them; returns the z-loss term included in
/// the loss when z-loss is on. As in the two-call protocol, `∂W` and `∂b` are complete, `∂h` is
/// this shard's part of a sum over the class shards (SUM-all-reduce it), and for
/// `mean` and `sum` the loss of the whole batch is the SUM over the data-parallel
/// ranks. The losses, row outputs and gradients are those of the two-call protocol
/// bit for bit (with the same collectives).
///
/// The rows are walked in blocks of `B` rows, the blocks of the two-call protocol and
/// of [`linear_cross_entropy`](crate::linear_cross_entropy): `B` is computed from `N`,
/// `D`, the global `C`, the element type and `opts.scratch_bytes`, so it is the same
/// on every class shard, and `reduce.block` runs `⌈N / B⌉` times. The mean's
/// denominator is known before the first block (from `reduce.start`).
///
/// ```
/// use xent::{linear_cross_entropy_shard_into, linear_cross_entropy_with_grad, ClassShard,
///     LinearCrossEntropyOptions, LinearGradOut, LinearInputs, Result, ShardReduce,
///     ShardStats};
/// // One process holding every class and row: nothing to reduce, but the blocks are
/// // counted (a scratch of 4 rows' logits and hidden states gives blocks of 4 rows).
/// struct Alone { blocks: usize }
/// impl ShardReduce for Alone {
///     fn start(&mut self, _counts: Option<&mut [f64; 2]>) -> Result<()> { Ok(()) }
///     fn block(&mut self, _stats: &mut ShardStats) -> Result<()> {
///         self.blocks += 1;
///         Ok(())
///     }
/// }
/// let (n, d, v) = (10, 3, 5);
/// let h: Vec<f64> = (0..n * d).map(|i| (i as f64 * 0.37).sin()).collect();
/// let w: Vec<f64> = (0..v * d).map(|i| (i as f64 * 0.21).cos()).collect();
/// let y: Vec<i64> = (0..n as i64).map(|r| r % 5).collect();
/// let opts = LinearCrossEntropyOptions::default().scratch_bytes(4 * (v + d) * 8);
/// let inputs = LinearInputs::new(&h, [n, d], &w, [v, d]);
/// let (mut loss, mut dh, mut dw) = ([0.0], vec![0.0; n * d], vec![0.0; v * d]);
/// let mut alone = Alone { blocks: 0 };
/// let grad = LinearGradOut::new().hidden(&mut dh).linear_weight(&mut dw);
/// linear_cross_entropy_shard_into(inputs, &y[..], &opts, ClassShard::full(v), &mut alone,
///     &mut loss, Some(grad), Default::default())?;
/// assert_eq!(alone.blocks, 3); // rows 0..4, 4..8, 8..10
/// let (want, wg) = linear_cross_entropy_with_grad(inputs, &y[..], &opts)?;
/// assert!((loss[0] - want.item().unwrap()).abs() < 1e-14);
/// assert!(dh.iter().zip(&wg.hidden).all(|(a, b)| (a - b).abs() < 1e-14));
/// # Ok::<(), xent::Error>(())
/// ```
///
/// # Errors
/// As [`linear_cross_entropy_stats_into`](crate::linear_cross_entropy_stats_into),
/// checked against the global class count, and all before `reduce.start`;
/// [`Error::InvalidArgument`] when the shard does not lie within `C`, or when an
/// `argmax` is asked and `reduce.block` reduced the maxima with
/// [`ShardStats::max_mut`]; the errors of `reduce`.
pub fn linear_cross_entropy_shard_into<'t, E: Element, A: Float>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
    reduce: &mut impl ShardReduce,
    loss_out: &mut [A],
    grad: Option<LinearGradOut<'_, E::Acc>>,
    rows_out: RowOutputs<'_, A>,
) -> Result<Option<A>> {
    let target = target.into();
    let (n, d, v) = check_linear(&inputs, &target, opts, shard)?;
    let ce = &opts.cross_entropy;
    let per_row = ce.reduction == Reduction::None;
    let loss_len = if per_row { n } else { 1 };
    check_len("loss_out", loss_out.len(), loss_len)?;
    rows_out.check(n)?;
    let (grad_output, accumulate, mut dh, mut dw, mut db) =
        checked_grad_parts(grad, (n, d, v), ce.reduction)?;
    let want_grad = dh.is_some() || dw.is_some() || db.is_some();
    let want = if rows_out.lse.is_some()
        || rows_out.entropy.is_some()
        || rows_out.argmax.is_some()
        || rows_out.z.is_some()
    {
        Want::Rows
    } else {
        Want::Loss
    };

    // The whole batch's statistics: its counts now, the blocks' reduced sums as they
    // come, the loss and row outputs at the end.
    let mut stats = new_stats(&Targets::<E::Acc>::Indices(target), n, ce, shard, v, want);
    let mut counts = stats.counts;
    let reads_counts = ce.reduction == Reduction::Mean && ce.denominator.is_none();
    reduce.start(reads_counts.then_some(&mut counts))?;

    // dW and db are sums over the blocks; dh is written block by block.
    if want_grad && !accumulate {
        for g in [dw.as_deref_mut(), db.as_deref_mut()].into_iter().flatten() {
            g.fill(E::Acc::ZERO);
        }
    }
    let mut walk = LinearWalk::new(&inputs, opts, v, shard.classes);
    let w = stats.width;
    let mut part_loss = vec![0.0f64; if per_row { walk.block() } else { 1 }];
    let mut r0 = 0;
    while r0 < n {
        let rows = walk.block().min(n - r0);
        walk.logits(&inputs, &target, ce.ignore_index, r0, rows);
        let mut part = walk.stats(ce, shard, rows, want)?;
        reduce.block(&mut part)?;
        part.finish(counts, &mut part_loss[..if per_row { rows } else { 1 }])?;
        // The reduced statistics, kept for the loss and row outputs of every row.
        stats.max[r0..r0 + rows].copy_from_slice(&part.max);
        stats.sums[w * r0..w * (r0 + rows)].copy_from_slice(&part.sums);
        if want == Want::Rows {
            stats.loc[r0..r0 + rows].copy_from_slice(&part.loc);
        }
        stats.source = part.source;
        if want_grad {
            let go = grad_output.map(|g| if per_row { &g[r0..r0 + rows] } else { g });
            let consts = part.row_grads(go)?;
            walk.grad(ce, shard, rows, &consts)?;
            walk.backprop(
                &inputs,
                r0,
                rows,
                (d, v),
                accumulate,
                &mut dh,
                &mut dw,
                &mut db,
            );
        }
        r0 += rows;
    }
    stats.stage = Stage::Rebased;
    stats.finish_rows(counts, loss_out, rows_out)
}
