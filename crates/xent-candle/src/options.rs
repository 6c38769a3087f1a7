//! The options of [`cross_entropy`](crate::cross_entropy) and
//! [`linear_cross_entropy`](crate::linear_cross_entropy): xent's own owned,
//! dtype-free [`xent::CrossEntropySettings`], which can live in candle's graph until
//! the backward pass, under the name this crate has always given it.

use candle_core::{DType, Result, Tensor};
pub use xent::{CrossEntropySettings as CrossEntropyOptions, Reduction, DEFAULT_IGNORE_INDEX};

/// Class weights from a tensor (any float dtype, any shape, flattened), read once
/// into `f64` for [`CrossEntropyOptions::weight`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use xent_candle::{class_weight, CrossEntropyOptions, Reduction};
/// let w = Tensor::new(&[1.0f32, 2.0, 0.5], &Device::Cpu)?;
/// let opts = CrossEntropyOptions::default()
///     .weight(class_weight(&w)?)
///     .ignore_index(-1)
///     .label_smoothing(0.1)
///     .reduction(Reduction::Sum);
/// assert_eq!(opts.weight, Some(vec![1.0, 2.0, 0.5]));
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # Errors
/// When candle cannot convert the tensor to `f64` or copy it to the CPU.
pub fn class_weight(weight: &Tensor) -> Result<Vec<f64>> {
    weight.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()
}
