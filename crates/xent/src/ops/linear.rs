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
//!
//! Each GEMM is split into independent tasks on rayon's pool — a range of classes of
//! the logits, a range of columns of `dh`, a range of rows of `dW` — and every task is
//! one single-threaded `gemm` call. The ranges depend only on the shape, and each output
//! element is summed by one call in one order, so the results do not depend on the
//! number of threads; the pool balances the tasks, so a core taken by another process
//! slows one task rather than stalling a GEMM split in fixed halves.

use gemm::Parallelism;

use super::{check_len, scalar_upstream, Loss};
use crate::driver::blocks::{pool_threads, Blocks, ThreadScratch};
use crate::driver::ce::Scale;
use crate::driver::ptr::Ptr;
use crate::dtype::Element;
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::layout::Layout;
use crate::ops::cross_entropy::{block_inplace, check_options, Denominators};
use crate::options::{CrossEntropyOptions, GradMode, Reduction};
use crate::reduce::CompensatedSum;
use crate::targets::Targets;

/// The default scratch budget of [`linear_cross_entropy`]: 64 MiB.
///
/// ```
/// use xent::{LinearCrossEntropyOptions, DEFAULT_SCRATCH_BYTES};
/// assert_eq!(LinearCrossEntropyOptions::<f32>::default().scratch_bytes, DEFAULT_SCRATCH_BYTES);
/// ```
pub const DEFAULT_SCRATCH_BYTES: usize = 64 << 20;

/// The most rows a block takes, whatever the budget. Each block reads `W` twice and
/// reads and writes `dW` once (`2·B` flops per byte of `dW`), so more rows mean less
/// memory traffic, but a larger block of logits. For `N = 4096, D = 1024, V = 32000`
/// (f32, 2 threads) the call's peak added memory measured 18.7 MiB, 3.7% of the
/// unfused form's `N × V` logits, with 128 rows: the 15.6 MiB block of logits, 0.5 MiB
/// of per-thread tiles, 0.5 MiB of column-major `h_block`, 0.5 MiB of `gemm`'s
/// per-thread packing buffers, 0.3 MiB of the fused kernel's per-thread work rows and
/// about 1 MiB of code paged in. 160 rows measured 4.5% and ran no faster (6.7 s
/// against 6.3 s); for `V = 128256`, 128 rows are 3.3%.
pub(super) const MAX_BLOCK_ROWS: usize = 128;

/// Classes of a half-precision `W` widened to `f32` at a time (per thread): 1 MiB for
/// `D = 1024`. With it, and blocks of at most `MAX_BLOCK_ROWS / 2` rows (the block's
/// logits are `f32`, twice the inputs' width), bf16 inputs add the same fraction of
/// their own (bf16) logits as `f32` inputs do.
pub(super) const WIDEN_CLASSES: usize = 256;

/// Classes per task of the logits GEMM. `gemm` wants its destination column-major and
/// packs (transposes, element by element) whichever operand is not: with the block's
/// logits row-major, that was all of `W` for every block, a third of the GEMM's time.
/// A task instead computes `h_block·W_cᵀ` column-major into its thread's `B × 512`
/// tile — `W_c` is then read in place and only `h_block` is packed, once per task —
/// and transposes it into the logits rows. 512 rather than 1024 halves the tiles
/// (`threads · B · 512` elements) for one more packing of `h_block` per 512 classes
/// (`B·D` copies against `2·B·D·512` flops).
pub(super) const X_CLASS_CHUNK: usize = 512;

/// The rows of the logits GEMM are padded to a multiple of this. `gemm` allocates a
/// buffer per call to pack the whole left operand at once when it is not column-major
/// or its row count is not a multiple of the SIMD width (at most 16 elements), and
/// otherwise packs it piece by piece into a per-thread buffer that it keeps; so
/// `h_block` goes in column-major (copied, `B·D` elements per block) and padded.
const LHS_ROW_ALIGN: usize = 16;

/// Columns of `dh_block = G·W` per task: each task packs its own columns of `W`, so
/// `W` is packed once per block (a GEMM split across threads by `gemm` itself packed it
/// once per thread).
const DH_COL_CHUNK: usize = 256;

/// Classes (rows of `dW`) per task of `dW += Gᵀ·h_block`: enough work per task, and
/// the task's copy of `classes × B` values of `G` fits in the logits tile's scratch.
const DW_CLASS_CHUNK: usize = 512;
const _: () = assert!(DW_CLASS_CHUNK <= X_CLASS_CHUNK);

/// Columns of `dW` per `gemm` call of a `dW` task: `gemm` packs (in a new allocation)
/// a right operand that is contiguous along `k` when the output has more than
/// `128·MR` rows in its column-major view (`MR` ≥ 4 on x86-64), here `dW`'s columns.
const DW_COL_CHUNK: usize = 512;

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
/// `weight`, `ignore_index`, `label_smoothing`, `reduction`) plus the scratch budget.
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
}

impl<T> Default for LinearCrossEntropyOptions<'_, T> {
    fn default() -> Self {
        LinearCrossEntropyOptions {
            cross_entropy: CrossEntropyOptions::default(),
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
        }
    }
}

impl<'a, T: Float> From<CrossEntropyOptions<'a, T>> for LinearCrossEntropyOptions<'a, T> {
    fn from(cross_entropy: CrossEntropyOptions<'a, T>) -> Self {
        LinearCrossEntropyOptions {
            cross_entropy,
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
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
    /// Sets the scratch budget in bytes.
    pub fn scratch_bytes(mut self, scratch_bytes: usize) -> Self {
        self.scratch_bytes = scratch_bytes;
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
    let target = target.into();
    let (n, d, v) = check_inputs(&inputs)?;
    check_target_rows(n, target.len())?;
    let ce = &opts.cross_entropy;
    let reduction = ce.reduction;
    // The logits' layout, for the checks shared with cross_entropy (no logits exist).
    let layout = Layout::new(&[n, v], n * v)?;
    check_options::<E::Acc>(ce, &layout, &Targets::Indices(target))?;
    check_len("loss_out", loss_out.len(), loss_len(n, reduction))?;
    if let Some(g) = &grad {
        if let Some(dh) = &g.hidden {
            check_len("grad hidden", dh.len(), n * d)?;
        }
        if let Some(dw) = &g.linear_weight {
            check_len("grad linear_weight", dw.len(), v * d)?;
        }
        if let Some(db) = &g.linear_bias {
            check_len("grad linear_bias", db.len(), v)?;
        }
        if let Some(go) = g.grad_output {
            if go.len() != loss_len(n, reduction) {
                return Err(Error::GradOutputShape {
                    expected: loss_shape(n, reduction),
                    len: go.len(),
                });
            }
        }
    }

    let (grad_output, accumulate, mut dh, mut dw, mut db) = match grad {
        Some(g) => (
            g.grad_output,
            g.mode == GradMode::Accumulate,
            g.hidden,
            g.linear_weight,
            g.linear_bias,
        ),
        None => (None, false, None, None, None),
    };

    // D = Σ_{n∈M} w_{y_n} and |M| over every row, before any block, as cross_entropy
    // sums them, so that blocking never changes the result.
    let dens = Denominators::of_indices(&target, n, ce.ignore_index, ce.weight);
    let uniform = dens.uniform_scale(reduction, scalar_upstream(grad_output, reduction));

    let (elem, acc) = (std::mem::size_of::<E>(), std::mem::size_of::<E::Acc>());
    let max_rows = MAX_BLOCK_ROWS * elem / acc;
    let block = block_rows(n, (d, v), acc, opts.scratch_bytes, max_rows);
    // Sized by the shapes, not by data the caller holds: with D = 0, `W` of shape
    // (2⁴⁰, 0) is empty but its block of logits is not. Reused by every block, on huge
    // pages when large.
    let mut logits = crate::alloc::zeroed_vec::<E::Acc>("logits block", &[block, v])?;
    let mut ht = crate::alloc::zeroed_vec::<E::Acc>("hidden block", &[lhs_ld(block), d])?;
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
    let tiles = ThreadScratch::new(threads, lhs_ld(block) * X_CLASS_CHUNK.min(v), E::Acc::ZERO);
    // Half-precision inputs: W is widened a tile at a time (never all of it), the bias
    // once.
    let weight = Widened::new(inputs.linear_weight, threads, WIDEN_CLASSES.min(v) * d);
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
        );
        total.add(sum);
        ztotal.add(zsum);
        if reduction == Reduction::None {
            loss_out[r0..r0 + rows].copy_from_slice(&row_loss[..rows]);
        }

        let g = &logits[..rows * v];
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
        if let Some(db) = db.as_deref_mut() {
            column_sums_into(g, v, db);
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

/// Rows per block `B`: the most with `B·(V + D)` elements (the block's logits and its
/// hidden states, column-major) within the budget, at most `max_rows`
/// ([`MAX_BLOCK_ROWS`] scaled by the inputs' width over the logits'), at least 1, and
/// a multiple of [`LHS_ROW_ALIGN`] when that many fit; 0 when there are no rows, so
/// that an empty batch allocates nothing (its `D` may be anything). The thread count
/// does not enter: the block size changes the rounding of `dW` and `db`, and results
/// must not depend on the thread count.
pub(super) fn block_rows(
    n: usize,
    (d, v): (usize, usize),
    elem: usize,
    scratch_bytes: usize,
    max_rows: usize,
) -> usize {
    let per_row = v.saturating_add(d).max(1);
    let rows = (scratch_bytes / elem.max(1) / per_row).clamp(1, max_rows.max(1));
    let rows = if rows >= LHS_ROW_ALIGN {
        rows / LHS_ROW_ALIGN * LHS_ROW_ALIGN
    } else {
        rows
    };
    rows.min(n)
}

/// `db += Σ_rows G`, split over column ranges so that every column is summed in row
/// order whatever the thread count.
pub(super) fn column_sums_into<T: Float>(g: &[T], v: usize, db: &mut [T]) {
    const COLUMNS: usize = 4096;
    let rows = g.len() / v;
    Blocks::new(v, COLUMNS).map_mut([(Some(db), 1)], |cols, [db]| {
        let Some(db) = db else { return };
        for r in 0..rows {
            let row = &g[r * v + cols.start..r * v + cols.end];
            for (acc, &x) in db.iter_mut().zip(row) {
                *acc += x;
            }
        }
    });
}

/// `x = h_block·Wᵀ (+ b)`, `rows × V` row-major, in tasks of [`X_CLASS_CHUNK`]
/// classes: each computes its classes column-major in a tile of its thread (where
/// `gemm` reads `W` unpacked, or its widened copy) and transposes them into `x`.
/// `h_block` comes column-major in `ht`, `ld` (a multiple of [`LHS_ROW_ALIGN`]) rows
/// apart, so that `gemm` packs it into its per-thread buffer rather than allocating one
/// per call.
#[allow(clippy::too_many_arguments)]
pub(super) fn logits_into<E: Element>(
    ht: &[E::Acc],
    (rows, ld): (usize, usize),
    w: &Widened<'_, E>,
    bias: Option<&[E::Acc]>,
    (d, v): (usize, usize),
    x: &mut [E::Acc],
    tiles: &ThreadScratch<E::Acc>,
) {
    assert!(x.len() == rows * v && ht.len() == ld * d && rows <= ld && w.w.len() == v * d);
    let out = Ptr::new(x);
    let chunk = X_CLASS_CHUNK.min(v);
    Blocks::new(v, chunk).for_each(|range| {
        tiles.with(|scratch| {
            let (c0, classes) = (range.start, range.len());
            let tile = &mut scratch[..ld * classes];
            // tile (ld × classes, column-major) = h_block · W[c0..c0 + classes]ᵀ; the
            // rows past `rows` are padding, computed and dropped.
            let hb = Strided::new(ht, 1, ld);
            // One GEMM, or one per WIDEN_CLASSES classes of a widened W.
            let step = if w.same.is_some() {
                classes
            } else {
                WIDEN_CLASSES
            };
            for s0 in (0..classes).step_by(step.max(1)) {
                let sc = step.min(classes - s0);
                w.rows(c0 + s0, sc, d, |wr| {
                    let wt = Strided::new(wr, 1, d);
                    let sub = &mut tile[s0 * ld..(s0 + sc) * ld];
                    matmul(ld, sc, d, sub, (1, ld), false, hb, wt);
                });
            }
            let b = bias.map(|b| &b[c0..c0 + classes]);
            // SAFETY: `x` holds `rows × v` elements and this task writes only its columns
            // `c0..c0 + classes` of each row; the tasks' column ranges are disjoint and
            // `x` stays mutably borrowed for the whole loop.
            unsafe { scatter_transposed(tile, (rows, ld), classes, b, out.at(c0), v) };
        })
    });
}

/// The rows of the logits GEMM for a block of `rows` rows: padded to a multiple of
/// [`LHS_ROW_ALIGN`], except below it (where padding costs more arithmetic than the
/// small allocation it saves).
pub(super) fn lhs_ld(rows: usize) -> usize {
    if rows >= LHS_ROW_ALIGN {
        rows.next_multiple_of(LHS_ROW_ALIGN)
    } else {
        rows
    }
}

/// `dst[k·ld + r] = src[r·src_ld + k]` for `r < rows`, `k < cols`, and zero for
/// `rows ≤ r < ld`: `rows × cols` of a row-major matrix, column-major (and widened to
/// the accumulation type).
pub(super) fn transpose_into<S: Element>(
    src: &[S],
    (rows, src_ld): (usize, usize),
    cols: usize,
    dst: &mut [S::Acc],
    ld: usize,
) {
    // Eight rows at a time: eight read streams, each written line filled by eight rows.
    const R: usize = 8;
    assert!(rows <= ld && dst.len() >= cols * ld);
    if cols == 0 {
        // Nothing to write (D = 0); `dst[r..]` below would start past its end.
        return;
    }
    let row = |r: usize| &src[r * src_ld..r * src_ld + cols];
    let full = rows / R * R;
    for r0 in (0..full).step_by(R) {
        let src: [&[S]; R] = std::array::from_fn(|i| row(r0 + i));
        for (k, col) in dst.chunks_exact_mut(ld).take(cols).enumerate() {
            for (x, s) in col[r0..r0 + R].iter_mut().zip(src) {
                *x = s[k].to_acc();
            }
        }
    }
    for r in full..rows {
        for (x, &s) in dst[r..].iter_mut().step_by(ld).zip(row(r)) {
            *x = s.to_acc();
        }
    }
    for col in dst.chunks_exact_mut(ld).take(cols) {
        col[rows..].fill(S::Acc::ZERO);
    }
}

/// `dst[r·ld + c] = tile[c·tile_ld + r] (+ b[c])` for `r < rows`, `c < classes`: a
/// column-major tile into `classes` columns of row-major rows. Eight rows at a time,
/// so that each column read is contiguous and each written line is filled by eight
/// consecutive columns.
///
/// # Safety
/// `dst` must be valid for writes at `r·ld + c` for every `r < rows`, `c < classes`,
/// and nothing else may access those elements meanwhile.
unsafe fn scatter_transposed<T: Float>(
    tile: &[T],
    (rows, tile_ld): (usize, usize),
    classes: usize,
    bias: Option<&[T]>,
    dst: *mut T,
    ld: usize,
) {
    const R: usize = 8;
    for r0 in (0..rows).step_by(R) {
        let rn = R.min(rows - r0);
        for c in 0..classes {
            let b = bias.map_or(T::ZERO, |b| b[c]);
            let col = &tile[c * tile_ld + r0..c * tile_ld + r0 + rn];
            for (i, &t) in col.iter().enumerate() {
                // SAFETY: `r0 + i < rows` and `c < classes` (the caller's contract).
                unsafe { *dst.add((r0 + i) * ld + c) = t + b };
            }
        }
    }
}

/// `dh_block (=|+=) G·W`, in tasks of [`DH_COL_CHUNK`] columns. With `W` in the
/// accumulation type a task is one GEMM over all `V` classes; otherwise it widens
/// [`WIDEN_CLASSES`] classes of its columns at a time and accumulates one GEMM per
/// chunk, in class order.
pub(super) fn hidden_grad_into<E: Element>(
    g: &[E::Acc],
    rows: usize,
    w: &Widened<'_, E>,
    (d, v): (usize, usize),
    accumulate: bool,
    dh_block: &mut [E::Acc],
) {
    assert!(g.len() == rows * v && w.w.len() == v * d && dh_block.len() == rows * d);
    let out = Ptr::new(dh_block);
    Blocks::new(d, DH_COL_CHUNK).for_each(|range| {
        let (c0, cols) = (range.start, range.len());
        if let Some(ws) = w.same {
            let wc = Strided::new(&ws[c0..], d, 1);
            let gs = Strided::new(g, v, 1);
            // SAFETY: `dh_block` holds `rows × d` elements; this task's view starts at
            // column `c0` and spans `cols ≤ d − c0` columns of each of the `rows` rows
            // (stride `d`), disjoint from every other task's columns, and `dh_block`
            // stays mutably borrowed for the whole loop.
            unsafe { matmul_raw((rows, cols, v), out.at(c0), (d, 1), accumulate, gs, wc) };
            return;
        }
        w.scratch.with(|buf| {
            for k0 in (0..v).step_by(WIDEN_CLASSES) {
                let k = WIDEN_CLASSES.min(v - k0);
                let wc = &mut buf[..k * cols];
                for (dst, src) in wc.chunks_exact_mut(cols).zip(w.w[k0 * d..].chunks(d)) {
                    for (x, y) in dst.iter_mut().zip(&src[c0..c0 + cols]) {
                        *x = y.to_acc();
                    }
                }
                let gs = Strided::new(&g[k0..], v, 1);
                let wc = Strided::new(&*wc, cols, 1);
                // SAFETY: as above; the chunks run one after the other in this task.
                unsafe {
                    matmul_raw(
                        (rows, cols, k),
                        out.at(c0),
                        (d, 1),
                        accumulate || k0 > 0,
                        gs,
                        wc,
                    )
                };
            }
        })
    });
}

/// `dW += Gᵀ·h_block` (`h` a `rows × d` view in the accumulation type), in tasks of
/// [`DW_CLASS_CHUNK`] rows of `dW`. A task copies its
/// classes of `G` column-major into its thread's scratch (`classes × rows` elements),
/// which `gemm` then reads in place: with `G`'s rows `V` apart, it packed them into a
/// new allocation per call. Its calls cover [`DW_COL_CHUNK`] columns of `dW` each, few
/// enough that `gemm` never packs the copy again.
pub(super) fn weight_grad_add<T: Float>(
    g: &[T],
    h: Strided<'_, T>,
    rows: usize,
    (d, v): (usize, usize),
    dw: &mut [T],
    scratch: &ThreadScratch<T>,
) {
    if d == 0 {
        return;
    }
    Blocks::new(v, DW_CLASS_CHUNK).map_mut([(Some(dw), d)], |range, [dw]| {
        let Some(dw) = dw else { return };
        scratch.with(|gt| {
            let (c0, classes) = (range.start, range.len());
            let gt = &mut gt[..classes * rows];
            transpose_into(&g[c0..], (rows, v), classes, gt, rows);
            let gt = Strided::new(&*gt, rows, 1);
            for d0 in (0..d).step_by(DW_COL_CHUNK) {
                let cols = DW_COL_CHUNK.min(d - d0);
                let hc = h.cols_from(d0);
                matmul(classes, cols, rows, &mut dw[d0..], (d, 1), true, gt, hc);
            }
        })
    });
}

/// A read-only matrix view: element `(i, j)` at `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(super) struct Strided<'a, T> {
    data: &'a [T],
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> Strided<'a, T> {
    pub(super) fn new(data: &'a [T], row_stride: usize, col_stride: usize) -> Self {
        Strided {
            data,
            row_stride,
            col_stride,
        }
    }
    /// Whether every element of an `rows × cols` matrix lies inside `data`.
    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
    /// The view from column `col0` on.
    fn cols_from(&self, col0: usize) -> Self {
        Strided::new(
            &self.data[col0 * self.col_stride..],
            self.row_stride,
            self.col_stride,
        )
    }
}

/// `s` as a slice of its accumulation type when that is its own type (f32, f64).
pub(super) fn as_acc<E: Element>(s: &[E]) -> Option<&[E::Acc]> {
    (std::any::TypeId::of::<E>() == std::any::TypeId::of::<E::Acc>()).then(|| {
        // SAFETY: `E` and `E::Acc` are the same type (equal `TypeId`s), so the cast
        // reinterprets nothing: same pointer, length, layout and lifetime.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<E::Acc>(), s.len()) }
    })
}

/// `s` in its accumulation type: borrowed when that is its own type, widened otherwise.
pub(super) fn widen<E: Element>(s: &[E]) -> std::borrow::Cow<'_, [E::Acc]> {
    match as_acc(s) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(s.iter().map(|v| v.to_acc()).collect()),
    }
}

/// The classifier weight as the GEMMs read it: the caller's `W` when it is already in
/// the accumulation type, else widened a tile at a time into a per-thread scratch
/// (made here, by the calling thread), so that no widened copy of `W` is ever whole.
pub(super) struct Widened<'a, E: Element> {
    w: &'a [E],
    same: Option<&'a [E::Acc]>,
    scratch: ThreadScratch<E::Acc>,
}

impl<'a, E: Element> Widened<'a, E> {
    /// `tile` elements of scratch per thread, when `w` needs widening.
    pub(super) fn new(w: &'a [E], threads: usize, tile: usize) -> Self {
        let same = as_acc(w);
        let (threads, tile) = if same.is_some() {
            (0, 0)
        } else {
            (threads, tile)
        };
        Widened {
            w,
            same,
            scratch: ThreadScratch::new(threads, tile, E::Acc::ZERO),
        }
    }
    /// Runs `f` on rows `r0..r0 + rows` of `W` (`d` columns each), in the accumulation
    /// type.
    fn rows<R>(&self, r0: usize, rows: usize, d: usize, f: impl FnOnce(&[E::Acc]) -> R) -> R {
        match self.same {
            Some(w) => f(&w[r0 * d..(r0 + rows) * d]),
            None => self.scratch.with(|buf| {
                let dst = &mut buf[..rows * d];
                for (x, y) in dst.iter_mut().zip(&self.w[r0 * d..(r0 + rows) * d]) {
                    *x = y.to_acc();
                }
                f(dst)
            }),
        }
    }
}

/// `dst (m×n, element (i, j) at i·rs + j·cs) = [dst +] lhs (m×k) · rhs (k×n)`, one
/// single-threaded `gemm` call.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    (rs, cs): (usize, usize),
    accumulate: bool,
    lhs: Strided<'_, T>,
    rhs: Strided<'_, T>,
) {
    let holds = Strided::new(&*dst, rs, cs).holds(m, n);
    assert!(holds, "matmul destination out of bounds");
    // SAFETY: `dst` holds every element of the `m × n` view (checked above) and is
    // borrowed mutably, so nothing else touches it.
    unsafe { matmul_raw((m, n, k), dst.as_mut_ptr(), (rs, cs), accumulate, lhs, rhs) }
}

/// [`matmul`] through a raw destination pointer, for tasks that write disjoint parts
/// of one buffer.
///
/// # Safety
/// `dst` must be valid for reads and writes at `i·rs + j·cs` for every `i < m`,
/// `j < n`, those elements must not overlap each other (`rs`, `cs` describe a proper
/// matrix) nor the operands, and nothing else may access them during the call.
unsafe fn matmul_raw<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    (rs, cs): (usize, usize),
    accumulate: bool,
    lhs: Strided<'_, T>,
    rhs: Strided<'_, T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lhs.holds(m, k) && rhs.holds(k, n),
        "matmul operands out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: `(i, j)` lies in the destination (the caller's contract).
                    unsafe { *dst.add(i * rs + j * cs) = T::ZERO };
                }
            }
        }
        return;
    }
    // SAFETY: the assert above keeps every element the GEMM reads inside the operands'
    // slices; the caller guarantees the destination's elements are valid, exclusive
    // and apart from the operands; `T` is f32 or f64 (the sealed `Float`), which `gemm`
    // supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            cs as isize,
            rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
