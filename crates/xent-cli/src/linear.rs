//! `xent loss linear-cross-entropy`: cross-entropy of `h·Wᵀ + b` and the gradients
//! w.r.t. `h`, `W` and `b`, without the `N × V` logits, on `.npy` files — with the file
//! contract of [`crate::loss`].

use std::path::{Path, PathBuf};

use xent::{
    linear_cross_entropy_into, LinearCrossEntropyOptions, LinearGradOut, LinearInputs, Reduction,
};

use crate::loss::{class_indices, deliver, not_float, reduction_name, upstream, vector, Computed};
use crate::npy::{self, Array, Data, Elem};
use crate::Failure;

/// Everything `xent loss linear-cross-entropy` was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// Hidden states `h`, `(N, D)`.
    pub hidden: PathBuf,
    /// Classifier weight `W`, `(V, D)`.
    pub weight: PathBuf,
    /// Classifier bias `b`, `(V)`.
    pub bias: Option<PathBuf>,
    /// Class indices, `(N)`.
    pub target: PathBuf,
    /// Class weights, `(V)`.
    pub class_weight: Option<PathBuf>,
    /// The ignored class index.
    pub ignore_index: i64,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// The z-loss scale.
    pub z_loss: f64,
    /// The logit soft-cap.
    pub softcap: Option<f64>,
    /// The reduction.
    pub reduction: Reduction,
    /// The scratch budget in MiB.
    pub scratch_mib: u64,
    /// Where to write the loss.
    pub out: Option<PathBuf>,
    /// Where to write `∂loss/∂h`.
    pub grad_out_hidden: Option<PathBuf>,
    /// Where to write `∂loss/∂W`.
    pub grad_out_weight: Option<PathBuf>,
    /// Where to write `∂loss/∂b`.
    pub grad_out_bias: Option<PathBuf>,
    /// The upstream gradient, `.npy`.
    pub grad_output: Option<PathBuf>,
    /// Print JSON instead of text.
    pub json: bool,
}

/// Runs the request and returns what to print.
///
/// # Errors
/// A [`Failure`] for unreadable files, bad dtypes or shapes, bad options and every
/// library error; no file is written then.
pub fn run(req: &Request) -> Result<String, Failure> {
    crate::outputs::check(
        &[
            ("--out", req.out.as_deref()),
            ("--grad-out-hidden", req.grad_out_hidden.as_deref()),
            ("--grad-out-weight", req.grad_out_weight.as_deref()),
            ("--grad-out-bias", req.grad_out_bias.as_deref()),
        ],
        &[
            ("--hidden", Some(&req.hidden)),
            ("--weight", Some(&req.weight)),
            ("--bias", req.bias.as_deref()),
            ("--target", Some(&req.target)),
            ("--class-weight", req.class_weight.as_deref()),
            ("--grad-output", req.grad_output.as_deref()),
        ],
    )?;
    let scratch_bytes = usize::try_from(req.scratch_mib)
        .ok()
        .and_then(|m| m.checked_mul(1 << 20))
        .ok_or_else(|| {
            Failure::new(format!(
                "--scratch-mib {} does not fit in memory addresses",
                req.scratch_mib
            ))
        })?;
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

/// Reads the other operands, runs the library, and collects the outputs.
fn compute<T: Elem>(
    req: &Request,
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
    let Some(indices) = class_indices(&target) else {
        return Err(Failure::new(format!(
            "target must hold class indices of an integer dtype, got {}",
            target.data.dtype()
        )));
    };
    if target.shape.len() != 1 {
        return Err(Failure::new(format!(
            "target must be a vector of N = {n} class indices, got shape {:?}",
            target.shape
        )));
    }
    let class_weight = match &req.class_weight {
        Some(p) => Some(vector::<T>(&npy::read(p)?, "class weight")?),
        None => None,
    };
    let none = req.reduction == Reduction::None;
    let loss_shape = if none { vec![n] } else { Vec::new() };
    let grad_output = match &req.grad_output {
        Some(p) => Some(upstream::<T>(
            &npy::read(p)?,
            &loss_shape,
            none,
            reduction_name(req.reduction),
        )?),
        None => None,
    };

    let mut opts = LinearCrossEntropyOptions::default()
        .ignore_index(req.ignore_index)
        .label_smoothing(req.label_smoothing)
        .z_loss(req.z_loss)
        .reduction(req.reduction)
        .scratch_bytes(scratch_bytes);
    if let Some(cap) = req.softcap {
        opts = opts.softcap(cap);
    }
    if let Some(cw) = &class_weight {
        opts = opts.weight(cw);
    }
    let mut inputs = LinearInputs::new(h, [n, d], &w, w_shape);
    if let Some(b) = &bias {
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
    let grad = if dh.is_some() || dw.is_some() || db.is_some() {
        let mut g = LinearGradOut::new();
        if let Some(dh) = dh.as_deref_mut() {
            g = g.hidden(dh);
        }
        if let Some(dw) = dw.as_deref_mut() {
            g = g.linear_weight(dw);
        }
        if let Some(db) = db.as_deref_mut() {
            g = g.linear_bias(db);
        }
        if let Some(go) = grad_output.as_deref() {
            g = g.grad_output(go);
        }
        Some(g)
    } else {
        None
    };
    let mut loss = vec![T::ZERO; loss_shape.iter().product()];
    let z = linear_cross_entropy_into(inputs, indices, &opts, &mut loss, grad)?;
    Ok(Computed::new(loss, loss_shape, z, req.out.as_deref())
        .file(req.grad_out_hidden.as_deref(), &[n, d], dh)
        .file(req.grad_out_weight.as_deref(), &w_shape, dw)
        .file(req.grad_out_bias.as_deref(), &[v], db))
}
