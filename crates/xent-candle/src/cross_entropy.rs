//! `cross_entropy` as a candle custom op whose backward is xent's fused gradient.

use std::sync::{Arc, Mutex};

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Result,
    Shape, Tensor, WithDType,
};
use xent::{GradOut, RowOutputs};

use crate::options::CrossEntropyOptions;
use crate::stats::{self, RowStats, StatsBuffers, StatsSlot};
use crate::storage::{acc_dtype, floats, is_index_dtype, loss_shape, targets, to_candle};

/// Softmax cross-entropy of `logits` against `targets`, as PyTorch's
/// `F.cross_entropy(logits, targets, weight, ignore_index, reduction, label_smoothing)`,
/// computed by xent's fused kernels, with a backward that is xent's exact gradient.
///
/// - `logits`: `(C,)`, `(N, C)` or `(N, C, d1..dk)`, classes on dim 1; `f32`, `f64`,
///   `bf16` or `f16` on the CPU. Any layout (a non-contiguous tensor is copied once).
/// - `targets`: class indices of shape `(N)` / `(N, d1..dk)` / `()` in any integer
///   dtype (`u8`, `u32`, `i16`, `i32`, `i64`), or probabilities of the logits' shape in
///   a float dtype (converted to the logits' dtype).
/// - returns a 0-d tensor for `mean`/`sum`, the per-row loss for `none`; in `f64` for
///   `f64` logits and in `f32` otherwise (`bf16`/`f16` are computed in `f32`, as xent).
///
/// With `ℓ = log_softmax(x)`: `l_n = (1−ε)·(−w_{y_n}·ℓ_{n,y_n}) + (ε/C)·(−Σ_c w_c·ℓ_{n,c})`,
/// `mean` dividing by `Σ_{n∈M} w_{y_n}` over the rows not ignored (or by the options'
/// `denominator` when set); `x` is `softcap(logit_scale·x)` when those are set. The
/// gradient is
/// `∂loss/∂x_{n,j} = s_n·[(1−ε)·w_{y_n}·(p_{n,j} − δ_{j,y_n}) + (ε/C)·(W·p_{n,j} − w_j)]`
/// times the incoming gradient (see [`xent::cross_entropy`] for probabilities, z-loss
/// and soft-capping).
///
/// # Backward
/// When `logits` tracks gradients (a [`candle_core::Var`] or a tensor computed from
/// one), the forward pass is xent's fused pass that also writes the gradient for an
/// upstream gradient of 1, kept with the op until the loss tensor is dropped. The
/// backward returns it as is when the incoming gradient is all ones — the usual
/// `loss.backward()` — so forward and backward together read the logits once. Any
/// other incoming gradient (a scaled loss, a weighted sum of `none` losses) runs the
/// fused pass again with that gradient as xent's `grad_output`. No gradient flows to
/// `targets`.
///
/// # Errors
/// xent's errors with xent's message (a target out of `[0, C)`, a weight of the wrong
/// length, `label_smoothing` outside `[0, 1]`, …), a target of the wrong shape, logits
/// of another dtype, and a device other than the CPU.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use xent_candle::{cross_entropy, CrossEntropyOptions};
/// let dev = Device::Cpu;
/// let x = Var::new(&[[1.0f32, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], &dev)?;
/// let y = Tensor::new(&[2u32, 1, 0], &dev)?;
/// let loss = cross_entropy(x.as_tensor(), &y, &CrossEntropyOptions::default())?;
/// assert!((loss.to_scalar::<f32>()? - 1.4076).abs() < 1e-4);
/// let grads = loss.backward()?;
/// let g = grads.get(&x).unwrap().to_vec2::<f32>()?;
/// assert!((g[0][2] - (0.6652 - 1.0) / 3.0).abs() < 1e-4); // (softmax − onehot)/N
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<Tensor> {
    cross_entropy_op(logits, targets, options, None)
}

/// [`cross_entropy`] and the per-row outputs of the same fused pass: the loss (with its
/// backward, as [`cross_entropy`]) and a [`RowStats`] of detached tensors in the row
/// shape (`lse`, `entropy`, `argmax`, and the z term), whatever the reduction.
///
/// # Errors
/// As [`cross_entropy`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use xent_candle::{cross_entropy_with_stats, CrossEntropyOptions};
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[[1.0f32, 3.0, 3.0], [0.0, 0.0, 0.0]], &dev)?;
/// let y = Tensor::new(&[2u32, 0], &dev)?;
/// let opts = CrossEntropyOptions::default().logit_scale(2.0).denominator(4.0);
/// let (loss, stats) = cross_entropy_with_stats(&x, &y, &opts)?;
/// assert_eq!(stats.argmax.to_vec1::<i64>()?, [1, 0]); // ties: the lowest index
/// let lse = stats.lse.to_vec1::<f32>()?;
/// assert!((lse[1] - 3f32.ln()).abs() < 1e-6);
/// let entropy = stats.entropy.to_vec1::<f32>()?;
/// assert!((entropy[1] - 3f32.ln()).abs() < 1e-6);
/// // the summed loss over the denominator 4, not over the 2 rows
/// let sum: f32 = lse.iter().sum::<f32>() - 6.0;
/// assert!((loss.to_scalar::<f32>()? - sum / 4.0).abs() < 1e-5);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn cross_entropy_with_stats(
    logits: &Tensor,
    targets: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<(Tensor, RowStats)> {
    let slot = StatsSlot::default();
    let loss = cross_entropy_op(logits, targets, options, Some(slot.clone()))?;
    Ok((loss, stats::take(&slot)?))
}

/// The op behind both public functions; `stats`, when given, receives the per-row
/// outputs of the forward pass.
fn cross_entropy_op(
    logits: &Tensor,
    targets: &Tensor,
    options: &CrossEntropyOptions,
    stats: Option<StatsSlot>,
) -> Result<Tensor> {
    if !logits.device().is_cpu() || !targets.device().is_cpu() {
        bail!(
            "xent: cross_entropy runs on the CPU, got logits on {:?} and targets on {:?}",
            logits.device().location(),
            targets.device().location()
        )
    }
    let dtype = logits.dtype();
    if !matches!(dtype, DType::F32 | DType::F64 | DType::BF16 | DType::F16) {
        bail!("xent: logits must be f32, f64, bf16 or f16, got {dtype:?}")
    }
    let dims = logits.dims();
    let by_index = is_index_dtype(targets.dtype());
    let expected = if by_index {
        loss_shape(dims, xent::Reduction::None)
    } else {
        logits.shape().clone()
    };
    if targets.dims() != expected.dims() {
        let err = match (dims.len() >= 2, targets.dims().first()) {
            (true, Some(&t)) if by_index && t != dims[0] => xent::Error::BatchMismatch {
                input: dims[0],
                target: t,
            },
            _ => xent::Error::TargetShape {
                expected: expected.dims().to_vec(),
                len: targets.elem_count(),
            },
        };
        return Err(to_candle(err));
    }
    let targets = if by_index {
        targets.contiguous()?
    } else {
        targets.to_dtype(dtype)?.contiguous()?
    };
    let logits = logits.contiguous()?;
    let op = CrossEntropyOp {
        opts: Arc::new(options.clone()),
        save_grad: logits.track_op(),
        saved_grad: Mutex::new(None),
        stats,
    };
    logits.apply_op2(&targets, op)
}

/// The forward op: the loss, and the gradient for upstream 1 when it will be needed.
struct CrossEntropyOp {
    opts: Arc<CrossEntropyOptions>,
    save_grad: bool,
    saved_grad: Mutex<Option<Tensor>>,
    /// Where the forward pass leaves the per-row outputs, when they are asked for.
    stats: Option<StatsSlot>,
}

/// The backward op: the fused pass again, with the incoming gradient as `grad_output`.
struct CrossEntropyGradOp {
    opts: Arc<CrossEntropyOptions>,
}

/// Runs `$body` with `$t` bound to the logits' element type.
macro_rules! by_float_dtype {
    ($s:expr, $t:ident => $body:expr) => {
        match $s {
            CpuStorage::F32(_) => {
                type $t = f32;
                $body
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                $body
            }
            CpuStorage::BF16(_) => {
                type $t = xent::bf16;
                $body
            }
            CpuStorage::F16(_) => {
                type $t = xent::f16;
                $body
            }
            other => bail!(
                "xent: logits must be f32, f64, bf16 or f16, got {:?}",
                other.dtype()
            ),
        }
    };
}

impl CrossEntropyOp {
    fn fwd<T>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)>
    where
        T: xent::Element + WithDType,
        T::Acc: WithDType,
    {
        let x = floats::<T>(s1, l1, "logits")?;
        let t = targets::<T>(s2, l2)?;
        let dims = l1.dims();
        let w = self.opts.weight_as::<T::Acc>();
        let opts = self.opts.options(w.as_deref());
        let shape = loss_shape(dims, self.opts.reduction);
        let mut loss =
            xent::alloc::zeroed_vec::<T::Acc>("loss", shape.dims()).map_err(to_candle)?;
        let rows_shape = loss_shape(dims, xent::Reduction::None);
        let mut rows = match self.stats {
            Some(_) => Some(StatsBuffers::<T::Acc>::new(rows_shape.elem_count())?),
            None => None,
        };
        let outputs = rows
            .as_mut()
            .map_or_else(RowOutputs::new, StatsBuffers::outputs);
        if self.save_grad {
            // On huge pages when large, faulted in by the kernel's threads as it writes.
            let mut grad = xent::alloc::zeroed_vec::<T>("grad", dims).map_err(to_candle)?;
            let out = Some(GradOut::new(&mut grad));
            xent::cross_entropy_stats_into(x, dims, t, &opts, &mut loss, out, outputs)
                .map_err(to_candle)?;
            let grad = Tensor::from_vec(grad, dims, &Device::Cpu)?;
            *self.saved_grad.lock().unwrap_or_else(|p| p.into_inner()) = Some(grad);
        } else {
            xent::cross_entropy_stats_into(x, dims, t, &opts, &mut loss, None, outputs)
                .map_err(to_candle)?;
        }
        if let (Some(slot), Some(rows)) = (&self.stats, rows) {
            rows.store(&rows_shape, slot)?;
        }
        Ok((T::Acc::to_cpu_storage_owned(loss), shape))
    }
}

impl CustomOp2 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "xent-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        by_float_dtype!(s1, T => self.fwd::<T>(s1, l1, s2, l2))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        grad_loss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved_grad
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(grad) = saved {
            let ones = grad_loss
                .flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?
                .iter()
                .all(|&g| g == 1.0);
            if ones {
                return Ok((Some(grad), None));
            }
        }
        // A broadcast upstream gradient has zero strides: make it plain rows.
        let go = grad_loss
            .to_dtype(acc_dtype(logits.dtype()))?
            .contiguous()?;
        let op = CrossEntropyGradOp {
            opts: self.opts.clone(),
        };
        Ok((Some(logits.apply_op3_no_bwd(targets, &go, &op)?), None))
    }
}

impl CrossEntropyGradOp {
    #[allow(clippy::too_many_arguments)]
    fn fwd<T>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)>
    where
        T: xent::Element + WithDType,
        T::Acc: WithDType,
    {
        let x = floats::<T>(s1, l1, "logits")?;
        let t = targets::<T>(s2, l2)?;
        let go = floats::<T::Acc>(s3, l3, "grad_output")?;
        let dims = l1.dims();
        let w = self.opts.weight_as::<T::Acc>();
        let opts = self.opts.options(w.as_deref());
        let len = loss_shape(dims, self.opts.reduction).elem_count();
        let mut loss = xent::alloc::zeroed_vec::<T::Acc>("loss", &[len]).map_err(to_candle)?;
        let mut grad = xent::alloc::zeroed_vec::<T>("grad", dims).map_err(to_candle)?;
        let out = GradOut::new(&mut grad).grad_output(go);
        xent::cross_entropy_into(x, dims, t, &opts, &mut loss, Some(out)).map_err(to_candle)?;
        Ok((T::to_cpu_storage_owned(grad), l1.shape().clone()))
    }
}

impl CustomOp3 for CrossEntropyGradOp {
    fn name(&self) -> &'static str {
        "xent-cross-entropy-grad"
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
        by_float_dtype!(s1, T => self.fwd::<T>(s1, l1, s2, l2, s3, l3))
    }
}
