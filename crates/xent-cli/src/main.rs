//! `xent`: the command-line face of the xent library.
//!
//! - `xent demo` walks through the classic softmax cross-entropy example, every
//!   number computed by the library.
//! - `xent loss cross-entropy|nll|bce|bce-with-logits|kl-div|js|linear-cross-entropy`
//!   computes a loss (and optionally its gradients) on `.npy` files.
//! - `xent bench` times the fused cross-entropy against a memory-copy floor.
//!
//! Every failure is one line on stderr, `xent: error: …`, with exit code 2, and no
//! output file is written: everything is computed before the first file is touched,
//! and the outputs are then written as one transaction (see `xent_cli`'s `outputs`
//! module: every file is replaced or none is, and an existing output must be a
//! regular file).
#![deny(missing_docs)]

mod bench;
mod demo;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use xent::Isa;
use xent_cli::args::LossCommand;
use xent_cli::loss;
pub(crate) use xent_cli::Failure;

/// Softmax cross-entropy and its relatives: PyTorch-exact losses with exact gradients.
#[derive(Debug, Parser)]
#[command(name = "xent", version)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Walk through the classic example: one-hot targets, softmax, and three routes
    /// to the same cross-entropy loss and gradient.
    Demo,
    /// Compute a loss (and its gradient) on .npy files.
    #[command(subcommand)]
    Loss(Box<LossCommand>),
    /// Time cross-entropy forward and forward + backward (f32, bf16) on the
    /// benchmark shapes, next to a memory floor measured in the same run.
    Bench(BenchArgs),
}

/// The arguments of `xent bench`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// Print one JSON object per case and line instead of a table.
    #[arg(long)]
    json: bool,
    /// Threads of the rayon pool everything runs in (default: rayon's, one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Fewer, shorter repetitions.
    #[arg(long)]
    quick: bool,
    /// Force an instruction set (default: the best this CPU has).
    #[arg(
        long,
        value_parser = PossibleValuesParser::new(["scalar", "avx2", "avx512"])
            .try_map(|s| s.parse::<Isa>())
    )]
    isa: Option<Isa>,
    /// Which cases of the ce suite.
    #[command(flatten)]
    cases: BenchCases,
    /// Which losses: "ce" (cross-entropy on the shapes) or "family" (bce,
    /// bce-with-logits and kl-div on f32, --elems elements; --shape, --dtype and
    /// --isa do not apply).
    #[arg(long, default_value = "ce", value_parser = ["ce", "family"])]
    suite: String,
    /// Ask for every per-row output (lse, entropy, argmax, z) in the ce suite's fwd
    /// and fwd_bwd/reuse cases.
    #[arg(long)]
    row_outputs: bool,
    /// Elements per array of the family suite (default 16M).
    #[arg(long, value_name = "N", default_value_t = bench::FAMILY_ELEMS)]
    elems: usize,
}

/// The cases of `xent bench`'s ce suite (a struct of its own: clap's derive gives
/// each struct one function, whose debug-build stack frame grows with its fields).
#[derive(Debug, Args)]
struct BenchCases {
    /// Run this shape instead of the default set, e.g. 4096x32000 or 32x21x128x128
    /// (classes on dim 1); repeatable.
    #[arg(long, value_name = "NxC[xD..]", value_parser = bench::parse_shape)]
    shape: Vec<Vec<usize>>,
    /// Only this dtype (default: both).
    #[arg(long, value_parser = ["f32", "bf16"])]
    dtype: Option<String>,
    /// Only this pass (default: both).
    #[arg(long, value_parser = ["fwd", "fwd_bwd"])]
    pass: Option<String>,
    /// Only this gradient allocation for fwd_bwd (default: both): "reuse" writes into
    /// one buffer kept across repetitions (`cross_entropy_into`); "fresh" calls the
    /// allocating `cross_entropy_with_grad`, which allocates a new gradient (on huge
    /// pages when large) every repetition, as a training loop with that API does;
    /// "plain" (only when asked for) allocates it with `vec!` on the plain allocator.
    /// "fresh" and "plain" warm up and time for at least 1 s each (the steady state).
    #[arg(long, value_parser = ["reuse", "fresh", "plain"])]
    alloc: Option<String>,
}

impl BenchArgs {
    /// The configuration the `bench` module runs.
    fn into_config(self) -> bench::Config {
        let mut config = bench::Config {
            threads: self.threads.map(usize::from),
            isa: self.isa,
            quick: self.quick,
            json: self.json,
            row_outputs: self.row_outputs,
            ..bench::Config::default()
        };
        if !self.cases.shape.is_empty() {
            config.shapes = self.cases.shape;
        }
        if let Some(d) = self.cases.dtype {
            config.dtypes.retain(|t| t.name() == d);
        }
        if let Some(p) = self.cases.pass {
            config.passes.retain(|t| t.name() == p);
        }
        if let Some(a) = self.cases.alloc {
            config.allocs = bench::Alloc::ALL
                .into_iter()
                .filter(|t| t.name() == a)
                .collect();
        }
        config
    }
}

/// Runs `xent bench`, writing each case to stdout as it finishes.
fn run_bench(args: BenchArgs) -> Result<String, Failure> {
    let family = args.suite == "family";
    let elems = args.elems;
    let config = args.into_config();
    let result = if family {
        bench::run_family(&config, elems, &mut io::stdout()).map(|_| ())
    } else {
        bench::run(&config, &mut io::stdout()).map(|_| ())
    };
    match result {
        Ok(()) => Ok(String::new()),
        Err(bench::Error::Setup(message)) => Err(Failure::new(message)),
        // `xent bench | head` closes the pipe early; that is not a failure.
        Err(bench::Error::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(String::new()),
        Err(bench::Error::Io(e)) => Err(Failure::new(format!("cannot write to stdout: {e}"))),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Loss(command) => loss::run(&command),
        Command::Bench(args) => run_bench(args),
    };
    let text = match result {
        Ok(text) => text,
        Err(failure) => {
            eprintln!("xent: error: {}", failure.message());
            return ExitCode::from(2);
        }
    };
    match io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        // `xent demo | head` closes the pipe early; that is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xent: error: cannot write to stdout: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
