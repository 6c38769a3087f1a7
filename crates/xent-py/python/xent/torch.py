"""xent for PyTorch: drop-ins for ``torch.nn.functional``'s losses and their modules.

``cross_entropy``, ``nll_loss``, ``binary_cross_entropy``,
``binary_cross_entropy_with_logits``, ``kl_div`` and ``linear_cross_entropy`` take
exactly the arguments of their ``torch.nn.functional`` namesakes (the deprecated
``size_average``/``reduce`` are honoured as torch does), plus xent's extras as
keyword-only arguments where they apply: ``z_loss=`` (adds ``z_loss·lse²`` per row
that counts), ``softcap=`` (logits ``softcap·tanh(x/softcap)``), ``logit_scale=`` (the
loss sees ``softcap(s·x)``: scale first), ``num_items_in_batch=`` (Hugging Face's name:
``reduction='mean'`` divides by this count of a whole gradient-accumulation step, so an
all-ignored micro-batch gives 0, not NaN) and ``return_stats=`` (returns
``(loss, RowStats(lse, entropy, argmax, z))``, detached per-row tensors of the same
fused pass).
``CrossEntropyLoss``, ``NLLLoss``, ``BCEWithLogitsLoss`` and ``KLDivLoss`` subclass
torch's modules (same constructor, same ``state_dict``) with xent's forward.

How it runs:

- Each loss is a ``torch.autograd.Function``. With ``reduction='mean'``/``'sum'`` the
  forward computes the loss and the gradient in one fused pass and keeps the
  gradient; the backward returns it, scaled by the upstream gradient when that is not
  1 (AMP's GradScaler), so ``loss.backward()`` reads the logits once in all. With
  ``reduction='none'`` the upstream gradient is only known in the backward: the
  forward computes the loss alone and the backward runs the fused pass with it.
- Double backward: under ``create_graph=True`` (gradient penalties, Hessian-vector
  products, MAML) the backward is torch's own composition on the same tensors (the
  logits' softmax, as torch computes it), so the gradient has a graph and
  ``torch.autograd.gradgradcheck`` passes. That backward costs what torch's does.
- In-place changes between forward and backward are caught as torch catches them:
  the target, the class weights and ``pos_weight`` (and the inputs of ``nll_loss`` and
  the binary cross-entropies) raise "modified by an inplace operation" at the
  backward. The logits of ``cross_entropy`` (and ``kl_div``'s input, ``linear_cross_
  entropy``'s bias) are not needed by torch's backward, nor by xent's for mean/sum:
  changing them there is fine. A deliberate difference: for ``reduction='none'`` (a
  second backward through a retained graph, and ``create_graph=True``) xent reads the
  logits again instead of keeping an N × C softmax, and a change raises there.
- Under ``torch.no_grad()``, or when no input requires grad, no gradient is computed
  and no gradient buffer is allocated.
- A contiguous CPU tensor's memory is handed to xent without a copy (bf16/f16 as
  their raw 16-bit storage); a non-contiguous one is made contiguous once.
- Gradients (and other large outputs) are allocated by numpy, which advises large
  buffers for transparent huge pages; ``torch.empty`` does not, and its first touch
  then costs a page fault per 4 KiB. Cross-entropy gradient buffers of 1 MiB or more
  are kept for reuse once freed (after ``x.grad = None``, ``zero_grad()``, or the
  backward pass that consumed a non-leaf's gradient; a ``weakref.finalize`` on the
  storage tells, not reference counts) and reused by a later call whose gradient is at
  most a quarter smaller, without page faults. At most 2 idle buffers and 1 GiB are
  kept, the least recently freed dropped first (``set_grad_cache_limit``; the byte
  limit also from ``XENT_GRAD_CACHE_BYTES``); ``grad_cache_info()`` reports them and
  ``empty_cache()`` releases them.
- Dtypes float32, float64, bfloat16, float16. 16-bit losses are computed with f32
  accumulation and returned in the input's dtype; under ``torch.autocast('cpu')``
  they are returned in float32, as torch's float32 policy for these losses does,
  computed from the 16-bit logits (no float32 copy; only a float32 probability
  target makes xent widen 16-bit logits, as torch does). Gradients have the input's
  dtype. The elementwise losses (binary cross-entropies, ``kl_div``) widen 16-bit
  inputs to f32 once.
- A CUDA tensor, another dtype, a ``torch.func`` transform (``vmap``, ``grad``,
  ``jacrev``, …) or forward-mode AD, or a case xent does not cover (a gradient with
  respect to a probability target or a class weight, a K-dim ``linear_weight``, …)
  falls back to torch's own function with a one-time warning. A target whose shape is
  not the logits' (probabilities) or their row shape (class indices) goes to torch's
  function too: torch raises its error, or computes what it accepts, with the warning.
- The GIL is released during the computation. Threads: ``XENT_NUM_THREADS`` when
  set (at most 4 per logical CPU, else ``ValueError``), else
  ``torch.get_num_threads()``, so that xent does not oversubscribe the cores torch uses.
- Errors are xent's messages as the exception torch raises for the same mistake:
  ``IndexError`` for a target out of range; ``RuntimeError`` for ``label_smoothing``
  outside ``[0, 1]``, binary cross-entropy values outside ``[0, 1]``, a class-weight
  length or an ``ignore_index`` with probability targets; ``ValueError`` for a batch
  mismatch, a bad ``reduction`` and xent's own options (``z_loss``, ``softcap``,
  ``logit_scale``, ``num_items_in_batch``: each finite and > 0, the last with
  ``reduction='mean'`` only; checked on every path, the fallback's too); ``TypeError``
  for an ``ignore_index`` that is not an integer, or a ``logit_scale`` or
  ``num_items_in_batch`` that is not a number.
"""

import threading
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn import _reduction as _torch_reduction

from . import _torch_ref, _xent
from ._common import RowStats, denominator_arg as _denominator, env_threads
from ._common import float_arg as _float_arg, int_arg as _int_arg, row_shape
from ._grad_cache import empty_cache, grad_cache_info, set_grad_cache_limit
from ._torch_buffers import _HALF, _empty, _flat, _grad_buffer, _np, _opt_np

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
    "RowStats",
    "empty_cache",
    "set_grad_cache_limit",
    "grad_cache_info",
]

_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)

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


def _autocast():
    """Whether CPU autocast is on: torch then computes these losses in float32."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _out_dtype(dtype):
    """The loss dtype for inputs of ``dtype``: float32 for 16-bit inputs under CPU
    autocast (torch's float32 policy for these losses), else the input's dtype."""
    return torch.float32 if dtype in _HALF and _autocast() else dtype


def _reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return _torch_reduction.legacy_get_string(size_average, reduce)
    return reduction


_PROBE = (np.zeros((1, 1), np.float64), np.zeros(1, np.int64))


def _check_options(label_smoothing, z_loss, softcap, logit_scale=1.0, denominator=None,
                   reduction="mean", nll=False):
    """Raises xent's error for options it rejects, on the paths where torch computes:
    xent's own check, run on a one-element problem."""
    loss = np.empty((1,) if reduction == "none" else (), np.float64)
    if reduction not in ("none", "mean", "sum"):
        reduction = "mean"  # torch's own error for it comes from torch's function
    if nll:
        _xent.nll_loss_into(_PROBE[0], _PROBE[1], loss, reduction=reduction,
                            denominator=denominator, threads=1)
        return
    _xent.cross_entropy_into(
        _PROBE[0], _PROBE[1], loss, label_smoothing=float(label_smoothing),
        z_loss=float(z_loss), softcap=None if softcap is None else float(softcap),
        logit_scale=logit_scale, denominator=denominator, reduction=reduction, threads=1)


def _not_cpu(*ts):
    return any(isinstance(t, torch.Tensor) and t.device.type != "cpu" for t in ts)


_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)
_functorch_wrapped = getattr(getattr(torch._C, "_functorch", None),
                             "is_functorch_wrapped_tensor", None)


def _transformed(*ts):
    """Whether a torch.func transform (vmap, grad, jacrev, …) is running or a tensor
    carries a forward-mode tangent: xent's kernels see neither. (Not asked while
    torch.compile traces, which cannot trace these queries and handles the transforms
    itself.)"""
    if _compiling():
        return False
    ts = [t for t in ts if isinstance(t, torch.Tensor)]
    if _functorch_active is not None:
        if _functorch_active():
            return True
    elif _functorch_wrapped is not None and any(_functorch_wrapped(t) for t in ts):
        return True
    fwd = torch.autograd.forward_ad
    if getattr(fwd, "_current_level", -1) >= 0:  # inside a dual_level
        return any(fwd.unpack_dual(t).tangent is not None for t in ts)
    return False


def _why_not(input, *others):
    """Why xent cannot take these tensors (None when it can)."""
    if not isinstance(input, torch.Tensor):
        return "input is not a tensor"
    if _transformed(input, *others):
        return "inside a torch.func transform (vmap, grad, jacrev, …) or forward-mode AD"
    if _not_cpu(input, *others):
        return "a tensor is not on the CPU"
    if input.dtype not in _DTYPES:
        return f"input dtype {input.dtype} is not float32/float64/bfloat16/float16"
    return None


def _is_one(g):
    return g.numel() == 1 and float(g.reshape(())) == 1.0


def _modified(t, version, why=""):
    """torch's error for a tensor changed in place between forward and backward."""
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: [{t.type()} {list(t.shape)}] is at version {t._version}; "
        f"expected version {version} instead{why}")


def _hooks():
    """Saved-tensor hooks that keep the saved tensors as they are (autograd still frees
    them after a backward without ``retain_graph``, and gives them back with their
    graph for a double backward), without autograd's own version check: _Fused checks
    versions itself, for the tensors torch's backward needs, as torch does."""
    if _compiling() or not torch._C._autograd._saved_tensors_hooks_is_enabled():
        return None
    return torch.autograd.graph.saved_tensors_hooks(_same, _same)


def _same(t):
    return t


class _Fused(torch.autograd.Function):
    """Runs an xent op: ``op.run(xs, need, grad_output)`` returns the loss and, for
    each ``xs[i]`` with ``need[i]``, its gradient (``None`` elsewhere).

    Mean/sum: the forward keeps the gradients, and the backward scales them by the
    upstream gradient. None: the backward runs the fused pass again with the upstream
    gradients. Under ``create_graph=True`` the backward is torch's differentiable
    composition (``op.reference``) on the same tensors, so that second derivatives
    exist. In-place changes: the tensors torch's backward keeps (``op.keeps``:
    targets, weights, the inputs torch keeps) raise at every backward, as in torch;
    the others only when xent's backward reads them (a recomputation).
    """

    @staticmethod
    def forward(ctx, op, *xs):
        need = tuple(ctx.needs_input_grad[1:])
        flat = tuple(_flat(x) for x in xs)
        if op.reduction == "none":
            loss, _ = op.run(flat, (False,) * len(xs), None)
            ctx.grads = None
        else:
            loss, ctx.grads = op.run(flat, need, None)
        ctx.op, ctx.need = op, need
        ctx.dtypes = tuple(x.dtype for x in xs)
        ctx.versions = tuple(x._version for x in xs)
        ctx.extra_versions = tuple(None if t is None else t._version for t in op.extras())
        ctx.save_for_backward(*xs)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        op, need = ctx.op, ctx.need
        xs = ctx.saved_tensors
        keeps = op.keeps(need)
        for t, v in zip(op.extras(), ctx.extra_versions):
            if t is not None and t._version != v:
                raise _modified(t, v)
        for x, v, k in zip(xs, ctx.versions, keeps):
            if k and x._version != v:
                raise _modified(x, v)
        grads, ctx.grads = ctx.grads, None
        if grads is not None and not torch.is_grad_enabled():
            scale = None if _is_one(grad_output) else float(grad_output.reshape(()))
            return (None,) + _finish(grads, scale, ctx.dtypes)
        for x, v, k in zip(xs, ctx.versions, keeps):
            if not k and x._version != v:
                raise _modified(x, v, (
                    f". xent.torch.{op.name} recomputes its gradient from this input for "
                    "reduction='none', a second backward through a retained graph and "
                    "create_graph=True (where torch keeps an intermediate of the input's "
                    "size instead), so the input must not change before the backward"))
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            with torch.enable_grad():
                loss = op.reference(xs)
                wrt = [x for x, n in zip(xs, need) if n]
                got = iter(torch.autograd.grad(loss, wrt, grad_output, create_graph=True,
                                               allow_unused=True))
            return (None,) + tuple(next(got) if n else None for n in need)
        _, grads = op.run(tuple(_flat(x) for x in xs), need, grad_output)
        return (None,) + _finish(grads, None, ctx.dtypes)


def _finish(grads, scale, dtypes):
    """Gradients scaled by a scalar upstream gradient (in their own dtype, the scale a
    Python float) and rounded to each input's dtype once."""
    out = []
    for g, dt in zip(grads, dtypes):
        if g is not None:
            if scale is not None:
                g.mul_(scale)
            if g.dtype != dt:
                g = g.to(dt)
        out.append(g)
    return tuple(out)


def _apply(op, *xs):
    """The loss, through autograd when a gradient is wanted, else a plain call that
    allocates no gradient."""
    if torch.is_grad_enabled() and any(x.requires_grad for x in xs):
        hooks = _hooks()
        if hooks is None:
            return _Fused.apply(op, *xs)
        with hooks:
            return _Fused.apply(op, *xs)
    loss, _ = op.run(tuple(_flat(x) for x in xs), (False,) * len(xs), None)
    return loss


class _Op:
    reduction = "mean"
    name = ""
    want_stats = False
    stats = None

    def take_stats(self):
        """The RowStats of the forward pass (computed once; not kept by the graph)."""
        stats, self.stats, self.want_stats = self.stats, None, False
        return stats

    def _stats_buffers(self, shape, acc):
        """(RowStats of new tensors, their numpy buffers as keyword arguments), or
        (None, {}) when not wanted or already computed."""
        if not self.want_stats or self.stats is not None:
            return None, {}
        bufs = [_empty(shape, acc), _empty(shape, acc), _empty(shape, torch.int64),
                _empty(shape, acc)]
        flat = [b[1].reshape(-1) for b in bufs]
        return RowStats(*(b[0] for b in bufs)), dict(
            lse_out=flat[0], entropy_out=flat[1], argmax_out=flat[2], z_out=flat[3])

    def _go(self, grad_output, acc):
        return None if grad_output is None else _np(grad_output.detach().to(acc))

    def extras(self):
        """The tensors other than the inputs that torch's backward keeps."""
        return ()

    def keeps(self, need):
        """For each input, whether torch's backward keeps it (an in-place change then
        raises at the backward)."""
        return (True,) * len(need)


class _CrossEntropy(_Op):
    def __init__(self, input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                 softcap, nll=False, logit_scale=1.0, denominator=None, want_stats=False):
        self.name = "nll_loss" if nll else "cross_entropy"
        self.logit_scale, self.denominator, self.want_stats = (
            logit_scale, denominator, want_stats)
        self.probs = target.is_floating_point()
        self.target = target.detach()
        self.weight = None if weight is None else weight.detach()
        self.ignore_index, self.reduction = ignore_index, reduction
        self.label_smoothing, self.z_loss, self.softcap, self.nll = (
            label_smoothing, z_loss, softcap, nll)
        self.out_dtype = _out_dtype(input.dtype)
        # Under autocast torch computes in float32 from a float32 probability target;
        # rounding that target to the logits' 16 bits would change the loss, so the
        # logits are widened instead (only in this case).
        self.widen = (self.out_dtype != input.dtype and self.probs
                      and target.dtype not in _HALF)

    def extras(self):
        return (self.target, self.weight)

    def keeps(self, need):
        # torch's cross_entropy keeps its log-softmax, not the logits; nll_loss keeps
        # its input
        return (self.nll,)

    def run(self, xs, need, grad_output):
        (x,) = xs
        if self.widen:
            x = x.float()
        acc = _acc(x.dtype)
        half = _HALF.get(x.dtype)
        target = self.target
        if self.probs and target.dtype != x.dtype:
            target = target.to(x.dtype)
        loss, loss_np = _empty(row_shape(x.shape) if self.reduction == "none" else (), acc)
        grad, grad_np = _grad_buffer(x.shape, x.dtype) if need[0] else (None, None)
        common = dict(grad=grad_np, weight=_opt_np(self.weight, acc),
                      grad_output=self._go(grad_output, acc),
                      ignore_index=self.ignore_index, reduction=self.reduction,
                      denominator=self.denominator, half=half, threads=_threads())
        if self.nll:
            _xent.nll_loss_into(_np(x), _np(target), loss_np, **common)
        else:
            stats, stats_kw = self._stats_buffers(row_shape(x.shape), acc)
            _xent.cross_entropy_into(
                _np(x), _np(target), loss_np, label_smoothing=float(self.label_smoothing),
                z_loss=float(self.z_loss),
                softcap=None if self.softcap is None else float(self.softcap),
                logit_scale=self.logit_scale, probabilities=self.probs, **common, **stats_kw)
            self.stats = stats if stats is not None else self.stats
        return loss.to(self.out_dtype), (grad,)

    def reference(self, xs):
        x = xs[0]
        work = _acc(x.dtype)
        x = x.to(work)
        t = self.target.to(work) if self.probs else self.target.long()
        w = None if self.weight is None else self.weight.to(work)
        if self.nll:
            return _torch_ref.nll_loss(x, t, w, self.ignore_index, self.reduction,
                                       self.denominator)
        return _torch_cross_entropy(x, t, w, self.ignore_index, self.reduction,
                                    self.label_smoothing, self.z_loss, self.softcap,
                                    self.logit_scale, self.denominator)


_torch_cross_entropy = _torch_ref.cross_entropy


def _with_stats(loss, op, return_stats):
    return (loss, op.take_stats()) if return_stats else loss


def _target_shape_why(input, target):
    """Why the target's shape is not the one xent takes (None when it is): the
    input's shape for probabilities, its row shape for class indices."""
    want = tuple(input.shape) if target.is_floating_point() else row_shape(input.shape)
    if input.dim() == 0 or tuple(target.shape) != want:
        return f"target shape {tuple(target.shape)} for input shape {tuple(input.shape)}"
    return None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                  softcap=None, logit_scale=1.0, num_items_in_batch=None, return_stats=False):
    """``torch.nn.functional.cross_entropy`` computed by xent's fused kernels.

    Logits ``(C,)``, ``(N, C)`` or ``(N, C, d1..dk)`` (classes on dim 1) against class
    indices (any integer dtype) or probabilities (the logits' shape). Extras:
    ``z_loss`` (adds ``z_loss·lse²`` per row that counts, reduced like the loss),
    ``logit_scale`` s and ``softcap`` (the loss sees ``softcap·tanh(s·x/softcap)``,
    scale first; the gradient with respect to the logits carries s),
    ``num_items_in_batch`` (an int, float or one-element tensor > 0, with
    ``reduction='mean'``: the summed loss is divided by it instead of by this call's
    count or weight sum, as Hugging Face's gradient-accumulation fix; an all-ignored
    call then gives 0) and ``return_stats``: ``True`` returns ``(loss, stats)``,
    ``stats`` a :class:`RowStats` of detached per-row tensors (``lse``, ``entropy``,
    ``argmax``, ``z``) from the same fused pass.

    >>> import torch, xent.torch as xt
    >>> x = torch.tensor([[1.0, 2.0, 3.0]] * 3, requires_grad=True)
    >>> loss = xt.cross_entropy(x, torch.tensor([2, 1, 0]))
    >>> round(loss.item(), 4)
    1.4076
    >>> loss.backward()  # x.grad = (softmax(x) - onehot) / 3
    """
    reduction = _reduction(size_average, reduce, reduction)
    ignore_index = _int_arg("cross_entropy", "ignore_index", ignore_index)
    logit_scale = _float_arg("cross_entropy", "logit_scale", logit_scale)
    denominator = _denominator("cross_entropy", num_items_in_batch)
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
    shape_why = None if why is not None else _target_shape_why(input, target)
    if why is not None or shape_why is not None:
        _check_options(label_smoothing, z_loss, softcap, logit_scale, denominator, reduction)
        if why is not None:
            _warn_once("cross_entropy", why)
        # a target shape xent does not take: torch's error, or (where torch takes it)
        # torch's loss and the warning
        loss = _torch_cross_entropy(input, target, weight, ignore_index, reduction,
                                    label_smoothing, z_loss, softcap, logit_scale, denominator)
        if why is None:
            _warn_once("cross_entropy", shape_why)
        if return_stats:
            return loss, _torch_ref.row_stats(input, target, ignore_index, z_loss, softcap,
                                              logit_scale)
        return loss
    op = _CrossEntropy(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                       softcap, logit_scale=logit_scale, denominator=denominator,
                       want_stats=bool(return_stats))
    return _with_stats(_apply(op, input), op, return_stats)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean", *, num_items_in_batch=None):
    """``torch.nn.functional.nll_loss`` (log-probabilities ``input``, classes on dim 1,
    class-index ``target``) computed by xent; ``num_items_in_batch`` as in
    :func:`cross_entropy`."""
    reduction = _reduction(size_average, reduce, reduction)
    ignore_index = _int_arg("nll_loss", "ignore_index", ignore_index)
    denominator = _denominator("nll_loss", num_items_in_batch)
    why = _why_not(input, target, weight)
    if why is None and (not isinstance(target, torch.Tensor) or target.is_floating_point()
                        or target.dtype == torch.bool):
        why = "target is not a tensor of class indices"
    if why is None and weight is not None and weight.requires_grad:
        why = "a gradient with respect to the class weights is asked for"
    shape_why = None if why is not None else _target_shape_why(input, target)
    if why is not None or shape_why is not None:
        if denominator is not None:
            _check_options(0.0, 0.0, None, 1.0, denominator, reduction, nll=True)
        if why is not None:
            _warn_once("nll_loss", why)
        loss = _torch_ref.nll_loss(input, target, weight, ignore_index, reduction, denominator)
        if why is None:
            _warn_once("nll_loss", shape_why)
        return loss
    op = _CrossEntropy(input, target, weight, ignore_index, reduction, 0.0, 0.0, None, nll=True,
                       denominator=denominator)
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

    def __init__(self, kind, input, target, weight, pos_weight, reduction, log_target=False):
        self.name = {"bce": "binary_cross_entropy", "bcel": "binary_cross_entropy_with_logits",
                     "kl_div": "kl_div"}[kind]
        self.kind, self.reduction, self.log_target = kind, reduction, log_target
        self.target = None if target is None else target.detach()
        self.weight = None if weight is None else weight.detach()
        self.pos_weight = None if pos_weight is None else pos_weight.detach()
        self.out_dtype = _out_dtype(input.dtype)

    def extras(self):
        return (self.target, self.weight, self.pos_weight)

    def keeps(self, need):
        if self.kind == "kl_div":
            # kl_div's gradient for its input is −target·g: torch keeps the input only
            # for the target's gradient
            return (need[1], True)
        return (True,) * len(need)

    def run(self, xs, need, grad_output):
        x = xs[0]
        t = xs[1] if len(xs) > 1 else self.target
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
        return loss.to(self.out_dtype), grads

    def reference(self, xs):
        x = xs[0]
        work = _acc(x.dtype)
        xw = x.to(work)
        tw = (xs[1] if len(xs) > 1 else self.target).to(work)
        w = None if self.weight is None else self.weight.to(work)
        if self.kind == "kl_div":
            if self.reduction == "mean":  # the same, without torch's warning about 'mean'
                return F.kl_div(xw, tw, reduction="sum", log_target=self.log_target) / max(
                    xw.numel(), 1)
            return F.kl_div(xw, tw, reduction=self.reduction, log_target=self.log_target)
        if self.kind == "bce":
            return F.binary_cross_entropy(xw, tw, w, reduction=self.reduction)
        pw = None if self.pos_weight is None else self.pos_weight.to(work)
        return F.binary_cross_entropy_with_logits(xw, tw, w, reduction=self.reduction,
                                                  pos_weight=pw)


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
    return _apply(_Elementwise("bce", input, target, weight, None, reduction), input)


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
    return _apply(_Elementwise("bcel", input, target, weight, pos_weight, reduction), input)


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
    return _apply(_Elementwise("kl_div", input, None, None, None, reduction, log_target),
                  input, target)


class _Linear(_Op):
    name = "linear_cross_entropy"

    def __init__(self, input, target, weight, reduction, ignore_index, label_smoothing, z_loss,
                 softcap, has_bias, logit_scale=1.0, denominator=None, want_stats=False):
        self.logit_scale, self.denominator, self.want_stats = (
            logit_scale, denominator, want_stats)
        self.target = target.detach()
        self.weight = None if weight is None else weight.detach()
        self.reduction, self.ignore_index = reduction, ignore_index
        self.label_smoothing, self.z_loss, self.softcap = label_smoothing, z_loss, softcap
        self.has_bias = has_bias
        self.lead = tuple(input.shape[:-1])
        self.out_dtype = _out_dtype(input.dtype)

    def extras(self):
        return (self.target, self.weight)

    def keeps(self, need):
        # torch keeps linear_weight for the input's gradient and the input for
        # linear_weight's, never the bias
        return (need[1], need[0]) + ((False,) if self.has_bias else ())

    def run(self, xs, need, grad_output):
        h, w = xs[0], xs[1]
        b = xs[2] if self.has_bias else None
        acc = _acc(h.dtype)
        half = _HALF.get(h.dtype)
        d = h.shape[-1]
        rows = 1
        for s in self.lead:
            rows *= s
        loss, loss_np = _empty(self.lead if self.reduction == "none" else (), acc)
        gh, gh_np = _empty(h.shape, acc) if need[0] else (None, None)
        gw, gw_np = _empty(w.shape, acc) if need[1] else (None, None)
        gb, gb_np = _empty(b.shape, acc) if b is not None and need[2] else (None, None)
        stats, stats_kw = self._stats_buffers(self.lead, acc)
        _xent.linear_cross_entropy_into(
            _np(h).reshape(rows, d), _np(w), _np(self.target).reshape(-1),
            loss_np.reshape(-1) if self.reduction == "none" else loss_np,
            linear_bias=None if b is None else _np(b).reshape(-1),
            weight=_opt_np(self.weight, acc),
            grad_hidden=None if gh_np is None else gh_np.reshape(rows, d),
            grad_linear_weight=gw_np,
            grad_linear_bias=None if gb_np is None else gb_np.reshape(-1),
            grad_output=None if grad_output is None else _np(
                grad_output.detach().to(acc).reshape(-1)),
            ignore_index=self.ignore_index, label_smoothing=float(self.label_smoothing),
            reduction=self.reduction, z_loss=float(self.z_loss),
            softcap=None if self.softcap is None else float(self.softcap),
            logit_scale=self.logit_scale, denominator=self.denominator, half=half,
            threads=_threads(), **stats_kw)
        self.stats = stats if stats is not None else self.stats
        grads = (gh, gw, gb) if self.has_bias else (gh, gw)
        return loss.to(self.out_dtype), grads

    def reference(self, xs):
        work = _acc(xs[0].dtype)
        h, w = xs[0].to(work), xs[1].to(work)
        b = xs[2].to(work) if self.has_bias else None
        logits = F.linear(h, w, b).reshape(-1, w.shape[0])
        cw = None if self.weight is None else self.weight.to(work)
        loss = _torch_cross_entropy(logits, self.target.long().reshape(-1), cw,
                                    self.ignore_index, self.reduction, self.label_smoothing,
                                    self.z_loss, self.softcap, self.logit_scale,
                                    self.denominator)
        return loss.reshape(self.lead) if self.reduction == "none" else loss


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         options=None, z_loss=0.0, softcap=None, logit_scale=1.0,
                         num_items_in_batch=None, return_stats=False):
    """torch 2.15's ``F.linear_cross_entropy``: ``cross_entropy(input @
    linear_weight.T + linear_bias, target, …)`` computed block by block by xent, never
    holding the ``N × V`` logits, in the forward or (for ``reduction='none'``) the
    backward. ``input`` ``(..., D)``, ``linear_weight`` ``(V, D)``, class-index
    ``target`` ``(...)``; ``ignore_index=None`` means −100. ``options`` (torch's
    chunking options) is accepted and not needed: xent always works in blocks.
    Probability targets and K-dim weights fall back to torch. ``z_loss``, ``softcap``,
    ``logit_scale``, ``num_items_in_batch`` and ``return_stats`` as in
    :func:`cross_entropy` (the stats in ``target``'s shape)."""
    if ignore_index is not None:
        ignore_index = _int_arg("linear_cross_entropy", "ignore_index", ignore_index)
    logit_scale = _float_arg("linear_cross_entropy", "logit_scale", logit_scale)
    denominator = _denominator("linear_cross_entropy", num_items_in_batch)
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
        _check_options(label_smoothing, z_loss, softcap, logit_scale, denominator, reduction)
        _warn_once("linear_cross_entropy", why)
        kw = {} if ignore_index is None else {"ignore_index": ignore_index}
        ii = -100 if ignore_index is None else ignore_index
        if (softcap is not None or z_loss or logit_scale != 1.0 or denominator is not None
                or return_stats):
            logits = F.linear(input, linear_weight, linear_bias)
            logits = logits.movedim(-1, 1) if logits.dim() > 2 else logits
            loss = _torch_cross_entropy(logits, target, weight, ii, reduction, label_smoothing,
                                        z_loss, softcap, logit_scale, denominator)
            if return_stats:
                return loss, _torch_ref.row_stats(logits, target, ii, z_loss, softcap,
                                                  logit_scale)
            return loss
        return F.linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias,
                                      weight=weight, reduction=reduction,
                                      label_smoothing=label_smoothing, options=options, **kw)
    xs = (input, linear_weight) + ((linear_bias,) if linear_bias is not None else ())
    op = _Linear(input, target, weight, reduction, -100 if ignore_index is None else ignore_index,
                 label_smoothing, z_loss, softcap, linear_bias is not None,
                 logit_scale=logit_scale, denominator=denominator,
                 want_stats=bool(return_stats))
    return _with_stats(_apply(op, *xs), op, return_stats)


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by xent (same constructor and state),
    plus keyword-only ``z_loss``, ``softcap`` and ``logit_scale``."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None,
                 logit_scale=1.0):
        super().__init__(weight, size_average, ignore_index, reduce, reduction,
                         label_smoothing)
        self.z_loss, self.softcap, self.logit_scale = z_loss, softcap, logit_scale

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             z_loss=self.z_loss, softcap=self.softcap,
                             logit_scale=self.logit_scale)


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
