//! Linear cross-entropy's GEMM driver: the block of logits `h_block·Wᵀ + b`, and the
//! backward products `dh_block = G·W`, `dW += Gᵀ·h_block`, `db += Σ_rows G`, in
//! tasks on the pool ([`Blocks`]), with the block size they are sized for.
//!
//! Each GEMM is split into independent tasks on rayon's pool — a range of classes of
//! the logits, a range of columns of `dh`, a range of rows of `dW` — and every task is
//! one single-threaded `gemm` call. The ranges depend only on the shape, and each output
//! element is summed by one call in one order, so the results do not depend on the
//! number of threads; the pool balances the tasks, so a core taken by another process
//! slows one task rather than stalling a GEMM split in fixed halves.

use crate::driver::blocks::{Blocks, ThreadScratch};
use crate::kernels::num::{Real, Storage};
use crate::kernels::ptr::Ptr;
use crate::sizes::{
    DB_COL_CHUNK, DH_COL_CHUNK, DW_CLASS_CHUNK, DW_COL_CHUNK, LHS_ROW_ALIGN, WIDEN_CLASSES,
    X_CLASS_CHUNK,
};
use gemm::Parallelism;

/// `db += Σ_rows G`, split over column ranges so that every column is summed in row
/// order whatever the thread count.
pub(crate) fn column_sums_into<T: Real>(g: &[T], v: usize, db: &mut [T]) {
    let rows = g.len() / v;
    Blocks::new(v, DB_COL_CHUNK).map_mut([(Some(db), 1)], |cols, [db]| {
        let Some(db) = db else { return };
        for r in 0..rows {
            let row = &g[r * v + cols.start..r * v + cols.end];
            for (acc, &x) in db.iter_mut().zip(row) {
                *acc += x;
            }
        }
    });
}

/// `x = h_block·Wᵀ (+ b)`, `rows × V` row-major, in tasks of [`X_CLASS_CHUNK`]
/// classes: each computes its classes column-major in a tile of its thread (where
/// `gemm` reads `W` unpacked, or its widened copy) and transposes them into `x`.
/// `h_block` comes column-major in `ht`, `ld` (a multiple of [`LHS_ROW_ALIGN`]) rows
/// apart, so that `gemm` packs it into its per-thread buffer rather than allocating one
/// per call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn logits_into<E: Storage>(
    ht: &[E::Acc],
    (rows, ld): (usize, usize),
    w: &Widened<'_, E>,
    bias: Option<&[E::Acc]>,
    (d, v): (usize, usize),
    x: &mut [E::Acc],
    tiles: &ThreadScratch<E::Acc>,
) {
    assert!(x.len() == rows * v && ht.len() == ld * d && rows <= ld && w.w.len() == v * d);
    let out = Ptr::new(x);
    let chunk = X_CLASS_CHUNK.min(v);
    Blocks::new(v, chunk).for_each(|range| {
        tiles.with(|scratch| {
            let (c0, classes) = (range.start, range.len());
            let tile = &mut scratch[..ld * classes];
            // tile (ld × classes, column-major) = h_block · W[c0..c0 + classes]ᵀ; the
            // rows past `rows` are padding, computed and dropped.
            let hb = Strided::new(ht, 1, ld);
            // One GEMM, or one per WIDEN_CLASSES classes of a widened W.
            let step = if w.same.is_some() {
                classes
            } else {
                WIDEN_CLASSES
            };
            for s0 in (0..classes).step_by(step.max(1)) {
                let sc = step.min(classes - s0);
                w.rows(c0 + s0, sc, d, |wr| {
                    let wt = Strided::new(wr, 1, d);
                    let sub = &mut tile[s0 * ld..(s0 + sc) * ld];
                    matmul(ld, sc, d, sub, (1, ld), false, hb, wt);
                });
            }
            let b = bias.map(|b| &b[c0..c0 + classes]);
            // SAFETY: `x` holds `rows × v` elements and this task writes only its columns
            // `c0..c0 + classes` of each row; the tasks' column ranges are disjoint and
            // `x` stays mutably borrowed for the whole loop.
            unsafe { scatter_transposed(tile, (rows, ld), classes, b, out.at(c0), v) };
        })
    });
}

/// The rows of the logits GEMM for a block of `rows` rows: padded to a multiple of
/// [`LHS_ROW_ALIGN`], except below it (where padding costs more arithmetic than the
/// small allocation it saves).
pub(crate) fn lhs_ld(rows: usize) -> usize {
    if rows >= LHS_ROW_ALIGN {
        rows.next_multiple_of(LHS_ROW_ALIGN)
    } else {
        rows
    }
}

/// `dst[k·ld + r] = src[r·src_ld + k]` for `r < rows`, `k < cols`, and zero for
/// `rows ≤ r < ld`: `rows × cols` of a row-major matrix, column-major (and widened to
/// the accumulation type).
pub(crate) fn transpose_into<S: Storage>(
    src: &[S],
    (rows, src_ld): (usize, usize),
    cols: usize,
    dst: &mut [S::Acc],
    ld: usize,
) {
    // Eight rows at a time: eight read streams, each written line filled by eight rows.
    const R: usize = 8;
    assert!(rows <= ld && dst.len() >= cols * ld);
    if cols == 0 {
        // Nothing to write (D = 0); `dst[r..]` below would start past its end.
        return;
    }
    let row = |r: usize| &src[r * src_ld..r * src_ld + cols];
    let full = rows / R * R;
    for r0 in (0..full).step_by(R) {
        let src: [&[S]; R] = std::array::from_fn(|i| row(r0 + i));
        for (k, col) in dst.chunks_exact_mut(ld).take(cols).enumerate() {
            for (x, s) in col[r0..r0 + R].iter_mut().zip(src) {
                *x = s[k].to_acc();
            }
        }
    }
    for r in full..rows {
        for (x, &s) in dst[r..].iter_mut().step_by(ld).zip(row(r)) {
            *x = s.to_acc();
        }
    }
    for col in dst.chunks_exact_mut(ld).take(cols) {
        col[rows..].fill(S::Acc::ZERO);
    }
}

/// `dst[r·ld + c] = tile[c·tile_ld + r] (+ b[c])` for `r < rows`, `c < classes`: a
/// column-major tile into `classes` columns of row-major rows. Eight rows at a time,
/// so that each column read is contiguous and each written line is filled by eight
/// consecutive columns.
///
/// # Safety
/// `dst` must be valid for writes at `r·ld + c` for every `r < rows`, `c < classes`,
/// and nothing else may access those elements meanwhile.
unsafe fn scatter_transposed<T: Real>(
    tile: &[T],
    (rows, tile_ld): (usize, usize),
    classes: usize,
    bias: Option<&[T]>,
    dst: *mut T,
    ld: usize,
) {
    const R: usize = 8;
    for r0 in (0..rows).step_by(R) {
        let rn = R.min(rows - r0);
        for c in 0..classes {
            let b = bias.map_or(T::ZERO, |b| b[c]);
            let col = &tile[c * tile_ld + r0..c * tile_ld + r0 + rn];
            for (i, &t) in col.iter().enumerate() {
                // SAFETY: `r0 + i < rows` and `c < classes` (the caller's contract).
                unsafe { *dst.add((r0 + i) * ld + c) = t + b };
            }
        }
    }
}

/// `dh_block (=|+=) G·W`, in tasks of [`DH_COL_CHUNK`] columns. With `W` in the
/// accumulation type a task is one GEMM over all `V` classes; otherwise it widens
/// [`WIDEN_CLASSES`] classes of its columns at a time and accumulates one GEMM per
/// chunk, in class order.
pub(crate) fn hidden_grad_into<E: Storage>(
    g: &[E::Acc],
    rows: usize,
    w: &Widened<'_, E>,
    (d, v): (usize, usize),
    accumulate: bool,
    dh_block: &mut [E::Acc],
) {
    assert!(g.len() == rows * v && w.w.len() == v * d && dh_block.len() == rows * d);
    let out = Ptr::new(dh_block);
    Blocks::new(d, DH_COL_CHUNK).for_each(|range| {
        let (c0, cols) = (range.start, range.len());
        if let Some(ws) = w.same {
            let wc = Strided::new(&ws[c0..], d, 1);
            let gs = Strided::new(g, v, 1);
            // SAFETY: `dh_block` holds `rows × d` elements; this task's view starts at
            // column `c0` and spans `cols ≤ d − c0` columns of each of the `rows` rows
            // (stride `d`), disjoint from every other task's columns, and `dh_block`
            // stays mutably borrowed for the whole loop.
            unsafe { matmul_raw((rows, cols, v), out.at(c0), (d, 1), accumulate, gs, wc) };
            return;
        }
        w.scratch.with(|buf| {
            for k0 in (0..v).step_by(WIDEN_CLASSES) {
                let k = WIDEN_CLASSES.min(v - k0);
                let wc = &mut buf[..k * cols];
                for (dst, src) in wc.chunks_exact_mut(cols).zip(w.w[k0 * d..].chunks(d)) {
                    for (x, y) in dst.iter_mut().zip(&src[c0..c0 + cols]) {
                        *x = y.to_acc();
                    }
                }
                let gs = Strided::new(&g[k0..], v, 1);
                let wc = Strided::new(&*wc, cols, 1);
                // SAFETY: as above; the chunks run one after the other in this task.
                unsafe {
                    matmul_raw(
                        (rows, cols, k),
                        out.at(c0),
                        (d, 1),
                        accumulate || k0 > 0,
                        gs,
                        wc,
                    )
                };
            }
        })
    });
}

/// `dW += Gᵀ·h_block` (`h` a `rows × d` view in the accumulation type), in tasks of
/// [`DW_CLASS_CHUNK`] rows of `dW`. A task copies its
/// classes of `G` column-major into its thread's scratch (`classes × rows` elements),
/// which `gemm` then reads in place: with `G`'s rows `V` apart, it packed them into a
/// new allocation per call. Its calls cover [`DW_COL_CHUNK`] columns of `dW` each, few
/// enough that `gemm` never packs the copy again.
pub(crate) fn weight_grad_add<T: Real>(
    g: &[T],
    h: Strided<'_, T>,
    rows: usize,
    (d, v): (usize, usize),
    dw: &mut [T],
    scratch: &ThreadScratch<T>,
) {
    if d == 0 {
        return;
    }
    Blocks::new(v, DW_CLASS_CHUNK).map_mut([(Some(dw), d)], |range, [dw]| {
        let Some(dw) = dw else { return };
        scratch.with(|gt| {
            let (c0, classes) = (range.start, range.len());
            let gt = &mut gt[..classes * rows];
            transpose_into(&g[c0..], (rows, v), classes, gt, rows);
            let gt = Strided::new(&*gt, rows, 1);
            for d0 in (0..d).step_by(DW_COL_CHUNK) {
                let cols = DW_COL_CHUNK.min(d - d0);
                let hc = h.cols_from(d0);
                matmul(classes, cols, rows, &mut dw[d0..], (d, 1), true, gt, hc);
            }
        })
    });
}

/// A read-only matrix view: element `(i, j)` at `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a, T> {
    data: &'a [T],
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> Strided<'a, T> {
    pub(crate) fn new(data: &'a [T], row_stride: usize, col_stride: usize) -> Self {
        Strided {
            data,
            row_stride,
            col_stride,
        }
    }
    /// Whether every element of an `rows × cols` matrix lies inside `data`.
    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
    /// The view from column `col0` on.
    fn cols_from(&self, col0: usize) -> Self {
        Strided::new(
            &self.data[col0 * self.col_stride..],
            self.row_stride,
            self.col_stride,
        )
    }
}

/// `s` as a slice of its accumulation type when that is its own type (f32, f64).
pub(crate) fn as_acc<E: Storage>(s: &[E]) -> Option<&[E::Acc]> {
    (std::any::TypeId::of::<E>() == std::any::TypeId::of::<E::Acc>()).then(|| {
        // SAFETY: `E` and `E::Acc` are the same type (equal `TypeId`s), so the cast
        // reinterprets nothing: same pointer, length, layout and lifetime.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<E::Acc>(), s.len()) }
    })
}

/// `s` in its accumulation type: borrowed when that is its own type, widened otherwise.
pub(crate) fn widen<E: Storage>(s: &[E]) -> std::borrow::Cow<'_, [E::Acc]> {
    match as_acc(s) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(s.iter().map(|v| v.to_acc()).collect()),
    }
}

/// The classifier weight as the GEMMs read it: the caller's `W` when it is already in
/// the accumulation type, else widened a tile at a time into a per-thread scratch
/// (made here, by the calling thread), so that no widened copy of `W` is ever whole.
pub(crate) struct Widened<'a, E: Storage> {
    w: &'a [E],
    same: Option<&'a [E::Acc]>,
    scratch: ThreadScratch<E::Acc>,
}

impl<'a, E: Storage> Widened<'a, E> {
    /// `tile` elements of scratch per thread, when `w` needs widening.
    pub(crate) fn new(w: &'a [E], threads: usize, tile: usize) -> Self {
        let same = as_acc(w);
        let (threads, tile) = if same.is_some() {
            (0, 0)
        } else {
            (threads, tile)
        };
        Widened {
            w,
            same,
            scratch: ThreadScratch::new(threads, tile, E::Acc::ZERO),
        }
    }
    /// Runs `f` on rows `r0..r0 + rows` of `W` (`d` columns each), in the accumulation
    /// type.
    fn rows<R>(&self, r0: usize, rows: usize, d: usize, f: impl FnOnce(&[E::Acc]) -> R) -> R {
        match self.same {
            Some(w) => f(&w[r0 * d..(r0 + rows) * d]),
            None => self.scratch.with(|buf| {
                let dst = &mut buf[..rows * d];
                for (x, y) in dst.iter_mut().zip(&self.w[r0 * d..(r0 + rows) * d]) {
                    *x = y.to_acc();
                }
                f(dst)
            }),
        }
    }
}

/// `dst (m×n, element (i, j) at i·rs + j·cs) = [dst +] lhs (m×k) · rhs (k×n)`, one
/// single-threaded `gemm` call.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    (rs, cs): (usize, usize),
    accumulate: bool,
    lhs: Strided<'_, T>,
    rhs: Strided<'_, T>,
) {
    let holds = Strided::new(&*dst, rs, cs).holds(m, n);
    assert!(holds, "matmul destination out of bounds");
    // SAFETY: `dst` holds every element of the `m × n` view (checked above) and is
    // borrowed mutably, so nothing else touches it.
    unsafe { matmul_raw((m, n, k), dst.as_mut_ptr(), (rs, cs), accumulate, lhs, rhs) }
}

/// [`matmul`] through a raw destination pointer, for tasks that write disjoint parts
/// of one buffer.
///
/// # Safety
/// `dst` must be valid for reads and writes at `i·rs + j·cs` for every `i < m`,
/// `j < n`, those elements must not overlap each other (`rs`, `cs` describe a proper
/// matrix) nor the operands, and nothing else may access them during the call.
unsafe fn matmul_raw<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    (rs, cs): (usize, usize),
    accumulate: bool,
    lhs: Strided<'_, T>,
    rhs: Strided<'_, T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lhs.holds(m, k) && rhs.holds(k, n),
        "matmul operands out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: `(i, j)` lies in the destination (the caller's contract).
                    unsafe { *dst.add(i * rs + j * cs) = T::ZERO };
                }
            }
        }
        return;
    }
    // SAFETY: the assert above keeps every element the GEMM reads inside the operands'
    // slices; the caller guarantees the destination's elements are valid, exclusive
    // and apart from the operands; `T` is f32 or f64 (the sealed `Real`), which `gemm`
    // supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            cs as isize,
            rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
