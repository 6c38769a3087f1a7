//! `xent-mpi`: cross-entropy with the classes split across the ranks of a
//! tensor-parallel group (vocab parallelism, Megatron-LM's scheme) and the rows across
//! data-parallel groups, over MPI; every option of `xent loss` holds exactly.
//!
//! ```text
//! mpirun -n 4 xent-mpi loss cross-entropy --input x.npy --target y.npy --tp 2 --out l.npy
//! ```
//!
//! - `loss cross-entropy` and `loss linear-cross-entropy` take the flags and files of
//!   `xent loss …`, plus `--tp T` (ranks per tensor-parallel group; default all).
//!   Rank 0 writes the same files and prints the same report; every rank checks the
//!   input before any collective, and a rank that fails makes every rank exit 2 (the
//!   lowest failing rank prints `xent-mpi: error: …`).
//! - `bench --shape NxV [--hidden D]` times one forward and backward per rank and
//!   reports the all-reduce share and the peak memory of every rank.
//!
//! The forward is two all-reduces over the tensor-parallel group (MAX of the row
//! maxima, then one SUM of `[Σexp, Σa·x̃, Σa, x̃_y]` per row), plus one SUM of the
//! counts over the data-parallel group when a mean needs the global denominator;
//! the backward needs none (the linear form's `∂h` is one more SUM).
#![deny(missing_docs)]

mod bench;
mod block;
mod ce;
mod comm;
mod linear;

use std::io::Write;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand};
use xent::Reduction;
use xent_cli::Failure;

use comm::{Agreed, Groups};

/// Vocab-parallel and data-parallel cross-entropy over MPI.
#[derive(Debug, Parser)]
#[command(name = "xent-mpi", version)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Compute a loss (and its gradients) on .npy files, as `xent loss`.
    #[command(subcommand)]
    Loss(LossCommand),
    /// Time one forward and backward on every rank: the total, the share in
    /// all-reduces, and the peak resident memory.
    Bench(BenchArgs),
}

/// The arguments of `bench`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// N rows × V classes, e.g. 4096x128256.
    #[arg(long, value_name = "NxV", value_parser = parse_shape)]
    shape: (usize, usize),
    /// Run linear-cross-entropy with hidden size D (W of V × D split by rows).
    #[arg(long, value_name = "D")]
    hidden: Option<usize>,
    /// Ranks per tensor-parallel group (default: all ranks).
    #[arg(long, value_name = "T")]
    tp: Option<usize>,
    /// Timed repetitions after one warm-up (the median is reported).
    #[arg(long, value_name = "R", default_value_t = 3)]
    reps: usize,
}

/// `NxV` as `(N, V)`.
fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split('x').collect();
    match parts[..] {
        [n, v] => match (n.parse(), v.parse()) {
            (Ok(n), Ok(v)) if v > 0 => Ok((n, v)),
            _ => Err(format!("{s} is not NxV with integers N ≥ 0, V ≥ 1")),
        },
        _ => Err(format!("{s} is not NxV")),
    }
}

/// The losses of `xent-mpi loss`.
#[derive(Debug, Subcommand)]
enum LossCommand {
    /// Softmax cross-entropy of logits, with class-index or probability targets,
    /// the classes split across --tp ranks and the rows across the rest.
    CrossEntropy(CrossEntropyArgs),
    /// Cross-entropy of h·Wᵀ + b, with W and b split by rows across --tp ranks and
    /// h by rows across the rest, never holding the N × V logits.
    LinearCrossEntropy(LinearArgs),
}

/// The `PossibleValuesParser` of `--reduction`.
fn reduction_parser() -> impl TypedValueParser<Value = Reduction> {
    PossibleValuesParser::new(["mean", "sum", "none"]).try_map(|s| s.parse::<Reduction>())
}

/// The arguments of `loss cross-entropy`: those of `xent loss cross-entropy`, and --tp.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("grads").multiple(true)))]
struct CrossEntropyArgs {
    /// Logits .npy, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk).
    #[arg(long, value_name = "X.npy")]
    input: PathBuf,
    /// Class indices of any integer dtype in the input's row shape, or
    /// probabilities of the input's shape.
    #[arg(long, value_name = "T.npy")]
    target: PathBuf,
    /// Write the loss here as .npy in the input's dtype (rank 0).
    #[arg(long, value_name = "L.npy")]
    out: Option<PathBuf>,
    /// Write d loss / d input here as .npy (rank 0 gathers every shard).
    #[arg(long, value_name = "G.npy", group = "grads")]
    grad_out: Option<PathBuf>,
    /// Upstream gradient: one element for a reduced loss, the loss's shape for none.
    #[arg(long, value_name = "GO.npy", requires = "grads")]
    grad_output: Option<PathBuf>,
    /// Print {"loss": ..., "shape": [...]} as JSON.
    #[arg(long)]
    json: bool,
    /// Class weights: a .npy vector of C entries.
    #[arg(long, value_name = "W.npy")]
    weight: Option<PathBuf>,
    /// Rows whose class-index target equals this are ignored.
    #[arg(long, value_name = "I", default_value_t = xent::DEFAULT_IGNORE_INDEX, allow_hyphen_values = true)]
    ignore_index: i64,
    /// How per-row losses are combined.
    #[arg(long, default_value = "mean", value_parser = reduction_parser())]
    reduction: Reduction,
    /// Mix the target with the uniform distribution over the global C: ε in [0, 1].
    #[arg(
        long,
        value_name = "E",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    label_smoothing: f64,
    /// z-loss: add S·lse² per counted row (reduced like the loss).
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
    /// Ranks per tensor-parallel group, each holding a shard of the classes
    /// (default: all ranks); the P / T groups split the rows.
    #[arg(long, value_name = "T")]
    tp: Option<usize>,
}

/// The arguments of `loss linear-cross-entropy`: those of `xent loss
/// linear-cross-entropy`, and --tp.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("linear_grads").multiple(true)))]
struct LinearArgs {
    /// Hidden states h: a .npy of shape (N, D), float32 or float64.
    #[arg(long, value_name = "H.npy")]
    hidden: PathBuf,
    /// Classifier weight W: a .npy of shape (V, D).
    #[arg(long, value_name = "W.npy")]
    weight: PathBuf,
    /// Classifier bias b: a .npy vector of V entries.
    #[arg(long, value_name = "B.npy")]
    bias: Option<PathBuf>,
    /// Class indices: a .npy vector of N entries, any integer dtype.
    #[arg(long, value_name = "T.npy")]
    target: PathBuf,
    /// Class weights: a .npy vector of V entries.
    #[arg(long, value_name = "CW.npy")]
    class_weight: Option<PathBuf>,
    /// Rows whose target equals this are ignored.
    #[arg(long, value_name = "I", default_value_t = xent::DEFAULT_IGNORE_INDEX, allow_hyphen_values = true)]
    ignore_index: i64,
    /// Mix the target with the uniform distribution over the global V: ε in [0, 1].
    #[arg(
        long,
        value_name = "E",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    label_smoothing: f64,
    /// z-loss: add S·lse² per counted row.
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
    /// Scratch memory budget in MiB per rank (default 64).
    #[arg(long, value_name = "M", default_value_t = (xent::DEFAULT_SCRATCH_BYTES >> 20) as u64)]
    scratch_mib: u64,
    /// Write the loss here as .npy in h's dtype (rank 0).
    #[arg(long, value_name = "L.npy")]
    out: Option<PathBuf>,
    /// Write d loss / d h here as .npy, (N, D).
    #[arg(long, value_name = "GH.npy", group = "linear_grads")]
    grad_out_hidden: Option<PathBuf>,
    /// Write d loss / d W here as .npy, (V, D).
    #[arg(long, value_name = "GW.npy", group = "linear_grads")]
    grad_out_weight: Option<PathBuf>,
    /// Write d loss / d b here as .npy, (V).
    #[arg(long, value_name = "GB.npy", group = "linear_grads")]
    grad_out_bias: Option<PathBuf>,
    /// Upstream gradient: one element for mean/sum, (N) for none.
    #[arg(long, value_name = "GO.npy", requires = "linear_grads")]
    grad_output: Option<PathBuf>,
    /// Print {"loss": ..., "shape": [...]} as JSON.
    #[arg(long)]
    json: bool,
    /// Ranks per tensor-parallel group, each holding a shard of W's rows (default:
    /// all ranks); the P / T groups split the rows of h.
    #[arg(long, value_name = "T")]
    tp: Option<usize>,
}

/// Runs the command on this rank.
fn run(world: mpi::topology::SimpleCommunicator, command: Command) -> Result<String, Agreed> {
    let tp = match &command {
        Command::Loss(LossCommand::CrossEntropy(a)) => a.tp,
        Command::Loss(LossCommand::LinearCrossEntropy(a)) => a.tp,
        Command::Bench(a) => a.tp,
    };
    // The same arguments on every rank: a bad --tp fails everywhere, before any
    // collective.
    let rank = mpi::traits::Communicator::rank(&world);
    let groups = Groups::new(world, tp).map_err(|failure| Agreed {
        failure,
        print: rank == 0,
    })?;
    let g = &groups;
    let failed = |failure: Failure| Agreed {
        failure,
        print: g.rank == 0,
    };
    match command {
        Command::Bench(a) => {
            if a.reps == 0 {
                return Err(failed(Failure::new("--reps must be at least 1")));
            }
            bench::run(
                g,
                &bench::Config {
                    shape: a.shape,
                    hidden: a.hidden,
                    reps: a.reps,
                },
            )
        }
        Command::Loss(LossCommand::CrossEntropy(a)) => ce::run(
            g,
            &ce::Request {
                input: a.input,
                target: a.target,
                out: a.out,
                grad_out: a.grad_out,
                grad_output: a.grad_output,
                json: a.json,
                weight: a.weight,
                ignore_index: a.ignore_index,
                label_smoothing: a.label_smoothing,
                z_loss: a.z_loss,
                softcap: a.softcap,
                reduction: a.reduction,
            },
        ),
        Command::Loss(LossCommand::LinearCrossEntropy(a)) => linear::run(
            g,
            &xent_cli::linear::Request {
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
            },
        ),
    }
}

fn main() {
    // Arguments first: a usage error exits (2, from clap) on every rank alike,
    // before MPI starts.
    let cli = Cli::parse();
    let code = {
        let Some(universe) = mpi::initialize() else {
            eprintln!("xent-mpi: error: MPI was already initialised");
            std::process::exit(2);
        };
        match run(universe.world(), cli.command) {
            Ok(text) => match std::io::stdout().lock().write_all(text.as_bytes()) {
                Ok(()) => 0,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
                Err(e) => {
                    eprintln!("xent-mpi: error: cannot write to stdout: {e}");
                    2
                }
            },
            Err(a) => {
                if a.print {
                    eprintln!("xent-mpi: error: {}", a.failure.message());
                }
                2
            }
        }
        // MPI is finalised here, when `universe` drops, on every rank.
    };
    std::process::exit(code);
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
    fn shapes_parse() {
        assert_eq!(parse_shape("4096x128256"), Ok((4096, 128256)));
        assert!(parse_shape("4096").is_err());
        assert!(parse_shape("4x0").is_err());
    }
}
