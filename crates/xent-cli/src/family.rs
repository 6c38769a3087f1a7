//! `xent loss bce|bce-with-logits|kl-div|js`: the elementwise and divergence losses on
//! `.npy` files, with the file contract of [`crate::loss`] (everything computed before
//! the first file is written).

use std::path::Path;

use xent::{
    binary_cross_entropy_into, binary_cross_entropy_with_logits_into, js_div_into,
    js_div_with_logits_into, kl_div_into, BinaryCrossEntropyOptions,
    BinaryCrossEntropyWithLogitsOptions, JsDivOptions, KlDivOptions, KlReduction, Layout,
    Reduction,
};

use crate::args::{FileArgs, LossCommand};
use crate::npy::{self, Array, Data, Elem};
use crate::operands::{grad_out, reduction_name, upstream, vector};
use crate::report::Computed;
use crate::Failure;

/// Runs one of the family's losses on checked inputs, in the input's dtype `T`.
///
/// # Errors
/// Bad target dtype or shape, weights that do not broadcast, a bad upstream gradient,
/// and every library error.
pub(crate) fn compute<T: Elem>(
    cmd: &LossCommand,
    req: &FileArgs,
    x: &[T],
    shape: &[usize],
    target: &Array,
    grad_output: Option<Array>,
) -> Result<Computed<T>, Failure> {
    let t = same_shape_target::<T>(target, shape)?;
    match cmd {
        LossCommand::Bce {
            weight, reduction, ..
        } => binary(
            req,
            x,
            shape,
            &t,
            weight.as_deref(),
            None,
            *reduction,
            grad_output,
        ),
        LossCommand::BceWithLogits {
            weight,
            pos_weight,
            reduction,
            ..
        } => binary(
            req,
            x,
            shape,
            &t,
            weight.as_deref(),
            Some(pos_weight.as_deref()),
            *reduction,
            grad_output,
        ),
        LossCommand::KlDiv {
            log_target,
            reduction,
            grad_out_target,
            ..
        } => {
            let (none, name) = match reduction {
                KlReduction::None => (true, "none"),
                KlReduction::Mean => (false, "mean"),
                KlReduction::Sum => (false, "sum"),
                KlReduction::BatchMean => (false, "batchmean"),
            };
            let loss_shape = if none { shape.to_vec() } else { Vec::new() };
            let go = grad_output
                .map(|go| upstream::<T>(&go, &loss_shape, none, name))
                .transpose()?;
            let mut loss = vec![T::ZERO; loss_shape.iter().product()];
            let mut gi = req
                .grad_out
                .as_ref()
                .map(|_| xent::alloc::zeroed_vec("grad", shape))
                .transpose()?;
            let mut gt = grad_out_target
                .as_ref()
                .map(|_| xent::alloc::zeroed_vec("grad target", shape))
                .transpose()?;
            let opts = KlDivOptions::default()
                .reduction(*reduction)
                .log_target(*log_target);
            kl_div_into(
                x,
                shape,
                &t,
                &opts,
                &mut loss,
                gi.as_deref_mut().map(|g| grad_out(g, go.as_deref())),
                gt.as_deref_mut().map(|g| grad_out(g, go.as_deref())),
            )?;
            Ok(Computed::new(loss, loss_shape, None, req.out.as_deref())
                .file(req.grad_out.as_deref(), shape, gi)
                .file(grad_out_target.as_deref(), shape, gt))
        }
        LossCommand::Js {
            logits,
            reduction,
            grad_out_target,
            ..
        } => {
            let layout = Layout::new(shape, x.len())?;
            let none = *reduction == Reduction::None;
            let loss_shape = if none { layout.row_shape() } else { Vec::new() };
            let go = grad_output
                .map(|go| upstream::<T>(&go, &loss_shape, none, reduction_name(*reduction)))
                .transpose()?;
            let mut loss = vec![T::ZERO; loss_shape.iter().product()];
            let mut gp = req
                .grad_out
                .as_ref()
                .map(|_| xent::alloc::zeroed_vec("grad", shape))
                .transpose()?;
            let mut gq = grad_out_target
                .as_ref()
                .map(|_| xent::alloc::zeroed_vec("grad target", shape))
                .transpose()?;
            let opts = JsDivOptions::default().reduction(*reduction);
            let run = if *logits {
                js_div_with_logits_into
            } else {
                js_div_into
            };
            run(
                x,
                shape,
                &t,
                &opts,
                &mut loss,
                gp.as_deref_mut().map(|g| grad_out(g, go.as_deref())),
                gq.as_deref_mut().map(|g| grad_out(g, go.as_deref())),
            )?;
            Ok(Computed::new(loss, loss_shape, None, req.out.as_deref())
                .file(req.grad_out.as_deref(), shape, gp)
                .file(grad_out_target.as_deref(), shape, gq))
        }
        LossCommand::CrossEntropy(_) | LossCommand::Nll(_) | LossCommand::LinearCrossEntropy(_) => {
            Err(Failure::new("not an elementwise or divergence loss"))
        }
    }
}

/// The target (or second argument) of an elementwise loss: a float array of the
/// input's shape, converted to `T`.
fn same_shape_target<T: Elem>(target: &Array, shape: &[usize]) -> Result<Vec<T>, Failure> {
    if !matches!(target.data, Data::F32(_) | Data::F64(_)) {
        return Err(Failure::new(format!(
            "target has dtype {}: expected float32 or float64 values of the input's shape",
            target.data.dtype()
        )));
    }
    if target.shape != shape {
        return Err(Failure::new(format!(
            "target of shape {:?} does not match the input's shape {shape:?}",
            target.shape
        )));
    }
    Ok(target.data.to_float())
}

/// An element weight: the input's shape, a vector (its last dim, or one element), or
/// a 0-d array; the library checks the vector's length.
fn element_weight<T: Elem>(path: &Path, shape: &[usize]) -> Result<Vec<T>, Failure> {
    let a = npy::read(path)?;
    if a.shape != shape && a.shape.len() > 1 {
        return Err(Failure::new(format!(
            "weight of shape {:?} does not broadcast to the input's shape {shape:?} \
             (expected the input's shape, its last dim, or one element)",
            a.shape
        )));
    }
    Ok(a.data.to_float())
}

/// bce (`pos_weight` is `None`) or bce-with-logits (`Some`, holding the optional
/// `--pos-weight` path).
#[allow(clippy::too_many_arguments)]
fn binary<T: Elem>(
    req: &FileArgs,
    x: &[T],
    shape: &[usize],
    t: &[T],
    weight: Option<&Path>,
    pos_weight: Option<Option<&Path>>,
    reduction: Reduction,
    grad_output: Option<Array>,
) -> Result<Computed<T>, Failure> {
    let none = reduction == Reduction::None;
    let loss_shape = if none { shape.to_vec() } else { Vec::new() };
    let w = weight.map(|p| element_weight::<T>(p, shape)).transpose()?;
    let go = grad_output
        .map(|go| upstream::<T>(&go, &loss_shape, none, reduction_name(reduction)))
        .transpose()?;
    let mut loss = vec![T::ZERO; loss_shape.iter().product()];
    let mut grad = req
        .grad_out
        .as_ref()
        .map(|_| xent::alloc::zeroed_vec("grad", shape))
        .transpose()?;
    let g = grad.as_deref_mut().map(|g| grad_out(g, go.as_deref()));
    match pos_weight {
        None => {
            let mut opts = BinaryCrossEntropyOptions::default().reduction(reduction);
            if let Some(w) = &w {
                opts = opts.weight(w);
            }
            binary_cross_entropy_into(x, shape, t, &opts, &mut loss, g)?;
        }
        Some(pw_path) => {
            let pw = match pw_path {
                Some(p) => {
                    let a = npy::read(p)?;
                    Some(if a.shape.is_empty() {
                        a.data.to_float::<T>()
                    } else {
                        vector::<T>(&a, "pos_weight")?
                    })
                }
                None => None,
            };
            let mut opts = BinaryCrossEntropyWithLogitsOptions::default().reduction(reduction);
            if let Some(w) = &w {
                opts = opts.weight(w);
            }
            if let Some(pw) = &pw {
                opts = opts.pos_weight(pw);
            }
            binary_cross_entropy_with_logits_into(x, shape, t, &opts, &mut loss, g)?;
        }
    }
    Ok(
        Computed::new(loss, loss_shape, None, req.out.as_deref()).file(
            req.grad_out.as_deref(),
            shape,
            grad,
        ),
    )
}
