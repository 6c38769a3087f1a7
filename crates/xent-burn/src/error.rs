//! The typed error of every xent-burn function: bad input never panics.

use core::fmt;

/// What was wrong with the input. xent's own errors come through unchanged
/// ([`Error::Xent`]); the other variants are about burn tensors (dtype, device, rank).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use xent_burn::{cross_entropy, CrossEntropyOptions, Error};
/// let dev = Device::flex();
/// let logits = Tensor::<2>::zeros([2, 5], &dev);
/// let targets = Tensor::<1, Int>::from_ints([1, 7], &dev);
/// let err = cross_entropy(logits, targets, &CrossEntropyOptions::default()).unwrap_err();
/// assert_eq!(err.to_string(), "target 7 at index [1] is out of bounds for 5 classes");
/// assert!(matches!(err, Error::Xent(xent::Error::TargetOutOfBounds { .. })));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// xent rejected the input or the options; its message names the value and where it is.
    Xent(xent::Error),
    /// A tensor's dtype is not one this argument takes.
    DType {
        /// Which argument.
        what: &'static str,
        /// Its dtype.
        dtype: String,
        /// The dtypes it may have.
        expected: &'static str,
    },
    /// A tensor's shape does not fit the others.
    Shape {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// The shape it must have.
        expected: Vec<usize>,
    },
    /// A tensor is on another device than the first input.
    Device {
        /// Which argument.
        what: &'static str,
        /// Its device.
        device: String,
        /// The first input's device.
        expected: String,
    },
    /// The backend failed to read a tensor (the composed path reads targets to check them).
    Backend(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xent(e) => e.fmt(f),
            Error::DType {
                what,
                dtype,
                expected,
            } => write!(f, "{what} has dtype {dtype}, expected {expected}"),
            Error::Shape {
                what,
                shape,
                expected,
            } => write!(f, "{what} has shape {shape:?}, expected {expected:?}"),
            Error::Device {
                what,
                device,
                expected,
            } => write!(f, "{what} is on device {device}, expected {expected}"),
            Error::Backend(e) => write!(f, "the backend failed to read a tensor: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<xent::Error> for Error {
    fn from(e: xent::Error) -> Self {
        Error::Xent(e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
