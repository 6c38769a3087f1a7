//! A contiguous row too long for one thread ([`LONG_ROW`](crate::sizes::LONG_ROW)
//! classes or more), as steps on its pieces of [`PIECE`] classes: the statistics of
//! a piece, the row's finish from the pieces' statistics, the gradient of a piece,
//! and the row's end (the target class's exact gradient, its loss). The driver
//! ([`crate::driver::ce`]) runs the pieces of a step across threads, in any order,
//! and hands the pieces' statistics back in piece order.

use super::job::{finish, RowStart};
use super::rows::{PieceJob, PieceStats, PieceStep};
use crate::kernels::dispatch::{dispatch, Isa};
use crate::kernels::num::Storage;
use crate::kernels::plan::{CePlan, RowPlan};
use crate::kernels::ptr::{ConstPtr, Ptr};
use crate::kernels::row::{row_outputs, shift, Coefs, GradConsts, OutStats, RowStats};
use crate::kernels::simd::Store32;
use crate::kernels::xform::with_xform;
use crate::sizes::PIECE;
use core::ops::Range;

/// A finished row: its loss without the z term, the z term, the shift and the
/// gradient constants.
pub(crate) struct RowEnd {
    loss: f32,
    zt: f32,
    ms: f32,
    k: GradConsts<f32>,
}

/// Row `r` of a call of long contiguous rows.
pub(crate) struct LongRow<'p, E, G> {
    plan: &'p RowPlan<'p, f32>,
    isa: Isa,
    r: usize,
    x: ConstPtr<E>,
    g: Option<Ptr<G>>,
    coef: Coefs<E>,
    start: RowStart,
    /// Where the statistics pass stores each chunk's exps, when it does: the row's
    /// gradient (f32, overwritten) or the driver's scratch row of C f32.
    e: Option<Ptr<f32>>,
    /// Whether the gradient is large, and written with streaming stores from its
    /// logits (nothing stored by the statistics pass).
    stream: bool,
}

// SAFETY: the pointers are the call's (read, or written in the disjoint pieces the
// driver hands each thread) and stay valid for the whole call.
unsafe impl<E: Sync, G: Send + Sync> Sync for LongRow<'_, E, G> {}

/// The f32 a thread's scratch must hold for the long rows of `plan` with a gradient
/// (`grad`) in `G`, streamed past the caches or not (`stream`): without a transform
/// (scale, soft-cap), each chunk's exps are stored by the statistics pass and the
/// gradient pass only rescales them, in the gradient itself when it is f32 and
/// overwritten, else in a scratch row of C f32. A streamed gradient stores nothing:
/// its pass recomputes the exps a chunk at a time (a scratch row as long as a
/// gradient that large would not stay in cache either).
pub(crate) fn long_scratch_len<G: Store32>(
    plan: &RowPlan<'_, f32>,
    grad: bool,
    stream: bool,
) -> usize {
    let store = plan.lane.transform().is_identity() && grad && !stream;
    let in_grad = G::IS_F32 && !plan.accumulate;
    if store && !in_grad {
        plan.classes
    } else {
        0
    }
}

impl<'p, E: Storage<Acc = f32> + Store32, G: Store32> LongRow<'p, E, G> {
    /// Row `r` of `plan`, whose gradient (in `G`) is `g`, streamed past the caches
    /// or not (`stream`); `scratch` holds [`long_scratch_len`] f32. Reads the row's
    /// target, and what the passes overwrite that the target's gradient needs.
    ///
    /// # Safety
    /// `r` is a row of the call (`inner == 1`), and `g` the call's gradient.
    pub(crate) unsafe fn new(
        call: &'p CePlan<'p, E>,
        r: usize,
        g: Option<Ptr<G>>,
        scratch: Option<Ptr<f32>>,
        isa: Isa,
        stream: bool,
    ) -> Self {
        let plan = &call.rows;
        let c = plan.classes;
        // SAFETY: row r of C classes (and its gradient) lies in the buffers; y < C.
        unsafe {
            let (x, g, t) = (
                call.x.add(r * c),
                g.map(|g| g.add(r * c)),
                call.probs.map(|t| t.add(r * c)),
            );
            let coef = plan.coefs(t.map(|t| t.as_ptr()));
            let class = plan.class_of(r);
            let (gp, xp, w) = (g.map(|g| g.as_ptr()), x.as_ptr(), plan.weight);
            let acc = plan.accumulate;
            let start = with_xform!(plan.lane.transform(), xf =>
                RowStart::read(xf, xp, gp, t.is_some(), class, w, acc));
            let store = plan.lane.transform().is_identity() && g.is_some() && !stream;
            let stream = g.is_some() && stream;
            // Not over the logits themselves when the row outputs read them after
            // the statistics pass (the argmax scan).
            let alias = plan.out.any() && gp.map(|g| g as *const u8) == Some(xp as *const u8);
            let e = match g {
                Some(g) if store && G::IS_F32 && !acc && !alias => Some(g.cast::<f32>()),
                _ if store => scratch,
                _ => None,
            };
            LongRow {
                plan,
                isa,
                r,
                x,
                g,
                coef,
                start,
                e,
                stream,
            }
        }
    }

    /// Whether the row is ignored (it has no loss; its gradient is 0).
    pub(crate) fn ignored(&self) -> bool {
        self.start.target.is_none()
    }

    /// Whether the row has a gradient to write.
    pub(crate) fn has_grad(&self) -> bool {
        self.g.is_some()
    }

    /// Whether an ignored row's gradient must be cleared (it is overwritten).
    pub(crate) fn clears_grad(&self) -> bool {
        self.g.is_some() && !self.plan.accumulate
    }

    /// The piece of classes `start..`, one step of it.
    fn piece(&self, start: usize, step: PieceStep<G>) -> PieceJob<E, G> {
        let c = self.plan.classes;
        PieceJob {
            // SAFETY: start < C.
            x: unsafe { self.x.at(start) },
            n: PIECE.min(c - start),
            // SAFETY: start < C.
            coef: unsafe { self.coef.offset(start) },
            xform: self.plan.lane.transform(),
            step,
            out: self.plan.out.any(),
        }
    }

    /// Clears the gradient of the piece `cols` of an ignored row.
    pub(crate) fn zero(&self, cols: Range<usize>) {
        if let Some(g) = self.g {
            for j in cols {
                // SAFETY: j < C, within the row of the gradient.
                unsafe { *g.at(j) = G::from_f32(0.0) }
            }
        }
    }

    /// The statistics of the piece `cols` (storing its exps when the row does).
    pub(crate) fn stats(&self, cols: Range<usize>) -> PieceStats {
        let step = match self.e {
            // SAFETY: cols.start < C, within the row of exps.
            Some(e) => PieceStep::StatsStore(unsafe { e.at(cols.start) }),
            None => PieceStep::Stats,
        };
        dispatch(self.isa, self.piece(cols.start, step))
    }

    /// Whether the row's statistics must run: it has a target, or row outputs are
    /// asked for (an ignored row still gets its `lse`, entropy and argmax).
    pub(crate) fn needs_stats(&self) -> bool {
        !self.ignored() || self.plan.out.any()
    }

    /// The row's loss and gradient constants from its pieces' statistics, in piece
    /// order (`None` for an ignored row), after writing its row outputs when asked.
    pub(crate) fn finish(&self, stats: &[PieceStats]) -> Option<RowEnd> {
        let (mut p, mut o) = (RowStats::EMPTY, OutStats::EMPTY);
        for (k, q) in stats.iter().enumerate() {
            if self.plan.out.any() {
                o = o.merge(&p, q.1, &q.0, k * PIECE);
            }
            p = p.merge(q.0);
        }
        let Some(target) = self.start.target else {
            if self.plan.out.any() {
                let (lse, entropy, arg) = row_outputs(&p, &o);
                // SAFETY: r is a row of the call.
                unsafe { self.plan.out.write(self.r, lse, entropy, arg, 0.0) };
            }
            return None;
        };
        let (scale_ce, scale_z) = self.plan.scale.at(self.r);
        let (loss, zt, k) = finish(p, target, &self.plan.lane, scale_ce, scale_z);
        if self.plan.out.any() {
            let (lse, entropy, arg) = row_outputs(&p, &o);
            // SAFETY: r is a row of the call.
            let z = self.plan.lane.z_loss * lse * lse;
            // SAFETY: r is a row of the call.
            unsafe { self.plan.out.write(self.r, lse, entropy, arg, z) };
        }
        Some(RowEnd {
            loss,
            zt,
            ms: shift(p.m),
            k,
        })
    }

    /// The gradient of the piece `cols`, from the row's end (and the piece's stored
    /// exps and chunk maxima in `stats`).
    pub(crate) fn grad(&self, cols: Range<usize>, stats: &[PieceStats], end: &RowEnd) {
        let Some(g) = self.g else { return };
        let (start, acc) = (cols.start, self.plan.accumulate);
        // SAFETY: start < C, within the rows of exps and gradient.
        let step = unsafe {
            match self.e {
                Some(e) => PieceStep::Rescale(
                    e.at(start) as *const f32,
                    g.at(start),
                    stats[start / PIECE].2,
                    end.ms,
                    end.k,
                    acc,
                ),
                None if self.stream => PieceStep::GradStream(g.at(start), end.ms, end.k, acc),
                None => PieceStep::Grad(g.at(start), end.ms, end.k, acc),
            }
        };
        dispatch(self.isa, self.piece(start, step));
    }

    /// After the gradient's pieces: the target class's exact gradient and the row's
    /// loss (`None` for an ignored row). Returns the loss without its z term and
    /// the z term.
    pub(crate) fn end(&self, end: Option<RowEnd>) -> (f32, f32) {
        let (loss, zt) = match end {
            None => (0.0, 0.0),
            Some(end) => {
                if let Some(g) = self.g {
                    let (coef, ms, k) = (self.coef, end.ms, end.k);
                    // SAFETY: the row's gradient; y < C.
                    unsafe {
                        let (g, a_y) = (g.as_ptr(), |y| coef.scalar_at(y));
                        with_xform!(self.plan.lane.transform(), xf =>
                            self.start.write_target_grad(xf, g, a_y, ms, k));
                    }
                }
                (end.loss, end.zt)
            }
        };
        if let Some(l) = self.plan.loss_out {
            // SAFETY: r is a row of the call, which has one loss each.
            unsafe { *l.at(self.r) = loss + zt };
        }
        (loss, zt)
    }
}
