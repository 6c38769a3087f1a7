//! `xent._xent`: the native module under the `xent` Python package.
//!
//! Thin wrappers over xent's `*_into` functions: every array comes in as a numpy array
//! whose memory is handed to xent as a slice, without a copy, and every output goes
//! into a numpy buffer the Python layer allocated (numpy advises large buffers for
//! huge pages, which makes their first touch cheap). The Python layer (`xent`,
//! `xent.torch`) picks dtypes and shapes and allocates; this module only checks that
//! the arrays are C-contiguous and of the dtype it expects, releases the GIL and runs
//! xent on a rayon pool of the requested size. No numerics of its own.
//!
//! `bfloat16` and `float16` arrays arrive as their raw 16-bit storage (an `int16`
//! view) with `half="bfloat16"` or `half="float16"`, and are reinterpreted (not
//! converted) as [`xent::bf16`] / [`xent::f16`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytemuck::Pod;
use numpy::{PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use xent::{
    bf16, f16, BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions, ClassIndices,
    ClassWeightOptions, ClassWeighting, CrossEntropySettings, Element, Error, Float, GradOut,
    JsDivOptions, KlDivOptions, KlReduction, LinearCrossEntropyOptions, LinearGradOut,
    LinearInputs, NllLossOptions, Reduction, RowOutputs, Targets,
};

/// xent's error as the Python exception PyTorch raises for the same mistake:
/// `IndexError` for a target out of range (as `F.cross_entropy` on the CPU),
/// `ValueError` for a batch-size mismatch and for an option torch does not have (or
/// checks in Python: `reduction`), `RuntimeError` for the rest (torch's `TORCH_CHECK`:
/// `label_smoothing` out of range, binary cross-entropy inputs outside `[0, 1]`,
/// `ignore_index` or a non-float dtype with probability targets, shapes that do not fit).
fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::TargetOutOfBounds { .. } => PyIndexError::new_err(msg),
        Error::InvalidArgument { .. } | Error::BatchMismatch { .. } => PyValueError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// Rayon pools by thread count, built once each and kept (building one per call would
/// cost a thread spawn per thread), with the id of the process that built them: a
/// child made by `fork()` (a DataLoader worker) has none of its parent's threads, so
/// it builds its own pools instead of queueing work for threads that do not exist.
/// rayon's global pool is never used, for the same reason.
static POOLS: Mutex<Option<(u32, Pools)>> = Mutex::new(None);

/// The pools of one process, by thread count.
type Pools = HashMap<usize, Arc<rayon::ThreadPool>>;

fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let mut guard = POOLS
        .lock()
        .map_err(|_| PyRuntimeError::new_err("xent's thread-pool registry is poisoned"))?;
    let pid = std::process::id();
    if guard.as_ref().is_some_and(|(owner, _)| *owner != pid) {
        // The parent's pools: their threads are not in this process, and dropping
        // them would signal threads that do not exist. They are left as they are.
        if let Some((_, old)) = guard.take() {
            std::mem::forget(old);
        }
    }
    let (_, pools) = guard.get_or_insert_with(|| (pid, HashMap::new()));
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("xent-{i}"))
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start {threads} threads: {e}")))?;
    let p = Arc::new(p);
    pools.insert(threads, p.clone());
    Ok(p)
}

/// Runs `f` without the GIL, on a pool of `threads` threads (`0`: one per core).
fn compute<R: Send>(
    py: Python<'_>,
    threads: usize,
    f: impl FnOnce() -> xent::Result<R> + Send,
) -> PyResult<R> {
    let r = py.detach(|| -> PyResult<xent::Result<R>> { Ok(pool(threads)?.install(f)) })?;
    r.map_err(py_err)
}

fn dtype_name(obj: &Bound<'_, PyAny>) -> String {
    obj.getattr("dtype")
        .and_then(|d| d.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| obj.get_type().to_string())
}

/// A read-only numpy array of storage type `S`, with an error naming the argument.
fn ro<'py, S: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    want: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, S>> {
    obj.extract::<PyReadonlyArrayDyn<'py, S>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a numpy array of {want}, got {}",
            dtype_name(obj)
        ))
    })
}

fn rw<'py, S: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    want: &str,
) -> PyResult<PyReadwriteArrayDyn<'py, S>> {
    obj.extract::<PyReadwriteArrayDyn<'py, S>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a writeable numpy array of {want}, got {}",
            dtype_name(obj)
        ))
    })
}

fn opt_ro<'py, S: numpy::Element>(
    obj: Option<&Bound<'py, PyAny>>,
    name: &str,
    want: &str,
) -> PyResult<Option<PyReadonlyArrayDyn<'py, S>>> {
    obj.map(|o| ro(o, name, want)).transpose()
}

fn opt_rw<'py, S: numpy::Element>(
    obj: Option<&Bound<'py, PyAny>>,
    name: &str,
    want: &str,
) -> PyResult<Option<PyReadwriteArrayDyn<'py, S>>> {
    obj.map(|o| rw(o, name, want)).transpose()
}

fn not_contiguous(name: &str) -> PyErr {
    PyValueError::new_err(format!("{name} must be C-contiguous"))
}

/// The array's memory as a slice of `T` (same size as the storage type `S`).
fn slice<'a, S: numpy::Element + Pod, T: Pod>(
    a: &'a PyReadonlyArrayDyn<'_, S>,
    name: &str,
) -> PyResult<&'a [T]> {
    let s = a.as_slice().map_err(|_| not_contiguous(name))?;
    bytemuck::try_cast_slice(s)
        .map_err(|e| PyTypeError::new_err(format!("{name}: cannot view as the element type: {e}")))
}

fn slice_mut<'a, S: numpy::Element + Pod, T: Pod>(
    a: &'a mut PyReadwriteArrayDyn<'_, S>,
    name: &str,
) -> PyResult<&'a mut [T]> {
    let s = a.as_slice_mut().map_err(|_| not_contiguous(name))?;
    bytemuck::try_cast_slice_mut(s)
        .map_err(|e| PyTypeError::new_err(format!("{name}: cannot view as the element type: {e}")))
}

fn opt_slice<'a, S: numpy::Element + Pod, T: Pod>(
    a: &'a Option<PyReadonlyArrayDyn<'_, S>>,
    name: &str,
) -> PyResult<Option<&'a [T]>> {
    a.as_ref().map(|a| slice(a, name)).transpose()
}

fn opt_slice_mut<'a, S: numpy::Element + Pod, T: Pod>(
    a: &'a mut Option<PyReadwriteArrayDyn<'_, S>>,
    name: &str,
) -> PyResult<Option<&'a mut [T]>> {
    a.as_mut().map(|a| slice_mut(a, name)).transpose()
}

/// The element type of a call's floating-point arrays.
#[derive(Clone, Copy)]
enum Kind {
    F32,
    F64,
    Bf16,
    F16,
}

impl Kind {
    fn of(input: &Bound<'_, PyAny>, half: Option<&str>) -> PyResult<Kind> {
        match half {
            Some("bfloat16") => Ok(Kind::Bf16),
            Some("float16") => Ok(Kind::F16),
            Some(other) => Err(PyValueError::new_err(format!(
                "half must be 'bfloat16' or 'float16', got {other:?}"
            ))),
            None => match dtype_name(input).as_str() {
                "float32" => Ok(Kind::F32),
                "float64" => Ok(Kind::F64),
                d => Err(PyTypeError::new_err(format!(
                    "input must be a numpy array of float32 or float64, got {d}"
                ))),
            },
        }
    }
}

/// Expands `$body` once per element type: `$t` the element type, `$s` its numpy
/// storage type (`i16` for the 16-bit floats), `$a` the accumulation type.
macro_rules! per_kind {
    ($kind:expr, $t:ident, $s:ident, $a:ident => $body:expr) => {
        match $kind {
            Kind::F32 => {
                type $t = f32;
                type $s = f32;
                type $a = f32;
                $body
            }
            Kind::F64 => {
                type $t = f64;
                type $s = f64;
                type $a = f64;
                $body
            }
            Kind::Bf16 => {
                type $t = bf16;
                type $s = i16;
                type $a = f32;
                $body
            }
            Kind::F16 => {
                type $t = f16;
                type $s = i16;
                type $a = f32;
                $body
            }
        }
    };
}

/// Class-index targets of any numpy integer dtype.
enum Indices<'py> {
    I8(PyReadonlyArrayDyn<'py, i8>),
    I16(PyReadonlyArrayDyn<'py, i16>),
    I32(PyReadonlyArrayDyn<'py, i32>),
    I64(PyReadonlyArrayDyn<'py, i64>),
    U8(PyReadonlyArrayDyn<'py, u8>),
    U16(PyReadonlyArrayDyn<'py, u16>),
    U32(PyReadonlyArrayDyn<'py, u32>),
    U64(PyReadonlyArrayDyn<'py, u64>),
}

impl<'py> Indices<'py> {
    fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let bad = || {
            PyTypeError::new_err(format!(
                "target must be a numpy array of an integer dtype (class indices), got {}",
                dtype_name(obj)
            ))
        };
        Ok(match dtype_name(obj).as_str() {
            "int64" => Indices::I64(obj.extract().map_err(|_| bad())?),
            "int32" => Indices::I32(obj.extract().map_err(|_| bad())?),
            "int16" => Indices::I16(obj.extract().map_err(|_| bad())?),
            "int8" => Indices::I8(obj.extract().map_err(|_| bad())?),
            "uint8" => Indices::U8(obj.extract().map_err(|_| bad())?),
            "uint16" => Indices::U16(obj.extract().map_err(|_| bad())?),
            "uint32" => Indices::U32(obj.extract().map_err(|_| bad())?),
            "uint64" => Indices::U64(obj.extract().map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    }

    fn get(&self) -> PyResult<ClassIndices<'_>> {
        let nc = || not_contiguous("target");
        Ok(match self {
            Indices::I8(a) => a.as_slice().map_err(|_| nc())?.into(),
            Indices::I16(a) => a.as_slice().map_err(|_| nc())?.into(),
            Indices::I32(a) => a.as_slice().map_err(|_| nc())?.into(),
            Indices::I64(a) => a.as_slice().map_err(|_| nc())?.into(),
            Indices::U8(a) => a.as_slice().map_err(|_| nc())?.into(),
            Indices::U16(a) => a.as_slice().map_err(|_| nc())?.into(),
            Indices::U32(a) => a.as_slice().map_err(|_| nc())?.into(),
            Indices::U64(a) => a.as_slice().map_err(|_| nc())?.into(),
        })
    }
}

fn reduction(s: &str) -> PyResult<Reduction> {
    s.parse().map_err(py_err)
}

/// The keyword arguments of the cross-entropy losses as xent's settings; the class
/// weights stay in their array, already in the accumulation dtype, and are passed to
/// `CrossEntropySettings::options` as they are.
#[allow(clippy::too_many_arguments)]
fn settings(
    ignore_index: i64,
    label_smoothing: f64,
    reduction: &str,
    z_loss: f64,
    softcap: Option<f64>,
    logit_scale: f64,
    denominator: Option<f64>,
) -> PyResult<CrossEntropySettings> {
    let mut s = CrossEntropySettings::default()
        .ignore_index(ignore_index)
        .label_smoothing(label_smoothing)
        .reduction(self::reduction(reduction)?)
        .z_loss(z_loss)
        .logit_scale(logit_scale);
    s.softcap = softcap;
    s.denominator = denominator;
    Ok(s)
}

/// The per-row output arrays of one call (`lse_out`, `entropy_out`, `z_out` in the
/// accumulation dtype `A`, `argmax_out` int64), each one element per row, borrowed
/// writeable for the call.
struct RowArrays<'py, A: numpy::Element> {
    lse: Option<PyReadwriteArrayDyn<'py, A>>,
    entropy: Option<PyReadwriteArrayDyn<'py, A>>,
    argmax: Option<PyReadwriteArrayDyn<'py, i64>>,
    z: Option<PyReadwriteArrayDyn<'py, A>>,
}

impl<'py, A: numpy::Element + Pod> RowArrays<'py, A> {
    fn extract(outs: [Option<&Bound<'py, PyAny>>; 4], acc: &str) -> PyResult<Self> {
        let [lse, entropy, argmax, z] = outs;
        Ok(RowArrays {
            lse: opt_rw(lse, "lse_out", acc)?,
            entropy: opt_rw(entropy, "entropy_out", acc)?,
            argmax: opt_rw(argmax, "argmax_out", "int64")?,
            z: opt_rw(z, "z_out", acc)?,
        })
    }

    /// The arrays as the library's [`RowOutputs`] (its lengths are xent's to check).
    fn outputs(&mut self) -> PyResult<RowOutputs<'_, A>> {
        let mut rows = RowOutputs::new();
        if let Some(s) = opt_slice_mut(&mut self.lse, "lse_out")? {
            rows = rows.lse(s);
        }
        if let Some(s) = opt_slice_mut(&mut self.entropy, "entropy_out")? {
            rows = rows.entropy(s);
        }
        if let Some(s) = opt_slice_mut(&mut self.argmax, "argmax_out")? {
            rows = rows.argmax(s);
        }
        if let Some(s) = opt_slice_mut(&mut self.z, "z_out")? {
            rows = rows.z(s);
        }
        Ok(rows)
    }
}

fn storage_name(kind: Kind) -> &'static str {
    match kind {
        Kind::F32 => "float32",
        Kind::F64 => "float64",
        Kind::Bf16 | Kind::F16 => "int16 (the raw storage of a 16-bit float)",
    }
}

fn acc_name(kind: Kind) -> &'static str {
    match kind {
        Kind::F64 => "float64",
        _ => "float32",
    }
}

/// `cross_entropy_stats_into`: the loss into `loss_out` (accumulation dtype: float64
/// for float64 input, float32 otherwise; one element for mean/sum, the row shape for
/// none), the gradient (input's dtype) into `grad` when given, scaled by
/// `grad_output`, and the per-row outputs into those of `lse_out`, `entropy_out`,
/// `argmax_out` (int64) and `z_out` given (one element per row). `logit_scale` and
/// `denominator` are the library's options of those names. Returns the z-loss term
/// when `z_loss` is set.
#[pyfunction]
#[pyo3(signature = (input, target, loss_out, *, grad=None, weight=None, grad_output=None,
    ignore_index=-100, label_smoothing=0.0, reduction=String::from("mean"), z_loss=0.0, softcap=None,
    logit_scale=1.0, denominator=None, lse_out=None, entropy_out=None, argmax_out=None,
    z_out=None, probabilities=false, half=None, threads=0))]
#[allow(clippy::too_many_arguments)]
fn cross_entropy_into(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    loss_out: &Bound<'_, PyAny>,
    grad: Option<&Bound<'_, PyAny>>,
    weight: Option<&Bound<'_, PyAny>>,
    grad_output: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: String,
    z_loss: f64,
    softcap: Option<f64>,
    logit_scale: f64,
    denominator: Option<f64>,
    lse_out: Option<&Bound<'_, PyAny>>,
    entropy_out: Option<&Bound<'_, PyAny>>,
    argmax_out: Option<&Bound<'_, PyAny>>,
    z_out: Option<&Bound<'_, PyAny>>,
    probabilities: bool,
    half: Option<String>,
    threads: usize,
) -> PyResult<Option<f64>> {
    let settings = settings(
        ignore_index,
        label_smoothing,
        &reduction,
        z_loss,
        softcap,
        logit_scale,
        denominator,
    )?;
    let outs = [lse_out, entropy_out, argmax_out, z_out];
    let kind = Kind::of(input, half.as_deref())?;
    let (sn, an) = (storage_name(kind), acc_name(kind));
    per_kind!(kind, T, S, A => {
        let xa = ro::<S>(input, "input", sn)?;
        let shape = xa.shape().to_vec();
        let x: &[T] = slice(&xa, "input")?;
        let (ta, pa) = if probabilities {
            (None, Some(ro::<S>(target, "target", sn)?))
        } else {
            (Some(Indices::extract(target)?), None)
        };
        let tgt: Targets<'_, T> = match (&ta, &pa) {
            (Some(t), _) => Targets::Indices(t.get()?),
            (None, Some(p)) => Targets::Probabilities(slice(p, "target")?),
            (None, None) => return Err(PyRuntimeError::new_err("no target")),
        };
        let wa = opt_ro::<A>(weight, "weight", an)?;
        let goa = opt_ro::<A>(grad_output, "grad_output", an)?;
        let mut la = rw::<A>(loss_out, "loss_out", an)?;
        let mut ga = opt_rw::<S>(grad, "grad", sn)?;
        let mut ra = RowArrays::<A>::extract(outs, an)?;
        let opts = settings.options::<A>(opt_slice(&wa, "weight")?);
        let go: Option<&[A]> = opt_slice(&goa, "grad_output")?;
        let loss: &mut [A] = slice_mut(&mut la, "loss_out")?;
        let g = grad_out::<T>(opt_slice_mut(&mut ga, "grad")?, go);
        let rows = ra.outputs()?;
        let z = compute(py, threads, || {
            xent::cross_entropy_stats_into(x, &shape, tgt, &opts, loss, g, rows)
        })?;
        Ok(z.map(|z| z.to_f64()))
    })
}

/// `nll_loss_into`: as [`cross_entropy_into`], on log-probabilities.
#[pyfunction]
#[pyo3(signature = (input, target, loss_out, *, grad=None, weight=None, grad_output=None,
    ignore_index=-100, reduction=String::from("mean"), denominator=None, half=None, threads=0))]
#[allow(clippy::too_many_arguments)]
fn nll_loss_into(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    loss_out: &Bound<'_, PyAny>,
    grad: Option<&Bound<'_, PyAny>>,
    weight: Option<&Bound<'_, PyAny>>,
    grad_output: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    reduction: String,
    denominator: Option<f64>,
    half: Option<String>,
    threads: usize,
) -> PyResult<()> {
    let red = self::reduction(&reduction)?;
    let kind = Kind::of(input, half.as_deref())?;
    let (sn, an) = (storage_name(kind), acc_name(kind));
    per_kind!(kind, T, S, A => {
        let xa = ro::<S>(input, "input", sn)?;
        let shape = xa.shape().to_vec();
        let x: &[T] = slice(&xa, "input")?;
        let ta = Indices::extract(target)?;
        let tgt = ta.get()?;
        let wa = opt_ro::<A>(weight, "weight", an)?;
        let goa = opt_ro::<A>(grad_output, "grad_output", an)?;
        let mut la = rw::<A>(loss_out, "loss_out", an)?;
        let mut ga = opt_rw::<S>(grad, "grad", sn)?;
        let mut opts = NllLossOptions::<A>::default()
            .ignore_index(ignore_index)
            .reduction(red);
        if let Some(w) = opt_slice(&wa, "weight")? {
            opts = opts.weight(w);
        }
        if let Some(d) = denominator {
            opts = opts.denominator(d);
        }
        let go: Option<&[A]> = opt_slice(&goa, "grad_output")?;
        let loss: &mut [A] = slice_mut(&mut la, "loss_out")?;
        let g = grad_out::<T>(opt_slice_mut(&mut ga, "grad")?, go);
        compute(py, threads, || xent::nll_loss_into(x, &shape, tgt, &opts, loss, g))
    })
}

/// `softmax_into` / `log_softmax_into` (`log=True`) over dim 1 (dim 0 of a 1-d
/// input) into `out`, of the input's dtype and shape.
#[pyfunction]
#[pyo3(signature = (input, out, *, log=false, half=None, threads=0))]
fn softmax_into(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    log: bool,
    half: Option<String>,
    threads: usize,
) -> PyResult<()> {
    let kind = Kind::of(input, half.as_deref())?;
    let sn = storage_name(kind);
    per_kind!(kind, T, S, _A => {
        let xa = ro::<S>(input, "input", sn)?;
        let shape = xa.shape().to_vec();
        let x: &[T] = slice(&xa, "input")?;
        let mut oa = rw::<S>(out, "out", sn)?;
        let o: &mut [T] = slice_mut(&mut oa, "out")?;
        compute(py, threads, || {
            if log {
                xent::log_softmax_into(x, &shape, o)
            } else {
                xent::softmax_into(x, &shape, o)
            }
        })
    })
}

/// The element type of the elementwise losses: float32 or float64 only.
fn float_kind(input: &Bound<'_, PyAny>) -> PyResult<Kind> {
    match Kind::of(input, None)? {
        k @ (Kind::F32 | Kind::F64) => Ok(k),
        _ => Err(PyTypeError::new_err("expected float32 or float64")),
    }
}

/// Expands `$body` for float32 and float64 (`$t` the type).
macro_rules! per_float {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            Kind::F64 => {
                type $t = f64;
                $body
            }
            _ => {
                type $t = f32;
                $body
            }
        }
    };
}

fn grad_out<'a, T: Element>(
    g: Option<&'a mut [T]>,
    go: Option<&'a [T::Acc]>,
) -> Option<GradOut<'a, T>> {
    g.map(|g| {
        let out = GradOut::new(g);
        match go {
            Some(go) => out.grad_output(go),
            None => out,
        }
    })
}

/// `binary_cross_entropy_into` (probabilities), float32/float64; `weight` broadcast
/// as xent allows (the input's shape, its last dim, or one element).
#[pyfunction]
#[pyo3(signature = (input, target, loss_out, *, grad=None, weight=None, grad_output=None,
    reduction=String::from("mean"), threads=0))]
#[allow(clippy::too_many_arguments)]
fn binary_cross_entropy_into(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    loss_out: &Bound<'_, PyAny>,
    grad: Option<&Bound<'_, PyAny>>,
    weight: Option<&Bound<'_, PyAny>>,
    grad_output: Option<&Bound<'_, PyAny>>,
    reduction: String,
    threads: usize,
) -> PyResult<()> {
    let red = self::reduction(&reduction)?;
    let kind = float_kind(input)?;
    let n = acc_name(kind);
    per_float!(kind, T => {
        let xa = ro::<T>(input, "input", n)?;
        let shape = xa.shape().to_vec();
        let x: &[T] = slice(&xa, "input")?;
        let ta = ro::<T>(target, "target", n)?;
        let t: &[T] = slice(&ta, "target")?;
        let wa = opt_ro::<T>(weight, "weight", n)?;
        let goa = opt_ro::<T>(grad_output, "grad_output", n)?;
        let mut la = rw::<T>(loss_out, "loss_out", n)?;
        let mut ga = opt_rw::<T>(grad, "grad", n)?;
        let mut opts = BinaryCrossEntropyOptions::<T>::default().reduction(red);
        if let Some(w) = opt_slice(&wa, "weight")? {
            opts = opts.weight(w);
        }
        let loss: &mut [T] = slice_mut(&mut la, "loss_out")?;
        let g = grad_out::<T>(opt_slice_mut(&mut ga, "grad")?, opt_slice(&goa, "grad_output")?);
        compute(py, threads, || xent::binary_cross_entropy_into(x, &shape, t, &opts, loss, g))
    })
}

/// `binary_cross_entropy_with_logits_into`, float32/float64; `pos_weight` per
/// position of the last dim (or one element).
#[pyfunction]
#[pyo3(signature = (input, target, loss_out, *, grad=None, weight=None, pos_weight=None,
    grad_output=None, reduction=String::from("mean"), threads=0))]
#[allow(clippy::too_many_arguments)]
fn binary_cross_entropy_with_logits_into(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    loss_out: &Bound<'_, PyAny>,
    grad: Option<&Bound<'_, PyAny>>,
    weight: Option<&Bound<'_, PyAny>>,
    pos_weight: Option<&Bound<'_, PyAny>>,
    grad_output: Option<&Bound<'_, PyAny>>,
    reduction: String,
    threads: usize,
) -> PyResult<()> {
    let red = self::reduction(&reduction)?;
    let kind = float_kind(input)?;
    let n = acc_name(kind);
    per_float!(kind, T => {
        let xa = ro::<T>(input, "input", n)?;
        let shape = xa.shape().to_vec();
        let x: &[T] = slice(&xa, "input")?;
        let ta = ro::<T>(target, "target", n)?;
        let t: &[T] = slice(&ta, "target")?;
        let wa = opt_ro::<T>(weight, "weight", n)?;
        let pwa = opt_ro::<T>(pos_weight, "pos_weight", n)?;
        let goa = opt_ro::<T>(grad_output, "grad_output", n)?;
        let mut la = rw::<T>(loss_out, "loss_out", n)?;
        let mut ga = opt_rw::<T>(grad, "grad", n)?;
        let mut opts = BinaryCrossEntropyWithLogitsOptions::<T>::default().reduction(red);
        if let Some(w) = opt_slice(&wa, "weight")? {
            opts = opts.weight(w);
        }
        if let Some(w) = opt_slice(&pwa, "pos_weight")? {
            opts = opts.pos_weight(w);
        }
        let loss: &mut [T] = slice_mut(&mut la, "loss_out")?;
        let g = grad_out::<T>(opt_slice_mut(&mut ga, "grad")?, opt_slice(&goa, "grad_output")?);
        compute(py, threads, || {
            xent::binary_cross_entropy_with_logits_into(x, &shape, t, &opts, loss, g)
        })
    })
}

/// `kl_div_into` (`reduction` none, mean, sum or batchmean), float32/float64, with the
/// gradients with respect to `input` and `target` when their buffers are given.
#[pyfunction]
#[pyo3(signature = (input, target, loss_out, *, grad_input=None, grad_target=None,
    grad_output=None, reduction=String::from("mean"), log_target=false, threads=0))]
#[allow(clippy::too_many_arguments)]
fn kl_div_into(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    loss_out: &Bound<'_, PyAny>,
    grad_input: Option<&Bound<'_, PyAny>>,
    grad_target: Option<&Bound<'_, PyAny>>,
    grad_output: Option<&Bound<'_, PyAny>>,
    reduction: String,
    log_target: bool,
    threads: usize,
) -> PyResult<()> {
    let red: KlReduction = reduction.parse().map_err(py_err)?;
    let kind = float_kind(input)?;
    let n = acc_name(kind);
    per_float!(kind, T => {
        let xa = ro::<T>(input, "input", n)?;
        let shape = xa.shape().to_vec();
        let x: &[T] = slice(&xa, "input")?;
        let ta = ro::<T>(target, "target", n)?;
        let t: &[T] = slice(&ta, "target")?;
        let goa = opt_ro::<T>(grad_output, "grad_output", n)?;
        let go: Option<&[T]> = opt_slice(&goa, "grad_output")?;
        let mut la = rw::<T>(loss_out, "loss_out", n)?;
        let mut gia = opt_rw::<T>(grad_input, "grad_input", n)?;
        let mut gta = opt_rw::<T>(grad_target, "grad_target", n)?;
        let opts = KlDivOptions::default().reduction(red).log_target(log_target);
        let loss: &mut [T] = slice_mut(&mut la, "loss_out")?;
        let gi = grad_out::<T>(opt_slice_mut(&mut gia, "grad_input")?, go);
        let gt = grad_out::<T>(opt_slice_mut(&mut gta, "grad_target")?, go);
        compute(py, threads, || xent::kl_div_into(x, &shape, t, &opts, loss, gi, gt))
    })
}

/// `js_div_into` (probabilities) or `js_div_with_logits_into` (`logits=True`),
/// float32/float64, over dim 1, with the gradients for both arguments when asked.
#[pyfunction]
#[pyo3(signature = (p, q, loss_out, *, grad_p=None, grad_q=None, grad_output=None,
    reduction=String::from("mean"), logits=false, threads=0))]
#[allow(clippy::too_many_arguments)]
fn js_div_into(
    py: Python<'_>,
    p: &Bound<'_, PyAny>,
    q: &Bound<'_, PyAny>,
    loss_out: &Bound<'_, PyAny>,
    grad_p: Option<&Bound<'_, PyAny>>,
    grad_q: Option<&Bound<'_, PyAny>>,
    grad_output: Option<&Bound<'_, PyAny>>,
    reduction: String,
    logits: bool,
    threads: usize,
) -> PyResult<()> {
    let red = self::reduction(&reduction)?;
    let kind = float_kind(p)?;
    let n = acc_name(kind);
    per_float!(kind, T => {
        let pa = ro::<T>(p, "p", n)?;
        let shape = pa.shape().to_vec();
        let ps: &[T] = slice(&pa, "p")?;
        let qa = ro::<T>(q, "q", n)?;
        let qs: &[T] = slice(&qa, "q")?;
        let goa = opt_ro::<T>(grad_output, "grad_output", n)?;
        let go: Option<&[T]> = opt_slice(&goa, "grad_output")?;
        let mut la = rw::<T>(loss_out, "loss_out", n)?;
        let mut gpa = opt_rw::<T>(grad_p, "grad_p", n)?;
        let mut gqa = opt_rw::<T>(grad_q, "grad_q", n)?;
        let opts = JsDivOptions::default().reduction(red);
        let loss: &mut [T] = slice_mut(&mut la, "loss_out")?;
        let gp = grad_out::<T>(opt_slice_mut(&mut gpa, "grad_p")?, go);
        let gq = grad_out::<T>(opt_slice_mut(&mut gqa, "grad_q")?, go);
        compute(py, threads, || {
            if logits {
                xent::js_div_with_logits_into(ps, &shape, qs, &opts, loss, gp, gq)
            } else {
                xent::js_div_into(ps, &shape, qs, &opts, loss, gp, gq)
            }
        })
    })
}

fn dims2(shape: &[usize], name: &str) -> PyResult<[usize; 2]> {
    match shape {
        [a, b] => Ok([*a, *b]),
        _ => Err(PyValueError::new_err(format!(
            "{name} must be 2-d, got shape {shape:?}"
        ))),
    }
}

/// `linear_cross_entropy_into`: cross-entropy of `hidden @ linear_weight.T +
/// linear_bias` without the `N × V` logits. Inputs in one dtype (16-bit floats as
/// their `int16` storage); the loss, the options' arrays and every gradient in the
/// accumulation dtype; `logit_scale`, `denominator` and the per-row outputs as in
/// [`cross_entropy_into`]. Returns the z-loss term when `z_loss` is set.
#[pyfunction]
#[pyo3(signature = (hidden, linear_weight, target, loss_out, *, linear_bias=None, weight=None,
    grad_hidden=None, grad_linear_weight=None, grad_linear_bias=None, grad_output=None,
    ignore_index=-100, label_smoothing=0.0, reduction=String::from("mean"), z_loss=0.0, softcap=None,
    logit_scale=1.0, denominator=None, lse_out=None, entropy_out=None, argmax_out=None,
    z_out=None, half=None, threads=0))]
#[allow(clippy::too_many_arguments)]
fn linear_cross_entropy_into(
    py: Python<'_>,
    hidden: &Bound<'_, PyAny>,
    linear_weight: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    loss_out: &Bound<'_, PyAny>,
    linear_bias: Option<&Bound<'_, PyAny>>,
    weight: Option<&Bound<'_, PyAny>>,
    grad_hidden: Option<&Bound<'_, PyAny>>,
    grad_linear_weight: Option<&Bound<'_, PyAny>>,
    grad_linear_bias: Option<&Bound<'_, PyAny>>,
    grad_output: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: String,
    z_loss: f64,
    softcap: Option<f64>,
    logit_scale: f64,
    denominator: Option<f64>,
    lse_out: Option<&Bound<'_, PyAny>>,
    entropy_out: Option<&Bound<'_, PyAny>>,
    argmax_out: Option<&Bound<'_, PyAny>>,
    z_out: Option<&Bound<'_, PyAny>>,
    half: Option<String>,
    threads: usize,
) -> PyResult<Option<f64>> {
    let settings = settings(
        ignore_index,
        label_smoothing,
        &reduction,
        z_loss,
        softcap,
        logit_scale,
        denominator,
    )?;
    let outs = [lse_out, entropy_out, argmax_out, z_out];
    let kind = Kind::of(hidden, half.as_deref())?;
    let (sn, an) = (storage_name(kind), acc_name(kind));
    per_kind!(kind, T, S, A => {
        let ha = ro::<S>(hidden, "hidden", sn)?;
        let hshape = dims2(ha.shape(), "hidden")?;
        let h: &[T] = slice(&ha, "hidden")?;
        let wla = ro::<S>(linear_weight, "linear_weight", sn)?;
        let wshape = dims2(wla.shape(), "linear_weight")?;
        let wl: &[T] = slice(&wla, "linear_weight")?;
        let ba = opt_ro::<S>(linear_bias, "linear_bias", sn)?;
        let ta = Indices::extract(target)?;
        let tgt = ta.get()?;
        let wa = opt_ro::<A>(weight, "weight", an)?;
        let goa = opt_ro::<A>(grad_output, "grad_output", an)?;
        let mut la = rw::<A>(loss_out, "loss_out", an)?;
        let mut gha = opt_rw::<A>(grad_hidden, "grad_hidden", an)?;
        let mut gwa = opt_rw::<A>(grad_linear_weight, "grad_linear_weight", an)?;
        let mut gba = opt_rw::<A>(grad_linear_bias, "grad_linear_bias", an)?;
        let mut inputs = LinearInputs::<T>::new(h, hshape, wl, wshape);
        if let Some(b) = opt_slice(&ba, "linear_bias")? {
            inputs = inputs.linear_bias(b);
        }
        let opts = LinearCrossEntropyOptions::from(settings.options::<A>(opt_slice(&wa, "weight")?));
        let loss: &mut [A] = slice_mut(&mut la, "loss_out")?;
        let gh: Option<&mut [A]> = opt_slice_mut(&mut gha, "grad_hidden")?;
        let gw: Option<&mut [A]> = opt_slice_mut(&mut gwa, "grad_linear_weight")?;
        let gb: Option<&mut [A]> = opt_slice_mut(&mut gba, "grad_linear_bias")?;
        let go: Option<&[A]> = opt_slice(&goa, "grad_output")?;
        let grads = LinearGradOut::from_buffers(gh, gw, gb, go);
        let mut ra = RowArrays::<A>::extract(outs, an)?;
        let rows = ra.outputs()?;
        let z = compute(py, threads, || {
            xent::linear_cross_entropy_stats_into(inputs, tgt, &opts, loss, grads, rows)
        })?;
        Ok(z.map(|z| z.to_f64()))
    })
}

/// Class weights from class-index targets: `scheme` `"inverse_frequency"` (`N/(C·n_c)`)
/// or `"effective_number"` (Cui et al., with `beta`), as a list of `classes` floats.
#[pyfunction]
#[pyo3(signature = (target, classes, *, scheme=String::from("inverse_frequency"), beta=0.999, ignore_index=-100))]
fn class_weights(
    target: &Bound<'_, PyAny>,
    classes: usize,
    scheme: String,
    beta: f64,
    ignore_index: i64,
) -> PyResult<Vec<f64>> {
    let scheme = match scheme.as_str() {
        "inverse_frequency" | "balanced" => ClassWeighting::InverseFrequency,
        "effective_number" => ClassWeighting::EffectiveNumber { beta },
        other => {
            return Err(PyValueError::new_err(format!(
                "scheme must be 'inverse_frequency' or 'effective_number', got {other:?}"
            )))
        }
    };
    let ta = Indices::extract(target)?;
    let mut opts = ClassWeightOptions::default();
    opts.scheme = scheme;
    opts.ignore_index = ignore_index;
    xent::class_weights::<f64>(ta.get()?, classes, &opts).map_err(py_err)
}

/// The native part of the `xent` package.
#[pymodule]
fn _xent(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cross_entropy_into, m)?)?;
    m.add_function(wrap_pyfunction!(nll_loss_into, m)?)?;
    m.add_function(wrap_pyfunction!(softmax_into, m)?)?;
    m.add_function(wrap_pyfunction!(binary_cross_entropy_into, m)?)?;
    m.add_function(wrap_pyfunction!(binary_cross_entropy_with_logits_into, m)?)?;
    m.add_function(wrap_pyfunction!(kl_div_into, m)?)?;
    m.add_function(wrap_pyfunction!(js_div_into, m)?)?;
    m.add_function(wrap_pyfunction!(linear_cross_entropy_into, m)?)?;
    m.add_function(wrap_pyfunction!(class_weights, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
