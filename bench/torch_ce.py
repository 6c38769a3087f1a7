#!/usr/bin/env python3
"""Times PyTorch's F.cross_entropy on the shapes of `xent bench`, for BENCHMARKS.md.

Needs PyTorch (CPU is enough); CI never runs it. Usage:

    python bench/torch_ce.py [--threads 2] [--quick] [--shape 4096x32000 ...]
                             [--dtype f32|bf16] [--pass fwd|fwd_bwd]
                             [--huge-pages both|off|on]

Prints one JSON object per case and line, with the keys of `xent bench --json`:
shape, dtype, pass, median_ms (plus reps, threads, gbps, loss, torch). There is no
floor here, so floor_ms is null.

Per case: logits ~ 2·N(0, 1) and uniform int64 class targets, allocated once;
`fwd` is `F.cross_entropy(x, y)` under `torch.no_grad()`; `fwd_bwd` is the loss
and `loss.backward()` into `x.grad` (PyTorch allocates the gradient on each call;
setting `x.grad = None` between calls is what a training loop's zero_grad does).
Warm-up, then repetitions until at least 0.5 s and 5 reps; the median is reported.

PyTorch's CPU allocator puts allocations on 2 MiB-aligned huge pages
(MADV_HUGEPAGE) only when the environment variable THP_MEM_ALLOC_ENABLE=1 is set
when the process starts. `--huge-pages both` (the default) runs every case twice,
in two child processes, without it (`"torch_alloc": "default"`) and with it
(`"torch_alloc": "huge_pages"`); each line also names the kernel's THP mode
(`"thp"`, from /sys/kernel/mm/transparent_hugepage/enabled), as `xent bench` does.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [
    (65536, 10),
    (16384, 1000),
    (4096, 32000),
    (1024, 128256),
    (1, 4_000_000),
    (32, 21, 128, 128),
]
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def parse_shape(s):
    return tuple(int(d.replace("_", "")) for d in s.replace(",", "x").split("x"))


def measure(fn, min_time, min_reps, warmup):
    start = time.perf_counter()
    while True:
        fn()
        if time.perf_counter() - start >= warmup:
            break
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), len(times)


def thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            words = f.read().split()
    except OSError:
        return "unavailable"
    chosen = [w[1:-1] for w in words if w.startswith("[") and w.endswith("]")]
    return chosen[0] if chosen else "unavailable"


def run_children(modes):
    """Runs this script once per allocator mode, each in a process of its own (the
    variable is read when PyTorch starts); their lines go to our stdout."""
    argv = [a for a in sys.argv[1:]]
    for mode in modes:
        env = dict(os.environ)
        env.pop("THP_MEM_ALLOC_ENABLE", None)
        if mode == "on":
            env["THP_MEM_ALLOC_ENABLE"] = "1"
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--huge-pages", mode, "--child"]
        code = subprocess.run(cmd, env=env).returncode
        if code != 0:
            sys.exit(code)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shape", action="append", type=parse_shape)
    ap.add_argument("--dtype", choices=list(DTYPES))
    ap.add_argument("--pass", dest="pass_", choices=["fwd", "fwd_bwd"])
    ap.add_argument("--huge-pages", choices=["both", "off", "on"], default="both")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.child:
        run_children(["off", "on"] if args.huge_pages == "both" else [args.huge_pages])
        return
    torch_alloc = "huge_pages" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "default"

    torch.set_num_threads(args.threads)
    min_time, min_reps, warmup = (0.05, 2, 0.0) if args.quick else (0.5, 5, 0.1)
    gen = torch.Generator().manual_seed(0)
    for shape in args.shape or SHAPES:
        n, c = shape[0], shape[1]
        target_shape = (n,) + tuple(shape[2:])
        for name, dtype in DTYPES.items():
            if args.dtype and args.dtype != name:
                continue
            x = (torch.randn(shape, generator=gen) * 2.0).to(dtype)
            y = torch.randint(0, c, target_shape, generator=gen)
            elem = x.element_size()
            for pass_ in ["fwd", "fwd_bwd"]:
                if args.pass_ and args.pass_ != pass_:
                    continue
                out = {}
                if pass_ == "fwd":

                    def fn():
                        with torch.no_grad():
                            out["loss"] = F.cross_entropy(x, y)

                    nbytes = x.numel() * elem
                else:
                    xg = x.detach().requires_grad_(True)

                    def fn():
                        xg.grad = None
                        loss = F.cross_entropy(xg, y)
                        loss.backward()
                        out["loss"] = loss.detach()

                    nbytes = 2 * x.numel() * elem
                med, reps = measure(fn, min_time, min_reps, warmup)
                print(
                    json.dumps(
                        {
                            "shape": list(shape),
                            "dtype": name,
                            "pass": pass_,
                            "median_ms": round(med, 4),
                            "floor_ms": None,
                            "gbps": round(nbytes / (med * 1e6), 4),
                            "reps": reps,
                            "threads": torch.get_num_threads(),
                            "loss": float(out["loss"]),
                            "torch": torch.__version__,
                            "torch_alloc": torch_alloc,
                            "thp": thp_mode(),
                        }
                    ),
                    flush=True,
                )
                if pass_ == "fwd_bwd":
                    del xg
            del x, y


if __name__ == "__main__":
    main()
