//! `xent-mpi`: cross-entropy with the classes split across the ranks of a
//! tensor-parallel group (vocab parallelism, Megatron-LM's scheme) and the rows across
//! data-parallel groups, over MPI; every option of `xent loss` holds exactly,
//! `--logit-scale` and the per-row outputs (`--lse-out`, `--entropy-out`,
//! `--argmax-out`, written by rank 0 in the row shape) included. `--denominator` (the
//! token count of a whole gradient-accumulation step) replaces the all-reduced count.
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
//! maxima, then one SUM of `[Σexp, Σa·x̃, Σa, x̃_y]` per row; with per-row outputs,
//! the max-location reduction of `(max, argmax)` pairs in place of the MAX and a
//! fifth summed value for the entropy), plus one SUM of the
//! counts over the data-parallel group when a mean needs the global denominator;
//! the backward needs none (the linear form's `∂h` is one more SUM).
#![deny(missing_docs)]

mod bench;
mod block;
mod ce;
mod comm;
mod linear;
mod rows;

use std::io::Write;

use clap::{Args, Parser, Subcommand};
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
    /// Ranks per tensor-parallel group.
    #[command(flatten)]
    tp: TpArgs,
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

/// The arguments of `loss cross-entropy`: those of `xent loss cross-entropy`, and --tp.
/// Rank 0 writes the outputs, gathering every shard of the gradient; label
/// smoothing mixes in the uniform distribution over the global C.
#[derive(Debug, Args)]
#[group(skip)]
struct CrossEntropyArgs {
    /// The flags of `xent loss cross-entropy`.
    #[command(flatten)]
    loss: xent_cli::args::CrossEntropyArgs,
    /// Ranks per tensor-parallel group, each holding a shard of the classes.
    #[command(flatten)]
    tp: TpArgs,
}

/// The arguments of `loss linear-cross-entropy`: those of `xent loss
/// linear-cross-entropy`, and --tp. Rank 0 writes the outputs; the scratch budget is
/// per rank.
#[derive(Debug, Args)]
#[group(skip)]
struct LinearArgs {
    /// The flags of `xent loss linear-cross-entropy`.
    #[command(flatten)]
    loss: xent_cli::args::LinearArgs,
    /// Ranks per tensor-parallel group, each holding a shard of W's rows.
    #[command(flatten)]
    tp: TpArgs,
}

/// `--tp`.
#[derive(Debug, Args)]
#[group(skip)]
struct TpArgs {
    /// Ranks per tensor-parallel group, each holding a shard of the classes (of W's
    /// rows) (default: all ranks); the P / T groups split the rows.
    #[arg(long, value_name = "T")]
    tp: Option<usize>,
}

/// Runs the command on this rank.
fn run(world: mpi::topology::SimpleCommunicator, command: Command) -> Result<String, Agreed> {
    let tp = match &command {
        Command::Loss(LossCommand::CrossEntropy(a)) => a.tp.tp,
        Command::Loss(LossCommand::LinearCrossEntropy(a)) => a.tp.tp,
        Command::Bench(a) => a.tp.tp,
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
        Command::Loss(LossCommand::CrossEntropy(a)) => ce::run(g, &a.loss),
        Command::Loss(LossCommand::LinearCrossEntropy(a)) => linear::run(g, &a.loss),
    }
}

/// This process's rank as the MPI launcher announces it in the environment (Open
/// MPI, PMIx, MPICH/Intel's PMI, MVAPICH, Slurm's srun), before MPI starts; `None`
/// outside a launcher.
fn launcher_rank() -> Option<u64> {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "PMI_RANK",
        "MV2_COMM_WORLD_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

fn main() {
    // Arguments first, before MPI starts: a usage error (or --help) exits with clap's
    // code on every rank alike, and only rank 0 (or a process outside a launcher)
    // prints it, once.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if launcher_rank().unwrap_or(0) == 0 {
                let _ = e.print();
            }
            std::process::exit(e.exit_code());
        }
    };
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
