//! K-dim kernels: `(N, C, inner)` rows vectorized across `inner`.
//!
//! For a fixed `n`, the rows `(n, i)` and `(n, i + 1)` are neighbours in memory at
//! every class, so one vector holds one class of `LANES` consecutive rows: the
//! kernels walk the classes at stride `inner` and never gather. Rows left over at
//! the end of `inner` run the same code on [`super::simd::Scalar`] (one lane).

use super::row::{shift, GradConsts, Partial, Xform};
use super::simd::{Simd, Store32};

/// Per-class coefficients of the linear terms, as in [`super::row::Coef`], for lanes.
#[derive(Clone, Copy)]
pub(crate) enum LaneCoef<E> {
    None,
    Ones,
    Weights(*const f32),
    /// `t` points at the first lane of class 0, laid out like `x`.
    Probs {
        t: *const E,
        w: Option<*const f32>,
        keep: f32,
        spread: f32,
    },
}

impl<E: Store32> LaneCoef<E> {
    fn active(&self) -> bool {
        !matches!(self, LaneCoef::None)
    }

    /// # Safety
    /// Class `c < C`, and for `Probs` the lanes at `t + c·stride` readable.
    #[inline(always)]
    unsafe fn at<S: Simd>(&self, s: S, c: usize, stride: usize) -> S::V {
        // SAFETY: guaranteed by the caller.
        unsafe {
            match *self {
                LaneCoef::None => s.splat(0.0),
                LaneCoef::Ones => s.splat(1.0),
                LaneCoef::Weights(w) => s.splat(*w.add(c)),
                LaneCoef::Probs { t, w, keep, spread } => {
                    let v = s.fma(s.load(t.add(c * stride)), s.splat(keep), s.splat(spread));
                    match w {
                        Some(w) => s.mul(v, s.splat(*w.add(c))),
                        None => v,
                    }
                }
            }
        }
    }
}

/// Statistics of `LANES` rows of `c` classes at stride `stride`, one [`Partial`] per lane.
///
/// # Safety
/// `x + k·stride` readable for `LANES` elements for every class `k < c`.
#[inline(always)]
pub(crate) unsafe fn lane_stats<S: Simd, E: Store32, X: Xform>(
    s: S,
    x: *const E,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    out: &mut [Partial],
) {
    // SAFETY: every load is at a class k < c.
    unsafe {
        let mut m = s.splat(f32::NEG_INFINITY);
        for k in 0..c {
            m = s.max(m, xf.apply(s, s.load(x.add(k * stride))));
        }
        let msv = s.neg_inf_to(m, s.splat(0.0));
        let zero = s.splat(0.0);
        let (mut sv, mut lv, mut av) = (zero, zero, zero);
        let active = coef.active();
        for k in 0..c {
            let d = s.sub(xf.apply(s, s.load(x.add(k * stride))), msv);
            sv = s.add(sv, s.exp_small(d));
            if active {
                let a = coef.at(s, k, stride);
                lv = s.fma(a, d, lv);
                av = s.add(av, a);
            }
        }
        let mut lanes = [[0.0f32; 16]; 4];
        for (v, dst) in [m, sv, lv, av].into_iter().zip(lanes.iter_mut()) {
            s.write_lanes(v, dst);
        }
        for (l, p) in out.iter_mut().enumerate().take(S::LANES) {
            *p = Partial {
                m: lanes[0][l],
                s: lanes[1][l],
                l: lanes[2][l],
                a: lanes[3][l],
            };
        }
    }
}

/// Writes (or adds) the gradient of `LANES` rows; lanes whose `active` is 0 get 0
/// (or keep their value when accumulating).
///
/// # Safety
/// As [`lane_stats`], and `g + k·stride` writable for `LANES` elements (may alias `x`).
#[inline(always)]
pub(crate) unsafe fn lane_grad<S: Simd, E: Store32, G: Store32, X: Xform>(
    s: S,
    x: *const E,
    g: *mut G,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    partials: &[Partial],
    consts: &[GradConsts],
    active: &[f32],
    accumulate: bool,
) {
    let pick = |f: &dyn Fn(usize) -> f32| {
        let mut buf = [0.0f32; 16];
        for (l, b) in buf.iter_mut().enumerate().take(S::LANES) {
            *b = f(l);
        }
        s.vector_of(&buf[..S::LANES])
    };
    let msv = pick(&|l| shift(partials[l].m));
    let alpha = pick(&|l| consts[l].alpha);
    let beta = pick(&|l| consts[l].beta);
    let on = s.ne_zero(pick(&|l| active[l]));
    let has_coef = coef.active();
    // SAFETY: every access is at a class k < c.
    unsafe {
        for k in 0..c {
            let (xt, d) = xf.apply_d(s, s.load(x.add(k * stride)));
            let mut v = s.mul(alpha, s.exp_small(s.sub(xt, msv)));
            if has_coef {
                v = s.sub(v, s.mul(beta, coef.at(s, k, stride)));
            }
            if X::CHAINED {
                v = s.mul(v, d);
            }
            let old = if accumulate {
                s.load(g.add(k * stride))
            } else {
                s.splat(0.0)
            };
            let v = s.select(on, s.add(v, old), old);
            s.store(g.add(k * stride), v);
        }
    }
}

/// `softmax` / `log_softmax` of `LANES` rows into `out` (may alias `x`).
///
/// # Safety
/// As [`lane_grad`].
#[inline(always)]
pub(crate) unsafe fn lane_softmax<S: Simd, E: Store32, O: Store32>(
    s: S,
    x: *const E,
    out: *mut O,
    stride: usize,
    c: usize,
    log: bool,
) {
    // SAFETY: every access is at a class k < c.
    unsafe {
        let mut m = s.splat(f32::NEG_INFINITY);
        for k in 0..c {
            m = s.max(m, s.load(x.add(k * stride)));
        }
        let msv = s.neg_inf_to(m, s.splat(0.0));
        let mut sv = s.splat(0.0);
        for k in 0..c {
            sv = s.add(sv, s.exp_small(s.sub(s.load(x.add(k * stride)), msv)));
        }
        let mut buf = [0.0f32; 16];
        s.write_lanes(sv, &mut buf);
        for b in buf.iter_mut().take(S::LANES) {
            *b = if log { b.ln() } else { 1.0 / *b };
        }
        let kv = s.vector_of(&buf[..S::LANES]);
        for k in 0..c {
            let d = s.sub(s.load(x.add(k * stride)), msv);
            let v = if log {
                s.sub(d, kv)
            } else {
                s.mul(s.exp_small(d), kv)
            };
            s.store(out.add(k * stride), v);
        }
    }
}

/// Backward of `softmax` / `log_softmax` for `LANES` rows from the output `y`.
///
/// # Safety
/// `y`, `gy` readable and `gx` writable at `k·stride` for `LANES` elements, `k < c`.
#[inline(always)]
pub(crate) unsafe fn lane_backward<S: Simd, E: Store32, G: Store32>(
    s: S,
    y: *const E,
    gy: *const E,
    gx: *mut G,
    stride: usize,
    c: usize,
    log: bool,
) {
    // SAFETY: every access is at a class k < c.
    unsafe {
        let mut dot = s.splat(0.0);
        for k in 0..c {
            let gv = s.load(gy.add(k * stride));
            dot = if log {
                s.add(dot, gv)
            } else {
                s.fma(gv, s.load(y.add(k * stride)), dot)
            };
        }
        for k in 0..c {
            let (yv, gv) = (s.load(y.add(k * stride)), s.load(gy.add(k * stride)));
            let v = if log {
                s.sub(gv, s.mul(s.exp(yv), dot))
            } else {
                s.mul(yv, s.sub(gv, dot))
            };
            s.store(gx.add(k * stride), v);
        }
    }
}
