//! Contiguous rows (`inner == 1`) through the row kernels, and the pieces of a long
//! row that the driver spreads across threads.

use super::job::{finish, BlockSums, CeJob, RowStart};
use crate::kernels::dispatch::Job;
use crate::kernels::row::{
    self, shift, Coef, GradConsts, Identity, NoCoef, Ones, Probs, RowStats, SoftCap, Weights, Xform,
};
use crate::kernels::simd::{Simd, Store32};
use crate::reduce::CompensatedSum;
use crate::sizes::MAX_STORED_CHUNKS;
use core::ptr::NonNull;

impl<E: Store32, G: Store32> CeJob<'_, E, G> {
    /// Contiguous rows (`inner == 1`): a driver of the row kernels.
    #[inline]
    pub(super) fn rows<S: Simd, X: Xform, C: Coef + RowCoef>(
        self,
        s: S,
        xf: X,
        coef: C,
    ) -> BlockSums {
        let c = self.classes;
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        let probs = self.t.is_some();
        let scratch = self.scratch.map(NonNull::as_ptr);
        for r in 0..self.outer {
            // SAFETY: the driver hands a block of `outer` rows of C
            // elements at x (and g, t, and `outer` losses at loss_out); r < outer.
            unsafe {
                let x = self.x.add(r * c);
                let g = self.g.map(|g| g.as_ptr().add(r * c));
                let coef = coef.for_row(r * c);
                let (scale_ce, scale_z) = self.scale.at(r);
                let class = self.class_of(self.row0 + r);
                let start = RowStart::read(xf, x, g, probs, class, self.weight, self.accumulate);
                let (loss, zt) = match start.target {
                    None => {
                        if let (Some(g), false) = (g, self.accumulate) {
                            for j in 0..c {
                                *g.add(j) = G::from_f32(0.0);
                            }
                        }
                        (0.0, 0.0)
                    }
                    Some(target) => {
                        // Without soft-capping, pass B stores exp(x − m_chunk) (in the
                        // f32 gradient itself when it is overwritten, else in the
                        // driver's scratch row) and the gradient pass only rescales it.
                        // `G::IS_F32` makes the `*mut G → *mut f32` cast exact.
                        let e_buf = match g {
                            Some(g) if G::IS_F32 && !self.accumulate => Some(g as *mut f32),
                            _ => scratch,
                        };
                        let store = !X::CHAINED && e_buf.is_some();
                        let mut chunk_max = [0.0f32; MAX_STORED_CHUNKS];
                        let p = match (g, e_buf) {
                            // Exps in the gradient itself.
                            (Some(g), Some(e_buf))
                                if store && e_buf as *const u8 == g as *const u8 =>
                            {
                                let cm = &mut chunk_max;
                                row::row_stats_store::<S, E, C, X, f32>(
                                    s, x, e_buf, c, coef, xf, cm, None,
                                )
                            }
                            // Exps in the scratch: prefetch the gradient's lines.
                            (Some(g), Some(e_buf)) if store => {
                                let (cm, grad) = (&mut chunk_max, Some(g as *const G));
                                row::row_stats_store(s, x, e_buf, c, coef, xf, cm, grad)
                            }
                            _ => row::row_stats(s, x, c, coef, xf),
                        };
                        let (loss, zt, k) = finish(p, target, &self.consts, scale_ce, scale_z);
                        if let Some(g) = g {
                            let ms = shift(p.m);
                            if let (true, Some(e_buf)) = (store, e_buf) {
                                row::row_rescale(
                                    s,
                                    e_buf,
                                    g,
                                    c,
                                    coef,
                                    &chunk_max,
                                    ms,
                                    k,
                                    self.accumulate,
                                );
                            } else {
                                row::row_grad(s, x, g, c, coef, xf, ms, k, self.accumulate);
                            }
                            start.write_target_grad(xf, g, |y| coef.scalar_at(y), ms, k);
                        }
                        (loss, zt)
                    }
                };
                if let Some(l) = self.loss_out {
                    *l.as_ptr().add(r) = loss + zt;
                }
                total.add(loss as f64);
                ztotal.add(zt as f64);
            }
        }
        (total, ztotal)
    }
}

/// Row-local views of a contiguous coefficient source.
pub(crate) trait RowCoef: Coef {
    /// The source for the row starting at element `off` of the block.
    ///
    /// # Safety
    /// `off` is the start of a row of the block.
    unsafe fn for_row(&self, off: usize) -> Self;
    /// The scalar coefficient of class `y` of this row (label smoothing's `a_y`).
    ///
    /// # Safety
    /// `y < C`.
    unsafe fn scalar_at(&self, y: usize) -> f32;
}

impl RowCoef for NoCoef {
    unsafe fn for_row(&self, _off: usize) -> Self {
        NoCoef
    }
    unsafe fn scalar_at(&self, _y: usize) -> f32 {
        0.0
    }
}
impl RowCoef for Ones {
    unsafe fn for_row(&self, _off: usize) -> Self {
        Ones
    }
    unsafe fn scalar_at(&self, _y: usize) -> f32 {
        1.0
    }
}
impl RowCoef for Weights {
    // Weights are per class: the same for every row.
    unsafe fn for_row(&self, _off: usize) -> Self {
        *self
    }
    unsafe fn scalar_at(&self, y: usize) -> f32 {
        // SAFETY: y < C.
        unsafe { *self.0.add(y) }
    }
}
impl<E: Store32> RowCoef for Probs<E> {
    unsafe fn for_row(&self, off: usize) -> Self {
        // SAFETY: off is a row start within the block's targets.
        let t = unsafe { self.t.add(off) };
        Probs { t, ..*self }
    }
    unsafe fn scalar_at(&self, _y: usize) -> f32 {
        // Probability targets have no target-class fix-up (b = 0, handled in-pass).
        0.0
    }
}

/// Coefficients of one long row, chosen at run time (monomorphized in [`PieceJob::run`]).
#[derive(Clone, Copy)]
pub(crate) enum AnyCoef<E> {
    None,
    Ones,
    Weights(*const f32),
    Probs(Probs<E>),
}

impl<E: Store32> AnyCoef<E> {
    /// # Safety
    /// The result must stay within the row.
    pub(crate) unsafe fn offset(&self, k: usize) -> Self {
        // SAFETY: guaranteed by the caller.
        unsafe {
            match self {
                AnyCoef::None => AnyCoef::None,
                AnyCoef::Ones => AnyCoef::Ones,
                AnyCoef::Weights(w) => AnyCoef::Weights(w.add(k)),
                AnyCoef::Probs(p) => AnyCoef::Probs(p.offset(k)),
            }
        }
    }
    /// # Safety
    /// `y` within the row.
    pub(crate) unsafe fn scalar_at(&self, y: usize) -> f32 {
        // SAFETY: guaranteed by the caller.
        unsafe {
            match self {
                AnyCoef::Ones => 1.0,
                AnyCoef::Weights(w) => *w.add(y),
                AnyCoef::None | AnyCoef::Probs(_) => 0.0,
            }
        }
    }
}

/// What a [`PieceJob`] does with its piece.
// One short-lived value per piece of ≥ 64 Ki classes: the chunk maxima travel by
// value rather than by a borrow across the rayon closure.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub(crate) enum PieceStep<G> {
    /// The statistics only.
    Stats,
    /// The statistics, storing each chunk's `exp(x − shift(m_chunk))` into this f32
    /// buffer (the gradient itself when it is f32 and overwritten, else a scratch
    /// row; no soft-capping) for [`PieceStep::Rescale`].
    StatsStore(*mut f32),
    /// The gradient from the logits: `(g, shift, constants, accumulate)`.
    Grad(*mut G, f32, GradConsts<f32>, bool),
    /// The gradient from the stored exps: `(e, g, the piece's chunk maxima, shift,
    /// constants, accumulate)`; `e` may be `g` (f32, overwritten).
    Rescale(
        *const f32,
        *mut G,
        [f32; MAX_STORED_CHUNKS],
        f32,
        GradConsts<f32>,
        bool,
    ),
}

/// A piece of one long row (a run of at most `MAX_STORED_CHUNKS` chunks), for rows
/// split across threads.
pub(crate) struct PieceJob<E, G> {
    pub x: *const E,
    pub n: usize,
    pub coef: AnyCoef<E>,
    pub cap: Option<f32>,
    pub step: PieceStep<G>,
}

impl<E: Store32, G: Store32> Job for PieceJob<E, G> {
    /// The piece's statistics (empty for the gradient steps) and, for
    /// [`PieceStep::StatsStore`], its chunk maxima.
    type Out = (RowStats<f32>, [f32; MAX_STORED_CHUNKS]);
    fn run<S: Simd>(self, s: S) -> Self::Out {
        match self.cap {
            None => self.with(s, Identity),
            Some(cap) => self.with(s, SoftCap { cap }),
        }
    }
}

impl<E: Store32, G: Store32> PieceJob<E, G> {
    #[inline(always)]
    pub(super) fn with<S: Simd, X: Xform>(
        &self,
        s: S,
        xf: X,
    ) -> (RowStats<f32>, [f32; MAX_STORED_CHUNKS]) {
        match self.coef {
            AnyCoef::None => self.go(s, xf, NoCoef),
            AnyCoef::Ones => self.go(s, xf, Ones),
            AnyCoef::Weights(w) => self.go(s, xf, Weights(w)),
            AnyCoef::Probs(p) => self.go(s, xf, p),
        }
    }

    #[inline(always)]
    pub(super) fn go<S: Simd, X: Xform, C: Coef>(
        &self,
        s: S,
        xf: X,
        coef: C,
    ) -> (RowStats<f32>, [f32; MAX_STORED_CHUNKS]) {
        let mut chunk_max = [0.0f32; MAX_STORED_CHUNKS];
        // SAFETY: the driver hands a piece of n ≤ MAX_STORED_CHUNKS·CHUNK elements of
        // the row (x, g, stored exps, coefficients); stored exps are f32, and `e`
        // equals `g` only for an f32 gradient that is overwritten.
        let p = unsafe {
            match self.step {
                PieceStep::Stats => row::row_stats(s, self.x, self.n, coef, xf),
                PieceStep::StatsStore(e) => {
                    let cm = &mut chunk_max;
                    row::row_stats_store::<S, E, C, X, f32>(
                        s, self.x, e, self.n, coef, xf, cm, None,
                    )
                }
                PieceStep::Grad(g, ms, k, acc) => {
                    row::row_grad(s, self.x, g, self.n, coef, xf, ms, k, acc);
                    RowStats::EMPTY
                }
                PieceStep::Rescale(e, g, maxima, ms, k, acc) => {
                    row::row_rescale(s, e, g, self.n, coef, &maxima, ms, k, acc);
                    RowStats::EMPTY
                }
            }
        };
        (p, chunk_max)
    }
}
