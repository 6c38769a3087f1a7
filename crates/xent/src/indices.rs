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
    /// `0..classes`.
    pub(crate) fn first_invalid(&self, classes: usize, ignore_index: i64) -> Option<usize> {
        let (classes, ignore) = (classes as i128, ignore_index as i128);
        with_slice!(self, s => s.iter().position(|&t| {
            let t = t as i128;
            t != ignore && !(0..classes).contains(&t)
        }))
    }

    /// The classes of targets `start..start + out.len()` into `out`, `usize::MAX`
    /// for `ignore_index` (the targets are validated: every other one is a class).
    #[inline]
    pub(crate) fn classes_into(&self, start: usize, ignore_index: i64, out: &mut [usize]) {
        let (ignore, n) = (ignore_index as i128, out.len());
        with_slice!(self, s => {
            for (o, &t) in out.iter_mut().zip(&s[start..start + n]) {
                let t = t as i128;
                *o = if t == ignore { usize::MAX } else { t as usize };
            }
        })
    }

    /// How many targets are not `ignore_index`.
    pub(crate) fn count_kept(&self, ignore_index: i64) -> usize {
        let ignore = ignore_index as i128;
        with_slice!(self, s => s.iter().filter(|&&t| t as i128 != ignore).count())
    }
}
