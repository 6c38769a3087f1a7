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
            for (q, panel) in dst.chunks_exact_mut(kpad * nr).enumerate() {
                let (c0, cols) = (j0 + q * nr, nr.min(n - q * nr));
                if b.cs == 1 {
                    for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                        if p >= klen {
                            row.fill(0.0);
                            continue;
                        }
                        let s = (k0 + p) * b.rs + c0;
                        match b.src {
                            crate::gemm::Src::F32(x) => {
                                row[..cols].copy_from_slice(&x[s..s + cols])
                            }
                            crate::gemm::Src::Bf16(x) => {
                                for (d, v) in row[..cols].iter_mut().zip(&x[s..s + cols]) {
                                    *d = v.to_f32();
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
                } else {
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
                    // Rows p and p + 1 interleaved: (p, j) at (p/2)·2nr + 2j + p%2.
                    for (q2, pair) in panel.chunks_exact_mut(2 * nr).enumerate() {
                        for half in 0..2 {
                            let p = 2 * q2 + half;
                            if p >= klen {
                                for j in 0..nr {
                                    pair[2 * j + half] = 0;
                                }
                                continue;
                            }
                            let s = (k0 + p) * b.rs + c0;
                            match b.src {
                                crate::gemm::Src::Bf16(x) => {
                                    for (j, v) in x[s..s + cols].iter().enumerate() {
                                        pair[2 * j + half] = v.to_bits();
                                    }
                                }
                                src => {
                                    for j in 0..cols {
                                        pair[2 * j + half] = src.get_bf16(s + j);
                                    }
                                }
                            }
                            for j in cols..nr {
                                pair[2 * j + half] = 0;
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

/// The first `len` bf16 slots of an `f32` scratch (two per `f32`).
pub(super) fn as_u16(buf: &mut [f32], len: usize) -> &mut [u16] {
    assert!(len <= 2 * buf.len());
    // SAFETY: `u16` has no invalid bit patterns and a smaller alignment than `f32`;
    // `len` u16 fit in the borrowed bytes (checked), and the borrow is passed on.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u16>(), len) }
}
