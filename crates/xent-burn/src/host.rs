//! Runs a [`Plan`] on slices of host memory with xent's fused functions. The CPU
//! backends ([`crate::XentKernels`]) lend their tensors' memory here without a copy.

use std::borrow::Cow;

use xent::{bf16, f16, ClassIndices, Element, Float, GradOut, LinearGradOut, Targets};

use crate::error::{Error, Result};
use crate::plan::{LossPlan, Plan};

/// A float tensor's elements, borrowed from the backend (or copied when its layout is
/// not contiguous).
#[derive(Debug)]
pub enum HostData<'a> {
    F32(Cow<'a, [f32]>),
    F64(Cow<'a, [f64]>),
    Bf16(Cow<'a, [bf16]>),
    F16(Cow<'a, [f16]>),
}

/// Elements produced here: the loss and the gradients.
#[derive(Debug)]
pub(crate) enum HostVec {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
}

/// Class indices, borrowed or copied like [`HostData`].
#[derive(Debug)]
pub enum HostIndices<'a> {
    I8(Cow<'a, [i8]>),
    I16(Cow<'a, [i16]>),
    I32(Cow<'a, [i32]>),
    I64(Cow<'a, [i64]>),
    U8(Cow<'a, [u8]>),
    U16(Cow<'a, [u16]>),
    U32(Cow<'a, [u32]>),
    U64(Cow<'a, [u64]>),
}

impl HostIndices<'_> {
    fn view(&self) -> ClassIndices<'_> {
        match self {
            HostIndices::I8(v) => ClassIndices::I8(v),
            HostIndices::I16(v) => ClassIndices::I16(v),
            HostIndices::I32(v) => ClassIndices::I32(v),
            HostIndices::I64(v) => ClassIndices::I64(v),
            HostIndices::U8(v) => ClassIndices::U8(v),
            HostIndices::U16(v) => ClassIndices::U16(v),
            HostIndices::U32(v) => ClassIndices::U32(v),
            HostIndices::U64(v) => ClassIndices::U64(v),
        }
    }
}

/// The loss (one value, or one per row / element) and the gradient of each input
/// that was asked for, in the input's dtype.
#[derive(Debug)]
pub(crate) struct HostOut {
    pub(crate) loss: HostVec,
    pub(crate) grads: Vec<Option<HostVec>>,
}

/// The element types the kernels run on, and their place in [`HostData`]/[`HostVec`].
pub(crate) trait HostElem: Element {
    fn slice<'a>(d: &'a HostData<'_>) -> Option<&'a [Self]>;
    fn wrap(v: Vec<Self>) -> HostVec;
}

macro_rules! host_elem {
    ($t:ty, $v:ident) => {
        impl HostElem for $t {
            fn slice<'a>(d: &'a HostData<'_>) -> Option<&'a [Self]> {
                match d {
                    HostData::$v(s) => Some(s),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> HostVec {
                HostVec::$v(v)
            }
        }
    };
}
host_elem!(f32, F32);
host_elem!(f64, F64);
host_elem!(bf16, Bf16);
host_elem!(f16, F16);

impl HostData<'_> {
    fn dtype(&self) -> &'static str {
        match self {
            HostData::F32(_) => f32::NAME,
            HostData::F64(_) => f64::NAME,
            HostData::Bf16(_) => bf16::NAME,
            HostData::F16(_) => f16::NAME,
        }
    }
}

/// What one call asks of the kernels.
pub(crate) struct Call<'a, 'd> {
    pub(crate) plan: &'a Plan,
    pub(crate) inputs: &'a [HostData<'d>],
    pub(crate) targets: Option<&'a HostIndices<'d>>,
    /// Which inputs need a gradient.
    pub(crate) want: &'a [bool],
    /// The upstream gradient (the loss's shape, compute dtype); `None` means 1.
    pub(crate) grad_output: Option<&'a HostData<'d>>,
}

/// Runs the call on the inputs' dtype: `f32`, `f64`, `bf16`, `f16` for the
/// cross-entropies; `f32`, `f64` for the elementwise and divergence losses.
pub(crate) fn run(call: &Call<'_, '_>) -> Result<HostOut> {
    let first = call.inputs.first().ok_or(Error::Shape {
        what: "inputs",
        shape: vec![0],
        expected: vec![1],
    })?;
    let ce = matches!(
        call.plan.loss,
        LossPlan::CrossEntropy { .. } | LossPlan::Linear { .. }
    );
    match first {
        HostData::F32(_) if ce => run_as::<f32>(call),
        HostData::F64(_) if ce => run_as::<f64>(call),
        HostData::Bf16(_) if ce => run_as::<bf16>(call),
        HostData::F16(_) if ce => run_as::<f16>(call),
        HostData::F32(_) => pointwise_as::<f32>(call),
        HostData::F64(_) => pointwise_as::<f64>(call),
        other => Err(Error::DType {
            what: "input",
            dtype: other.dtype().to_string(),
            expected: "float32 or float64",
        }),
    }
}

fn run_as<T: HostElem>(call: &Call<'_, '_>) -> Result<HostOut>
where
    T::Acc: HostElem,
{
    let xs = call
        .inputs
        .iter()
        .map(|d| {
            T::slice(d).ok_or_else(|| Error::DType {
                what: "every input",
                dtype: d.dtype().to_string(),
                expected: "the first input's dtype",
            })
        })
        .collect::<Result<Vec<&[T]>>>()?;
    let go = match call.grad_output {
        Some(g) => Some(T::Acc::slice(g).ok_or_else(|| Error::DType {
            what: "grad_output",
            dtype: g.dtype().to_string(),
            expected: "the loss's dtype",
        })?),
        None => None,
    };
    let want = |i: usize| call.want.get(i).copied().unwrap_or(false);
    let shapes = &call.plan.shapes;
    let mut loss = vec![<T::Acc as Float>::from_f64(0.0); call.plan.loss_len()];
    let idx = call.targets.map(HostIndices::view);
    let no_targets = || Error::Shape {
        what: "targets",
        shape: vec![],
        expected: vec![shapes[0].first().copied().unwrap_or(1)],
    };
    let grads = match &call.plan.loss {
        LossPlan::CrossEntropy {
            opts,
            weight,
            probabilities,
        } => {
            let w = to_acc::<T::Acc>(weight);
            let mut o = xent::CrossEntropyOptions::<T::Acc>::default()
                .ignore_index(opts.ignore_index)
                .label_smoothing(opts.label_smoothing)
                .reduction(opts.reduction)
                .z_loss(opts.z_loss);
            if let Some(w) = &w {
                o = o.weight(w);
            }
            if let Some(c) = opts.softcap {
                o = o.softcap(c);
            }
            let targets: Targets<'_, T> = if *probabilities {
                Targets::Probabilities(xs.get(1).copied().ok_or_else(no_targets)?)
            } else {
                Targets::Indices(idx.ok_or_else(no_targets)?)
            };
            let mut g = grad_buf::<T>(want(0), &shapes[0])?;
            let out = g.as_deref_mut().map(|g| with_go(GradOut::new(g), go));
            xent::cross_entropy_into(xs[0], &shapes[0], targets, &o, &mut loss, out)?;
            vec![g.map(T::wrap)]
        }
        LossPlan::Linear { opts, weight } => {
            let w = to_acc::<T::Acc>(weight);
            let ce = &opts.cross_entropy;
            let mut o = xent::LinearCrossEntropyOptions::<T::Acc>::default()
                .ignore_index(ce.ignore_index)
                .label_smoothing(ce.label_smoothing)
                .reduction(ce.reduction)
                .z_loss(ce.z_loss)
                .scratch_bytes(opts.scratch_bytes);
            if let Some(w) = &w {
                o = o.weight(w);
            }
            if let Some(c) = ce.softcap {
                o = o.softcap(c);
            }
            let dims = |i: usize| -> [usize; 2] {
                let s = &shapes[i];
                [
                    s.first().copied().unwrap_or(0),
                    s.get(1).copied().unwrap_or(0),
                ]
            };
            let mut inputs = xent::LinearInputs::new(xs[0], dims(0), xs[1], dims(1));
            if let Some(b) = xs.get(2) {
                inputs = inputs.linear_bias(b);
            }
            // xent returns the linear gradients in the compute type (dW and db sum over
            // rows, so they must not accumulate in bf16); they are rounded to the
            // parameters' dtype below.
            let mut gs = (0..xs.len())
                .map(|i| grad_buf::<T::Acc>(want(i), &shapes[i]))
                .collect::<Result<Vec<_>>>()?;
            let any = gs.iter().any(Option::is_some);
            let mut out = LinearGradOut::new();
            let mut it = gs.iter_mut();
            if let Some(Some(g)) = it.next() {
                out = out.hidden(g);
            }
            if let Some(Some(g)) = it.next() {
                out = out.linear_weight(g);
            }
            if let Some(Some(g)) = it.next() {
                out = out.linear_bias(g);
            }
            if let Some(go) = go {
                out = out.grad_output(go);
            }
            xent::linear_cross_entropy_into(
                inputs,
                idx.ok_or_else(no_targets)?,
                &o,
                &mut loss,
                any.then_some(out),
            )?;
            gs.into_iter()
                .map(|g| g.map(|g| T::wrap(g.into_iter().map(T::from_acc).collect())))
                .collect()
        }
        _ => unreachable!("run() sends only the cross-entropies here"),
    };
    Ok(HostOut {
        loss: T::Acc::wrap(loss),
        grads,
    })
}

/// The elementwise and divergence losses, in `f32` or `f64`.
fn pointwise_as<A: HostElem + Float>(call: &Call<'_, '_>) -> Result<HostOut> {
    let want = |i: usize| call.want.get(i).copied().unwrap_or(false);
    let shape = &call.plan.shapes[0];
    let x = |i: usize| {
        call.inputs
            .get(i)
            .and_then(A::slice)
            .ok_or_else(|| Error::DType {
                what: if i == 0 { "input" } else { "target" },
                dtype: call
                    .inputs
                    .get(i)
                    .map_or("none", HostData::dtype)
                    .to_string(),
                expected: "the first input's dtype",
            })
    };
    let (a, b) = (x(0)?, x(1)?);
    let go = match call.grad_output {
        Some(g) => Some(A::slice(g).ok_or_else(|| Error::DType {
            what: "grad_output",
            dtype: g.dtype().to_string(),
            expected: "the loss's dtype",
        })?),
        None => None,
    };
    let mut loss = vec![A::from_f64(0.0); call.plan.loss_len()];
    let mut ga = grad_buf::<A>(want(0), shape)?;
    let mut gb = grad_buf::<A>(want(1), shape)?;
    let out_a = ga.as_deref_mut().map(|g| with_go(GradOut::new(g), go));
    let out_b = gb.as_deref_mut().map(|g| with_go(GradOut::new(g), go));
    match &call.plan.loss {
        LossPlan::Binary { reduction, weight } => {
            let w = to_acc::<A>(weight);
            let mut o = xent::BinaryCrossEntropyOptions::<A>::default().reduction(*reduction);
            if let Some(w) = &w {
                o = o.weight(w);
            }
            xent::binary_cross_entropy_into(a, shape, b, &o, &mut loss, out_a)?;
        }
        LossPlan::BinaryWithLogits {
            reduction,
            weight,
            pos_weight,
        } => {
            let (w, pw) = (to_acc::<A>(weight), to_acc::<A>(pos_weight));
            let mut o =
                xent::BinaryCrossEntropyWithLogitsOptions::<A>::default().reduction(*reduction);
            if let Some(w) = &w {
                o = o.weight(w);
            }
            if let Some(pw) = &pw {
                o = o.pos_weight(pw);
            }
            xent::binary_cross_entropy_with_logits_into(a, shape, b, &o, &mut loss, out_a)?;
        }
        LossPlan::KlDiv(o) => xent::kl_div_into(a, shape, b, o, &mut loss, out_a, out_b)?,
        LossPlan::JsDiv {
            opts,
            logits: false,
        } => xent::js_div_into(a, shape, b, opts, &mut loss, out_a, out_b)?,
        LossPlan::JsDiv { opts, logits: true } => {
            xent::js_div_with_logits_into(a, shape, b, opts, &mut loss, out_a, out_b)?
        }
        LossPlan::CrossEntropy { .. } | LossPlan::Linear { .. } => {
            unreachable!("the cross-entropies run in run_as")
        }
    }
    Ok(HostOut {
        loss: A::wrap(loss),
        grads: vec![ga.map(A::wrap), gb.map(A::wrap)],
    })
}

fn with_go<'a, T: Element>(g: GradOut<'a, T>, go: Option<&'a [T::Acc]>) -> GradOut<'a, T> {
    match go {
        Some(go) => g.grad_output(go),
        None => g,
    }
}

/// A gradient buffer of `shape` when one is wanted: never zero-filled in user space
/// (xent overwrites it; large ones are advised onto huge pages, see `xent::alloc`).
fn grad_buf<T: Element>(want: bool, shape: &[usize]) -> Result<Option<Vec<T>>> {
    Ok(if want {
        Some(xent::alloc::zeroed_vec::<T>("grad", shape)?)
    } else {
        None
    })
}

fn to_acc<A: Float>(w: &Option<Vec<f64>>) -> Option<Vec<A>> {
    w.as_ref()
        .map(|w| w.iter().map(|&v| A::from_f64(v)).collect())
}
