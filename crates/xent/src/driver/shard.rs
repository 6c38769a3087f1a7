//! The driver of cross-entropy on a shard of the classes (vocab parallelism): the
//! rows of a call's plan (the same [`CePlan`] as the single-process path, with the
//! shard's first class) in parallel on rayon's pool, each row computed by one kernel
//! call in a fixed order, so that results do not depend on the thread count.
//!
//! `f32`-computed rows (f32, bf16, f16) run the row kernels of the single-process
//! path (the same statistics pass and gradient pass); K-dim rows are first gathered
//! into a contiguous `f32` row (and their gradient scattered back). `f64` rows run
//! the portable kernels. Both are in [`crate::kernels::shard`].

use crate::driver::blocks::Blocks;
use crate::kernels::dispatch::Isa;
use crate::kernels::num::Storage;
use crate::kernels::plan::CePlan;
use crate::kernels::ptr::{GradPtr, Ptr};
use crate::kernels::row::GradConsts;
use crate::kernels::shard::{self, RowShard, ShardRow};
use crate::kernels::simd::Store32;
use crate::sizes::TASK_ELEMS;

/// A row's scaled gradient constants `(shift(M), α, β, b)`; `None` for an ignored row.
pub type RowGrad = Option<(f64, f64, f64, f64)>;

/// The call's rows in tasks of about [`TASK_ELEMS`] elements.
fn tasks<T: Storage>(plan: &CePlan<'_, T>, rows: usize) -> Blocks {
    Blocks::new(rows, (TASK_ELEMS / plan.rows.classes.max(1)).max(1))
}

/// The partial statistics of every row of the call into `out` (one per row).
/// With `outs`, each row's statistics hold what the row outputs need too, and an
/// ignored row gets its statistics (without a target) instead of none.
pub(crate) fn stats_simd<E: Storage<Acc = f32> + Store32>(
    plan: &CePlan<'_, E>,
    out: &mut [ShardRow],
    outs: bool,
) {
    let isa = Isa::active();
    tasks(plan, out.len()).map_mut([(Some(out), 1)], |rows, [out]| {
        let mut bufs = RowBufs::new(plan);
        for (r, o) in rows.zip(out.into_iter().flatten()) {
            *o = bufs.stats(plan, isa, r, outs);
        }
    });
}

/// The gradient of every row of the call (into the plan's gradient) from its
/// constants (one per row).
pub(crate) fn grad_simd<E: Storage<Acc = f32> + Store32>(plan: &CePlan<'_, E>, consts: &[RowGrad]) {
    match plan.grad {
        GradPtr::None => {}
        GradPtr::Same(g) => grad_simd_into::<E, E>(plan, consts, g),
        GradPtr::Acc(g) => grad_simd_into::<E, f32>(plan, consts, g),
    }
}

fn grad_simd_into<E: Storage<Acc = f32> + Store32, G: Store32>(
    plan: &CePlan<'_, E>,
    consts: &[RowGrad],
    g: Ptr<G>,
) {
    let isa = Isa::active();
    tasks(plan, consts.len()).for_each(|rows| {
        let mut bufs = RowBufs::new(plan);
        for r in rows {
            bufs.grad(plan, isa, r, consts[r], g);
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
    fn new<E: Storage>(plan: &CePlan<'_, E>) -> Self {
        let c = if plan.inner > 1 { plan.rows.classes } else { 0 };
        let t = if plan.probs.is_some() { c } else { 0 };
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
        plan: &CePlan<'_, E>,
        r: usize,
    ) -> Contig<E> {
        let (off, c, inner) = (plan.row_offset(r), plan.rows.classes, plan.inner);
        // SAFETY: the row's `c` classes at stride `inner` from `off` lie in the call's
        // buffers (checked by the ops layer).
        unsafe {
            if inner == 1 {
                let t = plan.probs.map(|t| t.at(off));
                return Contig::Own(plan.x.at(off), t);
            }
            for k in 0..c {
                self.x[k] = (*plan.x.at(off + k * inner)).to_f32();
            }
            let t = plan.probs.map(|t| {
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
        plan: &CePlan<'_, E>,
        isa: Isa,
        r: usize,
        outs: bool,
    ) -> ShardRow {
        let Some(y) = plan.shard_target(r).or(outs.then_some(None)) else {
            return ShardRow::EMPTY;
        };
        if plan.rows.classes == 0 {
            return ShardRow::EMPTY;
        }
        // SAFETY: r is a row of the call; its contiguous row holds the shard's
        // classes, and y is one of them.
        unsafe {
            match self.row(plan, r) {
                Contig::Own(x, t) => shard::f32_row_stats::<E>(&plan.rows, isa, x, t, y, outs),
                Contig::Gathered(x, t) => {
                    shard::f32_row_stats::<f32>(&plan.rows, isa, x, t, y, outs)
                }
            }
        }
    }

    fn grad<E: Storage<Acc = f32> + Store32, G: Store32>(
        &mut self,
        plan: &CePlan<'_, E>,
        isa: Isa,
        r: usize,
        k: RowGrad,
        g: Ptr<G>,
    ) {
        let accumulate = plan.rows.accumulate;
        let (off, c, inner) = (plan.row_offset(r), plan.rows.classes, plan.inner);
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
        let y = plan.shard_target(r).flatten();
        let k = GradConsts {
            alpha: alpha as f32,
            beta: beta as f32,
            b: b as f32,
        };
        // SAFETY: r is a row of the call; its gradient lies in the buffer.
        unsafe {
            match self.row(plan, r) {
                Contig::Own(x, t) => shard::f32_row_grad::<E, G>(
                    &plan.rows,
                    isa,
                    (x, t, g.at(off)),
                    y,
                    ms as f32,
                    k,
                    accumulate,
                ),
                Contig::Gathered(x, t) => {
                    let gs = self.g.as_mut_ptr();
                    shard::f32_row_grad::<f32, f32>(
                        &plan.rows,
                        isa,
                        (x, t, gs),
                        y,
                        ms as f32,
                        k,
                        false,
                    );
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

/// The partial statistics of every row of an `f64` call into `out` (with `outs`, as
/// [`stats_simd`]).
pub(crate) fn stats_f64(plan: &CePlan<'_, f64>, out: &mut [ShardRow], outs: bool) {
    tasks(plan, out.len()).map_mut([(Some(out), 1)], |rows, [out]| {
        for (r, o) in rows.zip(out.into_iter().flatten()) {
            *o = match plan.shard_target(r).or(outs.then_some(None)) {
                None => ShardRow::EMPTY,
                Some(y) => {
                    let off = plan.row_offset(r);
                    // SAFETY: the row lies in the buffers (checked by the ops layer).
                    unsafe {
                        let row = RowShard {
                            x: plan.x.at(off),
                            t: plan.probs.map(|t| t.at(off)),
                            c: plan.rows.classes,
                            stride: plan.inner,
                        };
                        shard::row_stats(row, &plan.rows, y, outs)
                    }
                }
            };
        }
    });
}

/// The gradient of every row of an `f64` call (into the plan's gradient) from its
/// constants.
pub(crate) fn grad_f64(plan: &CePlan<'_, f64>, consts: &[RowGrad]) {
    let g = match plan.grad {
        GradPtr::None => return,
        GradPtr::Same(g) | GradPtr::Acc(g) => g,
    };
    tasks(plan, consts.len()).for_each(|rows| {
        for r in rows {
            let k = &consts[r];
            let (off, c, inner) = (plan.row_offset(r), plan.rows.classes, plan.inner);
            // SAFETY: the row lies in the buffers (checked by the ops layer); the
            // tasks' rows are disjoint.
            unsafe {
                match *k {
                    None if !plan.rows.accumulate => {
                        for j in 0..c {
                            *g.at(off + j * inner) = 0.0;
                        }
                    }
                    None => {}
                    Some(k) => {
                        let row = RowShard {
                            x: plan.x.at(off),
                            t: plan.probs.map(|t| t.at(off)),
                            c,
                            stride: inner,
                        };
                        let y = plan.shard_target(r).flatten();
                        shard::row_grad(row, g.at(off), &plan.rows, y, k);
                    }
                }
            }
        }
    });
}
