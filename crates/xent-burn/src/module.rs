//! The losses as burn modules, built from a `Config` with `init()` as burn's own
//! `CrossEntropyLossConfig` is. The configs hold plain, serializable values (burn saves
//! configs as JSON): the reduction by its name, parsed by xent when `init()` runs, so
//! that a bad value is an error there rather than a panic.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::cross_entropy::{
    cross_entropy, cross_entropy_with_probs, linear_cross_entropy, CrossEntropyOptions,
};
// The `Config` derive writes a plain `Result`: this module names the crate's in full.
use crate::error::Result as XResult;
use crate::family::{
    binary_cross_entropy, binary_cross_entropy_with_logits, js_div, js_div_with_logits, kl_div,
    BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions, JsDivOptions, KlDivOptions,
};
use crate::route::Implementation;

fn weights_tensor(w: &Option<Vec<f32>>, device: &Device) -> Option<Tensor<1>> {
    w.as_ref()
        .map(|w| Tensor::<1>::from_floats(w.as_slice(), device))
}

fn implementation(composed: bool) -> Implementation {
    if composed {
        Implementation::Composed
    } else {
        Implementation::Auto
    }
}

/// Configuration of a [`CrossEntropyLoss`]: PyTorch's options and xent's.
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use xent_burn::CrossEntropyLossConfig;
/// let dev = Device::flex();
/// let loss = CrossEntropyLossConfig::new()
///     .with_label_smoothing(0.1)
///     .with_reduction("sum".into())
///     .init(&dev)?;
/// let logits = Tensor::<2>::zeros([2, 4], &dev);
/// let y = Tensor::<1, Int>::from_ints([0, 3], &dev);
/// let l = loss.forward(logits, y)?;
/// assert!((l.into_scalar::<f32>() - 2.0 * 4f32.ln()).abs() < 1e-5);
/// # Ok::<(), xent_burn::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct CrossEntropyLossConfig {
    /// Class weights (`C` entries); none for all 1.
    pub weights: Option<Vec<f32>>,
    /// Rows whose target equals it count for nothing.
    #[config(default = -100)]
    pub ignore_index: i64,
    /// Label smoothing `ε ∈ [0, 1]`.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// `none`, `mean` or `sum`.
    #[config(default = "String::from(\"mean\")")]
    pub reduction: String,
    /// z-loss scale (adds `s·lse²` per row that counts).
    #[config(default = 0.0)]
    pub z_loss: f64,
    /// Logit soft-capping `cap·tanh(x/cap)`; none for no capping.
    pub softcap: Option<f64>,
    /// Run burn's composed ops instead of xent's kernels (what GPU backends run anyway).
    #[config(default = false)]
    pub composed: bool,
}

impl CrossEntropyLossConfig {
    /// Builds the loss; the weights become a tensor on `device`.
    ///
    /// # Errors
    /// [`crate::Error::Xent`] for an unknown reduction name; the other options are
    /// checked when the loss runs, by xent.
    pub fn init(&self, device: &Device) -> XResult<CrossEntropyLoss> {
        let mut options = CrossEntropyOptions::default()
            .ignore_index(self.ignore_index)
            .label_smoothing(self.label_smoothing)
            .reduction(self.reduction.parse()?)
            .z_loss(self.z_loss)
            .implementation(implementation(self.composed));
        if let Some(c) = self.softcap {
            options = options.softcap(c);
        }
        Ok(CrossEntropyLoss {
            weights: weights_tensor(&self.weights, device),
            options,
        })
    }
}

/// Softmax cross-entropy as a module: [`cross_entropy`] with the options of its config.
#[derive(Module, Debug)]
pub struct CrossEntropyLoss {
    /// Class weights, a constant of the module (moved with it between devices).
    pub weights: Option<Tensor<1>>,
    /// The scalar options (their `weight` unused: the field above is).
    #[module(skip)]
    pub options: CrossEntropyOptions,
}

impl CrossEntropyLoss {
    fn opts(&self) -> CrossEntropyOptions {
        CrossEntropyOptions {
            weight: self.weights.clone(),
            ..self.options.clone()
        }
    }
    /// [`cross_entropy`] of `logits` against class indices.
    ///
    /// # Errors
    /// As [`cross_entropy`].
    pub fn forward<const D: usize, const DT: usize>(
        &self,
        logits: Tensor<D>,
        targets: Tensor<DT, Int>,
    ) -> XResult<Tensor<1>> {
        cross_entropy(logits, targets, &self.opts())
    }
    /// [`cross_entropy_with_probs`] of `logits` against probability targets.
    ///
    /// # Errors
    /// As [`cross_entropy_with_probs`].
    pub fn forward_probs<const D: usize>(
        &self,
        logits: Tensor<D>,
        targets: Tensor<D>,
    ) -> XResult<Tensor<1>> {
        cross_entropy_with_probs(logits, targets, &self.opts())
    }
    /// [`linear_cross_entropy`] of `h·Wᵀ + b` (the logits are never stored).
    ///
    /// # Errors
    /// As [`linear_cross_entropy`].
    pub fn forward_linear(
        &self,
        hidden: Tensor<2>,
        linear_weight: Tensor<2>,
        linear_bias: Option<Tensor<1>>,
        targets: Tensor<1, Int>,
    ) -> XResult<Tensor<1>> {
        linear_cross_entropy(hidden, linear_weight, linear_bias, targets, &self.opts())
    }
}

/// Configuration of a [`BinaryCrossEntropyLoss`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::BinaryCrossEntropyLossConfig;
/// let dev = Device::flex();
/// let loss = BinaryCrossEntropyLossConfig::new().with_logits(true).init(&dev)?;
/// let x = Tensor::<1>::from_floats([0.0, 0.0], &dev);
/// let y = Tensor::<1>::from_floats([1.0, 0.0], &dev);
/// assert!((loss.forward(x, y)?.into_scalar::<f32>() - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct BinaryCrossEntropyLossConfig {
    /// The inputs are logits ([`binary_cross_entropy_with_logits`]) rather than
    /// probabilities ([`binary_cross_entropy`]).
    #[config(default = false)]
    pub logits: bool,
    /// Weight of each element (all elements, the last dim, or one).
    pub weights: Option<Vec<f32>>,
    /// Weight of the positive term per class (logits only).
    pub pos_weight: Option<Vec<f32>>,
    /// `none`, `mean` or `sum`.
    #[config(default = "String::from(\"mean\")")]
    pub reduction: String,
    /// Run burn's composed ops instead of xent's kernels.
    #[config(default = false)]
    pub composed: bool,
}

impl BinaryCrossEntropyLossConfig {
    /// Builds the loss.
    ///
    /// # Errors
    /// [`crate::Error::Xent`] for an unknown reduction name.
    pub fn init(&self, device: &Device) -> XResult<BinaryCrossEntropyLoss> {
        let base = BinaryCrossEntropyOptions::default()
            .reduction(self.reduction.parse()?)
            .implementation(implementation(self.composed));
        Ok(BinaryCrossEntropyLoss {
            weights: weights_tensor(&self.weights, device),
            pos_weight: weights_tensor(&self.pos_weight, device),
            logits: self.logits,
            options: BinaryCrossEntropyWithLogitsOptions {
                base,
                pos_weight: None,
            },
        })
    }
}

/// Binary cross-entropy (from probabilities, or from logits) as a module.
#[derive(Module, Debug)]
pub struct BinaryCrossEntropyLoss {
    /// Element weights, a constant of the module.
    pub weights: Option<Tensor<1>>,
    /// Positive-term weights, a constant of the module.
    pub pos_weight: Option<Tensor<1>>,
    /// Whether the inputs are logits.
    pub logits: bool,
    /// The reduction and implementation (tensors unused: the fields above are).
    #[module(skip)]
    pub options: BinaryCrossEntropyWithLogitsOptions,
}

impl BinaryCrossEntropyLoss {
    /// The loss of `input` (probabilities or logits) against `target`.
    ///
    /// # Errors
    /// As [`binary_cross_entropy`] / [`binary_cross_entropy_with_logits`].
    pub fn forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> XResult<Tensor<1>> {
        let mut opts = self.options.clone();
        opts.base.weight = self.weights.clone();
        if self.logits {
            opts.pos_weight = self.pos_weight.clone();
            binary_cross_entropy_with_logits(input, target, &opts)
        } else {
            binary_cross_entropy(input, target, &opts.base)
        }
    }
}

/// Configuration of a [`KlDivLoss`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::KlDivLossConfig;
/// let dev = Device::flex();
/// let loss = KlDivLossConfig::new().with_reduction("batchmean".into()).init()?;
/// let t = Tensor::<2>::from_floats([[0.25, 0.75]], &dev);
/// assert!(loss.forward(t.clone().log(), t)?.into_scalar::<f32>().abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct KlDivLossConfig {
    /// `none`, `mean`, `sum` or `batchmean`.
    #[config(default = "String::from(\"mean\")")]
    pub reduction: String,
    /// The target is given as log-probabilities.
    #[config(default = false)]
    pub log_target: bool,
    /// Run burn's composed ops instead of xent's kernels.
    #[config(default = false)]
    pub composed: bool,
}

impl KlDivLossConfig {
    /// Builds the loss.
    ///
    /// # Errors
    /// [`crate::Error::Xent`] for an unknown reduction name.
    pub fn init(&self) -> XResult<KlDivLoss> {
        Ok(KlDivLoss {
            options: KlDivOptions::default()
                .reduction(self.reduction.parse()?)
                .log_target(self.log_target)
                .implementation(implementation(self.composed)),
        })
    }
}

/// The Kullback–Leibler divergence loss as a module ([`kl_div`]).
#[derive(Module, Debug)]
pub struct KlDivLoss {
    /// Its options.
    #[module(skip)]
    pub options: KlDivOptions,
}

impl KlDivLoss {
    /// [`kl_div`] of log-probabilities `input` against `target`.
    ///
    /// # Errors
    /// As [`kl_div`].
    pub fn forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> XResult<Tensor<1>> {
        kl_div(input, target, &self.options)
    }
}

/// Configuration of a [`JsDivLoss`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::JsDivLossConfig;
/// let dev = Device::flex();
/// let loss = JsDivLossConfig::new().with_logits(true).init()?;
/// let a = Tensor::<2>::from_floats([[1.0, 2.0]], &dev);
/// assert!(loss.forward(a.clone(), a)?.into_scalar::<f32>().abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct JsDivLossConfig {
    /// The inputs are logits (softmax over dim 1) rather than probabilities.
    #[config(default = false)]
    pub logits: bool,
    /// `none`, `mean` or `sum` over rows.
    #[config(default = "String::from(\"mean\")")]
    pub reduction: String,
    /// Run burn's composed ops instead of xent's kernels.
    #[config(default = false)]
    pub composed: bool,
}

impl JsDivLossConfig {
    /// Builds the loss.
    ///
    /// # Errors
    /// [`crate::Error::Xent`] for an unknown reduction name.
    pub fn init(&self) -> XResult<JsDivLoss> {
        Ok(JsDivLoss {
            logits: self.logits,
            options: JsDivOptions::default()
                .reduction(self.reduction.parse()?)
                .implementation(implementation(self.composed)),
        })
    }
}

/// The Jensen–Shannon divergence as a module ([`js_div`], [`js_div_with_logits`]).
#[derive(Module, Debug)]
pub struct JsDivLoss {
    /// Whether the inputs are logits.
    pub logits: bool,
    /// Its options.
    #[module(skip)]
    pub options: JsDivOptions,
}

impl JsDivLoss {
    /// The divergence between the two distributions `a` and `b`.
    ///
    /// # Errors
    /// As [`js_div`] / [`js_div_with_logits`].
    pub fn forward<const D: usize>(&self, a: Tensor<D>, b: Tensor<D>) -> XResult<Tensor<1>> {
        if self.logits {
            js_div_with_logits(a, b, &self.options)
        } else {
            js_div(a, b, &self.options)
        }
    }
}
