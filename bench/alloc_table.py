#!/usr/bin/env python3
"""The allocation table of BENCHMARKS.md: xent's fwd_bwd with a gradient
kept across repetitions (`reuse`), a fresh one from the allocating API (`fresh`) and
a fresh `vec!` (`plain`), next to the copy floor and PyTorch without and with
THP_MEM_ALLOC_ENABLE=1.

    python3 bench/alloc_table.py xent.jsonl torch.jsonl

Each file may hold several runs (alternating): a cell is the median over the runs
of the per-run medians, with the range of the per-run medians. Standard library only.
"""

import json
import statistics
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r.get("pass") != "fwd_bwd":
                continue
            mode = r.get("alloc") or r.get("torch_alloc")
            rows.setdefault((tuple(r["shape"]), r["dtype"], mode), []).append(r)
    return rows


def cell(rows, field="median_ms"):
    vals = [r[field] for r in rows or [] if r.get(field) is not None]
    if not vals:
        return None, "n/a"
    m = statistics.median(vals)
    text = f"{m:.1f}" if len(vals) == 1 else f"{m:.1f} ({min(vals):.1f}–{max(vals):.1f})"
    return m, text


def ratio(a, b):
    return "n/a" if a is None or b is None else f"{a / b:.2f}"


def main():
    xent, torch = load(sys.argv[1]), load(sys.argv[2])
    keys = []
    for shape, dtype, _ in xent:
        if (shape, dtype) not in keys:
            keys.append((shape, dtype))
    print(
        "| shape | dtype | xent reuse | xent fresh | xent plain `vec!` | copy floor "
        "| torch default | torch huge pages | fresh / reuse | torch huge / xent reuse "
        "| torch huge / xent fresh | torch default / xent fresh |"
    )
    print("|" + "---|" * 12)
    for shape, dtype in keys:
        reuse, rt = cell(xent.get((shape, dtype, "reuse")))
        fresh, ft = cell(xent.get((shape, dtype, "fresh")))
        _, pt = cell(xent.get((shape, dtype, "plain")))
        _, floor = cell(xent.get((shape, dtype, "reuse")), "floor_ms")
        td, tdt = cell(torch.get((shape, dtype, "default")))
        th, tht = cell(torch.get((shape, dtype, "huge_pages")))
        print(
            f"| {'×'.join(map(str, shape))} | {dtype} | {rt} | {ft} | {pt} | {floor} | {tdt} "
            f"| {tht} | {ratio(fresh, reuse)} | {ratio(th, reuse)}× | {ratio(th, fresh)}× "
            f"| {ratio(td, fresh)}× |"
        )


if __name__ == "__main__":
    main()
