//! `xent_candle::cross_entropy` against candle's composed `candle_nn::loss::cross_entropy`
//! and against the PyTorch goldens in `fixtures/torch/cross_entropy.json`, loss and
//! gradient, the gradient always taken through candle's `loss.backward()`.

use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Result, Tensor, Var, D};
use serde_json::Value;
use xent_candle::{class_weight, cross_entropy, CrossEntropyOptions, Reduction};

/// How close two computations of the same loss must be.
///
/// - `f32`: both sides round every `exp` and row sum in `f32`; 2⁻²³ ≈ 1.2e-7 per
///   operation over rows of a few hundred classes leaves differences of a few 1e-7
///   relative; 1e-5 is far below any formula mistake (1e-2 and up).
/// - `f64`: the same headroom over 2⁻⁵² ≈ 2.2e-16.
///
/// Values compare as `|a − b| ≤ rel·max(|b|, 1)`; gradients, whose entries cancel
/// (`p_j − δ_{j,y}`), as `|a − b| ≤ rel·max_i |b_i|`. NaN must meet NaN and an
/// infinity the same infinity.
#[derive(Clone, Copy)]
struct Tol {
    rel: f64,
}
const F32: Tol = Tol { rel: 1e-5 };
const F64: Tol = Tol { rel: 1e-12 };

impl Tol {
    fn values(self, what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            if !w.is_finite() {
                assert!(
                    (w.is_nan() && g.is_nan()) || g == w,
                    "{what}[{i}]: got {g}, want {w}"
                );
            } else {
                let bound = self.rel * w.abs().max(1.0);
                assert!((g - w).abs() <= bound, "{what}[{i}]: got {g}, want {w}");
            }
        }
    }
    fn grad(self, what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            if !w.is_finite() {
                assert!(
                    (w.is_nan() && g.is_nan()) || g == w,
                    "{what}[{i}]: got {g}, want {w}"
                );
            } else {
                assert!(
                    (g - w).abs() <= self.rel * scale,
                    "{what}[{i}]: got {g}, want {w} (scale {scale})"
                );
            }
        }
    }
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// A deterministic pseudo-random stream (splitmix64), so that no RNG crate is needed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-a, a)`.
    fn uniform(&mut self, a: f64) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 * a - a
    }
    fn logits(&mut self, n: usize, a: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(a)).collect()
    }
    fn classes(&mut self, n: usize, c: usize) -> Vec<u32> {
        (0..n).map(|_| (self.next() % c as u64) as u32).collect()
    }
}

// ---------------------------------------------------------------------------------
// Against candle's composed cross-entropy

/// Loss and gradient of `candle_nn::loss::cross_entropy` (mean over rows, u32 targets).
fn candle_nn_ce(x: &Var, y: &Tensor) -> Result<(Tensor, Tensor)> {
    let loss = candle_nn::loss::cross_entropy(x.as_tensor(), y)?;
    let g = loss.backward()?.get(x).unwrap().clone();
    Ok((loss, g))
}

fn xent_ce(x: &Var, y: &Tensor, opts: &CrossEntropyOptions) -> Result<(Tensor, Tensor)> {
    let loss = cross_entropy(x.as_tensor(), y, opts)?;
    let g = loss.backward()?.get(x).unwrap().clone();
    Ok((loss, g))
}

#[test]
fn matches_candle_nn_mean_f32_and_f64() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng(1);
    for (n, c) in [(1, 2), (7, 10), (64, 1000), (33, 4099)] {
        let data = rng.logits(n * c, 8.0);
        let y = Tensor::new(rng.classes(n, c), &dev)?;
        for (dtype, tol) in [(DType::F32, F32), (DType::F64, F64)] {
            let x =
                Var::from_tensor(&Tensor::from_vec(data.clone(), (n, c), &dev)?.to_dtype(dtype)?)?;
            let (l_ref, g_ref) = candle_nn_ce(&x, &y)?;
            let (l, g) = xent_ce(&x, &y, &CrossEntropyOptions::default())?;
            assert_eq!(l.dtype(), dtype);
            assert_eq!(l.dims(), &[] as &[usize]);
            assert_eq!(g.dims(), &[n, c]);
            assert_eq!(g.dtype(), dtype);
            tol.values(
                &format!("loss ({n},{c}) {dtype:?}"),
                &flat(&l),
                &flat(&l_ref),
            );
            tol.grad(
                &format!("grad ({n},{c}) {dtype:?}"),
                &flat(&g),
                &flat(&g_ref),
            );
        }
    }
    Ok(())
}

#[test]
fn sum_and_none_with_an_upstream_gradient_match_composed() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng(2);
    let (n, c) = (12, 37);
    let x = Var::from_tensor(&Tensor::from_vec(rng.logits(n * c, 5.0), (n, c), &dev)?)?;
    let y = Tensor::new(rng.classes(n, c), &dev)?;
    let upstream = Tensor::from_vec(rng.logits(n, 2.0), n, &dev)?;
    // Composed per-row loss: −log_softmax(x)[n, y_n].
    let per_row = |x: &Tensor| -> Result<Tensor> {
        candle_nn::ops::log_softmax(x, D::Minus1)?
            .gather(&y.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg()
    };

    // none, weighted by an upstream gradient: the fused pass reruns with it.
    let want = (per_row(x.as_tensor())? * &upstream)?.sum_all()?;
    let g_want = want.backward()?.get(&x).unwrap().clone();
    let opts = CrossEntropyOptions::default().reduction(Reduction::None);
    let rows = cross_entropy(x.as_tensor(), &y, &opts)?;
    assert_eq!(rows.dims(), &[n]);
    F64.values("none", &flat(&rows), &flat(&per_row(x.as_tensor())?));
    let got = (&rows * &upstream)?.sum_all()?;
    let g = got.backward()?.get(&x).unwrap().clone();
    F64.grad("none·g", &flat(&g), &flat(&g_want));

    // sum, scaled by 3 after the op (incoming gradient 3).
    let want = (per_row(x.as_tensor())?.sum_all()? * 3.0)?;
    let g_want = want.backward()?.get(&x).unwrap().clone();
    let opts = CrossEntropyOptions::default().reduction(Reduction::Sum);
    let got = (cross_entropy(x.as_tensor(), &y, &opts)? * 3.0)?;
    F64.values("3·sum", &flat(&got), &flat(&want));
    let g = got.backward()?.get(&x).unwrap().clone();
    F64.grad("3·sum", &flat(&g), &flat(&g_want));
    Ok(())
}

#[test]
fn two_losses_on_the_same_logits_add_their_gradients() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng(3);
    let (n, c) = (5, 9);
    let x = Var::from_tensor(&Tensor::from_vec(rng.logits(n * c, 3.0), (n, c), &dev)?)?;
    let y1 = Tensor::new(rng.classes(n, c), &dev)?;
    let y2 = Tensor::new(rng.classes(n, c), &dev)?;
    let opts = CrossEntropyOptions::default();
    let both =
        (cross_entropy(x.as_tensor(), &y1, &opts)? + cross_entropy(x.as_tensor(), &y2, &opts)?)?;
    let g = both.backward()?.get(&x).unwrap().clone();
    let (_, g1) = candle_nn_ce(&x, &y1)?;
    let (_, g2) = candle_nn_ce(&x, &y2)?;
    F64.grad("g1 + g2", &flat(&g), &flat(&(g1 + g2)?));
    Ok(())
}

#[test]
fn kdim_logits_match_composed_on_the_transposed_rows() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng(4);
    let (n, c, d1, d2) = (3, 6, 2, 5);
    let x = Var::from_tensor(&Tensor::from_vec(
        rng.logits(n * c * d1 * d2, 4.0),
        (n, c, d1, d2),
        &dev,
    )?)?;
    let y = Tensor::from_vec(rng.classes(n * d1 * d2, c), (n, d1, d2), &dev)?;
    let (l, g) = xent_ce(&x, &y, &CrossEntropyOptions::default())?;
    // (N, C, d1, d2) → (N·d1·d2, C) rows, through candle-nn.
    let rows = x
        .as_tensor()
        .permute((0, 2, 3, 1))?
        .reshape((n * d1 * d2, c))?;
    let want = candle_nn::loss::cross_entropy(&rows, &y.flatten_all()?)?;
    let g_want = want.backward()?.get(&x).unwrap().clone();
    F64.values("kdim loss", &flat(&l), &flat(&want));
    F64.grad("kdim grad", &flat(&g), &flat(&g_want));

    let none = cross_entropy(
        x.as_tensor(),
        &y,
        &CrossEntropyOptions::default().reduction(Reduction::None),
    )?;
    assert_eq!(none.dims(), &[n, d1, d2]);
    Ok(())
}

#[test]
fn non_contiguous_logits_and_every_index_dtype() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng(5);
    let (n, c) = (8, 11);
    // Stored (C, N): its transpose is the (N, C) logits, not contiguous.
    let xt = Var::from_tensor(&Tensor::from_vec(rng.logits(n * c, 4.0), (c, n), &dev)?)?;
    let x = xt.as_tensor().t()?;
    assert!(!x.is_contiguous());
    let y = Tensor::new(rng.classes(n, c), &dev)?;
    let opts = CrossEntropyOptions::default();
    let loss = cross_entropy(&x, &y, &opts)?;
    let g = loss.backward()?.get(&xt).unwrap().clone();
    let xc = Var::from_tensor(&x.contiguous()?)?;
    let (l_ref, g_ref) = candle_nn_ce(&xc, &y)?;
    F64.values("loss", &flat(&loss), &flat(&l_ref));
    F64.grad("grad", &flat(&g.t()?), &flat(&g_ref));

    for dtype in [DType::U8, DType::U32, DType::I16, DType::I32, DType::I64] {
        let l = cross_entropy(&x, &y.to_dtype(dtype)?, &opts)?;
        assert_eq!(flat(&l), flat(&loss), "{dtype:?} targets");
    }
    Ok(())
}

#[test]
fn half_precision_logits_return_an_f32_loss_and_their_own_gradient() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng(6);
    let (n, c) = (6, 50);
    let x32 = Tensor::from_vec(rng.logits(n * c, 4.0), (n, c), &dev)?.to_dtype(DType::F32)?;
    let y = Tensor::new(rng.classes(n, c), &dev)?;
    for dtype in [DType::BF16, DType::F16] {
        let xh = x32.to_dtype(dtype)?;
        let x = Var::from_tensor(&xh)?;
        let (l, g) = xent_ce(&x, &y, &CrossEntropyOptions::default())?;
        assert_eq!(l.dtype(), DType::F32);
        assert_eq!(g.dtype(), dtype);
        // The same logits (exactly representable) in f32 through candle-nn.
        let x_ref = Var::from_tensor(&xh.to_dtype(DType::F32)?)?;
        let (l_ref, g_ref) = candle_nn_ce(&x_ref, &y)?;
        F32.values("half loss", &flat(&l), &flat(&l_ref));
        // The gradient is rounded once to 8 (bf16) or 11 (f16) mantissa bits.
        Tol { rel: 1e-2 }.grad("half grad", &flat(&g), &flat(&g_ref));
    }
    Ok(())
}

#[test]
fn untracked_logits_give_the_loss_only() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::new(
        &[[1.0f32, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]],
        &dev,
    )?;
    let y = Tensor::new(&[2i64, 1, 0], &dev)?;
    let loss = cross_entropy(&x, &y, &CrossEntropyOptions::default())?;
    assert!(!loss.track_op());
    assert!((loss.to_scalar::<f32>()? - 1.407_606).abs() < 1e-6);
    Ok(())
}

#[test]
fn errors_carry_xent_messages() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 5), DType::F32, &dev)?;
    let opts = CrossEntropyOptions::default();
    let msg = |r: Result<Tensor>| r.unwrap_err().to_string();

    let e = msg(cross_entropy(&x, &Tensor::new(&[1i64, 7], &dev)?, &opts));
    assert!(
        e.contains("target 7 at index [1] is out of bounds for 5 classes"),
        "{e}"
    );
    let e = msg(cross_entropy(&x, &Tensor::new(&[1u32, 2, 3], &dev)?, &opts));
    assert!(
        e.contains("Expected input batch_size (2) to match target batch_size (3)"),
        "{e}"
    );
    let e = msg(cross_entropy(
        &x,
        &Tensor::new(&[1u32], &dev)?.reshape((1, 1))?,
        &opts,
    ));
    assert!(e.contains("target"), "{e}");
    let y = Tensor::new(&[1u32, 2], &dev)?;
    let e = msg(cross_entropy(&x, &y, &opts.clone().label_smoothing(1.5)));
    assert!(
        e.contains("label_smoothing must be between 0.0 and 1.0. Got: 1.5"),
        "{e}"
    );
    let w = Tensor::new(&[1.0f32, 2.0], &dev)?;
    let e = msg(cross_entropy(
        &x,
        &y,
        &opts.clone().weight(class_weight(&w)?),
    ));
    assert!(e.contains("weight"), "{e}");
    let e = msg(cross_entropy(&x.to_dtype(DType::U32)?, &y, &opts));
    assert!(e.contains("logits must be f32, f64, bf16 or f16"), "{e}");
    Ok(())
}

// ---------------------------------------------------------------------------------
// Against the PyTorch goldens

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            other => panic!("bad number {other}"),
        },
        v => v.as_f64().expect("a number"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(num).collect()
}

fn reduction(s: &str) -> Reduction {
    s.parse().expect("a reduction")
}

/// Runs one golden case in `dtype` through the candle op and `loss.backward()`.
fn run_golden(case: &Value, dtype: DType, tol: Tol) -> Result<()> {
    let dev = Device::Cpu;
    let name = case["name"].as_str().unwrap();
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let x = Var::from_tensor(
        &Tensor::from_vec(nums(&case["input"]), shape.as_slice(), &dev)?.to_dtype(dtype)?,
    )?;
    let t = &case["target"];
    let target = match t["kind"].as_str().unwrap() {
        "indices" => {
            let v: Vec<i64> = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let rows = if shape.len() >= 2 {
                let mut r = shape.clone();
                r.remove(1);
                r
            } else {
                vec![]
            };
            let y = Tensor::from_vec(v, rows, &dev)?;
            match t["dtype"].as_str() {
                Some("uint8") => y.to_dtype(DType::U8)?,
                Some("int32") => y.to_dtype(DType::I32)?,
                _ => y,
            }
        }
        _ => Tensor::from_vec(nums(&t["values"]), shape.as_slice(), &dev)?.to_dtype(dtype)?,
    };
    let o = &case["options"];
    let mut opts = CrossEntropyOptions::default()
        .ignore_index(o["ignore_index"].as_i64().unwrap())
        .label_smoothing(o["label_smoothing"].as_f64().unwrap())
        .reduction(reduction(o["reduction"].as_str().unwrap()));
    if !o["weight"].is_null() {
        opts = opts.weight(class_weight(&Tensor::new(nums(&o["weight"]), &dev)?)?);
    }
    let loss = cross_entropy(x.as_tensor(), &target, &opts)?;
    let e = &case["expected"];
    tol.values(&format!("{name} loss"), &flat(&loss), &nums(&e["output"]));
    let out_shape: Vec<usize> = e["output_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(loss.dims(), out_shape.as_slice(), "{name} loss shape");
    // The golden gradient is ∂(Σ grad_output·loss)/∂x.
    let scaled = match &case["grad_output"] {
        Value::Null => loss.sum_all()?,
        go => {
            let go = Tensor::from_vec(nums(go), loss.shape(), &dev)?.to_dtype(loss.dtype())?;
            (&loss * go)?.sum_all()?
        }
    };
    let g = scaled.backward()?.get(&x).unwrap().clone();
    tol.grad(&format!("{name} grad"), &flat(&g), &nums(&e["grad"]));
    Ok(())
}

fn goldens() -> Vec<Value> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/torch/cross_entropy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

#[test]
fn every_cross_entropy_golden_in_f64() -> Result<()> {
    let cases = goldens();
    assert!(cases.len() > 100);
    for case in &cases {
        run_golden(case, DType::F64, F64)?;
    }
    Ok(())
}

#[test]
fn classic_and_kdim_goldens_in_f32() -> Result<()> {
    let cases = goldens();
    let mut ran = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        if name.starts_with("ce_classic")
            || name.starts_with("ce_kdim2")
            || name.starts_with("ce_grad_output")
        {
            run_golden(case, DType::F32, F32)?;
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} cases");
    // The classic example itself, by value.
    let dev = Device::Cpu;
    let x = Var::new(
        &[[1.0f32, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]],
        &dev,
    )?;
    let y = Tensor::new(&[2i64, 1, 0], &dev)?;
    let (l, g) = xent_ce(&x, &y, &CrossEntropyOptions::default())?;
    assert!((l.to_scalar::<f32>()? - 1.407_606).abs() < 1e-6);
    let g = g.i(0)?.to_vec1::<f32>()?;
    assert!((g[0] - 0.030_010_19).abs() < 1e-7 && (g[2] + 0.111_586_35).abs() < 1e-7);
    Ok(())
}
