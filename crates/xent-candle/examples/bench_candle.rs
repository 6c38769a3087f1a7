//! Forward + backward of softmax cross-entropy in candle: xent's fused op
//! (`xent_candle::cross_entropy`) against candle's composed
//! `candle_nn::loss::cross_entropy` (log_softmax → gather → sum → affine), on the same
//! logits, in the same run. Both allocate their gradient every call, as a training
//! step does; xent's op puts a gradient of 2 MiB or more on huge pages
//! (`xent::alloc`). Next to them, `xent::cross_entropy_into` into one gradient buffer
//! kept across calls: the floor an allocating path can reach.
//!
//! ```sh
//! cargo run --release -p xent-candle --example bench_candle            # default shapes
//! cargo run --release -p xent-candle --example bench_candle -- 16384x1000 21 bf16
//! ```
//!
//! A fourth column times the op alone: its forward computes the loss and the gradient
//! into a fresh buffer, which `backward` hands to candle; candle's backprop then adds
//! it into a `zeros_like` of the logits, two more fresh N × C tensors that are
//! candle's, not xent's.
//!
//! All are timed in turn within each repeat (after one warm-up), so that all
//! see the same machine; medians are reported. A repeat times
//! `loss = ce(logits, y); grads = loss.backward()` with the logits a `Var`. The
//! gradients are checked to agree before timing.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds of each of `fs` over `reps` alternating repeats, after one warm-up each.
fn time_alternating(reps: usize, fs: &mut [&mut dyn FnMut() -> Result<()>]) -> Result<Vec<f64>> {
    for f in fs.iter_mut() {
        f()?;
    }
    let mut t = vec![Vec::with_capacity(reps); fs.len()];
    for _ in 0..reps {
        for (f, t) in fs.iter_mut().zip(&mut t) {
            let s = Instant::now();
            f()?;
            t.push(s.elapsed().as_secs_f64());
        }
    }
    Ok(t.into_iter().map(median).collect())
}

fn bench(n: usize, c: usize, reps: usize, dtype: DType) -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (n, c), &dev)?.to_dtype(dtype)?)?;
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
    let diff = (gc.get(&x).unwrap().to_dtype(DType::F32)?
        - gf.get(&x).unwrap().to_dtype(DType::F32)?)?
    .abs()?
    .max_all()?
    .to_scalar::<f32>()?;
    let dl = (lc.to_dtype(DType::F32)?.to_scalar::<f32>()?
        - lf.to_dtype(DType::F32)?.to_scalar::<f32>()?)
    .abs();
    // candle-nn sums a bf16 loss in bf16 (off by several units at this N): only
    // the gradients are compared there.
    let (gtol, ltol) = if dtype == DType::F32 {
        (1e-6, 1e-4)
    } else {
        (1e-3, f32::INFINITY)
    };
    assert!(diff < gtol && dl < ltol, "grad diff {diff}, loss diff {dl}");

    // The kept-buffer floor, on the same logits.
    let flat = x.as_tensor().flatten_all()?;
    let ys: Vec<u32> = y.to_vec1()?;
    let xopts = xent::CrossEntropyOptions::default();
    let mut loss = [0.0f32];
    let mut reuse: Box<dyn FnMut() -> Result<()>> = match dtype {
        DType::F32 => {
            let xs: Vec<f32> = flat.to_vec1()?;
            let mut g = vec![0.0f32; xs.len()];
            Box::new(move || {
                xent::cross_entropy_into(
                    &xs,
                    &[n, c],
                    &ys[..],
                    &xopts,
                    &mut loss,
                    Some(xent::GradOut::new(&mut g)),
                )
                .map(drop)
                .map_err(candle_core::Error::wrap)
            })
        }
        _ => {
            let xs: Vec<xent::bf16> = flat.to_dtype(DType::BF16)?.to_vec1()?;
            let mut g = vec![xent::bf16::ZERO; xs.len()];
            Box::new(move || {
                xent::cross_entropy_into(
                    &xs,
                    &[n, c],
                    &ys[..],
                    &xopts,
                    &mut loss,
                    Some(xent::GradOut::new(&mut g)),
                )
                .map(drop)
                .map_err(candle_core::Error::wrap)
            })
        }
    };
    let mut both_c = || composed()?.backward().map(drop);
    let mut both_f = || fused()?.backward().map(drop);
    // The op alone: its forward computes and keeps the gradient (a fresh buffer);
    // `backward` then only hands it to candle, whose backprop adds it into a
    // `zeros_like` of the logits (two more fresh N × C tensors, not xent's).
    let mut op = || fused().map(drop);
    let t = time_alternating(reps, &mut [&mut both_c, &mut both_f, &mut op, &mut *reuse])?;
    let mb = (n * c * dtype.size_in_bytes()) as f64 / 1e6;
    println!(
        "| ({n}, {c}) {dtype:?} | {mb:.0} MB | {:.1} ms | {:.1} ms | {:.1}× | {:.1} ms | {:.1} ms | {:.2} |",
        1e3 * t[0],
        1e3 * t[1],
        t[0] / t[1],
        1e3 * t[2],
        1e3 * t[3],
        t[2] / t[3],
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dtype = match args.get(2).map(String::as_str) {
        None | Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        Some(other) => panic!("dtype {other:?}: expected f32 or bf16"),
    };
    let shapes: Vec<(usize, usize, usize)> = if args.is_empty() {
        vec![
            (4096, 32000, 5),
            (16384, 1000, 11),
            (256, 1000, 51),
            (4096, 128, 51),
        ]
    } else {
        let (n, c) = args[0].split_once('x').expect("shape as NxC");
        let reps = args.get(1).map_or(5, |r| r.parse().expect("repeats"));
        vec![(n.parse().expect("N"), c.parse().expect("C"), reps)]
    };
    println!(
        "threads: {} available, candle uses {}; transparent huge pages: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        candle_core::utils::get_num_threads(),
        xent::alloc::thp_mode()
    );
    println!(
        "| shape | logits | candle-nn fwd+bwd | xent-candle fwd+bwd | speed-up \
         | xent-candle op (loss + gradient) | xent `_into`, kept buffer | op / kept |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (n, c, reps) in shapes {
        bench(n, c, reps, dtype)?;
    }
    Ok(())
}
