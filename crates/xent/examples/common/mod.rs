//! What the benchmark examples share (`mod common;` in each; a folder without
//! `main.rs`, so cargo does not take it for an example of its own).

use xent::{Element, Float};

/// Fills `buf` with xorshift64* values uniform in [-scale, scale), fast enough for
/// 10⁸ values.
pub fn fill<E: Element>(buf: &mut [E], seed: u64, scale: f64) {
    let mut s = seed | 1;
    for x in buf {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        *x = E::from_acc(E::Acc::from_f64((2.0 * u - 1.0) * scale));
    }
}
