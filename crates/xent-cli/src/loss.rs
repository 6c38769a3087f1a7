//! `xent loss …`: a loss and its gradients on `.npy` files.
//!
//! Order of work: check the output paths, read every input, check it, compute the
//! loss and the gradients, encode the outputs in memory, and only then write the
//! files, as one transaction (`outputs`): on any failure every file is as it was.
//! This module runs a [`LossCommand`] and holds the class-dim losses cross-entropy
//! and nll; `family` computes the elementwise and divergence losses, `linear` the
//! linear cross-entropy, `report` the shared outputs, `operands` the shared reading.

use xent::{cross_entropy_stats_into, nll_loss_into, Layout, Reduction, Targets};

use crate::args::{ClassArgs, CrossEntropyArgs, FileArgs, LossCommand};
use crate::npy::{self, Array, Data, Elem};
use crate::operands::{
    check_outputs, classify, grad_out, not_float, reduction_name, upstream, vector, TargetKind,
};
use crate::report::{deliver, Computed, RowBuffers};
use crate::{family, linear, Failure};

/// Runs the command and returns what to print.
///
/// # Errors
/// A [`Failure`] for unreadable files, bad dtypes or shapes, bad options and every
/// library [`xent::Error`]; no file is written then.
pub fn run(cmd: &LossCommand) -> Result<String, Failure> {
    let files = match cmd {
        LossCommand::LinearCrossEntropy(a) => return linear::run(a),
        other => other.files().expect("every other loss takes FileArgs"),
    };
    let grad_out_target = match cmd {
        LossCommand::KlDiv {
            grad_out_target, ..
        }
        | LossCommand::Js {
            grad_out_target, ..
        } => grad_out_target.as_deref(),
        _ => None,
    };
    let (weight, pos_weight) = match cmd {
        LossCommand::CrossEntropy(a) => (a.class.weight.as_deref(), None),
        LossCommand::Nll(a) => (a.weight.as_deref(), None),
        LossCommand::Bce { weight, .. } => (weight.as_deref(), None),
        LossCommand::BceWithLogits {
            weight, pos_weight, ..
        } => (weight.as_deref(), pos_weight.as_deref()),
        _ => (None, None),
    };
    let [lse, entropy, argmax] = match cmd {
        LossCommand::CrossEntropy(a) => a.row_outputs.outputs(),
        _ => [
            ("--lse-out", None),
            ("--entropy-out", None),
            ("--argmax-out", None),
        ],
    };
    check_outputs(
        &[
            ("--out", files.out.as_deref()),
            ("--grad-out", files.grad_out.as_deref()),
            ("--grad-out-target", grad_out_target),
            lse,
            entropy,
            argmax,
        ],
        &[
            ("--input", Some(&files.input)),
            ("--target", Some(&files.target)),
            ("--grad-output", files.grad_output.as_deref()),
            ("--weight", weight),
            ("--pos-weight", pos_weight),
        ],
    )?;
    let input = npy::read(&files.input)?;
    let target = npy::read(&files.target)?;
    let Array { shape, data } = input;
    let computed = match data {
        Data::F32(x) => compute_typed(cmd, files, &x, &shape, &target)?.encode()?,
        Data::F64(x) => compute_typed(cmd, files, &x, &shape, &target)?.encode()?,
        other => return Err(not_float("input", &files.input, &other)),
    };
    deliver(computed, files.json)
}

/// Checks, computes and collects the outputs, in the input's dtype.
fn compute_typed<T: Elem>(
    cmd: &LossCommand,
    files: &FileArgs,
    x: &[T],
    x_shape: &[usize],
    target: &Array,
) -> Result<Computed<T>, Failure> {
    let grad_output = files.grad_output.as_deref().map(npy::read).transpose()?;
    match cmd {
        LossCommand::CrossEntropy(a) => {
            class_loss(&a.class, Some(a), x, x_shape, target, grad_output)
        }
        LossCommand::Nll(a) => class_loss(a, None, x, x_shape, target, grad_output),
        _ => family::compute(cmd, files, x, x_shape, target, grad_output),
    }
}

/// cross-entropy (`ce` given) or nll on checked inputs.
fn class_loss<T: Elem>(
    class: &ClassArgs,
    ce: Option<&CrossEntropyArgs>,
    x: &[T],
    x_shape: &[usize],
    target: &Array,
    grad_output: Option<Array>,
) -> Result<Computed<T>, Failure> {
    let layout = Layout::new(x_shape, x.len())?;
    let mut settings = class.rows.settings(ce.map(|a| &a.logit));
    if let Some(p) = &class.weight {
        settings.weight = Some(vector::<f64>(&npy::read(p)?, "weight")?);
    }
    let none = settings.reduction == Reduction::None;
    let loss_shape = if none { layout.row_shape() } else { Vec::new() };
    let weight = settings.weight_as::<T>();
    let grad_output = grad_output
        .map(|go| upstream::<T>(&go, &loss_shape, none, reduction_name(settings.reduction)))
        .transpose()?;
    let nll = ce.is_none();
    let target = classify::<T>(nll, target, &layout)?;
    let mut loss = vec![T::ZERO; loss_shape.iter().product()];
    // On huge pages when large, faulted in by the kernel's threads (xent::alloc).
    let mut grad = class
        .files
        .grad_out
        .as_ref()
        .map(|_| xent::alloc::zeroed_vec("grad", x_shape))
        .transpose()?;
    let g = grad
        .as_deref_mut()
        .map(|g| grad_out(g, grad_output.as_deref()));
    let mut rows = ce.map(|a| RowBuffers::<T>::new(&a.row_outputs, layout.rows()));
    let z_loss = if nll {
        // `classify` gives nll class indices only.
        let TargetKind::Indices(target) = target else {
            return Err(Failure::new("nll_loss takes class-index targets"));
        };
        let opts = settings.nll_options(weight.as_deref())?;
        nll_loss_into(x, x_shape, target, &opts, &mut loss, g)?;
        None
    } else {
        let opts = settings.options(weight.as_deref());
        let target: Targets<'_, T> = match &target {
            TargetKind::Indices(t) => Targets::Indices(*t),
            TargetKind::Probabilities(p) => Targets::Probabilities(p),
        };
        let row_outputs = rows.as_mut().map(|r| r.outputs()).unwrap_or_default();
        cross_entropy_stats_into(x, x_shape, target, &opts, &mut loss, g, row_outputs)?
    };
    let computed = Computed::new(loss, loss_shape, z_loss, class.files.out.as_deref()).file(
        class.files.grad_out.as_deref(),
        x_shape,
        grad,
    );
    Ok(match (rows, ce) {
        (Some(rows), Some(a)) => rows.into_files(computed, &a.row_outputs, &layout.row_shape()),
        _ => computed,
    })
}
