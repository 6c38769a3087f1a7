//! Reading one rank's block of a `.npy` file: the rows of its data-parallel group and,
//! within each, the classes of its shard, so that no rank holds the whole logits
//! (or the whole `W`).
//!
//! A little-endian, C-order `float32`/`float64` file is read in place, one seek per
//! row; any other file (another byte order, Fortran order, integers, a truncated
//! file) is read whole by `xent`'s reader, which converts it or fails with the
//! message `xent loss` gives.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use npyz::{DType, Endianness, NpyFile, Order, TypeChar};
use xent_cli::npy::{self, Array, Data, Elem};
use xent_cli::Failure;

/// A `.npy` file's shape and dtype, and where a block of it comes from.
pub struct Source {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Whether it holds `float64` (else `float32`).
    pub f64: bool,
    /// Where its little-endian C-order elements start; `None`: read it whole.
    start: Option<u64>,
    /// The whole array, when it was read whole.
    whole: Option<Array>,
}

impl Source {
    /// Reads `path`'s header (and, unless its elements can be read in place, all of
    /// it).
    ///
    /// # Errors
    /// As `xent`'s reader, plus `what` in the message of a non-float array.
    pub fn open(path: &Path, what: &str) -> Result<Source, Failure> {
        if let Some(s) = Source::peek(path) {
            return Ok(s);
        }
        let a = npy::read(path)?;
        let f64 = match &a.data {
            Data::F32(_) => false,
            Data::F64(_) => true,
            other => return Err(xent_cli::operands::not_float(what, path, other)),
        };
        Ok(Source {
            shape: a.shape.clone(),
            f64,
            start: None,
            whole: Some(a),
        })
    }

    /// The header of a little-endian C-order float file whose elements are all
    /// there (its blocks are read in place); `None` for anything else.
    pub fn peek(path: &Path) -> Option<Source> {
        let mut file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut head = [0u8; 12];
        file.read_exact(&mut head).ok()?;
        let start = match head[6] {
            1 => 10 + u64::from(u16::from_le_bytes([head[8], head[9]])),
            2 | 3 => 12 + u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])),
            _ => return None,
        };
        file.seek(SeekFrom::Start(0)).ok()?;
        let npy = NpyFile::new(BufReader::new(file)).ok()?;
        let DType::Plain(ty) = npy.dtype() else {
            return None;
        };
        let size = ty.size_field();
        let float = ty.type_char() == TypeChar::Float && (size == 4 || size == 8);
        if !float || ty.endianness() != Endianness::Little || npy.order() != Order::C {
            return None;
        }
        let shape: Vec<usize> = npy
            .shape()
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<_>>()?;
        let elems = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
        if start.checked_add(elems.checked_mul(size)?)? > len {
            return None;
        }
        Some(Source {
            shape,
            f64: size == 8,
            start: Some(start),
            whole: None,
        })
    }

    /// The dtype's NumPy name: `float32` or `float64`.
    pub fn dtype(&self) -> &'static str {
        if self.f64 {
            "float64"
        } else {
            "float32"
        }
    }

    /// `x[n0..n1, c0..c1, :]` of the array seen as `(outer, c, inner)`, in `T`.
    ///
    /// # Errors
    /// When the file cannot be read again.
    pub fn block<T: Elem>(
        &self,
        path: &Path,
        (c, inner): (usize, usize),
        (n0, n1): (usize, usize),
        (c0, c1): (usize, usize),
    ) -> Result<Vec<T>, Failure> {
        let run = (c1 - c0) * inner;
        let mut out = Vec::with_capacity((n1 - n0) * run);
        if let Some(a) = &self.whole {
            let all: Vec<T> = a.data.to_float();
            for n in n0..n1 {
                out.extend_from_slice(&all[(n * c + c0) * inner..(n * c + c1) * inner]);
            }
            return Ok(out);
        }
        let start = self.start.unwrap_or(0);
        let io_err =
            |e: std::io::Error| Failure::new(format!("cannot read {}: {e}", path.display()));
        let mut file = BufReader::new(File::open(path).map_err(io_err)?);
        let size = if self.f64 { 8 } else { 4 };
        let mut bytes = vec![0u8; run * size];
        for n in n0..n1 {
            let at = start + (((n * c + c0) * inner) * size) as u64;
            file.seek(SeekFrom::Start(at)).map_err(io_err)?;
            file.read_exact(&mut bytes).map_err(io_err)?;
            if self.f64 {
                out.extend(
                    bytes
                        .chunks_exact(8)
                        .map(|b| T::from_f64(f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))),
                );
            } else {
                out.extend(bytes.chunks_exact(4).map(|b| {
                    T::from_f64(f32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as f64)
                }));
            }
        }
        Ok(out)
    }
}
