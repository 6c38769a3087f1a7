//! The instruction sets the f32 kernels run on, behind one trait.
//!
//! A kernel body is written once, generic over [`Simd`] (a [`Kernel`]), and marked
//! `#[inline(always)]`; [`Simd::vectorize`] runs it in a `#[target_feature]`
//! trampoline of the instruction set that [`super::dispatch`] picked at run time,
//! so that the body is compiled with AVX2 or AVX-512 enabled while the binary still
//! runs on any x86-64 (and on aarch64, where only [`Scalar`] exists). A kernel that
//! calls another enters it the same way, so each kernel is a stack frame of its
//! own: no more than a few tens of KiB in an unoptimized build (`.ci/stack_frames.py`
//! checks 64 KiB), while optimized builds inline the small ones. [`Scalar`] (one
//! lane, libm `exp`) is the twin that every vector path is tested against, and it
//! handles the tails shorter than a vector.
//!
//! The trampoline is pulp's `Simd::vectorize` design, written here rather than taken
//! from pulp: its vector types carry no bf16/f16 conversions, streaming stores or
//! the 8 × 8 transposes the kernels need, so an instruction-set layer of our own
//! would remain beside it.
//!
//! Each instruction set implements only primitives (loads and stores, arithmetic,
//! compares, selects, bit and integer operations, transposes, reductions):
//! [`scalar`], `avx2` and `avx512`, one file each. The vector `exp`, `exp_small`,
//! `tanh`, `ln` and `ln_1p` are written once on those primitives, in [`math`] (where
//! their error bounds are stated), and reached as provided methods of [`Simd`];
//! [`Scalar`] overrides them with libm's, the oracle the vector versions are tested
//! against.

mod math;
mod scalar;
#[cfg(test)]
mod tests;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Avx512;
pub(crate) use scalar::Scalar;

use half::{bf16, f16};

/// Storage types loaded into and stored from f32 vectors.
///
/// The conversions of whole vectors live with each instruction set (the
/// [`IsaStore`] supertrait).
pub(crate) trait Store32: Copy + Send + Sync + 'static + IsaStore {
    /// Widens one element.
    fn to_f32(self) -> f32;
    /// Rounds one element (to nearest even).
    fn from_f32(v: f32) -> Self;
    /// `true` for `f32` itself (stores are exact).
    const IS_F32: bool = false;
}

/// The vector loads and stores of a [`Store32`] type on every instruction set
/// compiled in: `StoreAvx2` and `StoreAvx512` on x86-64, none elsewhere.
#[cfg(target_arch = "x86_64")]
pub(crate) trait IsaStore: avx2::StoreAvx2 + avx512::StoreAvx512 {}
#[cfg(target_arch = "x86_64")]
impl<T: avx2::StoreAvx2 + avx512::StoreAvx512> IsaStore for T {}
/// The vector loads and stores of a [`Store32`] type on every instruction set
/// compiled in: none here, where only [`Scalar`] exists.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait IsaStore {}
#[cfg(not(target_arch = "x86_64"))]
impl<T> IsaStore for T {}

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
    /// here; [`Avx2`] and [`Avx512`] transpose 8 × 8 blocks in registers.
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
    /// `if mask != 0 { a } else { b }` per lane, where `mask` is a mask (all-ones or
    /// zero lanes: [`Simd::ne_zero`], [`Simd::lt`], [`Simd::eq`], [`Simd::outside`]).
    fn select(self, mask: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// All-ones lanes where `a != 0`, zero lanes elsewhere.
    fn ne_zero(self, a: Self::V) -> Self::V;
    /// `e^a` over the whole f32 range (see [`math`] for the error bound).
    #[inline(always)]
    fn exp(self, a: Self::V) -> Self::V {
        math::run(self, math::Exp(a))
    }
    /// `exp` for `a ≤ 88.37` (or NaN), as the kernels' `x − max ≤ 0`: [`Simd::exp`]
    /// without the overflow handling, same error bound.
    #[inline(always)]
    fn exp_small(self, a: Self::V) -> Self::V {
        math::run(self, math::ExpSmall(a))
    }
    /// `tanh a` (see [`math`]).
    #[inline(always)]
    fn tanh(self, a: Self::V) -> Self::V {
        math::run(self, math::Tanh(a))
    }
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
    /// Lane-wise OR of two masks (of the bits of any two vectors).
    fn or(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise AND of the bits: a mask applied to a vector, or a bit field kept.
    fn and(self, a: Self::V, b: Self::V) -> Self::V;
    /// `!a & b` on the bits: `b` where the mask `a` is clear, `+0.0` where it is set.
    fn andnot(self, a: Self::V, b: Self::V) -> Self::V;
    /// Whether any lane of a mask is set.
    fn any(self, mask: Self::V) -> bool;
    /// `a + b` in the lanes where `mask` is set, `a` in the others: a masked add
    /// where the instruction set has one, else `a + (b & mask)` (`a + 0.0`, which is
    /// `a` but for `a = −0.0`).
    fn add_where(self, mask: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// Natural logarithm over the whole f32 range (see [`math`]).
    #[inline(always)]
    fn ln(self, a: Self::V) -> Self::V {
        math::run(self, math::Ln(a))
    }
    /// `ln(1 + a)`, accurate for small `a` (see [`math`]).
    #[inline(always)]
    fn ln_1p(self, a: Self::V) -> Self::V {
        math::run(self, math::Ln1p(a))
    }

    /// i32 lanes, one per f32 lane of `V`: the integer side of the math's bit
    /// manipulations (exponent fields).
    type I: Copy;
    /// Each lane rounded to an integral value, ties to even (NaN stays NaN).
    fn round(self, a: Self::V) -> Self::V;
    /// Each lane converted to i32, rounding to nearest even; `i32::MIN` (x86's
    /// "integer indefinite") for NaN and values out of range.
    fn to_i32(self, a: Self::V) -> Self::I;
    /// Each lane converted to f32 (rounded to nearest even beyond 2²⁴).
    fn i32_to_f32(self, a: Self::I) -> Self::V;
    /// The bits of each lane, reinterpreted.
    fn to_bits(self, a: Self::V) -> Self::I;
    /// Each lane's bits reinterpreted as an f32.
    fn bits_to_f32(self, a: Self::I) -> Self::V;
    fn splat_i32(self, v: i32) -> Self::I;
    /// Lane-wise `a + b`, wrapping.
    fn add_i32(self, a: Self::I, b: Self::I) -> Self::I;
    /// Lane-wise `a − b`, wrapping.
    fn sub_i32(self, a: Self::I, b: Self::I) -> Self::I;
    /// Lane-wise signed min.
    fn min_i32(self, a: Self::I, b: Self::I) -> Self::I;
    /// Each lane shifted left by 23 bits (into an f32's exponent field).
    fn shl_23(self, a: Self::I) -> Self::I;
    /// Each lane shifted right by 23 bits, zeros shifted in (an f32's exponent
    /// field, and sign, down to the low bits).
    fn shr_23(self, a: Self::I) -> Self::I;
    /// Each lane shifted left by 20 bits.
    fn shl_20(self, a: Self::I) -> Self::I;
    /// `table[a & 7]` in each lane (a permute of one register).
    fn lut8(self, table: &[i32; 8], a: Self::I) -> Self::I;

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

/// Lane sums added pairwise in a fixed order (lane count a power of two): the
/// `d_sum` of the vector instruction sets.
#[cfg(target_arch = "x86_64")]
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
}
