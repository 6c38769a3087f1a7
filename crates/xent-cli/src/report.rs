//! What a loss command hands back: the loss, its z term and the arrays to write
//! ([`Computed`]), encoded as `.npy` bytes and formatted as the text or JSON report
//! ([`Encoded`]), then written as one transaction ([`deliver`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use xent::RowOutputs;

use crate::args::RowOutputArgs;
use crate::npy::{self, Elem};
use crate::{outputs, Failure};

/// A computed loss, its z-loss term, and the arrays to write: each a path, a shape
/// and values in the input's dtype `T`.
pub struct Computed<T> {
    /// The loss values (one for a reduced loss).
    pub loss: Vec<T>,
    /// The loss's shape (`[]` for a reduced loss).
    pub shape: Vec<usize>,
    /// The z-loss term, when one was asked for.
    pub z_loss: Option<T>,
    /// The files to write: the loss, the gradients and the per-row outputs asked for.
    pub files: Vec<(PathBuf, Vec<usize>, Vec<T>)>,
    /// The int64 files to write: the argmax, when asked for.
    pub index_files: Vec<(PathBuf, Vec<usize>, Vec<i64>)>,
}

/// The buffers of the per-row outputs asked for by [`RowOutputArgs`]: one element
/// per row each, the floats in the input's dtype, the argmax in int64.
pub struct RowBuffers<T> {
    lse: Option<Vec<T>>,
    entropy: Option<Vec<T>>,
    argmax: Option<Vec<i64>>,
}

impl<T: Elem> RowBuffers<T> {
    /// Buffers of `rows` elements for the outputs `args` asks for.
    pub fn new(args: &RowOutputArgs, rows: usize) -> Self {
        RowBuffers {
            lse: args.lse_out.as_ref().map(|_| vec![T::ZERO; rows]),
            entropy: args.entropy_out.as_ref().map(|_| vec![T::ZERO; rows]),
            argmax: args.argmax_out.as_ref().map(|_| vec![0; rows]),
        }
    }

    /// The library's view of the buffers.
    pub fn outputs(&mut self) -> RowOutputs<'_, T> {
        let mut rows = RowOutputs::new();
        if let Some(b) = self.lse.as_deref_mut() {
            rows = rows.lse(b);
        }
        if let Some(b) = self.entropy.as_deref_mut() {
            rows = rows.entropy(b);
        }
        if let Some(b) = self.argmax.as_deref_mut() {
            rows = rows.argmax(b);
        }
        rows
    }

    /// Adds the filled buffers to `c` as files of shape `row_shape`.
    pub fn into_files(
        self,
        c: Computed<T>,
        args: &RowOutputArgs,
        row_shape: &[usize],
    ) -> Computed<T> {
        c.file(args.lse_out.as_deref(), row_shape, self.lse)
            .file(args.entropy_out.as_deref(), row_shape, self.entropy)
            .index_file(args.argmax_out.as_deref(), row_shape, self.argmax)
    }
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
            index_files: Vec::new(),
        }
    }

    /// Adds an output array when both a path and values exist.
    pub fn file(mut self, path: Option<&Path>, shape: &[usize], values: Option<Vec<T>>) -> Self {
        if let (Some(p), Some(v)) = (path, values) {
            self.files.push((p.to_path_buf(), shape.to_vec(), v));
        }
        self
    }

    /// Adds an int64 output array when both a path and values exist.
    pub fn index_file(
        mut self,
        path: Option<&Path>,
        shape: &[usize],
        values: Option<Vec<i64>>,
    ) -> Self {
        if let (Some(p), Some(v)) = (path, values) {
            self.index_files.push((p.to_path_buf(), shape.to_vec(), v));
        }
        self
    }

    /// Encodes the files and formats both reports.
    pub fn encode(self) -> Result<Encoded, Failure> {
        let files = self
            .files
            .iter()
            .map(|(p, shape, v)| Ok((p.clone(), encode(shape, v)?)))
            .chain(
                self.index_files
                    .iter()
                    .map(|(p, shape, v)| Ok((p.clone(), encode(shape, v)?))),
            )
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

/// `.npy` bytes, or a failure naming the shape.
fn encode<T: npyz::AutoSerialize + Copy>(
    shape: &[usize],
    values: &[T],
) -> Result<Vec<u8>, Failure> {
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
