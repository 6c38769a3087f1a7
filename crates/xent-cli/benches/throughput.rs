//! `cargo bench -p xent-cli`: the same cases as `xent bench`, printed as a table.
//!
//! `cargo bench -p xent-cli -- --quick` shortens the repetitions, `-- --json` prints
//! JSON lines. Run as a test (`cargo test --all-targets`, without `--bench`), it
//! only times one tiny shape, so that test runs stay fast.
#![deny(missing_docs)]

// The CLI's benchmark module, compiled into this target as well: one code path for
// `xent bench` and `cargo bench`. Argument parsing lives in the CLI, so some of its
// helpers are unused here; and `clippy --all-targets` compiles this target with
// `cfg(test)` but no harness, where the module's unit tests vanish and leave their
// imports unused.
#[allow(dead_code, unused_imports)]
#[path = "../src/bench/mod.rs"]
mod bench;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let mut config = bench::Config {
        quick: has("--quick"),
        json: has("--json"),
        ..bench::Config::default()
    };
    if !has("--bench") {
        config.shapes = vec![vec![64, 10]];
        config.quick = true;
    }
    match bench::run(&config, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput: {e:?}");
            ExitCode::FAILURE
        }
    }
}
