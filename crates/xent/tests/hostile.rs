//! Regression tests for the hostile library calls: shapes whose sizes
//! overflow behind a zero dim, a linear cross-entropy with `D = 0`, and buffers whose
//! size comes from a shape that holds no data. Each must return an `Err` naming the
//! shape (or compute the legal answer), fast, without panicking, aborting or touching
//! the caller's buffers.

use xent::{
    bf16, class_counts, class_weights, cross_entropy, cross_entropy_inplace, cross_entropy_into,
    gradcheck_cross_entropy, linear_cross_entropy, linear_cross_entropy_into,
    linear_cross_entropy_with_grad, log_softmax_backward_into, pos_weight, softmax,
    softmax_backward_into, softmax_into, ClassWeightOptions, CrossEntropyOptions, Error, GradOut,
    Layout, LinearCrossEntropyOptions, LinearGradOut, LinearInputs, Reduction,
};

const P63: usize = 1 << 63;
const P32: usize = 1 << 32;
const P40: usize = 1 << 40;

/// The shapes of crash 1: a zero class dim with rows whose count overflows.
const WRAPPING: [&[usize]; 2] = [&[2, 0, P63], &[P32, 0, P32]];

fn assert_overflow(err: Error, shape: &[usize]) {
    assert_eq!(
        err,
        Error::BadShape {
            shape: shape.to_vec(),
            len: 0,
            reason: "the shape's size overflows usize"
        }
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("{shape:?}")), "{msg}");
}

#[test]
fn layout_rejects_shapes_whose_nonzero_dims_overflow() {
    for shape in WRAPPING {
        assert_overflow(Layout::new(shape, 0).unwrap_err(), shape);
    }
    // (0, 2^62, 4): 2^64 behind the zero.
    assert!(Layout::new(&[0, 1 << 62, 4], 0).is_err());
    // Legal empty shapes stay legal, however large their other dims.
    let l = Layout::new(&[0, 1 << 62, 2], 0).unwrap();
    assert_eq!((l.rows(), l.numel(), l.inner()), (0, 0, 2));
    assert_eq!(Layout::new(&[0, 0, 3], 0).unwrap().rows(), 0);
    // A zero class dim with rows is no-classes, not an overflow.
    assert_eq!(
        Layout::new(&[P32 >> 1, 0, P32 >> 1], 0).unwrap_err(),
        Error::NoClasses {
            shape: vec![P32 >> 1, 0, P32 >> 1]
        }
    );
}

#[test]
fn cross_entropy_on_wrapping_shapes_is_an_error_in_every_dtype() {
    let opts = CrossEntropyOptions::default();
    for shape in WRAPPING {
        let target: [i64; 0] = [];
        assert_overflow(
            cross_entropy(&[] as &[f32], shape, &target[..], &opts).unwrap_err(),
            shape,
        );
        assert_overflow(
            cross_entropy(
                &[] as &[f64],
                shape,
                &target[..],
                &CrossEntropyOptions::default(),
            )
            .unwrap_err(),
            shape,
        );
        assert_overflow(
            cross_entropy(&[] as &[bf16], shape, &target[..], &opts).unwrap_err(),
            shape,
        );
        let mut loss = [7.0f32];
        let err = cross_entropy_inplace(
            &mut [] as &mut [f32],
            shape,
            &target[..],
            &opts,
            &mut loss,
            None,
        )
        .unwrap_err();
        assert_overflow(err, shape);
        assert_eq!(loss, [7.0]);
        let mut loss = [7.0f64];
        let o64 = CrossEntropyOptions::default();
        let err = cross_entropy_inplace(
            &mut [] as &mut [f64],
            shape,
            &target[..],
            &o64,
            &mut loss,
            None,
        )
        .unwrap_err();
        assert_overflow(err, shape);
        let mut loss = [7.0f32];
        let err = cross_entropy_inplace(
            &mut [] as &mut [bf16],
            shape,
            &target[..],
            &opts,
            &mut loss,
            None,
        )
        .unwrap_err();
        assert_overflow(err, shape);
        assert_eq!(loss, [7.0]);
        assert_overflow(
            gradcheck_cross_entropy(&[], shape, &target[..], &CrossEntropyOptions::default())
                .unwrap_err(),
            shape,
        );
        // Probability targets.
        let probs: [f64; 0] = [];
        assert_overflow(
            cross_entropy(
                &[] as &[f64],
                shape,
                &probs[..],
                &CrossEntropyOptions::default(),
            )
            .unwrap_err(),
            shape,
        );
    }
}

#[test]
fn softmax_on_wrapping_shapes_is_an_error_not_a_hang() {
    for shape in WRAPPING {
        assert_overflow(softmax(&[] as &[f32], shape).unwrap_err(), shape);
        assert_overflow(
            softmax_into(&[] as &[f64], shape, &mut []).unwrap_err(),
            shape,
        );
        assert_overflow(
            softmax_backward_into(&[] as &[f32], &[], shape, &mut []).unwrap_err(),
            shape,
        );
        assert_overflow(
            log_softmax_backward_into(&[] as &[f64], &[], shape, &mut []).unwrap_err(),
            shape,
        );
    }
}

#[test]
fn elementwise_losses_reject_wrapping_shapes() {
    for shape in WRAPPING {
        let err = pos_weight::<f32>(&[], shape).unwrap_err();
        assert!(matches!(err, Error::BadShape { .. }), "{err}");
        assert!(err.to_string().contains(&format!("{shape:?}")));
    }
}

/// Crash 2: `D = 0` is a legal shape: the logits are the bias (or 0), whatever N.
#[test]
fn linear_cross_entropy_with_zero_hidden_dim() {
    for n in [1usize, 6, 7, 8, 9, 17, 130] {
        let v = 3;
        let y: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        let inputs = LinearInputs::new(&[] as &[f32], [n, 0], &[], [v, 0]);
        let opts = LinearCrossEntropyOptions::default();
        let loss = linear_cross_entropy(inputs, &y[..], &opts).unwrap();
        assert!(
            (loss.item().unwrap() - 3f32.ln()).abs() < 1e-6,
            "n = {n}: {loss:?}"
        );
        // With a bias: logits = b in every row.
        let b = [0.5f64, -1.0, 2.0];
        let lse = b.iter().map(|v| v.exp()).sum::<f64>().ln();
        let inputs = LinearInputs::new(&[] as &[f64], [n, 0], &[], [v, 0]).linear_bias(&b);
        let opts = LinearCrossEntropyOptions::default().reduction(Reduction::None);
        let (loss, g) = linear_cross_entropy_with_grad(inputs, &y[..], &opts).unwrap();
        for (r, l) in loss.values().iter().enumerate() {
            assert!((l - (lse - b[r % 3])).abs() < 1e-12, "n = {n}, row {r}");
        }
        assert!(g.hidden.is_empty() && g.linear_weight.is_empty());
        // db = Σ_rows (softmax(b) − onehot(y)).
        let db = g.linear_bias.unwrap();
        for c in 0..3 {
            let hits = y.iter().filter(|&&t| t == c as i64).count() as f64;
            let want = n as f64 * (b[c] - lse).exp() - hits;
            assert!((db[c] - want).abs() < 1e-9, "n = {n}, db[{c}]");
        }
    }
}

/// Crash 3: a `(2⁴⁰, 0)` weight holds no data but asks for `2⁴⁰`-class logits.
#[test]
fn linear_cross_entropy_with_an_empty_huge_weight_is_an_allocation_error() {
    let opts = LinearCrossEntropyOptions::default();
    let inputs = LinearInputs::new(&[] as &[f32], [1, 0], &[], [P40, 0]);
    let err = linear_cross_entropy(inputs, &[0i64][..], &opts).unwrap_err();
    assert_eq!(
        err,
        Error::Allocation {
            name: "logits block",
            shape: vec![1, P40],
            bytes: Some(P40 * 4)
        }
    );
    assert_eq!(
        err.to_string(),
        "cannot allocate logits block of shape [1, 1099511627776] (4398046511104 bytes): out of memory"
    );
    // V = 2^62: the bytes overflow.
    let inputs = LinearInputs::new(&[] as &[f32], [1, 0], &[], [1 << 62, 0]);
    let err = linear_cross_entropy(inputs, &[0i64][..], &opts).unwrap_err();
    assert!(
        matches!(err, Error::Allocation { bytes: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("4611686018427387904"), "{err}");
    // N·V overflows: a shape error.
    let inputs = LinearInputs::new(&[] as &[f32], [8, 0], &[], [1 << 62, 0]);
    let err = linear_cross_entropy(inputs, &[0i64; 8][..], &opts).unwrap_err();
    assert!(matches!(err, Error::BadShape { .. }), "{err}");
    // The caller's buffers are untouched on the allocation error.
    let inputs = LinearInputs::new(&[] as &[f32], [1, 0], &[], [P40, 0]);
    let mut loss = [5.0f32];
    let mut dh: [f32; 0] = [];
    let g = LinearGradOut::new().hidden(&mut dh);
    assert!(linear_cross_entropy_into(inputs, &[0i64][..], &opts, &mut loss, Some(g)).is_err());
    assert_eq!(loss, [5.0]);
}

/// An empty batch allocates nothing, whatever `D`: the mean is NaN, the sum 0.
#[test]
fn linear_cross_entropy_of_an_empty_batch_with_a_huge_hidden_dim() {
    let inputs = LinearInputs::new(&[] as &[f32], [0, 1 << 62], &[], [0, 1 << 62]);
    let target: [i64; 0] = [];
    let mean = linear_cross_entropy(inputs, &target[..], &LinearCrossEntropyOptions::default());
    assert!(mean.unwrap().item().unwrap().is_nan());
    let sum = linear_cross_entropy(
        inputs,
        &target[..],
        &LinearCrossEntropyOptions::default().reduction(Reduction::Sum),
    );
    assert_eq!(sum.unwrap().item(), Some(0.0));
}

/// Crash 4: class counts and weights sized by an argument, not by data.
#[test]
fn class_counts_and_weights_of_impossible_sizes_are_errors() {
    let y = [0i64, 1];
    let err = class_counts(&y[..], usize::MAX, -100).unwrap_err();
    assert_eq!(
        err,
        Error::Allocation {
            name: "class counts",
            shape: vec![usize::MAX],
            bytes: None
        }
    );
    assert!(err.to_string().contains("18446744073709551615"), "{err}");
    let err = class_weights::<f32>(&y[..], usize::MAX, &ClassWeightOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Allocation { .. }), "{err}");
    let err = class_counts(&y[..], P40, -100).unwrap_err();
    assert_eq!(
        err,
        Error::Allocation {
            name: "class counts",
            shape: vec![P40],
            bytes: Some(P40 * 8)
        }
    );
    let err = pos_weight::<f32>(&[], &[0, P40]).unwrap_err();
    assert!(matches!(err, Error::Allocation { .. }), "{err}");
    assert!(err.to_string().contains("[1099511627776]"), "{err}");
}

/// The legal small versions of the same calls still compute.
#[test]
fn small_versions_still_compute() {
    assert_eq!(class_counts(&[2u8][..], 3, -100).unwrap(), [0, 0, 1]);
    assert_eq!(pos_weight::<f64>(&[], &[0, 3]).unwrap(), [1.0; 3]);
    let loss = cross_entropy(
        &[] as &[f32],
        &[0, 4, 2],
        &[0i64; 0][..],
        &CrossEntropyOptions::default(),
    )
    .unwrap();
    assert!(loss.item().unwrap().is_nan());
    let mut out = [1.0f32];
    let mut g: [f32; 0] = [];
    cross_entropy_into(
        &[] as &[f32],
        &[0, 4, 2],
        &[0i64; 0][..],
        &CrossEntropyOptions::default().reduction(Reduction::Sum),
        &mut out,
        Some(GradOut::new(&mut g)),
    )
    .unwrap();
    assert_eq!(out, [0.0]);
}

/// Found by the property tests: `(2⁴⁰, 0, 0)` has no rows but a huge `N`, which the
/// driver split into 2²⁵ empty blocks (minutes in a debug build).
#[test]
fn empty_inputs_with_a_huge_batch_dim_return_at_once() {
    let t = std::time::Instant::now();
    let shape = [P40, 0, 0];
    let mut out: [f64; 0] = [];
    softmax_into(&[] as &[f64], &shape, &mut out).unwrap();
    softmax_backward_into(&[] as &[f32], &[], &shape, &mut []).unwrap();
    let loss = cross_entropy(
        &[] as &[f32],
        &shape,
        &[0i64; 0][..],
        &CrossEntropyOptions::default(),
    )
    .unwrap();
    assert!(loss.item().unwrap().is_nan());
    let loss = cross_entropy(
        &[] as &[f64],
        &[P40, 3, 0],
        &[0.0f64; 0][..],
        &CrossEntropyOptions::default().reduction(Reduction::Sum),
    )
    .unwrap();
    assert_eq!(loss.item(), Some(0.0));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}
