//! Kernels of a cross-entropy whose classes are split across processes (vocab
//! parallelism): the partial statistics of a row's shard, the combination of the
//! reduced statistics into the row's loss and gradient constants, and the portable
//! (`f64`) row kernels, and the `f32`-computed rows on the row kernels of the
//! single-process path ([`PieceJob`], [`RowStart`]). All read the call's plan
//! ([`super::plan`]); the driver is [`crate::driver::shard`].
//!
//! A shard of a row (classes `[o, o + n)` of `C`) reduces to its max `m` and, relative
//! to `shift(m)` (0 for an all `−inf` shard), `s = Σ exp(x̃ − shift)`,
//! `l = Σ a_c·(x̃_c − shift)`, `a = Σ a_c` and the target logit `x̃_y` (0 where the
//! target lies in another shard). Once every shard is rebased to the row's global max
//! `M` (`s·exp(shift − M)`, `l − a·(M − shift)`, the online-softmax merge), the sums of
//! the shards' values are the whole row's statistics, and [`combine_row`] gives what
//! the single-process kernels compute from them.

use super::dispatch::{dispatch, Isa};
use super::fused::{PieceJob, PieceStep, RowStart, RowTarget};
use super::num::Real;
use super::plan::{CoefKind, Options, RowPlan};
use super::row::{GradConsts, Identity, SoftCap};
use super::simd::Store32;

/// The shift used for a max: 0 for an all `−inf` run (no `−inf − (−inf)`).
#[inline]
pub(crate) fn shift64(m: f64) -> f64 {
    if m == f64::NEG_INFINITY {
        0.0
    } else {
        m
    }
}

/// A row shard's statistics: `m`, then `(s, l, a, x̃_y)` relative to `shift(m)`, and
/// for the row outputs `e = Σ exp(x̃ − shift)·(x̃ − shift)` and the shard's argmax
/// `arg` (its first max, or first NaN) with its value `top` (0, `−inf` and 0 when
/// not asked for).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardRow {
    pub m: f64,
    pub s: f64,
    pub l: f64,
    pub a: f64,
    pub x_y: f64,
    pub e: f64,
    pub top: f64,
    pub arg: usize,
}

impl ShardRow {
    /// A shard without classes, or an ignored row.
    pub(crate) const EMPTY: ShardRow = ShardRow {
        m: f64::NEG_INFINITY,
        s: 0.0,
        l: 0.0,
        a: 0.0,
        x_y: 0.0,
        e: 0.0,
        top: f64::NEG_INFINITY,
        arg: 0,
    };

    /// `(s, l, a, x̃_y, e)` relative to the global max `big_m` instead of `shift(m)`.
    pub(crate) fn rebased(self, big_m: f64) -> [f64; 5] {
        let (ps, ms) = (shift64(self.m), shift64(big_m));
        // An all −inf shard has s = 0: never form exp(0 − ms), which can be inf.
        let f = if self.m == f64::NEG_INFINITY {
            0.0
        } else {
            (ps - ms).exp()
        };
        // Σ e^{x̃−M}·(x̃−M) = f·(e + s·(ps − M)); an empty shard adds 0.
        let e = if f == 0.0 {
            0.0
        } else {
            f * (self.e + self.s * (ps - ms))
        };
        [self.s * f, self.l - self.a * (ms - ps), self.a, self.x_y, e]
    }
}

/// A row's loss and the gradient constants for unit upstream scales, from its reduced
/// statistics: the gradient at class `j` of the row is
/// `(α·exp(x̃_j − shift(M)) − β·a_j − [j = y]·b)·dx̃_j/dx_j` with
/// `α = scale_ce·alpha_ce + scale_z·alpha_z`, `β = scale_ce·beta`, `b = scale_ce·b`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RowCombined {
    /// The row's loss without its z term.
    pub loss: f64,
    /// Its z term.
    pub z: f64,
    /// `shift(M)`.
    pub ms: f64,
    pub alpha_ce: f64,
    pub alpha_z: f64,
    pub beta: f64,
    pub b: f64,
}

/// Combines a row's reduced statistics `[s, l, a, x̃_y]` (relative to `shift(big_m)`),
/// as the single-process kernels' `finish` does: `w_y` is the target's weight for a
/// class-index row, `None` for a probability row (whose coefficients are in `l`, `a`).
pub(crate) fn combine_row(
    big_m: f64,
    sums: [f64; 4],
    w_y: Option<f64>,
    k: &Options<f64>,
) -> RowCombined {
    let [s, l, a, x_y] = sums;
    let ms = shift64(big_m);
    let ln_s = s.ln();
    let (zt, alpha_z) = if k.z_loss != 0.0 {
        let lse = ms + ln_s;
        (k.z_loss * lse * lse, 2.0 * k.z_loss * lse / s)
    } else {
        (0.0, 0.0)
    };
    // a·ln S − l: the smoothing (or probability-target) part of the loss.
    let spread = a * ln_s - l;
    match w_y {
        Some(w_y) => {
            let keep = 1.0 - k.label_smoothing;
            let nll = ln_s - (x_y - ms);
            let mut loss = keep * w_y * nll;
            let b = keep * w_y;
            let mut alpha = b;
            let mut beta = 0.0;
            if k.label_smoothing > 0.0 {
                let e = k.label_smoothing / k.classes;
                loss += e * spread;
                alpha += e * a;
                beta = e;
            }
            RowCombined {
                loss,
                z: zt,
                ms,
                alpha_ce: alpha / s,
                alpha_z,
                beta,
                b,
            }
        }
        None => RowCombined {
            loss: spread,
            z: zt,
            ms,
            alpha_ce: a / s,
            alpha_z,
            beta: 1.0,
            b: 0.0,
        },
    }
}

/// A row shard of the portable path: `c` classes at `stride` from `x` (targets `t`
/// and gradient `g` laid out alike).
#[derive(Clone, Copy)]
pub(crate) struct RowShard<T> {
    pub x: *const T,
    pub t: Option<*const T>,
    pub c: usize,
    pub stride: usize,
}

/// `(x̃, dx̃/dx)` for soft-capping `x̃ = cap·tanh(x/cap)` (the portable path's).
#[inline]
fn capped<T: Real>(x: T, cap: Option<T>) -> (T, T) {
    match cap {
        None => (x, T::ONE),
        Some(cap) => {
            let t = T::from_f64((x / cap).to_f64().tanh());
            (cap * t, T::ONE - t * t)
        }
    }
}

/// The statistics of a row shard on the portable path; `y` the target's class within
/// the shard, if it lies there.
///
/// # Safety
/// `row.x` (and `row.t`) valid for `row.c` elements at `row.stride`; `y < row.c`.
pub(crate) unsafe fn row_stats<T: Real>(
    row: RowShard<T>,
    plan: &RowPlan<'_, T>,
    y: Option<usize>,
    out: bool,
) -> ShardRow {
    let cap = plan.opts.softcap.map(T::from_f64);
    // SAFETY: every access is at k·stride with k < c (the caller's contract).
    let (xt, t) = unsafe {
        (
            |k: usize| capped(*row.x.add(k * row.stride), cap).0,
            |k: usize| row.t.map(|t| *t.add(k * row.stride)),
        )
    };
    let mut m = T::NEG_INFINITY;
    let (mut top, mut arg) = (T::NEG_INFINITY, 0usize);
    for k in 0..row.c {
        m = m.max_nan(xt(k));
        // The first max of the raw logits, or the first NaN, as the single-process
        // row outputs (x̃ is non-decreasing in x).
        // SAFETY: k < c.
        let v = unsafe { *row.x.add(k * row.stride) };
        if out && !top.is_nan() && (v.is_nan() || v > top) {
            (top, arg) = (v, k);
        }
    }
    let ms = T::from_f64(shift64(m.to_f64()));
    let (mut s, mut l, mut a, mut e) = (T::ZERO, T::ZERO, T::ZERO, T::ZERO);
    let linear = plan.coef != CoefKind::None;
    for k in 0..row.c {
        let d = xt(k) - ms;
        let p = d.exp();
        s += p;
        // A class of probability 0 adds 0·log 0 = 0 (its d may be −inf).
        if out && p != T::ZERO {
            e += p * d;
        }
        if linear {
            let c = plan.coef_at(k, t(k));
            l += c * d;
            a += c;
        }
    }
    ShardRow {
        m: m.to_f64(),
        s: s.to_f64(),
        l: l.to_f64(),
        a: a.to_f64(),
        x_y: y.map_or(0.0, |y| xt(y).to_f64()),
        e: e.to_f64(),
        top: top.to_f64(),
        arg,
    }
}

/// Writes (or adds) the gradient of a row shard on the portable path from its
/// combined constants (scaled): `(α·exp(x̃_j − ms) − β·a_j − [j = y]·b)·dx̃_j/dx_j`.
///
/// # Safety
/// As [`row_stats`], and `g` valid for writes at the same positions.
pub(crate) unsafe fn row_grad<T: Real>(
    row: RowShard<T>,
    g: *mut T,
    plan: &RowPlan<'_, T>,
    y: Option<usize>,
    (ms, alpha, beta, b): (f64, f64, f64, f64),
) {
    let cap = plan.opts.softcap.map(T::from_f64);
    let (ms, alpha, beta, b) = (
        T::from_f64(ms),
        T::from_f64(alpha),
        T::from_f64(beta),
        T::from_f64(b),
    );
    let linear = plan.coef != CoefKind::None;
    for k in 0..row.c {
        let at = k * row.stride;
        // SAFETY: k < c, within the row (the caller's contract).
        unsafe {
            let (x, d) = capped(*row.x.add(at), cap);
            let mut v = alpha * (x - ms).exp();
            if linear {
                v -= beta * plan.coef_at(k, row.t.map(|t| *t.add(at)));
            }
            if Some(k) == y {
                v -= b;
            }
            let v = v * d;
            let gp = g.add(at);
            *gp = if plan.accumulate { *gp + v } else { v };
        }
    }
}

/// The statistics of a row shard of the `f32`-computed types on the row kernels
/// (the single-process path's statistics pass): `x` (and its targets `t`) one
/// contiguous row of the shard's classes, in `R` (the call's own rows, or `f32`
/// gathered from a K-dim row); `y` the target's class within the shard, if it lies
/// there. With `out`, also `e` and the argmax of the row outputs.
///
/// # Safety
/// `x` (and `t`) readable for the plan's classes; `y` one of them.
pub(crate) unsafe fn f32_row_stats<R: Store32>(
    plan: &RowPlan<'_, f32>,
    isa: Isa,
    x: *const R,
    t: Option<*const R>,
    y: Option<usize>,
    out: bool,
) -> ShardRow {
    let job = PieceJob::<R, f32> {
        x,
        n: plan.classes,
        coef: plan.coefs(t),
        xform: plan.lane.transform(),
        step: PieceStep::Stats,
        out,
    };
    let (p, o, _) = dispatch(isa, job);
    // SAFETY: y < classes, within the row.
    let start = unsafe { read_start::<R, f32>(plan, x, None, t.is_some(), y, false) };
    let x_y = match start.target {
        Some(RowTarget::Index { x_y, .. }) => x_y,
        _ => 0.0,
    };
    ShardRow {
        m: p.m as f64,
        s: p.s as f64,
        l: p.l as f64,
        a: p.a as f64,
        x_y: x_y as f64,
        e: o.t as f64,
        top: o.top as f64,
        arg: o.arg,
    }
}

/// The gradient of a row shard of the `f32`-computed types into `g` from its scaled
/// constants (`shift`, `k`), then the target class's exact value; as
/// [`f32_row_stats`], `(x, t, g)` one contiguous row.
///
/// # Safety
/// `x` (and `t`) readable and `g` writable for the plan's classes; `y` one of them.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn f32_row_grad<R: Store32, G: Store32>(
    plan: &RowPlan<'_, f32>,
    isa: Isa,
    (x, t, g): (*const R, Option<*const R>, *mut G),
    y: Option<usize>,
    ms: f32,
    k: GradConsts<f32>,
    accumulate: bool,
) {
    let coef = plan.coefs(t);
    // SAFETY: y < classes; read before the gradient pass overwrites it.
    let start = unsafe { read_start(plan, x, Some(g), t.is_some(), y, accumulate) };
    let job = PieceJob::<R, G> {
        x,
        n: plan.classes,
        coef,
        xform: plan.lane.transform(),
        step: PieceStep::Grad(g, ms, k, accumulate),
        out: false,
    };
    dispatch(isa, job);
    // SAFETY: g is the row's gradient that `start` was read with.
    unsafe {
        let a_y = |y| coef.scalar_at(y);
        match plan.lane.softcap {
            None => start.write_target_grad(Identity, g, a_y, ms, k),
            Some(cap) => start.write_target_grad(SoftCap { cap }, g, a_y, ms, k),
        }
    }
}

/// [`RowStart::read`] with the plan's transform.
///
/// # Safety
/// As [`RowStart::read`].
unsafe fn read_start<R: Store32, G: Store32>(
    plan: &RowPlan<'_, f32>,
    x: *const R,
    g: Option<*mut G>,
    probs: bool,
    y: Option<usize>,
    accumulate: bool,
) -> RowStart {
    let w = plan.weight;
    // SAFETY: forwarded.
    unsafe {
        match plan.lane.softcap {
            None => RowStart::read(Identity, x, g, probs, y, w, accumulate),
            Some(cap) => RowStart::read(SoftCap { cap }, x, g, probs, y, w, accumulate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebase_of_an_all_neg_inf_shard_is_zero() {
        let r = ShardRow::EMPTY.rebased(3.0);
        assert_eq!(r, [0.0; 5]);
        // A shard whose max is the global one keeps its sums.
        let p = ShardRow {
            m: 2.0,
            s: 1.5,
            l: -0.5,
            a: 2.0,
            x_y: 1.0,
            e: 0.25,
            top: 2.0,
            arg: 0,
        };
        assert_eq!(p.rebased(2.0), [1.5, -0.5, 2.0, 1.0, 0.25]);
        let q = p.rebased(3.0);
        assert!((q[0] - 1.5 * (-1.0f64).exp()).abs() < 1e-15);
        assert_eq!(q[1], -0.5 - 2.0);
        let f = (-1.0f64).exp();
        assert!((q[4] - f * (0.25 - 1.5)).abs() < 1e-15);
    }

    #[test]
    fn combine_matches_the_closed_form() {
        // One row [1, 2, 3], target 2, no options: loss = ln Σ exp(x − 3) − 0.
        let s = (-2.0f64).exp() + (-1.0f64).exp() + 1.0;
        let k = Options::new(0.0, 0.0, None, 3);
        let r = combine_row(3.0, [s, 0.0, 0.0, 3.0], Some(1.0), &k);
        assert!((r.loss - s.ln()).abs() < 1e-15);
        assert_eq!((r.b, r.beta, r.z), (1.0, 0.0, 0.0));
        assert!((r.alpha_ce - 1.0 / s).abs() < 1e-15);
    }
}
