//! Cross-entropy split across processes: the classes across the ranks of a
//! tensor-parallel group (vocab parallelism), the rows across data-parallel ranks.
//!
//! See [`cross_entropy_shard_stats`] for the protocol.

use super::cross_entropy::{check_scalars, Denominators};
use super::linear::{
    check_inputs, check_target_rows, LinearCrossEntropyOptions, LinearGradOut, LinearInputs,
};
use super::stats::check_unscaled;
use super::{check_indices, check_len, check_weight, scalar_upstream, GradOut};
use crate::driver::blocks::{pool_threads, ThreadScratch};
use crate::driver::linear::{
    as_acc, column_sums_into, hidden_grad_into, lhs_ld, logits_into, transpose_into,
    weight_grad_add, widen, Strided, Widened,
};
use crate::driver::ptr::{ConstPtr, GradPtr, Ptr};
use crate::driver::shard::{RowGrad, ShardCall};
use crate::dtype::Element;
use crate::dtype::Float;
use crate::entry::ElementEntry as Sealed;
use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::kernels::shard::{combine_row, CombineConsts, RowCombined, ShardRow};
use crate::layout::Layout;
use crate::options::{CrossEntropyOptions, GradMode, Reduction};
use crate::reduce::CompensatedSum;
use crate::sizes::{block_rows, MAX_BLOCK_ROWS, WIDEN_CLASSES, X_CLASS_CHUNK};
use crate::targets::Targets;

/// This process's shard of the classes: global classes `offset..offset + n` of
/// `classes`, where `n` is the class dimension of the logits it holds.
///
/// ```
/// use xent::ClassShard;
/// // 10 classes over 3 ranks: 4, 3, 3.
/// let parts: Vec<_> = (0..3).map(|r| ClassShard::even(10, 3, r).unwrap()).collect();
/// assert_eq!(parts, [(ClassShard::new(0, 10), 4), (ClassShard::new(4, 10), 3),
///     (ClassShard::new(7, 10), 3)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassShard {
    /// The shard's first global class.
    pub offset: usize,
    /// The global class count `C`.
    pub classes: usize,
}

impl ClassShard {
    /// Classes from `offset` on, of `classes` in all (checked against the logits'
    /// class dimension when a loss runs).
    pub fn new(offset: usize, classes: usize) -> Self {
        ClassShard { offset, classes }
    }

    /// All `classes` classes: one process, no class split.
    pub fn full(classes: usize) -> Self {
        ClassShard::new(0, classes)
    }

    /// The `index`-th of `parts` contiguous shards of `classes` classes, as even as
    /// can be (the first `classes % parts` hold one class more), and its length.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `parts = 0` or `index ≥ parts`.
    pub fn even(classes: usize, parts: usize, index: usize) -> Result<(ClassShard, usize)> {
        if parts == 0 || index >= parts {
            return Err(Error::InvalidArgument {
                name: "shard index",
                value: format!("{index} of {parts} parts"),
                expected: "an index below a part count ≥ 1",
            });
        }
        let (base, extra) = (classes / parts, classes % parts);
        let offset = index * base + index.min(extra);
        let len = base + usize::from(index < extra);
        Ok((ClassShard::new(offset, classes), len))
    }

    /// Checks that `local` classes from the offset lie within the global count.
    fn check(self, local: usize) -> Result<()> {
        match self.offset.checked_add(local) {
            Some(end) if end <= self.classes => Ok(()),
            _ => Err(Error::InvalidArgument {
                name: "class shard",
                value: format!(
                    "classes {}..{} of {}",
                    self.offset,
                    self.offset.saturating_add(local),
                    self.classes
                ),
                expected: "a range of classes within the global class count",
            }),
        }
    }
}

/// What a row's target is, for the combine step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RowKind {
    Ignored,
    /// A class index, with its weight.
    Index(f64),
    Probs,
}

/// Where a [`ShardStats`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Statistics relative to the shard's own max.
    Local,
    /// Rebased to the (reduced) max in `max`.
    Rebased,
    /// Combined: losses and gradient constants known.
    Finished,
}

/// The per-row partial statistics of one process's shard of a cross-entropy, and
/// after [`ShardStats::finish`] the rows' losses and gradient constants.
///
/// Made by [`cross_entropy_shard_stats`] or [`linear_cross_entropy_shard_stats`];
/// see [`cross_entropy_shard_stats`] for the whole protocol.
#[derive(Debug, Clone)]
pub struct ShardStats {
    rows: Vec<ShardRow>,
    kinds: Vec<RowKind>,
    max: Vec<f64>,
    sums: Vec<f64>,
    counts: [f64; 2],
    global_counts: [f64; 2],
    combined: Vec<RowCombined>,
    consts: CombineConsts,
    reduction: Reduction,
    shard: ClassShard,
    local_classes: usize,
    stage: Stage,
    /// The options the statistics were made with (checked by the gradient calls).
    key: OptionsKey,
}

/// The scalar options a [`ShardStats`] was made with.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OptionsKey {
    ignore_index: i64,
    label_smoothing: f64,
    z_loss: f64,
    softcap: Option<f64>,
    reduction: Reduction,
    denominator: Option<f64>,
    weighted: bool,
}

impl OptionsKey {
    fn of<A>(opts: &CrossEntropyOptions<'_, A>) -> Self {
        OptionsKey {
            ignore_index: opts.ignore_index,
            label_smoothing: opts.label_smoothing,
            z_loss: opts.z_loss,
            softcap: opts.softcap,
            reduction: opts.reduction,
            denominator: opts.denominator,
            weighted: opts.weight.is_some(),
        }
    }
}

impl ShardStats {
    /// The number of rows (this process's).
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The per-row max of the shard's (soft-capped) logits, `−inf` for ignored rows:
    /// all-reduce it with MAX across the class shards of these rows, before the
    /// first call of [`ShardStats::sums_mut`].
    pub fn max_mut(&mut self) -> &mut [f64] {
        &mut self.max
    }

    /// The per-row sums `[Σ exp(x̃ − M), Σ a_c·(x̃_c − M), Σ a_c, x̃_y]` (4 per row,
    /// `M` the value [`ShardStats::max_mut`] holds now; the target logit is 0 on the
    /// shards that do not hold it): all-reduce them with one SUM across the class
    /// shards. The first call rescales this shard's statistics to `M`.
    pub fn sums_mut(&mut self) -> &mut [f64] {
        self.rebase();
        &mut self.sums
    }

    /// `[D, |M|]` over this process's rows: `D = Σ_{n∈M} w_{y_n}` (or the row count
    /// for probability targets) and the count of rows that are not ignored. For a
    /// mean over rows split across data-parallel ranks, SUM them across those ranks
    /// and pass the result to [`ShardStats::finish`]; with all rows here, pass them
    /// as they are. The class shards of the same rows hold the same counts.
    pub fn counts(&self) -> [f64; 2] {
        self.counts
    }

    fn rebase(&mut self) {
        if self.stage != Stage::Local {
            return;
        }
        for ((r, &m), out) in self
            .rows
            .iter()
            .zip(&self.max)
            .zip(self.sums.chunks_exact_mut(4))
        {
            out.copy_from_slice(&r.rebased(m));
        }
        self.stage = Stage::Rebased;
    }

    /// Combines the reduced statistics into the loss of this process's rows, written
    /// into `loss_out` (1 element for `mean`/`sum`, one per row for `none`), with the
    /// global denominators `counts` (see [`ShardStats::counts`]). Returns the z-loss
    /// term included in it when z-loss is on, as
    /// [`cross_entropy_into`](crate::cross_entropy_into) does.
    ///
    /// For `mean` and `sum`, the loss of the whole batch is the SUM of the values of
    /// the data-parallel ranks (the class shards of the same rows write the same value).
    /// `mean` is NaN when the global `D` is 0, as in PyTorch. With a
    /// [`denominator`](CrossEntropyOptions::denominator) in the options, `mean` divides
    /// the loss, its z term and the gradient by it instead, and `counts` is not read.
    /// May be called again (with other counts); the statistics are kept.
    ///
    /// # Errors
    /// [`Error::OutputLength`] for a `loss_out` of the wrong length.
    pub fn finish<A: Float>(&mut self, counts: [f64; 2], loss_out: &mut [A]) -> Result<Option<A>> {
        let len = match self.reduction {
            Reduction::None => self.rows(),
            Reduction::Mean | Reduction::Sum => 1,
        };
        check_len("loss_out", loss_out.len(), len)?;
        self.rebase();
        self.combined.clear();
        let (mut total, mut ztotal) = (CompensatedSum::default(), CompensatedSum::default());
        for (r, kind) in self.kinds.iter().enumerate() {
            let c = match *kind {
                RowKind::Ignored => RowCombined::default(),
                RowKind::Index(w_y) => {
                    let s = [0, 1, 2, 3].map(|k| self.sums[4 * r + k]);
                    combine_row(self.max[r], s, Some(w_y), &self.consts)
                }
                RowKind::Probs => {
                    let s = [0, 1, 2, 3].map(|k| self.sums[4 * r + k]);
                    combine_row(self.max[r], s, None, &self.consts)
                }
            };
            if self.reduction == Reduction::None {
                loss_out[r] = A::from_f64(c.loss + c.z);
            }
            total.add(c.loss);
            ztotal.add(c.z);
            self.combined.push(c);
        }
        // A given denominator of the mean replaces both counts.
        let counts = self.key.denominator.map_or(counts, |d| [d, d]);
        self.global_counts = counts;
        let dens = Denominators {
            loss: counts[0],
            z: counts[1],
        };
        self.stage = Stage::Finished;
        Ok(dens.finish(
            self.reduction,
            total.value(),
            ztotal.value(),
            self.consts.z != 0.0,
            loss_out,
        ))
    }

    /// The rows' gradient constants for the upstream gradient `grad_output`.
    fn row_grads<A: Float>(&self, grad_output: Option<&[A]>) -> Result<Vec<RowGrad>> {
        if self.stage != Stage::Finished {
            return Err(Error::InvalidArgument {
                name: "shard statistics",
                value: "not finished".to_string(),
                expected: "statistics combined by ShardStats::finish",
            });
        }
        let rows = self.rows();
        if let Some(go) = grad_output {
            let expected = match self.reduction {
                Reduction::None => rows,
                Reduction::Mean | Reduction::Sum => 1,
            };
            if go.len() != expected {
                return Err(Error::GradOutputShape {
                    expected: if self.reduction == Reduction::None {
                        vec![rows]
                    } else {
                        Vec::new()
                    },
                    len: go.len(),
                });
            }
        }
        let g = scalar_upstream(grad_output, self.reduction);
        let [d, m] = self.global_counts;
        let with_z = self.consts.z != 0.0;
        Ok(self
            .kinds
            .iter()
            .zip(&self.combined)
            .enumerate()
            .map(|(r, (kind, c))| {
                if *kind == RowKind::Ignored {
                    return None;
                }
                let (sce, sz) = match (self.reduction, grad_output) {
                    (Reduction::None, Some(go)) => (go[r].to_f64(), go[r].to_f64()),
                    (Reduction::Mean, _) => (g / d, g / m),
                    _ => (g, g),
                };
                let alpha = sce * c.alpha_ce + if with_z { sz * c.alpha_z } else { 0.0 };
                Some((c.ms, alpha, sce * c.beta, sce * c.b))
            })
            .collect())
    }

    /// Checks that the statistics were made for this call.
    fn check_call<A>(
        &self,
        rows: usize,
        local_classes: usize,
        shard: ClassShard,
        opts: &CrossEntropyOptions<'_, A>,
    ) -> Result<()> {
        let same = rows == self.rows()
            && local_classes == self.local_classes
            && shard == self.shard
            && OptionsKey::of(opts) == self.key;
        if same {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                name: "shard statistics",
                value: format!(
                    "{} rows of classes {}..{} of {}",
                    self.rows(),
                    self.shard.offset,
                    self.shard.offset + self.local_classes,
                    self.shard.classes
                ),
                expected: "statistics made from the same input, shard and options",
            })
        }
    }
}

/// The validated layout of a call on a shard: the global layout (the class
/// dimension `C`) and the shard's class count.
struct ShardLayout {
    global: Layout,
    local_classes: usize,
}

/// Checks a shard's logits (`shape` with its own class count) and options; the
/// targets are checked against the global layout.
fn check_shard<T: Element>(
    input_len: usize,
    shape: &[usize],
    target: &Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    shard: ClassShard,
) -> Result<ShardLayout> {
    let bad = |reason| Error::BadShape {
        shape: shape.to_vec(),
        len: input_len,
        reason,
    };
    if shape.is_empty() {
        return Err(bad("a 0-d input has no class dimension"));
    }
    let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if product != Some(input_len) {
        return Err(bad("the number of elements does not match the shape"));
    }
    let class_dim = usize::from(shape.len() > 1);
    let local_classes = shape[class_dim];
    shard.check(local_classes)?;
    let mut global_shape = shape.to_vec();
    global_shape[class_dim] = shard.classes;
    let global_len = global_shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("the global shape's size overflows usize"))?;
    let global = Layout::new(&global_shape, global_len)?;
    check_scalars(opts)?;
    check_unscaled(opts)?;
    check_weight(opts.weight, &global)?;
    match target {
        Targets::Indices(idx) => check_indices(idx, &global, opts.ignore_index)?,
        Targets::Probabilities(t) => {
            if opts.ignore_index >= 0 {
                return Err(Error::IgnoreIndexWithProbabilities {
                    ignore_index: opts.ignore_index,
                });
            }
            if t.len() != input_len {
                return Err(Error::TargetShape {
                    expected: shape.to_vec(),
                    len: t.len(),
                });
            }
        }
    }
    Ok(ShardLayout {
        global,
        local_classes,
    })
}

/// The shard's call for the driver.
fn shard_call<'a, T: Element>(
    x: ConstPtr<T>,
    layout: &ShardLayout,
    target: &Targets<'a, T>,
    opts: &CrossEntropyOptions<'a, T::Acc>,
    shard: ClassShard,
) -> ShardCall<'a, T> {
    let (probs, idx) = match *target {
        Targets::Indices(idx) => (None, Some((idx, opts.ignore_index))),
        Targets::Probabilities(t) => (Some(ConstPtr::new(t)), None),
    };
    let c = layout.local_classes;
    ShardCall {
        x,
        probs,
        idx,
        offset: shard.offset,
        outer: layout.global.outer(),
        classes: c,
        inner: layout.global.inner(),
        weight: opts.weight.map(|w| &w[shard.offset..shard.offset + c]),
        label_smoothing: opts.label_smoothing,
        global_classes: shard.classes,
        softcap: opts.softcap,
    }
}

/// Empty statistics for `rows` rows with their kinds and counts.
fn new_stats<A: Float>(
    target: &Targets<'_, impl Element>,
    rows: usize,
    opts: &CrossEntropyOptions<'_, A>,
    shard: ClassShard,
    local_classes: usize,
) -> ShardStats {
    let (kinds, counts) = match target {
        Targets::Indices(idx) => {
            let kinds = (0..rows)
                .map(|r| match idx.class_at(r, opts.ignore_index) {
                    None => RowKind::Ignored,
                    Some(y) => RowKind::Index(opts.weight.map_or(1.0, |w| w[y].to_f64())),
                })
                .collect();
            let d = Denominators::of_indices(idx, rows, opts.ignore_index, opts.weight);
            (kinds, [d.loss, d.z])
        }
        Targets::Probabilities(_) => (vec![RowKind::Probs; rows], [rows as f64; 2]),
    };
    ShardStats {
        rows: vec![ShardRow::EMPTY; rows],
        kinds,
        max: vec![f64::NEG_INFINITY; rows],
        sums: vec![0.0; 4 * rows],
        counts,
        global_counts: counts,
        combined: Vec::new(),
        consts: CombineConsts {
            eps: opts.label_smoothing,
            classes: shard.classes as f64,
            z: opts.z_loss,
        },
        reduction: opts.reduction,
        shard,
        local_classes,
        stage: Stage::Local,
        key: OptionsKey::of(opts),
    }
}

/// Step 1 of a cross-entropy whose classes are split across processes: the partial
/// statistics of this process's logits `input`, of shape `shape` — the full shape
/// except the class dimension, which holds this shard's classes
/// `shard.offset..shard.offset + n` of `shard.classes`.
///
/// `target` is as for [`cross_entropy`](crate::cross_entropy): class indices in
/// `[0, C)` of the global `C` (the same on every class shard), or this shard's
/// columns of the probability targets. `opts.weight` is the global weight vector (`C`
/// entries).
///
/// Each process runs the same three steps, with two collectives in between that the
/// caller performs (this crate does no communication; `xent-mpi` does it over MPI):
///
/// 1. [`cross_entropy_shard_stats`] (or [`linear_cross_entropy_shard_stats`]) reduces
///    each row's shard of classes to partial statistics: its max, and relative to it
///    `Σ exp`, the linear terms `Σ a_c·x̃_c`, `Σ a_c` (label smoothing, probability
///    targets) and the target's logit where the shard holds it.
/// 2. The caller all-reduces [`ShardStats::max_mut`] with MAX over the class shards,
///    then [`ShardStats::sums_mut`] (4 values per row, rebased to the global max on
///    first access) with one SUM over the class shards; for a mean over rows split
///    across data-parallel ranks, [`ShardStats::counts`] with a SUM over those ranks.
/// 3. [`ShardStats::finish`] writes the loss of this process's rows, and
///    [`cross_entropy_shard_grad_into`] (or [`linear_cross_entropy_shard_grad_into`])
///    the gradient of its shard, with no further communication (except `∂h` of the
///    linear form, a partial sum over the class shards).
///
/// Every option of [`cross_entropy`](crate::cross_entropy) holds exactly: class
/// weights (the global vector, on every process), `ignore_index`, label smoothing
/// with the global `C`, probability targets, z-loss, soft-capping, every reduction,
/// K-dim inputs. The mean divides by the global `D = Σ_{n∈M} w_{y_n}`, never by a
/// per-rank count (averaging per-rank means is the gradient-accumulation bug that
/// HuggingFace fixed with `num_items_in_batch`).
///
/// ```
/// use xent::{cross_entropy_with_grad, cross_entropy_shard_grad_into, cross_entropy_shard_stats,
///     ClassShard, CrossEntropyOptions, GradOut};
/// // One row of 4 classes split in two shards of 2, as two processes would hold it.
/// let x = [1.0f64, 2.0, 0.5, 3.0];
/// let y = [3i64];
/// let opts = CrossEntropyOptions::default().label_smoothing(0.1);
/// let shards = [ClassShard::new(0, 4), ClassShard::new(2, 4)];
/// let mut stats: Vec<_> = shards.iter().map(|&sh| {
///     let cols = &x[sh.offset..sh.offset + 2];
///     cross_entropy_shard_stats(cols, &[1, 2], &y[..], &opts, sh)
/// }).collect::<Result<_, _>>()?;
/// // The MAX all-reduce, then the SUM all-reduce.
/// let max = stats.iter_mut().map(|s| s.max_mut()[0]).fold(f64::NEG_INFINITY, f64::max);
/// stats.iter_mut().for_each(|s| s.max_mut()[0] = max);
/// let sums: Vec<f64> = (0..4).map(|k| stats.iter_mut().map(|s| s.sums_mut()[k]).sum()).collect();
/// stats.iter_mut().for_each(|s| s.sums_mut().copy_from_slice(&sums));
/// let (want, want_grad) = cross_entropy_with_grad(&x, &[1, 4], &y[..], &opts)?;
/// for (s, sh) in stats.iter_mut().zip(shards) {
///     let mut loss = [0.0];
///     let counts = s.counts(); // one process holds all rows: no data-parallel sum
///     s.finish(counts, &mut loss)?;
///     assert!((loss[0] - want.item().unwrap()).abs() < 1e-14);
///     let mut g = [0.0; 2];
///     let cols = &x[sh.offset..sh.offset + 2];
///     cross_entropy_shard_grad_into(cols, &[1, 2], &y[..], &opts, sh, s, GradOut::new(&mut g))?;
///     assert!((g[1] - want_grad[sh.offset + 1]).abs() < 1e-14);
/// }
/// # Ok::<(), xent::Error>(())
/// ```
///
/// # Errors
/// As [`cross_entropy`](crate::cross_entropy), checked against the global class
/// count; [`Error::InvalidArgument`] when the shard does not lie within `C`, or for a
/// `logit_scale` other than 1 (the shards read their logits unscaled).
pub fn cross_entropy_shard_stats<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    shard: ClassShard,
) -> Result<ShardStats> {
    let target = target.into();
    let layout = check_shard(input.len(), shape, &target, opts, shard)?;
    let rows = layout.global.rows();
    let mut stats = new_stats(&target, rows, opts, shard, layout.local_classes);
    let call = shard_call(ConstPtr::new(input), &layout, &target, opts, shard);
    <T as Sealed>::run_shard_stats(&call, &mut stats.rows);
    for (m, r) in stats.max.iter_mut().zip(&stats.rows) {
        *m = r.m;
    }
    Ok(stats)
}

/// Step 3: the gradient `∂loss/∂input` of this process's shard of the logits (the
/// same `input`, `shape`, `target`, `opts` and `shard` as
/// [`cross_entropy_shard_stats`]) from its finished `stats`, times the upstream
/// gradient of `grad` (of the loss [`ShardStats::finish`] wrote: 1 element for
/// `mean`/`sum`, one per row of this process for `none`), overwriting or
/// accumulating. No communication: the shard's gradient is local.
///
/// # Errors
/// As [`cross_entropy_shard_stats`]; [`Error::InvalidArgument`] when `stats` is not
/// finished or was made for another call; [`Error::OutputLength`] /
/// [`Error::GradOutputShape`] for buffers of the wrong size.
pub fn cross_entropy_shard_grad_into<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    shard: ClassShard,
    stats: &ShardStats,
    grad: GradOut<'_, T>,
) -> Result<()> {
    let target = target.into();
    let layout = check_shard(input.len(), shape, &target, opts, shard)?;
    stats.check_call(layout.global.rows(), layout.local_classes, shard, opts)?;
    let mut grad = grad;
    check_len("grad", grad.grad.len(), input.len())?;
    let consts = stats.row_grads(grad.grad_output)?;
    let call = shard_call(ConstPtr::new(input), &layout, &target, opts, shard);
    let accumulate = grad.mode == GradMode::Accumulate;
    <T as Sealed>::run_shard_grad(&call, &consts, grad.grad.ptr(), accumulate);
    Ok(())
}

/// Step 1 of [`linear_cross_entropy`](crate::linear_cross_entropy) with the classes
/// split across processes: `inputs.linear_weight` holds this shard's rows of `W`
/// (`n × D`, classes `shard.offset..shard.offset + n` of `shard.classes`) and
/// `inputs.linear_bias` the same entries of `b`; `h` and the (global) class-index
/// targets are the same on every class shard. The logits `h·W_shardᵀ + b_shard` are
/// formed block by block and never held whole; the protocol is then as for
/// [`cross_entropy_shard_stats`].
///
/// # Errors
/// As [`linear_cross_entropy`](crate::linear_cross_entropy), checked against the
/// global class count; [`Error::InvalidArgument`] when the shard does not lie within it.
pub fn linear_cross_entropy_shard_stats<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
) -> Result<ShardStats> {
    let target = target.into();
    let (n, _, v) = check_linear(&inputs, &target, opts, shard)?;
    let ce = &opts.cross_entropy;
    let targets = Targets::<E::Acc>::Indices(target);
    let mut stats = new_stats(&targets, n, ce, shard, v);
    let mut walk = LinearWalk::new(&inputs, opts, v);
    let mut r0 = 0;
    while r0 < n {
        let rows = walk.block.min(n - r0);
        let (x, t) = walk.logits(&inputs, &target, ce.ignore_index, r0, rows);
        let layout = block_layout(rows, v, shard)?;
        let targets = Targets::Indices(t);
        let call = shard_call(ConstPtr::new(x), &layout, &targets, ce, shard);
        <E::Acc as Sealed>::run_shard_stats(&call, &mut stats.rows[r0..r0 + rows]);
        r0 += rows;
    }
    for (m, r) in stats.max.iter_mut().zip(&stats.rows) {
        *m = r.m;
    }
    Ok(stats)
}

/// Step 3 of the class-sharded linear cross-entropy: the gradients that `grad` asks
/// for, from the finished `stats` of [`linear_cross_entropy_shard_stats`] (same
/// arguments). `∂W` and `∂b` of the shard's classes are complete; `∂h = G·W_shard` is
/// this shard's part of a sum: SUM-all-reduce it across the class shards. The logits
/// are formed again block by block.
///
/// # Errors
/// As [`linear_cross_entropy_shard_stats`]; [`Error::InvalidArgument`] when `stats`
/// is not finished or was made for another call; [`Error::OutputLength`] /
/// [`Error::GradOutputShape`] for buffers of the wrong size.
pub fn linear_cross_entropy_shard_grad_into<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
    stats: &ShardStats,
    grad: LinearGradOut<'_, E::Acc>,
) -> Result<()> {
    let target = target.into();
    let (n, d, v) = check_linear(&inputs, &target, opts, shard)?;
    let ce = &opts.cross_entropy;
    stats.check_call(n, v, shard, ce)?;
    if let Some(dh) = &grad.hidden {
        check_len("grad hidden", dh.len(), n * d)?;
    }
    if let Some(dw) = &grad.linear_weight {
        check_len("grad linear_weight", dw.len(), v * d)?;
    }
    if let Some(db) = &grad.linear_bias {
        check_len("grad linear_bias", db.len(), v)?;
    }
    let consts = stats.row_grads(grad.grad_output)?;
    let accumulate = grad.mode == GradMode::Accumulate;
    let (mut dh, mut dw, mut db) = (grad.hidden, grad.linear_weight, grad.linear_bias);
    if !accumulate {
        for g in [dw.as_deref_mut(), db.as_deref_mut()].into_iter().flatten() {
            g.fill(E::Acc::ZERO);
        }
    }
    let mut walk = LinearWalk::new(&inputs, opts, v);
    let mut r0 = 0;
    while r0 < n {
        let rows = walk.block.min(n - r0);
        walk.logits(&inputs, &target, ce.ignore_index, r0, rows);
        let layout = block_layout(rows, v, shard)?;
        {
            let x = &mut walk.x[..rows * v];
            let t = ClassIndices::from(&walk.t[..]);
            let targets = Targets::Indices(t);
            // The logit gradient overwrites the block's logits (read before written).
            let xp = Ptr::new(x);
            let call = shard_call(xp.as_const(), &layout, &targets, ce, shard);
            <E::Acc as Sealed>::run_shard_grad(
                &call,
                &consts[r0..r0 + rows],
                GradPtr::Same(xp),
                false,
            );
        }
        walk.backprop(
            &inputs,
            r0,
            rows,
            (d, v),
            accumulate,
            &mut dh,
            &mut dw,
            &mut db,
        );
        r0 += rows;
    }
    Ok(())
}

/// The layout of a block of `rows` logits rows of the shard's `v` classes.
fn block_layout(rows: usize, v: usize, shard: ClassShard) -> Result<ShardLayout> {
    Ok(ShardLayout {
        global: Layout::new(&[rows, shard.classes], rows * shard.classes)?,
        local_classes: v,
    })
}

/// Checks the linear form's operands on a shard; returns `(N, D, n)`.
fn check_linear<E: Element>(
    inputs: &LinearInputs<'_, E>,
    target: &ClassIndices<'_>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    shard: ClassShard,
) -> Result<(usize, usize, usize)> {
    let (n, d, v) = match check_inputs(inputs) {
        // A shard may hold no classes (more ranks than classes); the global count is
        // checked below.
        Err(Error::NoClasses { .. }) => (inputs.hidden_shape[0], inputs.hidden_shape[1], 0),
        other => other?,
    };
    shard.check(v)?;
    check_target_rows(n, target.len())?;
    let ce = &opts.cross_entropy;
    let global = Layout::new(&[n, shard.classes], n.saturating_mul(shard.classes))?;
    check_scalars(ce)?;
    check_unscaled(ce)?;
    check_weight(ce.weight, &global)?;
    check_indices(target, &global, ce.ignore_index)?;
    Ok((n, d, v))
}

/// The row blocks of the linear form: the block's logits (and, for the gradient,
/// their backward GEMMs), as [`linear_cross_entropy`](crate::linear_cross_entropy)
/// forms them.
struct LinearWalk<'w, E: Element> {
    block: usize,
    x: Vec<E::Acc>,
    ht: Vec<E::Acc>,
    t: Vec<i64>,
    tiles: ThreadScratch<E::Acc>,
    weight: Widened<'w, E>,
    bias: Option<std::borrow::Cow<'w, [E::Acc]>>,
    /// The GEMM engine (f32, bf16, f16 inputs); `None`: the `gemm` crate (f64).
    engine: Option<crate::gemm::LinearGemm<'w>>,
}

impl<'w, E: Element> LinearWalk<'w, E> {
    fn new(
        inputs: &LinearInputs<'w, E>,
        opts: &LinearCrossEntropyOptions<'_, E::Acc>,
        v: usize,
    ) -> Self {
        let [n, d] = inputs.hidden_shape;
        let (elem, acc) = (size_of::<E>(), size_of::<E::Acc>());
        let max_rows = MAX_BLOCK_ROWS * elem / acc;
        let block = block_rows(n, (d, v), acc, opts.scratch_bytes, max_rows);
        let engine = crate::gemm::LinearGemm::new::<E, E::Acc>(
            inputs.hidden,
            inputs.linear_weight,
            (d, v),
            opts.grad_precision,
        );
        // The gemm crate's copies and tiles, for the f64 path only.
        let threads = pool_threads() * usize::from(engine.is_none());
        let old = usize::from(engine.is_none());
        LinearWalk {
            block,
            x: vec![E::Acc::ZERO; block * v],
            ht: vec![E::Acc::ZERO; lhs_ld(block) * d * old],
            t: Vec::with_capacity(block),
            tiles: ThreadScratch::new(threads, lhs_ld(block) * X_CLASS_CHUNK.min(v), E::Acc::ZERO),
            weight: Widened::new(inputs.linear_weight, threads, WIDEN_CLASSES.min(v) * d),
            bias: inputs.linear_bias.map(|b| widen(b)),
            engine,
        }
    }

    /// Forms the logits of rows `r0..r0 + rows` and their targets.
    fn logits(
        &mut self,
        inputs: &LinearInputs<'_, E>,
        target: &ClassIndices<'_>,
        ignore_index: i64,
        r0: usize,
        rows: usize,
    ) -> (&[E::Acc], ClassIndices<'_>) {
        let [_, d] = inputs.hidden_shape;
        let v = self.x.len() / self.block.max(1);
        let h_block = &inputs.hidden[r0 * d..(r0 + rows) * d];
        let ld = lhs_ld(rows);
        let x = &mut self.x[..rows * v];
        if let (true, Some(engine)) = (v > 0, self.engine.as_mut()) {
            engine.logits(r0, rows, self.bias.as_deref(), x);
        } else if v > 0 {
            transpose_into(h_block, (rows, d), d, &mut self.ht[..ld * d], ld);
            logits_into(
                &self.ht[..ld * d],
                (rows, ld),
                &self.weight,
                self.bias.as_deref(),
                (d, v),
                x,
                &self.tiles,
            );
        }
        self.t.clear();
        self.t.extend((r0..r0 + rows).map(|r| {
            target
                .class_at(r, ignore_index)
                .map_or(ignore_index, |y| y as i64)
        }));
        (&self.x[..rows * v], ClassIndices::from(&self.t[..]))
    }

    /// Folds the block's logit gradient (in `self.x`) back into `dh`, `dW`, `db`.
    #[allow(clippy::too_many_arguments)]
    fn backprop(
        &mut self,
        inputs: &LinearInputs<'_, E>,
        r0: usize,
        rows: usize,
        (d, v): (usize, usize),
        accumulate: bool,
        dh: &mut Option<&mut [E::Acc]>,
        dw: &mut Option<&mut [E::Acc]>,
        db: &mut Option<&mut [E::Acc]>,
    ) {
        if v > 0 {
            if let Some(engine) = self.engine.as_mut() {
                // db first: the engine may round G to bf16 in place for dh and dW.
                if let Some(db) = db.as_deref_mut() {
                    column_sums_into(&self.x[..rows * v], v, db);
                }
                let dh_block = dh.as_deref_mut().map(|dh| &mut dh[r0 * d..(r0 + rows) * d]);
                let g = &mut self.x[..rows * v];
                engine.backward(r0, rows, g, accumulate, dh_block, dw.as_deref_mut());
                return;
            }
        }
        let g = &self.x[..rows * v];
        if let Some(dh) = dh.as_deref_mut() {
            let dh_block = &mut dh[r0 * d..(r0 + rows) * d];
            if v == 0 {
                if !accumulate {
                    dh_block.fill(E::Acc::ZERO);
                }
            } else {
                hidden_grad_into(g, rows, &self.weight, (d, v), accumulate, dh_block);
            }
        }
        if v == 0 {
            return;
        }
        let h_block = &inputs.hidden[r0 * d..(r0 + rows) * d];
        if let Some(dw) = dw.as_deref_mut() {
            let ld = lhs_ld(rows);
            // h_block itself, or its widened column-major copy (left by `logits`).
            let hb = match as_acc(h_block) {
                Some(h) => Strided::new(h, d, 1),
                None => Strided::new(&self.ht[..ld * d], 1, ld),
            };
            weight_grad_add(g, hb, rows, (d, v), dw, &self.tiles);
        }
        if let Some(db) = db.as_deref_mut() {
            column_sums_into(g, v, db);
        }
    }
}
