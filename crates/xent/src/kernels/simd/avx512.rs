//! [`Avx512`]: AVX-512F, 16 lanes of `__m512`. Masks are vectors of all-ones or
//! zero lanes, as on the other instruction sets; they are made from and turned
//! back into mask registers around each compare and blend.

use core::arch::x86_64::*;

use super::avx2::{sum8, Avx2};
use super::{sum_lanes, Scalar, Simd, SimdKernel, Store32};
use half::{bf16, f16};

/// A [`Store32`] type's 16-lane loads and stores.
pub(crate) trait StoreAvx512: Sized {
    /// # Safety
    /// AVX-512F available; `p` readable for 16 elements.
    unsafe fn load_avx512(p: *const Self) -> __m512;
    /// # Safety
    /// AVX-512F available; `p` writable for 16 elements.
    unsafe fn store_avx512(p: *mut Self, v: __m512);
}

impl StoreAvx512 for f32 {
    #[inline(always)]
    unsafe fn load_avx512(p: *const Self) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F and 16 readable floats.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_avx512(p: *mut Self, v: __m512) {
        // SAFETY: the caller guarantees AVX-512F and 16 writable floats.
        unsafe { _mm512_storeu_ps(p, v) }
    }
}

impl StoreAvx512 for bf16 {
    #[inline(always)]
    unsafe fn load_avx512(p: *const Self) -> __m512 {
        // SAFETY: AVX-512F available; 16 bf16 = 32 readable bytes. bf16 is the high
        // half of an f32, so widening is a zero-extend and a shift.
        unsafe {
            let h = _mm256_loadu_si256(p as *const __m256i);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn store_avx512(p: *mut Self, v: __m512) {
        // SAFETY: AVX-512F available; 32 writable bytes. Rounded to nearest even as
        // `bf16::from_f32` (add 0x7FFF + lsb, keep the high half; NaN stays a
        // quiet NaN), as the AVX2 store.
        unsafe {
            let bits = _mm512_castps_si512(v);
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let rounded = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb);
            let hi = _mm512_srli_epi32::<16>(rounded);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let qnan = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x40));
            let hi = _mm512_mask_blend_epi32(nan, hi, qnan);
            _mm256_storeu_si256(p as *mut __m256i, _mm512_cvtepi32_epi16(hi));
        }
    }
}

impl StoreAvx512 for f16 {
    #[inline(always)]
    unsafe fn load_avx512(p: *const Self) -> __m512 {
        // SAFETY: AVX-512F available; 32 readable bytes.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn store_avx512(p: *mut Self, v: __m512) {
        // SAFETY: AVX-512F available; 32 writable bytes.
        unsafe {
            let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm256_storeu_si256(p as *mut __m256i, h);
        }
    }
}

/// AVX-512F, 16 lanes. Only constructed after runtime detection, which found
/// everything [`Avx2::detect`] checks too: the token holds its [`Avx2`] and hands it
/// out by `Deref` (pulp's `V4: Deref<Target = V3>`), so AVX2 code runs under it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(Avx2);

impl core::ops::Deref for Avx512 {
    type Target = Avx2;
    #[inline(always)]
    fn deref(&self) -> &Avx2 {
        &self.0
    }
}

impl Avx512 {
    /// Lane `i` of `a`.
    #[inline(always)]
    fn lane(self, a: __m512, i: usize) -> f32 {
        let mut out = [0.0f32; 16];
        // SAFETY: AVX-512F is available: an `Avx512` is only made by
        // `Avx512::detect`; `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), a) };
        out[i]
    }

    /// A mask register as a vector of all-ones / zero lanes.
    #[inline(always)]
    fn mask_v(self, m: __mmask16) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_castsi512_ps(_mm512_maskz_set1_epi32(m, -1)) }
    }

    /// A vector mask (all-ones / zero lanes) as a mask register: the lanes with any
    /// bit set.
    #[inline(always)]
    fn mask_k(self, mask: __m512) -> __mmask16 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe {
            let m = _mm512_castps_si512(mask);
            _mm512_test_epi32_mask(m, m)
        }
    }

    /// `Some` when the running CPU has AVX-512F (and AVX2/FMA/F16C).
    pub(crate) fn detect() -> Option<Self> {
        Avx2::detect()
            .filter(|_| is_x86_feature_detected!("avx512f"))
            .map(Avx512)
    }
}

// Every intrinsic below needs AVX-512F (or AVX, for the 256-bit halves), which the
// CPU has: an `Avx512` is only made by `Avx512::detect`, which checks AVX-512F and
// everything `Avx2::detect` does.
impl Simd for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    #[inline(always)]
    fn vectorize<K: SimdKernel<Self>>(self, k: K) -> K::Out {
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        #[inline]
        unsafe fn trampoline<K: SimdKernel<Avx512>>(s: Avx512, k: K) -> K::Out {
            k.run(s)
        }
        // SAFETY: an `Avx512` value exists only after `Avx512::detect` found
        // AVX-512F, AVX2, FMA and F16C on this CPU.
        unsafe { trampoline(self, k) }
    }
    /// 8 × 8 transposes in registers, on each 8-row half of the tile
    /// ([`Avx2::rows_to_tile_wide`]).
    #[inline(always)]
    unsafe fn rows_to_tile<E: Store32>(self, p: *const E, stride: usize, c: usize, tile: *mut f32) {
        // SAFETY: forwarded (16 rows, a tile of 16 lanes).
        unsafe { self.rows_to_tile_wide(p, stride, c, tile, 16) }
    }
    /// As [`Avx512::rows_to_tile`], the other way.
    #[inline(always)]
    unsafe fn tile_to_rows<E: Store32>(self, tile: *const f32, p: *mut E, stride: usize, c: usize) {
        // SAFETY: forwarded (16 rows, a tile of 16 lanes).
        unsafe { self.tile_to_rows_wide(tile, p, stride, c, 16) }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load<E: Store32>(self, p: *const E) -> __m512 {
        // SAFETY: AVX-512F is available (an `Avx512` is only made by
        // `Avx512::detect`); the caller guarantees 16 elements.
        unsafe { E::load_avx512(p) }
    }
    #[inline(always)]
    unsafe fn store<E: Store32>(self, p: *mut E, v: __m512) {
        // SAFETY: as `load`.
        unsafe { E::store_avx512(p, v) }
    }
    #[inline(always)]
    fn prefetch<T>(self, p: *const T) {
        // SAFETY: SSE is part of x86-64; a prefetch never faults, whatever the
        // address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }
    #[inline(always)]
    fn prefetch_l2<T>(self, p: *const T) {
        // SAFETY: as `prefetch`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p as *const i8) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn neg_inf_to(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe {
            let m = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, _mm512_set1_ps(f32::NEG_INFINITY));
            _mm512_mask_blend_ps(m, a, b)
        }
    }
    #[inline(always)]
    fn select(self, mask: __m512, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_mask_blend_ps(self.mask_k(mask), b, a) }
    }
    #[inline(always)]
    fn ne_zero(self, a: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        self.mask_v(unsafe { _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, _mm512_setzero_ps()) })
    }
    #[inline(always)]
    fn reduce_add(self, a: __m512) -> f32 {
        // SAFETY: AVX-512F is available (an `Avx512` is only made by
        // `Avx512::detect`), and so is AVX for the halves (`detect` checked AVX2).
        unsafe {
            let lo = _mm512_castps512_ps256(a);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
            sum8(_mm256_add_ps(lo, hi))
        }
    }
    #[inline(always)]
    fn reduce_max(self, a: __m512) -> f32 {
        let mut m = f32::NEG_INFINITY;
        for i in 0..16 {
            m = Scalar.max(m, self.lane(a, i));
        }
        m
    }
    #[inline(always)]
    fn write_lanes(self, a: __m512, out: &mut [f32; 16]) {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by
        // `Avx512::detect`; `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), a) };
    }
    #[inline(always)]
    fn vector_of(self, v: &[f32]) -> __m512 {
        let mut buf = [0.0f32; 16];
        buf.copy_from_slice(&v[..16]);
        // SAFETY: AVX-512F is available: an `Avx512` is only made by
        // `Avx512::detect`; `buf` holds 16 floats.
        unsafe { _mm512_loadu_ps(buf.as_ptr()) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn abs(self, a: __m512) -> __m512 {
        // `andnot` of the sign bit (AVX-512F has no float `andnot`).
        self.andnot(self.splat(-0.0), a)
    }
    #[inline(always)]
    fn lt(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        self.mask_v(unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) })
    }
    #[inline(always)]
    fn eq(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        self.mask_v(unsafe { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b) })
    }
    #[inline(always)]
    fn outside(self, a: __m512, lo: f32, hi: f32) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        self.mask_v(unsafe {
            let below = _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(a, _mm512_set1_ps(lo));
            // `a > inf` never holds and NaN is `below`: one compare (the bounds
            // are constants where this is inlined).
            if hi == f32::INFINITY {
                below
            } else {
                below | _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a, _mm512_set1_ps(hi))
            }
        })
    }
    #[inline(always)]
    fn or(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { self.bits_to_f32(_mm512_or_si512(self.to_bits(a), self.to_bits(b))) }
    }
    #[inline(always)]
    fn and(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { self.bits_to_f32(_mm512_and_si512(self.to_bits(a), self.to_bits(b))) }
    }
    #[inline(always)]
    fn andnot(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { self.bits_to_f32(_mm512_andnot_si512(self.to_bits(a), self.to_bits(b))) }
    }
    #[inline(always)]
    fn any(self, mask: __m512) -> bool {
        self.mask_k(mask) != 0
    }
    #[inline(always)]
    fn add_where(self, mask: __m512, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_mask_add_ps(a, self.mask_k(mask), a, b) }
    }
    type I = __m512i;
    #[inline(always)]
    fn round(self, a: __m512) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    fn to_i32(self, a: __m512) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by
        // `Avx512::detect`. The conversion rounds as MXCSR says: to nearest even,
        // Rust's only mode.
        unsafe { _mm512_cvtps_epi32(a) }
    }
    #[inline(always)]
    fn i32_to_f32(self, a: __m512i) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_cvtepi32_ps(a) }
    }
    #[inline(always)]
    fn to_bits(self, a: __m512) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_castps_si512(a) }
    }
    #[inline(always)]
    fn bits_to_f32(self, a: __m512i) -> __m512 {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_castsi512_ps(a) }
    }
    #[inline(always)]
    fn splat_i32(self, v: i32) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_set1_epi32(v) }
    }
    #[inline(always)]
    fn add_i32(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    fn sub_i32(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_sub_epi32(a, b) }
    }
    #[inline(always)]
    fn min_i32(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_min_epi32(a, b) }
    }
    #[inline(always)]
    fn shl_23(self, a: __m512i) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_slli_epi32::<23>(a) }
    }
    #[inline(always)]
    fn shr_23(self, a: __m512i) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_srli_epi32::<23>(a) }
    }
    #[inline(always)]
    fn shl_20(self, a: __m512i) -> __m512i {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { _mm512_slli_epi32::<20>(a) }
    }
    #[inline(always)]
    fn lut8(self, table: &[i32; 8], a: __m512i) -> __m512i {
        // SAFETY: AVX-512F is available (an `Avx512` is only made by
        // `Avx512::detect`); the load reads the table's 8 i32, placed in both halves
        // so that `vpermd`'s 4-bit index finds entry `a & 7`.
        unsafe {
            let t = _mm256_loadu_si256(table.as_ptr().cast());
            let t = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(t), t);
            _mm512_permutexvar_epi32(a, t)
        }
    }
    type D = (__m512d, __m512d);
    #[inline(always)]
    fn d_zero(self) -> Self::D {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe { (_mm512_setzero_pd(), _mm512_setzero_pd()) }
    }
    #[inline(always)]
    fn d_add(self, acc: Self::D, v: __m512) -> Self::D {
        // SAFETY: AVX-512F is available: an `Avx512` is only made by `Avx512::detect`.
        unsafe {
            let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            )));
            (_mm512_add_pd(acc.0, lo), _mm512_add_pd(acc.1, hi))
        }
    }
    #[inline(always)]
    fn d_sum(self, acc: Self::D) -> f64 {
        let mut out = [0.0f64; 16];
        // SAFETY: AVX-512F is available: an `Avx512` is only made by
        // `Avx512::detect`; `out` holds 16 doubles.
        unsafe {
            _mm512_storeu_pd(out.as_mut_ptr(), acc.0);
            _mm512_storeu_pd(out.as_mut_ptr().add(8), acc.1);
        }
        sum_lanes(&out)
    }
}
