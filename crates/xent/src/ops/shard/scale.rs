//! The logit scale of the class-sharded losses: the shard's kernels read `s·x` from
//! a buffer of the compute type (their plan has a scale of 1), and the gradient with
//! respect to the caller's logits is `s` times theirs. The plan's own scale
//! ([`crate::kernels::plan::Options::logit_scale`]) is not used here: the shard
//! kernels' target-logit reads ([`crate::kernels::shard`]) apply soft-capping only.

use crate::dtype::{Element, Float};
use crate::error::Result;
use crate::ops::GradBuf;
use crate::targets::Targets;

/// `s·x` of every logit, in the compute type.
pub(super) fn scaled_logits<T: Element>(x: &[T], s: f64, shape: &[usize]) -> Result<Vec<T::Acc>> {
    let mut out = crate::alloc::zeroed_vec::<T::Acc>("scaled logits", shape)?;
    let s = T::Acc::from_f64(s);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v.to_acc() * s;
    }
    Ok(out)
}

/// `target` for a pass over [`scaled_logits`]: probabilities widened to the compute
/// type into `store`, class indices as they are.
pub(super) fn widened_targets<'a, T: Element>(
    target: Targets<'a, T>,
    shape: &[usize],
    store: &'a mut Vec<T::Acc>,
) -> Result<Targets<'a, T::Acc>> {
    match target {
        Targets::Indices(idx) => Ok(Targets::Indices(idx)),
        Targets::Probabilities(t) => {
            *store = crate::alloc::zeroed_vec::<T::Acc>("widened targets", shape)?;
            for (o, &v) in store.iter_mut().zip(t) {
                *o = v.to_acc();
            }
            Ok(Targets::Probabilities(&store[..]))
        }
    }
}

/// Writes `s·g` (the gradient with respect to the scaled logits, times the scale)
/// into the caller's gradient buffer, overwriting or adding.
pub(super) fn write_scaled_grad<T: Element>(
    g: &[T::Acc],
    s: f64,
    dest: GradBuf<'_, T>,
    accumulate: bool,
) {
    let s = T::Acc::from_f64(s);
    match dest {
        GradBuf::Same(buf) => scale_into(g, s, buf, T::to_acc, T::from_acc, accumulate),
        GradBuf::Acc(buf) => scale_into(g, s, buf, |v| v, |v| v, accumulate),
    }
}

fn scale_into<G: Copy, A: Float>(
    g: &[A],
    s: A,
    buf: &mut [G],
    to: impl Fn(G) -> A,
    from: impl Fn(A) -> G,
    accumulate: bool,
) {
    for (o, &v) in buf.iter_mut().zip(g) {
        *o = from(if accumulate { to(*o) + s * v } else { s * v });
    }
}

/// Multiplies a block by the logit scale in place (nothing for `s = 1`): the logits
/// of the linear form before the shard's kernels, and their gradient after them.
pub(super) fn scale_in_place<A: Float>(x: &mut [A], s: f64) {
    if s == 1.0 {
        return;
    }
    let s = A::from_f64(s);
    x.iter_mut().for_each(|v| *v *= s);
}
