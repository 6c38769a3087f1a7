#!/usr/bin/env bash
# The Python package's tests: builds and installs crates/xent-py (the `xent` package,
# PyO3 + maturin) into a venv with pip, installs pytest, numpy and torch, and runs
# pytest on crates/xent-py/tests.
#
# The venv (.venv-test/ in the repo root, or $XENT_TEST_VENV) is kept between runs,
# and so is pip's cache: torch's default wheel pulls the CUDA libraries (2.8 GB to
# download, 5.3 GB installed, about 100 s the first time); the tests run on the CPU.
# Needs python3 with the venv module (installed with apt-get when missing) and the
# Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${XENT_TEST_VENV:-.venv-test}"
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c 'import torch, numpy, pytest' 2>/dev/null; then
    "$py" -m pip install -q pytest numpy torch
fi
"$py" -m pip install -q --force-reinstall --no-deps ./crates/xent-py
"$py" -m pytest -q crates/xent-py/tests "$@"
