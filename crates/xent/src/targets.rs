//! Targets of cross-entropy: class indices of any integer type, or probabilities.

use crate::dtype::{bf16, f16, Element};
use crate::indices::ClassIndices;

macro_rules! indices_from {
    ($($t:ty => $v:ident),*) => {$(
        impl<'a> From<&'a [$t]> for ClassIndices<'a> {
            fn from(s: &'a [$t]) -> Self { ClassIndices::$v(s) }
        }
        impl<'a, F: Element> From<&'a [$t]> for Targets<'a, F> {
            fn from(s: &'a [$t]) -> Self { Targets::Indices(ClassIndices::$v(s)) }
        }
        impl<'a, const K: usize> From<&'a [$t; K]> for ClassIndices<'a> {
            fn from(s: &'a [$t; K]) -> Self { ClassIndices::$v(s) }
        }
        impl<'a, F: Element, const K: usize> From<&'a [$t; K]> for Targets<'a, F> {
            fn from(s: &'a [$t; K]) -> Self { Targets::Indices(ClassIndices::$v(s)) }
        }
    )*};
}
indices_from!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
    u32 => U32, u64 => U64, usize => Usize);

/// The target of [`cross_entropy`](crate::cross_entropy): class indices (shape = the
/// input's row shape) or probabilities (shape = the input's shape), as PyTorch tells
/// them apart by shape.
///
/// Slices convert with `into()`: integer slices become [`Targets::Indices`], a slice of
/// the logits' float type becomes [`Targets::Probabilities`].
///
/// ```
/// use xent::Targets;
/// let by_index: Targets<f32> = (&[2i64, 0][..]).into();
/// let by_prob: Targets<f32> = (&[0.5f32, 0.5][..]).into();
/// assert!(matches!(by_index, Targets::Indices(_)));
/// assert!(matches!(by_prob, Targets::Probabilities(_)));
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a, T> {
    /// One class index per row.
    Indices(ClassIndices<'a>),
    /// A distribution per row, laid out like the logits.
    Probabilities(&'a [T]),
}

macro_rules! probabilities_from {
    ($($t:ty),*) => {$(
        impl<'a> From<&'a [$t]> for Targets<'a, $t> {
            fn from(s: &'a [$t]) -> Self {
                Targets::Probabilities(s)
            }
        }
        impl<'a, const K: usize> From<&'a [$t; K]> for Targets<'a, $t> {
            fn from(s: &'a [$t; K]) -> Self {
                Targets::Probabilities(s)
            }
        }
    )*};
}
probabilities_from!(f32, f64, bf16, f16);
impl<'a, T> From<ClassIndices<'a>> for Targets<'a, T> {
    fn from(s: ClassIndices<'a>) -> Self {
        Targets::Indices(s)
    }
}
