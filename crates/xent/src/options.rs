//! Options of the losses: parameter structs with `Default` and builder methods.

use crate::dtype::Float;
use crate::error::{Error, Result};

/// How per-row losses are combined, as PyTorch's `reduction`.
///
/// ```
/// use xent::Reduction;
/// assert_eq!(Reduction::default(), Reduction::Mean);
/// assert_eq!("sum".parse::<Reduction>().unwrap(), Reduction::Sum);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// One loss per row, in the input's row shape.
    None,
    /// The (weighted) mean over the rows that count; see each loss for its denominator.
    #[default]
    Mean,
    /// The sum over rows.
    Sum,
}

impl Reduction {
    /// PyTorch's name of the reduction: `none`, `mean` or `sum`.
    fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }
}

impl core::str::FromStr for Reduction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            _ => Err(Error::InvalidArgument {
                name: "reduction",
                value: s.to_string(),
                expected: "one of none, mean, sum",
            }),
        }
    }
}

/// Whether a gradient is written over the caller's buffer or added into it.
///
/// `Accumulate` is gradient accumulation over micro-batches: the buffer keeps what
/// earlier calls put there, as a PyTorch `.grad` does until `zero_grad()`.
///
/// ```
/// assert_eq!(xent::GradMode::default(), xent::GradMode::Overwrite);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradMode {
    /// `grad = ∂loss/∂x`.
    #[default]
    Overwrite,
    /// `grad += ∂loss/∂x`.
    Accumulate,
}

/// The default `ignore_index`, as PyTorch's.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// Options of [`cross_entropy`](crate::cross_entropy), PyTorch's keyword arguments.
///
/// ```
/// use xent::{CrossEntropyOptions, Reduction};
/// let w = [1.0f32, 2.0, 0.5];
/// let opts = CrossEntropyOptions::default()
///     .weight(&w)
///     .ignore_index(0)
///     .label_smoothing(0.1)
///     .reduction(Reduction::Sum);
/// assert_eq!(opts.ignore_index, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CrossEntropyOptions<'a, T> {
    /// Class weights `w` (C entries); `None` means all 1.
    pub weight: Option<&'a [T]>,
    /// Rows whose class-index target equals this are ignored (default −100).
    /// Must be negative for probability targets.
    pub ignore_index: i64,
    /// `ε ∈ [0, 1]`: the target is mixed with the uniform distribution.
    pub label_smoothing: f64,
    /// How rows are combined (default mean).
    pub reduction: Reduction,
    /// z-loss scale `s` (`lse_square_scale`, default 0): adds `s·lse_n²` per row that
    /// counts, averaged over those rows for `mean`.
    pub z_loss: f64,
    /// Logit soft-capping (default none): `x̃ = cap·tanh(x/cap)` replaces `x`.
    pub softcap: Option<f64>,
    /// Logit scale `s` (default 1; finite, > 0): the loss sees `softcap(s·x)`, the
    /// logits scaled first and soft-capped after, and the gradient with respect to `x`
    /// carries the factor `s`.
    pub logit_scale: f64,
    /// The denominator of `mean` (default `None`: PyTorch's, this call's own
    /// `D = Σ_{n∈M} w_{y_n}`, or the row count for probability targets). `Some(d)`
    /// divides the summed loss, its z term and the gradient by `d` instead: the token
    /// count (or weight sum) of a whole gradient-accumulation step, Hugging Face's
    /// `num_items_in_batch`. A call whose rows are all ignored then gives 0, not NaN.
    /// Finite, > 0, and only with [`Reduction::Mean`].
    pub denominator: Option<f64>,
}

impl<T> Default for CrossEntropyOptions<'_, T> {
    fn default() -> Self {
        CrossEntropyOptions {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
            z_loss: 0.0,
            softcap: None,
            logit_scale: 1.0,
            denominator: None,
        }
    }
}

impl<'a, T: Float> CrossEntropyOptions<'a, T> {
    /// Sets the class weights.
    pub fn weight(mut self, weight: &'a [T]) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets `ignore_index`.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
    /// Sets `label_smoothing` (checked when the loss runs).
    pub fn label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// Sets the z-loss scale (`lse_square_scale`; finite, ≥ 0, checked when the loss runs).
    pub fn z_loss(mut self, scale: f64) -> Self {
        self.z_loss = scale;
        self
    }
    /// Soft-caps the logits at `cap` (finite, > 0, checked when the loss runs).
    pub fn softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }
    /// Scales the logits by `s` before soft-capping (finite, > 0, checked when the
    /// loss runs).
    pub fn logit_scale(mut self, s: f64) -> Self {
        self.logit_scale = s;
        self
    }
    /// Divides the `mean` by `d` instead of this call's own count (finite, > 0, only
    /// with [`Reduction::Mean`], checked when the loss runs).
    pub fn denominator(mut self, d: f64) -> Self {
        self.denominator = Some(d);
        self
    }
}

/// Options of [`nll_loss`](crate::nll_loss): `weight`, `ignore_index`, `reduction`.
///
/// ```
/// use xent::{NllLossOptions, Reduction};
/// let opts = NllLossOptions::<f64>::default().reduction(Reduction::None);
/// assert_eq!(opts.ignore_index, -100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct NllLossOptions<'a, T> {
    /// Class weights `w` (C entries); `None` means all 1.
    pub weight: Option<&'a [T]>,
    /// Rows whose target equals this are ignored (default −100).
    pub ignore_index: i64,
    /// How rows are combined (default mean).
    pub reduction: Reduction,
    /// The denominator of `mean` (default `None`: this call's own
    /// `D = Σ_{n∈M} w_{y_n}`); `Some(d)` divides the summed loss and the gradient by
    /// `d` instead, as [`CrossEntropyOptions::denominator`].
    pub denominator: Option<f64>,
}

impl<T> Default for NllLossOptions<'_, T> {
    fn default() -> Self {
        NllLossOptions {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            denominator: None,
        }
    }
}

impl<'a, T: Float> NllLossOptions<'a, T> {
    /// Sets the class weights.
    pub fn weight(mut self, weight: &'a [T]) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets `ignore_index`.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// Divides the `mean` by `d` instead of this call's own `D` (finite, > 0, only
    /// with [`Reduction::Mean`], checked when the loss runs).
    pub fn denominator(mut self, d: f64) -> Self {
        self.denominator = Some(d);
        self
    }
}

impl<'a, T: Float> From<NllLossOptions<'a, T>> for CrossEntropyOptions<'a, T> {
    fn from(o: NllLossOptions<'a, T>) -> Self {
        CrossEntropyOptions {
            weight: o.weight,
            ignore_index: o.ignore_index,
            label_smoothing: 0.0,
            reduction: o.reduction,
            z_loss: 0.0,
            softcap: None,
            logit_scale: 1.0,
            denominator: o.denominator,
        }
    }
}

/// Checks a logit scale: finite and > 0.
pub(crate) fn check_logit_scale(s: f64) -> Result<()> {
    if s.is_finite() && s > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name: "logit_scale",
            value: s.to_string(),
            expected: "a finite number > 0",
        })
    }
}

/// Checks a denominator of `mean`: finite, > 0, and with [`Reduction::Mean`].
pub(crate) fn check_denominator(denominator: Option<f64>, reduction: Reduction) -> Result<()> {
    let Some(d) = denominator else {
        return Ok(());
    };
    if !(d.is_finite() && d > 0.0) {
        return Err(Error::InvalidArgument {
            name: "denominator",
            value: d.to_string(),
            expected: "a finite number > 0",
        });
    }
    if reduction != Reduction::Mean {
        return Err(Error::InvalidArgument {
            name: "denominator",
            value: format!("{d} with reduction {}", reduction.name()),
            expected: "reduction mean: a denominator replaces the mean's own",
        });
    }
    Ok(())
}
