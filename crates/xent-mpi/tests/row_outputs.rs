//! `xent-mpi` with the per-row outputs (`--lse-out`, `--entropy-out`,
//! `--argmax-out`) and `--logit-scale` under `mpirun -n 1..4` (and TP × DP = 2 × 2):
//! the files rank 0 writes must equal the single-process library's
//! (`cross_entropy_stats_into`, `linear_cross_entropy_stats_into`, what `xent loss`
//! writes) with the same options: the floats within 1e-5 (f32) / 1e-12 (f64),
//! relative, the argmax exactly.

mod common;

use std::path::Path;

use common::{mpirun, write};
use xent::{
    cross_entropy_stats_into, linear_cross_entropy_stats_into, CrossEntropyOptions, Float, GradOut,
    LinearCrossEntropyOptions, LinearInputs, Reduction, RowOutputs,
};
use xent_cli::npy::{self, Elem};

/// A float file of dtype `T` (checked), as f64.
fn read_f<T: Elem>(p: &Path) -> Vec<f64> {
    let a = npy::read(p).unwrap();
    assert_eq!(a.data.dtype(), T::NAME, "{p:?}");
    a.data.to_float::<f64>()
}

/// An int64 file: its shape and values.
fn read_i(p: &Path) -> (Vec<usize>, Vec<i64>) {
    let a = npy::read(p).unwrap();
    match a.data {
        npy::Data::I64(v) => (a.shape, v),
        other => panic!("{p:?}: {}", other.dtype()),
    }
}

fn close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() || w.is_infinite() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{what}[{i}]: {g} vs {w}"
            );
            continue;
        }
        assert!(
            (g - w).abs() <= rel * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Small deterministic logits with a tie in row 0 and wide values.
fn logits(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 % 101) as f64 - 50.0) / 9.0)
        .collect()
}

fn ce_case<T: Elem + Float + xent::Element<Acc = T>>(dtype_rel: f64) {
    let dir = tempfile::tempdir().unwrap();
    let (n, c, inner) = (3, 11, 2);
    let shape = [n, c, inner];
    let mut xs = logits(n * c * inner);
    xs[inner] = xs[0]; // row (0, 0): classes 0 and 1 tie... unless another is larger
    let x: Vec<T> = xs.iter().map(|&v| T::from_f64(v)).collect();
    let y: Vec<i64> = vec![3, -100, 10, 0, 5, -100];
    let xp = write(dir.path(), "x.npy", &shape, &x);
    let yp = write(dir.path(), "y.npy", &[n, inner], &y);
    let opts = CrossEntropyOptions::<T>::default()
        .logit_scale(1.7)
        .softcap(4.0)
        .label_smoothing(0.1)
        .z_loss(1e-3)
        .reduction(Reduction::Mean);
    let rows = n * inner;
    let (mut lse, mut ent, mut am, mut loss) = (
        vec![T::ZERO; rows],
        vec![T::ZERO; rows],
        vec![0i64; rows],
        [T::ZERO],
    );
    let mut grad = vec![T::ZERO; x.len()];
    cross_entropy_stats_into(
        &x,
        &shape,
        &y[..],
        &opts,
        &mut loss,
        Some(GradOut::new(&mut grad)),
        RowOutputs::new()
            .lse(&mut lse)
            .entropy(&mut ent)
            .argmax(&mut am),
    )
    .unwrap();
    let f = |v: &[T]| v.iter().map(|a| a.to_f64()).collect::<Vec<_>>();
    for (p, tp) in [(1, None), (2, None), (3, None), (4, None), (4, Some("2"))] {
        let path = |s: &str| dir.path().join(format!("{s}{p}{}.npy", tp.unwrap_or("")));
        let (lo, eo, ao, out, go) = (path("lse"), path("ent"), path("am"), path("l"), path("g"));
        let mut argv = vec![
            "loss",
            "cross-entropy",
            "--input",
            xp.to_str().unwrap(),
            "--target",
            yp.to_str().unwrap(),
            "--logit-scale",
            "1.7",
            "--softcap",
            "4",
            "--label-smoothing",
            "0.1",
            "--z-loss",
            "0.001",
            "--lse-out",
            lo.to_str().unwrap(),
            "--entropy-out",
            eo.to_str().unwrap(),
            "--argmax-out",
            ao.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--grad-out",
            go.to_str().unwrap(),
        ];
        if let Some(t) = tp {
            argv.extend(["--tp", t]);
        }
        let o = mpirun(p, &argv);
        assert!(
            o.status.success(),
            "P={p}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let what = format!("P={p} tp={tp:?}");
        close(
            &format!("{what} lse"),
            &read_f::<T>(&lo),
            &f(&lse),
            dtype_rel,
        );
        close(
            &format!("{what} entropy"),
            &read_f::<T>(&eo),
            &f(&ent),
            dtype_rel,
        );
        close(
            &format!("{what} loss"),
            &read_f::<T>(&out),
            &f(&loss),
            dtype_rel,
        );
        close(
            &format!("{what} grad"),
            &read_f::<T>(&go),
            &f(&grad),
            dtype_rel,
        );
        let (ashape, a) = read_i(&ao);
        assert_eq!(ashape, vec![n, inner], "{what}");
        assert_eq!(a, am, "{what} argmax");
        assert_eq!(npy::read(&lo).unwrap().shape, vec![n, inner]);
    }
}

#[test]
fn cross_entropy_row_outputs_on_1_to_4_ranks_equal_one_process() {
    ce_case::<f32>(1e-5);
    ce_case::<f64>(1e-12);
}

#[test]
fn linear_row_outputs_on_1_to_4_ranks_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d, v) = (5, 4, 9);
    let h = logits(n * d);
    let w: Vec<f64> = logits(v * d).into_iter().map(|x| x * 0.3).collect();
    let y: Vec<i64> = vec![1, -100, 8, 0, 4];
    let hp = write(dir.path(), "h.npy", &[n, d], &h);
    let wp = write(dir.path(), "w.npy", &[v, d], &w);
    let yp = write(dir.path(), "y.npy", &[n], &y);
    let mut opts = LinearCrossEntropyOptions::default();
    opts.cross_entropy = CrossEntropyOptions::default()
        .logit_scale(0.6)
        .softcap(3.0)
        .reduction(Reduction::Sum);
    let (mut lse, mut ent, mut am, mut loss) = (vec![0.0; n], vec![0.0; n], vec![0i64; n], [0.0]);
    linear_cross_entropy_stats_into(
        LinearInputs::new(&h, [n, d], &w, [v, d]),
        &y[..],
        &opts,
        &mut loss,
        None,
        RowOutputs::new()
            .lse(&mut lse)
            .entropy(&mut ent)
            .argmax(&mut am),
    )
    .unwrap();
    for (p, tp) in [(1, None), (2, None), (3, None), (4, None), (4, Some("2"))] {
        let path = |s: &str| dir.path().join(format!("{s}{p}{}.npy", tp.unwrap_or("")));
        let (lo, eo, ao, out) = (path("lse"), path("ent"), path("am"), path("l"));
        let gh = path("gh");
        let mut argv = vec![
            "loss",
            "linear-cross-entropy",
            "--hidden",
            hp.to_str().unwrap(),
            "--weight",
            wp.to_str().unwrap(),
            "--target",
            yp.to_str().unwrap(),
            "--logit-scale",
            "0.6",
            "--softcap",
            "3",
            "--reduction",
            "sum",
            "--lse-out",
            lo.to_str().unwrap(),
            "--entropy-out",
            eo.to_str().unwrap(),
            "--argmax-out",
            ao.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(t) = tp {
            argv.extend(["--tp", t]);
        }
        // With a gradient, the one-pass form writes the row outputs.
        if p % 2 == 0 {
            argv.extend(["--grad-out-hidden", gh.to_str().unwrap()]);
        }
        let o = mpirun(p, &argv);
        assert!(
            o.status.success(),
            "P={p}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let what = format!("linear P={p} tp={tp:?}");
        close(&format!("{what} lse"), &read_f::<f64>(&lo), &lse, 1e-12);
        close(&format!("{what} entropy"), &read_f::<f64>(&eo), &ent, 1e-12);
        close(&format!("{what} loss"), &read_f::<f64>(&out), &loss, 1e-12);
        assert_eq!(read_i(&ao), (vec![n], am.clone()), "{what} argmax");
    }
}
