//! Times `linear_cross_entropy` forward + backward (loss, dh, dW, db-less) on one shape
//! and reports the median time and the peak RSS above inputs + gradients.
//!
//! ```text
//! cargo run --release -p xent --example linear_bench -- [N] [D] [V] [reps] [scratch MiB] [f32|f64|bf16]
//! ```
//!
//! Defaults: N = 4096, D = 1024, V = 32000, 3 repetitions, the default scratch budget,
//! f32. Run one shape per process: the peak RSS (`VmHWM`) is the process's. "extra"
//! is the peak minus the resident size measured after the inputs and gradient buffers
//! were written, i.e. what the call itself added (logit block, work rows, GEMM packing,
//! thread stacks); it is compared with the size of the `N × V` logits that the unfused
//! form would hold (and their gradient besides).
//!
//! On a shared machine another process can take a core mid-run. Each repetition also
//! reads the kernel's CPU pressure stall counter (`/proc/pressure/cpu`, Linux): a
//! repetition during which some task waited for a CPU more than 3% of the time is not
//! "quiet", and the median of the quiet repetitions is printed beside the overall one.

use std::time::Instant;

use xent::{
    bf16, linear_cross_entropy_into, Element, Float, LinearCrossEntropyOptions, LinearGradOut,
    LinearInputs, DEFAULT_SCRATCH_BYTES,
};

mod common;
use common::fill;

fn status_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Total time, in seconds, that some task waited for a CPU (Linux PSI), if readable.
fn cpu_stall_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    let total = s.lines().next()?.rsplit("total=").next()?;
    total.trim().parse::<f64>().ok().map(|us| us * 1e-6)
}

fn run<E: Element>(n: usize, d: usize, v: usize, reps: usize, scratch: usize) {
    let zero = E::from_acc(E::Acc::ZERO);
    let mut h = vec![zero; n * d];
    let mut w = vec![zero; v * d];
    fill(&mut h, 1, 1.0);
    fill(&mut w, 2, 0.05);
    let y: Vec<i64> = (0..n).map(|i| ((i * 7919) % v) as i64).collect();
    // Gradients (and the loss) in the accumulation type: f32 for bf16/f16 inputs.
    let mut dh = vec![E::Acc::ONE; n * d];
    let mut dw = vec![E::Acc::ONE; v * d];
    let mut loss = [E::Acc::ZERO];
    let base_kib = status_kib("VmRSS:");
    let opts = LinearCrossEntropyOptions::default().scratch_bytes(scratch);
    let mut times = Vec::new();
    let mut quiet = Vec::new();
    for _ in 0..reps {
        let stall = cpu_stall_s();
        let t = Instant::now();
        let g = LinearGradOut::new().hidden(&mut dh).linear_weight(&mut dw);
        linear_cross_entropy_into(
            LinearInputs::new(&h, [n, d], &w, [v, d]),
            &y[..],
            &opts,
            &mut loss,
            Some(g),
        )
        .expect("valid inputs");
        let time = t.elapsed().as_secs_f64();
        times.push(time);
        if let (Some(s0), Some(s1)) = (stall, cpu_stall_s()) {
            if s1 - s0 < 0.03 * time {
                quiet.push(time);
            }
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    quiet.sort_by(|a, b| a.total_cmp(b));
    let peak_kib = status_kib("VmHWM:");
    let mib = |kib: u64| kib as f64 / 1024.0;
    // The logits as the unfused form would hold them: in the input's dtype.
    let elem = std::mem::size_of::<E>() as f64;
    let logits_mib = (n * v) as f64 * elem / (1 << 20) as f64;
    let extra = mib(peak_kib.saturating_sub(base_kib));
    println!(
        "linear_cross_entropy {} N={n} D={d} V={v} scratch={} MiB threads={}: \
         median {:.3} s (min {:.3}, {} reps; quiet {}: median {}), loss {:.6}",
        E::NAME,
        scratch >> 20,
        rayon::current_num_threads(),
        times[times.len() / 2],
        times[0],
        reps,
        quiet.len(),
        quiet
            .get(quiet.len() / 2)
            .map_or("-".to_string(), |t| format!("{t:.3} s")),
        loss[0].to_f64(),
    );
    // Three GEMMs of 2·N·D·V flops each (logits, dh, dW): nearly all the work.
    let gflop = 6.0 * (n * d * v) as f64 * 1e-9;
    println!(
        "  {:.0} GFLOP/s (6·N·D·V = {gflop:.0} GFLOP over the median time)",
        gflop / times[times.len() / 2]
    );
    println!(
        "  peak RSS {:.1} MiB; inputs+grads resident {:.1} MiB; extra {:.1} MiB = {:.2}% of \
         the {:.1} MiB logits",
        mib(peak_kib),
        mib(base_kib),
        extra,
        100.0 * extra / logits_mib,
        logits_mib,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| {
        args.get(i)
            .map(|s| s.parse().expect("a number"))
            .unwrap_or(default)
    };
    let (n, d, v, reps) = (num(0, 4096), num(1, 1024), num(2, 32000), num(3, 3));
    let scratch = args
        .get(4)
        .map(|s| s.parse::<usize>().expect("MiB") << 20)
        .unwrap_or(DEFAULT_SCRATCH_BYTES);
    match args.get(5).map(String::as_str) {
        Some("f64") => run::<f64>(n, d, v, reps, scratch),
        Some("bf16") => run::<bf16>(n, d, v, reps, scratch),
        _ => run::<f32>(n, d, v, reps, scratch),
    }
}
