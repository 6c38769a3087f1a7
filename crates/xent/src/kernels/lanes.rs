//! K-dim kernels: `(N, C, inner)` rows vectorized across `inner`.
//!
//! For a fixed `n`, the rows `(n, i)` and `(n, i + 1)` are neighbours in memory at
//! every class, so one vector holds one class of `LANES` consecutive rows: the
//! kernels walk the classes at stride `inner` and never gather. Rows left over at
//! the end of `inner` run the same code on [`super::simd::Scalar`] (one lane).

use super::row::{GradConsts, RowStats, Xform};
use super::simd::{Kernel, Simd, SimdKernel, Store32};

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

/// Statistics of `LANES` rows of `c` classes at stride `stride`, one per lane.
///
/// # Safety
/// `x + k·stride` readable for `LANES` elements for every class `k < c`; an
/// `e_out + k·stride` writable for `LANES` f32 (it may alias `x`: each class is read
/// before it is written).
#[inline]
pub(crate) unsafe fn lane_stats<S: Simd, E: Store32, X: Xform>(
    s: S,
    x: *const E,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    e_out: Option<*mut f32>,
) -> RowStats<S::V> {
    // The options are fixed for the call: one loop per combination, without
    // branches inside.
    // SAFETY: forwarded.
    unsafe {
        let e = e_out.unwrap_or(core::ptr::null_mut());
        match (e_out.is_some(), coef.active()) {
            (false, false) => stats::<S, E, X, false, false>(s, x, stride, c, coef, xf, e),
            (true, false) => stats::<S, E, X, true, false>(s, x, stride, c, coef, xf, e),
            (false, true) => stats::<S, E, X, false, true>(s, x, stride, c, coef, xf, e),
            (true, true) => stats::<S, E, X, true, true>(s, x, stride, c, coef, xf, e),
        }
    }
}

/// Runs [`lane_stats_with`] as a kernel of its own.
///
/// # Safety
/// As [`lane_stats`].
#[inline]
unsafe fn stats<S: Simd, E: Store32, X: Xform, const STORE: bool, const ACTIVE: bool>(
    s: S,
    x: *const E,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    e_out: *mut f32,
) -> RowStats<S::V> {
    s.vectorize(StatsKernel::<E, X, STORE, ACTIVE> {
        x,
        stride,
        c,
        coef,
        xf,
        e_out,
    })
}

/// The kernel of [`lane_stats_with`], with its arguments.
struct StatsKernel<E, X, const STORE: bool, const ACTIVE: bool> {
    x: *const E,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    e_out: *mut f32,
}

impl<S: Simd, E: Store32, X: Xform, const STORE: bool, const ACTIVE: bool> SimdKernel<S>
    for StatsKernel<E, X, STORE, ACTIVE>
{
    type Out = RowStats<S::V>;
    #[inline(always)]
    fn run(self, s: S) -> RowStats<S::V> {
        let StatsKernel {
            x,
            stride,
            c,
            coef,
            xf,
            e_out,
        } = self;
        // SAFETY: `lane_stats`' caller guarantees its contract for these arguments.
        unsafe { lane_stats_with::<S, E, X, STORE, ACTIVE>(s, x, stride, c, coef, xf, e_out) }
    }
}

/// [`lane_stats`] for a known `STORE` (there is an `e_out`; null and unused
/// otherwise) and `ACTIVE` (linear terms).
///
/// # Safety
/// As [`lane_stats`].
#[inline(always)]
unsafe fn lane_stats_with<S: Simd, E: Store32, X: Xform, const STORE: bool, const ACTIVE: bool>(
    s: S,
    x: *const E,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    e_out: *mut f32,
) -> RowStats<S::V> {
    // SAFETY: every load is at a class k < c.
    unsafe {
        let mut m = s.splat(f32::NEG_INFINITY);
        let mut p = x;
        for _ in 0..c {
            m = s.max(m, xf.apply(s, s.load(p)));
            p = p.wrapping_add(stride);
        }
        let msv = s.neg_inf_to(m, s.splat(0.0));
        let zero = s.splat(0.0);
        let (mut sv, mut lv, mut av) = (zero, zero, zero);
        let (mut p, mut e_p) = (x, e_out);
        for k in 0..c {
            let d = s.sub(xf.apply(s, s.load(p)), msv);
            let e = s.exp_small(d);
            sv = s.add(sv, e);
            if STORE {
                // Stored for the gradient pass (`lane_grad` with `stored`).
                s.store(e_p, e);
            }
            if ACTIVE {
                let a = coef.at(s, k, stride);
                lv = s.fma(a, d, lv);
                av = s.add(av, a);
            }
            p = p.wrapping_add(stride);
            e_p = e_p.wrapping_add(stride);
        }
        RowStats {
            m,
            s: sv,
            l: lv,
            a: av,
        }
    }
}

/// Writes (or adds) the gradient of `LANES` rows from their shifts `msv` and
/// constants; lanes not `on` (a [`Simd::ne_zero`] mask) get 0 (or keep their value
/// when accumulating). With `stored`, `g` already holds `exp(x̃ − shift)` from
/// [`lane_stats`] (an f32 `g`, overwritten, no chain factor) and `x` is not read.
///
/// # Safety
/// As [`lane_stats`], and `g + k·stride` writable for `LANES` elements (may alias `x`);
/// with `stored`, `G` is f32.
#[inline]
pub(crate) unsafe fn lane_grad<S: Simd, E: Store32, G: Store32, X: Xform>(
    s: S,
    x: *const E,
    g: *mut G,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    msv: S::V,
    consts: &GradConsts<S::V>,
    on: S::V,
    accumulate: bool,
    stored: bool,
) {
    // One loop per combination of the call's options (`stored` excludes
    // `accumulate`).
    // SAFETY: forwarded.
    unsafe {
        match (stored, accumulate, coef.active()) {
            (true, _, false) => grad::<S, E, G, X, true, false, false>(
                s, x, g, stride, c, coef, xf, msv, consts, on,
            ),
            (true, _, true) => {
                grad::<S, E, G, X, true, false, true>(s, x, g, stride, c, coef, xf, msv, consts, on)
            }
            (false, false, false) => grad::<S, E, G, X, false, false, false>(
                s, x, g, stride, c, coef, xf, msv, consts, on,
            ),
            (false, false, true) => grad::<S, E, G, X, false, false, true>(
                s, x, g, stride, c, coef, xf, msv, consts, on,
            ),
            (false, true, false) => grad::<S, E, G, X, false, true, false>(
                s, x, g, stride, c, coef, xf, msv, consts, on,
            ),
            (false, true, true) => {
                grad::<S, E, G, X, false, true, true>(s, x, g, stride, c, coef, xf, msv, consts, on)
            }
        }
    }
}

/// Runs [`lane_grad_with`] as a kernel of its own.
///
/// # Safety
/// As [`lane_grad`].
#[inline]
unsafe fn grad<
    S: Simd,
    E: Store32,
    G: Store32,
    X: Xform,
    const STORED: bool,
    const ACCUMULATE: bool,
    const ACTIVE: bool,
>(
    s: S,
    x: *const E,
    g: *mut G,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    msv: S::V,
    consts: &GradConsts<S::V>,
    on: S::V,
) {
    s.vectorize(GradKernel::<S::V, E, G, X, STORED, ACCUMULATE, ACTIVE> {
        x,
        g,
        stride,
        c,
        coef,
        xf,
        msv,
        consts: *consts,
        on,
    })
}

/// The kernel of [`lane_grad_with`], with its arguments.
struct GradKernel<V, E, G, X, const STORED: bool, const ACCUMULATE: bool, const ACTIVE: bool> {
    x: *const E,
    g: *mut G,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    msv: V,
    consts: GradConsts<V>,
    on: V,
}

impl<
        S: Simd,
        E: Store32,
        G: Store32,
        X: Xform,
        const STORED: bool,
        const ACCUMULATE: bool,
        const ACTIVE: bool,
    > SimdKernel<S> for GradKernel<S::V, E, G, X, STORED, ACCUMULATE, ACTIVE>
{
    type Out = ();
    #[inline(always)]
    fn run(self, s: S) {
        let GradKernel {
            x,
            g,
            stride,
            c,
            coef,
            xf,
            msv,
            consts,
            on,
        } = self;
        // SAFETY: `lane_grad`'s caller guarantees its contract for these arguments.
        unsafe {
            lane_grad_with::<S, E, G, X, STORED, ACCUMULATE, ACTIVE>(
                s, x, g, stride, c, coef, xf, msv, &consts, on,
            )
        }
    }
}

/// [`lane_grad`] for known `STORED`, `ACCUMULATE` and `ACTIVE` (linear terms).
///
/// # Safety
/// As [`lane_grad`].
#[inline(always)]
unsafe fn lane_grad_with<
    S: Simd,
    E: Store32,
    G: Store32,
    X: Xform,
    const STORED: bool,
    const ACCUMULATE: bool,
    const ACTIVE: bool,
>(
    s: S,
    x: *const E,
    g: *mut G,
    stride: usize,
    c: usize,
    coef: LaneCoef<E>,
    xf: X,
    msv: S::V,
    consts: &GradConsts<S::V>,
    on: S::V,
) {
    let (alpha, beta) = (consts.alpha, consts.beta);
    // SAFETY: every access is at a class k < c.
    unsafe {
        let (mut xp, mut gp) = (x, g);
        for k in 0..c {
            let (e, d) = if STORED {
                (s.load(gp as *const f32), s.splat(1.0))
            } else {
                let (xt, d) = xf.apply_d(s, s.load(xp));
                (s.exp_small(s.sub(xt, msv)), d)
            };
            let mut v = s.mul(alpha, e);
            if ACTIVE {
                v = s.sub(v, s.mul(beta, coef.at(s, k, stride)));
            }
            if X::CHAINED {
                v = s.mul(v, d);
            }
            let v = if ACCUMULATE {
                let old = s.load(gp);
                s.select(on, s.add(v, old), old)
            } else {
                // `v + 0` as in the accumulating form (a −0 becomes +0).
                let zero = s.splat(0.0);
                s.select(on, s.add(v, zero), zero)
            };
            s.store(gp, v);
            xp = xp.wrapping_add(stride);
            gp = gp.wrapping_add(stride);
        }
    }
}

/// `softmax` / `log_softmax` of `LANES` rows into `out` (may alias `x`).
///
/// # Safety
/// As [`lane_grad`].
#[inline]
pub(crate) unsafe fn lane_softmax<S: Simd, E: Store32, O: Store32>(
    s: S,
    x: *const E,
    out: *mut O,
    stride: usize,
    c: usize,
    log: bool,
) {
    s.vectorize(LaneSoftmaxKernel {
        x,
        out,
        stride,
        c,
        log,
    })
}

/// The kernel of [`lane_softmax`], with its arguments.
struct LaneSoftmaxKernel<E, O> {
    x: *const E,
    out: *mut O,
    stride: usize,
    c: usize,
    log: bool,
}

impl<E: Store32, O: Store32> Kernel for LaneSoftmaxKernel<E, O> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> () {
        let LaneSoftmaxKernel {
            x,
            out,
            stride,
            c,
            log,
        } = self;
        // SAFETY: `lane_softmax`'s caller guarantees its contract for these arguments.
        unsafe { lane_softmax_body(s, x, out, stride, c, log) }
    }
}

/// The body of [`lane_softmax`].
///
/// # Safety
/// As [`lane_softmax`].
#[inline(always)]
unsafe fn lane_softmax_body<S: Simd, E: Store32, O: Store32>(
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
        let kv = if log {
            s.ln(sv)
        } else {
            s.div(s.splat(1.0), sv)
        };
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
#[inline]
pub(crate) unsafe fn lane_backward<S: Simd, E: Store32, G: Store32>(
    s: S,
    y: *const E,
    gy: *const E,
    gx: *mut G,
    stride: usize,
    c: usize,
    log: bool,
) {
    s.vectorize(LaneBackwardKernel {
        y,
        gy,
        gx,
        stride,
        c,
        log,
    })
}

/// The kernel of [`lane_backward`], with its arguments.
struct LaneBackwardKernel<E, G> {
    y: *const E,
    gy: *const E,
    gx: *mut G,
    stride: usize,
    c: usize,
    log: bool,
}

impl<E: Store32, G: Store32> Kernel for LaneBackwardKernel<E, G> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> () {
        let LaneBackwardKernel {
            y,
            gy,
            gx,
            stride,
            c,
            log,
        } = self;
        // SAFETY: `lane_backward`'s caller guarantees its contract for these arguments.
        unsafe { lane_backward_body(s, y, gy, gx, stride, c, log) }
    }
}

/// The body of [`lane_backward`].
///
/// # Safety
/// As [`lane_backward`].
#[inline(always)]
unsafe fn lane_backward_body<S: Simd, E: Store32, G: Store32>(
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
