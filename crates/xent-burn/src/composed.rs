//! The fallback: each loss in burn's composed tensor ops, differentiated by burn's own
//! autodiff. It runs on every backend (it is what GPU backends get) and is checked on
//! the CPU against xent's kernels (`Implementation::Composed`), with the same
//! semantics: PyTorch's, plus xent's z-loss and soft-capping. `bf16`/`f16` inputs are
//! computed in `f32`, as xent does.

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{DType, Int, Tensor};
use xent::{KlReduction, Reduction};

/// Rows of classes: `(C,)`, `(N, C)` and `(N, C, d1..dk)` become `(rows, C)` with the
/// rows in the order of the per-row loss (`n`, then `d1..dk`).
pub(crate) fn class_rows<const D: usize>(x: Tensor<D>) -> Tensor<2> {
    let dims = x.dims();
    match D {
        1 => x.reshape([1, dims[0]]),
        2 => x.reshape([dims[0], dims[1]]),
        _ => {
            let mut axes = [0isize; D];
            for (i, a) in axes.iter_mut().enumerate().take(D - 1).skip(1) {
                *a = i as isize + 1;
            }
            axes[D - 1] = 1;
            let c = dims[1];
            let rows = dims.iter().product::<usize>() / c.max(1);
            x.permute(axes).reshape([rows, c])
        }
    }
}

/// Widens `bf16`/`f16` to `f32` (the compute type); `f32`/`f64` stay.
pub(crate) fn compute_type<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match x.dtype() {
        DType::BF16 | DType::F16 => x.cast(DType::F32),
        _ => x,
    }
}

/// The cross-entropy options the composed path reads.
pub(crate) struct CeArgs<'a> {
    pub(crate) opts: &'a xent::CrossEntropyOptions<'static, f64>,
    pub(crate) weight: Option<Tensor<1>>,
}

/// Reduces per-row values `l` (`[R]`) with the denominator of `mean` (a constant).
///
/// A zero denominator (every row ignored, or no rows) gives a NaN loss with a zero
/// gradient, as PyTorch: the NaN is added as a constant and the sum is divided by 1,
/// since `0/0` in the graph would make every gradient NaN.
fn reduce(l: Tensor<1>, reduction: Reduction, denominator: Tensor<1>) -> Tensor<1> {
    match reduction {
        Reduction::None => l,
        Reduction::Sum => l.sum(),
        Reduction::Mean => {
            let d = denominator.detach();
            let empty = d.clone().equal_elem(0.0);
            let nan = d.clone().zeros_like().mask_fill(empty.clone(), f64::NAN);
            l.sum() / d.mask_fill(empty, 1.0) + nan
        }
    }
}

/// `logits` `(R, C)` in the compute type: soft-capped, with their `logsumexp` per row.
fn capped_lse(x: Tensor<2>, softcap: Option<f64>) -> (Tensor<2>, Tensor<2>) {
    let x = match softcap {
        Some(cap) => x.div_scalar(cap).tanh().mul_scalar(cap),
        None => x,
    };
    // The max cancels in the value and the gradient; detached, it adds no graph.
    let m = x.clone().max_dim(1).detach();
    let lse = m.clone() + (x.clone() - m).exp().sum_dim(1).log();
    (x, lse)
}

/// Cross-entropy with class-index targets: `x` `(R, C)`, `targets` `[R]`.
pub(crate) fn cross_entropy(x: Tensor<2>, targets: Tensor<1, Int>, a: &CeArgs) -> Tensor<1> {
    let [rows, classes] = x.dims();
    let dtype = x.dtype();
    let (x, lse) = capped_lse(x, a.opts.softcap);
    let logp = x - lse.clone();
    let keep = targets.clone().not_equal_elem(a.opts.ignore_index);
    let keep_f = keep.clone().float().cast(dtype);
    let safe = targets.mask_fill(keep.bool_not(), 0);
    let picked = logp
        .clone()
        .gather(1, safe.clone().reshape([rows, 1]))
        .reshape([rows]);
    let eps = a.opts.label_smoothing;
    let (w_y, smooth) = match &a.weight {
        Some(w) => {
            let w = w.clone().cast(dtype);
            let smooth = (logp * w.clone().reshape([1, classes]))
                .sum_dim(1)
                .reshape([rows]);
            (w.gather(0, safe), smooth)
        }
        None => (
            Tensor::<1>::ones([rows], &keep_f.device()).cast(dtype),
            logp.sum_dim(1).reshape([rows]),
        ),
    };
    let w_y = w_y * keep_f.clone();
    let mut l = -(picked * w_y.clone()).mul_scalar(1.0 - eps);
    if eps != 0.0 {
        l = l - (smooth * keep_f.clone()).mul_scalar(eps / classes as f64);
    }
    let mut loss = reduce(l, a.opts.reduction, w_y.sum());
    if a.opts.z_loss != 0.0 {
        let z = lse.reshape([rows]).powi_scalar(2).mul_scalar(a.opts.z_loss) * keep_f.clone();
        loss = loss + reduce(z, a.opts.reduction, keep_f.sum());
    }
    loss
}

/// Cross-entropy with probability targets `t`, both `(R, C)`.
pub(crate) fn cross_entropy_probs(x: Tensor<2>, t: Tensor<2>, a: &CeArgs) -> Tensor<1> {
    let [rows, classes] = x.dims();
    let dtype = x.dtype();
    let device = x.device();
    let (x, lse) = capped_lse(x, a.opts.softcap);
    let logp = x - lse.clone();
    let eps = a.opts.label_smoothing;
    let t = t
        .cast(dtype)
        .mul_scalar(1.0 - eps)
        .add_scalar(eps / classes as f64);
    let wt = match &a.weight {
        Some(w) => t * w.clone().cast(dtype).reshape([1, classes]),
        None => t,
    };
    let l = -(wt * logp).sum_dim(1).reshape([rows]);
    let count = || Tensor::<1>::from_floats([rows as f64], &device).cast(dtype);
    let mut loss = reduce(l, a.opts.reduction, count());
    if a.opts.z_loss != 0.0 {
        let z = lse.reshape([rows]).powi_scalar(2).mul_scalar(a.opts.z_loss);
        loss = loss + reduce(z, a.opts.reduction, count());
    }
    loss
}

/// Reduces elementwise values over all elements (`batchmean`: sum over dim-0 count).
fn reduce_all<const D: usize>(l: Tensor<D>, reduction: KlReduction) -> Tensor<1> {
    let n0 = l.dims().first().copied().unwrap_or(1).max(1) as f64;
    let n0 = if D == 0 { 1.0 } else { n0 };
    match reduction {
        KlReduction::None => l.flatten(0, D.saturating_sub(1)),
        KlReduction::Sum => l.sum(),
        KlReduction::Mean => l.mean(),
        KlReduction::BatchMean => l.sum().div_scalar(n0),
    }
}

/// A flat weight of `len` = all elements, the last dim, or 1, broadcast to `dims`.
fn broadcast<const D: usize>(w: Tensor<1>, dims: [usize; D]) -> Tensor<D> {
    let len = w.dims()[0];
    let numel: usize = dims.iter().product();
    if len == numel {
        w.reshape(dims)
    } else {
        let mut shape = [1usize; D];
        if len != 1 {
            shape[D - 1] = len;
        }
        w.reshape(shape).expand(dims)
    }
}

/// PyTorch's `binary_cross_entropy` with its log clamp at −100, and its gradient
/// `w·(p − y)/max(p·(1 − p), 1e−12)`, finite at `p ∈ {0, 1}` where differentiating the
/// clamped logs gives NaN: the value is a constant and `p·G − stop(p·G)` with a
/// constant `G` carries that gradient (zero in the forward value).
pub(crate) fn binary_cross_entropy<const D: usize>(
    p: Tensor<D>,
    y: Tensor<D>,
    weight: Option<Tensor<1>>,
    reduction: Reduction,
) -> Tensor<1> {
    let dims = p.dims();
    let dtype = p.dtype();
    let y = y.cast(dtype);
    let w = weight.map(|w| broadcast(w.cast(dtype), dims));
    let log_p = p.clone().log().clamp_min(-100.0);
    let log_1mp = p.clone().neg().log1p().clamp_min(-100.0);
    let mut value = -(y.clone() * log_p + y.clone().neg().add_scalar(1.0) * log_1mp);
    let q = p.clone() * p.clone().neg().add_scalar(1.0);
    let mut g = (p.clone() - y) / q.clamp_min(1e-12);
    if let Some(w) = w {
        value = value * w.clone();
        g = g * w;
    }
    let (value, g) = (value.detach(), g.detach());
    let carried = p * g;
    // x − stop(x) is exactly 0: added to the value last, it cannot round it away.
    let l = value + (carried.clone() - carried.detach());
    reduce_all(l, reduction.into())
}

/// PyTorch's `binary_cross_entropy_with_logits` with `weight` and `pos_weight`.
pub(crate) fn binary_cross_entropy_with_logits<const D: usize>(
    x: Tensor<D>,
    y: Tensor<D>,
    weight: Option<Tensor<1>>,
    pos_weight: Option<Tensor<1>>,
    reduction: Reduction,
) -> Tensor<1> {
    let dims = x.dims();
    let dtype = x.dtype();
    let y = y.cast(dtype);
    let coef = match pos_weight {
        // 1 + (pw − 1)·y
        Some(pw) => (broadcast(pw.cast(dtype), dims).sub_scalar(1.0) * y.clone()).add_scalar(1.0),
        None => Tensor::<D>::ones(dims, &x.device()).cast(dtype),
    };
    let mut l = y.neg().add_scalar(1.0) * x.clone() - coef * log_sigmoid(x);
    if let Some(w) = weight {
        l = l * broadcast(w.cast(dtype), dims);
    }
    reduce_all(l, reduction.into())
}

/// `t·ln t` with `0·ln 0 = 0` (PyTorch's `xlogy(t, t)`). Its gradient at `t = 0` is
/// `ln 1 + 1 = 1` here, where PyTorch's (and xent's) is `−∞`: the one place where the
/// composed path differs, for gradients w.r.t. a zero probability (KL's target, the
/// Jensen–Shannon arguments).
fn xlogx<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let zero = t.clone().equal_elem(0.0);
    // ln is taken of 1 where t = 0, so neither the value nor the gradient is NaN.
    let safe = t.clone().mask_fill(zero.clone(), 1.0);
    (t * safe.log()).mask_fill(zero, 0.0)
}

/// PyTorch's `kl_div(input = log q, target)`.
pub(crate) fn kl_div<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    opts: &xent::KlDivOptions,
) -> Tensor<1> {
    let target = target.cast(input.dtype());
    let l = if opts.log_target {
        target.clone().exp() * (target - input)
    } else {
        xlogx(target.clone()) - target * input
    };
    reduce_all(l, opts.reduction)
}

/// Jensen–Shannon divergence per row of `(R, C)` distributions given by their
/// log-probabilities (`logits = true`: log-softmax of the inputs) or probabilities.
pub(crate) fn js_div(a: Tensor<2>, b: Tensor<2>, logits: bool, reduction: Reduction) -> Tensor<1> {
    let [rows, _] = a.dims();
    let dtype = a.dtype();
    let device = a.device();
    let b = b.cast(dtype);
    let l = if logits {
        let (lp, lq) = (log_softmax(a, 1), log_softmax(b, 1));
        // ln m = ln(½(p + q)) from the log-probabilities, so that no exp underflows
        // into a ln 0; terms with p = 0 (q = 0) are 0, also where their log is −∞.
        let top = lp.clone().max_pair(lq.clone()).detach();
        let lm = (top.clone()
            + ((lp.clone() - top.clone()).exp() + (lq.clone() - top).exp()).log())
        .sub_scalar(core::f64::consts::LN_2);
        let term = |l: Tensor<2>| {
            let p = l.clone().exp();
            let zero = p.clone().equal_elem(0.0);
            (p * (l - lm.clone())).mask_fill(zero, 0.0)
        };
        term(lp) + term(lq)
    } else {
        let m = (a.clone() + b.clone()).mul_scalar(0.5);
        // Σ p·ln m + Σ q·ln m = Σ (p + q)·ln m = 2·Σ m·ln m, with 0·ln 0 = 0.
        xlogx(a) + xlogx(b) - xlogx(m).mul_scalar(2.0)
    };
    let l = l.sum_dim(1).reshape([rows]).mul_scalar(0.5);
    let rows_t = Tensor::<1>::from_floats([rows as f64], &device).cast(dtype);
    reduce(l, reduction, rows_t)
}
