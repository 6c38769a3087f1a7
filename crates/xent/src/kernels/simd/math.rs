//! The vector `exp`, `exp_small`, `tanh`, `ln` and `ln_1p`, written once on the
//! [`Simd`] primitives (reached as [`Simd::exp`] and so on; [`super::Scalar`] has
//! libm's instead). Each is `#[inline(always)]`: leaf math, compiled into the kernel
//! that calls it (in optimized builds; unoptimized ones call it, see [`run`]).
//!
//! ## Vector `exp`
//! Cephes' `expf` scheme: `n = round(x·log2 e)`, `r = x − n·ln 2` (ln 2 split in
//! two), `e^r ≈ 1 + r + r²·P(r)` on `[−ln2/2, ln2/2]` with a degree-4 minimax `P`
//! (one term shorter than Cephes'), then `2^n` through the exponent bits. Max error
//! 2 ulp for results ≥ 2⁻¹²⁶ (`x ≥ −87.33`), asserted by
//! `kernels::tests::vector_exp_error_bound` (the measured value is printed there);
//! smaller results have absolute error < 1.2e-38 and `x < −87.5` gives 0, so
//! `exp(−inf) = 0` exactly; `exp(x > 88.72) = inf`; NaN propagates.
//!
//! ## Vector `exp_small`
//! The kernels only take `exp` of `x − max ≤ 0`, through `exp_small`: 12 operations
//! a vector, 7 of them multiplies or multiply-adds (the units that bound the
//! kernels' compute), against 10 in `exp`'s polynomial and scaling alone. It
//! reduces by eighths of ln 2: `k = round(8x·log2 e) = 8n + j`, rounded by adding
//! 1.5·2²³ (whose sum's bits give `j` and `n` directly), `r = x − k·ln2/8` (ln 2
//! split in two) in `[−ln2/16, ln2/16]`, `2^(j/8)·2^n` from an 8-entry table (one
//! permute, [`Simd::lut8`]) and the exponent bits, and `e^r ≈ 1 + r·Q(r)` with a
//! degree-2 minimax `Q` (relative error 2.7e-8 with its f32 coefficients), the
//! scale folded into the last multiply-add as `s + (r·s)·Q(r)`. The input is
//! clamped below at −88, where `k = −1016` makes the scale's bits 0: every
//! `x < −87.987` (−inf included) gives 0 exactly, with no mask. Max error 2 ulp for
//! results ≥ 2⁻¹²⁶ (1.54 measured), absolute error < 1.2e-38 below, NaN propagates;
//! asserted by `kernels::tests::vector_exp_small_error_bound`. Tested against `f64`
//! over `[−104, 88.7]` in `kernels::tests`.
//!
//! ## Vector `tanh`
//! Cephes' `tanhf`: an odd polynomial below |x| = 0.625, `1 − 2/(e^{2|x|} + 1)`
//! (through the vector `exp`) above, with the sign of `x`; NaN propagates. Within
//! 4 ulp of `f64` on `[−20, 20]` (1.28 measured), asserted by
//! `kernels::tests::vector_tanh_error_bound`.
//!
//! ## Vector `ln` and `ln_1p`
//! Cephes' `logf`: `x = m·2^e` with `m` in `[√½, √2)`, `ln x = e·ln 2 + f − f²/2 +
//! f³·P(f)` for `f = m − 1` (degree-8 `P` by Estrin's scheme, ln 2 split in two).
//! Subnormals are scaled by 2^23 first; `ln 0 = −inf`, `ln inf = inf`, `ln` of a
//! negative number or NaN is NaN. A vector with no such lane skips those fix-ups. Max
//! error 2 ulp over every positive float (0.79 measured), asserted by
//! `kernels::tests::vector_ln_error_bound`.
//! `ln_1p(a)` is `a·ln(u)/(u − 1)` for `u = 1 + a` rounded (Goldberg's correction of
//! `u`'s rounding), `a` where `u` rounds to 1, `inf` at `inf`: max error 3 ulp on
//! `[−1, f32::MAX]` (2.2 measured), asserted by `vector_ln_1p_error_bound`.

use super::{Simd, SimdKernel};

/// Runs a math kernel ([`Exp`], [`ExpSmall`], [`Tanh`], [`Ln`], [`Ln1p`]) on `s`
/// through [`Simd::vectorize`]: in a frame of its own in an unoptimized build, which
/// would otherwise give every inlined temporary of the math its own slot in the
/// frame of each kernel that calls it (tens of KiB a kernel); optimized builds
/// inline the trampoline into the calling kernel, which has the same target
/// features (the release binary has as many trampoline calls with this as with the
/// math inlined by hand: 411). `tanh` and `ln_1p` reach `exp` and `ln` this way too.
#[inline(always)]
pub(super) fn run<S: Simd, K: SimdKernel<S, Out = S::V>>(s: S, k: K) -> S::V {
    s.vectorize(k)
}

/// The math functions as kernels, each over one vector (for [`run`]).
macro_rules! kernels {
    ($($(#[$doc:meta])* $kernel:ident => $f:ident;)*) => {$(
        $(#[$doc])*
        pub(super) struct $kernel<V>(pub(super) V);

        impl<S: Simd> SimdKernel<S> for $kernel<S::V> {
            type Out = S::V;
            #[inline(always)]
            fn run(self, s: S) -> S::V {
                $f(s, self.0)
            }
        }
    )*};
}

kernels! {
    /// [`exp`] of a vector.
    Exp => exp;
    /// [`exp_small`] of a vector.
    ExpSmall => exp_small;
    /// [`tanh`] of a vector.
    Tanh => tanh;
    /// [`ln`] of a vector.
    Ln => ln;
    /// [`ln_1p`] of a vector.
    Ln1p => ln_1p;
}

// Cephes expf constants.
// `exp` clamps its input to [EXP_LO, EXP_HI]; below EXP_LO the result is 0 (the true
// value is < 1.1e-38), above EXP_INF_ABOVE it is inf. n = round(x·log2 e) then lies
// in [-126, 128]; 2^128 is formed as 2·2^127.
const EXP_HI: f32 = 88.722_84;
const EXP_LO: f32 = -87.5;
const EXP_INF_ABOVE: f32 = 88.722_84;
const LOG2E: f32 = core::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// e^r ≈ 1 + r + r²·P(r) on [−ln2/2, ln2/2], P of degree 4: a minimax fit of the
// relative error (3.1e-9 in exact arithmetic, far below f32 rounding); Cephes'
// degree-5 P (1.9875691e-4, …) is one multiply-add longer for no gain in f32.
const EXP_P: [f32; 5] = [
    1.381_461_3e-3,
    8.368_71e-3,
    4.166_839e-2,
    1.666_652_1e-1,
    4.999_999_4e-1,
];
// `exp_small` clamps its input below here: k = round(8·(−88)·log2 e) = −1016, so
// j = 0 and n = −127, whose `2^n` from the exponent bits is 0.
const EXP_SMALL_LO: f32 = -88.0;
// `exp_small` rounds 8·x·log2 e to k by adding 1.5·2²³: the sum's bits are then
// 0x4B40_0000 + k (|k| < 2²²), whose low 3 bits are j = k mod 8 and which, shifted
// left by 20, are (n << 23) + (j << 20) for k = 8n + j (0x4B40_0000's low 12 bits
// are 0), with neither a conversion nor a bias add.
const EXP_MAGIC8: f32 = 12_582_912.0;
// The bits of 2^(j/8) rounded to f32, less j << 20: added to the shifted sum above,
// they give the bits of 2^(j/8)·2^n.
const EXP_TABLE8: [i32; 8] = [
    0x3f80_0000,
    0x3f7b_95c2,
    0x3f78_37f0,
    0x3f75_fed7,
    0x3f75_04f3,
    0x3f75_672a,
    0x3f77_44fd,
    0x3f7a_c0c7,
];
// e^r ≈ 1 + r·Q(r) on [−ln2/16, ln2/16], Q of degree 2: a minimax fit of the
// relative error (2.5e-8; 2.7e-8 with the coefficients rounded to f32).
const EXP_Q8: [f32; 3] = [0.166_642_98, 0.500_064_8, 1.0];
// Cephes logf: x = m·2^e with m in [√½, √2), ln x = e·ln 2 + ln m, ln(1 + f) for
// f = m − 1 as f − f²/2 + f³·P(f) with a degree-8 P.
const SQRT_HALF: f32 = core::f32::consts::FRAC_1_SQRT_2;
const LN_P: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    0.333_333_3,
];
/// The mantissa field of an f32.
const MANTISSA_BITS: u32 = 0x007f_ffff;
/// Subnormal inputs of `ln` are scaled by 2^23 into the normal range first.
const TWO_POW_23: f32 = 8_388_608.0;
// Cephes tanhf: odd polynomial below 0.625, `1 − 2/(e^{2|x|} + 1)` above.
const TANH_SMALL: f32 = 0.625;
const TANH_P: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];

/// `p[0]·xⁿ + p[1]·xⁿ⁻¹ + … + p[n]` by Horner's rule, one fma a coefficient.
#[inline(always)]
fn horner<S: Simd>(s: S, p: &[f32], x: S::V) -> S::V {
    let mut y = s.splat(p[0]);
    for &c in &p[1..] {
        y = s.fma(y, x, s.splat(c));
    }
    y
}

/// `p[0]·x⁸ + … + p[8]` by Estrin's scheme (`x2` = x²): pairs `p[i]·x + p[i+1]`,
/// then pairs of those in x², then in x⁴: four multiply-adds deep instead of
/// Horner's eight, for `ln`, which runs once per row group (its latency, not its
/// throughput, is what a short row waits for).
#[inline(always)]
fn estrin8<S: Simd>(s: S, p: &[f32; 9], x: S::V, x2: S::V) -> S::V {
    let c = |i: usize| s.splat(p[i]);
    let x4 = s.mul(x2, x2);
    let q0 = s.fma(c(0), x, c(1));
    let q1 = s.fma(c(2), x, c(3));
    let q2 = s.fma(c(4), x, c(5));
    let q3 = s.fma(c(6), x, c(7));
    let r0 = s.fma(q0, x2, q1);
    let r1 = s.fma(q2, x2, q3);
    let t = s.fma(r0, x4, r1);
    s.fma(t, x, c(8))
}

/// `e^r` for `r` in `[−ln2/2, ln2/2]`: `1 + r + r²·P(r)` with `P` = [`EXP_P`].
#[inline(always)]
fn exp_poly<S: Simd>(s: S, r: S::V) -> S::V {
    let y = horner(s, &EXP_P, r);
    let r2 = s.mul(r, r);
    s.fma(y, r2, s.add(r, s.splat(1.0)))
}

/// `r = x − n·ln 2` with ln 2 in two parts (`x − n·c` as `n·(−c) + x`: one
/// rounding, as a negated multiply-add).
#[inline(always)]
fn reduce<S: Simd>(s: S, x: S::V, n: S::V) -> S::V {
    let r = s.fma(n, s.splat(-LN2_HI), x);
    s.fma(n, s.splat(-LN2_LO), r)
}

/// `(e^r, n)` with `x = n·ln 2 + r`, for `x` clamped below at EXP_LO (NaN kept).
#[inline(always)]
fn exp_parts<S: Simd>(s: S, x: S::V) -> (S::V, S::I) {
    // max returns its second operand for NaN: x stays NaN.
    let xc = s.max(s.splat(EXP_LO), x);
    let n = s.round(s.mul(xc, s.splat(LOG2E)));
    (exp_poly(s, reduce(s, xc, n)), s.to_i32(n))
}

/// `e^x`: NaN propagates, `x > 88.72` gives inf, `x < −87.5` gives 0.
#[inline(always)]
pub(super) fn exp<S: Simd>(s: S, x: S::V) -> S::V {
    // min returns its second operand for NaN: x stays NaN.
    let xc = s.min(s.splat(EXP_HI), x);
    let (y, ni) = exp_parts(s, xc);
    // 2^n through the exponent bits, n ≤ 127, times 2 when n = 128.
    let n127 = s.min_i32(ni, s.splat_i32(127));
    let e = s.shl_23(s.add_i32(n127, s.splat_i32(127)));
    let extra = s.i32_to_f32(s.sub_i32(ni, n127));
    let y = s.mul(s.mul(y, s.bits_to_f32(e)), s.add(extra, s.splat(1.0)));
    // x > EXP_INF_ABOVE (false for NaN).
    let big = s.lt(s.splat(EXP_INF_ABOVE), x);
    let y = s.select(big, s.splat(f32::INFINITY), y);
    let tiny = s.lt(x, s.splat(EXP_LO));
    s.andnot(tiny, y)
}

/// `e^x` for `x ≤ 88.37` or NaN (see the module's notes): `0` for `x < −87.987`.
#[inline(always)]
pub(super) fn exp_small<S: Simd>(s: S, x: S::V) -> S::V {
    // max returns its second operand for NaN: x stays NaN.
    let xc = s.max(s.splat(EXP_SMALL_LO), x);
    let magic = s.splat(EXP_MAGIC8);
    let t = s.fma(xc, s.splat(8.0 * LOG2E), magic);
    let bits = s.to_bits(t);
    let scale = s.bits_to_f32(s.add_i32(s.lut8(&EXP_TABLE8, bits), s.shl_20(bits)));
    let k = s.sub(t, magic);
    let r = s.fma(k, s.splat(-LN2_HI / 8.0), xc);
    let r = s.fma(k, s.splat(-LN2_LO / 8.0), r);
    let q = horner(s, &EXP_Q8, r);
    s.fma(s.mul(r, scale), q, scale)
}

/// `tanh x`.
#[inline(always)]
pub(super) fn tanh<S: Simd>(s: S, x: S::V) -> S::V {
    let sign = s.and(x, s.splat(-0.0));
    let ax = s.abs(x);
    let z = s.mul(x, x);
    let p = horner(s, &TANH_P, z);
    let small = s.fma(s.mul(p, z), x, x);
    let e = run(s, Exp(s.add(ax, ax)));
    let one = s.splat(1.0);
    let large = s.sub(one, s.div(s.splat(2.0), s.add(e, one)));
    let large = s.or(large, sign);
    let is_small = s.lt(ax, s.splat(TANH_SMALL));
    // NaN compares false: it takes the `large` branch, where it propagates.
    s.select(is_small, small, large)
}

/// `ln x` for a positive normal `x`, whose biased exponent minus `bias` is its
/// exponent for a mantissa in [½, 1) (`bias` = 126, or 149 for a subnormal scaled
/// by 2^23).
#[inline(always)]
fn ln_normal<S: Simd>(s: S, x: S::V, bias: S::V) -> S::V {
    let one = s.splat(1.0);
    // x = m·2^e with m in [½, 1).
    let e = s.i32_to_f32(s.shr_23(s.to_bits(x)));
    let e = s.sub(e, bias);
    let m = s.or(
        s.and(x, s.splat(f32::from_bits(MANTISSA_BITS))),
        s.splat(0.5),
    );
    // m < √½: use 2m and e − 1, so that f = m − 1 lies in [√½ − 1, √2 − 1).
    let small = s.lt(m, s.splat(SQRT_HALF));
    let e = s.sub(e, s.and(small, one));
    let f = s.sub(s.add_where(small, m, m), one);
    let z = s.mul(f, f);
    let y = estrin8(s, &LN_P, f, z);
    let y = s.mul(s.mul(y, f), z);
    let y = s.fma(e, s.splat(LN2_LO), y);
    // y − z/2, as a negated multiply-add.
    let y = s.fma(s.splat(-0.5), z, y);
    s.fma(e, s.splat(LN2_HI), s.add(f, y))
}

/// `ln x` over the whole f32 range.
#[inline(always)]
pub(super) fn ln<S: Simd>(s: S, x: S::V) -> S::V {
    // Positive normal numbers take the straight path; a vector with a lane outside
    // [f32::MIN_POSITIVE, inf) (subnormal, 0, inf, negative, NaN) also takes the
    // fix-ups, which compare with inf again (the same compare: computed once).
    let inf = s.eq(x, s.splat(f32::INFINITY));
    if !s.any(s.or(s.outside(x, f32::MIN_POSITIVE, f32::INFINITY), inf)) {
        return ln_normal(s, x, s.splat(126.0));
    }
    // Subnormals (and 0, fixed below) scaled into the normal range.
    let sub = s.lt(x, s.splat(f32::MIN_POSITIVE));
    let xs = s.select(sub, s.mul(x, s.splat(TWO_POW_23)), x);
    let bias = s.select(sub, s.splat(126.0 + 23.0), s.splat(126.0));
    let r = ln_normal(s, xs, bias);
    // ln 0 = −inf, ln inf = inf, ln(x < 0) = ln NaN = NaN.
    let r = s.select(s.eq(x, s.splat(0.0)), s.splat(f32::NEG_INFINITY), r);
    let r = s.select(inf, x, r);
    // !(x ≥ 0): negative or NaN.
    let nan = s.outside(x, 0.0, f32::INFINITY);
    s.select(nan, s.splat(f32::NAN), r)
}

/// `ln(1 + a)` from [`ln`]: `u = 1 + a` rounds, and `a·ln(u)/(u − 1)` corrects for
/// the rounding (Goldberg, "What every computer scientist should know about
/// floating-point arithmetic", thm. 4); `a` itself where `u` rounds to 1, `inf` at
/// `a = inf`. The error is a few ulp of `ln`'s (bound asserted in `kernels::tests`).
#[inline(always)]
pub(super) fn ln_1p<S: Simd>(s: S, a: S::V) -> S::V {
    let one = s.splat(1.0);
    let u = s.add(one, a);
    let r = s.mul(run(s, Ln(u)), s.div(a, s.sub(u, one)));
    let r = s.select(s.eq(u, one), a, r);
    s.select(s.eq(a, s.splat(f32::INFINITY)), a, r)
}
