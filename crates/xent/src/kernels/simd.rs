//! The instruction sets the f32 kernels run on, behind one trait.
//!
//! A kernel body is written once, generic over [`Simd`], and marked
//! `#[inline(always)]`; thin `#[target_feature]` wrappers in [`super::dispatch`]
//! instantiate it per instruction set, so that the body is compiled with AVX2 or
//! AVX-512 enabled while the binary still runs on any x86-64 (and on aarch64, where
//! only [`Scalar`] exists). [`Scalar`] (one lane, libm `exp`) is the twin that every
//! vector path is tested against, and it handles the tails shorter than a vector.
//!
//! ## Vector `exp`
//! Cephes' `expf` scheme: `n = round(x·log2 e)`, `r = x − n·ln 2` (ln 2 split in
//! two), `e^r ≈ 1 + r + r²·P(r)` on `[−ln2/2, ln2/2]` with a degree-4 minimax `P`
//! (one term shorter than Cephes'), then `2^n` through the exponent bits. Max error 2 ulp for results ≥ 2⁻¹²⁶ (`x ≥ −87.33`), asserted by
//! `kernels::tests::vector_exp_error_bound` (the measured value is printed there);
//! smaller results have absolute error < 1.2e-38 and `x < −87.5` gives 0, so
//! `exp(−inf) = 0` exactly; `exp(x > 88.72) = inf`; NaN propagates. The kernels only
//! take `exp` of `x − max ≤ 0`, through `exp_small`: the same polynomial with `n`
//! rounded by adding 1.5·2²³ (whose sum's bits give `2^n` directly) and no clamp
//! (lanes below −87.5 are set to 0 at the end); 3 fewer instructions, same bound
//! (`vector_exp_small_error_bound`). Tested against `f64` over `[−104, 88.7]` in
//! `kernels::tests`.
//!
//! ## Vector `ln` and `ln_1p`
//! Cephes' `logf`: `x = m·2^e` with `m` in `[√½, √2)`, `ln x = e·ln 2 + f − f²/2 +
//! f³·P(f)` for `f = m − 1` (degree-8 `P`, ln 2 split in two). Subnormals are scaled
//! by 2^23 first; `ln 0 = −inf`, `ln inf = inf`, `ln` of a negative number or NaN is
//! NaN. A vector with no such lane skips those fix-ups. Max error 2 ulp over every
//! positive float (0.76 measured), asserted by `kernels::tests::vector_ln_error_bound`.
//! `ln_1p(a)` is `a·ln(u)/(u − 1)` for `u = 1 + a` rounded (Goldberg's correction of
//! `u`'s rounding), `a` where `u` rounds to 1, `inf` at `inf`: max error 3 ulp on
//! `[−1, f32::MAX]` (2.2 measured), asserted by `vector_ln_1p_error_bound`.

use crate::element::{bf16, f16};

/// Storage types loaded into and stored from f32 vectors.
pub(crate) trait Store32: Copy + Send + Sync + 'static {
    /// Widens one element.
    fn to_f32(self) -> f32;
    /// Rounds one element (to nearest even).
    fn from_f32(v: f32) -> Self;
    /// `true` for `f32` itself (stores are exact).
    const IS_F32: bool = false;
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// AVX2 and F16C available; `p` readable for 8 elements.
    unsafe fn load_avx2(p: *const Self) -> core::arch::x86_64::__m256;
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// AVX2 and F16C available; `p` writable for 8 elements.
    unsafe fn store_avx2(p: *mut Self, v: core::arch::x86_64::__m256);
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// AVX2 and F16C available; `p` writable for 16 elements.
    #[inline(always)]
    unsafe fn store2_avx2(
        p: *mut Self,
        a: core::arch::x86_64::__m256,
        b: core::arch::x86_64::__m256,
    ) {
        // SAFETY: the caller's contract covers both halves.
        unsafe {
            Self::store_avx2(p, a);
            Self::store_avx2(p.add(8), b);
        }
    }
    #[cfg(target_arch = "x86_64")]
    /// [`Store32::store_avx2`] past the caches (a non-temporal store).
    ///
    /// # Safety
    /// AVX2 and F16C available; `p` writable for 8 elements and aligned to them
    /// (`8 · size_of::<Self>()` bytes).
    unsafe fn stream_avx2(p: *mut Self, v: core::arch::x86_64::__m256);
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// AVX-512F available; `p` readable for 16 elements.
    unsafe fn load_avx512(p: *const Self) -> core::arch::x86_64::__m512;
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// AVX-512F available; `p` writable for 16 elements.
    unsafe fn store_avx512(p: *mut Self, v: core::arch::x86_64::__m512);
}

/// A kernel: a computation written once, generic over the instruction set (pulp's
/// `WithSimd`). [`Simd::vectorize`] runs it in a function of its own compiled for
/// that instruction set.
///
/// `run` is `#[inline(always)]` in every implementation, so that its body lands in
/// that function; whatever it calls that is not a leaf primitive is another kernel,
/// entered through `vectorize` again. Each kernel is then one stack frame of its own
/// size, in optimized and unoptimized builds alike.
pub(crate) trait Kernel {
    /// What the kernel returns.
    type Out;
    /// The kernel's body, on the instruction set `s`.
    fn run<S: Simd>(self, s: S) -> Self::Out;
}

/// A kernel for one instruction set `S` only: one that takes or returns `S`'s
/// vectors. Every [`Kernel`] is one for each instruction set.
pub(crate) trait SimdKernel<S: Simd> {
    /// What the kernel returns.
    type Out;
    /// The kernel's body (`#[inline(always)]`, as [`Kernel::run`]).
    fn run(self, s: S) -> Self::Out;
}

impl<S: Simd, K: Kernel> SimdKernel<S> for K {
    type Out = K::Out;
    #[inline(always)]
    fn run(self, s: S) -> K::Out {
        Kernel::run(self, s)
    }
}

/// One instruction set's f32 vector: the operations the kernels need.
///
/// The operations are leaf primitives, `#[inline(always)]`, so that they compile
/// inside the kernel that uses them, where [`Simd::vectorize`] has enabled the
/// instruction set.
pub(crate) trait Simd: Copy + Send + Sync + 'static {
    /// The vector type.
    type V: Copy;
    /// f32 lanes per vector.
    const LANES: usize;

    /// Runs `k` on this instruction set, in a function compiled with its target
    /// features (a trampoline generic over the kernel; optimized builds may inline
    /// it into a caller compiled for the same features). Kernels call other kernels
    /// this way and stay in vector code without being inlined into one frame.
    fn vectorize<K: SimdKernel<Self>>(self, k: K) -> K::Out;

    fn splat(self, v: f32) -> Self::V;
    /// # Safety
    /// `p` readable for `LANES` elements.
    unsafe fn load<E: Store32>(self, p: *const E) -> Self::V;
    /// # Safety
    /// `p` writable for `LANES` elements.
    unsafe fn store<E: Store32>(self, p: *mut E, v: Self::V);
    /// Stores `a` then `b`: `2·LANES` elements (packed together where the type
    /// allows, bf16 on AVX2).
    ///
    /// # Safety
    /// `p` writable for `2·LANES` elements.
    #[inline(always)]
    unsafe fn store2<E: Store32>(self, p: *mut E, a: Self::V, b: Self::V) {
        // SAFETY: the caller guarantees 2·LANES writable elements.
        unsafe {
            self.store(p, a);
            self.store(p.add(Self::LANES), b);
        }
    }
    /// [`Simd::store`] past the caches where the instruction set has such stores (a
    /// non-temporal store, for output not read again soon); a plain store otherwise.
    /// A thread's streaming stores are ordered before its later stores only after
    /// [`Simd::stream_fence`].
    ///
    /// # Safety
    /// `p` writable for `LANES` elements and aligned to them (`LANES · size_of::<E>()`
    /// bytes).
    #[inline(always)]
    unsafe fn stream<E: Store32>(self, p: *mut E, v: Self::V) {
        // SAFETY: forwarded.
        unsafe { self.store(p, v) }
    }
    /// Orders the streaming stores before this thread's later stores (and so before
    /// whatever hands the output to another thread).
    #[inline(always)]
    fn stream_fence(self) {}
    /// `LANES` rows of `c` classes into a class-major f32 tile: class `k` of row
    /// `l` (at `p + l·stride + k`) goes to `tile[k·LANES + l]`. Element by element
    /// here; [`Avx2`] transposes 8 × 8 blocks in registers.
    ///
    /// # Safety
    /// `p + l·stride + k` readable for `l < LANES`, `k < c`; `tile` writable for
    /// `c·LANES` f32 and not overlapping the rows.
    #[inline(always)]
    unsafe fn rows_to_tile<E: Store32>(self, p: *const E, stride: usize, c: usize, tile: *mut f32) {
        // SAFETY: forwarded.
        unsafe { transpose_each(p, stride, tile, Self::LANES, (Self::LANES, c)) }
    }
    /// The inverse of [`Simd::rows_to_tile`]: `tile[k·LANES + l]`, rounded to `E`,
    /// goes to `p + l·stride + k`.
    ///
    /// # Safety
    /// `p + l·stride + k` writable for `l < LANES`, `k < c`; `tile` readable for
    /// `c·LANES` f32 and not overlapping the rows.
    #[inline(always)]
    unsafe fn tile_to_rows<E: Store32>(self, tile: *const f32, p: *mut E, stride: usize, c: usize) {
        // SAFETY: forwarded.
        unsafe { transpose_each(tile, Self::LANES, p, stride, (c, Self::LANES)) }
    }
    /// One `LANES × LANES` block transposed and converted: `src[i·src_stride + j]`
    /// goes to `dst[j·dst_stride + i]` for `i, j < LANES`. Element by element here;
    /// [`Avx2`] transposes in registers.
    ///
    /// # Safety
    /// `src + i·src_stride` readable and `dst + j·dst_stride` writable for `LANES`
    /// elements each, `i, j < LANES`; the two do not overlap.
    #[inline(always)]
    unsafe fn transpose_block<A: Store32, B: Store32>(
        self,
        src: *const A,
        src_stride: usize,
        dst: *mut B,
        dst_stride: usize,
    ) {
        // SAFETY: forwarded.
        unsafe { transpose_each(src, src_stride, dst, dst_stride, (Self::LANES, Self::LANES)) }
    }
    /// Hints that the cache line at `p` will be used soon (into the first-level
    /// cache). Any address is allowed: a prefetch never faults. Nothing on
    /// [`Scalar`].
    fn prefetch<T>(self, p: *const T);
    /// [`Simd::prefetch`] into the second-level cache only (for data needed after
    /// more than the first-level cache holds). Nothing by default.
    #[inline(always)]
    fn prefetch_l2<T>(self, _p: *const T) {}
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane-wise max; which operand wins for NaN is unspecified (the kernels let
    /// NaN propagate through the sums instead).
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `if a == -inf { b } else { a }` per lane.
    fn neg_inf_to(self, a: Self::V, b: Self::V) -> Self::V;
    /// `if mask_src != 0 { a } else { b }` per lane, where `mask` came from [`Simd::ne_zero`].
    fn select(self, mask: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// All-ones lanes where `a != 0`, zero lanes elsewhere.
    fn ne_zero(self, a: Self::V) -> Self::V;
    fn exp(self, a: Self::V) -> Self::V;
    /// `exp` for `a ≤ 88.37` (or NaN), as the kernels' `x − max ≤ 0`: [`Simd::exp`]
    /// without the overflow handling, same error bound.
    fn exp_small(self, a: Self::V) -> Self::V;
    fn tanh(self, a: Self::V) -> Self::V;
    /// Sum of the lanes in a fixed order.
    fn reduce_add(self, a: Self::V) -> f32;
    /// Max of the lanes.
    fn reduce_max(self, a: Self::V) -> f32;
    /// All lanes of `a` into the first `LANES` entries of `out`.
    fn write_lanes(self, a: Self::V, out: &mut [f32; 16]);
    /// A vector from `LANES` values.
    fn vector_of(self, v: &[f32]) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise min; which operand wins for NaN is unspecified.
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn abs(self, a: Self::V) -> Self::V;
    /// All-ones lanes where `a < b` (false for NaN), zero lanes elsewhere.
    fn lt(self, a: Self::V, b: Self::V) -> Self::V;
    /// All-ones lanes where `a == b` (false for NaN).
    fn eq(self, a: Self::V, b: Self::V) -> Self::V;
    /// All-ones lanes where `!(lo ≤ a ≤ hi)`: outside the interval, or NaN.
    fn outside(self, a: Self::V, lo: f32, hi: f32) -> Self::V;
    /// Lane-wise OR of two masks.
    fn or(self, a: Self::V, b: Self::V) -> Self::V;
    /// Whether any lane of a mask is set.
    fn any(self, mask: Self::V) -> bool;
    /// Natural logarithm over the whole f32 range (see the module docs).
    fn ln(self, a: Self::V) -> Self::V;
    /// `ln(1 + a)`, accurate for small `a` (see the module docs).
    fn ln_1p(self, a: Self::V) -> Self::V;

    /// `f64` lane sums of f32 vectors: a fixed lane order, so sums do not depend on
    /// where a thread's work starts.
    type D: Copy;
    /// All-zero sums.
    fn d_zero(self) -> Self::D;
    /// Each lane of `v`, widened exactly, added to its own `f64` sum.
    fn d_add(self, acc: Self::D, v: Self::V) -> Self::D;
    /// The lane sums added in a fixed order.
    fn d_sum(self, acc: Self::D) -> f64;
}

/// A `rows × cols` matrix transposed element by element, converting:
/// `src[i·src_stride + j]` goes to `dst[j·dst_stride + i]` (the element-wise form of
/// [`Simd::transpose_block`], [`Simd::rows_to_tile`] and [`Simd::tile_to_rows`]).
///
/// # Safety
/// `src + i·src_stride` readable for `cols` elements, `i < rows`; `dst +
/// j·dst_stride` writable for `rows` elements, `j < cols`; the two do not overlap.
#[inline(always)]
pub(crate) unsafe fn transpose_each<A: Store32, B: Store32>(
    src: *const A,
    src_stride: usize,
    dst: *mut B,
    dst_stride: usize,
    (rows, cols): (usize, usize),
) {
    // SAFETY: the caller guarantees every access.
    unsafe {
        for i in 0..rows {
            for j in 0..cols {
                *dst.add(j * dst_stride + i) = B::from_f32((*src.add(i * src_stride + j)).to_f32());
            }
        }
    }
}

impl Store32 for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_avx2(p: *const Self) -> core::arch::x86_64::__m256 {
        // SAFETY: the caller guarantees AVX and 8 readable floats.
        unsafe { core::arch::x86_64::_mm256_loadu_ps(p) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn store_avx2(p: *mut Self, v: core::arch::x86_64::__m256) {
        // SAFETY: the caller guarantees AVX and 8 writable floats.
        unsafe { core::arch::x86_64::_mm256_storeu_ps(p, v) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn stream_avx2(p: *mut Self, v: core::arch::x86_64::__m256) {
        // SAFETY: the caller guarantees AVX and 8 writable floats at a 32-byte
        // boundary.
        unsafe { core::arch::x86_64::_mm256_stream_ps(p, v) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_avx512(p: *const Self) -> core::arch::x86_64::__m512 {
        // SAFETY: the caller guarantees AVX-512F and 16 readable floats.
        unsafe { core::arch::x86_64::_mm512_loadu_ps(p) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn store_avx512(p: *mut Self, v: core::arch::x86_64::__m512) {
        // SAFETY: the caller guarantees AVX-512F and 16 writable floats.
        unsafe { core::arch::x86_64::_mm512_storeu_ps(p, v) }
    }
}

/// Each lane of `v` rounded to bf16 (to nearest even, as `bf16::from_f32`: add
/// 0x7FFF + lsb, keep the high half; NaN stays a quiet NaN), in the low 16 bits of
/// its 32-bit lane.
///
/// # Safety
/// AVX2 available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn bf16_bits_avx2(v: core::arch::x86_64::__m256) -> core::arch::x86_64::__m256i {
    use core::arch::x86_64::*;
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

/// The 8 lanes of `v` rounded to bf16 (as [`bf16_bits_avx2`]), packed in order into
/// 128 bits.
///
/// # Safety
/// AVX2 available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn bf16_packed_avx2(v: core::arch::x86_64::__m256) -> core::arch::x86_64::__m128i {
    use core::arch::x86_64::*;
    // SAFETY: AVX2 available (the caller's contract).
    unsafe {
        let hi = bf16_bits_avx2(v);
        let packed = _mm256_packus_epi32(hi, hi);
        _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(packed))
    }
}

impl Store32 for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_avx2(p: *const Self) -> core::arch::x86_64::__m256 {
        use core::arch::x86_64::*;
        // SAFETY: AVX2 available; 8 bf16 = 16 readable bytes. bf16 is the high half
        // of an f32, so widening is a zero-extend and a shift.
        unsafe {
            let h = _mm_loadu_si128(p as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn store_avx2(p: *mut Self, v: core::arch::x86_64::__m256) {
        use core::arch::x86_64::*;
        // SAFETY: AVX2 available; 16 writable bytes.
        unsafe { _mm_storeu_si128(p as *mut __m128i, bf16_packed_avx2(v)) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn stream_avx2(p: *mut Self, v: core::arch::x86_64::__m256) {
        use core::arch::x86_64::*;
        // SAFETY: AVX2 available; 16 writable bytes at a 16-byte boundary.
        unsafe { _mm_stream_si128(p as *mut __m128i, bf16_packed_avx2(v)) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn store2_avx2(
        p: *mut Self,
        a: core::arch::x86_64::__m256,
        b: core::arch::x86_64::__m256,
    ) {
        use core::arch::x86_64::*;
        // SAFETY: AVX2 available; 32 writable bytes. The pack interleaves the 128-bit
        // halves (a0..3 b0..3 a4..7 b4..7); the permute puts them in order.
        unsafe {
            let packed = _mm256_packus_epi32(bf16_bits_avx2(a), bf16_bits_avx2(b));
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
            _mm256_storeu_si256(p as *mut __m256i, ordered);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_avx512(p: *const Self) -> core::arch::x86_64::__m512 {
        use core::arch::x86_64::*;
        // SAFETY: AVX-512F available; 16 bf16 = 32 readable bytes.
        unsafe {
            let h = _mm256_loadu_si256(p as *const __m256i);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn store_avx512(p: *mut Self, v: core::arch::x86_64::__m512) {
        use core::arch::x86_64::*;
        // SAFETY: AVX-512F available; 32 writable bytes. Rounding as in store_avx2.
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

impl Store32 for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_avx2(p: *const Self) -> core::arch::x86_64::__m256 {
        use core::arch::x86_64::*;
        // SAFETY: F16C available (checked with AVX2); 16 readable bytes.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn store_avx2(p: *mut Self, v: core::arch::x86_64::__m256) {
        use core::arch::x86_64::*;
        // SAFETY: F16C available; 16 writable bytes.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm_storeu_si128(p as *mut __m128i, h);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn stream_avx2(p: *mut Self, v: core::arch::x86_64::__m256) {
        use core::arch::x86_64::*;
        // SAFETY: F16C available; 16 writable bytes at a 16-byte boundary.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm_stream_si128(p as *mut __m128i, h);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_avx512(p: *const Self) -> core::arch::x86_64::__m512 {
        use core::arch::x86_64::*;
        // SAFETY: AVX-512F available; 32 readable bytes.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn store_avx512(p: *mut Self, v: core::arch::x86_64::__m512) {
        use core::arch::x86_64::*;
        // SAFETY: AVX-512F available; 32 writable bytes.
        unsafe {
            let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm256_storeu_si256(p as *mut __m256i, h);
        }
    }
}

/// One lane: plain `f32` arithmetic and libm's `exp`; the oracle of the vector paths.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scalar;

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
    fn any(self, mask: f32) -> bool {
        mask.to_bits() != 0
    }
    #[inline(always)]
    fn ln(self, a: f32) -> f32 {
        a.ln()
    }
    #[inline(always)]
    fn ln_1p(self, a: f32) -> f32 {
        a.ln_1p()
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

/// A one-lane mask: all ones or zero.
#[inline(always)]
fn mask1(b: bool) -> f32 {
    f32::from_bits(if b { u32::MAX } else { 0 })
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use core::arch::x86_64::*;

    // Cephes expf constants.
    // Inputs are clamped to [EXP_LO, EXP_INF_ABOVE]; below EXP_LO the result is 0 (the
    // true value is < 1.1e-38), above EXP_INF_ABOVE it is inf. n = round(x·log2 e) then
    // lies in [-126, 128]; 2^128 is formed as 2·2^127.
    const EXP_HI: f32 = 88.722_84;
    const EXP_LO: f32 = -87.5;
    const EXP_INF_ABOVE: f32 = 88.722_84;
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // `exp_small` rounds x·log2 e by adding 1.5·2²³ + 127: the sum's bits are then
    // 0x4B40_0000 + 127 + n (|n| < 2²²), whose low 9 bits shifted to the exponent
    // field are 2^n (0x4B40_0000 has none), with neither a conversion nor a bias add.
    const EXP_MAGIC: f32 = 12_583_039.0;
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

    /// `ln(1 + a)` from a vector `ln`: `u = 1 + a` rounds, and `a·ln(u)/(u − 1)` corrects
    /// for the rounding (Goldberg, "What every computer scientist should know about
    /// floating-point arithmetic", thm. 4); `a` itself where `u` rounds to 1, `inf` at
    /// `a = inf`. The error is a few ulp of `ln`'s (bound asserted in `kernels::tests`).
    #[inline(always)]
    fn ln_1p_of<S: Simd>(s: S, a: S::V) -> S::V {
        let one = s.splat(1.0);
        let u = s.add(one, a);
        let r = s.mul(s.ln(u), s.div(a, s.sub(u, one)));
        let r = s.select(s.eq(u, one), a, r);
        s.select(s.eq(a, s.splat(f32::INFINITY)), a, r)
    }

    /// Lane sums added pairwise in a fixed order (lane count a power of two).
    #[inline(always)]
    fn sum_lanes(v: &[f64]) -> f64 {
        let mut buf = [0.0f64; 16];
        buf[..v.len()].copy_from_slice(v);
        let mut n = v.len();
        while n > 1 {
            n /= 2;
            for i in 0..n {
                buf[i] += buf[i + n];
            }
        }
        buf[0]
    }

    /// AVX2 + FMA + F16C, 8 lanes. Only constructed after runtime detection.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Avx2(());

    impl Avx2 {
        /// `e^r` for `r` in `[−ln2/2, ln2/2]`: `1 + r + r²·P(r)` with `P` = [`EXP_P`].
        #[inline(always)]
        fn exp_poly(self, r: __m256) -> __m256 {
            // SAFETY: AVX2/FMA proven by the token.
            unsafe {
                let mut y = _mm256_set1_ps(EXP_P[0]);
                for &c in &EXP_P[1..] {
                    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
                }
                let r2 = _mm256_mul_ps(r, r);
                _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)))
            }
        }

        /// `(e^r, n)` with `x = n·ln 2 + r`, for `x` clamped below at EXP_LO (NaN kept).
        #[inline(always)]
        fn exp_parts(self, x: __m256) -> (__m256, __m256i) {
            // SAFETY: AVX2/FMA proven by the token.
            unsafe {
                // max returns its second operand for NaN: x stays NaN.
                let xc = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
                let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm256_mul_ps(xc, _mm256_set1_ps(LOG2E)),
                );
                let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
                let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
                (self.exp_poly(r), _mm256_cvtps_epi32(n))
            }
        }

        /// `ln x` for a positive normal `x`, whose biased exponent minus `bias` is
        /// its exponent for a mantissa in [½, 1) (`bias` = 126, or 149 for a
        /// subnormal scaled by 2^23).
        #[inline(always)]
        fn ln_normal(self, x: __m256, bias: __m256) -> __m256 {
            // SAFETY: AVX2/FMA proven by the token.
            unsafe {
                let one = _mm256_set1_ps(1.0);
                // x = m·2^e with m in [½, 1).
                let bits = _mm256_castps_si256(x);
                let e = _mm256_cvtepi32_ps(_mm256_srli_epi32::<23>(bits));
                let e = _mm256_sub_ps(e, bias);
                let m = _mm256_or_ps(
                    _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x007f_ffff))),
                    _mm256_set1_ps(0.5),
                );
                // m < √½: use 2m and e − 1, so that f = m − 1 lies in [√½ − 1, √2 − 1).
                let small = _mm256_cmp_ps::<_CMP_LT_OQ>(m, _mm256_set1_ps(SQRT_HALF));
                let e = _mm256_sub_ps(e, _mm256_and_ps(small, one));
                let f = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(small, m)), one);
                let z = _mm256_mul_ps(f, f);
                let mut y = _mm256_set1_ps(LN_P[0]);
                for &c in &LN_P[1..] {
                    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(c));
                }
                let y = _mm256_mul_ps(_mm256_mul_ps(y, f), z);
                let y = _mm256_fmadd_ps(e, _mm256_set1_ps(LN2_LO), y);
                let y = _mm256_fnmadd_ps(_mm256_set1_ps(0.5), z, y);
                _mm256_fmadd_ps(e, _mm256_set1_ps(LN2_HI), _mm256_add_ps(f, y))
            }
        }

        /// The 8 × 8 transpose: lane `j` of output `i` is lane `i` of input `j`.
        #[inline(always)]
        fn transpose8(self, r: [__m256; 8]) -> [__m256; 8] {
            // SAFETY: AVX proven by the token.
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
            // SAFETY: AVX proven by the token; `out` holds 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
            out[i]
        }

        /// `Some` when the running CPU has AVX2, FMA and F16C.
        pub(crate) fn detect() -> Option<Self> {
            (is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c"))
            .then_some(Avx2(()))
        }
    }

    // Every intrinsic below needs AVX2/FMA/F16C, which an `Avx2` value proves: it
    // is only made by `Avx2::detect`.
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
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn load<E: Store32>(self, p: *const E) -> __m256 {
            // SAFETY: AVX2/F16C proven by the token; the caller guarantees 8 elements.
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
        /// Rows of at least 8 classes go through 8 × 8 transposes of windows that
        /// start at classes 0, 8, 16, … and, for the last, at `c − 8` (overlapping
        /// the one before rather than reading past the row).
        #[inline(always)]
        unsafe fn rows_to_tile<E: Store32>(
            self,
            p: *const E,
            stride: usize,
            c: usize,
            tile: *mut f32,
        ) {
            // SAFETY: the caller guarantees rows of c elements and a tile of 8·c f32;
            // every window lies in classes w..w + 8 ≤ c.
            unsafe {
                if c < 8 {
                    return transpose_each(p, stride, tile, 8, (8, c));
                }
                let mut k0 = 0;
                while k0 < c {
                    let w = k0.min(c - 8);
                    let r = core::array::from_fn(|l| E::load_avx2(p.add(l * stride + w)));
                    for (j, v) in self.transpose8(r).into_iter().enumerate() {
                        _mm256_storeu_ps(tile.add((w + j) * 8), v);
                    }
                    k0 += 8;
                }
            }
        }
        #[inline(always)]
        unsafe fn transpose_block<A: Store32, B: Store32>(
            self,
            src: *const A,
            src_stride: usize,
            dst: *mut B,
            dst_stride: usize,
        ) {
            // SAFETY: the caller guarantees 8 readable rows of 8 at src and 8
            // writable rows of 8 at dst.
            unsafe {
                let r = core::array::from_fn(|i| A::load_avx2(src.add(i * src_stride)));
                for (j, v) in self.transpose8(r).into_iter().enumerate() {
                    B::store_avx2(dst.add(j * dst_stride), v);
                }
            }
        }
        /// The windows of [`Simd::rows_to_tile`] in the other direction (an overlap
        /// writes the same values twice).
        #[inline(always)]
        unsafe fn tile_to_rows<E: Store32>(
            self,
            tile: *const f32,
            p: *mut E,
            stride: usize,
            c: usize,
        ) {
            // SAFETY: as rows_to_tile.
            unsafe {
                if c < 8 {
                    return transpose_each(tile, 8, p, stride, (c, 8));
                }
                let mut k0 = 0;
                while k0 < c {
                    let w = k0.min(c - 8);
                    let t = core::array::from_fn(|j| _mm256_loadu_ps(tile.add((w + j) * 8)));
                    for (l, v) in self.transpose8(t).into_iter().enumerate() {
                        E::store_avx2(p.add(l * stride + w), v);
                    }
                    k0 += 8;
                }
            }
        }

        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: FMA proven by the token.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        fn neg_inf_to(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe {
                let m = _mm256_cmp_ps::<_CMP_EQ_OQ>(a, _mm256_set1_ps(f32::NEG_INFINITY));
                _mm256_blendv_ps(a, b, m)
            }
        }
        #[inline(always)]
        fn select(self, mask: __m256, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_blendv_ps(b, a, mask) }
        }
        #[inline(always)]
        fn ne_zero(self, a: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_cmp_ps::<_CMP_NEQ_UQ>(a, _mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn exp(self, x: __m256) -> __m256 {
            // SAFETY: AVX2/FMA proven by the token.
            unsafe {
                // min returns its second operand for NaN: x stays NaN.
                let xc = _mm256_min_ps(_mm256_set1_ps(EXP_HI), x);
                let (y, ni) = self.exp_parts(xc);
                // 2^n through the exponent bits, n ≤ 127, times 2 when n = 128.
                let n127 = _mm256_min_epi32(ni, _mm256_set1_epi32(127));
                let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(n127, _mm256_set1_epi32(127)));
                let extra = _mm256_cvtepi32_ps(_mm256_sub_epi32(ni, n127));
                let y = _mm256_mul_ps(
                    _mm256_mul_ps(y, _mm256_castsi256_ps(e)),
                    _mm256_add_ps(extra, _mm256_set1_ps(1.0)),
                );
                let big = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(EXP_INF_ABOVE));
                let y = _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), big);
                let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_LO));
                _mm256_andnot_ps(tiny, y)
            }
        }
        #[inline(always)]
        fn exp_small(self, x: __m256) -> __m256 {
            // SAFETY: AVX2/FMA proven by the token.
            unsafe {
                // As `exp_parts`, but n = round(x·log2 e) through EXP_MAGIC and no
                // clamp: lanes below EXP_LO (−inf included) are replaced by 0 at the
                // end, whatever the arithmetic made of them; NaN stays NaN.
                let magic = _mm256_set1_ps(EXP_MAGIC);
                let t = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), magic);
                let n = _mm256_sub_ps(t, magic);
                let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
                let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
                let y = self.exp_poly(r);
                let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(t));
                let y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
                let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_LO));
                _mm256_andnot_ps(tiny, y)
            }
        }
        #[inline(always)]
        fn tanh(self, x: __m256) -> __m256 {
            // SAFETY: AVX2/FMA proven by the token.
            unsafe {
                let sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0));
                let ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
                let z = _mm256_mul_ps(x, x);
                let mut p = _mm256_set1_ps(TANH_P[0]);
                for &c in &TANH_P[1..] {
                    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(c));
                }
                let small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
                let e = self.exp(_mm256_add_ps(ax, ax));
                let large = _mm256_sub_ps(
                    _mm256_set1_ps(1.0),
                    _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, _mm256_set1_ps(1.0))),
                );
                let large = _mm256_or_ps(large, sign);
                let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(ax, _mm256_set1_ps(TANH_SMALL));
                // NaN compares false: it takes the `large` branch, where it propagates.
                _mm256_blendv_ps(large, small, is_small)
            }
        }
        #[inline(always)]
        fn reduce_add(self, a: __m256) -> f32 {
            // SAFETY: AVX proven by the token.
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
                _mm_cvtss_f32(s)
            }
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
            // SAFETY: AVX proven by the token; `out` holds 16 ≥ 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
        }
        #[inline(always)]
        fn vector_of(self, v: &[f32]) -> __m256 {
            let mut buf = [0.0f32; 8];
            buf.copy_from_slice(&v[..8]);
            // SAFETY: AVX proven by the token; `buf` holds 8 floats.
            unsafe { _mm256_loadu_ps(buf.as_ptr()) }
        }
        #[inline(always)]
        fn div(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        fn lt(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        fn eq(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b) }
        }
        #[inline(always)]
        fn outside(self, a: __m256, lo: f32, hi: f32) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe {
                _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_NGE_UQ>(a, _mm256_set1_ps(lo)),
                    _mm256_cmp_ps::<_CMP_NLE_UQ>(a, _mm256_set1_ps(hi)),
                )
            }
        }
        #[inline(always)]
        fn or(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_or_ps(a, b) }
        }
        #[inline(always)]
        fn any(self, mask: __m256) -> bool {
            // SAFETY: AVX proven by the token.
            unsafe { _mm256_movemask_ps(mask) != 0 }
        }
        #[inline(always)]
        fn ln(self, x: __m256) -> __m256 {
            // SAFETY: AVX2/FMA proven by the token.
            unsafe {
                // Positive normal numbers take the straight path; a vector with a
                // lane outside [f32::MIN_POSITIVE, inf) (subnormal, 0, inf, negative,
                // NaN) also takes the fix-ups.
                let special = _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_NGE_UQ>(x, _mm256_set1_ps(f32::MIN_POSITIVE)),
                    _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_set1_ps(f32::INFINITY)),
                );
                if _mm256_movemask_ps(special) == 0 {
                    return self.ln_normal(x, _mm256_set1_ps(126.0));
                }
                // Subnormals (and 0, fixed below) scaled into the normal range.
                let sub = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(f32::MIN_POSITIVE));
                let xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(TWO_POW_23)), sub);
                let bias =
                    _mm256_blendv_ps(_mm256_set1_ps(126.0), _mm256_set1_ps(126.0 + 23.0), sub);
                let r = self.ln_normal(xs, bias);
                // ln 0 = −inf, ln inf = inf, ln(x < 0) = ln NaN = NaN.
                let zero = _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_setzero_ps());
                let r = _mm256_blendv_ps(r, _mm256_set1_ps(f32::NEG_INFINITY), zero);
                let inf = _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_set1_ps(f32::INFINITY));
                let r = _mm256_blendv_ps(r, x, inf);
                let nan = _mm256_cmp_ps::<_CMP_NGE_UQ>(x, _mm256_setzero_ps());
                _mm256_blendv_ps(r, _mm256_set1_ps(f32::NAN), nan)
            }
        }
        #[inline(always)]
        fn ln_1p(self, a: __m256) -> __m256 {
            ln_1p_of(self, a)
        }
        type D = (__m256d, __m256d);
        #[inline(always)]
        fn d_zero(self) -> Self::D {
            // SAFETY: AVX proven by the token.
            unsafe { (_mm256_setzero_pd(), _mm256_setzero_pd()) }
        }
        #[inline(always)]
        fn d_add(self, acc: Self::D, v: __m256) -> Self::D {
            // SAFETY: AVX proven by the token.
            unsafe {
                let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
                let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
                (_mm256_add_pd(acc.0, lo), _mm256_add_pd(acc.1, hi))
            }
        }
        #[inline(always)]
        fn d_sum(self, acc: Self::D) -> f64 {
            let mut out = [0.0f64; 8];
            // SAFETY: AVX proven by the token; `out` holds 8 doubles.
            unsafe {
                _mm256_storeu_pd(out.as_mut_ptr(), acc.0);
                _mm256_storeu_pd(out.as_mut_ptr().add(4), acc.1);
            }
            sum_lanes(&out)
        }
    }

    /// AVX-512F, 16 lanes. Only constructed after runtime detection.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Avx512(());

    impl Avx512 {
        /// `e^r` for `r` in `[−ln2/2, ln2/2]`: `1 + r + r²·P(r)` with `P` = [`EXP_P`].
        #[inline(always)]
        fn exp_poly(self, r: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let mut y = _mm512_set1_ps(EXP_P[0]);
                for &c in &EXP_P[1..] {
                    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
                }
                let r2 = _mm512_mul_ps(r, r);
                _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)))
            }
        }

        /// `(e^r, n)` with `x = n·ln 2 + r`, for `x` clamped below at EXP_LO (NaN kept).
        #[inline(always)]
        fn exp_parts(self, x: __m512) -> (__m512, __m512i) {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let xc = _mm512_max_ps(_mm512_set1_ps(EXP_LO), x);
                let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(xc, _mm512_set1_ps(LOG2E)),
                );
                let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
                let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
                (self.exp_poly(r), _mm512_cvtps_epi32(n))
            }
        }

        /// As [`Avx2::ln_normal`].
        #[inline(always)]
        fn ln_normal(self, x: __m512, bias: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let one = _mm512_set1_ps(1.0);
                let bits = _mm512_castps_si512(x);
                let e = _mm512_cvtepi32_ps(_mm512_srli_epi32::<23>(bits));
                let e = _mm512_sub_ps(e, bias);
                let m = _mm512_castsi512_ps(_mm512_or_si512(
                    _mm512_and_si512(bits, _mm512_set1_epi32(0x007f_ffff)),
                    _mm512_set1_epi32(0x3f00_0000),
                ));
                let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(m, _mm512_set1_ps(SQRT_HALF));
                let e = _mm512_mask_sub_ps(e, small, e, one);
                let f = _mm512_sub_ps(_mm512_mask_add_ps(m, small, m, m), one);
                let z = _mm512_mul_ps(f, f);
                let mut y = _mm512_set1_ps(LN_P[0]);
                for &c in &LN_P[1..] {
                    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(c));
                }
                let y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
                let y = _mm512_fmadd_ps(e, _mm512_set1_ps(LN2_LO), y);
                let y = _mm512_fnmadd_ps(_mm512_set1_ps(0.5), z, y);
                _mm512_fmadd_ps(e, _mm512_set1_ps(LN2_HI), _mm512_add_ps(f, y))
            }
        }

        /// Lane `i` of `a`.
        #[inline(always)]
        fn lane(self, a: __m512, i: usize) -> f32 {
            let mut out = [0.0f32; 16];
            // SAFETY: AVX-512F proven by the token; `out` holds 16 floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), a) };
            out[i]
        }

        /// `Some` when the running CPU has AVX-512F (and AVX2/FMA/F16C).
        pub(crate) fn detect() -> Option<Self> {
            (is_x86_feature_detected!("avx512f") && Avx2::detect().is_some()).then_some(Avx512(()))
        }
    }

    // Every intrinsic below needs AVX-512F, which an `Avx512` value proves.
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
        #[inline(always)]
        fn splat(self, v: f32) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn load<E: Store32>(self, p: *const E) -> __m512 {
            // SAFETY: AVX-512F proven by the token; the caller guarantees 16 elements.
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
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        fn neg_inf_to(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let m = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, _mm512_set1_ps(f32::NEG_INFINITY));
                _mm512_mask_blend_ps(m, a, b)
            }
        }
        #[inline(always)]
        fn select(self, mask: __m512, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let m =
                    _mm512_test_epi32_mask(_mm512_castps_si512(mask), _mm512_castps_si512(mask));
                _mm512_mask_blend_ps(m, b, a)
            }
        }
        #[inline(always)]
        fn ne_zero(self, a: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let m = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, _mm512_setzero_ps());
                _mm512_castsi512_ps(_mm512_maskz_set1_epi32(m, -1))
            }
        }
        #[inline(always)]
        fn exp(self, x: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let xc = _mm512_min_ps(_mm512_set1_ps(EXP_HI), x);
                let (y, ni) = self.exp_parts(xc);
                let n127 = _mm512_min_epi32(ni, _mm512_set1_epi32(127));
                let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(n127, _mm512_set1_epi32(127)));
                let extra = _mm512_cvtepi32_ps(_mm512_sub_epi32(ni, n127));
                let y = _mm512_mul_ps(
                    _mm512_mul_ps(y, _mm512_castsi512_ps(e)),
                    _mm512_add_ps(extra, _mm512_set1_ps(1.0)),
                );
                // NaN inputs: the clamps keep NaN (second operand), so y is NaN.
                let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(EXP_INF_ABOVE));
                let y = _mm512_mask_blend_ps(big, y, _mm512_set1_ps(f32::INFINITY));
                let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(EXP_LO));
                _mm512_mask_blend_ps(tiny, y, _mm512_setzero_ps())
            }
        }
        #[inline(always)]
        fn exp_small(self, x: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                // As the AVX2 `exp_small`.
                let magic = _mm512_set1_ps(EXP_MAGIC);
                let t = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), magic);
                let n = _mm512_sub_ps(t, magic);
                let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
                let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
                let y = self.exp_poly(r);
                let e = _mm512_slli_epi32::<23>(_mm512_castps_si512(t));
                let y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
                let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(EXP_LO));
                _mm512_mask_blend_ps(tiny, y, _mm512_setzero_ps())
            }
        }
        #[inline(always)]
        fn tanh(self, x: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let signbit = _mm512_set1_epi32(i32::MIN);
                let xi = _mm512_castps_si512(x);
                let sign = _mm512_and_si512(xi, signbit);
                let ax = _mm512_castsi512_ps(_mm512_andnot_si512(signbit, xi));
                let z = _mm512_mul_ps(x, x);
                let mut p = _mm512_set1_ps(TANH_P[0]);
                for &c in &TANH_P[1..] {
                    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(c));
                }
                let small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
                let e = self.exp(_mm512_add_ps(ax, ax));
                let large = _mm512_sub_ps(
                    _mm512_set1_ps(1.0),
                    _mm512_div_ps(_mm512_set1_ps(2.0), _mm512_add_ps(e, _mm512_set1_ps(1.0))),
                );
                let large = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(large), sign));
                let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, _mm512_set1_ps(TANH_SMALL));
                _mm512_mask_blend_ps(is_small, large, small)
            }
        }
        #[inline(always)]
        fn reduce_add(self, a: __m512) -> f32 {
            // SAFETY: AVX-512F proven by the token (AVX for the halves).
            unsafe {
                let lo = _mm512_castps512_ps256(a);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
                Avx2(()).reduce_add(_mm256_add_ps(lo, hi))
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
            // SAFETY: AVX-512F proven by the token; `out` holds 16 floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), a) };
        }
        #[inline(always)]
        fn vector_of(self, v: &[f32]) -> __m512 {
            let mut buf = [0.0f32; 16];
            buf.copy_from_slice(&v[..16]);
            // SAFETY: AVX-512F proven by the token; `buf` holds 16 floats.
            unsafe { _mm512_loadu_ps(buf.as_ptr()) }
        }
        #[inline(always)]
        fn div(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                _mm512_castsi512_ps(_mm512_andnot_si512(
                    _mm512_set1_epi32(i32::MIN),
                    _mm512_castps_si512(a),
                ))
            }
        }
        #[inline(always)]
        fn lt(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { mask_v(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b)) }
        }
        #[inline(always)]
        fn eq(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe { mask_v(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b)) }
        }
        #[inline(always)]
        fn outside(self, a: __m512, lo: f32, hi: f32) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                mask_v(
                    _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(a, _mm512_set1_ps(lo))
                        | _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a, _mm512_set1_ps(hi)),
                )
            }
        }
        #[inline(always)]
        fn or(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                _mm512_castsi512_ps(_mm512_or_si512(
                    _mm512_castps_si512(a),
                    _mm512_castps_si512(b),
                ))
            }
        }
        #[inline(always)]
        fn any(self, mask: __m512) -> bool {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                let m = _mm512_castps_si512(mask);
                _mm512_test_epi32_mask(m, m) != 0
            }
        }
        #[inline(always)]
        fn ln(self, x: __m512) -> __m512 {
            // SAFETY: AVX-512F proven by the token.
            unsafe {
                // As Avx2::ln: the fix-ups only for a vector with a special lane.
                let special =
                    _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(x, _mm512_set1_ps(f32::MIN_POSITIVE))
                        | _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_set1_ps(f32::INFINITY));
                if special == 0 {
                    return self.ln_normal(x, _mm512_set1_ps(126.0));
                }
                let sub = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(f32::MIN_POSITIVE));
                let xs = _mm512_mask_mul_ps(x, sub, x, _mm512_set1_ps(TWO_POW_23));
                let bias =
                    _mm512_mask_blend_ps(sub, _mm512_set1_ps(126.0), _mm512_set1_ps(126.0 + 23.0));
                let r = self.ln_normal(xs, bias);
                let zero = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_ps());
                let r = _mm512_mask_blend_ps(zero, r, _mm512_set1_ps(f32::NEG_INFINITY));
                let inf = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_set1_ps(f32::INFINITY));
                let r = _mm512_mask_blend_ps(inf, r, x);
                let nan = _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(x, _mm512_setzero_ps());
                _mm512_mask_blend_ps(nan, r, _mm512_set1_ps(f32::NAN))
            }
        }
        #[inline(always)]
        fn ln_1p(self, a: __m512) -> __m512 {
            ln_1p_of(self, a)
        }
        type D = (__m512d, __m512d);
        #[inline(always)]
        fn d_zero(self) -> Self::D {
            // SAFETY: AVX-512F proven by the token.
            unsafe { (_mm512_setzero_pd(), _mm512_setzero_pd()) }
        }
        #[inline(always)]
        fn d_add(self, acc: Self::D, v: __m512) -> Self::D {
            // SAFETY: AVX-512F proven by the token.
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
            // SAFETY: AVX-512F proven by the token; `out` holds 16 doubles.
            unsafe {
                _mm512_storeu_pd(out.as_mut_ptr(), acc.0);
                _mm512_storeu_pd(out.as_mut_ptr().add(8), acc.1);
            }
            sum_lanes(&out)
        }
    }

    /// A mask register as a vector of all-ones / zero lanes.
    #[inline(always)]
    fn mask_v(m: __mmask16) -> __m512 {
        // SAFETY: only called from `Avx512` methods, which prove AVX-512F.
        unsafe { _mm512_castsi512_ps(_mm512_maskz_set1_epi32(m, -1)) }
    }
}

#[cfg(test)]
#[path = "/tmp/scratch/math_digest.rs"]
mod math_digest;
