//! `xent bench --suite family`: bce, bce-with-logits and kl-div on `f32`, next to
//! the same floors as the cross-entropy suite, measured in the same run.

use std::hint::black_box;
use std::io::Write;

use rayon::prelude::*;
use xent::GradOut;

use super::{copy_floor, floor_chunk, logits, measure, read_floor, Config, Error, Pass, Plan};

/// The elementwise losses `xent bench --suite family` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyOp {
    /// `binary_cross_entropy` of probabilities.
    Bce,
    /// `binary_cross_entropy_with_logits`.
    BceWithLogits,
    /// `kl_div` of log-probabilities against probabilities (`batchmean`).
    KlDiv,
}

impl FamilyOp {
    /// All, in report order.
    pub const ALL: [FamilyOp; 3] = [FamilyOp::Bce, FamilyOp::BceWithLogits, FamilyOp::KlDiv];

    /// The name as the CLI's `xent loss` spells it.
    pub fn name(self) -> &'static str {
        match self {
            FamilyOp::Bce => "bce",
            FamilyOp::BceWithLogits => "bce-with-logits",
            FamilyOp::KlDiv => "kl-div",
        }
    }
}

/// The default number of elements of the family suite: 16M f32 (64 MiB per array).
pub const FAMILY_ELEMS: usize = 1 << 24;

/// Runs the family suite — bce, bce-with-logits and kl-div on `f32` of `elems`
/// elements, shape `(elems / 1024, 1024)`, forward (mean loss) and forward + backward
/// (loss and gradient into a preallocated buffer) — next to the floors of the same
/// run: `fwd` reads the input and the target; `fwd_bwd` copies the input into the
/// gradient buffer and reads the target. Writes a line per case; returns
/// `(op, pass, median_ms, floor_ms)` per case.
///
/// # Errors
/// As [`run`].
pub fn run_family(
    config: &Config,
    elems: usize,
    out: &mut (dyn Write + Send),
) -> Result<Vec<(FamilyOp, Pass, f64, f64)>, Error> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = config.threads {
        builder = builder.num_threads(n);
    }
    let pool = builder
        .build()
        .map_err(|e| Error::Setup(format!("cannot build a thread pool: {e}")))?;
    pool.install(|| run_family_in_pool(config, elems, out))
}

fn run_family_in_pool(
    config: &Config,
    elems: usize,
    out: &mut (dyn Write + Send),
) -> Result<Vec<(FamilyOp, Pass, f64, f64)>, Error> {
    use xent::{
        binary_cross_entropy_into, binary_cross_entropy_with_logits_into, kl_div_into,
        BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions, KlDivOptions, KlReduction,
    };
    let threads = rayon::current_num_threads();
    let cols = 1024.min(elems.max(1));
    let shape = [elems / cols, cols];
    let len = shape[0] * shape[1];
    let logit: Vec<f32> = logits(len, 0xFA17);
    let sig = |v: &f32| 1.0 / (1.0 + (-v).exp());
    // Probabilities strictly inside (0, 1), soft targets, and log-probabilities.
    let probs: Vec<f32> = logit.par_iter().map(sig).collect();
    let soft: Vec<f32> = logits::<f32>(len, 0xB0B).par_iter().map(sig).collect();
    let logq: Vec<f32> = probs.par_iter().map(|p| p.ln()).collect();
    let mut grad = vec![0.0f32; len];
    let mut loss = [0.0f32];
    let chunk = floor_chunk(len, threads);
    let plan = Plan::new(config.quick);
    if !config.json {
        writeln!(
            out,
            "# xent bench --suite family: {threads} thread(s), f32, shape {}x{}; floor: fwd = \
             parallel read of input and target, fwd_bwd = parallel copy of the input into the \
             gradient buffer + read of the target; times are medians",
            shape[0], shape[1]
        )?;
        writeln!(
            out,
            "{:<16} {:<8} {:>11} {:>10} {:>6} {:>8} {:>5} {:>3}",
            "op", "pass", "median_ms", "floor_ms", "ratio", "GB/s", "reps", "thr"
        )?;
    }
    let bce = BinaryCrossEntropyOptions::<f32>::default();
    let bcel = BinaryCrossEntropyWithLogitsOptions::<f32>::default();
    let kl = KlDivOptions::default().reduction(KlReduction::BatchMean);
    let mut records = Vec::new();
    for op in FamilyOp::ALL {
        let input: &[f32] = match op {
            FamilyOp::Bce => &probs,
            FamilyOp::BceWithLogits => &logit,
            FamilyOp::KlDiv => &logq,
        };
        let target: &[f32] = &soft;
        for &pass in &config.passes {
            let grad = std::cell::RefCell::new(&mut grad[..]);
            let mut failure = None;
            let (k, f, reps) = measure(
                &plan,
                || {
                    let mut g = grad.borrow_mut();
                    let g = (pass == Pass::FwdBwd).then(|| GradOut::new(&mut g[..]));
                    let x = black_box(input);
                    let r = match op {
                        FamilyOp::Bce => {
                            binary_cross_entropy_into(x, &shape, target, &bce, &mut loss, g)
                        }
                        FamilyOp::BceWithLogits => binary_cross_entropy_with_logits_into(
                            x, &shape, target, &bcel, &mut loss, g,
                        ),
                        FamilyOp::KlDiv => kl_div_into(x, &shape, target, &kl, &mut loss, g, None),
                    };
                    if let Err(e) = r {
                        failure = Some(e);
                    }
                    black_box(&loss);
                },
                || {
                    if pass == Pass::FwdBwd {
                        let mut g = grad.borrow_mut();
                        copy_floor(black_box(input), &mut g[..], chunk);
                        black_box(&g[..]);
                    } else {
                        black_box(read_floor(black_box(input), chunk));
                    }
                    black_box(read_floor(black_box(target), chunk));
                },
            );
            if let Some(e) = failure {
                return Err(Error::Setup(format!("{} {}: {e}", op.name(), pass.name())));
            }
            let bytes = len * 4 * if pass == Pass::FwdBwd { 3 } else { 2 };
            let gbps = bytes as f64 / (k * 1e6);
            if config.json {
                let round = |v: f64| (v * 1e4).round() / 1e4;
                let line = serde_json::json!({
                    "op": op.name(),
                    "pass": pass.name(),
                    "shape": shape,
                    "dtype": "f32",
                    "median_ms": round(k),
                    "floor_ms": round(f),
                    "ratio": round(k / f),
                    "gbps": round(gbps),
                    "bytes": bytes,
                    "reps": reps,
                    "threads": threads,
                    "loss": loss[0],
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "{:<16} {:<8} {:>11.3} {:>10.3} {:>6.2} {:>8.1} {:>5} {:>3}",
                    op.name(),
                    pass.name(),
                    k,
                    f,
                    k / f,
                    gbps,
                    reps,
                    threads
                )?;
            }
            out.flush()?;
            records.push((op, pass, k, f));
        }
    }
    Ok(records)
}
