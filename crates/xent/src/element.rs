//! Storage types of logits and gradients, and the type each is computed in.

use crate::float::Float;
use crate::kernels::shard::ShardRow;
use crate::par::{self, CeCall, ConstPtr, GradPtr, Ptr};
use crate::par_shard::{self, RowGrad, ShardCall};
pub use half::{bf16, f16};

pub(crate) mod sealed {
    use crate::kernels::shard::ShardRow;
    use crate::par::{CeCall, ConstPtr, GradPtr, Ptr};
    use crate::par_shard::{RowGrad, ShardCall};

    /// The kernel entry points of each [`super::Element`] type. Crate-private: the
    /// public trait carries no kernels, and no other crate can implement it.
    pub trait Sealed: Sized {
        /// Runs a validated cross-entropy call on this type's kernels.
        fn run_cross_entropy(call: &CeCall<'_, Self>) -> (f64, f64)
        where
            Self: super::Element;
        /// softmax / log_softmax on this type's kernels.
        fn run_softmax(x: ConstPtr<Self>, out: Ptr<Self>, shape: (usize, usize, usize), log: bool);
        /// Their backward on this type's kernels.
        fn run_softmax_backward(
            y: ConstPtr<Self>,
            gy: ConstPtr<Self>,
            gx: Ptr<Self>,
            shape: (usize, usize, usize),
            log: bool,
        );
        /// The partial statistics of a class shard's rows on this type's kernels.
        fn run_shard_stats(call: &ShardCall<'_, Self>, out: &mut [ShardRow])
        where
            Self: super::Element;
        /// The gradient of a class shard's rows on this type's kernels.
        fn run_shard_grad(
            call: &ShardCall<'_, Self>,
            consts: &[RowGrad],
            g: GradPtr<Self>,
            accumulate: bool,
        ) where
            Self: super::Element;
    }
}

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
pub trait Element: sealed::Sealed + Copy + Send + Sync + core::fmt::Debug + 'static {
    /// The type sums, the loss and upstream gradients are computed in.
    type Acc: Float;
    /// The dtype's name as NumPy / PyTorch spell it.
    const NAME: &'static str;
    /// Widens to the compute type (exact).
    fn to_acc(self) -> Self::Acc;
    /// Rounds from the compute type (to nearest, ties to even).
    fn from_acc(v: Self::Acc) -> Self;
}

/// The entry points of the types computed in f32: the SIMD kernels.
macro_rules! f32_kernels {
    ($t:ty) => {
        impl sealed::Sealed for $t {
            fn run_cross_entropy(call: &CeCall<'_, Self>) -> (f64, f64) {
                par::ce_simd(call)
            }
            fn run_softmax(
                x: ConstPtr<Self>,
                out: Ptr<Self>,
                shape: (usize, usize, usize),
                log: bool,
            ) {
                par::softmax_simd(x, out, shape, log)
            }
            fn run_softmax_backward(
                y: ConstPtr<Self>,
                gy: ConstPtr<Self>,
                gx: Ptr<Self>,
                shape: (usize, usize, usize),
                log: bool,
            ) {
                par::backward_simd(y, gy, gx, shape, log)
            }
            fn run_shard_stats(call: &ShardCall<'_, Self>, out: &mut [ShardRow]) {
                par_shard::stats_simd(call, out)
            }
            fn run_shard_grad(
                call: &ShardCall<'_, Self>,
                consts: &[RowGrad],
                g: GradPtr<Self>,
                accumulate: bool,
            ) {
                par_shard::grad_simd(call, consts, g, accumulate)
            }
        }
    };
}

f32_kernels!(f32);
f32_kernels!(bf16);
f32_kernels!(f16);

impl sealed::Sealed for f64 {
    fn run_cross_entropy(call: &CeCall<'_, Self>) -> (f64, f64) {
        par::ce_f64(call)
    }
    fn run_softmax(x: ConstPtr<Self>, out: Ptr<Self>, shape: (usize, usize, usize), log: bool) {
        par::softmax_f64(x, out, shape, log)
    }
    fn run_softmax_backward(
        y: ConstPtr<Self>,
        gy: ConstPtr<Self>,
        gx: Ptr<Self>,
        shape: (usize, usize, usize),
        log: bool,
    ) {
        par::backward_f64(y, gy, gx, shape, log)
    }
    fn run_shard_stats(call: &ShardCall<'_, Self>, out: &mut [ShardRow]) {
        par_shard::stats_f64(call, out)
    }
    fn run_shard_grad(
        call: &ShardCall<'_, Self>,
        consts: &[RowGrad],
        g: GradPtr<Self>,
        accumulate: bool,
    ) {
        par_shard::grad_f64(call, consts, g, accumulate)
    }
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
