//! The cross-entropy and softmax driver: a call's [`CePlan`] cut into blocks of rows
//! (contiguous or K-dim) for the fused kernels, long rows' pieces spread across
//! threads, the block sums reduced in block order.

use crate::driver::blocks::{blocks, with_scratch, Blocks};
use crate::kernels::dispatch::{dispatch, Isa};
use crate::kernels::f64_path;
use crate::kernels::fused::{long_scratch_len, run_ce_block, BlockSums, LongRow};
use crate::kernels::num::Storage;
use crate::kernels::plan::CePlan;
use crate::kernels::ptr::{ConstPtr, GradPtr, Ptr};
use crate::kernels::simd::Store32;
use crate::reduce::CompensatedSum;
use crate::sizes::{scratch_len, LONG_ROW, PIECE, STREAM_BYTES};

fn fold(sums: Vec<BlockSums>) -> (f64, f64) {
    let mut total = CompensatedSum::default();
    let mut ztotal = CompensatedSum::default();
    for (a, b) in sums {
        total.merge(a);
        ztotal.merge(b);
    }
    (total.value(), ztotal.value())
}

/// Cross-entropy of f32-computed data (f32, bf16, f16) on the SIMD kernels.
pub(crate) fn ce_simd<E: Storage<Acc = f32> + Store32>(plan: &CePlan<'_, E>) -> (f64, f64) {
    match plan.grad {
        GradPtr::None => ce_simd_into::<E, E>(plan, None),
        GradPtr::Same(g) => ce_simd_into::<E, E>(plan, Some(g)),
        GradPtr::Acc(g) => ce_simd_into::<E, f32>(plan, Some(g)),
    }
}

/// Cross-entropy of f64 data on the portable kernels.
pub(crate) fn ce_f64(plan: &CePlan<'_, f64>) -> (f64, f64) {
    let g = match plan.grad {
        GradPtr::None => None,
        GradPtr::Same(g) | GradPtr::Acc(g) => Some(g),
    };
    ce_f64_into(plan, g)
}

/// softmax / log_softmax of f64 data.
pub(crate) fn softmax_f64(
    x: ConstPtr<f64>,
    out: Ptr<f64>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    blocks((outer, c, inner), |n0, n1| {
        for n in n0..n1 {
            for i in 0..inner {
                let off = n * c * inner + i;
                // SAFETY: the block's rows lie in the buffers (checked by the ops
                // layer); blocks are disjoint.
                unsafe { f64_path::softmax_row(x.at(off), out.at(off), c, inner, log) };
            }
        }
    });
}

/// Backward of softmax / log_softmax of f64 data.
pub(crate) fn backward_f64(
    y: ConstPtr<f64>,
    gy: ConstPtr<f64>,
    gx: Ptr<f64>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    blocks((outer, c, inner), |n0, n1| {
        for n in n0..n1 {
            for i in 0..inner {
                let off = n * c * inner + i;
                // SAFETY: as in `softmax_f64`.
                unsafe {
                    f64_path::softmax_backward_row(y.at(off), gy.at(off), gx.at(off), c, inner, log)
                };
            }
        }
    });
}

pub(crate) fn softmax_simd<E: Storage<Acc = f32> + Store32>(
    x: ConstPtr<E>,
    out: Ptr<E>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    let isa = Isa::active();
    blocks((outer, c, inner), |n0, n1| {
        let off = n0 * c * inner;
        // SAFETY: the block's rows lie in the buffers (checked by the ops layer).
        let (x, out) = unsafe { (x.at(off), out.at(off)) };
        let job = crate::kernels::fused::SoftmaxJob {
            x,
            out,
            outer: n1 - n0,
            classes: c,
            inner,
            log,
        };
        dispatch(isa, job);
    });
}

pub(crate) fn backward_simd<E: Storage<Acc = f32> + Store32>(
    y: ConstPtr<E>,
    gy: ConstPtr<E>,
    gx: Ptr<E>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    let isa = Isa::active();
    blocks((outer, c, inner), |n0, n1| {
        let off = n0 * c * inner;
        // SAFETY: the block's rows lie in the buffers (checked by the ops layer).
        let (y, gy, gx) = unsafe { (y.at(off), gy.at(off), gx.at(off)) };
        let job = crate::kernels::fused::BackwardJob {
            y,
            gy,
            gx,
            outer: n1 - n0,
            classes: c,
            inner,
            log,
        };
        dispatch(isa, job);
    });
}

/// Whether a gradient of `len` elements of `G` is written with streaming stores: from
/// [`STREAM_BYTES`] on (in tests, as [`force_stream`] says when it is set).
fn streams<G>(len: usize) -> bool {
    #[cfg(test)]
    if let Some(forced) = FORCE_STREAM.with(|f| f.get()) {
        return forced;
    }
    len.saturating_mul(core::mem::size_of::<G>()) >= STREAM_BYTES
}

#[cfg(test)]
thread_local! {
    static FORCE_STREAM: core::cell::Cell<Option<bool>> = const { core::cell::Cell::new(None) };
}

/// Runs `f` with every gradient of this thread's calls streamed (`Some(true)`),
/// never streamed (`Some(false)`) or as its size says (`None`): the streaming paths
/// tested at sizes a test can afford.
#[cfg(test)]
pub(crate) fn force_stream<R>(forced: Option<bool>, f: impl FnOnce() -> R) -> R {
    let old = FORCE_STREAM.with(|c| c.replace(forced));
    let r = f();
    FORCE_STREAM.with(|c| c.set(old));
    r
}

fn ce_simd_into<E: Storage<Acc = f32> + Store32, G: Store32>(
    plan: &CePlan<'_, E>,
    g: Option<Ptr<G>>,
) -> (f64, f64) {
    let (outer, c, inner) = plan.dims();
    let isa = Isa::active();
    if inner == 1 && c >= LONG_ROW {
        return ce_long_rows::<E, G>(plan, g, isa);
    }
    let stream = streams::<G>(outer * c * inner);
    let sums = blocks((outer, c, inner), |n0, n1| {
        with_scratch(scratch_len(c, inner), |scratch| {
            run_ce_block(isa, plan.block((n0, n1), g, scratch, stream))
        })
    });
    fold(sums)
}

/// Rows of at least [`LONG_ROW`] classes, one after the other, each split in pieces
/// of [`PIECE`] classes across threads: every step of a row runs its pieces in
/// parallel, and their statistics come back in piece order.
fn ce_long_rows<E: Storage<Acc = f32> + Store32, G: Store32>(
    plan: &CePlan<'_, E>,
    g: Option<Ptr<G>>,
    isa: Isa,
) -> (f64, f64) {
    let pieces = Blocks::new(plan.rows.classes, PIECE);
    let stream = streams::<G>(plan.outer * plan.rows.classes);
    let scratch_len = long_scratch_len::<G>(&plan.rows, g.is_some(), stream);
    with_scratch(scratch_len, |scratch| {
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        for r in 0..plan.outer {
            // SAFETY: r is a row of the call, whose rows are contiguous (inner = 1);
            // g is its gradient.
            let row = unsafe { LongRow::new(plan, r, g, scratch, isa, stream) };
            let end = if row.ignored() {
                // Read before the gradient is cleared: it may be the logits.
                if row.needs_stats() {
                    let stats = pieces.map(|cols| row.stats(cols));
                    row.finish(&stats);
                }
                if row.clears_grad() {
                    pieces.for_each(|cols| row.zero(cols));
                }
                None
            } else {
                let stats = pieces.map(|cols| row.stats(cols));
                let end = row.finish(&stats);
                if let (Some(end), true) = (&end, row.has_grad()) {
                    pieces.for_each(|cols| row.grad(cols, &stats, end));
                }
                end
            };
            let (loss, zt) = row.end(end);
            total.add(loss as f64);
            ztotal.add(zt as f64);
        }
        (total.value(), ztotal.value())
    })
}

/// The portable f64 path: blocks in parallel, scalar kernels.
fn ce_f64_into(plan: &CePlan<'_, f64>, g: Option<Ptr<f64>>) -> (f64, f64) {
    let (outer, c, inner) = plan.dims();
    let rows = &plan.rows;
    let sums = blocks((outer, c, inner), |n0, n1| {
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        for n in n0..n1 {
            for i in 0..inner {
                let r = n * inner + i;
                let off = n * c * inner + i;
                let class = rows.class_of(r);
                let (scale_ce, scale_z) = rows.scale.at(r);
                // SAFETY: the row lies within the buffers (checked by the ops
                // layer).
                let row = unsafe {
                    f64_path::RowArgs {
                        x: plan.x.at(off),
                        t: plan.probs.map(|t| t.at(off)),
                        g: g.map(|g| g.at(off)),
                        c,
                        stride: inner,
                        accumulate: rows.accumulate,
                    }
                };
                let p = f64_path::RowParams {
                    target: class,
                    plan: rows,
                    scale_ce,
                    scale_z,
                };
                // Read before the row's gradient, which may overwrite the logits.
                let outs = rows.out.any().then(|| {
                    let xf = f64_path::Xf::of(&rows.opts);
                    // SAFETY: the row lies within the buffers.
                    unsafe { f64_path::row_outputs(row.x, c, inner, xf) }
                });
                // SAFETY: the row lies within the buffers (checked by the ops
                // layer); blocks are disjoint.
                let (loss, zt) = unsafe { f64_path::cross_entropy_row(row, &p) };
                if let Some((lse, entropy, arg)) = outs {
                    let z = if class.is_some() || plan.probs.is_some() {
                        rows.opts.z_loss * lse * lse
                    } else {
                        0.0
                    };
                    // SAFETY: r < rows, one output each.
                    unsafe { rows.out.write(r, lse, entropy, arg, z) };
                }
                if let Some(l) = rows.loss_out {
                    // SAFETY: r < rows, one loss each.
                    unsafe { *l.at(r) = loss + zt };
                }
                total.add(loss);
                ztotal.add(zt);
            }
        }
        (total, ztotal)
    });
    fold(sums)
}
