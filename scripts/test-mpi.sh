#!/usr/bin/env bash
# The MPI tests: crates/xent-mpi (its own workspace, outside `cargo test --workspace`)
# under `mpirun -n 2/3/4` against the single-process library. Installs Debian's
# OpenMPI 4.1 and the libclang that the mpi crate's bindings need when they are
# missing (about 150 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v mpirun >/dev/null || need+=(openmpi-bin)
command -v mpicc >/dev/null || need+=(libopenmpi-dev)
ls /usr/lib/*/libclang-14.so* >/dev/null 2>&1 || need+=(libclang1-14)
[ -d /usr/lib/llvm-14/lib/clang ] || need+=(libclang-common-14-dev)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
mpirun --version | head -1
cd crates/xent-mpi
cargo test --locked
