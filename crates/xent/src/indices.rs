//! Class-index targets: a plain view of integer slices of any type, read by the ops
//! layer's checks, the driver and the kernels alike (it imports nothing).

/// Class-index targets, one per row, in any integer type.
///
/// PyTorch accepts only `int64` (and `uint8`); xent accepts every integer type
/// and checks each value against `[0, C)` and `ignore_index` without casting first,
/// so that a `u64` above `i64::MAX` is an out-of-bounds error and not a wrapped value.
///
/// ```
/// use xent::ClassIndices;
/// let t: ClassIndices = (&[2u8, 1, 0][..]).into();
/// assert_eq!((t.len(), t.get(0)), (3, 2));
/// ```
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum ClassIndices<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    Usize(&'a [usize]),
}

impl ClassIndices<'_> {
    /// The number of targets.
    pub fn len(&self) -> usize {
        match self {
            ClassIndices::I8(s) => s.len(),
            ClassIndices::I16(s) => s.len(),
            ClassIndices::I32(s) => s.len(),
            ClassIndices::I64(s) => s.len(),
            ClassIndices::U8(s) => s.len(),
            ClassIndices::U16(s) => s.len(),
            ClassIndices::U32(s) => s.len(),
            ClassIndices::U64(s) => s.len(),
            ClassIndices::Usize(s) => s.len(),
        }
    }
    /// `true` when there are no targets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Target `i`, widened losslessly to `i128`.
    ///
    /// # Panics
    /// When `i >= len()`, as slice indexing does.
    #[inline]
    pub fn get(&self, i: usize) -> i128 {
        match self {
            ClassIndices::I8(s) => s[i] as i128,
            ClassIndices::I16(s) => s[i] as i128,
            ClassIndices::I32(s) => s[i] as i128,
            ClassIndices::I64(s) => s[i] as i128,
            ClassIndices::U8(s) => s[i] as i128,
            ClassIndices::U16(s) => s[i] as i128,
            ClassIndices::U32(s) => s[i] as i128,
            ClassIndices::U64(s) => s[i] as i128,
            ClassIndices::Usize(s) => s[i] as i128,
        }
    }
}

/// Runs `$body` with `$s` bound to the typed slice of a [`ClassIndices`], so that a
/// loop over it is compiled once per integer type instead of matching per element.
macro_rules! with_slice {
    ($idx:expr, $s:ident => $body:expr) => {
        match $idx {
            ClassIndices::I8($s) => $body,
            ClassIndices::I16($s) => $body,
            ClassIndices::I32($s) => $body,
            ClassIndices::I64($s) => $body,
            ClassIndices::U8($s) => $body,
            ClassIndices::U16($s) => $body,
            ClassIndices::U32($s) => $body,
            ClassIndices::U64($s) => $body,
            ClassIndices::Usize($s) => $body,
        }
    };
}

impl ClassIndices<'_> {
    /// The class of row `r`, or `None` when the row is ignored (for targets that
    /// [`ClassIndices::first_invalid`] found valid).
    #[inline]
    pub(crate) fn class_at(&self, r: usize, ignore_index: i64) -> Option<usize> {
        let t = self.get(r);
        (t != ignore_index as i128).then_some(t as usize)
    }

    /// The first position whose target is neither `ignore_index` nor in
    /// `0..classes`. Inlined into its kernel ([`crate::kernels::scan`]), where the
    /// compares vectorize.
    #[inline(always)]
    pub(crate) fn first_invalid(&self, classes: usize, ignore_index: i64) -> Option<usize> {
        with_slice!(self, s => first_invalid_in(s, classes, ignore_index))
    }

    /// The classes of targets `start..start + out.len()` into `out`, `usize::MAX`
    /// for `ignore_index` (the targets are validated: every other one is a class).
    #[inline]
    pub(crate) fn classes_into(&self, start: usize, ignore_index: i64, out: &mut [usize]) {
        with_slice!(self, s => classes_in(&s[start..], ignore_index, out))
    }

    /// How many targets are not `ignore_index` (inlined into its kernel, as
    /// [`ClassIndices::first_invalid`]).
    #[inline(always)]
    pub(crate) fn count_kept(&self, ignore_index: i64) -> usize {
        with_slice!(self, s => match ignore_in(ignore_index) {
            Some(ig) => s.iter().map(|&t| usize::from(t != ig)).sum(),
            None => s.len(),
        })
    }
}

/// An integer type of [`ClassIndices`]: the checks compare in it, without widening
/// each element (to `i128`, which no vector unit has), so that they vectorize.
trait Index: Copy + PartialOrd + Default + TryFrom<i64> + TryFrom<usize> {
    /// The largest value of the type.
    const MAX: Self;
    /// The value as a `usize`, for a valid class (`0 ≤ self < C`, so lossless).
    fn class(self) -> usize;
}

macro_rules! index_types {
    ($($t:ty),*) => {$(
        impl Index for $t {
            const MAX: Self = <$t>::MAX;
            #[inline(always)]
            fn class(self) -> usize {
                self as usize
            }
        }
    )*};
}
index_types!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

/// `ignore_index` as a `T`, or `None` when no `T` equals it (then no target of
/// type `T` is ignored).
#[inline(always)]
fn ignore_in<T: TryFrom<i64>>(ignore_index: i64) -> Option<T> {
    T::try_from(ignore_index).ok()
}

/// [`ClassIndices::classes_into`] on a typed slice.
#[inline(always)]
fn classes_in<T: Index>(s: &[T], ignore_index: i64, out: &mut [usize]) {
    let ignore = ignore_in::<T>(ignore_index);
    for (o, &t) in out.iter_mut().zip(s) {
        *o = if Some(t) == ignore {
            usize::MAX
        } else {
            t.class()
        };
    }
}

/// [`ClassIndices::first_invalid`] on a typed slice: a branch-free count of the
/// invalid targets of each block (vectorized), and the position searched for only
/// in a block that has one.
#[inline(always)]
fn first_invalid_in<T: Index>(s: &[T], classes: usize, ignore_index: i64) -> Option<usize> {
    let zero = T::default();
    let Some(last) = classes.checked_sub(1) else {
        // No classes: every target that is not ignore_index is invalid.
        let ignore = ignore_in(ignore_index);
        return s.iter().position(|&t| Some(t) != ignore);
    };
    // Valid: 0 ≤ t ≤ last; where T cannot hold C − 1, every t ≥ 0.
    let last = T::try_from(last).unwrap_or(T::MAX);
    // Where no T equals ignore_index, 0 takes its place: with at least one class,
    // 0 is valid anyway.
    let ignore = ignore_in(ignore_index).unwrap_or(zero);
    let bad = |t: T| (t != ignore) & ((t < zero) | (t > last));
    let mut at = 0;
    for block in s.chunks(1024) {
        if block.iter().filter(|&&t| bad(t)).count() > 0 {
            return block.iter().position(|&t| bad(t)).map(|j| at + j);
        }
        at += block.len();
    }
    None
}
