"""xent for PyTorch: drop-ins for ``torch.nn.functional``'s losses and their modules.

``cross_entropy``, ``nll_loss``, ``binary_cross_entropy``,
``binary_cross_entropy_with_logits``, ``kl_div`` and ``linear_cross_entropy`` take
exactly the arguments of their ``torch.nn.functional`` namesakes (the deprecated
``size_average``/``reduce`` are honoured as torch does), plus xent's extras as
keyword-only arguments where they apply: ``z_loss=`` (adds ``z_loss·lse²`` per row
that counts) and ``softcap=`` (logits ``softcap·tanh(x/softcap)``).
``CrossEntropyLoss``, ``NLLLoss``, ``BCEWithLogitsLoss`` and ``KLDivLoss`` subclass
torch's modules (same constructor, same ``state_dict``) with xent's forward.

How it runs:

- Each loss is a ``torch.autograd.Function``. With ``reduction='mean'``/``'sum'`` the
  forward computes the loss and the gradient in one fused pass and keeps the
  gradient; the backward returns it as it is for the usual upstream gradient of 1
  (so ``loss.backward()`` reads the logits once in all), and otherwise runs the
  fused pass again with the upstream gradient. With ``reduction='none'`` the
  upstream gradient is only known in the backward: the forward computes the loss
  alone and the backward runs the fused pass with it.
- Under ``torch.no_grad()``, or when no input requires grad, no gradient is computed
  and no gradient buffer is allocated.
- A contiguous CPU tensor's memory is handed to xent without a copy (bf16/f16 as
  their raw 16-bit storage); a non-contiguous one is made contiguous once.
- Gradients (and other large outputs) are allocated by numpy, which advises large
  buffers for transparent huge pages; ``torch.empty`` does not, and its first touch
  then costs a page fault per 4 KiB. A cross-entropy gradient buffer that nothing
  refers to any more (after ``x.grad = None`` or ``zero_grad()``) is kept and reused
  by the next call of the same size, without any page fault; ``empty_cache()``
  releases the kept buffers.
- Dtypes float32, float64, bfloat16, float16. 16-bit losses are computed with f32
  accumulation and returned in the input's dtype. The elementwise losses
  (binary cross-entropies, ``kl_div``) widen 16-bit inputs to f32 once.
- A CUDA tensor, another dtype, or a case xent does not cover (a gradient with
  respect to a probability target or a class weight, a K-dim ``linear_weight``, …)
  falls back to torch's own function with a one-time warning.
- The GIL is released during the computation. Threads: ``XENT_NUM_THREADS`` when
  set, else ``torch.get_num_threads()``, so that xent does not oversubscribe the
  cores torch uses.
- Errors are xent's messages as the exception torch raises for the same mistake:
  ``IndexError`` for a target out of range, ``ValueError`` for a bad option.
"""

import sys
import threading
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn import _reduction as _torch_reduction

from . import _xent
from ._common import env_threads, row_shape

__all__ = [
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "linear_cross_entropy",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCEWithLogitsLoss",
    "KLDivLoss",
    "empty_cache",
]

_HALF = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_NP = {torch.float32: np.float32, torch.float64: np.float64, torch.int16: np.int16}

_warned = set()
_warned_lock = threading.Lock()


def _threads():
    n = env_threads()
    return torch.get_num_threads() if n is None else n


def _warn_once(name, why):
    with _warned_lock:
        if (name, why) in _warned:
            return
        _warned.add((name, why))
    warnings.warn(
        f"xent.torch.{name}: {why}; falling back to torch.nn.functional.{name} "
        "(this warning is shown once)",
        RuntimeWarning,
        stacklevel=4,
    )


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _np(t):
    """A contiguous CPU tensor's memory as a numpy array, no copy (16-bit floats as
    an int16 view); a non-contiguous tensor is made contiguous first."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype in _HALF:
        return t.view(torch.int16).numpy()
    return t.numpy()


def _empty(shape, dtype):
    """A numpy-allocated buffer (huge-page advised when large) as (tensor, numpy
    storage view)."""
    if dtype in _HALF:
        a = np.empty(tuple(shape), np.int16)
        return torch.from_numpy(a).view(dtype), a
    a = np.empty(tuple(shape), _NP[dtype])
    return torch.from_numpy(a), a


# Gradient buffers of at least this many bytes are kept for reuse once nothing refers
# to them any more (a training step's `x.grad = None` / `zero_grad()` frees the last
# reference): a fresh buffer costs a page fault per page on its first touch, as much as
# the kernel itself at these sizes, and a reused one none. At most _CACHE_PER_SIZE
# buffers per size are kept; empty_cache() releases them.
_CACHE_MIN_BYTES = 1 << 20
_CACHE_PER_SIZE = 2
_cache = {}
_cache_lock = threading.Lock()


def _grad_buffer(shape, dtype):
    """(tensor, numpy storage view) of a gradient buffer: a free cached buffer of the
    same size, else a new numpy allocation (kept in the cache when there is room)."""
    storage = np.int16 if dtype in _HALF else _NP[dtype]
    n = 1
    for d in shape:
        n *= d
    nbytes = n * np.dtype(storage).itemsize
    if nbytes < _CACHE_MIN_BYTES:
        return _empty(shape, dtype)
    with _cache_lock:
        kept = _cache.setdefault(nbytes, [])
        base = None
        for b in kept:
            # 3 references: the list, the loop variable and getrefcount's argument;
            # any view handed out (and so any tensor made from one) adds one.
            if sys.getrefcount(b) == 3:
                base = b
                break
        if base is None:
            base = np.empty(nbytes, np.uint8)
            if len(kept) < _CACHE_PER_SIZE:
                kept.append(base)
        a = base.view(storage).reshape(tuple(shape))
    t = torch.from_numpy(a)
    return (t.view(dtype) if dtype in _HALF else t), a


def empty_cache():
    """Releases the gradient buffers xent.torch keeps for reuse (those still in use
    are freed when their last user lets go of them)."""
    with _cache_lock:
        _cache.clear()


def _opt_np(t, dtype):
    return None if t is None else _np(t.detach().to(dtype).reshape(-1))


def _reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return _torch_reduction.legacy_get_string(size_average, reduce)
    return reduction


def _not_cpu(*ts):
    return any(isinstance(t, torch.Tensor) and t.device.type != "cpu" for t in ts)


def _why_not(input, *others):
    """Why xent cannot take these tensors (None when it can)."""
    if not isinstance(input, torch.Tensor):
        return "input is not a tensor"
    if _not_cpu(input, *others):
        return "a tensor is not on the CPU"
    if input.dtype not in _DTYPES:
        return f"input dtype {input.dtype} is not float32/float64/bfloat16/float16"
    return None


def _is_one(g):
    return g.numel() == 1 and float(g.reshape(())) == 1.0


class _Fused(torch.autograd.Function):
    """Runs an xent op: ``op.run(xs, need, grad_output)`` returns the loss and, for
    each ``xs[i]`` with ``need[i]``, its gradient (``None`` elsewhere)."""

    @staticmethod
    def forward(ctx, op, *xs):
        need = tuple(ctx.needs_input_grad[1:])
        xs = tuple(x.detach() if x.is_contiguous() else x.detach().contiguous() for x in xs)
        if op.reduction == "none":
            loss, _ = op.run(xs, (False,) * len(xs), None)
            ctx.grads = None
        else:
            loss, ctx.grads = op.run(xs, need, None)
        ctx.op, ctx.need = op, need
        ctx.save_for_backward(*xs)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grads, ctx.grads = ctx.grads, None
        xs = ctx.saved_tensors
        if grads is not None and _is_one(grad_output):
            grads = ctx.op.finish(grads, None)
        elif grads is not None and ctx.op.scales:
            grads = ctx.op.finish(grads, grad_output)
        else:
            _, grads = ctx.op.run(xs, ctx.need, grad_output)
            grads = ctx.op.finish(grads, None)
        return (None,) + tuple(grads)


def _apply(op, *xs):
    """The loss, through autograd when a gradient is wanted, else a plain call that
    allocates no gradient."""
    if torch.is_grad_enabled() and any(x.requires_grad for x in xs):
        return _Fused.apply(op, *xs)
    xs = tuple(x.detach() for x in xs)
    loss, _ = op.run(xs, (False,) * len(xs), None)
    return loss


class _Op:
    reduction = "mean"
    # Whether the backward may scale kept gradients by a scalar upstream gradient
    # instead of running the fused pass again.
    scales = False

    def finish(self, grads, grad_output):
        return grads

    def _go(self, grad_output, acc):
        return None if grad_output is None else _np(grad_output.detach().to(acc))


class _CrossEntropy(_Op):
    def __init__(self, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                 softcap, nll=False):
        self.probs = target.is_floating_point()
        self.target = target.detach()
        self.weight, self.ignore_index, self.reduction = weight, ignore_index, reduction
        self.label_smoothing, self.z_loss, self.softcap, self.nll = (
            label_smoothing, z_loss, softcap, nll)

    def run(self, xs, need, grad_output):
        (x,) = xs
        acc = _acc(x.dtype)
        half = _HALF.get(x.dtype)
        target = self.target
        if self.probs and target.dtype != x.dtype:
            target = target.to(x.dtype)
        loss, loss_np = _empty(row_shape(x.shape) if self.reduction == "none" else (), acc)
        grad, grad_np = _grad_buffer(x.shape, x.dtype) if need[0] else (None, None)
        common = dict(grad=grad_np, weight=_opt_np(self.weight, acc),
                      grad_output=self._go(grad_output, acc),
                      ignore_index=int(self.ignore_index), reduction=self.reduction, half=half,
                      threads=_threads())
        if self.nll:
            _xent.nll_loss_into(_np(x), _np(target), loss_np, **common)
        else:
            _xent.cross_entropy_into(
                _np(x), _np(target), loss_np, label_smoothing=float(self.label_smoothing),
                z_loss=float(self.z_loss),
                softcap=None if self.softcap is None else float(self.softcap),
                probabilities=self.probs, **common)
        return loss.to(x.dtype), (grad,)


def _torch_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                         z_loss, softcap):
    """torch's cross_entropy, with xent's soft-capping and z-loss composed from torch
    ops (the fallback path)."""
    x = input
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    loss = F.cross_entropy(x, target, weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)
    if z_loss:
        lse = torch.logsumexp(x, dim=1 if x.dim() > 1 else 0)
        if target.is_floating_point():
            keep = torch.ones_like(lse)
        else:
            keep = (target != ignore_index).to(lse.dtype)
        z = z_loss * lse.pow(2) * keep
        if reduction == "none":
            loss = loss + z
        elif reduction == "sum":
            loss = loss + z.sum()
        else:
            loss = loss + z.sum() / keep.sum()
    return loss


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                  softcap=None):
    """``torch.nn.functional.cross_entropy`` computed by xent's fused kernels.

    Logits ``(C,)``, ``(N, C)`` or ``(N, C, d1..dk)`` (classes on dim 1) against class
    indices (any integer dtype) or probabilities (the logits' shape). Extras:
    ``z_loss`` (adds ``z_loss·lse²`` per row that counts, reduced like the loss) and
    ``softcap`` (logits ``softcap·tanh(x/softcap)``).

    >>> import torch, xent.torch as xt
    >>> x = torch.tensor([[1.0, 2.0, 3.0]] * 3, requires_grad=True)
    >>> loss = xt.cross_entropy(x, torch.tensor([2, 1, 0]))
    >>> round(loss.item(), 4)
    1.4076
    >>> loss.backward()  # x.grad = (softmax(x) - onehot) / 3
    """
    reduction = _reduction(size_average, reduce, reduction)
    why = _why_not(input, target, weight)
    if why is None and not isinstance(target, torch.Tensor):
        why = "target is not a tensor"
    if why is None and target.is_floating_point() and target.requires_grad:
        why = "a gradient with respect to probability targets is asked for"
    if why is None and not target.is_floating_point() and (
            target.dtype == torch.bool or target.is_complex()):
        why = f"target dtype {target.dtype} is not an integer or float dtype"
    if why is None and weight is not None and weight.requires_grad:
        why = "a gradient with respect to the class weights is asked for"
    if why is not None:
        _warn_once("cross_entropy", why)
        return _torch_cross_entropy(input, target, weight, ignore_index, reduction,
                                    label_smoothing, z_loss, softcap)
    op = _CrossEntropy(target, weight, ignore_index, reduction, label_smoothing, z_loss,
                       softcap)
    return _apply(op, input)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """``torch.nn.functional.nll_loss`` (log-probabilities ``input``, classes on dim 1,
    class-index ``target``) computed by xent."""
    reduction = _reduction(size_average, reduce, reduction)
    why = _why_not(input, target, weight)
    if why is None and (not isinstance(target, torch.Tensor) or target.is_floating_point()
                        or target.dtype == torch.bool):
        why = "target is not a tensor of class indices"
    if why is None and weight is not None and weight.requires_grad:
        why = "a gradient with respect to the class weights is asked for"
    if why is not None:
        _warn_once("nll_loss", why)
        return F.nll_loss(input, target, weight, ignore_index=ignore_index,
                          reduction=reduction)
    op = _CrossEntropy(target, weight, ignore_index, reduction, 0.0, 0.0, None, nll=True)
    return _apply(op, input)


def _weight_arg(w, shape, dtype):
    """A weight as xent takes it (the input's shape, its last dim, or one element),
    broadcast to the input's shape (one copy) otherwise."""
    if w is None:
        return None
    w = w.detach().to(dtype)
    trimmed = tuple(w.shape)
    while len(trimmed) > 1 and trimmed[0] == 1:
        trimmed = trimmed[1:]
    if tuple(w.shape) == tuple(shape) or w.numel() == 1 or (
            len(shape) > 0 and trimmed == (shape[-1],)):
        return _np(w.reshape(-1))
    return _np(w.expand(shape).contiguous().reshape(-1))


class _Elementwise(_Op):
    """binary_cross_entropy(_with_logits) and kl_div: f32/f64 in xent; 16-bit inputs are
    widened to f32 and their gradients rounded back."""

    def __init__(self, kind, target, weight, pos_weight, reduction, log_target=False):
        self.kind, self.target, self.weight, self.pos_weight = kind, target, weight, pos_weight
        self.reduction, self.log_target = reduction, log_target

    def run(self, xs, need, grad_output):
        x = xs[0]
        t = xs[1] if len(xs) > 1 else self.target.detach()
        work = torch.float32 if x.dtype in _HALF else x.dtype
        xw = x if x.dtype == work else x.to(work)
        tw = t if t.dtype == work else t.to(work)
        if tw.shape != xw.shape:
            tw = tw.expand(xw.shape)
        loss, loss_np = _empty(xw.shape if self.reduction == "none" else (), work)
        gi, gi_np = _empty(xw.shape, work) if need[0] else (None, None)
        go = self._go(grad_output, work)
        if self.kind == "kl_div":
            gt, gt_np = _empty(xw.shape, work) if len(need) > 1 and need[1] else (None, None)
            _xent.kl_div_into(_np(xw), _np(tw), loss_np, grad_input=gi_np, grad_target=gt_np,
                              grad_output=go, reduction=self.reduction,
                              log_target=bool(self.log_target), threads=_threads())
            grads = (gi, gt)
        elif self.kind == "bce":
            _xent.binary_cross_entropy_into(
                _np(xw), _np(tw), loss_np, grad=gi_np,
                weight=_weight_arg(self.weight, xw.shape, work), grad_output=go,
                reduction=self.reduction, threads=_threads())
            grads = (gi,)
        else:
            _xent.binary_cross_entropy_with_logits_into(
                _np(xw), _np(tw), loss_np, grad=gi_np,
                weight=_weight_arg(self.weight, xw.shape, work),
                pos_weight=_opt_np(self.pos_weight, work), grad_output=go,
                reduction=self.reduction, threads=_threads())
            grads = (gi,)
        grads = tuple(None if g is None else g.to(x.dtype) for g in grads)[: len(xs)]
        return loss.to(x.dtype), grads


def _binary_why(name, input, target, weight, pos_weight=None):
    why = _why_not(input, target, weight, pos_weight)
    if why is None and not isinstance(target, torch.Tensor):
        why = "target is not a tensor"
    if why is None and target.requires_grad:
        why = "a gradient with respect to the target is asked for"
    if why is None and any(w is not None and w.requires_grad for w in (weight, pos_weight)):
        why = "a gradient with respect to a weight is asked for"
    if why is None and target.shape != input.shape:
        why = "target and input shapes differ"
    if why is None and pos_weight is not None and not (
            pos_weight.numel() == 1 or (input.dim() > 0 and pos_weight.numel() == input.shape[-1]
                                        and pos_weight.shape[-1:] == input.shape[-1:])):
        why = "pos_weight is not one entry per position of the last dim"
    return why


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """``torch.nn.functional.binary_cross_entropy`` (probabilities in ``[0, 1]``, logs
    clamped at −100) computed by xent."""
    reduction = _reduction(size_average, reduce, reduction)
    why = _binary_why("binary_cross_entropy", input, target, weight)
    if why is not None:
        _warn_once("binary_cross_entropy", why)
        return F.binary_cross_entropy(input, target, weight, reduction=reduction)
    return _apply(_Elementwise("bce", target, weight, None, reduction), input)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits`` computed by xent
    (``pos_weight``: one entry per position of the last dim, or one entry)."""
    reduction = _reduction(size_average, reduce, reduction)
    why = _binary_why("binary_cross_entropy_with_logits", input, target, weight, pos_weight)
    if why is not None:
        _warn_once("binary_cross_entropy_with_logits", why)
        return F.binary_cross_entropy_with_logits(input, target, weight, reduction=reduction,
                                                  pos_weight=pos_weight)
    return _apply(_Elementwise("bcel", target, weight, pos_weight, reduction), input)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean",
           log_target=False):
    """``torch.nn.functional.kl_div`` computed by xent, with gradients with respect to
    both ``input`` and ``target``."""
    reduction = _reduction(size_average, reduce, reduction)
    why = _why_not(input, target)
    if why is None and not isinstance(target, torch.Tensor):
        why = "target is not a tensor"
    if why is None and target.shape != input.shape:
        why = "target and input shapes differ"
    if why is not None:
        _warn_once("kl_div", why)
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
    return _apply(_Elementwise("kl_div", None, None, None, reduction, log_target), input,
                  target)


class _Linear(_Op):
    scales = True

    def __init__(self, target, weight, reduction, ignore_index, label_smoothing, z_loss,
                 softcap, has_bias, lead, in_dtypes):
        self.target = target.detach()
        self.weight, self.reduction, self.ignore_index = weight, reduction, ignore_index
        self.label_smoothing, self.z_loss, self.softcap = label_smoothing, z_loss, softcap
        self.has_bias, self.lead, self.in_dtypes = has_bias, lead, in_dtypes

    def run(self, xs, need, grad_output):
        h, w = xs[0], xs[1]
        b = xs[2] if self.has_bias else None
        acc = _acc(h.dtype)
        half = _HALF.get(h.dtype)
        d = h.shape[-1]
        loss, loss_np = _empty(self.lead if self.reduction == "none" else (), acc)
        gh, gh_np = _empty(h.shape, acc) if need[0] else (None, None)
        gw, gw_np = _empty(w.shape, acc) if need[1] else (None, None)
        gb, gb_np = _empty(b.shape, acc) if b is not None and need[2] else (None, None)
        _xent.linear_cross_entropy_into(
            _np(h).reshape(-1, d), _np(w), _np(self.target).reshape(-1),
            loss_np.reshape(-1) if self.reduction == "none" else loss_np,
            linear_bias=None if b is None else _np(b).reshape(-1),
            weight=_opt_np(self.weight, acc),
            grad_hidden=None if gh_np is None else gh_np.reshape(-1, d),
            grad_linear_weight=gw_np,
            grad_linear_bias=None if gb_np is None else gb_np.reshape(-1),
            grad_output=None if grad_output is None else _np(
                grad_output.detach().to(acc).reshape(-1)),
            ignore_index=int(self.ignore_index), label_smoothing=float(self.label_smoothing),
            reduction=self.reduction, z_loss=float(self.z_loss),
            softcap=None if self.softcap is None else float(self.softcap), half=half,
            threads=_threads())
        grads = (gh, gw, gb) if self.has_bias else (gh, gw)
        return loss.to(h.dtype), grads

    def finish(self, grads, grad_output):
        # The kept gradients are in the accumulation dtype: scaled there, then rounded
        # to each input's dtype once.
        out = []
        for g, dt in zip(grads, self.in_dtypes):
            if g is None:
                out.append(None)
                continue
            if grad_output is not None:
                g.mul_(grad_output.detach().to(g.dtype).reshape(()))
            out.append(g if g.dtype == dt else g.to(dt))
        return tuple(out)


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         options=None, z_loss=0.0, softcap=None):
    """torch 2.15's ``F.linear_cross_entropy``: ``cross_entropy(input @
    linear_weight.T + linear_bias, target, …)`` computed block by block by xent, never
    holding the ``N × V`` logits, in the forward or (for ``reduction='none'``) the
    backward. ``input`` ``(..., D)``, ``linear_weight`` ``(V, D)``, class-index
    ``target`` ``(...)``; ``ignore_index=None`` means −100. ``options`` (torch's
    chunking options) is accepted and not needed: xent always works in blocks.
    Probability targets and K-dim weights fall back to torch."""
    why = _why_not(input, linear_weight, target, linear_bias, weight)
    if why is None and not isinstance(target, torch.Tensor):
        why = "target is not a tensor"
    if why is None and (target.is_floating_point() or target.dtype == torch.bool):
        why = "probability targets"
    if why is None and (linear_weight.dim() != 2 or input.dim() < 1
                        or linear_weight.dtype != input.dtype
                        or (linear_bias is not None and (linear_bias.dim() != 1
                                                         or linear_bias.dtype != input.dtype))):
        why = "a K-dim or mixed-dtype linear_weight/linear_bias"
    if why is None and weight is not None and weight.requires_grad:
        why = "a gradient with respect to the class weights is asked for"
    if why is None and tuple(target.shape) != tuple(input.shape[:-1]):
        why = "target's shape is not input's leading shape"
    if why is not None:
        _warn_once("linear_cross_entropy", why)
        kw = {} if ignore_index is None else {"ignore_index": ignore_index}
        x = input
        if softcap is not None or z_loss:
            logits = F.linear(x, linear_weight, linear_bias)
            return _torch_cross_entropy(
                logits.movedim(-1, 1) if logits.dim() > 2 else logits, target, weight,
                -100 if ignore_index is None else ignore_index, reduction, label_smoothing,
                z_loss, softcap)
        return F.linear_cross_entropy(x, linear_weight, target, linear_bias=linear_bias,
                                      weight=weight, reduction=reduction,
                                      label_smoothing=label_smoothing, options=options, **kw)
    xs = (input, linear_weight) + ((linear_bias,) if linear_bias is not None else ())
    op = _Linear(target, weight, reduction, -100 if ignore_index is None else ignore_index,
                 label_smoothing, z_loss, softcap, linear_bias is not None,
                 tuple(input.shape[:-1]), tuple(x.dtype for x in xs))
    if torch.is_grad_enabled() and any(x.requires_grad for x in xs):
        return _Fused.apply(op, *xs)
    loss, _ = op.run(tuple(x.detach() for x in xs), (False,) * len(xs), None)
    return loss


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by xent (same constructor and state),
    plus keyword-only ``z_loss`` and ``softcap``."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None):
        super().__init__(weight, size_average, ignore_index, reduce, reduction,
                         label_smoothing)
        self.z_loss, self.softcap = z_loss, softcap

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             z_loss=self.z_loss, softcap=self.softcap)


class NLLLoss(torch.nn.NLLLoss):
    """``torch.nn.NLLLoss`` computed by xent."""

    def forward(self, input, target):
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` computed by xent."""

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight)


class KLDivLoss(torch.nn.KLDivLoss):
    """``torch.nn.KLDivLoss`` computed by xent."""

    def forward(self, input, target):
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
