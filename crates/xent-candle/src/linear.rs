//! `linear_cross_entropy` as a candle custom op: the loss of `h·Wᵀ (+ b)` and the
//! gradients for `h` and `W` without the `N × V` logits ever being stored.

use std::sync::{Arc, Mutex};

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape,
    Tensor,
};
use xent::{LinearCrossEntropyOptions, LinearGradOut, LinearInputs, RowOutputs};

use crate::options::CrossEntropyOptions;
use crate::stats::{self, RowStats, StatsBuffers, StatsSlot};
use crate::storage::{floats, is_index_dtype, to_candle};

/// Cross-entropy of the logits `h·Wᵀ + b` against class indices, as PyTorch's
/// `F.linear_cross_entropy(h, W, y, linear_bias=b, …)`, computed by
/// [`xent::linear_cross_entropy`] without storing the logits; `loss.backward()` gives
/// `∂loss/∂h`, `∂loss/∂W` (and `∂loss/∂b`).
///
/// - `hidden`: `(N, D)`, `weight`: `(V, D)`, both `f32` or both `f64`, on the CPU;
///   `bias`: `(V)` or `None` (when given, it is folded in as a last column of `W`
///   against a column of ones in `h`, so candle's autograd routes its gradient).
/// - `targets`: `(N)` class indices in any integer dtype.
/// - `options`: every cross-entropy option; the loss is a 0-d tensor for
///   `mean`/`sum`, `(N)` for `none`.
///
/// # Backward
/// When `hidden` or `weight` tracks gradients, the forward pass also writes `∂h` and
/// `∂W` for an upstream gradient of 1 and keeps them with the op; the backward scales
/// them by a scalar incoming gradient (the loss is linear in it), or reruns the fused
/// pass with a per-row incoming gradient for `none`.
///
/// # Errors
/// xent's errors with xent's message, operands of other dtypes or devices.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use xent_candle::{linear_cross_entropy, CrossEntropyOptions};
/// let dev = Device::Cpu;
/// let h = Var::new(&[[1.0f32, 0.0], [0.0, 1.0]], &dev)?;
/// let w = Var::new(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev)?;
/// let y = Tensor::new(&[2u32, 1], &dev)?;
/// let loss = linear_cross_entropy(h.as_tensor(), w.as_tensor(), None, &y,
///     &CrossEntropyOptions::default())?;
/// // Both rows have logits [1, 0, 1] up to order: loss = ln(2e + 1) − 1 for the first.
/// let e = 1f32.exp();
/// let want = ((2.0 * e + 1.0).ln() - 1.0 + (2.0 * e + 1.0).ln() - 1.0) / 2.0;
/// assert!((loss.to_scalar::<f32>()? - want).abs() < 1e-5);
/// let grads = loss.backward()?;
/// assert_eq!(grads.get(&w).unwrap().dims(), &[3, 2]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn linear_cross_entropy(
    hidden: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    targets: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<Tensor> {
    linear_op(hidden, weight, bias, targets, options, None)
}

/// [`linear_cross_entropy`] and the per-row outputs of the same fused pass: the loss
/// (with its backward) and a [`RowStats`] of detached `(N)` tensors for the logits
/// `h·Wᵀ + b` (after the options' logit scale and soft-cap), which are never stored.
///
/// # Errors
/// As [`linear_cross_entropy`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use xent_candle::{linear_cross_entropy_with_stats, CrossEntropyOptions};
/// let dev = Device::Cpu;
/// let h = Tensor::new(&[[1.0f32, 0.0], [0.0, 2.0]], &dev)?;
/// let w = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0], [0.0, 0.0]], &dev)?;
/// let y = Tensor::new(&[0u32, 1], &dev)?;
/// let (_, stats) = linear_cross_entropy_with_stats(&h, &w, None, &y,
///     &CrossEntropyOptions::default())?;
/// assert_eq!(stats.argmax.to_vec1::<i64>()?, [0, 1]); // logits [1, 0, 0] and [0, 2, 0]
/// let lse = stats.lse.to_vec1::<f32>()?;
/// assert!((lse[0] - (1f32.exp() + 2.0).ln()).abs() < 1e-6);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn linear_cross_entropy_with_stats(
    hidden: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    targets: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<(Tensor, RowStats)> {
    let slot = StatsSlot::default();
    let loss = linear_op(hidden, weight, bias, targets, options, Some(slot.clone()))?;
    Ok((loss, stats::take(&slot)?))
}

/// The op behind both public functions; `stats`, when given, receives the per-row
/// outputs of the forward pass.
fn linear_op(
    hidden: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    targets: &Tensor,
    options: &CrossEntropyOptions,
    stats: Option<StatsSlot>,
) -> Result<Tensor> {
    for (name, t) in [("hidden", hidden), ("weight", weight), ("targets", targets)] {
        if !t.device().is_cpu() {
            bail!(
                "xent: linear_cross_entropy runs on the CPU, got {name} on {:?}",
                t.device().location()
            )
        }
    }
    if !matches!(hidden.dtype(), DType::F32 | DType::F64) || weight.dtype() != hidden.dtype() {
        bail!(
            "xent: hidden and weight must both be f32 or both f64, got {:?} and {:?}",
            hidden.dtype(),
            weight.dtype()
        )
    }
    if !is_index_dtype(targets.dtype()) {
        bail!(
            "xent: linear_cross_entropy takes class indices, got {:?}",
            targets.dtype()
        )
    }
    let (hidden, weight) = match bias {
        None => (hidden.clone(), weight.clone()),
        Some(b) => {
            let n = hidden.dim(0)?;
            let ones = Tensor::ones((n, 1), hidden.dtype(), hidden.device())?;
            (
                Tensor::cat(&[hidden, &ones], 1)?,
                Tensor::cat(&[weight, &b.reshape((b.elem_count(), 1))?], 1)?,
            )
        }
    };
    let op = LinearOp {
        opts: Arc::new(options.clone()),
        save_grad: hidden.track_op() || weight.track_op(),
        saved: Mutex::new(None),
        stats,
    };
    hidden
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &targets.contiguous()?, op)
}

struct LinearOp {
    opts: Arc<CrossEntropyOptions>,
    save_grad: bool,
    /// `(∂h, ∂W)` for an upstream gradient of 1.
    saved: Mutex<Option<(Tensor, Tensor)>>,
    /// Where the forward pass leaves the per-row outputs, when they are asked for.
    stats: Option<StatsSlot>,
}

/// Targets as i64 (validated by xent).
fn indices(t: &Tensor) -> Result<Vec<i64>> {
    t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()
}

/// The loss, and `(∂h, ∂W)` when asked for.
type LossAndGrads<T> = (Vec<T>, Option<(Vec<T>, Vec<T>)>);

/// Runs the fused pass; returns the loss, and `(∂h, ∂W)` when `grads`; writes the
/// per-row outputs into `rows`.
#[allow(clippy::too_many_arguments)]
fn run<T: xent::Float + candle_core::WithDType>(
    h: &[T],
    (n, d): (usize, usize),
    w: &[T],
    v: usize,
    y: &[i64],
    opts: &CrossEntropyOptions,
    grads: bool,
    grad_output: Option<&[T]>,
    rows: RowOutputs<'_, T>,
) -> Result<LossAndGrads<T>> {
    let cw: Option<Vec<T>> = opts.weight_as::<T>();
    let lopts = LinearCrossEntropyOptions::from(opts.options(cw.as_deref()));
    let len = if opts.reduction == xent::Reduction::None {
        n
    } else {
        1
    };
    let mut loss = vec![<T as xent::Float>::from_f64(0.0); len];
    let inputs = LinearInputs::new(h, [n, d], w, [v, d]);
    if !grads {
        xent::linear_cross_entropy_stats_into(inputs, y, &lopts, &mut loss, None, rows)
            .map_err(to_candle)?;
        return Ok((loss, None));
    }
    // On huge pages when large, faulted in by the kernel's threads (xent::alloc).
    let mut dh = xent::alloc::zeroed_vec::<T>("grad hidden", &[n, d]).map_err(to_candle)?;
    let mut dw = xent::alloc::zeroed_vec::<T>("grad linear_weight", &[v, d]).map_err(to_candle)?;
    let mut out = LinearGradOut::new()
        .hidden(&mut dh[..])
        .linear_weight(&mut dw[..]);
    if let Some(go) = grad_output {
        out = out.grad_output(go);
    }
    xent::linear_cross_entropy_stats_into(inputs, y, &lopts, &mut loss, Some(out), rows)
        .map_err(to_candle)?;
    Ok((loss, Some((dh, dw))))
}

impl LinearOp {
    fn fwd<T: xent::Float + candle_core::WithDType>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        targets: Vec<i64>,
    ) -> Result<(CpuStorage, Shape)> {
        let (h, w) = (
            floats::<T>(s1, l1, "hidden")?,
            floats::<T>(s2, l2, "weight")?,
        );
        let (hd, wd) = (l1.dims(), l2.dims());
        if hd.len() != 2 || wd.len() != 2 {
            bail!("xent: hidden must be (N, D) and weight (V, D), got {hd:?} and {wd:?}")
        }
        let mut rows = match self.stats {
            Some(_) => Some(StatsBuffers::<T>::new(hd[0])?),
            None => None,
        };
        let outputs = rows
            .as_mut()
            .map_or_else(RowOutputs::new, StatsBuffers::outputs);
        let (loss, grads) = run(
            h,
            (hd[0], hd[1]),
            w,
            wd[0],
            &targets,
            &self.opts,
            self.save_grad,
            None,
            outputs,
        )?;
        if let (Some(slot), Some(rows)) = (&self.stats, rows) {
            rows.store(&Shape::from(hd[0]), slot)?;
        }
        if let Some((dh, dw)) = grads {
            let dh = Tensor::from_vec(dh, hd, &Device::Cpu)?;
            let dw = Tensor::from_vec(dw, wd, &Device::Cpu)?;
            *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = Some((dh, dw));
        }
        let shape = if self.opts.reduction == xent::Reduction::None {
            Shape::from(hd[0])
        } else {
            Shape::from(())
        };
        Ok((T::to_cpu_storage_owned(loss), shape))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "xent-linear-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = l3
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::msg("xent: targets must be contiguous"))?;
        let y: Vec<i64> = match s3 {
            CpuStorage::U8(v) => v[a..b].iter().map(|&t| t as i64).collect(),
            CpuStorage::U32(v) => v[a..b].iter().map(|&t| t as i64).collect(),
            CpuStorage::I16(v) => v[a..b].iter().map(|&t| t as i64).collect(),
            CpuStorage::I32(v) => v[a..b].iter().map(|&t| t as i64).collect(),
            CpuStorage::I64(v) => v[a..b].to_vec(),
            other => bail!(
                "xent: targets must be class indices, got {:?}",
                other.dtype()
            ),
        };
        match s1 {
            CpuStorage::F32(_) => self.fwd::<f32>(s1, l1, s2, l2, y),
            CpuStorage::F64(_) => self.fwd::<f64>(s1, l1, s2, l2, y),
            other => bail!("xent: hidden must be f32 or f64, got {:?}", other.dtype()),
        }
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        grad_loss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let (Some((dh, dw)), true) = (saved, self.opts.reduction != xent::Reduction::None) {
            // Mean and sum: the gradient is linear in the scalar upstream gradient.
            let g = grad_loss.to_dtype(dh.dtype())?;
            return Ok((
                Some(dh.broadcast_mul(&g)?),
                Some(dw.broadcast_mul(&g)?),
                None,
            ));
        }
        let y = indices(targets)?;
        let (n, d) = hidden.dims2()?;
        let v = weight.dim(0)?;
        let (dh, dw) = match hidden.dtype() {
            DType::F32 => {
                let go = grad_loss
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let (h, w) = (
                    hidden.flatten_all()?.to_vec1::<f32>()?,
                    weight.flatten_all()?.to_vec1::<f32>()?,
                );
                let (_, g) = run(
                    &h,
                    (n, d),
                    &w,
                    v,
                    &y,
                    &self.opts,
                    true,
                    Some(&go),
                    RowOutputs::new(),
                )?;
                let (dh, dw) = g.ok_or_else(|| candle_core::Error::msg("xent: no gradient"))?;
                (
                    Tensor::from_vec(dh, (n, d), &Device::Cpu)?,
                    Tensor::from_vec(dw, (v, d), &Device::Cpu)?,
                )
            }
            _ => {
                let go = grad_loss
                    .to_dtype(DType::F64)?
                    .flatten_all()?
                    .to_vec1::<f64>()?;
                let (h, w) = (
                    hidden.flatten_all()?.to_vec1::<f64>()?,
                    weight.flatten_all()?.to_vec1::<f64>()?,
                );
                let (_, g) = run(
                    &h,
                    (n, d),
                    &w,
                    v,
                    &y,
                    &self.opts,
                    true,
                    Some(&go),
                    RowOutputs::new(),
                )?;
                let (dh, dw) = g.ok_or_else(|| candle_core::Error::msg("xent: no gradient"))?;
                (
                    Tensor::from_vec(dh, (n, d), &Device::Cpu)?,
                    Tensor::from_vec(dw, (v, d), &Device::Cpu)?,
                )
            }
        };
        Ok((Some(dh), Some(dw), None))
    }
}
