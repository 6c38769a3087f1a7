//! Finite-difference gradient checks, as `torch.autograd.gradcheck`.

use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::ops::cross_entropy::cross_entropy_into;
use crate::ops::nll::nll_loss_into;
use crate::ops::{loss_len, GradOut};
use crate::options::{CrossEntropyOptions, NllLossOptions, Reduction};
use crate::targets::Targets;
use crate::Layout;

/// The outcome of a gradient check: how far the analytic gradient is from central
/// differences `(f(x + h·e_i) − f(x − h·e_i)) / 2h` computed in `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradcheckReport {
    /// `max_i |analytic_i − numeric_i|`.
    pub max_abs_error: f64,
    /// `max_abs_error / max(max_i |analytic_i|, 1e-300)`: the error relative to the
    /// gradient's scale.
    pub max_rel_error: f64,
    /// The element with the largest absolute error.
    pub worst_index: usize,
    /// `max_i |analytic_i|`.
    pub grad_scale: f64,
}

impl GradcheckReport {
    /// `true` when `max_abs_error ≤ atol + rtol·grad_scale`.
    pub fn passes(&self, atol: f64, rtol: f64) -> bool {
        self.max_abs_error <= atol + rtol * self.grad_scale
    }
}

/// Checks any scalar function's analytic gradient against central differences.
///
/// `f(x, grad)` returns the loss at `x` and, when `grad` is `Some`, writes the
/// analytic gradient there. `step` is the difference step `h` (1e-6 suits losses of
/// order 1 in `f64`: truncation `O(h²)`, rounding `O(ε/h)`).
///
/// # Errors
/// What `f` returns; [`Error::InvalidArgument`] for a step that is not positive.
///
/// ```
/// use xent::gradcheck;
/// // f(x) = Σ x², ∇f = 2x
/// let report = gradcheck(&[1.0, -2.0], 1e-6, |x, g| {
///     if let Some(g) = g { for (gi, xi) in g.iter_mut().zip(x) { *gi = 2.0 * xi; } }
///     Ok(x.iter().map(|v| v * v).sum())
/// })?;
/// assert!(report.max_abs_error < 1e-8);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn gradcheck<F>(x: &[f64], step: f64, mut f: F) -> Result<GradcheckReport>
where
    F: FnMut(&[f64], Option<&mut [f64]>) -> Result<f64>,
{
    if !(step > 0.0 && step.is_finite()) {
        return Err(Error::InvalidArgument {
            name: "step",
            value: step.to_string(),
            expected: "a positive finite number",
        });
    }
    let mut analytic = vec![0.0; x.len()];
    f(x, Some(&mut analytic))?;
    let mut probe = x.to_vec();
    let mut report = GradcheckReport {
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        worst_index: 0,
        grad_scale: analytic.iter().fold(0.0f64, |m, g| m.max(g.abs())),
    };
    for i in 0..x.len() {
        probe[i] = x[i] + step;
        let plus = f(&probe, None)?;
        probe[i] = x[i] - step;
        let minus = f(&probe, None)?;
        probe[i] = x[i];
        let err = ((plus - minus) / (2.0 * step) - analytic[i]).abs();
        // A NaN error must fail the check, so it always becomes the reported maximum.
        if err.is_nan() || err > report.max_abs_error {
            report.max_abs_error = err;
            report.worst_index = i;
        }
    }
    report.max_rel_error = report.max_abs_error / report.grad_scale.max(1e-300);
    Ok(report)
}

/// Fixed, distinct upstream gradients for a `none` loss, so that a check of the
/// weighted sum `Σ g_n·l_n` also catches per-row scale mistakes.
fn upstream(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.5 + (i % 7) as f64 * 0.25).collect()
}

fn reduce_none(values: &[f64], go: &[f64]) -> f64 {
    values.iter().zip(go).map(|(l, g)| l * g).sum()
}

/// [`gradcheck`] of [`cross_entropy`](crate::cross_entropy)'s fused gradient in `f64`
/// at `input`; a `none` loss is checked through `Σ g_n·l_n` with fixed distinct `g_n`.
/// Probability targets are held fixed.
///
/// # Errors
/// The loss's own errors (bad shape, target out of bounds, …).
///
/// ```
/// use xent::{gradcheck_cross_entropy, CrossEntropyOptions};
/// let opts = CrossEntropyOptions::default().label_smoothing(0.1);
/// let r = gradcheck_cross_entropy(&[0.3, -1.0, 2.0, 0.5, 0.1, 0.0], &[2, 3], &[2i64, 0][..], &opts)?;
/// assert!(r.passes(1e-8, 1e-6));
/// # Ok::<(), xent::Error>(())
/// ```
pub fn gradcheck_cross_entropy<'t>(
    input: &[f64],
    shape: &[usize],
    target: impl Into<Targets<'t, f64>>,
    opts: &CrossEntropyOptions<'_, f64>,
) -> Result<GradcheckReport> {
    let target = target.into();
    let layout = Layout::new(shape, input.len())?;
    let go = upstream(layout.rows());
    let mut loss = vec![0.0; loss_len(&layout, opts.reduction)];
    gradcheck(input, 1e-6, |x, g| {
        let grad = g.map(|g| match opts.reduction {
            Reduction::None => GradOut::new(g).grad_output(&go),
            _ => GradOut::new(g),
        });
        cross_entropy_into(x, shape, target, opts, &mut loss, grad)?;
        Ok(reduce_none(
            &loss,
            if opts.reduction == Reduction::None {
                &go
            } else {
                &[1.0]
            },
        ))
    })
}

/// [`gradcheck`] of [`nll_loss`](crate::nll_loss)'s gradient in `f64` at `input`
/// (log-probabilities; any values are fine since the loss is linear in them).
///
/// # Errors
/// The loss's own errors.
///
/// ```
/// use xent::{gradcheck_nll_loss, NllLossOptions};
/// let r = gradcheck_nll_loss(&[-0.1, -2.3, -1.2, -0.4], &[2, 2], &[0u8, 1][..],
///     &NllLossOptions::default())?;
/// assert!(r.passes(1e-8, 1e-6));
/// # Ok::<(), xent::Error>(())
/// ```
pub fn gradcheck_nll_loss<'t>(
    input: &[f64],
    shape: &[usize],
    target: impl Into<ClassIndices<'t>>,
    opts: &NllLossOptions<'_, f64>,
) -> Result<GradcheckReport> {
    let target = target.into();
    let layout = Layout::new(shape, input.len())?;
    let go = upstream(layout.rows());
    let mut loss = vec![0.0; loss_len(&layout, opts.reduction)];
    gradcheck(input, 1e-6, |x, g| {
        let grad = g.map(|g| match opts.reduction {
            Reduction::None => GradOut::new(g).grad_output(&go),
            _ => GradOut::new(g),
        });
        nll_loss_into(x, shape, target, opts, &mut loss, grad)?;
        Ok(reduce_none(
            &loss,
            if opts.reduction == Reduction::None {
                &go
            } else {
                &[1.0]
            },
        ))
    })
}
