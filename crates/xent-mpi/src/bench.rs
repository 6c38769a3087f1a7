//! `xent-mpi bench`: one vocab-parallel (and data-parallel) loss, forward and
//! backward, timed on every rank: the total, the share spent in all-reduces, and the
//! rank's peak resident memory. Each rank makes only its own part of the inputs.

use std::time::{Duration, Instant};

use xent::{
    cross_entropy_shard_grad_into, cross_entropy_shard_stats, linear_cross_entropy_shard_into,
    ClassIndices, ClassShard, CrossEntropyOptions, GradOut, LinearCrossEntropyOptions,
    LinearGradOut, LinearInputs, RowOutputs,
};
use xent_cli::Failure;

use mpi::traits::*;

use crate::comm::{even_range, gather, Agreed, Groups, OnePass, VocabParallel};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `N` rows, `V` classes.
    pub shape: (usize, usize),
    /// `D` for the linear form (`None`: cross-entropy of logits).
    pub hidden: Option<usize>,
    /// Timed repetitions (the median is reported).
    pub reps: usize,
}

/// SplitMix64 values in `[-scale, scale)`, seeded by position: the same global input
/// whatever the split.
fn values(seed: u64, start: usize, len: usize, scale: f32) -> Vec<f32> {
    (start..start + len)
        .map(|i| {
            let mut z = seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// This process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One timed run: `(total, in all-reduces, all-reduce count, bytes sent)`.
type Timing = (Duration, Duration, usize, usize);

/// Runs the benchmark; rank 0's report comes back.
pub fn run(g: &Groups, config: &Config) -> Result<String, Agreed> {
    let (n, v) = config.shape;
    let (n0, n1) = even_range(n, g.dp_size, g.dp_rank);
    let (c0, c1) = even_range(v, g.tp_size, g.tp_rank);
    let (rows, cols) = (n1 - n0, c1 - c0);
    let targets: Vec<i64> = values(7, n0, rows, 1.0)
        .iter()
        .map(|u| (((u + 1.0) * 0.5 * v as f32) as i64).clamp(0, v as i64 - 1))
        .collect();
    let shard = ClassShard::new(c0, v);
    let mut times: Vec<Timing> = Vec::new();
    match config.hidden {
        None => {
            // Row r's classes c0..c1 of the global (N, V) logits.
            let mut x = Vec::with_capacity(rows * cols);
            for r in n0..n1 {
                x.extend(values(1, r * v + c0, cols, 8.0));
            }
            let mut grad = vec![0.0f32; x.len()];
            let opts = CrossEntropyOptions::default();
            let shape = [rows, cols];
            for _ in 0..config.reps + 1 {
                g.world.barrier();
                let t = Instant::now();
                let mut vp = VocabParallel::new(g);
                let step = (|| -> Result<(), Failure> {
                    let mut st = cross_entropy_shard_stats(&x, &shape, &targets[..], &opts, shard)?;
                    let counts = vp.reduce(&mut st, true);
                    st.finish(counts, &mut [0.0f64])?;
                    let out = GradOut::new(&mut grad);
                    cross_entropy_shard_grad_into(
                        &x,
                        &shape,
                        &targets[..],
                        &opts,
                        shard,
                        &st,
                        out,
                    )?;
                    Ok(())
                })();
                g.agree(step)?;
                times.push((t.elapsed(), vp.time, vp.all_reduces, vp.bytes));
            }
        }
        Some(d) => {
            let h = values(2, n0 * d, rows * d, 1.0);
            let w = values(3, c0 * d, cols * d, 0.05);
            let (mut dh, mut dw) = (vec![0.0f32; rows * d], vec![0.0f32; cols * d]);
            let opts = LinearCrossEntropyOptions::default();
            for _ in 0..config.reps + 1 {
                g.world.barrier();
                let t = Instant::now();
                let mut vp = VocabParallel::new(g);
                let inputs = LinearInputs::new(&h, [rows, d], &w, [cols, d]);
                let y = ClassIndices::from(&targets[..]);
                let out = LinearGradOut::new().hidden(&mut dh).linear_weight(&mut dw);
                // One pass: the block's collectives run inside the call, and a rank that
                // failed its checks agrees at its start (the others return that failure).
                let mut pass = OnePass::new(&mut vp);
                let res = linear_cross_entropy_shard_into(
                    inputs,
                    y,
                    &opts,
                    shard,
                    &mut pass,
                    &mut [0.0f64],
                    Some(out),
                    RowOutputs::new(),
                );
                if let Some(agreed) = pass.failed {
                    return Err(agreed);
                }
                g.agree(res.map_err(Failure::from))?;
                vp.sum_tp(&mut dh);
                times.push((t.elapsed(), vp.time, vp.all_reduces, vp.bytes));
            }
        }
    }
    // The first run warms up; the median of the others is reported.
    let mut timed = times[1..].to_vec();
    timed.sort_by_key(|t| t.0);
    let (total, comm, count, bytes) = timed[timed.len() / 2];
    let mine = [
        total.as_secs_f64(),
        comm.as_secs_f64(),
        count as f64,
        bytes as f64,
        peak_rss() as f64,
    ];
    let size = g.dp_size * g.tp_size;
    let all = gather(&g.world, &mine, &vec![mine.len(); size]);
    Ok(match all {
        None => String::new(),
        Some(all) => {
            let what = match config.hidden {
                None => format!("cross-entropy ({n}, {v}) f32"),
                Some(d) => format!("linear-cross-entropy N={n} D={d} V={v} f32"),
            };
            let mut s = format!(
                "{what}, P = {size} (DP {} × TP {}), fwd+bwd, median of {}\n",
                g.dp_size, g.tp_size, config.reps
            );
            s.push_str(
                "rank    time_ms  allreduce_ms  share  allreduces  bytes_sent  peak_rss_mib\n",
            );
            for (r, m) in all.chunks_exact(5).enumerate() {
                s.push_str(&format!(
                    "{r:>4}  {:>9.3}  {:>12.4}  {:>5.1}%  {:>10}  {:>10}  {:>12.1}\n",
                    m[0] * 1e3,
                    m[1] * 1e3,
                    100.0 * m[1] / m[0],
                    m[2] as u64,
                    m[3] as u64,
                    m[4] / (1 << 20) as f64
                ));
            }
            s
        }
    })
}
