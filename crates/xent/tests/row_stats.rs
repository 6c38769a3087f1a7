//! Issue 28: the per-row outputs (`lse`, `entropy`, `argmax`, `z`), the logit scale
//! and the denominator of `mean`, against PyTorch goldens
//! (`fixtures/torch/row_stats/row_stats.json`, written by the committed
//! `fixtures/torch/make_row_stats.py`) and against an independent `f64` reference
//! written below, on every layout and dtype, for cross-entropy, nll and linear
//! cross-entropy; and the typed errors of bad values.

mod common;

use std::path::PathBuf;

use common::reference::{self, gather_rows, ksum, scatter_rows, RefOpts, RefTarget};
use common::{Rng, Tol};
use serde_json::Value;
use xent::{
    bf16, cross_entropy_inplace, cross_entropy_into, cross_entropy_shard_grad_into,
    cross_entropy_shard_stats, cross_entropy_stats_into, f16, linear_cross_entropy_stats_into,
    nll_loss_with_grad, ClassShard, CrossEntropyOptions, CrossEntropySettings, Element, Error,
    Float, GradMode, GradOut, LinearCrossEntropyOptions, LinearGradOut, LinearInputs,
    NllLossOptions, Reduction, RowOutputs, Targets,
};

// ---------------------------------------------------------------------------------
// The f64 reference

/// The options the reference takes, in PyTorch's terms.
#[derive(Debug, Clone, Copy)]
struct Opts<'a> {
    weight: Option<&'a [f64]>,
    ignore_index: i64,
    eps: f64,
    reduction: &'a str,
    z_loss: f64,
    softcap: Option<f64>,
    scale: f64,
    denominator: Option<f64>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            weight: None,
            ignore_index: -100,
            eps: 0.0,
            reduction: "mean",
            z_loss: 0.0,
            softcap: None,
            scale: 1.0,
            denominator: None,
        }
    }
}

impl<'a> Opts<'a> {
    fn library<A: Float>(&self, weight: Option<&'a [A]>) -> CrossEntropyOptions<'a, A> {
        let mut o = CrossEntropyOptions::default()
            .ignore_index(self.ignore_index)
            .label_smoothing(self.eps)
            .reduction(self.reduction.parse().unwrap())
            .z_loss(self.z_loss)
            .logit_scale(self.scale);
        if let Some(w) = weight {
            o = o.weight(w);
        }
        if let Some(c) = self.softcap {
            o = o.softcap(c);
        }
        if let Some(d) = self.denominator {
            o = o.denominator(d);
        }
        o
    }
}

/// One row's log-sum-exp, entropy and argmax, from the definitions: `log Σ e^{x}`
/// shifted by a finite max, `−Σ p log p` over the classes with `p > 0`, the first
/// NaN or else the first largest logit.
fn ref_row(x: &[f64]) -> (f64, f64, i64) {
    let arg = match x.iter().position(|v| v.is_nan()) {
        Some(i) => i,
        None => {
            let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            x.iter().position(|&v| v == m).unwrap()
        }
    };
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if x.iter().any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN, arg as i64);
    }
    if m == f64::INFINITY {
        return (f64::INFINITY, f64::NAN, arg as i64);
    }
    if m == f64::NEG_INFINITY {
        return (f64::NEG_INFINITY, f64::NAN, arg as i64);
    }
    let lse = m + ksum(x.iter().map(|v| (v - m).exp())).ln();
    let p: Vec<f64> = x.iter().map(|v| (v - lse).exp()).collect();
    let h = -ksum(p.iter().filter(|&&q| q > 0.0).map(|q| q * q.ln()));
    (lse, h, arg as i64)
}

/// What a call returns, in f64.
#[derive(Debug, Clone, Default)]
struct Out {
    loss: Vec<f64>,
    z_term: Option<f64>,
    grad: Vec<f64>,
    lse: Vec<f64>,
    entropy: Vec<f64>,
    argmax: Vec<i64>,
    z: Vec<f64>,
}

/// The reference of a cross-entropy call with class indices `y` and upstream
/// gradient 1 (all 1 for `none`): the loss sees `x̃ = softcap(s·x)`.
fn ref_call(x: &[f64], shape: &[usize], y: &[i64], o: &Opts<'_>) -> Out {
    let (s, cap) = (o.scale, o.softcap);
    let xt: Vec<f64> = x
        .iter()
        .map(|&v| cap.map_or(s * v, |c| c * (s * v / c).tanh()))
        .collect();
    // d x̃ / d x
    let chain: Vec<f64> = x
        .iter()
        .map(|&v| cap.map_or(s, |c| s * (1.0 - (s * v / c).tanh().powi(2))))
        .collect();
    let red = if o.denominator.is_some() {
        "sum"
    } else {
        o.reduction
    };
    let ropts = RefOpts {
        weight: o.weight,
        ignore_index: o.ignore_index,
        eps: o.eps,
        reduction: red,
    };
    let (losses, reduced, g) = reference::cross_entropy(&xt, shape, RefTarget::Index(y), &ropts);
    let rows = gather_rows(&xt, shape);
    let stats: Vec<_> = rows.iter().map(|r| ref_row(r)).collect();
    let kept: Vec<bool> = y.iter().map(|&t| t != o.ignore_index).collect();
    let z: Vec<f64> = stats
        .iter()
        .zip(&kept)
        .map(|(st, &k)| if k { o.z_loss * st.0 * st.0 } else { 0.0 })
        .collect();
    let m = kept.iter().filter(|&&k| k).count() as f64;
    let (ce_scale, z_scale) = match (o.reduction, o.denominator) {
        (_, Some(d)) => (1.0 / d, 1.0 / d),
        ("mean", None) => (1.0, 1.0 / m),
        _ => (1.0, 1.0),
    };
    let zsum = ksum(z.iter().cloned());
    let loss = match o.reduction {
        "none" => losses.iter().zip(&z).map(|(l, z)| l + z).collect(),
        _ => vec![reduced * ce_scale + zsum * z_scale],
    };
    // The z term's gradient: 2·z_loss·lse·p_j per kept row.
    let zg: Vec<Vec<f64>> = rows
        .iter()
        .zip(&stats)
        .zip(&kept)
        .map(|((r, st), &k)| {
            r.iter()
                .map(|v| match k {
                    true => 2.0 * o.z_loss * st.0 * (v - st.0).exp() * z_scale,
                    false => 0.0,
                })
                .collect()
        })
        .collect();
    let zg = scatter_rows(&zg, shape);
    let grad = (0..x.len())
        .map(|i| chain[i] * (g[i] * ce_scale + zg[i]))
        .collect();
    Out {
        loss,
        z_term: (o.z_loss != 0.0).then_some(zsum * z_scale),
        grad,
        lse: stats.iter().map(|s| s.0).collect(),
        entropy: stats.iter().map(|s| s.1).collect(),
        argmax: stats.iter().map(|s| s.2).collect(),
        z,
    }
}

// ---------------------------------------------------------------------------------
// Running the library

fn to_f64<A: Float>(v: &[A]) -> Vec<f64> {
    v.iter().map(|a| a.to_f64()).collect()
}

/// `cross_entropy_stats_into` with every row output, the gradient in the compute
/// type, and upstream gradient `go` (default 1).
fn run_lib<T: Element>(
    x: &[T],
    shape: &[usize],
    target: Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    go: Option<&[T::Acc]>,
) -> Result<Out, Error> {
    let rows: usize = match shape.len() {
        1 => 1,
        _ => shape[0] * shape[2..].iter().product::<usize>(),
    };
    let zero = T::Acc::ZERO;
    let mut loss = vec![
        zero;
        if opts.reduction == Reduction::None {
            rows
        } else {
            1
        }
    ];
    let mut grad = vec![zero; x.len()];
    let (mut lse, mut ent, mut arg, mut z) = (
        vec![zero; rows],
        vec![zero; rows],
        vec![0i64; rows],
        vec![zero; rows],
    );
    let mut g = GradOut::<T>::new_acc(&mut grad);
    if let Some(go) = go {
        g = g.grad_output(go);
    }
    let out = RowOutputs::new()
        .lse(&mut lse)
        .entropy(&mut ent)
        .argmax(&mut arg)
        .z(&mut z);
    let zt = cross_entropy_stats_into(x, shape, target, opts, &mut loss, Some(g), out)?;
    Ok(Out {
        loss: to_f64(&loss),
        z_term: zt.map(|v| v.to_f64()),
        grad: to_f64(&grad),
        lse: to_f64(&lse),
        entropy: to_f64(&ent),
        argmax: arg,
        z: to_f64(&z),
    })
}

fn compare(what: &str, got: &Out, want: &Out, tol: Tol, with_loss: bool) {
    if with_loss {
        tol.check_all(&format!("{what} loss"), &got.loss, &want.loss);
        if !want.grad.is_empty() {
            tol.check_all(&format!("{what} grad"), &got.grad, &want.grad);
        }
        match (got.z_term, want.z_term) {
            (Some(g), Some(w)) => tol.check(&format!("{what} z term"), g, w, w.abs().max(1.0)),
            (g, w) => assert_eq!(g.is_some(), w.is_some(), "{what} z term"),
        }
    }
    tol.check_all(&format!("{what} lse"), &got.lse, &want.lse);
    tol.check_all(&format!("{what} entropy"), &got.entropy, &want.entropy);
    tol.check_all(&format!("{what} z"), &got.z, &want.z);
    assert_eq!(got.argmax, want.argmax, "{what} argmax");
}

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

/// Logits rounded to `T`, and the same values in f64.
fn rounded<T: Element>(x: &[f64], from: impl Fn(f64) -> T) -> (Vec<T>, Vec<f64>) {
    let t: Vec<T> = x.iter().map(|&v| from(v)).collect();
    let back = t.iter().map(|v| v.to_acc().to_f64()).collect();
    (t, back)
}

/// Random class-index targets in the row shape, a few of them ignored.
fn targets(rng: &mut Rng, rows: usize, classes: usize, ignore_index: i64) -> Vec<i64> {
    (0..rows)
        .map(|r| match r % 4 == 1 {
            true => ignore_index,
            false => rng.below(classes) as i64,
        })
        .collect()
}

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

// ---------------------------------------------------------------------------------
// nll_loss, linear cross-entropy, shards

#[test]
fn nll_denominator() {
    let logp = [-0.5f64, -1.5, -2.0, -0.25, -3.0, -0.1];
    let w = [2.0, 1.0, 0.5];
    let opts = NllLossOptions::default().weight(&w).denominator(4.0);
    let (loss, grad) = nll_loss_with_grad(&logp, &[2, 3], &[1i64, 0][..], &opts).unwrap();
    assert!((loss.item().unwrap() - (1.0 * 1.5 + 2.0 * 0.25) / 4.0).abs() < 1e-15);
    assert_eq!(grad, [0.0, -0.25, 0.0, -0.5, 0.0, 0.0]);
    let (loss, grad) = nll_loss_with_grad(&logp, &[2, 3], &[-100i64, -100][..], &opts).unwrap();
    assert_eq!((loss.item(), grad), (Some(0.0), vec![0.0; 6]));
    let err = nll_loss_with_grad(
        &logp,
        &[2, 3],
        &[1i64, 0][..],
        &NllLossOptions::default()
            .denominator(4.0)
            .reduction(Reduction::Sum),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "denominator",
                ..
            }
        ),
        "{err}"
    );
}

/// Linear cross-entropy against the reference on `h·Wᵀ + b` formed in f64, with
/// several row blocks (a small scratch budget), in f32 and bf16.
#[test]
fn linear_rows_scale_and_denominator() {
    let (n, d, v) = (37, 8, 29);
    let mut rng = Rng::new(17);
    let h = rng.logits(n * d, 1.0);
    let w = rng.logits(v * d, 0.5);
    let b = rng.logits(v, 0.5);
    let y = targets(&mut rng, n, v, -100);
    let run = |hx: &[f64], wx: &[f64], bx: &[f64], o: &Opts<'_>, half: bool| -> (Out, Out) {
        let logits: Vec<f64> = (0..n * v)
            .map(|i| bx[i % v] + ksum((0..d).map(|k| hx[(i / v) * d + k] * wx[(i % v) * d + k])))
            .collect();
        let want = ref_call(&logits, &[n, v], &y, o);
        let opts = LinearCrossEntropyOptions::from(o.library::<f32>(None)).scratch_bytes(4096);
        let mut loss = vec![0.0f32; if o.reduction == "none" { n } else { 1 }];
        let mut dh = vec![0.0f32; n * d];
        let (mut lse, mut ent, mut arg, mut z) = (
            vec![0.0f32; n],
            vec![0.0f32; n],
            vec![0i64; n],
            vec![0.0f32; n],
        );
        let rows = RowOutputs::new()
            .lse(&mut lse)
            .entropy(&mut ent)
            .argmax(&mut arg)
            .z(&mut z);
        let g = LinearGradOut::new().hidden(&mut dh);
        let zt = if half {
            let cvt = |s: &[f64]| s.iter().map(|&v| bf16::from_f64(v)).collect::<Vec<_>>();
            let (hb, wb, bb) = (cvt(hx), cvt(wx), cvt(bx));
            let inputs = LinearInputs::new(&hb, [n, d], &wb, [v, d]).linear_bias(&bb);
            linear_cross_entropy_stats_into(inputs, &y[..], &opts, &mut loss, Some(g), rows)
        } else {
            let cvt = |s: &[f64]| s.iter().map(|&v| v as f32).collect::<Vec<_>>();
            let (hf, wf, bf) = (cvt(hx), cvt(wx), cvt(bx));
            let inputs = LinearInputs::new(&hf, [n, d], &wf, [v, d]).linear_bias(&bf);
            linear_cross_entropy_stats_into(inputs, &y[..], &opts, &mut loss, Some(g), rows)
        }
        .unwrap();
        // dh = G·W from the reference's logit gradient.
        let dh_want: Vec<f64> = (0..n * d)
            .map(|i| ksum((0..v).map(|c| want.grad[(i / d) * v + c] * wx[c * d + i % d])))
            .collect();
        let got = Out {
            loss: to_f64(&loss),
            z_term: zt.map(f64::from),
            grad: to_f64(&dh),
            lse: to_f64(&lse),
            entropy: to_f64(&ent),
            argmax: arg,
            z: to_f64(&z),
        };
        (
            got,
            Out {
                grad: dh_want,
                ..want
            },
        )
    };
    let t = Tol::f32_rows(v * d);
    let tol = Tol {
        abs: 8.0 * t.abs,
        rel: 8.0 * t.rel,
    };
    for o in [
        Opts {
            scale: 0.7,
            softcap: Some(3.0),
            z_loss: 0.01,
            denominator: Some(50.0),
            ..Opts::default()
        },
        Opts {
            scale: 1.9,
            eps: 0.1,
            reduction: "none",
            ..Opts::default()
        },
        Opts {
            reduction: "sum",
            z_loss: 0.02,
            ..Opts::default()
        },
    ] {
        let (got, want) = run(&h, &w, &b, &o, false);
        compare(&format!("linear f32 {o:?}"), &got, &want, tol, true);
        let r = |s: &[f64]| {
            s.iter()
                .map(|&v| bf16::from_f64(v).to_f64())
                .collect::<Vec<_>>()
        };
        let (got, want) = run(&r(&h), &r(&w), &r(&b), &o, true);
        // bf16 multiplies the logit gradient in bf16 for dh: its own bound.
        compare(
            &format!("linear bf16 {o:?}"),
            &Out {
                grad: Vec::new(),
                ..got.clone()
            },
            &Out {
                grad: Vec::new(),
                ..want.clone()
            },
            tol,
            true,
        );
        let scale = want.grad.iter().fold(1.0f64, |m, g| m.max(g.abs()));
        for (g, w) in got.grad.iter().zip(&want.grad) {
            assert!((g - w).abs() <= scale / 64.0, "bf16 dh {g} vs {w}");
        }
    }
}

/// The shard protocol honours the denominator: two class shards give the loss and
/// gradient of the unsharded call; a logit scale is refused there.
#[test]
fn shards_honour_the_denominator() {
    let mut rng = Rng::new(23);
    let x = rng.logits(3 * 6, 2.0);
    let y = [5i64, -100, 1];
    let opts = CrossEntropyOptions::<f64>::default()
        .denominator(5.0)
        .z_loss(0.01);
    let want = ref_call(
        &x,
        &[3, 6],
        &y,
        &Opts {
            denominator: Some(5.0),
            z_loss: 0.01,
            ..Opts::default()
        },
    );
    let cols = |sh: ClassShard| -> Vec<f64> {
        (0..3)
            .flat_map(|r| x[r * 6 + sh.offset..r * 6 + sh.offset + 3].to_vec())
            .collect()
    };
    let shards = [ClassShard::new(0, 6), ClassShard::new(3, 6)];
    let mut stats: Vec<_> = shards
        .iter()
        .map(|&sh| cross_entropy_shard_stats(&cols(sh), &[3, 3], &y[..], &opts, sh).unwrap())
        .collect();
    for r in 0..3 {
        let m = stats
            .iter_mut()
            .map(|s| s.max_mut()[r])
            .fold(f64::NEG_INFINITY, f64::max);
        stats.iter_mut().for_each(|s| s.max_mut()[r] = m);
    }
    let len = stats[0].sums_mut().len();
    let sums: Vec<f64> = (0..len)
        .map(|k| stats.iter_mut().map(|s| s.sums_mut()[k]).sum())
        .collect();
    stats
        .iter_mut()
        .for_each(|s| s.sums_mut().copy_from_slice(&sums));
    let tol = Tol::f64_rows(6);
    for (s, sh) in stats.iter_mut().zip(shards) {
        let mut loss = [0.0];
        // Counts that would be wrong for this batch: the denominator replaces them.
        s.finish([1.0, 1.0], &mut loss).unwrap();
        tol.check("shard loss", loss[0], want.loss[0], 1.0);
        let mut g = vec![0.0; 9];
        cross_entropy_shard_grad_into(
            &cols(sh),
            &[3, 3],
            &y[..],
            &opts,
            sh,
            s,
            GradOut::new(&mut g),
        )
        .unwrap();
        for r in 0..3 {
            for c in 0..3 {
                tol.check(
                    "shard grad",
                    g[r * 3 + c],
                    want.grad[r * 6 + sh.offset + c],
                    1.0,
                );
            }
        }
    }
    let err = cross_entropy_shard_stats(
        &cols(shards[0]),
        &[3, 3],
        &y[..],
        &opts.logit_scale(2.0),
        shards[0],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "logit_scale",
                ..
            }
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Errors

#[test]
fn bad_values_are_typed_errors() {
    let x = [0.5f32, 1.0, -1.0, 2.0];
    let y = [1i64, 0];
    let mut loss = [0.0f32];
    let call = |opts: CrossEntropyOptions<'_, f32>| {
        let mut l = vec![
            0.0f32;
            if opts.reduction == Reduction::None {
                2
            } else {
                1
            }
        ];
        cross_entropy_into(&x, &[2, 2], &y[..], &opts, &mut l, None).unwrap_err()
    };
    for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = call(CrossEntropyOptions::default().logit_scale(s));
        assert!(
            matches!(
                &err,
                Error::InvalidArgument {
                    name: "logit_scale",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&s.to_string()), "{err}");
    }
    for d in [0.0, -2.0, f64::NAN, f64::NEG_INFINITY] {
        let err = call(CrossEntropyOptions::default().denominator(d));
        assert!(
            matches!(
                &err,
                Error::InvalidArgument {
                    name: "denominator",
                    ..
                }
            ),
            "{err}"
        );
    }
    for red in [Reduction::Sum, Reduction::None] {
        let err = call(
            CrossEntropyOptions::default()
                .denominator(2.0)
                .reduction(red),
        );
        assert!(
            matches!(
                &err,
                Error::InvalidArgument {
                    name: "denominator",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("with reduction"), "{err}");
    }
    // Row outputs of the wrong length name themselves; nothing is written.
    let opts = CrossEntropyOptions::default();
    let (mut lse, mut ent, mut arg, mut z) = ([7.0f32; 3], [7.0f32; 1], [7i64; 2], [7.0f32; 0]);
    for (rows, name) in [
        (RowOutputs::new().lse(&mut lse[..]), "lse"),
        (RowOutputs::new().entropy(&mut ent[..]), "entropy"),
        (RowOutputs::new().argmax(&mut arg[..1]), "argmax"),
        (RowOutputs::new().z(&mut z[..]), "z"),
    ] {
        let err = cross_entropy_stats_into(&x, &[2, 2], &y[..], &opts, &mut loss, None, rows)
            .unwrap_err();
        assert!(
            matches!(err, Error::OutputLength { name: n, expected: 2, .. } if n == name),
            "{err}"
        );
    }
    assert_eq!((lse, ent, arg, loss), ([7.0; 3], [7.0; 1], [7; 2], [0.0]));
    // Linear: the same checks.
    let (h, w) = ([1.0f32, 0.0], [1.0f32, 2.0]);
    let inputs = LinearInputs::new(&h, [2, 1], &w, [2, 1]);
    let mut short = [0.0f32; 1];
    let err = linear_cross_entropy_stats_into(
        inputs,
        &y[..],
        &LinearCrossEntropyOptions::default(),
        &mut loss,
        None,
        RowOutputs::new().lse(&mut short),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::OutputLength { name: "lse", .. }),
        "{err}"
    );
    let err = linear_cross_entropy_stats_into(
        inputs,
        &y[..],
        &LinearCrossEntropyOptions::default().logit_scale(-1.0),
        &mut loss,
        None,
        RowOutputs::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "logit_scale",
                ..
            }
        ),
        "{err}"
    );
    // Settings carry both into every option set; nll refuses a logit scale.
    let s = CrossEntropySettings::default()
        .logit_scale(2.0)
        .denominator(8.0);
    assert_eq!(s.options::<f32>(None).logit_scale, 2.0);
    assert_eq!(
        s.linear_options::<f32>(None, 1 << 20)
            .cross_entropy
            .denominator,
        Some(8.0)
    );
    let err = s.nll_options::<f32>(None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "logit_scale",
                ..
            }
        ),
        "{err}"
    );
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
