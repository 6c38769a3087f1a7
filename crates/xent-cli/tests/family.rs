//! End-to-end tests of `xent loss bce | bce-with-logits | kl-div | js |
//! linear-cross-entropy` and of `--z-loss` / `--softcap` on cross-entropy: values
//! against a hand computation in `f64` (or the library, for the compositions), and
//! every error path (exit code 2, one line on stderr, no output file).

mod common;

use common::*;
use xent::{
    cross_entropy_with_grad, js_div_with_logits_with_grad, CrossEntropyOptions, JsDivOptions,
    Reduction,
};

/// Files hold the library's own numbers: only the reference's rounding differs (f64).
const EXACT: f64 = 1e-12;
/// An f32 file against an f64 hand computation.
const F32: f64 = 1e-5;

/// Runs `xent loss <args>` and returns stdout (the run must succeed).
fn run(args: &[&str]) -> String {
    let mut all = vec!["loss"];
    all.extend(args);
    stdout(&xent(&all))
}

/// The JSON report of a successful run.
fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(run(&all).trim()).expect("one JSON object")
}

fn values(dir: &Dir, name: &str) -> (Vec<u64>, String, Vec<f64>) {
    read_npy(&dir.path(name))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

// ---- bce ----

#[test]
fn bce_with_last_dim_weight_sum_and_grad() {
    let dir = Dir::new();
    let p = [0.25f64, 0.5, 0.9, 0.75];
    let y = [1.0f64, 0.0, 0.3, 1.0];
    let w = [1.0f64, 3.0];
    write_npy(&dir.path("x.npy"), &[2, 2], &p);
    write_npy(&dir.path("t.npy"), &[2, 2], &y);
    write_npy(&dir.path("w.npy"), &[2], &w);
    let r = json(&[
        "bce",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
        "--weight",
        &dir.s("w.npy"),
        "--reduction",
        "sum",
        "--out",
        &dir.s("l.npy"),
        "--grad-out",
        &dir.s("g.npy"),
    ]);
    let mut want = 0.0;
    let mut grad = Vec::new();
    for i in 0..4 {
        let wi = w[i % 2];
        want += -wi * (y[i] * p[i].ln() + (1.0 - y[i]) * (1.0 - p[i]).ln());
        grad.push(wi * (p[i] - y[i]) / (p[i] * (1.0 - p[i])));
    }
    assert!((r["loss"].as_f64().unwrap() - want).abs() < 1e-12, "{r}");
    assert_eq!(r["shape"], serde_json::json!([]));
    assert!(r.get("z_loss").is_none());
    let (shape, descr, l) = values(&dir, "l.npy");
    assert_eq!((shape, descr.contains("f8")), (vec![], true));
    assert_close(&l, &[want], EXACT);
    let (shape, _, g) = values(&dir, "g.npy");
    assert_eq!(shape, vec![2, 2]);
    assert_close(&g, &grad, EXACT);
}

#[test]
fn bce_clamps_logs_at_minus_100_in_f32() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[3], &[0.0f32, 1.0, 0.5]);
    write_npy(&dir.path("t.npy"), &[3], &[1.0f32, 0.0, 1.0]);
    let r = json(&[
        "bce",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
        "--reduction",
        "none",
        "--out",
        &dir.s("l.npy"),
    ]);
    assert_eq!(r["shape"], serde_json::json!([3]));
    let (_, descr, l) = values(&dir, "l.npy");
    assert!(descr.contains("f4"), "{descr}");
    assert_close(&l, &[100.0, 100.0, std::f64::consts::LN_2], F32);
}

#[test]
fn bce_errors() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[2, 2], &[0.1f64, 0.2, 1.5, 0.4]);
    write_npy(&dir.path("t.npy"), &[2, 2], &[1.0f64, 0.0, 1.0, 0.0]);
    fails_with(
        &dir,
        "bce",
        &[],
        "input 1.5 at index [1, 0] is out of range",
    );
    write_npy(&dir.path("x.npy"), &[2, 2], &[0.1f64, 0.2, 0.3, 0.4]);
    write_npy(&dir.path("t.npy"), &[4], &[1.0f64, 0.0, 1.0, 0.0]);
    fails_with(&dir, "bce", &[], "target of shape [4] does not match");
    write_npy(&dir.path("t.npy"), &[2, 2], &[1i64, 0, 1, 0]);
    fails_with(&dir, "bce", &[], "target has dtype int64");
    write_npy(&dir.path("t.npy"), &[2, 2], &[1.0f64, 0.0, 1.0, 0.0]);
    write_npy(&dir.path("w.npy"), &[3, 3], &[1.0f64; 9]);
    let w = dir.s("w.npy");
    fails_with(&dir, "bce", &["--weight", &w], "does not broadcast");
    write_npy(&dir.path("w.npy"), &[3], &[1.0f64; 3]);
    fails_with(
        &dir,
        "bce",
        &["--weight", &w],
        "weight has 3 elements, which do not broadcast",
    );
    write_npy(&dir.path("go.npy"), &[2], &[1.0f64; 2]);
    let go = dir.s("go.npy");
    fails_with(
        &dir,
        "bce",
        &["--grad-output", &go],
        "does not match one element (a 0-d array) for reduction mean",
    );
    fails_with(
        &dir,
        "bce",
        &["--reduction", "none", "--grad-output", &go],
        "does not match the loss shape [2, 2]",
    );
    // --out and --grad-out naming one file.
    let (x, t, l) = (dir.s("x.npy"), dir.s("t.npy"), dir.s("l.npy"));
    let out = xent(&[
        "loss",
        "bce",
        "--input",
        &x,
        "--target",
        &t,
        "--out",
        &l,
        "--grad-out",
        &l,
    ]);
    assert_fails(&out, "--out and --grad-out both name", &[dir.path("l.npy")]);
}

// ---- bce-with-logits ----

#[test]
fn bce_with_logits_pos_weight_none_and_grad_output() {
    let dir = Dir::new();
    let x = [0.0f64, 2.0, -3.0, 100.0, -1e4, 1.5];
    let y = [1.0f64, 0.0, 0.5, 1.0, 1.0, 0.25];
    let pw = [3.0f64, 0.5];
    let go = [1.0f64, 2.0, 3.0, -1.0, 0.5, 4.0];
    write_npy(&dir.path("x.npy"), &[3, 2], &x);
    write_npy(&dir.path("t.npy"), &[3, 2], &y);
    write_npy(&dir.path("pw.npy"), &[2], &pw);
    write_npy(&dir.path("go.npy"), &[3, 2], &go);
    let r = json(&[
        "bce-with-logits",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
        "--pos-weight",
        &dir.s("pw.npy"),
        "--reduction",
        "none",
        "--out",
        &dir.s("l.npy"),
        "--grad-out",
        &dir.s("g.npy"),
        "--grad-output",
        &dir.s("go.npy"),
    ]);
    let mut want = Vec::new();
    let mut grad = Vec::new();
    for i in 0..6 {
        let p = pw[i % 2];
        want.push((1.0 - y[i]) * x[i] - (1.0 + (p - 1.0) * y[i]) * log_sigmoid(x[i]));
        grad.push(go[i] * ((p * y[i] + 1.0 - y[i]) * sigmoid(x[i]) - p * y[i]));
    }
    let printed: Vec<f64> = r["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_close(&printed, &want, 1e-9);
    assert_close(&values(&dir, "l.npy").2, &want, 1e-9);
    assert_close(&values(&dir, "g.npy").2, &grad, 1e-12);
    // A 0-d pos_weight and a full-shape weight.
    write_npy(&dir.path("pw.npy"), &[], &[2.0f64]);
    write_npy(&dir.path("w.npy"), &[3, 2], &[0.5f64; 6]);
    let r = json(&[
        "bce-with-logits",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
        "--pos-weight",
        &dir.s("pw.npy"),
        "--weight",
        &dir.s("w.npy"),
    ]);
    let want: f64 = (0..6)
        .map(|i| 0.5 * ((1.0 - y[i]) * x[i] - (1.0 + y[i]) * log_sigmoid(x[i])))
        .sum::<f64>()
        / 6.0;
    assert!((r["loss"].as_f64().unwrap() - want).abs() < 1e-9, "{r}");
}

#[test]
fn bce_with_logits_errors() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[2, 3], &[0.5f32; 6]);
    write_npy(&dir.path("t.npy"), &[2, 3], &[1.0f32; 6]);
    write_npy(&dir.path("pw.npy"), &[2], &[1.0f32; 2]);
    let pw = dir.s("pw.npy");
    fails_with(
        &dir,
        "bce-with-logits",
        &["--pos-weight", &pw],
        "pos_weight has 2 elements, which do not broadcast to shape [2, 3]",
    );
    write_npy(&dir.path("pw.npy"), &[1, 3], &[1.0f32; 3]);
    fails_with(
        &dir,
        "bce-with-logits",
        &["--pos-weight", &pw],
        "pos_weight must be a vector",
    );
    write_npy(&dir.path("x.npy"), &[2, 3], &[1i32; 6]);
    fails_with(&dir, "bce-with-logits", &[], "has dtype int32");
}

// ---- kl-div ----

#[test]
fn kl_div_batchmean_with_both_gradients() {
    let dir = Dir::new();
    let q = [0.2f64, 0.3, 0.5, 0.1, 0.1, 0.8];
    let x: Vec<f64> = q.iter().map(|v| v.ln()).collect();
    let t = [0.3f64, 0.3, 0.4, 0.25, 0.5, 0.25];
    write_npy(&dir.path("x.npy"), &[2, 3], &x);
    write_npy(&dir.path("t.npy"), &[2, 3], &t);
    let r = json(&[
        "kl-div",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
        "--reduction",
        "batchmean",
        "--grad-out",
        &dir.s("g.npy"),
        "--grad-out-target",
        &dir.s("gt.npy"),
    ]);
    let want: f64 = (0..6).map(|i| t[i] * (t[i].ln() - x[i])).sum::<f64>() / 2.0;
    assert!((r["loss"].as_f64().unwrap() - want).abs() < 1e-12, "{r}");
    let gi: Vec<f64> = t.iter().map(|t| -t / 2.0).collect();
    let gt: Vec<f64> = (0..6).map(|i| (t[i].ln() + 1.0 - x[i]) / 2.0).collect();
    assert_close(&values(&dir, "g.npy").2, &gi, EXACT);
    assert_close(&values(&dir, "gt.npy").2, &gt, EXACT);
}

#[test]
fn kl_div_log_target_zero_target_and_upstream_for_the_target_gradient_only() {
    let dir = Dir::new();
    // A zero target contributes 0·ln 0 = 0.
    write_npy(&dir.path("x.npy"), &[2], &[-1.0f32, -0.5]);
    write_npy(&dir.path("t.npy"), &[2], &[1.0f32, 0.0]);
    let r = json(&[
        "kl-div",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
        "--reduction",
        "sum",
    ]);
    assert!((r["loss"].as_f64().unwrap() - 1.0).abs() < 1e-7, "{r}");
    // log_target: e^t·(t − x); --grad-output with --grad-out-target alone.
    let t = [0.0f64, -1.0];
    let x = [-1.0f64, 0.0];
    write_npy(&dir.path("x.npy"), &[2], &x);
    write_npy(&dir.path("t.npy"), &[2], &t);
    write_npy(&dir.path("go.npy"), &[2], &[2.0f64, 3.0]);
    let text = run(&[
        "kl-div",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
        "--log-target",
        "--reduction",
        "none",
        "--out",
        &dir.s("l.npy"),
        "--grad-out-target",
        &dir.s("gt.npy"),
        "--grad-output",
        &dir.s("go.npy"),
    ]);
    assert!(text.starts_with("shape [2]"), "{text}");
    let want: Vec<f64> = (0..2).map(|i| t[i].exp() * (t[i] - x[i])).collect();
    assert_close(&values(&dir, "l.npy").2, &want, EXACT);
    let gt: Vec<f64> = (0..2)
        .map(|i| [2.0, 3.0][i] * t[i].exp() * (t[i] - x[i] + 1.0))
        .collect();
    assert_close(&values(&dir, "gt.npy").2, &gt, EXACT);
    assert!(!dir.path("g.npy").exists());
}

#[test]
fn kl_div_errors() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[2, 3], &[-1.0f64; 6]);
    write_npy(&dir.path("t.npy"), &[3, 2], &[0.5f64; 6]);
    fails_with(&dir, "kl-div", &[], "target of shape [3, 2] does not match");
    write_npy(&dir.path("t.npy"), &[2, 3], &[0.5f64; 6]);
    write_npy(&dir.path("go.npy"), &[2], &[1.0f64; 2]);
    let go = dir.s("go.npy");
    fails_with(
        &dir,
        "kl-div",
        &["--reduction", "batchmean", "--grad-output", &go],
        "for reduction batchmean",
    );
    let gt = dir.s("l.npy");
    fails_with(
        &dir,
        "kl-div",
        &["--grad-out-target", &gt],
        "--out and --grad-out-target both name",
    );
    // An unwritable target gradient: neither the loss nor the input gradient appears.
    let bad = dir.s("missing/gt.npy");
    fails_with(&dir, "kl-div", &["--grad-out-target", &bad], "cannot write");
}

// ---- js ----

#[test]
fn js_probabilities_mean_with_both_gradients() {
    let dir = Dir::new();
    let p = [0.2f64, 0.3, 0.5, 0.5, 0.5, 0.0];
    let q = [0.1f64, 0.6, 0.3, 0.25, 0.25, 0.5];
    write_npy(&dir.path("p.npy"), &[2, 3], &p);
    write_npy(&dir.path("q.npy"), &[2, 3], &q);
    let r = json(&[
        "js",
        "--input",
        &dir.s("p.npy"),
        "--target",
        &dir.s("q.npy"),
        "--grad-out",
        &dir.s("gp.npy"),
        "--grad-out-target",
        &dir.s("gq.npy"),
    ]);
    let xlog = |a: f64, m: f64| if a == 0.0 { 0.0 } else { a * (a / m).ln() };
    let mut want = 0.0;
    let (mut gp, mut gq) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let m = 0.5 * (p[i] + q[i]);
        want += 0.5 * (xlog(p[i], m) + xlog(q[i], m)) / 2.0;
        gp.push(0.5 * (p[i] / m).ln() / 2.0);
        gq.push(0.5 * (q[i] / m).ln() / 2.0);
    }
    assert!((r["loss"].as_f64().unwrap() - want).abs() < 1e-12, "{r}");
    // p = 0 < q: the one-sided limit −∞.
    let got_p = values(&dir, "gp.npy").2;
    assert_eq!(got_p[5], f64::NEG_INFINITY);
    assert_close(&got_p[..5], &gp[..5], EXACT);
    assert_close(&values(&dir, "gq.npy").2, &gq, EXACT);
}

#[test]
fn js_logits_match_the_library_and_equal_rows_give_zero() {
    let dir = Dir::new();
    let a = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
    let b = [3.0f32, 2.0, 1.0, 5.0, 5.0, 5.0];
    write_npy(&dir.path("a.npy"), &[2, 3], &a);
    write_npy(&dir.path("b.npy"), &[2, 3], &b);
    let r = json(&[
        "js",
        "--logits",
        "--input",
        &dir.s("a.npy"),
        "--target",
        &dir.s("b.npy"),
        "--reduction",
        "none",
        "--grad-out",
        &dir.s("ga.npy"),
        "--grad-out-target",
        &dir.s("gb.npy"),
    ]);
    let opts = JsDivOptions::default().reduction(Reduction::None);
    let (loss, ga, gb) = js_div_with_logits_with_grad(&a, &[2, 3], &b, &opts).unwrap();
    // The report has the f32's shortest digits: they read back to the same f32.
    let printed: Vec<f64> = r["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| f64::from(v.as_f64().unwrap() as f32))
        .collect();
    let want: Vec<f64> = loss.values().iter().map(|&v| f64::from(v)).collect();
    assert_close(&printed, &want, 0.0);
    assert_eq!(printed[1], 0.0); // softmax of equal logits: identical rows
    assert_close(
        &values(&dir, "ga.npy").2,
        &ga.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        0.0,
    );
    assert_close(
        &values(&dir, "gb.npy").2,
        &gb.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        0.0,
    );
}

#[test]
fn js_errors() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[2, 2], &[0.5f64, 0.5, 1.2, -0.2]);
    write_npy(&dir.path("t.npy"), &[2, 2], &[0.5f64; 4]);
    fails_with(&dir, "js", &[], "p 1.2 at index [1, 0] is out of range");
    write_npy(&dir.path("x.npy"), &[], &[0.5f64]);
    write_npy(&dir.path("t.npy"), &[], &[0.5f64]);
    fails_with(&dir, "js", &["--logits"], "input of shape []");
}

// ---- cross-entropy --z-loss --softcap ----

#[test]
fn cross_entropy_z_loss_and_softcap() {
    let dir = Dir::new();
    let x = [1.0f64, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
    write_npy(&dir.path("x.npy"), &[3, 3], &x);
    write_npy(&dir.path("t.npy"), &[3], &[2i64, 1, 0]);
    let base = [
        "cross-entropy",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
    ];
    // z-loss alone: lse([1, 2, 3])² · s added to every row.
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let mut args = base.to_vec();
    args.extend(["--z-loss", "0.1"]);
    let r = json(&args);
    let z = 0.1 * lse * lse;
    assert!((r["z_loss"].as_f64().unwrap() - z).abs() < 1e-12, "{r}");
    let classic = 1.4076059644443804;
    assert!((r["loss"].as_f64().unwrap() - (classic + z)).abs() < 1e-12);
    let text = run(&args);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[1].starts_with("z_loss "), "{text}");
    // Both, with the gradient: equal to the library's.
    let mut args = base.to_vec();
    let g = dir.s("g.npy");
    args.extend(["--z-loss", "1e-2", "--softcap", "2.5", "--grad-out", &g]);
    let r = json(&args);
    let opts = CrossEntropyOptions::default().z_loss(1e-2).softcap(2.5);
    let (loss, grad) = cross_entropy_with_grad(&x, &[3, 3], &[2i64, 1, 0][..], &opts).unwrap();
    assert_eq!(r["loss"].as_f64().unwrap(), loss.item().unwrap());
    assert_eq!(r["z_loss"].as_f64().unwrap(), loss.z_loss().unwrap());
    assert_close(&values(&dir, "g.npy").2, &grad, 0.0);
    // Without --z-loss the report has no z term.
    assert!(json(&base).get("z_loss").is_none());
}

#[test]
fn cross_entropy_bad_softcap_fails() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[1, 3], &[1.0f64, 2.0, 3.0]);
    write_npy(&dir.path("t.npy"), &[1], &[2i64]);
    fails_with(&dir, "cross-entropy", &["--softcap", "-1"], "softcap");
    fails_with(&dir, "cross-entropy", &["--z-loss", "-1"], "z_loss");
}

// ---- linear-cross-entropy ----

/// `h` (3×2), `W` (4×2), `b` (4), targets: the small linear example.
const H: [f64; 6] = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5];
const W: [f64; 8] = [1.0, 0.5, -0.5, 1.0, 0.25, -1.0, 2.0, 0.0];
const B: [f64; 4] = [0.1, -0.2, 0.0, 0.3];

fn write_linear(dir: &Dir, targets: &[i64]) {
    write_npy(&dir.path("h.npy"), &[3, 2], &H);
    write_npy(&dir.path("w.npy"), &[4, 2], &W);
    write_npy(&dir.path("b.npy"), &[4], &B);
    write_npy(&dir.path("t.npy"), &[3], targets);
}

/// The unfused reference: logits `h·Wᵀ + b`, the library's cross-entropy gradient `G`,
/// and `dh = G·W`, `dW = Gᵀ·h`, `db = Σ_n G_n`.
#[allow(clippy::type_complexity)]
fn unfused(
    targets: &[i64],
    opts: &CrossEntropyOptions<'_, f64>,
) -> (f64, Option<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; 12];
    for n in 0..3 {
        for v in 0..4 {
            x[n * 4 + v] = B[v] + (0..2).map(|d| H[n * 2 + d] * W[v * 2 + d]).sum::<f64>();
        }
    }
    let (loss, g) = cross_entropy_with_grad(&x, &[3, 4], targets, opts).unwrap();
    let mut dh = vec![0.0; 6];
    let mut dw = vec![0.0; 8];
    let mut db = vec![0.0; 4];
    for n in 0..3 {
        for v in 0..4 {
            let gv = g[n * 4 + v];
            db[v] += gv;
            for d in 0..2 {
                dh[n * 2 + d] += gv * W[v * 2 + d];
                dw[v * 2 + d] += gv * H[n * 2 + d];
            }
        }
    }
    (loss.item().unwrap(), loss.z_loss(), dh, dw, db)
}

#[test]
fn linear_cross_entropy_matches_the_unfused_form() {
    let dir = Dir::new();
    write_linear(&dir, &[3, -1, 0]);
    write_npy(&dir.path("cw.npy"), &[4], &[1.0f64, 2.0, 0.5, 1.5]);
    let r = json(&[
        "linear-cross-entropy",
        "--hidden",
        &dir.s("h.npy"),
        "--weight",
        &dir.s("w.npy"),
        "--bias",
        &dir.s("b.npy"),
        "--target",
        &dir.s("t.npy"),
        "--class-weight",
        &dir.s("cw.npy"),
        "--ignore-index",
        "-1",
        "--label-smoothing",
        "0.1",
        "--z-loss",
        "0.01",
        "--softcap",
        "3",
        "--scratch-mib",
        "1",
        "--out",
        &dir.s("l.npy"),
        "--grad-out-hidden",
        &dir.s("gh.npy"),
        "--grad-out-weight",
        &dir.s("gw.npy"),
        "--grad-out-bias",
        &dir.s("gb.npy"),
    ]);
    let cw = [1.0f64, 2.0, 0.5, 1.5];
    let opts = CrossEntropyOptions::default()
        .weight(&cw)
        .ignore_index(-1)
        .label_smoothing(0.1)
        .z_loss(0.01)
        .softcap(3.0);
    let (loss, z, dh, dw, db) = unfused(&[3, -1, 0], &opts);
    assert!((r["loss"].as_f64().unwrap() - loss).abs() < 1e-12, "{r}");
    assert!(
        (r["z_loss"].as_f64().unwrap() - z.unwrap()).abs() < 1e-12,
        "{r}"
    );
    assert_close(&values(&dir, "l.npy").2, &[loss], 1e-12);
    let (shape, _, gh) = values(&dir, "gh.npy");
    assert_eq!(shape, vec![3, 2]);
    assert_close(&gh, &dh, 1e-12);
    let (shape, _, gw) = values(&dir, "gw.npy");
    assert_eq!(shape, vec![4, 2]);
    assert_close(&gw, &dw, 1e-12);
    let (shape, _, gb) = values(&dir, "gb.npy");
    assert_eq!(shape, vec![4]);
    assert_close(&gb, &db, 1e-12);
}

#[test]
fn linear_cross_entropy_f32_none_with_grad_output_and_no_bias() {
    let dir = Dir::new();
    let h: Vec<f32> = H.iter().map(|&v| v as f32).collect();
    let w: Vec<f32> = W.iter().map(|&v| v as f32).collect();
    write_npy(&dir.path("h.npy"), &[3, 2], &h);
    write_npy(&dir.path("w.npy"), &[4, 2], &w);
    write_npy(&dir.path("t.npy"), &[3], &[0u8, 1, 2]);
    write_npy(&dir.path("go.npy"), &[3], &[1.0f32, 2.0, -1.0]);
    let text = run(&[
        "linear-cross-entropy",
        "--hidden",
        &dir.s("h.npy"),
        "--weight",
        &dir.s("w.npy"),
        "--target",
        &dir.s("t.npy"),
        "--reduction",
        "none",
        "--out",
        &dir.s("l.npy"),
        "--grad-out-weight",
        &dir.s("gw.npy"),
        "--grad-output",
        &dir.s("go.npy"),
    ]);
    assert!(text.starts_with("shape [3]"), "{text}");
    // The reference in f64 without bias: per-row losses, dW = Σ_n go_n·G_nᵀ·h_n.
    let mut x = vec![0.0f64; 12];
    for n in 0..3 {
        for v in 0..4 {
            x[n * 4 + v] = (0..2).map(|d| H[n * 2 + d] * W[v * 2 + d]).sum::<f64>();
        }
    }
    let opts = CrossEntropyOptions::default().reduction(Reduction::None);
    let (loss, g) = cross_entropy_with_grad(&x, &[3, 4], &[0u8, 1, 2][..], &opts).unwrap();
    let (shape, descr, l) = values(&dir, "l.npy");
    assert_eq!((shape, descr.contains("f4")), (vec![3], true));
    assert_close(&l, loss.values(), F32);
    let go = [1.0, 2.0, -1.0];
    let mut dw = vec![0.0; 8];
    for n in 0..3 {
        for v in 0..4 {
            for d in 0..2 {
                dw[v * 2 + d] += go[n] * g[n * 4 + v] * H[n * 2 + d];
            }
        }
    }
    assert_close(&values(&dir, "gw.npy").2, &dw, F32);
}

/// Runs linear-cross-entropy on `dir`'s files with `--out` and all three gradients,
/// plus `extra`, and expects a failure mentioning `needle` with no output written.
fn linear_fails(dir: &Dir, extra: &[&str], needle: &str) {
    let names = ["l.npy", "gh.npy", "gw.npy", "gb.npy"];
    let paths: Vec<String> = names.iter().map(|n| dir.s(n)).collect();
    let (h, w, t) = (dir.s("h.npy"), dir.s("w.npy"), dir.s("t.npy"));
    let mut args = vec!["loss", "linear-cross-entropy", "--hidden", &h];
    args.extend(["--weight", &w, "--target", &t, "--out", &paths[0]]);
    args.extend([
        "--grad-out-hidden",
        &paths[1],
        "--grad-out-weight",
        &paths[2],
    ]);
    args.extend(["--grad-out-bias", &paths[3]]);
    args.extend(extra);
    let outputs: Vec<_> = names.iter().map(|n| dir.path(n)).collect();
    assert_fails(&xent(&args), needle, &outputs);
}

#[test]
fn linear_cross_entropy_errors() {
    let dir = Dir::new();
    write_linear(&dir, &[0, 1, 4]);
    linear_fails(
        &dir,
        &[],
        "target 4 at index [2] is out of bounds for 4 classes",
    );
    write_linear(&dir, &[0, 1, 2]);
    let b = dir.s("b.npy");
    write_npy(&dir.path("b.npy"), &[3], &[0.0f64; 3]);
    linear_fails(&dir, &["--bias", &b], "bias");
    write_npy(&dir.path("b.npy"), &[4], &[1i64; 4]);
    linear_fails(&dir, &["--bias", &b], "has dtype int64");
    linear_fails(
        &dir,
        &["--label-smoothing", "1.5"],
        "label_smoothing must be",
    );
    write_npy(&dir.path("w.npy"), &[4, 3], &[0.0f64; 12]);
    linear_fails(&dir, &[], "hidden has 2");
    write_npy(&dir.path("w.npy"), &[8], &W);
    linear_fails(&dir, &[], "weight must be a matrix");
    write_npy(&dir.path("w.npy"), &[4, 2], &W);
    write_npy(&dir.path("t.npy"), &[3], &[0.0f64, 1.0, 2.0]);
    linear_fails(&dir, &[], "integer dtype");
    write_npy(&dir.path("t.npy"), &[2], &[0i64, 1]);
    linear_fails(&dir, &[], "target");
    write_npy(&dir.path("t.npy"), &[3], &[0i64, 1, 2]);
    write_npy(&dir.path("h.npy"), &[6], &H);
    linear_fails(&dir, &[], "hidden must be a matrix (N, D)");
    write_npy(&dir.path("h.npy"), &[3, 2], &[1i32; 6]);
    linear_fails(&dir, &[], "hidden");
    write_npy(&dir.path("h.npy"), &[3, 2], &H);
    write_npy(&dir.path("cw.npy"), &[3], &[1.0f64; 3]);
    let cw = dir.s("cw.npy");
    linear_fails(
        &dir,
        &["--class-weight", &cw],
        "weight tensor should be defined",
    );
    write_npy(&dir.path("go.npy"), &[3], &[1.0f64; 3]);
    let go = dir.s("go.npy");
    linear_fails(&dir, &["--grad-output", &go], "for reduction mean");
    // Two outputs naming one file; an unwritable one.
    let (h, w, t, l) = (
        dir.s("h.npy"),
        dir.s("w.npy"),
        dir.s("t.npy"),
        dir.s("l.npy"),
    );
    let out = xent(&[
        "loss",
        "linear-cross-entropy",
        "--hidden",
        &h,
        "--weight",
        &w,
        "--target",
        &t,
        "--grad-out-hidden",
        &l,
        "--grad-out-bias",
        &l,
    ]);
    assert_fails(
        &out,
        "--grad-out-hidden and --grad-out-bias both name",
        &[dir.path("l.npy")],
    );
    let bad = dir.s("missing/gw.npy");
    let out = xent(&[
        "loss",
        "linear-cross-entropy",
        "--hidden",
        &h,
        "--weight",
        &w,
        "--target",
        &t,
        "--out",
        &l,
        "--grad-out-weight",
        &bad,
    ]);
    assert_fails(&out, "cannot write", &[dir.path("l.npy")]);
}
