//! Kernels: they only compute. No validation, no allocation, no I/O; the driver
//! ([`crate::driver`]) hands them rows that the ops layer has checked.
//!
//! - [`plan`]: the plan of a cross-entropy call (options resolved once, the
//!   coefficient spec, the upstream scales, the per-row outputs) and its blocks,
//!   which the ops layer builds, the driver slices and the kernels read; [`ptr`]:
//!   the pointer types it carries down;
//! - [`simd`]: the ISA layer: the instruction sets' primitives behind one trait, the
//!   `vectorize` trampoline that enters a kernel, and the vector math written once;
//! - [`row`]: contiguous rows (`(N, C)`), chunked two-pass statistics and gradients;
//!   [`coef`]: the coefficients of a row's linear terms; [`xform`]: the transforms of
//!   the logits on load (logit scale, soft-capping);
//! - [`row_softmax`]: softmax / log_softmax rows and their backward;
//! - [`lanes`]: K-dim rows `(N, C, inner)`, vectorized across `inner`;
//! - [`fused`]: the per-block jobs that put them together, one file per layout path
//!   (contiguous rows, short rows, K-dim rows, long rows in pieces) over the block
//!   they share;
//! - [`transpose`]: converting copies, streaming write-backs, and the K-dim gathers
//!   and scatters between a caller's rows and the f32 scratch;
//! - [`scan`]: the vectorized scans of class-index targets behind the ops layer's
//!   bounds check and a mean's count;
//! - [`pointwise`]: the elementwise losses (binary cross-entropy, KL divergence);
//! - [`num`]: the number traits the kernels and the driver know (a compute scalar
//!   and a storage scalar), which the public dtype traits imply;
//! - [`f64_path`]: the portable scalar kernels that `f64` data runs;
//! - [`shard`]: a row's shard of the classes (vocab parallelism): the combine step of
//!   the reduced statistics and the portable (`f64`) shard kernels;
//! - [`dispatch`]: runtime choice of the instruction set, and the [`dispatch::Job`]s
//!   (driver code) it runs with its token.

pub(crate) mod coef;
pub(crate) mod dispatch;
pub(crate) mod f64_path;
pub(crate) mod fused;
pub(crate) mod lanes;
pub(crate) mod num;
pub(crate) mod plan;
pub(crate) mod pointwise;
pub(crate) mod ptr;
pub(crate) mod row;
pub(crate) mod row_grad;
pub(crate) mod row_softmax;
pub(crate) mod scan;
pub(crate) mod shard;
pub(crate) mod simd;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod transpose;
pub(crate) mod xform;

/// Where a row's classes live in a flat buffer: `off + c·stride` for `c < len`
/// (used by the portable elementwise and divergence code).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowAt {
    pub off: usize,
    pub stride: usize,
    pub len: usize,
}

impl RowAt {
    /// Flat index of class `c`.
    #[inline]
    pub fn at(self, c: usize) -> usize {
        self.off + c * self.stride
    }
}
