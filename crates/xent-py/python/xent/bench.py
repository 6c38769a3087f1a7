"""``python -m xent.bench``: xent.torch's cross-entropy against PyTorch's, forward +
backward through autograd, with peak memory.

For each shape and dtype it prints the median time of:

- ``xent.torch``: ``xent.torch.cross_entropy(x, y).backward()``;
- ``xent reused``: the same fused pass through the native module into one gradient
  buffer kept across calls (the floor the binding adds nothing to: no copy, no
  allocation, no page faults);
- ``torch``: ``F.cross_entropy(x, y).backward()`` in this process;
- ``torch THP``: the same in a second process started with
  ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch's CPU allocator then advises huge pages);

all with the same thread count (``torch.get_num_threads()``, or ``--threads``) and
the repetition plan of ``xent bench`` (0.1 s of warm-up, then at least ``--reps``
calls and 0.5 s), ``x.grad`` reset to ``None`` before each call as a training step
does after ``zero_grad()``. ``peak MiB`` is the rise of the process's peak resident
memory (``VmHWM``, reset before each case through ``/proc/self/clear_refs``) over its
resident memory before the case (the logits allocated, no gradient), against the size
of one gradient: xent's rise is that gradient (kept for reuse between steps, see
``xent.torch``), torch's adds its intermediates (the log-softmax output). Timings are not
assertions: run it on a quiet machine and read medians.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(4096, 32000), (16384, 1000), (1024, 128256)]
DTYPES = ["float32", "bfloat16"]


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _case(fn, reps, reset, warmup=0.1, min_time=0.5):
    """(median seconds, peak rise MiB) of ``fn``: called for ``warmup`` seconds (at
    least once), then timed at least ``reps`` times and for at least ``min_time``
    seconds, as ``xent bench`` does (its warm-up is 0.1 s, its timing 0.5 s), so that
    short calls are measured in the same steady state on both sides. ``reset`` drops
    what the warm-up left (the gradient) before the baseline."""
    import gc

    gc.collect()
    t0 = time.perf_counter()
    fn()  # warm-up: code paged in, pools started, threads awake
    while time.perf_counter() - t0 < warmup:
        fn()
    reset()
    gc.collect()
    base = _status_kib("VmRSS")
    ok = _reset_peak()
    times = []
    t_start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - t_start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    peak = (_status_kib("VmHWM") - base) / 1024 if ok else float("nan")
    times.sort()
    return times[len(times) // 2], peak


def _measure(impls, shapes, dtypes, reps, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    os.environ.setdefault("XENT_NUM_THREADS", str(threads))
    out = []
    for n, c in shapes:
        for dt in dtypes:
            dtype = getattr(torch, dt)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(n, c, generator=g).to(dtype).requires_grad_()
            y = torch.randint(0, c, (n,), generator=g)
            for impl in impls:
                if impl == "xent.torch":
                    import xent.torch as xt

                    def step():
                        x.grad = None
                        xt.cross_entropy(x, y).backward()
                elif impl == "xent reused":
                    import numpy as np

                    from xent import _xent
                    from xent.torch import _HALF, _np

                    xs, ys = _np(x), _np(y)
                    acc = np.float32
                    loss = np.empty((), acc)
                    buf = np.empty(xs.shape, xs.dtype)
                    half = _HALF.get(dtype)

                    def step():
                        _xent.cross_entropy_into(xs, ys, loss, grad=buf, half=half,
                                                 threads=threads)
                else:
                    def step():
                        x.grad = None
                        F.cross_entropy(x, y).backward()
                def reset():
                    x.grad = None
                    if impl == "xent.torch":
                        xt.empty_cache()

                med, peak = _case(step, reps, reset)
                x.grad = None
                out.append({"impl": impl, "shape": [n, c], "dtype": dt, "ms": med * 1e3,
                            "peak_mib": peak,
                            "grad_mib": x.numel() * x.element_size() / 2**20,
                            "threads": threads})
    return out


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m xent.bench", description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=7,
                   help="at least this many timed calls per case (median); short cases "
                        "repeat for at least 0.5 s after a 0.1 s warm-up, as xent bench")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both (default torch.get_num_threads())")
    p.add_argument("--shape", action="append", default=None, metavar="NxC",
                   help="a shape (repeatable); default the three of the issue")
    p.add_argument("--dtype", action="append", default=None, choices=DTYPES)
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    shapes = SHAPES if a.shape is None else [tuple(int(v) for v in s.split("x")) for s in a.shape]
    dtypes = a.dtype or DTYPES
    import torch

    threads = a.threads or torch.get_num_threads()
    if a.child is not None:
        for r in _measure([a.child], shapes, dtypes, a.reps, threads):
            print(json.dumps(r))
        return 0
    rows = _measure(["xent.torch", "xent reused", "torch"], shapes, dtypes, a.reps, threads)
    cmd = [sys.executable, "-m", "xent.bench", "--child", "torch THP", "--reps", str(a.reps),
           "--threads", str(threads)]
    for s in shapes:
        cmd += ["--shape", f"{s[0]}x{s[1]}"]
    for d in dtypes:
        cmd += ["--dtype", d]
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1")
    child = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if child.returncode != 0:
        sys.stderr.write(child.stderr)
    rows += [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"# python -m xent.bench: {_cpu_name()}, {threads} thread(s), torch "
          f"{torch.__version__}; medians of >= {a.reps} calls and >= 0.5 s after a 0.1 s "
          f"warm-up; forward + backward")
    hdr = (f"{'shape':>13} {'dtype':>8} {'impl':>12} {'ms':>9} {'peak MiB':>9} "
           f"{'grad MiB':>9} {'torch/xt':>9} {'THP/xt':>7} {'xt/reused':>9}")
    print(hdr)
    by = {(tuple(r["shape"]), r["dtype"], r["impl"]): r for r in rows}
    for s in shapes:
        for d in dtypes:
            xt = by.get((tuple(s), d, "xent.torch"))
            for impl in ["xent.torch", "xent reused", "torch", "torch THP"]:
                r = by.get((tuple(s), d, impl))
                if r is None:
                    continue
                vs = ""
                if impl == "xent.torch":
                    t, h, u = (by.get((tuple(s), d, k)) for k in ("torch", "torch THP",
                                                                  "xent reused"))
                    vs = (f"{t['ms'] / r['ms']:>8.2f}x " if t else f"{'':>9} ") + \
                         (f"{h['ms'] / r['ms']:>6.2f}x " if h else f"{'':>7} ") + \
                         (f"{r['ms'] / u['ms']:>8.2f}x" if u else "")
                print(f"{s[0]:>6}x{s[1]:<6} {d:>8} {impl:>12} {r['ms']:>9.1f} "
                      f"{r['peak_mib']:>9.1f} {r['grad_mib']:>9.1f} {vs}")
            del xt
    return 0


if __name__ == "__main__":
    sys.exit(main())
