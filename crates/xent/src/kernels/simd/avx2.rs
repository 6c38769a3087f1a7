//! [`Avx2`]: AVX2 + FMA + F16C, 8 lanes of `__m256`.

use core::arch::x86_64::*;

use super::{sum_lanes, transpose_each, Scalar, Simd, SimdKernel, Store32};
use half::{bf16, f16};

/// A [`Store32`] type's 8-lane loads and stores.
pub(crate) trait StoreAvx2: Sized {
    /// # Safety
    /// AVX2 and F16C available; `p` readable for 8 elements.
    unsafe fn load_avx2(p: *const Self) -> __m256;
    /// # Safety
    /// AVX2 and F16C available; `p` writable for 8 elements.
    unsafe fn store_avx2(p: *mut Self, v: __m256);
    /// # Safety
    /// AVX2 and F16C available; `p` writable for 16 elements.
    #[inline(always)]
    unsafe fn store2_avx2(p: *mut Self, a: __m256, b: __m256) {
        // SAFETY: the caller's contract covers both halves.
        unsafe {
            Self::store_avx2(p, a);
            Self::store_avx2(p.add(8), b);
        }
    }
    /// [`StoreAvx2::store_avx2`] past the caches (a non-temporal store).
    ///
    /// # Safety
    /// AVX2 and F16C available; `p` writable for 8 elements and aligned to them
    /// (`8 · size_of::<Self>()` bytes).
    unsafe fn stream_avx2(p: *mut Self, v: __m256);
}

impl StoreAvx2 for f32 {
    #[inline(always)]
    unsafe fn load_avx2(p: *const Self) -> __m256 {
        // SAFETY: the caller guarantees AVX and 8 readable floats.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_avx2(p: *mut Self, v: __m256) {
        // SAFETY: the caller guarantees AVX and 8 writable floats.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn stream_avx2(p: *mut Self, v: __m256) {
        // SAFETY: the caller guarantees AVX and 8 writable floats at a 32-byte
        // boundary.
        unsafe { _mm256_stream_ps(p, v) }
    }
}

/// Each lane of `v` rounded to bf16 (to nearest even, as `bf16::from_f32`: add
/// 0x7FFF + lsb, keep the high half; NaN stays a quiet NaN), in the low 16 bits of
/// its 32-bit lane.
///
/// # Safety
/// AVX2 available.
#[inline(always)]
unsafe fn bf16_bits(v: __m256) -> __m256i {
    // SAFETY: AVX2 available (the caller's contract).
    unsafe {
        let bits = _mm256_castps_si256(v);
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
        let rounded = _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), lsb);
        let hi = _mm256_srli_epi32::<16>(rounded);
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        let qnan = _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x40));
        _mm256_blendv_epi8(hi, qnan, nan)
    }
}

/// The 8 lanes of `v` rounded to bf16 (as [`bf16_bits`]), packed in order into 128
/// bits.
///
/// # Safety
/// AVX2 available.
#[inline(always)]
unsafe fn bf16_packed(v: __m256) -> __m128i {
    // SAFETY: AVX2 available (the caller's contract).
    unsafe {
        let hi = bf16_bits(v);
        let packed = _mm256_packus_epi32(hi, hi);
        _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(packed))
    }
}

impl StoreAvx2 for bf16 {
    #[inline(always)]
    unsafe fn load_avx2(p: *const Self) -> __m256 {
        // SAFETY: AVX2 available; 8 bf16 = 16 readable bytes. bf16 is the high half
        // of an f32, so widening is a zero-extend and a shift.
        unsafe {
            let h = _mm_loadu_si128(p as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn store_avx2(p: *mut Self, v: __m256) {
        // SAFETY: AVX2 available; 16 writable bytes.
        unsafe { _mm_storeu_si128(p as *mut __m128i, bf16_packed(v)) }
    }
    #[inline(always)]
    unsafe fn stream_avx2(p: *mut Self, v: __m256) {
        // SAFETY: AVX2 available; 16 writable bytes at a 16-byte boundary.
        unsafe { _mm_stream_si128(p as *mut __m128i, bf16_packed(v)) }
    }
    #[inline(always)]
    unsafe fn store2_avx2(p: *mut Self, a: __m256, b: __m256) {
        // SAFETY: AVX2 available; 32 writable bytes. The pack interleaves the 128-bit
        // halves (a0..3 b0..3 a4..7 b4..7); the permute puts them in order.
        unsafe {
            let packed = _mm256_packus_epi32(bf16_bits(a), bf16_bits(b));
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
            _mm256_storeu_si256(p as *mut __m256i, ordered);
        }
    }
}

impl StoreAvx2 for f16 {
    #[inline(always)]
    unsafe fn load_avx2(p: *const Self) -> __m256 {
        // SAFETY: F16C available (checked with AVX2); 16 readable bytes.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn store_avx2(p: *mut Self, v: __m256) {
        // SAFETY: F16C available; 16 writable bytes.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm_storeu_si128(p as *mut __m128i, h);
        }
    }
    #[inline(always)]
    unsafe fn stream_avx2(p: *mut Self, v: __m256) {
        // SAFETY: F16C available; 16 writable bytes at a 16-byte boundary.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm_stream_si128(p as *mut __m128i, h);
        }
    }
}

/// The 8 lanes of `a` summed: the two halves, then pairs, then the last two (the
/// order of [`Avx2`]'s `reduce_add`, which [`super::Avx512`] ends with too).
///
/// # Safety
/// AVX available.
#[inline(always)]
pub(super) unsafe fn sum8(a: __m256) -> f32 {
    // SAFETY: AVX available (the caller's contract); SSE is part of x86-64.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }
}

/// AVX2 + FMA + F16C, 8 lanes. Only constructed after runtime detection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

/// [`Avx2::transpose8`] as a kernel.
struct Transpose8([__m256; 8]);

impl SimdKernel<Avx2> for Transpose8 {
    type Out = [__m256; 8];
    #[inline(always)]
    fn run(self, s: Avx2) -> [__m256; 8] {
        s.transpose8_body(self.0)
    }
}

/// [`Avx2::rows_to_tile_in`] as a kernel (made only by [`Avx2::rows_to_tile_wide`],
/// under its caller's guarantees).
struct RowsToTile<E> {
    p: *const E,
    stride: usize,
    c: usize,
    tile: *mut f32,
    lanes: usize,
}

impl<E: Store32> SimdKernel<Avx2> for RowsToTile<E> {
    type Out = ();
    #[inline(always)]
    fn run(self, s: Avx2) {
        // SAFETY: `rows_to_tile_wide`'s caller guarantees `rows_to_tile_in`'s
        // contract for these fields.
        unsafe { s.rows_to_tile_in(self.p, self.stride, self.c, self.tile, self.lanes) }
    }
}

/// [`Avx2::tile_to_rows_in`] as a kernel (made only by [`Avx2::tile_to_rows_wide`],
/// under its caller's guarantees).
struct TileToRows<E> {
    tile: *const f32,
    p: *mut E,
    stride: usize,
    c: usize,
    lanes: usize,
}

impl<E: Store32> SimdKernel<Avx2> for TileToRows<E> {
    type Out = ();
    #[inline(always)]
    fn run(self, s: Avx2) {
        // SAFETY: `tile_to_rows_wide`'s caller guarantees `tile_to_rows_in`'s
        // contract for these fields.
        unsafe { s.tile_to_rows_in(self.tile, self.p, self.stride, self.c, self.lanes) }
    }
}

impl Avx2 {
    /// The 8 × 8 transpose: lane `j` of output `i` is lane `i` of input `j`. A kernel
    /// of its own ([`Transpose8`]): an unoptimized build gives each inlined copy of its
    /// 24 shuffles their own stack slots, and the short-row kernels use it four
    /// times; optimized builds inline it.
    #[inline(always)]
    fn transpose8(self, r: [__m256; 8]) -> [__m256; 8] {
        self.vectorize(Transpose8(r))
    }

    /// The body of [`Avx2::transpose8`].
    #[inline(always)]
    fn transpose8_body(self, r: [__m256; 8]) -> [__m256; 8] {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            // Within each 128-bit half: rows 0–3 (u0–u3) and 4–7 (u4–u7) of
            // columns 0–3 (low half) and 4–7 (high half).
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ]
        }
    }

    /// Lane `i` of `a`.
    #[inline(always)]
    fn lane(self, a: __m256, i: usize) -> f32 {
        let mut out = [0.0f32; 8];
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`;
        // `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
        out[i]
    }

    /// [`Simd::rows_to_tile`] for `lanes` rows (a multiple of 8) into a tile of
    /// `lanes` lanes, 8 rows at a time: rows of at least 8 classes go through 8 × 8
    /// transposes of windows that start at classes 0, 8, 16, … and, for the last, at
    /// `c − 8` (overlapping the one before rather than reading past the row).
    ///
    /// # Safety
    /// `p + l·stride + k` readable for `l < lanes`, `k < c`; `tile` writable for
    /// `c·lanes` f32 and not overlapping the rows.
    #[inline(always)]
    unsafe fn rows_to_tile_in<E: Store32>(
        self,
        p: *const E,
        stride: usize,
        c: usize,
        tile: *mut f32,
        lanes: usize,
    ) {
        // SAFETY: AVX2 and F16C are available (an `Avx2` is only made by
        // `Avx2::detect`); rows 8h..8h + 8 go to lanes 8h..8h + 8, and every window
        // lies in classes w..w + 8 ≤ c of the caller's rows and tile.
        unsafe {
            if c < 8 {
                return transpose_each(p, stride, tile, lanes, (lanes, c));
            }
            for h in 0..lanes / 8 {
                let (p, tile) = (p.add(8 * h * stride), tile.add(8 * h));
                let mut k0 = 0;
                while k0 < c {
                    let w = k0.min(c - 8);
                    let r = core::array::from_fn(|l| E::load_avx2(p.add(l * stride + w)));
                    for (j, v) in self.transpose8(r).into_iter().enumerate() {
                        _mm256_storeu_ps(tile.add((w + j) * lanes), v);
                    }
                    k0 += 8;
                }
            }
        }
    }

    /// The inverse of [`Avx2::rows_to_tile_in`] (an overlap writes the same values
    /// twice).
    ///
    /// # Safety
    /// `p + l·stride + k` writable for `l < lanes`, `k < c`; `tile` readable for
    /// `c·lanes` f32 and not overlapping the rows.
    #[inline(always)]
    unsafe fn tile_to_rows_in<E: Store32>(
        self,
        tile: *const f32,
        p: *mut E,
        stride: usize,
        c: usize,
        lanes: usize,
    ) {
        // SAFETY: as rows_to_tile_in.
        unsafe {
            if c < 8 {
                return transpose_each(tile, lanes, p, stride, (c, lanes));
            }
            for h in 0..lanes / 8 {
                let (tile, p) = (tile.add(8 * h), p.add(8 * h * stride));
                let mut k0 = 0;
                while k0 < c {
                    let w = k0.min(c - 8);
                    let t = core::array::from_fn(|j| _mm256_loadu_ps(tile.add((w + j) * lanes)));
                    for (l, v) in self.transpose8(t).into_iter().enumerate() {
                        E::store_avx2(p.add(l * stride + w), v);
                    }
                    k0 += 8;
                }
            }
        }
    }

    /// [`Avx2::rows_to_tile_in`] as a kernel of its own ([`RowsToTile`]): the
    /// AVX-512 tiles of 16 lanes use it, and an unoptimized build would otherwise
    /// give each inlined copy its own stack slots in the short-row kernels.
    ///
    /// # Safety
    /// As [`Avx2::rows_to_tile_in`].
    #[inline(always)]
    pub(super) unsafe fn rows_to_tile_wide<E: Store32>(
        self,
        p: *const E,
        stride: usize,
        c: usize,
        tile: *mut f32,
        lanes: usize,
    ) {
        self.vectorize(RowsToTile {
            p,
            stride,
            c,
            tile,
            lanes,
        })
    }

    /// The inverse of [`Avx2::rows_to_tile_wide`], as a kernel ([`TileToRows`]).
    ///
    /// # Safety
    /// As [`Avx2::tile_to_rows_in`].
    #[inline(always)]
    pub(super) unsafe fn tile_to_rows_wide<E: Store32>(
        self,
        tile: *const f32,
        p: *mut E,
        stride: usize,
        c: usize,
        lanes: usize,
    ) {
        self.vectorize(TileToRows {
            tile,
            p,
            stride,
            c,
            lanes,
        })
    }

    /// `Some` when the running CPU has AVX2, FMA and F16C.
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        .then_some(Avx2(()))
    }
}

// Every intrinsic below needs AVX, AVX2, FMA or F16C, which the CPU has: an `Avx2`
// is only made by `Avx2::detect`, which checks them (AVX2 implies AVX).
impl Simd for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    #[inline(always)]
    fn vectorize<K: SimdKernel<Self>>(self, k: K) -> K::Out {
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn trampoline<K: SimdKernel<Avx2>>(s: Avx2, k: K) -> K::Out {
            k.run(s)
        }
        // SAFETY: an `Avx2` value exists only after `Avx2::detect` found AVX2,
        // FMA and F16C on this CPU.
        unsafe { trampoline(self, k) }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load<E: Store32>(self, p: *const E) -> __m256 {
        // SAFETY: AVX2 and F16C are available (an `Avx2` is only made by
        // `Avx2::detect`); the caller guarantees 8 elements.
        unsafe { E::load_avx2(p) }
    }
    #[inline(always)]
    unsafe fn store<E: Store32>(self, p: *mut E, v: __m256) {
        // SAFETY: as `load`.
        unsafe { E::store_avx2(p, v) }
    }
    #[inline(always)]
    unsafe fn store2<E: Store32>(self, p: *mut E, a: __m256, b: __m256) {
        // SAFETY: as `load`, for 16 elements.
        unsafe { E::store2_avx2(p, a, b) }
    }
    #[inline(always)]
    unsafe fn stream<E: Store32>(self, p: *mut E, v: __m256) {
        // SAFETY: as `load`, and the caller guarantees the alignment.
        unsafe { E::stream_avx2(p, v) }
    }
    #[inline(always)]
    fn stream_fence(self) {
        // SAFETY: SSE is part of x86-64.
        unsafe { _mm_sfence() }
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
    /// 8 × 8 transposes in registers ([`Avx2::rows_to_tile_in`]).
    #[inline(always)]
    unsafe fn rows_to_tile<E: Store32>(self, p: *const E, stride: usize, c: usize, tile: *mut f32) {
        // SAFETY: forwarded (a tile of 8 lanes).
        unsafe { self.rows_to_tile_in(p, stride, c, tile, 8) }
    }
    #[inline(always)]
    unsafe fn transpose_block<A: Store32, B: Store32>(
        self,
        src: *const A,
        src_stride: usize,
        dst: *mut B,
        dst_stride: usize,
    ) {
        // SAFETY: AVX2 and F16C are available (an `Avx2` is only made by
        // `Avx2::detect`); the caller guarantees 8 readable rows of 8 at src and 8
        // writable rows of 8 at dst.
        unsafe {
            let r = core::array::from_fn(|i| A::load_avx2(src.add(i * src_stride)));
            for (j, v) in self.transpose8(r).into_iter().enumerate() {
                B::store_avx2(dst.add(j * dst_stride), v);
            }
        }
    }
    /// 8 × 8 transposes in registers ([`Avx2::tile_to_rows_in`]).
    #[inline(always)]
    unsafe fn tile_to_rows<E: Store32>(self, tile: *const f32, p: *mut E, stride: usize, c: usize) {
        // SAFETY: forwarded (a tile of 8 lanes).
        unsafe { self.tile_to_rows_in(tile, p, stride, c, 8) }
    }

    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn neg_inf_to(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe {
            let m = _mm256_cmp_ps::<_CMP_EQ_OQ>(a, _mm256_set1_ps(f32::NEG_INFINITY));
            _mm256_blendv_ps(a, b, m)
        }
    }
    #[inline(always)]
    fn select(self, mask: __m256, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_blendv_ps(b, a, mask) }
    }
    #[inline(always)]
    fn ne_zero(self, a: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_cmp_ps::<_CMP_NEQ_UQ>(a, _mm256_setzero_ps()) }
    }
    #[inline(always)]
    fn reduce_add(self, a: __m256) -> f32 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { sum8(a) }
    }
    #[inline(always)]
    fn reduce_max(self, a: __m256) -> f32 {
        let mut m = f32::NEG_INFINITY;
        for i in 0..8 {
            m = Scalar.max(m, self.lane(a, i));
        }
        m
    }
    #[inline(always)]
    fn write_lanes(self, a: __m256, out: &mut [f32; 16]) {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`;
        // `out` holds 16 ≥ 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
    }
    #[inline(always)]
    fn vector_of(self, v: &[f32]) -> __m256 {
        let mut buf = [0.0f32; 8];
        buf.copy_from_slice(&v[..8]);
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`;
        // `buf` holds 8 floats.
        unsafe { _mm256_loadu_ps(buf.as_ptr()) }
    }
    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    fn abs(self, a: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }
    #[inline(always)]
    fn lt(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn eq(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b) }
    }
    #[inline(always)]
    fn outside(self, a: __m256, lo: f32, hi: f32) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe {
            let below = _mm256_cmp_ps::<_CMP_NGE_UQ>(a, _mm256_set1_ps(lo));
            // `a > inf` never holds and NaN is `below`: one compare (the bounds
            // are constants where this is inlined).
            if hi == f32::INFINITY {
                return below;
            }
            _mm256_or_ps(below, _mm256_cmp_ps::<_CMP_NLE_UQ>(a, _mm256_set1_ps(hi)))
        }
    }
    #[inline(always)]
    fn or(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_or_ps(a, b) }
    }
    #[inline(always)]
    fn and(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_and_ps(a, b) }
    }
    #[inline(always)]
    fn andnot(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_andnot_ps(a, b) }
    }
    #[inline(always)]
    fn any(self, mask: __m256) -> bool {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_movemask_ps(mask) != 0 }
    }
    #[inline(always)]
    fn add_where(self, mask: __m256, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_add_ps(a, _mm256_and_ps(mask, b)) }
    }
    type I = __m256i;
    #[inline(always)]
    fn round(self, a: __m256) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    fn to_i32(self, a: __m256) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`. The
        // conversion rounds as MXCSR says: to nearest even, Rust's only mode.
        unsafe { _mm256_cvtps_epi32(a) }
    }
    #[inline(always)]
    fn i32_to_f32(self, a: __m256i) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_cvtepi32_ps(a) }
    }
    #[inline(always)]
    fn to_bits(self, a: __m256) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_castps_si256(a) }
    }
    #[inline(always)]
    fn bits_to_f32(self, a: __m256i) -> __m256 {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_castsi256_ps(a) }
    }
    #[inline(always)]
    fn splat_i32(self, v: i32) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_set1_epi32(v) }
    }
    #[inline(always)]
    fn add_i32(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_add_epi32(a, b) }
    }
    #[inline(always)]
    fn sub_i32(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_sub_epi32(a, b) }
    }
    #[inline(always)]
    fn min_i32(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_min_epi32(a, b) }
    }
    #[inline(always)]
    fn shl_23(self, a: __m256i) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_slli_epi32::<23>(a) }
    }
    #[inline(always)]
    fn shr_23(self, a: __m256i) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_srli_epi32::<23>(a) }
    }
    #[inline(always)]
    fn shl_20(self, a: __m256i) -> __m256i {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { _mm256_slli_epi32::<20>(a) }
    }
    #[inline(always)]
    fn lut8(self, table: &[i32; 8], a: __m256i) -> __m256i {
        // SAFETY: AVX2 is available (an `Avx2` is only made by `Avx2::detect`); the
        // load reads the table's 8 i32; `vpermd` takes each lane's low 3 bits.
        unsafe { _mm256_permutevar8x32_epi32(_mm256_loadu_si256(table.as_ptr().cast()), a) }
    }
    type D = (__m256d, __m256d);
    #[inline(always)]
    fn d_zero(self) -> Self::D {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe { (_mm256_setzero_pd(), _mm256_setzero_pd()) }
    }
    #[inline(always)]
    fn d_add(self, acc: Self::D, v: __m256) -> Self::D {
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`.
        unsafe {
            let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
            (_mm256_add_pd(acc.0, lo), _mm256_add_pd(acc.1, hi))
        }
    }
    #[inline(always)]
    fn d_sum(self, acc: Self::D) -> f64 {
        let mut out = [0.0f64; 8];
        // SAFETY: AVX2 is available: an `Avx2` is only made by `Avx2::detect`;
        // `out` holds 8 doubles.
        unsafe {
            _mm256_storeu_pd(out.as_mut_ptr(), acc.0);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), acc.1);
        }
        sum_lanes(&out)
    }
}
