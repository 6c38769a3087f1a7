//! The class-sharded linear cross-entropy: the shard's logits `h·W_shardᵀ + b_shard`
//! formed block by block, then the protocol of [`super::cross_entropy_shard_stats`].

use super::rows;
use super::scale::scale_in_place;
use super::{
    check_scalars, check_weight, new_stats, shard_plan, ClassShard, ShardLayout, ShardStats, Want,
};
use crate::driver::blocks::{pool_threads, ThreadScratch};
use crate::driver::linear::{
    as_acc, column_sums_into, hidden_grad_into, lhs_ld, logits_into, transpose_into,
    weight_grad_add, widen, Strided, Widened,
};
use crate::driver::shard::RowGrad;
use crate::dtype::{Element, Float};
use crate::entry::ElementEntry as Sealed;
use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::kernels::ptr::{ConstPtr, GradPtr, Ptr};
use crate::layout::Layout;
use crate::ops::check_indices;
use crate::ops::linear::{
    check_inputs, check_target_rows, LinearCrossEntropyOptions, LinearGradOut, LinearInputs,
};
use crate::options::{CrossEntropyOptions, GradMode};
use crate::sizes::{block_rows, MAX_BLOCK_ROWS, WIDEN_CLASSES, X_CLASS_CHUNK};
use crate::targets::Targets;

/// Step 1 of [`linear_cross_entropy`](crate::linear_cross_entropy) with the classes
/// split across processes: `inputs.linear_weight` holds this shard's rows of `W`
/// (`n × D`, classes `shard.offset..shard.offset + n` of `shard.classes`) and
/// `inputs.linear_bias` the same entries of `b`; `h` and the (global) class-index
/// targets are the same on every class shard. The logits `h·W_shardᵀ + b_shard` are
/// formed block by block and never held whole, in the blocks of rows of
/// [`linear_cross_entropy`](crate::linear_cross_entropy) (sized by the global class
/// count, the same on every shard); the protocol is then as for
/// [`cross_entropy_shard_stats`](super::cross_entropy_shard_stats). With gradients,
/// [`linear_cross_entropy_shard_into`](super::linear_cross_entropy_shard_into) runs
/// the whole protocol forming each block's logits once instead of twice.
///
/// # Errors
/// As [`linear_cross_entropy`](crate::linear_cross_entropy), checked against the
/// global class count; [`Error::InvalidArgument`] when the shard does not lie within it.
pub fn linear_cross_entropy_shard_stats<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
) -> Result<ShardStats> {
    linear_stats(inputs, target.into(), opts, shard, Want::Loss)
}

/// [`linear_cross_entropy_shard_stats`] with what the per-row outputs need, as
/// [`cross_entropy_shard_row_stats`](super::cross_entropy_shard_row_stats) for the
/// logits: finish with [`ShardStats::finish_rows`].
///
/// # Errors
/// As [`linear_cross_entropy_shard_stats`].
pub fn linear_cross_entropy_shard_row_stats<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
) -> Result<ShardStats> {
    linear_stats(inputs, target.into(), opts, shard, Want::Rows)
}

fn linear_stats<E: Element>(
    inputs: LinearInputs<'_, E>,
    target: ClassIndices<'_>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
    want: Want,
) -> Result<ShardStats> {
    let (n, _, v) = check_linear(&inputs, &target, opts, shard)?;
    let ce = &opts.cross_entropy;
    let targets = Targets::<E::Acc>::Indices(target);
    let mut stats = new_stats(&targets, n, ce, shard, v, want);
    let mut walk = LinearWalk::new(&inputs, opts, v, shard.classes);
    let mut r0 = 0;
    while r0 < n {
        let rows = walk.block.min(n - r0);
        walk.logits(&inputs, &target, ce.ignore_index, r0, rows);
        let layout = block_layout(rows, v, shard)?;
        let x = &mut walk.x[..rows * v];
        scale_in_place(x, ce.logit_scale);
        let targets = Targets::Indices(ClassIndices::from(&walk.t[..]));
        let plan = shard_plan(
            ConstPtr::new(&*x),
            GradPtr::None,
            &layout,
            &targets,
            ce,
            shard,
        );
        <E::Acc as Sealed>::run_shard_stats(
            &plan,
            &mut stats.rows[r0..r0 + rows],
            want == Want::Rows,
        );
        if want == Want::Rows {
            let (rows_r, loc) = (&stats.rows[r0..r0 + rows], &mut stats.loc[r0..r0 + rows]);
            rows::locate(rows_r, v, shard.offset, ce.softcap, loc);
        }
        r0 += rows;
    }
    for (m, r) in stats.max.iter_mut().zip(&stats.rows) {
        *m = r.m;
    }
    Ok(stats)
}

/// Step 3 of the class-sharded linear cross-entropy: the gradients that `grad` asks
/// for, from the finished `stats` of [`linear_cross_entropy_shard_stats`] (same
/// arguments). `∂W` and `∂b` of the shard's classes are complete; `∂h = G·W_shard` is
/// this shard's part of a sum: SUM-all-reduce it across the class shards. The logits
/// are formed again block by block.
///
/// # Errors
/// As [`linear_cross_entropy_shard_stats`]; [`Error::InvalidArgument`] when `stats`
/// is not finished or was made for another call; [`Error::OutputLength`] /
/// [`Error::GradOutputShape`] for buffers of the wrong size.
pub fn linear_cross_entropy_shard_grad_into<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
    stats: &ShardStats,
    grad: LinearGradOut<'_, E::Acc>,
) -> Result<()> {
    let target = target.into();
    let (n, d, v) = check_linear(&inputs, &target, opts, shard)?;
    let ce = &opts.cross_entropy;
    stats.check_call(n, v, shard, ce)?;
    grad.check_buffers((n, d, v))?;
    let consts = stats.row_grads(grad.grad_output)?;
    let accumulate = grad.mode == GradMode::Accumulate;
    let (mut dh, mut dw, mut db) = (grad.hidden, grad.linear_weight, grad.linear_bias);
    if !accumulate {
        for g in [dw.as_deref_mut(), db.as_deref_mut()].into_iter().flatten() {
            g.fill(E::Acc::ZERO);
        }
    }
    let mut walk = LinearWalk::new(&inputs, opts, v, shard.classes);
    let mut r0 = 0;
    while r0 < n {
        let rows = walk.block.min(n - r0);
        walk.logits(&inputs, &target, ce.ignore_index, r0, rows);
        scale_in_place(&mut walk.x[..rows * v], ce.logit_scale);
        walk.grad(ce, shard, rows, &consts[r0..r0 + rows])?;
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
        r0 += rows;
    }
    Ok(())
}

/// The layout of a block of `rows` logits rows of the shard's `v` classes.
fn block_layout(rows: usize, v: usize, shard: ClassShard) -> Result<ShardLayout> {
    Ok(ShardLayout {
        global: Layout::new(&[rows, shard.classes], rows * shard.classes)?,
        local_classes: v,
    })
}

/// Checks the linear form's operands on a shard; returns `(N, D, n)`.
pub(super) fn check_linear<E: Element>(
    inputs: &LinearInputs<'_, E>,
    target: &ClassIndices<'_>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
) -> Result<(usize, usize, usize)> {
    let (n, d, v) = match check_inputs(inputs) {
        // A shard may hold no classes (more ranks than classes); the global count is
        // checked below.
        Err(Error::NoClasses { .. }) => (inputs.hidden_shape[0], inputs.hidden_shape[1], 0),
        other => other?,
    };
    shard.check(v)?;
    check_target_rows(n, target.len())?;
    let ce = &opts.cross_entropy;
    let global = Layout::new(&[n, shard.classes], n.saturating_mul(shard.classes))?;
    check_scalars(ce)?;
    check_weight(ce.weight, &global)?;
    check_indices(target, &global, ce.ignore_index)?;
    Ok((n, d, v))
}

/// The row blocks of the linear form: the block's logits (and, for the gradient,
/// their backward GEMMs), as [`linear_cross_entropy`](crate::linear_cross_entropy)
/// forms them.
pub(super) struct LinearWalk<'w, E: Element> {
    block: usize,
    /// The shard's class count `n`: the columns of a block of logits.
    classes: usize,
    x: Vec<E::Acc>,
    ht: Vec<E::Acc>,
    t: Vec<i64>,
    tiles: ThreadScratch<E::Acc>,
    weight: Widened<'w, E>,
    bias: Option<std::borrow::Cow<'w, [E::Acc]>>,
    /// The GEMM engine (f32, bf16, f16 inputs); `None`: the `gemm` crate (f64).
    engine: Option<crate::gemm::LinearGemm<'w>>,
}

impl<'w, E: Element> LinearWalk<'w, E> {
    /// A walk over the shard's `v` classes in blocks of the rows that fit the scratch
    /// budget with all `classes` (global) classes: the blocks of the single-process
    /// call, the same on every class shard whatever its own class count (the one-pass
    /// form's collectives run per block, and the shards' results do not depend on
    /// how the classes are split).
    pub(super) fn new(
        inputs: &LinearInputs<'w, E>,
        opts: &LinearCrossEntropyOptions<'_, E::Acc>,
        v: usize,
        classes: usize,
    ) -> Self {
        let [n, d] = inputs.hidden_shape;
        let (elem, acc) = (size_of::<E>(), size_of::<E::Acc>());
        let max_rows = MAX_BLOCK_ROWS * elem / acc;
        let block = block_rows(n, (d, classes), acc, opts.scratch_bytes, max_rows);
        let engine = crate::gemm::LinearGemm::new::<E, E::Acc>(
            inputs.hidden,
            inputs.linear_weight,
            (d, v),
            opts.grad_precision,
        );
        // The gemm crate's copies and tiles, for the f64 path only.
        let threads = pool_threads() * usize::from(engine.is_none());
        let old = usize::from(engine.is_none());
        LinearWalk {
            block,
            classes: v,
            x: vec![E::Acc::ZERO; block * v],
            ht: vec![E::Acc::ZERO; lhs_ld(block) * d * old],
            t: Vec::with_capacity(block),
            tiles: ThreadScratch::new(threads, lhs_ld(block) * X_CLASS_CHUNK.min(v), E::Acc::ZERO),
            weight: Widened::new(inputs.linear_weight, threads, WIDEN_CLASSES.min(v) * d),
            bias: inputs.linear_bias.map(|b| widen(b)),
            engine,
        }
    }

    /// Rows per block (0 for no rows).
    pub(super) fn block(&self) -> usize {
        self.block
    }

    /// Forms the logits of rows `r0..r0 + rows` and their targets.
    pub(super) fn logits(
        &mut self,
        inputs: &LinearInputs<'_, E>,
        target: &ClassIndices<'_>,
        ignore_index: i64,
        r0: usize,
        rows: usize,
    ) -> (&[E::Acc], ClassIndices<'_>) {
        let [_, d] = inputs.hidden_shape;
        let v = self.classes;
        let h_block = &inputs.hidden[r0 * d..(r0 + rows) * d];
        let ld = lhs_ld(rows);
        let x = &mut self.x[..rows * v];
        if let (true, Some(engine)) = (v > 0, self.engine.as_mut()) {
            engine.logits(r0, rows, self.bias.as_deref(), x);
        } else if v > 0 {
            transpose_into(h_block, (rows, d), d, &mut self.ht[..ld * d], ld);
            logits_into(
                &self.ht[..ld * d],
                (rows, ld),
                &self.weight,
                self.bias.as_deref(),
                (d, v),
                x,
                &self.tiles,
            );
        }
        self.t.clear();
        self.t.extend((r0..r0 + rows).map(|r| {
            target
                .class_at(r, ignore_index)
                .map_or(ignore_index, |y| y as i64)
        }));
        (&self.x[..rows * v], ClassIndices::from(&self.t[..]))
    }

    /// The partial statistics of the block of `rows` rows (its logits formed
    /// by [`LinearWalk::logits`]), as [`linear_cross_entropy_shard_stats`] (or, for
    /// `Want::Rows`, [`linear_cross_entropy_shard_row_stats`]) makes them for these
    /// rows. Leaves the block's logits scaled by the logit scale, for
    /// [`LinearWalk::grad`].
    pub(super) fn stats(
        &mut self,
        ce: &CrossEntropyOptions<'_, E::Acc>,
        shard: ClassShard,
        rows: usize,
        want: Want,
    ) -> Result<ShardStats> {
        let v = self.classes;
        let layout = block_layout(rows, v, shard)?;
        let targets = Targets::Indices(ClassIndices::from(&self.t[..]));
        let mut part = new_stats(&targets, rows, ce, shard, v, want);
        let x = &mut self.x[..rows * v];
        scale_in_place(x, ce.logit_scale);
        let plan = shard_plan(
            ConstPtr::new(&*x),
            GradPtr::None,
            &layout,
            &targets,
            ce,
            shard,
        );
        <E::Acc as Sealed>::run_shard_stats(&plan, &mut part.rows, want == Want::Rows);
        if want == Want::Rows {
            rows::locate(&part.rows, v, shard.offset, ce.softcap, &mut part.loc);
        }
        for (m, r) in part.max.iter_mut().zip(&part.rows) {
            *m = r.m;
        }
        Ok(part)
    }

    /// Overwrites the block's scaled logits (left by [`LinearWalk::stats`]) with the
    /// logit gradient of its `rows` rows, from their gradient constants `consts`, with
    /// respect to the unscaled logits: what [`LinearWalk::backprop`] folds back.
    pub(super) fn grad(
        &mut self,
        ce: &CrossEntropyOptions<'_, E::Acc>,
        shard: ClassShard,
        rows: usize,
        consts: &[RowGrad],
    ) -> Result<()> {
        let v = self.classes;
        let layout = block_layout(rows, v, shard)?;
        let x = &mut self.x[..rows * v];
        let targets = Targets::Indices(ClassIndices::from(&self.t[..]));
        // The logit gradient overwrites the block's logits (read before written).
        let xp = Ptr::new(x);
        let plan = shard_plan(
            xp.as_const(),
            GradPtr::Same(xp),
            &layout,
            &targets,
            ce,
            shard,
        );
        <E::Acc as Sealed>::run_shard_grad(&plan, consts);
        scale_in_place(x, ce.logit_scale);
        Ok(())
    }

    /// Folds the block's logit gradient (in `self.x`) back into `dh`, `dW`, `db`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backprop(
        &mut self,
        inputs: &LinearInputs<'_, E>,
        r0: usize,
        rows: usize,
        (d, v): (usize, usize),
        accumulate: bool,
        dh: &mut Option<&mut [E::Acc]>,
        dw: &mut Option<&mut [E::Acc]>,
        db: &mut Option<&mut [E::Acc]>,
    ) {
        if v > 0 {
            if let Some(engine) = self.engine.as_mut() {
                // db first: the engine may round G to bf16 in place for dh and dW.
                if let Some(db) = db.as_deref_mut() {
                    column_sums_into(&self.x[..rows * v], v, db);
                }
                let dh_block = dh.as_deref_mut().map(|dh| &mut dh[r0 * d..(r0 + rows) * d]);
                let g = &mut self.x[..rows * v];
                engine.backward(r0, rows, g, accumulate, dh_block, dw.as_deref_mut());
                return;
            }
        }
        let g = &self.x[..rows * v];
        if let Some(dh) = dh.as_deref_mut() {
            let dh_block = &mut dh[r0 * d..(r0 + rows) * d];
            if v == 0 {
                if !accumulate {
                    dh_block.fill(E::Acc::ZERO);
                }
            } else {
                hidden_grad_into(g, rows, &self.weight, (d, v), accumulate, dh_block);
            }
        }
        if v == 0 {
            return;
        }
        let h_block = &inputs.hidden[r0 * d..(r0 + rows) * d];
        if let Some(dw) = dw.as_deref_mut() {
            let ld = lhs_ld(rows);
            // h_block itself, or its widened column-major copy (left by `logits`).
            let hb = match as_acc(h_block) {
                Some(h) => Strided::new(h, d, 1),
                None => Strided::new(&self.ht[..ld * d], 1, ld),
            };
            weight_grad_add(g, hb, rows, (d, v), dw, &self.tiles);
        }
        if let Some(db) = db.as_deref_mut() {
            column_sums_into(g, v, db);
        }
    }
}
