//! Fused cross-entropy and softmax jobs over a block of rows, for f32-computed data.
//!
//! A job is one [`Block`] of whole `n` indices (`outer` rows of `C × inner`) of a
//! call's plan ([`crate::kernels::plan`]), run by [`super::dispatch::dispatch`] with
//! the token of the instruction set the call uses. A job is driver code: it picks
//! the layout's path and the options' kernels (soft-capping or not, the
//! coefficients of the linear terms), and enters vector code only through those
//! kernels (row chunks, lane units in tiles, short-row groups, K-dim gathers and
//! scatters), each a function of its own compiled for the instruction set. The
//! driver in [`crate::driver`] splits the batch into blocks; a row too long for one
//! thread is a [`LongRow`], whose pieces the driver spreads across threads.

use crate::kernels::dispatch::{dispatch, Isa, Job};
use crate::kernels::plan::Block;
use crate::kernels::row::{Coefs, NoCoef, Ones, Weights, Xform};
use crate::kernels::simd::{Simd, Store32};
use crate::kernels::xform::with_xform;
use crate::sizes::{kdim_as_rows, SMALL_C};

/// Calls `recv.method::<T.., ST, AC, ACT>(args..)` with the lane flags
/// `(store, accumulate, active)` of `flags` as const parameters (see
/// `lane_flags` of the K-dim path; `store` excludes `accumulate`).
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
mod long;
mod rows;
mod small;
mod softmax;

pub(crate) use job::*;
pub(crate) use long::{long_scratch_len, LongRow};
pub(crate) use rows::{PieceJob, PieceStep};
pub(crate) use softmax::{BackwardJob, SoftmaxJob};

/// Runs a cross-entropy block on `isa`.
pub(crate) fn run_ce_block<E: Store32, G: Store32>(isa: Isa, block: Block<'_, E, G>) -> BlockSums {
    dispatch(isa, block)
}

impl<E: Store32, G: Store32> Job for Block<'_, E, G> {
    type Out = BlockSums;
    fn run<S: Simd>(self, s: S) -> BlockSums {
        with_xform!(self.plan.lane.transform(), xf => self.with_xform(s, xf))
    }
}

impl<E: Store32, G: Store32> Block<'_, E, G> {
    /// The path for the block's layout (a driver: every path below is a kernel, or
    /// a driver of kernels, of its own).
    #[inline]
    fn with_xform<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        let c = self.plan.classes;
        if let (true, Some(scratch)) = (self.inner > 1 && kdim_as_rows(c), self.scratch) {
            return self.kdim_rows(s, xf, scratch);
        }
        if self.inner > 1 {
            return self.lanes(s, xf);
        }
        if c <= SMALL_C && S::LANES > 1 {
            return self.small_rows(s, xf);
        }
        self.rows_any(s, xf)
    }

    /// Contiguous rows (`inner == 1`) through the row kernels, with the static
    /// coefficient type of the call's [`Coefs`].
    #[inline]
    fn rows_any<S: Simd, X: Xform>(self, s: S, xf: X) -> BlockSums {
        match self.plan.coefs(self.t.map(|t| t.as_ptr())) {
            Coefs::None => self.rows(s, xf, NoCoef),
            Coefs::Ones => self.rows(s, xf, Ones),
            Coefs::Weights(w) => self.rows(s, xf, Weights(w)),
            Coefs::Probs(p) => self.rows(s, xf, p),
        }
    }
}
