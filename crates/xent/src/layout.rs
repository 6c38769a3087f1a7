//! Shapes: where the class dimension is and how rows are laid out.
//!
//! A logits array of shape `(C,)`, `(N, C)` or `(N, C, d1..dk)` (C-contiguous) is
//! seen as `outer × C × inner` with `outer = N`, `inner = d1⋯dk`: the class `c` of
//! row `(n, i)` lives at `n·C·inner + c·inner + i`. There are `outer · inner` rows.

use crate::error::{Error, Result};

/// The row structure of a logits array, derived from its shape.
///
/// ```
/// use xent::Layout;
/// let l = Layout::new(&[2, 5, 3, 4], 120).unwrap();
/// assert_eq!((l.outer(), l.classes(), l.inner(), l.rows()), (2, 5, 12, 24));
/// assert_eq!(l.row_shape(), vec![2, 3, 4]);
/// assert_eq!(Layout::new(&[5], 5).unwrap().row_shape(), Vec::<usize>::new());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    outer: usize,
    classes: usize,
    inner: usize,
}

impl Layout {
    /// Checks `shape` against the number of elements `len` and finds the class dim
    /// (dim 0 for a 1-d shape, dim 1 otherwise).
    ///
    /// # Errors
    /// [`Error::BadShape`] for a 0-d shape, a shape whose product is not `len`, or a
    /// shape whose nonzero dims multiply past `usize::MAX` (as NumPy, a zero dim does
    /// not make `(2, 0, 2⁶³)` legal: its row count `2·2⁶³` would still overflow);
    /// [`Error::NoClasses`] when the class dimension has size 0 (with rows present).
    ///
    /// ```
    /// use xent::{Error, Layout};
    /// let err = Layout::new(&[2, 0, 1 << 63], 0).unwrap_err();
    /// assert!(matches!(err, Error::BadShape { .. }));
    /// assert_eq!(err.to_string(), "input of shape [2, 0, 9223372036854775808] with 0 \
    ///     elements: the shape's size overflows usize");
    /// ```
    pub fn new(shape: &[usize], len: usize) -> Result<Self> {
        let bad = |reason| Error::BadShape {
            shape: shape.to_vec(),
            len,
            reason,
        };
        if shape.is_empty() {
            return Err(bad("a 0-d input has no class dimension"));
        }
        let product = numel(shape).ok_or_else(|| bad("the shape's size overflows usize"))?;
        if product != len {
            return Err(bad("the number of elements does not match the shape"));
        }
        // `numel` bounds the product of every subset of the dims: none of these
        // products can overflow.
        let (outer, classes, inner) = if shape.len() == 1 {
            (1, shape[0], 1)
        } else {
            (shape[0], shape[1], shape[2..].iter().product())
        };
        if classes == 0 && outer * inner > 0 {
            return Err(Error::NoClasses {
                shape: shape.to_vec(),
            });
        }
        Ok(Layout {
            shape: shape.to_vec(),
            outer,
            classes,
            inner,
        })
    }

    /// The full shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The number of elements, `N·C·d1⋯dk`.
    pub fn numel(&self) -> usize {
        self.outer * self.classes * self.inner
    }
    /// `N` (1 for an unbatched input).
    pub fn outer(&self) -> usize {
        self.outer
    }
    /// `C`, the number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// `d1⋯dk` (1 for `(C,)` and `(N, C)`): also the stride between classes.
    pub fn inner(&self) -> usize {
        self.inner
    }
    /// The number of rows `N' = N·d1⋯dk`, each a distribution over C classes.
    pub fn rows(&self) -> usize {
        self.outer * self.inner
    }
    /// `(N, C, d1⋯dk)` as the driver takes them, with `N = 0` when there are no rows:
    /// an empty input can still have a huge `N` (`(2⁴⁰, 0, 0)` has none), and the
    /// driver, which splits `N` into blocks, would run `2²⁵` empty tasks for it.
    pub(crate) fn driver_dims(&self) -> (usize, usize, usize) {
        let outer = if self.rows() == 0 { 0 } else { self.outer };
        (outer, self.classes, self.inner)
    }
    /// `true` for a `(C,)` input.
    pub fn is_unbatched(&self) -> bool {
        self.shape.len() == 1
    }
    /// The per-row shape: `()` for `(C,)`, `(N)` for `(N, C)`, `(N, d1..dk)` for K-dim.
    /// It is the shape of class-index targets and of the `none` loss.
    pub fn row_shape(&self) -> Vec<usize> {
        if self.is_unbatched() {
            Vec::new()
        } else {
            let mut s = vec![self.shape[0]];
            s.extend_from_slice(&self.shape[2..]);
            s
        }
    }
    /// The multi-index of row `r` in [`Layout::row_shape`].
    pub fn row_index(&self, r: usize) -> Vec<usize> {
        let shape = self.row_shape();
        let mut idx = vec![0; shape.len()];
        let mut rem = r;
        for (slot, &d) in idx.iter_mut().zip(&shape).rev() {
            *slot = rem % d.max(1);
            rem /= d.max(1);
        }
        idx
    }
    /// Offset of class 0 of row `r`; class `c` is at `row_offset(r) + c * inner()`.
    #[inline]
    pub fn row_offset(&self, r: usize) -> usize {
        let (n, i) = (r / self.inner, r % self.inner);
        n * self.classes * self.inner + i
    }
}

/// The number of elements of `shape` (1 for a 0-d shape), or `None` when the product
/// of its nonzero dims overflows `usize`.
///
/// Zero dims are left out of the overflow check on purpose, as NumPy does: with them
/// in, `(2, 0, 2⁶³)` would pass as 0 elements while its `2·2⁶³` rows, or any other
/// partial product a caller forms, wrap. Checked this way, every product of a subset
/// of the dims fits in `usize`.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}
