//! The x86-64 vector microkernels: AVX-512F and AVX2 `f32` FMA, AVX512-BF16 dot
//! products. `#[target_feature]` sits on each microkernel alone (never a driver), and
//! their accumulators are a few fixed arrays of vectors (1.5 KiB), so that debug
//! builds keep small frames too.

use std::arch::x86_64::*;

pub(super) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

pub(super) fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
}

pub(super) fn has_avx512_bf16() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
}

/// `6 × 64` `f32`: 24 zmm accumulators, four `B` vectors and one broadcast of `A`
/// per step of `k`; six row pointers of `A` (`k`-contiguous rows, in place).
///
/// # Safety
/// As [`super::MicroFn`] with `MR = 6`, `NR = 64`, on a CPU with AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512_f32(
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    const MR: usize = 6;
    let (a, b) = (a.cast::<f32>(), b.cast::<f32>());
    let mut t = [[_mm512_setzero_ps(); 4]; MR];
    if acc {
        for (i, row) in t.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                // SAFETY: row i < MR, columns 16v..16v + 16 < NR lie in the C tile.
                *x = unsafe { _mm512_loadu_ps(c.add(i * ldc + 16 * v)) };
            }
        }
    }
    // SAFETY: rows i < MR of A (the caller's contract).
    let rows: [*const f32; MR] = std::array::from_fn(|i| unsafe { a.add(i * lda) });
    for p in 0..k {
        // SAFETY: step p < k of the B panel is 64 f32 at p·64.
        let bv: [__m512; 4] =
            std::array::from_fn(|v| unsafe { _mm512_loadu_ps(b.add(p * 64 + 16 * v)) });
        for (row, &ar) in t.iter_mut().zip(&rows) {
            // SAFETY: element p of a row of A.
            let ai = _mm512_set1_ps(unsafe { *ar.add(p) });
            for (x, &bj) in row.iter_mut().zip(&bv) {
                *x = _mm512_fmadd_ps(ai, bj, *x);
            }
        }
    }
    for (i, row) in t.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm512_storeu_ps(c.add(i * ldc + 16 * v), x) };
        }
    }
}

/// `6 × 16` `f32` with AVX2 + FMA: 12 ymm accumulators.
///
/// # Safety
/// As [`super::MicroFn`] with `MR = 6`, `NR = 16`, on a CPU with AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn avx2_f32(
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    const MR: usize = 6;
    let (a, b) = (a.cast::<f32>(), b.cast::<f32>());
    let mut t = [[_mm256_setzero_ps(); 2]; MR];
    if acc {
        for (i, row) in t.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                // SAFETY: row i < MR, columns 8v..8v + 8 < NR lie in the C tile.
                *x = unsafe { _mm256_loadu_ps(c.add(i * ldc + 8 * v)) };
            }
        }
    }
    // SAFETY: rows i < MR of A (the caller's contract).
    let rows: [*const f32; MR] = std::array::from_fn(|i| unsafe { a.add(i * lda) });
    for p in 0..k {
        // SAFETY: step p < k of the B panel is 16 f32 at p·16.
        let bv: [__m256; 2] =
            std::array::from_fn(|v| unsafe { _mm256_loadu_ps(b.add(p * 16 + 8 * v)) });
        for (row, &ar) in t.iter_mut().zip(&rows) {
            // SAFETY: element p of a row of A.
            let ai = _mm256_set1_ps(unsafe { *ar.add(p) });
            for (x, &bj) in row.iter_mut().zip(&bv) {
                *x = _mm256_fmadd_ps(ai, bj, *x);
            }
        }
    }
    for (i, row) in t.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm256_storeu_ps(c.add(i * ldc + 8 * v), x) };
        }
    }
}

/// `6 × 64` bf16 pairs with `vdpbf16ps`: per pair of `k`, four `B` vectors (16
/// columns × 2 bf16 each) and one 32-bit broadcast of each row's pair of `A`.
///
/// # Safety
/// As [`super::MicroFn`] with `MR = 6`, `NR = 64`, `k` even, on a CPU with
/// AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn avx512_bf16(
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    const MR: usize = 6;
    let (a, b) = (a.cast::<u16>(), b.cast::<u16>());
    let mut t = [[_mm512_setzero_ps(); 4]; MR];
    if acc {
        for (i, row) in t.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                // SAFETY: row i < MR, columns 16v..16v + 16 < NR lie in the C tile.
                *x = unsafe { _mm512_loadu_ps(c.add(i * ldc + 16 * v)) };
            }
        }
    }
    // SAFETY: rows i < MR of A (the caller's contract).
    let rows: [*const u16; MR] = std::array::from_fn(|i| unsafe { a.add(i * lda) });
    for q in 0..k / 2 {
        // SAFETY: pair q < k/2 of the B panel is 128 bf16 at q·128.
        let bv: [__m512bh; 4] = std::array::from_fn(|v| unsafe {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                b.add(q * 128 + 32 * v).cast(),
            ))
        });
        for (row, &ar) in t.iter_mut().zip(&rows) {
            // SAFETY: elements 2q, 2q + 1 of a row of A (k is even).
            let pair = unsafe { ar.add(2 * q).cast::<i32>().read_unaligned() };
            // SAFETY: a vector of 32-bit lanes reinterpreted as 32 bf16 lanes.
            let ai = unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair)) };
            for (x, &bj) in row.iter_mut().zip(&bv) {
                *x = _mm512_dpbf16_ps(*x, ai, bj);
            }
        }
    }
    for (i, row) in t.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm512_storeu_ps(c.add(i * ldc + 16 * v), x) };
        }
    }
}

/// Rounds `n` (a multiple of 16) `f32` at `x` to bf16 bits (nearest even; NaN stays
/// a quiet NaN with its sign; subnormals rounded, not flushed), written as `n` u16
/// from the same address: each 16 are loaded before their 32 bytes are stored over
/// the first half of their own 64.
///
/// # Safety
/// `x` must be valid for reads and writes of `n` `f32`; AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn round_bf16_in_place(x: *mut f32, n: usize) {
    let dst = x.cast::<u16>();
    let (one, bias, quiet, abs, inf) = (
        _mm512_set1_epi32(1),
        _mm512_set1_epi32(0x7fff),
        _mm512_set1_epi32(0x40),
        _mm512_set1_epi32(0x7fff_ffff),
        _mm512_set1_epi32(0x7f80_0000),
    );
    for i in (0..n).step_by(16) {
        // SAFETY: elements i..i + 16 < n of `x`; the store covers bytes 2i..2i + 32,
        // which lie in elements < i + 16, all loaded first.
        unsafe {
            let b = _mm512_loadu_si512(x.add(i).cast());
            let hi = _mm512_srli_epi32::<16>(b);
            let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
                _mm512_add_epi32(b, bias),
                _mm512_and_si512(hi, one),
            ));
            let nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, abs), inf);
            let r = _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(hi, quiet));
            _mm256_storeu_si256(dst.add(i).cast(), _mm512_cvtepi32_epi16(r));
        }
    }
}
