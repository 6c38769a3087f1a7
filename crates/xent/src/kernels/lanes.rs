//! K-dim kernels: `(N, C, inner)` rows vectorized across `inner`.
//!
//! For a fixed `n`, the rows `(n, i)` and `(n, i + 1)` are neighbours in memory at
//! every class, so one vector holds one class of `LANES` consecutive rows: the
//! kernels walk the classes at stride `inner` and never gather. Rows left over at
//! the end of `inner` run the same code on [`super::simd::Scalar`] (one lane).

use super::plan::RowOuts;
use super::row::{Coefs, GradConsts, RowStats, Xform};
use super::simd::{Kernel, Simd, SimdKernel, Store32};

/// Statistics of `LANES` rows of `c` classes at stride `stride`, one per lane, with
/// linear terms when `ACTIVE`; with `STORE`, `exp(x̃ − shift)` is stored at `e_out`
/// for the gradient pass (null and unused otherwise).
///
/// The lane kernels' bodies are inlined into the kernel of a lane unit, as is
/// [`lane_grad`]: a unit is short work (at C = 10, 160 logits), and a call per
/// unit, with every vector register caller-saved, made (65536, 10) forward +
/// backward ~10 % slower. Their loop variants are const parameters, chosen once per
/// block before vector code is entered.
///
/// # Safety
/// `x + k·stride` readable for `LANES` elements for every class `k < c`; with
/// `STORE`, `e_out + k·stride` writable for `LANES` f32 (it may alias `x`: each class
/// is read before it is written).
#[inline(always)]
pub(crate) unsafe fn lane_stats<
    S: Simd,
    E: Store32,
    X: Xform,
    const STORE: bool,
    const ACTIVE: bool,
>(
    s: S,
    x: *const E,
    stride: usize,
    c: usize,
    coef: Coefs<E>,
    xf: X,
    e_out: *mut f32,
) -> RowStats<S::V> {
    debug_assert_eq!(coef.active(), ACTIVE);
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
                let a = coef.lane_at(s, k, stride);
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

/// Writes (or adds, with `ACCUMULATE`) the gradient of `LANES` rows from their
/// shifts `msv` and constants, with linear terms when `ACTIVE`; lanes not `on` (a
/// [`Simd::ne_zero`] mask) get 0 (or keep their value when accumulating). With
/// `STORED`, `g` already holds `exp(x̃ − shift)` from [`lane_stats`] (an f32 `g`,
/// overwritten, no chain factor) and `x` is not read.
///
/// # Safety
/// As [`lane_stats`], and `g + k·stride` writable for `LANES` elements (may alias
/// `x`); with `STORED`, `G` is f32.
#[inline(always)]
pub(crate) unsafe fn lane_grad<
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
    coef: Coefs<E>,
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
                v = s.sub(v, s.mul(beta, coef.lane_at(s, k, stride)));
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
    fn run<S: Simd>(self, s: S) {
        let LaneSoftmaxKernel {
            x,
            out,
            stride,
            c,
            log,
        } = self;
        // The fields are the arguments of `lane_softmax`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
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
    fn run<S: Simd>(self, s: S) {
        let LaneBackwardKernel {
            y,
            gy,
            gx,
            stride,
            c,
            log,
        } = self;
        // The fields are the arguments of `lane_backward`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
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
}

/// The per-row outputs of `LANES` rows (one per lane, rows `row..` of the call)
/// from their [`RowStats`]' max `m` and sum `s`, written to `out`: a second walk over
/// the unit the statistics pass has just read (it is in cache), run only when
/// outputs are asked for, so that the lane kernels without them stay as they are,
/// and a kernel of its own, so that its state stays out of their frames.
///
/// The walk sums `t = Σ e^{x̃−shift}·(x̃ − shift)` (a class with `e = 0` adds 0,
/// never `0·(−inf)`) and finds the argmax on the raw logits (as
/// [`OutStats`](super::row::OutStats): the first max, or the first NaN); then
/// `lse` as `torch.logsumexp` (`+inf` with a `+inf` logit), `entropy = ln s − t/s`
/// (NaN where the softmax is NaN) and `z_loss·lse²` in the lanes of `on` (0 in
/// the others: ignored rows). Layout and safety as [`lane_stats`]; rows
/// `row..row + LANES` are rows of the call.
pub(crate) struct LaneOuts<E, X, V> {
    pub x: *const E,
    pub stride: usize,
    pub c: usize,
    pub xf: X,
    pub m: V,
    pub s: V,
    pub on: V,
    pub z_loss: f32,
    pub out: RowOuts<f32>,
    pub row: usize,
}

impl<E: Store32, X: Xform, S: Simd> SimdKernel<S> for LaneOuts<E, X, S::V> {
    type Out = ();
    #[inline(always)]
    fn run(self, s: S) {
        let LaneOuts {
            x,
            stride,
            c,
            xf,
            m,
            s: sum,
            on,
            z_loss,
            out,
            row,
        } = self;
        let zero = s.splat(0.0);
        let ones = s.eq(zero, zero);
        let (lowest, msv) = (s.splat(f32::MIN), s.neg_inf_to(m, zero));
        let (mut t, mut top) = (zero, s.splat(f32::NEG_INFINITY));
        let (mut arg, mut nan_arg, mut nan_seen) = (zero, zero, s.andnot(ones, ones));
        let mut p = x;
        for k in 0..c {
            // SAFETY: class k < c of the unit (the caller's contract, as lane_stats).
            let u = unsafe { s.load(p) };
            let kv = s.bits_to_f32(s.splat_i32(k as i32));
            arg = s.select(s.lt(top, u), kv, arg);
            top = s.max(top, u);
            let nan = s.andnot(s.eq(u, u), ones);
            nan_arg = s.select(s.andnot(nan_seen, nan), kv, nan_arg);
            nan_seen = s.or(nan_seen, nan);
            let d = s.sub(xf.apply(s, u), msv);
            t = s.fma(s.exp_small(d), s.max(d, lowest), t);
            p = p.wrapping_add(stride);
        }
        let arg = s.select(nan_seen, nan_arg, arg);
        let ln_s = s.ln(sum);
        // A row with `+inf` (and no NaN) has the lse `+inf`; its sum, as a NaN row's,
        // is NaN, and so is its entropy.
        let inf = s.andnot(nan_seen, s.eq(m, s.splat(f32::INFINITY)));
        let lse = s.select(inf, s.splat(f32::INFINITY), s.add(msv, ln_s));
        let entropy = s.sub(ln_s, s.div(t, sum));
        let z = s.select(on, s.mul(s.mul(s.splat(z_loss), lse), lse), zero);
        let mut v = [[0.0f32; 16]; 4];
        s.write_lanes(lse, &mut v[0]);
        s.write_lanes(entropy, &mut v[1]);
        s.write_lanes(arg, &mut v[2]);
        s.write_lanes(z, &mut v[3]);
        for l in 0..S::LANES {
            let arg = v[2][l].to_bits() as i32 as i64;
            // SAFETY: rows row..row + LANES are rows of the call.
            unsafe { out.write(row + l, v[0][l], v[1][l], arg, v[3][l]) };
        }
    }
}
