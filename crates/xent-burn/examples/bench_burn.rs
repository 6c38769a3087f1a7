//! Forward + backward of softmax cross-entropy in burn 0.22 on the Flex CPU backend
//! with autodiff: burn's `CrossEntropyLoss` (log_softmax → gather → mean, differentiated
//! op by op) against xent-burn's `cross_entropy` (xent's fused kernel, gradient from the
//! forward pass), on the same `f32` logits, in the same run; then each one's peak memory.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p xent-burn --example bench_burn           # both shapes
//! RAYON_NUM_THREADS=2 cargo run --release -p xent-burn --example bench_burn -- 16384x1000 11
//! ```
//!
//! A repeat times `loss = ce(logits, y); grads = loss.backward(); grad = logits.grad()`
//! with the logits a tracked leaf; the two are timed in turn within each repeat (after
//! one warm-up each), so that both see the same machine, and medians are reported. The
//! gradients are checked to agree first.
//!
//! Peak memory: each loss runs once more in a child process of its own (this binary
//! with `--peak`), which resets the kernel's peak-RSS counter (`/proc/self/clear_refs`)
//! after the logits exist and reports `VmHWM − VmRSS`: the memory the loss step adds
//! on top of its input (Linux only).

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use xent_burn::{cross_entropy, CrossEntropyOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The logits (a tracked leaf, N(0, 2²)) and targets of one shape.
fn inputs(n: usize, c: usize, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    device.seed(7);
    let x = Tensor::<2>::random([n, c], Distribution::Normal(0.0, 2.0), device).require_grad();
    let y: Vec<i64> = (0..n)
        .map(|i| ((i as u64 * 7919) % c as u64) as i64)
        .collect();
    (x, Tensor::from_data(TensorData::new(y, [n]), device))
}

/// One forward + backward; returns the loss and the logits' gradient.
fn step(which: &str, x: &Tensor<2>, y: &Tensor<1, Int>) -> (f32, Tensor<2>) {
    let loss = match which {
        "burn" => CrossEntropyLossConfig::new()
            .init(&x.device())
            .forward(x.clone(), y.clone()),
        _ => cross_entropy(x.clone(), y.clone(), &CrossEntropyOptions::default())
            .expect("valid inputs"),
    };
    let grads = loss.backward();
    let g = x.grad(&grads).expect("the logits are tracked");
    (loss.into_scalar::<f32>(), g)
}

fn status(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The child of `--peak`: the extra peak memory of one step, in bytes.
fn peak(which: &str, n: usize, c: usize) {
    let device = Device::flex().autodiff();
    let (x, y) = inputs(n, c, &device);
    let _ = x.clone().inner().into_data(); // the logits exist and are touched
    let before = status("VmRSS:").unwrap_or(f64::NAN);
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        println!("NaN");
        return;
    }
    let (loss, g) = step(which, &x, &y);
    let hwm = status("VmHWM:").unwrap_or(f64::NAN);
    assert!(loss.is_finite() && g.dims() == [n, c]);
    println!("{}", hwm - before);
}

fn measure_peak(which: &str, n: usize, c: usize) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .args(["--peak", which, &format!("{n}x{c}")])
        .output()
        .expect("the child runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN)
}

fn bench(n: usize, c: usize, reps: usize) {
    let device = Device::flex().autodiff();
    let (x, y) = inputs(n, c, &device);
    let (lb, gb) = step("burn", &x, &y);
    let (lx, gx) = step("xent", &x, &y);
    let worst = (gb - gx).abs().max().into_scalar::<f32>();
    assert!(
        (lb - lx).abs() <= 1e-4 * lb.abs().max(1.0),
        "losses {lb} vs {lx}"
    );
    assert!(worst <= 1e-6, "gradients differ by {worst}");
    let mut t = [Vec::new(), Vec::new()];
    for _ in 0..reps {
        for (which, t) in ["burn", "xent"].into_iter().zip(&mut t) {
            let s = Instant::now();
            let (l, g) = step(which, &x, &y);
            drop((l, g));
            t.push(s.elapsed().as_secs_f64());
        }
    }
    let [tb, tx] = t.map(median);
    let (pb, px) = (measure_peak("burn", n, c), measure_peak("xent", n, c));
    let mib = |b: f64| b / (1 << 20) as f64;
    let logits = mib((n * c * 4) as f64);
    println!(
        "| ({n}, {c}) | {:.1} | {:.1} | {:.1}× | {:.0} | {:.0} | {:.0} |",
        tb * 1e3,
        tx * 1e3,
        tb / tx,
        logits,
        mib(pb),
        mib(px)
    );
}

fn parse(s: &str) -> (usize, usize) {
    let (n, c) = s.split_once('x').expect("a shape NxC");
    (n.parse().expect("N"), c.parse().expect("C"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--peak") {
        let (n, c) = parse(&args[2]);
        return peak(&args[1], n, c);
    }
    let shapes: Vec<(usize, usize)> = match args.first() {
        Some(s) => vec![parse(s)],
        None => vec![(4096, 32000), (16384, 1000)],
    };
    let reps = args.get(1).map_or(11, |r| r.parse().expect("repeats"));
    println!("burn CrossEntropyLoss vs xent-burn cross_entropy, fwd+bwd, f32, Flex + autodiff, median of {reps}");
    println!("| shape (N, C) | burn ms | xent-burn ms | burn/xent | logits MiB | burn peak +MiB | xent-burn peak +MiB |");
    println!("|---|---|---|---|---|---|---|");
    for (n, c) in shapes {
        bench(n, c, reps);
    }
}
