//! `xent`: the command-line face of the xent library.
//!
//! - `xent demo` walks through the classic softmax cross-entropy example, every
//!   number computed by the library.
//! - `xent loss cross-entropy|nll` computes a loss (and optionally its gradient) on
//!   `.npy` files.
//! - `xent bench` times the fused cross-entropy against a memory-copy floor.
//!
//! Every failure is one line on stderr, `xent: error: …`, with exit code 2, and no
//! output file is written: everything is computed before the first file is touched.
#![deny(missing_docs)]

mod bench;
mod demo;
mod loss;
mod npy;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use xent::{Isa, Reduction};

/// A failure to report: one line for stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure(String);

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Failure(message.into())
    }

    /// The message, on one line.
    pub fn message(&self) -> String {
        self.0.replace(['\r', '\n'], " ")
    }
}

impl From<xent::Error> for Failure {
    fn from(e: xent::Error) -> Self {
        Failure(e.to_string())
    }
}

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
    Loss(LossCommand),
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
}

impl BenchArgs {
    /// The configuration the `bench` module runs.
    fn into_config(self) -> bench::Config {
        let mut config = bench::Config {
            threads: self.threads.map(usize::from),
            isa: self.isa,
            quick: self.quick,
            json: self.json,
            ..bench::Config::default()
        };
        if !self.shape.is_empty() {
            config.shapes = self.shape;
        }
        if let Some(d) = self.dtype {
            config.dtypes.retain(|t| t.name() == d);
        }
        if let Some(p) = self.pass {
            config.passes.retain(|t| t.name() == p);
        }
        config
    }
}

/// Runs `xent bench`, writing each case to stdout as it finishes.
fn run_bench(args: BenchArgs) -> Result<String, Failure> {
    match bench::run(&args.into_config(), &mut io::stdout()) {
        Ok(_) => Ok(String::new()),
        Err(bench::Error::Setup(message)) => Err(Failure(message)),
        // `xent bench | head` closes the pipe early; that is not a failure.
        Err(bench::Error::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(String::new()),
        Err(bench::Error::Io(e)) => Err(Failure(format!("cannot write to stdout: {e}"))),
    }
}

/// The losses of `xent loss`.
#[derive(Debug, Subcommand)]
enum LossCommand {
    /// Softmax cross-entropy of logits, with class-index or probability targets
    /// (as PyTorch's F.cross_entropy).
    CrossEntropy {
        /// The arguments every loss takes.
        #[command(flatten)]
        common: CommonArgs,
        /// Mix the target with the uniform distribution: ε in [0, 1].
        #[arg(
            long,
            value_name = "E",
            default_value_t = 0.0,
            allow_hyphen_values = true
        )]
        label_smoothing: f64,
    },
    /// Negative log-likelihood of log-probabilities with class-index targets
    /// (as PyTorch's F.nll_loss).
    Nll {
        /// The arguments every loss takes.
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Inputs, options and outputs shared by the losses.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Input .npy, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk);
    /// logits for cross-entropy, log-probabilities for nll.
    #[arg(long, value_name = "X.npy")]
    input: PathBuf,
    /// Target .npy: class indices of any integer dtype in the input's row shape
    /// ((), (N) or (N, d1, ..., dk)), or, for cross-entropy, float probabilities of
    /// the input's shape.
    #[arg(long, value_name = "T.npy")]
    target: PathBuf,
    /// Class weights: a .npy vector of C entries (converted to the input's dtype).
    #[arg(long, value_name = "W.npy")]
    weight: Option<PathBuf>,
    /// Rows whose class-index target equals this are ignored.
    #[arg(long, value_name = "I", default_value_t = xent::DEFAULT_IGNORE_INDEX, allow_hyphen_values = true)]
    ignore_index: i64,
    /// How per-row losses are combined.
    #[arg(
        long,
        default_value = "mean",
        value_parser = PossibleValuesParser::new(["mean", "sum", "none"])
            .try_map(|s| s.parse::<Reduction>())
    )]
    reduction: Reduction,
    /// Write the loss here as .npy in the input's dtype (0-d for mean/sum, the row
    /// shape for none).
    #[arg(long, value_name = "L.npy")]
    out: Option<PathBuf>,
    /// Write d loss / d input here as .npy (the input's shape and dtype).
    #[arg(long, value_name = "G.npy")]
    grad_out: Option<PathBuf>,
    /// Upstream gradient for --grad-out: one element for mean/sum, the loss's row
    /// shape for none (default all ones).
    #[arg(long, value_name = "GO.npy", requires = "grad_out")]
    grad_output: Option<PathBuf>,
    /// Print {"loss": ..., "shape": [...]} as JSON; non-finite values are written as
    /// the strings "NaN", "Infinity" and "-Infinity".
    #[arg(long)]
    json: bool,
}

impl LossCommand {
    /// The request the `loss` module runs.
    fn into_request(self) -> loss::Request {
        let (kind, common, label_smoothing) = match self {
            LossCommand::CrossEntropy {
                common,
                label_smoothing,
            } => (loss::Kind::CrossEntropy, common, label_smoothing),
            LossCommand::Nll { common } => (loss::Kind::Nll, common, 0.0),
        };
        loss::Request {
            kind,
            input: common.input,
            target: common.target,
            weight: common.weight,
            ignore_index: common.ignore_index,
            label_smoothing,
            reduction: common.reduction,
            out: common.out,
            grad_out: common.grad_out,
            grad_output: common.grad_output,
            json: common.json,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Loss(command) => loss::run(&command.into_request()),
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

    #[test]
    fn failure_message_is_one_line() {
        assert_eq!(Failure::new("a\nb").message(), "a b");
    }
}
