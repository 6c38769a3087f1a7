//! Reading the operands of a loss from their `.npy` files: dtype and shape checks
//! with the messages every command (`xent loss …`, `xent-mpi loss …`) gives.

use std::path::Path;

use xent::{ClassIndices, Error, GradOut, Layout, Reduction};

use crate::npy::{Array, Data, Elem};
use crate::{outputs, Failure};

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

/// Refuses inputs (flag, path) that exist and are not regular files (a FIFO, a
/// device, a directory, a socket), as [`check_outputs`] refuses such outputs: for a
/// tool whose every process opens every input (`xent-mpi`), a FIFO can feed only one
/// of them and blocks the rest. Paths that cannot be looked up are left to the reader.
///
/// # Errors
/// A [`Failure`] naming the flag, the path and what it is.
pub fn check_regular_inputs(inputs: &[(&str, Option<&Path>)]) -> Result<(), Failure> {
    for &(flag, path) in inputs {
        let Some(path) = path else { continue };
        if let Ok(m) = std::fs::metadata(path) {
            if !m.is_file() {
                return Err(Failure::new(format!(
                    "cannot read {flag} {}: it is {}; only regular files are read",
                    path.display(),
                    outputs::kind(m.file_type())
                )));
            }
        }
    }
    Ok(())
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
