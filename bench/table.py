#!/usr/bin/env python3
"""Merges the JSON lines of `xent bench --json`, bench/torch_ce.py and bench/candle
into the side-by-side Markdown table of BENCHMARKS.md: xent into a kept gradient
buffer ("reuse") and into a fresh one per call ("fresh"), PyTorch with its default
allocator and with huge pages (THP_MEM_ALLOC_ENABLE=1), candle.

    python3 bench/table.py xent.jsonl torch.jsonl [candle.jsonl]

Several runs of one tool may be concatenated into its file: each cell is the median
over the runs of that tool's per-run medians (xent's ratio is recomputed from its
own kernel and floor medians). Standard library only.
"""

import json
import statistics
import sys


def load(path):
    rows = {}
    if path is None:
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            # The variant: xent's gradient allocation (`alloc`: null for fwd, reuse,
            # fresh, plain), PyTorch's allocator (`torch_alloc`), or candle's `impl`.
            variant = r.get("alloc") or r.get("torch_alloc") or r.get("impl") or ""
            if variant in ("reuse", "default"):
                variant = ""
            key = (tuple(r["shape"]), r["dtype"], r["pass"], variant)
            rows.setdefault(key, []).append(r)
    return rows


def med(rows, field):
    vals = [r[field] for r in rows if r.get(field) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main():
    xent = load(sys.argv[1])
    torch = load(sys.argv[2])
    candle = load(sys.argv[3] if len(sys.argv) > 3 else None)
    shapes = []
    for shape, _, _, _ in xent:
        if shape not in shapes:
            shapes.append(shape)
    for dtype in ["f32", "bf16"]:
        print(f"\n**{dtype}** (times in ms, medians)\n")
        print(
            "| shape | xent fwd | read floor | ratio | GB/s | xent fwd_bwd | copy floor "
            "| ratio | GB/s | xent fresh | torch fwd | torch fwd_bwd | torch THP "
            "| candle fwd_bwd | fwd: torch/xent | fwd_bwd: torch/xent "
            "| fwd_bwd: THP/xent | fwd_bwd: THP/fresh |"
        )
        print("|" + "---|" * 18)
        for shape in shapes:
            f = xent.get((shape, dtype, "fwd", ""))
            b = xent.get((shape, dtype, "fwd_bwd", ""))
            if not f or not b:
                continue
            fm, ff, bm, bf = (med(f, "median_ms"), med(f, "floor_ms"),
                              med(b, "median_ms"), med(b, "floor_ms"))
            fg = f[0]["bytes"] / (fm * 1e6)
            bg = b[0]["bytes"] / (bm * 1e6)
            xfresh = med(xent.get((shape, dtype, "fwd_bwd", "fresh"), []), "median_ms")
            tf = med(torch.get((shape, dtype, "fwd", ""), []), "median_ms")
            tb = med(torch.get((shape, dtype, "fwd_bwd", ""), []), "median_ms")
            th = med(torch.get((shape, dtype, "fwd_bwd", "huge_pages"), []), "median_ms")
            cb = med(candle.get((shape, dtype, "fwd_bwd", "candle"), []), "median_ms")

            def ratio(a, b):
                return f"{fmt(a / b if a and b else None)}×"

            print(
                f"| {'×'.join(map(str, shape))} | {fmt(fm, 2)} | {fmt(ff, 2)} | "
                f"{fmt(fm / ff, 2)} | {fmt(fg)} | {fmt(bm, 2)} | {fmt(bf, 2)} | "
                f"{fmt(bm / bf, 2)} | {fmt(bg)} | {fmt(xfresh, 2)} | {fmt(tf, 1)} | "
                f"{fmt(tb, 1)} | {fmt(th, 1)} | {fmt(cb, 0)} | {ratio(tf, fm)} | "
                f"{ratio(tb, bm)} | {ratio(th, bm)} | {ratio(th, xfresh)} |"
            )

if __name__ == "__main__":
    main()
