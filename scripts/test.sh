#!/usr/bin/env bash
# Every test: the import-cycle check of every crate's files, the Rust test suite,
# then the stack-frame check of the debug build (no function of the xent library may
# need more than 64 KiB of stack, on any ISA).
# Needs the Rust toolchain, python3 and objdump (binutils, installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v objdump >/dev/null; then
    apt-get update -qq && apt-get install -y -qq binutils
fi
cargo --version
python3 .ci/import_cycles.py
cargo test --workspace
# The hostile-input tests again in an optimized build with overflow checks.
cargo test --profile release-checked -p xent --test hostile --test hostile_props
python3 .ci/stack_frames.py
bash scripts/test-fuzz.sh
bash scripts/test-python.sh
bash scripts/test-mpi.sh
