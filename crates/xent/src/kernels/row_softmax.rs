//! softmax / log_softmax rows and their backward, from a row's statistics
//! ([`super::row`]'s pass A and B): the forward write, and the backward's dot
//! product and write, each a kernel of its own compiled per instruction set.

use super::row::{shift, RowStats};
use super::simd::{Kernel, Scalar, Simd, Store32};

/// Writes `softmax` (`log = false`) or `log_softmax` of `n` contiguous classes from
/// the row's statistics into `out`.
///
/// # Safety
/// `x` readable and `out` writable for `n` elements (may alias).
#[inline]
pub(crate) unsafe fn softmax_write<S: Simd, E: Store32, O: Store32>(
    s: S,
    x: *const E,
    out: *mut O,
    n: usize,
    p: RowStats<f32>,
    log: bool,
) {
    s.vectorize(SoftmaxWrite { x, out, n, p, log })
}

/// The kernel of [`softmax_write`], with its arguments.
struct SoftmaxWrite<E, O> {
    x: *const E,
    out: *mut O,
    n: usize,
    p: RowStats<f32>,
    log: bool,
}

impl<E: Store32, O: Store32> Kernel for SoftmaxWrite<E, O> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let SoftmaxWrite { x, out, n, p, log } = self;
        // The fields are the arguments of `softmax_write`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let ms = shift(p.m);
        let (ln_s, inv_s) = (p.s.ln(), 1.0 / p.s);
        #[inline(always)]
        unsafe fn one<S: Simd, E: Store32, O: Store32>(
            s: S,
            x: *const E,
            out: *mut O,
            i: usize,
            msv: S::V,
            k: S::V,
            log: bool,
        ) {
            // SAFETY: the caller keeps i + LANES within the row.
            unsafe {
                let d = s.sub(s.load(x.add(i)), msv);
                let v = if log {
                    s.sub(d, k)
                } else {
                    s.mul(s.exp_small(d), k)
                };
                s.store(out.add(i), v);
            }
        }
        let k = if log { ln_s } else { inv_s };
        let body = n - n % S::LANES;
        let (msv, kv) = (s.splat(ms), s.splat(k));
        let mut i = 0;
        while i < body {
            // SAFETY: i + LANES ≤ n.
            unsafe { one(s, x, out, i, msv, kv, log) };
            i += S::LANES;
        }
        for j in body..n {
            // SAFETY: j < n.
            unsafe { one(Scalar, x, out, j, ms, k, log) };
        }
    }
}

/// `Σ gy` (log) or `Σ gy·y` (softmax) over `n` contiguous classes.
///
/// # Safety
/// `y` and `gy` readable for `n` elements.
#[inline]
pub(crate) unsafe fn backward_dot<S: Simd, E: Store32>(
    s: S,
    y: *const E,
    gy: *const E,
    n: usize,
    log: bool,
) -> f32 {
    s.vectorize(BackwardDot { y, gy, n, log })
}

/// The kernel of [`backward_dot`], with its arguments.
struct BackwardDot<E> {
    y: *const E,
    gy: *const E,
    n: usize,
    log: bool,
}

impl<E: Store32> Kernel for BackwardDot<E> {
    type Out = f32;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> f32 {
        let BackwardDot { y, gy, n, log } = self;
        // The fields are the arguments of `backward_dot`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let body = n - n % S::LANES;
        let mut acc = s.splat(0.0);
        let mut i = 0;
        // SAFETY: loads at i + LANES ≤ n and j < n.
        unsafe {
            while i < body {
                let gv = s.load(gy.add(i));
                acc = if log {
                    s.add(acc, gv)
                } else {
                    s.fma(gv, s.load(y.add(i)), acc)
                };
                i += S::LANES;
            }
            let mut total = s.reduce_add(acc);
            for j in body..n {
                let gv = Scalar.load(gy.add(j));
                total += if log { gv } else { gv * Scalar.load(y.add(j)) };
            }
            total
        }
    }
}

/// `gx = gy − exp(y)·dot` (log) or `gx = y·(gy − dot)` (softmax) over `n` classes.
///
/// # Safety
/// `y`, `gy` readable and `gx` writable for `n` elements.
#[inline]
pub(crate) unsafe fn backward_write<S: Simd, E: Store32, G: Store32>(
    s: S,
    y: *const E,
    gy: *const E,
    gx: *mut G,
    n: usize,
    dot: f32,
    log: bool,
) {
    s.vectorize(BackwardWrite {
        y,
        gy,
        gx,
        n,
        dot,
        log,
    })
}

/// The kernel of [`backward_write`], with its arguments.
struct BackwardWrite<E, G> {
    y: *const E,
    gy: *const E,
    gx: *mut G,
    n: usize,
    dot: f32,
    log: bool,
}

impl<E: Store32, G: Store32> Kernel for BackwardWrite<E, G> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let BackwardWrite {
            y,
            gy,
            gx,
            n,
            dot,
            log,
        } = self;
        // The fields are the arguments of `backward_write`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        #[inline(always)]
        unsafe fn one<S: Simd, E: Store32, G: Store32>(
            s: S,
            y: *const E,
            gy: *const E,
            gx: *mut G,
            i: usize,
            dot: S::V,
            log: bool,
        ) {
            // SAFETY: the caller keeps i + LANES within the row.
            unsafe {
                let (yv, gv) = (s.load(y.add(i)), s.load(gy.add(i)));
                let v = if log {
                    s.sub(gv, s.mul(s.exp(yv), dot))
                } else {
                    s.mul(yv, s.sub(gv, dot))
                };
                s.store(gx.add(i), v);
            }
        }
        let body = n - n % S::LANES;
        let dv = s.splat(dot);
        let mut i = 0;
        while i < body {
            // SAFETY: i + LANES ≤ n.
            unsafe { one(s, y, gy, gx, i, dv, log) };
            i += S::LANES;
        }
        for j in body..n {
            // SAFETY: j < n.
            unsafe { one(Scalar, y, gy, gx, j, dot, log) };
        }
    }
}
