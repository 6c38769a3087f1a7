//! Which driver entry each dtype runs: the one place that joins the public dtype
//! traits to the driver, as faer's public functions sit over private impls.
//!
//! [`Element`](crate::Element) and [`Float`](crate::Float) have these traits as
//! sealed supertraits, so generic public code reaches its dtype's driver entry
//! through them (`<T as ElementEntry>::run_cross_entropy`), while the driver and the
//! kernels below know only the kernel-level traits ([`Storage`], `Real`): `f32`,
//! `bf16` and `f16` run the SIMD kernels, `f64` the portable ones.

use crate::driver::ce;
use crate::driver::shard::{self, RowGrad};
use crate::kernels::num::Storage;
use crate::kernels::plan::CePlan;
use crate::kernels::pointwise::{self, PointCall, PointOut};
use crate::kernels::ptr::{ConstPtr, Ptr};
use crate::kernels::shard::ShardRow;
use half::{bf16, f16};

/// The driver entry points of each [`Element`](crate::Element) type (its sealed
/// supertrait: the public trait carries no kernels, and no other crate can
/// implement it).
pub trait ElementEntry: Sized {
    /// Runs a cross-entropy call's plan on this type's kernels.
    fn run_cross_entropy(plan: &CePlan<'_, Self>) -> (f64, f64)
    where
        Self: Storage;
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
    /// The partial statistics of a class shard's rows on this type's kernels (with
    /// what the row outputs need when `outs`).
    fn run_shard_stats(plan: &CePlan<'_, Self>, out: &mut [ShardRow], outs: bool)
    where
        Self: Storage;
    /// The gradient of a class shard's rows (into the plan's gradient) on this
    /// type's kernels, from their constants.
    fn run_shard_grad(plan: &CePlan<'_, Self>, consts: &[RowGrad])
    where
        Self: Storage;
}

/// The entry points of the types computed in f32: the SIMD kernels.
macro_rules! f32_kernels {
    ($t:ty) => {
        impl ElementEntry for $t {
            fn run_cross_entropy(plan: &CePlan<'_, Self>) -> (f64, f64) {
                ce::ce_simd(plan)
            }
            fn run_softmax(
                x: ConstPtr<Self>,
                out: Ptr<Self>,
                shape: (usize, usize, usize),
                log: bool,
            ) {
                ce::softmax_simd(x, out, shape, log)
            }
            fn run_softmax_backward(
                y: ConstPtr<Self>,
                gy: ConstPtr<Self>,
                gx: Ptr<Self>,
                shape: (usize, usize, usize),
                log: bool,
            ) {
                ce::backward_simd(y, gy, gx, shape, log)
            }
            fn run_shard_stats(plan: &CePlan<'_, Self>, out: &mut [ShardRow], outs: bool) {
                shard::stats_simd(plan, out, outs)
            }
            fn run_shard_grad(plan: &CePlan<'_, Self>, consts: &[RowGrad]) {
                shard::grad_simd(plan, consts)
            }
        }
    };
}

f32_kernels!(f32);
f32_kernels!(bf16);
f32_kernels!(f16);

impl ElementEntry for f64 {
    fn run_cross_entropy(plan: &CePlan<'_, Self>) -> (f64, f64) {
        ce::ce_f64(plan)
    }
    fn run_softmax(x: ConstPtr<Self>, out: Ptr<Self>, shape: (usize, usize, usize), log: bool) {
        ce::softmax_f64(x, out, shape, log)
    }
    fn run_softmax_backward(
        y: ConstPtr<Self>,
        gy: ConstPtr<Self>,
        gx: Ptr<Self>,
        shape: (usize, usize, usize),
        log: bool,
    ) {
        ce::backward_f64(y, gy, gx, shape, log)
    }
    fn run_shard_stats(plan: &CePlan<'_, Self>, out: &mut [ShardRow], outs: bool) {
        shard::stats_f64(plan, out, outs)
    }
    fn run_shard_grad(plan: &CePlan<'_, Self>, consts: &[RowGrad]) {
        shard::grad_f64(plan, consts)
    }
}

/// The elementwise kernel entry points of each [`Float`](crate::Float) type (its
/// sealed supertrait).
pub trait FloatEntry: Sized {
    /// One block of an elementwise loss on this type's kernels.
    fn run_pointwise(call: PointCall<'_, Self>) -> PointOut;
    /// Whether every element lies in `[0, 1]` (NaN does not), on this type's
    /// kernels.
    fn all_in_unit(data: &[Self]) -> bool;
}

impl FloatEntry for f32 {
    fn run_pointwise(call: PointCall<'_, Self>) -> PointOut {
        pointwise::vector(call)
    }
    fn all_in_unit(data: &[Self]) -> bool {
        pointwise::all_in_unit(data)
    }
}

impl FloatEntry for f64 {
    fn run_pointwise(call: PointCall<'_, Self>) -> PointOut {
        pointwise::portable(call)
    }
    fn all_in_unit(data: &[Self]) -> bool {
        pointwise::all_in_unit_portable(data)
    }
}
