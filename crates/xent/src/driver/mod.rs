//! The driver: splits a call into blocks, runs them on rayon's threads, and
//! reduces the block sums in a fixed order.
//!
//! Every parallel loop of the library goes through [`Blocks`]: the cross-entropy and
//! softmax rows below, the elementwise losses and divergences (blocks of elements or
//! rows), and linear cross-entropy's GEMM tasks (ranges of classes or columns). Block
//! boundaries depend only on the shape, never on the number of threads, and each
//! block is computed with a fixed order of operations; so results are bit-for-bit the
//! same on 1 or 64 threads. Rows longer than [`LONG_ROW`] classes are split across
//! threads themselves: their pieces' partial (max, Σexp) are merged in piece order.
//!
//! A cross-entropy call reaches the driver as one plan
//! ([`CePlan`](crate::kernels::plan::CePlan)), built once by the ops layer: the
//! driver cuts it into blocks (or a long row into pieces, or a shard's rows into
//! tasks) and hands each to the kernels, which read the plan themselves.
//!
//! - [`blocks`]: the parallel primitive ([`Blocks`](blocks::Blocks)) and the
//!   per-thread scratch;
//! - [`ce`]: cross-entropy and softmax rows, contiguous `(N, C)` or K-dim
//!   `(N, C, inner)`, long rows' pieces across threads;
//! - [`linear`]: linear cross-entropy's GEMMs (the block of logits and the
//!   backward products) and its block size;
//! - [`shard`]: a shard of the classes (vocab parallelism).
//!
//! The driver knows the kernel-level number traits ([`crate::kernels::num`]), not the
//! public dtype traits: [`crate::entry`] joins the two.

pub(crate) mod blocks;
pub(crate) mod ce;
pub(crate) mod linear;
pub(crate) mod shard;
#[cfg(test)]
mod tests;
