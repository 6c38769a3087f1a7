//! Deterministic batch reductions.

/// Neumaier-compensated `f64` sum, added to in a fixed order.
///
/// Batch losses are summed row by row in this type so that the reduced loss does not
/// depend on how rows were split over threads and keeps `O(1)` rounding error.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CompensatedSum {
    sum: f64,
    comp: f64,
}

impl CompensatedSum {
    #[inline]
    pub(crate) fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if self.sum.abs() >= v.abs() {
            self.comp += (self.sum - t) + v;
        } else {
            self.comp += (v - t) + self.sum;
        }
        self.sum = t;
    }

    /// Merges a partial sum computed over a later block of rows.
    #[inline]
    pub(crate) fn merge(&mut self, other: CompensatedSum) {
        self.add(other.sum);
        self.comp += other.comp;
    }

    #[inline]
    pub(crate) fn value(self) -> f64 {
        // Non-finite sums make the compensation NaN (inf - inf): the plain sum is right.
        if self.sum.is_finite() {
            self.sum + self.comp
        } else {
            self.sum
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensation_recovers_small_terms() {
        let mut s = CompensatedSum::default();
        s.add(1e16);
        for _ in 0..1000 {
            s.add(1.0);
        }
        s.add(-1e16);
        assert_eq!(s.value(), 1000.0);
    }

    #[test]
    fn infinities_and_nan_propagate() {
        let mut s = CompensatedSum::default();
        s.add(f64::INFINITY);
        s.add(1.0);
        assert_eq!(s.value(), f64::INFINITY);
        s.add(f64::NAN);
        assert!(s.value().is_nan());
    }

    #[test]
    fn merge_equals_sequential_for_exact_values() {
        let mut a = CompensatedSum::default();
        let mut b = CompensatedSum::default();
        let mut all = CompensatedSum::default();
        for i in 0..10 {
            a.add(i as f64);
            all.add(i as f64);
        }
        for i in 10..20 {
            b.add(i as f64);
            all.add(i as f64);
        }
        a.merge(b);
        assert_eq!(a.value(), all.value());
    }
}
