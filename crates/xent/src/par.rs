//! The driver: splits a call into blocks, runs them on rayon's threads, and
//! reduces the block sums in a fixed order.
//!
//! Every parallel loop of the library goes through [`Blocks`]: the cross-entropy and
//! softmax rows below, the elementwise losses and divergences (blocks of elements or
//! rows), and linear cross-entropy's GEMM tasks (ranges of classes or columns). Block
//! boundaries depend only on the shape, never on the number of threads, and each
//! block is computed with a fixed order of operations; so results are bit-for-bit the
//! same on 1 or 64 threads. Rows longer than [`LONG_ROW`] classes are split across
//! threads themselves: their pieces' partial (max, Σexp) are merged in piece order.

use crate::element::Element;
use crate::kernels::dispatch::{dispatch, Isa};
use crate::kernels::f64_path;
pub(crate) use crate::kernels::fused::Scale;
use crate::kernels::fused::{
    finish, run_ce_block, scratch_len, AnyCoef, BlockSums, CeConsts, CeJob, PieceJob, PieceStep,
    RowStart, STREAM_BYTES,
};
use crate::kernels::row::{shift, Identity, Probs, RowStats, SoftCap, CHUNK, MAX_STORED_CHUNKS};
use crate::kernels::simd::Store32;
use crate::reduce::CompensatedSum;
use crate::targets::ClassIndices;
use core::ptr::NonNull;
use rayon::prelude::*;

/// Elements per block of rows: enough work per task, little enough to stay in L2.
const BLOCK_ELEMS: usize = 1 << 15;
/// Rows with at least this many classes are split across threads.
pub(crate) const LONG_ROW: usize = 1 << 17;
// Rows below LONG_ROW take the block path, whose stored-exp pass keeps one max per chunk.
const _: () = assert!(LONG_ROW <= crate::kernels::row::MAX_STORED_CHUNKS * CHUNK);

/// Classes per piece of a long row.
const PIECE: usize = 32 * CHUNK;
const _: () = assert!(PIECE <= MAX_STORED_CHUNKS * CHUNK);

/// One cache line of f32 scratch: the unit the scratch is allocated in, so that it
/// starts on a line (the kernels' vector loads and stores of it never straddle two).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    /// Each pool thread's kernel scratch, kept across calls: O(threads · C) memory.
    static SCRATCH: core::cell::RefCell<Vec<Line>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with at least `len` f32 of this thread's scratch, cache-line aligned
/// (none for `len = 0`). Kernels do not call back into rayon, so the borrow is never
/// nested; if it ever were, a temporary buffer is used instead of panicking.
fn with_scratch<R>(len: usize, f: impl FnOnce(Option<NonNull<f32>>) -> R) -> R {
    if len == 0 {
        return f(None);
    }
    let lines = len.div_ceil(16);
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < lines {
                v.resize(lines, Line([0.0; 16]));
            }
            f(Some(NonNull::from(&mut v[..]).cast()))
        }
        Err(_) => f(Some(
            NonNull::from(&mut vec![Line([0.0; 16]); lines][..]).cast(),
        )),
    })
}

/// `n` items (rows, elements, classes, columns) cut into blocks of `per` items, the
/// last one shorter: the unit of parallel work and of every ordered reduction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocks {
    n: usize,
    per: usize,
}

impl Blocks {
    /// `n` items in blocks of `per` (at least 1).
    pub(crate) fn new(n: usize, per: usize) -> Self {
        Blocks { n, per: per.max(1) }
    }

    /// The `outer` indices of an `(outer, classes, inner)` tensor, whole indices per
    /// block, about [`BLOCK_ELEMS`] elements each.
    pub(crate) fn of_rows(outer: usize, classes: usize, inner: usize) -> Self {
        let per_index = classes.saturating_mul(inner).max(1);
        Blocks::new(outer, (BLOCK_ELEMS / per_index).max(1))
    }

    /// The number of blocks.
    pub(crate) fn count(self) -> usize {
        self.n.div_ceil(self.per)
    }

    /// The items of block `b`.
    pub(crate) fn range(self, b: usize) -> core::ops::Range<usize> {
        b * self.per..((b + 1) * self.per).min(self.n)
    }

    /// Runs `f` on every block's items on rayon's pool; the results come back in
    /// block order.
    pub(crate) fn map<R: Send>(
        self,
        f: impl Fn(core::ops::Range<usize>) -> R + Sync + Send,
    ) -> Vec<R> {
        (0..self.count())
            .into_par_iter()
            .map(|b| f(self.range(b)))
            .collect()
    }

    /// Runs `f` on every block's items on rayon's pool.
    pub(crate) fn for_each(self, f: impl Fn(core::ops::Range<usize>) + Sync + Send) {
        (0..self.count())
            .into_par_iter()
            .for_each(|b| f(self.range(b)));
    }

    /// [`Blocks::map`] with `K` buffers cut along the blocks: buffer `k` holds
    /// `stride_k` elements per item (`n·stride_k` in all), and `f` gets the part of
    /// each present buffer that belongs to its block.
    pub(crate) fn map_mut<'a, T: Send, R: Send, const K: usize>(
        self,
        bufs: [(Option<&'a mut [T]>, usize); K],
        f: impl Fn(core::ops::Range<usize>, [Option<&'a mut [T]>; K]) -> R + Sync + Send,
    ) -> Vec<R> {
        let count = self.count();
        // Each buffer's blocks, then the blocks' parts of every buffer.
        let mut cut: Vec<std::vec::IntoIter<Option<&'a mut [T]>>> = bufs
            .into_iter()
            .map(|(buf, stride)| {
                let parts: Vec<Option<&'a mut [T]>> = match buf {
                    Some(b) => b
                        .chunks_mut(self.per.saturating_mul(stride).max(1))
                        .map(Some)
                        .chain(core::iter::repeat_with(|| None))
                        .take(count)
                        .collect(),
                    None => (0..count).map(|_| None).collect(),
                };
                parts.into_iter()
            })
            .collect();
        let parts: Vec<[Option<&'a mut [T]>; K]> = (0..count)
            .map(|_| core::array::from_fn(|k| cut[k].next().flatten()))
            .collect();
        parts
            .into_par_iter()
            .enumerate()
            .map(|(b, part)| f(self.range(b), part))
            .collect()
    }
}

/// Runs `f(n0, n1)` on every block `[n0, n1)` of whole `n` indices of an
/// `(outer, classes, inner)` tensor; the results come back in block order.
fn blocks<R: Send>(
    (outer, c, inner): (usize, usize, usize),
    f: impl Fn(usize, usize) -> R + Sync + Send,
) -> Vec<R> {
    Blocks::of_rows(outer, c, inner).map(|r| f(r.start, r.end))
}

/// The number of threads of the pool that runs the current call.
pub(crate) fn pool_threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// One scratch buffer per thread of the pool that runs a call, allocated up front by
/// the calling thread (tasks that allocate their own on pool threads leave glibc's
/// per-thread arenas holding freed memory).
pub(crate) struct ThreadScratch<T> {
    bufs: Vec<std::sync::Mutex<Vec<T>>>,
    len: usize,
    fill: T,
}

impl<T: Copy> ThreadScratch<T> {
    /// `len` elements, set to `fill`, for each of `threads` threads (the pool's:
    /// [`pool_threads`]; 0 when no task will need one).
    pub(crate) fn new(threads: usize, len: usize, fill: T) -> Self {
        ThreadScratch {
            bufs: (0..threads)
                .map(|_| std::sync::Mutex::new(vec![fill; len]))
                .collect(),
            len,
            fill,
        }
    }

    /// Runs `f` on this thread's buffer; on a thread outside the pool, or if the buffer
    /// is taken (a task never runs inside another on one thread: the tasks do not call
    /// into rayon), on a new one.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let slot = rayon::current_thread_index().and_then(|i| self.bufs.get(i));
        match slot.and_then(|m| m.try_lock().ok()) {
            Some(mut buf) => f(&mut buf),
            None => f(&mut vec![self.fill; self.len]),
        }
    }
}

/// The start of a caller's buffer that the tasks of one call write: the driver
/// gives every task a disjoint region of it.
pub struct Ptr<T>(NonNull<T>);

/// The start of a caller's buffer that the tasks of one call only read.
pub struct ConstPtr<T>(NonNull<T>);

impl<T> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ptr<T> {}
impl<T> Clone for ConstPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ConstPtr<T> {}

// SAFETY: a `Ptr` comes from a `&mut [T]` borrowed for the whole call, whose elements
// may move between threads (`T: Send`); the tasks write disjoint regions and read
// only what no other task writes (`T: Sync`).
unsafe impl<T: Send + Sync> Send for Ptr<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Ptr<T> {}
// SAFETY: a `ConstPtr` comes from a slice borrowed for the whole call, and is only
// read through, from any thread (`T: Sync`).
unsafe impl<T: Sync> Send for ConstPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for ConstPtr<T> {}

impl<T> Ptr<T> {
    /// The start of `buf`.
    pub(crate) fn new(buf: &mut [T]) -> Self {
        Ptr(NonNull::from(buf).cast())
    }

    /// Element `k`.
    ///
    /// # Safety
    /// `k` is at most the length of the buffer the pointer came from.
    pub(crate) unsafe fn at(self, k: usize) -> *mut T {
        // SAFETY: within (or one past) the buffer, by the caller's contract.
        unsafe { self.0.as_ptr().add(k) }
    }

    /// The buffer from element `k` on.
    ///
    /// # Safety
    /// As [`Ptr::at`].
    pub(crate) unsafe fn add(self, k: usize) -> Self {
        // SAFETY: forwarded; a pointer into (or one past) a buffer is not null.
        unsafe { Ptr(NonNull::new_unchecked(self.at(k))) }
    }

    /// The same buffer, read only.
    pub(crate) fn as_const(self) -> ConstPtr<T> {
        ConstPtr(self.0)
    }

    /// The same buffer as elements of another type (only `f32` as `f32`: the
    /// caller checks `Store32::IS_F32`).
    pub(crate) fn cast<U>(self) -> Ptr<U> {
        Ptr(self.0.cast())
    }
}

impl<T> ConstPtr<T> {
    /// The start of `buf`.
    pub(crate) fn new(buf: &[T]) -> Self {
        ConstPtr(NonNull::from(buf).cast())
    }

    /// Element `k`.
    ///
    /// # Safety
    /// `k` is at most the length of the buffer the pointer came from.
    pub(crate) unsafe fn at(self, k: usize) -> *const T {
        // SAFETY: within (or one past) the buffer, by the caller's contract.
        unsafe { self.0.as_ptr().add(k) }
    }

    /// The buffer from element `k` on.
    ///
    /// # Safety
    /// As [`ConstPtr::at`].
    pub(crate) unsafe fn add(self, k: usize) -> Self {
        // SAFETY: forwarded; a pointer into (or one past) a buffer is not null.
        unsafe { ConstPtr(NonNull::new_unchecked(self.at(k) as *mut T)) }
    }
}

/// A value holding raw pointers that tasks only read through (coefficients).
#[derive(Clone, Copy)]
struct Shared<T>(T);
// SAFETY: the pointers inside are only read, and stay valid for the whole call.
unsafe impl<T> Sync for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Send for Shared<T> {}
impl<T: Copy> Shared<T> {
    fn get(&self) -> T {
        self.0
    }
}

/// Where the gradient goes.
#[derive(Clone, Copy)]
pub enum GradPtr<T: Element> {
    None,
    /// In the logits' type.
    Same(Ptr<T>),
    /// In the compute type (f32 for bf16/f16).
    Acc(Ptr<T::Acc>),
}

/// A validated cross-entropy call: what the ops layer hands the driver.
pub struct CeCall<'a, T: Element> {
    pub x: ConstPtr<T>,
    pub grad: GradPtr<T>,
    pub accumulate: bool,
    /// Probability targets.
    pub probs: Option<ConstPtr<T>>,
    pub idx: Option<(ClassIndices<'a>, i64)>,
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    pub weight: Option<&'a [T::Acc]>,
    pub weight_sum: f64,
    pub eps: f64,
    pub z: f64,
    pub cap: Option<f64>,
    /// Uniform (ce, z) scales, or per-row upstream gradients.
    pub scale: Scale<'a, T::Acc>,
    /// Per-row losses (reduction none).
    pub loss_out: Option<Ptr<T::Acc>>,
}

impl<T: Element> CeCall<'_, T> {
    /// The class of row `r`, `None` when it is ignored or the targets are probabilities.
    #[inline]
    fn class_of(&self, r: usize) -> Option<usize> {
        self.idx.and_then(|(idx, ignore)| idx.class_at(r, ignore))
    }
}

// SAFETY: the raw pointers follow `Ptr`'s rules; the rest is shared data.
unsafe impl<T: Element> Sync for CeCall<'_, T> {}

fn fold(sums: Vec<BlockSums>) -> (f64, f64) {
    let mut total = CompensatedSum::default();
    let mut ztotal = CompensatedSum::default();
    for (a, b) in sums {
        total.merge(a);
        ztotal.merge(b);
    }
    (total.value(), ztotal.value())
}

/// Cross-entropy of f32-computed data (f32, bf16, f16) on the SIMD kernels.
pub(crate) fn ce_simd<E: Element<Acc = f32> + Store32>(call: &CeCall<'_, E>) -> (f64, f64) {
    match call.grad {
        GradPtr::None => ce_simd_into::<E, E>(call, None),
        GradPtr::Same(g) => ce_simd_into::<E, E>(call, Some(g)),
        GradPtr::Acc(g) => ce_simd_into::<E, f32>(call, Some(g)),
    }
}

/// Cross-entropy of f64 data on the portable kernels.
pub(crate) fn ce_f64(call: &CeCall<'_, f64>) -> (f64, f64) {
    let g = match call.grad {
        GradPtr::None => None,
        GradPtr::Same(g) | GradPtr::Acc(g) => Some(g),
    };
    ce_f64_into(call, g)
}

/// softmax / log_softmax of f64 data.
pub(crate) fn softmax_f64(
    x: ConstPtr<f64>,
    out: Ptr<f64>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    blocks((outer, c, inner), |n0, n1| {
        for n in n0..n1 {
            for i in 0..inner {
                let off = n * c * inner + i;
                // SAFETY: the block's rows lie in the buffers (checked by the ops
                // layer); blocks are disjoint.
                unsafe { f64_path::softmax_row(x.at(off), out.at(off), c, inner, log) };
            }
        }
    });
}

/// Backward of softmax / log_softmax of f64 data.
pub(crate) fn backward_f64(
    y: ConstPtr<f64>,
    gy: ConstPtr<f64>,
    gx: Ptr<f64>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    blocks((outer, c, inner), |n0, n1| {
        for n in n0..n1 {
            for i in 0..inner {
                let off = n * c * inner + i;
                // SAFETY: as in `softmax_f64`.
                unsafe {
                    f64_path::softmax_backward_row(y.at(off), gy.at(off), gx.at(off), c, inner, log)
                };
            }
        }
    });
}

pub(crate) fn softmax_simd<E: Element<Acc = f32> + Store32>(
    x: ConstPtr<E>,
    out: Ptr<E>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    let isa = Isa::active();
    blocks((outer, c, inner), |n0, n1| {
        let off = n0 * c * inner;
        // SAFETY: the block's rows lie in the buffers (checked by the ops layer).
        let (x, out) = unsafe { (x.at(off), out.at(off)) };
        let job = crate::kernels::fused::SoftmaxJob {
            x,
            out,
            outer: n1 - n0,
            classes: c,
            inner,
            log,
        };
        dispatch(isa, job);
    });
}

pub(crate) fn backward_simd<E: Element<Acc = f32> + Store32>(
    y: ConstPtr<E>,
    gy: ConstPtr<E>,
    gx: Ptr<E>,
    (outer, c, inner): (usize, usize, usize),
    log: bool,
) {
    let isa = Isa::active();
    blocks((outer, c, inner), |n0, n1| {
        let off = n0 * c * inner;
        // SAFETY: the block's rows lie in the buffers (checked by the ops layer).
        let (y, gy, gx) = unsafe { (y.at(off), gy.at(off), gx.at(off)) };
        let job = crate::kernels::fused::BackwardJob {
            y,
            gy,
            gx,
            outer: n1 - n0,
            classes: c,
            inner,
            log,
        };
        dispatch(isa, job);
    });
}

fn ce_simd_into<E: Element<Acc = f32> + Store32, G: Store32>(
    call: &CeCall<'_, E>,
    g: Option<Ptr<G>>,
) -> (f64, f64) {
    let (outer, c, inner) = (call.outer, call.classes, call.inner);
    let isa = Isa::active();
    let consts = CeConsts {
        eps: call.eps as f32,
        classes: c as f32,
        z: call.z as f32,
    };
    if inner == 1 && c >= LONG_ROW {
        return ce_long_rows::<E, G>(call, g, consts, isa);
    }
    let stream = outer * c * inner * core::mem::size_of::<G>() >= STREAM_BYTES;
    let sums = blocks((outer, c, inner), |n0, n1| {
        let (off, row0) = (n0 * c * inner, n0 * inner);
        let rows = (n1 - n0) * inner;
        let scale = call.scale.rows(row0, rows);
        // SAFETY: the block's rows (and their losses) lie in the buffers (checked by
        // the ops layer); blocks are disjoint.
        let job = unsafe {
            CeJob {
                x: call.x.at(off),
                g: g.map(|g| NonNull::new_unchecked(g.at(off))),
                accumulate: call.accumulate,
                t: call
                    .probs
                    .map(|t| NonNull::new_unchecked(t.at(off) as *mut E)),
                idx: call.idx,
                row0,
                outer: n1 - n0,
                classes: c,
                inner,
                weight: call.weight,
                consts,
                cap: call.cap.map(|c| c as f32),
                scale,
                loss_out: call.loss_out.map(|l| NonNull::new_unchecked(l.at(row0))),
                scratch: None,
                stream,
            }
        };
        with_scratch(scratch_len(c, inner), |scratch| {
            run_ce_block(isa, CeJob { scratch, ..job })
        })
    });
    fold(sums)
}

/// Rows of at least [`LONG_ROW`] classes, one after the other, each split in pieces
/// across threads.
fn ce_long_rows<E: Element<Acc = f32> + Store32, G: Store32>(
    call: &CeCall<'_, E>,
    g: Option<Ptr<G>>,
    consts: CeConsts,
    isa: Isa,
) -> (f64, f64) {
    let c = call.classes;
    let cap = call.cap.map(|c| c as f32);
    // Without soft-capping, each chunk's exps are stored by the statistics pass and
    // the gradient pass only rescales them: in the gradient itself when it is f32
    // and overwritten, else in a scratch row of C f32 (kept by this thread).
    let store = cap.is_none() && g.is_some();
    let in_grad = G::IS_F32 && !call.accumulate;
    let scratch_len = if store && !in_grad { c } else { 0 };
    with_scratch(scratch_len, |scratch| {
        let scratch = scratch.map(Ptr);
        long_rows_with::<E, G>(call, g, consts, isa, store, in_grad, scratch)
    })
}

/// [`ce_long_rows`] with its stored-exp choice made: `store` (exps are kept) in the
/// gradient (`in_grad`) or in `scratch` (C f32).
fn long_rows_with<E: Element<Acc = f32> + Store32, G: Store32>(
    call: &CeCall<'_, E>,
    g: Option<Ptr<G>>,
    consts: CeConsts,
    isa: Isa,
    store: bool,
    in_grad: bool,
    scratch: Option<Ptr<f32>>,
) -> (f64, f64) {
    let c = call.classes;
    let w = call.weight.map(|w| w.as_ptr());
    let cap = call.cap.map(|c| c as f32);
    let mut total = CompensatedSum::default();
    let mut ztotal = CompensatedSum::default();
    let pieces = c.div_ceil(PIECE);
    for r in 0..call.outer {
        // SAFETY: row r lies in the buffers (checked by the ops layer).
        let (x, gr, t) = unsafe {
            (
                call.x.add(r * c),
                g.map(|g| g.add(r * c)),
                call.probs.map(|t| t.add(r * c)),
            )
        };
        let coef = match t {
            Some(t) => AnyCoef::Probs(Probs {
                // SAFETY: the row's targets.
                t: unsafe { t.at(0) },
                w,
                keep: 1.0 - consts.eps,
                spread: consts.eps / consts.classes,
            }),
            None if consts.eps > 0.0 => w.map_or(AnyCoef::Ones, AnyCoef::Weights),
            None => AnyCoef::None,
        };
        let class = call.class_of(r);
        let (scale_ce, scale_z) = call.scale.at(r);
        // SAFETY: row r of C classes (and its gradient) lies in the buffers; y < C.
        let start = unsafe {
            let g = gr.map(|g| g.at(0));
            let (probs, x, w) = (t.is_some(), x.at(0), call.weight);
            match cap {
                None => RowStart::read(Identity, x, g, probs, class, w, call.accumulate),
                Some(cap) => {
                    RowStart::read(SoftCap { cap }, x, g, probs, class, w, call.accumulate)
                }
            }
        };
        let shared = Shared(coef);
        let piece = |k: usize, step: PieceStep<G>| {
            let start = k * PIECE;
            PieceJob::<E, G> {
                // SAFETY: start < C.
                x: unsafe { x.at(start) },
                n: PIECE.min(c - start),
                // SAFETY: start < C.
                coef: unsafe { shared.get().offset(start) },
                cap,
                step,
            }
        };
        // Where the exps go: the row's gradient (`G::IS_F32` makes the cast exact)
        // or the scratch row.
        let e_row = match gr {
            Some(gr) if in_grad => Some(gr.cast::<f32>()),
            _ => scratch,
        };
        let (loss, zt) = match start.target {
            None => {
                if let (Some(gr), false) = (gr, call.accumulate) {
                    (0..c).into_par_iter().for_each(|j| {
                        // SAFETY: j < C, within the row of the gradient.
                        unsafe { *gr.at(j) = G::from_f32(0.0) }
                    });
                }
                (0.0, 0.0)
            }
            Some(target) => {
                let stats: Vec<(RowStats<f32>, [f32; MAX_STORED_CHUNKS])> = (0..pieces)
                    .into_par_iter()
                    .map(|k| {
                        let step = match e_row {
                            // SAFETY: k·PIECE < C, within the row of exps.
                            Some(e) if store => PieceStep::StatsStore(unsafe { e.at(k * PIECE) }),
                            _ => PieceStep::Stats,
                        };
                        dispatch(isa, piece(k, step))
                    })
                    .collect();
                let p = stats
                    .iter()
                    .map(|s| s.0)
                    .fold(RowStats::EMPTY, RowStats::merge);
                let (loss, zt, k) = finish(p, target, &consts, scale_ce, scale_z);
                if let Some(gr) = gr {
                    let ms = shift(p.m);
                    (0..pieces).into_par_iter().for_each(|j| {
                        // SAFETY: j·PIECE < C, within the rows of exps and gradient.
                        let step = unsafe {
                            match e_row {
                                Some(e) if store => PieceStep::Rescale(
                                    e.at(j * PIECE) as *const f32,
                                    gr.at(j * PIECE),
                                    stats[j].1,
                                    ms,
                                    k,
                                    call.accumulate,
                                ),
                                _ => PieceStep::Grad(gr.at(j * PIECE), ms, k, call.accumulate),
                            }
                        };
                        dispatch(isa, piece(j, step));
                    });
                    // SAFETY: the row's gradient; y < C.
                    unsafe {
                        let (g, a_y) = (gr.at(0), |y| coef.scalar_at(y));
                        match cap {
                            None => start.write_target_grad(Identity, g, a_y, ms, k),
                            Some(cap) => start.write_target_grad(SoftCap { cap }, g, a_y, ms, k),
                        }
                    }
                }
                (loss, zt)
            }
        };
        if let Some(l) = call.loss_out {
            // SAFETY: r < rows, one loss each.
            unsafe { *l.at(r) = loss + zt };
        }
        total.add(loss as f64);
        ztotal.add(zt as f64);
    }
    (total.value(), ztotal.value())
}

/// The portable f64 path: blocks in parallel, scalar kernels.
fn ce_f64_into(call: &CeCall<'_, f64>, g: Option<Ptr<f64>>) -> (f64, f64) {
    let (outer, c, inner) = (call.outer, call.classes, call.inner);
    let sums = blocks((outer, c, inner), |n0, n1| {
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        for n in n0..n1 {
            for i in 0..inner {
                let r = n * inner + i;
                let off = n * c * inner + i;
                let class = call.class_of(r);
                let (scale_ce, scale_z) = call.scale.at(r);
                // SAFETY: the row lies within the buffers (checked by the ops
                // layer).
                let row = unsafe {
                    f64_path::RowArgs {
                        x: call.x.at(off),
                        t: call.probs.map(|t| t.at(off)),
                        g: g.map(|g| g.at(off)),
                        c,
                        stride: inner,
                        accumulate: call.accumulate,
                    }
                };
                let p = f64_path::RowParams {
                    target: class,
                    weight: call.weight,
                    weight_sum: call.weight_sum,
                    eps: call.eps,
                    z: call.z,
                    cap: call.cap,
                    scale_ce,
                    scale_z,
                };
                // SAFETY: the row lies within the buffers (checked by the ops
                // layer); blocks are disjoint.
                let (loss, zt) = unsafe { f64_path::cross_entropy_row(row, &p) };
                if let Some(l) = call.loss_out {
                    // SAFETY: r < rows, one loss each.
                    unsafe { *l.at(r) = loss + zt };
                }
                total.add(loss);
                ztotal.add(zt);
            }
        }
        (total, ztotal)
    });
    fold(sums)
}

#[cfg(test)]
mod tests {
    use super::with_scratch;

    /// The kernels' scratch starts on a cache line, for every length and also when
    /// the thread's buffer is taken (the fallback buffer); it holds `len` f32.
    #[test]
    fn scratch_is_cache_line_aligned() {
        for len in [1, 15, 16, 17, 1000, 40_000] {
            with_scratch(len, |outer| {
                let outer = outer.expect("len > 0 gives a buffer");
                assert_eq!(outer.as_ptr() as usize % 64, 0, "len {len}");
                // SAFETY: the scratch holds at least len f32.
                unsafe { outer.as_ptr().add(len - 1).write(1.0) };
                with_scratch(len, |inner| {
                    let inner = inner.expect("len > 0 gives a buffer");
                    assert_ne!(inner, outer, "a nested call gets its own buffer");
                    assert_eq!(inner.as_ptr() as usize % 64, 0, "nested, len {len}");
                });
            });
        }
        with_scratch(0, |none| assert!(none.is_none()));
    }
}
