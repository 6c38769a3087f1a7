//! `cross_entropy` on logits, with class-index or probability targets.

use super::stats::RowOutputs;
use super::{
    check_grad, check_grad_output, check_indices, check_len, check_weight, loss_buf, loss_len,
    loss_shape, scalar_upstream, GradOut, Loss,
};
use crate::dtype::Element;
use crate::dtype::Float;
use crate::entry::ElementEntry as Sealed;
use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::kernels::plan::{CePlan, Options, RowOuts, RowPlan, Scale};
use crate::kernels::ptr::{ConstPtr, GradPtr, Ptr};
use crate::layout::Layout;
use crate::options::{
    check_denominator, check_logit_scale, CrossEntropyOptions, GradMode, Reduction,
};
use crate::reduce::CompensatedSum;
use crate::targets::Targets;

/// Softmax cross-entropy of `input` (logits of shape `shape`) against `target`, as
/// PyTorch's `F.cross_entropy(input, target, weight, ignore_index=…,
/// reduction=…, label_smoothing=…)`.
///
/// With class indices `y` and `ℓ = log_softmax(x)`:
/// `l_n = (1−ε)·(−w_{y_n}·ℓ_{n,y_n}) + (ε/C)·(−Σ_c w_c·ℓ_{n,c})` (0 for ignored rows);
/// `mean` divides the sum by `D = Σ_{n∈M} w_{y_n}` (NaN when every row is ignored).
/// With probabilities `t`: `l_n = −Σ_c w_c·t'_{n,c}·ℓ_{n,c}`, `t' = (1−ε)·t + ε/C`, and
/// `mean` divides by the row count. z-loss adds `s·lse_n²` per row that counts
/// (`mean` averages it over those rows); soft-capping replaces `x` by
/// `cap·tanh(x/cap)` everywhere. A logit scale `s` makes the loss see
/// `softcap(s·x)` (scaled first, then soft-capped; the gradient carries `s`), and a
/// `denominator` `d` makes `mean` the sum of the row losses and z terms over `d`
/// (0, not NaN, when every row is ignored).
///
/// `bf16`/`f16` logits are computed in `f32` and return an `f32` loss.
///
/// # Errors
/// Shape errors, a target out of `[0, C)` (naming it and its index), a weight of the
/// wrong length, `label_smoothing` outside `[0, 1]`, a negative or non-finite
/// `z_loss`, a non-positive `softcap` or `logit_scale`, a non-positive `denominator`
/// or one given with a reduction other than `mean`, and probability targets with a
/// non-negative `ignore_index`: see [`Error`].
///
/// ```
/// use xent::{cross_entropy, CrossEntropyOptions};
/// let x = [1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
/// let loss = cross_entropy(&x, &[3, 3], &[2i64, 1, 0][..], &CrossEntropyOptions::default())?;
/// assert!((loss.item().unwrap() - 1.4076).abs() < 1e-4);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
) -> Result<Loss<T::Acc>> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = loss_buf(&layout, opts.reduction)?;
    let z = cross_entropy_into(input, shape, target, opts, &mut out, None)?;
    Ok(Loss::with_z(out, loss_shape(&layout, opts.reduction), z))
}

/// [`cross_entropy`] and its gradient `∂loss/∂input` (upstream gradient 1, or all 1
/// for `none`), in a new buffer of the input's shape and type.
///
/// A gradient of 2 MiB or more is allocated on huge pages and faulted in by the
/// kernel's threads as they write it ([`crate::alloc::zeroed_vec`]). In a training
/// loop, [`cross_entropy_into`] into a buffer kept across steps is faster still: it
/// pays the page faults once instead of every step.
///
/// Gradient: `s_n·[(1−ε)·w_{y_n}·(p_{n,j} − δ_{j,y_n}) + (ε/C)·(W·p_{n,j} − w_j)]` for
/// class indices, `s_n·[p_{n,j}·Σ_c w_c·t'_{n,c} − w_j·t'_{n,j}]` for probabilities,
/// with `s_n = 1/D` for mean and 1 otherwise; 0 on ignored rows. z-loss adds
/// `2·s·lse_n·p_{n,j}` (times its own scale), soft-capping chains `1 − tanh²(x/cap)`.
///
/// # Errors
/// As [`cross_entropy`].
///
/// ```
/// use xent::{cross_entropy_with_grad, CrossEntropyOptions};
/// let (loss, grad) = cross_entropy_with_grad(&[1.0f64, 2.0, 3.0], &[1, 3], &[0u8][..],
///     &CrossEntropyOptions::default())?;
/// assert!((loss.item().unwrap() - 2.40760596).abs() < 1e-8);
/// assert!((grad[0] - (0.09003057 - 1.0)).abs() < 1e-8);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_with_grad<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
) -> Result<(Loss<T::Acc>, Vec<T>)> {
    let layout = Layout::new(shape, input.len())?;
    let mut out = loss_buf(&layout, opts.reduction)?;
    let mut grad = crate::alloc::zeroed_vec::<T>("grad", shape)?;
    let z = cross_entropy_into(
        input,
        shape,
        target,
        opts,
        &mut out,
        Some(GradOut::new(&mut grad)),
    )?;
    Ok((
        Loss::with_z(out, loss_shape(&layout, opts.reduction), z),
        grad,
    ))
}

/// The fused core of [`cross_entropy`]: writes the loss into `loss_out` (1 element for
/// `mean`/`sum`, one per row for `none`) and, when `grad` is given, `∂loss/∂input`
/// times its upstream gradient into its buffer, overwriting or accumulating.
/// Returns the z-loss term included in the loss (reduced like it; summed over rows
/// for `none`) when `z_loss` is set.
///
/// One pass reads each logit once and writes each gradient once; rows run in
/// parallel on rayon's pool, with results that do not depend on the thread count.
///
/// This is the fastest path for a training loop: keep the gradient buffer across
/// steps (a `Vec`, or a [`crate::alloc::HugeBuf`] on huge pages) and overwrite it
/// every step. A fresh buffer per step (as [`cross_entropy_with_grad`] makes) pays
/// the kernel's page faults and page zeroing each time.
/// Everything is validated before anything is written: on error the buffers are
/// untouched.
///
/// # Errors
/// As [`cross_entropy`], plus [`Error::OutputLength`] / [`Error::GradOutputShape`]
/// for buffers of the wrong size.
///
/// ```
/// use xent::{cross_entropy_into, CrossEntropyOptions, GradMode, GradOut};
/// let x = [1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0];
/// let mut loss = [0.0f32];
/// let mut grad = [0.0f32; 6];
/// // Two micro-batches of one row each, accumulated into one gradient.
/// for (row, y) in [(0, 2u8), (1, 1u8)] {
///     let opts = CrossEntropyOptions::default();
///     let half = [0.5f32];
///     let g = GradOut::new(&mut grad[3 * row..3 * row + 3]).grad_output(&half)
///         .mode(GradMode::Accumulate);
///     cross_entropy_into(&x[3 * row..3 * row + 3], &[1, 3], &[y][..], &opts, &mut loss, Some(g))?;
/// }
/// assert!((grad[2] - (0.66524096 - 1.0) / 2.0).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_into<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    loss_out: &mut [T::Acc],
    grad: Option<GradOut<'_, T>>,
) -> Result<Option<T::Acc>> {
    cross_entropy_stats_into(
        input,
        shape,
        target,
        opts,
        loss_out,
        grad,
        RowOutputs::new(),
    )
}

/// [`cross_entropy_into`] that also writes the per-row outputs `rows` asks for: the
/// log-sum-exp, the entropy and the argmax of the logits as the loss sees them
/// (`softcap(s·x)`), and each row's z term (see [`RowOutputs`]). They are detached
/// (never differentiated), and one element per row (the row shape) each.
///
/// # Errors
/// As [`cross_entropy_into`], plus [`Error::OutputLength`] naming the row output
/// (`"lse"`, `"entropy"`, `"argmax"`, `"z"`) whose length is not the row count.
///
/// ```
/// use xent::{cross_entropy_stats_into, CrossEntropyOptions, RowOutputs};
/// // Two micro-batches share one denominator: the token count of the whole step.
/// let x = [2.0f32, 0.0, 0.0, 1.0];
/// let opts = CrossEntropyOptions::default().logit_scale(0.5).denominator(3.0);
/// let (mut loss, mut lse, mut argmax) = ([0.0f32], [0.0f32; 2], [0i64; 2]);
/// cross_entropy_stats_into(&x, &[2, 2], &[0i64, -100][..], &opts, &mut loss, None,
///     RowOutputs::new().lse(&mut lse).argmax(&mut argmax))?;
/// // Row 0 sees logits [1, 0]; row 1 is ignored but still gets its outputs.
/// let lse0 = (1f32.exp() + 1.0).ln();
/// assert!((loss[0] - (lse0 - 1.0) / 3.0).abs() < 1e-6);
/// assert!((lse[0] - lse0).abs() < 1e-6 && argmax == [0, 1]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_stats_into<'t, T: Element>(
    input: &[T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    loss_out: &mut [T::Acc],
    grad: Option<GradOut<'_, T>>,
    rows: RowOutputs<'_, T::Acc>,
) -> Result<Option<T::Acc>> {
    let layout = Layout::new(shape, input.len())?;
    let target = target.into();
    check_options(opts, &layout, &target)?;
    check_len(
        "loss_out",
        loss_out.len(),
        loss_len(&layout, opts.reduction),
    )?;
    if let Some(g) = &grad {
        check_grad(g, &layout, opts.reduction)?;
    }
    rows.check(layout.rows())?;
    run_call(
        CallIo::Read(input, grad),
        &layout,
        &target,
        opts,
        loss_out,
        rows,
    )
}

/// [`cross_entropy`] that overwrites the logits with the gradient `∂loss/∂logits`
/// (times `grad_output`), so that no second `N × C` buffer exists — as Liger-Kernel
/// does on GPU. Returns the z-loss term as [`cross_entropy_into`].
///
/// # Errors
/// As [`cross_entropy_into`]; on error the logits are untouched.
///
/// ```
/// use xent::{cross_entropy_inplace, CrossEntropyOptions};
/// let mut x = [1.0f32, 2.0, 3.0];
/// let mut loss = [0.0f32];
/// cross_entropy_inplace(&mut x, &[1, 3], &[2u8][..], &CrossEntropyOptions::default(), &mut loss, None)?;
/// assert!((loss[0] - 0.40760596).abs() < 1e-6);
/// assert!((x[2] - (0.66524096 - 1.0)).abs() < 1e-6); // x now holds softmax − onehot
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_inplace<'t, T: Element>(
    logits: &mut [T],
    shape: &[usize],
    target: impl Into<Targets<'t, T>>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    loss_out: &mut [T::Acc],
    grad_output: Option<&[T::Acc]>,
) -> Result<Option<T::Acc>> {
    let layout = Layout::new(shape, logits.len())?;
    let target = target.into();
    check_options(opts, &layout, &target)?;
    check_len(
        "loss_out",
        loss_out.len(),
        loss_len(&layout, opts.reduction),
    )?;
    check_grad_output(grad_output, &layout, opts.reduction)?;
    run_call(
        CallIo::InPlace(logits, grad_output),
        &layout,
        &target,
        opts,
        loss_out,
        RowOutputs::new(),
    )
}

/// Runs the plan of validated arguments and reduces its sums.
fn run<T: Element>(
    x: ConstPtr<T>,
    layout: &Layout,
    target: &Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    loss_out: &mut [T::Acc],
    grad: GradPtr<T>,
    grad_output: Option<&[T::Acc]>,
    accumulate: bool,
    out: RowOuts<T::Acc>,
) -> Option<T::Acc> {
    let reduction = opts.reduction;
    let dens = match target {
        Targets::Indices(idx) => {
            Denominators::of_indices(idx, layout.rows(), opts.ignore_index, opts.weight)
        }
        Targets::Probabilities(_) => Denominators {
            loss: layout.rows() as f64,
            z: layout.rows() as f64,
        },
    };
    let scale = match (reduction, grad_output) {
        (Reduction::None, Some(go)) => Scale::PerRow(go),
        _ => dens.uniform_scale(reduction, scalar_upstream(grad_output, reduction)),
    };
    let mut plan = plan(
        x,
        grad,
        layout.driver_dims(),
        target,
        opts,
        (0, layout.classes()),
    );
    plan.rows.scale = scale;
    plan.rows.accumulate = accumulate;
    plan.rows.loss_out = (reduction == Reduction::None).then(|| Ptr::new(loss_out));
    plan.rows.out = out;
    let (ce, z) = <T as Sealed>::run_cross_entropy(&plan);
    dens.finish(reduction, ce, z, opts.z_loss != 0.0, loss_out)
}

/// The denominators of a reduced cross-entropy: `D = Σ_{n∈M} w_{y_n}` for the loss
/// and `|M|` (the rows that count) for the z term.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Denominators {
    pub loss: f64,
    pub z: f64,
}

impl Denominators {
    /// Over the `rows` class-index targets (already validated).
    pub(crate) fn of_indices<A: Float>(
        idx: &ClassIndices<'_>,
        rows: usize,
        ignore_index: i64,
        weight: Option<&[A]>,
    ) -> Self {
        let Some(weight) = weight else {
            // Unweighted, D = |M|: a count (the sum of ones is exact anyway).
            let m = crate::kernels::scan::count_kept(idx, ignore_index) as f64;
            return Denominators { loss: m, z: m };
        };
        let mut d = CompensatedSum::default();
        let mut m = 0usize;
        for r in 0..rows {
            if let Some(y) = idx.class_at(r, ignore_index) {
                d.add(weight[y].to_f64());
                m += 1;
            }
        }
        Denominators {
            loss: d.value(),
            z: m as f64,
        }
    }

    /// The gradient scales shared by every row for upstream gradient `g`: `g/D` and
    /// `g/|M|` for mean, `g` otherwise.
    pub(crate) fn uniform_scale<'a, A: Float>(self, reduction: Reduction, g: f64) -> Scale<'a, A> {
        match reduction {
            Reduction::Mean => Scale::Uniform {
                ce: A::from_f64(g / self.loss),
                z: A::from_f64(g / self.z),
            },
            Reduction::Sum | Reduction::None => Scale::Uniform {
                ce: A::from_f64(g),
                z: A::from_f64(g),
            },
        }
    }

    /// Writes the reduced loss from the sums of the row losses (`ce`) and z terms
    /// (`z`; `0/0` is NaN as in PyTorch); returns the z term when z-loss is on.
    pub(crate) fn finish<A: Float>(
        self,
        reduction: Reduction,
        ce: f64,
        z: f64,
        with_z: bool,
        loss_out: &mut [A],
    ) -> Option<A> {
        let zterm = match reduction {
            Reduction::Mean => z / self.z,
            Reduction::Sum | Reduction::None => z,
        };
        let zpart = if with_z { zterm } else { 0.0 };
        match reduction {
            Reduction::None => {}
            Reduction::Sum => loss_out[0] = A::from_f64(ce + zpart),
            Reduction::Mean => loss_out[0] = A::from_f64(ce / self.loss + zpart),
        }
        with_z.then(|| A::from_f64(zterm))
    }
}

/// `W = Σ_c w_c` (or `C` without weights), compensated.
pub(crate) fn weight_sum<A: Float>(weight: Option<&[A]>, classes: usize) -> f64 {
    weight.map_or(classes as f64, |w| {
        let mut s = CompensatedSum::default();
        w.iter().for_each(|v| s.add(v.to_f64()));
        s.value()
    })
}

/// The fused kernel on a block of `rows × classes` logits whose targets are already
/// validated, with explicit gradient scales; the gradient (when `grad`) overwrites the
/// logits. Per-row losses (z term included) go to `row_loss`, the row outputs asked
/// for to `out` (indexed by the block's rows); returns the sums of
/// the losses without z terms and of the z terms. For callers that reduce across
/// blocks themselves (linear cross-entropy).
pub(crate) fn block_inplace<T: Element>(
    x: &mut [T],
    (rows, classes): (usize, usize),
    target: ClassIndices<'_>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    row_loss: &mut [T::Acc],
    grad: bool,
    scale: Scale<'_, T::Acc>,
    out: RowOuts<T::Acc>,
) -> (f64, f64) {
    let x = Ptr::new(x);
    let grad = if grad {
        GradPtr::Same(x)
    } else {
        GradPtr::None
    };
    let target = Targets::Indices(target);
    let mut plan = plan(
        x.as_const(),
        grad,
        (rows, classes, 1),
        &target,
        opts,
        (0, classes),
    );
    plan.rows.scale = scale;
    plan.rows.loss_out = Some(Ptr::new(row_loss));
    plan.rows.out = out;
    <T as Sealed>::run_cross_entropy(&plan)
}

/// The plan of a validated call on logits `x` of `(outer, classes, inner)`, whose
/// classes are `offset..offset + classes` of `global` (`(0, classes)` unsharded):
/// the options resolved once. Unit upstream scales, no per-row losses, an
/// overwritten gradient: the caller sets them.
pub(crate) fn plan<'a, T: Element>(
    x: ConstPtr<T>,
    grad: GradPtr<T>,
    (outer, classes, inner): (usize, usize, usize),
    target: &Targets<'a, T>,
    opts: &CrossEntropyOptions<'a, T::Acc>,
    (offset, global): (usize, usize),
) -> CePlan<'a, T> {
    let (idx, probs) = match *target {
        Targets::Indices(idx) => (Some((idx, opts.ignore_index)), None),
        Targets::Probabilities(t) => (None, Some(ConstPtr::new(t))),
    };
    let weight = opts.weight.map(|w| &w[offset..offset + classes]);
    let options = Options::new(opts.label_smoothing, opts.z_loss, opts.softcap, global)
        .scaled(opts.logit_scale);
    let weight_sum = weight_sum(opts.weight, global);
    CePlan {
        x,
        probs,
        grad,
        outer,
        inner,
        offset,
        rows: RowPlan::new(classes, options, idx, weight, weight_sum),
    }
}

pub(crate) fn check_options<T: Element>(
    opts: &CrossEntropyOptions<'_, T::Acc>,
    layout: &Layout,
    target: &Targets<'_, T>,
) -> Result<()> {
    check_scalars(opts)?;
    check_weight(opts.weight, layout)?;
    match target {
        Targets::Indices(idx) => check_indices(idx, layout, opts.ignore_index),
        Targets::Probabilities(t) => {
            if opts.ignore_index >= 0 {
                return Err(Error::IgnoreIndexWithProbabilities {
                    ignore_index: opts.ignore_index,
                });
            }
            if t.len() != layout.numel() {
                return Err(Error::TargetShape {
                    expected: layout.shape().to_vec(),
                    len: t.len(),
                });
            }
            Ok(())
        }
    }
}

/// Checks the scalar options: `label_smoothing`, `z_loss`, `softcap`.
pub(crate) fn check_scalars<A>(opts: &CrossEntropyOptions<'_, A>) -> Result<()> {
    let eps = opts.label_smoothing;
    // PyTorch treats a negative value as 0; we reject it with PyTorch's message.
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::LabelSmoothing { value: eps });
    }
    if !(opts.z_loss.is_finite() && opts.z_loss >= 0.0) {
        return Err(Error::InvalidArgument {
            name: "z_loss",
            value: opts.z_loss.to_string(),
            expected: "a finite number ≥ 0",
        });
    }
    if let Some(cap) = opts.softcap {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(Error::InvalidArgument {
                name: "softcap",
                value: cap.to_string(),
                expected: "a finite number > 0",
            });
        }
    }
    check_logit_scale(opts.logit_scale)?;
    check_denominator(opts.denominator, opts.reduction)
}

/// A validated call's logits, and where its gradient goes.
enum CallIo<'a, T: Element> {
    /// The logits are only read; the gradient, when asked for, goes to its buffer.
    Read(&'a [T], Option<GradOut<'a, T>>),
    /// The gradient (times this upstream gradient) overwrites the logits.
    InPlace(&'a mut [T], Option<&'a [T::Acc]>),
}

impl<'a, T: Element> CallIo<'a, T> {
    fn grad_output(&self) -> Option<&'a [T::Acc]> {
        match self {
            CallIo::Read(_, g) => g.as_ref().and_then(|g| g.grad_output),
            CallIo::InPlace(_, go) => *go,
        }
    }

    /// The fused pass on these buffers as they are, with `upstream` in place of the
    /// call's upstream gradient when given.
    fn run(
        self,
        layout: &Layout,
        target: &Targets<'_, T>,
        opts: &CrossEntropyOptions<'_, T::Acc>,
        loss_out: &mut [T::Acc],
        upstream: Option<&[T::Acc]>,
        out: RowOuts<T::Acc>,
    ) -> Option<T::Acc> {
        match self {
            CallIo::Read(input, grad) => {
                let (ptr, go, accumulate) = match grad {
                    Some(mut g) => (g.grad.ptr(), g.grad_output, g.mode == GradMode::Accumulate),
                    None => (GradPtr::None, None, false),
                };
                // The kernels only read the input here (the gradient is another buffer).
                let x = ConstPtr::new(input);
                run(
                    x,
                    layout,
                    target,
                    opts,
                    loss_out,
                    ptr,
                    upstream.or(go),
                    accumulate,
                    out,
                )
            }
            CallIo::InPlace(logits, go) => {
                let x = Ptr::new(logits);
                let grad = GradPtr::Same(x);
                run(
                    x.as_const(),
                    layout,
                    target,
                    opts,
                    loss_out,
                    grad,
                    upstream.or(go),
                    false,
                    out,
                )
            }
        }
    }
}

/// A validated call: its row outputs, then the fused pass, with the denominator of
/// `mean` applied around it. Without one (and without row outputs) it is the fused
/// pass alone; the kernels apply the logit scale as they load the logits.
///
/// The denominator `d` runs the pass as `sum` with the upstream gradient `g/d`, and
/// divides the summed loss and z term by `d`: the z term of the mean is then over
/// `d` too, not over the call's own row count.
fn run_call<T: Element>(
    io: CallIo<'_, T>,
    layout: &Layout,
    target: &Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    loss_out: &mut [T::Acc],
    mut rows: RowOutputs<'_, T::Acc>,
) -> Result<Option<T::Acc>> {
    let out = rows.ptrs();
    if opts.denominator.is_none() {
        return Ok(io.run(layout, target, opts, loss_out, None, out));
    }
    let mut core = *opts;
    core.denominator = None;
    let upstream = opts.denominator.map(|d| {
        core.reduction = Reduction::Sum;
        let g = scalar_upstream(io.grad_output(), Reduction::Mean);
        [T::Acc::from_f64(g / d)]
    });
    let upstream = upstream.as_ref().map(|u| &u[..]);
    let z = io.run(layout, target, &core, loss_out, upstream, out);
    let Some(d) = opts.denominator else {
        return Ok(z);
    };
    loss_out[0] = T::Acc::from_f64(loss_out[0].to_f64() / d);
    Ok(z.map(|z| T::Acc::from_f64(z.to_f64() / d)))
}
