//! Views of candle's CPU storage as the slices xent's kernels take, shared by every op
//! of this crate (a future linear cross-entropy reads its targets the same way).

use candle_core::{CpuStorage, DType, Error, Layout, Result, Shape, WithDType};
use xent::{ClassIndices, Targets};

/// An xent error as a candle error with xent's message.
pub(crate) fn to_candle(e: xent::Error) -> Error {
    Error::wrap(e)
}

/// The `[start, end)` of a contiguous layout's elements in its storage.
fn offsets(layout: &Layout, what: &str) -> Result<(usize, usize)> {
    layout.contiguous_offsets().ok_or_else(|| {
        Error::msg(format!(
            "xent: {what} must be contiguous (call `.contiguous()` first)"
        ))
    })
}

/// The elements of a contiguous tensor of dtype `T`.
pub(crate) fn floats<'a, T: WithDType>(
    s: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    let (a, b) = offsets(layout, what)?;
    Ok(&T::cpu_storage_as_slice(s)?[a..b])
}

/// Class indices (any integer dtype candle has) or probabilities (dtype `T`).
pub(crate) fn targets<'a, T: WithDType + xent::Element>(
    s: &'a CpuStorage,
    layout: &Layout,
) -> Result<Targets<'a, T>> {
    let (a, b) = offsets(layout, "targets")?;
    let indices = match s {
        CpuStorage::U8(v) => ClassIndices::U8(&v[a..b]),
        CpuStorage::U32(v) => ClassIndices::U32(&v[a..b]),
        CpuStorage::I16(v) => ClassIndices::I16(&v[a..b]),
        CpuStorage::I32(v) => ClassIndices::I32(&v[a..b]),
        CpuStorage::I64(v) => ClassIndices::I64(&v[a..b]),
        _ => return Ok(Targets::Probabilities(floats::<T>(s, layout, "targets")?)),
    };
    Ok(Targets::Indices(indices))
}

/// Whether a dtype holds class indices (else it must hold probabilities).
pub(crate) fn is_index_dtype(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64
    )
}

/// The dtype xent computes and returns the loss in: `f64` for `f64` logits, else `f32`.
pub(crate) fn acc_dtype(logits: DType) -> DType {
    if logits == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The shape of the loss: `()` for `mean`/`sum`; for `none` the logits' shape without
/// the class dimension (dim 1, or dim 0 of an unbatched `(C,)` input).
pub(crate) fn loss_shape(dims: &[usize], reduction: xent::Reduction) -> Shape {
    match reduction {
        xent::Reduction::None if dims.len() >= 2 => {
            let mut d = dims.to_vec();
            d.remove(1);
            Shape::from(d)
        }
        _ => Shape::from(()),
    }
}
