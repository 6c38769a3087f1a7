//! Fused cross-entropy and softmax jobs over a block of rows, for f32-computed data.
//!
//! A job is one block of whole `n` indices (`outer` rows of `C × inner`), run by
//! [`super::dispatch::dispatch`] with the token of the instruction set the call
//! uses. A job is driver code: it picks the layout's path and the options' kernels
//! (soft-capping or not, the coefficients of the linear terms), and enters vector
//! code only through those kernels (row chunks, lane units in tiles, short-row
//! groups, K-dim gathers and scatters), each a function of its own compiled for the
//! instruction set. The driver in [`crate::driver`] splits the batch into jobs.

use crate::kernels::dispatch::{dispatch, Isa, Job};
use crate::kernels::row::{Identity, NoCoef, Ones, Probs, SoftCap, Weights, Xform};
use crate::kernels::simd::{Simd, Store32};
use crate::sizes::{kdim_as_rows, SMALL_C};

/// Calls `recv.method::<T.., ST, AC, ACT>(args..)` with the lane flags
/// `(store, accumulate, active)` of `flags` as const parameters (see
/// [`CeJob::lane_flags`]; `store` excludes `accumulate`).
macro_rules! by_lane_flags {
    ($flags:expr, $recv:ident . $method:ident :: <$($t:ty),*> ($($arg:expr),* $(,)?)) => {
        match $flags {
            (true, _, false) => $recv.$method::<$($t,)* true, false, false>($($arg),*),
            (true, _, true) => $recv.$method::<$($t,)* true, false, true>($($arg),*),
            (false, false, false) => $recv.$method::<$($t,)* false, false, false>($($arg),*),
            (false, false, true) => $recv.$method::<$($t,)* false, false, true>($($arg),*),
            (false, true, false) => $recv.$method::<$($t,)* false, true, false>($($arg),*),
            (false, true, true) => $recv.$method::<$($t,)* false, true, true>($($arg),*),
        }
    };
}

mod job;
mod kdim;
mod rows;
mod small;
mod softmax;

pub(crate) use job::*;
pub(crate) use rows::{AnyCoef, PieceJob, PieceStep};
pub(crate) use softmax::{BackwardJob, SoftmaxJob};

/// Runs a cross-entropy block on `isa`.
pub(crate) fn run_ce_block<E: Store32, G: Store32>(isa: Isa, job: CeJob<'_, E, G>) -> BlockSums {
    dispatch(isa, job)
}

impl<E: Store32, G: Store32> Job for CeJob<'_, E, G> {
    type Out = BlockSums;
    fn run<S: Simd>(self, s: S) -> BlockSums {
        match self.cap {
            None => self.with_xform(s, Identity),
            Some(cap) => self.with_xform(s, SoftCap { cap }),
        }
    }
}

impl<E: Store32, G: Store32> CeJob<'_, E, G> {
    /// The path for the block's layout (a driver: every path below is a kernel, or
    /// a driver of kernels, of its own).
    #[inline]
    fn with_xform<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        if let (true, Some(scratch)) = (self.inner > 1 && kdim_as_rows(self.classes), self.scratch)
        {
            return self.kdim_rows(s, xf, scratch.as_ptr());
        }
        if self.inner > 1 {
            return self.lanes(s, xf);
        }
        if self.classes <= SMALL_C && S::LANES > 1 {
            return self.small_rows(s, xf);
        }
        self.rows_any(s, xf)
    }

    /// Contiguous rows (`inner == 1`) through the row kernels, with the coefficients
    /// of the call's options.
    #[inline]
    fn rows_any<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        let w = self.weight.map(|w| w.as_ptr());
        let smoothing = self.consts.eps > 0.0;
        if let Some(t) = self.t {
            let keep = 1.0 - self.consts.eps;
            let spread = self.consts.eps / self.consts.classes;
            let coef = Probs {
                t: t.as_ptr() as *const E,
                w,
                keep,
                spread,
            };
            return self.rows(s, xf, coef);
        }
        match (smoothing, w) {
            (false, _) => self.rows(s, xf, NoCoef),
            (true, None) => self.rows(s, xf, Ones),
            (true, Some(w)) => self.rows(s, xf, Weights(w)),
        }
    }
}
