//! The cross-entropy and softmax driver: blocks of rows (contiguous or K-dim) on
//! the fused kernels, long rows split across threads, the block sums reduced in
//! block order.

use crate::driver::blocks::{blocks, with_scratch, Blocks};
use crate::driver::ptr::{ConstPtr, GradPtr, Ptr, Shared};
use crate::indices::ClassIndices;
use crate::kernels::dispatch::{dispatch, Isa};
use crate::kernels::f64_path;
pub(crate) use crate::kernels::fused::Scale;
use crate::kernels::fused::{
    finish, run_ce_block, AnyCoef, BlockSums, CeConsts, CeJob, PieceJob, PieceStep, RowStart,
};
use crate::kernels::num::Storage;
use crate::kernels::row::{shift, Identity, Probs, RowStats, SoftCap};
use crate::kernels::simd::Store32;
use crate::reduce::CompensatedSum;
use crate::sizes::{scratch_len, LONG_ROW, MAX_STORED_CHUNKS, PIECE, STREAM_BYTES};
use core::ptr::NonNull;

/// A validated cross-entropy call: what the ops layer hands the driver.
pub struct CeCall<'a, T: Storage> {
    pub x: ConstPtr<T>,
    pub grad: GradPtr<T>,
    pub accumulate: bool,
    /// Probability targets.
    pub probs: Option<ConstPtr<T>>,
    pub idx: Option<(ClassIndices<'a>, i64)>,
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    pub weight: Option<&'a [T::Acc]>,
    pub weight_sum: f64,
    /// Label smoothing `ε`.
    pub label_smoothing: f64,
    /// The z-loss scale.
    pub z_loss: f64,
    /// Logit soft-capping.
    pub softcap: Option<f64>,
    /// Uniform (ce, z) scales, or per-row upstream gradients.
    pub scale: Scale<'a, T::Acc>,
    /// Per-row losses (reduction none).
    pub loss_out: Option<Ptr<T::Acc>>,
}

impl<T: Storage> CeCall<'_, T> {
    /// The class of row `r`, `None` when it is ignored or the targets are probabilities.
    #[inline]
    fn class_of(&self, r: usize) -> Option<usize> {
        self.idx.and_then(|(idx, ignore)| idx.class_at(r, ignore))
    }
}

// SAFETY: the raw pointers follow `Ptr`'s rules; the rest is shared data.
unsafe impl<T: Storage> Sync for CeCall<'_, T> {}

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
pub(crate) fn ce_simd<E: Storage<Acc = f32> + Store32>(call: &CeCall<'_, E>) -> (f64, f64) {
    match call.grad {
        GradPtr::None => ce_simd_into::<E, E>(call, None),
        GradPtr::Same(g) => ce_simd_into::<E, E>(call, Some(g)),
        GradPtr::Acc(g) => ce_simd_into::<E, f32>(call, Some(g)),
    }
}

/// Cross-entropy of f64 data on the portable kernels.
pub(crate) fn ce_f64(call: &CeCall<'_, f64>) -> (f64, f64) {
    let g = match call.grad {
        GradPtr::None => None,
        GradPtr::Same(g) | GradPtr::Acc(g) => Some(g),
    };
    ce_f64_into(call, g)
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

fn ce_simd_into<E: Storage<Acc = f32> + Store32, G: Store32>(
    call: &CeCall<'_, E>,
    g: Option<Ptr<G>>,
) -> (f64, f64) {
    let (outer, c, inner) = (call.outer, call.classes, call.inner);
    let isa = Isa::active();
    let consts = CeConsts {
        eps: call.label_smoothing as f32,
        classes: c as f32,
        z: call.z_loss as f32,
    };
    if inner == 1 && c >= LONG_ROW {
        return ce_long_rows::<E, G>(call, g, consts, isa);
    }
    let stream = outer * c * inner * core::mem::size_of::<G>() >= STREAM_BYTES;
    let sums = blocks((outer, c, inner), |n0, n1| {
        let (off, row0) = (n0 * c * inner, n0 * inner);
        let rows = (n1 - n0) * inner;
        let scale = call.scale.rows(row0, rows);
        // SAFETY: the block's rows (and their losses) lie in the buffers (checked by
        // the ops layer); blocks are disjoint.
        let job = unsafe {
            CeJob {
                x: call.x.at(off),
                g: g.map(|g| NonNull::new_unchecked(g.at(off))),
                accumulate: call.accumulate,
                t: call
                    .probs
                    .map(|t| NonNull::new_unchecked(t.at(off) as *mut E)),
                idx: call.idx,
                row0,
                outer: n1 - n0,
                classes: c,
                inner,
                weight: call.weight,
                consts,
                cap: call.softcap.map(|c| c as f32),
                scale,
                loss_out: call.loss_out.map(|l| NonNull::new_unchecked(l.at(row0))),
                scratch: None,
                stream,
            }
        };
        with_scratch(scratch_len(c, inner), |scratch| {
            run_ce_block(isa, CeJob { scratch, ..job })
        })
    });
    fold(sums)
}

/// Rows of at least [`LONG_ROW`] classes, one after the other, each split in pieces
/// across threads.
fn ce_long_rows<E: Storage<Acc = f32> + Store32, G: Store32>(
    call: &CeCall<'_, E>,
    g: Option<Ptr<G>>,
    consts: CeConsts,
    isa: Isa,
) -> (f64, f64) {
    let c = call.classes;
    let cap = call.softcap.map(|c| c as f32);
    // Without soft-capping, each chunk's exps are stored by the statistics pass and
    // the gradient pass only rescales them: in the gradient itself when it is f32
    // and overwritten, else in a scratch row of C f32 (kept by this thread).
    let store = cap.is_none() && g.is_some();
    let in_grad = G::IS_F32 && !call.accumulate;
    let scratch_len = if store && !in_grad { c } else { 0 };
    with_scratch(scratch_len, |scratch| {
        let scratch = scratch.map(Ptr);
        long_rows_with::<E, G>(call, g, consts, isa, store, in_grad, scratch)
    })
}

/// [`ce_long_rows`] with its stored-exp choice made: `store` (exps are kept) in the
/// gradient (`in_grad`) or in `scratch` (C f32).
fn long_rows_with<E: Storage<Acc = f32> + Store32, G: Store32>(
    call: &CeCall<'_, E>,
    g: Option<Ptr<G>>,
    consts: CeConsts,
    isa: Isa,
    store: bool,
    in_grad: bool,
    scratch: Option<Ptr<f32>>,
) -> (f64, f64) {
    let c = call.classes;
    let w = call.weight.map(|w| w.as_ptr());
    let cap = call.softcap.map(|c| c as f32);
    let mut total = CompensatedSum::default();
    let mut ztotal = CompensatedSum::default();
    // The row's pieces: blocks of PIECE classes.
    let pieces = Blocks::new(c, PIECE);
    for r in 0..call.outer {
        // SAFETY: row r lies in the buffers (checked by the ops layer).
        let (x, gr, t) = unsafe {
            (
                call.x.add(r * c),
                g.map(|g| g.add(r * c)),
                call.probs.map(|t| t.add(r * c)),
            )
        };
        let coef = match t {
            Some(t) => AnyCoef::Probs(Probs {
                // SAFETY: the row's targets.
                t: unsafe { t.at(0) },
                w,
                keep: 1.0 - consts.eps,
                spread: consts.eps / consts.classes,
            }),
            None if consts.eps > 0.0 => w.map_or(AnyCoef::Ones, AnyCoef::Weights),
            None => AnyCoef::None,
        };
        let class = call.class_of(r);
        let (scale_ce, scale_z) = call.scale.at(r);
        // SAFETY: row r of C classes (and its gradient) lies in the buffers; y < C.
        let start = unsafe {
            let g = gr.map(|g| g.at(0));
            let (probs, x, w) = (t.is_some(), x.at(0), call.weight);
            match cap {
                None => RowStart::read(Identity, x, g, probs, class, w, call.accumulate),
                Some(cap) => {
                    RowStart::read(SoftCap { cap }, x, g, probs, class, w, call.accumulate)
                }
            }
        };
        let shared = Shared(coef);
        let piece = |start: usize, step: PieceStep<G>| {
            PieceJob::<E, G> {
                // SAFETY: start < C.
                x: unsafe { x.at(start) },
                n: PIECE.min(c - start),
                // SAFETY: start < C.
                coef: unsafe { shared.get().offset(start) },
                cap,
                step,
            }
        };
        // Where the exps go: the row's gradient (`G::IS_F32` makes the cast exact)
        // or the scratch row.
        let e_row = match gr {
            Some(gr) if in_grad => Some(gr.cast::<f32>()),
            _ => scratch,
        };
        let (loss, zt) = match start.target {
            None => {
                if let (Some(gr), false) = (gr, call.accumulate) {
                    pieces.for_each(|cols| {
                        for j in cols {
                            // SAFETY: j < C, within the row of the gradient.
                            unsafe { *gr.at(j) = G::from_f32(0.0) }
                        }
                    });
                }
                (0.0, 0.0)
            }
            Some(target) => {
                let stats: Vec<(RowStats<f32>, [f32; MAX_STORED_CHUNKS])> = pieces.map(|cols| {
                    let step = match e_row {
                        // SAFETY: cols.start < C, within the row of exps.
                        Some(e) if store => PieceStep::StatsStore(unsafe { e.at(cols.start) }),
                        _ => PieceStep::Stats,
                    };
                    dispatch(isa, piece(cols.start, step))
                });
                let p = stats
                    .iter()
                    .map(|s| s.0)
                    .fold(RowStats::EMPTY, RowStats::merge);
                let (loss, zt, k) = finish(p, target, &consts, scale_ce, scale_z);
                if let Some(gr) = gr {
                    let ms = shift(p.m);
                    pieces.for_each(|cols| {
                        let (start, j) = (cols.start, cols.start / PIECE);
                        // SAFETY: start < C, within the rows of exps and gradient.
                        let step = unsafe {
                            match e_row {
                                Some(e) if store => PieceStep::Rescale(
                                    e.at(start) as *const f32,
                                    gr.at(start),
                                    stats[j].1,
                                    ms,
                                    k,
                                    call.accumulate,
                                ),
                                _ => PieceStep::Grad(gr.at(start), ms, k, call.accumulate),
                            }
                        };
                        dispatch(isa, piece(start, step));
                    });
                    // SAFETY: the row's gradient; y < C.
                    unsafe {
                        let (g, a_y) = (gr.at(0), |y| coef.scalar_at(y));
                        match cap {
                            None => start.write_target_grad(Identity, g, a_y, ms, k),
                            Some(cap) => start.write_target_grad(SoftCap { cap }, g, a_y, ms, k),
                        }
                    }
                }
                (loss, zt)
            }
        };
        if let Some(l) = call.loss_out {
            // SAFETY: r < rows, one loss each.
            unsafe { *l.at(r) = loss + zt };
        }
        total.add(loss as f64);
        ztotal.add(zt as f64);
    }
    (total.value(), ztotal.value())
}

/// The portable f64 path: blocks in parallel, scalar kernels.
fn ce_f64_into(call: &CeCall<'_, f64>, g: Option<Ptr<f64>>) -> (f64, f64) {
    let (outer, c, inner) = (call.outer, call.classes, call.inner);
    let sums = blocks((outer, c, inner), |n0, n1| {
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        for n in n0..n1 {
            for i in 0..inner {
                let r = n * inner + i;
                let off = n * c * inner + i;
                let class = call.class_of(r);
                let (scale_ce, scale_z) = call.scale.at(r);
                // SAFETY: the row lies within the buffers (checked by the ops
                // layer).
                let row = unsafe {
                    f64_path::RowArgs {
                        x: call.x.at(off),
                        t: call.probs.map(|t| t.at(off)),
                        g: g.map(|g| g.at(off)),
                        c,
                        stride: inner,
                        accumulate: call.accumulate,
                    }
                };
                let p = f64_path::RowParams {
                    target: class,
                    weight: call.weight,
                    weight_sum: call.weight_sum,
                    eps: call.label_smoothing,
                    z: call.z_loss,
                    cap: call.softcap,
                    scale_ce,
                    scale_z,
                };
                // SAFETY: the row lies within the buffers (checked by the ops
                // layer); blocks are disjoint.
                let (loss, zt) = unsafe { f64_path::cross_entropy_row(row, &p) };
                if let Some(l) = call.loss_out {
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
