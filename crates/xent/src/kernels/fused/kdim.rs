//! K-dim rows (`(N, C, inner)`, `inner > 1`): `LANES` neighbouring rows at a time,
//! vectorized across `inner`, through class-major tiles in the scratch or in place;
//! or, for many classes, gathered into contiguous rows for the row kernels.

use super::job::{finish_v, target_grad_v, Ahead, BlockSums};
use crate::kernels::lanes;
use crate::kernels::plan::{Block, CoefKind, Scale};
use crate::kernels::ptr::Ptr;
use crate::kernels::row::{Coefs, Xform};
use crate::kernels::simd::{Kernel, Scalar, Simd, SimdKernel, Store32};
use crate::kernels::transpose::{copy_convert, copy_out_streaming, gather_rows, scatter_rows};
use crate::reduce::CompensatedSum;
use crate::sizes::{tile_lanes, tile_stride, KDIM_GROUP, STREAM_LANES};

impl<E: Store32, G: Store32> Block<'_, E, G> {
    /// K-dim rows (`inner > 1`) through class-major f32 tiles in the scratch: the
    /// logits (and targets, and a prior gradient) of `C × w` rows are copied in,
    /// widened to f32 once, the lane kernels run on the tile from L1, and the
    /// gradient tile is copied back.
    #[inline]
    pub(super) fn lanes<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        match self.scratch.map(|p| p.as_ptr()) {
            Some(scratch) => {
                let flags = self.lane_flags::<X, f32>();
                by_lane_flags!(flags, self.lanes_tiles_in::<S, X>(s, xf, scratch))
            }
            None => {
                let flags = self.lane_flags::<X, G>();
                by_lane_flags!(flags, self.lanes_direct_in::<S, X>(s, xf))
            }
        }
    }

    /// The loop variants of a lane unit whose gradient is of type `TG` (a tile's
    /// f32, or `G` in place), chosen once for the block before entering vector code:
    /// `(store, accumulate, active)`, as the const parameters `ST`, `AC`, `ACT` of
    /// the lane kernels. `store`: the statistics pass stores `exp(x̃ − shift)` into
    /// an overwritten f32 gradient, which the gradient pass then only scales (no
    /// soft-capping); `active`: the rows have linear terms (smoothing or probability
    /// targets). With row outputs there is no `store`: their walk
    /// ([`lanes::LaneOuts`]) reads the logits after the statistics pass, and the
    /// gradient may be the logits.
    #[inline]
    pub(super) fn lane_flags<X: Xform, TG: Store32>(&self) -> (bool, bool, bool) {
        let accumulate = self.plan.accumulate;
        let store =
            !X::CHAINED && TG::IS_F32 && !accumulate && self.g.is_some() && !self.plan.out.any();
        let active = self.plan.coef != CoefKind::None;
        (store, accumulate, active)
    }

    /// [`Block::lanes`] through tiles, entering the [`Lanes`] kernel.
    #[inline]
    pub(super) fn lanes_tiles_in<
        S: Simd,
        X: Xform,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        self,
        s: S,
        xf: X,
        scratch: *mut f32,
    ) -> BlockSums {
        s.vectorize(Lanes::<E, G, X, ST, AC, ACT> {
            job: self,
            xf,
            scratch,
        })
    }

    /// [`Block::lanes`] in place, entering the [`LanesDirect`] kernel.
    #[inline]
    pub(super) fn lanes_direct_in<
        S: Simd,
        X: Xform,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        self,
        s: S,
        xf: X,
    ) -> BlockSums {
        s.vectorize(LanesDirect::<E, G, X, ST, AC, ACT> { job: self, xf })
    }

    /// The kernel of [`Block::lanes`] with a scratch of [`scratch_len`] f32.
    #[inline(always)]
    pub(super) fn lanes_tiles<
        S: Simd,
        X: Xform,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        self,
        s: S,
        xf: X,
        scratch: *mut f32,
    ) -> BlockSums {
        let mut sums = UnitSums::new(s, self.plan.lane.z_loss != 0.0);
        let (c, inner) = (self.plan.classes, self.inner);
        let tw = tile_lanes(c);
        let ts = tile_stride(tw);
        let streaming = self.stream && tw >= STREAM_LANES;
        let (x, t, g) = (
            self.x.as_ptr(),
            self.t.map(|t| t.as_ptr()),
            self.g.map(|g| g.as_ptr()),
        );
        // SAFETY: the scratch holds scratch_len(C, inner) = 3·C·ts f32; every copy
        // stays within row n's classes and lanes i0..i0 + w of the block.
        unsafe {
            let (xt, tt, gt) = (scratch, scratch.add(c * ts), scratch.add(2 * c * ts));
            for n in 0..self.outer {
                let mut i0 = 0;
                while i0 < inner {
                    let w = tw.min(inner - i0);
                    let base = n * c * inner + i0;
                    for k in 0..c {
                        let src = base + k * inner;
                        copy_convert(s, x.add(src), xt.add(k * ts), w);
                        if let Some(t) = t {
                            copy_convert(s, t.add(src), tt.add(k * ts), w);
                        }
                        if let (Some(g), true) = (g, self.plan.accumulate) {
                            copy_convert(s, g.add(src), gt.add(k * ts), w);
                        }
                    }
                    // The next tile's logits are fetched into L2 while this one
                    // computes, a few lines per unit, so that its copy finds them there.
                    let next = if i0 + w < inner {
                        Some((base + w, tw.min(inner - i0 - w)))
                    } else if n + 1 < self.outer {
                        Some(((n + 1) * c * inner, tw.min(inner)))
                    } else {
                        None
                    };
                    let mut ahead = next.map(|(b, nw)| {
                        Ahead::new(x.wrapping_add(b), inner, c, nw, w.div_ceil(S::LANES))
                    });
                    let mut j = 0;
                    while j < w {
                        if let Some(a) = ahead.as_mut() {
                            a.step(s);
                        }
                        let full = j + S::LANES <= w;
                        let lanes = if full { S::LANES } else { 1 };
                        let r0 = n * inner + i0 + j;
                        let at = LaneAt::<f32, f32> {
                            x: xt.add(j),
                            t: t.map(|_| tt.add(j) as *const f32),
                            g: g.map(|_| gt.add(j)),
                            stride: ts,
                        };
                        if full {
                            sums.add(
                                s,
                                self.lane_unit_body::<S, X, _, _, ST, AC, ACT>(s, xf, at, r0),
                            );
                        } else {
                            sums.add_one(self.lane_unit(Scalar, xf, at, r0));
                        }
                        j += lanes;
                    }
                    if let Some(g) = g {
                        for k in 0..c {
                            let (src, dst) =
                                (gt.add(k * ts) as *const f32, g.add(base + k * inner));
                            if streaming {
                                copy_out_streaming(s, src, dst, w);
                            } else {
                                copy_convert(s, src, dst, w);
                            }
                        }
                    }
                    i0 += w;
                }
            }
        }
        if streaming {
            s.stream_fence();
        }
        sums.finish(s)
    }

    /// K-dim rows (`inner > 1`) of many classes ([`kdim_as_rows`]), [`KDIM_GROUP`]
    /// neighbouring rows at a time: gathered into contiguous f32 rows in the scratch
    /// (`LANES × LANES` transposes; the logits, and the targets or a prior gradient),
    /// run through the row kernels as a block of contiguous rows, and the gradient
    /// rows scattered back. A driver: the gathers, scatters and row kernels are
    /// kernels of their own.
    #[inline]
    pub(super) fn kdim_rows<S: Simd, X: Xform>(self, s: S, xf: X, scratch: Ptr<f32>) -> BlockSums {
        let (c, inner) = (self.plan.classes, self.inner);
        let (x, t, g) = (
            self.x.as_ptr(),
            self.t.map(|t| t.as_ptr()),
            self.g.map(|g| g.as_ptr()),
        );
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        // SAFETY: the scratch holds scratch_len(C, inner) = (3·KDIM_GROUP + 1)·C f32:
        // three groups of rows and one row; every gather and scatter stays within row
        // n's classes and lanes i0..i0 + w of the block.
        unsafe {
            let (xr, tr, gr, es) = (
                scratch,
                scratch.add(KDIM_GROUP * c),
                scratch.add(2 * KDIM_GROUP * c),
                scratch.add(3 * KDIM_GROUP * c),
            );
            let (xr_, tr_, gr_) = (xr.as_ptr(), tr.as_ptr(), gr.as_ptr());
            for n in 0..self.outer {
                let mut i0 = 0;
                while i0 < inner {
                    let w = KDIM_GROUP.min(inner - i0);
                    let base = n * c * inner + i0;
                    gather_rows(s, x.add(base), inner, c, xr_, w);
                    if let Some(t) = t {
                        gather_rows(s, t.add(base), inner, c, tr_, w);
                    }
                    if let (Some(g), true) = (g, self.plan.accumulate) {
                        gather_rows(s, g.add(base), inner, c, gr_, w);
                    }
                    let rows = Block::<f32, f32> {
                        plan: self.plan,
                        x: xr.as_const(),
                        g: g.and(Some(gr)),
                        t: t.and(Some(tr.as_const())),
                        row0: self.row0 + n * inner + i0,
                        outer: w,
                        inner: 1,
                        scratch: Some(es),
                        stream: false,
                    };
                    let (a, b) = rows.rows_any(s, xf);
                    total.merge(a);
                    ztotal.merge(b);
                    if let Some(g) = g {
                        scatter_rows(s, gr_, g.add(base), inner, c, w);
                    }
                    i0 += w;
                }
            }
        }
        (total, ztotal)
    }

    /// K-dim rows (`inner > 1`) in place, `LANES` neighbouring rows at a time (when
    /// no scratch was given). The body of the [`LanesDirect`] kernel.
    #[inline(always)]
    pub(super) fn lanes_direct<
        S: Simd,
        X: Xform,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        self,
        s: S,
        xf: X,
    ) -> BlockSums {
        let mut sums = UnitSums::new(s, self.plan.lane.z_loss != 0.0);
        let (c, inner) = (self.plan.classes, self.inner);
        let (x, t, g) = (
            self.x.as_ptr(),
            self.t.map(|t| t.as_ptr()),
            self.g.map(|g| g.as_ptr()),
        );
        for n in 0..self.outer {
            let mut i = 0;
            while i < inner {
                let full = i + S::LANES <= inner;
                let lanes = if full { S::LANES } else { 1 };
                let r0 = n * inner + i;
                let base = n * c * inner + i;
                // SAFETY: base + k·inner + l for k < C, l < lanes lies in the block.
                let at = unsafe {
                    LaneAt {
                        x: x.add(base),
                        t: t.map(|t| t.add(base)),
                        g: g.map(|g| g.add(base)),
                        stride: inner,
                    }
                };
                if full {
                    sums.add(
                        s,
                        self.lane_unit_body::<S, X, _, _, ST, AC, ACT>(s, xf, at, r0),
                    );
                } else {
                    sums.add_one(self.lane_unit(Scalar, xf, at, r0));
                }
                i += lanes;
            }
        }
        sums.finish(s)
    }

    /// `LANES` rows whose class `k` of lane `l` is at `k·stride + l` from `at`'s
    /// pointers; lane `l` is row `r0 + l` of the block. Returns the rows' losses
    /// without their z terms, and the z terms, zero in ignored lanes. A kernel of
    /// its own: the one-lane units at the ends of a block run it on [`Scalar`] from
    /// within a vector kernel, whose whole units inline its body
    /// ([`Block::lane_unit_body`]: a call per unit costs ~10 % at C = 10).
    #[inline]
    pub(super) fn lane_unit<S: Simd, X: Xform, TE: Store32, TG: Store32>(
        &self,
        s: S,
        xf: X,
        at: LaneAt<TE, TG>,
        r0: usize,
    ) -> (S::V, S::V) {
        let flags = self.lane_flags::<X, TG>();
        by_lane_flags!(flags, self.lane_unit_in::<S, X, TE, TG>(s, xf, at, r0))
    }

    /// [`Block::lane_unit`], entering the [`LaneUnit`] kernel.
    #[inline]
    pub(super) fn lane_unit_in<
        S: Simd,
        X: Xform,
        TE: Store32,
        TG: Store32,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        &self,
        s: S,
        xf: X,
        at: LaneAt<TE, TG>,
        r0: usize,
    ) -> (S::V, S::V) {
        s.vectorize(LaneUnit::<E, G, X, TE, TG, ST, AC, ACT> {
            job: self,
            xf,
            at,
            r0,
        })
    }

    /// The body of the [`LaneUnit`] kernel.
    #[inline(always)]
    pub(super) fn lane_unit_body<
        S: Simd,
        X: Xform,
        TE: Store32,
        TG: Store32,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    >(
        &self,
        s: S,
        xf: X,
        at: LaneAt<TE, TG>,
        r0: usize,
    ) -> (S::V, S::V) {
        let plan = &self.plan;
        let (c, stride) = (plan.classes, at.stride);
        let lanes = S::LANES;
        let probs = at.t.is_some();
        let x = at.x;
        let coef = plan.coefs(at.t);
        // The call's index of lane 0's row.
        let row = self.row0 + r0;
        // Per lane: the upstream scales, and the target class with its weight and
        // raw logit (ignored rows stay inactive). Read before the statistics pass,
        // which may store into a gradient that aliases the logits.
        let (scale_ce, scale_z) = match plan.scale {
            Scale::Uniform { ce, z } => (s.splat(ce), s.splat(z)),
            Scale::PerRow(go) => {
                let v = s.vector_of(&go[row..row + lanes]);
                (v, v)
            }
        };
        let mut active = [0.0f32; 16];
        let mut w_y = [0.0f32; 16];
        let mut x_y = [0.0f32; 16];
        // usize::MAX: no target class (ignored, or probability targets).
        let mut class = [usize::MAX; 16];
        if probs {
            active[..lanes].fill(1.0);
        } else if let Some((idx, ignore)) = plan.idx {
            idx.classes_into(row, ignore, &mut class[..lanes]);
        }
        for l in 0..lanes {
            let y = class[l];
            if y != usize::MAX {
                active[l] = 1.0;
                // SAFETY: y < C (validated targets), so the element lies in the unit.
                x_y[l] = unsafe { Scalar.load(x.add(y * stride + l)) };
                w_y[l] = plan.weight.map_or(1.0, |w| w[y]);
            }
        }
        // The target's coefficient of the linear terms (lanes without a target are
        // never written with it).
        let a_y = match coef {
            Coefs::Ones => s.splat(1.0),
            Coefs::Weights(_) => s.vector_of(&w_y[..lanes]),
            _ => s.splat(0.0),
        };
        // Without soft-capping, an overwritten f32 gradient receives exp(x̃ − shift)
        // from the statistics pass, and the gradient pass only scales it.
        // ST, AC and ACT are `self.lane_flags::<X, TG>()`, chosen by the driver.
        debug_assert_eq!((ST, AC, ACT), self.lane_flags::<X, TG>());
        let e_out = match at.g {
            Some(g) if ST => g as *mut f32,
            _ => core::ptr::null_mut(),
        };
        // SAFETY: the caller's pointers cover C classes at `stride` for `LANES` lanes;
        // `TG` is f32 when there is an `e_out`.
        let stats =
            unsafe { lanes::lane_stats::<S, TE, X, ST, ACT>(s, x, stride, c, coef, xf, e_out) };
        let vec = |v: &[f32; 16]| s.vector_of(&v[..lanes]);
        let on = s.ne_zero(vec(&active));
        let x_y = vec(&x_y);
        let index = (!probs).then(|| (vec(&w_y), xf.apply(s, x_y)));
        let (loss, zt, consts) = finish_v(s, &stats, index, &plan.lane, scale_ce, scale_z);
        let zero = s.splat(0.0);
        let (loss, zt) = (s.select(on, loss, zero), s.select(on, zt, zero));
        if plan.out.any() {
            // Read before the gradient pass, which may overwrite the logits; the
            // pointers cover the unit as for the statistics pass.
            s.vectorize(lanes::LaneOuts {
                x,
                stride,
                c,
                xf,
                m: stats.m,
                s: stats.s,
                on,
                z_loss: plan.lane.z_loss,
                out: plan.out,
                row,
            });
        }
        if let Some(l) = plan.loss_out {
            // SAFETY: rows r0..r0 + LANES lie in the block, which has a loss each.
            unsafe { s.store(l.at(row), s.add(loss, zt)) };
        }
        if let Some(g) = at.g {
            let ms = s.neg_inf_to(stats.m, zero);
            // SAFETY: as for x; g may alias x, and every target element was read above.
            unsafe {
                let mut prior = [0.0f32; 16];
                if plan.accumulate {
                    for l in 0..lanes {
                        let y = class[l];
                        if y != usize::MAX {
                            prior[l] = (*g.add(y * stride + l)).to_f32();
                        }
                    }
                }
                lanes::lane_grad::<S, TE, TG, X, ST, AC, ACT>(
                    s, x, g, stride, c, coef, xf, ms, &consts, on,
                );
                if !probs {
                    let v = target_grad_v(s, xf, x_y, a_y, ms, &consts, vec(&prior));
                    let mut v_l = [0.0f32; 16];
                    s.write_lanes(v, &mut v_l);
                    for l in 0..lanes {
                        let y = class[l];
                        if y != usize::MAX {
                            *g.add(y * stride + l) = TG::from_f32(v_l[l]);
                        }
                    }
                }
            }
        }
        (loss, zt)
    }
}

/// [`Block::lanes`] through tiles in the scratch, as a kernel (with the lane flags
/// of [`Block::lane_flags`] as `ST`, `AC`, `ACT`).
pub(super) struct Lanes<'a, E, G, X, const ST: bool, const AC: bool, const ACT: bool> {
    job: Block<'a, E, G>,
    xf: X,
    scratch: *mut f32,
}

impl<E: Store32, G: Store32, X: Xform, const ST: bool, const AC: bool, const ACT: bool> Kernel
    for Lanes<'_, E, G, X, ST, AC, ACT>
{
    type Out = BlockSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> BlockSums {
        self.job
            .lanes_tiles::<S, X, ST, AC, ACT>(s, self.xf, self.scratch)
    }
}

/// [`Block::lanes`] in place (no scratch), as a kernel.
pub(super) struct LanesDirect<'a, E, G, X, const ST: bool, const AC: bool, const ACT: bool> {
    job: Block<'a, E, G>,
    xf: X,
}

impl<E: Store32, G: Store32, X: Xform, const ST: bool, const AC: bool, const ACT: bool> Kernel
    for LanesDirect<'_, E, G, X, ST, AC, ACT>
{
    type Out = BlockSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> BlockSums {
        self.job.lanes_direct::<S, X, ST, AC, ACT>(s, self.xf)
    }
}

/// [`Block::lane_unit`] as a kernel: it returns the unit's loss vectors.
pub(super) struct LaneUnit<'j, 'a, E, G, X, TE, TG, const ST: bool, const AC: bool, const ACT: bool>
{
    job: &'j Block<'a, E, G>,
    xf: X,
    at: LaneAt<TE, TG>,
    r0: usize,
}

impl<
        S: Simd,
        E: Store32,
        G: Store32,
        X: Xform,
        TE: Store32,
        TG: Store32,
        const ST: bool,
        const AC: bool,
        const ACT: bool,
    > SimdKernel<S> for LaneUnit<'_, '_, E, G, X, TE, TG, ST, AC, ACT>
{
    type Out = (S::V, S::V);
    #[inline(always)]
    fn run(self, s: S) -> (S::V, S::V) {
        self.job
            .lane_unit_body::<S, X, TE, TG, ST, AC, ACT>(s, self.xf, self.at, self.r0)
    }
}

/// The loss sums of a block's lane units: `f64` lane sums of the whole units, and
/// plain `f64` sums of the one-lane units at the block's ends; one order for a
/// given block, whatever the thread count.
pub(super) struct UnitSums<S: Simd> {
    loss: S::D,
    z: S::D,
    loss_one: f64,
    z_one: f64,
    /// Whether the z terms are summed (they are all zero otherwise).
    with_z: bool,
}

impl<S: Simd> UnitSums<S> {
    #[inline(always)]
    pub(super) fn new(s: S, with_z: bool) -> Self {
        UnitSums {
            loss: s.d_zero(),
            z: s.d_zero(),
            loss_one: 0.0,
            z_one: 0.0,
            with_z,
        }
    }
    /// A unit's losses and z terms (zero in inactive lanes).
    #[inline(always)]
    pub(super) fn add(&mut self, s: S, (loss, z): (S::V, S::V)) {
        self.loss = s.d_add(self.loss, loss);
        if self.with_z {
            self.z = s.d_add(self.z, z);
        }
    }
    /// A one-lane unit's loss and z term.
    #[inline(always)]
    pub(super) fn add_one(&mut self, (loss, z): (f32, f32)) {
        self.loss_one += loss as f64;
        self.z_one += z as f64;
    }
    #[inline(always)]
    pub(super) fn finish(self, s: S) -> BlockSums {
        let mut total = CompensatedSum::default();
        let mut ztotal = CompensatedSum::default();
        total.add(s.d_sum(self.loss) + self.loss_one);
        if self.with_z {
            ztotal.add(s.d_sum(self.z) + self.z_one);
        }
        (total, ztotal)
    }
}

/// Where a lane unit's data lives: class `k` of lane `l` at `k·stride + l`.
#[derive(Clone, Copy)]
pub(super) struct LaneAt<E, G> {
    pub(super) x: *const E,
    /// Probability targets.
    pub(super) t: Option<*const E>,
    pub(super) g: Option<*mut G>,
    pub(super) stride: usize,
}
