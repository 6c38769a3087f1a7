//! `xent-mpi` under `mpirun -n 2/3/4` against the single-process library: the loss
//! and gradient files rank 0 writes must equal `xent`'s within 1e-6 (f32) and 1e-12
//! (f64), relative, for every option, uneven class shards (C not divisible by P),
//! ranks that own no target, all-ignored batches, TP × DP = 2 × 2, and a global
//! `--denominator` on P = 1–4.
//!
//! MPI is initialised once per process, so every case launches `mpirun`.

mod common;

use std::path::{Path, PathBuf};

use common::{mpirun, write};

use xent::{
    cross_entropy_into, linear_cross_entropy_with_grad, CrossEntropyOptions, Float, GradOut,
    LinearCrossEntropyOptions, LinearInputs, Reduction, Targets,
};
use xent_cli::npy::{self, Elem};

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A big-endian (`>f4`, `>f8`) `.npy` file.
fn write_big_endian<T: Elem>(dir: &Path, name: &str, shape: &[usize], v: &[T]) -> PathBuf {
    use npyz::WriterBuilder;
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let ty: npyz::TypeStr = format!(">f{}", size_of::<T>()).parse().unwrap();
    let mut bytes = Vec::new();
    let mut w = npyz::WriteOptions::<T>::new()
        .dtype(npyz::DType::Plain(ty))
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read<T: Elem>(p: &Path) -> Vec<T> {
    npy::read(p).unwrap().data.to_float()
}

fn rel<T: Float>() -> f64 {
    if size_of::<T>() == 4 {
        1e-6
    } else {
        1e-12
    }
}

/// Every value within `rel·max(|want|, scale)` (NaN where NaN).
fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64, scale: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() {
            assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
            continue;
        }
        let bound = rel * scale.max(w.abs());
        assert!(
            (g - w).abs() <= bound,
            "{what}[{i}]: got {g}, want {w}, bound {bound:e}"
        );
    }
}

/// A cross-entropy case: options and targets.
#[derive(Debug, Clone)]
struct Ce {
    shape: Vec<usize>,
    weight: bool,
    ignore_share: f64,
    eps: f64,
    z: f64,
    cap: Option<f64>,
    probs: bool,
    reduction: Reduction,
    upstream: bool,
    /// Logits (and probabilities) in a big-endian file: read whole, not in place.
    big_endian: bool,
    /// `--denominator`: the mean's global count.
    denominator: Option<f64>,
}

impl Ce {
    fn base(shape: &[usize]) -> Ce {
        Ce {
            shape: shape.to_vec(),
            weight: false,
            ignore_share: 0.0,
            eps: 0.0,
            z: 0.0,
            cap: None,
            probs: false,
            reduction: Reduction::Mean,
            upstream: false,
            big_endian: false,
            denominator: None,
        }
    }
}

fn reduction_name(r: Reduction) -> &'static str {
    match r {
        Reduction::None => "none",
        Reduction::Mean => "mean",
        Reduction::Sum => "sum",
    }
}

/// Runs `case` under `mpirun -n p [--tp tp]` and compares with the library.
fn check_ce<T: Elem>(case: &Ce, p: usize, tp: Option<usize>, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let shape = &case.shape;
    let len: usize = shape.iter().product();
    let c = if shape.len() == 1 { shape[0] } else { shape[1] };
    let row_shape: Vec<usize> = if shape.len() == 1 {
        vec![]
    } else {
        std::iter::once(shape[0])
            .chain(shape[2..].iter().copied())
            .collect()
    };
    let rows: usize = row_shape.iter().product();
    let x: Vec<T> = (0..len)
        .map(|_| T::from_f64(4.0 * rng.uniform() - 2.0))
        .collect();
    let y: Vec<i64> = (0..rows)
        .map(|_| {
            if rng.uniform() < case.ignore_share {
                -100
            } else {
                rng.below(c) as i64
            }
        })
        .collect();
    let t: Vec<T> = (0..len).map(|_| T::from_f64(rng.uniform())).collect();
    let w: Vec<T> = (0..c).map(|_| T::from_f64(0.2 + rng.uniform())).collect();
    let loss_len = if case.reduction == Reduction::None {
        rows
    } else {
        1
    };
    let go: Vec<T> = (0..loss_len)
        .map(|_| T::from_f64(0.5 + rng.uniform()))
        .collect();

    let float_file = |name: &str, v: &[T]| {
        if case.big_endian {
            write_big_endian(dir.path(), name, shape, v)
        } else {
            write(dir.path(), name, shape, v)
        }
    };
    let xp = float_file("x.npy", &x);
    let tp_ = if case.probs {
        float_file("t.npy", &t)
    } else {
        write(dir.path(), "t.npy", &row_shape, &y)
    };
    let (out, grad) = (dir.path().join("l.npy"), dir.path().join("g.npy"));
    let mut args: Vec<String> = vec![
        "loss".into(),
        "cross-entropy".into(),
        "--input".into(),
        xp.display().to_string(),
        "--target".into(),
        tp_.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--grad-out".into(),
        grad.display().to_string(),
        "--reduction".into(),
        reduction_name(case.reduction).into(),
        "--label-smoothing".into(),
        case.eps.to_string(),
        "--z-loss".into(),
        case.z.to_string(),
    ];
    if case.weight {
        args.push("--weight".into());
        args.push(write(dir.path(), "w.npy", &[c], &w).display().to_string());
    }
    if let Some(cap) = case.cap {
        args.push("--softcap".into());
        args.push(cap.to_string());
    }
    if let Some(d) = case.denominator {
        args.push("--denominator".into());
        args.push(d.to_string());
    }
    if case.upstream {
        let go_shape = if case.reduction == Reduction::None {
            row_shape.clone()
        } else {
            vec![]
        };
        args.push("--grad-output".into());
        args.push(
            write(dir.path(), "go.npy", &go_shape, &go)
                .display()
                .to_string(),
        );
    }
    if let Some(tp) = tp {
        args.push("--tp".into());
        args.push(tp.to_string());
    }
    let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = mpirun(p, &argv);
    assert!(
        o.status.success(),
        "{case:?} p={p} tp={tp:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The single-process result.
    let mut opts = CrossEntropyOptions::default()
        .label_smoothing(case.eps)
        .z_loss(case.z)
        .reduction(case.reduction);
    if case.weight {
        opts = opts.weight(&w);
    }
    if let Some(cap) = case.cap {
        opts = opts.softcap(cap);
    }
    if let Some(d) = case.denominator {
        opts = opts.denominator(d);
    }
    let target: Targets<'_, T> = if case.probs {
        Targets::Probabilities(&t)
    } else {
        Targets::Indices((&y[..]).into())
    };
    let mut want = vec![T::ZERO; loss_len];
    let mut want_g = vec![T::ZERO; len];
    let mut g = GradOut::new(&mut want_g);
    if case.upstream {
        g = g.grad_output(&go);
    }
    cross_entropy_into(&x, shape, target, &opts, &mut want, Some(g)).unwrap();
    let f = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<_>>();
    let what = format!("{case:?} p={p} tp={tp:?}");
    assert_close(
        &format!("loss {what}"),
        &f(&read::<T>(&out)),
        &f(&want),
        rel::<T>(),
        0.0,
    );
    let scale = want_g.iter().map(|v| v.to_f64().abs()).fold(0.0, f64::max);
    assert_close(
        &format!("grad {what}"),
        &f(&read::<T>(&grad)),
        &f(&want_g),
        rel::<T>(),
        scale,
    );
}

#[test]
fn cross_entropy_on_2_3_4_ranks_equals_one_process() {
    let every = Ce {
        weight: true,
        ignore_share: 0.3,
        eps: 0.1,
        z: 1e-3,
        cap: Some(5.0),
        upstream: true,
        ..Ce::base(&[7, 37])
    };
    for (i, p) in [2usize, 3, 4].into_iter().enumerate() {
        let s = 100 + i as u64;
        check_ce::<f32>(&Ce::base(&[6, 37]), p, None, s);
        check_ce::<f64>(&every, p, None, s);
        check_ce::<f32>(&every, p, None, s);
    }
}

#[test]
fn every_option_reduction_and_layout() {
    for (i, reduction) in [Reduction::Mean, Reduction::Sum, Reduction::None]
        .into_iter()
        .enumerate()
    {
        let case = Ce {
            weight: true,
            ignore_share: 0.3,
            eps: 0.2,
            z: 1e-2,
            cap: Some(3.0),
            upstream: true,
            reduction,
            ..Ce::base(&[5, 11, 3])
        };
        check_ce::<f64>(&case, 3, None, 200 + i as u64);
        // Probability targets, K-dim, TP × DP = 2 × 2.
        let probs = Ce {
            probs: true,
            ignore_share: 0.0,
            ..case.clone()
        };
        check_ce::<f64>(&probs, 4, Some(2), 210 + i as u64);
        check_ce::<f32>(&probs, 4, Some(2), 220 + i as u64);
    }
    // An unbatched (C,) input.
    check_ce::<f64>(
        &Ce {
            eps: 0.1,
            ..Ce::base(&[9])
        },
        2,
        None,
        230,
    );
}

#[test]
fn uneven_shards_idle_ranks_and_all_ignored_batches() {
    // 3 classes on 4 ranks: one rank holds no class; targets land on few shards.
    check_ce::<f64>(
        &Ce {
            eps: 0.1,
            weight: true,
            ..Ce::base(&[5, 3])
        },
        4,
        None,
        300,
    );
    // Every row ignored: mean is NaN, sum 0, gradient 0.
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let case = Ce {
            ignore_share: 1.0,
            reduction,
            ..Ce::base(&[4, 10])
        };
        check_ce::<f64>(&case, 4, Some(2), 310);
    }
    // Files that are not read in place (big-endian): read whole, the same results.
    let be = Ce {
        big_endian: true,
        weight: true,
        ..Ce::base(&[5, 13])
    };
    check_ce::<f32>(&be, 2, None, 330);
    check_ce::<f64>(
        &Ce {
            probs: true,
            ..be.clone()
        },
        4,
        Some(2),
        331,
    );
    // Data parallel only: 3 row groups over 2 rows (one group has none).
    check_ce::<f64>(
        &Ce {
            weight: true,
            ignore_share: 0.3,
            ..Ce::base(&[2, 10])
        },
        3,
        Some(1),
        320,
    );
}

#[test]
fn a_denominator_replaces_the_global_count_on_1_to_4_ranks() {
    let case = Ce {
        weight: true,
        ignore_share: 0.3,
        eps: 0.1,
        z: 1e-2,
        cap: Some(4.0),
        upstream: true,
        denominator: Some(53.0),
        ..Ce::base(&[6, 19])
    };
    for (p, tp) in [
        (1, None),
        (2, None),
        (3, None),
        (4, None),
        (4, Some(2)),
        (3, Some(1)),
    ] {
        check_ce::<f64>(&case, p, tp, 500 + p as u64);
        check_ce::<f32>(&case, p, tp, 510 + p as u64);
    }
    // Probability targets, K-dim; an all-ignored batch gives 0 (not NaN) with it.
    let probs = Ce {
        probs: true,
        ignore_share: 0.0,
        ..Ce::base(&[3, 7, 2])
    };
    check_ce::<f64>(
        &Ce {
            denominator: Some(4.5),
            ..probs
        },
        4,
        Some(2),
        520,
    );
    check_ce::<f64>(
        &Ce {
            ignore_share: 1.0,
            denominator: Some(8.0),
            ..Ce::base(&[4, 10])
        },
        4,
        Some(2),
        521,
    );
    check_linear::<f64>(4, Some(2), Reduction::Mean, Some(11.0), 530, 9);
    check_linear::<f32>(3, None, Reduction::Mean, Some(11.0), 531, 9);
}

/// `xent-mpi loss linear-cross-entropy` on `p` ranks against the library, with `n`
/// rows (more than a block's 128: several blocks, each reduced across the class
/// shards).
fn check_linear<T: Elem>(
    p: usize,
    tp: Option<usize>,
    reduction: Reduction,
    denominator: Option<f64>,
    seed: u64,
    n: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let (d, v) = (6, 23);
    let h: Vec<T> = (0..n * d)
        .map(|_| T::from_f64(2.0 * rng.uniform() - 1.0))
        .collect();
    let w: Vec<T> = (0..v * d)
        .map(|_| T::from_f64(rng.uniform() - 0.5))
        .collect();
    let b: Vec<T> = (0..v).map(|_| T::from_f64(rng.uniform() - 0.5)).collect();
    let cw: Vec<T> = (0..v).map(|_| T::from_f64(0.5 + rng.uniform())).collect();
    let y: Vec<i64> = (0..n)
        .map(|r| {
            if r % 4 == 1 {
                -100
            } else {
                rng.below(v) as i64
            }
        })
        .collect();
    let paths = [
        write(dir.path(), "h.npy", &[n, d], &h),
        write(dir.path(), "w.npy", &[v, d], &w),
        write(dir.path(), "b.npy", &[v], &b),
        write(dir.path(), "y.npy", &[n], &y),
        write(dir.path(), "cw.npy", &[v], &cw),
    ];
    let outs = ["l.npy", "gh.npy", "gw.npy", "gb.npy"].map(|s| dir.path().join(s));
    let s = |p: &PathBuf| p.display().to_string();
    let mut args = vec![
        "loss".to_string(),
        "linear-cross-entropy".into(),
        "--hidden".into(),
        s(&paths[0]),
        "--weight".into(),
        s(&paths[1]),
        "--bias".into(),
        s(&paths[2]),
        "--target".into(),
        s(&paths[3]),
        "--class-weight".into(),
        s(&paths[4]),
        "--label-smoothing".into(),
        "0.1".into(),
        "--z-loss".into(),
        "0.001".into(),
        "--reduction".into(),
        reduction_name(reduction).into(),
        "--out".into(),
        s(&outs[0]),
        "--grad-out-hidden".into(),
        s(&outs[1]),
        "--grad-out-weight".into(),
        s(&outs[2]),
        "--grad-out-bias".into(),
        s(&outs[3]),
    ];
    if let Some(tp) = tp {
        args.push("--tp".into());
        args.push(tp.to_string());
    }
    if let Some(d) = denominator {
        args.push("--denominator".into());
        args.push(d.to_string());
    }
    let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = mpirun(p, &argv);
    assert!(
        o.status.success(),
        "p={p}: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut ce = CrossEntropyOptions::default()
        .weight(&cw)
        .label_smoothing(0.1)
        .z_loss(0.001)
        .reduction(reduction);
    if let Some(d) = denominator {
        ce = ce.denominator(d);
    }
    let opts = LinearCrossEntropyOptions::from(ce);
    let inputs = LinearInputs::new(&h, [n, d], &w, [v, d]).linear_bias(&b);
    let (loss, grads) = linear_cross_entropy_with_grad(inputs, &y[..], &opts).unwrap();
    let f = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<_>>();
    let tol = rel::<T>();
    let what = format!("linear p={p} tp={tp:?} {reduction:?}");
    assert_close(&what, &f(&read::<T>(&outs[0])), &f(loss.values()), tol, 0.0);
    // The GEMMs sum over other blocks of classes and rows: relative to the largest entry.
    for (path, want) in [
        (&outs[1], &grads.hidden),
        (&outs[2], &grads.linear_weight),
        (&outs[3], grads.linear_bias.as_ref().unwrap()),
    ] {
        let scale = want.iter().map(|v| v.to_f64().abs()).fold(0.0, f64::max);
        assert_close(
            &format!("{what} {}", path.display()),
            &f(&read::<T>(path)),
            &f(want),
            10.0 * tol,
            scale,
        );
    }
}

#[test]
fn linear_cross_entropy_on_2_and_4_ranks_equals_one_process() {
    check_linear::<f64>(2, None, Reduction::Mean, None, 400, 9);
    check_linear::<f32>(2, None, Reduction::Sum, None, 401, 9);
    check_linear::<f64>(4, Some(2), Reduction::None, None, 402, 9);
    check_linear::<f32>(4, Some(2), Reduction::Mean, None, 403, 9);
    check_linear::<f64>(3, None, Reduction::Mean, None, 404, 9);
    check_linear::<f32>(3, None, Reduction::Mean, None, 405, 300);
    check_linear::<f64>(4, Some(2), Reduction::None, None, 406, 301);
}

#[test]
fn bad_input_fails_every_rank_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let x = write(dir.path(), "x.npy", &[2, 5], &[0.0f32; 10]);
    let t = write(dir.path(), "t.npy", &[2], &[1i64, 7]);
    let out = dir.path().join("l.npy");
    let o = mpirun(
        3,
        &[
            "loss",
            "cross-entropy",
            "--input",
            x.to_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("xent-mpi: error:"))
        .collect();
    assert_eq!(
        ours,
        ["xent-mpi: error: target 7 at index [1] is out of bounds for 5 classes"]
    );
    assert!(!out.exists());
    // --tp that does not divide P.
    let t = write(dir.path(), "t.npy", &[2], &[1i64, 2]);
    let o = mpirun(
        2,
        &[
            "loss",
            "cross-entropy",
            "--input",
            x.to_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
            "--tp",
            "3",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("xent-mpi: error:"))
        .collect();
    assert_eq!(
        ours,
        ["xent-mpi: error: --tp 3 does not divide the 2 ranks (P = DP × TP)"]
    );
    // Bad values are refused on every rank alike.
    let lse = dir.path().join("lse.npy");
    let base = [
        "loss",
        "cross-entropy",
        "--input",
        x.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ];
    for (extra, want) in [
        (
            vec!["--lse-out", lse.to_str().unwrap(), "--logit-scale", "-2"],
            "logit_scale",
        ),
        (vec!["--logit-scale", "inf"], "logit_scale"),
        (vec!["--denominator", "-1"], "denominator"),
        (
            vec!["--denominator", "4", "--reduction", "sum"],
            "denominator",
        ),
    ] {
        let argv: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let o = mpirun(2, &argv);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("xent-mpi: error:"))
            .collect();
        assert!(
            ours.len() == 1 && ours[0].contains(want),
            "{extra:?}: {stderr}"
        );
    }
    assert!(!lse.exists());
}

#[test]
fn bench_reports_every_rank() {
    let o = mpirun(2, &["bench", "--shape", "64x1000", "--reps", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("P = 2 (DP 1 × TP 2)"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with(['0', '1']))
            .count(),
        2,
        "{text}"
    );
}
