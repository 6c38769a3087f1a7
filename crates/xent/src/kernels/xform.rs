//! The transforms of the logits that the row kernels apply on load: the logits as
//! the loss sees them, `x̃ = softcap(s·x)` (logit scale `s`, then soft-capping), and
//! the chain factor `dx̃/dx` of the gradient.
//!
//! A kernel is monomorphized on its [`Xform`]: `s = 1` without soft-capping is
//! [`Identity`], whose code is the plain kernel's. [`Transform`] is the choice made
//! once per call from its options, and [`with_xform!`] turns it into the static type.

use super::simd::Simd;

/// A transform of the logits applied on load.
pub(crate) trait Xform: Copy {
    /// `true` when the gradient needs the chain factor `dx̃/dx` (every transform but
    /// the identity; the kernels that store `exp(x̃ − m)` for the gradient pass run
    /// only without it).
    const CHAINED: bool;
    /// `true` for [`Identity`] alone: `x̃ = x`, so the max of `x̃` is that of `x`.
    const IDENTITY: bool = false;
    fn apply<S: Simd>(&self, s: S, v: S::V) -> S::V;
    /// `(x̃, dx̃/dx)`.
    fn apply_d<S: Simd>(&self, s: S, v: S::V) -> (S::V, S::V);
}

/// `x̃ = x`.
#[derive(Clone, Copy)]
pub(crate) struct Identity;
impl Xform for Identity {
    const CHAINED: bool = false;
    const IDENTITY: bool = true;
    #[inline(always)]
    fn apply<S: Simd>(&self, _s: S, v: S::V) -> S::V {
        v
    }
    #[inline(always)]
    fn apply_d<S: Simd>(&self, s: S, v: S::V) -> (S::V, S::V) {
        (v, s.splat(1.0))
    }
}

/// `x̃ = cap·tanh(x/cap)`, `dx̃/dx = 1 − tanh²(x/cap)`.
#[derive(Clone, Copy)]
pub(crate) struct SoftCap {
    pub cap: f32,
}
impl Xform for SoftCap {
    const CHAINED: bool = true;
    #[inline(always)]
    fn apply<S: Simd>(&self, s: S, v: S::V) -> S::V {
        s.mul(s.splat(self.cap), s.tanh(s.mul(v, s.splat(1.0 / self.cap))))
    }
    #[inline(always)]
    fn apply_d<S: Simd>(&self, s: S, v: S::V) -> (S::V, S::V) {
        let t = s.tanh(s.mul(v, s.splat(1.0 / self.cap)));
        let d = s.sub(s.splat(1.0), s.mul(t, t));
        (s.mul(s.splat(self.cap), t), d)
    }
}

/// `x̃ = s·x`, `dx̃/dx = s`.
#[derive(Clone, Copy)]
pub(crate) struct Scaled {
    pub s: f32,
}
impl Xform for Scaled {
    const CHAINED: bool = true;
    #[inline(always)]
    fn apply<S: Simd>(&self, s: S, v: S::V) -> S::V {
        s.mul(v, s.splat(self.s))
    }
    #[inline(always)]
    fn apply_d<S: Simd>(&self, s: S, v: S::V) -> (S::V, S::V) {
        let k = s.splat(self.s);
        (s.mul(v, k), k)
    }
}

/// `x̃ = cap·tanh(s·x/cap)`, `dx̃/dx = s·(1 − tanh²(s·x/cap))`: scaled first, then
/// soft-capped.
#[derive(Clone, Copy)]
pub(crate) struct ScaledSoftCap {
    pub s: f32,
    pub cap: f32,
}
impl Xform for ScaledSoftCap {
    const CHAINED: bool = true;
    #[inline(always)]
    fn apply<S: Simd>(&self, s: S, v: S::V) -> S::V {
        let u = s.mul(s.mul(v, s.splat(self.s)), s.splat(1.0 / self.cap));
        s.mul(s.splat(self.cap), s.tanh(u))
    }
    #[inline(always)]
    fn apply_d<S: Simd>(&self, s: S, v: S::V) -> (S::V, S::V) {
        let t = s.tanh(s.mul(s.mul(v, s.splat(self.s)), s.splat(1.0 / self.cap)));
        let d = s.mul(s.splat(self.s), s.sub(s.splat(1.0), s.mul(t, t)));
        (s.mul(s.splat(self.cap), t), d)
    }
}

/// The transform of a call, chosen at run time from its options
/// ([`Options::transform`](super::plan::Options::transform)); [`with_xform!`] makes
/// it the static [`Xform`] a kernel is compiled for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Transform {
    Identity,
    SoftCap(f32),
    Scaled(f32),
    ScaledSoftCap(f32, f32),
}

impl Transform {
    /// The transform of logit scale `s` and soft-cap `cap`: `s = 1` is no scaling.
    pub(crate) fn of(s: f32, cap: Option<f32>) -> Self {
        match (s == 1.0, cap) {
            (true, None) => Transform::Identity,
            (true, Some(cap)) => Transform::SoftCap(cap),
            (false, None) => Transform::Scaled(s),
            (false, Some(cap)) => Transform::ScaledSoftCap(s, cap),
        }
    }

    /// Whether it is the identity (the kernels may then store `exp(x − m)` for the
    /// gradient pass).
    pub(crate) fn is_identity(self) -> bool {
        self == Transform::Identity
    }
}

/// Evaluates `$body` with `$xf` bound to the static [`Xform`] of the
/// [`Transform`] `$t`.
macro_rules! with_xform {
    ($t:expr, $xf:ident => $body:expr) => {
        match $t {
            $crate::kernels::xform::Transform::Identity => {
                let $xf = $crate::kernels::xform::Identity;
                $body
            }
            $crate::kernels::xform::Transform::SoftCap(cap) => {
                let $xf = $crate::kernels::xform::SoftCap { cap };
                $body
            }
            $crate::kernels::xform::Transform::Scaled(s) => {
                let $xf = $crate::kernels::xform::Scaled { s };
                $body
            }
            $crate::kernels::xform::Transform::ScaledSoftCap(s, cap) => {
                let $xf = $crate::kernels::xform::ScaledSoftCap { s, cap };
                $body
            }
        }
    };
}
pub(crate) use with_xform;
