//! Scans of class-index targets for the ops layer (its bounds check, and the count
//! of a mean's denominator), entered as kernels: compiled for the running CPU's
//! vector width, where 64-bit compares vectorize (baseline x86-64 has none).

use super::dispatch::{dispatch_kernel, Isa};
use super::simd::{Kernel, Simd};
use crate::indices::ClassIndices;

/// The first position whose target is neither `ignore_index` nor in `0..classes`.
pub(crate) fn first_invalid(
    idx: &ClassIndices<'_>,
    classes: usize,
    ignore_index: i64,
) -> Option<usize> {
    dispatch_kernel(
        Isa::active(),
        FirstInvalid {
            idx: *idx,
            classes,
            ignore_index,
        },
    )
}

/// How many targets are not `ignore_index`.
pub(crate) fn count_kept(idx: &ClassIndices<'_>, ignore_index: i64) -> usize {
    dispatch_kernel(
        Isa::active(),
        CountKept {
            idx: *idx,
            ignore_index,
        },
    )
}

/// [`first_invalid`] as a kernel.
struct FirstInvalid<'a> {
    idx: ClassIndices<'a>,
    classes: usize,
    ignore_index: i64,
}

impl Kernel for FirstInvalid<'_> {
    type Out = Option<usize>;
    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> Option<usize> {
        self.idx.first_invalid(self.classes, self.ignore_index)
    }
}

/// [`count_kept`] as a kernel.
struct CountKept<'a> {
    idx: ClassIndices<'a>,
    ignore_index: i64,
}

impl Kernel for CountKept<'_> {
    type Out = usize;
    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> usize {
        self.idx.count_kept(self.ignore_index)
    }
}
