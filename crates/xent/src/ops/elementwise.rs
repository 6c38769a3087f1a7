//! Shared plumbing of the elementwise losses (binary cross-entropy, KL divergence):
//! shape checks, broadcasting of weight vectors, reductions, and the few scalar
//! functions `Float` does not provide.

use super::GradOut;
use crate::driver::blocks::Blocks;
use crate::dtype::Float;
use crate::entry::FloatEntry as Sealed;
use crate::error::{Error, Result};
use crate::kernels::pointwise::{PointCall, PointGrad, PointOp, PointOut, Src};
use crate::reduce::CompensatedSum;
use crate::sizes::ELEMENTWISE_BLOCK;

/// Checks an elementwise shape (0-d allowed: one element) against `len`; returns the
/// element count.
pub(crate) fn check_shape(shape: &[usize], len: usize) -> Result<usize> {
    let bad = |reason| Error::BadShape {
        shape: shape.to_vec(),
        len,
        reason,
    };
    let numel =
        crate::layout::numel(shape).ok_or_else(|| bad("the shape's size overflows usize"))?;
    if numel != len {
        return Err(bad("the number of elements does not match the shape"));
    }
    Ok(numel)
}

/// A target (or second argument) must have the input's shape.
pub(crate) fn check_target_len(shape: &[usize], len: usize, numel: usize) -> Result<()> {
    if len == numel {
        Ok(())
    } else {
        Err(Error::TargetShape {
            expected: shape.to_vec(),
            len,
        })
    }
}

/// The multi-index of flat position `flat` in a C-contiguous `shape`.
pub(crate) fn unravel(shape: &[usize], flat: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    let mut rem = flat;
    for (slot, &d) in idx.iter_mut().zip(shape).rev() {
        *slot = rem % d.max(1);
        rem /= d.max(1);
    }
    idx
}

/// Every element must lie in `[0, 1]`; NaN fails the check, as in PyTorch. The
/// first offending element is reported, whatever the thread count.
pub(crate) fn check_unit_interval<T: Float>(
    name: &'static str,
    data: &[T],
    shape: &[usize],
) -> Result<()> {
    let (lo, hi) = (T::ZERO, T::ONE);
    // A vector test per block; the exact position only in the first block that failed.
    let ok = |v: T| v >= lo && v <= hi;
    let bad = Blocks::new(data.len(), ELEMENTWISE_BLOCK)
        .map(|range| (!<T as Sealed>::all_in_unit(&data[range.clone()])).then_some(range))
        .into_iter()
        .flatten()
        .next()
        .map(|range| range.start + data[range].iter().position(|&v| !ok(v)).unwrap_or(0));
    match bad {
        None => Ok(()),
        Some(i) => Err(Error::ValueOutOfRange {
            name,
            value: data[i].to_f64(),
            index: unravel(shape, i),
            expected: "a value in [0, 1]",
        }),
    }
}

/// How a weight-like vector maps onto the input's elements.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Broadcast {
    /// One value per element (the input's shape).
    Full,
    /// One value per position of the last dim, repeated over the leading dims.
    Last(usize),
    /// One value for everything.
    Scalar,
}

impl Broadcast {
    /// Resolves `len` against `shape`. The whole shape wins over the last dim when both
    /// fit (a 1-d input), which maps identically anyway.
    pub(crate) fn resolve(
        name: &'static str,
        len: usize,
        shape: &[usize],
        numel: usize,
    ) -> Result<Self> {
        if len == numel {
            Ok(Broadcast::Full)
        } else {
            Self::resolve_per_class(name, len, shape).map_err(|e| match e {
                Error::BroadcastShape {
                    name,
                    len,
                    shape,
                    mut allowed,
                } => {
                    allowed.insert(0, numel);
                    allowed.dedup();
                    Error::BroadcastShape {
                        name,
                        len,
                        shape,
                        allowed,
                    }
                }
                e => e,
            })
        }
    }

    /// Resolves a per-class vector (`pos_weight`): the last dim, or one value.
    pub(crate) fn resolve_per_class(
        name: &'static str,
        len: usize,
        shape: &[usize],
    ) -> Result<Self> {
        if shape.last() == Some(&len) {
            Ok(Broadcast::Last(len))
        } else if len == 1 {
            Ok(Broadcast::Scalar)
        } else {
            let mut allowed: Vec<usize> = shape.last().copied().into_iter().collect();
            allowed.push(1);
            allowed.dedup();
            Err(Error::BroadcastShape {
                name,
                len,
                shape: shape.to_vec(),
                allowed,
            })
        }
    }
}

/// A resolved reduction: whether the loss is per element, and what the sum is divided by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reduce {
    pub none: bool,
    /// 1 for `sum`; `numel` for `mean`; the batch size for `batchmean`.
    pub denom: f64,
}

impl Reduce {
    pub(crate) fn loss_len(self, numel: usize) -> usize {
        if self.none {
            numel
        } else {
            1
        }
    }
    pub(crate) fn loss_shape(self, shape: &[usize]) -> Vec<usize> {
        if self.none {
            shape.to_vec()
        } else {
            Vec::new()
        }
    }
    /// The scale of element (or row) `i`'s gradient: `g_i`, `g`, or `g/denom`.
    #[inline]
    pub(crate) fn scale<T: Float>(self, grad_output: Option<&[T]>, i: usize) -> T {
        if self.none {
            grad_output.map_or(T::ONE, |g| g[i])
        } else if self.denom == 1.0 {
            grad_output.map_or(T::ONE, |g| g[0])
        } else {
            T::from_f64(grad_output.map_or(1.0, |g| g[0].to_f64()) / self.denom)
        }
    }
    /// The scale shared by every element of a reduced loss (`g` or `g/denom`), or
    /// `None` for `none`, where each element has its own ([`Reduce::scale`]).
    #[inline]
    pub(crate) fn uniform<T: Float>(self, grad_output: Option<&[T]>) -> Option<T> {
        (!self.none).then(|| self.scale(grad_output, 0))
    }
    /// Writes the reduced loss; `0/0` (mean of nothing) is NaN as in PyTorch.
    pub(crate) fn finish<T: Float>(self, loss_out: &mut [T], total: CompensatedSum) {
        if !self.none {
            loss_out[0] = T::from_f64(total.value() / self.denom);
        }
    }
}

/// Checks a gradient buffer of `grad_len` elements and its upstream gradient against a
/// loss of shape `loss_shape`.
pub(crate) fn check_grad_out<T: Float>(
    name: &'static str,
    g: &GradOut<'_, T>,
    grad_len: usize,
    loss_shape: &[usize],
    loss_len: usize,
) -> Result<()> {
    super::check_len(name, g.grad.len(), grad_len)?;
    match g.grad_output {
        Some(go) if go.len() != loss_len => Err(Error::GradOutputShape {
            expected: loss_shape.to_vec(),
            len: go.len(),
        }),
        _ => Ok(()),
    }
}

/// A gradient output's buffer, upstream gradient and accumulate flag (`None`, `None`,
/// `false` without one).
#[allow(clippy::type_complexity)]
pub(crate) fn grad_parts<T: Float>(
    g: Option<GradOut<'_, T>>,
) -> (Option<&mut [T]>, Option<&[T]>, bool) {
    match g {
        Some(g) => {
            let (buf, go, acc) = g.into_parts();
            (Some(buf), go, acc)
        }
        None => (None, None, false),
    }
}

/// `ln(1 + v)`, accurate for small `v`, in `T` itself ([`Float::ln_1p`]).
#[inline]
pub(crate) fn ln_1p<T: Float>(v: T) -> T {
    v.ln_1p()
}

#[inline]
pub(crate) fn abs<T: Float>(v: T) -> T {
    if v < T::ZERO {
        -v
    } else {
        v
    }
}

/// `σ(x) = 1/(1 + e^{−x})`, evaluated as `e^x/(1 + e^x)` for `x < 0` so that
/// `e^{−x}` never overflows.
#[inline]
pub(crate) fn sigmoid1<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// `log σ(x) = min(x, 0) − log1p(e^{−|x|})`: no overflow, no `log 0`.
#[inline]
pub(crate) fn log_sigmoid1<T: Float>(x: T) -> T {
    let min = if x < T::ZERO { x } else { T::ZERO };
    min - ln_1p((-abs(x)).exp())
}

/// A gradient output of an elementwise loss: its buffer, upstream gradient and
/// accumulate flag, as [`grad_parts`] returns them.
pub(crate) type GradParts<'g, T> = (Option<&'g mut [T]>, Option<&'g [T]>, bool);

/// An elementwise loss over every element: `a` and `b` (`numel` each), the weights
/// with their broadcast, the reduction. Runs the kernels (`Sealed::run_pointwise`) over
/// the fixed blocks of [`ELEMENTWISE_BLOCK`] elements on rayon's threads and merges the blocks'
/// sums in block order, so the result does not depend on the thread count; writes
/// the reduced loss (or the elementwise losses for `none`) into `loss_out`.
pub(crate) struct Pointwise<'a, T> {
    pub op: PointOp,
    pub a: &'a [T],
    pub b: &'a [T],
    pub w: Option<(&'a [T], Broadcast)>,
    pub pw: Option<(&'a [T], Broadcast)>,
    pub red: Reduce,
}

impl<T: Float> Pointwise<'_, T> {
    pub(crate) fn run(self, loss_out: &mut [T], ga: GradParts<'_, T>, gb: GradParts<'_, T>) {
        let numel = self.a.len();
        let (ga, go_a, acc_a) = ga;
        let (gb, go_b, acc_b) = gb;
        let (uni_a, uni_b) = (self.red.uniform(go_a), self.red.uniform(go_b));
        let red = self.red;
        let loss_none = if red.none { Some(&mut *loss_out) } else { None };
        let bufs = [(loss_none, 1), (ga, 1), (gb, 1)];
        let parts: Vec<PointOut> =
            Blocks::new(numel, ELEMENTWISE_BLOCK).map_mut(bufs, |range, [loss, ga, gb]| {
                let (i0, end) = (range.start, range.end);
                let (mut w_tile, mut pw_tile) = (Vec::new(), Vec::new());
                <T as Sealed>::run_pointwise(PointCall {
                    op: self.op,
                    a: &self.a[i0..end],
                    b: &self.b[i0..end],
                    w: self.w.map(|(w, bc)| src_of(w, bc, i0, end, &mut w_tile)),
                    pw: self
                        .pw
                        .map(|(pw, bc)| src_of(pw, bc, i0, end, &mut pw_tile)),
                    loss,
                    ga: point_grad(ga, uni_a, go_a, acc_a, i0..end),
                    gb: point_grad(gb, uni_b, go_b, acc_b, i0..end),
                })
            });
        let total = parts
            .into_iter()
            .fold(CompensatedSum::default(), |mut total, part| {
                total.merge(part.sum);
                total
            });
        red.finish(loss_out, total);
    }
}

/// A block's gradient operand: its buffer and the upstream scale of elements
/// `range` (the reduction's one scale, or `grad_output`'s elements for `none`).
fn point_grad<'g, T: Float>(
    buf: Option<&'g mut [T]>,
    uniform: Option<T>,
    grad_output: Option<&'g [T]>,
    accumulate: bool,
    range: core::ops::Range<usize>,
) -> Option<PointGrad<'g, T>> {
    buf.map(|buf| PointGrad {
        buf,
        scale: match (uniform, grad_output) {
            (Some(s), _) => Src::One(s),
            (None, Some(go)) => Src::Each(&go[range]),
            (None, None) => Src::One(T::ONE),
        },
        accumulate,
    })
}

/// Elements `i0..end` of a broadcast vector as a kernel operand: a slice of it, its
/// one value, or (last-dim broadcast) its values tiled into `tile`.
fn src_of<'t, T: Float>(
    v: &'t [T],
    bc: Broadcast,
    i0: usize,
    end: usize,
    tile: &'t mut Vec<T>,
) -> Src<'t, T> {
    match bc {
        Broadcast::Full => Src::Each(&v[i0..end]),
        Broadcast::Scalar => Src::One(v[0]),
        Broadcast::Last(1) => Src::One(v[0]),
        Broadcast::Last(d) => {
            tile.clear();
            let mut j = i0 % d;
            while tile.len() < end - i0 {
                let take = (d - j).min(end - i0 - tile.len());
                tile.extend_from_slice(&v[j..j + take]);
                j = 0;
            }
            Src::Each(tile)
        }
    }
}
