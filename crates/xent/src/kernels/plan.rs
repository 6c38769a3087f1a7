//! The plan of a cross-entropy call: built once by the ops layer from validated
//! arguments, sliced per block by the driver, and read by the kernels.
//!
//! A [`CePlan`] holds the call's buffers in one pointer vocabulary ([`ConstPtr`],
//! [`Ptr`], [`GradPtr`]), its layout, and a [`RowPlan`]: what every row of the call
//! shares, resolved once — the targets, the class weights, the options under one set
//! of names ([`Options`], in `f64` and in the `f32` the lane kernels compute in), the
//! coefficient spec of the linear terms ([`CoefKind`]), the upstream scales
//! ([`Scale`]) and the per-row outputs. A block of rows is a [`Block`]: its first
//! row, its pointers and the driver's scratch, over the call's [`RowPlan`]. The
//! class-shard path (vocab parallelism) runs the same plan, with the shard's first
//! class in [`CePlan::offset`].
//!
//! Something every row computes or writes (an option of the logits' transform, a
//! per-row output) is added here, once, and read by every path through the plan.

use crate::indices::ClassIndices;
use crate::kernels::coef::{Coefs, Probs};
use crate::kernels::num::{Real, Storage};
use crate::kernels::ptr::{ConstPtr, GradPtr, Ptr};
use crate::kernels::xform::Transform;

/// The scalar options of a call in one number type: `f64` (the portable path, the
/// shard combine) or `f32` (the lane kernels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options<F> {
    /// Label smoothing `ε`.
    pub label_smoothing: F,
    /// The z-loss scale (`lse_square_scale`).
    pub z_loss: F,
    /// Logit soft-capping, after the scale: the loss sees `softcap(s·x)`.
    pub softcap: Option<F>,
    /// The logit scale `s` (1: none).
    pub logit_scale: F,
    /// The class count `C` of `ε/C` (the global one on a shard of the classes).
    pub classes: F,
}

impl Options<f64> {
    /// The validated options of a call over `classes` classes.
    pub fn new(label_smoothing: f64, z_loss: f64, softcap: Option<f64>, classes: usize) -> Self {
        Options {
            label_smoothing,
            z_loss,
            softcap,
            logit_scale: 1.0,
            classes: classes as f64,
        }
    }

    /// The same options with logit scale `s`.
    pub fn scaled(self, s: f64) -> Self {
        Options {
            logit_scale: s,
            ..self
        }
    }

    /// The same options in `f32`, as the lane kernels compute with them.
    fn lane(&self) -> Options<f32> {
        Options {
            label_smoothing: self.label_smoothing as f32,
            z_loss: self.z_loss as f32,
            softcap: self.softcap.map(|c| c as f32),
            logit_scale: self.logit_scale as f32,
            classes: self.classes as f32,
        }
    }
}

impl Options<f32> {
    /// The transform of the logits the lane and row kernels apply on load.
    #[inline]
    pub(crate) fn transform(&self) -> Transform {
        Transform::of(self.logit_scale, self.softcap)
    }
}

/// Which coefficients `a_c` the linear terms of a row have (label smoothing,
/// probability targets): chosen once per call by [`CoefKind::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoefKind {
    /// No linear terms (class indices without smoothing).
    None,
    /// `a_c = 1`: unweighted label smoothing.
    Ones,
    /// `a_c = w_c`: weighted label smoothing.
    Weights,
    /// `a_c = w_c·((1−ε)·t_c + ε/C)`: probability targets.
    Probs,
}

impl CoefKind {
    /// The rule: probability targets have them all; class indices have them only
    /// with label smoothing, weighted or not.
    pub fn of(probs: bool, weighted: bool, label_smoothing: f64) -> Self {
        match (probs, label_smoothing > 0.0, weighted) {
            (true, _, _) => CoefKind::Probs,
            (false, false, _) => CoefKind::None,
            (false, true, false) => CoefKind::Ones,
            (false, true, true) => CoefKind::Weights,
        }
    }
}

/// The upstream-gradient scales of the rows of a call, in the type rows are computed
/// in (`f32`, or `f64` for `f64` data): the cross-entropy part and the z part (they
/// differ for a weighted mean, whose z term is averaged over rows).
#[derive(Debug, Clone, Copy)]
pub enum Scale<'a, A> {
    /// The same for every row (reductions mean and sum).
    Uniform { ce: A, z: A },
    /// One per row (reduction none), from the call's first row.
    PerRow(&'a [A]),
}

impl<A: Copy> Scale<'_, A> {
    /// The scales of row `r`.
    #[inline]
    pub(crate) fn at(&self, r: usize) -> (A, A) {
        match *self {
            Scale::Uniform { ce, z } => (ce, z),
            Scale::PerRow(go) => (go[r], go[r]),
        }
    }
}

/// Where the per-row outputs of a call go (each written only when given), one
/// element per row of the call, in the type rows are computed in: `lse` of the
/// logits as the loss sees them, the softmax's `entropy`, the `argmax` (ties to the
/// lowest index, the first NaN first) and the row's z term (0 on ignored rows).
#[derive(Clone, Copy)]
pub struct RowOuts<A> {
    pub lse: Option<Ptr<A>>,
    pub entropy: Option<Ptr<A>>,
    pub argmax: Option<Ptr<i64>>,
    pub z: Option<Ptr<A>>,
}

impl<A> RowOuts<A> {
    /// No outputs.
    pub const NONE: RowOuts<A> = RowOuts {
        lse: None,
        entropy: None,
        argmax: None,
        z: None,
    };

    /// Whether any output is asked for (the kernels then compute the entropy and
    /// argmax terms, and run the statistics of ignored rows too).
    #[inline]
    pub fn any(&self) -> bool {
        self.lse.is_some() || self.entropy.is_some() || self.argmax.is_some() || self.z.is_some()
    }

    /// The outputs from row `r0` on (for a call over a block of the rows).
    ///
    /// # Safety
    /// `r0` is at most the row count of the outputs.
    pub(crate) unsafe fn rows_after(self, r0: usize) -> Self {
        // SAFETY: within (or one past) the buffers (the caller's contract).
        unsafe {
            RowOuts {
                lse: self.lse.map(|p| p.add(r0)),
                entropy: self.entropy.map(|p| p.add(r0)),
                argmax: self.argmax.map(|p| p.add(r0)),
                z: self.z.map(|p| p.add(r0)),
            }
        }
    }

    /// Writes row `r`'s outputs: `lse`, `entropy`, `argmax` and the z term.
    ///
    /// # Safety
    /// `r` is a row of the call (every output given has one element per row).
    #[inline]
    pub(crate) unsafe fn write(&self, r: usize, lse: A, entropy: A, argmax: i64, z: A) {
        // SAFETY: r < rows (the caller's contract).
        unsafe {
            if let Some(p) = self.lse {
                *p.at(r) = lse;
            }
            if let Some(p) = self.entropy {
                *p.at(r) = entropy;
            }
            if let Some(p) = self.argmax {
                *p.at(r) = argmax;
            }
            if let Some(p) = self.z {
                *p.at(r) = z;
            }
        }
    }
}

/// What every row of a call shares, resolved once by the ops layer. A block holds
/// it by value (it is small, and a kernel's copy is known not to alias the buffers
/// it writes, so its fields stay in registers).
#[derive(Clone, Copy)]
pub struct RowPlan<'a, A> {
    /// The classes of a row (the shard's on a shard of the classes).
    pub classes: usize,
    /// Class indices (global) and `ignore_index`; `None` for probability targets.
    pub idx: Option<(ClassIndices<'a>, i64)>,
    /// The class weights of the row's classes.
    pub weight: Option<&'a [A]>,
    /// `W = Σ_c w_c` (or `C`), for the portable path.
    pub weight_sum: f64,
    /// The options, in `f64`.
    pub opts: Options<f64>,
    /// The options in `f32`, for the lane kernels.
    pub lane: Options<f32>,
    /// The coefficients of the linear terms.
    pub coef: CoefKind,
    /// The upstream scales.
    pub scale: Scale<'a, A>,
    /// Per-row losses (reduction none), one per row of the call.
    pub loss_out: Option<Ptr<A>>,
    /// The per-row outputs asked for, one per row of the call.
    pub out: RowOuts<A>,
    /// Whether the gradient accumulates onto the buffer's values.
    pub accumulate: bool,
}

impl<'a, A: Real> RowPlan<'a, A> {
    /// A call's rows of `classes` classes with targets `idx` (`None`: probabilities),
    /// options `opts` and class weights `weight` (summing to `weight_sum`); unit
    /// scales, no per-row outputs, an overwritten gradient.
    pub fn new(
        classes: usize,
        opts: Options<f64>,
        idx: Option<(ClassIndices<'a>, i64)>,
        weight: Option<&'a [A]>,
        weight_sum: f64,
    ) -> Self {
        RowPlan {
            classes,
            idx,
            weight,
            weight_sum,
            lane: opts.lane(),
            coef: CoefKind::of(idx.is_none(), weight.is_some(), opts.label_smoothing),
            opts,
            scale: Scale::Uniform {
                ce: A::ONE,
                z: A::ONE,
            },
            loss_out: None,
            out: RowOuts::NONE,
            accumulate: false,
        }
    }
}

impl<A> RowPlan<'_, A> {
    /// The class of row `r`, `None` when it is ignored or the targets are
    /// probabilities (targets are validated).
    #[inline]
    pub(crate) fn class_of(&self, r: usize) -> Option<usize> {
        self.idx.and_then(|(idx, ignore)| idx.class_at(r, ignore))
    }
}

impl<A: Real> RowPlan<'_, A> {
    /// The coefficient `a_j` of class `j` (`t_j` its probability target, if any),
    /// in the portable kernels' type.
    #[inline]
    pub(crate) fn coef_at(&self, j: usize, t_j: Option<A>) -> A {
        let w = self.weight.map_or(A::ONE, |w| w[j]);
        match (self.coef, t_j) {
            (CoefKind::Probs, Some(t)) => {
                let eps = self.opts.label_smoothing;
                let (keep, spread) = (A::from_f64(1.0 - eps), A::from_f64(eps / self.opts.classes));
                w * (keep * t + spread)
            }
            (CoefKind::Ones | CoefKind::Weights, _) => w,
            _ => A::ZERO,
        }
    }
}

impl RowPlan<'_, f32> {
    /// The coefficients of a row (or of lanes) whose probability targets, if any,
    /// start at `t`, laid out like its logits.
    #[inline]
    pub(crate) fn coefs<E>(&self, t: Option<*const E>) -> Coefs<E> {
        let w = self.weight.map(|w| w.as_ptr());
        match (self.coef, t) {
            (CoefKind::Probs, Some(t)) => Coefs::Probs(Probs {
                t,
                w,
                keep: 1.0 - self.lane.label_smoothing,
                spread: self.lane.label_smoothing / self.lane.classes,
            }),
            (CoefKind::Ones, _) => Coefs::Ones,
            (CoefKind::Weights, _) => w.map_or(Coefs::Ones, Coefs::Weights),
            _ => Coefs::None,
        }
    }
}

/// A validated cross-entropy call: its buffers, layout and [`RowPlan`].
pub struct CePlan<'a, T: Storage> {
    /// The logits, `outer × classes × inner`.
    pub x: ConstPtr<T>,
    /// Probability targets, laid out like `x`.
    pub probs: Option<ConstPtr<T>>,
    /// Where the gradient goes.
    pub grad: GradPtr<T>,
    pub outer: usize,
    pub inner: usize,
    /// The first global class of the call's classes: a shard's offset, 0 for an
    /// unsharded call.
    pub offset: usize,
    /// What the rows share.
    pub rows: RowPlan<'a, T::Acc>,
}

// SAFETY: the raw pointers follow `Ptr`'s and `ConstPtr`'s rules; the rest is shared
// data.
unsafe impl<T: Storage> Sync for CePlan<'_, T> {}
// SAFETY: as above.
unsafe impl<A: Sync> Sync for RowPlan<'_, A> {}

impl<T: Storage> CePlan<'_, T> {
    /// `(outer, classes, inner)`.
    #[inline]
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (self.outer, self.rows.classes, self.inner)
    }

    /// The offset of row `r`'s first class.
    #[inline]
    pub(crate) fn row_offset(&self, r: usize) -> usize {
        let (n, i) = (r / self.inner, r % self.inner);
        n * self.rows.classes * self.inner + i
    }

    /// On a shard of the classes: `None` for an ignored row; else the target's class
    /// within the shard, if it lies there (always `None` for probability targets).
    #[inline]
    pub(crate) fn shard_target(&self, r: usize) -> Option<Option<usize>> {
        match self.rows.idx {
            None => Some(None),
            Some((idx, ignore)) => idx.class_at(r, ignore).map(|y| {
                y.checked_sub(self.offset)
                    .filter(|&local| local < self.rows.classes)
            }),
        }
    }
}

impl<'a, E: Storage<Acc = f32>> CePlan<'a, E> {
    /// The block of whole `n` indices `n0..n1`, its gradient `g` (the call's, in
    /// the type `G` it is written in), with the driver's `scratch` and whether its
    /// gradient is written with streaming stores ([`Block::stream`]).
    #[inline]
    pub(crate) fn block<G>(
        &self,
        (n0, n1): (usize, usize),
        g: Option<Ptr<G>>,
        scratch: Option<Ptr<f32>>,
        stream: bool,
    ) -> Block<'_, E, G> {
        let off = n0 * self.rows.classes * self.inner;
        // SAFETY: the block's rows lie in the buffers (checked by the ops layer).
        unsafe {
            Block {
                plan: self.rows,
                x: self.x.add(off),
                g: g.map(|g| g.add(off)),
                t: self.probs.map(|t| t.add(off)),
                row0: n0 * self.inner,
                outer: n1 - n0,
                inner: self.inner,
                scratch,
                stream,
            }
        }
    }
}

/// One block of a call, as the kernels read it: `outer` whole `n` indices of
/// `classes × inner` (its rows are `row0..` of the call), over the call's
/// [`RowPlan`]. The K-dim path runs blocks of rows gathered into its scratch.
pub(crate) struct Block<'p, E, G> {
    pub plan: RowPlan<'p, f32>,
    /// The block's logits.
    pub x: ConstPtr<E>,
    /// The block's gradient; may be the logits themselves (in place).
    pub g: Option<Ptr<G>>,
    /// The block's probability targets.
    pub t: Option<ConstPtr<E>>,
    /// The call's index of the block's first row.
    pub row0: usize,
    pub outer: usize,
    pub inner: usize,
    /// The driver's per-thread scratch of `scratch_len` f32 (none when that is 0):
    /// the stored `exp` of a row, or the K-dim tiles.
    pub scratch: Option<Ptr<f32>>,
    /// Whether the gradient is too large to stay in cache: K-dim tiles then write it
    /// with streaming stores, which skip reading its lines first (contiguous rows
    /// keep regular stores, see [`Block::rows`]).
    pub stream: bool,
}

impl<E, G> Clone for Block<'_, E, G> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E, G> Copy for Block<'_, E, G> {}
