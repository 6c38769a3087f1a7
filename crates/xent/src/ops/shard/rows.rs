//! The per-row outputs of a class-sharded cross-entropy ([`RowOutputs`]): each shard
//! adds to its statistics the location of its max and `Σ exp(x̃ − shift)·(x̃ − shift)`;
//! the max-location reduction ([`MaxLoc::max`]) and the packed SUM give the row's
//! `lse`, `entropy` and `argmax` as the single-process call computes them.
//!
//! The shard's part is computed in `f64` from the logits as the loss sees them,
//! `x̃ = softcap(s·x)`, as the single-process row outputs are.

use crate::driver::blocks::Blocks;
use crate::dtype::{Element, Float};
use crate::kernels::shard::{shift64, ShardRow};
use crate::sizes::BLOCK_ELEMS;

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

/// How a row's logits become the logits the loss sees, in `f64`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transform {
    pub scale: f64,
    pub softcap: Option<f64>,
}

impl Transform {
    #[inline]
    fn apply(self, x: f64) -> f64 {
        let v = self.scale * x;
        match self.softcap {
            Some(cap) => cap * (v / cap).tanh(),
            None => v,
        }
    }
}

/// One row shard's part of the row outputs.
#[derive(Debug, Clone, Copy)]
struct Part {
    loc: MaxLoc,
    /// The row's max of `x̃` and `Σ exp(x̃ − shift(max))` (used for ignored rows,
    /// which the loss kernels skip).
    own: (f64, f64),
    /// `Σ exp(x̃ − shift)·(x̃ − shift)` relative to the row's shift.
    e: f64,
}

/// The row part of a row of `classes` classes `x(c)`, whose first class is global
/// class `offset`; relative to `shift`, or to the row's own max when `None`.
fn part(classes: usize, offset: usize, shift: Option<f64>, x: impl Fn(usize) -> f64) -> Part {
    if classes == 0 {
        return Part {
            loc: MaxLoc::EMPTY,
            own: (f64::NEG_INFINITY, 0.0),
            e: 0.0,
        };
    }
    let (mut m, mut arg) = (f64::NEG_INFINITY, 0usize);
    for c in 0..classes {
        let v = x(c);
        if v.is_nan() {
            m = v;
            arg = c;
            break;
        }
        if v > m {
            m = v;
            arg = c;
        }
    }
    let shift = shift.unwrap_or(shift64(m));
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for c in 0..classes {
        let d = x(c) - shift;
        let p = d.exp();
        s += p;
        // A class of probability 0 adds 0·log 0 = 0 (its d may be −inf).
        if p != 0.0 {
            e += p * d;
        }
    }
    Part {
        loc: MaxLoc::new(m, (offset + arg) as i64),
        own: (m, s),
        e,
    }
}

/// Adds the row parts of an `(outer, classes, inner)` block of logits `x` (rows
/// `rows`, one [`ShardRow`] and [`MaxLoc`] each) whose first class is global class
/// `offset`: the location of each row's max, and `e` relative to the row's shift.
/// An ignored row (`ignored(r)`), which the loss kernels skip, gets its max and
/// `Σ exp` here.
pub(super) fn add_parts<T: Element>(
    x: &[T],
    (outer, classes, inner): (usize, usize, usize),
    offset: usize,
    transform: Transform,
    ignored: impl Fn(usize) -> bool + Sync,
    rows: &mut [ShardRow],
    loc: &mut [MaxLoc],
) {
    let n = outer * inner;
    let per = (BLOCK_ELEMS / classes.max(1)).max(1);
    let shared = &*rows;
    let parts = Blocks::new(n, per).map(|range| {
        range
            .map(|r| {
                let base = (r / inner) * classes * inner + r % inner;
                let shift = (!ignored(r)).then(|| shift64(shared[r].m));
                part(classes, offset, shift, |c| {
                    transform.apply(x[base + c * inner].to_acc().to_f64())
                })
            })
            .collect::<Vec<_>>()
    });
    for (r, p) in parts.into_iter().flatten().enumerate() {
        loc[r] = p.loc;
        if ignored(r) {
            (rows[r].m, rows[r].s) = p.own;
        }
        rows[r].e = p.e;
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
    fn a_part_matches_the_row_formula() {
        let x = [1.0, f64::NEG_INFINITY, 3.0, 3.0];
        let p = part(4, 10, None, |c| x[c]);
        assert_eq!(p.loc, MaxLoc::new(3.0, 12));
        let s = (-2.0f64).exp() + 2.0;
        assert!((p.own.1 - s).abs() < 1e-15);
        assert!((p.e - (-2.0) * (-2.0f64).exp()).abs() < 1e-15);
        let (lse, h) = lse_entropy(3.0, p.own.1, p.e);
        assert!((lse - (3.0 + s.ln())).abs() < 1e-15);
        assert!(h > 0.0 && h < 4f64.ln());
        assert!(lse_entropy(f64::NEG_INFINITY, 0.0, 0.0).1.is_nan());
    }
}
