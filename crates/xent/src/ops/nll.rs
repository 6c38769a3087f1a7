//! `nll_loss` on log-probabilities.

use super::cross_entropy::Denominators;
use super::{
    check_grad, check_indices, check_len, check_weight, loss_buf, loss_len, loss_shape,
    scalar_upstream, GradBuf, GradOut, Loss,
};
use crate::dtype::Element;
use crate::dtype::Float;
use crate::error::Result;
use crate::indices::ClassIndices;
use crate::layout::Layout;
use crate::options::{check_denominator, GradMode, NllLossOptions, Reduction};
use crate::reduce::CompensatedSum;

/// Negative log-likelihood of log-probabilities `input` (shape `shape`, classes on
/// dim 1) at class indices `target`, as PyTorch's `F.nll_loss`.
///
/// `l_n = −w_{y_n}·input[n, y_n]` (0 for ignored rows); `mean` divides the sum by
/// `D = Σ_{n∈M} w_{y_n}`, which is NaN when `D = 0` (every row ignored, or no rows),
/// or by the given [`denominator`](NllLossOptions::denominator) (then 0 when every
/// row is ignored).
///
/// # Errors
/// Shape errors, a target out of `[0, C)`, a weight of the wrong length, a
/// denominator that is not finite and > 0 or is given with a reduction other than
/// `mean`: see [`crate::Error`].
///
/// ```
/// use xent::{log_softmax, nll_loss, NllLossOptions};
/// let x = [1.0f64, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
/// let logp = log_softmax(&x, &[3, 3])?;
/// let loss = nll_loss(&logp, &[3, 3], &[2i64, 1, 0][..], &NllLossOptions::default())?;
/// assert!((loss.item().unwrap() - 1.40760596444).abs() < 1e-10);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn nll_loss<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<ClassIndices<'t>>,
    opts: &NllLossOptions<'_, T::Acc>,
) -> Result<Loss<T::Acc>> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = loss_buf(&layout, opts.reduction)?;
    nll_loss_into(input, shape, target, opts, &mut out, None)?;
    Ok(Loss::new(out, loss_shape(&layout, opts.reduction)))
}

/// [`nll_loss`] and its gradient (upstream gradient 1, or all 1 for `none`):
/// `−w_{y_n}·s_n` at `(n, y_n)`, 0 elsewhere, `s_n = 1/D` for mean.
///
/// # Errors
/// As [`nll_loss`].
///
/// ```
/// use xent::{nll_loss_with_grad, NllLossOptions};
/// let (loss, grad) = nll_loss_with_grad(&[-0.5f32, -1.0], &[2], &[1u8][..],
///     &NllLossOptions::default())?;
/// assert_eq!((loss.item(), grad), (Some(1.0), vec![0.0, -1.0]));
/// # Ok::<(), xent::Error>(())
/// ```
pub fn nll_loss_with_grad<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<ClassIndices<'t>>,
    opts: &NllLossOptions<'_, T::Acc>,
) -> Result<(Loss<T::Acc>, Vec<T>)> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = loss_buf(&layout, opts.reduction)?;
    let mut grad = crate::alloc::zeroed_vec::<T>("grad", shape)?;
    nll_loss_into(
        input,
        shape,
        target,
        opts,
        &mut out,
        Some(GradOut::new(&mut grad)),
    )?;
    Ok((Loss::new(out, loss_shape(&layout, opts.reduction)), grad))
}

/// The fused core of [`nll_loss`]: the loss into `loss_out` (1 element, or one per
/// row for `none`) and, when given, the gradient into the gradient buffer. Validates
/// everything before writing anything.
///
/// # Errors
/// As [`nll_loss`], plus buffer-size errors.
///
/// ```
/// use xent::{nll_loss_into, NllLossOptions, Reduction, GradOut};
/// let logp = [-0.1f64, -2.0, -3.0, -0.2];
/// let opts = NllLossOptions::default().reduction(Reduction::None);
/// let (mut loss, mut grad) = ([0.0; 2], [0.0; 4]);
/// nll_loss_into(&logp, &[2, 2], &[0i32, 1][..], &opts, &mut loss,
///     Some(GradOut::new(&mut grad).grad_output(&[1.0, 2.0])))?;
/// assert_eq!(loss, [0.1, 0.2]);
/// assert_eq!(grad, [-1.0, 0.0, 0.0, -2.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn nll_loss_into<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<ClassIndices<'t>>,
    opts: &NllLossOptions<'_, T::Acc>,
    loss_out: &mut [T::Acc],
    grad: Option<GradOut<'_, T>>,
) -> Result<()> {
    let layout = Layout::new(shape, input.len())?;
    let target = target.into();
    check_weight(opts.weight, &layout)?;
    check_denominator(opts.denominator, opts.reduction)?;
    check_indices(&target, &layout, opts.ignore_index)?;
    check_len(
        "loss_out",
        loss_out.len(),
        loss_len(&layout, opts.reduction),
    )?;
    if let Some(g) = &grad {
        check_grad(g, &layout, opts.reduction)?;
    }
    let reduction = opts.reduction;
    let w_of = |y: usize| opts.weight.map_or(T::Acc::ONE, |w| w[y]);
    let denom = match (reduction, opts.denominator) {
        (Reduction::Mean, Some(d)) => d,
        (Reduction::Mean, None) => {
            Denominators::of_indices(&target, layout.rows(), opts.ignore_index, opts.weight).loss
        }
        _ => 1.0,
    };
    let mut total = CompensatedSum::default();
    for r in 0..layout.rows() {
        let l = match target.class_at(r, opts.ignore_index) {
            Some(y) => -(w_of(y) * input[layout.row_offset(r) + y * layout.inner()].to_acc()),
            None => T::Acc::ZERO,
        };
        if reduction == Reduction::None {
            loss_out[r] = l;
        }
        total.add(l.to_f64());
    }
    match reduction {
        Reduction::None => {}
        Reduction::Sum => loss_out[0] = T::Acc::from_f64(total.value()),
        Reduction::Mean => loss_out[0] = T::Acc::from_f64(total.value() / denom),
    }
    if let Some(g) = grad {
        let upstream = scalar_upstream(g.grad_output, reduction);
        // The gradient at (n, y_n): −w_y·s_n; every other element is 0 (or unchanged).
        let value = |r: usize, y: usize| {
            let s = match (reduction, g.grad_output) {
                (Reduction::None, Some(go)) => go[r],
                (Reduction::None, None) => T::Acc::ONE,
                _ => T::Acc::from_f64(upstream / denom),
            };
            -(w_of(y) * s)
        };
        let accumulate = g.mode == GradMode::Accumulate;
        match g.grad {
            GradBuf::Same(buf) => write_nll_grad(
                buf,
                (T::to_acc, T::from_acc),
                &layout,
                &target,
                opts.ignore_index,
                accumulate,
                value,
            ),
            GradBuf::Acc(buf) => write_nll_grad(
                buf,
                (|v| v, |v| v),
                &layout,
                &target,
                opts.ignore_index,
                accumulate,
                value,
            ),
        }
    }
    Ok(())
}

/// Writes the nll gradient into a buffer of `G`, converting through `(to, from)`.
fn write_nll_grad<G: Copy, A: Float>(
    buf: &mut [G],
    (to, from): (impl Fn(G) -> A, impl Fn(A) -> G),
    layout: &Layout,
    target: &ClassIndices<'_>,
    ignore_index: i64,
    accumulate: bool,
    value: impl Fn(usize, usize) -> A,
) {
    if !accumulate {
        buf.fill(from(A::ZERO));
    }
    for r in 0..layout.rows() {
        if let Some(y) = target.class_at(r, ignore_index) {
            let i = layout.row_offset(r) + y * layout.inner();
            let v = value(r, y);
            buf[i] = from(if accumulate { to(buf[i]) + v } else { v });
        }
    }
}
