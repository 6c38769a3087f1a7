//! `linear_cross_entropy` equals `cross_entropy(h·Wᵀ + b)` composed in candle, loss and
//! gradients for `h`, `W` and `b`, for every reduction and a scaled upstream gradient.

use candle_core::{DType, Device, Result, Tensor, Var};
use xent_candle::{
    class_weight, cross_entropy, linear_cross_entropy, CrossEntropyOptions, Reduction,
};

fn close(what: &str, a: &Tensor, b: &Tensor, tol: f64) -> Result<()> {
    let (a, b) = (
        a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
        b.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
    );
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
    }
    Ok(())
}

#[test]
fn matches_the_composed_form() -> Result<()> {
    let dev = Device::Cpu;
    let (n, d, v) = (7usize, 5usize, 11usize);
    let val = |i: usize, k: f64| (i as f64 * 0.37 + k).sin();
    let hv: Vec<f64> = (0..n * d).map(|i| val(i, 0.3)).collect();
    let wv: Vec<f64> = (0..v * d).map(|i| val(i, 1.1)).collect();
    let bv: Vec<f64> = (0..v).map(|i| val(i, 2.3)).collect();
    let y = Tensor::new(&[3u32, 0, 10, 5, 5, 1, 7], &dev)?;
    let cw = Tensor::new(
        (0..v).map(|c| 0.5 + c as f64 * 0.1).collect::<Vec<_>>(),
        &dev,
    )?;
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for bias in [false, true] {
                let opts = CrossEntropyOptions::default()
                    .weight(class_weight(&cw.to_dtype(dtype)?)?)
                    .label_smoothing(0.1)
                    .z_loss(1e-3)
                    .reduction(reduction);
                let h = Var::from_tensor(
                    &Tensor::from_vec(hv.clone(), (n, d), &dev)?.to_dtype(dtype)?,
                )?;
                let w = Var::from_tensor(
                    &Tensor::from_vec(wv.clone(), (v, d), &dev)?.to_dtype(dtype)?,
                )?;
                let b = Var::from_tensor(&Tensor::from_vec(bv.clone(), v, &dev)?.to_dtype(dtype)?)?;
                let scale = |l: &Tensor| -> Result<Tensor> {
                    // A non-trivial upstream gradient: 3·loss, or Σ_n (n+1)·l_n for none.
                    match reduction {
                        Reduction::None => {
                            let c = Tensor::arange(1.0, (n + 1) as f64, &dev)?.to_dtype(dtype)?;
                            (l * c)?.sum_all()
                        }
                        _ => l * 3.0,
                    }
                };
                let fused = linear_cross_entropy(
                    h.as_tensor(),
                    w.as_tensor(),
                    bias.then_some(b.as_tensor()),
                    &y,
                    &opts,
                )?;
                let gf = scale(&fused)?.backward()?;
                let mut logits = h.as_tensor().matmul(&w.as_tensor().t()?)?;
                if bias {
                    logits = logits.broadcast_add(b.as_tensor())?;
                }
                let composed = cross_entropy(&logits, &y, &opts)?;
                let gc = scale(&composed)?.backward()?;
                let what = format!("{dtype:?} {reduction:?} bias {bias}");
                close(&format!("{what} loss"), &fused, &composed, tol)?;
                close(
                    &format!("{what} dh"),
                    gf.get(&h).unwrap(),
                    gc.get(&h).unwrap(),
                    tol,
                )?;
                close(
                    &format!("{what} dW"),
                    gf.get(&w).unwrap(),
                    gc.get(&w).unwrap(),
                    tol,
                )?;
                if bias {
                    close(
                        &format!("{what} db"),
                        gf.get(&b).unwrap(),
                        gc.get(&b).unwrap(),
                        tol,
                    )?;
                }
            }
        }
    }
    Ok(())
}

#[test]
fn bad_input_is_an_error_with_the_message() -> Result<()> {
    let dev = Device::Cpu;
    let h = Tensor::zeros((2, 3), DType::F32, &dev)?;
    let w = Tensor::zeros((4, 3), DType::F32, &dev)?;
    let y = Tensor::new(&[1u32, 9], &dev)?;
    let err = linear_cross_entropy(&h, &w, None, &y, &CrossEntropyOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("target 9 at index [1] is out of bounds for 4 classes"),
        "{err}"
    );
    let w64 = Tensor::zeros((4, 3), DType::F64, &dev)?;
    assert!(linear_cross_entropy(&h, &w64, None, &y, &CrossEntropyOptions::default()).is_err());
    Ok(())
}
