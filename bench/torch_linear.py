#!/usr/bin/env python3
"""PyTorch CPU baseline for linear cross-entropy, forward + backward.

Times, with 2 threads, on N×D hidden states and a V×D classifier (float32, or
bfloat16 with ``--dtype bf16``: h, W, the logits and the gradients in bf16, as a bf16
model trains):

- ``unfused``: ``F.cross_entropy(h @ W.T, y)`` then ``.backward()`` (holds the N×V
  logits and their gradient);
- ``chunked``: ``F.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions())``
  (torch 2.13+; skipped when the function does not exist).

Each (shape, method) runs in a fresh subprocess so that its peak RSS (``VmHWM``) is
its own. "extra" is the peak minus the resident size after the inputs were made, minus
the size of the two gradients (dh, dW) that any method must return: what the method
adds on top of inputs + gradients, comparable with xent's linear_bench "extra".

On a shared machine another process can take a core mid-run: each repetition also
reads the kernel's CPU pressure stall counter (``/proc/pressure/cpu``, Linux), and the
median of the "quiet" repetitions (some task waited for a CPU < 3% of the time) is
printed beside the overall one, as xent's linear_bench does.

Needs PyTorch; not run by CI. From the worktree root:

    .venv/bin/python bench/torch_linear.py               # N=4096 D=1024 V=32000
    .venv/bin/python bench/torch_linear.py --v 128256 --reps 1
"""

import argparse
import json
import os
import subprocess
import sys
import time


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def cpu_stall_s():
    """Total seconds some task waited for a CPU (Linux PSI), or None."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().rsplit("total=", 1)[1]) * 1e-6
    except (OSError, IndexError, ValueError):
        return None


def child(args):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    h0 = (torch.rand(args.n, args.d, generator=g) * 2 - 1).to(dtype)
    w0 = ((torch.rand(args.v, args.d, generator=g) * 2 - 1) * 0.05).to(dtype)
    y = (torch.arange(args.n) * 7919) % args.v
    base_kib = status_kib("VmRSS:")
    times = []
    quiet = []
    loss_value = None
    for _ in range(args.reps):
        h = h0.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        stall = cpu_stall_s()
        t = time.perf_counter()
        if args.method == "unfused":
            loss = F.cross_entropy(h @ w.T, y)
        else:
            from torch.nn import LinearCrossEntropyOptions

            loss = F.linear_cross_entropy(h, w, y, options=LinearCrossEntropyOptions())
        loss.backward()
        times.append(time.perf_counter() - t)
        stall_end = cpu_stall_s()
        if stall is not None and stall_end is not None and stall_end - stall < 0.03 * times[-1]:
            quiet.append(times[-1])
        loss_value = float(loss)
        del h, w, loss
    times.sort()
    quiet.sort()
    peak_kib = status_kib("VmHWM:")
    # h and w are clones of h0/w0 (inputs counted twice by this harness): subtract one
    # copy of them, and the two gradients, from the peak.
    elem = 4 if args.dtype == "f32" else 2
    grads_kib = (args.n * args.d + args.v * args.d) * elem // 1024
    extra_kib = peak_kib - base_kib - 2 * grads_kib
    print(json.dumps({
        "method": args.method, "n": args.n, "d": args.d, "v": args.v, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "median_s": times[len(times) // 2], "min_s": times[0], "reps": args.reps,
        "quiet_reps": len(quiet), "quiet_median_s": quiet[len(quiet) // 2] if quiet else None,
        "loss": loss_value, "peak_rss_mib": peak_kib / 1024,
        "extra_mib": extra_kib / 1024,
        "logits_mib": args.n * args.v * elem / 2**20,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--v", type=int, default=32000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--methods", default="unfused,chunked")
    p.add_argument("--method", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.method:
        child(args)
        return
    import torch.nn.functional as F

    for method in args.methods.split(","):
        if method == "chunked" and not hasattr(F, "linear_cross_entropy"):
            print("F.linear_cross_entropy does not exist in this torch; skipped")
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--method", method,
               "--n", str(args.n), "--d", str(args.d), "--v", str(args.v),
               "--reps", str(args.reps), "--threads", str(args.threads),
               "--dtype", args.dtype]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{method}: failed\n{out.stderr}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        qm = "-" if r["quiet_median_s"] is None else f"{r['quiet_median_s']:.3f} s"
        print(f"torch {r['torch']} {method} {r['dtype']} N={r['n']} D={r['d']} V={r['v']} "
              f"threads={r['threads']}: median {r['median_s']:.3f} s (min {r['min_s']:.3f}, "
              f"{r['reps']} reps; quiet {r['quiet_reps']}: median {qm}), loss {r['loss']:.6f}")
        print(f"  peak RSS {r['peak_rss_mib']:.1f} MiB; extra above inputs+grads "
              f"{r['extra_mib']:.1f} MiB = {100 * r['extra_mib'] / r['logits_mib']:.1f}% of the "
              f"{r['logits_mib']:.1f} MiB logits")


if __name__ == "__main__":
    main()
