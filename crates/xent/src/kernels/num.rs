//! The kernel-level number traits: what the driver and the kernels know of a dtype.
//!
//! [`Real`] is a type sums are computed in (`f32`, `f64`) and [`Storage`] a type
//! buffers hold (`f32`, `f64`, `bf16`, `f16`) with the [`Real`] it widens to. The
//! public dtype traits ([`Float`](crate::Float), [`Element`](crate::Element)) sit
//! above the driver and imply these (`crate::dtype` implements them for every public
//! dtype); nothing at or below the driver names the public traits, so the imports run
//! one way.

use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point type the kernels compute in: IEEE-754 arithmetic, the constants
/// and the scalar functions the portable kernels use.
pub trait Real:
    Storage<Acc = Self>
    + Copy
    + Debug
    + Display
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// `-inf`, the identity of `max`.
    const NEG_INFINITY: Self;
    /// A quiet NaN.
    const NAN: Self;
    /// Rounds an `f64` to this type.
    fn from_f64(v: f64) -> Self;
    /// Widens to `f64` (exact).
    fn to_f64(self) -> f64;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + self)`.
    fn ln_1p(self) -> Self;
    /// Maximum that propagates NaN from either side.
    fn max_nan(self, other: Self) -> Self;
    /// `true` for NaN.
    #[allow(clippy::wrong_self_convention)]
    fn is_nan(self) -> bool;
    /// `true` for neither infinite nor NaN.
    #[allow(clippy::wrong_self_convention)]
    fn is_finite(self) -> bool;
}

/// A type buffers of logits, targets and gradients hold, with the [`Real`] it is
/// computed in.
pub trait Storage: Copy + Send + Sync + Debug + 'static {
    /// The type sums, the loss and upstream gradients are computed in.
    type Acc: Real;
    /// Widens to the compute type (exact).
    fn to_acc(self) -> Self::Acc;
    /// Rounds from the compute type (to nearest, ties to even).
    fn from_acc(v: Self::Acc) -> Self;
}
