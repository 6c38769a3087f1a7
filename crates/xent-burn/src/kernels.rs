//! The CPU backends' side: their tensors' memory lent to xent's kernels.
//!
//! - **Flex** (`burn-flex`, burn's CPU backend since 0.22): a contiguous tensor is read
//!   in place (`FlexTensor::as_slice`), in every float dtype (`f32`, `f64`, `bf16`,
//!   `f16`) and every integer dtype of class indices; the loss and gradients xent
//!   writes become tensors without a copy (`TensorData` takes the `Vec`).
//! - **NdArray** (`burn-ndarray`, deprecated by burn in favour of Flex): a tensor in
//!   standard layout is read in place (`f32`, `f64`; NdArray has no `bf16`/`f16`).
//!
//! A tensor that is not contiguous (a transposed or sliced view) is copied into a
//! contiguous buffer first.

use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
#[allow(deprecated)]
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
#[allow(deprecated)]
use burn::backend::NdArray;
use burn::backend::{Backend, Flex, TensorMetadata};
use burn::tensor::{DType, Element as BurnElement, TensorData};

use crate::error::{Error, Result};
use crate::host::{self, Call, HostData, HostIndices, HostVec};
use crate::plan::Plan;

/// A CPU backend whose tensors xent's kernels read and write directly: implemented
/// for [`Flex`] and [`NdArray`]. Sealed: its methods take this crate's host types.
pub trait XentKernels: Backend {
    /// The elements of a float tensor, borrowed when its layout is contiguous.
    #[doc(hidden)]
    fn float_host(t: &FloatTensor<Self>) -> Result<HostData<'_>>;
    /// The elements of an integer tensor of class indices, borrowed likewise.
    #[doc(hidden)]
    fn int_host(t: &IntTensor<Self>) -> Result<HostIndices<'_>>;
}

fn dtype_error(what: &'static str, dtype: DType, expected: &'static str) -> Error {
    Error::DType {
        what,
        dtype: format!("{dtype:?}"),
        expected,
    }
}

const FLOATS: &str = "float32, float64, bfloat16 or float16";
const INTS: &str = "an integer dtype";

/// A contiguous view of a Flex tensor, or a contiguous copy of a strided one.
fn flex_slice<E: BurnElement + bytemuck::Pod>(t: &FlexTensor) -> Cow<'_, [E]> {
    match t.as_slice::<E>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.to_contiguous().as_slice::<E>().unwrap_or(&[]).to_vec()),
    }
}

impl XentKernels for Flex {
    fn float_host(t: &FlexTensor) -> Result<HostData<'_>> {
        Ok(match t.dtype() {
            DType::F32 => HostData::F32(flex_slice(t)),
            DType::F64 => HostData::F64(flex_slice(t)),
            DType::BF16 => HostData::Bf16(flex_slice(t)),
            DType::F16 => HostData::F16(flex_slice(t)),
            d => return Err(dtype_error("input", d, FLOATS)),
        })
    }
    fn int_host(t: &FlexTensor) -> Result<HostIndices<'_>> {
        Ok(match t.dtype() {
            DType::I64 => HostIndices::I64(flex_slice(t)),
            DType::I32 => HostIndices::I32(flex_slice(t)),
            DType::I16 => HostIndices::I16(flex_slice(t)),
            DType::I8 => HostIndices::I8(flex_slice(t)),
            DType::U64 => HostIndices::U64(flex_slice(t)),
            DType::U32 => HostIndices::U32(flex_slice(t)),
            DType::U16 => HostIndices::U16(flex_slice(t)),
            DType::U8 => HostIndices::U8(flex_slice(t)),
            d => return Err(dtype_error("targets", d, INTS)),
        })
    }
}

/// A standard-layout view of an NdArray storage, or a row-major copy.
macro_rules! nd_slice {
    ($s:expr) => {{
        let v = $s.view();
        match v.to_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(v.iter().copied().collect()),
        }
    }};
}

// NdArray is deprecated by burn in favour of Flex; it is supported while burn ships it.
#[allow(deprecated)]
impl XentKernels for NdArray {
    fn float_host(t: &NdArrayTensor) -> Result<HostData<'_>> {
        Ok(match t {
            NdArrayTensor::F32(s) => HostData::F32(nd_slice!(s)),
            NdArrayTensor::F64(s) => HostData::F64(nd_slice!(s)),
            other => return Err(dtype_error("input", other.dtype(), "float32 or float64")),
        })
    }
    fn int_host(t: &NdArrayTensor) -> Result<HostIndices<'_>> {
        Ok(match t {
            NdArrayTensor::I64(s) => HostIndices::I64(nd_slice!(s)),
            NdArrayTensor::I32(s) => HostIndices::I32(nd_slice!(s)),
            NdArrayTensor::I16(s) => HostIndices::I16(nd_slice!(s)),
            NdArrayTensor::I8(s) => HostIndices::I8(nd_slice!(s)),
            NdArrayTensor::U64(s) => HostIndices::U64(nd_slice!(s)),
            NdArrayTensor::U32(s) => HostIndices::U32(nd_slice!(s)),
            NdArrayTensor::U16(s) => HostIndices::U16(nd_slice!(s)),
            NdArrayTensor::U8(s) => HostIndices::U8(nd_slice!(s)),
            other => return Err(dtype_error("targets", other.dtype(), INTS)),
        })
    }
}

/// A host vector as a tensor of `shape` on `device`: `TensorData` takes the vector's
/// allocation, and the CPU backends keep it.
fn to_tensor<B: Backend>(v: HostVec, shape: Vec<usize>, device: &B::Device) -> FloatTensor<B> {
    let data = match v {
        HostVec::F32(v) => TensorData::new(v, shape),
        HostVec::F64(v) => TensorData::new(v, shape),
        HostVec::Bf16(v) => TensorData::new(v, shape),
        HostVec::F16(v) => TensorData::new(v, shape),
    };
    B::float_from_data(data, device)
}

/// The loss (shape `[1]`, or one entry per row / element) and the wanted gradients.
pub(crate) type Outputs<B> = (FloatTensor<B>, Vec<Option<FloatTensor<B>>>);

/// Runs `plan` on the backend's tensors with xent's kernels.
pub(crate) fn run<B: XentKernels>(
    plan: &Plan,
    inputs: &[FloatTensor<B>],
    targets: Option<&IntTensor<B>>,
    want: &[bool],
    grad_output: Option<&FloatTensor<B>>,
) -> Result<Outputs<B>> {
    let device = inputs.first().map(|t| t.device()).ok_or(Error::Shape {
        what: "inputs",
        shape: vec![0],
        expected: vec![1],
    })?;
    let data = inputs
        .iter()
        .map(B::float_host)
        .collect::<Result<Vec<_>>>()?;
    let idx = targets.map(B::int_host).transpose()?;
    let go = grad_output.map(B::float_host).transpose()?;
    let out = host::run(&Call {
        plan,
        inputs: &data,
        targets: idx.as_ref(),
        want,
        grad_output: go.as_ref(),
    })?;
    let loss = to_tensor::<B>(out.loss, vec![plan.loss_len()], &device);
    let grads = out
        .grads
        .into_iter()
        .zip(&plan.shapes)
        .map(|(g, s)| g.map(|g| to_tensor::<B>(g, s.clone(), &device)))
        .collect();
    Ok((loss, grads))
}
