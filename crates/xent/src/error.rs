//! The typed error every public function returns on bad input.

use core::fmt;

/// What was wrong with the input. Every message names the offending value and,
/// where it has one, its position, in PyTorch's words where PyTorch has them.
///
/// ```
/// use xent::{cross_entropy, CrossEntropyOptions, Error};
/// let logits = [0.0f32; 10];
/// let err = cross_entropy(&logits, &[2, 5], &[1i64, 7][..], &CrossEntropyOptions::default())
///     .unwrap_err();
/// assert_eq!(err, Error::TargetOutOfBounds { target: 7, index: vec![1], classes: 5 });
/// assert_eq!(err.to_string(), "target 7 at index [1] is out of bounds for 5 classes");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The shape has no class dimension (0-d) or the data length does not match it.
    BadShape {
        /// The shape given.
        shape: Vec<usize>,
        /// The number of elements given.
        len: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The class dimension has size 0.
    NoClasses {
        /// The shape given.
        shape: Vec<usize>,
    },
    /// Input and target have different batch sizes.
    BatchMismatch {
        /// Batch size (dim 0) of the input.
        input: usize,
        /// Batch size (dim 0) of the target.
        target: usize,
    },
    /// A target (class-index or probability) of the wrong shape.
    TargetShape {
        /// The shape the target must have.
        expected: Vec<usize>,
        /// The number of target elements given.
        len: usize,
    },
    /// A class-index target outside `[0, C)` that is not `ignore_index`.
    TargetOutOfBounds {
        /// The target's value.
        target: i128,
        /// Its position in the target array.
        index: Vec<usize>,
        /// The number of classes C.
        classes: usize,
    },
    /// The class-weight vector does not have exactly C entries.
    WeightLength {
        /// Entries given.
        len: usize,
        /// The number of classes C.
        classes: usize,
    },
    /// `label_smoothing` outside `[0, 1]` (or NaN).
    LabelSmoothing {
        /// The value given.
        value: f64,
    },
    /// Probability targets given with a non-negative `ignore_index`.
    IgnoreIndexWithProbabilities {
        /// The `ignore_index` given.
        ignore_index: i64,
    },
    /// Probability targets that are not floating point.
    NonFloatProbabilities {
        /// The dtype given.
        dtype: String,
    },
    /// An upstream gradient (`grad_output`) of the wrong length.
    GradOutputShape {
        /// The shape it must have.
        expected: Vec<usize>,
        /// The number of elements given.
        len: usize,
    },
    /// An output buffer of the wrong length.
    OutputLength {
        /// Which buffer.
        name: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length given.
        len: usize,
    },
    /// An argument value outside its domain.
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// The value given, as text.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// An element outside the domain its argument requires (a probability outside
    /// `[0, 1]`, NaN included).
    ValueOutOfRange {
        /// The argument's name (`input`, `target`, …).
        name: &'static str,
        /// The element's value.
        value: f64,
        /// Its position in the argument's shape.
        index: Vec<usize>,
        /// What it must be.
        expected: &'static str,
    },
    /// A weight-like argument whose length broadcasts neither as the input's shape nor
    /// along its last dimension.
    BroadcastShape {
        /// The argument's name (`weight`, `pos_weight`).
        name: &'static str,
        /// Its number of elements.
        len: usize,
        /// The input's shape it must broadcast to.
        shape: Vec<usize>,
        /// The lengths that would broadcast.
        allowed: Vec<usize>,
    },
    /// An operand whose length does not match the shape it was given
    /// (`linear_weight has 11 elements, expected shape [4, 3]`).
    OperandShape {
        /// The operand's name.
        name: &'static str,
        /// The number of elements given.
        len: usize,
        /// The shape it must have.
        expected: Vec<usize>,
    },
    /// Two operands disagree on a dimension they share
    /// (`hidden has 4 rows but target has 3`).
    DimMismatch {
        /// The operand that sets the dimension.
        left: &'static str,
        /// Its size there.
        left_dim: usize,
        /// The operand that disagrees.
        right: &'static str,
        /// Its size there.
        right_dim: usize,
        /// What the dimension counts (`rows`, `columns`).
        what: &'static str,
    },
    /// An output or scratch buffer that cannot be allocated: its size overflows the
    /// address space, or the memory cannot be had.
    Allocation {
        /// The buffer's name (`grad`, `loss`, `dW`, …).
        name: &'static str,
        /// The shape it was asked for.
        shape: Vec<usize>,
        /// Its size in bytes; `None` when that overflows.
        bytes: Option<usize>,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

fn fmt_dims(f: &mut fmt::Formatter<'_>, dims: &[usize]) -> fmt::Result {
    f.write_str("[")?;
    for (i, d) in dims.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{d}")?;
    }
    f.write_str("]")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadShape { shape, len, reason } => {
                f.write_str("input of shape ")?;
                fmt_dims(f, shape)?;
                write!(f, " with {len} elements: {reason}")
            }
            Error::NoClasses { shape } => {
                f.write_str("input of shape ")?;
                fmt_dims(f, shape)?;
                f.write_str(" has 0 classes")
            }
            Error::BatchMismatch { input, target } => write!(
                f,
                "Expected input batch_size ({input}) to match target batch_size ({target})."
            ),
            Error::TargetShape { expected, len } => {
                write!(f, "target has {len} elements, expected shape ")?;
                fmt_dims(f, expected)
            }
            Error::TargetOutOfBounds {
                target,
                index,
                classes,
            } => {
                write!(f, "target {target} at index ")?;
                fmt_dims(f, index)?;
                write!(f, " is out of bounds for {classes} classes")
            }
            Error::WeightLength { len, classes } => write!(
                f,
                "weight tensor should be defined either for all {classes} classes or no classes \
                 but got weight tensor of shape: [{len}]"
            ),
            Error::LabelSmoothing { value } => write!(
                f,
                "label_smoothing must be between 0.0 and 1.0. Got: {value}"
            ),
            Error::IgnoreIndexWithProbabilities { ignore_index } => write!(
                f,
                "ignore_index is not supported for floating point target (got ignore_index = \
                 {ignore_index}; it must be negative)"
            ),
            Error::NonFloatProbabilities { dtype } => write!(
                f,
                "expected a floating point target of the input's shape for probabilities, got dtype {dtype}"
            ),
            Error::GradOutputShape { expected, len } => {
                write!(f, "grad_output has {len} elements, expected shape ")?;
                fmt_dims(f, expected)
            }
            Error::OutputLength {
                name,
                expected,
                len,
            } => write!(f, "{name} has length {len}, expected {expected}"),
            Error::InvalidArgument {
                name,
                value,
                expected,
            } => write!(f, "{name} = {value} is invalid: expected {expected}"),
            Error::ValueOutOfRange {
                name,
                value,
                index,
                expected,
            } => {
                write!(f, "{name} {value} at index ")?;
                fmt_dims(f, index)?;
                write!(f, " is out of range: expected {expected}")
            }
            Error::BroadcastShape {
                name,
                len,
                shape,
                allowed,
            } => {
                write!(f, "{name} has {len} elements, which do not broadcast to shape ")?;
                fmt_dims(f, shape)?;
                f.write_str(": expected ")?;
                for (i, a) in allowed.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        _ if i + 1 == allowed.len() => " or ",
                        _ => ", ",
                    };
                    write!(f, "{sep}{a}")?;
                }
                Ok(())
            }
            Error::OperandShape {
                name,
                len,
                expected,
            } => {
                write!(f, "{name} has {len} elements, expected shape ")?;
                fmt_dims(f, expected)
            }
            Error::DimMismatch {
                left,
                left_dim,
                right,
                right_dim,
                what,
            } => write!(f, "{left} has {left_dim} {what} but {right} has {right_dim}"),
            Error::Allocation { name, shape, bytes } => {
                write!(f, "cannot allocate {name} of shape ")?;
                fmt_dims(f, shape)?;
                match bytes {
                    Some(b) => write!(f, " ({b} bytes): out of memory"),
                    None => f.write_str(": its size overflows the address space"),
                }
            }
        }
    }
}

impl std::error::Error for Error {}
