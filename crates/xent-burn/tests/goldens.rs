//! Every xent-burn loss against the PyTorch goldens of `fixtures/torch/` (the files
//! the other crates test against), loss and gradients, the gradients always taken
//! through burn's `backward()` with the case's upstream gradient
//! (`(loss · grad_output).sum().backward()`). Each case runs on xent's kernels (Flex
//! and NdArray, `f32` and `f64`) and on the composed fallback (Flex), so the two paths
//! are checked against the same reference and so against each other.

use std::path::PathBuf;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use serde_json::Value;
use xent_burn::{
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
    cross_entropy_with_probs, js_div, js_div_with_logits, kl_div, linear_cross_entropy,
    BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions, CrossEntropyOptions,
    Implementation, JsDivOptions, KlDivOptions, KlReduction, Reduction,
};

/// One way of running a case: backend, dtype, implementation, and the tolerance.
///
/// `rel` bounds `|got − want| ≤ rel·max(|want|, 1)` for losses and
/// `≤ rel·max_i |want_i|` for gradients (whose entries cancel). The goldens are
/// PyTorch's `f64` results on inputs exact in `f32`: an `f32` run rounds each `exp`
/// and sum (2⁻²³ per operation over rows of at most a few hundred classes, far below
/// 1e-5); `f64` the same over 2⁻⁵². The composed path in `f64` rounds differently
/// from xent (max-shift and `log` of a sum instead of xent's online rescaling), hence
/// a looser bound: 1e-7, as Flex's `f64` `tanh` (soft-capping) is off by up to 1.5e-8
/// relative on these cases; any formula mistake is 1e-2 or more.
struct Run {
    what: &'static str,
    device: Device,
    dtype: DType,
    implementation: Implementation,
    rel: f64,
}

fn runs() -> Vec<Run> {
    // NdArray is deprecated by burn in favour of Flex; xent-burn supports both.
    #[allow(deprecated)]
    let (flex, nd) = (Device::flex().autodiff(), Device::ndarray().autodiff());
    let run = |what, device: &Device, dtype, implementation, rel| Run {
        what,
        device: device.clone(),
        dtype,
        implementation,
        rel,
    };
    vec![
        run(
            "flex f32 kernels",
            &flex,
            DType::F32,
            Implementation::Auto,
            1e-5,
        ),
        run(
            "flex f64 kernels",
            &flex,
            DType::F64,
            Implementation::Auto,
            1e-11,
        ),
        run(
            "ndarray f32 kernels",
            &nd,
            DType::F32,
            Implementation::Auto,
            1e-5,
        ),
        run(
            "ndarray f64 kernels",
            &nd,
            DType::F64,
            Implementation::Auto,
            1e-11,
        ),
        run(
            "flex f32 composed",
            &flex,
            DType::F32,
            Implementation::Composed,
            1e-5,
        ),
        run(
            "flex f64 composed",
            &flex,
            DType::F64,
            Implementation::Composed,
            1e-7,
        ),
    ]
}

fn load(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/torch")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// Numbers (a list, or one), with infinities and NaN spelled as strings.
fn floats(v: &Value) -> Vec<f64> {
    let one = |x: &Value| match x {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        x => x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")),
    };
    match v.as_array() {
        Some(a) => a.iter().map(one).collect(),
        None => vec![one(v)],
    }
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// A float tensor of the run's dtype (a leaf that tracks its gradient).
fn leaf<const D: usize>(values: &[f64], shape: &[usize], run: &Run) -> Tensor<D> {
    let data = match run.dtype {
        DType::F64 => TensorData::new(values.to_vec(), shape.to_vec()),
        _ => TensorData::new(
            values.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            shape.to_vec(),
        ),
    };
    let t = Tensor::<D>::from_data(data, (&run.device, run.dtype));
    assert_eq!(
        t.dtype(),
        run.dtype,
        "{}: the tensor keeps its dtype",
        run.what
    );
    t.require_grad()
}

fn flat<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn close(run: &Run, what: &str, got: &[f64], want: &[f64], grad: bool) {
    assert_eq!(got.len(), want.len(), "{} {what}: length", run.what);
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // The composed path differentiates `0·ln 0 = 0` as 0·(finite): its gradient at
        // a zero probability is finite where PyTorch's is infinite (documented in
        // `composed.rs`); the kernels match PyTorch there.
        if grad && w.is_infinite() && run.implementation == Implementation::Composed {
            continue;
        }
        if !w.is_finite() {
            assert!(
                (w.is_nan() && g.is_nan()) || g == w,
                "{} {what}[{i}]: got {g}, want {w}",
                run.what
            );
            continue;
        }
        // Gradients of equal distributions are 0 exactly, and PyTorch's are rounding
        // noise (~1e-17), the composed path's f32 cancellation noise ~3e-8: the gradient scale
        // has a floor of 0.1.
        let bound = run.rel
            * if grad {
                scale.max(0.1)
            } else {
                w.abs().max(1.0)
            };
        assert!(
            (g - w).abs() <= bound,
            "{} {what}[{i}]: got {g}, want {w}",
            run.what
        );
    }
}

fn reduction(v: &Value) -> Reduction {
    v.as_str().unwrap().parse().unwrap()
}

/// `(loss · grad_output).sum().backward()`: the upstream gradient of the case (`null`:
/// `loss.backward()`, upstream gradient 1).
fn backward(loss: Tensor<1>, case: &Value, run: &Run) -> burn::tensor::Gradients {
    if case["grad_output"].is_null() {
        return loss.backward();
    }
    let g = floats(&case["grad_output"]);
    let n = g.len();
    let g = Tensor::<1>::from_data(TensorData::new(g, vec![n]), &run.device).cast(loss.dtype());
    (loss * g).sum().backward()
}

fn ce_options(case: &Value, run: &Run) -> CrossEntropyOptions {
    let o = &case["options"];
    let mut opts = CrossEntropyOptions::default()
        .ignore_index(o["ignore_index"].as_i64().unwrap())
        .label_smoothing(o["label_smoothing"].as_f64().unwrap())
        .reduction(reduction(&o["reduction"]))
        .implementation(run.implementation);
    if let Some(z) = o.get("z_loss").and_then(Value::as_f64) {
        opts = opts.z_loss(z);
    }
    if let Some(c) = o.get("softcap").and_then(Value::as_f64) {
        opts = opts.softcap(c);
    }
    if !o["weight"].is_null() {
        let w = floats(&o["weight"]);
        let n = w.len();
        opts = opts.weight(Tensor::<1>::from_data(
            TensorData::new(w, vec![n]),
            &run.device,
        ));
    }
    opts
}

fn ce_case<const D: usize, const DT: usize>(case: &Value, run: &Run) {
    let name = case["name"].as_str().unwrap();
    let shape = dims(&case["shape"]);
    let x = leaf::<D>(&floats(&case["input"]), &shape, run);
    let opts = ce_options(case, run);
    let t = &case["target"];
    let loss = if t["kind"] == "indices" {
        let values: Vec<i64> = t["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let mut tdims: Vec<usize> = if D == 1 {
            vec![1]
        } else {
            [&shape[..1], &shape[2..]].concat()
        };
        if tdims.is_empty() {
            tdims.push(1);
        }
        let y = Tensor::<DT, Int>::from_data(TensorData::new(values, tdims), &run.device);
        cross_entropy(x.clone(), y, &opts)
    } else {
        let p = leaf::<D>(&floats(&t["values"]), &shape, run);
        cross_entropy_with_probs(x.clone(), p, &opts)
    }
    .unwrap_or_else(|e| panic!("{name} ({}): {e}", run.what));
    let what = format!("{name} loss");
    close(
        run,
        &what,
        &flat(loss.clone()),
        &floats(&case["expected"]["output"]),
        false,
    );
    let grads = backward(loss, case, run);
    let g = x
        .grad(&grads)
        .unwrap_or_else(|| panic!("{name}: no gradient"));
    close(
        run,
        &format!("{name} grad"),
        &flat(g),
        &floats(&case["expected"]["grad"]),
        true,
    );
}

#[test]
fn cross_entropy_matches_torch() {
    let mut cases = load("cross_entropy.json");
    cases.extend(load("cross_entropy_large_vocab.json"));
    for run in runs() {
        for case in cases.iter().filter(|c| c["op"] == "cross_entropy") {
            match case["shape"].as_array().unwrap().len() {
                1 => ce_case::<1, 1>(case, &run),
                2 => ce_case::<2, 1>(case, &run),
                3 => ce_case::<3, 2>(case, &run),
                4 => ce_case::<4, 3>(case, &run),
                r => panic!("rank {r}"),
            }
        }
    }
}

#[test]
fn linear_cross_entropy_matches_torch() {
    for run in runs() {
        for case in load("linear/linear_cross_entropy.json") {
            let name = case["name"].as_str().unwrap();
            let u = |k: &str| case[k].as_u64().unwrap() as usize;
            let (n, d, v) = (u("n"), u("d"), u("v"));
            let h = leaf::<2>(&floats(&case["hidden"]), &[n, d], &run);
            let w = leaf::<2>(&floats(&case["linear_weight"]), &[v, d], &run);
            let b = (!case["linear_bias"].is_null())
                .then(|| leaf::<1>(&floats(&case["linear_bias"]), &[v], &run));
            let y: Vec<i64> = case["target"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, vec![n]), &run.device);
            let opts = ce_options(&case, &run);
            let loss = linear_cross_entropy(h.clone(), w.clone(), b.clone(), y, &opts)
                .unwrap_or_else(|e| panic!("{name} ({}): {e}", run.what));
            let e = &case["expected"];
            close(
                &run,
                &format!("{name} loss"),
                &flat(loss.clone()),
                &floats(&e["loss"]),
                false,
            );
            let grads = backward(loss, &case, &run);
            close(
                &run,
                &format!("{name} dh"),
                &flat(h.grad(&grads).unwrap()),
                &floats(&e["grad_hidden"]),
                true,
            );
            close(
                &run,
                &format!("{name} dW"),
                &flat(w.grad(&grads).unwrap()),
                &floats(&e["grad_linear_weight"]),
                true,
            );
            if let Some(b) = b {
                close(
                    &run,
                    &format!("{name} db"),
                    &flat(b.grad(&grads).unwrap()),
                    &floats(&e["grad_linear_bias"]),
                    true,
                );
            }
        }
    }
}

/// The elementwise and divergence losses: `input`, `target` of one shape.
fn family_case<const D: usize>(case: &Value, run: &Run) {
    let name = case["name"].as_str().unwrap();
    let op = case["op"].as_str().unwrap();
    // A 0-d case (burn has no rank-0 tensors) runs as one element.
    let shape = match dims(&case["shape"]) {
        s if s.is_empty() => vec![1],
        s => s,
    };
    let a = leaf::<D>(&floats(&case["input"]), &shape, run);
    let b = leaf::<D>(&floats(&case["target"]), &shape, run);
    let o = &case["options"];
    let weight = |k: &str| {
        (!o[k].is_null()).then(|| {
            let w = floats(&o[k]);
            let n = w.len();
            Tensor::<1>::from_data(TensorData::new(w, vec![n]), &run.device)
        })
    };
    let imp = run.implementation;
    let loss = match op {
        "binary_cross_entropy" => {
            let mut opts = BinaryCrossEntropyOptions::default()
                .reduction(reduction(&o["reduction"]))
                .implementation(imp);
            opts.weight = weight("weight");
            binary_cross_entropy(a.clone(), b.clone(), &opts)
        }
        "binary_cross_entropy_with_logits" => {
            let mut opts = BinaryCrossEntropyWithLogitsOptions::default()
                .reduction(reduction(&o["reduction"]))
                .implementation(imp);
            opts.base.weight = weight("weight");
            opts.pos_weight = weight("pos_weight");
            binary_cross_entropy_with_logits(a.clone(), b.clone(), &opts)
        }
        "kl_div" => {
            let r: KlReduction = o["reduction"].as_str().unwrap().parse().unwrap();
            let opts = KlDivOptions::default()
                .reduction(r)
                .log_target(o["log_target"].as_bool().unwrap())
                .implementation(imp);
            kl_div(a.clone(), b.clone(), &opts)
        }
        "js_div" | "js_div_with_logits" => {
            let opts = JsDivOptions::default()
                .reduction(reduction(&o["reduction"]))
                .implementation(imp);
            if name.starts_with("jsl_") {
                js_div_with_logits(a.clone(), b.clone(), &opts)
            } else {
                js_div(a.clone(), b.clone(), &opts)
            }
        }
        other => panic!("unknown op {other}"),
    }
    .unwrap_or_else(|e| panic!("{name} ({}): {e}", run.what));
    let e = &case["expected"];
    close(
        run,
        &format!("{name} loss"),
        &flat(loss.clone()),
        &floats(&e["output"]),
        false,
    );
    let grads = backward(loss, case, run);
    // PyTorch's gradient is undefined (null) at zero probabilities of js_div.
    if !e["grad"].is_null() {
        let g = a
            .grad(&grads)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        close(
            run,
            &format!("{name} grad"),
            &flat(g),
            &floats(&e["grad"]),
            true,
        );
    }
    if e.get("grad_target").is_some_and(|g| !g.is_null()) {
        let g = b
            .grad(&grads)
            .unwrap_or_else(|| panic!("{name}: no target gradient"));
        close(
            run,
            &format!("{name} grad_target"),
            &flat(g),
            &floats(&e["grad_target"]),
            true,
        );
    }
}

#[test]
fn binary_and_divergence_losses_match_torch() {
    for run in runs() {
        for file in [
            "family/binary_cross_entropy.json",
            "family/binary_cross_entropy_with_logits.json",
            "family/kl_div.json",
            "family/js_div.json",
        ] {
            for case in load(file) {
                match case["shape"].as_array().unwrap().len() {
                    0 | 1 => family_case::<1>(&case, &run),
                    2 => family_case::<2>(&case, &run),
                    3 => family_case::<3>(&case, &run),
                    r => panic!("rank {r}"),
                }
            }
        }
    }
}
