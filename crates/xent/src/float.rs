//! The floating-point element types the losses are computed in.

use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub(crate) mod sealed {
    use crate::kernels::pointwise::{self, PointCall, PointOut};

    /// The elementwise kernel entry points of each [`super::Float`] type.
    /// Crate-private: the public trait carries no kernels, and no other crate can
    /// implement it.
    pub trait Sealed: Sized {
        /// One block of an elementwise loss on this type's kernels.
        fn run_pointwise(call: PointCall<'_, Self>) -> PointOut;
        /// Whether every element lies in `[0, 1]` (NaN does not), on this type's
        /// kernels.
        fn all_in_unit(data: &[Self]) -> bool;
    }

    impl Sealed for f32 {
        fn run_pointwise(call: PointCall<'_, Self>) -> PointOut {
            pointwise::vector(call)
        }
        fn all_in_unit(data: &[Self]) -> bool {
            pointwise::all_in_unit(data)
        }
    }

    impl Sealed for f64 {
        fn run_pointwise(call: PointCall<'_, Self>) -> PointOut {
            pointwise::portable(call)
        }
        fn all_in_unit(data: &[Self]) -> bool {
            pointwise::all_in_unit_portable(data)
        }
    }
}

/// A floating-point element type of logits, targets, weights and gradients.
///
/// Implemented for `f32` and `f64`; the trait is sealed so that the kernels can
/// rely on IEEE-754 behaviour (`exp(-inf) = 0`, NaN propagation).
///
/// ```
/// use xent::Float;
/// assert_eq!(<f32 as Float>::from_f64(0.5), 0.5f32);
/// assert_eq!(2.0f64.to_f64(), 2.0);
/// ```
pub trait Float:
    sealed::Sealed
    + crate::element::Element<Acc = Self>
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
    /// `ln(1 + self)`, accurate for small `self` (the platform's `log1p`, within an
    /// ulp in the type itself: no `f64` detour is needed for `f32`).
    fn ln_1p(self) -> Self;
    /// IEEE `maxNum`-like maximum that propagates NaN from either side.
    #[inline]
    fn max_nan(self, other: Self) -> Self {
        if self.is_nan() || other.is_nan() {
            Self::NAN
        } else if other > self {
            other
        } else {
            self
        }
    }
    /// `true` for NaN.
    #[allow(clippy::wrong_self_convention)]
    fn is_nan(self) -> bool;
    /// `true` for neither infinite nor NaN.
    #[allow(clippy::wrong_self_convention)]
    fn is_finite(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const NAN: Self = <$t>::NAN;
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}

impl_float!(f32);
impl_float!(f64);
