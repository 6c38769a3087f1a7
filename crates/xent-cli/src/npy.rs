//! `.npy` files: reading integer and float arrays with their shape, writing `f32`/`f64`.
//!
//! Reading keeps the file's element type ([`Data`]) so that class-index targets reach
//! the library in their own integer type, never cast. Fortran-ordered files are
//! reordered to C order. Writing serializes into memory ([`encode`]); the caller puts
//! the bytes on disk only once everything has been computed.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};
use xent::{Element, Float};

use crate::Failure;

/// The elements of an array, in the file's own type.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Data {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Applies `$body` to the vector inside any [`Data`] variant, bound to `$v`.
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::I8($v) => $body,
            Data::I16($v) => $body,
            Data::I32($v) => $body,
            Data::I64($v) => $body,
            Data::U8($v) => $body,
            Data::U16($v) => $body,
            Data::U32($v) => $body,
            Data::U64($v) => $body,
            Data::F32($v) => $body,
            Data::F64($v) => $body,
        }
    };
}

impl Data {
    /// The dtype's name as NumPy spells it (`int64`, `float32`, …).
    pub fn dtype(&self) -> &'static str {
        match self {
            Data::I8(_) => "int8",
            Data::I16(_) => "int16",
            Data::I32(_) => "int32",
            Data::I64(_) => "int64",
            Data::U8(_) => "uint8",
            Data::U16(_) => "uint16",
            Data::U32(_) => "uint32",
            Data::U64(_) => "uint64",
            Data::F32(_) => f32::NAME,
            Data::F64(_) => f64::NAME,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    /// `true` when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements converted to `T`, through `f64` (exact for every `f32`, rounding
    /// for `f64 → f32` and for integers above 2⁵³).
    // One body for every element type: for `f64` the cast is the identity.
    #[allow(clippy::unnecessary_cast)]
    pub fn to_float<T: Float>(&self) -> Vec<T> {
        with_data!(self, v => v.iter().map(|&e| T::from_f64(e as f64)).collect())
    }
}

/// An array read from a `.npy` file: its shape and its elements in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The shape; `[]` for a 0-d array (one element).
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Data,
}

/// Reads `path` as an integer (`i8`…`u64`) or float (`f32`, `f64`) array of any
/// endianness, in C or Fortran order.
///
/// # Errors
/// A [`Failure`] naming the file when it cannot be opened, is not a `.npy` file, is
/// truncated, or holds another dtype (bool, float16, complex, strings, records, objects).
pub fn read(path: &Path) -> Result<Array, Failure> {
    let shown = path.display();
    let io_err = |e: io::Error| Failure::new(format!("cannot read {shown}: {e}"));
    let file = File::open(path).map_err(io_err)?;
    let npy = NpyFile::new(BufReader::new(file))
        .map_err(|e| Failure::new(format!("{shown} is not a valid .npy file: {e}")))?;
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Failure::new(format!("{shown}: shape {:?} is too large", npy.shape())))?;
    let order = npy.order();
    let dtype = npy.dtype();
    let unsupported = || {
        let name = match &dtype {
            DType::Plain(ty) => ty.to_string(),
            other => other.descr(),
        };
        Failure::new(format!(
            "{shown} has unsupported dtype {name}: expected an integer, float32 or float64 array"
        ))
    };
    let DType::Plain(ty) = &dtype else {
        return Err(unsupported());
    };
    let data = match (ty.type_char(), ty.size_field()) {
        (TypeChar::Int, 1) => Data::I8(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Int, 2) => Data::I16(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Int, 4) => Data::I32(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Int, 8) => Data::I64(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Uint, 1) => Data::U8(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Uint, 2) => Data::U16(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Uint, 4) => Data::U32(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Uint, 8) => Data::U64(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Float, 4) => Data::F32(elements(npy, &shape, order).map_err(io_err)?),
        (TypeChar::Float, 8) => Data::F64(elements(npy, &shape, order).map_err(io_err)?),
        _ => return Err(unsupported()),
    };
    Ok(Array { shape, data })
}

/// Reads every element and returns them in C order.
fn elements<T: npyz::Deserialize + Copy, R: Read>(
    npy: NpyFile<R>,
    shape: &[usize],
    order: Order,
) -> io::Result<Vec<T>> {
    let flat = npy.into_vec::<T>()?;
    Ok(match order {
        Order::C => flat,
        Order::Fortran => fortran_to_c(&flat, shape),
    })
}

/// Reorders column-major (first index fastest) elements to row-major.
fn fortran_to_c<T: Copy>(flat: &[T], shape: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(flat.len());
    if flat.is_empty() {
        return out;
    }
    // Fortran strides: 1, d0, d0·d1, …
    let mut strides = Vec::with_capacity(shape.len());
    let mut s = 1;
    for &d in shape {
        strides.push(s);
        s *= d;
    }
    let mut index = vec![0usize; shape.len()];
    for _ in 0..flat.len() {
        out.push(
            flat[index
                .iter()
                .zip(&strides)
                .map(|(i, s)| i * s)
                .sum::<usize>()],
        );
        // Advance the C-order multi-index, last dimension fastest.
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// The float element types the CLI computes and writes in: `f32` and `f64`.
pub trait Elem:
    Float + xent::Element<Acc = Self> + npyz::Deserialize + npyz::AutoSerialize
{
}

impl Elem for f32 {}
impl Elem for f64 {}

/// Serializes `values` of shape `shape` (`[]` for 0-d) as a C-order `.npy` file in
/// memory, little-endian.
///
/// # Errors
/// When the number of values is not the product of `shape`.
pub fn encode<T: Elem>(shape: &[usize], values: &[T]) -> io::Result<Vec<u8>> {
    if shape.iter().product::<usize>() != values.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} values do not fill shape {shape:?}", values.len()),
        ));
    }
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed() {
        // C-order [[0, 1, 2], [3, 4, 5]] stored column-major.
        let flat = [0, 3, 1, 4, 2, 5];
        assert_eq!(fortran_to_c(&flat, &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
        // 3-d: element (i, j, k) = 100i + 10j + k.
        let shape = [2, 3, 4];
        let mut fortran = vec![0; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    fortran[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
                }
            }
        }
        let c = fortran_to_c(&fortran, &shape);
        assert_eq!(c[4 * 3 + 4 + 3], 100 + 10 + 3);
        assert_eq!(c[23], 123);
        assert!(c.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn encode_round_trips_0d_and_nd() {
        let dir = tempfile::tempdir().unwrap();
        for (shape, values) in [
            (vec![], vec![1.5f64]),
            (vec![2, 0], vec![]),
            (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
        ] {
            let path = dir.path().join("a.npy");
            std::fs::write(&path, encode(&shape, &values).unwrap()).unwrap();
            let back = read(&path).unwrap();
            assert_eq!(
                back,
                Array {
                    shape,
                    data: Data::F64(values)
                }
            );
        }
        assert!(encode(&[3], &[1.0f32]).is_err());
    }

    #[test]
    fn conversion_goes_through_f64() {
        assert_eq!(Data::U8(vec![3]).to_float::<f32>(), vec![3.0f32]);
        assert_eq!(Data::F64(vec![0.1]).to_float::<f32>(), vec![0.1f32]);
        assert_eq!(Data::I64(vec![-2]).dtype(), "int64");
    }
}
