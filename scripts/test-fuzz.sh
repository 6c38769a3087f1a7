#!/usr/bin/env bash
# The fuzz targets (fuzz/, cargo-fuzz) for a bounded time on their committed seed
# corpus: 30 s on the .npy reader, 30 s on the `xent loss` path. libFuzzer needs
# nightly compiler flags: this runs where `cargo fuzz` is installed, through a
# nightly toolchain when there is one, else on stable with RUSTC_BOOTSTRAP=1.
# Without cargo-fuzz it only says so: `cargo test` (crates/xent-cli/tests/
# fuzz_corpus.rs) replays the same fuzz bodies over every corpus file anyway.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "test-fuzz: cargo-fuzz is not installed; the corpus is replayed by cargo test"
    exit 0
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
for target in npy cli; do
    # A scratch copy: the fuzzer adds what it finds to the corpus directory it is given.
    work=$(mktemp -d)
    cp corpus/"$target"/* "$work"/
    cargo "${toolchain[@]}" fuzz run "$target" "$work" corpus/"$target" -- \
        -max_total_time=30 -rss_limit_mb=4096 -timeout=10
    rm -rf "$work"
done
