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
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand};
use xent::{Isa, KlReduction, Reduction};
pub(crate) use xent_cli::Failure;
use xent_cli::{linear, loss};

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
    /// Only this gradient allocation for fwd_bwd (default: both): "reuse" writes into
    /// one buffer kept across repetitions (`cross_entropy_into`); "fresh" calls the
    /// allocating `cross_entropy_with_grad`, which allocates a new gradient (on huge
    /// pages when large) every repetition, as a training loop with that API does;
    /// "plain" (only when asked for) allocates it with `vec!` on the plain allocator.
    /// "fresh" and "plain" warm up and time for at least 1 s each (the steady state).
    #[arg(long, value_parser = ["reuse", "fresh", "plain"])]
    alloc: Option<String>,
    /// Which losses: "ce" (cross-entropy on the shapes) or "family" (bce,
    /// bce-with-logits and kl-div on f32, --elems elements; --shape, --dtype and
    /// --isa do not apply).
    #[arg(long, default_value = "ce", value_parser = ["ce", "family"])]
    suite: String,
    /// Elements per array of the family suite (default 16M).
    #[arg(long, value_name = "N", default_value_t = bench::FAMILY_ELEMS)]
    elems: usize,
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
        if let Some(a) = self.alloc {
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
        /// z-loss: add S·lse² per counted row (reduced like the loss); the z term is
        /// also printed ("z_loss" in --json).
        #[arg(
            long,
            value_name = "S",
            default_value_t = 0.0,
            allow_hyphen_values = true
        )]
        z_loss: f64,
        /// Soft-cap the logits: C·tanh(x/C) in place of x.
        #[arg(long, value_name = "C", allow_hyphen_values = true)]
        softcap: Option<f64>,
    },
    /// Negative log-likelihood of log-probabilities with class-index targets
    /// (as PyTorch's F.nll_loss).
    Nll {
        /// The arguments every loss takes.
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Binary cross-entropy of probabilities in [0, 1] against targets in [0, 1] of
    /// the same shape (as PyTorch's F.binary_cross_entropy; logs clamped at −100).
    Bce {
        /// Input, target and outputs.
        #[command(flatten)]
        files: FileArgs,
        /// Element weights: a .npy of the input's shape, of its last dim, or one element.
        #[arg(long, value_name = "W.npy")]
        weight: Option<PathBuf>,
        /// How elements are combined.
        #[arg(long, default_value = "mean", value_parser = reduction_parser())]
        reduction: Reduction,
    },
    /// Binary cross-entropy of logits against targets of the same shape (as
    /// PyTorch's F.binary_cross_entropy_with_logits).
    BceWithLogits {
        /// Input, target and outputs.
        #[command(flatten)]
        files: FileArgs,
        /// Element weights: a .npy of the input's shape, of its last dim, or one element.
        #[arg(long, value_name = "W.npy")]
        weight: Option<PathBuf>,
        /// Weight of the positive term per class: a .npy vector of the last dim's
        /// size, or one element.
        #[arg(long, value_name = "PW.npy")]
        pos_weight: Option<PathBuf>,
        /// How elements are combined.
        #[arg(long, default_value = "mean", value_parser = reduction_parser())]
        reduction: Reduction,
    },
    /// Kullback–Leibler divergence loss of log-probabilities (--input) against a
    /// target of the same shape, elementwise (as PyTorch's F.kl_div).
    #[command(group(ArgGroup::new("grads").multiple(true)))]
    KlDiv {
        /// Input, target and outputs.
        #[command(flatten)]
        files: FileArgs,
        /// The target holds log-probabilities.
        #[arg(long)]
        log_target: bool,
        /// How elements are combined; batchmean divides the sum by dim 0.
        #[arg(
            long,
            default_value = "mean",
            value_parser = PossibleValuesParser::new(["mean", "sum", "none", "batchmean"])
                .try_map(|s| s.parse::<KlReduction>())
        )]
        reduction: KlReduction,
        /// Write d loss / d target here as .npy (the target's shape, the input's dtype).
        #[arg(long, value_name = "GT.npy", group = "grads")]
        grad_out_target: Option<PathBuf>,
    },
    /// Jensen–Shannon divergence in nats between P (--input) and Q (--target) over
    /// the class dim (dim 1, or dim 0 of a (C,) input), one value per row.
    #[command(group(ArgGroup::new("grads").multiple(true)))]
    Js {
        /// Input, target and outputs.
        #[command(flatten)]
        files: FileArgs,
        /// P and Q are logits (softmax over the class dim), not probabilities.
        #[arg(long)]
        logits: bool,
        /// How rows are combined.
        #[arg(long, default_value = "mean", value_parser = reduction_parser())]
        reduction: Reduction,
        /// Write d loss / d Q (the --target) here as .npy.
        #[arg(long, value_name = "GQ.npy", group = "grads")]
        grad_out_target: Option<PathBuf>,
    },
    /// Cross-entropy of the logits h·Wᵀ + b against class indices without holding
    /// the N × V logits (as PyTorch's F.linear_cross_entropy), with the gradients
    /// w.r.t. h, W and b.
    LinearCrossEntropy(LinearArgs),
}

/// The `PossibleValuesParser` of `--reduction` for none|mean|sum.
fn reduction_parser() -> impl TypedValueParser<Value = Reduction> {
    PossibleValuesParser::new(["mean", "sum", "none"]).try_map(|s| s.parse::<Reduction>())
}

/// Input and target files, outputs and report format: what every elementwise and
/// class-dim loss takes.
#[derive(Debug, Args)]
#[group(skip)]
struct FileArgs {
    /// Input .npy, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk) for
    /// the class-dim losses, any shape for bce, bce-with-logits and kl-div: logits
    /// for cross-entropy, bce-with-logits and js --logits, log-probabilities for nll
    /// and kl-div, probabilities for bce and js (P).
    #[arg(long, value_name = "X.npy")]
    input: PathBuf,
    /// Target .npy: class indices of any integer dtype in the input's row shape
    /// ((), (N) or (N, d1, ..., dk)), or float values of the input's shape
    /// (probabilities for cross-entropy, bce and bce-with-logits, the target
    /// distribution for kl-div, Q for js).
    #[arg(long, value_name = "T.npy")]
    target: PathBuf,
    /// Write the loss here as .npy in the input's dtype (0-d for a reduced loss, the
    /// per-element or per-row shape for none). An existing file here must be a
    /// regular file (directories, devices and FIFOs are refused), and no output may
    /// be one of the inputs.
    #[arg(long, value_name = "L.npy")]
    out: Option<PathBuf>,
    /// Write d loss / d input here as .npy (the input's shape and dtype).
    #[arg(long, value_name = "G.npy", group = "grads")]
    grad_out: Option<PathBuf>,
    /// Upstream gradient for the gradient outputs: one element for a reduced loss,
    /// the loss's shape for none (default all ones).
    #[arg(long, value_name = "GO.npy", requires = "grads")]
    grad_output: Option<PathBuf>,
    /// Print {"loss": ..., "shape": [...]} as JSON; non-finite values are written as
    /// the strings "NaN", "Infinity" and "-Infinity".
    #[arg(long)]
    json: bool,
}

/// Inputs, options and outputs shared by cross-entropy and nll.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Input, target and outputs.
    #[command(flatten)]
    files: FileArgs,
    /// Class weights: a .npy vector of C entries (converted to the input's dtype).
    #[arg(long, value_name = "W.npy")]
    weight: Option<PathBuf>,
    /// Rows whose class-index target equals this are ignored.
    #[arg(long, value_name = "I", default_value_t = xent::DEFAULT_IGNORE_INDEX, allow_hyphen_values = true)]
    ignore_index: i64,
    /// How per-row losses are combined.
    #[arg(long, default_value = "mean", value_parser = reduction_parser())]
    reduction: Reduction,
}

/// The arguments of `xent loss linear-cross-entropy`.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group(ArgGroup::new("linear_grads").multiple(true)))]
struct LinearArgs {
    /// Hidden states h: a .npy of shape (N, D), float32 or float64.
    #[arg(long, value_name = "H.npy")]
    hidden: PathBuf,
    /// Classifier weight W: a .npy of shape (V, D) (converted to h's dtype).
    #[arg(long, value_name = "W.npy")]
    weight: PathBuf,
    /// Classifier bias b: a .npy vector of V entries (converted to h's dtype).
    #[arg(long, value_name = "B.npy")]
    bias: Option<PathBuf>,
    /// Class indices: a .npy vector of N entries, any integer dtype.
    #[arg(long, value_name = "T.npy")]
    target: PathBuf,
    /// Class weights: a .npy vector of V entries (converted to h's dtype).
    #[arg(long, value_name = "CW.npy")]
    class_weight: Option<PathBuf>,
    /// Rows whose target equals this are ignored.
    #[arg(long, value_name = "I", default_value_t = xent::DEFAULT_IGNORE_INDEX, allow_hyphen_values = true)]
    ignore_index: i64,
    /// Mix the target with the uniform distribution: ε in [0, 1].
    #[arg(
        long,
        value_name = "E",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    label_smoothing: f64,
    /// z-loss: add S·lse² per counted row; the z term is also printed.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    z_loss: f64,
    /// Soft-cap the logits: C·tanh(x/C) in place of x.
    #[arg(long, value_name = "C", allow_hyphen_values = true)]
    softcap: Option<f64>,
    /// How per-row losses are combined.
    #[arg(long, default_value = "mean", value_parser = reduction_parser())]
    reduction: Reduction,
    /// Scratch memory budget in MiB (default 64).
    #[arg(long, value_name = "M", default_value_t = (xent::DEFAULT_SCRATCH_BYTES >> 20) as u64)]
    scratch_mib: u64,
    /// Write the loss here as .npy in h's dtype (0-d, or (N) for none).
    #[arg(long, value_name = "L.npy")]
    out: Option<PathBuf>,
    /// Write d loss / d h here as .npy, (N, D).
    #[arg(long, value_name = "GH.npy", group = "linear_grads")]
    grad_out_hidden: Option<PathBuf>,
    /// Write d loss / d W here as .npy, (V, D).
    #[arg(long, value_name = "GW.npy", group = "linear_grads")]
    grad_out_weight: Option<PathBuf>,
    /// Write d loss / d b here as .npy, (V) (also without --bias: the gradient
    /// w.r.t. a zero bias).
    #[arg(long, value_name = "GB.npy", group = "linear_grads")]
    grad_out_bias: Option<PathBuf>,
    /// Upstream gradient: one element for mean/sum, (N) for none (default ones).
    #[arg(long, value_name = "GO.npy", requires = "linear_grads")]
    grad_output: Option<PathBuf>,
    /// Print {"loss": ..., "shape": [...]} as JSON.
    #[arg(long)]
    json: bool,
}

impl LossCommand {
    /// Runs the loss and returns what to print.
    fn run(self) -> Result<String, Failure> {
        let (files, kind) = match self {
            LossCommand::CrossEntropy {
                common,
                label_smoothing,
                z_loss,
                softcap,
            } => (
                common.files,
                loss::Kind::CrossEntropy(loss::ClassOptions {
                    weight: common.weight,
                    ignore_index: common.ignore_index,
                    label_smoothing,
                    z_loss,
                    softcap,
                    reduction: common.reduction,
                }),
            ),
            LossCommand::Nll { common } => (
                common.files,
                loss::Kind::Nll(loss::ClassOptions {
                    weight: common.weight,
                    ignore_index: common.ignore_index,
                    label_smoothing: 0.0,
                    z_loss: 0.0,
                    softcap: None,
                    reduction: common.reduction,
                }),
            ),
            LossCommand::Bce {
                files,
                weight,
                reduction,
            } => (files, loss::Kind::Bce { weight, reduction }),
            LossCommand::BceWithLogits {
                files,
                weight,
                pos_weight,
                reduction,
            } => (
                files,
                loss::Kind::BceWithLogits {
                    weight,
                    pos_weight,
                    reduction,
                },
            ),
            LossCommand::KlDiv {
                files,
                log_target,
                reduction,
                grad_out_target,
            } => (
                files,
                loss::Kind::KlDiv {
                    log_target,
                    reduction,
                    grad_out_target,
                },
            ),
            LossCommand::Js {
                files,
                logits,
                reduction,
                grad_out_target,
            } => (
                files,
                loss::Kind::Js {
                    logits,
                    reduction,
                    grad_out_target,
                },
            ),
            LossCommand::LinearCrossEntropy(a) => {
                return linear::run(&linear::Request {
                    hidden: a.hidden,
                    weight: a.weight,
                    bias: a.bias,
                    target: a.target,
                    class_weight: a.class_weight,
                    ignore_index: a.ignore_index,
                    label_smoothing: a.label_smoothing,
                    z_loss: a.z_loss,
                    softcap: a.softcap,
                    reduction: a.reduction,
                    scratch_mib: a.scratch_mib,
                    out: a.out,
                    grad_out_hidden: a.grad_out_hidden,
                    grad_out_weight: a.grad_out_weight,
                    grad_out_bias: a.grad_out_bias,
                    grad_output: a.grad_output,
                    json: a.json,
                })
            }
        };
        loss::run(&loss::Request {
            kind,
            input: files.input,
            target: files.target,
            out: files.out,
            grad_out: files.grad_out,
            grad_output: files.grad_output,
            json: files.json,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Loss(command) => command.run(),
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
