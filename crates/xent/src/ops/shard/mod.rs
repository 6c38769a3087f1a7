//! Cross-entropy split across processes: the classes across the ranks of a
//! tensor-parallel group (vocab parallelism), the rows across data-parallel ranks.
//!
//! See [`cross_entropy_shard_stats`] for the protocol.

mod linear;
mod pass;
mod rows;
mod scale;

pub use linear::{
    linear_cross_entropy_shard_grad_into, linear_cross_entropy_shard_row_stats,
    linear_cross_entropy_shard_stats,
};
pub use pass::{linear_cross_entropy_shard_into, ShardReduce};
pub use rows::MaxLoc;

use super::cross_entropy::{check_scalars, plan, Denominators};
use super::stats::RowOutputs;
use super::{check_indices, check_len, check_weight, scalar_upstream, GradOut};
use crate::driver::shard::RowGrad;
use crate::dtype::Element;
use crate::dtype::Float;
use crate::entry::ElementEntry as Sealed;
use crate::error::{Error, Result};
use crate::kernels::plan::{CePlan, Options};
use crate::kernels::ptr::{ConstPtr, GradPtr, Ptr};
use crate::kernels::shard::{combine_row, RowCombined, ShardRow};
use crate::layout::Layout;
use crate::options::{CrossEntropyOptions, GradMode, Reduction};
use crate::reduce::CompensatedSum;
use crate::targets::Targets;

use scale::{scaled_logits, widened_targets, write_scaled_grad};

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

/// Which reduction of the row maxima the statistics read: MAX of
/// [`ShardStats::max_mut`] or MAXLOC of [`ShardStats::max_loc_mut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaxSource {
    Max,
    Loc,
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
    /// The shard's (max, global argmax) pairs of the row outputs.
    loc: Vec<MaxLoc>,
    source: MaxSource,
    /// Values per row in `sums`: 4, or 5 with the row outputs' `e`.
    width: usize,
    sums: Vec<f64>,
    counts: [f64; 2],
    global_counts: [f64; 2],
    combined: Vec<RowCombined>,
    consts: Options<f64>,
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
    logit_scale: f64,
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
            logit_scale: opts.logit_scale,
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

    /// The per-row max of the shard's logits as the loss sees them (`x̃ =
    /// softcap(s·x)`), `−inf` for ignored rows of statistics without row outputs:
    /// all-reduce it with MAX across the class shards of these rows, before the
    /// first call of [`ShardStats::sums_mut`]. Statistics with row outputs
    /// ([`cross_entropy_shard_row_stats`]) reduce [`ShardStats::max_loc_mut`] instead
    /// (the argmax needs it); the statistics read the one borrowed last.
    pub fn max_mut(&mut self) -> &mut [f64] {
        self.source = MaxSource::Max;
        &mut self.max
    }

    /// The per-row `(max, global argmax)` pairs of statistics with row outputs
    /// (empty for statistics without): all-reduce them across the class shards with
    /// the max-location reduction [`MaxLoc::max`] (NaN first, then the larger value,
    /// then the lower index), in place of the MAX of [`ShardStats::max_mut`] and
    /// before the first call of [`ShardStats::sums_mut`]. One collective gives the
    /// max that the sums are rebased to and the argmax.
    pub fn max_loc_mut(&mut self) -> &mut [MaxLoc] {
        self.source = MaxSource::Loc;
        &mut self.loc
    }

    /// The values per row of [`ShardStats::sums_mut`]: 4, or 5 for statistics with
    /// row outputs.
    pub fn sums_per_row(&self) -> usize {
        self.width
    }

    /// The per-row sums `[Σ exp(x̃ − M), Σ a_c·(x̃_c − M), Σ a_c, x̃_y]`, and for
    /// statistics with row outputs a fifth, `Σ exp(x̃ − M)·(x̃ − M)` (the entropy's),
    /// where `M` is the reduced max (the target logit is 0 on the shards that do not
    /// hold it): all-reduce them with one SUM across the class shards. The first call
    /// rescales this shard's statistics to `M`.
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
        if self.source == MaxSource::Loc {
            for (m, l) in self.max.iter_mut().zip(&self.loc) {
                *m = l.value;
            }
        }
        let w = self.width;
        for ((r, &m), out) in self
            .rows
            .iter()
            .zip(&self.max)
            .zip(self.sums.chunks_exact_mut(w))
        {
            out.copy_from_slice(&r.rebased(m)[..w]);
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
        let w = self.width;
        for (r, kind) in self.kinds.iter().enumerate() {
            let s = [0, 1, 2, 3].map(|k| self.sums[w * r + k]);
            let c = match *kind {
                RowKind::Ignored => RowCombined::default(),
                RowKind::Index(w_y) => combine_row(self.max[r], s, Some(w_y), &self.consts),
                RowKind::Probs => combine_row(self.max[r], s, None, &self.consts),
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
            self.consts.z_loss != 0.0,
            loss_out,
        ))
    }

    /// [`ShardStats::finish`], and the per-row outputs of this process's rows that
    /// `rows` asks for (see [`RowOutputs`]): `lse` from the reduced max and `Σ exp`,
    /// `entropy` from the fifth packed sum, `argmax` from the max-location reduction,
    /// `z` the row's z term (0 on ignored rows). Ignored rows get their `lse`,
    /// `entropy` and `argmax`. The values equal those of
    /// [`cross_entropy_stats_into`](crate::cross_entropy_stats_into) on the whole row.
    ///
    /// # Errors
    /// As [`ShardStats::finish`]; [`Error::OutputLength`] for an output that does not
    /// have one element per row; [`Error::InvalidArgument`] when outputs are asked of
    /// statistics made without them ([`cross_entropy_shard_stats`]), or an `argmax` of
    /// statistics whose maxima were reduced with [`ShardStats::max_mut`].
    pub fn finish_rows<A: Float>(
        &mut self,
        counts: [f64; 2],
        loss_out: &mut [A],
        rows: RowOutputs<'_, A>,
    ) -> Result<Option<A>> {
        rows.check(self.rows())?;
        let any = rows.lse.is_some()
            || rows.entropy.is_some()
            || rows.argmax.is_some()
            || rows.z.is_some();
        if any && self.width != 5 {
            return Err(Error::InvalidArgument {
                name: "row outputs",
                value: "statistics made without row outputs".to_string(),
                expected: "statistics of cross_entropy_shard_row_stats or \
                           linear_cross_entropy_shard_row_stats",
            });
        }
        if rows.argmax.is_some() && self.source != MaxSource::Loc {
            return Err(Error::InvalidArgument {
                name: "argmax",
                value: "maxima reduced with MAX (ShardStats::max_mut)".to_string(),
                expected: "the max-location reduction of ShardStats::max_loc_mut",
            });
        }
        let z = self.finish(counts, loss_out)?;
        if !any {
            return Ok(z);
        }
        let RowOutputs {
            mut lse,
            mut entropy,
            mut argmax,
            z: mut z_out,
            ..
        } = rows;
        for r in 0..self.rows() {
            let (s, e) = (self.sums[5 * r], self.sums[5 * r + 4]);
            let (l, h) = rows::lse_entropy(self.max[r], s, e);
            if let Some(o) = lse.as_deref_mut() {
                o[r] = A::from_f64(l);
            }
            if let Some(o) = entropy.as_deref_mut() {
                o[r] = A::from_f64(h);
            }
            if let Some(o) = argmax.as_deref_mut() {
                o[r] = self.loc[r].index;
            }
            if let Some(o) = z_out.as_deref_mut() {
                let kept = self.kinds[r] != RowKind::Ignored;
                o[r] = A::from_f64(if kept {
                    self.consts.z_loss * l * l
                } else {
                    0.0
                });
            }
        }
        Ok(z)
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
        let with_z = self.consts.z_loss != 0.0;
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

/// The shard's plan: its classes `shard.offset..` of the global ones, over logits
/// that are already scaled (the plan reads them with a logit scale of 1).
fn shard_plan<'a, T: Element>(
    x: ConstPtr<T>,
    grad: GradPtr<T>,
    layout: &ShardLayout,
    target: &Targets<'a, T>,
    opts: &CrossEntropyOptions<'a, T::Acc>,
    shard: ClassShard,
) -> CePlan<'a, T> {
    let dims = (
        layout.global.outer(),
        layout.local_classes,
        layout.global.inner(),
    );
    let mut core = *opts;
    core.logit_scale = 1.0;
    plan(x, grad, dims, target, &core, (shard.offset, shard.classes))
}

/// Whether statistics carry what the per-row outputs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Loss,
    Rows,
}

/// Empty statistics for `rows` rows with their kinds and counts.
fn new_stats<A: Float>(
    target: &Targets<'_, impl Element>,
    rows: usize,
    opts: &CrossEntropyOptions<'_, A>,
    shard: ClassShard,
    local_classes: usize,
    want: Want,
) -> ShardStats {
    let (width, locs, source) = match want {
        Want::Loss => (4, 0, MaxSource::Max),
        Want::Rows => (5, rows, MaxSource::Loc),
    };
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
        loc: vec![MaxLoc::EMPTY; locs],
        source,
        width,
        sums: vec![0.0; width * rows],
        counts,
        global_counts: counts,
        combined: Vec::new(),
        consts: Options::new(
            opts.label_smoothing,
            opts.z_loss,
            opts.softcap,
            shard.classes,
        ),
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
///    With the per-row outputs ([`cross_entropy_shard_row_stats`]), the first
///    all-reduce is the max-location one of [`ShardStats::max_loc_mut`] instead of the
///    MAX: still two all-reduces.
/// 3. [`ShardStats::finish`] (or [`ShardStats::finish_rows`], which also writes the
///    per-row outputs) writes the loss of this process's rows, and
///    [`cross_entropy_shard_grad_into`] (or [`linear_cross_entropy_shard_grad_into`])
///    the gradient of its shard, with no further communication (except `∂h` of the
///    linear form, a partial sum over the class shards).
///
/// Every option of [`cross_entropy`](crate::cross_entropy) holds exactly: class
/// weights (the global vector, on every process), `ignore_index`, label smoothing
/// with the global `C`, probability targets, z-loss, soft-capping, the logit scale
/// (the shard reads `s·x` in the compute type; its gradient carries `s`), the
/// denominator of `mean`, every reduction,
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
/// count; [`Error::InvalidArgument`] when the shard does not lie within `C`.
pub fn cross_entropy_shard_stats<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    shard: ClassShard,
) -> Result<ShardStats> {
    shard_stats(input, shape, target.into(), opts, shard, Want::Loss)
}

/// [`cross_entropy_shard_stats`] with what the per-row outputs need as well: the
/// statistics also hold each row's `(max, global argmax)` pair
/// ([`ShardStats::max_loc_mut`], reduced in place of [`ShardStats::max_mut`]) and a
/// fifth packed sum for the entropy, and cover ignored rows, so that
/// [`ShardStats::finish_rows`] can write `lse`, `entropy`, `argmax` and `z`. Still
/// two all-reduces over the class shards: the max-location one, then the SUM.
///
/// ```
/// use xent::{cross_entropy_shard_row_stats, cross_entropy_stats_into, ClassShard,
///     CrossEntropyOptions, MaxLoc, RowOutputs};
/// let x = [1.0f64, 2.0, 3.0, 3.0, 0.5, -1.0];
/// let y = [1i64, -100];
/// let opts = CrossEntropyOptions::default().logit_scale(0.5);
/// let shards = [ClassShard::new(0, 3), ClassShard::new(2, 3)];
/// let cols = |sh: ClassShard, n: usize| -> Vec<f64> {
///     (0..2).flat_map(|r| x[r * 3 + sh.offset..r * 3 + sh.offset + n].to_vec()).collect()
/// };
/// let lens = [2, 1];
/// let mut stats: Vec<_> = shards.iter().zip(lens).map(|(&sh, n)| {
///     cross_entropy_shard_row_stats(&cols(sh, n), &[2, n], &y[..], &opts, sh)
/// }).collect::<Result<_, _>>()?;
/// // The max-location all-reduce, then the SUM all-reduce.
/// for r in 0..2 {
///     let m = stats.iter_mut().fold(MaxLoc::EMPTY, |a, s| a.max(s.max_loc_mut()[r]));
///     stats.iter_mut().for_each(|s| s.max_loc_mut()[r] = m);
/// }
/// let n = stats[0].sums_mut().len();
/// let sums: Vec<f64> = (0..n).map(|k| stats.iter_mut().map(|s| s.sums_mut()[k]).sum()).collect();
/// stats.iter_mut().for_each(|s| s.sums_mut().copy_from_slice(&sums));
/// let (mut lse, mut argmax, mut loss) = ([0.0; 2], [0i64; 2], [0.0]);
/// let counts = stats[0].counts();
/// stats[1].finish_rows(counts, &mut loss, RowOutputs::new().lse(&mut lse).argmax(&mut argmax))?;
/// let (mut want_lse, mut want_loss) = ([0.0; 2], [0.0]);
/// cross_entropy_stats_into(&x, &[2, 3], &y[..], &opts, &mut want_loss, None,
///     RowOutputs::new().lse(&mut want_lse))?;
/// assert_eq!(argmax, [2, 0]); // the ignored row 1 gets its argmax too
/// assert!((lse[1] - want_lse[1]).abs() < 1e-14 && (loss[0] - want_loss[0]).abs() < 1e-14);
/// # Ok::<(), xent::Error>(())
/// ```
///
/// # Errors
/// As [`cross_entropy_shard_stats`].
pub fn cross_entropy_shard_row_stats<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    shard: ClassShard,
) -> Result<ShardStats> {
    shard_stats(input, shape, target.into(), opts, shard, Want::Rows)
}

/// The statistics of [`cross_entropy_shard_stats`] and
/// [`cross_entropy_shard_row_stats`].
fn shard_stats<T: Element>(
    input: &[T],
    shape: &[usize],
    target: Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    shard: ClassShard,
    want: Want,
) -> Result<ShardStats> {
    let layout = check_shard(input.len(), shape, &target, opts, shard)?;
    let rows = layout.global.rows();
    let mut stats = new_stats(&target, rows, opts, shard, layout.local_classes, want);
    let s = opts.logit_scale;
    if s == 1.0 {
        let plan = shard_plan(
            ConstPtr::new(input),
            GradPtr::None,
            &layout,
            &target,
            opts,
            shard,
        );
        <T as Sealed>::run_shard_stats(&plan, &mut stats.rows, want == Want::Rows);
    } else {
        let xs = scaled_logits(input, s, shape)?;
        let mut store = Vec::new();
        let ts = widened_targets(target, shape, &mut store)?;
        let plan = shard_plan(
            ConstPtr::new(&xs[..]),
            GradPtr::None,
            &layout,
            &ts,
            opts,
            shard,
        );
        <T::Acc as Sealed>::run_shard_stats(&plan, &mut stats.rows, want == Want::Rows);
    }
    if want == Want::Rows {
        let (classes, cap) = (layout.local_classes, opts.softcap);
        rows::locate(&stats.rows, classes, shard.offset, cap, &mut stats.loc);
    }
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
    let accumulate = grad.mode == GradMode::Accumulate;
    let s = opts.logit_scale;
    if s == 1.0 {
        let mut plan = shard_plan(
            ConstPtr::new(input),
            grad.grad.ptr(),
            &layout,
            &target,
            opts,
            shard,
        );
        plan.rows.accumulate = accumulate;
        <T as Sealed>::run_shard_grad(&plan, &consts);
        return Ok(());
    }
    // The gradient with respect to the scaled logits overwrites them; `s` times it
    // is the gradient with respect to the caller's.
    let mut xs = scaled_logits(input, s, shape)?;
    let mut store = Vec::new();
    let ts = widened_targets(target, shape, &mut store)?;
    let x = Ptr::new(&mut xs[..]);
    let plan = shard_plan(x.as_const(), GradPtr::Same(x), &layout, &ts, opts, shard);
    <T::Acc as Sealed>::run_shard_grad(&plan, &consts);
    write_scaled_grad(&xs, s, grad.grad, accumulate);
    Ok(())
}
