//! # xent-candle — xent's fused cross-entropy as candle ops with backward
//!
//! [`cross_entropy`] is a candle custom op: its forward pass is xent's fused kernel
//! (one pass over the logits, SIMD chosen at run time), and `loss.backward()` uses
//! xent's exact gradient
//! `∂loss/∂x_{n,j} = s_n·[(1−ε)·w_{y_n}·(p_{n,j} − δ_{j,y_n}) + (ε/C)·(W·p_{n,j} − w_j)]`
//! times the incoming gradient, instead of differentiating candle's composed
//! `log_softmax → gather → sum → affine` graph op by op. Semantics are PyTorch's
//! `F.cross_entropy` (classes on dim 1, `ignore_index`, class weights, label
//! smoothing, `none | mean | sum`), plus xent's z-loss, logit scale and soft-capping,
//! and a denominator for `mean` taken from a whole gradient-accumulation step.
//!
//! [`cross_entropy_with_stats`] (and [`linear_cross_entropy_with_stats`]) also return
//! the per-row log-sum-exp, entropy, prediction and z term of the same fused pass, as
//! detached tensors ([`RowStats`]).
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use xent_candle::{cross_entropy, CrossEntropyOptions};
//! let dev = Device::Cpu;
//! // One step of softmax regression on 4 samples, 3 features, 2 classes.
//! let x = Tensor::new(&[[0.5f32, 1.0, -1.0], [1.5, 0.0, 0.5], [-0.5, 2.0, 1.0], [0.0, 0.0, 1.0]], &dev)?;
//! let y = Tensor::new(&[0u32, 1, 1, 0], &dev)?;
//! let w = Var::zeros((3, 2), candle_core::DType::F32, &dev)?;
//! let loss = cross_entropy(&x.matmul(w.as_tensor())?, &y, &CrossEntropyOptions::default())?;
//! assert!((loss.to_scalar::<f32>()? - 2f32.ln()).abs() < 1e-6); // uniform softmax
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().dims(), &[3, 2]);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! ## The README's example
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use xent_candle::{cross_entropy, CrossEntropyOptions, Reduction};
//!
//! let dev = Device::Cpu;
//! let logits = Var::new(&[[1.0f32, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], &dev)?;
//! let targets = Tensor::new(&[2u32, 1, 0], &dev)?;          // u8, u32, i16, i32, i64
//! let opts = CrossEntropyOptions::default()                  // PyTorch's defaults, and
//!     .label_smoothing(0.0)                                  // .weight(Vec<f64>), .ignore_index(i),
//!     .reduction(Reduction::Mean);                           // .z_loss(s), .softcap(c),
//!                                                            // .logit_scale(s), .denominator(d)
//! let loss = cross_entropy(logits.as_tensor(), &targets, &opts)?;
//! assert!((loss.to_scalar::<f32>()? - 1.4076).abs() < 1e-4);
//! let grads = loss.backward()?;                              // (softmax − onehot)/N
//! let g = grads.get(&logits).unwrap().to_vec2::<f32>()?;
//! assert!((g[0][0] - 0.0300).abs() < 1e-4);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! ## Scope
//! CPU tensors only (candle's CUDA and Metal paths of the op report that they are
//! not implemented). Logits `f32`, `f64`, `bf16`, `f16`; class indices in every
//! integer dtype candle has; probability targets in a float dtype.
//!
//! ## Linear cross-entropy
//! [`linear_cross_entropy`] wraps [`xent::linear_cross_entropy`]: the loss of
//! `h·Wᵀ (+ b)` with the gradients for `h` and `W` (and `b`) from candle's
//! `loss.backward()`, without the `N × V` logits ever being stored.
#![deny(missing_docs)]

mod cross_entropy;
mod linear;
mod options;
mod stats;
pub(crate) mod storage;

pub use cross_entropy::{cross_entropy, cross_entropy_with_stats};
pub use linear::{linear_cross_entropy, linear_cross_entropy_with_stats};
pub use options::{class_weight, CrossEntropyOptions, Reduction, DEFAULT_IGNORE_INDEX};
pub use stats::RowStats;
