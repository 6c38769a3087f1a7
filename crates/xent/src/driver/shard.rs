//! The driver of cross-entropy on a shard of the classes (vocab parallelism): the
//! rows of a call in parallel on rayon's pool, each row computed by one kernel call
//! in a fixed order, so that results do not depend on the thread count.
//!
//! `f32`-computed rows (f32, bf16, f16) run the row kernels of the single-process
//! path ([`PieceJob`]: the same statistics pass and gradient pass); K-dim rows are
//! first gathered into a contiguous `f32` row (and their gradient scattered back).
//! `f64` rows run the portable kernels of [`crate::kernels::shard`].

use crate::driver::blocks::Blocks;
use crate::driver::ptr::{ConstPtr, GradPtr, Ptr};
use crate::indices::ClassIndices;
use crate::kernels::dispatch::{dispatch, Isa};
use crate::kernels::fused::{target_grad, AnyCoef, PieceJob, PieceStep};
use crate::kernels::num::Storage;
use crate::kernels::row::{GradConsts, Identity, Probs, SoftCap, Xform};
use crate::kernels::shard::{self, RowShard, ShardCoef, ShardRow};
use crate::kernels::simd::{Scalar, Store32};
use crate::sizes::TASK_ELEMS;

/// A validated call on one shard of the classes: what the ops layer hands the driver.
pub struct ShardCall<'a, T: Storage> {
    /// The shard's logits, `outer × classes × inner`.
    pub x: ConstPtr<T>,
    /// The shard's probability targets, laid out like `x`.
    pub probs: Option<ConstPtr<T>>,
    /// Global class indices and `ignore_index`.
    pub idx: Option<(ClassIndices<'a>, i64)>,
    /// The shard's first global class.
    pub offset: usize,
    pub outer: usize,
    /// The shard's classes.
    pub classes: usize,
    pub inner: usize,
    /// The shard's class weights (`classes` entries).
    pub weight: Option<&'a [T::Acc]>,
    /// Label smoothing `ε`.
    pub label_smoothing: f64,
    /// The global class count C.
    pub global_classes: usize,
    /// Logit soft-capping.
    pub softcap: Option<f64>,
}

// SAFETY: the raw pointers follow `ConstPtr`'s rules (read only); the rest is shared data.
unsafe impl<T: Storage> Sync for ShardCall<'_, T> {}

/// A row's scaled gradient constants `(shift(M), α, β, b)`; `None` for an ignored row.
pub type RowGrad = Option<(f64, f64, f64, f64)>;

impl<T: Storage> ShardCall<'_, T> {
    /// `None` for an ignored row; else the target's class within the shard, if it
    /// lies there (always `None` for probability targets).
    #[inline]
    fn target(&self, r: usize) -> Option<Option<usize>> {
        match self.idx {
            None => Some(None),
            Some((idx, ignore)) => idx.class_at(r, ignore).map(|y| {
                y.checked_sub(self.offset)
                    .filter(|&local| local < self.classes)
            }),
        }
    }

    /// The offset of row `r`'s first class.
    #[inline]
    fn row_offset(&self, r: usize) -> usize {
        let (n, i) = (r / self.inner, r % self.inner);
        n * self.classes * self.inner + i
    }

    /// The call's rows in tasks of about [`TASK_ELEMS`] elements.
    fn tasks(&self, rows: usize) -> Blocks {
        Blocks::new(rows, (TASK_ELEMS / self.classes.max(1)).max(1))
    }
}

/// The partial statistics of every row of the call into `out` (one per row).
pub(crate) fn stats_simd<E: Storage<Acc = f32> + Store32>(
    call: &ShardCall<'_, E>,
    out: &mut [ShardRow],
) {
    let isa = Isa::active();
    call.tasks(out.len())
        .map_mut([(Some(out), 1)], |rows, [out]| {
            let mut bufs = RowBufs::new(call);
            for (r, o) in rows.zip(out.into_iter().flatten()) {
                *o = bufs.stats(call, isa, r);
            }
        });
}

/// The gradient of every row of the call from its constants (one per row).
pub(crate) fn grad_simd<E: Storage<Acc = f32> + Store32>(
    call: &ShardCall<'_, E>,
    consts: &[RowGrad],
    g: GradPtr<E>,
    accumulate: bool,
) {
    match g {
        GradPtr::None => {}
        GradPtr::Same(g) => grad_simd_into::<E, E>(call, consts, g, accumulate),
        GradPtr::Acc(g) => grad_simd_into::<E, f32>(call, consts, g, accumulate),
    }
}

fn grad_simd_into<E: Storage<Acc = f32> + Store32, G: Store32>(
    call: &ShardCall<'_, E>,
    consts: &[RowGrad],
    g: Ptr<G>,
    accumulate: bool,
) {
    let isa = Isa::active();
    call.tasks(consts.len()).for_each(|rows| {
        let mut bufs = RowBufs::new(call);
        for r in rows {
            bufs.grad(call, isa, r, consts[r], g, accumulate);
        }
    });
}

/// A task's `f32` work rows for K-dim rows (gathered logits, targets, gradient);
/// empty for contiguous rows.
struct RowBufs {
    x: Vec<f32>,
    t: Vec<f32>,
    g: Vec<f32>,
}

impl RowBufs {
    fn new<E: Storage>(call: &ShardCall<'_, E>) -> Self {
        let c = if call.inner > 1 { call.classes } else { 0 };
        let t = if call.probs.is_some() { c } else { 0 };
        RowBufs {
            x: vec![0.0; c],
            t: vec![0.0; t],
            g: vec![0.0; c],
        }
    }

    /// Row `r`'s logits and targets as contiguous rows: the call's own for
    /// `inner = 1`, else gathered into the work rows.
    ///
    /// # Safety
    /// `r` is a row of the call.
    unsafe fn row<E: Storage<Acc = f32> + Store32>(
        &mut self,
        call: &ShardCall<'_, E>,
        r: usize,
    ) -> Contig<E> {
        let (off, c, inner) = (call.row_offset(r), call.classes, call.inner);
        // SAFETY: the row's `c` classes at stride `inner` from `off` lie in the call's
        // buffers (checked by the ops layer).
        unsafe {
            if inner == 1 {
                let t = call.probs.map(|t| t.at(off));
                return Contig::Own(call.x.at(off), t);
            }
            for k in 0..c {
                self.x[k] = (*call.x.at(off + k * inner)).to_f32();
            }
            let t = call.probs.map(|t| {
                for k in 0..c {
                    self.t[k] = (*t.at(off + k * inner)).to_f32();
                }
                self.t.as_ptr()
            });
            Contig::Gathered(self.x.as_ptr(), t)
        }
    }

    fn stats<E: Storage<Acc = f32> + Store32>(
        &mut self,
        call: &ShardCall<'_, E>,
        isa: Isa,
        r: usize,
    ) -> ShardRow {
        let Some(y) = call.target(r) else {
            return ShardRow::EMPTY;
        };
        if call.classes == 0 {
            return ShardRow::EMPTY;
        }
        // SAFETY: r is a row of the call.
        match unsafe { self.row(call, r) } {
            Contig::Own(x, t) => stats_of::<E>(call, isa, x, t, y),
            Contig::Gathered(x, t) => stats_of::<f32>(call, isa, x, t, y),
        }
    }

    fn grad<E: Storage<Acc = f32> + Store32, G: Store32>(
        &mut self,
        call: &ShardCall<'_, E>,
        isa: Isa,
        r: usize,
        k: RowGrad,
        g: Ptr<G>,
        accumulate: bool,
    ) {
        let (off, c, inner) = (call.row_offset(r), call.classes, call.inner);
        let Some((ms, alpha, beta, b)) = k else {
            if !accumulate {
                for j in 0..c {
                    // SAFETY: the row's gradient lies in the buffer (the ops layer).
                    unsafe { *g.at(off + j * inner) = G::from_f32(0.0) };
                }
            }
            return;
        };
        if c == 0 {
            return;
        }
        let y = call.target(r).flatten();
        let k = GradConsts {
            alpha: alpha as f32,
            beta: beta as f32,
            b: b as f32,
        };
        // SAFETY: r is a row of the call; its gradient lies in the buffer.
        unsafe {
            match self.row(call, r) {
                Contig::Own(x, t) => {
                    grad_of::<E, G>(call, isa, x, t, g.at(off), y, ms as f32, k, accumulate)
                }
                Contig::Gathered(x, t) => {
                    let gs = self.g.as_mut_ptr();
                    grad_of::<f32, f32>(call, isa, x, t, gs, y, ms as f32, k, false);
                    for j in 0..c {
                        let at = g.at(off + j * inner);
                        let v = if accumulate {
                            (*at).to_f32() + self.g[j]
                        } else {
                            self.g[j]
                        };
                        *at = G::from_f32(v);
                    }
                }
            }
        }
    }
}

/// A row's logits and targets as contiguous rows: the call's own (`E`), or `f32`
/// copies gathered from a K-dim row.
#[derive(Clone, Copy)]
enum Contig<E> {
    Own(*const E, Option<*const E>),
    Gathered(*const f32, Option<*const f32>),
}

/// The coefficients of the row's linear terms (targets `t` of type `R`).
fn coef_of<E: Storage<Acc = f32>, R: Store32>(
    call: &ShardCall<'_, E>,
    t: Option<*const R>,
) -> AnyCoef<R> {
    let w = call.weight.map(|w| w.as_ptr());
    match t {
        Some(t) => AnyCoef::Probs(Probs {
            t,
            w,
            // In f32, as the single-process kernels form them.
            keep: 1.0 - call.label_smoothing as f32,
            spread: call.label_smoothing as f32 / call.global_classes as f32,
        }),
        None if call.label_smoothing > 0.0 => w.map_or(AnyCoef::Ones, AnyCoef::Weights),
        None => AnyCoef::None,
    }
}

/// `x̃_y` of a raw logit, as the single-process kernels transform it.
fn transformed(cap: Option<f32>, v: f32) -> f32 {
    match cap {
        None => Identity.apply(Scalar, v),
        Some(cap) => SoftCap { cap }.apply(Scalar, v),
    }
}

/// The statistics of one contiguous row of type `R` (the call's own rows, or `f32`
/// gathered ones), targets `t` alike.
fn stats_of<R: Store32>(
    call: &ShardCall<'_, impl Storage<Acc = f32>>,
    isa: Isa,
    x: *const R,
    t: Option<*const R>,
    y: Option<usize>,
) -> ShardRow {
    let cap = call.softcap.map(|c| c as f32);
    let job = PieceJob::<R, f32> {
        x,
        n: call.classes,
        coef: coef_of(call, t),
        cap,
        step: PieceStep::Stats,
    };
    let (p, _) = dispatch(isa, job);
    // SAFETY: y < classes, within the row.
    let x_y = y.map_or(0.0, |y| transformed(cap, unsafe { (*x.add(y)).to_f32() }));
    ShardRow {
        m: p.m as f64,
        s: p.s as f64,
        l: p.l as f64,
        a: p.a as f64,
        x_y: x_y as f64,
    }
}

/// The gradient of one contiguous row into `g`, then the target class's exact value.
///
/// # Safety
/// `x` (and `t`) readable and `g` writable for the call's `classes`; `y` one of them.
#[allow(clippy::too_many_arguments)]
unsafe fn grad_of<R: Store32, G: Store32>(
    call: &ShardCall<'_, impl Storage<Acc = f32>>,
    isa: Isa,
    x: *const R,
    t: Option<*const R>,
    g: *mut G,
    y: Option<usize>,
    ms: f32,
    k: GradConsts<f32>,
    accumulate: bool,
) {
    let cap = call.softcap.map(|c| c as f32);
    let coef = coef_of(call, t);
    // SAFETY: y < classes; read before the gradient pass overwrites it.
    let fix = y.map(|y| unsafe {
        let prior = if accumulate {
            (*g.add(y)).to_f32()
        } else {
            0.0
        };
        (y, (*x.add(y)).to_f32(), prior)
    });
    let job = PieceJob::<R, G> {
        x,
        n: call.classes,
        coef,
        cap,
        step: PieceStep::Grad(g, ms, k, accumulate),
    };
    dispatch(isa, job);
    if let Some((y, x_y, prior)) = fix {
        // SAFETY: y < classes.
        let a_y = unsafe { coef.scalar_at(y) };
        let v = match cap {
            None => target_grad(Identity, x_y, a_y, ms, k, prior),
            Some(cap) => target_grad(SoftCap { cap }, x_y, a_y, ms, k, prior),
        };
        // SAFETY: y < classes, within the row's gradient.
        unsafe { *g.add(y) = G::from_f32(v) };
    }
}

/// The partial statistics of every row of an `f64` call into `out`.
pub(crate) fn stats_f64(call: &ShardCall<'_, f64>, out: &mut [ShardRow]) {
    let coef = ShardCoef {
        weight: call.weight,
        eps: call.label_smoothing,
        classes: call.global_classes as f64,
    };
    call.tasks(out.len())
        .map_mut([(Some(out), 1)], |rows, [out]| {
            for (r, o) in rows.zip(out.into_iter().flatten()) {
                *o = match call.target(r) {
                    None => ShardRow::EMPTY,
                    Some(y) => {
                        let off = call.row_offset(r);
                        // SAFETY: the row lies in the buffers (checked by the ops layer).
                        unsafe {
                            let row = RowShard {
                                x: call.x.at(off),
                                t: call.probs.map(|t| t.at(off)),
                                c: call.classes,
                                stride: call.inner,
                            };
                            shard::row_stats(row, &coef, call.softcap, y)
                        }
                    }
                };
            }
        });
}

/// The gradient of every row of an `f64` call from its constants.
pub(crate) fn grad_f64(
    call: &ShardCall<'_, f64>,
    consts: &[RowGrad],
    g: GradPtr<f64>,
    accumulate: bool,
) {
    let g = match g {
        GradPtr::None => return,
        GradPtr::Same(g) | GradPtr::Acc(g) => g,
    };
    let coef = ShardCoef {
        weight: call.weight,
        eps: call.label_smoothing,
        classes: call.global_classes as f64,
    };
    call.tasks(consts.len()).for_each(|rows| {
        for r in rows {
            let k = &consts[r];
            let (off, c, inner) = (call.row_offset(r), call.classes, call.inner);
            // SAFETY: the row lies in the buffers (checked by the ops layer); the
            // tasks' rows are disjoint.
            unsafe {
                match *k {
                    None if !accumulate => {
                        for j in 0..c {
                            *g.at(off + j * inner) = 0.0;
                        }
                    }
                    None => {}
                    Some(k) => {
                        let row = RowShard {
                            x: call.x.at(off),
                            t: call.probs.map(|t| t.at(off)),
                            c,
                            stride: inner,
                        };
                        let y = call.target(r).flatten();
                        shard::row_grad(row, g.at(off), &coef, call.softcap, y, k, accumulate);
                    }
                }
            }
        }
    });
}
