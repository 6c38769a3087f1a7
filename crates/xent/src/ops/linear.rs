//! `linear_cross_entropy`: cross-entropy of the logits `h·Wᵀ + b` and its gradients
//! with respect to `h`, `W` and `b`, without ever holding the `N × V` logits.
//!
//! The driver walks blocks of rows. For each block it forms the block's logits with a
//! GEMM, hands every row to the library's fused [`cross_entropy_into`](crate::cross_entropy_into) (reduction
//! `sum`, upstream gradient = the row's global scale `s_n`), which leaves the logit
//! gradient `G` of the block, and folds `G` back with two more GEMMs:
//! `dh_block = G·W`, `dW += Gᵀ·h_block`, plus `db += Σ_rows G`. The mean's
//! denominator `D = Σ_{n∈M} w_{y_n}` is summed over all rows before the first block, so
//! the block size never changes the result beyond the rounding of the GEMM sums.

use super::stats::RowOutputs;
use super::{check_len, scalar_upstream, Loss};
use crate::driver::blocks::{pool_threads, ThreadScratch};
use crate::driver::linear::{
    as_acc, column_sums_into, hidden_grad_into, lhs_ld, logits_into, transpose_into,
    weight_grad_add, widen, Strided, Widened,
};
use crate::dtype::Element;
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::kernels::plan::Scale;
use crate::layout::Layout;
use crate::ops::cross_entropy::{block_inplace, check_options, Denominators};
use crate::options::{CrossEntropyOptions, GradMode, Reduction};
use crate::reduce::CompensatedSum;
use crate::sizes::{block_rows, MAX_BLOCK_ROWS, WIDEN_CLASSES, X_CLASS_CHUNK};
use crate::targets::Targets;

/// The default scratch budget of [`linear_cross_entropy`]: 64 MiB.
///
/// ```
/// use xent::{LinearCrossEntropyOptions, DEFAULT_SCRATCH_BYTES};
/// assert_eq!(LinearCrossEntropyOptions::<f32>::default().scratch_bytes, DEFAULT_SCRATCH_BYTES);
/// ```
pub const DEFAULT_SCRATCH_BYTES: usize = 64 << 20;

/// The operands of [`linear_cross_entropy`], in PyTorch's names: `hidden` `h` of shape
/// `(N, D)`, `linear_weight` `W` of shape `(V, D)` (one row per class, as
/// `torch.nn.Linear(D, V).weight`), and an optional `linear_bias` `b` of `V` entries.
/// All row-major (C-contiguous). The logits are `x = h·Wᵀ + b`, of shape `(N, V)`.
///
/// ```
/// use xent::LinearInputs;
/// let h = [1.0f32, 0.0, 0.0, 1.0];       // 2 rows, D = 2
/// let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // V = 3 classes
/// let b = [0.0f32, 0.5, -0.5];
/// let inputs = LinearInputs::new(&h, [2, 2], &w, [3, 2]).linear_bias(&b);
/// assert_eq!(inputs.linear_bias, Some(&b[..]));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LinearInputs<'a, T> {
    /// Hidden states `h`, `N × D` row-major.
    pub hidden: &'a [T],
    /// `[N, D]`.
    pub hidden_shape: [usize; 2],
    /// Classifier weight `W`, `V × D` row-major.
    pub linear_weight: &'a [T],
    /// `[V, D]`.
    pub linear_weight_shape: [usize; 2],
    /// Classifier bias `b` (`V` entries), or none.
    pub linear_bias: Option<&'a [T]>,
}

impl<'a, T: Element> LinearInputs<'a, T> {
    /// Hidden states and classifier weight with their shapes, no bias. Shapes are
    /// checked when the loss runs.
    pub fn new(
        hidden: &'a [T],
        hidden_shape: [usize; 2],
        linear_weight: &'a [T],
        linear_weight_shape: [usize; 2],
    ) -> Self {
        LinearInputs {
            hidden,
            hidden_shape,
            linear_weight,
            linear_weight_shape,
            linear_bias: None,
        }
    }
    /// Sets the classifier bias `b`.
    pub fn linear_bias(mut self, linear_bias: &'a [T]) -> Self {
        self.linear_bias = Some(linear_bias);
        self
    }
}

/// Options of [`linear_cross_entropy`]: every [`CrossEntropyOptions`] (class
/// `weight`, `ignore_index`, `label_smoothing`, `reduction`, z-loss, soft-cap,
/// `logit_scale`, `denominator`), held in [`cross_entropy`](Self::cross_entropy) and
/// set by the same builders, plus the scratch budget.
///
/// `scratch_bytes` (default [`DEFAULT_SCRATCH_BYTES`]) bounds the block the driver
/// works on: `B` rows of logits and the same rows of `h` (copied column-major for the
/// GEMM), `B·(V + D)` elements of `T`. `B` is the most rows that fit, at least 1 and
/// at most 128 (a multiple of 16 once it is 16 or more); it depends on the shape
/// and the budget only, never on the thread count, so that results do not either.
/// Each thread of the pool adds a tile of `B × min(V, 512)` elements, the fused
/// kernel's work row (`V` f32) and `gemm`'s packing buffer (about the L2 cache's
/// size, allocated once per thread and kept). With 128 rows and 2 threads, for
/// `N = 4096, D = 1024, V = 32000` the whole added memory measured 3.7% of the unfused
/// form's `N × V` logits.
///
/// ```
/// use xent::{LinearCrossEntropyOptions, Reduction};
/// let w = [1.0f32, 2.0, 0.5];
/// let opts = LinearCrossEntropyOptions::default()
///     .weight(&w)
///     .ignore_index(-1)
///     .label_smoothing(0.1)
///     .reduction(Reduction::Sum)
///     .scratch_bytes(16 << 20);
/// assert_eq!(opts.cross_entropy.ignore_index, -1);
/// assert_eq!(opts.scratch_bytes, 16 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LinearCrossEntropyOptions<'a, T> {
    /// The cross-entropy options applied to the logits `h·Wᵀ + b`.
    pub cross_entropy: CrossEntropyOptions<'a, T>,
    /// Memory budget of a block in bytes (default 64 MiB); per-thread scratch comes on
    /// top.
    pub scratch_bytes: usize,
    /// The type the logit gradient is multiplied in for bf16 inputs (default bf16).
    pub grad_precision: crate::GradPrecision,
}

impl<T> Default for LinearCrossEntropyOptions<'_, T> {
    fn default() -> Self {
        LinearCrossEntropyOptions {
            cross_entropy: CrossEntropyOptions::default(),
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
            grad_precision: crate::GradPrecision::default(),
        }
    }
}

impl<'a, T: Float> From<CrossEntropyOptions<'a, T>> for LinearCrossEntropyOptions<'a, T> {
    fn from(cross_entropy: CrossEntropyOptions<'a, T>) -> Self {
        LinearCrossEntropyOptions {
            cross_entropy,
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
            grad_precision: crate::GradPrecision::default(),
        }
    }
}

impl<'a, T: Float> LinearCrossEntropyOptions<'a, T> {
    /// Sets the class weights `w` (`V` entries).
    pub fn weight(mut self, weight: &'a [T]) -> Self {
        self.cross_entropy.weight = Some(weight);
        self
    }
    /// Sets `ignore_index`.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.cross_entropy.ignore_index = ignore_index;
        self
    }
    /// Sets `label_smoothing` (checked when the loss runs).
    pub fn label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.cross_entropy.label_smoothing = label_smoothing;
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.cross_entropy.reduction = reduction;
        self
    }
    /// Sets the z-loss scale (`lse_square_scale`).
    pub fn z_loss(mut self, scale: f64) -> Self {
        self.cross_entropy.z_loss = scale;
        self
    }
    /// Soft-caps the logits `h·Wᵀ + b` at `cap`.
    pub fn softcap(mut self, cap: f64) -> Self {
        self.cross_entropy.softcap = Some(cap);
        self
    }
    /// Scales the logits `h·Wᵀ + b` by `s` before soft-capping
    /// ([`CrossEntropyOptions::logit_scale`]).
    pub fn logit_scale(mut self, s: f64) -> Self {
        self.cross_entropy.logit_scale = s;
        self
    }
    /// Divides the `mean` by `d` instead of the call's own `D`
    /// ([`CrossEntropyOptions::denominator`]).
    pub fn denominator(mut self, d: f64) -> Self {
        self.cross_entropy.denominator = Some(d);
        self
    }
    /// Sets the scratch budget in bytes.
    pub fn scratch_bytes(mut self, scratch_bytes: usize) -> Self {
        self.scratch_bytes = scratch_bytes;
        self
    }
    /// Sets the type the logit gradient is multiplied in for bf16 inputs.
    pub fn grad_precision(mut self, grad_precision: crate::GradPrecision) -> Self {
        self.grad_precision = grad_precision;
        self
    }
}

/// Where [`linear_cross_entropy_into`] writes the gradients, and with which upstream
/// gradient. Each gradient is optional: leaving one out skips its work (without
/// `linear_weight`, the `dW` GEMM — a third of the arithmetic — is not run).
///
/// `linear_bias` may be asked for without a bias input: it is then the gradient with
/// respect to a zero bias, the column sums of the logit gradient.
///
/// ```
/// use xent::{GradMode, LinearGradOut};
/// let (mut dh, mut dw) = (vec![0.0f32; 4], vec![0.0f32; 6]);
/// let out = LinearGradOut::new().hidden(&mut dh).linear_weight(&mut dw)
///     .mode(GradMode::Accumulate);
/// assert_eq!(out.mode, GradMode::Accumulate);
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct LinearGradOut<'a, T> {
    /// `∂loss/∂h`, `N × D`.
    pub hidden: Option<&'a mut [T]>,
    /// `∂loss/∂W`, `V × D`.
    pub linear_weight: Option<&'a mut [T]>,
    /// `∂loss/∂b`, `V`.
    pub linear_bias: Option<&'a mut [T]>,
    /// The upstream gradient: 1 element for `mean`/`sum` (default 1), `N` for `none`
    /// (default all 1).
    pub grad_output: Option<&'a [T]>,
    /// Overwrite the buffers or add into them.
    pub mode: GradMode,
}

impl<'a, T: Float> LinearGradOut<'a, T> {
    /// No gradient buffers yet, upstream gradient 1, overwrite.
    pub fn new() -> Self {
        LinearGradOut {
            hidden: None,
            linear_weight: None,
            linear_bias: None,
            grad_output: None,
            mode: GradMode::Overwrite,
        }
    }
    /// Asks for `∂loss/∂h` in `grad` (`N × D`).
    pub fn hidden(mut self, grad: &'a mut [T]) -> Self {
        self.hidden = Some(grad);
        self
    }
    /// Asks for `∂loss/∂W` in `grad` (`V × D`).
    pub fn linear_weight(mut self, grad: &'a mut [T]) -> Self {
        self.linear_weight = Some(grad);
        self
    }
    /// Asks for `∂loss/∂b` in `grad` (`V`).
    pub fn linear_bias(mut self, grad: &'a mut [T]) -> Self {
        self.linear_bias = Some(grad);
        self
    }
    /// Sets the upstream gradient.
    pub fn grad_output(mut self, grad_output: &'a [T]) -> Self {
        self.grad_output = Some(grad_output);
        self
    }
    /// Sets the write mode.
    pub fn mode(mut self, mode: GradMode) -> Self {
        self.mode = mode;
        self
    }
    /// The gradient buffers a caller holds as options, upstream gradient included:
    /// `None` when none of `∂h`, `∂W`, `∂b` is asked for (the forward alone), else the
    /// buffers asked for, overwritten.
    ///
    /// ```
    /// use xent::LinearGradOut;
    /// let mut dh = vec![0.0f32; 4];
    /// assert!(LinearGradOut::<f32>::from_buffers(None, None, None, None).is_none());
    /// let g = LinearGradOut::from_buffers(Some(&mut dh[..]), None, None, None).unwrap();
    /// assert!(g.hidden.is_some() && g.linear_weight.is_none());
    /// ```
    pub fn from_buffers(
        hidden: Option<&'a mut [T]>,
        linear_weight: Option<&'a mut [T]>,
        linear_bias: Option<&'a mut [T]>,
        grad_output: Option<&'a [T]>,
    ) -> Option<Self> {
        if hidden.is_none() && linear_weight.is_none() && linear_bias.is_none() {
            return None;
        }
        Some(LinearGradOut {
            hidden,
            linear_weight,
            linear_bias,
            grad_output,
            mode: GradMode::Overwrite,
        })
    }
}

/// The gradients returned by [`linear_cross_entropy_with_grad`].
///
/// ```
/// use xent::{linear_cross_entropy_with_grad, LinearCrossEntropyOptions, LinearInputs};
/// let (h, w) = ([1.0f32, 2.0], [0.5f32, -0.5, 1.0, 0.0]); // N = 1, D = 2, V = 2
/// let (_, g) = linear_cross_entropy_with_grad(LinearInputs::new(&h, [1, 2], &w, [2, 2]),
///     &[1u32][..], &LinearCrossEntropyOptions::default())?;
/// assert_eq!((g.hidden.len(), g.linear_weight.len(), g.linear_bias), (2, 4, None));
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LinearGrads<T> {
    /// `∂loss/∂h`, `N × D`.
    pub hidden: Vec<T>,
    /// `∂loss/∂W`, `V × D`.
    pub linear_weight: Vec<T>,
    /// `∂loss/∂b` (`V`), when a bias was given.
    pub linear_bias: Option<Vec<T>>,
}

/// Cross-entropy of the logits `x = h·Wᵀ + b` against class indices `y`, as PyTorch's
/// `F.linear_cross_entropy(h, W, y, linear_bias=b, weight=w, ignore_index=…,
/// label_smoothing=ε, reduction=…)`, i.e. `F.cross_entropy(h @ W.T + b, y, …)`, without
/// storing the `N × V` logits.
///
/// Per row, with `ℓ = log_softmax(x_n)`:
/// `l_n = (1−ε)·(−w_{y_n}·ℓ_{y_n}) + (ε/V)·(−Σ_c w_c·ℓ_c)` (0 for ignored rows);
/// `mean` divides `Σ_n l_n` by `D = Σ_{n∈M} w_{y_n}`, summed over all rows. z-loss
/// and soft-capping apply to the logits as in [`cross_entropy`](crate::cross_entropy).
///
/// `h`, `W` and `b` are `f32`, `f64`, [`bf16`](crate::bf16) or [`f16`](crate::f16);
/// the logits, the loss and every gradient are in the accumulation type (`f32` for the
/// half-precision inputs), so `dW` and `db` are summed over the row blocks in `f32`,
/// never in bf16. Options (class weights, upstream gradient) are in that type too.
///
/// # Errors
/// [`Error::OperandShape`] when an operand's length does not match its shape,
/// [`Error::DimMismatch`] when `h` and `W` disagree on `D`, the bias is not `V` long or
/// the target does not have `N` entries, [`Error::NoClasses`] for `V = 0`,
/// [`Error::Allocation`] when a block of logits (at least one row of `V`) does not fit
/// in memory, and the errors of [`cross_entropy`](crate::cross_entropy): a target out
/// of `[0, V)` (naming it and its row), a class weight of the wrong length,
/// `label_smoothing` outside `[0, 1]`.
///
/// ```
/// use xent::{linear_cross_entropy, LinearCrossEntropyOptions, LinearInputs};
/// let h = [1.0f32, 0.0, 0.0, 1.0];
/// let w = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
/// let loss = linear_cross_entropy(LinearInputs::new(&h, [2, 2], &w, [3, 2]), &[2i64, 1][..],
///     &LinearCrossEntropyOptions::default())?;
/// // logits [[1, 0, 1], [0, 1, 1]]: both rows lose ln(2e + 1) − 1
/// let want = (2.0f32 * 1f32.exp() + 1.0).ln() - 1.0;
/// assert!((loss.item().unwrap() - want).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
///
/// bf16 inputs, `f32` loss:
///
/// ```
/// use xent::{bf16, linear_cross_entropy, LinearCrossEntropyOptions, LinearInputs};
/// let h = [1.0f32, 0.0, 0.0, 1.0].map(bf16::from_f32);
/// let w = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0].map(bf16::from_f32);
/// let loss = linear_cross_entropy(LinearInputs::new(&h, [2, 2], &w, [3, 2]), &[2i64, 1][..],
///     &LinearCrossEntropyOptions::default())?;
/// let want: f32 = (2.0f32 * 1f32.exp() + 1.0).ln() - 1.0;
/// assert!((loss.item().unwrap() - want).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn linear_cross_entropy<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
) -> Result<Loss<E::Acc>> {
    let (n, _, _) = check_inputs(&inputs)?;
    let mut out = crate::alloc::zeroed_vec("loss", &loss_shape(n, opts.cross_entropy.reduction))?;
    let z = linear_cross_entropy_into(inputs, target, opts, &mut out, None)?;
    Ok(Loss::with_z(
        out,
        loss_shape(n, opts.cross_entropy.reduction),
        z,
    ))
}

/// [`linear_cross_entropy`] and its gradients with respect to `h`, `W` and (when given)
/// `b`, for upstream gradient 1 (all 1 for `none`), in new buffers.
///
/// With `G = ∂loss/∂x` the logit gradient of
/// [`cross_entropy_with_grad`](crate::cross_entropy_with_grad):
/// `∂loss/∂h = G·W`, `∂loss/∂W = Gᵀ·h`, `∂loss/∂b = Σ_n G_n`.
///
/// # Errors
/// As [`linear_cross_entropy`].
///
/// ```
/// use xent::{linear_cross_entropy_with_grad, LinearCrossEntropyOptions, LinearInputs};
/// let h = [2.0f64];            // N = 1, D = 1
/// let w = [1.0f64, -1.0];      // V = 2: logits [2, −2]
/// let b = [0.0f64, 0.0];
/// let (loss, grads) = linear_cross_entropy_with_grad(
///     LinearInputs::new(&h, [1, 1], &w, [2, 1]).linear_bias(&b), &[0u8][..],
///     &LinearCrossEntropyOptions::default())?;
/// let p0 = 1.0 / (1.0 + (-4.0f64).exp());
/// assert!((loss.item().unwrap() + p0.ln()).abs() < 1e-12);
/// // G = [p0 − 1, 1 − p0]; dh = G·W = 2(p0 − 1); dW = Gᵀ·h; db = G
/// assert!((grads.hidden[0] - 2.0 * (p0 - 1.0)).abs() < 1e-12);
/// assert!((grads.linear_weight[1] - 2.0 * (1.0 - p0)).abs() < 1e-12);
/// assert!((grads.linear_bias.unwrap()[0] - (p0 - 1.0)).abs() < 1e-12);
/// # Ok::<(), xent::Error>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn linear_cross_entropy_with_grad<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
) -> Result<(Loss<E::Acc>, LinearGrads<E::Acc>)> {
    let (n, d, v) = check_inputs(&inputs)?;
    let reduction = opts.cross_entropy.reduction;
    let mut out = crate::alloc::zeroed_vec("loss", &loss_shape(n, reduction))?;
    let mut dh = crate::alloc::zeroed_vec("grad hidden", &[n, d])?;
    let mut dw = crate::alloc::zeroed_vec("grad linear_weight", &[v, d])?;
    let mut db = match inputs.linear_bias {
        Some(_) => Some(crate::alloc::zeroed_vec("grad linear_bias", &[v])?),
        None => None,
    };
    let mut grad = LinearGradOut::new().hidden(&mut dh).linear_weight(&mut dw);
    if let Some(db) = db.as_mut() {
        grad = grad.linear_bias(db);
    }
    let z = linear_cross_entropy_into(inputs, target, opts, &mut out, Some(grad))?;
    let grads = LinearGrads {
        hidden: dh,
        linear_weight: dw,
        linear_bias: db,
    };
    Ok((Loss::with_z(out, loss_shape(n, reduction), z), grads))
}

/// The fused core of [`linear_cross_entropy`]: writes the loss into `loss_out` (1
/// element for `mean`/`sum`, `N` for `none`) and, when `grad` is given, the gradients
/// it asks for times its upstream gradient, overwriting or accumulating.
///
/// Memory: besides the caller's buffers, one block of `B` rows of logits plus one
/// row and one `B × 1024` tile per thread (see [`LinearCrossEntropyOptions`]), and the
/// GEMM's packing buffers; for bf16/f16 inputs also one widened `256 × D` tile of `W`
/// per thread and the widened bias, with blocks of at most 64 rows. `dW` and `db` are accumulated over the row blocks
/// in the accumulation type (`f32` for `f32`, bf16 and f16 inputs, never lower).
///
/// Everything is validated before anything is written: on error the buffers are
/// untouched.
///
/// # Errors
/// As [`linear_cross_entropy`], plus [`Error::OutputLength`] / [`Error::GradOutputShape`]
/// for buffers of the wrong size.
///
/// ```
/// use xent::{linear_cross_entropy_into, GradMode, LinearCrossEntropyOptions, LinearGradOut,
///     LinearInputs};
/// let h = [1.0f32, 0.0, 0.0, 1.0];
/// let w = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
/// let (mut loss, mut dh, mut dw) = ([0.0f32], [0.0f32; 4], [0.0f32; 6]);
/// // Two micro-batches of one row each, accumulated (each a mean over 1 row, halved).
/// for (row, y) in [(0usize, 2i64), (1, 1)] {
///     let g = LinearGradOut::new().hidden(&mut dh[2 * row..2 * row + 2])
///         .linear_weight(&mut dw).grad_output(&[0.5]).mode(GradMode::Accumulate);
///     linear_cross_entropy_into(LinearInputs::new(&h[2 * row..2 * row + 2], [1, 2], &w, [3, 2]),
///         &[y][..], &LinearCrossEntropyOptions::default(), &mut loss, Some(g))?;
/// }
/// // row 0: logits [1, 0, 1], p = [e, 1, e]/(2e + 1); dh_0 = ½·(p − onehot(2))·W
/// let p = [1f32.exp(), 1.0, 1f32.exp()].map(|v| v / (2.0 * 1f32.exp() + 1.0));
/// assert!((dh[0] - 0.5 * (p[0] + p[2] - 1.0)).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn linear_cross_entropy_into<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    loss_out: &mut [E::Acc],
    grad: Option<LinearGradOut<'_, E::Acc>>,
) -> Result<Option<E::Acc>> {
    linear_cross_entropy_stats_into(inputs, target, opts, loss_out, grad, RowOutputs::new())
}

/// [`linear_cross_entropy_into`] that also writes the per-row outputs `rows` asks
/// for (`N` elements each): the log-sum-exp, entropy and argmax of the logits as the
/// loss sees them, `softcap(s·(h·Wᵀ + b))`, and each row's z term (see
/// [`RowOutputs`]), read from each block of logits before the fused pass. They are
/// detached (never differentiated).
///
/// # Errors
/// As [`linear_cross_entropy_into`], plus [`Error::OutputLength`] naming the row
/// output (`"lse"`, `"entropy"`, `"argmax"`, `"z"`) whose length is not `N`.
///
/// ```
/// use xent::{linear_cross_entropy_stats_into, LinearCrossEntropyOptions, LinearInputs,
///     RowOutputs};
/// let h = [1.0f32, 0.0, 0.0, 1.0];
/// let w = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]; // logits [[1, 0, 1], [0, 1, 1]]
/// let (mut loss, mut lse, mut argmax) = ([0.0f32], [0.0f32; 2], [0i64; 2]);
/// linear_cross_entropy_stats_into(LinearInputs::new(&h, [2, 2], &w, [3, 2]), &[2i64, 1][..],
///     &LinearCrossEntropyOptions::default(), &mut loss, None,
///     RowOutputs::new().lse(&mut lse).argmax(&mut argmax))?;
/// assert!((lse[0] - (2.0 * 1f32.exp() + 1.0).ln()).abs() < 1e-6);
/// assert_eq!(argmax, [0, 1]); // ties go to the lowest class
/// # Ok::<(), xent::Error>(())
/// ```
pub fn linear_cross_entropy_stats_into<'t, E: Element>(
    inputs: LinearInputs<'_, E>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, E::Acc>,
    loss_out: &mut [E::Acc],
    grad: Option<LinearGradOut<'_, E::Acc>>,
    mut rows_out: RowOutputs<'_, E::Acc>,
) -> Result<Option<E::Acc>> {
    let target = target.into();
    let (n, d, v) = check_inputs(&inputs)?;
    check_target_rows(n, target.len())?;
    let ce = &opts.cross_entropy;
    let reduction = ce.reduction;
    // The logits' layout, for the checks shared with cross_entropy (no logits exist).
    let layout = Layout::new(&[n, v], n * v)?;
    check_options::<E::Acc>(ce, &layout, &Targets::Indices(target))?;
    check_len("loss_out", loss_out.len(), loss_len(n, reduction))?;
    rows_out.check(n)?;
    let outs = rows_out.ptrs();
    let (grad_output, accumulate, mut dh, mut dw, mut db) =
        checked_grad_parts(grad, (n, d, v), reduction)?;

    // D = Σ_{n∈M} w_{y_n} and |M| over every row, before any block, as cross_entropy
    // sums them, so that blocking never changes the result.
    // A given denominator replaces both (the z term of the mean is over it too).
    let dens = match ce.denominator {
        Some(d) => Denominators { loss: d, z: d },
        None => Denominators::of_indices(&target, n, ce.ignore_index, ce.weight),
    };
    let uniform = dens.uniform_scale(reduction, scalar_upstream(grad_output, reduction));

    let (elem, acc) = (std::mem::size_of::<E>(), std::mem::size_of::<E::Acc>());
    let max_rows = MAX_BLOCK_ROWS * elem / acc;
    let block = block_rows(n, (d, v), acc, opts.scratch_bytes, max_rows);
    // Sized by the shapes, not by data the caller holds: with D = 0, `W` of shape
    // (2⁴⁰, 0) is empty but its block of logits is not. Reused by every block, on huge
    // pages when large.
    let mut logits = crate::alloc::zeroed_vec::<E::Acc>("logits block", &[block, v])?;
    // f32, bf16 and f16 inputs multiply on the crate's GEMM engine (which packs what it
    // needs itself); f64 on the `gemm` crate, with the copies and tiles below.
    let mut engine = crate::gemm::LinearGemm::new::<E, E::Acc>(
        inputs.hidden,
        inputs.linear_weight,
        (d, v),
        opts.grad_precision,
    );
    let old_path = usize::from(engine.is_none());
    let mut ht =
        crate::alloc::zeroed_vec::<E::Acc>("hidden block", &[lhs_ld(block) * old_path, d])?;
    // Nothing was written before this point: an error above leaves the buffers as
    // they were.
    let want_grad = dh.is_some() || dw.is_some() || db.is_some();
    // dW and db are sums over the blocks; dh is written block by block.
    if !accumulate {
        for g in [dw.as_deref_mut(), db.as_deref_mut()].into_iter().flatten() {
            g.fill(E::Acc::ZERO);
        }
    }
    // Every scratch a task needs, made here rather than on the pool's threads.
    let threads = pool_threads();
    let tiles = ThreadScratch::new(
        threads * old_path,
        lhs_ld(block) * X_CLASS_CHUNK.min(v),
        E::Acc::ZERO,
    );
    // Half-precision inputs: W is widened a tile at a time (never all of it), the bias
    // once.
    let weight = Widened::new(
        inputs.linear_weight,
        threads * old_path,
        WIDEN_CLASSES.min(v) * d,
    );
    let bias = inputs.linear_bias.map(|b| widen(b));
    let mut row_loss = vec![E::Acc::ZERO; block];
    let mut total = CompensatedSum::default();
    let mut ztotal = CompensatedSum::default();
    let mut block_targets = Vec::with_capacity(block);

    let mut r0 = 0;
    while r0 < n {
        let rows = block.min(n - r0);
        let h_block = &inputs.hidden[r0 * d..(r0 + rows) * d];
        let x = &mut logits[..rows * v];

        let ld = lhs_ld(rows);
        if let Some(engine) = engine.as_mut() {
            engine.logits(r0, rows, bias.as_deref(), x);
        } else {
            transpose_into(h_block, (rows, d), d, &mut ht[..ld * d], ld);
            logits_into(
                &ht[..ld * d],
                (rows, ld),
                &weight,
                bias.as_deref(),
                (d, v),
                x,
                &tiles,
            );
        }

        // The block through the library's fused kernel; G overwrites the logits.
        block_targets.clear();
        block_targets.extend((r0..r0 + rows).map(|r| {
            target
                .class_at(r, ce.ignore_index)
                .map_or(ce.ignore_index, |y| y as i64)
        }));
        let scale = match (reduction, grad_output) {
            (Reduction::None, Some(go)) => Scale::PerRow(&go[r0..r0 + rows]),
            _ => uniform,
        };
        let (sum, zsum) = block_inplace(
            x,
            (rows, v),
            ClassIndices::from(&block_targets[..]),
            ce,
            &mut row_loss[..rows],
            want_grad,
            scale,
            // SAFETY: r0 < n, the outputs' row count (checked above).
            unsafe { outs.rows_after(r0) },
        );
        total.add(sum);
        ztotal.add(zsum);
        if reduction == Reduction::None {
            loss_out[r0..r0 + rows].copy_from_slice(&row_loss[..rows]);
        }

        let g = &logits[..rows * v];
        // db first: the engine may round G to bf16 in place for dh and dW.
        if let Some(db) = db.as_deref_mut() {
            column_sums_into(g, v, db);
        }
        if let Some(engine) = engine.as_mut() {
            let dh_block = dh.as_deref_mut().map(|dh| &mut dh[r0 * d..(r0 + rows) * d]);
            let g = &mut logits[..rows * v];
            engine.backward(r0, rows, g, accumulate, dh_block, dw.as_deref_mut());
            r0 += rows;
            continue;
        }
        if let Some(dh) = dh.as_deref_mut() {
            let dh_block = &mut dh[r0 * d..(r0 + rows) * d];
            hidden_grad_into(g, rows, &weight, (d, v), accumulate, dh_block);
        }
        if let Some(dw) = dw.as_deref_mut() {
            // h_block itself, or its widened column-major copy.
            let hb = match as_acc(h_block) {
                Some(h) => Strided::new(h, d, 1),
                None => Strided::new(&ht[..ld * d], 1, ld),
            };
            weight_grad_add(g, hb, rows, (d, v), dw, &tiles);
        }
        r0 += rows;
    }

    Ok(dens.finish(
        reduction,
        total.value(),
        ztotal.value(),
        ce.z_loss != 0.0,
        loss_out,
    ))
}

/// Checks the operands' lengths against their shapes, then the shapes against each
/// other ([`linear_shapes`]); returns `(N, D, V)`.
pub(super) fn check_inputs<T>(inputs: &LinearInputs<'_, T>) -> Result<(usize, usize, usize)> {
    let operand = |name, len: usize, shape: [usize; 2]| {
        if shape[0].checked_mul(shape[1]) == Some(len) {
            Ok(())
        } else {
            Err(Error::OperandShape {
                name,
                len,
                expected: shape.to_vec(),
            })
        }
    };
    operand("hidden", inputs.hidden.len(), inputs.hidden_shape)?;
    operand(
        "linear_weight",
        inputs.linear_weight.len(),
        inputs.linear_weight_shape,
    )?;
    linear_shapes(
        inputs.hidden_shape,
        inputs.linear_weight_shape,
        inputs.linear_bias.map(<[T]>::len),
    )
}

/// The shape checks of [`check_linear_shapes`] before the target's: the columns of
/// `h` against `W`'s, `b` against `W`'s rows, an empty vocabulary, and the logits'
/// size; returns `(N, D, V)`.
pub(super) fn linear_shapes(
    [n, d]: [usize; 2],
    [v, dw]: [usize; 2],
    linear_bias_len: Option<usize>,
) -> Result<(usize, usize, usize)> {
    if d != dw {
        return Err(Error::DimMismatch {
            left: "hidden",
            left_dim: d,
            right: "linear_weight",
            right_dim: dw,
            what: "columns",
        });
    }
    if let Some(b) = linear_bias_len {
        if b != v {
            return Err(Error::DimMismatch {
                left: "linear_weight",
                left_dim: v,
                right: "linear_bias",
                right_dim: b,
                what: "rows",
            });
        }
    }
    if v == 0 && n > 0 {
        return Err(Error::NoClasses { shape: vec![n, v] });
    }
    if n.checked_mul(v).is_none() {
        return Err(Error::BadShape {
            shape: vec![n, v],
            len: 0,
            reason: "the logits' size overflows usize",
        });
    }
    Ok((n, d, v))
}

/// The target's row count against the hidden states' `N`.
pub(super) fn check_target_rows(n: usize, target_len: usize) -> Result<()> {
    if target_len == n {
        return Ok(());
    }
    Err(Error::DimMismatch {
        left: "hidden",
        left_dim: n,
        right: "target",
        right_dim: target_len,
        what: "rows",
    })
}

/// Checks the shapes of linear cross-entropy's operands against each other, in the
/// order and words of [`linear_cross_entropy`] and the shard functions: `h` is
/// `(N, D)`, `W` `(V, D)`, `b` (if any) `(V,)`, and the target holds `N` class
/// indices. Returns `(N, D, V)`.
///
/// This is the check for a caller that holds only the operands' shapes, before it
/// reads their data (a distributed binding that reads each rank's block of `h` and
/// `W` from files, say); the functions that take the operands run it themselves.
///
/// # Errors
/// - [`Error::DimMismatch`] when `h`'s `D` is not `W`'s, `b`'s length is not `W`'s
///   `V`, or the target's length is not `N`;
/// - [`Error::NoClasses`] when `V = 0` and `N > 0`;
/// - [`Error::BadShape`] when `N·V` overflows `usize`.
///
/// ```
/// use xent::{check_linear_shapes, Error};
/// assert_eq!(check_linear_shapes([4, 8], [10, 8], Some(10), 4)?, (4, 8, 10));
/// let err = check_linear_shapes([4, 8], [10, 6], None, 4).unwrap_err();
/// assert!(matches!(err, Error::DimMismatch { left_dim: 8, right_dim: 6, .. }));
/// # Ok::<(), xent::Error>(())
/// ```
pub fn check_linear_shapes(
    hidden_shape: [usize; 2],
    linear_weight_shape: [usize; 2],
    linear_bias_len: Option<usize>,
    target_len: usize,
) -> Result<(usize, usize, usize)> {
    let (n, d, v) = linear_shapes(hidden_shape, linear_weight_shape, linear_bias_len)?;
    check_target_rows(n, target_len)?;
    Ok((n, d, v))
}

/// The parts of an optional [`LinearGradOut`]: the upstream gradient, whether to
/// accumulate, and the `∂h`, `∂W`, `∂b` buffers.
pub(crate) type GradParts<'a, T> = (
    Option<&'a [T]>,
    bool,
    Option<&'a mut [T]>,
    Option<&'a mut [T]>,
    Option<&'a mut [T]>,
);

impl<T> LinearGradOut<'_, T> {
    /// Checks the gradient buffers' lengths against `N × D`, `V × D` and `V`.
    pub(crate) fn check_buffers(&self, (n, d, v): (usize, usize, usize)) -> Result<()> {
        for (name, buf, len) in [
            ("grad hidden", self.hidden.as_deref(), n * d),
            ("grad linear_weight", self.linear_weight.as_deref(), v * d),
            ("grad linear_bias", self.linear_bias.as_deref(), v),
        ] {
            if let Some(buf) = buf {
                check_len(name, buf.len(), len)?;
            }
        }
        Ok(())
    }
}

/// `grad`'s buffers checked ([`LinearGradOut::check_buffers`]) and its upstream
/// gradient against the loss of `reduction` over `N` rows, then split into its parts
/// (no upstream gradient, overwrite and no buffers without one).
pub(crate) fn checked_grad_parts<T>(
    grad: Option<LinearGradOut<'_, T>>,
    (n, d, v): (usize, usize, usize),
    reduction: Reduction,
) -> Result<GradParts<'_, T>> {
    let Some(g) = grad else {
        return Ok((None, false, None, None, None));
    };
    g.check_buffers((n, d, v))?;
    if let Some(go) = g.grad_output {
        if go.len() != loss_len(n, reduction) {
            return Err(Error::GradOutputShape {
                expected: loss_shape(n, reduction),
                len: go.len(),
            });
        }
    }
    Ok((
        g.grad_output,
        g.mode == GradMode::Accumulate,
        g.hidden,
        g.linear_weight,
        g.linear_bias,
    ))
}

fn loss_len(n: usize, reduction: Reduction) -> usize {
    match reduction {
        Reduction::None => n,
        Reduction::Mean | Reduction::Sum => 1,
    }
}

fn loss_shape(n: usize, reduction: Reduction) -> Vec<usize> {
    match reduction {
        Reduction::None => vec![n],
        Reduction::Mean | Reduction::Sum => Vec::new(),
    }
}
