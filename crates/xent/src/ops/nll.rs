//! `nll_loss` on log-probabilities.

use super::cross_entropy::{finish, row_at, zero_row};
use super::{
    check_grad, check_indices, check_len, check_weight, loss_len, loss_shape, row_scale,
    target_class, GradOut, Loss,
};
use crate::error::Result;
use crate::float::Float;
use crate::kernels::scalar::put;
use crate::layout::Layout;
use crate::options::{GradMode, NllLossOptions, Reduction};
use crate::reduce::CompensatedSum;
use crate::targets::ClassIndices;

/// Negative log-likelihood of log-probabilities `input` (shape `shape`, classes on
/// dim 1) at class indices `target`, as PyTorch's `F.nll_loss`.
///
/// `l_n = −w_{y_n}·input[n, y_n]` (0 for ignored rows); `mean` divides the sum by
/// `D = Σ_{n∈M} w_{y_n}`, which is NaN when `D = 0` (every row ignored, or no rows).
///
/// # Errors
/// Shape errors, a target out of `[0, C)`, a weight of the wrong length: see [`crate::Error`].
///
/// ```
/// use xent::{log_softmax, nll_loss, NllLossOptions};
/// let x = [1.0f64, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
/// let logp = log_softmax(&x, &[3, 3])?;
/// let loss = nll_loss(&logp, &[3, 3], &[2i64, 1, 0][..], &NllLossOptions::default())?;
/// assert!((loss.item().unwrap() - 1.40760596444).abs() < 1e-10);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn nll_loss<'t, T: Float>(
    input: &[T],
    shape: &[usize],
    target: impl Into<ClassIndices<'t>>,
    opts: &NllLossOptions<'_, T>,
) -> Result<Loss<T>> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = vec![T::ZERO; loss_len(&layout, opts.reduction)];
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
pub fn nll_loss_with_grad<'t, T: Float>(
    input: &[T],
    shape: &[usize],
    target: impl Into<ClassIndices<'t>>,
    opts: &NllLossOptions<'_, T>,
) -> Result<(Loss<T>, Vec<T>)> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = vec![T::ZERO; loss_len(&layout, opts.reduction)];
    let mut grad = vec![T::ZERO; input.len()];
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
/// row for `none`) and, when given, the gradient into `grad.grad`. Validates
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
pub fn nll_loss_into<'t, T: Float>(
    input: &[T],
    shape: &[usize],
    target: impl Into<ClassIndices<'t>>,
    opts: &NllLossOptions<'_, T>,
    loss_out: &mut [T],
    grad: Option<GradOut<'_, T>>,
) -> Result<()> {
    let layout = Layout::new(shape, input.len())?;
    let target = target.into();
    check_weight(opts.weight, &layout)?;
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
    let w_of = |y: usize| opts.weight.map_or(T::ONE, |w| w[y]);
    let mut denom = CompensatedSum::default();
    for r in 0..layout.rows() {
        if let Some(y) = target_class(&target, r, opts.ignore_index) {
            denom.add(w_of(y).to_f64());
        }
    }
    let denom = if reduction == Reduction::Mean {
        denom.value()
    } else {
        1.0
    };
    let (grad_output, mut grad_buf) = match grad {
        Some(g) => (
            g.grad_output,
            Some((g.grad, g.mode == GradMode::Accumulate)),
        ),
        None => (None, None),
    };
    let mut total = CompensatedSum::default();
    for r in 0..layout.rows() {
        let row = row_at(&layout, r);
        if let Some((g, false)) = grad_buf.as_mut() {
            zero_row(g, row);
        }
        let l = match target_class(&target, r, opts.ignore_index) {
            Some(y) => {
                let w_y = w_of(y);
                if let Some((g, acc)) = grad_buf.as_mut() {
                    let s: T = row_scale(grad_output, reduction, r, denom);
                    put(g, row.at(y), -(w_y * s), *acc);
                }
                -(w_y * input[row.at(y)])
            }
            None => T::ZERO,
        };
        if reduction == Reduction::None {
            loss_out[r] = l;
        }
        total.add(l.to_f64());
    }
    finish(loss_out, reduction, total, denom);
    Ok(())
}
