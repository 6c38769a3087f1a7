//! The coefficients `a_c` of the linear terms of a row (label smoothing, probability
//! targets): the static [`Coef`] types the row kernels are compiled for, and the
//! run-time [`Coefs`] the lane kernels read and the plan chooses.

use super::simd::{Simd, Store32};

/// Per-class coefficients `a_c` of the linear terms of a contiguous row.
pub(crate) trait Coef: Copy {
    /// `false`: no linear terms (plain cross-entropy, softmax).
    const ACTIVE: bool;
    /// The coefficients of classes `i..i + LANES` of the current chunk.
    ///
    /// # Safety
    /// `i + LANES` within the row.
    unsafe fn load<S: Simd>(&self, s: S, i: usize) -> S::V;
    /// The same source advanced by `k` classes.
    ///
    /// # Safety
    /// The result must stay within the row.
    unsafe fn offset(&self, k: usize) -> Self;
    /// The source for the row starting at element `off` of a block of contiguous
    /// rows (class weights stay: they are per class).
    ///
    /// # Safety
    /// `off` is the start of a row of the block.
    unsafe fn row(&self, off: usize) -> Self;
    /// The scalar coefficient of class `y` of this row, for the target class's exact
    /// gradient (0 for probability targets: their `b` is 0 and the pass has it).
    ///
    /// # Safety
    /// `y < C`.
    unsafe fn scalar_at(&self, y: usize) -> f32;
}

/// No linear terms.
#[derive(Clone, Copy)]
pub(crate) struct NoCoef;
impl Coef for NoCoef {
    const ACTIVE: bool = false;
    #[inline(always)]
    unsafe fn load<S: Simd>(&self, s: S, _i: usize) -> S::V {
        s.splat(0.0)
    }
    #[inline(always)]
    unsafe fn offset(&self, _k: usize) -> Self {
        NoCoef
    }
    #[inline(always)]
    unsafe fn row(&self, _off: usize) -> Self {
        NoCoef
    }
    #[inline(always)]
    unsafe fn scalar_at(&self, _y: usize) -> f32 {
        0.0
    }
}

/// `a_c = 1`: unweighted label smoothing.
#[derive(Clone, Copy)]
pub(crate) struct Ones;
impl Coef for Ones {
    const ACTIVE: bool = true;
    #[inline(always)]
    unsafe fn load<S: Simd>(&self, s: S, _i: usize) -> S::V {
        s.splat(1.0)
    }
    #[inline(always)]
    unsafe fn offset(&self, _k: usize) -> Self {
        Ones
    }
    #[inline(always)]
    unsafe fn row(&self, _off: usize) -> Self {
        Ones
    }
    #[inline(always)]
    unsafe fn scalar_at(&self, _y: usize) -> f32 {
        1.0
    }
}

/// `a_c = w_c`: weighted label smoothing.
#[derive(Clone, Copy)]
pub(crate) struct Weights(pub *const f32);
impl Coef for Weights {
    const ACTIVE: bool = true;
    #[inline(always)]
    unsafe fn load<S: Simd>(&self, s: S, i: usize) -> S::V {
        // SAFETY: the caller keeps i + LANES within the C weights.
        unsafe { s.load(self.0.add(i)) }
    }
    #[inline(always)]
    unsafe fn offset(&self, k: usize) -> Self {
        // SAFETY: the caller keeps the offset within the weights.
        Weights(unsafe { self.0.add(k) })
    }
    #[inline(always)]
    unsafe fn row(&self, _off: usize) -> Self {
        *self
    }
    #[inline(always)]
    unsafe fn scalar_at(&self, y: usize) -> f32 {
        // SAFETY: y < C.
        unsafe { *self.0.add(y) }
    }
}

/// `a_c = w_c·((1−ε)·t_c + ε/C)`: probability targets.
#[derive(Clone, Copy)]
pub(crate) struct Probs<E> {
    pub t: *const E,
    pub w: Option<*const f32>,
    pub keep: f32,
    pub spread: f32,
}
impl<E: Store32> Coef for Probs<E> {
    const ACTIVE: bool = true;
    #[inline(always)]
    unsafe fn load<S: Simd>(&self, s: S, i: usize) -> S::V {
        // SAFETY: the caller keeps i + LANES within the row of targets (and weights).
        unsafe {
            let t = s.fma(
                s.load(self.t.add(i)),
                s.splat(self.keep),
                s.splat(self.spread),
            );
            match self.w {
                Some(w) => s.mul(t, s.load(w.add(i))),
                None => t,
            }
        }
    }
    #[inline(always)]
    unsafe fn offset(&self, k: usize) -> Self {
        // SAFETY: the caller keeps the offset within the row.
        unsafe {
            Probs {
                t: self.t.add(k),
                w: self.w.map(|w| w.add(k)),
                ..*self
            }
        }
    }
    #[inline(always)]
    unsafe fn row(&self, off: usize) -> Self {
        // SAFETY: off is a row start within the block's targets.
        let t = unsafe { self.t.add(off) };
        Probs { t, ..*self }
    }
    #[inline(always)]
    unsafe fn scalar_at(&self, _y: usize) -> f32 {
        0.0
    }
}

/// The coefficients `a_c` of one row (or of `LANES` rows at a stride), chosen at run
/// time: what the call's [`CoefKind`](super::plan::CoefKind) makes of a row's
/// pointers ([`RowPlan::coefs`](super::plan::RowPlan::coefs)). The row kernels take
/// them as one of the static [`Coef`] types (matched once per block or piece); the
/// lane kernels read them per class ([`Coefs::lane_at`]).
#[derive(Clone, Copy)]
pub(crate) enum Coefs<E> {
    None,
    Ones,
    Weights(*const f32),
    /// `t` laid out like the logits it goes with (a row, or lanes at a stride).
    Probs(Probs<E>),
}

impl<E: Store32> Coefs<E> {
    /// Whether the rows have linear terms.
    #[inline(always)]
    pub(crate) fn active(&self) -> bool {
        !matches!(self, Coefs::None)
    }

    /// The same coefficients advanced by `k` classes of a row.
    ///
    /// # Safety
    /// The result must stay within the row.
    #[inline]
    pub(crate) unsafe fn offset(&self, k: usize) -> Self {
        // SAFETY: guaranteed by the caller.
        unsafe {
            match self {
                Coefs::None => Coefs::None,
                Coefs::Ones => Coefs::Ones,
                Coefs::Weights(w) => Coefs::Weights(w.add(k)),
                Coefs::Probs(p) => Coefs::Probs(p.offset(k)),
            }
        }
    }

    /// The scalar coefficient of class `y` (see [`Coef::scalar_at`]).
    ///
    /// # Safety
    /// `y` within the row.
    #[inline]
    pub(crate) unsafe fn scalar_at(&self, y: usize) -> f32 {
        // SAFETY: guaranteed by the caller.
        unsafe {
            match self {
                Coefs::Ones => 1.0,
                Coefs::Weights(w) => *w.add(y),
                Coefs::None | Coefs::Probs(_) => 0.0,
            }
        }
    }

    /// The coefficients of class `c` of `LANES` rows whose targets lie at `stride`
    /// per class (one lane per row).
    ///
    /// # Safety
    /// Class `c < C`, and for `Probs` the lanes at `t + c·stride` readable.
    #[inline(always)]
    pub(crate) unsafe fn lane_at<S: Simd>(&self, s: S, c: usize, stride: usize) -> S::V {
        // SAFETY: guaranteed by the caller.
        unsafe {
            match *self {
                Coefs::None => s.splat(0.0),
                Coefs::Ones => s.splat(1.0),
                Coefs::Weights(w) => s.splat(*w.add(c)),
                Coefs::Probs(Probs { t, w, keep, spread }) => {
                    let v = s.fma(s.load(t.add(c * stride)), s.splat(keep), s.splat(spread));
                    match w {
                        Some(w) => s.mul(v, s.splat(*w.add(c))),
                        None => v,
                    }
                }
            }
        }
    }
}
