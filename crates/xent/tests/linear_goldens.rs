//! Linear cross-entropy: PyTorch goldens (`fixtures/torch/linear/*.json`) in `f32` and
//! `f64`, independence from the scratch budget (many row blocks against one) and from
//! the thread count (bit for bit), and the error of a long `f32` accumulation of `dW`
//! and `db` against an `f64` reference.
//!
//! The fixtures and the script that writes them (`fixtures/torch/make_linear_goldens.py`,
//! which needs PyTorch and is never run by CI) are committed together; regenerate with
//! `.venv/bin/python fixtures/torch/make_linear_goldens.py` from the repo root.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;
use xent::{
    bf16, f16, linear_cross_entropy, linear_cross_entropy_into, linear_cross_entropy_with_grad,
    CrossEntropyOptions, Element, Error, Float, GradMode, GradPrecision, LinearCrossEntropyOptions,
    LinearGradOut, LinearInputs, Reduction, DEFAULT_SCRATCH_BYTES,
};

// ---------------------------------------------------------------------------------
// Tolerances

/// How far a result computed through GEMMs may be from the exact (PyTorch float64)
/// value: `|got − expected| ≤ slack · u · k · scale`.
///
/// - `u` is the unit roundoff of the precision (2⁻²⁴ for `f32`, 2⁻⁵³ for `f64`).
/// - `k` is the number of terms summed on the way to the value, whatever the order
///   the GEMM picks: a length-`k` dot product in precision `u` is off by at most
///   `≈ k·u·Σ|aᵢbᵢ|`. The logits sum `D` products, the loss then `V` exponentials,
///   `dh = G·W` sums `V` products and `dW = Gᵀ·h`, `db` sum `N` (over row blocks too);
///   errors of the logits also flow into `G`. So every check uses `k = D + V + N`.
/// - `scale` stands for `Σ|aᵢbᵢ|`: the largest expected magnitude of the array (at
///   least 1 for a loss), since gradient entries cancel (`p − δ`) and an entry near 0
///   has the rounding of its larger neighbours.
/// - `slack` covers the constant factors of those bounds (exp/ln add a few ulps, the
///   softmax amplifies a logit error by at most the class weights, ≤ 1.75 here).
///
/// Formula mistakes show up at 1e-2 and above; these bounds are 1e-4 (`f32`) and
/// 1e-13 (`f64`) at most on the golden shapes.
#[derive(Debug, Clone, Copy)]
struct GemmTolerance {
    u: f64,
    slack: f64,
}

impl GemmTolerance {
    const F32: GemmTolerance = GemmTolerance {
        u: 1.0 / (1u64 << 24) as f64,
        slack: 16.0,
    };
    const F64: GemmTolerance = GemmTolerance {
        u: 1.0 / (1u64 << 53) as f64,
        slack: 16.0,
    };

    fn for_type<T: Float>() -> GemmTolerance {
        if T::NAME == "float32" {
            GemmTolerance::F32
        } else {
            GemmTolerance::F64
        }
    }

    fn bound(self, k: usize, scale: f64) -> f64 {
        self.slack * self.u * k as f64 * scale
    }
}

// ---------------------------------------------------------------------------------
// Fixtures

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/torch/linear/linear_cross_entropy.json")
}

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

fn opt_nums(v: &Value) -> Option<Vec<f64>> {
    (!v.is_null()).then(|| nums(v))
}

fn cast<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

struct Case {
    name: String,
    n: usize,
    d: usize,
    v: usize,
    hidden: Vec<f64>,
    linear_weight: Vec<f64>,
    linear_bias: Option<Vec<f64>>,
    target: Vec<i64>,
    weight: Option<Vec<f64>>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: Reduction,
    grad_output: Vec<f64>,
    loss: Vec<f64>,
    grad_hidden: Vec<f64>,
    grad_linear_weight: Vec<f64>,
    grad_linear_bias: Option<Vec<f64>>,
}

fn load() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture_path()).expect("fixture file");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let o = &c["options"];
            let e = &c["expected"];
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                n: c["n"].as_u64().unwrap() as usize,
                d: c["d"].as_u64().unwrap() as usize,
                v: c["v"].as_u64().unwrap() as usize,
                hidden: nums(&c["hidden"]),
                linear_weight: nums(&c["linear_weight"]),
                linear_bias: opt_nums(&c["linear_bias"]),
                target: c["target"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_i64().unwrap())
                    .collect(),
                weight: opt_nums(&o["weight"]),
                ignore_index: o["ignore_index"].as_i64().unwrap(),
                label_smoothing: o["label_smoothing"].as_f64().unwrap(),
                reduction: o["reduction"].as_str().unwrap().parse().unwrap(),
                grad_output: nums(&c["grad_output"]),
                loss: nums(&e["loss"]),
                grad_hidden: nums(&e["grad_hidden"]),
                grad_linear_weight: nums(&e["grad_linear_weight"]),
                grad_linear_bias: opt_nums(&e["grad_linear_bias"]),
            }
        })
        .collect()
}

/// The result of one run: loss, dh, dW, db.
struct Out<T> {
    loss: Vec<T>,
    dh: Vec<T>,
    dw: Vec<T>,
    db: Option<Vec<T>>,
}

/// Runs a case with `h`, `W`, `b` in `E` (rounded from the case's values) and the
/// options, loss and gradients in `E`'s accumulation type `T`.
fn run_case<E: Element<Acc = T>, T: Float>(
    c: &Case,
    scratch_bytes: usize,
) -> Result<Out<T>, Error> {
    run_case_with::<E, T>(c, scratch_bytes, GradPrecision::default())
}

/// [`run_case`] with the logit gradient multiplied in `grad_precision` (bf16 inputs).
fn run_case_with<E: Element<Acc = T>, T: Float>(
    c: &Case,
    scratch_bytes: usize,
    grad_precision: GradPrecision,
) -> Result<Out<T>, Error> {
    let input = |v: &[f64]| -> Vec<E> { v.iter().map(|&x| E::from_acc(T::from_f64(x))).collect() };
    let (h, w) = (input(&c.hidden), input(&c.linear_weight));
    let b = c.linear_bias.as_deref().map(input);
    let cw = c.weight.as_deref().map(cast::<T>);
    let go = cast::<T>(&c.grad_output);
    let mut inputs = LinearInputs::new(&h, [c.n, c.d], &w, [c.v, c.d]);
    if let Some(b) = &b {
        inputs = inputs.linear_bias(b);
    }
    let mut opts = LinearCrossEntropyOptions::default()
        .ignore_index(c.ignore_index)
        .label_smoothing(c.label_smoothing)
        .reduction(c.reduction)
        .scratch_bytes(scratch_bytes)
        .grad_precision(grad_precision);
    if let Some(cw) = &cw {
        opts = opts.weight(cw);
    }
    let mut loss = vec![T::ZERO; c.loss.len()];
    // Stale values: Overwrite must not read them.
    let mut dh = vec![T::from_f64(7.0); c.n * c.d];
    let mut dw = vec![T::from_f64(7.0); c.v * c.d];
    let mut db = b.as_ref().map(|_| vec![T::from_f64(7.0); c.v]);
    let mut grad = LinearGradOut::new()
        .hidden(&mut dh)
        .linear_weight(&mut dw)
        .grad_output(&go);
    if let Some(db) = db.as_mut() {
        grad = grad.linear_bias(db);
    }
    linear_cross_entropy_into(inputs, &c.target[..], &opts, &mut loss, Some(grad))?;
    Ok(Out { loss, dh, dw, db })
}

/// Compares `got` with `want` under `tol`; appends a message on failure.
fn compare<T: Float>(
    fails: &mut String,
    what: &str,
    got: &[T],
    want: &[f64],
    tol: GemmTolerance,
    k: usize,
    floor: f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(floor, |m, v| m.max(v.abs()));
    let bound = tol.bound(k, scale);
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        let g = g.to_f64();
        if e.is_nan() || g.is_nan() {
            if e.is_nan() != g.is_nan() {
                let _ = writeln!(fails, "{what} [{i}]: got {g}, expected {e}");
                return;
            }
            continue;
        }
        let err = (g - e).abs();
        if err > worst.0 {
            worst = (err, i);
        }
    }
    if worst.0 > bound {
        let i = worst.1;
        let _ = writeln!(
            fails,
            "{what} [{i}]: got {}, expected {} (error {:.3e} > bound {bound:.3e})",
            got[i], want[i], worst.0
        );
    }
}

fn check_goldens<T: Float>(scratch_bytes: usize) {
    let tol = GemmTolerance::for_type::<T>();
    let cases = load();
    assert!(cases.len() >= 80, "only {} golden cases", cases.len());
    let mut fails = String::new();
    for c in &cases {
        let what = |s: &str| format!("{} {} scratch={scratch_bytes}: {s}", c.name, T::NAME);
        let k = c.d + c.v + c.n;
        let out = match run_case::<T, T>(c, scratch_bytes) {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(fails, "{}", what(&format!("error {e}")));
                continue;
            }
        };
        compare(&mut fails, &what("loss"), &out.loss, &c.loss, tol, k, 1.0);
        compare(
            &mut fails,
            &what("dh"),
            &out.dh,
            &c.grad_hidden,
            tol,
            k,
            0.0,
        );
        let dw_want = &c.grad_linear_weight;
        compare(&mut fails, &what("dW"), &out.dw, dw_want, tol, k, 0.0);
        match (&out.db, &c.grad_linear_bias) {
            (Some(db), Some(want)) => compare(&mut fails, &what("db"), db, want, tol, k, 0.0),
            (None, None) => {}
            _ => fails.push_str(&what("db presence differs\n")),
        }
    }
    assert!(fails.is_empty(), "golden mismatches:\n{fails}");
}

#[test]
fn goldens_f32() {
    check_goldens::<f32>(LinearCrossEntropyOptions::<f32>::default().scratch_bytes);
}

#[test]
fn goldens_f64() {
    check_goldens::<f64>(LinearCrossEntropyOptions::<f64>::default().scratch_bytes);
}

/// A budget of 0 bytes forces blocks of one row: every golden again, one row at a time.
#[test]
fn goldens_one_row_blocks() {
    check_goldens::<f32>(0);
    check_goldens::<f64>(0);
}

// ---------------------------------------------------------------------------------
// Scratch budget independence

/// SplitMix64, uniform values in `[-scale, scale)` rounded to `f32`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, scale: f64) -> f64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((2.0 * u - 1.0) * scale) as f32 as f64
    }
    fn vec(&mut self, len: usize, scale: f64) -> Vec<f64> {
        (0..len).map(|_| self.uniform(scale)).collect()
    }
}

/// Loss, dh, dW, db of the same problem under different scratch budgets (1 row per
/// block, a few rows, everything in one block) agree to the rounding of the `dW`/`db`
/// sums, whose grouping by blocks is the only thing the budget changes; the loss and
/// `dh` are per-row results and must not move by more than a last-bit difference of
/// the GEMM's row blocking.
#[test]
fn scratch_budget_does_not_change_the_result() {
    let (n, d, v) = (300, 40, 257);
    let mut rng = Rng(7);
    let h = rng.vec(n * d, 1.0);
    let w = rng.vec(v * d, 0.3);
    let b = rng.vec(v, 0.5);
    let cw: Vec<f64> = (0..v).map(|_| rng.uniform(0.5) + 1.0).collect();
    let y: Vec<i64> = (0..n)
        .map(|r| {
            if r % 13 == 0 {
                -100
            } else {
                (rng.next() % v as u64) as i64
            }
        })
        .collect();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let case = Case {
            name: format!("budget_{reduction:?}"),
            n,
            d,
            v,
            hidden: h.clone(),
            linear_weight: w.clone(),
            linear_bias: Some(b.clone()),
            target: y.clone(),
            weight: Some(cw.clone()),
            ignore_index: -100,
            label_smoothing: 0.05,
            reduction,
            grad_output: vec![1.0; if reduction == Reduction::None { n } else { 1 }],
            loss: vec![0.0; if reduction == Reduction::None { n } else { 1 }],
            grad_hidden: Vec::new(),
            grad_linear_weight: Vec::new(),
            grad_linear_bias: None,
        };
        let row = v * std::mem::size_of::<f32>();
        let budgets = [0, 10 * row, 40 * row, usize::MAX];
        let runs: Vec<Out<f32>> = budgets
            .iter()
            .map(|&s| run_case::<f32, f32>(&case, s).unwrap())
            .collect();
        let base = &runs[budgets.len() - 1];
        let tol = GemmTolerance::F32;
        for (run, s) in runs.iter().zip(budgets) {
            let mut fails = String::new();
            let to64 = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
            let what = |s2: &str| format!("{} budget {s}: {s2}", case.name);
            compare(
                &mut fails,
                &what("loss"),
                &run.loss,
                &to64(&base.loss),
                tol,
                1,
                1.0,
            );
            compare(
                &mut fails,
                &what("dh"),
                &run.dh,
                &to64(&base.dh),
                tol,
                1,
                0.0,
            );
            compare(
                &mut fails,
                &what("dW"),
                &run.dw,
                &to64(&base.dw),
                tol,
                n,
                0.0,
            );
            let (db, db0) = (run.db.as_ref().unwrap(), base.db.as_ref().unwrap());
            compare(&mut fails, &what("db"), db, &to64(db0), tol, n, 0.0);
            assert!(fails.is_empty(), "{fails}");
        }
    }
}

/// Every output's bits, for comparisons across thread counts.
fn bits<T: Float>(out: &Out<T>) -> Vec<u64> {
    let db = out.db.as_deref().unwrap_or(&[]);
    [&out.loss[..], &out.dh, &out.dw, db]
        .into_iter()
        .flatten()
        .map(|x| x.to_f64().to_bits())
        .collect()
}

/// Runs `f` on a pool of `threads` threads.
fn on<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Loss and gradients are bit-for-bit the same on 1, 2, 3 and 8 threads: the GEMMs'
/// tasks (classes of the logits, columns of `dh`, rows of `dW`) depend only on the
/// shape and each output element is summed by one task. The shape makes every split
/// ragged: two row blocks (128 + 12), two logit tasks, two `dh` tasks, three `dW` tasks.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (n, d, v) = (140, 260, 1100);
    let mut rng = Rng(5);
    let case = Case {
        name: "threads".to_string(),
        n,
        d,
        v,
        hidden: rng.vec(n * d, 1.0),
        linear_weight: rng.vec(v * d, 0.2),
        linear_bias: Some(rng.vec(v, 0.5)),
        target: (0..n).map(|_| (rng.next() % v as u64) as i64).collect(),
        weight: None,
        ignore_index: -100,
        label_smoothing: 0.1,
        reduction: Reduction::Mean,
        grad_output: vec![1.0],
        loss: vec![0.0],
        grad_hidden: Vec::new(),
        grad_linear_weight: Vec::new(),
        grad_linear_bias: None,
    };
    // The default budget, and one that binds (48 rows for f32, 16 for f64), where a
    // block size that counted per-thread scratch would change with the thread count.
    for budget in [DEFAULT_SCRATCH_BYTES, 50 * (v + d) * 4] {
        let one32 = on(1, || bits(&run_case::<f32, f32>(&case, budget).unwrap()));
        let one64 = on(1, || bits(&run_case::<f64, f64>(&case, budget).unwrap()));
        for threads in [2, 3, 8] {
            let got = on(threads, || {
                bits(&run_case::<f32, f32>(&case, budget).unwrap())
            });
            assert!(
                got == one32,
                "f32, budget {budget}: {threads} threads differ from 1"
            );
            let got = on(threads, || {
                bits(&run_case::<f64, f64>(&case, budget).unwrap())
            });
            assert!(
                got == one64,
                "f64, budget {budget}: {threads} threads differ from 1"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Long f32 accumulation of dW and db

/// `dW` and `db` over 4096 rows, each row its own block (budget 0), so that `dW` and
/// `db` receive 4096 successive `f32` additions — the situation where an accumulator
/// in bf16 (8 significant bits, as in the Liger-Kernel reports) loses the gradient.
///
/// The exact reference is computed in `f64` from the same `f32`-exact inputs. The
/// bound is the rigorous one for a running sum of `N` terms in `f32`,
/// `N·u·Σ_n |G_nv·h_nd|` (u = 2⁻²⁴), measured against the largest such magnitude; the
/// test also asserts that the error is under 1/16 of one bf16 ulp of that magnitude,
/// which a bf16 accumulator could not meet.
#[test]
fn long_accumulation_of_dw_and_db_stays_f32_accurate() {
    long_accumulation::<f32>();
}

/// The same with bf16 and f16 inputs: `h`, `W` and `b` in half precision, the loss and
/// every gradient (hence `dW`, `db`) accumulated and returned in `f32`. The reference
/// uses the half-precision values exactly.
#[test]
fn half_precision_inputs_accumulate_dw_and_db_in_f32() {
    long_accumulation::<bf16>();
    long_accumulation::<f16>();
}

/// [`long_accumulation_of_dw_and_db_stays_f32_accurate`] for inputs of type `E`.
fn long_accumulation<E: Element<Acc = f32>>() {
    let (n, d, v) = (4096, 8, 48);
    let mut rng = Rng(11);
    // Values representable in E, so that the f64 reference sees the inputs exactly.
    let exact = |x: Vec<f64>| -> Vec<f64> {
        x.into_iter()
            .map(|v| E::from_acc(v as f32).to_acc() as f64)
            .collect()
    };
    let h = exact(rng.vec(n * d, 1.0));
    let w = exact(rng.vec(v * d, 0.5));
    let b = exact(rng.vec(v, 0.5));
    let y: Vec<i64> = (0..n).map(|_| (rng.next() % v as u64) as i64).collect();

    // f64 reference: G = (softmax(x) − onehot(y)) / N (mean, no options).
    let mut dw_ref = vec![0.0f64; v * d];
    let mut dw_abs = vec![0.0f64; v * d];
    let mut db_ref = vec![0.0f64; v];
    let mut db_abs = vec![0.0f64; v];
    for r in 0..n {
        let x: Vec<f64> = (0..v)
            .map(|c| b[c] + (0..d).map(|k| h[r * d + k] * w[c * d + k]).sum::<f64>())
            .collect();
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = x.iter().map(|&xc| (xc - m).exp()).sum();
        for c in 0..v {
            let g = ((x[c] - m).exp() / s - if c as i64 == y[r] { 1.0 } else { 0.0 }) / n as f64;
            db_ref[c] += g;
            db_abs[c] += g.abs();
            for k in 0..d {
                dw_ref[c * d + k] += g * h[r * d + k];
                dw_abs[c * d + k] += (g * h[r * d + k]).abs();
            }
        }
    }

    let input = |x: &[f64]| -> Vec<E> { x.iter().map(|&v| E::from_acc(v as f32)).collect() };
    let (he, we, be) = (input(&h), input(&w), input(&b));
    let opts = LinearCrossEntropyOptions::default().scratch_bytes(0);
    let (_, grads) = linear_cross_entropy_with_grad(
        LinearInputs::new(&he, [n, d], &we, [v, d]).linear_bias(&be),
        &y[..],
        &opts,
    )
    .unwrap();
    let u = GemmTolerance::F32.u;
    let bf16_ulp = 1.0 / 256.0;
    for (what, got, want, abs) in [
        ("dW", &grads.linear_weight, &dw_ref, &dw_abs),
        ("db", grads.linear_bias.as_ref().unwrap(), &db_ref, &db_abs),
    ] {
        let scale = abs.iter().cloned().fold(0.0, f64::max);
        let err = got
            .iter()
            .zip(want.iter())
            .map(|(&g, &e)| (g as f64 - e).abs())
            .fold(0.0, f64::max);
        let rigorous = n as f64 * u * scale;
        assert!(
            err <= rigorous,
            "{} {what}: error {err:.3e} > N·u·scale = {rigorous:.3e}",
            E::NAME
        );
        assert!(
            err <= bf16_ulp / 16.0 * scale,
            "{} {what}: error {err:.3e} is not below bf16 resolution {:.3e}",
            E::NAME,
            bf16_ulp / 16.0 * scale
        );
    }
}

/// bf16 and f16 inputs with the logit gradient kept in `f32` ([`GradPrecision::F32`])
/// give what `f32` inputs holding the same values give (the half-precision path sums
/// in another order, so the rounding may differ), and the same bits on 1 and 3
/// threads, also with the default bf16 logit gradient. Options, a bias, two ragged row
/// blocks and ragged GEMM tasks.
#[test]
fn half_precision_inputs_match_f32_inputs_with_the_same_values() {
    let (n, d, v) = (140, 260, 1100);
    for name in ["bf16", "f16"] {
        let mut rng = Rng(23);
        let round = |x: Vec<f64>| -> Vec<f64> {
            x.into_iter()
                .map(|v| match name {
                    "bf16" => bf16::from_f64(v).to_f64(),
                    _ => f16::from_f64(v).to_f64(),
                })
                .collect()
        };
        let case = Case {
            name: name.to_string(),
            n,
            d,
            v,
            hidden: round(rng.vec(n * d, 1.0)),
            linear_weight: round(rng.vec(v * d, 0.2)),
            linear_bias: Some(round(rng.vec(v, 0.5))),
            target: (0..n).map(|_| (rng.next() % v as u64) as i64).collect(),
            weight: Some(rng.vec(v, 1.0).into_iter().map(|w| 1.0 + w.abs()).collect()),
            ignore_index: 3,
            label_smoothing: 0.1,
            reduction: Reduction::Mean,
            grad_output: vec![1.0],
            loss: vec![0.0],
            grad_hidden: Vec::new(),
            grad_linear_weight: Vec::new(),
            grad_linear_bias: None,
        };
        let want = run_case::<f32, f32>(&case, DEFAULT_SCRATCH_BYTES).unwrap();
        let half_with = |p| match name {
            "bf16" => run_case_with::<bf16, f32>(&case, DEFAULT_SCRATCH_BYTES, p).unwrap(),
            _ => run_case_with::<f16, f32>(&case, DEFAULT_SCRATCH_BYTES, p).unwrap(),
        };
        let half = || half_with(GradPrecision::default());
        let got = half_with(GradPrecision::F32);
        let db = (got.db.as_deref().unwrap(), want.db.as_deref().unwrap());
        for (what, g, w) in [
            ("loss", &got.loss[..], &want.loss[..]),
            ("dh", &got.dh, &want.dh),
            ("dW", &got.dw, &want.dw),
            ("db", db.0, db.1),
        ] {
            let scale = w.iter().fold(1e-3f64, |m, &x| m.max((x as f64).abs()));
            for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
                assert!(
                    (a as f64 - b as f64).abs() <= 1e-5 * scale,
                    "{name} {what}[{i}]: {a} vs f32 inputs {b}"
                );
            }
        }
        assert!(
            bits(&on(3, half)) == bits(&on(1, half)),
            "{name}: 3 threads differ from 1"
        );
    }
}

/// The default bf16 logit gradient ([`GradPrecision::Bf16`]) against an `f64`
/// reference of the same bf16 inputs: `dh` and `dW` within the documented bound
/// `2⁻⁸·Σ|G·W|` (resp. `2⁻⁸·Σ|G·h|`) per element on top of the `f32` tolerance; loss
/// and `db` (summed from `G` before rounding) within the `f32` tolerance alone. Several
/// row blocks (a small budget), a bias, class weights and label smoothing. Prints the
/// largest error measured, as a fraction of its element's `Σ|G·W|`.
#[test]
fn bf16_logit_gradient_stays_within_its_documented_bound() {
    let (n, d, v) = (48, 160, 700);
    let mut rng = Rng(31);
    let round =
        |x: Vec<f64>| -> Vec<f64> { x.into_iter().map(|v| bf16::from_f64(v).to_f64()).collect() };
    let h = round(rng.vec(n * d, 1.0));
    let w = round(rng.vec(v * d, 0.3));
    let b = round(rng.vec(v, 0.5));
    let cw: Vec<f64> = rng.vec(v, 1.0).into_iter().map(|x| 1.0 + x.abs()).collect();
    let y: Vec<i64> = (0..n).map(|_| (rng.next() % v as u64) as i64).collect();
    let eps = 0.1;

    // f64 reference (mean, class weights, label smoothing; SEMANTICS.md).
    let den: f64 = y.iter().map(|&t| cw[t as usize]).sum();
    let wsum: f64 = cw.iter().sum();
    let mut g = vec![0.0f64; n * v];
    let mut loss = 0.0;
    for r in 0..n {
        let x: Vec<f64> = (0..v)
            .map(|c| b[c] + (0..d).map(|k| h[r * d + k] * w[c * d + k]).sum::<f64>())
            .collect();
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + x.iter().map(|&xc| (xc - m).exp()).sum::<f64>().ln();
        let t = y[r] as usize;
        let smooth: f64 = (0..v).map(|c| -cw[c] * (x[c] - lse)).sum();
        loss += ((1.0 - eps) * -cw[t] * (x[t] - lse) + eps / v as f64 * smooth) / den;
        for c in 0..v {
            let p = (x[c] - lse).exp();
            let onehot = if c == t { 1.0 } else { 0.0 };
            g[r * v + c] =
                ((1.0 - eps) * cw[t] * (p - onehot) + eps / v as f64 * (wsum * p - cw[c])) / den;
        }
    }
    let (mut dh, mut dh_abs) = (vec![0.0f64; n * d], vec![0.0f64; n * d]);
    let (mut dw, mut dw_abs) = (vec![0.0f64; v * d], vec![0.0f64; v * d]);
    let mut db = vec![0.0f64; v];
    for r in 0..n {
        for c in 0..v {
            let gc = g[r * v + c];
            db[c] += gc;
            for k in 0..d {
                dh[r * d + k] += gc * w[c * d + k];
                dh_abs[r * d + k] += (gc * w[c * d + k]).abs();
                dw[c * d + k] += gc * h[r * d + k];
                dw_abs[c * d + k] += (gc * h[r * d + k]).abs();
            }
        }
    }

    let bf = |x: &[f64]| -> Vec<bf16> { x.iter().map(|&v| bf16::from_f64(v)).collect() };
    let (hb, wb, bb) = (bf(&h), bf(&w), bf(&b));
    let cw32: Vec<f32> = cw.iter().map(|&x| x as f32).collect();
    let opts = LinearCrossEntropyOptions::default()
        .weight(&cw32)
        .label_smoothing(eps)
        .scratch_bytes(16 * (v + d) * 4);
    assert_eq!(opts.grad_precision, GradPrecision::Bf16);
    let (got_loss, got) = linear_cross_entropy_with_grad(
        LinearInputs::new(&hb, [n, d], &wb, [v, d]).linear_bias(&bb),
        &y[..],
        &opts,
    )
    .unwrap();

    let tol = GemmTolerance::F32;
    let k = d + v + n;
    let max_abs = |x: &[f64]| x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let loss_err = (got_loss.item().unwrap() as f64 - loss).abs();
    assert!(
        loss_err <= tol.bound(k, loss.abs().max(1.0)),
        "loss error {loss_err:e}"
    );
    let db_scale = max_abs(&db);
    for (c, (&gv, &e)) in got
        .linear_bias
        .as_ref()
        .unwrap()
        .iter()
        .zip(&db)
        .enumerate()
    {
        let err = (gv as f64 - e).abs();
        assert!(err <= tol.bound(k, db_scale), "db[{c}]: error {err:e}");
    }
    let half_ulp = 2f64.powi(-8);
    for (what, got, want, abs) in [
        ("dh", &got.hidden, &dh, &dh_abs),
        ("dW", &got.linear_weight, &dw, &dw_abs),
    ] {
        let f32_part = tol.bound(k, max_abs(want));
        let mut worst = 0.0f64;
        for (i, ((&gv, &e), &a)) in got.iter().zip(want).zip(abs).enumerate() {
            let err = (gv as f64 - e).abs();
            assert!(
                err <= half_ulp * a + f32_part,
                "{what}[{i}]: error {err:e} > 2^-8 * {a:e} + {f32_part:e}"
            );
            worst = worst.max(err / a.max(1e-300));
        }
        println!(
            "bf16 G: {what} max error / sum|G*operand| = {worst:.3e} (bound 2^-8 = {half_ulp:.3e})"
        );
    }
}

// ---------------------------------------------------------------------------------
// API behaviour

#[test]
fn errors_name_the_bad_values() {
    let h = [0.0f32; 8];
    let w = [0.0f32; 6];
    let opts = LinearCrossEntropyOptions::default();
    let inputs = LinearInputs::new(&h, [4, 2], &w, [3, 2]);
    let err = linear_cross_entropy(inputs, &[0i64, 1, 2][..], &opts).unwrap_err();
    assert_eq!(err.to_string(), "hidden has 4 rows but target has 3");
    let err = linear_cross_entropy(
        LinearInputs::new(&h, [2, 4], &w, [3, 2]),
        &[0i64, 1][..],
        &opts,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hidden has 4 columns but linear_weight has 2"
    );
    let err = linear_cross_entropy(
        LinearInputs::new(&h, [3, 2], &w, [3, 2]),
        &[0i64, 1, 2][..],
        &opts,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hidden has 8 elements, expected shape [3, 2]"
    );
    let b = [0.0f32; 2];
    let err =
        linear_cross_entropy(inputs.linear_bias(&b), &[0i64, 1, 2, 0][..], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "linear_weight has 3 rows but linear_bias has 2"
    );
    let err = linear_cross_entropy(inputs, &[0i64, 1, 3, 0][..], &opts).unwrap_err();
    assert_eq!(
        err,
        Error::TargetOutOfBounds {
            target: 3,
            index: vec![2],
            classes: 3
        }
    );
    let cw = [1.0f32; 2];
    let err = linear_cross_entropy(inputs, &[0i64, 1, 2, 0][..], &opts.weight(&cw)).unwrap_err();
    assert!(matches!(err, Error::WeightLength { len: 2, classes: 3 }));
    let err =
        linear_cross_entropy(inputs, &[0u8, 1, 2, 0][..], &opts.label_smoothing(-0.5)).unwrap_err();
    assert!(matches!(err, Error::LabelSmoothing { .. }));
    let err = linear_cross_entropy(
        LinearInputs::new(&[0f32; 0], [0, 2], &[], [0, 2]),
        &[0i64; 0][..],
        &opts,
    );
    assert!(
        err.is_ok(),
        "no rows and no classes is an empty problem: {err:?}"
    );
    let err = linear_cross_entropy(
        LinearInputs::new(&h, [4, 2], &[], [0, 2]),
        &[0i64; 4][..],
        &opts,
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoClasses { .. }));

    // Buffers of the wrong size, and nothing written on error.
    let mut loss = [5.0f32];
    let mut dh = [5.0f32; 7];
    let err = linear_cross_entropy_into(
        inputs,
        &[0i64, 1, 2, 0][..],
        &opts,
        &mut loss,
        Some(LinearGradOut::new().hidden(&mut dh)),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "grad hidden has length 7, expected 8");
    assert_eq!((loss, dh), ([5.0], [5.0; 7]));
    let mut dh = [5.0f32; 8];
    let err = linear_cross_entropy_into(
        inputs,
        &[0i64, 1, 2, 0][..],
        &opts.reduction(Reduction::None),
        &mut [0.0f32; 4],
        Some(LinearGradOut::new().hidden(&mut dh).grad_output(&[1.0])),
    )
    .unwrap_err();
    assert!(matches!(err, Error::GradOutputShape { len: 1, .. }));
}

/// Accumulate mode adds to what is there; forward-only gives the same loss; asking
/// for only `dh` gives the same `dh`.
#[test]
fn accumulate_and_partial_gradients() {
    let (n, d, v) = (10, 6, 9);
    let mut rng = Rng(3);
    let h = cast::<f64>(&rng.vec(n * d, 1.0));
    let w = cast::<f64>(&rng.vec(v * d, 0.5));
    let y: Vec<u16> = (0..n).map(|_| (rng.next() % v as u64) as u16).collect();
    let opts = LinearCrossEntropyOptions::default().scratch_bytes(0);
    let inputs = LinearInputs::new(&h, [n, d], &w, [v, d]);
    let (loss, grads) = linear_cross_entropy_with_grad(inputs, &y[..], &opts).unwrap();
    let fwd = linear_cross_entropy(inputs, &y[..], &opts).unwrap();
    assert_eq!(loss, fwd);
    assert!(grads.linear_bias.is_none());

    let mut dh = vec![1.0f64; n * d];
    let mut dw = vec![2.0f64; v * d];
    let mut db = vec![3.0f64; v];
    let mut l = [0.0];
    let g = LinearGradOut::new()
        .hidden(&mut dh)
        .linear_weight(&mut dw)
        .linear_bias(&mut db)
        .mode(GradMode::Accumulate);
    linear_cross_entropy_into(inputs, &y[..], &opts, &mut l, Some(g)).unwrap();
    for (a, b) in dh.iter().zip(&grads.hidden) {
        assert!((a - 1.0 - b).abs() < 1e-14);
    }
    for (a, b) in dw.iter().zip(&grads.linear_weight) {
        assert!((a - 2.0 - b).abs() < 1e-14);
    }
    // db of a zero bias: Σ_n (p − onehot)/N sums to 0 over the classes.
    assert!((db.iter().map(|x| x - 3.0).sum::<f64>()).abs() < 1e-14);

    let mut dh_only = vec![0.0f64; n * d];
    linear_cross_entropy_into(
        inputs,
        &y[..],
        &opts,
        &mut l,
        Some(LinearGradOut::new().hidden(&mut dh_only)),
    )
    .unwrap();
    assert_eq!(dh_only, grads.hidden);
}

/// z-loss and soft-capping through the linear path equal the unfused form:
/// `cross_entropy(h·Wᵀ + b)` on explicit f64 logits, with `dh = G·W`, `dW = Gᵀ·h`,
/// `db = Σ_n G_n`, for blocks of one row and the default budget.
#[test]
fn z_loss_and_softcap_match_the_unfused_form() {
    let (n, d, v) = (9usize, 4usize, 13usize);
    let val = |i: usize, k: f64| (i as f64 * 0.7 + k).sin() * 1.3;
    let h: Vec<f64> = (0..n * d).map(|i| val(i, 0.1)).collect();
    let w: Vec<f64> = (0..v * d).map(|i| val(i, 1.7)).collect();
    let b: Vec<f64> = (0..v).map(|i| val(i, 2.9)).collect();
    let y: Vec<i64> = (0..n)
        .map(|r| if r == 4 { -100 } else { (r * 5 % v) as i64 })
        .collect();
    let cw: Vec<f64> = (0..v).map(|c| 0.5 + (c % 3) as f64 * 0.25).collect();
    let mut logits = vec![0.0; n * v];
    for r in 0..n {
        for c in 0..v {
            logits[r * v + c] = b[c] + (0..d).map(|k| h[r * d + k] * w[c * d + k]).sum::<f64>();
        }
    }
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let ce = CrossEntropyOptions::default()
            .weight(&cw)
            .label_smoothing(0.1)
            .z_loss(1e-2)
            .softcap(4.0)
            .reduction(reduction);
        let (want, g) = xent::cross_entropy_with_grad(&logits, &[n, v], &y[..], &ce).unwrap();
        let mut dh = vec![0.0; n * d];
        let mut dw = vec![0.0; v * d];
        let mut db = vec![0.0; v];
        for r in 0..n {
            for c in 0..v {
                db[c] += g[r * v + c];
                for k in 0..d {
                    dh[r * d + k] += g[r * v + c] * w[c * d + k];
                    dw[c * d + k] += g[r * v + c] * h[r * d + k];
                }
            }
        }
        for scratch in [1, DEFAULT_SCRATCH_BYTES] {
            let opts = LinearCrossEntropyOptions::from(ce).scratch_bytes(scratch);
            let inputs = LinearInputs::new(&h, [n, d], &w, [v, d]).linear_bias(&b);
            let (got, grads) = linear_cross_entropy_with_grad(inputs, &y[..], &opts).unwrap();
            let what = format!("{reduction:?} scratch {scratch}");
            let close = |name: &str, a: &[f64], e: &[f64]| {
                for (i, (x, z)) in a.iter().zip(e).enumerate() {
                    assert!(
                        (x - z).abs() <= 1e-12 * z.abs().max(1.0),
                        "{what} {name}[{i}]: {x} vs {z}"
                    );
                }
            };
            close("loss", got.values(), want.values());
            close(
                "z term",
                &[got.z_loss().unwrap()],
                &[want.z_loss().unwrap()],
            );
            close("dh", &grads.hidden, &dh);
            close("dW", &grads.linear_weight, &dw);
            close("db", grads.linear_bias.as_ref().unwrap(), &db);
        }
    }
}
