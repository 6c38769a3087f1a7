//! Forward + backward of softmax cross-entropy in candle: xent's fused op
//! (`xent_candle::cross_entropy`) against candle's composed
//! `candle_nn::loss::cross_entropy` (log_softmax → gather → sum → affine), on the same
//! logits, in the same run.
//!
//! ```sh
//! cargo run --release -p xent-candle --example bench_candle            # default shapes
//! cargo run --release -p xent-candle --example bench_candle -- 1024x32000 7
//! ```
//!
//! Each repeat times `loss = ce(logits, y); grads = loss.backward()` with the logits a
//! `Var` (f32) and reports the median over the repeats (after one warm-up), plus the
//! forward alone. The gradient of both is checked to agree before timing.

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `f` over `reps` runs after one warm-up.
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok(median(t))
}

fn bench(n: usize, c: usize, reps: usize) -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (n, c), &dev)?)?;
    let y: Vec<u32> = (0..n)
        .map(|i| ((i as u64 * 7919) % c as u64) as u32)
        .collect();
    let y = Tensor::from_vec(y, n, &dev)?;
    let opts = xent_candle::CrossEntropyOptions::default();

    let composed = || candle_nn::loss::cross_entropy(x.as_tensor(), &y);
    let fused = || xent_candle::cross_entropy(x.as_tensor(), &y, &opts);

    // Same loss and gradient before timing anything.
    let (lc, lf) = (composed()?, fused()?);
    let (gc, gf) = (lc.backward()?, lf.backward()?);
    let diff = (gc.get(&x).unwrap() - gf.get(&x).unwrap())?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    let dl = (lc.to_scalar::<f32>()? - lf.to_scalar::<f32>()?).abs();
    assert!(diff < 1e-6 && dl < 1e-4, "grad diff {diff}, loss diff {dl}");

    let fwd_c = time(reps, || composed().map(drop))?;
    let fwd_f = time(reps, || fused().map(drop))?;
    let both_c = time(reps, || composed()?.backward().map(drop))?;
    let both_f = time(reps, || fused()?.backward().map(drop))?;
    let mb = (n * c * 4) as f64 / 1e6;
    println!(
        "| ({n}, {c}) f32 | {mb:.0} MB | {:.1} ms | {:.1} ms | {:.1}× | {:.1} ms | {:.1} ms | {:.1}× |",
        1e3 * both_c,
        1e3 * both_f,
        both_c / both_f,
        1e3 * fwd_c,
        1e3 * fwd_f,
        fwd_c / fwd_f
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shapes: Vec<(usize, usize, usize)> = if args.is_empty() {
        vec![(4096, 32000, 5), (256, 1000, 51), (4096, 128, 51)]
    } else {
        let (n, c) = args[0].split_once('x').expect("shape as NxC");
        let reps = args.get(1).map_or(5, |r| r.parse().expect("repeats"));
        vec![(n.parse().expect("N"), c.parse().expect("C"), reps)]
    };
    println!(
        "threads: {} available, candle uses {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        candle_core::utils::get_num_threads()
    );
    println!("| shape | logits | candle-nn fwd+bwd | xent fwd+bwd | speed-up | candle-nn fwd | xent fwd | speed-up |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, c, reps) in shapes {
        bench(n, c, reps)?;
    }
    Ok(())
}
