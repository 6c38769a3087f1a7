//! Short contiguous rows (at most [`SMALL_C`] classes): `LANES` rows transposed
//! into a class-major tile so that the lane kernels vectorize across rows.

use super::job::BlockSums;
use super::kdim::{LaneAt, UnitSums};
use crate::kernels::plan::Block;
use crate::kernels::row::Xform;
use crate::kernels::simd::{Kernel, Scalar, Simd, Store32};
use crate::sizes::SMALL_C;

impl<E: Store32, G: Store32> Block<'_, E, G> {
    /// Short contiguous rows (`C ≤ SMALL_C`), `LANES` rows at a time: each group is
    /// transposed into class-major f32 tiles so that the lane kernels vectorize
    /// across rows, and the gradient tile is transposed back.
    #[inline]
    pub(super) fn small_rows<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        let flags = self.lane_flags::<X, f32>();
        by_lane_flags!(flags, self.small_rows_in::<S, X>(s, xf))
    }

    /// [`Block::small_rows`], entering the [`SmallRows`] kernel.
    #[inline]
    pub(super) fn small_rows_in<
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
        s.vectorize(SmallRows::<E, G, X, ST, AC, ACT> { job: self, xf })
    }

    /// The body of the [`SmallRows`] kernel.
    #[inline(always)]
    pub(super) fn small_rows_body<
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
        let c = self.plan.classes;
        let lanes = S::LANES;
        // f32 tiles whatever E and G are: widened once on the way in, rounded once
        // on the way out, and the statistics pass can store its exps in `gt`.
        let mut xt = Tile::new();
        let mut tt = Tile::new();
        let mut gt = Tile::new();
        let (x, t, g) = (
            self.x.as_ptr(),
            self.t.map(|t| t.as_ptr()),
            self.g.map(|g| g.as_ptr()),
        );
        let mut r0 = 0;
        while r0 < self.outer {
            let full = r0 + lanes <= self.outer;
            if full {
                // SAFETY: rows r0..r0 + lanes of C elements lie in the block; the
                // tiles hold lanes·C ≤ 16·SMALL_C f32.
                unsafe {
                    let base = r0 * c;
                    s.rows_to_tile(x.add(base), c, c, xt.0.as_mut_ptr());
                    if let Some(t) = t {
                        s.rows_to_tile(t.add(base), c, c, tt.0.as_mut_ptr());
                    }
                    if let (Some(g), true) = (g, self.plan.accumulate) {
                        s.rows_to_tile(g.add(base), c, c, gt.0.as_mut_ptr());
                    }
                    let at = LaneAt {
                        x: xt.0.as_ptr(),
                        t: t.map(|_| tt.0.as_ptr()),
                        g: g.map(|_| gt.0.as_mut_ptr()),
                        stride: lanes,
                    };
                    sums.add(
                        s,
                        self.lane_unit_body::<S, X, _, _, ST, AC, ACT>(s, xf, at, r0),
                    );
                    if let Some(g) = g {
                        s.tile_to_rows(gt.0.as_ptr(), g.add(base), c, c);
                    }
                }
            } else {
                // SAFETY: row r0 of C contiguous elements lies in the block.
                let at = unsafe {
                    LaneAt {
                        x: x.add(r0 * c),
                        t: t.map(|t| t.add(r0 * c)),
                        g: g.map(|g| g.add(r0 * c)),
                        stride: 1,
                    }
                };
                sums.add_one(self.lane_unit(Scalar, xf, at, r0));
            }
            r0 += if full { lanes } else { 1 };
        }
        sums.finish(s)
    }
}

/// [`Block::small_rows`] as a kernel.
pub(super) struct SmallRows<'a, E, G, X, const ST: bool, const AC: bool, const ACT: bool> {
    job: Block<'a, E, G>,
    xf: X,
}

impl<E: Store32, G: Store32, X: Xform, const ST: bool, const AC: bool, const ACT: bool> Kernel
    for SmallRows<'_, E, G, X, ST, AC, ACT>
{
    type Out = BlockSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> BlockSums {
        self.job.small_rows_body::<S, X, ST, AC, ACT>(s, self.xf)
    }
}

/// A tile of [`Block::small_rows`]: `LANES` rows of up to [`SMALL_C`] classes,
/// class-major. Cache-line aligned, so that no vector load or store of it straddles
/// two lines (an unaligned tile splits every other access at AVX2 width).
#[repr(C, align(64))]
pub(super) struct Tile([f32; 16 * SMALL_C]);

impl Tile {
    pub(super) fn new() -> Self {
        Tile([0.0; 16 * SMALL_C])
    }
}
