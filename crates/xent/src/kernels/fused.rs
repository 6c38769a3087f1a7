//! Fused cross-entropy and softmax jobs over a block of rows, for f32-computed data.
//!
//! A job is one block of whole `n` indices (`outer` rows of `C × inner`), run by
//! [`super::dispatch::dispatch`] with the token of the instruction set the call
//! uses. A job is driver code: it picks the layout's path and the options' kernels
//! (soft-capping or not, the coefficients of the linear terms), and enters vector
//! code only through those kernels (row chunks, lane units in tiles, short-row
//! groups, K-dim gathers and scatters), each a function of its own compiled for the
//! instruction set. The driver in [`crate::par`] splits the batch into jobs.

use super::dispatch::{dispatch, Isa, Job};
use super::lanes::{self, LaneCoef};
use super::row::{
    self, shift, Coef, GradConsts, Identity, NoCoef, Ones, Probs, RowStats, SoftCap, Weights, Xform,
};
use super::simd::{transpose_each, Kernel, Scalar, Simd, SimdKernel, Store32};
use crate::reduce::CompensatedSum;
use crate::targets::ClassIndices;
use core::ptr::NonNull;

/// Calls `recv.method::<T.., ST, AC, ACT>(args..)` with the lane flags
/// `(store, accumulate, active)` of `flags` as const parameters (see
/// [`CeJob::lane_flags`]; `store` excludes `accumulate`).
macro_rules! by_lane_flags {
    ($flags:expr, $recv:ident . $method:ident :: <$($t:ty),*> ($($arg:expr),* $(,)?)) => {
        match $flags {
            (true, _, false) => $recv.$method::<$($t,)* true, false, false>($($arg),*),
            (true, _, true) => $recv.$method::<$($t,)* true, false, true>($($arg),*),
            (false, false, false) => $recv.$method::<$($t,)* false, false, false>($($arg),*),
            (false, false, true) => $recv.$method::<$($t,)* false, false, true>($($arg),*),
            (false, true, false) => $recv.$method::<$($t,)* false, true, false>($($arg),*),
            (false, true, true) => $recv.$method::<$($t,)* false, true, true>($($arg),*),
        }
    };
}

/// Scalar constants of a cross-entropy call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CeConsts {
    /// Label smoothing ε.
    pub eps: f32,
    /// C as f32.
    pub classes: f32,
    /// z-loss scale (`lse_square_scale`).
    pub z: f32,
}

/// What a row's target is, for [`finish`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowTarget {
    /// A class index with its weight and its (transformed) logit.
    Index { w_y: f32, x_y: f32 },
    /// A probability row (its coefficients are in the partial's linear terms).
    Probs,
}

/// The upstream-gradient scales of the rows of a call or of a block, in the type
/// rows are computed in (`f32`, or `f64` for `f64` data): the cross-entropy part and
/// the z part (they differ for a weighted mean, whose z term is averaged over rows).
#[derive(Debug, Clone, Copy)]
pub enum Scale<'a, A> {
    /// The same for every row (reductions mean and sum).
    Uniform { ce: A, z: A },
    /// One per row (reduction none), from the first row of the call or block.
    PerRow(&'a [A]),
}

impl<A: Copy> Scale<'_, A> {
    /// The scales of row `r`.
    #[inline]
    pub(crate) fn at(&self, r: usize) -> (A, A) {
        match *self {
            Scale::Uniform { ce, z } => (ce, z),
            Scale::PerRow(go) => (go[r], go[r]),
        }
    }

    /// The scales of rows `r0..r0 + n`, from row `r0` on.
    #[inline]
    pub(crate) fn rows(self, r0: usize, n: usize) -> Self {
        match self {
            Scale::PerRow(go) => Scale::PerRow(&go[r0..r0 + n]),
            uniform => uniform,
        }
    }
}

/// Row loss without its z term, the z term, and the gradient constants, from the
/// row's statistics: [`finish_v`] on one lane.
#[inline]
pub(crate) fn finish(
    p: RowStats<f32>,
    t: RowTarget,
    k: &CeConsts,
    scale_ce: f32,
    scale_z: f32,
) -> (f32, f32, GradConsts<f32>) {
    let index = match t {
        RowTarget::Index { w_y, x_y } => Some((w_y, x_y)),
        RowTarget::Probs => None,
    };
    finish_v(Scalar, &p, index, k, scale_ce, scale_z)
}

/// [`finish`] on `LANES` rows at once: row losses without their z terms, the z
/// terms, and the gradient constants. `index` is `(w_y, x̃_y)` for class-index
/// targets, `None` for probability rows (their coefficients are in `p.l`, `p.a`).
/// Lanes of ignored rows compute values the caller discards.
#[inline(always)]
pub(crate) fn finish_v<S: Simd>(
    s: S,
    p: &RowStats<S::V>,
    index: Option<(S::V, S::V)>,
    k: &CeConsts,
    scale_ce: S::V,
    scale_z: S::V,
) -> (S::V, S::V, GradConsts<S::V>) {
    let zero = s.splat(0.0);
    let ms = s.neg_inf_to(p.m, zero);
    let ln_s = s.ln(p.s);
    let (zt, zg) = if k.z != 0.0 {
        let lse = s.add(ms, ln_s);
        let z = s.splat(k.z);
        (
            s.mul(s.mul(z, lse), lse),
            s.mul(s.mul(s.mul(scale_z, s.splat(2.0)), z), lse),
        )
    } else {
        (zero, zero)
    };
    // a·ln S − l: the smoothing (or probability-target) part of the loss.
    let spread = |s: S| s.sub(s.mul(p.a, ln_s), p.l);
    match index {
        Some((w_y, x_y)) => {
            let keep = s.splat(1.0 - k.eps);
            let nll = s.sub(ln_s, s.sub(x_y, ms));
            let mut loss = s.mul(s.mul(keep, w_y), nll);
            let b = s.mul(s.mul(scale_ce, keep), w_y);
            let mut alpha = b;
            let mut beta = zero;
            if k.eps > 0.0 {
                let e = s.splat(k.eps / k.classes);
                loss = s.add(loss, s.mul(e, spread(s)));
                alpha = s.add(alpha, s.mul(s.mul(scale_ce, e), p.a));
                beta = s.mul(scale_ce, e);
            }
            let consts = GradConsts {
                alpha: s.div(s.add(alpha, zg), p.s),
                beta,
                b,
            };
            (loss, zt, consts)
        }
        None => {
            let consts = GradConsts {
                alpha: s.div(s.add(s.mul(scale_ce, p.a), zg), p.s),
                beta: scale_ce,
                b: zero,
            };
            (spread(s), zt, consts)
        }
    }
}

/// The exact gradient at the target class, written after the vector pass:
/// `prior + (α·exp(x̃_y − shift) − β·a_y − b)·dx̃_y/dx_y`: [`target_grad_v`] on one
/// lane.
#[inline]
pub(crate) fn target_grad<X: Xform>(
    xf: X,
    x_y_raw: f32,
    a_y: f32,
    ms: f32,
    k: GradConsts<f32>,
    prior: f32,
) -> f32 {
    target_grad_v(Scalar, xf, x_y_raw, a_y, ms, &k, prior)
}

/// [`target_grad`] on `LANES` rows at once.
#[inline(always)]
pub(crate) fn target_grad_v<S: Simd, X: Xform>(
    s: S,
    xf: X,
    x_y_raw: S::V,
    a_y: S::V,
    ms: S::V,
    k: &GradConsts<S::V>,
    prior: S::V,
) -> S::V {
    let (xt, d) = xf.apply_d(s, x_y_raw);
    let v = s.sub(
        // x̃_y ≤ max: `exp_small`'s domain (NaN stays NaN).
        s.sub(
            s.mul(k.alpha, s.exp_small(s.sub(xt, ms))),
            s.mul(k.beta, a_y),
        ),
        k.b,
    );
    s.add(prior, if X::CHAINED { s.mul(v, d) } else { v })
}

/// A contiguous row's target, and what its passes overwrite that the target's
/// exact gradient needs, read before they run (the gradient may be the logits
/// themselves, or accumulate onto a prior gradient). The driver of whole rows
/// ([`CeJob`]) and the one of rows split across threads share it.
#[derive(Clone, Copy)]
pub(crate) struct RowStart {
    /// The row's target; `None` for an ignored row.
    pub target: Option<RowTarget>,
    /// With a gradient and a target class: the class, its raw logit and its prior
    /// gradient (0 unless accumulating).
    fix: Option<(usize, f32, f32)>,
}

impl RowStart {
    /// Reads row `x`'s target: its probabilities (`probs`), or its class (`None`:
    /// ignored) with the class's weight and transformed logit.
    ///
    /// # Safety
    /// `x`, and `g` when given, readable for the row's classes; `class` one of them.
    #[inline]
    pub(crate) unsafe fn read<E: Store32, G: Store32, X: Xform>(
        xf: X,
        x: *const E,
        g: Option<*mut G>,
        probs: bool,
        class: Option<usize>,
        weight: Option<&[f32]>,
        accumulate: bool,
    ) -> RowStart {
        // SAFETY: y < C, within the row (the caller's contract).
        unsafe {
            let target = if probs {
                Some(RowTarget::Probs)
            } else {
                class.map(|y| RowTarget::Index {
                    w_y: weight.map_or(1.0, |w| w[y]),
                    x_y: xf.apply(Scalar, Scalar.load(x.add(y))),
                })
            };
            let fix = g.zip(class).map(|(g, y)| {
                let prior = if accumulate {
                    (*g.add(y)).to_f32()
                } else {
                    0.0
                };
                (y, Scalar.load(x.add(y)), prior)
            });
            RowStart { target, fix }
        }
    }

    /// Writes the target class's exact gradient into the row's gradient `g`, after
    /// the gradient pass; `a_y` gives the class's linear coefficient.
    ///
    /// # Safety
    /// `g` is the gradient [`RowStart::read`] was given, writable.
    #[inline]
    pub(crate) unsafe fn write_target_grad<G: Store32, X: Xform>(
        &self,
        xf: X,
        g: *mut G,
        a_y: impl FnOnce(usize) -> f32,
        ms: f32,
        k: GradConsts<f32>,
    ) {
        if let Some((y, x_y, prior)) = self.fix {
            let v = target_grad(xf, x_y, a_y(y), ms, k, prior);
            // SAFETY: y < C, within the row's gradient.
            unsafe { *g.add(y) = G::from_f32(v) };
        }
    }
}

/// One block of a cross-entropy call.
pub(crate) struct CeJob<'a, E, G> {
    /// Logits of the block (`outer · C · inner` elements).
    pub x: *const E,
    /// Gradient of the block. May be `x` itself (in-place).
    pub g: Option<NonNull<G>>,
    pub accumulate: bool,
    /// Probability targets of the block (none for class indices).
    pub t: Option<NonNull<E>>,
    /// Class indices (global) and `ignore_index`.
    pub idx: Option<(ClassIndices<'a>, i64)>,
    /// Global index of the block's first row.
    pub row0: usize,
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    pub weight: Option<&'a [f32]>,
    pub consts: CeConsts,
    pub cap: Option<f32>,
    pub scale: Scale<'a, f32>,
    /// Per-row losses of the block (reduction none).
    pub loss_out: Option<NonNull<f32>>,
    /// The driver's per-thread scratch of [`scratch_len`] f32 (none when that is 0):
    /// the stored `exp` of a row, or the K-dim tiles.
    pub scratch: Option<NonNull<f32>>,
    /// Whether the gradient is too large to stay in cache: K-dim tiles then go back
    /// to it with streaming stores, which skip reading its lines first.
    pub stream: bool,
}

/// Gradients of at least this many bytes are written past the caches where a kernel
/// can (see [`CeJob::stream`]); the L3 caches of the machines we measure hold 32 MiB.
pub(crate) const STREAM_BYTES: usize = 16 << 20;

/// Tiles whose class rows are at least this many lanes go back with streaming
/// stores when [`CeJob::stream`] is set (shorter runs would leave lines partly written).
const STREAM_LANES: usize = 256;

/// Lanes per K-dim tile: class-major tiles of `C` classes × at most 2048 lanes. A lane
/// unit walks its classes at the tile's stride, which keeps its working set (a line
/// per class) in L1 even where `inner` makes the classes alias in the cache (a 64 KiB
/// stride puts every class of a row in the same L1 and L2 set). The tile itself is
/// sized for long runs per class, which the hardware prefetchers and the memory
/// follow, rather than for L2: 96-lane tiles made the K-dim benchmark (C = 21) ~15 %
/// slower than 2048-lane ones, and with 40 Ki-element tiles (within L2) C = 150, 300
/// and 1000 were 1.2–1.7× slower than with the 160 Ki-element tiles used now (about
/// 1100, 540 and 160 lanes; see BENCHMARKS.md, design note "K-dim inputs").
pub(super) fn tile_lanes(classes: usize) -> usize {
    ((TILE_ELEMS / classes.max(1)) / 16 * 16).clamp(16, 2048)
}

/// The f32 elements of a K-dim tile (640 KiB), within [`tile_lanes`]' clamp.
const TILE_ELEMS: usize = 160 * 1024;

/// The distance between a K-dim tile's classes, in f32: at least `tw`, and an odd
/// number of 64-byte lines so that the classes of a lane fall in different L1 sets.
fn tile_stride(tw: usize) -> usize {
    let lines = tw.div_ceil(16);
    16 * (lines | 1)
}

/// Whether K-dim rows of this many classes are gathered into contiguous rows for the
/// row kernels ([`CeJob::kdim_rows`]) rather than run through the lane tiles: above
/// `TILE_ELEMS / 32` classes the tiles are down to their 16 lanes, a line per class,
/// and a lane unit's three walks over all C lines no longer stay in cache (against
/// a first gather of 8 rows at a time, C = 8192 and 32000 took 1.8–1.9× as long
/// through the tiles, and C = 2048, with 80-lane tiles, 1.3× as long through the
/// rows; see BENCHMARKS.md, design note "K-dim inputs"). Rows of [`crate::par::LONG_ROW`] classes or
/// more stay on the tiles (the row kernels' stored-exp pass keeps one max per chunk,
/// for shorter rows only).
pub(crate) fn kdim_as_rows(classes: usize) -> bool {
    classes > TILE_ELEMS / 32 && classes < row::MAX_STORED_CHUNKS * row::CHUNK
}

/// K-dim rows gathered into contiguous ones go [`KDIM_GROUP`] lanes at a time: a
/// whole 64-byte line of f32 logits per class.
const KDIM_GROUP: usize = 16;

/// The f32 scratch a block of this shape needs: a row's stored `exp` for contiguous
/// rows, three K-dim tiles (logits, targets, gradient), or for K-dim rows gathered
/// into contiguous ones three groups of [`KDIM_GROUP`] rows and a row's stored `exp`.
pub(crate) fn scratch_len(classes: usize, inner: usize) -> usize {
    if inner > 1 && kdim_as_rows(classes) {
        (3 * KDIM_GROUP + 1) * classes
    } else if inner > 1 {
        3 * classes * tile_stride(tile_lanes(classes))
    } else if classes > SMALL_C {
        classes
    } else {
        0
    }
}

/// A cursor over the cache lines of a K-dim tile still in memory (`c` classes of
/// `w` elements at stride `stride` from `p`), prefetched into L2 a few lines per step
/// so that the whole tile is covered in `steps` steps.
struct Ahead {
    /// The next line to fetch, and the end of its class row.
    at: *const u8,
    end: *const u8,
    /// Bytes between classes, and classes left after the current one.
    stride: usize,
    left: usize,
    /// Bytes of one class row (one line more than `w` elements fill, for a row that
    /// starts within a line).
    row: usize,
    per_step: usize,
}

impl Ahead {
    fn new<E>(p: *const E, stride: usize, c: usize, w: usize, steps: usize) -> Self {
        let size = core::mem::size_of::<E>();
        let row = 64 * ((w * size).div_ceil(64) + 1);
        let at = p as *const u8;
        Ahead {
            at,
            end: at.wrapping_add(row),
            stride: stride * size,
            left: c.saturating_sub(1),
            row,
            per_step: (c * row / 64).div_ceil(steps.max(1)),
        }
    }

    #[inline(always)]
    fn step<S: Simd>(&mut self, s: S) {
        // A prefetch never faults; the addresses are only computed (wrapping).
        for _ in 0..self.per_step {
            if self.at >= self.end {
                if self.left == 0 {
                    return;
                }
                self.left -= 1;
                self.at = self.end.wrapping_sub(self.row).wrapping_add(self.stride);
                self.end = self.at.wrapping_add(self.row);
            }
            s.prefetch_l2(self.at);
            self.at = self.at.wrapping_add(64);
        }
    }
}

/// Runs a cross-entropy block on `isa`.
pub(crate) fn run_ce_block<E: Store32, G: Store32>(isa: Isa, job: CeJob<'_, E, G>) -> BlockSums {
    dispatch(isa, job)
}

/// Sums of a block: (loss without z terms, z terms), over rows in order.
pub(crate) type BlockSums = (CompensatedSum, CompensatedSum);

impl<E: Store32, G: Store32> Job for CeJob<'_, E, G> {
    type Out = BlockSums;
    fn run<S: Simd>(self, s: S) -> BlockSums {
        match self.cap {
            None => self.with_xform(s, Identity),
            Some(cap) => self.with_xform(s, SoftCap { cap }),
        }
    }
}

impl<E: Store32, G: Store32> CeJob<'_, E, G> {
    /// The class of global row `r`, `None` when ignored (targets are validated).
    #[inline]
    fn class_of(&self, r: usize) -> Option<usize> {
        self.idx.and_then(|(idx, ignore)| idx.class_at(r, ignore))
    }

    /// The path for the block's layout (a driver: every path below is a kernel, or
    /// a driver of kernels, of its own).
    #[inline]
    fn with_xform<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        if let (true, Some(scratch)) = (self.inner > 1 && kdim_as_rows(self.classes), self.scratch)
        {
            return self.kdim_rows(s, xf, scratch.as_ptr());
        }
        if self.inner > 1 {
            return self.lanes(s, xf);
        }
        if self.classes <= SMALL_C && S::LANES > 1 {
            return self.small_rows(s, xf);
        }
        self.rows_any(s, xf)
    }

    /// Contiguous rows (`inner == 1`) through the row kernels, with the coefficients
    /// of the call's options.
    #[inline]
    fn rows_any<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        let w = self.weight.map(|w| w.as_ptr());
        let smoothing = self.consts.eps > 0.0;
        if let Some(t) = self.t {
            let keep = 1.0 - self.consts.eps;
            let spread = self.consts.eps / self.consts.classes;
            let coef = Probs {
                t: t.as_ptr() as *const E,
                w,
                keep,
                spread,
            };
            return self.rows(s, xf, coef);
        }
        match (smoothing, w) {
            (false, _) => self.rows(s, xf, NoCoef),
            (true, None) => self.rows(s, xf, Ones),
            (true, Some(w)) => self.rows(s, xf, Weights(w)),
        }
    }

    /// Contiguous rows (`inner == 1`): a driver of the row kernels.
    #[inline]
    fn rows<S: Simd, X: Xform, C: Coef + RowCoef>(self, s: S, xf: X, coef: C) -> BlockSums {
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
                        let mut chunk_max = [0.0f32; row::MAX_STORED_CHUNKS];
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

    /// K-dim rows (`inner > 1`) through class-major f32 tiles in the scratch: the
    /// logits (and targets, and a prior gradient) of `C × w` rows are copied in,
    /// widened to f32 once, the lane kernels run on the tile from L1, and the
    /// gradient tile is copied back.
    #[inline]
    fn lanes<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        match self.scratch {
            Some(scratch) => {
                let flags = self.lane_flags::<X, f32>();
                by_lane_flags!(flags, self.lanes_tiles_in::<S, X>(s, xf, scratch.as_ptr()))
            }
            None => {
                let flags = self.lane_flags::<X, G>();
                by_lane_flags!(flags, self.lanes_direct_in::<S, X>(s, xf))
            }
        }
    }

    /// The loop variants of a lane unit whose gradient is of type `TG` (a tile's
    /// f32, or `G` in place), chosen once for the block before entering vector code:
    /// `(store, accumulate, active)`, as the const parameters `ST`, `AC`, `ACT` of
    /// the lane kernels. `store`: the statistics pass stores `exp(x̃ − shift)` into
    /// an overwritten f32 gradient, which the gradient pass then only scales (no
    /// soft-capping); `active`: the rows have linear terms (smoothing or probability
    /// targets).
    #[inline]
    fn lane_flags<X: Xform, TG: Store32>(&self) -> (bool, bool, bool) {
        let store = !X::CHAINED && TG::IS_F32 && !self.accumulate && self.g.is_some();
        let active = self.t.is_some() || self.consts.eps > 0.0;
        (store, self.accumulate, active)
    }

    /// [`CeJob::lanes`] through tiles, entering the [`Lanes`] kernel.
    #[inline]
    fn lanes_tiles_in<S: Simd, X: Xform, const ST: bool, const AC: bool, const ACT: bool>(
        self,
        s: S,
        xf: X,
        scratch: *mut f32,
    ) -> BlockSums {
        s.vectorize(Lanes::<E, G, X, ST, AC, ACT> {
            job: self,
            xf,
            scratch,
        })
    }

    /// [`CeJob::lanes`] in place, entering the [`LanesDirect`] kernel.
    #[inline]
    fn lanes_direct_in<S: Simd, X: Xform, const ST: bool, const AC: bool, const ACT: bool>(
        self,
        s: S,
        xf: X,
    ) -> BlockSums {
        s.vectorize(LanesDirect::<E, G, X, ST, AC, ACT> { job: self, xf })
    }

    /// The kernel of [`CeJob::lanes`] with a scratch of [`scratch_len`] f32.
    #[inline(always)]
    fn lanes_tiles<S: Simd, X: Xform, const ST: bool, const AC: bool, const ACT: bool>(
        self,
        s: S,
        xf: X,
        scratch: *mut f32,
    ) -> BlockSums {
        let mut sums = UnitSums::new(s, self.consts.z != 0.0);
        let (c, inner) = (self.classes, self.inner);
        let tw = tile_lanes(c);
        let ts = tile_stride(tw);
        let streaming = self.stream && tw >= STREAM_LANES;
        let (t, g) = (self.t.map(NonNull::as_ptr), self.g.map(NonNull::as_ptr));
        // SAFETY: the scratch holds scratch_len(C, inner) = 3·C·ts f32; every copy
        // stays within row n's classes and lanes i0..i0 + w of the block.
        unsafe {
            let (xt, tt, gt) = (scratch, scratch.add(c * ts), scratch.add(2 * c * ts));
            for n in 0..self.outer {
                let mut i0 = 0;
                while i0 < inner {
                    let w = tw.min(inner - i0);
                    let base = n * c * inner + i0;
                    for k in 0..c {
                        let src = base + k * inner;
                        copy_convert(s, self.x.add(src), xt.add(k * ts), w);
                        if let Some(t) = t {
                            copy_convert(s, t.add(src), tt.add(k * ts), w);
                        }
                        if let (Some(g), true) = (g, self.accumulate) {
                            copy_convert(s, g.add(src), gt.add(k * ts), w);
                        }
                    }
                    // The next tile's logits are fetched into L2 while this one
                    // computes, a few lines per unit, so that its copy finds them there.
                    let next = if i0 + w < inner {
                        Some((base + w, tw.min(inner - i0 - w)))
                    } else if n + 1 < self.outer {
                        Some(((n + 1) * c * inner, tw.min(inner)))
                    } else {
                        None
                    };
                    let mut ahead = next.map(|(b, nw)| {
                        Ahead::new(self.x.wrapping_add(b), inner, c, nw, w.div_ceil(S::LANES))
                    });
                    let mut j = 0;
                    while j < w {
                        if let Some(a) = ahead.as_mut() {
                            a.step(s);
                        }
                        let full = j + S::LANES <= w;
                        let lanes = if full { S::LANES } else { 1 };
                        let r0 = n * inner + i0 + j;
                        let at = LaneAt::<f32, f32> {
                            x: xt.add(j),
                            t: t.map(|_| tt.add(j) as *const f32),
                            g: g.map(|_| gt.add(j)),
                            stride: ts,
                        };
                        if full {
                            sums.add(
                                s,
                                self.lane_unit_body::<S, X, _, _, ST, AC, ACT>(s, xf, at, r0),
                            );
                        } else {
                            sums.add_one(self.lane_unit(Scalar, xf, at, r0));
                        }
                        j += lanes;
                    }
                    if let Some(g) = g {
                        for k in 0..c {
                            let (src, dst) =
                                (gt.add(k * ts) as *const f32, g.add(base + k * inner));
                            if streaming {
                                copy_out_streaming(s, src, dst, w);
                            } else {
                                copy_convert(s, src, dst, w);
                            }
                        }
                    }
                    i0 += w;
                }
            }
        }
        if streaming {
            s.stream_fence();
        }
        sums.finish(s)
    }

    /// K-dim rows (`inner > 1`) of many classes ([`kdim_as_rows`]), [`KDIM_GROUP`]
    /// neighbouring rows at a time: gathered into contiguous f32 rows in the scratch
    /// (`LANES × LANES` transposes; the logits, and the targets or a prior gradient),
    /// run through the row kernels as a block of contiguous rows, and the gradient
    /// rows scattered back. A driver: the gathers, scatters and row kernels are
    /// kernels of their own.
    #[inline]
    fn kdim_rows<S: Simd, X: Xform>(self, s: S, xf: X, scratch: *mut f32) -> BlockSums {
        let (c, inner) = (self.classes, self.inner);
        let (t, g) = (self.t.map(NonNull::as_ptr), self.g.map(NonNull::as_ptr));
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        // SAFETY: the scratch holds scratch_len(C, inner) = (3·KDIM_GROUP + 1)·C f32:
        // three groups of rows and one row; every gather and scatter stays within row
        // n's classes and lanes i0..i0 + w of the block.
        unsafe {
            let (xr, tr, gr) = (
                scratch,
                scratch.add(KDIM_GROUP * c),
                scratch.add(2 * KDIM_GROUP * c),
            );
            let es = scratch.add(3 * KDIM_GROUP * c);
            for n in 0..self.outer {
                let mut i0 = 0;
                while i0 < inner {
                    let w = KDIM_GROUP.min(inner - i0);
                    let base = n * c * inner + i0;
                    gather_rows(s, self.x.add(base), inner, c, xr, w);
                    if let Some(t) = t {
                        gather_rows(s, t.add(base), inner, c, tr, w);
                    }
                    if let (Some(g), true) = (g, self.accumulate) {
                        gather_rows(s, g.add(base), inner, c, gr, w);
                    }
                    let r0 = n * inner + i0;
                    let job = CeJob::<f32, f32> {
                        x: xr,
                        g: g.and(NonNull::new(gr)),
                        accumulate: self.accumulate,
                        t: t.and(NonNull::new(tr)),
                        idx: self.idx,
                        row0: self.row0 + r0,
                        outer: w,
                        classes: c,
                        inner: 1,
                        weight: self.weight,
                        consts: self.consts,
                        cap: self.cap,
                        scale: self.scale.rows(r0, w),
                        loss_out: self.loss_out.map(|l| l.add(r0)),
                        scratch: NonNull::new(es),
                        stream: false,
                    };
                    let (a, b) = job.rows_any(s, xf);
                    total.merge(a);
                    ztotal.merge(b);
                    if let Some(g) = g {
                        scatter_rows(s, gr, g.add(base), inner, c, w);
                    }
                    i0 += w;
                }
            }
        }
        (total, ztotal)
    }

    /// K-dim rows (`inner > 1`) in place, `LANES` neighbouring rows at a time (when
    /// no scratch was given). The body of the [`LanesDirect`] kernel.
    #[inline(always)]
    fn lanes_direct<S: Simd, X: Xform, const ST: bool, const AC: bool, const ACT: bool>(
        self,
        s: S,
        xf: X,
    ) -> BlockSums {
        let mut sums = UnitSums::new(s, self.consts.z != 0.0);
        let (c, inner) = (self.classes, self.inner);
        for n in 0..self.outer {
            let mut i = 0;
            while i < inner {
                let full = i + S::LANES <= inner;
                let lanes = if full { S::LANES } else { 1 };
                let r0 = n * inner + i;
                let base = n * c * inner + i;
                // SAFETY: base + k·inner + l for k < C, l < lanes lies in the block.
                let at = unsafe {
                    LaneAt {
                        x: self.x.add(base),
                        t: self.t.map(|t| t.as_ptr().add(base) as *const E),
                        g: self.g.map(|g| g.as_ptr().add(base)),
                        stride: inner,
                    }
                };
                if full {
                    sums.add(
                        s,
                        self.lane_unit_body::<S, X, _, _, ST, AC, ACT>(s, xf, at, r0),
                    );
                } else {
                    sums.add_one(self.lane_unit(Scalar, xf, at, r0));
                }
                i += lanes;
            }
        }
        sums.finish(s)
    }

    /// Short contiguous rows (`C ≤ SMALL_C`), `LANES` rows at a time: each group is
    /// transposed into class-major f32 tiles so that the lane kernels vectorize
    /// across rows, and the gradient tile is transposed back.
    #[inline]
    fn small_rows<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        let flags = self.lane_flags::<X, f32>();
        by_lane_flags!(flags, self.small_rows_in::<S, X>(s, xf))
    }

    /// [`CeJob::small_rows`], entering the [`SmallRows`] kernel.
    #[inline]
    fn small_rows_in<S: Simd, X: Xform, const ST: bool, const AC: bool, const ACT: bool>(
        self,
        s: S,
        xf: X,
    ) -> BlockSums {
        s.vectorize(SmallRows::<E, G, X, ST, AC, ACT> { job: self, xf })
    }

    /// The body of the [`SmallRows`] kernel.
    #[inline(always)]
    fn small_rows_body<S: Simd, X: Xform, const ST: bool, const AC: bool, const ACT: bool>(
        self,
        s: S,
        xf: X,
    ) -> BlockSums {
        let mut sums = UnitSums::new(s, self.consts.z != 0.0);
        let c = self.classes;
        let lanes = S::LANES;
        // f32 tiles whatever E and G are: widened once on the way in, rounded once
        // on the way out, and the statistics pass can store its exps in `gt`.
        let mut xt = Tile::new();
        let mut tt = Tile::new();
        let mut gt = Tile::new();
        let (t, g) = (self.t.map(NonNull::as_ptr), self.g.map(NonNull::as_ptr));
        let mut r0 = 0;
        while r0 < self.outer {
            let full = r0 + lanes <= self.outer;
            if full {
                // SAFETY: rows r0..r0 + lanes of C elements lie in the block; the
                // tiles hold lanes·C ≤ 16·SMALL_C f32.
                unsafe {
                    let base = r0 * c;
                    s.rows_to_tile(self.x.add(base), c, c, xt.0.as_mut_ptr());
                    if let Some(t) = t {
                        s.rows_to_tile(t.add(base), c, c, tt.0.as_mut_ptr());
                    }
                    if let (Some(g), true) = (g, self.accumulate) {
                        s.rows_to_tile(g.add(base), c, c, gt.0.as_mut_ptr());
                    }
                    let at = LaneAt {
                        x: xt.0.as_ptr(),
                        t: t.map(|_| tt.0.as_ptr()),
                        g: g.map(|_| gt.0.as_mut_ptr()),
                        stride: lanes,
                    };
                    sums.add(
                        s,
                        self.lane_unit_body::<S, X, _, _, ST, AC, ACT>(s, xf, at, r0),
                    );
                    if let Some(g) = g {
                        s.tile_to_rows(gt.0.as_ptr(), g.add(base), c, c);
                    }
                }
            } else {
                // SAFETY: row r0 of C contiguous elements lies in the block.
                let at = unsafe {
                    LaneAt {
                        x: self.x.add(r0 * c),
                        t: t.map(|t| t.add(r0 * c) as *const E),
                        g: g.map(|g| g.add(r0 * c)),
                        stride: 1,
                    }
                };
                sums.add_one(self.lane_unit(Scalar, xf, at, r0));
            }
            r0 += if full { lanes } else { 1 };
        }
        sums.finish(s)
    }

    /// `LANES` rows whose class `k` of lane `l` is at `k·stride + l` from `at`'s
    /// pointers; lane `l` is row `r0 + l` of the block. Returns the rows' losses
    /// without their z terms, and the z terms, zero in ignored lanes. A kernel of
    /// its own: the one-lane units at the ends of a block run it on [`Scalar`] from
    /// within a vector kernel, whose whole units inline its body
    /// ([`CeJob::lane_unit_body`]: a call per unit costs ~10 % at C = 10).
    #[inline]
    fn lane_unit<S: Simd, X: Xform, TE: Store32, TG: Store32>(
        &self,
        s: S,
        xf: X,
        at: LaneAt<TE, TG>,
        r0: usize,
    ) -> (S::V, S::V) {
        let flags = self.lane_flags::<X, TG>();
        by_lane_flags!(flags, self.lane_unit_in::<S, X, TE, TG>(s, xf, at, r0))
    }

    /// [`CeJob::lane_unit`], entering the [`LaneUnit`] kernel.
    #[inline]
    fn lane_unit_in<
        S: Simd,
        X: Xform,
        TE: Store32,
        TG: Store32,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        &self,
        s: S,
        xf: X,
        at: LaneAt<TE, TG>,
        r0: usize,
    ) -> (S::V, S::V) {
        s.vectorize(LaneUnit::<E, G, X, TE, TG, ST, AC, ACT> {
            job: self,
            xf,
            at,
            r0,
        })
    }

    /// The body of the [`LaneUnit`] kernel.
    #[inline(always)]
    fn lane_unit_body<
        S: Simd,
        X: Xform,
        TE: Store32,
        TG: Store32,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        &self,
        s: S,
        xf: X,
        at: LaneAt<TE, TG>,
        r0: usize,
    ) -> (S::V, S::V) {
        let (c, stride) = (self.classes, at.stride);
        let lanes = S::LANES;
        let probs = at.t.is_some();
        let w = self.weight.map(|w| w.as_ptr());
        let x = at.x;
        let coef = match at.t {
            Some(t) => LaneCoef::Probs {
                t,
                w,
                keep: 1.0 - self.consts.eps,
                spread: self.consts.eps / self.consts.classes,
            },
            None if self.consts.eps > 0.0 => w.map_or(LaneCoef::Ones, LaneCoef::Weights),
            None => LaneCoef::None,
        };
        // Per lane: the upstream scales, and the target class with its weight and
        // raw logit (ignored rows stay inactive). Read before the statistics pass,
        // which may store into a gradient that aliases the logits.
        let (scale_ce, scale_z) = match self.scale {
            Scale::Uniform { ce, z } => (s.splat(ce), s.splat(z)),
            Scale::PerRow(go) => {
                let v = s.vector_of(&go[r0..r0 + lanes]);
                (v, v)
            }
        };
        let mut active = [0.0f32; 16];
        let mut w_y = [0.0f32; 16];
        let mut x_y = [0.0f32; 16];
        // usize::MAX: no target class (ignored, or probability targets).
        let mut class = [usize::MAX; 16];
        if probs {
            active[..lanes].fill(1.0);
        } else if let Some((idx, ignore)) = self.idx {
            idx.classes_into(self.row0 + r0, ignore, &mut class[..lanes]);
        }
        for l in 0..lanes {
            let y = class[l];
            if y != usize::MAX {
                active[l] = 1.0;
                // SAFETY: y < C (validated targets), so the element lies in the unit.
                x_y[l] = unsafe { Scalar.load(x.add(y * stride + l)) };
                w_y[l] = self.weight.map_or(1.0, |w| w[y]);
            }
        }
        // The target's coefficient of the linear terms (lanes without a target are
        // never written with it).
        let a_y = match coef {
            LaneCoef::Ones => s.splat(1.0),
            LaneCoef::Weights(_) => s.vector_of(&w_y[..lanes]),
            _ => s.splat(0.0),
        };
        // Without soft-capping, an overwritten f32 gradient receives exp(x̃ − shift)
        // from the statistics pass, and the gradient pass only scales it.
        // ST, AC and ACT are `self.lane_flags::<X, TG>()`, chosen by the driver.
        debug_assert_eq!((ST, AC, ACT), self.lane_flags::<X, TG>());
        let e_out = match at.g {
            Some(g) if ST => g as *mut f32,
            _ => core::ptr::null_mut(),
        };
        // SAFETY: the caller's pointers cover C classes at `stride` for `LANES` lanes;
        // `TG` is f32 when there is an `e_out`.
        let stats =
            unsafe { lanes::lane_stats::<S, TE, X, ST, ACT>(s, x, stride, c, coef, xf, e_out) };
        let vec = |v: &[f32; 16]| s.vector_of(&v[..lanes]);
        let on = s.ne_zero(vec(&active));
        let x_y = vec(&x_y);
        let index = (!probs).then(|| (vec(&w_y), xf.apply(s, x_y)));
        let (loss, zt, consts) = finish_v(s, &stats, index, &self.consts, scale_ce, scale_z);
        let zero = s.splat(0.0);
        let (loss, zt) = (s.select(on, loss, zero), s.select(on, zt, zero));
        if let Some(l) = self.loss_out {
            // SAFETY: rows r0..r0 + LANES lie in the block, which has a loss each.
            unsafe { s.store(l.as_ptr().add(r0), s.add(loss, zt)) };
        }
        if let Some(g) = at.g {
            let ms = s.neg_inf_to(stats.m, zero);
            // SAFETY: as for x; g may alias x, and every target element was read above.
            unsafe {
                let mut prior = [0.0f32; 16];
                if self.accumulate {
                    for l in 0..lanes {
                        let y = class[l];
                        if y != usize::MAX {
                            prior[l] = (*g.add(y * stride + l)).to_f32();
                        }
                    }
                }
                lanes::lane_grad::<S, TE, TG, X, ST, AC, ACT>(
                    s, x, g, stride, c, coef, xf, ms, &consts, on,
                );
                if !probs {
                    let v = target_grad_v(s, xf, x_y, a_y, ms, &consts, vec(&prior));
                    let mut v_l = [0.0f32; 16];
                    s.write_lanes(v, &mut v_l);
                    for l in 0..lanes {
                        let y = class[l];
                        if y != usize::MAX {
                            *g.add(y * stride + l) = TG::from_f32(v_l[l]);
                        }
                    }
                }
            }
        }
        (loss, zt)
    }
}

/// [`CeJob::lanes`] through tiles in the scratch, as a kernel (with the lane flags
/// of [`CeJob::lane_flags`] as `ST`, `AC`, `ACT`).
struct Lanes<'a, E, G, X, const ST: bool, const AC: bool, const ACT: bool> {
    job: CeJob<'a, E, G>,
    xf: X,
    scratch: *mut f32,
}

impl<E: Store32, G: Store32, X: Xform, const ST: bool, const AC: bool, const ACT: bool> Kernel
    for Lanes<'_, E, G, X, ST, AC, ACT>
{
    type Out = BlockSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> BlockSums {
        self.job
            .lanes_tiles::<S, X, ST, AC, ACT>(s, self.xf, self.scratch)
    }
}

/// [`CeJob::lanes`] in place (no scratch), as a kernel.
struct LanesDirect<'a, E, G, X, const ST: bool, const AC: bool, const ACT: bool> {
    job: CeJob<'a, E, G>,
    xf: X,
}

impl<E: Store32, G: Store32, X: Xform, const ST: bool, const AC: bool, const ACT: bool> Kernel
    for LanesDirect<'_, E, G, X, ST, AC, ACT>
{
    type Out = BlockSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> BlockSums {
        self.job.lanes_direct::<S, X, ST, AC, ACT>(s, self.xf)
    }
}

/// [`CeJob::small_rows`] as a kernel.
struct SmallRows<'a, E, G, X, const ST: bool, const AC: bool, const ACT: bool> {
    job: CeJob<'a, E, G>,
    xf: X,
}

impl<E: Store32, G: Store32, X: Xform, const ST: bool, const AC: bool, const ACT: bool> Kernel
    for SmallRows<'_, E, G, X, ST, AC, ACT>
{
    type Out = BlockSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> BlockSums {
        self.job.small_rows_body::<S, X, ST, AC, ACT>(s, self.xf)
    }
}

/// [`CeJob::lane_unit`] as a kernel: it returns the unit's loss vectors.
struct LaneUnit<'j, 'a, E, G, X, TE, TG, const ST: bool, const AC: bool, const ACT: bool> {
    job: &'j CeJob<'a, E, G>,
    xf: X,
    at: LaneAt<TE, TG>,
    r0: usize,
}

impl<
        S: Simd,
        E: Store32,
        G: Store32,
        X: Xform,
        TE: Store32,
        TG: Store32,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    > SimdKernel<S> for LaneUnit<'_, '_, E, G, X, TE, TG, ST, AC, ACT>
{
    type Out = (S::V, S::V);
    #[inline(always)]
    fn run(self, s: S) -> (S::V, S::V) {
        self.job
            .lane_unit_body::<S, X, TE, TG, ST, AC, ACT>(s, self.xf, self.at, self.r0)
    }
}

/// The loss sums of a block's lane units: `f64` lane sums of the whole units, and
/// plain `f64` sums of the one-lane units at the block's ends; one order for a
/// given block, whatever the thread count.
struct UnitSums<S: Simd> {
    loss: S::D,
    z: S::D,
    loss_one: f64,
    z_one: f64,
    /// Whether the z terms are summed (they are all zero otherwise).
    with_z: bool,
}

impl<S: Simd> UnitSums<S> {
    #[inline(always)]
    fn new(s: S, with_z: bool) -> Self {
        UnitSums {
            loss: s.d_zero(),
            z: s.d_zero(),
            loss_one: 0.0,
            z_one: 0.0,
            with_z,
        }
    }
    /// A unit's losses and z terms (zero in inactive lanes).
    #[inline(always)]
    fn add(&mut self, s: S, (loss, z): (S::V, S::V)) {
        self.loss = s.d_add(self.loss, loss);
        if self.with_z {
            self.z = s.d_add(self.z, z);
        }
    }
    /// A one-lane unit's loss and z term.
    #[inline(always)]
    fn add_one(&mut self, (loss, z): (f32, f32)) {
        self.loss_one += loss as f64;
        self.z_one += z as f64;
    }
    #[inline(always)]
    fn finish(self, s: S) -> BlockSums {
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        total.add(s.d_sum(self.loss) + self.loss_one);
        if self.with_z {
            ztotal.add(s.d_sum(self.z) + self.z_one);
        }
        (total, ztotal)
    }
}

/// Copies `n` elements from `src` to `dst`, converting through f32 with vector loads
/// and stores (the tails one by one).
///
/// # Safety
/// `src` readable and `dst` writable for `n` elements; they do not overlap.
#[inline]
pub(super) unsafe fn copy_convert<S: Simd, A: Store32, B: Store32>(
    s: S,
    src: *const A,
    dst: *mut B,
    n: usize,
) {
    s.vectorize(CopyConvertKernel { src, dst, n })
}

/// The kernel of [`copy_convert`], with its arguments.
struct CopyConvertKernel<A, B> {
    src: *const A,
    dst: *mut B,
    n: usize,
}

impl<A: Store32, B: Store32> Kernel for CopyConvertKernel<A, B> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let CopyConvertKernel { src, dst, n } = self;
        // The fields are the arguments of `copy_convert`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let body = n - n % S::LANES;
        let mut j = 0;
        // SAFETY: j + LANES ≤ body ≤ n, and j < n in the tail.
        unsafe {
            while j < body {
                s.store(dst.add(j), s.load(src.add(j)));
                j += S::LANES;
            }
            for j in body..n {
                *dst.add(j) = B::from_f32((*src.add(j)).to_f32());
            }
        }
    }
}

/// [`copy_convert`] from an f32 tile with streaming stores ([`Simd::stream`]) where
/// `dst` is aligned to a vector; the elements before the first such boundary and
/// after the last whole vector are stored one by one.
///
/// # Safety
/// As [`copy_convert`].
#[inline]
pub(super) unsafe fn copy_out_streaming<S: Simd, B: Store32>(
    s: S,
    src: *const f32,
    dst: *mut B,
    n: usize,
) {
    s.vectorize(CopyOutStreamingKernel { src, dst, n })
}

/// The kernel of [`copy_out_streaming`], with its arguments.
struct CopyOutStreamingKernel<B> {
    src: *const f32,
    dst: *mut B,
    n: usize,
}

impl<B: Store32> Kernel for CopyOutStreamingKernel<B> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let CopyOutStreamingKernel { src, dst, n } = self;
        // The fields are the arguments of `copy_out_streaming`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let align = S::LANES * core::mem::size_of::<B>();
        let head = (dst.align_offset(align)).min(n);
        let body = head + (n - head) / S::LANES * S::LANES;
        // SAFETY: every index is below n; from `head` on, dst + j is aligned to a vector
        // and j + LANES ≤ body ≤ n.
        unsafe {
            for j in (0..head).chain(body..n) {
                *dst.add(j) = B::from_f32(*src.add(j));
            }
            let mut j = head;
            while j < body {
                s.stream(dst.add(j), s.load(src.add(j)));
                j += S::LANES;
            }
        }
    }
}

/// `w` K-dim rows into contiguous f32 rows: class `k` of lane `l` (at
/// `src + k·stride + l`) goes to `dst[l·c + k]`. A whole group (`w = KDIM_GROUP`, a
/// multiple of `LANES`, and `c ≥ LANES`) goes through `LANES × LANES` transposes of
/// class windows starting at 0, LANES, … and, for the last, at `c − LANES`
/// (overlapping the one before); a partial group element by element ([`transpose_each`]).
///
/// # Safety
/// `src + k·stride` readable for `w` elements, `k < c`; `dst` writable for `w·c` f32.
#[inline]
unsafe fn gather_rows<S: Simd, A: Store32>(
    s: S,
    src: *const A,
    stride: usize,
    c: usize,
    dst: *mut f32,
    w: usize,
) {
    s.vectorize(GatherRowsKernel {
        src,
        stride,
        c,
        dst,
        w,
    })
}

/// The kernel of [`gather_rows`], with its arguments.
struct GatherRowsKernel<A> {
    src: *const A,
    stride: usize,
    c: usize,
    dst: *mut f32,
    w: usize,
}

impl<A: Store32> Kernel for GatherRowsKernel<A> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let GatherRowsKernel {
            src,
            stride,
            c,
            dst,
            w,
        } = self;
        // The fields are the arguments of `gather_rows`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        // SAFETY: every window covers classes k..k + LANES ≤ c and lanes l0..l0 + LANES
        // ≤ w; the element-wise transpose stays below (c, w).
        unsafe {
            if w == KDIM_GROUP && c >= S::LANES {
                let mut k0 = 0;
                while k0 < c {
                    let k = k0.min(c - S::LANES);
                    for l0 in (0..KDIM_GROUP).step_by(S::LANES) {
                        s.transpose_block(src.add(k * stride + l0), stride, dst.add(l0 * c + k), c);
                    }
                    k0 += S::LANES;
                }
            } else {
                transpose_each(src, stride, dst, c, (c, w));
            }
        }
    }
}

/// The inverse of [`gather_rows`]: `src[l·c + k]`, rounded to `B`, goes to
/// `dst + k·stride + l` (an overlapping window writes the same values twice).
///
/// # Safety
/// `src` readable for `w·c` f32; `dst + k·stride` writable for `w` elements, `k < c`.
#[inline]
unsafe fn scatter_rows<S: Simd, B: Store32>(
    s: S,
    src: *const f32,
    dst: *mut B,
    stride: usize,
    c: usize,
    w: usize,
) {
    s.vectorize(ScatterRowsKernel {
        src,
        dst,
        stride,
        c,
        w,
    })
}

/// The kernel of [`scatter_rows`], with its arguments.
struct ScatterRowsKernel<B> {
    src: *const f32,
    dst: *mut B,
    stride: usize,
    c: usize,
    w: usize,
}

impl<B: Store32> Kernel for ScatterRowsKernel<B> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let ScatterRowsKernel {
            src,
            dst,
            stride,
            c,
            w,
        } = self;
        // The fields are the arguments of `scatter_rows`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        // SAFETY: as gather_rows.
        unsafe {
            if w == KDIM_GROUP && c >= S::LANES {
                let mut k0 = 0;
                while k0 < c {
                    let k = k0.min(c - S::LANES);
                    for l0 in (0..KDIM_GROUP).step_by(S::LANES) {
                        s.transpose_block(src.add(l0 * c + k), c, dst.add(k * stride + l0), stride);
                    }
                    k0 += S::LANES;
                }
            } else {
                transpose_each(src, c, dst, stride, (w, c));
            }
        }
    }
}

/// Where a lane unit's data lives: class `k` of lane `l` at `k·stride + l`.
#[derive(Clone, Copy)]
struct LaneAt<E, G> {
    x: *const E,
    /// Probability targets.
    t: Option<*const E>,
    g: Option<*mut G>,
    stride: usize,
}

/// A tile of [`CeJob`]'s `small_rows`: `LANES` rows of up to [`SMALL_C`] classes,
/// class-major. Cache-line aligned, so that no vector load or store of it straddles
/// two lines (an unaligned tile splits every other access at AVX2 width).
#[repr(C, align(64))]
struct Tile([f32; 16 * SMALL_C]);

impl Tile {
    fn new() -> Self {
        Tile([0.0; 16 * SMALL_C])
    }
}

/// Rows of at most this many classes are transposed into tiles ([`CeJob`]'s
/// `small_rows`): per-row overhead would dominate them otherwise.
pub(crate) const SMALL_C: usize = 32;

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

/// One block of a softmax / log_softmax forward call.
pub(crate) struct SoftmaxJob<E, O> {
    pub x: *const E,
    pub out: *mut O,
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    pub log: bool,
}

impl<E: Store32, O: Store32> Job for SoftmaxJob<E, O> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let (c, inner) = (self.classes, self.inner);
        for n in 0..self.outer {
            // SAFETY: the driver hands a block of outer·C·inner elements.
            unsafe {
                if inner == 1 {
                    let (x, out) = (self.x.add(n * c), self.out.add(n * c));
                    let p = row::row_stats(s, x, c, NoCoef, Identity);
                    row::softmax_write(s, x, out, c, p, self.log);
                    continue;
                }
                let base = n * c * inner;
                let mut i = 0;
                while i + S::LANES <= inner {
                    let (x, out) = (self.x.add(base + i), self.out.add(base + i));
                    lanes::lane_softmax(s, x, out, inner, c, self.log);
                    i += S::LANES;
                }
                while i < inner {
                    let (x, out) = (self.x.add(base + i), self.out.add(base + i));
                    lanes::lane_softmax(Scalar, x, out, inner, c, self.log);
                    i += 1;
                }
            }
        }
    }
}

/// One block of a softmax / log_softmax backward call (from the forward output).
pub(crate) struct BackwardJob<E, G> {
    pub y: *const E,
    pub gy: *const E,
    pub gx: *mut G,
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    pub log: bool,
}

impl<E: Store32, G: Store32> Job for BackwardJob<E, G> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let (c, inner) = (self.classes, self.inner);
        for n in 0..self.outer {
            // SAFETY: the driver hands a block of outer·C·inner elements.
            unsafe {
                if inner == 1 {
                    let off = n * c;
                    let (y, gy, gx) = (self.y.add(off), self.gy.add(off), self.gx.add(off));
                    let dot = row::backward_dot(s, y, gy, c, self.log);
                    row::backward_write(s, y, gy, gx, c, dot, self.log);
                    continue;
                }
                let base = n * c * inner;
                let mut i = 0;
                while i + S::LANES <= inner {
                    let off = base + i;
                    let (y, gy, gx) = (self.y.add(off), self.gy.add(off), self.gx.add(off));
                    lanes::lane_backward(s, y, gy, gx, inner, c, self.log);
                    i += S::LANES;
                }
                while i < inner {
                    let off = base + i;
                    let (y, gy, gx) = (self.y.add(off), self.gy.add(off), self.gx.add(off));
                    lanes::lane_backward(Scalar, y, gy, gx, inner, c, self.log);
                    i += 1;
                }
            }
        }
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
        [f32; row::MAX_STORED_CHUNKS],
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
    type Out = (RowStats<f32>, [f32; row::MAX_STORED_CHUNKS]);
    fn run<S: Simd>(self, s: S) -> Self::Out {
        match self.cap {
            None => self.with(s, Identity),
            Some(cap) => self.with(s, SoftCap { cap }),
        }
    }
}

impl<E: Store32, G: Store32> PieceJob<E, G> {
    #[inline(always)]
    fn with<S: Simd, X: Xform>(
        &self,
        s: S,
        xf: X,
    ) -> (RowStats<f32>, [f32; row::MAX_STORED_CHUNKS]) {
        match self.coef {
            AnyCoef::None => self.go(s, xf, NoCoef),
            AnyCoef::Ones => self.go(s, xf, Ones),
            AnyCoef::Weights(w) => self.go(s, xf, Weights(w)),
            AnyCoef::Probs(p) => self.go(s, xf, p),
        }
    }

    #[inline(always)]
    fn go<S: Simd, X: Xform, C: Coef>(
        &self,
        s: S,
        xf: X,
        coef: C,
    ) -> (RowStats<f32>, [f32; row::MAX_STORED_CHUNKS]) {
        let mut chunk_max = [0.0f32; row::MAX_STORED_CHUNKS];
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
