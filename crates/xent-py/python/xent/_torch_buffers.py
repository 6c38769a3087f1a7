"""Tensors as the numpy buffers xent's native module reads and writes: no copy for a
contiguous CPU tensor, numpy-allocated outputs (huge-page advised when large), and the
reused gradient buffers of :mod:`xent._grad_cache`."""

import weakref

import numpy as np
import torch

from ._grad_cache import CACHE_MIN_BYTES, cache as _cache

_HALF = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
_NP = {torch.float32: np.float32, torch.float64: np.float64, torch.int16: np.int16,
       torch.int64: np.int64}


def _np(t):
    """A contiguous CPU tensor's memory as a numpy array, no copy (16-bit floats as
    an int16 view); a non-contiguous tensor is made contiguous first."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype in _HALF:
        return t.view(torch.int16).numpy()
    return t.numpy()


def _flat(t):
    """``t`` detached and contiguous (a copy only when it is not)."""
    return t.detach() if t.is_contiguous() else t.detach().contiguous()


def _empty(shape, dtype):
    """A numpy-allocated buffer (huge-page advised when large) as (tensor, numpy
    storage view)."""
    if dtype in _HALF:
        a = np.empty(tuple(shape), np.int16)
        return torch.from_numpy(a).view(dtype), a
    a = np.empty(tuple(shape), _NP[dtype])
    return torch.from_numpy(a), a


def _grad_buffer(shape, dtype):
    """(tensor, numpy storage view) of a gradient buffer: an idle cached buffer of
    about the same size, else a new numpy allocation, returned to the cache when the
    tensor's storage is freed."""
    storage = np.int16 if dtype in _HALF else _NP[dtype]
    n = 1
    for d in shape:
        n *= d
    nbytes = n * np.dtype(storage).itemsize
    if nbytes < CACHE_MIN_BYTES:
        return _empty(shape, dtype)
    base = _cache.take(nbytes)
    if base is None:
        base = np.empty(nbytes, np.uint8)
    a = base[:nbytes].view(storage).reshape(tuple(shape))
    weakref.finalize(a, _cache.give_back, base).atexit = False
    t = torch.from_numpy(a)
    return (t.view(dtype) if dtype in _HALF else t), a


def _opt_np(t, dtype):
    return None if t is None else _np(t.detach().to(dtype).reshape(-1))
