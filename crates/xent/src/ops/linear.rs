//! `linear_cross_entropy`: cross-entropy of the logits `h·Wᵀ + b` and its gradients
//! with respect to `h`, `W` and `b`, without ever holding the `N × V` logits.
//!
//! The driver walks blocks of rows. For each block it forms the block's logits with a
//! GEMM, hands every row to the library's fused [`cross_entropy_into`] (reduction
//! `sum`, upstream gradient = the row's global scale `s_n`), which leaves the logit
//! gradient `G` of the block, and folds `G` back with two more GEMMs:
//! `dh_block = G·W`, `dW += Gᵀ·h_block`, plus `db += Σ_rows G`. The mean's
//! denominator `D = Σ_{n∈M} w_{y_n}` is summed over all rows before the first block, so
//! the block size never changes the result beyond the rounding of the GEMM sums.

use gemm::Parallelism;
use rayon::prelude::*;

use super::{check_len, scalar_upstream, target_class, Loss};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::layout::Layout;
use crate::ops::cross_entropy::{block_inplace, check_options, Denominators};
use crate::options::{CrossEntropyOptions, GradMode, Reduction};
use crate::par::CallScale;
use crate::reduce::CompensatedSum;
use crate::targets::ClassIndices;
use crate::targets::Targets;

/// The default scratch budget of [`linear_cross_entropy`]: 64 MiB.
///
/// ```
/// use xent::{LinearCrossEntropyOptions, DEFAULT_SCRATCH_BYTES};
/// assert_eq!(LinearCrossEntropyOptions::<f32>::default().scratch_bytes, DEFAULT_SCRATCH_BYTES);
/// ```
pub const DEFAULT_SCRATCH_BYTES: usize = 64 << 20;

/// The most rows a block takes, whatever the budget: the three GEMMs already run at
/// full speed with 128 rows (`dW += Gᵀ·h_block` has `2·128` flops per byte of `dW` it
/// streams), so more rows would only add memory. With it the scratch stays at
/// `128·V` logits, 3% of the whole logits for `N = 4096`.
const MAX_BLOCK_ROWS: usize = 128;

/// The `dW` GEMM runs over this many classes at a time: `gemm` packs a whole operand
/// panel of `classes × B` values per call, and unchunked that panel (tens of MiB for a
/// large vocabulary) would be the largest scratch of all.
const DW_CLASS_CHUNK: usize = 512;

/// Below this many multiply-adds a GEMM runs on the calling thread: splitting it
/// costs more than it saves.
const PARALLEL_GEMM_MIN_WORK: usize = 1 << 20;

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

impl<'a, T: Float> LinearInputs<'a, T> {
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
/// `scratch_bytes` (default [`DEFAULT_SCRATCH_BYTES`]) bounds the memory the driver
/// adds for a block of logits and one row of work space per thread; it sets the
/// row-block size `B = budget / (V·size_of::<T>()) − threads`, at least 1 and at most
/// 128: the GEMMs gain nothing from more rows, so a larger budget is not spent. With
/// 128 rows the scratch is 3% of the unfused form's `N × V` logits for `N = 4096`.
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
    /// Upper bound of the scratch memory in bytes (default 64 MiB).
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
/// # Errors
/// [`Error::OperandShape`] when an operand's length does not match its shape,
/// [`Error::DimMismatch`] when `h` and `W` disagree on `D`, the bias is not `V` long or
/// the target does not have `N` entries, [`Error::NoClasses`] for `V = 0`, and the
/// errors of [`cross_entropy`](crate::cross_entropy): a target out of `[0, V)` (naming
/// it and its row), a class weight of the wrong length, `label_smoothing` outside `[0, 1]`.
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
pub fn linear_cross_entropy<'t, T: Float>(
    inputs: LinearInputs<'_, T>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, T>,
) -> Result<Loss<T>> {
    let (n, _, _) = check_inputs(&inputs)?;
    let mut out = vec![T::ZERO; loss_len(n, opts.cross_entropy.reduction)];
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
pub fn linear_cross_entropy_with_grad<'t, T: Float>(
    inputs: LinearInputs<'_, T>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, T>,
) -> Result<(Loss<T>, LinearGrads<T>)> {
    let (n, d, v) = check_inputs(&inputs)?;
    let reduction = opts.cross_entropy.reduction;
    let mut out = vec![T::ZERO; loss_len(n, reduction)];
    let mut dh = vec![T::ZERO; n * d];
    let mut dw = vec![T::ZERO; v * d];
    let mut db = inputs.linear_bias.map(|_| vec![T::ZERO; v]);
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
/// row per thread (see [`LinearCrossEntropyOptions`]), and the GEMM's packing
/// buffers. `dW` and `db` are accumulated over the row blocks in `T` (`f32` for `f32`
/// inputs, never lower).
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
pub fn linear_cross_entropy_into<'t, T: Float>(
    inputs: LinearInputs<'_, T>,
    target: impl Into<ClassIndices<'t>>,
    opts: &LinearCrossEntropyOptions<'_, T>,
    loss_out: &mut [T],
    grad: Option<LinearGradOut<'_, T>>,
) -> Result<Option<T>> {
    let target = target.into();
    let (n, d, v) = check_inputs(&inputs)?;
    let ce = &opts.cross_entropy;
    let reduction = ce.reduction;
    if target.len() != n {
        return Err(Error::DimMismatch {
            left: "hidden",
            left_dim: n,
            right: "target",
            right_dim: target.len(),
            what: "rows",
        });
    }
    // The logits' layout, for the checks shared with cross_entropy (no logits exist).
    let layout = Layout::new(&[n, v], n * v)?;
    check_options::<T>(ce, &layout, &Targets::Indices(target))?;
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
    let want_grad = dh.is_some() || dw.is_some() || db.is_some();
    // dW and db are sums over the blocks; dh is written block by block.
    if !accumulate {
        for g in [dw.as_deref_mut(), db.as_deref_mut()].into_iter().flatten() {
            g.fill(T::ZERO);
        }
    }

    // D = Σ_{n∈M} w_{y_n} and |M| over every row, before any block, as cross_entropy
    // sums them, so that blocking never changes the result.
    let dens = Denominators::of_indices(&target, n, ce.ignore_index, ce.weight);
    let uniform = dens.uniform_scale(reduction, scalar_upstream(grad_output, reduction));

    let threads = rayon::current_num_threads().max(1);
    let block = block_rows(n, v, threads, std::mem::size_of::<T>(), opts.scratch_bytes);
    let mut logits = vec![T::ZERO; block * v];
    let mut row_loss = vec![T::ZERO; block];
    let mut total = CompensatedSum::default();
    let mut ztotal = CompensatedSum::default();
    let mut block_targets = Vec::with_capacity(block);

    let mut r0 = 0;
    while r0 < n {
        let rows = block.min(n - r0);
        let h_block = &inputs.hidden[r0 * d..(r0 + rows) * d];
        let x = &mut logits[..rows * v];

        // x = h_block·Wᵀ (+ b)
        if let Some(b) = inputs.linear_bias {
            for row in x.chunks_exact_mut(v) {
                row.copy_from_slice(b);
            }
        }
        let wt = Strided::new(inputs.linear_weight, 1, d);
        let hb = Strided::new(h_block, d, 1);
        matmul(rows, v, d, x, v, inputs.linear_bias.is_some(), hb, wt);

        // The block through the library's fused kernel; G overwrites the logits.
        block_targets.clear();
        block_targets.extend((r0..r0 + rows).map(|r| {
            target_class(&target, r, ce.ignore_index).map_or(ce.ignore_index, |y| y as i64)
        }));
        let scale = match (reduction, grad_output) {
            (Reduction::None, Some(go)) => CallScale::PerRow(&go[r0..r0 + rows]),
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
            // dh_block = G·W
            let dh_block = &mut dh[r0 * d..(r0 + rows) * d];
            let gs = Strided::new(g, v, 1);
            let w = Strided::new(inputs.linear_weight, d, 1);
            matmul(rows, d, v, dh_block, d, accumulate, gs, w);
        }
        if let Some(dw) = dw.as_deref_mut() {
            // dW += Gᵀ·h_block, a chunk of classes at a time
            let hb = Strided::new(h_block, d, 1);
            for (c, dw) in dw.chunks_mut(DW_CLASS_CHUNK * d.max(1)).enumerate() {
                let c0 = c * DW_CLASS_CHUNK;
                let classes = DW_CLASS_CHUNK.min(v - c0);
                let gt = Strided::new(&g[c0..], 1, v);
                matmul(classes, d, rows, dw, d, true, gt, hb);
            }
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

/// Checks the operands' shapes against each other; returns `(N, D, V)`.
fn check_inputs<T>(inputs: &LinearInputs<'_, T>) -> Result<(usize, usize, usize)> {
    let [n, d] = inputs.hidden_shape;
    let [v, dw] = inputs.linear_weight_shape;
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
    if d != dw {
        return Err(Error::DimMismatch {
            left: "hidden",
            left_dim: d,
            right: "linear_weight",
            right_dim: dw,
            what: "columns",
        });
    }
    if let Some(b) = inputs.linear_bias {
        if b.len() != v {
            return Err(Error::DimMismatch {
                left: "linear_weight",
                left_dim: v,
                right: "linear_bias",
                right_dim: b.len(),
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

/// Rows per block: what the budget holds after one work row per thread, at most
/// [`MAX_BLOCK_ROWS`], at least 1.
fn block_rows(n: usize, v: usize, threads: usize, elem: usize, scratch_bytes: usize) -> usize {
    let row_bytes = v.max(1).saturating_mul(elem);
    let rows = scratch_bytes / row_bytes;
    rows.saturating_sub(threads)
        .clamp(1, MAX_BLOCK_ROWS)
        .min(n.max(1))
}

/// `db += Σ_rows G`, split over column ranges so that every column is summed in row
/// order whatever the thread count.
fn column_sums_into<T: Float>(g: &[T], v: usize, db: &mut [T]) {
    const COLUMNS: usize = 4096;
    let rows = g.len() / v;
    db.par_chunks_mut(COLUMNS).enumerate().for_each(|(c, db)| {
        let off = c * COLUMNS;
        for r in 0..rows {
            let row = &g[r * v + off..r * v + off + db.len()];
            for (acc, &x) in db.iter_mut().zip(row) {
                *acc += x;
            }
        }
    });
}

/// A read-only matrix view: element `(i, j)` at `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
struct Strided<'a, T> {
    data: &'a [T],
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> Strided<'a, T> {
    fn new(data: &'a [T], row_stride: usize, col_stride: usize) -> Self {
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
}

/// `dst (m×n, row-major with row stride dst_rs) = [dst +] lhs (m×k) · rhs (k×n)` with
/// `gemm`, multithreaded on rayon's pool when the product is large.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: Strided<'_, T>,
    rhs: Strided<'_, T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + n <= dst.len()
            && n <= dst_rs.max(1)
            && lhs.holds(m, k)
            && rhs.holds(k, n),
        "matmul operands out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs.max(1)).take(m) {
                row[..n].fill(T::ZERO);
            }
        }
        return;
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_GEMM_MIN_WORK {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the assert above keeps every element the GEMM reads or writes inside its
    // slice; `dst` is borrowed mutably, so it aliases neither operand; `T` is f32 or f64
    // (the sealed `Float`), which `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
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
            parallelism,
        );
    }
}
