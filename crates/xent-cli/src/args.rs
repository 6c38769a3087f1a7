//! The command-line arguments of the losses, as clap `Args` structs: declared once
//! here, and `#[command(flatten)]`ed by `xent loss …` and by `xent-mpi loss …`, so
//! that both tools take the same flags with the same defaults, parsers and help.

use std::path::{Path, PathBuf};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Subcommand};
use xent::{CrossEntropySettings, KlReduction, Reduction};

use crate::Failure;

/// The `PossibleValuesParser` of `--reduction` for none|mean|sum.
pub fn reduction_parser() -> impl TypedValueParser<Value = Reduction> {
    PossibleValuesParser::new(["mean", "sum", "none"]).try_map(|s| s.parse::<Reduction>())
}

/// Input and target files, outputs and report format: what every elementwise and
/// class-dim loss takes.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct FileArgs {
    /// Input .npy, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk) for
    /// the class-dim losses, any shape for bce, bce-with-logits and kl-div: logits
    /// for cross-entropy, bce-with-logits and js --logits, log-probabilities for nll
    /// and kl-div, probabilities for bce and js (P).
    #[arg(long, value_name = "X.npy")]
    pub input: PathBuf,
    /// Target .npy: class indices of any integer dtype in the input's row shape
    /// ((), (N) or (N, d1, ..., dk)), or float values of the input's shape
    /// (probabilities for cross-entropy, bce and bce-with-logits, the target
    /// distribution for kl-div, Q for js).
    #[arg(long, value_name = "T.npy")]
    pub target: PathBuf,
    /// Write the loss here as .npy in the input's dtype (0-d for a reduced loss, the
    /// per-element or per-row shape for none). An existing file here must be a
    /// regular file (directories, devices and FIFOs are refused), and no output may
    /// be one of the inputs.
    #[arg(long, value_name = "L.npy")]
    pub out: Option<PathBuf>,
    /// Write d loss / d input here as .npy (the input's shape and dtype).
    #[arg(long, value_name = "G.npy", group = "grads")]
    pub grad_out: Option<PathBuf>,
    /// Upstream gradient for the gradient outputs: one element for a reduced loss,
    /// the loss's shape for none (default all ones).
    #[arg(long, value_name = "GO.npy", requires = "grads")]
    pub grad_output: Option<PathBuf>,
    /// Print {"loss": ..., "shape": [...]} as JSON; non-finite values are written as
    /// the strings "NaN", "Infinity" and "-Infinity".
    #[arg(long)]
    pub json: bool,
}

/// `ignore_index` and the reduction over rows: the options every class-index loss
/// (cross-entropy, nll, linear cross-entropy) takes.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct RowArgs {
    /// Rows whose class-index target equals this are ignored.
    #[arg(long, value_name = "I", default_value_t = xent::DEFAULT_IGNORE_INDEX, allow_hyphen_values = true)]
    pub ignore_index: i64,
    /// How per-row losses are combined.
    #[arg(long, default_value = "mean", value_parser = reduction_parser())]
    pub reduction: Reduction,
    /// Divide the mean by D instead of this call's own count (or weight sum): the
    /// token count of a whole gradient-accumulation step, Hugging Face's
    /// num_items_in_batch. A call whose rows are all ignored then gives 0, not NaN.
    /// Finite, > 0, with --reduction mean only.
    #[arg(long, value_name = "D", allow_hyphen_values = true)]
    pub denominator: Option<f64>,
}

/// The options cross-entropy has beyond nll's: label smoothing, z-loss, soft-cap.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct LogitArgs {
    /// Mix the target with the uniform distribution: ε in [0, 1].
    #[arg(
        long,
        value_name = "E",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub label_smoothing: f64,
    /// z-loss: add S·lse² per counted row (reduced like the loss); the z term is
    /// also printed ("z_loss" in --json).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub z_loss: f64,
    /// Soft-cap the logits: C·tanh(x/C) in place of x.
    #[arg(long, value_name = "C", allow_hyphen_values = true)]
    pub softcap: Option<f64>,
    /// Scale the logits by S before soft-capping: the loss sees softcap(S·x), and
    /// the gradient w.r.t. x carries S. Finite, > 0.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1.0,
        allow_hyphen_values = true
    )]
    pub logit_scale: f64,
}

/// The per-row outputs of cross-entropy: the log-sum-exp, entropy and argmax of each
/// row of the logits as the loss sees them (after --logit-scale and --softcap).
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct RowOutputArgs {
    /// Write each row's log-sum-exp here as .npy in the row shape ((), (N) or
    /// (N, d1, ..., dk)), in the input's float dtype.
    #[arg(long, value_name = "LSE.npy")]
    pub lse_out: Option<PathBuf>,
    /// Write each row's entropy −Σ p·log p of the softmax here as .npy in the row
    /// shape, in the input's float dtype.
    #[arg(long, value_name = "H.npy")]
    pub entropy_out: Option<PathBuf>,
    /// Write each row's predicted class (argmax, ties to the lowest index) here as
    /// int64 .npy in the row shape.
    #[arg(long, value_name = "A.npy")]
    pub argmax_out: Option<PathBuf>,
}

impl RowOutputArgs {
    /// The output flags and paths.
    pub fn outputs(&self) -> [(&'static str, Option<&Path>); 3] {
        [
            ("--lse-out", self.lse_out.as_deref()),
            ("--entropy-out", self.entropy_out.as_deref()),
            ("--argmax-out", self.argmax_out.as_deref()),
        ]
    }
}

impl RowArgs {
    /// The settings these flags give (and `logit`'s, for cross-entropy), without class
    /// weights: those are read from their file later.
    pub fn settings(&self, logit: Option<&LogitArgs>) -> CrossEntropySettings {
        let mut s = CrossEntropySettings::default()
            .ignore_index(self.ignore_index)
            .reduction(self.reduction);
        s.denominator = self.denominator;
        if let Some(l) = logit {
            s = s
                .label_smoothing(l.label_smoothing)
                .z_loss(l.z_loss)
                .logit_scale(l.logit_scale);
            s.softcap = l.softcap;
        }
        s
    }
}

/// The arguments of the class-dim losses: files, class weights, `ignore_index`, the
/// reduction (all of nll's).
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct ClassArgs {
    /// Input, target and outputs.
    #[command(flatten)]
    pub files: FileArgs,
    /// Class weights: a .npy vector of C entries (converted to the input's dtype).
    #[arg(long, value_name = "W.npy")]
    pub weight: Option<PathBuf>,
    /// `ignore_index` and the reduction.
    #[command(flatten)]
    pub rows: RowArgs,
}

/// The arguments of cross-entropy: nll's and the logit options.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("grads").multiple(true)))]
pub struct CrossEntropyArgs {
    /// Files, class weights, `ignore_index`, reduction.
    #[command(flatten)]
    pub class: ClassArgs,
    /// Label smoothing, z-loss, soft-cap, logit scale.
    #[command(flatten)]
    pub logit: LogitArgs,
    /// The per-row outputs.
    #[command(flatten)]
    pub row_outputs: RowOutputArgs,
}

impl CrossEntropyArgs {
    /// The settings of the loss, without class weights.
    pub fn settings(&self) -> CrossEntropySettings {
        self.class.rows.settings(Some(&self.logit))
    }
}

/// The arguments of linear cross-entropy.
#[derive(Debug, Clone, Args)]
#[group(skip)]
#[command(group(ArgGroup::new("linear_grads").multiple(true)))]
pub struct LinearArgs {
    /// Hidden states h: a .npy of shape (N, D), float32 or float64.
    #[arg(long, value_name = "H.npy")]
    pub hidden: PathBuf,
    /// Classifier weight W: a .npy of shape (V, D) (converted to h's dtype).
    #[arg(long, value_name = "W.npy")]
    pub weight: PathBuf,
    /// Classifier bias b: a .npy vector of V entries (converted to h's dtype).
    #[arg(long, value_name = "B.npy")]
    pub bias: Option<PathBuf>,
    /// Class indices: a .npy vector of N entries, any integer dtype.
    #[arg(long, value_name = "T.npy")]
    pub target: PathBuf,
    /// Class weights: a .npy vector of V entries (converted to h's dtype).
    #[arg(long, value_name = "CW.npy")]
    pub class_weight: Option<PathBuf>,
    /// `ignore_index` and the reduction.
    #[command(flatten)]
    pub rows: RowArgs,
    /// Label smoothing, z-loss, soft-cap, logit scale.
    #[command(flatten)]
    pub logit: LogitArgs,
    /// The per-row outputs ((N) each).
    #[command(flatten)]
    pub row_outputs: RowOutputArgs,
    /// Scratch memory budget in MiB (default 64).
    #[arg(long, value_name = "M", default_value_t = (xent::DEFAULT_SCRATCH_BYTES >> 20) as u64)]
    pub scratch_mib: u64,
    /// Write the loss here as .npy in h's dtype (0-d, or (N) for none).
    #[arg(long, value_name = "L.npy")]
    pub out: Option<PathBuf>,
    /// Write d loss / d h here as .npy, (N, D).
    #[arg(long, value_name = "GH.npy", group = "linear_grads")]
    pub grad_out_hidden: Option<PathBuf>,
    /// Write d loss / d W here as .npy, (V, D).
    #[arg(long, value_name = "GW.npy", group = "linear_grads")]
    pub grad_out_weight: Option<PathBuf>,
    /// Write d loss / d b here as .npy, (V) (also without --bias: the gradient
    /// w.r.t. a zero bias).
    #[arg(long, value_name = "GB.npy", group = "linear_grads")]
    pub grad_out_bias: Option<PathBuf>,
    /// Upstream gradient: one element for mean/sum, (N) for none (default ones).
    #[arg(long, value_name = "GO.npy", requires = "linear_grads")]
    pub grad_output: Option<PathBuf>,
    /// Print {"loss": ..., "shape": [...]} as JSON.
    #[arg(long)]
    pub json: bool,
}

impl LinearArgs {
    /// The settings of the loss, without class weights.
    pub fn settings(&self) -> CrossEntropySettings {
        self.rows.settings(Some(&self.logit))
    }

    /// `--scratch-mib` in bytes.
    ///
    /// # Errors
    /// When it does not fit in memory addresses.
    pub fn scratch_bytes(&self) -> Result<usize, Failure> {
        usize::try_from(self.scratch_mib)
            .ok()
            .and_then(|m| m.checked_mul(1 << 20))
            .ok_or_else(|| {
                Failure::new(format!(
                    "--scratch-mib {} does not fit in memory addresses",
                    self.scratch_mib
                ))
            })
    }

    /// The output flags and paths.
    pub fn outputs(&self) -> [(&'static str, Option<&Path>); 7] {
        let [lse, entropy, argmax] = self.row_outputs.outputs();
        [
            ("--out", self.out.as_deref()),
            ("--grad-out-hidden", self.grad_out_hidden.as_deref()),
            ("--grad-out-weight", self.grad_out_weight.as_deref()),
            ("--grad-out-bias", self.grad_out_bias.as_deref()),
            lse,
            entropy,
            argmax,
        ]
    }

    /// The input flags and paths.
    pub fn inputs(&self) -> [(&'static str, Option<&Path>); 6] {
        [
            ("--hidden", Some(&self.hidden)),
            ("--weight", Some(&self.weight)),
            ("--bias", self.bias.as_deref()),
            ("--target", Some(&self.target)),
            ("--class-weight", self.class_weight.as_deref()),
            ("--grad-output", self.grad_output.as_deref()),
        ]
    }
}

/// The losses of `xent loss`, each with its arguments.
#[derive(Debug, Clone, Subcommand)]
pub enum LossCommand {
    /// Softmax cross-entropy of logits, with class-index or probability targets
    /// (as PyTorch's F.cross_entropy).
    CrossEntropy(CrossEntropyArgs),
    /// Negative log-likelihood of log-probabilities with class-index targets
    /// (as PyTorch's F.nll_loss).
    Nll(ClassArgs),
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

impl LossCommand {
    /// The input, target and output files; `None` for linear cross-entropy, which
    /// names its own.
    pub fn files(&self) -> Option<&FileArgs> {
        match self {
            LossCommand::CrossEntropy(a) => Some(&a.class.files),
            LossCommand::Nll(a) => Some(&a.files),
            LossCommand::Bce { files, .. }
            | LossCommand::BceWithLogits { files, .. }
            | LossCommand::KlDiv { files, .. }
            | LossCommand::Js { files, .. } => Some(files),
            LossCommand::LinearCrossEntropy(_) => None,
        }
    }
}
