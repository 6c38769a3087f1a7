//! [`Scalar`]: one lane, plain `f32` arithmetic.

use super::{Simd, SimdKernel, Store32};

/// One lane: plain `f32` arithmetic and libm's `exp`; the oracle of the vector paths.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scalar;

/// A one-lane mask: all ones or zero.
#[inline(always)]
fn mask1(b: bool) -> f32 {
    f32::from_bits(if b { u32::MAX } else { 0 })
}

impl Simd for Scalar {
    type V = f32;
    const LANES: usize = 1;
    #[inline(always)]
    fn vectorize<K: SimdKernel<Self>>(self, k: K) -> K::Out {
        // A function of its own, as on the vector instruction sets: a scalar tail
        // kernel called from a vector kernel does not add its frame to the caller's.
        #[inline]
        fn trampoline<K: SimdKernel<Scalar>>(k: K) -> K::Out {
            k.run(Scalar)
        }
        trampoline(k)
    }
    #[inline(always)]
    fn splat(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    unsafe fn load<E: Store32>(self, p: *const E) -> f32 {
        // SAFETY: the caller guarantees one readable element.
        unsafe { (*p).to_f32() }
    }
    #[inline(always)]
    unsafe fn store<E: Store32>(self, p: *mut E, v: f32) {
        // SAFETY: the caller guarantees one writable element.
        unsafe { *p = E::from_f32(v) }
    }
    #[inline(always)]
    fn prefetch<T>(self, _p: *const T) {}
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn max(self, a: f32, b: f32) -> f32 {
        if b > a {
            b
        } else {
            a
        }
    }
    #[inline(always)]
    fn neg_inf_to(self, a: f32, b: f32) -> f32 {
        if a == f32::NEG_INFINITY {
            b
        } else {
            a
        }
    }
    #[inline(always)]
    fn select(self, mask: f32, a: f32, b: f32) -> f32 {
        if mask.to_bits() != 0 {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn ne_zero(self, a: f32) -> f32 {
        if a != 0.0 {
            f32::from_bits(u32::MAX)
        } else {
            0.0
        }
    }
    // libm's exp, tanh, ln and ln_1p instead of the vector ones: the oracle.
    #[inline(always)]
    fn exp(self, a: f32) -> f32 {
        a.exp()
    }
    #[inline(always)]
    fn exp_small(self, a: f32) -> f32 {
        a.exp()
    }
    #[inline(always)]
    fn tanh(self, a: f32) -> f32 {
        a.tanh()
    }
    #[inline(always)]
    fn reduce_add(self, a: f32) -> f32 {
        a
    }
    #[inline(always)]
    fn reduce_max(self, a: f32) -> f32 {
        a
    }
    #[inline(always)]
    fn write_lanes(self, a: f32, out: &mut [f32; 16]) {
        out[0] = a;
    }
    #[inline(always)]
    fn vector_of(self, v: &[f32]) -> f32 {
        v[0]
    }
    #[inline(always)]
    fn div(self, a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    fn min(self, a: f32, b: f32) -> f32 {
        if b < a {
            b
        } else {
            a
        }
    }
    #[inline(always)]
    fn abs(self, a: f32) -> f32 {
        a.abs()
    }
    #[inline(always)]
    fn lt(self, a: f32, b: f32) -> f32 {
        mask1(a < b)
    }
    #[inline(always)]
    fn eq(self, a: f32, b: f32) -> f32 {
        mask1(a == b)
    }
    #[inline(always)]
    fn outside(self, a: f32, lo: f32, hi: f32) -> f32 {
        mask1(!(a >= lo && a <= hi))
    }
    #[inline(always)]
    fn or(self, a: f32, b: f32) -> f32 {
        f32::from_bits(a.to_bits() | b.to_bits())
    }
    #[inline(always)]
    fn and(self, a: f32, b: f32) -> f32 {
        f32::from_bits(a.to_bits() & b.to_bits())
    }
    #[inline(always)]
    fn andnot(self, a: f32, b: f32) -> f32 {
        f32::from_bits(!a.to_bits() & b.to_bits())
    }
    #[inline(always)]
    fn any(self, mask: f32) -> bool {
        mask.to_bits() != 0
    }
    #[inline(always)]
    fn add_where(self, mask: f32, a: f32, b: f32) -> f32 {
        if mask.to_bits() != 0 {
            a + b
        } else {
            a
        }
    }
    #[inline(always)]
    fn ln(self, a: f32) -> f32 {
        a.ln()
    }
    #[inline(always)]
    fn ln_1p(self, a: f32) -> f32 {
        a.ln_1p()
    }
    type I = i32;
    #[inline(always)]
    fn round(self, a: f32) -> f32 {
        a.round_ties_even()
    }
    #[inline(always)]
    fn to_i32(self, a: f32) -> i32 {
        // -2³¹ ≤ a < 2³¹ is false for NaN too.
        if (-2_147_483_648.0..2_147_483_648.0).contains(&a) {
            a.round_ties_even() as i32
        } else {
            i32::MIN
        }
    }
    #[inline(always)]
    fn i32_to_f32(self, a: i32) -> f32 {
        a as f32
    }
    #[inline(always)]
    fn to_bits(self, a: f32) -> i32 {
        a.to_bits() as i32
    }
    #[inline(always)]
    fn bits_to_f32(self, a: i32) -> f32 {
        f32::from_bits(a as u32)
    }
    #[inline(always)]
    fn splat_i32(self, v: i32) -> i32 {
        v
    }
    #[inline(always)]
    fn add_i32(self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn sub_i32(self, a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    #[inline(always)]
    fn min_i32(self, a: i32, b: i32) -> i32 {
        a.min(b)
    }
    #[inline(always)]
    fn shl_23(self, a: i32) -> i32 {
        ((a as u32) << 23) as i32
    }
    #[inline(always)]
    fn shr_23(self, a: i32) -> i32 {
        ((a as u32) >> 23) as i32
    }
    #[inline(always)]
    fn shl_20(self, a: i32) -> i32 {
        ((a as u32) << 20) as i32
    }
    #[inline(always)]
    fn lut8(self, table: &[i32; 8], a: i32) -> i32 {
        table[(a & 7) as usize]
    }
    type D = f64;
    #[inline(always)]
    fn d_zero(self) -> f64 {
        0.0
    }
    #[inline(always)]
    fn d_add(self, acc: f64, v: f32) -> f64 {
        acc + v as f64
    }
    #[inline(always)]
    fn d_sum(self, acc: f64) -> f64 {
        acc
    }
}
