//! `sigmoid`, `log_sigmoid`, `binary_cross_entropy` and
//! `binary_cross_entropy_with_logits`: elementwise, any shape.

use super::elementwise::{
    check_grad_out, check_shape, check_target_len, check_unit_interval, grad_parts, log_sigmoid1,
    sigmoid1, Broadcast, Pointwise, Reduce,
};
use super::{check_len, GradOut, Loss};
use crate::dtype::Float;
use crate::error::Result;
use crate::kernels::pointwise::PointOp;
use crate::options::Reduction;

/// `σ(x) = 1/(1 + e^{−x})` elementwise, into `out`; evaluated as `e^x/(1 + e^x)` for
/// negative `x`, so nothing overflows.
///
/// # Errors
/// [`crate::Error::OutputLength`] when `out` is not the input's length.
///
/// ```
/// let mut s = [0.0f32; 3];
/// xent::sigmoid_into(&[0.0, -1000.0, 1000.0], &mut s)?;
/// assert_eq!(s, [0.5, 0.0, 1.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn sigmoid_into<T: Float>(input: &[T], out: &mut [T]) -> Result<()> {
    check_len("out", out.len(), input.len())?;
    for (o, &x) in out.iter_mut().zip(input) {
        *o = sigmoid1(x);
    }
    Ok(())
}

/// [`sigmoid_into`] into a new buffer: `σ(x) = 1/(1 + e^{−x})`.
///
/// Never fails: there is no shape to check.
///
/// ```
/// let s = xent::sigmoid(&[0.0f64, 2.0]);
/// assert!((s[1] - 0.8807970779778823).abs() < 1e-16);
/// ```
pub fn sigmoid<T: Float>(input: &[T]) -> Vec<T> {
    input.iter().map(|&x| sigmoid1(x)).collect()
}

/// Backward of sigmoid from its output `s`: `gx = gy·s·(1 − s)`, as PyTorch's
/// `sigmoid_backward`.
///
/// # Errors
/// [`crate::Error::OutputLength`] when `grad_output` or `grad_input` is not the
/// output's length.
///
/// ```
/// let s = xent::sigmoid(&[0.0f64]);
/// let mut gx = [0.0];
/// xent::sigmoid_backward_into(&s, &[2.0], &mut gx)?;
/// assert_eq!(gx, [0.5]); // 2 · ½ · ½
/// # Ok::<(), xent::Error>(())
/// ```
pub fn sigmoid_backward_into<T: Float>(
    output: &[T],
    grad_output: &[T],
    grad_input: &mut [T],
) -> Result<()> {
    check_len("grad_output", grad_output.len(), output.len())?;
    check_len("grad_input", grad_input.len(), output.len())?;
    for ((gx, &s), &gy) in grad_input.iter_mut().zip(output).zip(grad_output) {
        *gx = gy * s * (T::ONE - s);
    }
    Ok(())
}

/// `log σ(x) = min(x, 0) − log1p(e^{−|x|})` elementwise, into `out`: the stable form,
/// exact to rounding for all `x` (`log σ(−1e4) = −1e4`, never `log 0`).
///
/// # Errors
/// [`crate::Error::OutputLength`] when `out` is not the input's length.
///
/// ```
/// let mut l = [0.0f32; 2];
/// xent::log_sigmoid_into(&[-1e4, 0.0], &mut l)?;
/// assert_eq!(l[0], -1e4);
/// assert!((l[1] + std::f32::consts::LN_2).abs() < 1e-7);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_sigmoid_into<T: Float>(input: &[T], out: &mut [T]) -> Result<()> {
    check_len("out", out.len(), input.len())?;
    for (o, &x) in out.iter_mut().zip(input) {
        *o = log_sigmoid1(x);
    }
    Ok(())
}

/// [`log_sigmoid_into`] into a new buffer: `log σ(x) = min(x, 0) − log1p(e^{−|x|})`.
///
/// Never fails: there is no shape to check.
///
/// ```
/// let l = xent::log_sigmoid(&[100.0f64]);
/// assert!((l[0] + 3.720075976020836e-44).abs() < 1e-58);
/// ```
pub fn log_sigmoid<T: Float>(input: &[T]) -> Vec<T> {
    input.iter().map(|&x| log_sigmoid1(x)).collect()
}

/// Backward of log-sigmoid from its input `x`: `gx = gy·(1 − σ(x)) = gy·σ(−x)`.
///
/// # Errors
/// [`crate::Error::OutputLength`] when `grad_output` or `grad_input` is not the input's
/// length.
///
/// ```
/// let mut gx = [0.0f64; 2];
/// xent::log_sigmoid_backward_into(&[0.0, -1e4], &[1.0, 1.0], &mut gx)?;
/// assert_eq!(gx, [0.5, 1.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_sigmoid_backward_into<T: Float>(
    input: &[T],
    grad_output: &[T],
    grad_input: &mut [T],
) -> Result<()> {
    check_len("grad_output", grad_output.len(), input.len())?;
    check_len("grad_input", grad_input.len(), input.len())?;
    for ((gx, &x), &gy) in grad_input.iter_mut().zip(input).zip(grad_output) {
        *gx = gy * sigmoid1(-x);
    }
    Ok(())
}

/// Options of [`binary_cross_entropy`]: PyTorch's `weight` and `reduction`.
///
/// `weight` broadcasts as PyTorch's would for the shapes xent supports: the input's
/// whole shape (one weight per element), its last dim (one weight per position of the
/// last dim, repeated over the leading dims), or a single element.
///
/// ```
/// use xent::{BinaryCrossEntropyOptions, Reduction};
/// let w = [1.0f32, 3.0];
/// let opts = BinaryCrossEntropyOptions::default().weight(&w).reduction(Reduction::Sum);
/// assert_eq!(opts.reduction, Reduction::Sum);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BinaryCrossEntropyOptions<'a, T> {
    /// Rescaling weight `w` of each element (see the type's docs for its shapes);
    /// `None` means 1.
    pub weight: Option<&'a [T]>,
    /// How elements are combined (default mean over all elements).
    pub reduction: Reduction,
}

impl<T> Default for BinaryCrossEntropyOptions<'_, T> {
    fn default() -> Self {
        BinaryCrossEntropyOptions {
            weight: None,
            reduction: Reduction::Mean,
        }
    }
}

impl<'a, T: Float> BinaryCrossEntropyOptions<'a, T> {
    /// Sets the weight.
    pub fn weight(mut self, weight: &'a [T]) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
}

/// Options of [`binary_cross_entropy_with_logits`]: PyTorch's `weight`, `pos_weight`
/// and `reduction`.
///
/// `weight` broadcasts as in [`BinaryCrossEntropyOptions`] (the whole shape, the last
/// dim, or one element). `pos_weight` weighs the positive term of each class: it has
/// one entry per position of the last (class) dim, or a single entry.
///
/// ```
/// use xent::BinaryCrossEntropyWithLogitsOptions;
/// let pw = [3.0f64, 0.5];
/// let opts = BinaryCrossEntropyWithLogitsOptions::default().pos_weight(&pw);
/// assert_eq!(opts.pos_weight, Some(&pw[..]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BinaryCrossEntropyWithLogitsOptions<'a, T> {
    /// Rescaling weight `w` of each element; `None` means 1.
    pub weight: Option<&'a [T]>,
    /// Weight `pw` of the positive term, per class (last dim); `None` means 1.
    pub pos_weight: Option<&'a [T]>,
    /// How elements are combined (default mean over all elements).
    pub reduction: Reduction,
}

impl<T> Default for BinaryCrossEntropyWithLogitsOptions<'_, T> {
    fn default() -> Self {
        BinaryCrossEntropyWithLogitsOptions {
            weight: None,
            pos_weight: None,
            reduction: Reduction::Mean,
        }
    }
}

impl<'a, T: Float> BinaryCrossEntropyWithLogitsOptions<'a, T> {
    /// Sets the weight.
    pub fn weight(mut self, weight: &'a [T]) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets the positive-class weight.
    pub fn pos_weight(mut self, pos_weight: &'a [T]) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
}

fn reduce_of(reduction: Reduction, numel: usize) -> Reduce {
    match reduction {
        Reduction::None => Reduce {
            none: true,
            denom: 1.0,
        },
        Reduction::Sum => Reduce {
            none: false,
            denom: 1.0,
        },
        Reduction::Mean => Reduce {
            none: false,
            denom: numel as f64,
        },
    }
}

/// Binary cross-entropy of probabilities `input` against `target` (both of shape
/// `shape`, any rank, 0-d included), as PyTorch's `F.binary_cross_entropy`.
///
/// `l_i = −w_i·[y_i·max(ln p_i, −100) + (1 − y_i)·max(ln(1 − p_i), −100)]`: the logs
/// are clamped at −100 as in PyTorch, so `p = 0` or `p = 1` give a finite loss.
/// `mean` divides by the number of elements (NaN for an empty input).
///
/// # Errors
/// [`crate::Error::BadShape`] when `shape` does not match `input`;
/// [`crate::Error::TargetShape`] for a target of another size;
/// [`crate::Error::ValueOutOfRange`] naming the first input, then target, element
/// outside `[0, 1]` (NaN included) and its index; [`crate::Error::BroadcastShape`] for
/// a weight that does not broadcast.
///
/// ```
/// use xent::{binary_cross_entropy, BinaryCrossEntropyOptions};
/// let loss = binary_cross_entropy(&[0.5f64, 0.0], &[2], &[1.0, 1.0],
///     &BinaryCrossEntropyOptions::default())?;
/// // (ln 2 + 100) / 2: ln 0 is clamped at −100
/// assert!((loss.item().unwrap() - (std::f64::consts::LN_2 + 100.0) / 2.0).abs() < 1e-12);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn binary_cross_entropy<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &BinaryCrossEntropyOptions<'_, T>,
) -> Result<Loss<T>> {
    let numel = check_shape(shape, input.len())?;
    let red = reduce_of(opts.reduction, numel);
    let mut out = crate::alloc::zeroed_vec("loss", &red.loss_shape(shape))?;
    binary_cross_entropy_into(input, shape, target, opts, &mut out, None)?;
    Ok(Loss::new(out, red.loss_shape(shape)))
}

/// [`binary_cross_entropy`] and its gradient w.r.t. `input` (upstream gradient 1, or
/// all 1 for `none`): `s_i·w_i·(p_i − y_i)/max(p_i·(1 − p_i), 1e−12)`, the clamp as
/// PyTorch's, with `s_i = 1/numel` for mean.
///
/// # Errors
/// As [`binary_cross_entropy`].
///
/// ```
/// use xent::{binary_cross_entropy_with_grad, BinaryCrossEntropyOptions, Reduction};
/// let opts = BinaryCrossEntropyOptions::default().reduction(Reduction::Sum);
/// let (_, grad) = binary_cross_entropy_with_grad(&[0.25f32], &[1], &[1.0], &opts)?;
/// assert_eq!(grad, [-4.0]); // (0.25 − 1)/(0.25 · 0.75)
/// # Ok::<(), xent::Error>(())
/// ```
pub fn binary_cross_entropy_with_grad<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &BinaryCrossEntropyOptions<'_, T>,
) -> Result<(Loss<T>, Vec<T>)> {
    let numel = check_shape(shape, input.len())?;
    let red = reduce_of(opts.reduction, numel);
    let mut out = crate::alloc::zeroed_vec("loss", &red.loss_shape(shape))?;
    let mut grad = crate::alloc::zeroed_vec("grad", shape)?;
    binary_cross_entropy_into(
        input,
        shape,
        target,
        opts,
        &mut out,
        Some(GradOut::new(&mut grad)),
    )?;
    Ok((Loss::new(out, red.loss_shape(shape)), grad))
}

/// The fused core of [`binary_cross_entropy`]: the loss into `loss_out` (1 element, or
/// the input's size for `none`) and, when given, `∂loss/∂input` times the upstream
/// gradient into `grad.grad`, overwriting or accumulating. Validates everything before
/// writing anything.
///
/// # Errors
/// As [`binary_cross_entropy`], plus [`crate::Error::OutputLength`] /
/// [`crate::Error::GradOutputShape`] for buffers of the wrong size.
///
/// ```
/// use xent::{binary_cross_entropy_into, BinaryCrossEntropyOptions, GradOut, Reduction};
/// let opts = BinaryCrossEntropyOptions::default().reduction(Reduction::None);
/// let (mut loss, mut grad) = ([0.0f64; 2], [0.0f64; 2]);
/// binary_cross_entropy_into(&[0.5, 1.0], &[2], &[0.0, 1.0], &opts, &mut loss,
///     Some(GradOut::new(&mut grad).grad_output(&[2.0, 1.0])))?;
/// assert_eq!(loss, [std::f64::consts::LN_2, 0.0]);
/// assert_eq!(grad, [4.0, 0.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn binary_cross_entropy_into<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &BinaryCrossEntropyOptions<'_, T>,
    loss_out: &mut [T],
    grad: Option<GradOut<'_, T>>,
) -> Result<()> {
    let numel = check_shape(shape, input.len())?;
    check_target_len(shape, target.len(), numel)?;
    check_unit_interval("input", input, shape)?;
    check_unit_interval("target", target, shape)?;
    let wb = match opts.weight {
        Some(w) => Some((w, Broadcast::resolve("weight", w.len(), shape, numel)?)),
        None => None,
    };
    let red = reduce_of(opts.reduction, numel);
    check_len("loss_out", loss_out.len(), red.loss_len(numel))?;
    if let Some(g) = &grad {
        check_grad_out(
            "grad",
            g,
            numel,
            &red.loss_shape(shape),
            red.loss_len(numel),
        )?;
    }
    Pointwise {
        op: PointOp::Bce,
        a: input,
        b: target,
        w: wb,
        pw: None,
        red,
    }
    .run(loss_out, grad_parts(grad), (None, None, false));
    Ok(())
}

/// Binary cross-entropy of logits `input` against `target` (both of shape `shape`),
/// as PyTorch's `F.binary_cross_entropy_with_logits`.
///
/// `l_i = w_i·[(1 − y_i)·x_i − (1 + (pw_c − 1)·y_i)·log σ(x_i)]` with the stable
/// `log σ(x) = min(x, 0) − log1p(e^{−|x|})` and `c` the element's last-dim position;
/// finite for every finite logit (±1e4 included). Targets are not range-checked (soft
/// labels), as in PyTorch. `mean` divides by the number of elements.
///
/// # Errors
/// [`crate::Error::BadShape`], [`crate::Error::TargetShape`], and
/// [`crate::Error::BroadcastShape`] for a `weight` or `pos_weight` that does not
/// broadcast.
///
/// ```
/// use xent::{binary_cross_entropy_with_logits, BinaryCrossEntropyWithLogitsOptions};
/// let loss = binary_cross_entropy_with_logits(&[-1e4f32, 0.0], &[2], &[1.0, 0.0],
///     &BinaryCrossEntropyWithLogitsOptions::default())?;
/// assert!((loss.item().unwrap() - (1e4 + std::f32::consts::LN_2) / 2.0).abs() < 1e-3);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &BinaryCrossEntropyWithLogitsOptions<'_, T>,
) -> Result<Loss<T>> {
    let numel = check_shape(shape, input.len())?;
    let red = reduce_of(opts.reduction, numel);
    let mut out = crate::alloc::zeroed_vec("loss", &red.loss_shape(shape))?;
    binary_cross_entropy_with_logits_into(input, shape, target, opts, &mut out, None)?;
    Ok(Loss::new(out, red.loss_shape(shape)))
}

/// [`binary_cross_entropy_with_logits`] and its gradient w.r.t. `input`:
/// `s_i·w_i·[(pw_c·y_i + 1 − y_i)·σ(x_i) − pw_c·y_i]`, `s_i = 1/numel` for mean.
///
/// # Errors
/// As [`binary_cross_entropy_with_logits`].
///
/// ```
/// use xent::{binary_cross_entropy_with_logits_with_grad as bce, BinaryCrossEntropyWithLogitsOptions};
/// let pw = [3.0f64];
/// let opts = BinaryCrossEntropyWithLogitsOptions::default().pos_weight(&pw);
/// let (_, grad) = bce(&[0.0], &[1], &[1.0], &opts)?;
/// assert_eq!(grad, [-1.5]); // 3·½ − 3
/// # Ok::<(), xent::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits_with_grad<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &BinaryCrossEntropyWithLogitsOptions<'_, T>,
) -> Result<(Loss<T>, Vec<T>)> {
    let numel = check_shape(shape, input.len())?;
    let red = reduce_of(opts.reduction, numel);
    let mut out = crate::alloc::zeroed_vec("loss", &red.loss_shape(shape))?;
    let mut grad = crate::alloc::zeroed_vec("grad", shape)?;
    binary_cross_entropy_with_logits_into(
        input,
        shape,
        target,
        opts,
        &mut out,
        Some(GradOut::new(&mut grad)),
    )?;
    Ok((Loss::new(out, red.loss_shape(shape)), grad))
}

/// The fused core of [`binary_cross_entropy_with_logits`]: loss into `loss_out`,
/// gradient times upstream gradient into `grad.grad` (overwrite or accumulate).
/// Validates everything before writing anything.
///
/// # Errors
/// As [`binary_cross_entropy_with_logits`], plus [`crate::Error::OutputLength`] /
/// [`crate::Error::GradOutputShape`] for buffers of the wrong size.
///
/// ```
/// use xent::{binary_cross_entropy_with_logits_into, BinaryCrossEntropyWithLogitsOptions,
///     GradMode, GradOut};
/// let opts = BinaryCrossEntropyWithLogitsOptions::default();
/// let (mut loss, mut grad) = ([0.0f32], [1.0f32; 2]);
/// binary_cross_entropy_with_logits_into(&[0.0, 0.0], &[2], &[1.0, 0.0], &opts, &mut loss,
///     Some(GradOut::new(&mut grad).mode(GradMode::Accumulate)))?;
/// assert_eq!(grad, [0.75, 1.25]); // 1 + (½ − 1)/2, 1 + ½/2
/// # Ok::<(), xent::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits_into<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &BinaryCrossEntropyWithLogitsOptions<'_, T>,
    loss_out: &mut [T],
    grad: Option<GradOut<'_, T>>,
) -> Result<()> {
    let numel = check_shape(shape, input.len())?;
    check_target_len(shape, target.len(), numel)?;
    let wb = match opts.weight {
        Some(w) => Some((w, Broadcast::resolve("weight", w.len(), shape, numel)?)),
        None => None,
    };
    let pwb = match opts.pos_weight {
        Some(pw) => Some((
            pw,
            Broadcast::resolve_per_class("pos_weight", pw.len(), shape)?,
        )),
        None => None,
    };
    let red = reduce_of(opts.reduction, numel);
    check_len("loss_out", loss_out.len(), red.loss_len(numel))?;
    if let Some(g) = &grad {
        check_grad_out(
            "grad",
            g,
            numel,
            &red.loss_shape(shape),
            red.loss_len(numel),
        )?;
    }
    Pointwise {
        op: PointOp::BceLogits,
        a: input,
        b: target,
        w: wb,
        pw: pwb,
        red,
    }
    .run(loss_out, grad_parts(grad), (None, None, false));
    Ok(())
}
