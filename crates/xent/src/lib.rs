//! # xent — softmax cross-entropy and its relatives, loss *and* exact gradient
//!
//! PyTorch's semantics, checked against PyTorch goldens and an independent `f64`
//! reference. Logits `x` have their classes on dim 1 (dim 0 for an unbatched `(C,)`
//! input); a K-dim input `(N, C, d1..dk)` is `N·d1⋯dk` rows of `C` classes. Per row,
//! with `m = max_c x_c`:
//!
//! - `softmax`: `p_c = exp(x_c − m) / Σ_j exp(x_j − m)`
//! - `log_softmax`: `ℓ_c = (x_c − m) − ln Σ_j exp(x_j − m)` (never `ln p`, which underflows)
//! - `nll_loss(ℓ, y)`: `l_n = −w_{y_n}·ℓ_{n,y_n}`; mean divides by `D = Σ_{n∈M} w_{y_n}`
//!   over the rows `M` whose target is not `ignore_index`
//! - `cross_entropy(x, y)` = `nll_loss(log_softmax(x), y)`, plus label smoothing `ε`:
//!   `l_n = (1−ε)·nll_n + (ε/C)·(−Σ_c w_c ℓ_{n,c})`; or with probability targets `t`,
//!   `l_n = −Σ_c w_c·t'_{n,c}·ℓ_{n,c}`, `t' = (1−ε)·t + ε/C`, mean over rows
//! - gradient: `∂l_n/∂x_{n,j} = (1−ε)·w_{y_n}·(p_{n,j} − δ_{j,y_n}) + (ε/C)·(W·p_{n,j} − w_j)`,
//!   `W = Σ_c w_c` — without options simply `(softmax(x) − onehot(y))/N` for the mean.
//!
//! The classic example: on `[[1, 2, 3]] × 3` with targets `[2, 1, 0]` the three
//! routes `−mean Σ onehot·ln softmax(x)`, `nll_loss(log_softmax(x))` and
//! `cross_entropy(x)` agree on the loss 1.4076:
//!
//! ```
//! use xent::{cross_entropy_with_grad, log_softmax, nll_loss, CrossEntropyOptions, NllLossOptions};
//! let x = [1.0f64, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
//! let y = [2i64, 1, 0];
//! let (ce, grad) = cross_entropy_with_grad(&x, &[3, 3], &y[..], &CrossEntropyOptions::default())?;
//! let nll = nll_loss(&log_softmax(&x, &[3, 3])?, &[3, 3], &y[..], &NllLossOptions::default())?;
//! assert!((ce.item().unwrap() - 1.4076).abs() < 1e-4);
//! assert!((ce.item().unwrap() - nll.item().unwrap()).abs() < 1e-15);
//! assert!((grad[2] - (0.6652 - 1.0) / 3.0).abs() < 1e-4); // (softmax − onehot)/N
//! # Ok::<(), xent::Error>(())
//! ```
//!
//! ## Layers
//! The public functions validate (every error is an [`Error`] naming the bad value
//! and where it is; nothing panics on bad input) and hand rows to kernels that only
//! compute. The fused `*_into` calls write into caller buffers, overwriting or
//! accumulating ([`GradMode`]); the allocating functions sit on top.
//!
//! The source folders are the layers, and imports run one way (no two files import
//! each other: `.ci/import_cycles.py` checks it):
//! - `ops/`: the public functions and their checks;
//! - `dtype.rs`, `entry.rs`: the public dtype traits ([`Element`], [`Float`]), and
//!   the one file that joins each dtype to its driver entry;
//! - `driver/`: blocks of rows on rayon's threads (every parallel loop goes through
//!   one primitive), the pointer types a call carries, one driver per layout
//!   (cross-entropy and softmax rows, class shards, linear cross-entropy's GEMMs);
//! - `kernels/`: the row, K-dim and short-row kernels over `kernels/simd/`, the
//!   instruction sets' primitives (one file per ISA, the math written once); they
//!   know only kernel-level number traits and a plain index view of the targets;
//! - `sizes.rs`: every block size and path threshold.
//!
//! ## Deliberate differences from PyTorch
//! - Class-index targets of any integer type are accepted.
//! - A negative `label_smoothing` is an error (PyTorch silently uses 0).
#![deny(missing_docs)]

pub mod alloc;
mod check;
mod driver;
mod dtype;
mod entry;
mod error;
mod gemm;
mod indices;
mod kernels;
mod layout;
mod ops;
mod options;
mod reduce;
mod settings;
mod sizes;
mod targets;
mod weights;

pub use check::{gradcheck, gradcheck_cross_entropy, gradcheck_nll_loss, GradcheckReport};
pub use dtype::{bf16, f16, Element, Float};
pub use error::{Error, Result};
pub use gemm::GradPrecision;
pub use indices::ClassIndices;
pub use kernels::dispatch::Isa;
pub use layout::Layout;
pub use ops::cross_entropy::{
    cross_entropy, cross_entropy_inplace, cross_entropy_into, cross_entropy_stats_into,
    cross_entropy_with_grad,
};
pub use ops::linear::{
    check_linear_shapes, linear_cross_entropy, linear_cross_entropy_into,
    linear_cross_entropy_stats_into, linear_cross_entropy_with_grad, LinearCrossEntropyOptions,
    LinearGradOut, LinearGrads, LinearInputs, DEFAULT_SCRATCH_BYTES,
};
pub use ops::nll::{nll_loss, nll_loss_into, nll_loss_with_grad};
pub use ops::shard::{
    cross_entropy_shard_grad_into, cross_entropy_shard_row_stats, cross_entropy_shard_stats,
    linear_cross_entropy_shard_grad_into, linear_cross_entropy_shard_into,
    linear_cross_entropy_shard_row_stats, linear_cross_entropy_shard_stats, ClassShard, MaxLoc,
    ShardReduce, ShardStats,
};
pub use ops::softmax::{
    log_softmax, log_softmax_backward_into, log_softmax_into, softmax, softmax_backward_into,
    softmax_into,
};
pub use ops::stats::RowOutputs;
pub use ops::{GradBuf, GradOut, Loss};
pub use options::{CrossEntropyOptions, GradMode, NllLossOptions, Reduction, DEFAULT_IGNORE_INDEX};
pub use settings::CrossEntropySettings;
pub use targets::Targets;

// Binary and divergence losses, class weights.
pub use ops::binary::{
    binary_cross_entropy, binary_cross_entropy_into, binary_cross_entropy_with_grad,
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_into,
    binary_cross_entropy_with_logits_with_grad, log_sigmoid, log_sigmoid_backward_into,
    log_sigmoid_into, sigmoid, sigmoid_backward_into, sigmoid_into, BinaryCrossEntropyOptions,
    BinaryCrossEntropyWithLogitsOptions,
};
pub use ops::divergence::{
    js_div, js_div_into, js_div_with_grad, js_div_with_logits, js_div_with_logits_into,
    js_div_with_logits_with_grad, kl_div, kl_div_into, kl_div_with_grad, JsDivOptions,
    KlDivOptions, KlReduction,
};
pub use weights::{
    class_counts, class_weights, class_weights_from_counts, pos_weight, pos_weight_from_counts,
    ClassWeightOptions, ClassWeighting,
};

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
