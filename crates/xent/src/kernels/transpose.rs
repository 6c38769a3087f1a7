//! Copies between a caller's rows and the kernels' f32 scratch: converting copies,
//! streaming write-backs past the caches, and the gathers and scatters of K-dim rows
//! into contiguous ones (kernels of their own, compiled per instruction set).

use crate::kernels::simd::{transpose_each, Kernel, Simd, Store32};
use crate::sizes::KDIM_GROUP;

/// Copies `n` elements from `src` to `dst`, converting through f32 with vector loads
/// and stores (the tails one by one).
///
/// # Safety
/// `src` readable and `dst` writable for `n` elements; they do not overlap.
#[inline]
pub(super) unsafe fn copy_convert<S: Simd, A: Store32, B: Store32>(
    s: S,
    src: *const A,
    dst: *mut B,
    n: usize,
) {
    s.vectorize(CopyConvertKernel { src, dst, n })
}

/// The kernel of [`copy_convert`], with its arguments.
pub(super) struct CopyConvertKernel<A, B> {
    src: *const A,
    dst: *mut B,
    n: usize,
}

impl<A: Store32, B: Store32> Kernel for CopyConvertKernel<A, B> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let CopyConvertKernel { src, dst, n } = self;
        // The fields are the arguments of `copy_convert`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let body = n - n % S::LANES;
        let mut j = 0;
        // SAFETY: j + LANES ≤ body ≤ n, and j < n in the tail.
        unsafe {
            while j < body {
                s.store(dst.add(j), s.load(src.add(j)));
                j += S::LANES;
            }
            for j in body..n {
                *dst.add(j) = B::from_f32((*src.add(j)).to_f32());
            }
        }
    }
}

/// [`copy_convert`] from an f32 tile with streaming stores ([`Simd::stream`]) where
/// `dst` is aligned to a vector; the elements before the first such boundary and
/// after the last whole vector are stored one by one.
///
/// # Safety
/// As [`copy_convert`].
#[inline]
pub(super) unsafe fn copy_out_streaming<S: Simd, B: Store32>(
    s: S,
    src: *const f32,
    dst: *mut B,
    n: usize,
) {
    s.vectorize(CopyOutStreamingKernel { src, dst, n })
}

/// The kernel of [`copy_out_streaming`], with its arguments.
pub(super) struct CopyOutStreamingKernel<B> {
    src: *const f32,
    dst: *mut B,
    n: usize,
}

impl<B: Store32> Kernel for CopyOutStreamingKernel<B> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let CopyOutStreamingKernel { src, dst, n } = self;
        // The fields are the arguments of `copy_out_streaming`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let align = S::LANES * core::mem::size_of::<B>();
        let head = (dst.align_offset(align)).min(n);
        let body = head + (n - head) / S::LANES * S::LANES;
        // SAFETY: every index is below n; from `head` on, dst + j is aligned to a vector
        // and j + LANES ≤ body ≤ n.
        unsafe {
            for j in (0..head).chain(body..n) {
                *dst.add(j) = B::from_f32(*src.add(j));
            }
            let mut j = head;
            while j < body {
                s.stream(dst.add(j), s.load(src.add(j)));
                j += S::LANES;
            }
        }
    }
}

/// `w` K-dim rows into contiguous f32 rows: class `k` of lane `l` (at
/// `src + k·stride + l`) goes to `dst[l·c + k]`. A whole group (`w = KDIM_GROUP`, a
/// multiple of `LANES`, and `c ≥ LANES`) goes through `LANES × LANES` transposes of
/// class windows starting at 0, LANES, … and, for the last, at `c − LANES`
/// (overlapping the one before); a partial group element by element ([`transpose_each`]).
///
/// # Safety
/// `src + k·stride` readable for `w` elements, `k < c`; `dst` writable for `w·c` f32.
#[inline]
pub(super) unsafe fn gather_rows<S: Simd, A: Store32>(
    s: S,
    src: *const A,
    stride: usize,
    c: usize,
    dst: *mut f32,
    w: usize,
) {
    s.vectorize(GatherRowsKernel {
        src,
        stride,
        c,
        dst,
        w,
    })
}

/// The kernel of [`gather_rows`], with its arguments.
pub(super) struct GatherRowsKernel<A> {
    src: *const A,
    stride: usize,
    c: usize,
    dst: *mut f32,
    w: usize,
}

impl<A: Store32> Kernel for GatherRowsKernel<A> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let GatherRowsKernel {
            src,
            stride,
            c,
            dst,
            w,
        } = self;
        // The fields are the arguments of `gather_rows`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        // SAFETY: every window covers classes k..k + LANES ≤ c and lanes l0..l0 + LANES
        // ≤ w; the element-wise transpose stays below (c, w).
        unsafe {
            if w == KDIM_GROUP && c >= S::LANES {
                let mut k0 = 0;
                while k0 < c {
                    let k = k0.min(c - S::LANES);
                    for l0 in (0..KDIM_GROUP).step_by(S::LANES) {
                        s.transpose_block(src.add(k * stride + l0), stride, dst.add(l0 * c + k), c);
                    }
                    k0 += S::LANES;
                }
            } else {
                transpose_each(src, stride, dst, c, (c, w));
            }
        }
    }
}

/// The inverse of [`gather_rows`]: `src[l·c + k]`, rounded to `B`, goes to
/// `dst + k·stride + l` (an overlapping window writes the same values twice).
///
/// # Safety
/// `src` readable for `w·c` f32; `dst + k·stride` writable for `w` elements, `k < c`.
#[inline]
pub(super) unsafe fn scatter_rows<S: Simd, B: Store32>(
    s: S,
    src: *const f32,
    dst: *mut B,
    stride: usize,
    c: usize,
    w: usize,
) {
    s.vectorize(ScatterRowsKernel {
        src,
        dst,
        stride,
        c,
        w,
    })
}

/// The kernel of [`scatter_rows`], with its arguments.
pub(super) struct ScatterRowsKernel<B> {
    src: *const f32,
    dst: *mut B,
    stride: usize,
    c: usize,
    w: usize,
}

impl<B: Store32> Kernel for ScatterRowsKernel<B> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let ScatterRowsKernel {
            src,
            dst,
            stride,
            c,
            w,
        } = self;
        // The fields are the arguments of `scatter_rows`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        // SAFETY: as gather_rows.
        unsafe {
            if w == KDIM_GROUP && c >= S::LANES {
                let mut k0 = 0;
                while k0 < c {
                    let k = k0.min(c - S::LANES);
                    for l0 in (0..KDIM_GROUP).step_by(S::LANES) {
                        s.transpose_block(src.add(l0 * c + k), c, dst.add(k * stride + l0), stride);
                    }
                    k0 += S::LANES;
                }
            } else {
                transpose_each(src, c, dst, stride, (w, c));
            }
        }
    }
}
