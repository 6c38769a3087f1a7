//! Issue 28 on the candle op: the options' `logit_scale` and `denominator`, and the
//! per-row outputs of `cross_entropy_with_stats` / `linear_cross_entropy_with_stats`
//! against an f64 reference written here (max-shifted sums over `softcap(s·x)`).

use candle_core::{DType, Device, Result, Tensor, Var};
use xent_candle::{
    cross_entropy, cross_entropy_with_stats, linear_cross_entropy, linear_cross_entropy_with_stats,
    CrossEntropyOptions, Reduction, RowStats,
};

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// `|a − b| ≤ rel·max(|b|, 1)` elementwise.
fn close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// The f64 reference per row of `(rows, C)` logits: (lse, entropy, argmax) of
/// `softcap(s·x)`, argmax ties to the lowest index.
fn reference(x: &[f64], c: usize, scale: f64, cap: Option<f64>) -> Vec<(f64, f64, i64)> {
    x.chunks(c)
        .map(|row| {
            let xs: Vec<f64> = row
                .iter()
                .map(|&v| {
                    let v = v * scale;
                    cap.map_or(v, |k| k * (v / k).tanh())
                })
                .collect();
            let (mut am, mut m) = (0usize, f64::NEG_INFINITY);
            for (j, &v) in xs.iter().enumerate() {
                if v > m {
                    (am, m) = (j, v);
                }
            }
            let s: f64 = xs.iter().map(|v| (v - m).exp()).sum();
            let lse = m + s.ln();
            let entropy = -xs.iter().map(|v| (v - lse).exp() * (v - lse)).sum::<f64>();
            (lse, entropy, am as i64)
        })
        .collect()
}

fn check(what: &str, st: &RowStats, want: &[(f64, f64, i64)], z_loss: f64, keep: &[bool]) {
    let rel = if st.lse.dtype() == DType::F64 {
        1e-12
    } else {
        1e-5
    };
    for t in [&st.lse, &st.entropy, &st.argmax, &st.z] {
        assert!(!t.track_op(), "{what}: the stats are detached");
    }
    close(
        &format!("{what} lse"),
        &flat(&st.lse),
        &want.iter().map(|r| r.0).collect::<Vec<_>>(),
        rel,
    );
    close(
        &format!("{what} entropy"),
        &flat(&st.entropy),
        &want.iter().map(|r| r.1).collect::<Vec<_>>(),
        rel,
    );
    let z: Vec<f64> = want
        .iter()
        .zip(keep)
        .map(|(r, &k)| if k { z_loss * r.0 * r.0 } else { 0.0 })
        .collect();
    close(&format!("{what} z"), &flat(&st.z), &z, rel * 10.0);
    assert_eq!(st.argmax.dtype(), DType::I64, "{what}");
    let am = st.argmax.flatten_all().unwrap().to_vec1::<i64>().unwrap();
    assert_eq!(
        am,
        want.iter().map(|r| r.2).collect::<Vec<_>>(),
        "{what} argmax"
    );
}

fn values(n: usize, k: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 * 0.61 + k).sin() * 4.0 * 64.0).round() / 64.0)
        .collect()
}

#[test]
fn stats_match_the_f64_reference_with_every_option() -> Result<()> {
    let dev = Device::Cpu;
    let (n, c) = (6usize, 9usize);
    let x = values(n * c, 0.2);
    let y = [3i64, -100, 8, 0, -100, 5];
    let keep: Vec<bool> = y.iter().map(|&t| t != -100).collect();
    let targets = Tensor::new(&y, &dev)?;
    for dtype in [DType::F64, DType::F32, DType::BF16, DType::F16] {
        for (scale, cap) in [(1.0, None), (0.5, Some(3.0)), (2.5, None), (1.5, Some(6.0))] {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let mut opts = CrossEntropyOptions::default()
                    .logit_scale(scale)
                    .z_loss(1e-2)
                    .label_smoothing(0.1)
                    .weight((0..c).map(|i| 0.5 + i as f64 / 8.0).collect())
                    .reduction(reduction);
                opts.softcap = cap;
                let logits = Tensor::from_vec(x.clone(), (n, c), &dev)?.to_dtype(dtype)?;
                let (loss, st) = cross_entropy_with_stats(&logits, &targets, &opts)?;
                let plain = cross_entropy(&logits, &targets, &opts)?;
                assert_eq!(flat(&loss), flat(&plain), "the stats change nothing");
                // the values are multiples of 1/64 below 4: exact in every dtype
                let what = format!("{dtype:?} s={scale} cap={cap:?} {reduction:?}");
                check(&what, &st, &reference(&x, c, scale, cap), 1e-2, &keep);
                assert_eq!(st.lse.dims(), &[n]);
            }
        }
    }
    Ok(())
}

#[test]
fn kdim_and_unbatched_stats_have_the_row_shape() -> Result<()> {
    let dev = Device::Cpu;
    let (n, c, d) = (2usize, 5usize, 3usize);
    let x = values(n * c * d, 1.3);
    let logits = Tensor::from_vec(x.clone(), (n, c, d), &dev)?;
    let targets = Tensor::new(&[[0u32, 4, 2], [1, 1, 3]], &dev)?;
    let (_, st) = cross_entropy_with_stats(&logits, &targets, &CrossEntropyOptions::default())?;
    assert_eq!(st.entropy.dims(), &[n, d]);
    // rows (n, i) gather class c at x[n, c, i]
    let rows: Vec<f64> = (0..n * d)
        .flat_map(|r| {
            let x = &x;
            (0..c).map(move |k| x[(r / d) * c * d + k * d + r % d])
        })
        .collect();
    check(
        "kdim",
        &st,
        &reference(&rows, c, 1.0, None),
        0.0,
        &[true; 6],
    );
    let one = Tensor::new(&[1.0f64, 3.0, 2.0], &dev)?;
    let (_, st) = cross_entropy_with_stats(&one, &Tensor::new(2u32, &dev)?, &Default::default())?;
    assert_eq!(st.lse.dims(), &[] as &[usize]);
    assert_eq!(st.argmax.to_scalar::<i64>()?, 1);
    Ok(())
}

#[test]
fn logit_scale_gives_the_loss_of_scaled_logits_and_a_gradient_carrying_s() -> Result<()> {
    let dev = Device::Cpu;
    let (n, c, s) = (5usize, 7usize, 1.75);
    let x = values(n * c, 0.9);
    let y = Tensor::new(&[1u32, 6, 0, 3, 3], &dev)?;
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let opts = CrossEntropyOptions::default().reduction(reduction);
        let xv = Var::from_tensor(&Tensor::from_vec(x.clone(), (n, c), &dev)?)?;
        let loss = cross_entropy(xv.as_tensor(), &y, &opts.clone().logit_scale(s))?;
        let g = flat(loss.backward()?.get(&xv).unwrap());
        let sv = Var::from_tensor(&(Tensor::from_vec(x.clone(), (n, c), &dev)? * s)?)?;
        let want = cross_entropy(sv.as_tensor(), &y, &opts)?;
        let gs: Vec<f64> = flat(want.backward()?.get(&sv).unwrap())
            .iter()
            .map(|v| v * s)
            .collect();
        close("loss", &flat(&loss), &flat(&want), 1e-12);
        close("grad", &g, &gs, 1e-12);
    }
    Ok(())
}

#[test]
fn denominator_divides_the_sum_and_an_all_ignored_batch_gives_zero() -> Result<()> {
    let dev = Device::Cpu;
    let (n, c) = (6usize, 4usize);
    let x = values(n * c, 2.1);
    let y = Tensor::new(&[1i64, -100, 3, 0, 2, -100], &dev)?;
    let base = CrossEntropyOptions::default()
        .label_smoothing(0.2)
        .z_loss(1e-3)
        .weight(vec![1.0, 0.5, 2.0, 1.5]);
    let xv = Var::from_tensor(&Tensor::from_vec(x.clone(), (n, c), &dev)?)?;
    let loss = cross_entropy(xv.as_tensor(), &y, &base.clone().denominator(32.0))?;
    let g = flat(loss.backward()?.get(&xv).unwrap());
    let sum = cross_entropy(xv.as_tensor(), &y, &base.clone().reduction(Reduction::Sum))?;
    let gs: Vec<f64> = flat(sum.backward()?.get(&xv).unwrap())
        .iter()
        .map(|v| v / 32.0)
        .collect();
    close("loss", &flat(&loss), &[flat(&sum)[0] / 32.0], 1e-12);
    close("grad", &g, &gs, 1e-12);

    let ignored = Tensor::new(&[-100i64; 6], &dev)?;
    let nan = cross_entropy(xv.as_tensor(), &ignored, &base)?;
    assert!(nan.to_scalar::<f64>()?.is_nan(), "PyTorch's NaN by default");
    let zero = cross_entropy(xv.as_tensor(), &ignored, &base.clone().denominator(8.0))?;
    assert_eq!(zero.to_scalar::<f64>()?, 0.0);
    let g = flat(zero.backward()?.get(&xv).unwrap());
    assert!(g.iter().all(|&v| v == 0.0));
    Ok(())
}

#[test]
fn bad_scale_and_denominator_are_errors_naming_the_value() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[0.5f32, 1.0], [2.0, -1.0]], &dev)?;
    let y = Tensor::new(&[0u32, 1], &dev)?;
    for bad in [-2.0, 0.0, f64::INFINITY, f64::NAN] {
        let opts = CrossEntropyOptions::default().logit_scale(bad);
        let err = cross_entropy(&x, &y, &opts).unwrap_err().to_string();
        assert!(err.contains("logit_scale"), "{err}");
        let opts = CrossEntropyOptions::default().denominator(bad);
        let err = cross_entropy_with_stats(&x, &y, &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("denominator"), "{err}");
    }
    let opts = CrossEntropyOptions::default()
        .denominator(4.0)
        .reduction(Reduction::Sum);
    let err = cross_entropy(&x, &y, &opts).unwrap_err().to_string();
    assert!(err.contains("denominator"), "{err}");
    Ok(())
}

#[test]
fn linear_stats_equal_the_stats_of_the_logits() -> Result<()> {
    let dev = Device::Cpu;
    let (n, d, v) = (5usize, 4usize, 9usize);
    for dtype in [DType::F64, DType::F32] {
        let h = Tensor::from_vec(values(n * d, 0.4), (n, d), &dev)?.to_dtype(dtype)?;
        let w = Tensor::from_vec(values(v * d, 1.7), (v, d), &dev)?.to_dtype(dtype)?;
        let b = Tensor::from_vec(values(v, 3.1), v, &dev)?.to_dtype(dtype)?;
        let y = Tensor::new(&[2u32, 8, 0, 5, 5], &dev)?;
        let mut opts = CrossEntropyOptions::default()
            .logit_scale(0.3)
            .z_loss(1e-2)
            .denominator(10.0);
        opts.softcap = Some(5.0);
        let (hv, wv) = (Var::from_tensor(&h)?, Var::from_tensor(&w)?);
        let (loss, st) =
            linear_cross_entropy_with_stats(hv.as_tensor(), wv.as_tensor(), Some(&b), &y, &opts)?;
        let plain = linear_cross_entropy(&h, &w, Some(&b), &y, &opts)?;
        let logits = h.matmul(&w.t()?)?.broadcast_add(&b)?;
        let (want_loss, want) = cross_entropy_with_stats(&logits, &y, &opts)?;
        let rel = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        close("loss", &flat(&loss), &flat(&want_loss), rel);
        close("plain", &flat(&plain), &flat(&loss), 0.0);
        close("lse", &flat(&st.lse), &flat(&want.lse), rel);
        close("entropy", &flat(&st.entropy), &flat(&want.entropy), rel);
        close("z", &flat(&st.z), &flat(&want.z), rel);
        assert_eq!(st.argmax.to_vec1::<i64>()?, want.argmax.to_vec1::<i64>()?);
        assert!(
            loss.backward()?.get(&hv).is_some(),
            "the loss keeps its backward"
        );
    }
    Ok(())
}
