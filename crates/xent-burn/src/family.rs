//! The binary cross-entropies and the divergences (KL, Jensen–Shannon).

use burn::tensor::{Device, Tensor};
use xent::{KlReduction, Reduction};

use crate::composed;
use crate::error::{Error, Result};
use crate::plan::{LossPlan, Plan};
use crate::route::{self, Implementation};

/// Options of [`binary_cross_entropy`], PyTorch's defaults: no weight, `mean`.
///
/// ```
/// use xent_burn::{BinaryCrossEntropyOptions, Reduction};
/// let opts = BinaryCrossEntropyOptions::default().reduction(Reduction::Sum);
/// assert_eq!(opts.reduction, Reduction::Sum);
/// ```
#[derive(Debug, Clone, Default)]
pub struct BinaryCrossEntropyOptions {
    /// Rescaling weight of each element: as many entries as the input, as its last
    /// dim, or one (broadcast as xent does); `None` for 1.
    pub weight: Option<Tensor<1>>,
    /// `none` (one loss per element, flattened), `mean` or `sum`.
    pub reduction: Reduction,
    /// xent's kernels or burn's composed ops.
    pub implementation: Implementation,
}

impl BinaryCrossEntropyOptions {
    /// Sets the weight.
    pub fn weight(mut self, weight: Tensor<1>) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// Chooses the implementation.
    pub fn implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }
}

/// Options of [`binary_cross_entropy_with_logits`]: [`BinaryCrossEntropyOptions`]
/// plus `pos_weight`, the weight of the positive term per class (last dim) or one.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::BinaryCrossEntropyWithLogitsOptions;
/// let pw = Tensor::<1>::from_floats([3.0, 0.5], &Device::flex());
/// let opts = BinaryCrossEntropyWithLogitsOptions::default().pos_weight(pw);
/// assert!(opts.pos_weight.is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct BinaryCrossEntropyWithLogitsOptions {
    /// `weight`, `reduction`, `implementation`, as for [`binary_cross_entropy`].
    pub base: BinaryCrossEntropyOptions,
    /// Weight `pw` of the positive term; `None` for 1.
    pub pos_weight: Option<Tensor<1>>,
}

impl BinaryCrossEntropyWithLogitsOptions {
    /// Sets the weight.
    pub fn weight(mut self, weight: Tensor<1>) -> Self {
        self.base = self.base.weight(weight);
        self
    }
    /// Sets `pos_weight`.
    pub fn pos_weight(mut self, pos_weight: Tensor<1>) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.base = self.base.reduction(reduction);
        self
    }
    /// Chooses the implementation.
    pub fn implementation(mut self, implementation: Implementation) -> Self {
        self.base = self.base.implementation(implementation);
        self
    }
}

/// Options of [`kl_div`]: xent's (`reduction` incl. `batchmean`, `log_target`) and the
/// implementation.
///
/// ```
/// use xent_burn::{KlDivOptions, KlReduction};
/// let opts = KlDivOptions::default().reduction(KlReduction::BatchMean).log_target(true);
/// assert!(opts.xent.log_target);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct KlDivOptions {
    /// xent's options.
    pub xent: xent::KlDivOptions,
    /// xent's kernels or burn's composed ops.
    pub implementation: Implementation,
}

impl KlDivOptions {
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: KlReduction) -> Self {
        self.xent = self.xent.reduction(reduction);
        self
    }
    /// The target is given as log-probabilities.
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.xent = self.xent.log_target(log_target);
        self
    }
    /// Chooses the implementation.
    pub fn implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }
}

/// Options of [`js_div`] and [`js_div_with_logits`]: the reduction over rows.
///
/// ```
/// use xent_burn::{JsDivOptions, Reduction};
/// let opts = JsDivOptions::default().reduction(Reduction::None);
/// assert_eq!(opts.xent.reduction, Reduction::None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsDivOptions {
    /// xent's options.
    pub xent: xent::JsDivOptions,
    /// xent's kernels or burn's composed ops.
    pub implementation: Implementation,
}

impl JsDivOptions {
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.xent = self.xent.reduction(reduction);
        self
    }
    /// Chooses the implementation.
    pub fn implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }
}

/// Checks a pair `(a, b)` of same-shape float tensors on one device; returns `b` in
/// `a`'s dtype, both in the compute type the kernels take (`f32`, `f64`).
fn pair<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    names: [&'static str; 2],
) -> Result<(Tensor<D>, Tensor<D>)> {
    route::check_float(names[0], &a)?;
    route::check_float(names[1], &b)?;
    route::check_device(names[1], &b.device(), &a.device())?;
    route::check_shape(names[1], b.dims(), &a.dims())?;
    let a = composed::compute_type(a);
    let b = b.cast(a.dtype());
    Ok((a, b))
}

/// A weight read to host memory after checking xent's broadcast rule (all elements,
/// the last dim, or one; `per_class`: the last dim or one).
fn broadcast_weight<const D: usize>(
    what: &'static str,
    w: &Option<Tensor<1>>,
    dims: [usize; D],
    per_class: bool,
    device: &Device,
) -> Result<Option<Vec<f64>>> {
    let Some(w) = w else { return Ok(None) };
    let v = route::host_f64(what, w, device)?;
    let last = dims.last().copied().unwrap_or(1);
    let numel: usize = dims.iter().product();
    if v.len() == 1 || v.len() == last || (!per_class && v.len() == numel) {
        Ok(Some(v))
    } else {
        Err(Error::Shape {
            what,
            shape: vec![v.len()],
            expected: vec![if per_class { last } else { numel }],
        })
    }
}

/// Whether any element lies outside `[0, 1]` (or is NaN), computed on the device.
fn outside_unit<const D: usize>(t: &Tensor<D>) -> Result<bool> {
    Ok(t.clone()
        .lower_elem(0.0)
        .bool_or(t.clone().greater_elem(1.0))
        .bool_or(t.clone().is_nan())
        .any()
        .try_into_data()
        .map_err(|e| Error::Backend(format!("{e:?}")))?
        .iter::<bool>()
        .next()
        .unwrap_or(false))
}

fn host<const D: usize>(t: &Tensor<D>) -> Result<Vec<f64>> {
    Ok(t.clone()
        .try_into_data()
        .map_err(|e| Error::Backend(format!("{e:?}")))?
        .iter::<f64>()
        .collect())
}

/// The composed path's check that probabilities lie in `[0, 1]`: a flag on the
/// device; only when it is set are the data read, and xent's own check names the
/// first bad value and its position (the kernel path's error, word for word).
fn check_unit<const D: usize>(a: &Tensor<D>, b: &Tensor<D>, js: bool) -> Result<()> {
    if !(outside_unit(a)? || outside_unit(b)?) {
        return Ok(());
    }
    let (va, vb, dims) = (host(a)?, host(b)?, a.dims());
    if js {
        xent::js_div(&va, &dims, &vb, &xent::JsDivOptions::default())?;
    } else {
        xent::binary_cross_entropy(&va, &dims, &vb, &xent::BinaryCrossEntropyOptions::default())?;
    }
    Ok(())
}

fn fused_pair<const D: usize>(loss: LossPlan, a: Tensor<D>, b: Tensor<D>) -> Result<Tensor<1>> {
    let dims = a.dims().to_vec();
    let plan = Plan {
        loss,
        shapes: vec![dims.clone(), dims],
    };
    let device = a.device();
    route::run_fused(
        plan,
        vec![a.into_dispatch(), b.into_dispatch()],
        None,
        &device,
    )
}

/// Binary cross-entropy of probabilities `input` against `target` (same shape), as
/// PyTorch's `F.binary_cross_entropy`:
/// `l = −w·[y·max(ln p, −100) + (1−y)·max(ln(1−p), −100)]`. Returns `[1]` for
/// `mean`/`sum`, the flattened elementwise loss for `none`. The gradient is for
/// `input` (`bf16`/`f16` inputs are computed in `f32`).
///
/// # Errors
/// [`Error::Xent`] for a value outside `[0, 1]` (named with its position);
/// [`Error::Shape`] for a target or weight of the wrong shape; dtype and device errors.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::{binary_cross_entropy, BinaryCrossEntropyOptions};
/// let dev = Device::flex();
/// let p = Tensor::<1>::from_floats([0.5, 0.5], &dev);
/// let y = Tensor::<1>::from_floats([0.0, 1.0], &dev);
/// let loss = binary_cross_entropy(p, y, &BinaryCrossEntropyOptions::default())?;
/// assert!((loss.into_scalar::<f32>() - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn binary_cross_entropy<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    opts: &BinaryCrossEntropyOptions,
) -> Result<Tensor<1>> {
    let (p, y) = pair(input, target, ["input", "target"])?;
    let device = p.device();
    let weight = broadcast_weight("weight", &opts.weight, p.dims(), false, &device)?;
    if route::fused(opts.implementation, &p) {
        let loss = LossPlan::Binary {
            reduction: opts.reduction,
            weight,
        };
        return fused_pair(loss, p, y);
    }
    check_unit(&p, &y, false)?;
    Ok(composed::binary_cross_entropy(
        p,
        y,
        opts.weight.clone(),
        opts.reduction,
    ))
}

/// Binary cross-entropy from logits, as PyTorch's
/// `F.binary_cross_entropy_with_logits`:
/// `l = w·[(1−y)·x − (1 + (pw−1)·y)·log σ(x)]` with a stable `log σ`.
///
/// # Errors
/// [`Error::Shape`] for a target, weight or `pos_weight` of the wrong shape; dtype and
/// device errors.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::{binary_cross_entropy_with_logits, BinaryCrossEntropyWithLogitsOptions};
/// let dev = Device::flex();
/// let x = Tensor::<1>::from_floats([0.0, 0.0], &dev);
/// let y = Tensor::<1>::from_floats([1.0, 0.0], &dev);
/// let opts = BinaryCrossEntropyWithLogitsOptions::default();
/// let loss = binary_cross_entropy_with_logits(x, y, &opts)?;
/// assert!((loss.into_scalar::<f32>() - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    opts: &BinaryCrossEntropyWithLogitsOptions,
) -> Result<Tensor<1>> {
    let (x, y) = pair(input, target, ["input", "target"])?;
    let device = x.device();
    let dims = x.dims();
    let weight = broadcast_weight("weight", &opts.base.weight, dims, false, &device)?;
    let pos_weight = broadcast_weight("pos_weight", &opts.pos_weight, dims, true, &device)?;
    if route::fused(opts.base.implementation, &x) {
        let loss = LossPlan::BinaryWithLogits {
            reduction: opts.base.reduction,
            weight,
            pos_weight,
        };
        return fused_pair(loss, x, y);
    }
    Ok(composed::binary_cross_entropy_with_logits(
        x,
        y,
        opts.base.weight.clone(),
        opts.pos_weight.clone(),
        opts.base.reduction,
    ))
}

/// Kullback–Leibler divergence loss of log-probabilities `input` against `target`, as
/// PyTorch's `F.kl_div`: `t·(ln t − input)` (`0·ln 0 = 0`), or with `log_target`
/// `eᵗ·(t − input)`, reduced by `none` (flattened), `sum`, `mean` or `batchmean`.
/// Gradients for both arguments.
///
/// # Errors
/// [`Error::Shape`] for a target of another shape; dtype and device errors.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::{kl_div, KlDivOptions, KlReduction};
/// let dev = Device::flex();
/// let logq = Tensor::<2>::from_floats([[0.5f32.ln(), 0.5f32.ln()]], &dev);
/// let t = Tensor::<2>::from_floats([[0.5, 0.5]], &dev);
/// let loss = kl_div(logq, t, &KlDivOptions::default().reduction(KlReduction::BatchMean))?;
/// assert!(loss.into_scalar::<f32>().abs() < 1e-6); // KL(P‖P) = 0
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn kl_div<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    opts: &KlDivOptions,
) -> Result<Tensor<1>> {
    let (a, b) = pair(input, target, ["input", "target"])?;
    if route::fused(opts.implementation, &a) {
        return fused_pair(LossPlan::KlDiv(opts.xent), a, b);
    }
    Ok(composed::kl_div(a, b, &opts.xent))
}

/// Jensen–Shannon divergence `½·KL(P‖M) + ½·KL(Q‖M)`, `M = ½(P+Q)`, in nats, between
/// probability distributions over dim 1 (the class dim, as for cross-entropy), per
/// row, reduced by `mean` over rows, `sum`, or `none` (flattened). Gradients for both.
///
/// # Errors
/// [`Error::Xent`] for a probability outside `[0, 1]`; [`Error::Shape`] for
/// arguments of different shapes; dtype and device errors.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::{js_div, JsDivOptions};
/// let dev = Device::flex();
/// let p = Tensor::<2>::from_floats([[1.0, 0.0]], &dev);
/// let q = Tensor::<2>::from_floats([[0.0, 1.0]], &dev);
/// let js = js_div(p, q, &JsDivOptions::default())?;
/// assert!((js.into_scalar::<f32>() - 2f32.ln()).abs() < 1e-6); // disjoint: ln 2
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn js_div<const D: usize>(
    p: Tensor<D>,
    q: Tensor<D>,
    opts: &JsDivOptions,
) -> Result<Tensor<1>> {
    js(p, q, opts, false)
}

/// [`js_div`] between the softmax distributions (over dim 1) of two logit tensors.
///
/// # Errors
/// As [`js_div`] (logits are not range-checked).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::{js_div_with_logits, JsDivOptions};
/// let dev = Device::flex();
/// let a = Tensor::<2>::from_floats([[1.0, 2.0]], &dev);
/// let js = js_div_with_logits(a.clone(), a, &JsDivOptions::default())?;
/// assert!(js.into_scalar::<f32>().abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn js_div_with_logits<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    opts: &JsDivOptions,
) -> Result<Tensor<1>> {
    js(a, b, opts, true)
}

fn js<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    opts: &JsDivOptions,
    logits: bool,
) -> Result<Tensor<1>> {
    let names = if logits { ["a", "b"] } else { ["p", "q"] };
    let (a, b) = pair(a, b, names)?;
    if route::fused(opts.implementation, &a) {
        return fused_pair(
            LossPlan::JsDiv {
                opts: opts.xent,
                logits,
            },
            a,
            b,
        );
    }
    if !logits {
        check_unit(&a, &b, true)?;
    }
    let (a, b) = (composed::class_rows(a), composed::class_rows(b));
    Ok(composed::js_div(a, b, logits, opts.xent.reduction))
}
