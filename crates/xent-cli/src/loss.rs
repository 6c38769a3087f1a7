//! `xent loss …`: a loss and its gradients on `.npy` files.
//!
//! Order of work: check the output paths, read every input, check it, compute the
//! loss and the gradients, encode the outputs in memory, and only then write the
//! files, as one transaction (`outputs`): on any failure every file is as it was.
//! This module holds that shared contract (`Computed`, `deliver`) and the
//! class-dim losses cross-entropy and nll; `family` adds the elementwise and
//! divergence losses, `linear` the linear cross-entropy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use xent::{
    cross_entropy_into, nll_loss_into, ClassIndices, CrossEntropyOptions, Error, GradOut,
    KlReduction, Layout, NllLossOptions, Reduction, Targets,
};

use crate::npy::{self, Array, Data, Elem};
use crate::{outputs, Failure};

/// The options of the class-dim losses (cross-entropy, nll).
#[derive(Debug, Clone)]
pub struct ClassOptions {
    /// Class weights, `.npy`.
    pub weight: Option<PathBuf>,
    /// The ignored class index.
    pub ignore_index: i64,
    /// Label smoothing ε (cross-entropy only; 0 for nll).
    pub label_smoothing: f64,
    /// The z-loss scale (cross-entropy only; 0 for nll).
    pub z_loss: f64,
    /// The logit soft-cap (cross-entropy only).
    pub softcap: Option<f64>,
    /// The reduction.
    pub reduction: Reduction,
}

/// Which loss to compute, with its own options.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `cross_entropy` of logits.
    CrossEntropy(ClassOptions),
    /// `nll_loss` of log-probabilities.
    Nll(ClassOptions),
    /// `binary_cross_entropy` of probabilities.
    Bce {
        /// Element weights, `.npy`.
        weight: Option<PathBuf>,
        /// The reduction.
        reduction: Reduction,
    },
    /// `binary_cross_entropy_with_logits`.
    BceWithLogits {
        /// Element weights, `.npy`.
        weight: Option<PathBuf>,
        /// Positive-term weights per class, `.npy`.
        pos_weight: Option<PathBuf>,
        /// The reduction.
        reduction: Reduction,
    },
    /// `kl_div` of log-probabilities.
    KlDiv {
        /// The target holds log-probabilities.
        log_target: bool,
        /// The reduction (with `batchmean`).
        reduction: KlReduction,
        /// Where to write the gradient w.r.t. the target.
        grad_out_target: Option<PathBuf>,
    },
    /// Jensen–Shannon divergence over the class dim.
    Js {
        /// The arguments are logits.
        logits: bool,
        /// The reduction over rows.
        reduction: Reduction,
        /// Where to write the gradient w.r.t. the second argument.
        grad_out_target: Option<PathBuf>,
    },
}

/// Everything `xent loss` (except linear-cross-entropy) was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The loss and its options.
    pub kind: Kind,
    /// The input (logits, log-probabilities, probabilities or P), `.npy`.
    pub input: PathBuf,
    /// The target (class indices, probabilities, or Q), `.npy`.
    pub target: PathBuf,
    /// Where to write the loss.
    pub out: Option<PathBuf>,
    /// Where to write the gradient w.r.t. the input.
    pub grad_out: Option<PathBuf>,
    /// The upstream gradient, `.npy`.
    pub grad_output: Option<PathBuf>,
    /// Print JSON instead of text.
    pub json: bool,
}

/// Runs the request and returns what to print.
///
/// # Errors
/// A [`Failure`] for unreadable files, bad dtypes or shapes, bad options and every
/// library [`Error`]; no file is written then.
pub fn run(req: &Request) -> Result<String, Failure> {
    let grad_out_target = match &req.kind {
        Kind::KlDiv {
            grad_out_target, ..
        }
        | Kind::Js {
            grad_out_target, ..
        } => grad_out_target.as_deref(),
        _ => None,
    };
    let (weight, pos_weight) = match &req.kind {
        Kind::CrossEntropy(o) | Kind::Nll(o) => (o.weight.as_deref(), None),
        Kind::Bce { weight, .. } => (weight.as_deref(), None),
        Kind::BceWithLogits {
            weight, pos_weight, ..
        } => (weight.as_deref(), pos_weight.as_deref()),
        Kind::KlDiv { .. } | Kind::Js { .. } => (None, None),
    };
    outputs::check(
        &[
            ("--out", req.out.as_deref()),
            ("--grad-out", req.grad_out.as_deref()),
            ("--grad-out-target", grad_out_target),
        ],
        &[
            ("--input", Some(&req.input)),
            ("--target", Some(&req.target)),
            ("--grad-output", req.grad_output.as_deref()),
            ("--weight", weight),
            ("--pos-weight", pos_weight),
        ],
    )?;
    let input = npy::read(&req.input)?;
    let target = npy::read(&req.target)?;
    let Array { shape, data } = input;
    let computed = match data {
        Data::F32(x) => compute_typed(req, &x, &shape, &target)?.encode()?,
        Data::F64(x) => compute_typed(req, &x, &shape, &target)?.encode()?,
        other => return Err(not_float("input", &req.input, &other)),
    };
    deliver(computed, req.json)
}

/// The failure for a float operand read with another dtype.
pub fn not_float(what: &str, path: &Path, data: &Data) -> Failure {
    Failure::new(format!(
        "{what} {} has dtype {}: expected float32 or float64",
        path.display(),
        data.dtype()
    ))
}

/// Validates the output paths before anything is computed, as `xent loss` does: each
/// writable, and no two outputs nor an output and an input (flag, path) the same file
/// (compared by identity, not by text).
///
/// # Errors
/// A [`Failure`] naming the flag(s) and the path.
pub fn check_outputs(
    outputs: &[(&str, Option<&Path>)],
    inputs: &[(&str, Option<&Path>)],
) -> Result<(), Failure> {
    outputs::check(outputs, inputs)
}

/// A computed loss, its z-loss term, and the arrays to write: each a path, a shape
/// and values in the input's dtype `T`.
pub struct Computed<T> {
    /// The loss values (one for a reduced loss).
    pub loss: Vec<T>,
    /// The loss's shape (`[]` for a reduced loss).
    pub shape: Vec<usize>,
    /// The z-loss term, when one was asked for.
    pub z_loss: Option<T>,
    /// The files to write: the loss and the gradients asked for.
    pub files: Vec<(PathBuf, Vec<usize>, Vec<T>)>,
}

/// A [`Computed`] with its files encoded and its report formatted: what is left
/// does not depend on the dtype.
pub struct Encoded {
    files: Vec<(PathBuf, Vec<u8>)>,
    text: String,
    json: String,
}

impl<T: Elem> Computed<T> {
    /// A loss without output files yet; the loss itself goes to `out` when given.
    pub fn new(loss: Vec<T>, shape: Vec<usize>, z_loss: Option<T>, out: Option<&Path>) -> Self {
        let files = out
            .map(|p| (p.to_path_buf(), shape.clone(), loss.clone()))
            .into_iter()
            .collect();
        Computed {
            loss,
            shape,
            z_loss,
            files,
        }
    }

    /// Adds an output array when both a path and values exist.
    pub fn file(mut self, path: Option<&Path>, shape: &[usize], values: Option<Vec<T>>) -> Self {
        if let (Some(p), Some(v)) = (path, values) {
            self.files.push((p.to_path_buf(), shape.to_vec(), v));
        }
        self
    }

    /// Encodes the files and formats both reports.
    pub fn encode(self) -> Result<Encoded, Failure> {
        let files = self
            .files
            .iter()
            .map(|(p, shape, v)| Ok((p.clone(), encode(shape, v)?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(Encoded {
            files,
            text: report_text(&self),
            json: report_json(&self),
        })
    }
}

/// Writes the encoded files (all or none) and returns the report to print.
pub fn deliver(e: Encoded, json: bool) -> Result<String, Failure> {
    outputs::write_all(&e.files)?;
    Ok(if json { e.json } else { e.text })
}

/// Checks, computes and collects the outputs, in the input's dtype.
fn compute_typed<T: Elem>(
    req: &Request,
    x: &[T],
    x_shape: &[usize],
    target: &Array,
) -> Result<Computed<T>, Failure> {
    let grad_output = req.grad_output.as_deref().map(npy::read).transpose()?;
    match &req.kind {
        Kind::CrossEntropy(o) | Kind::Nll(o) => class_loss(req, o, x, x_shape, target, grad_output),
        _ => crate::family::compute(req, x, x_shape, target, grad_output),
    }
}

/// A weight vector in `T`.
pub fn vector<T: Elem>(a: &Array, what: &str) -> Result<Vec<T>, Failure> {
    if a.shape.len() != 1 {
        return Err(Failure::new(format!(
            "{what} must be a vector (1-d), got shape {:?}",
            a.shape
        )));
    }
    Ok(a.data.to_float())
}

/// The upstream gradient in `T`: the loss's shape for `none`, one element otherwise
/// (`reduction` names the reduction in the message).
pub fn upstream<T: Elem>(
    go: &Array,
    loss_shape: &[usize],
    none: bool,
    reduction: &str,
) -> Result<Vec<T>, Failure> {
    let fits = if none {
        go.shape == loss_shape
    } else {
        go.data.len() == 1
    };
    if !fits {
        let expected = if none {
            format!("the loss shape {loss_shape:?} (reduction none)")
        } else {
            format!("one element (a 0-d array) for reduction {reduction}")
        };
        return Err(Failure::new(format!(
            "grad_output of shape {:?} does not match {expected}",
            go.shape
        )));
    }
    Ok(go.data.to_float())
}

/// `GradOut` on `grad` with the upstream gradient when there is one.
pub fn grad_out<'a, T: Elem>(grad: &'a mut [T], upstream: Option<&'a [T]>) -> GradOut<'a, T> {
    let out = GradOut::new(grad);
    match upstream {
        Some(go) => out.grad_output(go),
        None => out,
    }
}

/// The name of a reduction, as the command line spells it.
pub fn reduction_name(r: Reduction) -> &'static str {
    match r {
        Reduction::None => "none",
        Reduction::Mean => "mean",
        Reduction::Sum => "sum",
    }
}

/// Class indices in the file's own integer type; `None` for a float array.
pub fn class_indices(a: &Array) -> Option<ClassIndices<'_>> {
    Some(match &a.data {
        Data::I8(v) => ClassIndices::from(&v[..]),
        Data::I16(v) => ClassIndices::from(&v[..]),
        Data::I32(v) => ClassIndices::from(&v[..]),
        Data::I64(v) => ClassIndices::from(&v[..]),
        Data::U8(v) => ClassIndices::from(&v[..]),
        Data::U16(v) => ClassIndices::from(&v[..]),
        Data::U32(v) => ClassIndices::from(&v[..]),
        Data::U64(v) => ClassIndices::from(&v[..]),
        Data::F32(_) | Data::F64(_) => return None,
    })
}

/// How the target file is read: class indices or probabilities (PyTorch tells them
/// apart by shape).
pub enum TargetKind<'a, T> {
    /// Class indices in the file's own integer type.
    Indices(ClassIndices<'a>),
    /// Probabilities converted to the input's dtype.
    Probabilities(Vec<T>),
}

/// Sorts the target into indices (the input's row shape, integer dtype) or
/// probabilities (the input's shape, float dtype), with PyTorch's batch-size message.
pub fn classify<'a, T: Elem>(
    nll: bool,
    target: &'a Array,
    layout: &Layout,
) -> Result<TargetKind<'a, T>, Failure> {
    let x_shape = layout.shape();
    let row_shape = layout.row_shape();
    if target.shape == x_shape {
        if nll {
            return Err(Failure::new(format!(
                "nll_loss takes class-index targets of shape {row_shape:?}, got a target of the \
                 input's shape {x_shape:?} (probability targets are for cross-entropy)"
            )));
        }
        return match &target.data {
            Data::F32(_) | Data::F64(_) => Ok(TargetKind::Probabilities(target.data.to_float())),
            other => Err(Error::NonFloatProbabilities {
                dtype: other.dtype().to_string(),
            }
            .into()),
        };
    }
    if target.shape == row_shape {
        let Some(indices) = class_indices(target) else {
            return Err(Failure::new(format!(
                "class-index targets must have an integer dtype, got {} of shape {:?} \
                 (probability targets must have the input's shape {x_shape:?})",
                target.data.dtype(),
                target.shape
            )));
        };
        return Ok(TargetKind::Indices(indices));
    }
    if x_shape.len() >= 2 && !target.shape.is_empty() && target.shape[0] != x_shape[0] {
        return Err(Error::BatchMismatch {
            input: x_shape[0],
            target: target.shape[0],
        }
        .into());
    }
    Err(Failure::new(if nll {
        format!(
            "target of shape {:?} does not match the class-index shape {row_shape:?}",
            target.shape
        )
    } else {
        format!(
            "target of shape {:?} fits neither class indices of shape {row_shape:?} nor \
             probabilities of the input's shape {x_shape:?}",
            target.shape
        )
    }))
}

/// cross-entropy or nll on checked inputs.
fn class_loss<T: Elem>(
    req: &Request,
    o: &ClassOptions,
    x: &[T],
    x_shape: &[usize],
    target: &Array,
    grad_output: Option<Array>,
) -> Result<Computed<T>, Failure> {
    let layout = Layout::new(x_shape, x.len())?;
    let none = o.reduction == Reduction::None;
    let loss_shape = if none { layout.row_shape() } else { Vec::new() };
    let weight = match &o.weight {
        Some(p) => Some(vector::<T>(&npy::read(p)?, "weight")?),
        None => None,
    };
    let grad_output = grad_output
        .map(|go| upstream::<T>(&go, &loss_shape, none, reduction_name(o.reduction)))
        .transpose()?;
    let nll = matches!(req.kind, Kind::Nll(_));
    let target = classify::<T>(nll, target, &layout)?;
    let mut loss = vec![T::ZERO; loss_shape.iter().product()];
    // On huge pages when large, faulted in by the kernel's threads (xent::alloc).
    let mut grad = req
        .grad_out
        .as_ref()
        .map(|_| xent::alloc::zeroed_vec("grad", x_shape))
        .transpose()?;
    let g = grad
        .as_deref_mut()
        .map(|g| grad_out(g, grad_output.as_deref()));
    let z_loss = if nll {
        let mut opts = NllLossOptions::default()
            .ignore_index(o.ignore_index)
            .reduction(o.reduction);
        if let Some(w) = &weight {
            opts = opts.weight(w);
        }
        let TargetKind::Indices(target) = target else {
            unreachable!("classify gives nll class indices only");
        };
        nll_loss_into(x, x_shape, target, &opts, &mut loss, g)?;
        None
    } else {
        let mut opts = CrossEntropyOptions::default()
            .ignore_index(o.ignore_index)
            .label_smoothing(o.label_smoothing)
            .z_loss(o.z_loss)
            .reduction(o.reduction);
        if let Some(cap) = o.softcap {
            opts = opts.softcap(cap);
        }
        if let Some(w) = &weight {
            opts = opts.weight(w);
        }
        let target: Targets<'_, T> = match &target {
            TargetKind::Indices(t) => Targets::Indices(*t),
            TargetKind::Probabilities(p) => Targets::Probabilities(p),
        };
        cross_entropy_into(x, x_shape, target, &opts, &mut loss, g)?
    };
    Ok(
        Computed::new(loss, loss_shape, z_loss, req.out.as_deref()).file(
            req.grad_out.as_deref(),
            x_shape,
            grad,
        ),
    )
}

/// `.npy` bytes, or a failure naming the shape.
fn encode<T: Elem>(shape: &[usize], values: &[T]) -> Result<Vec<u8>, Failure> {
    npy::encode(shape, values).map_err(|e| Failure::new(format!("cannot encode .npy: {e}")))
}

/// The text report: the number for a scalar loss; shape and min/mean/max for `none`;
/// then `z_loss <value>` when a z term was asked for.
fn report_text<T: Elem>(c: &Computed<T>) -> String {
    let mut s = if c.shape.is_empty() {
        format!("{}\n", c.loss[0])
    } else if c.loss.is_empty() {
        format!("shape {:?}: empty\n", c.shape)
    } else {
        let (min, mean, max) = summary(&c.loss);
        format!("shape {:?}  min {min}  mean {mean}  max {max}\n", c.shape)
    };
    if let Some(z) = c.z_loss {
        let _ = writeln!(s, "z_loss {z}");
    }
    s
}

/// Min, mean and max in the values' dtype (the mean accumulated in `f64`); NaN when
/// any value is NaN or there is none.
fn summary<T: Elem>(values: &[T]) -> (T, T, T) {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return (T::NAN, T::NAN, T::NAN);
    }
    let first = values[0];
    let min = values.iter().fold(first, |m, &v| if v < m { v } else { m });
    let max = values.iter().fold(first, |m, &v| if v > m { v } else { m });
    let sum: f64 = values.iter().map(|v| v.to_f64()).sum();
    (min, T::from_f64(sum / values.len() as f64), max)
}

/// `{"loss": …, "shape": […]}`: a number for a reduced loss, a flat list for none;
/// plus `"z_loss": …` when a z term was asked for.
fn report_json<T: Elem>(c: &Computed<T>) -> String {
    let loss = if c.shape.is_empty() {
        json_number(c.loss[0])
    } else {
        Value::Array(c.loss.iter().map(|&v| json_number(v)).collect())
    };
    let mut report = json!({ "loss": loss, "shape": c.shape });
    if let Some(z) = c.z_loss {
        report["z_loss"] = json_number(z);
    }
    format!("{report}\n")
}

/// A JSON number with the value's shortest round-trip digits in its own dtype
/// (`1.4076059` for an `f32`, not its `f64` widening); non-finite values, which JSON
/// cannot hold, as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn json_number<T: Elem>(v: T) -> Value {
    let x = v.to_f64();
    if x.is_nan() {
        Value::from("NaN")
    } else if x == f64::INFINITY {
        Value::from("Infinity")
    } else if x == f64::NEG_INFINITY {
        Value::from("-Infinity")
    } else {
        // `Display` of f32/f64 is the shortest string that reads back to the same value.
        let shortest: f64 = v.to_string().parse().unwrap_or(x);
        serde_json::Number::from_f64(shortest).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_keep_their_dtype_digits_and_survive_non_finite() {
        assert_eq!(json_number(1.4076059f32).to_string(), "1.4076059");
        assert_eq!(json_number(0.1f64).to_string(), "0.1");
        assert_eq!(json_number(f32::NAN), Value::from("NaN"));
        assert_eq!(json_number(f64::NEG_INFINITY), Value::from("-Infinity"));
        assert_eq!(json_number(1e30f32).to_string(), "1e+30");
    }

    #[test]
    fn summary_propagates_nan() {
        assert_eq!(summary(&[1.0f64, 3.0, 2.0]), (1.0, 2.0, 3.0));
        assert!(summary(&[1.0f32, f32::NAN]).0.is_nan());
        assert_eq!(summary(&[0.1f32, 0.2]), (0.1f32, 0.15f32, 0.2f32));
    }
}
