//! Contiguous rows (`inner == 1`) through the row kernels, and a piece of a row
//! ([`PieceJob`]: of a long row, or of a row's shard of the classes).

use super::job::{finish, BlockSums, RowStart};
use crate::kernels::dispatch::Job;
use crate::kernels::plan::Block;
use crate::kernels::row::{
    self, shift, Coef, Coefs, GradConsts, NoCoef, Ones, OutStats, RowStats, Weights, Xform,
};
use crate::kernels::row_grad;
use crate::kernels::simd::{Simd, Store32};
use crate::kernels::xform::{with_xform, Transform};
use crate::reduce::CompensatedSum;
use crate::sizes::MAX_STORED_CHUNKS;

impl<E: Store32, G: Store32> Block<'_, E, G> {
    /// Contiguous rows (`inner == 1`): a driver of the row kernels.
    #[inline]
    pub(super) fn rows<S: Simd, X: Xform, C: Coef>(self, s: S, xf: X, coef: C) -> BlockSums {
        let plan = &self.plan;
        let c = plan.classes;
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        let probs = self.t.is_some();
        let scratch = self.scratch.map(|p| p.as_ptr());
        let (x, g) = (self.x.as_ptr(), self.g.map(|g| g.as_ptr()));
        // Rows below the long-row split take regular stores whatever the gradient's
        // size (`self.stream` is for K-dim tiles): with their exps in the scratch row
        // and the rescale streamed in whole cache lines they ran 1.14–1.92× slower
        // (Zen 3, AVX2, 2 threads, 16384×1000, 4096×32000 and 1024×128256, f32 and
        // bf16 fwd+bwd; BENCHMARKS.md design notes). Long rows stream (`LongRow`).
        let out = plan.out.any();
        for r in 0..self.outer {
            // SAFETY: the driver hands a block of `outer` rows of C
            // elements at x (and g, t), rows row0.. of the call (one loss each at
            // loss_out); r < outer.
            unsafe {
                let x = x.add(r * c);
                let g = g.map(|g| g.add(r * c));
                let coef = coef.row(r * c);
                let (scale_ce, scale_z) = plan.scale.at(self.row0 + r);
                let class = plan.class_of(self.row0 + r);
                let start = RowStart::read(xf, x, g, probs, class, plan.weight, plan.accumulate);
                let (loss, zt) = match start.target {
                    None => {
                        if out {
                            // Read before the gradient is cleared: it may be the logits.
                            let (p, o) = row::row_stats(s, x, c, coef, xf, true);
                            let (lse, entropy, arg) = row::row_outputs(&p, &o);
                            plan.out.write(self.row0 + r, lse, entropy, arg, 0.0);
                        }
                        if let (Some(g), false) = (g, plan.accumulate) {
                            for j in 0..c {
                                *g.add(j) = G::from_f32(0.0);
                            }
                        }
                        (0.0, 0.0)
                    }
                    Some(target) => {
                        // Without soft-capping, pass B stores exp(x − m_chunk) (in the
                        // f32 gradient itself when it is overwritten and stays in
                        // cache, else in the driver's scratch row) and the gradient
                        // pass only rescales it. `G::IS_F32` makes the
                        // `*mut G → *mut f32` cast exact.
                        let e_buf = match g {
                            // Not over the logits themselves when the row outputs
                            // read them after pass B (the argmax scan).
                            Some(g)
                                if G::IS_F32
                                    && !plan.accumulate
                                    && (!out || g as *const u8 != x as *const u8) =>
                            {
                                Some(g as *mut f32)
                            }
                            _ => scratch,
                        };
                        let store = !X::CHAINED && e_buf.is_some();
                        let mut chunk_max = [0.0f32; MAX_STORED_CHUNKS];
                        let (p, o) = match (g, e_buf) {
                            // Exps in the scratch, the gradient written next: prefetch
                            // its lines.
                            (Some(g), Some(e_buf))
                                if store && e_buf as *const u8 != g as *const u8 =>
                            {
                                let (cm, grad) = (&mut chunk_max, Some(g as *const G));
                                row::row_stats_store(s, x, e_buf, c, coef, xf, cm, grad, out)
                            }
                            // Exps in the gradient itself.
                            (Some(_), Some(e_buf)) if store => {
                                let cm = &mut chunk_max;
                                row::row_stats_store::<S, E, C, X, f32>(
                                    s, x, e_buf, c, coef, xf, cm, None, out,
                                )
                            }
                            _ => row::row_stats(s, x, c, coef, xf, out),
                        };
                        let (loss, zt, k) = finish(p, target, &plan.lane, scale_ce, scale_z);
                        if out {
                            let (lse, entropy, arg) = row::row_outputs(&p, &o);
                            let z = plan.lane.z_loss * lse * lse;
                            plan.out.write(self.row0 + r, lse, entropy, arg, z);
                        }
                        if let Some(g) = g {
                            let ms = shift(p.m);
                            let acc = plan.accumulate;
                            if let (true, Some(e_buf)) = (store, e_buf) {
                                let cm = &chunk_max;
                                row_grad::row_rescale(s, e_buf, g, c, coef, cm, ms, k, acc);
                            } else {
                                row_grad::row_grad(s, x, g, c, coef, xf, ms, k, acc);
                            }
                            start.write_target_grad(xf, g, |y| coef.scalar_at(y), ms, k);
                        }
                        (loss, zt)
                    }
                };
                if let Some(l) = plan.loss_out {
                    *l.at(self.row0 + r) = loss + zt;
                }
                total.add(loss as f64);
                ztotal.add(zt as f64);
            }
        }
        (total, ztotal)
    }
}

/// A piece's statistics, its [`OutStats`] (when asked) and, when the statistics pass
/// stored its exps, its chunk maxima.
pub(crate) type PieceStats = (RowStats<f32>, OutStats, [f32; MAX_STORED_CHUNKS]);

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
    /// row; the identity transform only) for [`PieceStep::Rescale`].
    StatsStore(*mut f32),
    /// The gradient from the logits: `(g, shift, constants, accumulate)`.
    Grad(*mut G, f32, GradConsts<f32>, bool),
    /// [`PieceStep::Grad`] written with streaming stores, after [`PieceStep::Stats`]
    /// (without a transform, each chunk's exps recomputed as the stored-exp steps
    /// would have stored them, for the same bits): `(g, shift, constants,
    /// accumulate)`.
    GradStream(*mut G, f32, GradConsts<f32>, bool),
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
    pub coef: Coefs<E>,
    /// The transform of the logits.
    pub xform: Transform,
    pub step: PieceStep<G>,
    /// Whether the statistics steps compute the piece's [`OutStats`] too.
    pub out: bool,
}

impl<E: Store32, G: Store32> Job for PieceJob<E, G> {
    /// The piece's statistics (empty for the gradient steps) and, for
    /// [`PieceStep::StatsStore`], its chunk maxima.
    type Out = PieceStats;
    fn run<S: Simd>(self, s: S) -> Self::Out {
        with_xform!(self.xform, xf => self.with(s, xf))
    }
}

impl<E: Store32, G: Store32> PieceJob<E, G> {
    #[inline(always)]
    pub(super) fn with<S: Simd, X: Xform>(&self, s: S, xf: X) -> PieceStats {
        match self.coef {
            Coefs::None => self.go(s, xf, NoCoef),
            Coefs::Ones => self.go(s, xf, Ones),
            Coefs::Weights(w) => self.go(s, xf, Weights(w)),
            Coefs::Probs(p) => self.go(s, xf, p),
        }
    }

    #[inline(always)]
    pub(super) fn go<S: Simd, X: Xform, C: Coef>(&self, s: S, xf: X, coef: C) -> PieceStats {
        let mut chunk_max = [0.0f32; MAX_STORED_CHUNKS];
        let out = self.out;
        // SAFETY: the driver hands a piece of n ≤ MAX_STORED_CHUNKS·CHUNK elements of
        // the row (x, g, stored exps, coefficients); stored exps are f32, and `e`
        // equals `g` only for an f32 gradient that is overwritten.
        let p = unsafe {
            match self.step {
                PieceStep::Stats => row::row_stats(s, self.x, self.n, coef, xf, out),
                PieceStep::StatsStore(e) => {
                    let cm = &mut chunk_max;
                    row::row_stats_store::<S, E, C, X, f32>(
                        s, self.x, e, self.n, coef, xf, cm, None, out,
                    )
                }
                PieceStep::Grad(g, ms, k, acc) => {
                    row_grad::row_grad(s, self.x, g, self.n, coef, xf, ms, k, acc);
                    (RowStats::EMPTY, OutStats::EMPTY)
                }
                PieceStep::GradStream(g, ms, k, acc) => {
                    row_grad::row_grad_stream(s, self.x, g, self.n, coef, xf, ms, k, acc);
                    // Other threads (and the row's end) read the piece after this job.
                    s.stream_fence();
                    (RowStats::EMPTY, OutStats::EMPTY)
                }
                PieceStep::Rescale(e, g, maxima, ms, k, acc) => {
                    row_grad::row_rescale(s, e, g, self.n, coef, &maxima, ms, k, acc);
                    (RowStats::EMPTY, OutStats::EMPTY)
                }
            }
        };
        (p.0, p.1, chunk_max)
    }
}
