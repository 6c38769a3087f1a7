//! What the per-row outputs (lse, entropy, argmax, z) cost the fused cross-entropy
//! pass: the same call with and without them, alternated within one process.
//!
//! ```text
//! cargo run --release -p xent --example row_outputs_cost -- [N] [C] [rounds] [threads] [fwd|fwd_bwd] [f32|bf16]
//! ```
//!
//! Defaults: N = 4096, C = 32000, 41 rounds, 2 threads, fwd_bwd, f32. Each round
//! times one call without the outputs and one with all four, in an order that
//! alternates from round to round, into the same gradient and output buffers (no
//! allocation is timed). On a shared machine the time of a single call drifts by
//! more than the few percent measured here, so the figure of merit is the median of
//! the per-round ratios (with / without), printed with its quartiles; the two
//! calls of a round ran back to back on the same data, under the same load.

use std::hint::black_box;
use std::time::Instant;

use xent::{
    bf16, cross_entropy_stats_into, ClassIndices, CrossEntropyOptions, Element, GradOut,
    RowOutputs, Targets,
};

mod common;
use common::fill;

fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75)]
}

fn run<E: Element<Acc = f32>>(n: usize, c: usize, rounds: usize, backward: bool) {
    let zero = E::from_acc(0.0);
    let mut x = vec![zero; n * c];
    fill(&mut x, 7, 8.0);
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let y: Vec<i64> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((s >> 33) % c as u64) as i64
        })
        .collect();
    let mut grad = vec![zero; n * c];
    let (mut lse, mut entropy, mut z) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let mut argmax = vec![0i64; n];
    let opts = CrossEntropyOptions::<f32>::default();
    let mut loss = [0.0f32];
    let shape = [n, c];

    let mut call = |outputs: bool| -> f64 {
        let rows = if outputs {
            RowOutputs::new()
                .lse(&mut lse)
                .entropy(&mut entropy)
                .z(&mut z)
                .argmax(&mut argmax)
        } else {
            RowOutputs::new()
        };
        let g = backward.then(|| GradOut::new(&mut grad[..]));
        let t = Instant::now();
        let r = cross_entropy_stats_into(
            black_box(&x[..]),
            &shape,
            Targets::Indices(ClassIndices::from(&y[..])),
            &opts,
            &mut loss,
            g,
            rows,
        );
        let dt = t.elapsed().as_secs_f64() * 1e3;
        if let Err(e) = r {
            eprintln!("row_outputs_cost: {e}");
            std::process::exit(1);
        }
        black_box(&loss);
        dt
    };

    // Warm-up: pages touched, both code paths in the caches.
    for _ in 0..2 {
        call(false);
        call(true);
    }
    let (mut off, mut on, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (a, b) = if r % 2 == 0 {
            let a = call(false);
            (a, call(true))
        } else {
            let b = call(true);
            (call(false), b)
        };
        off.push(a);
        on.push(b);
        ratio.push(b / a);
    }
    let [_, off_med, _] = quartiles(off);
    let [_, on_med, _] = quartiles(on);
    let [q1, med, q3] = quartiles(ratio);
    println!(
        "{n}x{c} {} {}: without {off_med:.2} ms, with {on_med:.2} ms (medians of {rounds}); \
         with/without per round: median {med:.3} (quartiles {q1:.3}–{q3:.3})",
        E::NAME,
        if backward { "fwd_bwd" } else { "fwd" },
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| {
        args.get(i)
            .map(|s| s.parse::<usize>().expect("a positive integer"))
            .unwrap_or(default)
    };
    let (n, c, rounds, threads) = (num(0, 4096), num(1, 32000), num(2, 41), num(3, 2));
    let backward = args.get(4).is_none_or(|p| p != "fwd");
    let dtype = args.get(5).map_or("f32", String::as_str);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    pool.install(|| match dtype {
        "f32" => run::<f32>(n, c, rounds, backward),
        "bf16" => run::<bf16>(n, c, rounds, backward),
        other => {
            eprintln!("row_outputs_cost: dtype {other:?} is not f32 or bf16");
            std::process::exit(2);
        }
    });
}
