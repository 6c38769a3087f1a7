"""xent: softmax cross-entropy and its relatives, loss and exact gradient, on numpy arrays.

Every function takes numpy arrays with PyTorch's option names and defaults and
returns the loss (a numpy scalar for ``reduction='mean'``/``'sum'``, an array for
``'none'``) and, with ``grad=True``, the gradient(s) too, all from one fused pass of
xent's kernels (Rust, SIMD, multi-threaded, the GIL released).

Arrays:

- C-contiguous ``float32``/``float64`` inputs are handed to xent without a copy;
  ``float16`` (and ml_dtypes' ``bfloat16``) too, as their raw 16-bit storage.
  Other layouts are copied once into a C-contiguous array; other dtypes (integers)
  are converted once to ``float64``.
- The loss is in the accumulation dtype: ``float64`` for ``float64`` input,
  ``float32`` otherwise (16-bit inputs are computed with ``float32`` accumulation).
  The gradient has the input's dtype and shape.
- Outputs are allocated by numpy, which advises large buffers for transparent huge
  pages: their first touch costs far fewer page faults than 4 KiB pages.
- The elementwise losses (``binary_cross_entropy*``, ``kl_div``, ``js_div``) run in
  ``float32``/``float64``; 16-bit inputs are widened to ``float32`` once.

Threads: ``XENT_NUM_THREADS`` when set, otherwise one per core.

The PyTorch drop-in is :mod:`xent.torch` (imports torch on first use of that module;
this one works without torch).
"""

import numpy as np

from . import _xent
from ._common import RowStats, class_dim_view, denominator_arg, env_threads, float_arg
from ._common import int_arg, row_shape

__version__ = _xent.__version__

__all__ = [
    "cross_entropy",
    "nll_loss",
    "softmax",
    "log_softmax",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "js_div",
    "linear_cross_entropy",
    "class_weights",
    "RowStats",
]

_HALF_NAMES = ("float16", "bfloat16")


def _threads():
    n = env_threads()
    return 0 if n is None else n


def _c(a, dtype=None):
    """``a`` as a C-contiguous array (of ``dtype`` when given): no copy when it is
    one already. Unlike ``np.ascontiguousarray`` it keeps 0-d arrays 0-d."""
    a = np.asarray(a, dtype=dtype)
    return a if a.flags.c_contiguous else np.array(a, order="C")


def _floats(a):
    """(array, storage view, half name or None, accumulation dtype)."""
    a = np.asarray(a)
    name = a.dtype.name
    if name in ("float32", "float64"):
        a = _c(a)
        return a, a, None, a.dtype
    if name in _HALF_NAMES:
        a = _c(a)
        return a, a.view(np.int16), name, np.dtype(np.float32)
    a = _c(a, np.float64)
    return a, a, None, a.dtype


def _wide(a):
    """A float32/float64 C-contiguous array (16-bit floats widened to float32)."""
    a = np.asarray(a)
    if a.dtype.name in ("float32", "float64"):
        return _c(a)
    if a.dtype.name in _HALF_NAMES:
        return _c(a, np.float32)
    return _c(a, np.float64)


def _empty_like(a, view):
    """A new buffer of ``a``'s dtype and shape, and its storage view."""
    out = np.empty(a.shape, a.dtype)
    return out, (out.view(np.int16) if view.dtype == np.int16 and a.dtype != np.int16 else out)


def _indices(target):
    t = np.asarray(target)
    if t.dtype == np.bool_:
        t = t.astype(np.int64)
    return _c(t)


def _opt(a, dtype):
    return None if a is None else _c(a, dtype).reshape(-1)


def _loss_shape(shape, reduction):
    return row_shape(shape) if reduction == "none" else ()


def _ret(loss, *grads, grad, stats=None):
    loss = loss[()] if loss.ndim == 0 else loss
    out = (loss,) + grads if grad else (loss,)
    if stats is not None:
        out += (stats,)
    return out[0] if len(out) == 1 else out


def _stats(shape, acc, want):
    """Buffers for the per-row outputs (``None`` when not wanted) and the keyword
    arguments that hand them to the native call."""
    if not want:
        return None, {}
    st = RowStats(np.empty(shape, acc), np.empty(shape, acc), np.empty(shape, np.int64),
                  np.empty(shape, acc))
    flat = [a.reshape(-1) for a in st]
    return st, dict(lse_out=flat[0], entropy_out=flat[1], argmax_out=flat[2], z_out=flat[3])


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=None, logit_scale=1.0,
                  num_items_in_batch=None, return_stats=False, grad=False):
    """Softmax cross-entropy of logits ``input`` (``(C,)``, ``(N, C)`` or
    ``(N, C, d1..dk)``, classes on dim 1) against class indices (any integer dtype,
    shape ``(N, d1..dk)``) or probabilities (the input's shape), as
    ``torch.nn.functional.cross_entropy``.

    ``z_loss`` adds ``z_loss·lse²`` per row that counts; ``logit_scale`` s and
    ``softcap`` make the loss see ``softcap·tanh(s·x/softcap)`` (scale first, then
    soft-cap; the gradient with respect to ``x`` carries s). ``num_items_in_batch``
    (``reduction='mean'`` only; > 0) divides the summed loss and the gradient by it
    instead of by this call's own count or weight sum: the count of a whole
    gradient-accumulation step, and 0 for an all-ignored call instead of NaN.

    Returns the loss, or ``(loss, grad)`` with ``grad=True`` (``∂loss/∂input``, the
    input's dtype and shape); with ``return_stats=True`` a :class:`RowStats` of
    per-row arrays comes last (``(loss, stats)`` or ``(loss, grad, stats)``).

    ``ValueError`` for a ``logit_scale`` or ``num_items_in_batch`` that is not finite
    and > 0, or a ``num_items_in_batch`` with ``reduction`` ``'sum'``/``'none'``.

    >>> import numpy as np, xent
    >>> x = np.array([[1.0, 2.0, 3.0]] * 3, np.float32)
    >>> round(float(xent.cross_entropy(x, np.array([2, 1, 0]))), 4)
    1.4076
    """
    x, xs, half, acc = _floats(input)
    probs = np.issubdtype(np.asarray(target).dtype, np.floating)
    if probs:
        t = _c(target, x.dtype)
        ts = t.view(np.int16) if half else t
    else:
        ts = _indices(target)
    loss = np.empty(_loss_shape(x.shape, reduction), acc)
    g, gs = _empty_like(x, xs) if grad else (None, None)
    st, st_kw = _stats(row_shape(x.shape), acc, return_stats)
    _xent.cross_entropy_into(
        xs, ts, loss, grad=gs, weight=_opt(weight, acc),
        ignore_index=int_arg("cross_entropy", "ignore_index", ignore_index),
        label_smoothing=float(label_smoothing), reduction=reduction, z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        logit_scale=float_arg("cross_entropy", "logit_scale", logit_scale),
        denominator=denominator_arg("cross_entropy", num_items_in_batch),
        probabilities=probs, half=half, threads=_threads(), **st_kw)
    return _ret(loss, g, grad=grad, stats=st)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", *,
             num_items_in_batch=None, grad=False):
    """Negative log-likelihood of log-probabilities ``input`` (classes on dim 1)
    against class indices, as ``torch.nn.functional.nll_loss``;
    ``num_items_in_batch`` as in :func:`cross_entropy`.

    Returns the loss, or ``(loss, grad)`` with ``grad=True``.
    """
    x, xs, half, acc = _floats(input)
    loss = np.empty(_loss_shape(x.shape, reduction), acc)
    g, gs = _empty_like(x, xs) if grad else (None, None)
    _xent.nll_loss_into(
        xs, _indices(target), loss, grad=gs, weight=_opt(weight, acc),
        ignore_index=int_arg("nll_loss", "ignore_index", ignore_index), reduction=reduction,
        denominator=denominator_arg("nll_loss", num_items_in_batch), half=half,
        threads=_threads())
    return _ret(loss, g, grad=grad)


def _softmax_dim(ndim):
    # torch's implicit dim (F.softmax with dim=None)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax(input, dim, log):
    x, xs, half, _ = _floats(input)
    if dim is None:
        dim = _softmax_dim(x.ndim)
    view = class_dim_view(x.shape, dim)
    out = np.empty(x.shape, x.dtype)
    outs = out.view(np.int16) if half else out
    _xent.softmax_into(xs.reshape(view), outs.reshape(view), log=log, half=half,
                       threads=_threads())
    return out


def softmax(input, dim=None):
    """``softmax`` over ``dim`` (``None``: torch's implicit choice, 0 for 0-, 1- and
    3-d arrays, 1 otherwise): ``p_c = exp(x_c − m) / Σ_j exp(x_j − m)``."""
    return _softmax(input, dim, False)


def log_softmax(input, dim=None):
    """``log_softmax`` over ``dim`` (as :func:`softmax`), computed as
    ``(x − m) − ln Σ exp(x − m)``, never as ``ln p``."""
    return _softmax(input, dim, True)


def _broadcast_weight(w, shape, dtype, name):
    """A weight xent takes as is (the input's shape, its last dim, or one element),
    or else broadcast to the input's shape (one copy)."""
    if w is None:
        return None
    w = np.asarray(w, dtype)
    trimmed = w.shape
    while len(trimmed) > 1 and trimmed[0] == 1:
        trimmed = trimmed[1:]
    if w.shape == tuple(shape) or w.size == 1 or (len(shape) > 0 and trimmed == (shape[-1],)):
        return _c(w).reshape(-1)
    return _c(np.broadcast_to(w, shape)).reshape(-1)


def binary_cross_entropy(input, target, weight=None, reduction="mean", *, grad=False):
    """Binary cross-entropy of probabilities ``input`` against ``target`` (same
    shape), as ``torch.nn.functional.binary_cross_entropy`` (logs clamped at −100).

    Returns the loss, or ``(loss, grad)`` with ``grad=True``.
    """
    x = _wide(input)
    t = _c(target, x.dtype)
    loss = np.empty(x.shape if reduction == "none" else (), x.dtype)
    g = np.empty_like(x) if grad else None
    _xent.binary_cross_entropy_into(
        x, t, loss, grad=g, weight=_broadcast_weight(weight, x.shape, x.dtype, "weight"),
        reduction=reduction, threads=_threads())
    return _ret(loss, g, grad=grad)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None, *, grad=False):
    """Binary cross-entropy of logits ``input`` against ``target``, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``; ``pos_weight`` has one
    entry per position of the last dim (or one entry).

    Returns the loss, or ``(loss, grad)`` with ``grad=True``.
    """
    x = _wide(input)
    t = _c(target, x.dtype)
    loss = np.empty(x.shape if reduction == "none" else (), x.dtype)
    g = np.empty_like(x) if grad else None
    _xent.binary_cross_entropy_with_logits_into(
        x, t, loss, grad=g, weight=_broadcast_weight(weight, x.shape, x.dtype, "weight"),
        pos_weight=_opt(pos_weight, x.dtype), reduction=reduction, threads=_threads())
    return _ret(loss, g, grad=grad)


def kl_div(input, target, reduction="mean", log_target=False, *, grad=False):
    """Kullback–Leibler divergence loss of log-probabilities ``input`` against
    ``target`` (probabilities, or log-probabilities with ``log_target=True``),
    elementwise, as ``torch.nn.functional.kl_div``; ``reduction`` one of ``'none'``,
    ``'mean'``, ``'sum'``, ``'batchmean'``.

    Returns the loss, or ``(loss, grad_input, grad_target)`` with ``grad=True``.
    """
    x = _wide(input)
    t = _c(target, x.dtype)
    loss = np.empty(x.shape if reduction == "none" else (), x.dtype)
    gi, gt = (np.empty_like(x), np.empty_like(x)) if grad else (None, None)
    _xent.kl_div_into(x, t, loss, grad_input=gi, grad_target=gt, reduction=reduction,
                      log_target=bool(log_target), threads=_threads())
    return _ret(loss, gi, gt, grad=grad)


def js_div(p, q, reduction="mean", *, logits=False, grad=False):
    """Jensen–Shannon divergence ``½·KL(P‖M) + ½·KL(Q‖M)``, ``M = ½(P+Q)``, in nats,
    between rows of ``p`` and ``q`` (classes on dim 1), from probabilities or, with
    ``logits=True``, from logits. ``reduction='mean'`` averages over rows.

    Returns the loss, or ``(loss, grad_p, grad_q)`` with ``grad=True``.
    """
    a = _wide(p)
    b = _c(q, a.dtype)
    loss = np.empty(_loss_shape(a.shape, reduction), a.dtype)
    gp, gq = (np.empty_like(a), np.empty_like(a)) if grad else (None, None)
    _xent.js_div_into(a, b, loss, grad_p=gp, grad_q=gq, reduction=reduction,
                      logits=bool(logits), threads=_threads())
    return _ret(loss, gp, gq, grad=grad)


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         z_loss=0.0, softcap=None, logit_scale=1.0, num_items_in_batch=None,
                         return_stats=False, grad=False):
    """``cross_entropy(input @ linear_weight.T + linear_bias, target, …)`` without ever
    holding the ``N × V`` logits, as torch's ``F.linear_cross_entropy``: ``input``
    ``(..., D)``, ``linear_weight`` ``(V, D)``, class-index ``target`` ``(...)``;
    ``ignore_index=None`` means −100; ``logit_scale``, ``num_items_in_batch`` and
    ``return_stats`` as in :func:`cross_entropy` (the stats in the shape ``(...)``).

    Returns the loss, or ``(loss, (grad_input, grad_linear_weight, grad_linear_bias))``
    with ``grad=True``; the gradients in the accumulation dtype (``float32`` for
    16-bit inputs), ``grad_linear_bias`` ``None`` without a bias; the
    :class:`RowStats` last with ``return_stats=True``.
    """
    h, hs, half, acc = _floats(input)
    w = np.asarray(linear_weight)
    if w.dtype != h.dtype:
        w = w.astype(h.dtype)
    w = _c(w)
    ws = w.view(np.int16) if half else w
    lead = h.shape[:-1]
    if h.ndim == 0:
        raise ValueError("input must have at least 1 dimension (the feature dim)")
    rows = 1
    for s in lead:
        rows *= s
    h2 = hs.reshape(rows, h.shape[-1])  # (-1, D) is ambiguous for D = 0
    t = _indices(target).reshape(-1)
    b = None
    if linear_bias is not None:
        b = _c(linear_bias, h.dtype).reshape(-1)
        b = b.view(np.int16) if half else b
    loss = np.empty(lead if reduction == "none" else (), acc)
    grads = None
    if grad:
        grads = (np.empty(h.shape, acc), np.empty(w.shape, acc),
                 None if linear_bias is None else np.empty(b.shape, acc))
    st, st_kw = _stats(lead, acc, return_stats)
    _xent.linear_cross_entropy_into(
        h2, ws, t, loss.reshape(-1) if reduction == "none" else loss, linear_bias=b,
        weight=_opt(weight, acc),
        grad_hidden=None if grads is None else grads[0].reshape(rows, h.shape[-1]),
        grad_linear_weight=None if grads is None else grads[1],
        grad_linear_bias=None if grads is None else grads[2],
        ignore_index=(-100 if ignore_index is None
                      else int_arg("linear_cross_entropy", "ignore_index", ignore_index)),
        label_smoothing=float(label_smoothing), reduction=reduction, z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        logit_scale=float_arg("linear_cross_entropy", "logit_scale", logit_scale),
        denominator=denominator_arg("linear_cross_entropy", num_items_in_batch), half=half,
        threads=_threads(), **st_kw)
    return _ret(loss, grads, grad=grad, stats=st)


def class_weights(target, num_classes, *, scheme="inverse_frequency", beta=0.999,
                  ignore_index=-100):
    """Per-class weights from class-index targets, for ``weight=``:
    ``'inverse_frequency'`` (``N/(C·n_c)``, scikit-learn's "balanced") or
    ``'effective_number'`` (Cui et al. 2019, with ``beta``). Returns ``float64``."""
    return np.asarray(
        _xent.class_weights(_indices(target).reshape(-1), int(num_classes), scheme=scheme,
                            beta=float(beta),
                            ignore_index=int_arg("class_weights", "ignore_index", ignore_index)),
        np.float64)
