//! # xent-burn — xent's fused losses as burn operations with autodiff
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
