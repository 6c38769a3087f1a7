//! Portable scalar kernels in any [`Real`]: the `f64` path.
//!
//! Every log-probability is formed as `(x − m) − ln Σ exp(x − m)` with `m` the row
//! max, never as `ln(softmax)`, so that it cannot underflow to `−inf`. A row is `c`
//! elements at stride `stride`.

use super::num::Real;
use super::plan::{Options, RowPlan};
use super::RowAt;

/// Where one row lives.
#[derive(Clone, Copy)]
pub(crate) struct RowArgs<T> {
    pub x: *const T,
    /// Probability targets laid out like `x`.
    pub t: Option<*const T>,
    /// Gradient laid out like `x`; may be `x` itself.
    pub g: Option<*mut T>,
    pub c: usize,
    pub stride: usize,
    pub accumulate: bool,
}

/// What one row computes.
pub(crate) struct RowParams<'a, T> {
    /// The target class, `None` for an ignored row (class-index targets).
    pub target: Option<usize>,
    /// What the call's rows share.
    pub plan: &'a RowPlan<'a, T>,
    pub scale_ce: T,
    pub scale_z: T,
}

/// The transform of the logits: logit scale `s`, then soft-capping.
#[derive(Clone, Copy)]
pub(crate) struct Xf<T> {
    pub s: T,
    pub cap: Option<T>,
}

impl<T: Real> Xf<T> {
    /// The transform of a call's options.
    pub(crate) fn of(opts: &Options<f64>) -> Self {
        Xf {
            s: T::from_f64(opts.logit_scale),
            cap: opts.softcap.map(T::from_f64),
        }
    }

    /// `(x̃, dx̃/dx)` with `x̃ = cap·tanh(s·x/cap)` (`s·x` without a cap); `s = 1` is
    /// exact (a product by 1).
    #[inline]
    pub(crate) fn apply_d(self, x: T) -> (T, T) {
        let v = self.s * x;
        match self.cap {
            None => (v, self.s),
            Some(cap) => {
                let t = T::from_f64((v / cap).to_f64().tanh());
                (cap * t, self.s * (T::ONE - t * t))
            }
        }
    }
}

/// Loss of one row without its z term, and the z term; writes `∂/∂x` when there is a
/// `row.g`. Probability targets (`row.t`) make `target` unused.
///
/// # Safety
/// `x` (and `t`, `g`) valid for `c` elements at `stride`; `target < c`.
pub(crate) unsafe fn cross_entropy_row<T: Real>(row: RowArgs<T>, p: &RowParams<'_, T>) -> (T, T) {
    let at = |k: usize| k * row.stride;
    let opts = &p.plan.opts;
    let xf = Xf::<T>::of(opts);
    let probs = row.t.is_some();
    // SAFETY: every access is at k·stride with k < c.
    unsafe {
        let xt = |k: usize| xf.apply_d(*row.x.add(at(k))).0;
        if !probs && p.target.is_none() {
            if let (Some(g), false) = (row.g, row.accumulate) {
                for k in 0..row.c {
                    *g.add(at(k)) = T::ZERO;
                }
            }
            return (T::ZERO, T::ZERO);
        }
        let mut m = T::NEG_INFINITY;
        for k in 0..row.c {
            m = m.max_nan(xt(k));
        }
        let mut s = T::ZERO;
        for k in 0..row.c {
            s += (xt(k) - m).exp();
        }
        let ln_s = s.ln();
        let w = |k: usize| p.plan.weight.map_or(T::ONE, |w| w[k]);
        let eps = T::from_f64(opts.label_smoothing);
        let cf = T::from_f64(row.c as f64);
        let (zt, zg) = if opts.z_loss != 0.0 {
            let lse = m + ln_s;
            let z = T::from_f64(opts.z_loss);
            (z * lse * lse, p.scale_z * T::from_f64(2.0) * z * lse)
        } else {
            (T::ZERO, T::ZERO)
        };
        // Coefficients a_k of the linear terms and the gradient's (α, β, b).
        let (loss, alpha, beta, b, y) = if let Some(t) = row.t {
            let mut loss = T::ZERO;
            let mut wt = T::ZERO;
            for k in 0..row.c {
                let a = p.plan.coef_at(k, Some(*t.add(at(k))));
                // Literal `t'·ℓ` so that 0·(−inf) is NaN exactly where PyTorch's is.
                loss -= a * ((xt(k) - m) - ln_s);
                wt += a;
            }
            (loss, p.scale_ce * wt + zg, p.scale_ce, T::ZERO, usize::MAX)
        } else {
            let y = p.target.unwrap_or(0);
            let keep = T::ONE - eps;
            let w_y = w(y);
            let mut loss = keep * w_y * (ln_s - (xt(y) - m));
            let b = p.scale_ce * keep * w_y;
            let mut alpha = b;
            let mut beta = T::ZERO;
            if opts.label_smoothing > 0.0 {
                let e = eps / cf;
                let mut l = T::ZERO;
                for k in 0..row.c {
                    l += w(k) * (xt(k) - m);
                }
                let ws = T::from_f64(p.plan.weight_sum);
                loss += e * (ws * ln_s - l);
                alpha += p.scale_ce * e * ws;
                beta = p.scale_ce * e;
            }
            (loss, alpha + zg, beta, b, y)
        };
        if let Some(g) = row.g {
            let alpha = alpha / s;
            let coef = |k: usize| p.plan.coef_at(k, row.t.map(|t| *t.add(at(k))));
            for k in 0..row.c {
                let (x, d) = xf.apply_d(*row.x.add(at(k)));
                let mut v = alpha * (x - m).exp() - beta * coef(k);
                if k == y {
                    v -= b;
                }
                let v = v * d;
                let gp = g.add(at(k));
                *gp = if row.accumulate { *gp + v } else { v };
            }
        }
        (loss, zt)
    }
}

/// `softmax` (or `log_softmax` when `log`) of one row into `out` (may alias `x`).
///
/// # Safety
/// `x` and `out` valid for `c` elements at `stride`.
pub(crate) unsafe fn softmax_row<T: Real>(
    x: *const T,
    out: *mut T,
    c: usize,
    stride: usize,
    log: bool,
) {
    // SAFETY: every access is at k·stride with k < c.
    unsafe {
        let mut m = T::NEG_INFINITY;
        for k in 0..c {
            m = m.max_nan(*x.add(k * stride));
        }
        let mut s = T::ZERO;
        for k in 0..c {
            s += (*x.add(k * stride) - m).exp();
        }
        let (ln_s, inv) = (s.ln(), T::ONE / s);
        for k in 0..c {
            let d = *x.add(k * stride) - m;
            *out.add(k * stride) = if log { d - ln_s } else { d.exp() * inv };
        }
    }
}

/// Backward of one row from the output `y`: `gx = gy − p·Σ gy` for log_softmax
/// (`p = exp y`), `gx = y·(gy − Σ gy·y)` for softmax.
///
/// # Safety
/// `y`, `gy`, `gx` valid for `c` elements at `stride`.
pub(crate) unsafe fn softmax_backward_row<T: Real>(
    y: *const T,
    gy: *const T,
    gx: *mut T,
    c: usize,
    stride: usize,
    log: bool,
) {
    // SAFETY: every access is at k·stride with k < c.
    unsafe {
        let mut dot = T::ZERO;
        for k in 0..c {
            let (yk, gk) = (*y.add(k * stride), *gy.add(k * stride));
            dot += if log { gk } else { gk * yk };
        }
        for k in 0..c {
            let (yk, gk) = (*y.add(k * stride), *gy.add(k * stride));
            *gx.add(k * stride) = if log {
                gk - yk.exp() * dot
            } else {
                yk * (gk - dot)
            };
        }
    }
}

/// `m = max_c x_c` (NaN if any entry is NaN) and `s = Σ_c exp(x_c − m)` of a row.
#[inline]
pub(crate) fn max_sumexp<T: Real>(x: &[T], row: RowAt) -> (T, T) {
    let mut m = T::NEG_INFINITY;
    for c in 0..row.len {
        m = m.max_nan(x[row.at(c)]);
    }
    let mut s = T::ZERO;
    for c in 0..row.len {
        s += (x[row.at(c)] - m).exp();
    }
    (m, s)
}

/// Stores `v` at `i`, or adds it when accumulating.
#[inline]
pub(crate) fn put<T: Real>(g: &mut [T], i: usize, v: T, accumulate: bool) {
    if accumulate {
        g[i] += v;
    } else {
        g[i] = v;
    }
}

/// The per-row outputs `(lse, entropy, argmax)` of the row of `c` classes at `x`
/// (stride `stride`) as the loss sees it through `xf`: `lse` as `torch.logsumexp`
/// (shifted by 0 when the max is infinite, so `±inf` rows give `±inf`), `entropy =
/// lse − Σ p·x̃` with `0·log 0 = 0` (NaN where the softmax is NaN), the argmax with
/// ties to the lowest index and the first NaN first (`torch.argmax`).
///
/// # Safety
/// `x` readable for `c ≥ 1` elements at `stride`.
pub(crate) unsafe fn row_outputs<T: Real>(
    x: *const T,
    c: usize,
    stride: usize,
    xf: Xf<T>,
) -> (T, T, i64) {
    // SAFETY: k < c (the caller's contract).
    let raw = |k: usize| unsafe { *x.add(k * stride) };
    let xt = |k: usize| xf.apply_d(raw(k)).0;
    // The argmax on the raw logits, as the f32 kernels' (x̃ is non-decreasing in x).
    let (mut top, mut arg) = (T::NEG_INFINITY, 0usize);
    for k in 0..c {
        let v = raw(k);
        if v.is_nan() {
            arg = k;
            break;
        }
        if v > top {
            (top, arg) = (v, k);
        }
    }
    let mut m = T::NEG_INFINITY;
    for k in 0..c {
        m = m.max_nan(xt(k));
    }
    let shift = if m.is_finite() { m } else { T::ZERO };
    let (mut sum, mut lin) = (T::ZERO, T::ZERO);
    for k in 0..c {
        let d = xt(k) - shift;
        let e = d.exp();
        sum += e;
        // A class of probability 0 adds 0·log 0 = 0 (its d may be −inf).
        if e != T::ZERO {
            lin += e * d;
        }
    }
    let ln_sum = sum.ln();
    let entropy = if m.is_nan() {
        T::NAN
    } else {
        ln_sum - lin / sum
    };
    (shift + ln_sum, entropy, arg as i64)
}
