//! The GEMM engine of linear cross-entropy: `C (+)= A·B` with `f32` accumulation, for
//! `f32`, bf16 and f16 operands, on the best unit of the running CPU.
//!
//! Linear cross-entropy multiplies three times per block of `B` rows (`h_block`
//! `B × D`, `W` `V × D`, the block's logit gradient `G` `B × V`):
//! - the logits `x = h_block·Wᵀ` ([`Gemm::logits`]),
//! - `dh_block = G·W` ([`Gemm::hidden_grad`]),
//! - `dW += Gᵀ·h_block` ([`Gemm::weight_grad_add`]).
//!
//! Each is one generic blocked GEMM ([`driver`]) over a microkernel ([`kernels`]):
//! the microkernel computes an `MR × NR` tile of `C` from `MR` rows of `A` (read in
//! place, `k`-contiguous, wherever the operand already is; copied otherwise) and a
//! packed panel of `NR` columns of `B`. The microkernels are
//! - `f32` FMA: AVX-512F (`6 × 64`), AVX2+FMA (`6 × 16`) and a scalar twin;
//! - bf16 dot products with `f32` accumulation: AMX (`tdpbf16ps`, `32 × 32` from four
//!   `16 × 16` tiles), AVX512-BF16 (`vdpbf16ps`, `6 × 64`) and a scalar twin.
//!
//! bf16 operands run on the bf16 units when the CPU has them and are widened to `f32`
//! (exactly) for the FMA kernels otherwise; f16 operands are widened to `f32` (no CPU
//! this library targets multiplies f16 with `f32` accumulation in matrix units). Which
//! unit runs is chosen once per call ([`Gemm::new`]), block sizes live in
//! [`blocking`], and every product splits into tasks on rayon's pool by output ranges
//! that depend only on the shape: each output element is summed by one task in one
//! order, so results are the same bits for any thread count.

#[cfg(test)]
mod bench;
pub(crate) mod blocking;
pub(crate) mod driver;
pub(crate) mod kernels;
mod linear;
mod pack;
#[cfg(test)]
mod tests;

pub(crate) use driver::{round_rows_to_bf16, Gemm, Grad, Workspace};
pub(crate) use linear::LinearGemm;

use half::{bf16, f16};

/// The element type a microkernel multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packed {
    /// `f32` FMA.
    F32,
    /// bf16 pairs, `f32` accumulation.
    Bf16,
}

/// An operand's storage: a slice of `f32`, bf16 or f16.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Src<'a> {
    /// `f32` elements.
    F32(&'a [f32]),
    /// bf16 elements.
    Bf16(&'a [bf16]),
    /// f16 elements.
    F16(&'a [f16]),
}

impl<'a> Src<'a> {
    /// The slice `s` as an operand when its element type is one the engine takes
    /// (`f32`, bf16, f16); `None` for anything else (`f64`).
    pub(crate) fn of<E: 'static>(s: &'a [E]) -> Option<Src<'a>> {
        use std::any::TypeId;
        let id = TypeId::of::<E>();
        let (ptr, len) = (s.as_ptr(), s.len());
        // SAFETY: each branch runs only when `E` is exactly the type it casts to (equal
        // `TypeId`s), so the cast reinterprets nothing: same pointer, length, lifetime.
        unsafe {
            if id == TypeId::of::<f32>() {
                Some(Src::F32(std::slice::from_raw_parts(ptr.cast(), len)))
            } else if id == TypeId::of::<bf16>() {
                Some(Src::Bf16(std::slice::from_raw_parts(ptr.cast(), len)))
            } else if id == TypeId::of::<f16>() {
                Some(Src::F16(std::slice::from_raw_parts(ptr.cast(), len)))
            } else {
                None
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Src::F32(s) => s.len(),
            Src::Bf16(s) => s.len(),
            Src::F16(s) => s.len(),
        }
    }

    /// Element `i` in `f32` (exact for every storage type).
    #[inline(always)]
    fn get_f32(&self, i: usize) -> f32 {
        match self {
            Src::F32(s) => s[i],
            Src::Bf16(s) => s[i].to_f32(),
            Src::F16(s) => s[i].to_f32(),
        }
    }

    /// Element `i` as bf16 bits: exact for bf16, rounded to nearest even otherwise.
    #[inline(always)]
    fn get_bf16(&self, i: usize) -> u16 {
        match self {
            Src::F32(s) => bf16_bits(s[i]),
            Src::Bf16(s) => s[i].to_bits(),
            Src::F16(s) => bf16_bits(s[i].to_f32()),
        }
    }

    /// The type the operand would be multiplied in, read in place, by a kernel of
    /// type `p`: only when it is that type already.
    fn is(&self, p: Packed) -> bool {
        matches!(
            (self, p),
            (Src::F32(_), Packed::F32) | (Src::Bf16(_), Packed::Bf16)
        )
    }

    fn as_ptr(&self) -> *const u8 {
        match self {
            Src::F32(s) => s.as_ptr().cast(),
            Src::Bf16(s) => s.as_ptr().cast(),
            Src::F16(s) => s.as_ptr().cast(),
        }
    }

    fn elem_bytes(&self) -> usize {
        match self {
            Src::F32(_) => 4,
            Src::Bf16(_) | Src::F16(_) => 2,
        }
    }
}

/// `x` rounded to bf16 (nearest, ties to even; NaN stays NaN), as bits.
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        // Quiet NaN with the sign kept: rounding could carry a NaN into infinity.
        ((b >> 16) | 0x40) as u16
    } else {
        ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
    }
}

/// A strided matrix view: element `(i, j)` at `src[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) src: Src<'a>,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> View<'a> {
    pub(crate) fn new(src: Src<'a>, rs: usize, cs: usize) -> Self {
        View { src, rs, cs }
    }

    /// Whether every element of a `rows × cols` matrix lies inside the slice.
    pub(crate) fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1)
                .checked_mul(self.rs)
                .zip((cols - 1).checked_mul(self.cs))
                .and_then(|(a, b)| a.checked_add(b))
                .is_some_and(|last| last < self.src.len())
    }
}

/// Which type linear cross-entropy's logit gradient `G = ∂loss/∂x` is multiplied in
/// by the backward products `∂h = G·W` and `∂W = Gᵀ·h`, for bf16 inputs (`f32`, `f64`
/// and f16 inputs always keep `G` in their accumulation type).
///
/// [`Bf16`](GradPrecision::Bf16) (the default) rounds `G` to bf16 (nearest even, unit roundoff `2⁻⁸`), as
/// PyTorch's bf16 path, Liger-Kernel and Cut Cross-Entropy do, so that both products
/// run on the CPU's bf16 units (AMX, AVX512-BF16); the sums stay in `f32`, and `∂W`,
/// `∂b` accumulate over row blocks in `f32` (`∂b` sums `G` before rounding). The
/// rounding adds at most `2⁻⁸·Σ_c |G_nc|·|W_cd|` to `∂h_nd` and `2⁻⁸·Σ_n |G_nc|·|h_nd|`
/// to `∂W_cd`, beyond the `f32` summation error (tested against an `f64` reference).
/// On a CPU without bf16 units (neither AMX nor AVX512-BF16) the backward products
/// run on the `f32` FMA kernels either way, and `G` stays in `f32` whichever is asked.
/// [`F32`](GradPrecision::F32) keeps `G` in `f32` (the bf16 operands are widened):
/// the results then equal those of `f32` inputs holding the same values, up to `f32`
/// summation order.
///
/// ```
/// use xent::{GradPrecision, LinearCrossEntropyOptions};
/// let opts = LinearCrossEntropyOptions::<f32>::default().grad_precision(GradPrecision::F32);
/// assert_eq!(opts.grad_precision, GradPrecision::F32);
/// assert_eq!(LinearCrossEntropyOptions::<f32>::default().grad_precision, GradPrecision::Bf16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradPrecision {
    /// `G` rounded to bf16 for the backward products (bf16 inputs).
    #[default]
    Bf16,
    /// `G` kept in `f32`.
    F32,
}
