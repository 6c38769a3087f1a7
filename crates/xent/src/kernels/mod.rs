//! Row kernels: they only compute. No validation, no allocation, no I/O; the
//! drivers in [`crate::ops`] check every index they pass in.
//!
//! A row is `C` elements at `off + c·stride` (stride 1 for `(N, C)`, `d1⋯dk` for the
//! K-dim layout).

pub(crate) mod scalar;

/// Where a row's classes live in a flat buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowAt {
    pub off: usize,
    pub stride: usize,
    pub len: usize,
}

impl RowAt {
    /// Flat index of class `c`.
    #[inline]
    pub fn at(self, c: usize) -> usize {
        self.off + c * self.stride
    }
}
