//! Property tests (proptest) of the public API on hostile input: zero dims, dims
//! near `usize` overflow, lengths that do not match, extreme values (±inf, NaN,
//! ±f32::MAX, subnormals) and every option, valid or not. The properties:
//!
//! - no call panics, aborts or hangs (a hostile shape is an error at once);
//! - an `Err` names the shape or value that is wrong;
//! - the caller's output buffers are untouched on `Err`;
//! - where the input is legal, the results equal the independent f64 reference
//!   (tests/common/reference.rs).
//!
//! Case counts are bounded (see [`config`]) so that each property runs in a few
//! seconds in a debug build. A release build with `overflow-checks = true` runs
//! them too: `CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true cargo test --release -p xent
//! --test hostile_props`.

mod common;

use common::reference::{self, RefOpts, RefTarget};
use common::Tol;
use proptest::prelude::*;
use xent::{
    bf16, class_counts, cross_entropy_inplace, cross_entropy_into, cross_entropy_with_grad,
    linear_cross_entropy_with_grad, log_softmax, nll_loss_into, pos_weight, softmax_into,
    CrossEntropyOptions, Error, GradOut, LinearCrossEntropyOptions, LinearInputs, NllLossOptions,
    Reduction,
};

/// Bounded cases: the suite stays fast in debug builds.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

/// A dim: mostly small (0 included), sometimes near or at `usize` overflow.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..5,
        1 => Just(1usize << 32),
        1 => Just(1usize << 40),
        1 => Just(1usize << 62),
        1 => Just(1usize << 63),
        1 => Just(usize::MAX),
        1 => Just(usize::MAX / 3),
    ]
}

/// A shape of 0 to 4 hostile dims.
fn hostile_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dim(), 0..5)
}

/// Finite extreme values: the range where results must match the reference.
fn finite_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -8.0f64..8.0,
        1 => Just(f32::MAX as f64),
        1 => Just(-(f32::MAX as f64)),
        1 => Just(1e30),
        1 => Just(-1e30),
        1 => Just(1e-40), // an f32 subnormal
        1 => Just(5e-324), // the smallest f64 subnormal
        1 => Just(-0.0),
    ]
}

/// Any value, non-finite ones included.
fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => finite_value(),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::NAN),
    ]
}

/// `label_smoothing`, `z_loss` or a soft-cap: valid, or not.
fn option_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0f64..1.0,
        1 => Just(0.0),
        1 => Just(1.0),
        1 => Just(-0.5),
        1 => Just(1.5),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

fn reduction() -> impl Strategy<Value = Reduction> {
    prop_oneof![
        Just(Reduction::Mean),
        Just(Reduction::Sum),
        Just(Reduction::None)
    ]
}

/// The options of one hostile call.
#[derive(Debug, Clone)]
struct Opts {
    weight: Option<Vec<f64>>,
    ignore_index: i64,
    eps: f64,
    z: f64,
    cap: Option<f64>,
    reduction: Reduction,
}

fn opts() -> impl Strategy<Value = Opts> {
    (
        prop::option::of(prop::collection::vec(any_value(), 0..6)),
        prop_oneof![Just(-100i64), -2i64..6, Just(i64::MIN), Just(i64::MAX)],
        option_value(),
        prop_oneof![3 => Just(0.0), 1 => option_value()],
        prop::option::of(option_value()),
        reduction(),
    )
        .prop_map(|(weight, ignore_index, eps, z, cap, reduction)| Opts {
            weight,
            ignore_index,
            eps,
            z,
            cap,
            reduction,
        })
}

/// The message of `err` is one line naming what it reports.
fn names_it(err: &Error, shape: &[usize]) {
    let msg = err.to_string();
    assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
    let has = |s: String| assert!(msg.contains(&s), "{msg:?} does not name {s:?}");
    match err {
        Error::BadShape { shape: s, len, .. } => {
            assert_eq!(s, shape);
            has(format!("{s:?}"));
            has(len.to_string());
        }
        Error::NoClasses { shape: s } => {
            assert_eq!(s, shape);
            has(format!("{s:?}"));
        }
        Error::TargetOutOfBounds {
            target,
            index,
            classes,
        } => {
            has(target.to_string());
            has(format!("{index:?}"));
            has(classes.to_string());
        }
        Error::TargetShape { expected, len } | Error::GradOutputShape { expected, len } => {
            has(format!("{expected:?}"));
            has(len.to_string());
        }
        Error::BatchMismatch { input, target } => {
            has(input.to_string());
            has(target.to_string());
        }
        Error::WeightLength { len, classes } => {
            has(len.to_string());
            has(classes.to_string());
        }
        Error::LabelSmoothing { value } => has(value.to_string()),
        Error::IgnoreIndexWithProbabilities { ignore_index } => has(ignore_index.to_string()),
        Error::InvalidArgument { name, value, .. } => {
            has(name.to_string());
            has(value.clone());
        }
        Error::OutputLength {
            name,
            expected,
            len,
        } => {
            has(name.to_string());
            has(expected.to_string());
            has(len.to_string());
        }
        Error::Allocation { shape, .. } => has(format!("{shape:?}")),
        Error::ValueOutOfRange {
            name, value, index, ..
        } => {
            has(name.to_string());
            has(value.to_string());
            has(format!("{index:?}"));
        }
        other => panic!("unexpected error {other:?}"),
    }
}

/// The data length of a call on `shape`: the shape's size when small, else a small
/// wrong one.
fn data_len(shape: &[usize], pick: usize) -> usize {
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX);
    if numel <= 64 && !pick.is_multiple_of(4) {
        numel
    } else {
        pick % 9
    }
}

const SENTINEL: f64 = 12345.0;

proptest! {
    #![proptest_config(config(512))]

    /// Hostile shapes, lengths, values and options: `Ok`, or an `Err` that names the
    /// problem with the output buffers untouched; never a panic.
    #[test]
    fn cross_entropy_never_panics_and_errors_leave_buffers_alone(
        shape in hostile_shape(),
        pick in 0usize..1000,
        values in prop::collection::vec(any_value(), 64),
        targets in prop::collection::vec(prop_oneof![-101i64..6, Just(i64::MAX), Just(-100)], 0..70),
        probs in any::<bool>(),
        o in opts(),
        loss_len in prop_oneof![Just(None), (0usize..5).prop_map(Some)],
        with_grad in any::<bool>(),
    ) {
        let len = data_len(&shape, pick);
        let x: Vec<f64> = values.iter().cycle().take(len).copied().collect();
        // Loss buffer: the right length (when computable) or a hostile one.
        let rows = if shape.len() <= 1 { 1 } else { len / shape[1].max(1) };
        let want_loss = if o.reduction == Reduction::None { rows } else { 1 };
        let mut loss = vec![SENTINEL; loss_len.unwrap_or(want_loss)];
        let mut grad = vec![SENTINEL; len];
        let mut copts = CrossEntropyOptions::default()
            .ignore_index(o.ignore_index)
            .label_smoothing(o.eps)
            .z_loss(o.z)
            .reduction(o.reduction);
        if let Some(w) = &o.weight {
            copts = copts.weight(w);
        }
        if let Some(c) = o.cap {
            copts = copts.softcap(c);
        }
        let t: Vec<i64> = targets.iter().cycle().take(if targets.is_empty() { 0 } else { pick % 70 }).copied().collect();
        let p: Vec<f64> = values.iter().cycle().take(len).copied().collect();
        let g = with_grad.then(|| GradOut::new(&mut grad[..]));
        let r = if probs {
            cross_entropy_into(&x, &shape, &p[..], &copts, &mut loss, g)
        } else {
            cross_entropy_into(&x, &shape, &t[..], &copts, &mut loss, g)
        };
        if let Err(e) = r {
            names_it(&e, &shape);
            prop_assert!(loss.iter().all(|&v| v == SENTINEL));
            prop_assert!(grad.iter().all(|&v| v == SENTINEL));
        }
        // The same through nll, in place, and in f32 and bf16.
        let mut nopts = NllLossOptions::default().ignore_index(o.ignore_index).reduction(o.reduction);
        if let Some(w) = &o.weight {
            nopts = nopts.weight(w);
        }
        let mut loss = vec![SENTINEL; loss.len()];
        if let Err(e) = nll_loss_into(&x, &shape, &t[..], &nopts, &mut loss, None) {
            names_it(&e, &shape);
            prop_assert!(loss.iter().all(|&v| v == SENTINEL));
        }
        let mut x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let before = x32.clone();
        let w32: Option<Vec<f32>> = o.weight.as_ref().map(|w| w.iter().map(|&v| v as f32).collect());
        let mut o32 = CrossEntropyOptions::default()
            .ignore_index(o.ignore_index)
            .label_smoothing(o.eps)
            .z_loss(o.z)
            .reduction(o.reduction);
        if let Some(w) = &w32 {
            o32 = o32.weight(w);
        }
        let mut loss32 = vec![SENTINEL as f32; loss.len()];
        if let Err(e) = cross_entropy_inplace(&mut x32, &shape, &t[..], &o32, &mut loss32, None) {
            names_it(&e, &shape);
            prop_assert!(x32.iter().zip(&before).all(|(a, b)| a.to_bits() == b.to_bits()));
            prop_assert!(loss32.iter().all(|&v| v == SENTINEL as f32));
        }
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f64(v)).collect();
        let mut gb = vec![SENTINEL as f32; len];
        if let Err(e) = cross_entropy_into(&xb, &shape, &t[..], &o32, &mut loss32, Some(GradOut::new_acc(&mut gb))) {
            names_it(&e, &shape);
            prop_assert!(gb.iter().all(|&v| v == SENTINEL as f32));
        }
        // softmax on the same shape.
        let mut out = vec![SENTINEL; len];
        if let Err(e) = softmax_into(&x, &shape, &mut out) {
            names_it(&e, &shape);
            prop_assert!(out.iter().all(|&v| v == SENTINEL));
        }
    }

    /// Legal inputs with finite extreme values: cross-entropy (loss and gradient)
    /// equals the f64 reference, for class indices and probabilities, every option
    /// the reference has.
    #[test]
    fn cross_entropy_matches_the_f64_reference(
        dims in prop::collection::vec(0usize..4, 1..4),
        classes in 1usize..6,
        values in prop::collection::vec(finite_value(), 1..200),
        raw_targets in prop::collection::vec(0i64..1000, 64),
        probs in any::<bool>(),
        weight in prop::option::of(prop::collection::vec(0.0f64..3.0, 6)),
        eps in 0.0f64..=1.0,
        red in reduction(),
    ) {
        // (C,), (N, C) or (N, C, d..): `classes` at dim 1 (dim 0 when 1-d).
        let shape: Vec<usize> = if dims.len() == 1 {
            vec![classes]
        } else {
            let mut s = vec![dims[0], classes];
            s.extend(&dims[2..]);
            s
        };
        let len: usize = shape.iter().product();
        let rows = len / classes;
        let x: Vec<f64> = values.iter().cycle().take(len).copied().collect();
        let ignore = -100i64;
        let t: Vec<i64> = raw_targets.iter().cycle().take(rows)
            .map(|&r| if r % 7 == 0 { ignore } else { r % classes as i64 })
            .collect();
        let p: Vec<f64> = values.iter().rev().cycle().take(len).map(|v| v.abs().min(2.0)).collect();
        let w: Option<Vec<f64>> = weight.map(|w| w[..classes].to_vec());
        let mut opts = CrossEntropyOptions::default().label_smoothing(eps).reduction(red);
        if let Some(w) = &w {
            opts = opts.weight(w);
        }
        let name = match red { Reduction::Mean => "mean", Reduction::Sum => "sum", Reduction::None => "none" };
        let ro = RefOpts { weight: w.as_deref(), ignore_index: ignore, eps, reduction: name };
        let ((got, grad), (rows_ref, reduced, grad_ref)) = if probs {
            (cross_entropy_with_grad(&x, &shape, &p[..], &opts).unwrap(),
             reference::cross_entropy(&x, &shape, RefTarget::Prob(&p), &ro))
        } else {
            (cross_entropy_with_grad(&x, &shape, &t[..], &opts).unwrap(),
             reference::cross_entropy(&x, &shape, RefTarget::Index(&t), &ro))
        };
        let tol = Tol::f64_rows(classes);
        match red {
            Reduction::None => tol.check_all("loss", got.values(), &rows_ref),
            _ => tol.check("loss", got.item().unwrap(), reduced, reduced.abs().max(1.0)),
        }
        // An empty mean is NaN: its gradient, 0/0-scaled, is not compared.
        if !(red == Reduction::Mean && rows == 0) {
            tol.check_all("grad", &grad, &grad_ref);
        }
    }

    /// log_softmax of legal finite extreme rows equals the reference, and softmax
    /// rows sum to 1.
    #[test]
    fn log_softmax_matches_the_reference(
        rows in 0usize..5,
        classes in 1usize..7,
        values in prop::collection::vec(finite_value(), 1..40),
    ) {
        let x: Vec<f64> = values.iter().cycle().take(rows * classes).copied().collect();
        let got = log_softmax(&x, &[rows, classes]).unwrap();
        let want: Vec<f64> = reference::gather_rows(&x, &[rows, classes])
            .iter()
            .flat_map(|r| reference::log_softmax_row(r))
            .collect();
        Tol::f64_rows(classes).check_all("log_softmax", &got, &want);
        let mut p = vec![0.0; x.len()];
        softmax_into(&x, &[rows, classes], &mut p).unwrap();
        for r in p.chunks(classes) {
            prop_assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    /// Linear cross-entropy (zero dims included) equals the reference on the
    /// explicit logits `h·Wᵀ + b`, with its gradients.
    #[test]
    fn linear_cross_entropy_matches_the_reference(
        n in 0usize..6,
        d in 0usize..5,
        v in 1usize..6,
        values in prop::collection::vec(-3.0f64..3.0, 1..64),
        raw_targets in prop::collection::vec(0i64..100, 6),
        with_bias in any::<bool>(),
        eps in 0.0f64..=1.0,
        red in reduction(),
    ) {
        let take = |k: usize, skip: usize| -> Vec<f64> {
            values.iter().cycle().skip(skip).take(k).copied().collect()
        };
        let (h, w, b) = (take(n * d, 0), take(v * d, 3), take(v, 7));
        let t: Vec<i64> = raw_targets[..n].iter().map(|&r| if r % 5 == 0 { -100 } else { r % v as i64 }).collect();
        let mut inputs = LinearInputs::new(&h, [n, d], &w, [v, d]);
        if with_bias {
            inputs = inputs.linear_bias(&b);
        }
        let opts = LinearCrossEntropyOptions::default().label_smoothing(eps).reduction(red);
        let (loss, g) = linear_cross_entropy_with_grad(inputs, &t[..], &opts).unwrap();
        let logits: Vec<f64> = (0..n)
            .flat_map(|r| (0..v).map(move |c| (r, c)))
            .map(|(r, c)| {
                let dot = reference::ksum((0..d).map(|k| h[r * d + k] * w[c * d + k]));
                dot + if with_bias { b[c] } else { 0.0 }
            })
            .collect();
        let name = match red { Reduction::Mean => "mean", Reduction::Sum => "sum", Reduction::None => "none" };
        let ro = RefOpts { weight: None, ignore_index: -100, eps, reduction: name };
        let (rows_ref, reduced, gx) = reference::cross_entropy(&logits, &[n, v], RefTarget::Index(&t), &ro);
        let tol = Tol::f64_rows(v.max(d));
        match red {
            Reduction::None => tol.check_all("loss", loss.values(), &rows_ref),
            _ => tol.check("loss", loss.item().unwrap(), reduced, reduced.abs().max(1.0)),
        }
        if red == Reduction::Mean && t.iter().all(|&y| y == -100) {
            return Ok(()); // 0/0: NaN scale, not compared
        }
        // dh = G·W, dW = Gᵀ·h
        let dh: Vec<f64> = (0..n * d)
            .map(|i| reference::ksum((0..v).map(|c| gx[(i / d) * v + c] * w[c * d + i % d])))
            .collect();
        let dw: Vec<f64> = (0..v * d)
            .map(|i| reference::ksum((0..n).map(|r| gx[r * v + i / d] * h[r * d + i % d])))
            .collect();
        tol.check_all("dh", &g.hidden, &dh);
        tol.check_all("dw", &g.linear_weight, &dw);
    }

    /// Class counts and `pos_weight` equal direct counts; hostile sizes are errors.
    #[test]
    fn class_counts_and_pos_weight_match_direct_counts(
        classes in prop_oneof![4 => 1usize..6, 1 => Just(0usize), 1 => Just(usize::MAX), 1 => Just(1usize << 40)],
        targets in prop::collection::vec(-101i64..7, 0..30),
        rows in 0usize..6,
        // No 2^32 here: its 2^32 sums (64 GiB) may be granted by an overcommitting
        // allocator and then filled.
        shape_extra in prop_oneof![8 => 0usize..5, 1 => Just(1usize << 40), 1 => Just(1usize << 62), 1 => Just(usize::MAX)],
        labels in prop::collection::vec(prop_oneof![Just(0.0f64), Just(1.0), 0.0f64..1.0, Just(f64::NAN), Just(2.0)], 0..30),
    ) {
        match class_counts(&targets[..], classes, -100) {
            Ok(c) => {
                prop_assert_eq!(c.len(), classes);
                for (k, &n) in c.iter().enumerate() {
                    prop_assert_eq!(n as usize, targets.iter().filter(|&&t| t == k as i64).count());
                }
            }
            Err(e) => {
                let bad = targets.iter().any(|&t| t != -100 && !(0..classes as i128).contains(&(t as i128)));
                prop_assert!(classes == 0 || classes > 1 << 20 || bad, "{e}");
                let msg = e.to_string();
                prop_assert!(!msg.is_empty() && !msg.contains('\n'));
            }
        }
        let shape = [rows, shape_extra];
        let y: Vec<f64> = labels.iter().cycle().take(rows.saturating_mul(shape_extra).min(30)).copied().collect();
        match pos_weight(&y, &shape) {
            Ok(pw) => {
                prop_assert_eq!(pw.len(), shape_extra);
                for (c, &v) in pw.iter().enumerate() {
                    let pos: f64 = y.iter().skip(c).step_by(shape_extra).sum();
                    let neg: f64 = y.iter().skip(c).step_by(shape_extra).map(|v| 1.0 - v).sum();
                    let want = if pos > 0.0 { neg / pos } else { 1.0 };
                    prop_assert!((v - want).abs() <= 1e-12 * want.abs().max(1.0), "{v} vs {want}");
                }
            }
            Err(e) => names_it(&e, &shape),
        }
    }
}
