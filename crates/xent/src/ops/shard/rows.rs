//! The per-row outputs of a class-sharded cross-entropy ([`RowOutputs`]): each shard
//! adds to its statistics the location of its max and `Σ exp(x̃ − shift)·(x̃ − shift)`;
//! the max-location reduction ([`MaxLoc::max`]) and the packed SUM give the row's
//! `lse`, `entropy` and `argmax` as the single-process call computes them.
//!
//! The shard's part comes from the statistics pass of the shard's kernels (the
//! same kernels as the single-process call), from the logits as the loss sees them,
//! `x̃ = softcap(s·x)`.

use crate::kernels::shard::{shift64, ShardRow};

/// A row's largest logit and its global class index, for the max-location
/// all-reduce (MPI's `MAXLOC` on `(value, index)` pairs): the larger value wins,
/// the lower index on ties, and NaN is larger than every number (so the first NaN
/// wins, as in `torch.argmax`).
///
/// `repr(C)`: 16 bytes, a `f64` then an `i64`, no padding, for a binding to hand to
/// its collective as one element of two 8-byte words.
///
/// ```
/// use xent::MaxLoc;
/// let a = MaxLoc::new(2.0, 7);
/// assert_eq!(a.max(MaxLoc::new(2.0, 3)), MaxLoc::new(2.0, 3)); // tie: lowest index
/// assert_eq!(a.max(MaxLoc::new(1.0, 0)), a);
/// assert_eq!(a.max(MaxLoc::new(f64::NAN, 9)).index, 9); // NaN wins
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct MaxLoc {
    /// The largest logit `x̃` of the row (of the shard before the reduction).
    pub value: f64,
    /// Its global class index; `i64::MAX` for a shard without classes.
    pub index: i64,
}

impl MaxLoc {
    /// A pair.
    pub fn new(value: f64, index: i64) -> Self {
        MaxLoc { value, index }
    }

    /// The pair of a shard without classes: loses to every other.
    pub const EMPTY: MaxLoc = MaxLoc {
        value: f64::NEG_INFINITY,
        index: i64::MAX,
    };

    /// The larger of two pairs (commutative and associative): NaN above every
    /// number, then the larger value, then the lower index.
    pub fn max(self, other: MaxLoc) -> MaxLoc {
        let first = match (self.value.is_nan(), other.value.is_nan()) {
            (true, true) => self.index <= other.index,
            (true, false) => true,
            (false, true) => false,
            (false, false) => {
                self.value > other.value || (self.value == other.value && self.index <= other.index)
            }
        };
        if first {
            self
        } else {
            other
        }
    }

    /// `acc[i] = acc[i].max(other[i])`: the reduction function of a binding's
    /// max-location all-reduce (pairs beyond the shorter slice are left alone).
    pub fn reduce_into(acc: &mut [MaxLoc], other: &[MaxLoc]) {
        for (a, &b) in acc.iter_mut().zip(other) {
            *a = a.max(b);
        }
    }
}

/// The location of each row's max (`loc`, global class indices) from its shard
/// statistics made with the row outputs (whose first class is global class
/// `offset`); a shard without classes has [`MaxLoc::EMPTY`].
///
/// The index is the shard's first max of the logits its kernels read (`top`), and
/// the value `softcap(top)` in `f64` (`softcap` the call's soft-cap, the logit scale
/// being applied already): the max of `x̃` that the sums are rebased to, a
/// function of `top` alone, so that equal logits on two shards tie and the lower
/// index wins, as on one process.
pub(super) fn locate(
    rows: &[ShardRow],
    classes: usize,
    offset: usize,
    softcap: Option<f64>,
    loc: &mut [MaxLoc],
) {
    for (l, r) in loc.iter_mut().zip(rows) {
        *l = if classes == 0 {
            MaxLoc::EMPTY
        } else {
            let v = softcap.map_or(r.top, |cap| cap * (r.top / cap).tanh());
            MaxLoc::new(v, (offset + r.arg) as i64)
        };
    }
}

/// A row's `(lse, entropy)` from its reduced max `big_m` and sums `s = Σ exp(x̃ −
/// shift(M))`, `e = Σ exp(x̃ − shift(M))·(x̃ − shift(M))`, as the single-process row
/// outputs: `+inf` / NaN for a row with `+inf` (and no NaN), NaN for a NaN row,
/// `−inf` / NaN for an all `−inf` row.
pub(super) fn lse_entropy(big_m: f64, s: f64, e: f64) -> (f64, f64) {
    if big_m.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    if big_m == f64::INFINITY {
        return (f64::INFINITY, f64::NAN);
    }
    let ln_s = s.ln();
    (shift64(big_m) + ln_s, ln_s - e / s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_loc_is_an_order() {
        let pairs = [
            MaxLoc::new(1.0, 4),
            MaxLoc::new(1.0, 2),
            MaxLoc::new(f64::NAN, 5),
            MaxLoc::new(f64::NAN, 3),
            MaxLoc::new(f64::INFINITY, 1),
            MaxLoc::EMPTY,
        ];
        for &a in &pairs {
            for &b in &pairs {
                let (ab, ba) = (a.max(b), b.max(a));
                assert!(ab.index == ba.index, "{a:?} {b:?}");
                for &c in &pairs {
                    assert_eq!(a.max(b).max(c).index, a.max(b.max(c)).index);
                }
            }
        }
        let all = pairs.iter().fold(MaxLoc::EMPTY, |a, &b| a.max(b));
        assert_eq!(all.index, 3);
    }

    #[test]
    fn lse_entropy_of_a_row() {
        let s = (-2.0f64).exp() + 2.0;
        let e = -2.0 * (-2.0f64).exp();
        let (lse, h) = lse_entropy(3.0, s, e);
        assert!((lse - (3.0 + s.ln())).abs() < 1e-15);
        assert!(h > 0.0 && h < 4f64.ln());
        assert!(lse_entropy(f64::NEG_INFINITY, 0.0, 0.0).1.is_nan());
        assert_eq!(lse_entropy(f64::INFINITY, f64::NAN, 0.0).0, f64::INFINITY);
    }
}
