//! Where a call runs (xent's kernels or the composed fallback) and the checks every
//! call passes first, on either path, so that both give the same errors.

use burn::backend::{Dispatch, DispatchTensor, DispatchTensorKind};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::extension::XentBackend;
use crate::plan::Plan;

/// Which implementation computes a loss.
///
/// ```
/// use xent_burn::{CrossEntropyOptions, Implementation};
/// let opts = CrossEntropyOptions::default().implementation(Implementation::Composed);
/// assert_eq!(opts.implementation, Implementation::Composed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Implementation {
    /// xent's fused kernels where the tensors' backend lends them its memory (Flex,
    /// NdArray, and `Autodiff` over them); burn's composed ops on every other backend.
    #[default]
    Auto,
    /// burn's composed tensor ops, differentiated by burn's autodiff, on every backend:
    /// what GPU backends run. On the CPU it checks the two paths against each other.
    Composed,
}

/// Whether xent's kernels can run on this tensor's backend.
fn has_kernels(t: &DispatchTensor) -> bool {
    fn cpu(k: &DispatchTensorKind) -> bool {
        #[allow(unreachable_patterns)] // other backends exist when their features are on
        match k {
            DispatchTensorKind::Flex(_) | DispatchTensorKind::NdArray(_) => true,
            DispatchTensorKind::Autodiff(inner) => cpu(inner),
            _ => false,
        }
    }
    cpu(&t.kind)
}

/// Whether this call runs on xent's kernels.
pub(crate) fn fused<const D: usize>(implementation: Implementation, first: &Tensor<D>) -> bool {
    implementation == Implementation::Auto && has_kernels(&first.clone().into_dispatch())
}

/// Runs `plan` through the backend extension.
pub(crate) fn run_fused(
    plan: Plan,
    inputs: Vec<DispatchTensor>,
    targets: Option<DispatchTensor>,
    device: &Device,
) -> Result<Tensor<1>> {
    let targets = targets.unwrap_or_else(|| Tensor::<1, Int>::zeros([1], device).into_dispatch());
    let mut it = inputs.into_iter();
    let a = it.next().ok_or(Error::Shape {
        what: "inputs",
        shape: vec![0],
        expected: vec![1],
    })?;
    let b = it.next().unwrap_or_else(|| a.clone());
    let c = it.next().unwrap_or_else(|| a.clone());
    match <Dispatch as XentBackend>::xent_loss(a, b, c, targets, plan) {
        (_, Some(e)) => Err(e),
        (Some(loss), None) => Ok(Tensor::from_dispatch(loss)),
        (None, None) => Err(Error::Backend("the loss operation returned nothing".into())),
    }
}

/// Checks that a tensor holds floats.
pub(crate) fn check_float<const D: usize>(what: &'static str, t: &Tensor<D>) -> Result<()> {
    let d = t.dtype();
    if d.is_float() {
        Ok(())
    } else {
        Err(Error::DType {
            what,
            dtype: format!("{d:?}"),
            expected: "a float dtype",
        })
    }
}

/// Checks that a tensor is on the first input's device.
pub(crate) fn check_device(what: &'static str, device: &Device, expected: &Device) -> Result<()> {
    if device == expected {
        Ok(())
    } else {
        Err(Error::Device {
            what,
            device: format!("{device:?}"),
            expected: format!("{expected:?}"),
        })
    }
}

/// Checks that `t` has the shape `expected`.
pub(crate) fn check_shape<const D: usize>(
    what: &'static str,
    dims: [usize; D],
    expected: &[usize],
) -> Result<()> {
    if dims[..] == *expected {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            shape: dims.to_vec(),
            expected: expected.to_vec(),
        })
    }
}

/// A small tensor (class weights, `pos_weight`) read into host memory.
pub(crate) fn host_f64(what: &'static str, t: &Tensor<1>, device: &Device) -> Result<Vec<f64>> {
    check_float(what, t)?;
    check_device(what, &t.device(), device)?;
    let data = t
        .clone()
        .try_into_data()
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    Ok(data.iter::<f64>().collect())
}

fn read(t: Tensor<1, Int>) -> Result<TensorData> {
    t.try_into_data()
        .map_err(|e| Error::Backend(format!("{e:?}")))
}

fn any(b: Tensor<1, Bool>) -> Result<bool> {
    b.any()
        .try_into_data()
        .map_err(|e| Error::Backend(format!("{e:?}")))
        .map(|d| d.iter::<bool>().next().unwrap_or(false))
}

/// The composed path's check of class indices (the kernels check them in xent): a
/// flag computed on the device, and only when it is set, the targets read to find
/// the first bad one and name it as xent does.
pub(crate) fn check_indices(
    targets: &Tensor<1, Int>,
    target_dims: &[usize],
    classes: usize,
    ignore_index: i64,
) -> Result<()> {
    let t = targets.clone();
    let bad = t
        .clone()
        .lower_elem(0)
        .bool_or(t.clone().greater_equal_elem(classes as i64))
        .bool_and(t.not_equal_elem(ignore_index));
    if !any(bad)? {
        return Ok(());
    }
    let values: Vec<i64> = read(targets.clone())?.iter::<i64>().collect();
    let (i, &v) = values
        .iter()
        .enumerate()
        .find(|&(_, &v)| v != ignore_index && (v < 0 || v as u128 >= classes as u128))
        .ok_or_else(|| Error::Backend("the targets changed while being read".into()))?;
    let mut index = vec![0; target_dims.len()];
    let mut rest = i;
    for (k, &d) in target_dims.iter().enumerate().rev() {
        index[k] = rest % d.max(1);
        rest /= d.max(1);
    }
    Err(Error::Xent(xent::Error::TargetOutOfBounds {
        target: v as i128,
        index,
        classes,
    }))
}
