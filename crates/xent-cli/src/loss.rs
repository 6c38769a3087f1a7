//! `xent loss cross-entropy|nll`: a loss and its gradient on `.npy` files.
//!
//! Order of work: read every input, check it, compute the loss and the gradient, encode
//! the outputs in memory, and only then write files (each to a temporary name in its
//! directory, renamed once all are written), so that a failure leaves no output file.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use xent::{
    cross_entropy_into, nll_loss_into, ClassIndices, CrossEntropyOptions, Error, GradOut, Layout,
    NllLossOptions, Reduction, Targets,
};

use crate::npy::{self, Array, Data, Elem};
use crate::Failure;

/// Which loss to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cross_entropy` of logits.
    CrossEntropy,
    /// `nll_loss` of log-probabilities.
    Nll,
}

/// Everything `xent loss` was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The loss.
    pub kind: Kind,
    /// Logits (cross-entropy) or log-probabilities (nll), `.npy`.
    pub input: PathBuf,
    /// Class indices or probabilities, `.npy`.
    pub target: PathBuf,
    /// Class weights, `.npy`.
    pub weight: Option<PathBuf>,
    /// The ignored class index.
    pub ignore_index: i64,
    /// Label smoothing ε (cross-entropy only; 0 for nll).
    pub label_smoothing: f64,
    /// The reduction.
    pub reduction: Reduction,
    /// Where to write the loss.
    pub out: Option<PathBuf>,
    /// Where to write the gradient.
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
    if let (Some(out), Some(grad_out)) = (&req.out, &req.grad_out) {
        if out == grad_out {
            return Err(Failure::new(format!(
                "--out and --grad-out both name {}",
                out.display()
            )));
        }
    }
    let input = npy::read(&req.input)?;
    let target = npy::read(&req.target)?;
    let weight = req.weight.as_deref().map(npy::read).transpose()?;
    let grad_output = req.grad_output.as_deref().map(npy::read).transpose()?;
    let Array { shape, data } = input;
    match data {
        Data::F32(x) => run_typed(req, &x, &shape, &target, weight, grad_output),
        Data::F64(x) => run_typed(req, &x, &shape, &target, weight, grad_output),
        other => Err(Failure::new(format!(
            "input {} has dtype {}: expected float32 or float64",
            req.input.display(),
            other.dtype()
        ))),
    }
}

/// The loss, its shape and the gradient, computed in the input's dtype `T`.
struct Computed<T> {
    loss: Vec<T>,
    shape: Vec<usize>,
    grad: Option<Vec<T>>,
}

/// Checks, computes, writes the files and formats the report, in the input's dtype.
fn run_typed<T: Elem>(
    req: &Request,
    x: &[T],
    x_shape: &[usize],
    target: &Array,
    weight: Option<Array>,
    grad_output: Option<Array>,
) -> Result<String, Failure> {
    let layout = Layout::new(x_shape, x.len())?;
    let loss_shape = match req.reduction {
        Reduction::None => layout.row_shape(),
        Reduction::Mean | Reduction::Sum => Vec::new(),
    };
    let weight = weight.map(|w| vector::<T>(&w, "weight")).transpose()?;
    let grad_output = grad_output
        .map(|go| upstream::<T>(&go, &loss_shape, req.reduction))
        .transpose()?;
    let computed = compute(
        req,
        x,
        &layout,
        target,
        weight.as_deref(),
        grad_output.as_deref(),
        loss_shape,
    )?;

    let mut files = Vec::new();
    if let Some(path) = &req.out {
        files.push((path.as_path(), encode(&computed.shape, &computed.loss)?));
    }
    if let (Some(path), Some(grad)) = (&req.grad_out, &computed.grad) {
        files.push((path.as_path(), encode(x_shape, grad)?));
    }
    write_all(&files)?;
    Ok(if req.json {
        report_json(&computed)
    } else {
        report_text(&computed)
    })
}

/// A weight vector in `T`.
fn vector<T: Elem>(a: &Array, what: &str) -> Result<Vec<T>, Failure> {
    if a.shape.len() != 1 {
        return Err(Failure::new(format!(
            "{what} must be a vector (1-d), got shape {:?}",
            a.shape
        )));
    }
    Ok(a.data.to_float())
}

/// The upstream gradient in `T`: the loss's shape for `none`, one element otherwise.
fn upstream<T: Elem>(
    go: &Array,
    loss_shape: &[usize],
    reduction: Reduction,
) -> Result<Vec<T>, Failure> {
    let fits = match reduction {
        Reduction::None => go.shape == loss_shape,
        Reduction::Mean | Reduction::Sum => go.data.len() == 1,
    };
    if !fits {
        let expected = match reduction {
            Reduction::None => format!("the loss shape {loss_shape:?} (reduction none)"),
            Reduction::Mean | Reduction::Sum => {
                "one element (a 0-d array) for reduction mean/sum".to_string()
            }
        };
        return Err(Failure::new(format!(
            "grad_output of shape {:?} does not match {expected}",
            go.shape
        )));
    }
    Ok(go.data.to_float())
}

/// How the target file is read: class indices or probabilities (PyTorch tells them
/// apart by shape).
enum TargetKind<'a, T> {
    /// Class indices in the file's own integer type.
    Indices(ClassIndices<'a>),
    /// Probabilities converted to the input's dtype.
    Probabilities(Vec<T>),
}

/// Sorts the target into indices (the input's row shape, integer dtype) or
/// probabilities (the input's shape, float dtype), with PyTorch's batch-size message.
fn classify<'a, T: Elem>(
    kind: Kind,
    target: &'a Array,
    layout: &Layout,
) -> Result<TargetKind<'a, T>, Failure> {
    let x_shape = layout.shape();
    let row_shape = layout.row_shape();
    if target.shape == x_shape {
        if kind == Kind::Nll {
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
        let indices = match &target.data {
            Data::I8(v) => ClassIndices::from(&v[..]),
            Data::I16(v) => ClassIndices::from(&v[..]),
            Data::I32(v) => ClassIndices::from(&v[..]),
            Data::I64(v) => ClassIndices::from(&v[..]),
            Data::U8(v) => ClassIndices::from(&v[..]),
            Data::U16(v) => ClassIndices::from(&v[..]),
            Data::U32(v) => ClassIndices::from(&v[..]),
            Data::U64(v) => ClassIndices::from(&v[..]),
            Data::F32(_) | Data::F64(_) => {
                return Err(Failure::new(format!(
                    "class-index targets must have an integer dtype, got {} of shape {:?} \
                     (probability targets must have the input's shape {x_shape:?})",
                    target.data.dtype(),
                    target.shape
                )))
            }
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
    Err(Failure::new(match kind {
        Kind::CrossEntropy => format!(
            "target of shape {:?} fits neither class indices of shape {row_shape:?} nor \
             probabilities of the input's shape {x_shape:?}",
            target.shape
        ),
        Kind::Nll => format!(
            "target of shape {:?} does not match the class-index shape {row_shape:?}",
            target.shape
        ),
    }))
}

/// Runs the library on checked inputs.
fn compute<T: Elem>(
    req: &Request,
    x: &[T],
    layout: &Layout,
    target: &Array,
    weight: Option<&[T]>,
    grad_output: Option<&[T]>,
    loss_shape: Vec<usize>,
) -> Result<Computed<T>, Failure> {
    let target = classify::<T>(req.kind, target, layout)?;
    let mut loss = vec![T::ZERO; loss_shape.iter().product()];
    let mut grad = req.grad_out.as_ref().map(|_| vec![T::ZERO; x.len()]);
    let grad_out = grad.as_mut().map(|g| {
        let out = GradOut::new(g);
        match grad_output {
            Some(go) => out.grad_output(go),
            None => out,
        }
    });
    let shape = layout.shape();
    match req.kind {
        Kind::CrossEntropy => {
            let mut opts = CrossEntropyOptions::default()
                .ignore_index(req.ignore_index)
                .label_smoothing(req.label_smoothing)
                .reduction(req.reduction);
            if let Some(w) = weight {
                opts = opts.weight(w);
            }
            let target: Targets<'_, T> = match &target {
                TargetKind::Indices(t) => Targets::Indices(*t),
                TargetKind::Probabilities(p) => Targets::Probabilities(p),
            };
            cross_entropy_into(x, shape, target, &opts, &mut loss, grad_out)?;
        }
        Kind::Nll => {
            let mut opts = NllLossOptions::default()
                .ignore_index(req.ignore_index)
                .reduction(req.reduction);
            if let Some(w) = weight {
                opts = opts.weight(w);
            }
            let TargetKind::Indices(target) = target else {
                unreachable!("classify gives nll class indices only");
            };
            nll_loss_into(x, shape, target, &opts, &mut loss, grad_out)?;
        }
    }
    Ok(Computed {
        loss,
        shape: loss_shape,
        grad,
    })
}

/// `.npy` bytes, or a failure naming the shape.
fn encode<T: Elem>(shape: &[usize], values: &[T]) -> Result<Vec<u8>, Failure> {
    npy::encode(shape, values).map_err(|e| Failure::new(format!("cannot encode .npy: {e}")))
}

/// Writes every file under a temporary name next to it, then renames them into
/// place; on a failure the temporaries are removed and no output appears.
fn write_all(files: &[(&Path, Vec<u8>)]) -> Result<(), Failure> {
    let temp = |path: &Path| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".xent-{}.tmp", std::process::id()));
        path.with_file_name(name)
    };
    let mut written = Vec::new();
    let cleanup = |written: &[PathBuf]| {
        for p in written {
            let _ = fs::remove_file(p);
        }
    };
    for (path, bytes) in files {
        if path.file_name().is_none() {
            cleanup(&written);
            return Err(Failure::new(format!(
                "cannot write {}: not a file name",
                path.display()
            )));
        }
        let tmp = temp(path);
        if let Err(e) = fs::write(&tmp, bytes) {
            cleanup(&written);
            return Err(Failure::new(format!(
                "cannot write {}: {e}",
                path.display()
            )));
        }
        written.push(tmp);
    }
    for (i, (path, _)) in files.iter().enumerate() {
        if let Err(e) = fs::rename(&written[i], path) {
            cleanup(&written[i..]);
            // The outputs already in place are this run's: take them back too.
            for (done, _) in &files[..i] {
                let _ = fs::remove_file(done);
            }
            return Err(Failure::new(format!(
                "cannot write {}: {e}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The text report: the number for a scalar loss; shape and min/mean/max for `none`.
fn report_text<T: Elem>(c: &Computed<T>) -> String {
    if c.shape.is_empty() {
        return format!("{}\n", c.loss[0]);
    }
    let mut s = format!("shape {:?}", c.shape);
    if c.loss.is_empty() {
        s.push_str(": empty\n");
        return s;
    }
    let (min, mean, max) = summary(&c.loss);
    let _ = writeln!(s, "  min {min}  mean {mean}  max {max}");
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

/// `{"loss": …, "shape": […]}`: a number for mean/sum, a flat list for none.
fn report_json<T: Elem>(c: &Computed<T>) -> String {
    let loss = if c.shape.is_empty() {
        json_number(c.loss[0])
    } else {
        Value::Array(c.loss.iter().map(|&v| json_number(v)).collect())
    };
    format!("{}\n", json!({ "loss": loss, "shape": c.shape }))
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
