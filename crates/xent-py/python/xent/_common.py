"""Helpers shared by the numpy API and ``xent.torch``: thread count, shapes, integer
and float arguments, the per-row outputs' named tuple."""

import operator
import os
from typing import Any, NamedTuple

__all__ = ["env_threads", "max_threads", "row_shape", "class_dim_view", "int_arg",
           "float_arg", "denominator_arg", "RowStats"]


class RowStats(NamedTuple):
    """The per-row outputs of one fused cross-entropy pass (``return_stats=True``), each
    in the row shape (``()`` for ``(C,)`` logits, ``(N, d1..dk)`` for ``(N, C, d1..dk)``,
    the leading shape for ``linear_cross_entropy``), for the logits as the loss sees
    them, ``x̃ = softcap(logit_scale·x)``:

    - ``lse``: ``log Σ_c exp(x̃_c)``;
    - ``entropy``: ``−Σ_c p_c·log p_c`` of ``p = softmax(x̃)``;
    - ``argmax``: the predicted class (int64; ties go to the lowest index, as
      ``torch.argmax``);
    - ``z``: the row's z-loss term ``z_loss·lse²`` (0 on ignored rows and without
      ``z_loss``).

    Rows whose target is ``ignore_index`` still get ``lse``, ``entropy`` and ``argmax``.
    ``lse``, ``entropy`` and ``z`` are float64 for float64 logits, float32 otherwise.
    They are never differentiated (detached tensors in ``xent.torch``).
    """

    lse: Any
    entropy: Any
    argmax: Any
    z: Any


def int_arg(fn, name, value):
    """``value`` as an int, with torch's TypeError for a float or bool (torch takes any
    object with ``__index__``: a Python or numpy integer, a one-element int tensor)."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{fn}(): argument '{name}' must be int, not {type(value).__name__}")
    return operator.index(value)


def float_arg(fn, name, value):
    """``value`` as a float, with torch's TypeError for a bool or a non-number (a Python
    or numpy number, or a one-element tensor). Its range is the library's to check."""
    if isinstance(value, (bool, str, bytes)) or not hasattr(type(value), "__float__"):
        raise TypeError(f"{fn}(): argument '{name}' must be a number, not "
                        f"{type(value).__name__}")
    return float(value)


def denominator_arg(fn, num_items_in_batch):
    """``num_items_in_batch`` (Hugging Face's name for the token count, or weight sum,
    of a whole gradient-accumulation step) as the library's ``denominator``: ``None``
    stays ``None`` (PyTorch's mean over this call's own rows)."""
    if num_items_in_batch is None:
        return None
    return float_arg(fn, "num_items_in_batch", num_items_in_batch)


def max_threads():
    """The most threads ``XENT_NUM_THREADS`` may ask for: 4 per logical CPU. More never
    speeds xent up, and each is a thread to start (100000 of them take minutes)."""
    return 4 * (os.cpu_count() or 1)


def env_threads():
    """The thread count set by ``XENT_NUM_THREADS``, or ``None`` when unset.

    Raises ``ValueError`` for a value that is not a positive integer, or that is above
    :func:`max_threads`.
    """
    raw = os.environ.get("XENT_NUM_THREADS")
    if raw is None or raw.strip() == "":
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"XENT_NUM_THREADS must be a positive integer, got {raw!r}")
    if n > max_threads():
        raise ValueError(
            f"XENT_NUM_THREADS={raw.strip()} is more than {max_threads()} (4 threads per "
            f"logical CPU, {os.cpu_count() or 1} here); set it to at most the core count")
    return n


def row_shape(shape):
    """The per-row loss shape of logits of shape ``shape``: ``()`` for ``(C,)``,
    ``(N, d1..dk)`` for ``(N, C, d1..dk)`` (the class dim, dim 1, removed)."""
    shape = tuple(shape)
    if len(shape) <= 1:
        return ()
    return (shape[0],) + shape[2:]


def class_dim_view(shape, dim):
    """The ``(outer, C, inner)`` shape that puts dim ``dim`` of a C-contiguous array of
    shape ``shape`` on dim 1, as xent expects (a reshape, never a copy)."""
    shape = tuple(shape)
    if len(shape) == 0:
        shape = (1,)
    nd = len(shape)
    if not -nd <= dim < nd:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but got {dim})"
        )
    dim %= nd
    outer = 1
    for s in shape[:dim]:
        outer *= s
    inner = 1
    for s in shape[dim + 1:]:
        inner *= s
    return (outer, shape[dim], inner)
