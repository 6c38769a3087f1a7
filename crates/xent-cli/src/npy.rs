//! `.npy` files: reading integer and float arrays with their shape, writing `f32`/`f64`.
//!
//! Reading keeps the file's element type ([`Data`]) so that class-index targets reach
//! the library in their own integer type, never cast. Fortran-ordered files are
//! reordered to C order. Writing serializes into memory ([`encode`]); the caller puts
//! the bytes on disk only once everything has been computed.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use npyz::WriterBuilder;
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

/// The longest header accepted, as NumPy's `np.load` (`max_header_size`): a plain
/// array's header is under 200 bytes, and a longer one is refused before it is read.
pub const MAX_HEADER_LEN: usize = 10_000;

/// Reads `path` as an integer (`i8`…`u64`) or float (`f32`, `f64`) array of any
/// endianness, in C or Fortran order.
///
/// # Errors
/// A [`Failure`] naming the file when it cannot be opened, is not a `.npy` file, is
/// truncated or longer than its header says, has a shape whose size overflows, or
/// holds another dtype (bool, float16, complex, strings, records, objects).
pub fn read(path: &Path) -> Result<Array, Failure> {
    let shown = path.display().to_string();
    let io_err = |e: io::Error| Failure::new(format!("cannot read {shown}: {e}"));
    let file = File::open(path).map_err(io_err)?;
    // The length of a regular file sizes the buffer once; a pipe's is unknown.
    let len = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    read_from(file, len, &shown)
}

/// [`read`] on the bytes of a `.npy` file in memory; `name` names them in messages.
///
/// # Errors
/// As [`read`].
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Array, Failure> {
    read_from(bytes, Some(bytes.len() as u64), name)
}

/// Reads a `.npy` stream of `len` bytes in all (`None`: unknown, read to its end).
///
/// The header is parsed here rather than by `npyz`, whose reader multiplies the
/// shape's dims unchecked (a panic in debug builds, a wrapped element count in
/// release: a `(2, 2⁶³)` header then reads as 0 elements). The element count and its
/// byte size are checked products, compared with the bytes that follow the header
/// before anything is allocated for them.
fn read_from(mut r: impl Read, len: Option<u64>, shown: &str) -> Result<Array, Failure> {
    let invalid = |why: String| Failure::new(format!("{shown} is not a valid .npy file: {why}"));
    let io_err = |e: io::Error| Failure::new(format!("cannot read {shown}: {e}"));
    let mut pre = [0u8; 8];
    read_exact(&mut r, &mut pre)
        .map_err(io_err)?
        .then_some(())
        .ok_or_else(|| invalid("shorter than the 8-byte preamble".into()))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(invalid("no \\x93NUMPY magic string".into()));
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => {
            return Err(invalid(format!(
                "unsupported format version {major}.{minor}"
            )))
        }
    };
    let mut hl = [0u8; 4];
    if !read_exact(&mut r, &mut hl[..len_bytes]).map_err(io_err)? {
        return Err(invalid("truncated header length".into()));
    }
    let header_len = u32::from_le_bytes(hl) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(invalid(format!(
            "header of {header_len} bytes, longer than the {MAX_HEADER_LEN} accepted"
        )));
    }
    let mut text = vec![0u8; header_len];
    if !read_exact(&mut r, &mut text).map_err(io_err)? {
        return Err(invalid(format!(
            "truncated header ({header_len} bytes announced)"
        )));
    }
    let header = Header::parse(&text).map_err(|e| invalid(format!("header: {e}")))?;
    let Some(ty) = header.ty else {
        return Err(Failure::new(format!(
            "{shown} has unsupported dtype {}: expected an integer, float32 or float64 array",
            header.descr
        )));
    };
    let numel = header
        .shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .map(|n| if header.shape.contains(&0) { 0 } else { n })
        .and_then(|n| n.checked_mul(ty.size).map(|bytes| (n, bytes)));
    let Some((numel, bytes)) = numel else {
        return Err(invalid(format!(
            "shape {:?} of {} has more elements than fit in memory",
            header.shape, header.descr
        )));
    };
    let data_len = len.map(|l| l.saturating_sub((8 + len_bytes + header_len) as u64));
    if let Some(have) = data_len {
        if have != bytes as u64 {
            return Err(invalid(format!(
                "shape {:?} of {} needs {bytes} bytes of data, the file has {have}",
                header.shape, header.descr
            )));
        }
    }
    let mut data = match (ty.kind, ty.size) {
        (Kind::Int, 1) => Data::I8(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Int, 2) => Data::I16(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Int, 4) => Data::I32(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Int, 8) => Data::I64(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Uint, 1) => Data::U8(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Uint, 2) => Data::U16(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Uint, 4) => Data::U32(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Uint, 8) => Data::U64(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Float, 4) => Data::F32(decode(&mut r, numel, ty.little, shown)?),
        (Kind::Float, 8) => Data::F64(decode(&mut r, numel, ty.little, shown)?),
        _ => unreachable!("Header::parse gives only the sizes listed"),
    };
    let mut extra = [0u8; 1];
    if read_exact(&mut r, &mut extra).map_err(io_err)? {
        return Err(invalid(format!(
            "more data than the {bytes} bytes its shape {:?} of {} needs",
            header.shape, header.descr
        )));
    }
    if header.fortran_order {
        with_data!(&mut data, v => *v = fortran_to_c(v, &header.shape));
    }
    Ok(Array {
        shape: header.shape,
        data,
    })
}

/// Fills `buf`; `Ok(false)` when the stream ends first (anywhere in `buf`).
fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// An element type the reader decodes, from its bytes in either byte order.
trait Scalar: Sized + Copy {
    /// Bytes per element.
    const SIZE: usize;
    /// The element from `SIZE` bytes, little- or big-endian.
    fn from_bytes(b: &[u8], little: bool) -> Self;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_bytes(b: &[u8], little: bool) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                if little { <$t>::from_le_bytes(a) } else { <$t>::from_be_bytes(a) }
            }
        }
    )*};
}
scalar!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

/// Decodes `count` elements, 64 KiB of the stream at a time. The vector grows with
/// the bytes actually read: a header that announces more elements than the stream
/// holds (for a stream of unknown length) fails at its end, never by allocating for
/// the announced count up front.
fn decode<T: Scalar>(
    r: &mut impl Read,
    count: usize,
    little: bool,
    shown: &str,
) -> Result<Vec<T>, Failure> {
    const CHUNK: usize = 1 << 16;
    let mut out: Vec<T> = Vec::new();
    let mut buf = vec![0u8; CHUNK / T::SIZE * T::SIZE];
    while out.len() < count {
        let n = (count - out.len()).min(buf.len() / T::SIZE);
        let bytes = &mut buf[..n * T::SIZE];
        let complete =
            read_exact(r, bytes).map_err(|e| Failure::new(format!("cannot read {shown}: {e}")))?;
        if !complete {
            return Err(Failure::new(format!(
                "{shown} is not a valid .npy file: its data ends before the {count} elements \
                 its header announces"
            )));
        }
        out.try_reserve(n).map_err(|_| {
            Failure::new(format!(
                "cannot read {shown}: no memory for its {count} elements"
            ))
        })?;
        out.extend(
            bytes
                .chunks_exact(T::SIZE)
                .map(|b| T::from_bytes(b, little)),
        );
    }
    Ok(out)
}

/// The element kinds the reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Uint,
    Float,
}

/// A supported element type: kind, bytes, byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Type {
    kind: Kind,
    size: usize,
    little: bool,
}

/// The three entries of a `.npy` header.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    /// `descr` as written (a type string, or the text of a record dtype's list).
    descr: String,
    /// The type, when `descr` is one the reader decodes.
    ty: Option<Type>,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A Python literal of a `.npy` header: the subset `np.save` writes (`str`, `int`,
/// `bool`, tuples, lists and one dict).
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    /// A non-negative integer that fits in `usize`, or `None` for one that does not.
    Int(Option<usize>),
    Neg,
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

/// Nesting accepted in a header literal: record dtypes nest a few levels; a hostile
/// `((((…` must not exhaust the stack.
const MAX_DEPTH: usize = 32;

impl Header {
    fn parse(text: &[u8]) -> Result<Header, String> {
        let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let dict = p.value(0)?;
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected text after the dict at byte {}", p.i));
        }
        let Lit::Dict(entries) = dict else {
            return Err("not a dict".into());
        };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        for (k, v) in entries {
            let Lit::Str(k) = k else {
                return Err("a key is not a string".into());
            };
            let slot = match k.as_str() {
                "descr" => &mut descr,
                "fortran_order" => &mut fortran,
                "shape" => &mut shape,
                other => return Err(format!("unexpected key {other:?}")),
            };
            if slot.replace(v).is_some() {
                return Err(format!("key {k:?} appears twice"));
            }
        }
        let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
            return Err("the keys descr, fortran_order and shape are not all there".into());
        };
        let Lit::Bool(fortran_order) = fortran else {
            return Err("fortran_order is not True or False".into());
        };
        let Lit::Tuple(dims) = shape else {
            return Err("shape is not a tuple".into());
        };
        let shape = dims
            .iter()
            .map(|d| match d {
                Lit::Int(Some(d)) => Ok(*d),
                Lit::Int(None) => Err("a dimension of the shape exceeds usize".to_string()),
                _ => Err("a dimension of the shape is not a non-negative integer".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (descr, ty) = match descr {
            Lit::Str(d) => {
                let ty = parse_type(&d)?;
                (d, ty)
            }
            Lit::List(_) => ("a record dtype".to_string(), None),
            _ => return Err("descr is neither a type string nor a record list".into()),
        };
        Ok(Header {
            descr,
            ty,
            fortran_order,
            shape,
        })
    }
}

/// A NumPy type string (`<f4`, `|u1`, `>i8`, …): `Ok(None)` for a well-formed type the
/// reader does not decode (`|b1`, `<f2`, `<c8`, `<U3`, …).
fn parse_type(d: &str) -> Result<Option<Type>, String> {
    let bad = || format!("descr {d:?} is not a NumPy type string");
    let mut chars = d.chars();
    let order = chars.next().ok_or_else(bad)?;
    let little = match order {
        '<' => true,
        '>' => false,
        '|' | '=' => cfg!(target_endian = "little"),
        _ => return Err(bad()),
    };
    let kind = chars.next().ok_or_else(bad)?;
    let rest = chars.as_str();
    let Ok(size) = rest.parse::<usize>() else {
        // `<M8[ns]`, `|V16` with extras, … are well-formed enough to name.
        return if kind.is_ascii_alphabetic() {
            Ok(None)
        } else {
            Err(bad())
        };
    };
    let kind = match kind {
        'i' => Kind::Int,
        'u' => Kind::Uint,
        'f' => Kind::Float,
        _ => return Ok(None),
    };
    let supported = match kind {
        Kind::Int | Kind::Uint => matches!(size, 1 | 2 | 4 | 8),
        Kind::Float => matches!(size, 4 | 8),
    };
    if !supported {
        return Ok(None);
    }
    if order == '|' && size != 1 {
        return Err(format!(
            "descr {d:?}: '|' (no byte order) on a {size}-byte type"
        ));
    }
    Ok(Some(Type { kind, size, little }))
}

/// A recursive-descent parser of [`Lit`].
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let at = self.i;
        match self.peek() {
            None => Err("ends where a value should be".into()),
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != q {
                    if self.s[self.i] == b'\\' {
                        return Err(format!("escape in a string at byte {}", self.i));
                    }
                    self.i += 1;
                }
                if self.i == self.s.len() {
                    return Err(format!("string at byte {at} is not closed"));
                }
                let text = std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| "not UTF-8 text".to_string())?
                    .to_string();
                self.i += 1;
                Ok(Lit::Str(text))
            }
            Some(b'(') => {
                self.i += 1;
                let (items, comma) = self.items(b')', depth)?;
                // `(3)` is the integer 3 in Python, `(3,)` the tuple.
                if items.len() == 1 && !comma {
                    Ok(items.into_iter().next().expect("one item"))
                } else {
                    Ok(Lit::Tuple(items))
                }
            }
            Some(b'[') => {
                self.i += 1;
                Ok(Lit::List(self.items(b']', depth)?.0))
            }
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Lit::Dict(entries));
                    }
                    let k = self.value(depth + 1)?;
                    if self.peek() != Some(b':') {
                        return Err(format!("expected ':' at byte {}", self.i));
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                    }
                }
            }
            Some(b'-') => {
                self.i += 1;
                match self.int()? {
                    Lit::Int(Some(0)) => Ok(Lit::Int(Some(0))),
                    _ => Ok(Lit::Neg),
                }
            }
            Some(b'0'..=b'9') => self.int(),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphabetic() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    _ => Err(format!("unexpected character at byte {start}")),
                }
            }
        }
    }

    /// Digits, with the `L` suffix of headers written by Python 2.
    fn int(&mut self) -> Result<Lit, String> {
        let start = self.i;
        let mut v: Option<usize> = Some(0);
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            let digit = (self.s[self.i] - b'0') as usize;
            v = v
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(digit));
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("expected digits at byte {start}"));
        }
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        Ok(Lit::Int(v))
    }

    /// Comma-separated values up to `close`; also whether a comma was seen.
    fn items(&mut self, close: u8, depth: usize) -> Result<(Vec<Lit>, bool), String> {
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok((items, comma));
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    comma = true;
                }
                Some(c) if c == close => {}
                _ => {
                    return Err(format!(
                        "expected ',' or '{}' at byte {}",
                        close as char, self.i
                    ))
                }
            }
        }
    }
}

/// Reorders column-major (first index fastest) elements to row-major.
fn fortran_to_c<T: Copy>(flat: &[T], shape: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(flat.len());
    if flat.is_empty() {
        return out;
    }
    // Fortran strides: 1, d0, d0·d1, …; no dim is 0 here and the reader checked that
    // their product fits, so no partial product overflows.
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
/// memory, little-endian: the float outputs, and the int64 argmax.
///
/// # Errors
/// When the number of values is not the product of `shape`.
pub fn encode<T: npyz::AutoSerialize + Copy>(shape: &[usize], values: &[T]) -> io::Result<Vec<u8>> {
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
