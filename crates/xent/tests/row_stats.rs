//! Issue 28: the per-row outputs (`lse`, `entropy`, `argmax`, `z`), the logit scale
//! and the denominator of `mean` of cross-entropy, against PyTorch goldens
//! (`fixtures/torch/row_stats/row_stats.json`, written by the committed
//! `fixtures/torch/make_row_stats.py`) and against the independent `f64` reference
//! of `common/row_stats.rs`, on every layout and dtype; the write modes of a scaled
//! gradient; finite differences. nll, linear cross-entropy, the shards and the
//! errors are in `row_stats_ops.rs`.

mod common;

use std::path::PathBuf;

use common::row_stats::*;
use common::{Rng, Tol};
use serde_json::Value;
use xent::{
    bf16, cross_entropy_inplace, cross_entropy_into, cross_entropy_stats_into, f16,
    CrossEntropyOptions, Element, Float, GradMode, GradOut, Reduction, RowOutputs, Targets,
};
// ---------------------------------------------------------------------------------
// PyTorch goldens

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("bad float string {other}"),
        },
        v => v.as_f64().expect("a number"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(num).collect()
}

fn goldens() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/torch/row_stats/row_stats.json");
    let text = std::fs::read_to_string(path).expect("fixture file");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    json["cases"].as_array().expect("cases").clone()
}

fn golden_out(c: &Value) -> Out {
    let e = &c["expected"];
    let has_loss = !e["loss"].is_null();
    Out {
        loss: if has_loss {
            nums(&e["loss"])
        } else {
            Vec::new()
        },
        z_term: (has_loss && !e["z_term"].is_null()).then(|| num(&e["z_term"])),
        grad: if e["grad"].is_null() {
            Vec::new()
        } else {
            nums(&e["grad"])
        },
        lse: nums(&e["lse"]),
        entropy: nums(&e["entropy"]),
        argmax: e["argmax"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect(),
        z: nums(&e["z"]),
    }
}

fn run_golden<T: Float>(c: &Value, tol: Tol) {
    let name = c["name"].as_str().unwrap();
    let shape: Vec<usize> = c["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let x: Vec<T> = nums(&c["input"]).iter().map(|&v| T::from_f64(v)).collect();
    let o = &c["options"];
    let weight: Option<Vec<T>> = (!o["weight"].is_null())
        .then(|| nums(&o["weight"]).iter().map(|&v| T::from_f64(v)).collect());
    let mut opts = CrossEntropyOptions::default()
        .ignore_index(o["ignore_index"].as_i64().unwrap())
        .label_smoothing(num(&o["label_smoothing"]))
        .reduction(o["reduction"].as_str().unwrap().parse().unwrap())
        .z_loss(num(&o["z_loss"]))
        .logit_scale(num(&o["logit_scale"]));
    if let Some(w) = weight.as_deref() {
        opts = opts.weight(w);
    }
    if !o["softcap"].is_null() {
        opts = opts.softcap(num(&o["softcap"]));
    }
    if !o["denominator"].is_null() {
        opts = opts.denominator(num(&o["denominator"]));
    }
    let go: Option<Vec<T>> = (!c["grad_output"].is_null()).then(|| {
        nums(&c["grad_output"])
            .iter()
            .map(|&v| T::from_f64(v))
            .collect()
    });
    let probs: Vec<T>;
    let idx: Vec<i64>;
    let target = if c["probabilities"].as_bool().unwrap() {
        probs = nums(&c["target"]).iter().map(|&v| T::from_f64(v)).collect();
        Targets::Probabilities(&probs[..])
    } else {
        idx = c["target"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        Targets::from(&idx[..])
    };
    let want = golden_out(c);
    let got = run_lib::<T>(&x, &shape, target, &opts, go.as_deref()).unwrap();
    compare(
        &format!("{name} ({})", T::NAME),
        &got,
        &want,
        tol,
        !want.loss.is_empty(),
    );
}

/// The f32 bound: [`Tol::f32_rows`] times 8 for the extra roundings of a scaled
/// pass (the scaled logits, the scaled gradient) and the denominator's division.
#[test]
fn torch_goldens_f32() {
    for c in goldens() {
        let classes = c["shape"]
            .as_array()
            .unwrap()
            .get(1)
            .or(c["shape"].get(0))
            .unwrap();
        let t = Tol::f32_rows(classes.as_u64().unwrap() as usize);
        run_golden::<f32>(
            &c,
            Tol {
                abs: 8.0 * t.abs,
                rel: 8.0 * t.rel,
            },
        );
    }
}

#[test]
fn torch_goldens_f64() {
    for c in goldens() {
        let classes = c["shape"]
            .as_array()
            .unwrap()
            .get(1)
            .or(c["shape"].get(0))
            .unwrap();
        let t = Tol::f64_rows(classes.as_u64().unwrap() as usize);
        run_golden::<f64>(
            &c,
            Tol {
                abs: 8.0 * t.abs,
                rel: 8.0 * t.rel,
            },
        );
    }
}

// ---------------------------------------------------------------------------------
// Against the reference: every dtype and layout

fn check_dtype<T: Element>(from: impl Fn(f64) -> T + Copy, tol: Tol) {
    let mut rng = Rng::new(28);
    let shapes: [&[usize]; 3] = [&[7], &[6, 9], &[3, 5, 2, 3]];
    let weight: Vec<f64> = (0..9).map(|k| 0.5 + 0.1 * k as f64).collect();
    for shape in shapes {
        let classes = if shape.len() == 1 { shape[0] } else { shape[1] };
        let rows = shape.iter().product::<usize>() / classes;
        let (x, xf) = rounded(&rng.logits(rows * classes, 2.0), from);
        let y = targets(&mut rng, rows, classes, -100);
        let w: Vec<f64> = weight[..classes].to_vec();
        let wa: Vec<T::Acc> = w.iter().map(|&v| T::Acc::from_f64(v)).collect();
        for (red, denom, scale, cap, z, eps, weighted) in [
            ("mean", None, 1.0, None, 0.0, 0.0, false),
            ("mean", Some(10.0), 0.6, Some(3.0), 0.01, 0.1, true),
            ("mean", None, 2.5, None, 0.02, 0.0, true),
            ("sum", None, 0.8, Some(2.0), 0.0, 0.2, false),
            ("none", None, 1.7, Some(4.0), 0.01, 0.0, true),
            ("mean", Some(3.0), 1.0, None, 0.0, 0.0, false),
        ] {
            let o = Opts {
                weight: weighted.then_some(&w[..]),
                eps,
                reduction: red,
                z_loss: z,
                softcap: cap,
                scale,
                denominator: denom,
                ..Opts::default()
            };
            let want = ref_call(&xf, shape, &y, &o);
            let opts = o.library::<T::Acc>(weighted.then_some(&wa[..]));
            let got = run_lib::<T>(&x, shape, Targets::from(&y[..]), &opts, None).unwrap();
            let what = format!(
                "{} {shape:?} {red} d={denom:?} s={scale} cap={cap:?}",
                T::NAME
            );
            compare(&what, &got, &want, tol, true);
        }
    }
}

/// Every kernel path against the reference: contiguous rows of several chunks with
/// a vector tail, an ignored row and a tie of the max (the lowest index wins),
/// K-dim rows across lanes with a scalar remainder, and a long row split in pieces.
fn check_paths<T: Element>(from: impl Fn(f64) -> T + Copy, tol: fn(usize) -> Tol) {
    let mut rng = Rng::new(29);
    let shapes: [&[usize]; 3] = [&[5, 2500], &[2, 40, 11], &[1, 140_000]];
    for shape in shapes {
        let classes = shape[1];
        let rows = shape.iter().product::<usize>() / classes;
        let inner = rows / shape[0];
        let mut xs = rng.logits(rows * classes, 3.0);
        // Row 0: its max again at a later class, and a −inf.
        let at = |c: usize| c * inner;
        let (m, _) = (0..classes).fold((f64::NEG_INFINITY, 0), |(m, k), c| {
            if xs[at(c)] > m {
                (xs[at(c)], c)
            } else {
                (m, k)
            }
        });
        xs[at(classes - 3)] = m;
        xs[at(classes - 2)] = f64::NEG_INFINITY;
        let (x, xf) = rounded(&xs, from);
        let mut y = targets(&mut rng, rows, classes, -100);
        y[rows - 1] = -100;
        let w: Vec<f64> = (0..classes).map(|k| 0.5 + (k % 7) as f64 * 0.1).collect();
        let wa: Vec<T::Acc> = w.iter().map(|&v| T::Acc::from_f64(v)).collect();
        for (red, scale, cap, z, eps, weighted) in [
            ("none", 1.0, None, 0.01, 0.0, false),
            ("mean", 0.7, Some(6.0), 0.02, 0.1, true),
        ] {
            let o = Opts {
                weight: weighted.then_some(&w[..]),
                eps,
                reduction: red,
                z_loss: z,
                softcap: cap,
                scale,
                ..Opts::default()
            };
            let want = ref_call(&xf, shape, &y, &o);
            let opts = o.library::<T::Acc>(weighted.then_some(&wa[..]));
            let got = run_lib::<T>(&x, shape, Targets::from(&y[..]), &opts, None).unwrap();
            let what = format!("{} {shape:?} {red} s={scale} cap={cap:?}", T::NAME);
            let t = tol(classes);
            let t = Tol {
                abs: 8.0 * t.abs,
                rel: 8.0 * t.rel,
            };
            compare(&what, &got, &want, t, true);
        }
    }
}

#[test]
fn every_path_f32() {
    check_paths::<f32>(|v| v as f32, Tol::f32_rows);
}

#[test]
fn every_path_f64() {
    check_paths::<f64>(|v| v, Tol::f64_rows);
}

/// f32 logits: the golden bound (see [`torch_goldens_f32`]).
#[test]
fn reference_f32() {
    let t = Tol::f32_rows(9);
    check_dtype::<f32>(
        |v| v as f32,
        Tol {
            abs: 8.0 * t.abs,
            rel: 8.0 * t.rel,
        },
    );
}

#[test]
fn reference_f64() {
    let t = Tol::f64_rows(9);
    check_dtype::<f64>(
        |v| v,
        Tol {
            abs: 8.0 * t.abs,
            rel: 8.0 * t.rel,
        },
    );
}

/// bf16/f16 logits are computed in f32 on their exact values: the f32 bound.
#[test]
fn reference_half_precision() {
    let t = Tol::f32_rows(9);
    let tol = Tol {
        abs: 8.0 * t.abs,
        rel: 8.0 * t.rel,
    };
    check_dtype::<bf16>(bf16::from_f64, tol);
    check_dtype::<f16>(f16::from_f64, tol);
}

// ---------------------------------------------------------------------------------
// Fast path, write modes, in place

/// Without scale, denominator or row outputs the call is the fused pass alone: the
/// same bits as `cross_entropy_into`; and asking for row outputs changes no bit of
/// the loss or the gradient.
#[test]
fn row_outputs_and_unit_scale_change_no_bit() {
    let mut rng = Rng::new(3);
    let x: Vec<f32> = rng.logits(8 * 33, 3.0).iter().map(|&v| v as f32).collect();
    let y = targets(&mut rng, 8, 33, -100);
    for opts in [
        CrossEntropyOptions::default().z_loss(0.01).softcap(5.0),
        CrossEntropyOptions::default()
            .logit_scale(1.0)
            .label_smoothing(0.1),
    ] {
        let (mut l0, mut g0) = ([0.0f32], vec![0.0f32; x.len()]);
        cross_entropy_into(
            &x,
            &[8, 33],
            &y[..],
            &opts,
            &mut l0,
            Some(GradOut::new(&mut g0)),
        )
        .unwrap();
        let (mut l1, mut g1, mut lse) = ([0.0f32], vec![0.0f32; x.len()], [0.0f32; 8]);
        cross_entropy_stats_into(
            &x,
            &[8, 33],
            &y[..],
            &opts,
            &mut l1,
            Some(GradOut::new(&mut g1)),
            RowOutputs::new().lse(&mut lse),
        )
        .unwrap();
        assert_eq!(l0[0].to_bits(), l1[0].to_bits());
        assert!(g0.iter().zip(&g1).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(lse.iter().all(|v| v.is_finite() && *v > 0.0));
    }
}

/// A scaled, denominated gradient is added into a buffer in accumulate mode, in the
/// logits' type and in the compute type, and overwrites the logits in place.
#[test]
fn scaled_gradient_write_modes() {
    let mut rng = Rng::new(5);
    let xf = rng.logits(4 * 6, 2.0);
    let y = [1i64, -100, 5, 0];
    let o = Opts {
        scale: 0.5,
        denominator: Some(7.0),
        z_loss: 0.01,
        ..Opts::default()
    };
    let want = ref_call(&xf, &[4, 6], &y, &o);
    let opts = o.library::<f32>(None);
    let tol = Tol::f32_rows(6);
    let (x, _) = rounded(&xf, bf16::from_f64);
    // Accumulate into bf16 (the logits' type) and into f32.
    let base: Vec<bf16> = (0..24).map(|i| bf16::from_f32(i as f32 * 0.25)).collect();
    let mut g = base.clone();
    let mut loss = [0.0f32];
    cross_entropy_into(
        &x,
        &[4, 6],
        &y[..],
        &opts,
        &mut loss,
        Some(GradOut::new(&mut g).mode(GradMode::Accumulate)),
    )
    .unwrap();
    let bf16_ulp = 1.0 / 128.0;
    for i in 0..24 {
        let want = base[i].to_f64() + want.grad[i];
        assert!(
            (g[i].to_f64() - want).abs() <= bf16_ulp * want.abs().max(1.0),
            "bf16 {i}"
        );
    }
    let mut g32 = vec![1.0f32; 24];
    cross_entropy_into(
        &x,
        &[4, 6],
        &y[..],
        &opts,
        &mut loss,
        Some(GradOut::<bf16>::new_acc(&mut g32).mode(GradMode::Accumulate)),
    )
    .unwrap();
    let xb: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
    let want = ref_call(&xb, &[4, 6], &y, &o);
    let shifted: Vec<f64> = want.grad.iter().map(|g| g + 1.0).collect();
    tol.check_all("accumulated f32", &to_f64(&g32), &shifted);
    tol.check_all("loss", &to_f64(&loss), &want.loss);
    // In place: the logits become the gradient.
    let mut xi: Vec<f32> = xf.iter().map(|&v| v as f32).collect();
    let want = ref_call(
        &xi.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &[4, 6],
        &y,
        &o,
    );
    cross_entropy_inplace(&mut xi, &[4, 6], &y[..], &opts, &mut loss, Some(&[2.0])).unwrap();
    let twice: Vec<f64> = want.grad.iter().map(|g| 2.0 * g).collect();
    tol.check_all("in place", &to_f64(&xi), &twice);
    tol.check_all("in place loss", &to_f64(&loss), &want.loss);
}

/// Hugging Face's gradient accumulation: two micro-batches with the step's token
/// count as denominator sum to the loss and gradient of the whole batch's mean, and
/// an all-ignored micro-batch adds 0, not NaN.
#[test]
fn denominator_accumulates_to_the_batch_mean() {
    let mut rng = Rng::new(11);
    let x: Vec<f64> = rng.logits(6 * 5, 2.0);
    let y = [0i64, 3, 4, -100, -100, -100];
    let whole = ref_call(&x, &[6, 5], &y, &Opts::default());
    let opts = CrossEntropyOptions::<f64>::default().denominator(3.0);
    let mut grad = vec![0.0f64; 30];
    let mut total = 0.0;
    let (first, second) = grad.split_at_mut(15);
    for (rows, g) in [(0..3, first), (3..6, second)] {
        let mut loss = [0.0];
        cross_entropy_into(
            &x[rows.start * 5..rows.end * 5],
            &[3, 5],
            &y[rows.clone()],
            &opts,
            &mut loss,
            Some(GradOut::new(g)),
        )
        .unwrap();
        assert!(loss[0].is_finite(), "micro-batch {rows:?}");
        total += loss[0];
    }
    let tol = Tol::f64_rows(5);
    tol.check("loss", total, whole.loss[0], 1.0);
    tol.check_all("grad", &grad, &whole.grad);
}

/// Finite differences of the loss agree with the fused gradient under every new
/// option at once, with probability targets too: the gradient carries the scale
/// through the soft-cap, and the denominator divides it.
#[test]
fn gradcheck_with_scale_softcap_and_denominator() {
    let mut rng = Rng::new(31);
    let x = rng.logits(3 * 2 * 5, 1.5);
    let y = [4i64, -100, 0, 2, 1, 3];
    let opts = CrossEntropyOptions::default()
        .logit_scale(1.7)
        .softcap(3.0)
        .denominator(5.0)
        .z_loss(0.01)
        .label_smoothing(0.1);
    let r = xent::gradcheck_cross_entropy(&x, &[3, 5, 2], &y[..], &opts).unwrap();
    assert!(r.passes(1e-8, 1e-6), "{r:?}");
    let p: Vec<f64> = (0..30).map(|i| 0.02 + (i % 5) as f64 * 0.04).collect();
    let opts = CrossEntropyOptions::default()
        .logit_scale(0.4)
        .reduction(Reduction::None);
    let r = xent::gradcheck_cross_entropy(&x, &[3, 5, 2], &p[..], &opts).unwrap();
    assert!(r.passes(1e-8, 1e-6), "{r:?}");
}
