//! Shared test support: an independent f64 reference, a seeded generator, and named
//! tolerances.
#![allow(dead_code)]

pub mod reference;
pub mod row_stats;

/// SplitMix64: a tiny seeded generator, so that every random case is reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Approximately normal (sum of uniforms), scaled.
    pub fn normal(&mut self, scale: f64) -> f64 {
        let s: f64 = (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0;
        s * scale
    }
    /// f32-representable normal values, so that f32 and f64 runs see the same input.
    pub fn logits(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.normal(scale) as f32 as f64).collect()
    }
}

/// A tolerance `|got − want| ≤ abs + rel·scale`, named where it is defined.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub abs: f64,
    pub rel: f64,
}

impl Tol {
    /// f32 kernels: `ε_f32 · k · log2(C)` style bound, with k chosen for sums of
    /// C exponentials plus a log: 2⁻²³·64·log2(C) stays under 1e-4 up to C = 10⁶.
    pub fn f32_rows(classes: usize) -> Tol {
        let k = 64.0 * (classes.max(2) as f64).log2();
        Tol {
            abs: f32::EPSILON as f64 * k,
            rel: f32::EPSILON as f64 * k,
        }
    }
    /// f64 kernels: the same bound with ε_f64.
    pub fn f64_rows(classes: usize) -> Tol {
        let k = 64.0 * (classes.max(2) as f64).log2();
        Tol {
            abs: f64::EPSILON * k,
            rel: f64::EPSILON * k,
        }
    }
    pub fn check(&self, what: &str, got: f64, want: f64, scale: f64) {
        if want.is_nan() || got.is_nan() {
            assert!(
                want.is_nan() && got.is_nan(),
                "{what}: got {got}, want {want}"
            );
            return;
        }
        if want.is_infinite() || got.is_infinite() {
            assert_eq!(got, want, "{what}");
            return;
        }
        let bound = self.abs + self.rel * scale;
        assert!(
            (got - want).abs() <= bound,
            "{what}: got {got}, want {want}, |diff| {} > {bound}",
            (got - want).abs()
        );
    }
    pub fn check_all(&self, what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            self.check(&format!("{what}[{i}]"), *g, *w, scale);
        }
    }
}
