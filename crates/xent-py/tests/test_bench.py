"""`python -m xent.bench` runs end to end (all four implementations, both dtypes, the
second process with huge pages) and reports what it measured. Its times are not
asserted."""

import json
import subprocess
import sys

from xent import bench


def test_bench_reports_every_implementation_and_dtype():
    out = subprocess.run(
        [sys.executable, "-m", "xent.bench", "--shape", "64x10", "--reps", "2",
         "--threads", "1", "--json"],
        capture_output=True, text=True, timeout=300, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    seen = {(r["impl"], r["dtype"]) for r in rows}
    impls = ["xent.torch", "xent reused", "torch", "torch THP"]
    assert seen == {(i, d) for i in impls for d in ["float32", "bfloat16"]}
    for r in rows:
        assert r["shape"] == [64, 10] and r["threads"] == 1
        assert r["ms"] > 0


def test_case_repeats_for_the_minimum_time_and_count():
    calls = []
    med, _ = bench._case(lambda: calls.append(1), reps=5, reset=lambda: None,
                         warmup=0.0, min_time=0.05)
    # One warm-up call, then at least 5 timed calls spanning at least 0.05 s.
    assert len(calls) >= 6 and med >= 0
    calls.clear()
    bench._case(lambda: calls.append(1), reps=3, reset=lambda: None, warmup=0.0,
                min_time=0.0)
    assert len(calls) == 4
