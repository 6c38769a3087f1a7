//! `kl_div` (elementwise, as PyTorch's) and the Jensen–Shannon divergence over the
//! class dim, from probabilities or from logits, with gradients for both arguments.

use super::elementwise::{
    check_grad_out, check_shape, check_target_len, check_unit_interval, grad_parts, ln_1p,
    Pointwise, Reduce,
};
use super::{check_len, GradOut, Loss};
use crate::driver::blocks::Blocks;
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::kernels::f64_path::{max_sumexp, put};
use crate::kernels::pointwise::PointOp;
use crate::kernels::RowAt;
use crate::layout::Layout;
use crate::options::Reduction;
use crate::reduce::CompensatedSum;

/// How [`kl_div`] combines its elementwise losses, as PyTorch's `reduction` of
/// `F.kl_div`: `batchmean` (the sum over the batch size, dim 0) is the one that equals
/// the mathematical KL divergence per sample; `mean` divides by every element.
///
/// ```
/// use xent::{KlReduction, Reduction};
/// assert_eq!("batchmean".parse::<KlReduction>()?, KlReduction::BatchMean);
/// assert_eq!(KlReduction::from(Reduction::Sum), KlReduction::Sum);
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KlReduction {
    /// One loss per element, in the input's shape.
    None,
    /// The sum over all elements divided by their number (PyTorch's default).
    #[default]
    Mean,
    /// The sum over all elements.
    Sum,
    /// The sum divided by the batch size `shape[0]` (1 for a 0-d input).
    BatchMean,
}

impl From<Reduction> for KlReduction {
    fn from(r: Reduction) -> Self {
        match r {
            Reduction::None => KlReduction::None,
            Reduction::Mean => KlReduction::Mean,
            Reduction::Sum => KlReduction::Sum,
        }
    }
}

impl core::str::FromStr for KlReduction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(KlReduction::None),
            "mean" => Ok(KlReduction::Mean),
            "sum" => Ok(KlReduction::Sum),
            "batchmean" => Ok(KlReduction::BatchMean),
            _ => Err(Error::InvalidArgument {
                name: "reduction",
                value: s.to_string(),
                expected: "one of none, mean, sum, batchmean",
            }),
        }
    }
}

/// Options of [`kl_div`]: PyTorch's `reduction` and `log_target`.
///
/// ```
/// use xent::{KlDivOptions, KlReduction};
/// let opts = KlDivOptions::default().reduction(KlReduction::BatchMean).log_target(true);
/// assert!(opts.log_target);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KlDivOptions {
    /// How elements are combined (default mean, as PyTorch).
    pub reduction: KlReduction,
    /// The target is given as log-probabilities (default false: probabilities).
    pub log_target: bool,
}

impl KlDivOptions {
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: KlReduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// Sets whether the target holds log-probabilities.
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.log_target = log_target;
        self
    }
}

fn kl_reduce(reduction: KlReduction, shape: &[usize], numel: usize) -> Reduce {
    let (none, denom) = match reduction {
        KlReduction::None => (true, 1.0),
        KlReduction::Sum => (false, 1.0),
        KlReduction::Mean => (false, numel as f64),
        KlReduction::BatchMean => (false, shape.first().map_or(1.0, |&n| n as f64)),
    };
    Reduce { none, denom }
}

/// The Kullback–Leibler divergence loss of log-probabilities `input` (`log q`) against
/// `target`, elementwise over any shape, as PyTorch's `F.kl_div`.
///
/// `l_i = t_i·ln t_i − t_i·input_i` with `0·ln 0 = 0` (PyTorch's `xlogy`), or with
/// `log_target`, `l_i = e^{t_i}·(t_i − input_i)`. Summed over a distribution's entries
/// and averaged over the batch (`batchmean`) it is `KL(T‖Q)`. A negative target gives
/// NaN, as in PyTorch.
///
/// # Errors
/// [`Error::BadShape`] when `shape` does not match `input`; [`Error::TargetShape`]
/// for a target of another size.
///
/// ```
/// use xent::{kl_div, KlDivOptions, KlReduction};
/// let logq = [0.5f64.ln(), 0.5f64.ln()];
/// let opts = KlDivOptions::default().reduction(KlReduction::BatchMean);
/// let loss = kl_div(&logq, &[1, 2], &[1.0, 0.0], &opts)?; // zero target: 0·ln 0 = 0
/// assert!((loss.item().unwrap() - std::f64::consts::LN_2).abs() < 1e-15);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn kl_div<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &KlDivOptions,
) -> Result<Loss<T>> {
    let numel = check_shape(shape, input.len())?;
    let red = kl_reduce(opts.reduction, shape, numel);
    let mut out = crate::alloc::zeroed_vec("loss", &red.loss_shape(shape))?;
    kl_div_into(input, shape, target, opts, &mut out, None, None)?;
    Ok(Loss::new(out, red.loss_shape(shape)))
}

/// [`kl_div`] and its gradients (upstream gradient 1, or all 1 for `none`): returns
/// `(loss, ∂loss/∂input, ∂loss/∂target)`.
///
/// `∂l_i/∂input_i = −t_i` and `∂l_i/∂t_i = ln t_i + 1 − input_i`; with `log_target`,
/// `−e^{t_i}` and `e^{t_i}·(t_i − input_i + 1)`; each times `1/denominator` for
/// `mean`/`batchmean`. At `t_i = 0` the target gradient is `−∞` (the one-sided limit),
/// where PyTorch's `xlogy` backward gives `0/0 = NaN`.
///
/// # Errors
/// As [`kl_div`].
///
/// ```
/// use xent::{kl_div_with_grad, KlDivOptions, KlReduction};
/// let opts = KlDivOptions::default().reduction(KlReduction::Sum);
/// let (_, gi, gt) = kl_div_with_grad(&[-1.0f64, -0.5], &[2], &[0.25, 0.75], &opts)?;
/// assert_eq!(gi, [-0.25, -0.75]);
/// assert!((gt[0] - (0.25f64.ln() + 2.0)).abs() < 1e-15);
/// # Ok::<(), xent::Error>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn kl_div_with_grad<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &KlDivOptions,
) -> Result<(Loss<T>, Vec<T>, Vec<T>)> {
    let numel = check_shape(shape, input.len())?;
    let red = kl_reduce(opts.reduction, shape, numel);
    let mut out = crate::alloc::zeroed_vec("loss", &red.loss_shape(shape))?;
    let mut gi = crate::alloc::zeroed_vec("grad_input", shape)?;
    let mut gt = crate::alloc::zeroed_vec("grad_target", shape)?;
    kl_div_into(
        input,
        shape,
        target,
        opts,
        &mut out,
        Some(GradOut::new(&mut gi)),
        Some(GradOut::new(&mut gt)),
    )?;
    Ok((Loss::new(out, red.loss_shape(shape)), gi, gt))
}

/// The fused core of [`kl_div`]: the loss into `loss_out` (1 element, or the input's
/// size for `none`), and when given, `∂loss/∂input` into `grad_input.grad` and
/// `∂loss/∂target` into `grad_target.grad`, each times its own upstream gradient
/// (normally the same one) and overwriting or accumulating. Validates everything
/// before writing anything.
///
/// # Errors
/// As [`kl_div`], plus [`Error::OutputLength`] / [`Error::GradOutputShape`] for
/// buffers of the wrong size.
///
/// ```
/// use xent::{kl_div_into, GradOut, KlDivOptions, KlReduction};
/// let opts = KlDivOptions::default().reduction(KlReduction::None).log_target(true);
/// let (mut loss, mut gi) = ([0.0f32; 2], [0.0f32; 2]);
/// kl_div_into(&[-1.0, 0.0], &[2], &[0.0, 0.0], &opts, &mut loss,
///     Some(GradOut::new(&mut gi)), None)?;
/// assert_eq!(loss, [1.0, 0.0]); // e^0·(0 − (−1)), e^0·(0 − 0)
/// assert_eq!(gi, [-1.0, -1.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn kl_div_into<T: Float>(
    input: &[T],
    shape: &[usize],
    target: &[T],
    opts: &KlDivOptions,
    loss_out: &mut [T],
    grad_input: Option<GradOut<'_, T>>,
    grad_target: Option<GradOut<'_, T>>,
) -> Result<()> {
    let numel = check_shape(shape, input.len())?;
    check_target_len(shape, target.len(), numel)?;
    let red = kl_reduce(opts.reduction, shape, numel);
    check_len("loss_out", loss_out.len(), red.loss_len(numel))?;
    let loss_shape = red.loss_shape(shape);
    if let Some(g) = &grad_input {
        check_grad_out("grad_input", g, numel, &loss_shape, red.loss_len(numel))?;
    }
    if let Some(g) = &grad_target {
        check_grad_out("grad_target", g, numel, &loss_shape, red.loss_len(numel))?;
    }
    Pointwise {
        op: PointOp::Kl {
            log_target: opts.log_target,
        },
        a: input,
        b: target,
        w: None,
        pw: None,
        red,
    }
    .run(loss_out, grad_parts(grad_input), grad_parts(grad_target));
    Ok(())
}

/// A gradient output of the divergence: its buffer (if any), upstream gradient and
/// accumulate flag.
fn split<T: Float>(g: Option<GradOut<'_, T>>) -> (Option<&mut [T]>, Option<&[T]>, bool) {
    match g.map(GradOut::into_parts) {
        Some((buf, go, acc)) => (Some(buf), go, acc),
        None => (None, None, false),
    }
}

/// Options of [`js_div`] and [`js_div_with_logits`]: the reduction over rows.
///
/// ```
/// use xent::{JsDivOptions, Reduction};
/// let opts = JsDivOptions::default().reduction(Reduction::None);
/// assert_eq!(opts.reduction, Reduction::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JsDivOptions {
    /// How rows are combined (default mean over rows: the divergence per sample).
    pub reduction: Reduction,
}

impl JsDivOptions {
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
}

fn js_reduce(reduction: Reduction, layout: &Layout) -> Reduce {
    match reduction {
        Reduction::None => Reduce {
            none: true,
            denom: 1.0,
        },
        Reduction::Sum => Reduce {
            none: false,
            denom: 1.0,
        },
        Reduction::Mean => Reduce {
            none: false,
            denom: layout.rows() as f64,
        },
    }
}

/// Which form the two arguments of the Jensen–Shannon driver are in.
#[derive(Clone, Copy, PartialEq)]
enum JsInput {
    Probabilities,
    Logits,
}

/// The Jensen–Shannon divergence between rows of probabilities `p` and `q` (both of
/// shape `shape`, classes on dim 1, or dim 0 of a `(C,)` input; `(N, C, d1..dk)` is
/// `N·d1⋯dk` rows as for [`crate::cross_entropy`]), in nats.
///
/// Per row `JS(P‖Q) = ½·KL(P‖M) + ½·KL(Q‖M)`, `M = ½(P + Q)`, with `0·ln 0 = 0`;
/// `0 ≤ JS ≤ ln 2`, symmetric. Rows are not renormalised. `mean` averages over rows.
///
/// # Errors
/// Shape errors ([`Error::BadShape`], [`Error::NoClasses`], [`Error::TargetShape`]
/// for a `q` of another size), and [`Error::ValueOutOfRange`] naming the first `p`,
/// then `q`, element outside `[0, 1]` (NaN included) and its index.
///
/// ```
/// use xent::{js_div, JsDivOptions};
/// let loss = js_div(&[1.0f64, 0.0], &[2], &[0.0, 1.0], &JsDivOptions::default())?;
/// assert!((loss.item().unwrap() - std::f64::consts::LN_2).abs() < 1e-15); // disjoint: ln 2
/// # Ok::<(), xent::Error>(())
/// ```
pub fn js_div<T: Float>(p: &[T], shape: &[usize], q: &[T], opts: &JsDivOptions) -> Result<Loss<T>> {
    js_alloc(p, shape, q, opts, JsInput::Probabilities, false).map(|(l, _, _)| l)
}

/// [`js_div`] and its gradients w.r.t. both arguments: returns `(loss, ∂/∂p, ∂/∂q)`.
///
/// `∂JS/∂p_c = ½·ln(p_c/m_c)` and `∂JS/∂q_c = ½·ln(q_c/m_c)` (the arguments taken as
/// free, not constrained to the simplex), times `1/rows` for mean. Where `p_c = 0 < q_c`
/// the gradient is `−∞` (the one-sided limit); where `p_c = q_c = 0` it is `½·ln 2`,
/// the limit along the boundary.
///
/// # Errors
/// As [`js_div`].
///
/// ```
/// use xent::{js_div_with_grad, JsDivOptions};
/// let (loss, gp, gq) = js_div_with_grad(&[0.5f64, 0.5], &[2], &[0.5, 0.5],
///     &JsDivOptions::default())?;
/// assert_eq!((loss.item(), gp, gq), (Some(0.0), vec![0.0; 2], vec![0.0; 2]));
/// # Ok::<(), xent::Error>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn js_div_with_grad<T: Float>(
    p: &[T],
    shape: &[usize],
    q: &[T],
    opts: &JsDivOptions,
) -> Result<(Loss<T>, Vec<T>, Vec<T>)> {
    js_alloc(p, shape, q, opts, JsInput::Probabilities, true)
}

/// The fused core of [`js_div`]: the loss into `loss_out` (1 element, or one per row
/// for `none`) and, when given, the gradients w.r.t. `p` and `q` into `grad_p.grad` and
/// `grad_q.grad`, each times its own upstream gradient, overwriting or accumulating.
/// Validates everything before writing anything.
///
/// # Errors
/// As [`js_div`], plus [`Error::OutputLength`] / [`Error::GradOutputShape`] for
/// buffers of the wrong size.
///
/// ```
/// use xent::{js_div_into, GradOut, JsDivOptions, Reduction};
/// let opts = JsDivOptions::default().reduction(Reduction::None);
/// let (mut loss, mut gp) = ([0.0f32; 2], [0.0f32; 4]);
/// js_div_into(&[1.0, 0.0, 0.5, 0.5], &[2, 2], &[0.0, 1.0, 0.5, 0.5], &opts, &mut loss,
///     Some(GradOut::new(&mut gp)), None)?;
/// assert_eq!(loss, [std::f32::consts::LN_2, 0.0]);
/// assert_eq!(gp[1], f32::NEG_INFINITY);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn js_div_into<T: Float>(
    p: &[T],
    shape: &[usize],
    q: &[T],
    opts: &JsDivOptions,
    loss_out: &mut [T],
    grad_p: Option<GradOut<'_, T>>,
    grad_q: Option<GradOut<'_, T>>,
) -> Result<()> {
    js_driver(
        p,
        shape,
        q,
        opts,
        JsInput::Probabilities,
        loss_out,
        grad_p,
        grad_q,
    )
}

/// The Jensen–Shannon divergence between `softmax(a)` and `softmax(b)` over the class
/// dim (layouts as [`js_div`]), in nats, computed from log-softmax without forming
/// `ln` of an underflowed probability.
///
/// With `ℓp = log_softmax(a)`, `ℓq = log_softmax(b)` and `d = ℓp − ℓq`:
/// `ln(p/m) = ln 2 − softplus(−d)`, `ln(q/m) = ln 2 − softplus(d)`, and per row
/// `JS = ½·Σ_c [p_c·ln(p_c/m_c) + q_c·ln(q_c/m_c)]`.
///
/// # Errors
/// Shape errors ([`Error::BadShape`], [`Error::NoClasses`], [`Error::TargetShape`]
/// for a `b` of another size).
///
/// ```
/// use xent::{js_div_with_logits, JsDivOptions};
/// let loss = js_div_with_logits(&[1e4f32, 0.0], &[2], &[0.0, 1e4], &JsDivOptions::default())?;
/// assert!((loss.item().unwrap() - std::f32::consts::LN_2).abs() < 1e-7);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn js_div_with_logits<T: Float>(
    a: &[T],
    shape: &[usize],
    b: &[T],
    opts: &JsDivOptions,
) -> Result<Loss<T>> {
    js_alloc(a, shape, b, opts, JsInput::Logits, false).map(|(l, _, _)| l)
}

/// [`js_div_with_logits`] and its gradients w.r.t. both logit arguments: returns
/// `(loss, ∂/∂a, ∂/∂b)` with
/// `∂JS/∂a_j = ½·p_j·(ln(p_j/m_j) − KL(P‖M))` and
/// `∂JS/∂b_j = ½·q_j·(ln(q_j/m_j) − KL(Q‖M))`, times `1/rows` for mean.
///
/// # Errors
/// As [`js_div_with_logits`].
///
/// ```
/// use xent::{js_div_with_logits_with_grad as js, JsDivOptions};
/// let (loss, ga, gb) = js(&[1.0f64, 2.0, 3.0], &[3], &[3.0, 2.0, 1.0], &JsDivOptions::default())?;
/// assert!(loss.item().unwrap() > 0.0);
/// assert!(ga.iter().sum::<f64>().abs() < 1e-15); // softmax gradients sum to 0
/// assert!((ga[0] - gb[2]).abs() < 1e-15);       // symmetry: b is a reversed
/// # Ok::<(), xent::Error>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn js_div_with_logits_with_grad<T: Float>(
    a: &[T],
    shape: &[usize],
    b: &[T],
    opts: &JsDivOptions,
) -> Result<(Loss<T>, Vec<T>, Vec<T>)> {
    js_alloc(a, shape, b, opts, JsInput::Logits, true)
}

/// The fused core of [`js_div_with_logits`]; buffers as [`js_div_into`].
///
/// # Errors
/// As [`js_div_with_logits`], plus [`Error::OutputLength`] /
/// [`Error::GradOutputShape`] for buffers of the wrong size.
///
/// ```
/// use xent::{js_div_with_logits_into, GradMode, GradOut, JsDivOptions};
/// let (mut loss, mut ga, mut gb) = ([0.0f64], [1.0f64; 2], [0.0f64; 2]);
/// js_div_with_logits_into(&[0.0, 0.0], &[2], &[5.0, 5.0], &JsDivOptions::default(),
///     &mut loss, Some(GradOut::new(&mut ga).mode(GradMode::Accumulate)),
///     Some(GradOut::new(&mut gb)))?;
/// assert_eq!((loss[0], ga, gb), (0.0, [1.0; 2], [0.0; 2])); // equal distributions
/// # Ok::<(), xent::Error>(())
/// ```
pub fn js_div_with_logits_into<T: Float>(
    a: &[T],
    shape: &[usize],
    b: &[T],
    opts: &JsDivOptions,
    loss_out: &mut [T],
    grad_a: Option<GradOut<'_, T>>,
    grad_b: Option<GradOut<'_, T>>,
) -> Result<()> {
    js_driver(a, shape, b, opts, JsInput::Logits, loss_out, grad_a, grad_b)
}

#[allow(clippy::type_complexity)]
fn js_alloc<T: Float>(
    p: &[T],
    shape: &[usize],
    q: &[T],
    opts: &JsDivOptions,
    kind: JsInput,
    with_grad: bool,
) -> Result<(Loss<T>, Vec<T>, Vec<T>)> {
    let layout = Layout::new(shape, p.len())?;
    let red = js_reduce(opts.reduction, &layout);
    let mut out = crate::alloc::zeroed_vec("loss", &row_loss_shape(&layout, red))?;
    let (mut gp, mut gq) = if with_grad {
        (
            crate::alloc::zeroed_vec("grad_p", shape)?,
            crate::alloc::zeroed_vec("grad_q", shape)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let (go_p, go_q) = if with_grad {
        (
            Some(GradOut::new(&mut gp[..])),
            Some(GradOut::new(&mut gq[..])),
        )
    } else {
        (None, None)
    };
    js_driver(p, shape, q, opts, kind, &mut out, go_p, go_q)?;
    Ok((Loss::new(out, row_loss_shape(&layout, red)), gp, gq))
}

fn row_loss_shape(layout: &Layout, red: Reduce) -> Vec<usize> {
    if red.none {
        layout.row_shape()
    } else {
        Vec::new()
    }
}

#[allow(clippy::too_many_arguments)]
fn js_driver<T: Float>(
    p: &[T],
    shape: &[usize],
    q: &[T],
    opts: &JsDivOptions,
    kind: JsInput,
    loss_out: &mut [T],
    grad_p: Option<GradOut<'_, T>>,
    grad_q: Option<GradOut<'_, T>>,
) -> Result<()> {
    let layout = Layout::new(shape, p.len())?;
    check_target_len(shape, q.len(), p.len())?;
    if kind == JsInput::Probabilities {
        check_unit_interval("p", p, shape)?;
        check_unit_interval("q", q, shape)?;
    }
    let red = js_reduce(opts.reduction, &layout);
    let rows = layout.rows();
    check_len("loss_out", loss_out.len(), red.loss_len(rows))?;
    let loss_shape = row_loss_shape(&layout, red);
    for (name, g) in [("grad_p", &grad_p), ("grad_q", &grad_q)] {
        if let Some(g) = g {
            check_grad_out(name, g, p.len(), &loss_shape, red.loss_len(rows))?;
        }
    }
    let (gp, go_p, acc_p) = split(grad_p);
    let (gq, go_q, acc_q) = split(grad_q);
    let (outer, c, inner) = (layout.outer(), layout.classes(), layout.inner());
    // Blocks of whole `outer` indices: a block's rows (`inner` per index) and their
    // classes are one contiguous region of every buffer.
    let span = c * inner;
    let loss_rows = if red.none { Some(&mut *loss_out) } else { None };
    let bufs = [(loss_rows, inner), (gp, span), (gq, span)];
    let sums =
        Blocks::of_rows(outer, c, inner).map_mut(bufs, |range, [mut loss, mut gp, mut gq]| {
            let (p, q) = (
                &p[range.start * span..range.end * span],
                &q[range.start * span..range.end * span],
            );
            let mut total = CompensatedSum::default();
            for local in 0..range.len() * inner {
                // Row `r` of the call is row `local` of the block.
                let r = range.start * inner + local;
                let row = RowAt {
                    off: (local / inner) * span + local % inner,
                    stride: inner,
                    len: c,
                };
                let l = match kind {
                    JsInput::Probabilities => {
                        let l = js_prob_row(p, q, row);
                        if let Some(g) = gp.as_deref_mut() {
                            js_prob_grad_row(p, q, row, red.scale::<T>(go_p, r), g, acc_p);
                        }
                        if let Some(g) = gq.as_deref_mut() {
                            js_prob_grad_row(q, p, row, red.scale::<T>(go_q, r), g, acc_q);
                        }
                        l
                    }
                    JsInput::Logits => {
                        let ga = gp
                            .as_deref_mut()
                            .map(|g| (g, red.scale::<T>(go_p, r), acc_p));
                        let gb = gq
                            .as_deref_mut()
                            .map(|g| (g, red.scale::<T>(go_q, r), acc_q));
                        js_logits_row(p, q, row, ga, gb)
                    }
                };
                if let Some(loss) = loss.as_deref_mut() {
                    loss[local] = l;
                }
                total.add(l.to_f64());
            }
            total
        });
    let total = sums
        .into_iter()
        .fold(CompensatedSum::default(), |mut total, part| {
            total.merge(part);
            total
        });
    red.finish(loss_out, total);
    Ok(())
}

// ---- row kernels: no checks, no allocation ----

/// `ln(2x/(x + y))`, one log of a ratio instead of the difference of two logs: as
/// `log1p((x − y)/(x + y))` while the ratio is near 1 (where `ln` of the rounded ratio
/// would lose the small result's digits), as `ln(2x/(x + y))` otherwise (where
/// `1 + r` would cancel). `ln 2` where `x = y = 0` (the limit along `y = 0`).
#[inline]
fn ln_ratio_to_mid<T: Float>(x: T, y: T) -> T {
    let sum = x + y;
    if sum == T::ZERO {
        return T::from_f64(core::f64::consts::LN_2);
    }
    let r = (x - y) / sum;
    let half = T::from_f64(0.5);
    if r < half && r > -half {
        ln_1p(r)
    } else {
        ((x + x) / sum).ln()
    }
}

#[inline]
fn js_prob_row<T: Float>(p: &[T], q: &[T], row: RowAt) -> T {
    let half = T::from_f64(0.5);
    let mut acc = T::ZERO;
    for c in 0..row.len {
        let (pc, qc) = (p[row.at(c)], q[row.at(c)]);
        // 0·ln 0 = 0: a zero entry contributes nothing (its log ratio is −∞).
        if pc != T::ZERO {
            acc += pc * ln_ratio_to_mid(pc, qc);
        }
        if qc != T::ZERO {
            acc += qc * ln_ratio_to_mid(qc, pc);
        }
    }
    half * acc
}

#[inline]
fn js_prob_grad_row<T: Float>(x: &[T], y: &[T], row: RowAt, s: T, g: &mut [T], acc: bool) {
    let half = T::from_f64(0.5);
    for c in 0..row.len {
        let i = row.at(c);
        put(g, i, s * half * ln_ratio_to_mid(x[i], y[i]), acc);
    }
}

/// `softplus(z) = ln(1 + e^z) = max(z, 0) + log1p(e^{−|z|})`.
#[inline]
fn softplus<T: Float>(z: T) -> T {
    let pos = if z > T::ZERO { z } else { T::ZERO };
    let neg_abs = if z > T::ZERO { -z } else { z };
    pos + ln_1p(neg_abs.exp())
}

/// One row of JS from logits; returns the row's divergence and writes the gradients.
#[inline]
fn js_logits_row<T: Float>(
    a: &[T],
    b: &[T],
    row: RowAt,
    ga: Option<(&mut [T], T, bool)>,
    gb: Option<(&mut [T], T, bool)>,
) -> T {
    let ln2 = T::from_f64(core::f64::consts::LN_2);
    let half = T::from_f64(0.5);
    let (ma, sa) = max_sumexp(a, row);
    let (mb, sb) = max_sumexp(b, row);
    let (lsa, lsb) = (sa.ln(), sb.ln());
    // Per class: (p, ln(p/m), q, ln(q/m)).
    let terms = |c: usize| {
        let i = row.at(c);
        let lp = (a[i] - ma) - lsa;
        let lq = (b[i] - mb) - lsb;
        let d = lp - lq;
        (lp.exp(), ln2 - softplus(-d), lq.exp(), ln2 - softplus(d))
    };
    // 0·ln 0 = 0: an underflowed (or −∞-logit) probability contributes nothing.
    let xlog = |p: T, u: T| if p == T::ZERO { T::ZERO } else { p * u };
    let (mut kl_p, mut kl_q) = (T::ZERO, T::ZERO);
    for c in 0..row.len {
        let (p, up, q, uq) = terms(c);
        kl_p += xlog(p, up);
        kl_q += xlog(q, uq);
    }
    for (g, kl, second) in [(ga, kl_p, false), (gb, kl_q, true)] {
        if let Some((g, s, acc)) = g {
            for c in 0..row.len {
                let (p, up, q, uq) = terms(c);
                let (x, u) = if second { (q, uq) } else { (p, up) };
                let v = if x == T::ZERO {
                    T::ZERO
                } else {
                    s * half * x * (u - kl)
                };
                put(g, row.at(c), v, acc);
            }
        }
    }
    half * (kl_p + kl_q)
}
