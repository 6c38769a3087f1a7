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
    first_invalid_on(Isa::active(), idx, classes, ignore_index)
}

/// [`first_invalid`] on `isa`.
fn first_invalid_on(
    isa: Isa,
    idx: &ClassIndices<'_>,
    classes: usize,
    ignore_index: i64,
) -> Option<usize> {
    dispatch_kernel(
        isa,
        FirstInvalid {
            idx: *idx,
            classes,
            ignore_index,
        },
    )
}

/// How many targets are not `ignore_index`.
pub(crate) fn count_kept(idx: &ClassIndices<'_>, ignore_index: i64) -> usize {
    count_kept_on(Isa::active(), idx, ignore_index)
}

/// [`count_kept`] on `isa`.
fn count_kept_on(isa: Isa, idx: &ClassIndices<'_>, ignore_index: i64) -> usize {
    dispatch_kernel(
        isa,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The scans in the targets' own types against the same tests done on every
    /// value widened to `i128`, for each integer type, at the types' edges, with
    /// `ignore_index` in and out of each type's range and the invalid target at
    /// every position of a block (and in the second block), on every ISA.
    #[test]
    fn scans_match_the_widened_reference() {
        fn check(idx: ClassIndices<'_>, classes: usize, ignore: i64) {
            let want_first = (0..idx.len()).find(|&i| {
                let t = idx.get(i);
                t != ignore as i128 && !(0..classes as i128).contains(&t)
            });
            let want_kept = (0..idx.len())
                .filter(|&i| idx.get(i) != ignore as i128)
                .count();
            for isa in Isa::available() {
                let got = (
                    first_invalid_on(isa, &idx, classes, ignore),
                    count_kept_on(isa, &idx, ignore),
                );
                assert_eq!(
                    got,
                    (want_first, want_kept),
                    "{isa:?}: {idx:?}, classes {classes}, ignore {ignore}"
                );
            }
        }
        macro_rules! each_type {
            ($($t:ty => $v:ident),*) => {$({
                let edges: Vec<$t> = vec![<$t>::MIN, <$t>::MAX, 0, 1, 2, 4, 99, 100, 126, 127];
                for &classes in &[0usize, 1, 5, 100, 127, 128, 300, usize::MAX] {
                    for &ignore in &[-100i64, -1, 0, 4, 127, 255, i64::MAX, i64::MIN] {
                        // Valid targets, then each edge value at several positions.
                        let base: Vec<$t> = (0..1500).map(|i| ((i % 3) as $t)).collect();
                        check(ClassIndices::$v(&base), classes, ignore);
                        for &e in &edges {
                            for at in [0usize, 7, 255, 1023, 1024, 1499] {
                                let mut t = base.clone();
                                t[at] = e;
                                check(ClassIndices::$v(&t), classes, ignore);
                            }
                        }
                    }
                }
            })*};
        }
        each_type!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
            u32 => U32, u64 => U64, usize => Usize);
    }
}
