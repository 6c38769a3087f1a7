//! The public losses: each validates its input, then hands rows to the driver.

pub(crate) mod binary;
pub(crate) mod cross_entropy;
pub(crate) mod divergence;
pub(crate) mod elementwise;
pub(crate) mod linear;
pub(crate) mod nll;
pub(crate) mod shard;
pub(crate) mod softmax;
pub(crate) mod stats;

use crate::dtype::Element;
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::kernels::ptr::{GradPtr, Ptr};
use crate::layout::Layout;
use crate::options::{GradMode, Reduction};

/// A loss value: a scalar for `mean`/`sum`, one value per row for `none`.
///
/// ```
/// use xent::{cross_entropy, CrossEntropyOptions};
/// let loss = cross_entropy(&[1.0f64, 2.0, 3.0], &[3], &[2i64][..], &CrossEntropyOptions::default())?;
/// assert!(loss.shape().is_empty());
/// assert!((loss.item().unwrap() - 0.40760596444).abs() < 1e-10);
/// assert_eq!(loss.z_loss(), None); // no z-loss asked for
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Loss<T> {
    values: Vec<T>,
    shape: Vec<usize>,
    z: Option<T>,
}

impl<T: Float> Loss<T> {
    pub(crate) fn new(values: Vec<T>, shape: Vec<usize>) -> Self {
        Loss {
            values,
            shape,
            z: None,
        }
    }
    pub(crate) fn with_z(values: Vec<T>, shape: Vec<usize>, z: Option<T>) -> Self {
        Loss { values, shape, z }
    }
    /// The values, row-major in [`Loss::shape`] (one value for a 0-d loss).
    pub fn values(&self) -> &[T] {
        &self.values
    }
    /// Consumes the loss and returns its values.
    pub fn into_values(self) -> Vec<T> {
        self.values
    }
    /// `()` for `mean`/`sum` and unbatched `none`; the input's row shape for `none`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The scalar of a 0-d loss; `None` for a per-row loss.
    pub fn item(&self) -> Option<T> {
        if self.shape.is_empty() {
            self.values.first().copied()
        } else {
            None
        }
    }
    /// The z-loss term included in the loss, reduced like it (`mean` over the rows
    /// that count, `sum`; for `none` the sum over rows); `None` without z-loss.
    pub fn z_loss(&self) -> Option<T> {
        self.z
    }
}

/// The gradient buffer of a fused call: in the logits' type, or in their compute
/// type (`f32` gradients for `bf16`/`f16` logits).
#[derive(Debug)]
pub enum GradBuf<'a, T: Element> {
    /// Same type as the logits.
    Same(&'a mut [T]),
    /// The compute type ([`Element::Acc`]).
    Acc(&'a mut [T::Acc]),
}

impl<T: Element> GradBuf<'_, T> {
    fn len(&self) -> usize {
        match self {
            GradBuf::Same(g) => g.len(),
            GradBuf::Acc(g) => g.len(),
        }
    }
    fn ptr(&mut self) -> GradPtr<T> {
        match self {
            GradBuf::Same(g) => GradPtr::Same(Ptr::new(g)),
            GradBuf::Acc(g) => GradPtr::Acc(Ptr::new(g)),
        }
    }
}

/// Where a fused call writes `∂loss/∂input`, and with which upstream gradient.
///
/// ```
/// use xent::{bf16, GradMode, GradOut};
/// let mut g = vec![0.0f32; 6];
/// let out = GradOut::new(&mut g).mode(GradMode::Accumulate);
/// assert_eq!(out.mode, GradMode::Accumulate);
/// // f32 gradients of bf16 logits:
/// let mut g32 = vec![0.0f32; 6];
/// let _ = GradOut::<bf16>::new_acc(&mut g32);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct GradOut<'a, T: Element> {
    /// The gradient buffer, the input's shape.
    pub grad: GradBuf<'a, T>,
    /// The upstream gradient: 1 element for `mean`/`sum` (default 1), the loss's
    /// per-row shape for `none` (default all 1).
    pub grad_output: Option<&'a [T::Acc]>,
    /// Overwrite the buffer or add into it.
    pub mode: GradMode,
}

impl<'a, T: Element> GradOut<'a, T> {
    /// Overwrites `grad` (the logits' type) with the gradient for upstream gradient 1.
    pub fn new(grad: &'a mut [T]) -> Self {
        GradOut {
            grad: GradBuf::Same(grad),
            grad_output: None,
            mode: GradMode::Overwrite,
        }
    }
    /// Like [`GradOut::new`], with the gradient in the compute type (`f32` for
    /// `bf16`/`f16` logits).
    pub fn new_acc(grad: &'a mut [T::Acc]) -> Self {
        GradOut {
            grad: GradBuf::Acc(grad),
            grad_output: None,
            mode: GradMode::Overwrite,
        }
    }
    /// Sets the upstream gradient.
    pub fn grad_output(mut self, grad_output: &'a [T::Acc]) -> Self {
        self.grad_output = Some(grad_output);
        self
    }
    /// Sets the write mode.
    pub fn mode(mut self, mode: GradMode) -> Self {
        self.mode = mode;
        self
    }
}

impl<'a, T: Float> GradOut<'a, T> {
    /// The buffer, upstream gradient and whether to accumulate, for types that are
    /// their own compute type (both buffer variants are then `&mut [T]`).
    pub(crate) fn into_parts(self) -> (&'a mut [T], Option<&'a [T]>, bool) {
        let acc = self.mode == GradMode::Accumulate;
        let buf = match self.grad {
            GradBuf::Same(g) => g,
            GradBuf::Acc(g) => g,
        };
        (buf, self.grad_output, acc)
    }
}

/// The loss buffer length: 1 for mean/sum, one per row for none.
pub(crate) fn loss_len(layout: &Layout, reduction: Reduction) -> usize {
    match reduction {
        Reduction::None => layout.rows(),
        Reduction::Mean | Reduction::Sum => 1,
    }
}

pub(crate) fn loss_shape(layout: &Layout, reduction: Reduction) -> Vec<usize> {
    match reduction {
        Reduction::None => layout.row_shape(),
        Reduction::Mean | Reduction::Sum => Vec::new(),
    }
}

/// A new loss buffer for `reduction` (1 element, or one per row), on huge pages when
/// large (see [`crate::alloc`]).
pub(crate) fn loss_buf<A: Float>(layout: &Layout, reduction: Reduction) -> Result<Vec<A>> {
    crate::alloc::zeroed_vec("loss", &loss_shape(layout, reduction))
}

pub(crate) fn check_len(name: &'static str, len: usize, expected: usize) -> Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::OutputLength {
            name,
            expected,
            len,
        })
    }
}

pub(crate) fn check_weight<T>(weight: Option<&[T]>, layout: &Layout) -> Result<()> {
    match weight {
        Some(w) if w.len() != layout.classes() => Err(Error::WeightLength {
            len: w.len(),
            classes: layout.classes(),
        }),
        _ => Ok(()),
    }
}

/// Checks class-index targets: one per row, each in `[0, C)` or `ignore_index`.
pub(crate) fn check_indices(
    target: &ClassIndices<'_>,
    layout: &Layout,
    ignore_index: i64,
) -> Result<()> {
    if target.len() != layout.rows() {
        // With flat targets the batch size is only known for (N, C) inputs.
        return Err(if layout.inner() == 1 && !layout.is_unbatched() {
            Error::BatchMismatch {
                input: layout.outer(),
                target: target.len(),
            }
        } else {
            Error::TargetShape {
                expected: layout.row_shape(),
                len: target.len(),
            }
        });
    }
    match crate::kernels::scan::first_invalid(target, layout.classes(), ignore_index) {
        None => Ok(()),
        Some(r) => Err(Error::TargetOutOfBounds {
            target: target.get(r),
            index: layout.row_index(r),
            classes: layout.classes(),
        }),
    }
}

/// Validates the gradient buffer and upstream gradient.
pub(crate) fn check_grad<T: Element>(
    grad: &GradOut<'_, T>,
    layout: &Layout,
    reduction: Reduction,
) -> Result<()> {
    check_len("grad", grad.grad.len(), layout.numel())?;
    check_grad_output(grad.grad_output, layout, reduction)
}

pub(crate) fn check_grad_output<A>(
    grad_output: Option<&[A]>,
    layout: &Layout,
    reduction: Reduction,
) -> Result<()> {
    if let Some(go) = grad_output {
        if go.len() != loss_len(layout, reduction) {
            return Err(Error::GradOutputShape {
                expected: loss_shape(layout, reduction),
                len: go.len(),
            });
        }
    }
    Ok(())
}

/// The scalar upstream gradient of a mean/sum loss (1 when not given).
pub(crate) fn scalar_upstream<A: Float>(grad_output: Option<&[A]>, reduction: Reduction) -> f64 {
    match (reduction, grad_output) {
        (Reduction::Mean | Reduction::Sum, Some(g)) => g[0].to_f64(),
        _ => 1.0,
    }
}
