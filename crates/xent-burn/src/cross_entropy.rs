//! `cross_entropy` (class indices or probabilities) and `linear_cross_entropy`.

use burn::tensor::{Int, Tensor};
use xent::Reduction;

use crate::composed::{self, CeArgs};
use crate::error::{Error, Result};
use crate::plan::{LossPlan, Plan};
use crate::route::{self, Implementation};

/// Options of [`cross_entropy`], [`cross_entropy_with_probs`] and
/// [`linear_cross_entropy`], with PyTorch's defaults: no class weights,
/// `ignore_index = -100`, no label smoothing, `mean`; no z-loss, no soft-capping.
///
/// The scalar options are [`xent::CrossEntropyOptions`] itself (builder methods
/// forward to it); the class weights are a burn tensor of `C` entries, read once.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::{CrossEntropyOptions, Reduction};
/// let w = Tensor::<1>::from_floats([1.0, 2.0, 0.5], &Device::flex());
/// let opts = CrossEntropyOptions::default()
///     .weight(w)
///     .ignore_index(-1)
///     .label_smoothing(0.1)
///     .reduction(Reduction::Sum)
///     .z_loss(1e-4)
///     .softcap(30.0);
/// assert_eq!(opts.xent.reduction, Reduction::Sum);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CrossEntropyOptions {
    /// Class weights `w` (1-d, `C` entries, any float dtype); `None` for all 1.
    pub weight: Option<Tensor<1>>,
    /// `ignore_index`, `label_smoothing`, `reduction`, `z_loss`, `softcap` (its
    /// `weight` is unused: the tensor above is).
    pub xent: xent::CrossEntropyOptions<'static, f64>,
    /// xent's kernels or burn's composed ops.
    pub implementation: Implementation,
}

impl CrossEntropyOptions {
    /// Sets the class weights.
    pub fn weight(mut self, weight: Tensor<1>) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets the target value whose rows are ignored.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.xent = self.xent.ignore_index(ignore_index);
        self
    }
    /// Sets the label smoothing `ε` (checked by xent: `[0, 1]`).
    pub fn label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.xent = self.xent.label_smoothing(label_smoothing);
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.xent = self.xent.reduction(reduction);
        self
    }
    /// Sets the z-loss scale `s` (adds `s·lse²` per row that counts).
    pub fn z_loss(mut self, scale: f64) -> Self {
        self.xent = self.xent.z_loss(scale);
        self
    }
    /// Sets logit soft-capping: `cap·tanh(x/cap)` replaces `x`.
    pub fn softcap(mut self, cap: f64) -> Self {
        self.xent = self.xent.softcap(cap);
        self
    }
    /// Chooses the implementation.
    pub fn implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }
}

/// The logits' shape without the class dim: the shape class-index targets must have.
fn row_dims(dims: &[usize]) -> Vec<usize> {
    match dims.len() {
        0 | 1 => vec![],
        _ => [&dims[..1], &dims[2..]].concat(),
    }
}

/// Checks everything but the data: dtypes, devices, the targets' shape, and (with
/// xent's own checks, on an empty batch) the options and the class weights' length.
fn check(
    dims: &[usize],
    target_dims: Option<&[usize]>,
    weight: Option<&[f64]>,
    opts: &CrossEntropyOptions,
) -> Result<()> {
    let rank = dims.len();
    if let Some(t) = target_dims {
        let expected = row_dims(dims);
        let unbatched = rank == 1 && (t.is_empty() || t == [1]);
        if !unbatched && t != expected {
            if rank >= 2 && t.first() != Some(&dims[0]) {
                return Err(xent::Error::BatchMismatch {
                    input: dims[0],
                    target: t.first().copied().unwrap_or(0),
                }
                .into());
            }
            return Err(xent::Error::TargetShape {
                expected,
                len: t.iter().product(),
            }
            .into());
        }
    }
    let classes = if rank == 1 {
        dims[0]
    } else {
        dims.get(1).copied().unwrap_or(0)
    };
    let mut o = opts.xent;
    if let Some(w) = weight {
        o = o.weight(w);
    }
    let empty: &[f64] = &[];
    let targets: xent::Targets<'_, f64> = match target_dims {
        Some(_) => xent::Targets::Indices(xent::ClassIndices::I64(&[])),
        None => xent::Targets::Probabilities(empty),
    };
    xent::cross_entropy(empty, &[0, classes], targets, &o)?;
    Ok(())
}

fn weights(opts: &CrossEntropyOptions, device: &burn::tensor::Device) -> Result<Option<Vec<f64>>> {
    opts.weight
        .as_ref()
        .map(|w| route::host_f64("weight", w, device))
        .transpose()
}

/// Softmax cross-entropy of `logits` against class indices, as PyTorch's
/// `F.cross_entropy`, computed by xent's fused kernel on CPU backends.
///
/// Classes are on dim 1 (dim 0 of an unbatched `(C,)` input): logits `(C,)`, `(N, C)`
/// or `(N, C, d1..dk)` with targets `()` (or `[1]`), `(N)` or `(N, d1..dk)` of any
/// integer dtype. Per row `l_n = (1−ε)·w_{y_n}·(lse_n − x_{n,y_n}) + (ε/C)·Σ_c w_c·(lse_n − x_{n,c})`
/// (plus `s·lse_n²` with z-loss), 0 for rows whose target is `ignore_index`; `mean`
/// divides by `Σ w_{y_n}` over the rows that count.
///
/// Returns a tensor of shape `[1]` for `mean`/`sum`, and for `none` one loss per row,
/// flattened (`N·d1⋯dk` entries; reshape for K-dim inputs). On an autodiff device,
/// `loss.backward()` gives `∂loss/∂logits` from the same fused pass. `bf16`/`f16`
/// logits give an `f32` loss.
///
/// # Errors
/// [`Error::Xent`] for a target out of bounds, bad options, a weight of the wrong
/// length or targets of the wrong shape; [`Error::DType`] / [`Error::Device`] for
/// tensors of another dtype or device.
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use xent_burn::{cross_entropy, CrossEntropyOptions};
/// let dev = Device::flex().autodiff();
/// let logits = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], &dev)
///     .require_grad();
/// let targets = Tensor::<1, Int>::from_ints([2, 1, 0], &dev);
/// let loss = cross_entropy(logits.clone(), targets, &CrossEntropyOptions::default())?;
/// assert!((loss.clone().into_scalar::<f32>() - 1.4076).abs() < 1e-4);
/// let grads = loss.backward();
/// let g = logits.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
/// assert!((g[0] - 0.0300).abs() < 1e-4); // (softmax − onehot)/N
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn cross_entropy<const D: usize, const DT: usize>(
    logits: Tensor<D>,
    targets: Tensor<DT, Int>,
    opts: &CrossEntropyOptions,
) -> Result<Tensor<1>> {
    let device = logits.device();
    route::check_device("targets", &targets.device(), &device)?;
    let w = weights(opts, &device)?;
    let tdims = targets.dims();
    let dims = logits.dims();
    route::check_float("logits", &logits)?;
    check(&dims, Some(&tdims), w.as_deref(), opts)?;
    if route::fused(opts.implementation, &logits) {
        let plan = Plan {
            loss: LossPlan::CrossEntropy {
                opts: opts.xent,
                weight: w,
                probabilities: false,
            },
            shapes: vec![dims.to_vec()],
        };
        let (inputs, targets) = (vec![logits.into_dispatch()], Some(targets.into_dispatch()));
        return route::run_fused(plan, inputs, targets, &device);
    }
    let classes = if D == 1 { dims[0] } else { dims[1] };
    let flat = targets.reshape([tdims.iter().product::<usize>()]);
    route::check_indices(&flat, &tdims, classes, opts.xent.ignore_index)?;
    let x = composed::class_rows(composed::compute_type(logits));
    Ok(composed::cross_entropy(x, flat, &args(opts)))
}

fn args(opts: &CrossEntropyOptions) -> CeArgs<'_> {
    CeArgs {
        opts: &opts.xent,
        weight: opts.weight.clone(),
    }
}

/// Softmax cross-entropy against probability targets of the logits' shape, as
/// PyTorch's `F.cross_entropy` with a float target: per row
/// `l_n = −Σ_c w_c·t'_{n,c}·log_softmax(x)_{n,c}` with `t' = (1−ε)·t + ε/C`; `mean`
/// divides by the number of rows. `ignore_index` must stay negative (it has no
/// effect). The targets get no gradient on the kernel path.
///
/// # Errors
/// As [`cross_entropy`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use xent_burn::{cross_entropy_with_probs, CrossEntropyOptions};
/// let dev = Device::flex();
/// let logits = Tensor::<2>::from_floats([[0.0, 0.0]], &dev);
/// let probs = Tensor::<2>::from_floats([[0.5, 0.5]], &dev);
/// let loss = cross_entropy_with_probs(logits, probs, &CrossEntropyOptions::default())?;
/// assert!((loss.into_scalar::<f32>() - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn cross_entropy_with_probs<const D: usize>(
    logits: Tensor<D>,
    targets: Tensor<D>,
    opts: &CrossEntropyOptions,
) -> Result<Tensor<1>> {
    let device = logits.device();
    route::check_device("targets", &targets.device(), &device)?;
    route::check_float("targets", &targets)?;
    route::check_shape("targets", targets.dims(), &logits.dims())?;
    let w = weights(opts, &device)?;
    let dims = logits.dims();
    route::check_float("logits", &logits)?;
    check(&dims, None, w.as_deref(), opts)?;
    if route::fused(opts.implementation, &logits) {
        // xent takes the targets in the logits' dtype.
        let targets = targets.cast(logits.dtype());
        let plan = Plan {
            loss: LossPlan::CrossEntropy {
                opts: opts.xent,
                weight: w,
                probabilities: true,
            },
            shapes: vec![dims.to_vec(), dims.to_vec()],
        };
        let inputs = vec![logits.into_dispatch(), targets.into_dispatch()];
        return route::run_fused(plan, inputs, None, &device);
    }
    let x = composed::class_rows(composed::compute_type(logits));
    let t = composed::class_rows(targets);
    Ok(composed::cross_entropy_probs(x, t, &args(opts)))
}

/// Linear cross-entropy: [`cross_entropy`] of the logits `h·Wᵀ + b`, which xent's
/// kernel never stores (it works in row blocks under a 64 MiB scratch budget), with
/// every option of [`CrossEntropyOptions`]. `hidden` is `(N, D)`, `linear_weight`
/// `(V, D)`, `linear_bias` `(V)`, `targets` `(N)`. `loss.backward()` gives the
/// gradients for `h`, `W` and `b` (for `bf16`/`f16` parameters accumulated in `f32`
/// and rounded once).
///
/// # Errors
/// As [`cross_entropy`], plus [`Error::Xent`] for mismatched `D` or `V`.
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use xent_burn::{linear_cross_entropy, CrossEntropyOptions};
/// let dev = Device::flex();
/// let h = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &dev);
/// let w = Tensor::<2>::zeros([3, 2], &dev); // all logits 0: loss ln 3
/// let y = Tensor::<1, Int>::from_ints([0, 2], &dev);
/// let loss = linear_cross_entropy(h, w, None, y, &CrossEntropyOptions::default())?;
/// assert!((loss.into_scalar::<f32>() - 3f32.ln()).abs() < 1e-6);
/// # Ok::<(), xent_burn::Error>(())
/// ```
pub fn linear_cross_entropy(
    hidden: Tensor<2>,
    linear_weight: Tensor<2>,
    linear_bias: Option<Tensor<1>>,
    targets: Tensor<1, Int>,
    opts: &CrossEntropyOptions,
) -> Result<Tensor<1>> {
    let device = hidden.device();
    route::check_float("hidden", &hidden)?;
    route::check_float("linear_weight", &linear_weight)?;
    route::check_device("linear_weight", &linear_weight.device(), &device)?;
    route::check_device("targets", &targets.device(), &device)?;
    let [n, d] = hidden.dims();
    let [v, dw] = linear_weight.dims();
    if dw != d {
        return Err(Error::Shape {
            what: "linear_weight",
            shape: vec![v, dw],
            expected: vec![v, d],
        });
    }
    if let Some(b) = &linear_bias {
        route::check_float("linear_bias", b)?;
        route::check_device("linear_bias", &b.device(), &device)?;
        route::check_shape("linear_bias", b.dims(), &[v])?;
    }
    let w = weights(opts, &device)?;
    // The logits' shape is (N, V): the same checks as cross_entropy's.
    check(&[n, v], Some(&targets.dims()), w.as_deref(), opts)?;
    if route::fused(opts.implementation, &hidden) {
        let dtype = hidden.dtype();
        let mut shapes = vec![vec![n, d], vec![v, d]];
        let mut inputs = vec![
            hidden.into_dispatch(),
            linear_weight.cast(dtype).into_dispatch(),
        ];
        if let Some(b) = linear_bias {
            shapes.push(vec![v]);
            inputs.push(b.cast(dtype).into_dispatch());
        }
        let plan = Plan {
            loss: LossPlan::Linear {
                opts: xent::LinearCrossEntropyOptions::from(opts.xent),
                weight: w,
            },
            shapes,
        };
        return route::run_fused(plan, inputs, Some(targets.into_dispatch()), &device);
    }
    route::check_indices(&targets, &[n], v, opts.xent.ignore_index)?;
    let h = composed::compute_type(hidden);
    let mut x = h.clone().matmul(linear_weight.cast(h.dtype()).transpose());
    if let Some(b) = linear_bias {
        x = x + b.cast(h.dtype()).reshape([1, v]);
    }
    Ok(composed::cross_entropy(x, targets, &args(opts)))
}
