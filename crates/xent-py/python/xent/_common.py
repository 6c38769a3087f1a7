"""Helpers shared by the numpy API and ``xent.torch``: thread count, shapes, integer
arguments."""

import operator
import os

__all__ = ["env_threads", "max_threads", "row_shape", "class_dim_view", "int_arg"]


def int_arg(fn, name, value):
    """``value`` as an int, with torch's TypeError for a float or bool (torch takes any
    object with ``__index__``: a Python or numpy integer, a one-element int tensor)."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{fn}(): argument '{name}' must be int, not {type(value).__name__}")
    return operator.index(value)


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
