#!/usr/bin/env bash
# Reruns the benchmarks behind BENCHMARKS.md and writes their raw output to
# bench/results/<suite>-<commit>.*: each tool several times, alternating, so that
# the tables can take medians over runs (bench/table.py, bench/alloc_table.py).
#
#   python3 -m venv .venv && .venv/bin/pip install torch numpy   # once: PyTorch
#   bash bench/run.sh [ce] [family] [linear] [candle] [memory] [python]   # default: all
#
# Needs the Rust toolchain and .venv/bin/python with torch; nothing else. About
# 20 minutes on 2 cores. Set RUNS (default 3) for the number of alternating runs.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
runs=${RUNS:-3}
rev=$(git rev-parse --short HEAD)
out=bench/results
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(ce family linear candle memory python)
mkdir -p "$out"
cargo build --release -p xent-cli
cargo build --release -p xent --example linear_bench
xent=target/release/xent
{ lscpu | grep -E 'Model name|^CPU\(s\)|Thread'; uptime; } > "$out/machine-$rev.txt"

for suite in "${suites[@]}"; do
    case $suite in
    ce)  # cross-entropy: xent (kept and fresh gradient), PyTorch (default and THP)
        for _ in $(seq "$runs"); do
            $xent bench --json --threads 2 >> "$out/ce-xent-$rev.jsonl"
            $py bench/torch_ce.py --threads 2 >> "$out/ce-torch-$rev.jsonl"
        done ;;
    family)  # bce, bce-with-logits, kl-div on 16M f32
        for _ in $(seq "$runs"); do
            $xent bench --suite family --json --threads 2 >> "$out/family-xent-$rev.jsonl"
            $py bench/torch_family.py --threads 2 >> "$out/family-torch-$rev.txt"
        done ;;
    linear)  # linear cross-entropy, N = 4096, D = 1024: f32 and bf16 at V = 32000, f32 at 128256
        grep -o -w -E 'avx512f|avx512_bf16|avx512_fp16|amx_tile|amx_bf16' /proc/cpuinfo \
            | sort -u | tr '\n' ' ' | sed 's/^/cpu flags: /' >> "$out/machine-$rev.txt"
        echo >> "$out/machine-$rev.txt"
        for dt in f32 bf16; do
            for _ in $(seq "$runs"); do
                target/release/examples/linear_bench 4096 1024 32000 3 64 "$dt" \
                    >> "$out/linear-xent-$rev.txt"
                $py bench/torch_linear.py --v 32000 --reps 3 --dtype "$dt" \
                    >> "$out/linear-torch-$rev.txt"
            done
        done
        target/release/examples/linear_bench 4096 1024 128256 1 >> "$out/linear-xent-$rev.txt"
        $py bench/torch_linear.py --v 128256 --reps 1 >> "$out/linear-torch-$rev.txt" ;;
    candle)  # candle-nn's cross-entropy and xent in one process
        RAYON_NUM_THREADS=2 cargo run --release --manifest-path bench/candle/Cargo.toml \
            -- --json > "$out/ce-candle-$rev.jsonl" ;;
    memory)  # peak resident memory of one fwd_bwd call
        /usr/bin/time -v $xent bench --quick --threads 2 --shape 4096x32000 --dtype f32 \
            --pass fwd_bwd --alloc reuse 2>&1 | grep -E 'Maximum resident|median' \
            > "$out/memory-xent-$rev.txt" ;;
    python)  # xent.torch against torch.nn.functional, next to xent bench's kept buffer
        $py -m pip install -q --force-reinstall --no-deps ./crates/xent-py
        for _ in $(seq "$runs"); do
            $py -m xent.bench --threads 2 >> "$out/python-xent-bench-$rev.txt"
            $xent bench --threads 2 --pass fwd_bwd --alloc reuse --shape 4096x32000 \
                --shape 16384x1000 --shape 1024x128256 >> "$out/python-xent-bench-$rev.txt"
        done ;;
    *) echo "unknown suite $suite (ce, family, linear, candle, memory, python)" >&2; exit 2 ;;
    esac
done
echo "raw results in $out/*-$rev.*"
