//! What every layout path of a block shares: the row finish (loss and gradient
//! constants from the statistics), the target's gradient, the K-dim prefetch cursor.

use crate::kernels::plan::Options;
use crate::kernels::row::{GradConsts, RowStats, Xform};
use crate::kernels::simd::{Scalar, Simd, Store32};
use crate::reduce::CompensatedSum;

/// What a row's target is, for [`finish`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowTarget {
    /// A class index with its weight and its (transformed) logit.
    Index { w_y: f32, x_y: f32 },
    /// A probability row (its coefficients are in the partial's linear terms).
    Probs,
}

/// Row loss without its z term, the z term, and the gradient constants, from the
/// row's statistics: [`finish_v`] on one lane.
#[inline]
pub(crate) fn finish(
    p: RowStats<f32>,
    t: RowTarget,
    k: &Options<f32>,
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
    k: &Options<f32>,
    scale_ce: S::V,
    scale_z: S::V,
) -> (S::V, S::V, GradConsts<S::V>) {
    let zero = s.splat(0.0);
    let ms = s.neg_inf_to(p.m, zero);
    let ln_s = s.ln(p.s);
    let (zt, zg) = if k.z_loss != 0.0 {
        let lse = s.add(ms, ln_s);
        let z = s.splat(k.z_loss);
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
            let keep = s.splat(1.0 - k.label_smoothing);
            let nll = s.sub(ln_s, s.sub(x_y, ms));
            let mut loss = s.mul(s.mul(keep, w_y), nll);
            let b = s.mul(s.mul(scale_ce, keep), w_y);
            let mut alpha = b;
            let mut beta = zero;
            if k.label_smoothing > 0.0 {
                let e = s.splat(k.label_smoothing / k.classes);
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
/// themselves, or accumulate onto a prior gradient). Whole rows and long rows split
/// in pieces share it.
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

/// A cursor over the cache lines of a K-dim tile still in memory (`c` classes of
/// `w` elements at stride `stride` from `p`), prefetched into L2 a few lines per step
/// so that the whole tile is covered in `steps` steps.
pub(super) struct Ahead {
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
    pub(super) fn new<E>(p: *const E, stride: usize, c: usize, w: usize, steps: usize) -> Self {
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
    pub(super) fn step<S: Simd>(&mut self, s: S) {
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

/// Sums of a block: (loss without z terms, z terms), over rows in order.
pub(crate) type BlockSums = (CompensatedSum, CompensatedSum);
