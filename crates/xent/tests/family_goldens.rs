//! The binary and divergence losses against PyTorch: every case in
//! `fixtures/torch/family/*.json`, run through xent in `f32` and `f64` and compared
//! with PyTorch's float64 forward and autograd backward; central-difference gradient
//! checks on the differentiable cases; then unit tests of the class weights and of
//! every error path.
//!
//! The fixtures and the script that writes them (`fixtures/torch/make_family_goldens.py`,
//! which needs PyTorch and is never run by CI) are committed together; regenerate with
//! `.venv/bin/python fixtures/torch/make_family_goldens.py` from the repo root.
//!
//! Every golden test collects all failing cases before it panics, so one run lists
//! them all; each message names the file, the case, the precision and the element.

use std::path::{Path, PathBuf};

use serde_json::Value;
use xent::{
    binary_cross_entropy, binary_cross_entropy_into, binary_cross_entropy_with_grad,
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_into,
    binary_cross_entropy_with_logits_with_grad, class_counts, class_weights,
    class_weights_from_counts, gradcheck, js_div, js_div_into, js_div_with_grad,
    js_div_with_logits, js_div_with_logits_into, js_div_with_logits_with_grad, kl_div, kl_div_into,
    kl_div_with_grad, log_sigmoid, log_sigmoid_backward_into, log_sigmoid_into, pos_weight,
    pos_weight_from_counts, sigmoid, sigmoid_backward_into, sigmoid_into,
    BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions, ClassWeightOptions,
    ClassWeighting, Error, Float, GradMode, GradOut, JsDivOptions, KlDivOptions, KlReduction,
    Reduction,
};

// ---------------------------------------------------------------------------------
// Tolerances

/// How close xent must be to PyTorch's float64 result, per precision.
///
/// The inputs are exactly representable in `f32`, so PyTorch's float64 value is the
/// reference for both precisions and the error is xent's own rounding.
///
/// - Values (losses, sigmoid outputs): `|got − expected| ≤ rel·max(|expected|, 1)`:
///   relative where the value is large, with an absolute floor `rel·1` for values near
///   0 (a confident element's loss, a JS of nearly equal rows) whose rounding error is
///   set by the `O(1)` terms they are computed from.
/// - Gradients: `|got − expected| ≤ rel·max(max_i |expected_i|, GRAD_FLOOR)` over the
///   case's finite entries: the error of a gradient vector is relative to its largest
///   entry. The floor is for gradients that vanish — equal distributions, saturated
///   softmax rows (`e^{−100}`) — whose entries are formed from terms of size up to
///   `p ≤ 1`: there PyTorch's composition itself leaves rounding noise (~1e-17) where
///   the exact gradient is 0, and an f32 result is a subnormal.
/// - NaN must be NaN and `±inf` the same infinity, in both rules.
#[derive(Debug, Clone, Copy)]
struct Tolerance {
    rel: f64,
}

impl Tolerance {
    /// `f32`: ~80 ulps (2⁻²³ ≈ 1.2e-7) of headroom for a `log1p`/`exp` and a row sum.
    const F32: Tolerance = Tolerance { rel: 1e-5 };
    /// `f64`: the same headroom over 2⁻⁵² ≈ 2.2e-16.
    const F64: Tolerance = Tolerance { rel: 1e-12 };

    fn for_type<T: Float>() -> Tolerance {
        if T::NAME == "float32" {
            Tolerance::F32
        } else {
            Tolerance::F64
        }
    }
    fn value_bound(self, expected: f64) -> f64 {
        self.rel * expected.abs().max(1.0)
    }
    /// The scale below which a gradient counts as vanishing.
    const GRAD_FLOOR: f64 = 1e-3;

    fn grad_bound(self, scale: f64) -> f64 {
        self.rel * scale.max(Self::GRAD_FLOOR)
    }
}

/// The finite-difference check ([`xent::gradcheck`] in `f64`, step `h = 1e-6`) passes
/// when `max_abs_error ≤ atol + rtol·max_i |analytic_i|`.
///
/// Error model: truncation `h²·|f'''|/6` — largest for BCE at `p = 0.01`, where
/// `f''' ≈ 2/p³ = 2e6` per element, divided by the element count ≥ 4 under `mean`:
/// ≈ 1e-7; rounding of the two loss values `ε·|f|/h ≈ 2.2e-10·|f|` with `|f| ≤ 100`.
/// So `atol = 1e-6` covers both while `rtol = 1e-6` still catches any formula error
/// (those are 1e-2 and up). The cases the script marks non-differentiable (`p` at 0 or
/// 1, zero targets or probabilities, `|x| > 50`, non-finite values) are not
/// finite-differenced; their gradients are checked against PyTorch only.
#[derive(Debug, Clone, Copy)]
struct GradcheckTolerance {
    atol: f64,
    rtol: f64,
    step: f64,
}

const GRADCHECK: GradcheckTolerance = GradcheckTolerance {
    atol: 1e-6,
    rtol: 1e-6,
    step: 1e-6,
};

// ---------------------------------------------------------------------------------
// Fixtures

/// One golden case, as `make_family_goldens.py` documents it.
#[derive(Debug, Clone)]
struct Case {
    /// `file:name`, used in every message.
    id: String,
    op: String,
    shape: Vec<usize>,
    input: Vec<f64>,
    target: Vec<f64>,
    reduction: String,
    weight: Option<Vec<f64>>,
    pos_weight: Option<Vec<f64>>,
    log_target: bool,
    grad_output: Option<Vec<f64>>,
    gradcheck: bool,
    output: Vec<f64>,
    output_shape: Vec<usize>,
    grad: Option<Vec<f64>>,
    grad_target: Option<Vec<f64>>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/torch/family")
}

/// A float from JSON: a number, or one of the strings `inf`, `-inf`, `nan`.
fn float(v: &Value, what: &str) -> f64 {
    match v {
        Value::Number(n) => n
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: bad number {n}")),
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            _ => panic!("{what}: bad float string {s:?}"),
        },
        _ => panic!("{what}: expected a float, got {v}"),
    }
}

fn floats(v: &Value, what: &str) -> Option<Vec<f64>> {
    if v.is_null() {
        return None;
    }
    Some(
        v.as_array()
            .unwrap_or_else(|| panic!("{what}: expected an array"))
            .iter()
            .map(|x| float(x, what))
            .collect(),
    )
}

/// Inputs are exactly representable in `f32` by construction; serde_json's default
/// float parser may be one `f64` ulp off, so snap back to the `f32` value after checking
/// that it is within that ulp.
fn f32_exact(values: Option<Vec<f64>>, what: &str) -> Option<Vec<f64>> {
    values.map(|vs| {
        vs.into_iter()
            .map(|v| {
                let s = v as f32 as f64;
                assert!(
                    s == v || v.is_nan() || (s - v).abs() <= 2.0 * f64::EPSILON * v.abs(),
                    "{what}: {v:e} is not an f32 value"
                );
                s
            })
            .collect()
    })
}

fn usizes(v: &Value, what: &str) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected an array"))
        .iter()
        .map(|x| x.as_u64().unwrap_or_else(|| panic!("{what}: bad dim {x}")) as usize)
        .collect()
}

fn load_cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixtures/torch/family exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {:?}", fixture_dir());
    let mut cases = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("readable fixture");
        let doc: Value = serde_json::from_str(&text).expect("valid JSON");
        for c in doc["cases"].as_array().expect("a cases array") {
            let id = format!("{file}:{}", c["name"].as_str().expect("a name"));
            let w = |k: &str| format!("{id}: {k}");
            let opts = &c["options"];
            let expected = &c["expected"];
            cases.push(Case {
                op: c["op"].as_str().expect("an op").to_string(),
                shape: usizes(&c["shape"], &w("shape")),
                input: f32_exact(floats(&c["input"], &w("input")), &w("input")).unwrap(),
                target: f32_exact(floats(&c["target"], &w("target")), &w("target"))
                    .unwrap_or_default(),
                reduction: opts["reduction"].as_str().unwrap_or("none").to_string(),
                weight: f32_exact(floats(&opts["weight"], &w("weight")), &w("weight")),
                pos_weight: f32_exact(
                    floats(&opts["pos_weight"], &w("pos_weight")),
                    &w("pos_weight"),
                ),
                log_target: opts["log_target"].as_bool().unwrap_or(false),
                grad_output: f32_exact(
                    floats(&c["grad_output"], &w("grad_output")),
                    &w("grad_output"),
                ),
                gradcheck: c["gradcheck"].as_bool().expect("a gradcheck flag"),
                output: floats(&expected["output"], &w("output")).expect("an output"),
                output_shape: usizes(&expected["output_shape"], &w("output_shape")),
                grad: floats(&expected["grad"], &w("grad")),
                grad_target: floats(&expected["grad_target"], &w("grad_target")),
                id,
            });
        }
    }
    cases
}

// ---------------------------------------------------------------------------------
// Running a case through xent

fn cast<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn widen<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn reduction(s: &str) -> Reduction {
    s.parse().expect("a reduction")
}

/// What xent computed for a case, widened to `f64`.
struct Outcome {
    output: Vec<f64>,
    grad: Vec<f64>,
    grad_target: Option<Vec<f64>>,
}

/// Runs `case` in `T` through the `_into` form with the case's upstream gradient;
/// with `mode = Accumulate` the gradient buffers start at `prefill`.
fn run<T: Float>(
    case: &Case,
    input: &[f64],
    target: &[f64],
    mode: GradMode,
    prefill: f64,
) -> Result<Outcome, Error> {
    let x: Vec<T> = cast(input);
    let t: Vec<T> = cast(target);
    let go: Option<Vec<T>> = case.grad_output.as_deref().map(cast);
    let w: Option<Vec<T>> = case.weight.as_deref().map(cast);
    let pw: Option<Vec<T>> = case.pos_weight.as_deref().map(cast);
    let shape = &case.shape;
    let mut out = vec![T::ZERO; case.output.len()];
    let mut grad = vec![T::from_f64(prefill); x.len()];
    let mut grad_t = vec![T::from_f64(prefill); x.len()];
    let gout = |g| grad_out(g, go.as_deref(), mode);
    let mut has_target_grad = false;
    match case.op.as_str() {
        "sigmoid" | "log_sigmoid" => {
            let ones = vec![T::ONE; x.len()];
            let gy = go.as_deref().unwrap_or(&ones);
            if case.op == "sigmoid" {
                sigmoid_into(&x, &mut out)?;
                sigmoid_backward_into(&out, gy, &mut grad)?;
            } else {
                log_sigmoid_into(&x, &mut out)?;
                log_sigmoid_backward_into(&x, gy, &mut grad)?;
            }
        }
        "binary_cross_entropy" => {
            let mut opts =
                BinaryCrossEntropyOptions::default().reduction(reduction(&case.reduction));
            if let Some(w) = w.as_deref() {
                opts = opts.weight(w);
            }
            binary_cross_entropy_into(&x, shape, &t, &opts, &mut out, Some(gout(&mut grad)))?;
        }
        "binary_cross_entropy_with_logits" => {
            let mut opts = BinaryCrossEntropyWithLogitsOptions::default()
                .reduction(reduction(&case.reduction));
            if let Some(w) = w.as_deref() {
                opts = opts.weight(w);
            }
            if let Some(pw) = pw.as_deref() {
                opts = opts.pos_weight(pw);
            }
            binary_cross_entropy_with_logits_into(
                &x,
                shape,
                &t,
                &opts,
                &mut out,
                Some(gout(&mut grad)),
            )?;
        }
        "kl_div" => {
            let opts = KlDivOptions::default()
                .reduction(case.reduction.parse::<KlReduction>()?)
                .log_target(case.log_target);
            kl_div_into(
                &x,
                shape,
                &t,
                &opts,
                &mut out,
                Some(gout(&mut grad)),
                Some(gout(&mut grad_t)),
            )?;
            has_target_grad = true;
        }
        "js_div" | "js_div_with_logits" => {
            let opts = JsDivOptions::default().reduction(reduction(&case.reduction));
            let f = if case.op == "js_div" {
                js_div_into::<T>
            } else {
                js_div_with_logits_into::<T>
            };
            f(
                &x,
                shape,
                &t,
                &opts,
                &mut out,
                Some(gout(&mut grad)),
                Some(gout(&mut grad_t)),
            )?;
            has_target_grad = true;
        }
        op => panic!("{}: unknown op {op}", case.id),
    }
    Ok(Outcome {
        output: widen(&out),
        grad: widen(&grad),
        grad_target: has_target_grad.then(|| widen(&grad_t)),
    })
}

fn grad_out<'a, T: Float>(g: &'a mut [T], go: Option<&'a [T]>, mode: GradMode) -> GradOut<'a, T> {
    let o = GradOut::new(g).mode(mode);
    match go {
        Some(go) => o.grad_output(go),
        None => o,
    }
}

/// Runs the allocating forms (upstream gradient 1); `None` for the ops without one.
#[allow(clippy::type_complexity)]
fn run_alloc<T: Float>(
    case: &Case,
) -> Result<Option<(Vec<f64>, Vec<usize>, Vec<f64>, Option<Vec<f64>>)>, Error> {
    let x: Vec<T> = cast(&case.input);
    let t: Vec<T> = cast(&case.target);
    let w: Option<Vec<T>> = case.weight.as_deref().map(cast);
    let pw: Option<Vec<T>> = case.pos_weight.as_deref().map(cast);
    let shape = &case.shape;
    let red = reduction_or_kl(&case.reduction);
    Ok(Some(match case.op.as_str() {
        "binary_cross_entropy" => {
            let mut opts = BinaryCrossEntropyOptions::default().reduction(red.0);
            if let Some(w) = w.as_deref() {
                opts = opts.weight(w);
            }
            let plain = binary_cross_entropy(&x, shape, &t, &opts)?;
            let (l, g) = binary_cross_entropy_with_grad(&x, shape, &t, &opts)?;
            assert_eq!(bits(plain.values()), bits(l.values()), "{}", case.id);
            (widen(l.values()), l.shape().to_vec(), widen(&g), None)
        }
        "binary_cross_entropy_with_logits" => {
            let mut opts = BinaryCrossEntropyWithLogitsOptions::default().reduction(red.0);
            if let Some(w) = w.as_deref() {
                opts = opts.weight(w);
            }
            if let Some(pw) = pw.as_deref() {
                opts = opts.pos_weight(pw);
            }
            let plain = binary_cross_entropy_with_logits(&x, shape, &t, &opts)?;
            let (l, g) = binary_cross_entropy_with_logits_with_grad(&x, shape, &t, &opts)?;
            assert_eq!(bits(plain.values()), bits(l.values()), "{}", case.id);
            (widen(l.values()), l.shape().to_vec(), widen(&g), None)
        }
        "kl_div" => {
            let opts = KlDivOptions::default()
                .reduction(red.1)
                .log_target(case.log_target);
            let plain = kl_div(&x, shape, &t, &opts)?;
            let (l, g, gt) = kl_div_with_grad(&x, shape, &t, &opts)?;
            assert_eq!(bits(plain.values()), bits(l.values()), "{}", case.id);
            (
                widen(l.values()),
                l.shape().to_vec(),
                widen(&g),
                Some(widen(&gt)),
            )
        }
        "js_div" => {
            let opts = JsDivOptions::default().reduction(red.0);
            let plain = js_div(&x, shape, &t, &opts)?;
            let (l, g, gt) = js_div_with_grad(&x, shape, &t, &opts)?;
            assert_eq!(bits(plain.values()), bits(l.values()), "{}", case.id);
            (
                widen(l.values()),
                l.shape().to_vec(),
                widen(&g),
                Some(widen(&gt)),
            )
        }
        "js_div_with_logits" => {
            let opts = JsDivOptions::default().reduction(red.0);
            let plain = js_div_with_logits(&x, shape, &t, &opts)?;
            let (l, g, gt) = js_div_with_logits_with_grad(&x, shape, &t, &opts)?;
            assert_eq!(bits(plain.values()), bits(l.values()), "{}", case.id);
            (
                widen(l.values()),
                l.shape().to_vec(),
                widen(&g),
                Some(widen(&gt)),
            )
        }
        "sigmoid" => {
            let s = sigmoid(&x);
            (widen(&s), case.shape.clone(), Vec::new(), None)
        }
        "log_sigmoid" => {
            let s = log_sigmoid(&x);
            (widen(&s), case.shape.clone(), Vec::new(), None)
        }
        _ => return Ok(None),
    }))
}

fn reduction_or_kl(s: &str) -> (Reduction, KlReduction) {
    let kl: KlReduction = s.parse().expect("a reduction");
    (s.parse().unwrap_or(Reduction::Mean), kl)
}

fn bits<T: Float>(v: &[T]) -> Vec<u64> {
    v.iter().map(|x| x.to_f64().to_bits()).collect()
}

// ---------------------------------------------------------------------------------
// Comparison

/// Same non-finite class (NaN / the same infinity) or within `bound`.
fn close(got: f64, want: f64, bound: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= bound
}

fn compare_values(what: &str, got: &[f64], want: &[f64], tol: Tolerance) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !close(g, w, tol.value_bound(w)) {
            return Err(format!("{what}[{i}]: got {g:e}, expected {w:e}"));
        }
    }
    Ok(())
}

fn compare_grads(what: &str, got: &[f64], want: &[f64], tol: Tolerance) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let bound = tol.grad_bound(scale);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !close(g, w, bound) {
            return Err(format!(
                "{what}[{i}]: got {g:e}, expected {w:e} (bound {bound:e})"
            ));
        }
    }
    Ok(())
}

fn check_case<T: Float>(case: &Case) -> Result<(), String> {
    let tol = Tolerance::for_type::<T>();
    let p = T::NAME;
    let got = run::<T>(case, &case.input, &case.target, GradMode::Overwrite, 0.0)
        .map_err(|e| format!("{p}: error {e}"))?;
    compare_values(&format!("{p} output"), &got.output, &case.output, tol)?;
    if let Some(want) = &case.grad {
        compare_grads(&format!("{p} grad"), &got.grad, want, tol)?;
    }
    if let Some(want) = &case.grad_target {
        let got_t = got.grad_target.as_deref().ok_or("no target gradient")?;
        compare_grads(&format!("{p} grad_target"), got_t, want, tol)?;
    }
    Ok(())
}

fn golden_failures<T: Float>() -> Vec<String> {
    load_cases()
        .iter()
        .filter_map(|c| check_case::<T>(c).err().map(|e| format!("{}: {e}", c.id)))
        .collect()
}

// ---------------------------------------------------------------------------------
// Golden tests

#[test]
fn goldens_f64() {
    let failures = golden_failures::<f64>();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn goldens_f32() {
    let failures = golden_failures::<f32>();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_op_and_reduction_is_covered() {
    let cases = load_cases();
    for op in [
        "sigmoid",
        "log_sigmoid",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "kl_div",
        "js_div",
        "js_div_with_logits",
    ] {
        assert!(cases.iter().any(|c| c.op == op), "no case for {op}");
    }
    for red in ["none", "mean", "sum", "batchmean"] {
        assert!(
            cases.iter().any(|c| c.op == "kl_div" && c.reduction == red),
            "kl_div {red}"
        );
    }
    assert!(cases.iter().any(|c| c.pos_weight.is_some()));
    assert!(cases.iter().any(|c| c.weight.is_some()));
    assert!(cases.iter().filter(|c| c.gradcheck).count() >= 40);
}

/// The allocating forms agree bit for bit with the `_into` forms, and their loss shape
/// is PyTorch's.
#[test]
fn allocating_forms_match_into() {
    for case in load_cases().iter().filter(|c| c.grad_output.is_none()) {
        let Some((out, shape, grad, grad_t)) = run_alloc::<f64>(case).unwrap() else {
            continue;
        };
        let into = run::<f64>(case, &case.input, &case.target, GradMode::Overwrite, 0.0).unwrap();
        assert_eq!(shape, case.output_shape, "{}", case.id);
        assert_eq!(bits(&out), bits(&into.output), "{}", case.id);
        if !grad.is_empty() {
            assert_eq!(bits(&grad), bits(&into.grad), "{}", case.id);
        }
        assert_eq!(
            grad_t.map(|g| bits(&g)),
            into.grad_target.map(|g| bits(&g)),
            "{}",
            case.id
        );
    }
}

/// `GradMode::Accumulate` adds exactly what `Overwrite` writes.
#[test]
fn accumulate_adds_the_overwritten_gradient() {
    for case in load_cases() {
        let base = run::<f32>(&case, &case.input, &case.target, GradMode::Overwrite, 0.0).unwrap();
        if case.op == "sigmoid" || case.op == "log_sigmoid" {
            continue; // the backward functions have no accumulate mode
        }
        let acc = run::<f32>(&case, &case.input, &case.target, GradMode::Accumulate, 0.5).unwrap();
        let plus_half = |v: &[f64]| -> Vec<u64> {
            v.iter()
                .map(|&g| (0.5f32 + g as f32).to_bits() as u64)
                .collect()
        };
        let as_bits =
            |v: &[f64]| -> Vec<u64> { v.iter().map(|&g| (g as f32).to_bits() as u64).collect() };
        assert_eq!(as_bits(&acc.grad), plus_half(&base.grad), "{}", case.id);
        if let (Some(a), Some(b)) = (acc.grad_target, base.grad_target) {
            assert_eq!(as_bits(&a), plus_half(&b), "{}", case.id);
        }
    }
}

/// Central differences in `f64` of the loss contracted with the case's upstream
/// gradient, w.r.t. the input and (KL, JS) the target.
#[test]
fn gradcheck_differentiable_cases() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in load_cases().iter().filter(|c| c.gradcheck) {
        let go = case.grad_output.clone();
        let contract = |out: &[f64]| -> f64 {
            match &go {
                Some(g) if g.len() == out.len() => out.iter().zip(g).map(|(l, g)| l * g).sum(),
                Some(g) => out[0] * g[0],
                None => out.iter().sum(),
            }
        };
        let mut wrt: Vec<bool> = vec![false];
        if matches!(case.op.as_str(), "kl_div" | "js_div" | "js_div_with_logits") {
            wrt.push(true);
        }
        for &on_target in &wrt {
            let x0 = if on_target { &case.target } else { &case.input };
            let report = gradcheck(x0, GRADCHECK.step, |x, g| {
                let (inp, tgt) = if on_target {
                    (&case.input[..], x)
                } else {
                    (x, &case.target[..])
                };
                let o = run::<f64>(case, inp, tgt, GradMode::Overwrite, 0.0)?;
                if let Some(g) = g {
                    let src = if on_target {
                        o.grad_target.as_deref().expect("a target gradient")
                    } else {
                        &o.grad
                    };
                    g.copy_from_slice(src);
                }
                Ok(contract(&o.output))
            })
            .unwrap();
            checked += 1;
            if !report.passes(GRADCHECK.atol, GRADCHECK.rtol) {
                failures.push(format!(
                    "{} (w.r.t. {}): {report:?}",
                    case.id,
                    if on_target { "target" } else { "input" }
                ));
            }
        }
    }
    assert!(checked >= 40, "only {checked} gradchecks ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------
// Boundary gradients that PyTorch's compositions cannot give

#[test]
fn kl_target_gradient_at_zero_is_the_one_sided_limit() {
    let opts = KlDivOptions::default().reduction(KlReduction::Sum);
    let (loss, gi, gt) = kl_div_with_grad(&[-1.0f64, -0.5], &[2], &[0.0, 1.0], &opts).unwrap();
    assert_eq!(loss.item(), Some(0.5));
    assert_eq!(gi, [-0.0, -1.0]);
    assert_eq!(gt[0], f64::NEG_INFINITY);
    assert_eq!(gt[1], 1.0 + 0.5); // ln 1 + 1 − (−0.5)
}

#[test]
fn js_probability_gradients_at_zero() {
    let opts = JsDivOptions::default().reduction(Reduction::Sum);
    // Class 0: p = 0 < q; class 1: q = 0 < p; class 2: both 0.
    let (loss, gp, gq) =
        js_div_with_grad(&[0.0f64, 1.0, 0.0], &[3], &[1.0, 0.0, 0.0], &opts).unwrap();
    let ln2 = std::f64::consts::LN_2;
    assert_eq!(loss.item(), Some(ln2));
    assert_eq!(gp, [f64::NEG_INFINITY, ln2 / 2.0, ln2 / 2.0]);
    assert_eq!(gq, [ln2 / 2.0, f64::NEG_INFINITY, ln2 / 2.0]);
}

#[test]
fn js_logits_with_neg_inf_logits_is_finite() {
    let (loss, ga, gb) = js_div_with_logits_with_grad(
        &[0.0f64, f64::NEG_INFINITY],
        &[2],
        &[f64::NEG_INFINITY, 0.0],
        &JsDivOptions::default(),
    )
    .unwrap();
    assert_eq!(loss.item(), Some(std::f64::consts::LN_2));
    assert_eq!((ga, gb), (vec![0.0, 0.0], vec![0.0, 0.0]));
}

#[test]
fn js_is_symmetric_and_bounded() {
    let a = [0.3f64, -1.2, 2.5, 0.0, 1.1, -0.4];
    let b = [-2.0f64, 0.7, 0.1, 3.0, -0.5, 0.2];
    let o = JsDivOptions::default().reduction(Reduction::None);
    let ab = js_div_with_logits(&a, &[2, 3], &b, &o).unwrap();
    let ba = js_div_with_logits(&b, &[2, 3], &a, &o).unwrap();
    for (x, y) in ab.values().iter().zip(ba.values()) {
        assert!((x - y).abs() < 1e-15 && *x > 0.0 && *x < std::f64::consts::LN_2);
    }
    assert_eq!(ab.shape(), [2]);
}

#[test]
fn sigmoid_and_log_sigmoid_are_stable() {
    let x = [-1e4f32, -100.0, 0.0, 100.0, 1e4];
    let s = sigmoid(&x);
    assert_eq!(s, [0.0, 0.0f32.max(s[1]), 0.5, 1.0, 1.0]);
    let l = log_sigmoid(&x);
    assert_eq!((l[0], l[1], l[4]), (-1e4, -100.0, 0.0));
    let mut g = [0.0f32; 5];
    log_sigmoid_backward_into(&x, &[1.0; 5], &mut g).unwrap();
    assert_eq!((g[0], g[2], g[4]), (1.0, 0.5, 0.0));
}

// ---------------------------------------------------------------------------------
// Class weights

#[test]
fn inverse_frequency_weights() {
    let y = [0i32, 0, 0, 0, 0, 0, 1, 1, 2, -100];
    assert_eq!(class_counts(&y[..], 4, -100).unwrap(), [6, 2, 1, 0]);
    let w: Vec<f64> = class_weights(&y[..], 4, &ClassWeightOptions::default()).unwrap();
    // N/(C·n_c) with N = 9, C = 4; the absent class gets 0.
    assert_eq!(w, [9.0 / 24.0, 9.0 / 8.0, 9.0 / 4.0, 0.0]);
    // A balanced set gets all ones.
    let b: Vec<f32> =
        class_weights_from_counts(&[5, 5, 5], ClassWeighting::InverseFrequency).unwrap();
    assert_eq!(b, [1.0; 3]);
    // Any integer type, and ignore_index.
    let u = [3u64, 3, 1, 255];
    let opts = ClassWeightOptions::default().ignore_index(255);
    let w: Vec<f64> = class_weights(&u[..], 4, &opts).unwrap();
    assert_eq!(w, [0.0, 3.0 / 4.0, 0.0, 3.0 / 8.0]);
}

#[test]
fn effective_number_weights() {
    let counts = [1000u64, 100, 10, 0];
    let beta = 0.999;
    let w: Vec<f64> =
        class_weights_from_counts(&counts, ClassWeighting::EffectiveNumber { beta }).unwrap();
    // Cui et al.: (1 − β)/(1 − β^n), normalised to sum to C = 4 over the present classes.
    let raw: Vec<f64> = counts[..3]
        .iter()
        .map(|&n| (1.0 - beta) / (1.0 - beta.powi(n as i32)))
        .collect();
    let s: f64 = raw.iter().sum();
    for (got, r) in w.iter().zip(&raw) {
        assert!((got - r * 4.0 / s).abs() < 1e-12, "{w:?}");
    }
    assert_eq!(w[3], 0.0);
    assert!((w.iter().sum::<f64>() - 4.0).abs() < 1e-12);
    assert!(w[0] < w[1] && w[1] < w[2]);
    // β = 0: equal weights; β → 1: inverse frequency (up to normalisation).
    let eq: Vec<f64> =
        class_weights_from_counts(&[7, 1, 3], ClassWeighting::EffectiveNumber { beta: 0.0 })
            .unwrap();
    assert_eq!(eq, [1.0; 3]);
    let near: Vec<f64> = class_weights_from_counts(
        &[7, 1, 3],
        ClassWeighting::EffectiveNumber { beta: 1.0 - 1e-12 },
    )
    .unwrap();
    let inv: Vec<f64> =
        class_weights_from_counts(&[7, 1, 3], ClassWeighting::InverseFrequency).unwrap();
    let (sn, si): (f64, f64) = (near.iter().sum(), inv.iter().sum());
    for (n, i) in near.iter().zip(&inv) {
        assert!((n / sn - i / si).abs() < 1e-9);
    }
    // Huge counts with β near 1: 1 − β^n stays accurate (−expm1(n·ln β)).
    let big: Vec<f64> = class_weights_from_counts(
        &[u64::MAX, 1],
        ClassWeighting::EffectiveNumber { beta: 0.9999 },
    )
    .unwrap();
    assert!(big.iter().all(|v| v.is_finite() && *v > 0.0));
}

#[test]
fn pos_weight_from_binary_and_multilabel_targets() {
    let y = [
        1.0f64, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0,
    ];
    // 4 samples × 3 labels: positives 2, 3, 0.
    assert_eq!(pos_weight(&y, &[4, 3]).unwrap(), [1.0, 1.0 / 3.0, 1.0]);
    // A 1-d target is one binary label.
    assert_eq!(pos_weight(&[1.0f32, 0.0, 0.0, 0.0], &[4]).unwrap(), [3.0]);
    // Soft labels count fractionally.
    assert_eq!(pos_weight(&[0.5f64, 0.25], &[2, 1]).unwrap(), [1.25 / 0.75]);
    assert_eq!(
        pos_weight_from_counts::<f64>(&[1, 0, 4], 4).unwrap(),
        [3.0, 1.0, 0.0]
    );
    // Ready to pass as pos_weight: the balanced loss weighs both classes equally.
    let pw = pos_weight(&[1.0f64, 0.0, 0.0, 0.0], &[4]).unwrap();
    let opts = BinaryCrossEntropyWithLogitsOptions::default()
        .pos_weight(&pw)
        .reduction(Reduction::None);
    let l =
        binary_cross_entropy_with_logits(&[0.0; 4], &[4], &[1.0, 0.0, 0.0, 0.0], &opts).unwrap();
    let pos: f64 = l.values()[0];
    let neg: f64 = l.values()[1..].iter().sum();
    assert!((pos - neg).abs() < 1e-15);
}

// ---------------------------------------------------------------------------------
// Error paths: typed errors naming the value and its position; buffers untouched.

#[test]
fn bce_rejects_values_outside_the_unit_interval() {
    let opts = BinaryCrossEntropyOptions::default();
    let err =
        binary_cross_entropy(&[0.5f64, 0.2, 1.5, 0.1], &[2, 2], &[0.0; 4], &opts).unwrap_err();
    assert_eq!(
        err,
        Error::ValueOutOfRange {
            name: "input",
            value: 1.5,
            index: vec![1, 0],
            expected: "a value in [0, 1]"
        }
    );
    assert_eq!(
        err.to_string(),
        "input 1.5 at index [1, 0] is out of range: expected a value in [0, 1]"
    );
    let err = binary_cross_entropy(&[0.5f32; 3], &[3], &[0.0, -0.25, 1.0], &Default::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "target -0.25 at index [1] is out of range: expected a value in [0, 1]"
    );
    let err = binary_cross_entropy(&[f64::NAN], &[1], &[0.0], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input NaN at index [0] is out of range: expected a value in [0, 1]"
    );
}

#[test]
fn js_rejects_values_outside_the_unit_interval() {
    let err = js_div(&[0.5f64, 0.5], &[2], &[2.0, -1.0], &JsDivOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "q 2 at index [0] is out of range: expected a value in [0, 1]"
    );
}

#[test]
fn weights_that_do_not_broadcast() {
    let w = [1.0f64; 3];
    let opts = BinaryCrossEntropyOptions::default().weight(&w);
    let err = binary_cross_entropy(&[0.5f64; 8], &[2, 4], &[0.0; 8], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "weight has 3 elements, which do not broadcast to shape [2, 4]: expected 8, 4 or 1"
    );
    let opts = BinaryCrossEntropyWithLogitsOptions::default().pos_weight(&w);
    let err =
        binary_cross_entropy_with_logits(&[0.0f64; 8], &[2, 4], &[0.0; 8], &opts).unwrap_err();
    assert_eq!(
        err,
        Error::BroadcastShape {
            name: "pos_weight",
            len: 3,
            shape: vec![2, 4],
            allowed: vec![4, 1]
        }
    );
    assert_eq!(
        err.to_string(),
        "pos_weight has 3 elements, which do not broadcast to shape [2, 4]: expected 4 or 1"
    );
    // pos_weight is per class: the whole shape is not accepted.
    let pw = [1.0f64; 8];
    let opts = BinaryCrossEntropyWithLogitsOptions::default().pos_weight(&pw);
    assert!(binary_cross_entropy_with_logits(&[0.0f64; 8], &[2, 4], &[0.0; 8], &opts).is_err());
}

#[test]
fn shape_and_buffer_errors() {
    let bce = BinaryCrossEntropyOptions::default();
    let err = binary_cross_entropy(&[0.5f64; 3], &[2, 2], &[0.0; 3], &bce).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input of shape [2, 2] with 3 elements: the number of elements does not match the shape"
    );
    let err = binary_cross_entropy(&[0.5f64; 4], &[2, 2], &[0.0; 3], &bce).unwrap_err();
    assert_eq!(
        err.to_string(),
        "target has 3 elements, expected shape [2, 2]"
    );
    let err = kl_div(&[0.0f64; 4], &[4], &[0.0; 5], &KlDivOptions::default()).unwrap_err();
    assert_eq!(
        err,
        Error::TargetShape {
            expected: vec![4],
            len: 5
        }
    );
    let err = js_div_with_logits(
        &[0.0f64; 6],
        &[2, 0, 3],
        &[0.0; 6],
        &JsDivOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::BadShape { .. }), "{err}");
    let err = js_div_with_logits(&[0.0f64; 0], &[], &[], &JsDivOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no class dimension"), "{err}");

    // Buffers of the wrong size, and nothing written on error.
    let mut loss = [7.0f64; 2];
    let mut grad = [7.0f64; 4];
    let err = binary_cross_entropy_into(&[0.5f64; 4], &[4], &[0.0; 4], &bce, &mut loss, None)
        .unwrap_err();
    assert_eq!(err.to_string(), "loss_out has length 2, expected 1");
    let err = kl_div_into(
        &[0.0f64; 4],
        &[2, 2],
        &[0.5; 4],
        &KlDivOptions::default(),
        &mut loss[..1],
        Some(GradOut::new(&mut grad[..3])),
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "grad_input has length 3, expected 4");
    let none = KlDivOptions::default().reduction(KlReduction::None);
    let mut l4 = [7.0f64; 4];
    let err = kl_div_into(
        &[0.0f64; 4],
        &[2, 2],
        &[0.5; 4],
        &none,
        &mut l4,
        None,
        Some(GradOut::new(&mut grad).grad_output(&[1.0; 2])),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "grad_output has 2 elements, expected shape [2, 2]"
    );
    let err = js_div_into(
        &[0.5f64; 4],
        &[2, 2],
        &[0.5; 4],
        &JsDivOptions::default(),
        &mut loss[..1],
        None,
        Some(GradOut::new(&mut grad[..2])),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "grad_q has length 2, expected 4");
    assert_eq!((loss, grad, l4), ([7.0; 2], [7.0; 4], [7.0; 4]));

    let mut out = [0.0f32; 2];
    let err = sigmoid_into(&[0.0f32; 3], &mut out).unwrap_err();
    assert_eq!(err.to_string(), "out has length 2, expected 3");
    let err = log_sigmoid_backward_into(&[0.0f32; 2], &[1.0], &mut out).unwrap_err();
    assert_eq!(err.to_string(), "grad_output has length 1, expected 2");
}

#[test]
fn option_parsing_errors() {
    let err = "batch_mean".parse::<KlReduction>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "reduction = batch_mean is invalid: expected one of none, mean, sum, batchmean"
    );
    assert_eq!(KlReduction::default(), KlReduction::Mean);
}

#[test]
fn class_weight_errors() {
    let err = class_counts(&[0u8, 1, 5, 1][..], 3, -100).unwrap_err();
    assert_eq!(
        err,
        Error::TargetOutOfBounds {
            target: 5,
            index: vec![2],
            classes: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "target 5 at index [2] is out of bounds for 3 classes"
    );
    let err = class_counts(&[-1i64][..], 3, -100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "target -1 at index [0] is out of bounds for 3 classes"
    );
    let err = class_counts(&[0i64][..], 0, -100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "classes = 0 is invalid: expected at least 1 class"
    );
    for beta in [1.0, -0.1, f64::NAN] {
        let err =
            class_weights_from_counts::<f64>(&[1, 2], ClassWeighting::EffectiveNumber { beta })
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("beta = {beta} is invalid: expected a number in [0, 1)")
        );
    }
    let err = class_weights_from_counts::<f64>(&[], ClassWeighting::InverseFrequency).unwrap_err();
    assert_eq!(
        err.to_string(),
        "counts = [] is invalid: expected at least 1 class"
    );
    let err = pos_weight_from_counts::<f64>(&[1, 9], 5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "positives = 9 (total 5) is invalid: expected a count of at most `total`"
    );
    let err = pos_weight(&[0.0f64, 2.0], &[1, 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "target 2 at index [0, 1] is out of range: expected a value in [0, 1]"
    );
    let err = pos_weight(&[1.0f64], &[]).unwrap_err();
    assert!(err.to_string().contains("no class dimension"), "{err}");
}
