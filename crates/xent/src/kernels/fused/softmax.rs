//! softmax / log_softmax and their backward over a block of rows.

use crate::kernels::dispatch::Job;
use crate::kernels::lanes;
use crate::kernels::row::{self, Identity, NoCoef};
use crate::kernels::row_softmax;
use crate::kernels::simd::{Scalar, Simd, Store32};

/// One block of a softmax / log_softmax forward call.
pub(crate) struct SoftmaxJob<E, O> {
    pub x: *const E,
    pub out: *mut O,
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    pub log: bool,
}

impl<E: Store32, O: Store32> Job for SoftmaxJob<E, O> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let (c, inner) = (self.classes, self.inner);
        for n in 0..self.outer {
            // SAFETY: the driver hands a block of outer·C·inner elements.
            unsafe {
                if inner == 1 {
                    let (x, out) = (self.x.add(n * c), self.out.add(n * c));
                    let (p, _) = row::row_stats(s, x, c, NoCoef, Identity, false);
                    row_softmax::softmax_write(s, x, out, c, p, self.log);
                    continue;
                }
                let base = n * c * inner;
                let mut i = 0;
                while i + S::LANES <= inner {
                    let (x, out) = (self.x.add(base + i), self.out.add(base + i));
                    lanes::lane_softmax(s, x, out, inner, c, self.log);
                    i += S::LANES;
                }
                while i < inner {
                    let (x, out) = (self.x.add(base + i), self.out.add(base + i));
                    lanes::lane_softmax(Scalar, x, out, inner, c, self.log);
                    i += 1;
                }
            }
        }
    }
}

/// One block of a softmax / log_softmax backward call (from the forward output).
pub(crate) struct BackwardJob<E, G> {
    pub y: *const E,
    pub gy: *const E,
    pub gx: *mut G,
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    pub log: bool,
}

impl<E: Store32, G: Store32> Job for BackwardJob<E, G> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let (c, inner) = (self.classes, self.inner);
        for n in 0..self.outer {
            // SAFETY: the driver hands a block of outer·C·inner elements.
            unsafe {
                if inner == 1 {
                    let off = n * c;
                    let (y, gy, gx) = (self.y.add(off), self.gy.add(off), self.gx.add(off));
                    let dot = row_softmax::backward_dot(s, y, gy, c, self.log);
                    row_softmax::backward_write(s, y, gy, gx, c, dot, self.log);
                    continue;
                }
                let base = n * c * inner;
                let mut i = 0;
                while i + S::LANES <= inner {
                    let off = base + i;
                    let (y, gy, gx) = (self.y.add(off), self.gy.add(off), self.gx.add(off));
                    lanes::lane_backward(s, y, gy, gx, inner, c, self.log);
                    i += S::LANES;
                }
                while i < inner {
                    let off = base + i;
                    let (y, gy, gx) = (self.y.add(off), self.gy.add(off), self.gx.add(off));
                    lanes::lane_backward(Scalar, y, gy, gx, inner, c, self.log);
                    i += 1;
                }
            }
        }
    }
}
