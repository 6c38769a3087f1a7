//! `xent loss linear-cross-entropy`: cross-entropy of `h·Wᵀ + b` and the gradients
//! w.r.t. `h`, `W` and `b`, without the `N × V` logits, on `.npy` files — with the file
//! contract of [`crate::loss`].

use std::path::Path;

use xent::{
    linear_cross_entropy_stats_into, ClassIndices, CrossEntropySettings, LinearGradOut,
    LinearInputs, Reduction,
};

use crate::args::LinearArgs;
use crate::npy::{self, Array, Data, Elem};
use crate::operands::{check_outputs, class_indices, not_float, reduction_name, upstream, vector};
use crate::report::{deliver, Computed, RowBuffers};
use crate::Failure;

/// Runs the request and returns what to print.
///
/// # Errors
/// A [`Failure`] for unreadable files, bad dtypes or shapes, bad options and every
/// library error; no file is written then.
pub fn run(req: &LinearArgs) -> Result<String, Failure> {
    check_outputs(&req.outputs(), &req.inputs())?;
    let scratch_bytes = req.scratch_bytes()?;
    let Array { shape, data } = npy::read(&req.hidden)?;
    let encoded = match data {
        Data::F32(h) => compute::<f32>(req, &h, &shape, scratch_bytes)?.encode()?,
        Data::F64(h) => compute::<f64>(req, &h, &shape, scratch_bytes)?.encode()?,
        other => return Err(not_float("hidden", &req.hidden, &other)),
    };
    deliver(encoded, req.json)
}

/// A 2-d float operand, converted to `T`: `(rows, cols)` and its values.
pub fn matrix<T: Elem>(path: &Path, what: &str) -> Result<([usize; 2], Vec<T>), Failure> {
    let a = npy::read(path)?;
    if !matches!(a.data, Data::F32(_) | Data::F64(_)) {
        return Err(not_float(what, path, &a.data));
    }
    match a.shape[..] {
        [r, c] => Ok(([r, c], a.data.to_float())),
        _ => Err(Failure::new(format!(
            "{what} must be a matrix (2-d), got shape {:?}",
            a.shape
        ))),
    }
}

/// The operands besides `h` and `W`, read and checked against `N` rows as every
/// linear cross-entropy command does, in this order and with these messages.
pub struct Operands<T> {
    /// The bias `b`, in `T`.
    pub bias: Option<Vec<T>>,
    /// The target file, checked: a vector of class indices of an integer dtype.
    target: Array,
    /// The options, with the class weights read.
    pub settings: CrossEntropySettings,
    /// The class weights in `T`.
    pub class_weight: Option<Vec<T>>,
    /// The upstream gradient, in `T`.
    pub grad_output: Option<Vec<T>>,
    /// The loss's shape: `[N]` for none, `[]` otherwise.
    pub loss_shape: Vec<usize>,
}

impl<T: Elem> Operands<T> {
    /// Reads `--bias`, `--target`, `--class-weight` and `--grad-output` for `n` rows.
    ///
    /// # Errors
    /// A [`Failure`] for an unreadable file, a bias that is not a float vector, a
    /// target that is not a vector of integers, a class weight that is not a vector,
    /// or an upstream gradient that does not fit the loss.
    pub fn read(req: &LinearArgs, n: usize) -> Result<Self, Failure> {
        let bias = match &req.bias {
            Some(p) => {
                let a = npy::read(p)?;
                if !matches!(a.data, Data::F32(_) | Data::F64(_)) {
                    return Err(not_float("bias", p, &a.data));
                }
                Some(vector::<T>(&a, "bias")?)
            }
            None => None,
        };
        let target = npy::read(&req.target)?;
        if class_indices(&target).is_none() {
            return Err(Failure::new(format!(
                "target must hold class indices of an integer dtype, got {}",
                target.data.dtype()
            )));
        }
        if target.shape.len() != 1 {
            return Err(Failure::new(format!(
                "target must be a vector of N = {n} class indices, got shape {:?}",
                target.shape
            )));
        }
        let mut settings = req.settings();
        if let Some(p) = &req.class_weight {
            settings.weight = Some(vector::<f64>(&npy::read(p)?, "class weight")?);
        }
        let none = req.rows.reduction == Reduction::None;
        let loss_shape = if none { vec![n] } else { Vec::new() };
        let grad_output = match &req.grad_output {
            Some(p) => Some(upstream::<T>(
                &npy::read(p)?,
                &loss_shape,
                none,
                reduction_name(req.rows.reduction),
            )?),
            None => None,
        };
        Ok(Operands {
            bias,
            target,
            class_weight: settings.weight_as::<T>(),
            settings,
            grad_output,
            loss_shape,
        })
    }

    /// The shapes and dtypes read, for comparing what several processes read:
    /// `bias [V], target int64 [N], class weight [V], grad_output [..]`.
    pub fn describe(&self) -> String {
        let len = |v: &Option<Vec<T>>| v.as_ref().map(Vec::len);
        format!(
            "bias {:?}, target {} {:?}, class weight {:?}, grad_output {:?}",
            len(&self.bias),
            self.target.data.dtype(),
            self.target.shape,
            len(&self.class_weight),
            len(&self.grad_output)
        )
    }

    /// The class indices, in the file's own integer type ([`read`](Self::read)
    /// refused any other dtype, so the empty fallback is never taken).
    pub fn indices(&self) -> ClassIndices<'_> {
        class_indices(&self.target).unwrap_or(ClassIndices::from(&[0i64; 0][..]))
    }
}

/// Reads the other operands, runs the library, and collects the outputs.
fn compute<T: Elem>(
    req: &LinearArgs,
    h: &[T],
    h_shape: &[usize],
    scratch_bytes: usize,
) -> Result<Computed<T>, Failure> {
    let &[n, d] = h_shape else {
        return Err(Failure::new(format!(
            "hidden must be a matrix (N, D), got shape {h_shape:?}"
        )));
    };
    let (w_shape, w) = matrix::<T>(&req.weight, "weight")?;
    let ops = Operands::<T>::read(req, n)?;
    let opts = ops
        .settings
        .linear_options(ops.class_weight.as_deref(), scratch_bytes);
    let mut inputs = LinearInputs::new(h, [n, d], &w, w_shape);
    if let Some(b) = &ops.bias {
        inputs = inputs.linear_bias(b);
    }
    let v = w_shape[0];
    // On huge pages when large (xent::alloc), and fallible: a (V, 0) `W` holds nothing
    // but asks for V entries of `db`.
    let zeroed = |name, shape: &[usize]| xent::alloc::zeroed_vec::<T>(name, shape);
    let mut dh = req
        .grad_out_hidden
        .as_ref()
        .map(|_| zeroed("grad hidden", &[n, d]))
        .transpose()?;
    let mut dw = req
        .grad_out_weight
        .as_ref()
        .map(|_| zeroed("grad weight", &w_shape[..]))
        .transpose()?;
    let mut db = req
        .grad_out_bias
        .as_ref()
        .map(|_| zeroed("grad bias", &[v]))
        .transpose()?;
    let grad = LinearGradOut::from_buffers(
        dh.as_deref_mut(),
        dw.as_deref_mut(),
        db.as_deref_mut(),
        ops.grad_output.as_deref(),
    );
    let mut loss = vec![T::ZERO; ops.loss_shape.iter().product()];
    let mut rows = RowBuffers::<T>::new(&req.row_outputs, n);
    let target = ops.indices();
    let z =
        linear_cross_entropy_stats_into(inputs, target, &opts, &mut loss, grad, rows.outputs())?;
    let computed = Computed::new(loss, ops.loss_shape, z, req.out.as_deref())
        .file(req.grad_out_hidden.as_deref(), &[n, d], dh)
        .file(req.grad_out_weight.as_deref(), &w_shape, dw)
        .file(req.grad_out_bias.as_deref(), &[v], db);
    Ok(rows.into_files(computed, &req.row_outputs, &[n]))
}
