//! `softmax` and `log_softmax` over the class dimension, forward and backward.

use super::check_len;
use crate::dtype::Element;
use crate::entry::ElementEntry as Sealed;
use crate::error::Result;
use crate::kernels::ptr::{ConstPtr, Ptr};
use crate::layout::Layout;

fn forward_into<T: Element>(input: &[T], shape: &[usize], out: &mut [T], log: bool) -> Result<()> {
    let layout = Layout::new(shape, input.len())?;
    check_len("out", out.len(), input.len())?;
    let dims = layout.driver_dims();
    <T as Sealed>::run_softmax(ConstPtr::new(input), Ptr::new(out), dims, log);
    Ok(())
}

fn backward_into<T: Element>(
    output: &[T],
    grad_output: &[T],
    shape: &[usize],
    grad_input: &mut [T],
    log: bool,
) -> Result<()> {
    let layout = Layout::new(shape, output.len())?;
    check_len("grad_output", grad_output.len(), output.len())?;
    check_len("grad_input", grad_input.len(), output.len())?;
    let dims = layout.driver_dims();
    <T as Sealed>::run_softmax_backward(
        ConstPtr::new(output),
        ConstPtr::new(grad_output),
        Ptr::new(grad_input),
        dims,
        log,
    );
    Ok(())
}

/// `p_c = exp(x_c − m) / Σ_j exp(x_j − m)` over the class dim (dim 0 of `(C,)`, dim 1
/// otherwise), `m` the row max, written into `out`.
///
/// # Errors
/// [`crate::Error::BadShape`] / [`crate::Error::NoClasses`] for a bad shape,
/// [`crate::Error::OutputLength`] when `out` is not the input's size.
///
/// ```
/// let mut p = [0.0f32; 3];
/// xent::softmax_into(&[1.0, 2.0, 3.0], &[3], &mut p)?;
/// assert!((p[2] - 0.66524096).abs() < 1e-7);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax_into<T: Element>(input: &[T], shape: &[usize], out: &mut [T]) -> Result<()> {
    forward_into(input, shape, out, false)
}

/// `ℓ_c = (x_c − m) − ln Σ_j exp(x_j − m)` over the class dim, written into `out`;
/// never computed as `ln(softmax)`, which underflows to `−inf`.
///
/// # Errors
/// As [`softmax_into`].
///
/// ```
/// let mut l = [0.0f64; 2];
/// xent::log_softmax_into(&[0.0, -1000.0], &[2], &mut l)?;
/// assert_eq!(l[1], -1000.0); // ln(softmax) would give -inf
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax_into<T: Element>(input: &[T], shape: &[usize], out: &mut [T]) -> Result<()> {
    forward_into(input, shape, out, true)
}

/// [`softmax_into`] into a new buffer.
///
/// # Errors
/// As [`softmax_into`].
///
/// ```
/// let p = xent::softmax(&[1.0f64, 2.0, 3.0], &[1, 3])?;
/// assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-15);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax<T: Element>(input: &[T], shape: &[usize]) -> Result<Vec<T>> {
    Layout::new(shape, input.len())?;
    let mut out = crate::alloc::zeroed_vec("output", shape)?;
    softmax_into(input, shape, &mut out)?;
    Ok(out)
}

/// [`log_softmax_into`] into a new buffer.
///
/// # Errors
/// As [`softmax_into`].
///
/// ```
/// let l = xent::log_softmax(&[1.0f64, 2.0, 3.0], &[3])?;
/// assert!((l[0] + 2.40760596).abs() < 1e-8);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax<T: Element>(input: &[T], shape: &[usize]) -> Result<Vec<T>> {
    Layout::new(shape, input.len())?;
    let mut out = crate::alloc::zeroed_vec("output", shape)?;
    log_softmax_into(input, shape, &mut out)?;
    Ok(out)
}

/// Backward of softmax from its output `p`: `gx = p·(gy − Σ_c gy_c·p_c)` per row.
///
/// # Errors
/// As [`softmax_into`], and [`crate::Error::OutputLength`] when `grad_output` or
/// `grad_input` is not the output's size.
///
/// ```
/// let p = xent::softmax(&[1.0f64, 2.0], &[2])?;
/// let mut gx = [0.0; 2];
/// xent::softmax_backward_into(&p, &[1.0, 1.0], &[2], &mut gx)?; // d(Σp)/dx = 0
/// assert!(gx.iter().all(|g| g.abs() < 1e-16));
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax_backward_into<T: Element>(
    output: &[T],
    grad_output: &[T],
    shape: &[usize],
    grad_input: &mut [T],
) -> Result<()> {
    backward_into(output, grad_output, shape, grad_input, false)
}

/// Backward of log_softmax from its output `ℓ`: `gx = gy − exp(ℓ)·Σ_c gy_c` per row.
///
/// # Errors
/// As [`softmax_backward_into`].
///
/// ```
/// let l = xent::log_softmax(&[1.0f64, 2.0, 3.0], &[3])?;
/// let mut gx = [0.0; 3];
/// // d(−ℓ_2)/dx = softmax(x) − onehot(2)
/// xent::log_softmax_backward_into(&l, &[0.0, 0.0, -1.0], &[3], &mut gx)?;
/// assert!((gx[2] - (0.66524096 - 1.0)).abs() < 1e-8);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax_backward_into<T: Element>(
    output: &[T],
    grad_output: &[T],
    shape: &[usize],
    grad_input: &mut [T],
) -> Result<()> {
    backward_into(output, grad_output, shape, grad_input, true)
}
