//! What the goldens do not cover: bad input as typed errors (the same on both paths),
//! `bf16`/`f16` on Flex, non-contiguous tensors, untracked inputs, the module configs,
//! and the two paths against each other on larger K-dim inputs with every option.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use xent_burn::{
    binary_cross_entropy, cross_entropy, cross_entropy_with_probs, linear_cross_entropy,
    BinaryCrossEntropyOptions, CrossEntropyLossConfig, CrossEntropyOptions, Error, Implementation,
    KlDivLossConfig, Reduction,
};

const PATHS: [Implementation; 2] = [Implementation::Auto, Implementation::Composed];

/// NdArray is deprecated by burn in favour of Flex; xent-burn supports both.
#[allow(deprecated)]
fn ndarray() -> Device {
    Device::ndarray()
}

fn dev() -> Device {
    Device::flex().autodiff()
}

/// Deterministic values in `[-scale, scale)` (splitmix64).
fn values(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale as f32
        })
        .collect()
}

fn floats<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn ints<const D: usize>(v: Vec<i64>, shape: [usize; D], device: &Device) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn flat<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn ce_err<const D: usize, const DT: usize>(
    logits: Tensor<D>,
    targets: Tensor<DT, Int>,
    opts: CrossEntropyOptions,
) -> Error {
    let [a, b] = PATHS.map(|p| {
        cross_entropy(
            logits.clone(),
            targets.clone(),
            &opts.clone().implementation(p),
        )
        .expect_err("bad input is an error")
    });
    assert_eq!(a, b, "both paths give the same error");
    a
}

#[test]
fn bad_cross_entropy_input_is_the_same_typed_error_on_both_paths() {
    let d = dev();
    let x = floats(values(20, 1, 2.0), [4, 5], &d);
    let opts = CrossEntropyOptions::default;
    let e = ce_err(x.clone(), ints(vec![1, 7, 0, 2], [4], &d), opts());
    assert_eq!(
        e.to_string(),
        "target 7 at index [1] is out of bounds for 5 classes"
    );
    let e = ce_err(x.clone(), ints(vec![1, 0, -3, 2], [4], &d), opts());
    assert!(
        matches!(
            e,
            Error::Xent(xent::Error::TargetOutOfBounds { target: -3, .. })
        ),
        "{e}"
    );
    let e = ce_err(x.clone(), ints(vec![1, 0, 2], [3], &d), opts());
    assert_eq!(
        e,
        Error::Xent(xent::Error::BatchMismatch {
            input: 4,
            target: 3
        })
    );
    let e = ce_err(
        x.clone(),
        ints(vec![1, 0, 2, 1], [4], &d),
        opts().label_smoothing(1.5),
    );
    assert!(e.to_string().contains("label_smoothing"), "{e}");
    let e = ce_err(
        x.clone(),
        ints(vec![1, 0, 2, 1], [4], &d),
        opts().label_smoothing(-0.1),
    );
    assert!(e.to_string().contains("label_smoothing"), "{e}");
    let w = floats(vec![1.0; 3], [3], &d);
    let e = ce_err(x.clone(), ints(vec![1, 0, 2, 1], [4], &d), opts().weight(w));
    assert!(
        matches!(e, Error::Xent(xent::Error::WeightLength { len: 3, .. })),
        "{e}"
    );
    let x3 = floats(values(24, 2, 2.0), [2, 4, 3], &d);
    let e = ce_err(x3, ints(vec![0; 4], [2, 2], &d), opts());
    assert!(
        matches!(e, Error::Xent(xent::Error::TargetShape { .. })),
        "{e}"
    );
    // Probability targets: another shape, or a non-negative ignore_index.
    for p in PATHS {
        let o = opts().implementation(p);
        let e =
            cross_entropy_with_probs(x.clone(), floats(vec![0.2; 15], [3, 5], &d), &o).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Shape {
                    what: "targets",
                    ..
                }
            ),
            "{e}"
        );
        let o = o.ignore_index(0);
        let e =
            cross_entropy_with_probs(x.clone(), floats(vec![0.2; 20], [4, 5], &d), &o).unwrap_err();
        assert!(matches!(e, Error::Xent(_)), "{e}");
    }
}

#[test]
fn bad_dtype_device_and_shape_are_typed_errors() {
    let d = dev();
    let y = ints(vec![1, 0], [2], &d);
    for p in PATHS {
        let opts = CrossEntropyOptions::default().implementation(p);
        // Logits on another backend than the targets.
        let other = floats(values(6, 3, 1.0), [2, 3], &ndarray());
        let e = cross_entropy(other, y.clone(), &opts).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Device {
                    what: "targets",
                    ..
                }
            ),
            "{e}"
        );
        // Linear: W's D differs from h's.
        let h = floats(values(6, 4, 1.0), [2, 3], &d);
        let w = floats(values(8, 5, 1.0), [4, 2], &d);
        let e = linear_cross_entropy(h, w, None, y.clone(), &opts).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Shape {
                    what: "linear_weight",
                    ..
                }
            ),
            "{e}"
        );
        // BCE: a probability outside [0, 1], named with its position, on both paths.
        let o = BinaryCrossEntropyOptions::default().implementation(p);
        let pr = floats(vec![0.5, 1.5, 0.2], [3], &d);
        let e = binary_cross_entropy(pr, floats(vec![0.0; 3], [3], &d), &o).unwrap_err();
        assert!(e.to_string().contains("1.5"), "{e}");
        assert!(e.to_string().contains("[1]"), "{e}");
        let pr = floats(vec![0.5; 6], [2, 3], &d);
        let o = o.weight(floats(vec![1.0; 4], [4], &d));
        let e = binary_cross_entropy(pr, floats(vec![0.0; 6], [2, 3], &d), &o).unwrap_err();
        assert!(matches!(e, Error::Shape { what: "weight", .. }), "{e}");
    }
    let e = CrossEntropyLossConfig::new()
        .with_reduction("avg".into())
        .init(&d)
        .unwrap_err();
    assert!(e.to_string().contains("avg"), "{e}");
    let e = KlDivLossConfig::new()
        .with_reduction("batch".into())
        .init()
        .unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
}

/// The kernels and the composed path on K-dim logits with every option at once.
#[test]
fn kernels_and_composed_ops_agree_on_kdim_inputs_with_every_option() {
    let d = dev();
    let (n, c, k1, k2) = (3, 37, 4, 2);
    let xv = values(n * c * k1 * k2, 11, 6.0);
    let mut y: Vec<i64> = (0..n * k1 * k2).map(|i| (i * 7 % c) as i64).collect();
    y[3] = -1;
    let w = floats(
        values(c, 12, 0.5).into_iter().map(|v| v + 1.0).collect(),
        [c],
        &d,
    );
    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        let [(la, ga), (lb, gb)] = PATHS.map(|p| {
            let x = floats(xv.clone(), [n, c, k1, k2], &d).require_grad();
            let opts = CrossEntropyOptions::default()
                .weight(w.clone())
                .ignore_index(-1)
                .label_smoothing(0.05)
                .reduction(reduction)
                .z_loss(1e-3)
                .softcap(4.0)
                .implementation(p);
            let loss = cross_entropy(x.clone(), ints(y.clone(), [n, k1, k2], &d), &opts).unwrap();
            let g = x.grad(&loss.clone().sum().backward()).unwrap();
            (flat(loss), flat(g))
        });
        let close = |a: &[f64], b: &[f64]| {
            let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
            a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 2e-5 * scale)
        };
        assert!(close(&la, &lb), "{reduction:?} losses {la:?} vs {lb:?}");
        assert!(close(&ga, &gb), "{reduction:?} gradients differ");
    }
}

/// bf16 and f16 logits (Flex has both): the loss comes in f32 from xent's f32
/// accumulation, the gradient in the logits' dtype, equal to the f32 run on the same
/// (rounded) values within one rounding of the gradient's dtype.
#[test]
fn bf16_and_f16_logits_give_an_f32_loss_and_a_gradient_in_their_dtype() {
    let d = dev();
    let (n, c) = (6, 300);
    let y = ints((0..n as i64).map(|i| i * 41 % c as i64).collect(), [n], &d);
    for dtype in [DType::BF16, DType::F16] {
        let x16 = floats(values(n * c, 21, 3.0), [n, c], &d).cast(dtype);
        let xv: Vec<f32> = x16.clone().into_data().iter::<f32>().collect();
        let x16 = Tensor::<2>::from_data(x16.into_data(), (&d, dtype)).require_grad();
        let x32 = floats(xv, [n, c], &d).require_grad();
        let opts = CrossEntropyOptions::default().label_smoothing(0.1);
        let l16 = cross_entropy(x16.clone(), y.clone(), &opts).unwrap();
        let l32 = cross_entropy(x32.clone(), y.clone(), &opts).unwrap();
        assert_eq!(l16.dtype(), DType::F32, "{dtype:?}: the loss is f32");
        let (a, b) = (
            l16.clone().into_scalar::<f64>(),
            l32.clone().into_scalar::<f64>(),
        );
        assert!(
            (a - b).abs() <= 1e-6 * b.abs(),
            "{dtype:?}: loss {a} vs {b}"
        );
        let g16 = x16.grad(&l16.backward()).unwrap();
        assert_eq!(g16.dtype(), dtype, "the gradient has the logits' dtype");
        let g32 = flat(x32.grad(&l32.backward()).unwrap());
        let scale = g32.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let eps = if dtype == DType::BF16 {
            2f64.powi(-8)
        } else {
            2f64.powi(-11)
        };
        for (a, b) in flat(g16).iter().zip(&g32) {
            assert!(
                (a - b).abs() <= eps * scale,
                "{dtype:?}: gradient {a} vs {b}"
            );
        }
        // The composed path computes in f32 as well.
        let o = opts.clone().implementation(Implementation::Composed);
        let lc = cross_entropy(x16.clone(), y.clone(), &o)
            .unwrap()
            .into_scalar::<f64>();
        assert!(
            (lc - b).abs() <= 1e-5 * b.abs(),
            "{dtype:?}: composed loss {lc} vs {b}"
        );
    }
}

#[test]
fn non_contiguous_and_untracked_inputs_give_the_same_loss() {
    let d = dev();
    let y = ints(vec![5, 0, 3, 1], [4], &d);
    let opts = CrossEntropyOptions::default();
    let x = floats(values(4 * 6, 31, 2.0), [4, 6], &d);
    let want = cross_entropy(x.clone(), y.clone(), &opts)
        .unwrap()
        .into_scalar::<f64>();
    // The same logits stored transposed: a strided view, copied for the kernel.
    let xt = Tensor::<2>::from_data(x.clone().transpose().into_data(), &d).transpose();
    assert_eq!(xt.dims(), [4, 6]);
    let got = cross_entropy(xt, y.clone(), &opts)
        .unwrap()
        .into_scalar::<f64>();
    assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
    // Without autodiff, and with NdArray.
    for device in [Device::flex(), ndarray()] {
        let x = Tensor::<2>::from_data(x.clone().into_data(), &device);
        let y = Tensor::<1, Int>::from_data(y.clone().into_data(), &device);
        let got = cross_entropy(x, y, &opts).unwrap().into_scalar::<f64>();
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "{device:?}: {got} vs {want}"
        );
    }
}

#[test]
fn the_module_is_the_function_with_its_config() {
    let d = dev();
    let x = floats(values(5 * 4, 41, 2.0), [5, 4], &d);
    let y = ints(vec![0, 1, 2, 3, 1], [5], &d);
    let w = vec![1.0f32, 2.0, 0.5, 1.5];
    let module = CrossEntropyLossConfig::new()
        .with_weights(Some(w.clone()))
        .with_label_smoothing(0.2)
        .with_reduction("sum".into())
        .with_z_loss(1e-2)
        .with_softcap(Some(3.0))
        .with_ignore_index(3)
        .init(&d)
        .unwrap();
    let opts = CrossEntropyOptions::default()
        .weight(floats(w, [4], &d))
        .label_smoothing(0.2)
        .reduction(Reduction::Sum)
        .z_loss(1e-2)
        .softcap(3.0)
        .ignore_index(3);
    let a = module
        .forward(x.clone(), y.clone())
        .unwrap()
        .into_scalar::<f64>();
    let b = cross_entropy(x, y, &opts).unwrap().into_scalar::<f64>();
    assert_eq!(a, b);
}
