//! The options of [`cross_entropy`](crate::cross_entropy), owned so that they can live
//! in candle's graph until the backward pass.

use candle_core::{DType, Result, Tensor};
pub use xent::{Reduction, DEFAULT_IGNORE_INDEX};

/// Options of [`cross_entropy`](crate::cross_entropy), with PyTorch's defaults: no
/// class weights, `ignore_index = -100`, no label smoothing, `mean` reduction, no
/// z-loss, no soft-capping. The same builder as [`xent::CrossEntropyOptions`], with
/// the class weights given as a candle tensor.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use xent_candle::{CrossEntropyOptions, Reduction};
/// let w = Tensor::new(&[1.0f32, 2.0, 0.5], &Device::Cpu)?;
/// let opts = CrossEntropyOptions::default()
///     .weight(&w)
///     .ignore_index(-1)
///     .label_smoothing(0.1)
///     .reduction(Reduction::Sum);
/// assert_eq!(opts.reduction, Reduction::Sum);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CrossEntropyOptions {
    /// Class weights `w`, a 1-d tensor of `C` entries (any float dtype); `None` for all 1.
    pub weight: Option<Tensor>,
    /// Rows whose class-index target equals it count for nothing (default −100).
    pub ignore_index: i64,
    /// Label smoothing `ε ∈ [0, 1]`.
    pub label_smoothing: f64,
    /// `none` (one loss per row), `mean` or `sum` (a 0-d tensor).
    pub reduction: Reduction,
    /// z-loss scale `s`: adds `s·lse_n²` per row that counts.
    pub z_loss: f64,
    /// Logit soft-capping: `cap·tanh(x/cap)` replaces `x`.
    pub softcap: Option<f64>,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
            z_loss: 0.0,
            softcap: None,
        }
    }
}

impl CrossEntropyOptions {
    /// Sets the class weights (a 1-d tensor of `C` entries; it is read once, in `f64`).
    pub fn weight(mut self, weight: &Tensor) -> Self {
        self.weight = Some(weight.clone());
        self
    }
    /// Sets the target value whose rows are ignored.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
    /// Sets the label smoothing `ε` (checked by xent: `[0, 1]`).
    pub fn label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// Sets the z-loss scale.
    pub fn z_loss(mut self, scale: f64) -> Self {
        self.z_loss = scale;
        self
    }
    /// Sets the soft-capping value.
    pub fn softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// The options with the weight read out into `f64`, as the ops store them.
    pub(crate) fn resolve(&self) -> Result<ResolvedOptions> {
        let weight = match &self.weight {
            Some(w) => Some(w.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?),
            None => None,
        };
        Ok(ResolvedOptions {
            weight,
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            reduction: self.reduction,
            z_loss: self.z_loss,
            softcap: self.softcap,
        })
    }
}

/// [`CrossEntropyOptions`] with the weight as plain numbers (no tensor, no device).
#[derive(Debug, Clone)]
pub(crate) struct ResolvedOptions {
    pub(crate) weight: Option<Vec<f64>>,
    pub(crate) ignore_index: i64,
    pub(crate) label_smoothing: f64,
    pub(crate) reduction: Reduction,
    pub(crate) z_loss: f64,
    pub(crate) softcap: Option<f64>,
}

impl ResolvedOptions {
    /// xent's options over a weight already converted to the compute type `A`.
    pub(crate) fn xent<'w, A: xent::Float>(
        &self,
        weight: Option<&'w [A]>,
    ) -> xent::CrossEntropyOptions<'w, A> {
        let mut o = xent::CrossEntropyOptions::default()
            .ignore_index(self.ignore_index)
            .label_smoothing(self.label_smoothing)
            .reduction(self.reduction)
            .z_loss(self.z_loss);
        if let Some(w) = weight {
            o = o.weight(w);
        }
        if let Some(c) = self.softcap {
            o = o.softcap(c);
        }
        o
    }
}
