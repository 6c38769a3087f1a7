//! The blocked GEMM over a microkernel, and the three products of linear
//! cross-entropy as tasks on rayon's pool.
//!
//! One range of `k` ([`chunk`]): for each `MR`-row panel of `A` (read in place when
//! it is the kernel's type, `k`-contiguous and whole; copied otherwise), for each
//! packed `NR`-column panel of `B`, one microkernel call on a tile of `C` (through a
//! small tile of scratch at the edges). A product walks `k` in ranges of
//! [`blocking::kc`], adding into `C` after the first. Task boundaries and `k` ranges
//! depend on the shape only.

use super::blocking::{self, DH_COLUMNS, DH_ROW_TASKS, DW_CLASSES, LOGITS_CLASSES};
use super::kernels::Kernel;
use super::pack::{pack_a, pack_b};
use super::{bf16_bits, GradPrecision, Packed, Src, View};
use half::bf16;
use rayon::prelude::*;

/// One cache line of scratch, the unit it is allocated in (64-byte aligned).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    /// Each thread's packing scratch, kept across calls.
    static SCRATCH: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` `f32` of this thread's scratch (cache-line aligned). The engine
/// never calls rayon while holding it; a nested call would get a fresh buffer.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let lines = len.div_ceil(16);
    let view = |v: &mut [Line]| -> &mut [f32] {
        // SAFETY: `Line` is 16 `f32` with no padding (repr(C)); `lines · 16 ≥ len`.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), len) }
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < lines {
                v.resize(lines, Line([0.0; 16]));
            }
            f(view(&mut v[..lines]))
        }
        Err(_) => f(view(&mut vec![Line([0.0; 16]); lines])),
    })
}

thread_local! {
    /// The packed `W` that the tasks of [`Gemm::hidden_grad`] share, owned by the
    /// thread that calls it, kept across calls.
    static SHARED_B: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` `f32` of this thread's shared packing buffer (a fresh one when
/// it is in use further up this thread's stack).
fn with_shared_b<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let lines = len.div_ceil(16);
    let view = |v: &mut [Line]| -> &mut [f32] {
        // SAFETY: as in `with_scratch`.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), len) }
    };
    SHARED_B.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < lines {
                v.resize(lines, Line([0.0; 16]));
            }
            f(view(&mut v[..lines]))
        }
        Err(_) => f(view(&mut vec![Line([0.0; 16]); lines])),
    })
}

/// The tasks of [`Gemm::hidden_grad`] for a block of `rows` rows: `(row tasks,
/// column groups)`. Rows go in [`DH_ROW_TASKS`] tasks of whole kernel panels where
/// there are that many panels; below that, each row task also splits `dh`'s columns
/// ([`DH_COLUMNS`] blocks), so that there are still about [`DH_ROW_TASKS`] tasks.
/// Depends on the shape only.
fn dh_tasks(ker: &Kernel, rows: usize, d: usize) -> (usize, usize) {
    let panels = rows.div_ceil(ker.mr);
    let row_tasks = panels.clamp(1, DH_ROW_TASKS);
    let row_tasks = panels.div_ceil(panels.div_ceil(row_tasks));
    let blocks = d.div_ceil(DH_COLUMNS);
    let groups = DH_ROW_TASKS.div_ceil(row_tasks).clamp(1, blocks.max(1));
    (row_tasks, groups)
}

/// A pointer that tasks writing disjoint parts of one buffer share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: the tasks given one `SharedMut` write disjoint elements (each function below
// says which), and the buffer outlives them (it stays borrowed for the whole loop).
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The element `off` past the start (a method, so that closures capture the whole
    /// `SharedMut` rather than its raw pointer field).
    fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// The logit gradient `G` of a block as the backward GEMMs read it: `rows × V`, rows
/// `ld` elements apart, `f32` or rounded to bf16 in place ([`round_rows_to_bf16`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grad<'a> {
    pub(crate) src: Src<'a>,
    pub(crate) ld: usize,
}

impl<'a> Grad<'a> {
    /// `G` in `f32`, `rows × v` contiguous.
    pub(crate) fn f32(g: &'a [f32], v: usize) -> Self {
        Grad {
            src: Src::F32(g),
            ld: v,
        }
    }
}

/// Rounds each row of `g` (`rows × v` `f32`) to bf16 (nearest even) in place: row
/// `r`'s bf16 values take the first half of its own bytes, so `G` needs no second
/// buffer. Returns `G` as bf16 rows `2v` bf16 apart. Rows in parallel (each row is
/// rewritten front to back, each value read before its bytes are written over).
pub(crate) fn round_rows_to_bf16(g: &mut [f32], rows: usize, v: usize) -> Grad<'_> {
    assert_eq!(g.len(), rows * v);
    g.par_chunks_mut(v.max(1)).for_each(round_row);
    let len = 2 * g.len();
    // SAFETY: `g`'s bytes reread as `2·len(g)` bf16 (no invalid bit patterns, a smaller
    // alignment); the exclusive borrow of `g` becomes this shared one.
    let s = unsafe { std::slice::from_raw_parts(g.as_ptr().cast::<bf16>(), len) };
    Grad {
        src: Src::Bf16(s),
        ld: 2 * v,
    }
}

fn round_row(row: &mut [f32]) {
    const W: usize = 16;
    let n = row.len();
    let base = row.as_mut_ptr();
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        i = n / W * W;
        // SAFETY: the row holds `n ≥ i` f32, exclusively borrowed; AVX-512F checked.
        unsafe { super::kernels::x86::round_bf16_in_place(base, i) };
    }
    while i < n {
        let w = W.min(n - i);
        let mut bits = [0u16; W];
        for (j, b) in bits[..w].iter_mut().enumerate() {
            // SAFETY: f32 element i + j < n of the row; element k's bytes are
            // overwritten only by bf16 slots 2k, 2k + 1, written after slot
            // i + j ≥ 2k was... the slots written so far are < i ≤ i + j.
            *b = bf16_bits(unsafe { *base.add(i + j) });
        }
        let dst = base.cast::<u16>();
        for (j, &b) in bits[..w].iter().enumerate() {
            // SAFETY: slot i + j < n lies in the first half of the row's bytes, over
            // f32 elements ≤ (i + j)/2 < i + w, all read above.
            unsafe { *dst.add(i + j) = b };
        }
        i += w;
    }
}

/// The kernels of one linear cross-entropy call: one for the logits, one for the
/// backward products (`f32` when `G` stays in `f32`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm {
    pub(crate) logits: Kernel,
    pub(crate) grad: Kernel,
}

/// The per-call buffers shared by the tasks: the block's `h`, packed as `B` of the
/// logits (`D × rows`) and of `dW` (`rows × D`).
#[derive(Default)]
pub(crate) struct Workspace {
    hb: Vec<Line>,
}

impl Workspace {
    fn buf(&mut self, len: usize) -> &mut [f32] {
        let lines = len.div_ceil(16);
        if self.hb.len() < lines {
            self.hb.resize(lines, Line([0.0; 16]));
        }
        // SAFETY: as in `with_scratch`.
        unsafe { std::slice::from_raw_parts_mut(self.hb.as_mut_ptr().cast::<f32>(), len) }
    }
}

/// Elements (`f32` slots) of a packed `B` of `n` columns and `kpad` rows.
fn packed_len(ker: &Kernel, n: usize, kpad: usize) -> usize {
    let elems = n.div_ceil(ker.nr) * ker.nr * kpad;
    match ker.packed {
        Packed::F32 => elems,
        Packed::Bf16 => elems.div_ceil(2),
    }
}

fn elem_bytes(p: Packed) -> usize {
    match p {
        Packed::F32 => 4,
        Packed::Bf16 => 2,
    }
}

impl Gemm {
    /// The best kernels for operands stored as `input` (a sample [`Src`]) with the
    /// logit gradient in `grad`.
    pub(crate) fn new(input: &Src<'_>, grad: GradPrecision) -> Gemm {
        let f32k = Kernel::best(Packed::F32).expect("the scalar f32 kernel always exists");
        let bf16k = Kernel::best(Packed::Bf16);
        match (input, bf16k) {
            (Src::Bf16(_), Some(k)) => Gemm {
                logits: k,
                grad: if grad == GradPrecision::Bf16 { k } else { f32k },
            },
            _ => Gemm {
                logits: f32k,
                grad: f32k,
            },
        }
    }

    /// `x = h_block·Wᵀ (+ b)`: `h` `rows × d` (rows `ldh` apart), `w` `v × d`, `x`
    /// `rows × v` row-major. Tasks of [`LOGITS_CLASSES`] classes; each computes
    /// `W_c·h_blockᵀ` (its classes as the kernel's rows, `W` read in place) into a tile
    /// of its own and writes it transposed into its columns of `x`.
    pub(crate) fn logits(
        &self,
        h: View<'_>,
        w: Src<'_>,
        bias: Option<&[f32]>,
        (rows, d, v): (usize, usize, usize),
        x: &mut [f32],
        ws: &mut Workspace,
    ) {
        assert!(x.len() == rows * v && w.len() == v * d && h.holds(rows, d));
        assert!(bias.is_none_or(|b| b.len() == v));
        if rows == 0 || v == 0 {
            return;
        }
        if d == 0 {
            for row in x.chunks_exact_mut(v) {
                match bias {
                    Some(b) => row.copy_from_slice(b),
                    None => row.fill(0.0),
                }
            }
            return;
        }
        let ker = self.logits;
        let kpad = d.next_multiple_of(ker.kstep);
        // B = h_blockᵀ (d × rows), packed once for all tasks.
        let bt = View::new(h.src, h.cs, h.rs);
        let hb = ws.buf(packed_len(&ker, rows, kpad));
        pack_b(bt, (0, rows, ker.nr), (0, d, kpad), ker.packed, hb);
        let hb: &[f32] = hb;
        let out = SharedMut(x.as_mut_ptr());
        let tasks = v.div_ceil(LOGITS_CLASSES);
        (0..tasks).into_par_iter().for_each(|t| {
            let c0 = t * LOGITS_CLASSES;
            let classes = LOGITS_CLASSES.min(v - c0);
            let tile_len = classes * rows;
            with_scratch(tile_len + scratch_len(&ker), |buf| {
                let (tile, rest) = buf.split_at_mut(tile_len);
                let wc = offset_rows(View::new(w, d, 1), c0);
                gemm_k(
                    &ker,
                    wc,
                    classes,
                    hb,
                    kpad,
                    rows,
                    tile.as_mut_ptr(),
                    rows,
                    false,
                    d,
                    rest,
                );
                // SAFETY: this task writes columns c0..c0 + classes of the rows×v
                // `x`, which no other task writes; `x` stays borrowed for the loop.
                unsafe {
                    scatter_transposed(tile, rows, classes, bias.map(|b| &b[c0..]), out.at(c0), v)
                };
            })
        });
    }

    /// `dh (=|+=) G·W`: `g` `rows × v`, `w` `v × d`, `dh` `rows × d` row-major.
    ///
    /// Per range of [`blocking::kc`] classes: `W`'s rows of the range are packed once,
    /// all `d` columns, in tasks of [`DH_COLUMNS`] columns, into a buffer the tasks
    /// then share; then tasks of row panels ([`dh_tasks`]) each run their rows of `G`,
    /// read in place, against the packed `W`, [`DH_COLUMNS`] columns at a time. A
    /// panel of `G` (the operand read from memory) is so used for every column of `dh`
    /// it is loaded for, rather than once per column task. Each element of `dh` is
    /// summed by one task per range, ranges in order.
    pub(crate) fn hidden_grad(
        &self,
        g: Grad<'_>,
        w: Src<'_>,
        (rows, d, v): (usize, usize, usize),
        accumulate: bool,
        dh: &mut [f32],
    ) {
        let gv = View::new(g.src, g.ld, 1);
        assert!(dh.len() == rows * d && w.len() == v * d && gv.holds(rows, v));
        if rows == 0 || d == 0 {
            return;
        }
        if v == 0 {
            if !accumulate {
                dh.fill(0.0);
            }
            return;
        }
        let ker = self.grad;
        let kc = blocking::kc(ker.packed);
        let eb = elem_bytes(ker.packed);
        let (row_tasks, col_groups) = dh_tasks(&ker, rows, d);
        let rows_per = rows.div_ceil(ker.mr).div_ceil(row_tasks) * ker.mr;
        let blocks = d.div_ceil(DH_COLUMNS);
        let blocks_per = blocks.div_ceil(col_groups);
        let out = SharedMut(dh.as_mut_ptr());
        let wv = View::new(w, d, 1);
        with_shared_b(packed_len(&ker, d, kc), |bp| {
            for k0 in (0..v).step_by(kc) {
                let klen = kc.min(v - k0);
                let kpad = klen.next_multiple_of(ker.kstep);
                let block_len = packed_len(&ker, DH_COLUMNS, kpad);
                let bp = &mut bp[..packed_len(&ker, d, kpad)];
                bp.par_chunks_mut(block_len)
                    .enumerate()
                    .for_each(|(b, dst)| {
                        let j0 = b * DH_COLUMNS;
                        let cols = DH_COLUMNS.min(d - j0);
                        pack_b(wv, (j0, cols, ker.nr), (k0, klen, kpad), ker.packed, dst);
                    });
                let bp: &[f32] = bp;
                let panel_bytes = kpad * ker.nr * eb;
                (0..row_tasks * col_groups).into_par_iter().for_each(|t| {
                    let (rt, cg) = (t / col_groups, t % col_groups);
                    let r0 = rt * rows_per;
                    if r0 >= rows {
                        return;
                    }
                    let m = rows_per.min(rows - r0);
                    let a = offset_rows(gv, r0);
                    with_scratch(scratch_len(&ker), |rest| {
                        for b in cg * blocks_per..((cg + 1) * blocks_per).min(blocks) {
                            let j0 = b * DH_COLUMNS;
                            let cols = DH_COLUMNS.min(d - j0);
                            let bb = bp
                                .as_ptr()
                                .cast::<u8>()
                                .wrapping_add((j0 / ker.nr) * panel_bytes);
                            // SAFETY: this task writes rows r0..r0 + m, columns
                            // j0..j0 + cols of `dh` (ld d), which no other task writes
                            // in this range of classes; `bb` starts the packed panels
                            // of these columns, `kpad` rows each.
                            unsafe {
                                chunk(
                                    &ker,
                                    a,
                                    m,
                                    (k0, klen, kpad),
                                    (bb, kpad),
                                    cols,
                                    out.at(r0 * d + j0),
                                    d,
                                    accumulate || k0 > 0,
                                    rest,
                                )
                            };
                        }
                    })
                });
            }
        });
    }

    /// `dW += Gᵀ·h_block`: `g` `rows × v`, `h` `rows × d` (any strides), `dw` `v × d`
    /// row-major. `h_block` is packed once; tasks of [`DW_CLASSES`] rows of `dW` read
    /// their classes of `G` transposed into a copy.
    pub(crate) fn weight_grad_add(
        &self,
        g: Grad<'_>,
        h: View<'_>,
        (rows, d, v): (usize, usize, usize),
        dw: &mut [f32],
        ws: &mut Workspace,
    ) {
        let gv = View::new(g.src, g.ld, 1);
        assert!(dw.len() == v * d && h.holds(rows, d) && gv.holds(rows, v));
        if rows == 0 || d == 0 || v == 0 {
            return;
        }
        let ker = self.grad;
        let kpad = rows.next_multiple_of(ker.kstep);
        let hb = ws.buf(packed_len(&ker, d, kpad));
        pack_b(h, (0, d, ker.nr), (0, rows, kpad), ker.packed, hb);
        let hb: &[f32] = hb;
        // A = Gᵀ: element (c, r) = G[r, c].
        let gt = View::new(g.src, 1, g.ld);
        let out = SharedMut(dw.as_mut_ptr());
        let tasks = v.div_ceil(DW_CLASSES);
        (0..tasks).into_par_iter().for_each(|t| {
            let c0 = t * DW_CLASSES;
            let classes = DW_CLASSES.min(v - c0);
            with_scratch(scratch_len(&ker), |rest| {
                let a = View::new(gt.src, gt.rs, gt.cs);
                let a = offset_rows(a, c0);
                // SAFETY: this task writes rows c0..c0 + classes of `dW`, which no
                // other task writes.
                unsafe {
                    gemm_k_raw(
                        &ker,
                        a,
                        classes,
                        hb,
                        kpad,
                        d,
                        out.at(c0 * d),
                        d,
                        true,
                        rows,
                        rest,
                    )
                };
            })
        });
    }
}

/// `a` from row `r0` on.
fn offset_rows(a: View<'_>, r0: usize) -> View<'_> {
    let off = r0 * a.rs;
    let src = match a.src {
        Src::F32(s) => Src::F32(&s[off.min(s.len())..]),
        Src::Bf16(s) => Src::Bf16(&s[off.min(s.len())..]),
        Src::F16(s) => Src::F16(&s[off.min(s.len())..]),
    };
    View::new(src, a.rs, a.cs)
}

/// Scratch (`f32` slots) [`chunk`] needs: a packed `A` panel and a `C` tile.
fn scratch_len(ker: &Kernel) -> usize {
    let kc = blocking::kc(ker.packed);
    ker.mr * kc + ker.mr * ker.nr
}

/// `C (m × n, ldc) (+)= A (m × k) · B` over all of `k` in ranges of
/// [`blocking::kc`], `B` packed whole (`⌈n/NR⌉` panels of `kpad` rows) in `bp`.
#[allow(clippy::too_many_arguments)]
fn gemm_k(
    ker: &Kernel,
    a: View<'_>,
    m: usize,
    bp: &[f32],
    kpad: usize,
    n: usize,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    k: usize,
    scratch: &mut [f32],
) {
    // SAFETY: forwarded: `c` is the task's own tile (the callers' contract).
    unsafe { gemm_k_raw(ker, a, m, bp, kpad, n, c, ldc, acc, k, scratch) }
}

/// [`gemm_k`] on a raw `C`.
///
/// # Safety
/// `c` must be valid for reads and writes of `m` rows of `n` `f32`, `ldc` apart, that
/// nothing else accesses meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_k_raw(
    ker: &Kernel,
    a: View<'_>,
    m: usize,
    bp: &[f32],
    kpad: usize,
    n: usize,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    k: usize,
    scratch: &mut [f32],
) {
    assert!(a.holds(m, k) && bp.len() >= packed_len(ker, n, kpad));
    let kc = blocking::kc(ker.packed);
    let eb = elem_bytes(ker.packed);
    for k0 in (0..k).step_by(kc) {
        let klen = kc.min(k - k0);
        let kp = klen.next_multiple_of(ker.kstep);
        // The range's rows of every panel start k0·NR elements into it.
        let b = bp.as_ptr().cast::<u8>().wrapping_add(k0 * ker.nr * eb);
        // SAFETY: `B`'s panels hold `kpad ≥ k0 + kp` rows (`kpad` is `k` rounded up to
        // `kstep`, and `kc` a multiple of it); `c` as the caller's contract.
        unsafe {
            chunk(
                ker,
                a,
                m,
                (k0, klen, kp),
                (b, kpad),
                n,
                c,
                ldc,
                acc || k0 > 0,
                scratch,
            )
        };
    }
}

/// One range of `k`: `C (m × n, ldc) (+)= A[.., k0..k0 + klen] · B`, `B` packed in
/// panels of `kstride` rows starting at `bp`.
///
/// # Safety
/// `bp` must hold `⌈n/NR⌉` packed panels (`kstride·NR` elements apart) of at least
/// `kpad` rows each; `a` must hold `m × (k0 + klen)`; `c` as [`gemm_k_raw`].
#[allow(clippy::too_many_arguments)]
unsafe fn chunk(
    ker: &Kernel,
    a: View<'_>,
    m: usize,
    (k0, klen, kpad): (usize, usize, usize),
    (bp, kstride): (*const u8, usize),
    n: usize,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    scratch: &mut [f32],
) {
    #[cfg(test)]
    super::kernels::RUNS[ker.unit.index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mr, nr) = (ker.mr, ker.nr);
    let eb = elem_bytes(ker.packed);
    let (apack, ctile) = scratch.split_at_mut(mr * kpad);
    let ctile = &mut ctile[..mr * nr];
    let panel_bytes = kstride * nr * eb;
    for i0 in (0..m).step_by(mr) {
        let rows = mr.min(m - i0);
        let direct = a.src.is(ker.packed) && a.cs == 1 && rows == mr && kpad == klen;
        let (ap, lda) = if direct {
            let off = (i0 * a.rs + k0) * a.src.elem_bytes();
            (a.src.as_ptr().wrapping_add(off), a.rs)
        } else {
            pack_a(a, (i0, rows, mr), (k0, klen, kpad), ker.packed, apack);
            (apack.as_ptr().cast::<u8>(), kpad)
        };
        for j0 in (0..n).step_by(nr) {
            let cols = nr.min(n - j0);
            let b = bp.wrapping_add((j0 / nr) * panel_bytes);
            if rows == mr && cols == nr {
                // SAFETY: A: `mr` rows of `kpad` in place (checked by `direct`; the
                // caller's contract on `a`) or packed; B: this panel (the caller's
                // contract); C: a whole tile inside `m × n` (the caller's contract).
                unsafe { ker.run(kpad, ap, lda, b, c.add(i0 * ldc + j0), ldc, acc) };
            } else {
                for i in 0..mr {
                    for j in 0..nr {
                        ctile[i * nr + j] = if acc && i < rows && j < cols {
                            // SAFETY: (i0 + i, j0 + j) lies inside `m × n`.
                            unsafe { *c.add((i0 + i) * ldc + j0 + j) }
                        } else {
                            0.0
                        };
                    }
                }
                // SAFETY: as above, with C the whole scratch tile.
                unsafe { ker.run(kpad, ap, lda, b, ctile.as_mut_ptr(), nr, true) };
                for i in 0..rows {
                    for j in 0..cols {
                        // SAFETY: (i0 + i, j0 + j) lies inside `m × n`.
                        unsafe { *c.add((i0 + i) * ldc + j0 + j) = ctile[i * nr + j] };
                    }
                }
            }
        }
    }
}

/// `dst[r·ld + c] = tile[c·rows + r] (+ b[c])` for `r < rows`, `c < classes`: a
/// `classes × rows` tile into `classes` columns of row-major rows, eight rows at a
/// time (each tile row read contiguously, each written line filled by eight columns).
///
/// # Safety
/// `dst` must be valid for writes at `r·ld + c` for every `r < rows`, `c < classes`,
/// and nothing else may access those elements meanwhile.
unsafe fn scatter_transposed(
    tile: &[f32],
    rows: usize,
    classes: usize,
    bias: Option<&[f32]>,
    dst: *mut f32,
    ld: usize,
) {
    const R: usize = 8;
    for r0 in (0..rows).step_by(R) {
        let rn = R.min(rows - r0);
        for c in 0..classes {
            let b = bias.map_or(0.0, |b| b[c]);
            let col = &tile[c * rows + r0..c * rows + r0 + rn];
            for (i, &t) in col.iter().enumerate() {
                // SAFETY: `r0 + i < rows` and `c < classes` (the caller's contract).
                unsafe { *dst.add((r0 + i) * ld + c) = t + b };
            }
        }
    }
}
