//! candle's `candle_nn::loss::cross_entropy` next to xent, in one process, on the
//! shapes of `xent bench`.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --manifest-path bench/candle/Cargo.toml -- \
//!     [--quick] [--json] [--shape 4096x32000] [--dtype f32|bf16] [--pass fwd|fwd_bwd]
//! ```
//!
//! Per case: logits ~ 2·N(0, 1), uniform `u32` class targets, both made once.
//! - candle `fwd`: `cross_entropy(&x, &y)` on a plain tensor (no graph);
//!   `fwd_bwd`: the same on a `Var`, then `loss.backward()` (the gradient is in the
//!   returned `GradStore`; candle allocates it, and every intermediate, per call).
//! - xent, same data: `cross_entropy_into` with a preallocated gradient buffer.
//!
//! candle's cross-entropy takes `(N, C)` only: the K-dim input `(N, C, d1, d2)` is
//! permuted to `(N·d1·d2, C)` (a copy) inside the timed region, as a user must.
//! Warm-up, then repetitions until at least 0.5 s and 5 reps (`--quick`: 2 reps);
//! medians. One JSON object per case and implementation, or a table.

use std::hint::black_box;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use xent::{bf16, cross_entropy_into, CrossEntropyOptions, GradOut};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SHAPES: [&[usize]; 6] = [
    &[65536, 10],
    &[16384, 1000],
    &[4096, 32000],
    &[1024, 128256],
    &[1, 4_000_000],
    &[32, 21, 128, 128],
];

struct Args {
    quick: bool,
    json: bool,
    shapes: Vec<Vec<usize>>,
    dtype: Option<String>,
    pass: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        quick: false,
        json: false,
        shapes: Vec::new(),
        dtype: None,
        pass: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = true,
            "--shape" => {
                let s = it.next().ok_or("--shape needs a value")?;
                let dims = s
                    .split(['x', ','])
                    .map(|d| d.replace('_', "").parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                args.shapes.push(dims);
            }
            "--dtype" => args.dtype = Some(it.next().ok_or("--dtype needs a value")?),
            "--pass" => args.pass = Some(it.next().ok_or("--pass needs a value")?),
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if args.shapes.is_empty() {
        args.shapes = SHAPES.iter().map(|s| s.to_vec()).collect();
    }
    Ok(args)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median milliseconds of `f` and the repetitions timed.
fn measure(quick: bool, mut f: impl FnMut() -> Result<()>) -> Result<(f64, usize)> {
    let (min_time, min_reps) = if quick { (0.0, 2) } else { (0.5, 5) };
    f()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || start.elapsed().as_secs_f64() < min_time {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let reps = times.len();
    Ok((median(times), reps))
}

/// `(N·d1⋯dk, C)` rows for candle, which takes 2-D logits only.
fn rows(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if shape.len() == 2 {
        return Ok(x.clone());
    }
    let dims: Vec<usize> = (0..shape.len()).filter(|&d| d != 1).chain([1]).collect();
    let n: usize = shape.iter().product::<usize>() / shape[1];
    Ok(x.permute(dims)?.reshape((n, shape[1]))?)
}

fn candle_fwd(x: &Tensor, y: &Tensor, shape: &[usize]) -> Result<f32> {
    let loss = candle_nn::loss::cross_entropy(&rows(x, shape)?, y)?;
    Ok(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

fn candle_fwd_bwd(x: &Var, y: &Tensor, shape: &[usize]) -> Result<f32> {
    let loss = candle_nn::loss::cross_entropy(&rows(x.as_tensor(), shape)?, y)?;
    let grads = loss.backward()?;
    let g = grads.get(x.as_tensor()).ok_or("no gradient")?;
    black_box(g);
    Ok(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

/// xent on the same data: forward, or forward + backward into `grad`.
fn xent_case<T: xent::Element<Acc = f32>>(
    x: &[T],
    shape: &[usize],
    y: &[u32],
    grad: Option<&mut [T]>,
) -> Result<f32> {
    let opts = CrossEntropyOptions::<f32>::default();
    let mut loss = [0.0f32];
    cross_entropy_into(
        black_box(x),
        shape,
        y,
        &opts,
        &mut loss,
        grad.map(GradOut::new),
    )?;
    Ok(black_box(loss[0]))
}

struct Row {
    shape: Vec<usize>,
    dtype: &'static str,
    pass: &'static str,
    candle_ms: Option<f64>,
    candle_error: Option<String>,
    candle_loss: f32,
    xent_ms: f64,
    xent_loss: f32,
    reps: (usize, usize),
}

fn print(row: &Row, json: bool) {
    let shape = row
        .shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    if json {
        let base = |name: &str, ms: Option<f64>, loss: f32, reps: usize| {
            let ms = ms.map_or("null".to_string(), |v| format!("{v:.4}"));
            format!(
                "{{\"impl\":\"{name}\",\"shape\":{:?},\"dtype\":\"{}\",\"pass\":\"{}\",\
                 \"median_ms\":{ms},\"floor_ms\":null,\"loss\":{loss},\"reps\":{reps}",
                row.shape, row.dtype, row.pass
            )
        };
        let mut c = base("candle", row.candle_ms, row.candle_loss, row.reps.0);
        if let Some(e) = &row.candle_error {
            c.push_str(&format!(",\"error\":{:?}", e));
        }
        println!("{c}}}");
        let ratio = row
            .candle_ms
            .map_or("null".to_string(), |c| format!("{:.2}", c / row.xent_ms));
        println!(
            "{},\"candle_over_xent\":{ratio}}}",
            base("xent", Some(row.xent_ms), row.xent_loss, row.reps.1)
        );
    } else {
        let (c, r) = match row.candle_ms {
            Some(c) => (format!("{c:.3}"), format!("{:.1}", c / row.xent_ms)),
            None => ("n/a".to_string(), "n/a".to_string()),
        };
        println!(
            "{:<18} {:<5} {:<8} {:>12} {:>10.3} {:>12} {:>11.5} {:>11.5}{}",
            shape,
            row.dtype,
            row.pass,
            c,
            row.xent_ms,
            r,
            row.candle_loss,
            row.xent_loss,
            row.candle_error
                .as_ref()
                .map_or(String::new(), |e| format!("  candle error: {e}"))
        );
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let dev = Device::Cpu;
    if !args.json {
        println!(
            "# candle {} vs xent, {} rayon thread(s); medians in ms",
            "0.11",
            rayon_threads()
        );
        println!(
            "{:<18} {:<5} {:<8} {:>12} {:>10} {:>12} {:>11} {:>11}",
            "shape",
            "dtype",
            "pass",
            "candle_ms",
            "xent_ms",
            "candle/xent",
            "candle_loss",
            "xent_loss"
        );
    }
    let mut seed = 0x5EEDu64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    for shape in &args.shapes {
        let classes = shape[1];
        let n_rows = shape.iter().product::<usize>() / classes;
        let y_vec: Vec<u32> = (0..n_rows).map(|_| next() % classes as u32).collect();
        // candle wants the targets of its (rows, C) view; xent takes them in the
        // row shape (N, d1, ..), which is the same order after the permute.
        let y = Tensor::from_vec(y_vec.clone(), n_rows, &dev)?;
        let x32 = (Tensor::randn(0f32, 1f32, shape.as_slice(), &dev)? * 2.0)?;
        for dtype in ["f32", "bf16"] {
            if args.dtype.as_deref().is_some_and(|d| d != dtype) {
                continue;
            }
            let x = match dtype {
                "f32" => x32.clone(),
                _ => x32.to_dtype(DType::BF16)?,
            };
            for pass in ["fwd", "fwd_bwd"] {
                if args.pass.as_deref().is_some_and(|p| p != pass) {
                    continue;
                }
                let mut candle_loss = f32::NAN;
                let candle = if pass == "fwd" {
                    measure(args.quick, || {
                        candle_loss = candle_fwd(&x, &y, shape)?;
                        Ok(())
                    })
                } else {
                    let var = Var::from_tensor(&x)?;
                    measure(args.quick, || {
                        candle_loss = candle_fwd_bwd(&var, &y, shape)?;
                        Ok(())
                    })
                };
                let mut xent_loss = f32::NAN;
                let (xent_ms, xent_reps) = if dtype == "f32" {
                    let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
                    let mut g = xs.clone();
                    measure(args.quick, || {
                        let grad = (pass == "fwd_bwd").then_some(&mut g[..]);
                        xent_loss = xent_case(&xs, shape, &y_vec, grad)?;
                        Ok(())
                    })?
                } else {
                    let xs: Vec<bf16> = x.flatten_all()?.to_vec1()?;
                    let mut g = xs.clone();
                    measure(args.quick, || {
                        let grad = (pass == "fwd_bwd").then_some(&mut g[..]);
                        xent_loss = xent_case(&xs, shape, &y_vec, grad)?;
                        Ok(())
                    })?
                };
                let (candle_ms, candle_reps, candle_error) = match candle {
                    Ok((ms, reps)) => (Some(ms), reps, None),
                    Err(e) => (None, 0, Some(e.to_string().replace('\n', " "))),
                };
                print(
                    &Row {
                        shape: shape.clone(),
                        dtype,
                        pass,
                        candle_ms,
                        candle_error,
                        candle_loss,
                        xent_ms,
                        xent_loss,
                        reps: (candle_reps, xent_reps),
                    },
                    args.json,
                );
            }
        }
    }
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism().map_or("?".into(), |n| n.get().to_string())
    })
}
