"""xent.torch's cache of idle gradient buffers: bounded in bytes and in buffers,
least recently freed dropped first, a buffer returned when the storage of the tensor
handed out is freed (``weakref.finalize``), never by reading reference counts."""

import collections
import operator
import os
import threading

__all__ = ["CACHE_MIN_BYTES", "cache", "empty_cache", "set_grad_cache_limit",
           "grad_cache_info"]


def _env_bytes(name, default):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"{name} must be a byte count (an integer ≥ 0), got {raw!r}")
    return n


class _GradCache:
    """Idle gradient buffers, kept for reuse within a byte budget and a buffer count,
    least recently returned dropped first.

    A buffer is handed out as a numpy view that the gradient tensor's storage holds;
    a ``weakref.finalize`` on that view returns the buffer when the storage is freed
    (after ``x.grad = None``, ``zero_grad()``, or at the end of the backward pass for
    a non-leaf's gradient). That is the storage's lifetime, whatever the reference
    counts are. The finalizer can run in any thread, at any allocation (a garbage
    collection), also while this thread holds the lock: it queues the buffer and
    takes the lock only when it is free; whoever releases the lock drains the queue.
    """

    def __init__(self, max_bytes, max_buffers):
        self.max_bytes, self.max_buffers = max_bytes, max_buffers
        self.idle = collections.OrderedDict()  # id -> uint8 base, oldest first
        self.bytes = 0
        self.lock = threading.Lock()
        self.returned = collections.deque()

    def take(self, nbytes):
        """A free buffer of ``nbytes`` to ``nbytes·5/4`` bytes (the smallest), or None."""
        best = None
        with self.lock:
            for key, b in self.idle.items():
                if nbytes <= b.nbytes <= nbytes + (nbytes >> 2) and (
                        best is None or b.nbytes < best[1].nbytes):
                    best = (key, b)
            if best is not None:
                del self.idle[best[0]]
                self.bytes -= best[1].nbytes
        self.drain()
        return None if best is None else best[1]

    def give_back(self, base):
        self.returned.append(base)
        self.drain()

    def drain(self):
        while self.returned:
            if not self.lock.acquire(blocking=False):
                return  # the holder drains when it lets go
            try:
                while self.returned:
                    self._keep(self.returned.popleft())
            finally:
                self.lock.release()

    def _keep(self, base):
        if base.nbytes > self.max_bytes or self.max_buffers < 1:
            return
        self.idle[id(base)] = base
        self.bytes += base.nbytes
        self._evict()

    def _evict(self):
        while self.idle and (self.bytes > self.max_bytes or len(self.idle) > self.max_buffers):
            _, old = self.idle.popitem(last=False)
            self.bytes -= old.nbytes

    def set_limits(self, max_bytes, max_buffers):
        with self.lock:
            prev = (self.max_bytes, self.max_buffers)
            if max_bytes is not None:
                self.max_bytes = max_bytes
            if max_buffers is not None:
                self.max_buffers = max_buffers
            self._evict()
        self.drain()
        return prev

    def clear(self):
        self.drain()
        with self.lock:
            self.idle.clear()
            self.bytes = 0
        self.drain()

    def info(self):
        self.drain()
        with self.lock:
            out = dict(bytes=self.bytes, buffers=len(self.idle), max_bytes=self.max_bytes,
                       max_buffers=self.max_buffers)
        self.drain()
        return out


# Gradient buffers of at least this many bytes come from the cache: a fresh buffer costs
# a page fault per page on its first touch, as much as the kernel itself at these sizes,
# and a reused one none. Smaller ones are plain numpy allocations.
CACHE_MIN_BYTES = 1 << 20
cache = _GradCache(_env_bytes("XENT_GRAD_CACHE_BYTES", 1 << 30), 2)


def empty_cache():
    """Releases the idle gradient buffers xent.torch keeps for reuse. Buffers in use
    come back to the cache when they are freed, within its limits
    (:func:`set_grad_cache_limit`; ``max_buffers=0`` keeps none)."""
    cache.clear()


def set_grad_cache_limit(max_bytes=None, max_buffers=None):
    """Sets how many idle gradient buffers xent.torch keeps for reuse: at most
    ``max_bytes`` bytes in all (default 1 GiB, or ``XENT_GRAD_CACHE_BYTES``) and at most
    ``max_buffers`` buffers (default 2), the least recently freed dropped first;
    ``None`` leaves a limit as it is, ``0`` keeps none. Returns the previous
    ``(max_bytes, max_buffers)``.

    A training step needs one gradient buffer per loss call; a buffer is reused by a
    later call whose gradient is at most 1/4 smaller. Memory above the limits goes back
    to the allocator (and to the OS for large buffers) as soon as it is freed.
    """
    for name, v in (("max_bytes", max_bytes), ("max_buffers", max_buffers)):
        if v is not None and (isinstance(v, bool) or operator.index(v) < 0):
            raise ValueError(f"{name} must be an integer ≥ 0, got {v!r}")
    return cache.set_limits(None if max_bytes is None else operator.index(max_bytes),
                             None if max_buffers is None else operator.index(max_buffers))


def grad_cache_info():
    """The gradient cache's state: ``bytes`` and ``buffers`` idle now, and the limits
    ``max_bytes`` and ``max_buffers``."""
    return cache.info()
