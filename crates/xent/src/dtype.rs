//! The public dtype traits: the storage types of logits and gradients
//! ([`Element`]), the types they are computed in ([`Float`]), and how each implies
//! the kernel-level traits the driver and kernels know ([`Storage`], [`Real`]).

use crate::entry::{ElementEntry, FloatEntry};
use crate::kernels::num::{Real, Storage};
use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};
pub use half::{bf16, f16};

/// An element type of logits (and of probability targets and gradients):
/// `f32`, `f64`, [`bf16`](struct@bf16) or [`f16`](struct@f16).
///
/// Each is computed in its [`Element::Acc`] type: `f64` in `f64`, the others in `f32`
/// — so `bf16` and `f16` logits get an `f32` loss (PyTorch rounds it through bf16).
///
/// ```
/// use xent::{bf16, Element};
/// let x = bf16::from_f32(1.5);
/// assert_eq!(x.to_acc(), 1.5f32);
/// assert_eq!(<bf16 as Element>::NAME, "bfloat16");
/// ```
pub trait Element: ElementEntry + Copy + Send + Sync + core::fmt::Debug + 'static {
    /// The type sums, the loss and upstream gradients are computed in.
    type Acc: Float;
    /// The dtype's name as NumPy / PyTorch spell it.
    const NAME: &'static str;
    /// Widens to the compute type (exact).
    fn to_acc(self) -> Self::Acc;
    /// Rounds from the compute type (to nearest, ties to even).
    fn from_acc(v: Self::Acc) -> Self;
}

impl Element for f32 {
    type Acc = f32;
    const NAME: &'static str = "float32";
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        v
    }
}

impl Element for f64 {
    type Acc = f64;
    const NAME: &'static str = "float64";
    #[inline(always)]
    fn to_acc(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_acc(v: f64) -> Self {
        v
    }
}

impl Element for bf16 {
    type Acc = f32;
    const NAME: &'static str = "bfloat16";
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

impl Element for f16 {
    type Acc = f32;
    const NAME: &'static str = "float16";
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        f16::from_f32(v)
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
    FloatEntry
    + Element<Acc = Self>
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

impl<T: Element> Storage for T {
    type Acc = <T as Element>::Acc;
    #[inline(always)]
    fn to_acc(self) -> Self::Acc {
        <T as Element>::to_acc(self)
    }
    #[inline(always)]
    fn from_acc(v: Self::Acc) -> Self {
        <T as Element>::from_acc(v)
    }
}

impl<F: Float> Real for F {
    const ZERO: Self = <F as Float>::ZERO;
    const ONE: Self = <F as Float>::ONE;
    const NEG_INFINITY: Self = <F as Float>::NEG_INFINITY;
    const NAN: Self = <F as Float>::NAN;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        <F as Float>::from_f64(v)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        <F as Float>::to_f64(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        <F as Float>::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        <F as Float>::ln(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        <F as Float>::ln_1p(self)
    }
    #[inline(always)]
    fn max_nan(self, other: Self) -> Self {
        <F as Float>::max_nan(self, other)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        <F as Float>::is_nan(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        <F as Float>::is_finite(self)
    }
}
