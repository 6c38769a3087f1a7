//! # xent-burn — xent's fused losses as burn operations with autodiff
//!
//! For burn 0.22 (tensors without a backend type parameter, the backend chosen by the
//! tensor's `Device`): [`cross_entropy`] (class indices; every PyTorch option plus
//! xent's z-loss and soft-capping), [`cross_entropy_with_probs`],
//! [`linear_cross_entropy`] (the logits `h·Wᵀ + b` never stored),
//! [`binary_cross_entropy`], [`binary_cross_entropy_with_logits`], [`kl_div`],
//! [`js_div`] and [`js_div_with_logits`], as functions on burn tensors and as
//! modules built from a config ([`CrossEntropyLossConfig`] and the others, burn's
//! `Config`/`init()` convention). Semantics are PyTorch's (see xent's docs).
//!
//! ## How it runs
//!
//! Each loss is one burn backend operation, [`XentBackend::xent_loss`], declared with
//! burn's `#[backend_extension]` and implemented for:
//!
//! | backend | forward | `loss.backward()` | tensor memory |
//! |---|---|---|---|
//! | `Flex` (burn's CPU backend) | xent's fused kernel | — | read in place (`f32`, `f64`, `bf16`, `f16`) |
//! | `NdArray` (deprecated by burn) | xent's fused kernel | — | read in place (`f32`, `f64`) |
//! | `Autodiff` over either | the fused forward **and** backward pass, once | xent's gradient, scaled by the upstream scalar | as above |
//! | any other (`Cube`: wgpu, CUDA, ROCm, Metal; LibTorch; Remote) | burn's composed ops | burn's autodiff of them | the backend's |
//!
//! On the CPU backends the kernel reads the tensor's own buffer (no copy; a
//! non-contiguous view is copied into a contiguous buffer first) and its loss and
//! gradient become tensors without a copy. With a reduced loss (`mean`, `sum`) the
//! gradient is computed in the forward pass and the backward pass only scales it by
//! the upstream gradient (not at all when that is 1); with `none` the upstream
//! gradient weighs each row inside the kernel, so the backward pass runs the fused
//! kernel once with it. Tensors on other backends take the composed fallback, the
//! same formulas in burn's tensor ops; [`Implementation::Composed`] forces it on the
//! CPU, where the tests check both paths against the same PyTorch goldens.
//!
//! Bad input is an [`Error`], never a panic (burn's own ops panic on mismatched
//! shapes): shapes, dtypes and devices are checked before either path runs, xent
//! checks the options and the data (a target out of bounds is named with its
//! position), and the composed path checks the data the same way, reading it back
//! only when a device-side test found something wrong.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use xent_burn::{cross_entropy, CrossEntropyOptions, Reduction};
//!
//! let dev = Device::flex().autodiff();
//! let logits = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], &dev)
//!     .require_grad();
//! let targets = Tensor::<1, Int>::from_ints([2, 1, 0], &dev);
//! let opts = CrossEntropyOptions::default()        // PyTorch's defaults, and
//!     .label_smoothing(0.0)                        // .weight(w), .ignore_index(i),
//!     .reduction(Reduction::Mean);                 // .z_loss(s), .softcap(c)
//! let loss = cross_entropy(logits.clone(), targets, &opts)?;
//! assert!((loss.clone().into_scalar::<f32>() - 1.4076).abs() < 1e-4);
//! let grads = loss.backward();                     // (softmax − onehot)/N
//! let g = logits.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
//! assert!((g[0] - 0.0300).abs() < 1e-4);
//! # Ok::<(), xent_burn::Error>(())
//! ```
#![deny(missing_docs)]

mod composed;
mod cross_entropy;
mod error;
// The extension names burn's NdArray backend, which burn deprecates in favour of Flex;
// it is supported while burn ships it.
#[allow(deprecated)]
mod extension;
mod family;
mod host;
mod kernels;
mod module;
mod plan;
mod route;

pub use cross_entropy::{
    cross_entropy, cross_entropy_with_probs, linear_cross_entropy, CrossEntropyOptions,
};
pub use error::{Error, Result};
pub use extension::XentBackend;
pub use family::{
    binary_cross_entropy, binary_cross_entropy_with_logits, js_div, js_div_with_logits, kl_div,
    BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions, JsDivOptions, KlDivOptions,
};
pub use kernels::XentKernels;
pub use module::{
    BinaryCrossEntropyLoss, BinaryCrossEntropyLossConfig, CrossEntropyLoss, CrossEntropyLossConfig,
    JsDivLoss, JsDivLossConfig, KlDivLoss, KlDivLossConfig,
};
pub use plan::Plan;
pub use route::Implementation;
pub use xent::{KlReduction, Reduction, DEFAULT_IGNORE_INDEX};
