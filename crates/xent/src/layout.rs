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
    /// [`Error::BadShape`] for a 0-d shape or a shape whose product is not `len`;
    /// [`Error::NoClasses`] when the class dimension has size 0 (with rows present).
    pub fn new(shape: &[usize], len: usize) -> Result<Self> {
        let bad = |reason| Error::BadShape {
            shape: shape.to_vec(),
            len,
            reason,
        };
        if shape.is_empty() {
            return Err(bad("a 0-d input has no class dimension"));
        }
        let product = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad("the shape's size overflows usize"))?;
        if product != len {
            return Err(bad("the number of elements does not match the shape"));
        }
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
