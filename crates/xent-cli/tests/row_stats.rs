//! End-to-end tests of the per-row outputs (`--lse-out`, `--entropy-out`,
//! `--argmax-out`), `--logit-scale` and `--denominator` of `xent loss cross-entropy`,
//! `linear-cross-entropy` and `nll`: values against a hand computation in `f64` (or
//! the library, for the compositions), dtypes and row shapes of the files, and the
//! error paths (exit code 2, one line on stderr, no output file).

mod common;

use std::fs::File;
use std::io::BufReader;

use common::*;
use npyz::NpyFile;
use xent::{
    cross_entropy_with_grad, linear_cross_entropy_with_grad, CrossEntropyOptions,
    LinearCrossEntropyOptions, LinearInputs,
};

/// Files hold the library's own numbers: only the reference's rounding differs (f64).
const EXACT: f64 = 1e-12;
/// An f32 file against an f64 hand computation.
const F32: f64 = 1e-5;

/// `lse([1, 2, 3])` and the entropy of `softmax([1, 2, 3])`.
fn lse_entropy(x: &[f64]) -> (f64, f64) {
    let lse = x.iter().map(|v| v.exp()).sum::<f64>().ln();
    let h = -x.iter().map(|v| (v - lse).exp() * (v - lse)).sum::<f64>();
    (lse, h)
}

/// Reads an int64 `.npy` file: its shape, dtype descr and values.
fn read_i64(path: &std::path::Path) -> (Vec<u64>, String, Vec<i64>) {
    let npy = NpyFile::new(BufReader::new(File::open(path).unwrap())).unwrap();
    let shape = npy.shape().to_vec();
    let descr = match npy.dtype() {
        npyz::DType::Plain(ty) => ty.to_string(),
        other => other.descr(),
    };
    (shape, descr, npy.into_vec::<i64>().unwrap())
}

fn run_ok(args: &[&str]) -> String {
    let mut all = vec!["loss"];
    all.extend(args);
    stdout(&xent(&all))
}

#[test]
fn row_outputs_in_f32_and_f64() {
    let x = [1.0f64, 2.0, 3.0, 0.5, 0.5, -1.0, 3.0, 3.0, 0.0];
    for dtype in ["f32", "f64"] {
        let dir = Dir::new();
        if dtype == "f32" {
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            write_npy(&dir.path("x.npy"), &[3, 3], &x32);
        } else {
            write_npy(&dir.path("x.npy"), &[3, 3], &x);
        }
        write_npy(&dir.path("t.npy"), &[3], &[2i64, -100, 0]);
        let (xs, t) = (dir.s("x.npy"), dir.s("t.npy"));
        let (lse, h, a) = (dir.s("lse.npy"), dir.s("h.npy"), dir.s("a.npy"));
        run_ok(&[
            "cross-entropy",
            "--input",
            &xs,
            "--target",
            &t,
            "--lse-out",
            &lse,
            "--entropy-out",
            &h,
            "--argmax-out",
            &a,
        ]);
        let descr = if dtype == "f32" { "<f4" } else { "<f8" };
        let tol = if dtype == "f32" { F32 } else { EXACT };
        let want: Vec<(f64, f64)> = x.chunks(3).map(lse_entropy).collect();
        let (shape, d, got) = read_npy(&dir.path("lse.npy"));
        assert_eq!((shape, d.as_str()), (vec![3], descr));
        assert_close(&got, &want.iter().map(|w| w.0).collect::<Vec<_>>(), tol);
        let (shape, d, got) = read_npy(&dir.path("h.npy"));
        assert_eq!((shape, d.as_str()), (vec![3], descr));
        assert_close(&got, &want.iter().map(|w| w.1).collect::<Vec<_>>(), tol);
        // Ignored row 1 still gets its outputs; row 2 is a tie: the lowest index.
        let (shape, d, got) = read_i64(&dir.path("a.npy"));
        assert_eq!((shape, d.as_str(), got), (vec![3], "<i8", vec![2, 0, 0]));
    }
}

#[test]
fn row_shapes_of_k_dim_and_unbatched_inputs() {
    let dir = Dir::new();
    let x: Vec<f64> = (0..12).map(|i| ((i * 7) % 5) as f64 * 0.5).collect();
    write_npy(&dir.path("x.npy"), &[2, 3, 2], &x);
    write_npy(&dir.path("t.npy"), &[2, 2], &[0i64, 1, 2, 0]);
    let (xs, t, lse, a) = (
        dir.s("x.npy"),
        dir.s("t.npy"),
        dir.s("lse.npy"),
        dir.s("a.npy"),
    );
    run_ok(&[
        "cross-entropy",
        "--input",
        &xs,
        "--target",
        &t,
        "--lse-out",
        &lse,
        "--argmax-out",
        &a,
    ]);
    let (shape, _, got) = read_npy(&dir.path("lse.npy"));
    assert_eq!(shape, vec![2, 2]);
    // Row (n, i) holds classes x[n, :, i].
    let rows: Vec<Vec<f64>> = (0..4)
        .map(|r| (0..3).map(|c| x[(r / 2) * 6 + c * 2 + r % 2]).collect())
        .collect();
    let want: Vec<f64> = rows.iter().map(|r| lse_entropy(r).0).collect();
    assert_close(&got, &want, EXACT);
    let (shape, _, got) = read_i64(&dir.path("a.npy"));
    let want: Vec<i64> = rows
        .iter()
        .map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            r.iter().position(|&v| v == m).unwrap() as i64
        })
        .collect();
    assert_eq!((shape, got), (vec![2, 2], want));
    // (C,): 0-d outputs.
    let dir = Dir::new();
    write_npy(&dir.path("x.npy"), &[3], &[0.5f64, 2.0, 1.0]);
    write_npy(&dir.path("t.npy"), &[], &[1i64]);
    let (xs, t, lse, a) = (
        dir.s("x.npy"),
        dir.s("t.npy"),
        dir.s("lse.npy"),
        dir.s("a.npy"),
    );
    run_ok(&[
        "cross-entropy",
        "--input",
        &xs,
        "--target",
        &t,
        "--lse-out",
        &lse,
        "--argmax-out",
        &a,
    ]);
    let (shape, _, got) = read_npy(&dir.path("lse.npy"));
    assert_eq!(shape, Vec::<u64>::new());
    assert_close(&got, &[lse_entropy(&[0.5, 2.0, 1.0]).0], EXACT);
    assert_eq!(read_i64(&dir.path("a.npy")).2, vec![1]);
}

/// `--logit-scale` and `--denominator` reach the library: the files equal the
/// library's own results with the same options.
#[test]
fn logit_scale_and_denominator() {
    let dir = Dir::new();
    let x = [1.0f64, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 2.0];
    write_npy(&dir.path("x.npy"), &[2, 4], &x);
    write_npy(&dir.path("t.npy"), &[2], &[3i64, 0]);
    let (xs, t, l, g, lse) = (
        dir.s("x.npy"),
        dir.s("t.npy"),
        dir.s("l.npy"),
        dir.s("g.npy"),
        dir.s("lse.npy"),
    );
    let text = run_ok(&[
        "cross-entropy",
        "--input",
        &xs,
        "--target",
        &t,
        "--out",
        &l,
        "--grad-out",
        &g,
        "--lse-out",
        &lse,
        "--logit-scale",
        "0.5",
        "--softcap",
        "2",
        "--denominator",
        "7",
        "--z-loss",
        "0.01",
    ]);
    let opts = CrossEntropyOptions::default()
        .logit_scale(0.5)
        .softcap(2.0)
        .denominator(7.0)
        .z_loss(0.01);
    let (loss, grad) = cross_entropy_with_grad(&x, &[2, 4], &[3i64, 0][..], &opts).unwrap();
    assert_close(
        &read_npy(&dir.path("l.npy")).2,
        &[loss.item().unwrap()],
        EXACT,
    );
    assert_close(&read_npy(&dir.path("g.npy")).2, &grad, EXACT);
    assert!(text.contains("z_loss"), "{text}");
    // lse of softcap(0.5·x), by hand.
    let xt: Vec<f64> = x.iter().map(|v| 2.0 * (0.5 * v / 2.0f64).tanh()).collect();
    let want: Vec<f64> = xt.chunks(4).map(|r| lse_entropy(r).0).collect();
    assert_close(&read_npy(&dir.path("lse.npy")).2, &want, EXACT);
    // Every row ignored with a denominator: 0, not NaN.
    write_npy(&dir.path("t.npy"), &[2], &[-100i64, -100]);
    let json = run_ok(&[
        "cross-entropy",
        "--input",
        &xs,
        "--target",
        &t,
        "--denominator",
        "4",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["loss"].as_f64(), Some(0.0), "{json}");
    // nll honours the denominator too.
    write_npy(&dir.path("t.npy"), &[2], &[3i64, 0]);
    let json = run_ok(&[
        "nll",
        "--input",
        &xs,
        "--target",
        &t,
        "--denominator",
        "4",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_close(
        &[v["loss"].as_f64().unwrap()],
        &[-(x[3] + x[4]) / 4.0],
        EXACT,
    );
}

#[test]
fn linear_cross_entropy_row_outputs() {
    let dir = Dir::new();
    let h = [0.5f64, -1.0, 2.0, 0.25, -0.75, 1.5];
    let w = [1.0f64, 0.5, -0.5, 1.0, 0.25, -1.0, 2.0, 0.0];
    write_npy(&dir.path("h.npy"), &[3, 2], &h);
    write_npy(&dir.path("w.npy"), &[4, 2], &w);
    write_npy(&dir.path("t.npy"), &[3], &[3i64, -100, 0]);
    let (hs, ws, t) = (dir.s("h.npy"), dir.s("w.npy"), dir.s("t.npy"));
    let (l, gh, lse, e, a) = (
        dir.s("l.npy"),
        dir.s("gh.npy"),
        dir.s("lse.npy"),
        dir.s("e.npy"),
        dir.s("a.npy"),
    );
    run_ok(&[
        "linear-cross-entropy",
        "--hidden",
        &hs,
        "--weight",
        &ws,
        "--target",
        &t,
        "--out",
        &l,
        "--grad-out-hidden",
        &gh,
        "--lse-out",
        &lse,
        "--entropy-out",
        &e,
        "--argmax-out",
        &a,
        "--logit-scale",
        "1.5",
        "--denominator",
        "5",
    ]);
    let opts = LinearCrossEntropyOptions::default()
        .logit_scale(1.5)
        .denominator(5.0);
    let (loss, grads) = linear_cross_entropy_with_grad(
        LinearInputs::new(&h, [3, 2], &w, [4, 2]),
        &[3i64, -100, 0][..],
        &opts,
    )
    .unwrap();
    assert_close(
        &read_npy(&dir.path("l.npy")).2,
        &[loss.item().unwrap()],
        EXACT,
    );
    assert_close(&read_npy(&dir.path("gh.npy")).2, &grads.hidden, EXACT);
    let logits: Vec<Vec<f64>> = (0..3)
        .map(|n| {
            (0..4)
                .map(|v| 1.5 * (h[2 * n] * w[2 * v] + h[2 * n + 1] * w[2 * v + 1]))
                .collect()
        })
        .collect();
    let (shape, _, got) = read_npy(&dir.path("lse.npy"));
    assert_eq!(shape, vec![3]);
    assert_close(
        &got,
        &logits.iter().map(|r| lse_entropy(r).0).collect::<Vec<_>>(),
        1e-10,
    );
    assert_close(
        &read_npy(&dir.path("e.npy")).2,
        &logits.iter().map(|r| lse_entropy(r).1).collect::<Vec<_>>(),
        1e-10,
    );
    let want: Vec<i64> = logits
        .iter()
        .map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            r.iter().position(|&v| v == m).unwrap() as i64
        })
        .collect();
    assert_eq!(
        read_i64(&dir.path("a.npy")),
        (vec![3], "<i8".to_string(), want)
    );
}

#[test]
fn errors_name_the_value_and_write_nothing() {
    let dir = Dir::new();
    write_npy(
        &dir.path("x.npy"),
        &[2, 3],
        &[1.0f64, 2.0, 3.0, 0.0, 0.0, 0.0],
    );
    write_npy(&dir.path("t.npy"), &[2], &[2i64, 0]);
    let lse = dir.s("lse.npy");
    for (extra, needle) in [
        (vec!["--logit-scale", "0"], "logit_scale = 0"),
        (vec!["--logit-scale", "-2"], "logit_scale = -2"),
        (vec!["--logit-scale", "inf"], "logit_scale = inf"),
        (vec!["--denominator", "-1"], "denominator = -1"),
        (vec!["--denominator", "NaN"], "denominator = NaN"),
        (
            vec!["--denominator", "3", "--reduction", "sum"],
            "denominator = 3 with reduction sum",
        ),
        (
            vec!["--denominator", "3", "--reduction", "none"],
            "with reduction none",
        ),
    ] {
        let mut all = extra.clone();
        all.extend(["--lse-out", &lse]);
        fails_with(&dir, "cross-entropy", &all, needle);
        assert!(!dir.path("lse.npy").exists());
    }
    // nll has no logit options; a row output may not overwrite an input.
    fails_with(
        &dir,
        "nll",
        &["--denominator", "2", "--reduction", "sum"],
        "denominator",
    );
    let x = dir.s("x.npy");
    fails_with(&dir, "cross-entropy", &["--argmax-out", &x], "--argmax-out");
}
