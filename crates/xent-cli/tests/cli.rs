//! End-to-end tests of the `xent` binary: the demo, `xent loss` on `.npy` files, and
//! every error path (exit code 2, one line on stderr, no output file).

mod common;

use common::*;
use npyz::Order;

/// Loss and gradient values printed with 4 decimals are compared at this tolerance;
/// values read back from files at [`EXACT`].
const PRINTED: f64 = 5e-5;
/// Files hold the library's own numbers: only the reference's rounding differs.
const EXACT: f64 = 1e-6;

/// The classic example: `x = [[1, 2, 3]] × 3`, targets `[2, 1, 0]`.
const CLASSIC_X: [f64; 9] = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
/// The classic loss, `mean(−log_softmax([1, 2, 3])[[2, 1, 0]])`.
const CLASSIC_LOSS: f64 = 1.4076059644443804;
/// `−log_softmax([1, 2, 3])`.
const NEG_LOG_SOFTMAX: [f64; 3] = [2.4076059644443806, 1.4076059644443806, 0.4076059644443805];
/// `softmax([1, 2, 3])`.
const SOFTMAX: [f64; 3] = [0.09003057317038046, 0.24472847105479764, 0.6652409557748219];

/// The classic logits and targets as `x.npy` (f64) and `t.npy` (int64).
fn classic(dir: &Dir) {
    write_npy(&dir.path("x.npy"), &[3, 3], &CLASSIC_X);
    write_npy(&dir.path("t.npy"), &[3], &[2i64, 1, 0]);
}

/// `(softmax − onehot)/n` rows of the classic example, scaled per row by `scale`.
fn classic_grad(targets: [usize; 3], scale: [f64; 3]) -> Vec<f64> {
    let mut g = Vec::new();
    for (t, s) in targets.iter().zip(scale) {
        for (c, p) in SOFTMAX.iter().enumerate() {
            g.push(s * (p - if c == *t { 1.0 } else { 0.0 }));
        }
    }
    g
}

#[test]
fn demo_prints_the_computed_classic_example() {
    let text = stdout(&xent(&["demo"]));
    for needle in [
        // one-hot rows of [2, 1, 0]
        "2               0        0        1",
        "1               0        1        0",
        "0               1        0        0",
        "softmax          0.0900   0.2447   0.6652",
        "log_softmax     -2.4076  -1.4076  -0.4076",
        "log_softmax equals ln(softmax) here: max |difference| = ",
        "0.0300   0.0816  -0.1116",
        "0.0300  -0.2518   0.2217",
        "-0.3033   0.0816   0.2217",
        "0         2.4076      -0.9100   0.2447   0.6652",
        "1         1.4076       0.0900  -0.7553   0.6652",
        "2         0.4076       0.0900   0.2447  -0.3348",
        "all three routes agree: loss and gradient within 1e-6",
    ] {
        assert!(text.contains(needle), "demo lacks {needle:?}:\n{text}");
    }
    assert_eq!(text.matches("loss 1.4076").count(), 3, "{text}");
    // Each route prints the 3×3 gradient: every row appears three times.
    assert_eq!(
        text.matches("-0.3033   0.0816   0.2217").count(),
        3,
        "{text}"
    );
    assert!(text
        .trim_end()
        .lines()
        .last()
        .unwrap()
        .starts_with("all three routes agree"));
}

#[test]
fn cross_entropy_classic_text_and_json() {
    let dir = Dir::new();
    classic(&dir);
    let args = [
        "loss",
        "cross-entropy",
        "--input",
        &dir.s("x.npy"),
        "--target",
        &dir.s("t.npy"),
    ];
    let text = stdout(&xent(&args));
    let loss: f64 = text.trim().parse().unwrap();
    assert!((loss - CLASSIC_LOSS).abs() < 1e-12, "{text}");
    assert!(text.starts_with("1.4076"));

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v: serde_json::Value = serde_json::from_str(&stdout(&xent(&json_args))).unwrap();
    assert!(
        (v["loss"].as_f64().unwrap() - CLASSIC_LOSS).abs() < 1e-12,
        "{v}"
    );
    assert_eq!(v["shape"], serde_json::json!([]));
}

#[test]
fn out_and_grad_out_round_trip_in_f32_and_f64() {
    for dtype in ["f32", "f64"] {
        let dir = Dir::new();
        if dtype == "f32" {
            let x: Vec<f32> = CLASSIC_X.iter().map(|&v| v as f32).collect();
            write_npy(&dir.path("x.npy"), &[3, 3], &x);
        } else {
            write_npy(&dir.path("x.npy"), &[3, 3], &CLASSIC_X);
        }
        write_npy(&dir.path("t.npy"), &[3], &[2i64, 1, 0]);
        let (x, t, l, g) = (
            dir.s("x.npy"),
            dir.s("t.npy"),
            dir.s("l.npy"),
            dir.s("g.npy"),
        );
        let json = stdout(&xent(&[
            "loss",
            "cross-entropy",
            "--input",
            &x,
            "--target",
            &t,
            "--out",
            &l,
            "--grad-out",
            &g,
            "--json",
        ]));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let descr = if dtype == "f32" { "<f4" } else { "<f8" };

        let (shape, d, loss) = read_npy(&dir.path("l.npy"));
        assert_eq!((shape, d.as_str()), (vec![], descr));
        assert_close(&loss, &[CLASSIC_LOSS], EXACT);
        // JSON shows the shortest digits of the value in its own dtype: they read back
        // to exactly the file's value.
        let shown = v["loss"].as_f64().unwrap();
        if dtype == "f32" {
            assert_eq!(shown as f32, loss[0] as f32);
            assert_eq!(v["loss"].to_string(), (loss[0] as f32).to_string());
        } else {
            assert_eq!(shown, loss[0]);
        }

        let (shape, d, grad) = read_npy(&dir.path("g.npy"));
        assert_eq!((shape, d.as_str()), (vec![3, 3], descr));
        assert_close(&grad, &classic_grad([2, 1, 0], [1.0 / 3.0; 3]), EXACT);
        assert_close(&grad[..3], &[0.0300, 0.0816, -0.1116], PRINTED);
    }
}

#[test]
fn reduction_none_with_grad_output() {
    let dir = Dir::new();
    classic(&dir);
    write_npy(&dir.path("go.npy"), &[3], &[1.0f64, 2.0, -0.5]);
    let (x, t, l, g, go) = (
        dir.s("x.npy"),
        dir.s("t.npy"),
        dir.s("l.npy"),
        dir.s("g.npy"),
        dir.s("go.npy"),
    );
    let base = [
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--reduction",
        "none",
    ];
    let mut args = base.to_vec();
    args.extend(["--out", &l, "--grad-out", &g, "--grad-output", &go]);
    let text = stdout(&xent(&args));
    assert!(text.starts_with("shape [3]"), "{text}");
    for needle in ["min 0.4076", "mean 1.4076", "max 2.4076"] {
        assert!(text.contains(needle), "{text}");
    }
    let want_loss = [NEG_LOG_SOFTMAX[2], NEG_LOG_SOFTMAX[1], NEG_LOG_SOFTMAX[0]];
    let (shape, _, loss) = read_npy(&dir.path("l.npy"));
    assert_eq!(shape, vec![3]);
    assert_close(&loss, &want_loss, EXACT);
    let (shape, _, grad) = read_npy(&dir.path("g.npy"));
    assert_eq!(shape, vec![3, 3]);
    assert_close(&grad, &classic_grad([2, 1, 0], [1.0, 2.0, -0.5]), EXACT);

    let mut json_args = base.to_vec();
    json_args.push("--json");
    let v: serde_json::Value = serde_json::from_str(&stdout(&xent(&json_args))).unwrap();
    assert_eq!(v["shape"], serde_json::json!([3]));
    let got: Vec<f64> = v["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_f64().unwrap())
        .collect();
    assert_close(&got, &want_loss, EXACT);

    // A 0-d upstream gradient scales a mean.
    write_npy(&dir.path("go0.npy"), &[], &[2.0f64]);
    let go0 = dir.s("go0.npy");
    stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--grad-out",
        &g,
        "--grad-output",
        &go0,
    ]));
    let (_, _, grad) = read_npy(&dir.path("g.npy"));
    assert_close(&grad, &classic_grad([2, 1, 0], [2.0 / 3.0; 3]), EXACT);
}

#[test]
fn k_dim_input_and_fortran_order() {
    // x of shape (2, 3, 2): row (n, i) has classes x[n, :, i].
    let x: Vec<f64> = (0..12).map(|v| (v as f64 * 0.7).sin() * 3.0).collect();
    let targets = [0i64, 2, 1, 1];
    let mut want = Vec::new();
    for n in 0..2 {
        for i in 0..2 {
            let row: Vec<f64> = (0..3).map(|c| x[n * 6 + c * 2 + i]).collect();
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            want.push(lse - row[targets[n * 2 + i] as usize]);
        }
    }
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[2, 3, 2], &x);
    write_npy(&dir.path("t.npy"), &[2, 2], &targets);
    let (xs, t, l) = (dir.s("x.npy"), dir.s("t.npy"), dir.s("l.npy"));
    let args = [
        "loss",
        "cross-entropy",
        "--input",
        &xs,
        "--target",
        &t,
        "--reduction",
        "none",
        "--out",
        &l,
    ];
    stdout(&xent(&args));
    let (shape, _, loss) = read_npy(&dir.path("l.npy"));
    assert_eq!(shape, vec![2, 2]);
    assert_close(&loss, &want, EXACT);

    // The same logits stored column-major give the same losses.
    let mut fortran = vec![0.0; 12];
    for n in 0..2 {
        for c in 0..3 {
            for i in 0..2 {
                fortran[n + 2 * c + 6 * i] = x[n * 6 + c * 2 + i];
            }
        }
    }
    write_npy_order(&dir.path("x.npy"), &[2, 3, 2], &fortran, Order::Fortran);
    stdout(&xent(&args));
    let (_, _, loss) = read_npy(&dir.path("l.npy"));
    assert_close(&loss, &want, EXACT);
}

#[test]
fn uint8_and_int32_targets() {
    let dir = Dir::new();
    classic(&dir);
    let (x, t) = (dir.s("x.npy"), dir.s("t.npy"));
    write_npy(&dir.path("t.npy"), &[3], &[2u8, 1, 0]);
    let a: f64 = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
    ]))
    .trim()
    .parse()
    .unwrap();
    write_npy(&dir.path("t.npy"), &[3], &[2i32, 1, 0]);
    let b: f64 = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
    ]))
    .trim()
    .parse()
    .unwrap();
    assert!((a - CLASSIC_LOSS).abs() < 1e-12, "{a}");
    assert_eq!(a, b, "the index dtype does not change the result");
    write_npy(&dir.path("t.npy"), &[3], &[2u64, 1, 0]);
    let c: f64 = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
    ]))
    .trim()
    .parse()
    .unwrap();
    assert_eq!(a, c);
}

#[test]
fn unbatched_input_with_0d_target() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[3], &[1.0f32, 2.0, 3.0]);
    write_npy(&dir.path("t.npy"), &[], &[0u16]);
    let (x, t, g) = (dir.s("x.npy"), dir.s("t.npy"), dir.s("g.npy"));
    let text = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--grad-out",
        &g,
    ]));
    assert!(
        (text.trim().parse::<f64>().unwrap() - NEG_LOG_SOFTMAX[0]).abs() < 1e-6,
        "{text}"
    );
    let (shape, d, grad) = read_npy(&dir.path("g.npy"));
    assert_eq!((shape, d.as_str()), (vec![3], "<f4"));
    assert_close(&grad, &classic_grad([0, 0, 0], [1.0; 3])[..3], EXACT);
}

#[test]
fn probability_targets() {
    let dir = Dir::new();
    classic(&dir);
    let (x, t, g) = (dir.s("x.npy"), dir.s("t.npy"), dir.s("g.npy"));
    // One-hot probabilities give the class-index result, also from float32 targets.
    let onehot = [0.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
    write_npy(&dir.path("t.npy"), &[3, 3], &onehot);
    let text = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--grad-out",
        &g,
    ]));
    assert!(
        (text.trim().parse::<f64>().unwrap() - CLASSIC_LOSS).abs() < 1e-12,
        "{text}"
    );
    let (_, _, grad) = read_npy(&dir.path("g.npy"));
    assert_close(&grad, &classic_grad([2, 1, 0], [1.0 / 3.0; 3]), EXACT);

    // Soft targets: mean over rows of −Σ t·log_softmax.
    let soft = [0.2f64, 0.3, 0.5, 1.0, 0.0, 0.0, 0.25, 0.25, 0.5];
    write_npy(&dir.path("t.npy"), &[3, 3], &soft);
    let want: f64 = soft
        .chunks(3)
        .map(|row| {
            row.iter()
                .zip(NEG_LOG_SOFTMAX)
                .map(|(t, l)| t * l)
                .sum::<f64>()
        })
        .sum::<f64>()
        / 3.0;
    let text = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
    ]));
    assert!(
        (text.trim().parse::<f64>().unwrap() - want).abs() < 1e-12,
        "{text} vs {want}"
    );
}

#[test]
fn weight_ignore_index_and_label_smoothing() {
    let dir = Dir::new();
    classic(&dir);
    write_npy(&dir.path("w.npy"), &[3], &[1i64, 2, 3]);
    let (x, t, w) = (dir.s("x.npy"), dir.s("t.npy"), dir.s("w.npy"));
    let run = |extra: &[&str]| -> f64 {
        let mut args = vec!["loss", "cross-entropy", "--input", &x, "--target", &t];
        args.extend(extra);
        stdout(&xent(&args)).trim().parse().unwrap()
    };
    // Weighted mean divides by the weights of the targets: (3·l₂ + 2·l₁ + 1·l₀) / 6.
    let l = NEG_LOG_SOFTMAX;
    let want = (3.0 * l[2] + 2.0 * l[1] + l[0]) / 6.0;
    assert!((run(&["--weight", &w]) - want).abs() < 1e-12);
    // Ignoring class 1 drops the middle row.
    assert!((run(&["--ignore-index", "1"]) - (l[2] + l[0]) / 2.0).abs() < 1e-12);
    // A negative ignore_index parses as a value, not a flag.
    assert!((run(&["--ignore-index", "-1"]) - CLASSIC_LOSS).abs() < 1e-12);
    assert!((run(&["--reduction", "sum"]) - 3.0 * CLASSIC_LOSS).abs() < 1e-12);
    // Smoothing ε: (1−ε)·nll + ε/C·Σ_c −ℓ_c per row; with every target 2 the two
    // terms differ (on [2, 1, 0] they coincide).
    write_npy(&dir.path("t.npy"), &[3], &[2i64, 2, 2]);
    let eps = 0.1;
    let smooth = l.iter().sum::<f64>() / 3.0;
    let want = (1.0 - eps) * l[2] + eps * smooth;
    assert!((run(&["--label-smoothing", "0.1"]) - want).abs() < 1e-12);
    assert!((run(&[]) - l[2]).abs() < 1e-12);
}

#[test]
fn nll_on_log_probabilities() {
    let dir = Dir::new();
    let logp: Vec<f64> = (0..3).flat_map(|_| NEG_LOG_SOFTMAX.map(|v| -v)).collect();
    write_npy(&dir.path("x.npy"), &[3, 3], &logp);
    write_npy(&dir.path("t.npy"), &[3], &[2i64, 1, 0]);
    let (x, t, g) = (dir.s("x.npy"), dir.s("t.npy"), dir.s("g.npy"));
    let text = stdout(&xent(&[
        "loss",
        "nll",
        "--input",
        &x,
        "--target",
        &t,
        "--grad-out",
        &g,
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        (v["loss"].as_f64().unwrap() - CLASSIC_LOSS).abs() < 1e-12,
        "{v}"
    );
    let (shape, _, grad) = read_npy(&dir.path("g.npy"));
    assert_eq!(shape, vec![3, 3]);
    let third = -1.0 / 3.0;
    assert_close(
        &grad,
        &[0.0, 0.0, third, 0.0, third, 0.0, third, 0.0, 0.0],
        1e-15,
    );
}

#[test]
fn non_finite_losses_are_valid_json() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[2, 2], &[f64::NAN, 0.0, 1.0, 2.0]);
    write_npy(&dir.path("t.npy"), &[2], &[0i64, 1]);
    let (x, t) = (dir.s("x.npy"), dir.s("t.npy"));
    let text = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--reduction",
        "none",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["loss"][0], "NaN", "{v}");
    assert!(v["loss"][1].is_number(), "{v}");
    let text = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["loss"], "NaN", "{v}");
    // All rows ignored: mean is NaN, the text report prints it.
    let text = stdout(&xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--ignore-index",
        "0",
        "--reduction",
        "sum",
    ]));
    assert!(text.trim().parse::<f64>().is_ok(), "{text}");
}

#[test]
fn error_target_out_of_bounds() {
    let dir = Dir::new();
    classic(&dir);
    write_npy(&dir.path("t.npy"), &[3], &[2i64, 7, 0]);
    fails_with(
        &dir,
        "cross-entropy",
        &[],
        "target 7 at index [1] is out of bounds for 3 classes",
    );
    fails_with(
        &dir,
        "nll",
        &[],
        "target 7 at index [1] is out of bounds for 3 classes",
    );
    write_npy(&dir.path("t.npy"), &[3], &[2i8, -1, 0]);
    fails_with(
        &dir,
        "cross-entropy",
        &[],
        "target -1 at index [1] is out of bounds for 3 classes",
    );
}

#[test]
fn error_batch_mismatch() {
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[4, 3], &[0.5f32; 12]);
    write_npy(&dir.path("t.npy"), &[3], &[2i64, 1, 0]);
    let msg = "Expected input batch_size (4) to match target batch_size (3).";
    fails_with(&dir, "cross-entropy", &[], msg);
    fails_with(&dir, "nll", &[], msg);
    // K-dim and probability-shaped targets get the same message.
    write_npy(&dir.path("x.npy"), &[4, 3, 2], &[0.5f32; 24]);
    write_npy(&dir.path("t.npy"), &[3, 2], &[0i64; 6]);
    fails_with(&dir, "cross-entropy", &[], msg);
    write_npy(&dir.path("x.npy"), &[4, 3], &[0.5f32; 12]);
    write_npy(&dir.path("t.npy"), &[3, 3], &[0.5f32; 9]);
    fails_with(&dir, "cross-entropy", &[], msg);
}

#[test]
fn error_bad_label_smoothing() {
    let dir = Dir::new();
    classic(&dir);
    fails_with(
        &dir,
        "cross-entropy",
        &["--label-smoothing", "1.5"],
        "label_smoothing must be between 0.0 and 1.0. Got: 1.5",
    );
    fails_with(
        &dir,
        "cross-entropy",
        &["--label-smoothing", "-0.1"],
        "label_smoothing must be between 0.0 and 1.0. Got: -0.1",
    );
}

#[test]
fn error_weight_length_and_shape() {
    let dir = Dir::new();
    classic(&dir);
    write_npy(&dir.path("w.npy"), &[2], &[1.0f64, 2.0]);
    let w = dir.s("w.npy");
    fails_with(
        &dir,
        "cross-entropy",
        &["--weight", &w],
        "weight tensor should be defined either for all 3 classes or no classes",
    );
    fails_with(
        &dir,
        "nll",
        &["--weight", &w],
        "weight tensor should be defined either for all 3 classes or no classes",
    );
    write_npy(&dir.path("w.npy"), &[1, 3], &[1.0f64, 2.0, 3.0]);
    fails_with(
        &dir,
        "cross-entropy",
        &["--weight", &w],
        "weight must be a vector",
    );
}

#[test]
fn error_target_dtype_and_shape() {
    let dir = Dir::new();
    classic(&dir);
    // Integer target of the input's shape: probabilities must be floating point.
    write_npy(&dir.path("t.npy"), &[3, 3], &[0i64; 9]);
    fails_with(&dir, "cross-entropy", &[], "floating point");
    // nll takes class indices only.
    write_npy(&dir.path("t.npy"), &[3, 3], &[0.5f64; 9]);
    fails_with(&dir, "nll", &[], "nll_loss takes class-index targets");
    // Float target of the row shape: class indices must be integers.
    write_npy(&dir.path("t.npy"), &[3], &[2.0f64, 1.0, 0.0]);
    fails_with(
        &dir,
        "cross-entropy",
        &[],
        "class-index targets must have an integer dtype, got float64",
    );
    // Same batch size, wrong shape.
    write_npy(&dir.path("t.npy"), &[3, 2], &[0i64; 6]);
    fails_with(
        &dir,
        "cross-entropy",
        &[],
        "target of shape [3, 2] fits neither",
    );
    // Probability targets with a non-negative ignore_index.
    write_npy(&dir.path("t.npy"), &[3, 3], &[0.5f64; 9]);
    fails_with(
        &dir,
        "cross-entropy",
        &["--ignore-index", "1"],
        "ignore_index",
    );
    // A bool array is no target.
    write_npy(&dir.path("t.npy"), &[3], &[true, false, true]);
    fails_with(&dir, "cross-entropy", &[], "unsupported dtype |b1");
}

#[test]
fn error_input_files() {
    let dir = Dir::new();
    classic(&dir);
    // Missing input.
    std::fs::remove_file(dir.path("x.npy")).unwrap();
    fails_with(&dir, "cross-entropy", &[], "cannot read");
    // Integer input.
    write_npy(&dir.path("x.npy"), &[3, 3], &[1i64; 9]);
    fails_with(
        &dir,
        "cross-entropy",
        &[],
        "has dtype int64: expected float32 or float64",
    );
    // Not a .npy file.
    std::fs::write(dir.path("x.npy"), "not numpy").unwrap();
    fails_with(&dir, "cross-entropy", &[], "is not a valid .npy file");
    // 0-d input has no class dimension.
    write_npy(&dir.path("x.npy"), &[], &[1.0f64]);
    fails_with(&dir, "cross-entropy", &[], "input of shape []");
}

#[test]
fn error_grad_output_shape() {
    let dir = Dir::new();
    classic(&dir);
    write_npy(&dir.path("go.npy"), &[2], &[1.0f64, 1.0]);
    let go = dir.s("go.npy");
    fails_with(
        &dir,
        "cross-entropy",
        &["--grad-output", &go],
        "grad_output of shape [2] does not match one element",
    );
    fails_with(
        &dir,
        "cross-entropy",
        &["--reduction", "none", "--grad-output", &go],
        "grad_output of shape [2] does not match the loss shape [3]",
    );
}

#[test]
fn error_unwritable_output_leaves_no_file() {
    let dir = Dir::new();
    classic(&dir);
    let (x, t, l) = (dir.s("x.npy"), dir.s("t.npy"), dir.s("l.npy"));
    let g = dir.s("missing-dir/g.npy");
    let out = xent(&[
        "loss",
        "cross-entropy",
        "--input",
        &x,
        "--target",
        &t,
        "--out",
        &l,
        "--grad-out",
        &g,
    ]);
    assert_fails(&out, "cannot write", &[dir.path("l.npy")]);
    // --out and --grad-out naming one file would lose one of them.
    let out = xent(&[
        "loss",
        "cross-entropy",
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

#[test]
fn usage_errors_exit_2_without_output() {
    let dir = Dir::new();
    classic(&dir);
    let (x, t, l, go) = (
        dir.s("x.npy"),
        dir.s("t.npy"),
        dir.s("l.npy"),
        dir.s("go.npy"),
    );
    for args in [
        vec![
            "loss",
            "cross-entropy",
            "--input",
            &x,
            "--target",
            &t,
            "--out",
            &l,
            "--reduction",
            "avg",
        ],
        vec![
            "loss",
            "cross-entropy",
            "--input",
            &x,
            "--target",
            &t,
            "--out",
            &l,
            "--grad-output",
            &go,
        ],
        vec![
            "loss",
            "nll",
            "--input",
            &x,
            "--target",
            &t,
            "--out",
            &l,
            "--label-smoothing",
            "0.1",
        ],
        vec!["loss", "cross-entropy", "--input", &x, "--out", &l],
        vec!["loss", "hinge", "--input", &x, "--target", &t, "--out", &l],
    ] {
        let out = xent(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!dir.path("l.npy").exists(), "{args:?}");
    }
}
