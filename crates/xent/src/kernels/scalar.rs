//! Scalar row kernels: the portable path and the oracle for faster ones.
//!
//! Every log-probability is formed as `(x − m) − ln Σ exp(x − m)` with `m` the row
//! max, never as `ln(softmax)`, so that it cannot underflow to `−inf`.

use super::RowAt;
use crate::float::Float;

/// `m = max_c x_c` (NaN if any entry is NaN) and `s = Σ_c exp(x_c − m)`.
///
/// An all-`−inf` row or a row with `+inf` gives `s = NaN` (as `−inf − −inf` is NaN),
/// which makes every result of that row NaN, as in PyTorch.
#[inline]
pub(crate) fn max_sumexp<T: Float>(x: &[T], row: RowAt) -> (T, T) {
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

/// `Σ_c w_c·(x_c − m)` (or `Σ_c (x_c − m)` without weights): with `W·ln s` it gives the
/// smoothing term `−Σ_c w_c ℓ_c` without the cancellation of `W·lse − Σ w_c x_c`.
#[inline]
pub(crate) fn weighted_shifted_sum<T: Float>(x: &[T], row: RowAt, m: T, w: Option<&[T]>) -> T {
    let mut acc = T::ZERO;
    match w {
        Some(w) => {
            for (c, &wc) in w.iter().enumerate().take(row.len) {
                acc += wc * (x[row.at(c)] - m);
            }
        }
        None => {
            for c in 0..row.len {
                acc += x[row.at(c)] - m;
            }
        }
    }
    acc
}

/// Writes `softmax` (or `log_softmax` when `log`) of one row into `out` at the same places.
#[inline]
pub(crate) fn softmax_row<T: Float>(x: &[T], out: &mut [T], row: RowAt, log: bool) {
    let (m, s) = max_sumexp(x, row);
    if log {
        let ln_s = s.ln();
        for c in 0..row.len {
            let i = row.at(c);
            out[i] = (x[i] - m) - ln_s;
        }
    } else {
        let inv = T::ONE / s;
        for c in 0..row.len {
            let i = row.at(c);
            out[i] = (x[i] - m).exp() * inv;
        }
    }
}

/// Backward of one row: `gx = gy − p·Σ gy` for log_softmax (`y = ℓ`, `p = exp ℓ`),
/// `gx = p·(gy − Σ gy·p)` for softmax (`y = p`).
#[inline]
pub(crate) fn softmax_backward_row<T: Float>(
    y: &[T],
    gy: &[T],
    gx: &mut [T],
    row: RowAt,
    log: bool,
) {
    let mut dot = T::ZERO;
    for c in 0..row.len {
        let i = row.at(c);
        dot += if log { gy[i] } else { gy[i] * y[i] };
    }
    for c in 0..row.len {
        let i = row.at(c);
        gx[i] = if log {
            gy[i] - y[i].exp() * dot
        } else {
            y[i] * (gy[i] - dot)
        };
    }
}

/// Stores `v` at `i`, or adds it when accumulating.
#[inline]
pub(crate) fn put<T: Float>(g: &mut [T], i: usize, v: T, accumulate: bool) {
    if accumulate {
        g[i] += v;
    } else {
        g[i] = v;
    }
}

/// The per-row constants of class-index cross-entropy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexRow<'w, T> {
    /// The target class (in range).
    pub target: usize,
    /// Class weights, or all 1.
    pub weight: Option<&'w [T]>,
    /// `W = Σ_c w_c`.
    pub weight_sum: T,
    /// Label smoothing `ε`.
    pub eps: T,
}

/// Cross-entropy of one row with a class-index target; writes
/// `scale·∂l/∂x` into `grad` when given. Returns the row loss
/// `(1−ε)·w_y·(lse − x_y) + (ε/C)·Σ_c w_c·(lse − x_c)`.
#[inline]
pub(crate) fn cross_entropy_index_row<T: Float>(
    x: &[T],
    row: RowAt,
    p: IndexRow<'_, T>,
    grad: Option<(&mut [T], T, bool)>,
) -> T {
    let (m, s) = max_sumexp(x, row);
    let ln_s = s.ln();
    let c_f = T::from_f64(row.len as f64);
    let w_y = p.weight.map_or(T::ONE, |w| w[p.target]);
    let nll = ln_s - (x[row.at(p.target)] - m);
    let one_m_eps = T::ONE - p.eps;
    let smoothing = p.eps.to_f64() > 0.0;
    let mut loss = one_m_eps * w_y * nll;
    if smoothing {
        let smooth = p.weight_sum * ln_s - weighted_shifted_sum(x, row, m, p.weight);
        loss += p.eps / c_f * smooth;
    }
    if let Some((g, scale, acc)) = grad {
        // ∂l/∂x_j = (1−ε)·w_y·(p_j − δ_jy) + (ε/C)·(W·p_j − w_j)
        let b = scale * one_m_eps * w_y;
        let e = if smoothing {
            scale * p.eps / c_f
        } else {
            T::ZERO
        };
        let a = (b + e * p.weight_sum) / s;
        for c in 0..row.len {
            let i = row.at(c);
            let mut v = a * (x[i] - m).exp();
            if smoothing {
                v -= e * p.weight.map_or(T::ONE, |w| w[c]);
            }
            if c == p.target {
                v -= b;
            }
            put(g, i, v, acc);
        }
    }
    loss
}

/// Cross-entropy of one row with a probability target `t` (laid out like `x`):
/// `−Σ_c w_c·t'_c·ℓ_c` with `t' = (1−ε)·t + ε/C`; writes `scale·∂l/∂x` into `grad`.
#[inline]
pub(crate) fn cross_entropy_prob_row<T: Float>(
    x: &[T],
    t: &[T],
    row: RowAt,
    weight: Option<&[T]>,
    eps: T,
    grad: Option<(&mut [T], T, bool)>,
) -> T {
    let (m, s) = max_sumexp(x, row);
    let ln_s = s.ln();
    let c_f = T::from_f64(row.len as f64);
    let (keep, spread) = (T::ONE - eps, eps / c_f);
    let smoothed = |i: usize| keep * t[i] + spread;
    let w = |c: usize| weight.map_or(T::ONE, |w| w[c]);
    let mut loss = T::ZERO;
    let mut wt_sum = T::ZERO;
    for c in 0..row.len {
        let i = row.at(c);
        let wt = w(c) * smoothed(i);
        // Literal `t'·ℓ` per element so that `0·(−inf)` is NaN exactly where PyTorch's is.
        loss -= wt * ((x[i] - m) - ln_s);
        wt_sum += wt;
    }
    if let Some((g, scale, acc)) = grad {
        // ∂l/∂x_j = p_j·Σ_c w_c t'_c − w_j t'_j
        let a = scale * wt_sum / s;
        for c in 0..row.len {
            let i = row.at(c);
            let v = a * (x[i] - m).exp() - scale * w(c) * smoothed(i);
            put(g, i, v, acc);
        }
    }
    loss
}
