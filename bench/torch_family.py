"""PyTorch CPU baseline for `xent bench --suite family` (BENCHMARKS.md).

Times F.binary_cross_entropy, F.binary_cross_entropy_with_logits and F.kl_div
(reduction batchmean) on float32 of shape (16384, 1024) = 16M elements, forward
(loss only, under no_grad) and forward + backward (autograd, the gradient w.r.t. the
input), on 2 threads; prints the median of each in milliseconds. The data are made
as the Rust benchmark makes them (probabilities = sigmoid(logits), soft targets =
sigmoid of other logits, log q = log(probabilities)), not bit-identical.

Run:   .venv/bin/python bench/torch_family.py [--elems N] [--threads 2]
Never run by CI or the tests: it needs PyTorch.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def median_ms(fn, min_time=1.0, min_reps=5, warmup=0.2):
    start = time.perf_counter()
    while time.perf_counter() - start < warmup:
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--elems", type=int, default=1 << 24)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cols = 1024
    shape = (args.elems // cols, cols)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g) * 2.0
    probs = torch.sigmoid(logits)
    soft = torch.sigmoid(torch.randn(shape, generator=g) * 2.0)
    logq = probs.log()
    cases = {
        "bce": (probs, lambda x: F.binary_cross_entropy(x, soft)),
        "bce-with-logits": (logits, lambda x: F.binary_cross_entropy_with_logits(x, soft)),
        "kl-div": (logq, lambda x: F.kl_div(x, soft, reduction="batchmean")),
    }
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, f32, shape {shape[0]}x{shape[1]}")
    print(f"{'op':<16} {'pass':<8} {'median_ms':>10} {'reps':>5}")
    for name, (inp, loss_fn) in cases.items():
        def fwd():
            with torch.no_grad():
                loss_fn(inp)

        x = inp.clone().requires_grad_(True)

        def fwd_bwd():
            x.grad = None
            loss_fn(x).backward()

        for pass_name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
            ms, reps = median_ms(fn)
            print(f"{name:<16} {pass_name:<8} {ms:>10.3f} {reps:>5}", flush=True)


if __name__ == "__main__":
    main()
