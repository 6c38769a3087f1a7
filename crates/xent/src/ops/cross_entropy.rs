//! `cross_entropy` on logits, with class-index or probability targets.

use super::{
    check_grad, check_indices, check_len, check_weight, loss_len, loss_shape, row_scale,
    target_class, GradOut, Loss,
};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::{scalar, RowAt};
use crate::layout::Layout;
use crate::options::{CrossEntropyOptions, GradMode, Reduction};
use crate::reduce::CompensatedSum;
use crate::targets::Targets;

/// Softmax cross-entropy of `input` (logits of shape `shape`) against `target`, as
/// PyTorch's `F.cross_entropy(input, target, weight, ignore_index=…,
/// reduction=…, label_smoothing=…)`.
///
/// With class indices `y` and `ℓ = log_softmax(x)`:
/// `l_n = (1−ε)·(−w_{y_n}·ℓ_{n,y_n}) + (ε/C)·(−Σ_c w_c·ℓ_{n,c})` (0 for ignored rows);
/// `mean` divides the sum by `D = Σ_{n∈M} w_{y_n}` (NaN when every row is ignored).
/// With probabilities `t`: `l_n = −Σ_c w_c·t'_{n,c}·ℓ_{n,c}`, `t' = (1−ε)·t + ε/C`, and
/// `mean` divides by the row count.
///
/// # Errors
/// Shape errors, a target out of `[0, C)` (naming it and its index), a weight of the
/// wrong length, `label_smoothing` outside `[0, 1]`, and probability targets with a
/// non-negative `ignore_index`: see [`Error`].
///
/// ```
/// use xent::{cross_entropy, CrossEntropyOptions};
/// let x = [1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
/// let loss = cross_entropy(&x, &[3, 3], &[2i64, 1, 0][..], &CrossEntropyOptions::default())?;
/// assert!((loss.item().unwrap() - 1.4076).abs() < 1e-4);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy<'t, T: Float>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<Loss<T>> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = vec![T::ZERO; loss_len(&layout, opts.reduction)];
    cross_entropy_into(input, shape, target, opts, &mut out, None)?;
    Ok(Loss::new(out, loss_shape(&layout, opts.reduction)))
}

/// [`cross_entropy`] and its gradient `∂loss/∂input` (upstream gradient 1, or all 1
/// for `none`), in a new buffer of the input's shape.
///
/// Gradient: `s_n·[(1−ε)·w_{y_n}·(p_{n,j} − δ_{j,y_n}) + (ε/C)·(W·p_{n,j} − w_j)]` for
/// class indices, `s_n·[p_{n,j}·Σ_c w_c·t'_{n,c} − w_j·t'_{n,j}]` for probabilities,
/// with `s_n = 1/D` for mean and 1 otherwise; 0 on ignored rows.
///
/// # Errors
/// As [`cross_entropy`].
///
/// ```
/// use xent::{cross_entropy_with_grad, CrossEntropyOptions};
/// let (loss, grad) = cross_entropy_with_grad(&[1.0f64, 2.0, 3.0], &[1, 3], &[0u8][..],
///     &CrossEntropyOptions::default())?;
/// assert!((loss.item().unwrap() - 2.40760596).abs() < 1e-8);
/// assert!((grad[0] - (0.09003057 - 1.0)).abs() < 1e-8);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_with_grad<'t, T: Float>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<(Loss<T>, Vec<T>)> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = vec![T::ZERO; loss_len(&layout, opts.reduction)];
    let mut grad = vec![T::ZERO; input.len()];
    cross_entropy_into(
        input,
        shape,
        target,
        opts,
        &mut out,
        Some(GradOut::new(&mut grad)),
    )?;
    Ok((Loss::new(out, loss_shape(&layout, opts.reduction)), grad))
}

/// The fused core of [`cross_entropy`]: writes the loss into `loss_out` (1 element for
/// `mean`/`sum`, one per row for `none`) and, when `grad` is given, `∂loss/∂input`
/// times its upstream gradient into `grad.grad`, overwriting or accumulating.
///
/// Everything is validated before anything is written: on error the buffers are
/// untouched.
///
/// # Errors
/// As [`cross_entropy`], plus [`Error::OutputLength`] / [`Error::GradOutputShape`]
/// for buffers of the wrong size.
///
/// ```
/// use xent::{cross_entropy_into, CrossEntropyOptions, GradMode, GradOut};
/// let x = [1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0];
/// let mut loss = [0.0f32];
/// let mut grad = [0.0f32; 6];
/// // Two micro-batches of one row each, accumulated into one gradient.
/// for (row, y) in [(0, 2u8), (1, 1u8)] {
///     let opts = CrossEntropyOptions::default();
///     let half = [0.5f32];
///     let g = GradOut::new(&mut grad[3 * row..3 * row + 3]).grad_output(&half)
///         .mode(GradMode::Accumulate);
///     cross_entropy_into(&x[3 * row..3 * row + 3], &[1, 3], &[y][..], &opts, &mut loss, Some(g))?;
/// }
/// assert!((grad[2] - (0.66524096 - 1.0) / 2.0).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_into<'t, T: Float>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T>,
    loss_out: &mut [T],
    grad: Option<GradOut<'_, T>>,
) -> Result<()> {
    let layout = Layout::new(shape, input.len())?;
    let target = target.into();
    check_options(opts, &layout, &target)?;
    check_len(
        "loss_out",
        loss_out.len(),
        loss_len(&layout, opts.reduction),
    )?;
    if let Some(g) = &grad {
        check_grad(g, &layout, opts.reduction)?;
    }
    let eps = T::from_f64(opts.label_smoothing);
    let weight_sum = opts
        .weight
        .map_or(T::from_f64(layout.classes() as f64), |w| {
            w.iter().fold(T::ZERO, |a, &b| a + b)
        });
    let reduction = opts.reduction;
    let (grad_output, mut grad_buf) = match grad {
        Some(g) => (
            g.grad_output,
            Some((g.grad, g.mode == GradMode::Accumulate)),
        ),
        None => (None, None),
    };
    let mut total = CompensatedSum::default();
    match target {
        Targets::Indices(idx) => {
            let denom = match reduction {
                Reduction::Mean => {
                    let mut d = CompensatedSum::default();
                    for r in 0..layout.rows() {
                        if let Some(y) = target_class(&idx, r, opts.ignore_index) {
                            d.add(opts.weight.map_or(1.0, |w| w[y].to_f64()));
                        }
                    }
                    d.value()
                }
                _ => 1.0,
            };
            for r in 0..layout.rows() {
                let row = row_at(&layout, r);
                let Some(y) = target_class(&idx, r, opts.ignore_index) else {
                    if let Some((g, false)) = grad_buf.as_mut() {
                        zero_row(g, row);
                    }
                    if reduction == Reduction::None {
                        loss_out[r] = T::ZERO;
                    }
                    continue;
                };
                let params = scalar::IndexRow {
                    target: y,
                    weight: opts.weight,
                    weight_sum,
                    eps,
                };
                let g = grad_buf
                    .as_mut()
                    .map(|(g, acc)| (&mut **g, row_scale(grad_output, reduction, r, denom), *acc));
                let l = scalar::cross_entropy_index_row(input, row, params, g);
                if reduction == Reduction::None {
                    loss_out[r] = l;
                }
                total.add(l.to_f64());
            }
            finish(loss_out, reduction, total, denom);
        }
        Targets::Probabilities(t) => {
            let denom = layout.rows() as f64;
            for r in 0..layout.rows() {
                let row = row_at(&layout, r);
                let g = grad_buf
                    .as_mut()
                    .map(|(g, acc)| (&mut **g, row_scale(grad_output, reduction, r, denom), *acc));
                let l = scalar::cross_entropy_prob_row(input, t, row, opts.weight, eps, g);
                if reduction == Reduction::None {
                    loss_out[r] = l;
                }
                total.add(l.to_f64());
            }
            finish(loss_out, reduction, total, denom);
        }
    }
    Ok(())
}

pub(crate) fn row_at(layout: &Layout, r: usize) -> RowAt {
    RowAt {
        off: layout.row_offset(r),
        stride: layout.inner(),
        len: layout.classes(),
    }
}

pub(crate) fn zero_row<T: Float>(g: &mut [T], row: RowAt) {
    for c in 0..row.len {
        g[row.at(c)] = T::ZERO;
    }
}

/// Writes the reduced loss (`mean` divides by `denom`; `0/0` is NaN as in PyTorch).
pub(crate) fn finish<T: Float>(
    loss_out: &mut [T],
    reduction: Reduction,
    total: CompensatedSum,
    denom: f64,
) {
    match reduction {
        Reduction::None => {}
        Reduction::Sum => loss_out[0] = T::from_f64(total.value()),
        Reduction::Mean => loss_out[0] = T::from_f64(total.value() / denom),
    }
}

fn check_options<T: Float>(
    opts: &CrossEntropyOptions<'_, T>,
    layout: &Layout,
    target: &Targets<'_, T>,
) -> Result<()> {
    let eps = opts.label_smoothing;
    // PyTorch treats a negative value as 0; we reject it with PyTorch's message.
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::LabelSmoothing { value: eps });
    }
    check_weight(opts.weight, layout)?;
    match target {
        Targets::Indices(idx) => check_indices(idx, layout, opts.ignore_index),
        Targets::Probabilities(t) => {
            if opts.ignore_index >= 0 {
                return Err(Error::IgnoreIndexWithProbabilities {
                    ignore_index: opts.ignore_index,
                });
            }
            if t.len() != input_len(layout) {
                return Err(Error::TargetShape {
                    expected: layout.shape().to_vec(),
                    len: t.len(),
                });
            }
            Ok(())
        }
    }
}

fn input_len(layout: &Layout) -> usize {
    layout.shape().iter().product()
}
