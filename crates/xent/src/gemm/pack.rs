//! Copies of operand pieces into the microkernels' layouts (see [`super::kernels`]),
//! converting to the kernel's element type and padding with zeros, so that kernels
//! only ever see whole tiles. Padding is what makes tails exact: a zero of `B` times
//! whatever `A` holds there is zero only when `A` holds a finite number, so the padded
//! part of `k` is zero on both sides.

use super::{Packed, View};

/// Rows `i0..i0 + rows` and `k0..k0 + klen` of `a` into `dst` as `mr` rows of `kpad`
/// elements (`f32`, or bf16 bits in the low half of `dst`'s bytes), zero-padded to
/// `mr` rows and `kpad` columns.
pub(super) fn pack_a(
    a: View<'_>,
    (i0, rows, mr): (usize, usize, usize),
    (k0, klen, kpad): (usize, usize, usize),
    packed: Packed,
    dst: &mut [f32],
) {
    match packed {
        Packed::F32 => {
            let dst = &mut dst[..mr * kpad];
            dst.fill(0.0);
            if a.cs == 1 {
                for i in 0..rows {
                    let s = (i0 + i) * a.rs + k0;
                    let row = &mut dst[i * kpad..i * kpad + klen];
                    match a.src {
                        crate::gemm::Src::F32(x) => row.copy_from_slice(&x[s..s + klen]),
                        crate::gemm::Src::Bf16(x) => {
                            for (d, v) in row.iter_mut().zip(&x[s..s + klen]) {
                                *d = v.to_f32();
                            }
                        }
                        crate::gemm::Src::F16(x) => {
                            for (d, v) in row.iter_mut().zip(&x[s..s + klen]) {
                                *d = v.to_f32();
                            }
                        }
                    }
                }
            } else if let (crate::gemm::Src::F32(x), 1) = (a.src, a.rs) {
                for p in 0..klen {
                    let base = (k0 + p) * a.cs + i0;
                    for (i, &v) in x[base..base + rows].iter().enumerate() {
                        dst[i * kpad + p] = v;
                    }
                }
            } else {
                for p in 0..klen {
                    let base = (k0 + p) * a.cs + i0 * a.rs;
                    for i in 0..rows {
                        dst[i * kpad + p] = a.src.get_f32(base + i * a.rs);
                    }
                }
            }
        }
        Packed::Bf16 => {
            let dst = as_u16(dst, mr * kpad);
            dst.fill(0);
            if a.cs == 1 {
                for i in 0..rows {
                    let s = (i0 + i) * a.rs + k0;
                    for (p, d) in dst[i * kpad..i * kpad + klen].iter_mut().enumerate() {
                        *d = a.src.get_bf16(s + p);
                    }
                }
            } else if let (crate::gemm::Src::Bf16(x), 1) = (a.src, a.rs) {
                // Gᵀ of the dW product: each step of k reads a contiguous piece of a
                // row of G and writes a column of the panel.
                for p in 0..klen {
                    let base = (k0 + p) * a.cs + i0;
                    for (i, v) in x[base..base + rows].iter().enumerate() {
                        dst[i * kpad + p] = v.to_bits();
                    }
                }
            } else {
                for p in 0..klen {
                    let base = (k0 + p) * a.cs + i0 * a.rs;
                    for i in 0..rows {
                        dst[i * kpad + p] = a.src.get_bf16(base + i * a.rs);
                    }
                }
            }
        }
    }
}

/// Columns `j0..j0 + n` and rows `k0..k0 + klen` of `b` into `dst` as `⌈n/nr⌉`
/// panels of `nr` columns and `kpad` rows each (`kpad·nr` elements apart), in the
/// kernel's `B` layout, zero-padded.
pub(super) fn pack_b(
    b: View<'_>,
    (j0, n, nr): (usize, usize, usize),
    (k0, klen, kpad): (usize, usize, usize),
    packed: Packed,
    dst: &mut [f32],
) {
    let panels = n.div_ceil(nr);
    match packed {
        Packed::F32 => {
            let dst = &mut dst[..panels * kpad * nr];
            if b.cs == 1 {
                // Row by row of `k`, each row's `n` columns dealt into the panels: `b`
                // is read in rows of `n` contiguous elements, which the prefetchers
                // follow (panel by panel, every line would be a new row, in a new page
                // when rows are 4 KiB or more apart).
                for p in 0..kpad {
                    if p >= klen {
                        for panel in dst.chunks_exact_mut(kpad * nr) {
                            panel[p * nr..(p + 1) * nr].fill(0.0);
                        }
                        continue;
                    }
                    let s = (k0 + p) * b.rs + j0;
                    for (q, panel) in dst.chunks_exact_mut(kpad * nr).enumerate() {
                        let cols = nr.min(n - q * nr);
                        let row = &mut panel[p * nr..(p + 1) * nr];
                        let s = s + q * nr;
                        match b.src {
                            crate::gemm::Src::F32(x) => {
                                row[..cols].copy_from_slice(&x[s..s + cols])
                            }
                            crate::gemm::Src::Bf16(x) => {
                                // bf16 → f32 is a shift of the bits (branch-free, so it
                                // vectorizes; a NaN stays a NaN).
                                for (d, v) in row[..cols].iter_mut().zip(&x[s..s + cols]) {
                                    *d = f32::from_bits(u32::from(v.to_bits()) << 16);
                                }
                            }
                            crate::gemm::Src::F16(x) => {
                                for (d, v) in row[..cols].iter_mut().zip(&x[s..s + cols]) {
                                    *d = v.to_f32();
                                }
                            }
                        }
                        row[cols..].fill(0.0);
                    }
                }
            } else {
                for (q, panel) in dst.chunks_exact_mut(kpad * nr).enumerate() {
                    let (c0, cols) = (j0 + q * nr, nr.min(n - q * nr));
                    panel.fill(0.0);
                    for j in 0..cols {
                        let base = (c0 + j) * b.cs + k0 * b.rs;
                        for p in 0..klen {
                            panel[p * nr + j] = b.src.get_f32(base + p * b.rs);
                        }
                    }
                }
            }
        }
        Packed::Bf16 => {
            let dst = as_u16(dst, panels * kpad * nr);
            for (q, panel) in dst.chunks_exact_mut(kpad * nr).enumerate() {
                let (c0, cols) = (j0 + q * nr, nr.min(n - q * nr));
                if b.cs == 1 {
                    // Rows p and p + 1 interleaved: (p, j) at (p/2)·2nr + 2j + p%2, i.e.
                    // one u32 per column and pair of rows (low half: row p).
                    for (q2, pair) in panel.chunks_exact_mut(2 * nr).enumerate() {
                        let (p0, p1) = (2 * q2, 2 * q2 + 1);
                        let row = |p: usize| (p < klen).then(|| (k0 + p) * b.rs + c0);
                        let (s0, s1) = (row(p0), row(p1));
                        match b.src {
                            crate::gemm::Src::Bf16(x) => {
                                let r0 = s0.map(|s| &x[s..s + cols]);
                                let r1 = s1.map(|s| &x[s..s + cols]);
                                interleave(pair, r0, r1, cols);
                            }
                            src => {
                                let conv = |s: Option<usize>| {
                                    s.map(|s| {
                                        (0..cols).map(|j| src.get_bf16(s + j)).collect::<Vec<_>>()
                                    })
                                };
                                let (v0, v1) = (conv(s0), conv(s1));
                                interleave_bits(pair, v0.as_deref(), v1.as_deref(), cols);
                            }
                        }
                    }
                } else {
                    panel.fill(0);
                    for j in 0..cols {
                        let base = (c0 + j) * b.cs + k0 * b.rs;
                        for p in 0..klen {
                            panel[(p / 2) * 2 * nr + 2 * j + p % 2] =
                                b.src.get_bf16(base + p * b.rs);
                        }
                    }
                }
            }
        }
    }
}

/// A pair of bf16 rows (`None`: a padding row of zeros) interleaved into `nr` u32
/// columns, zero past `cols`.
fn interleave(pair: &mut [u16], r0: Option<&[half::bf16]>, r1: Option<&[half::bf16]>, cols: usize) {
    let bits = |r: Option<&[half::bf16]>| {
        // SAFETY: `bf16` is a `repr(transparent)` `u16`.
        r.map(|r| unsafe { std::slice::from_raw_parts(r.as_ptr().cast::<u16>(), r.len()) })
    };
    interleave_bits(pair, bits(r0), bits(r1), cols);
}

fn interleave_bits(pair: &mut [u16], r0: Option<&[u16]>, r1: Option<&[u16]>, cols: usize) {
    let (head, tail) = pair.split_at_mut(2 * cols);
    tail.fill(0);
    let zeros;
    let (r0, r1) = match (r0, r1) {
        (Some(r0), Some(r1)) => (&r0[..cols], &r1[..cols]),
        (Some(r0), None) => {
            zeros = vec![0u16; cols];
            (&r0[..cols], &zeros[..])
        }
        _ => {
            head.fill(0);
            return;
        }
    };
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected.
        unsafe { interleave_avx512(head, r0, r1) };
        return;
    }
    interleave_rows(head, r0, r1);
}

/// `out[2j] = r0[j]`, `out[2j + 1] = r1[j]`, written as one u32 per column so that it
/// vectorizes (zero-extend, shift, or).
#[inline(always)]
fn interleave_rows(out: &mut [u16], r0: &[u16], r1: &[u16]) {
    for ((o, &x), &y) in out.chunks_exact_mut(2).zip(r0).zip(r1) {
        let w = (x as u32) | ((y as u32) << 16);
        o.copy_from_slice(&[w as u16, (w >> 16) as u16]);
    }
}

/// [`interleave_rows`] compiled for AVX-512.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn interleave_avx512(out: &mut [u16], r0: &[u16], r1: &[u16]) {
    use std::arch::x86_64::*;
    let n = r0.len().min(r1.len()).min(out.len() / 2);
    let full = n / 16 * 16;
    for j in (0..full).step_by(16) {
        // SAFETY: columns j..j + 16 ≤ n of both rows, u16 slots 2j..2j + 32 ≤ 2n of `out`.
        unsafe {
            let x = _mm512_cvtepu16_epi32(_mm256_loadu_si256(r0.as_ptr().add(j).cast()));
            let y = _mm512_cvtepu16_epi32(_mm256_loadu_si256(r1.as_ptr().add(j).cast()));
            let w = _mm512_or_si512(x, _mm512_slli_epi32::<16>(y));
            _mm512_storeu_si512(out.as_mut_ptr().add(2 * j).cast(), w);
        }
    }
    interleave_rows(&mut out[2 * full..2 * n], &r0[full..n], &r1[full..n]);
}

/// The first `len` bf16 slots of an `f32` scratch (two per `f32`).
pub(super) fn as_u16(buf: &mut [f32], len: usize) -> &mut [u16] {
    assert!(len <= 2 * buf.len());
    // SAFETY: `u16` has no invalid bit patterns and a smaller alignment than `f32`;
    // `len` u16 fit in the borrowed bytes (checked), and the borrow is passed on.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u16>(), len) }
}
