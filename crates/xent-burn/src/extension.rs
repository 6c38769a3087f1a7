//! The backend extension: xent's losses as one burn operation with a custom backward.
//!
//! [`XentBackend`] is declared with burn's `#[backend_extension]`, which generates its
//! implementation for burn's `Dispatch` backend: a call on a tensor routes to the
//! implementation of the backend the tensor lives on. The concrete implementations are
//! [`Flex`] and [`NdArray`] (xent's kernels on the tensors' memory) and
//! `Autodiff<B, C>` over either of them, which runs the fused forward + backward pass
//! once and records it in the graph with a [`Backward`] step, so that
//! `loss.backward()` uses xent's gradients instead of differentiating a composed graph.
//! Tensors on other backends never reach it: the public functions send them to the
//! composed fallback (`crate::composed`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::tensor::{FloatTensor, IntTensor};
#[allow(deprecated)]
use burn::backend::NdArray;
use burn::backend::{backend_extension, Backend, Flex};

use crate::error::Error;
use crate::host::HostData;
use crate::kernels::{self, XentKernels};
use crate::plan::Plan;

/// xent's losses as a burn backend operation.
///
/// `xent_loss` computes the loss of `plan` on `inputs` (and class-index `targets`),
/// returning it (shape `[1]` for a reduced loss, one entry per row or element for
/// `none`) or the error. On `Autodiff` backends the same call records xent's
/// gradients for the backward pass. Implemented for [`Flex`], [`NdArray`] and
/// `Autodiff` over them; the public functions of this crate call it and never pass it
/// tensors of other backends.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait XentBackend: Backend {
    /// The loss of `plan`, or why it could not be computed.
    fn xent_loss(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        plan: Plan,
    ) -> (Option<FloatTensor<Self>>, Option<Error>);
}

/// The plan's inputs. The operation always takes three float tensors and one integer
/// tensor (the macro maps no optional or vector tensor arguments); a loss of fewer
/// inputs gets its first input again in the unused places and a one-element integer
/// tensor for class indices it does not take; the plan says which count.
fn inputs<T>(plan: &Plan, a: T, b: T, c: T) -> Vec<T> {
    let mut v = vec![a, b, c];
    v.truncate(plan.shapes.len());
    v
}

fn split<T>(r: Result<T, Error>) -> (Option<T>, Option<Error>) {
    match r {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e)),
    }
}

/// The CPU backends: the forward pass on xent's kernels (no gradient without autodiff).
macro_rules! cpu_backend {
    ($b:ty) => {
        impl XentBackend for $b {
            fn xent_loss(
                a: FloatTensor<Self>,
                b: FloatTensor<Self>,
                c: FloatTensor<Self>,
                targets: IntTensor<Self>,
                plan: Plan,
            ) -> (Option<FloatTensor<Self>>, Option<Error>) {
                let inputs = inputs(&plan, a, b, c);
                let targets = plan.indices().then_some(targets);
                split(
                    kernels::run::<Self>(&plan, &inputs, targets.as_ref(), &[], None).map(|o| o.0),
                )
            }
        }
    };
}

cpu_backend!(Flex);
// NdArray is deprecated by burn in favour of Flex; it is supported while burn ships it.
cpu_backend!(NdArray);

impl<B: XentKernels, C: CheckpointStrategy> XentBackend for Autodiff<B, C> {
    fn xent_loss(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        plan: Plan,
    ) -> (Option<FloatTensor<Self>>, Option<Error>) {
        let inputs = inputs(&plan, a, b, c);
        let targets = plan.indices().then_some(targets);
        split(match inputs.len() {
            1 => record::<B, C, 1>(inputs, targets, plan),
            2 => record::<B, C, 2>(inputs, targets, plan),
            _ => record::<B, C, 3>(inputs, targets, plan),
        })
    }
}

/// The backward step of a fused xent call.
#[derive(Debug)]
struct FusedBackward;

/// What the backward step needs.
#[derive(Debug, Clone)]
enum State<B: Backend> {
    /// A reduced loss: the gradients (for upstream gradient 1), computed in the
    /// forward pass; the backward pass scales them by the upstream scalar.
    Grads(Vec<Option<FloatTensor<B>>>),
    /// A per-row loss: its upstream gradient weighs each row inside the kernel, so the
    /// backward pass runs the fused kernel once, on the kept inputs, with it.
    Inputs {
        plan: Plan,
        inputs: Vec<FloatTensor<B>>,
        targets: Option<IntTensor<B>>,
        want: Vec<bool>,
    },
}

impl<B: XentKernels, const N: usize> Backward<B, N> for FusedBackward {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let upstream = grads.consume::<B>(&ops.node);
        let computed = match ops.state {
            State::Grads(gs) => {
                let scale = scalar::<B>(&upstream);
                gs.into_iter()
                    .map(|g| match (g, scale) {
                        (Some(g), Some(1.0)) => Some(g),
                        (Some(g), Some(s)) => Some(B::float_mul_scalar(g, s.into())),
                        (Some(g), None) => Some(B::float_mul(g, upstream.clone())),
                        (None, _) => None,
                    })
                    .collect()
            }
            State::Inputs {
                plan,
                inputs,
                targets,
                want,
            } => {
                // The forward pass ran the same kernel on the same inputs and plan
                // without error, and the upstream gradient has the loss's shape and
                // dtype (burn's autodiff guarantees both), so this call cannot fail.
                kernels::run::<B>(&plan, &inputs, targets.as_ref(), &want, Some(&upstream))
                    .expect("the fused backward repeats a forward call that succeeded")
                    .1
            }
        };
        for (parent, g) in ops.parents.into_iter().zip(computed) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// The value of a one-element upstream gradient, read from host memory.
fn scalar<B: XentKernels>(g: &FloatTensor<B>) -> Option<f64> {
    match B::float_host(g).ok()? {
        HostData::F32(v) if v.len() == 1 => Some(v[0] as f64),
        HostData::F64(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

/// Runs the fused call and records it in the graph (when an input needs a gradient).
fn record<B: XentKernels, C: CheckpointStrategy, const N: usize>(
    inputs: Vec<FloatTensor<Autodiff<B, C>>>,
    targets: Option<IntTensor<B>>,
    plan: Plan,
) -> Result<FloatTensor<Autodiff<B, C>>, Error> {
    let want: Vec<bool> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.is_tracked() && plan.differentiable(i))
        .collect();
    let mut guards = Vec::with_capacity(N);
    let mut prims = Vec::with_capacity(N);
    for t in inputs {
        let (p, g) = t.into_parts();
        prims.push(p);
        guards.push(g);
    }
    let guards: [_; N] = guards.try_into().map_err(|_| Error::Shape {
        what: "inputs",
        shape: vec![prims.len()],
        expected: vec![N],
    })?;
    match FusedBackward
        .prepare::<C>(guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            if plan.scalar() {
                let (loss, gs) = kernels::run::<B>(&plan, &prims, targets.as_ref(), &want, None)?;
                Ok(prep.finish(State::Grads(gs), loss))
            } else {
                let (loss, _) = kernels::run::<B>(&plan, &prims, targets.as_ref(), &[], None)?;
                let state = State::Inputs {
                    plan,
                    inputs: prims,
                    targets,
                    want,
                };
                Ok(prep.finish(state, loss))
            }
        }
        OpsKind::UnTracked(prep) => {
            let (loss, _) = kernels::run::<B>(&plan, &prims, targets.as_ref(), &[], None)?;
            Ok(prep.finish(loss))
        }
    }
}
