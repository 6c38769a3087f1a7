//! Properties of the losses on random data, and agreement with an independent f64
//! reference (tests/common/reference.rs) on random shapes and options.

mod common;

use common::reference::{self, RefOpts, RefTarget};
use common::{Rng, Tol};
use xent::{
    cross_entropy, cross_entropy_into, cross_entropy_with_grad, gradcheck_cross_entropy,
    log_softmax, nll_loss_with_grad, softmax, CrossEntropyOptions, Error, GradMode, GradOut,
    NllLossOptions, Reduction, Targets,
};

/// A random problem: shape, logits, targets and options.
struct Case {
    shape: Vec<usize>,
    x: Vec<f64>,
    index: Vec<i64>,
    prob: Option<Vec<f64>>,
    weight: Option<Vec<f64>>,
    ignore_index: i64,
    eps: f64,
    reduction: Reduction,
}

impl Case {
    fn random(rng: &mut Rng) -> Case {
        let c = 1 + rng.below(12);
        let shape = match rng.below(4) {
            0 => vec![c],
            1 => vec![1 + rng.below(6), c],
            2 => vec![1 + rng.below(3), c, 1 + rng.below(4)],
            _ => vec![1 + rng.below(2), c, 1 + rng.below(3), 1 + rng.below(3)],
        };
        let len: usize = shape.iter().product();
        let rows = len / c;
        let scale = 1.0 + 4.0 * rng.uniform();
        let x = rng.logits(len, scale);
        let ignore_index = match rng.below(3) {
            0 => -100,
            1 => -1,
            _ => rng.below(c) as i64,
        };
        let mut index: Vec<i64> = (0..rows).map(|_| rng.below(c) as i64).collect();
        if ignore_index < 0 {
            for t in index.iter_mut() {
                if rng.below(4) == 0 {
                    *t = ignore_index;
                }
            }
        }
        let prob = (rng.below(3) == 0).then(|| {
            // Rows of a distribution over the class dim, laid out like x.
            let raw: Vec<f64> = (0..len).map(|_| rng.uniform() as f32 as f64).collect();
            let mut rows_t = reference::gather_rows(&raw, &shape);
            for row in rows_t.iter_mut() {
                let s: f64 = row.iter().sum();
                for v in row.iter_mut() {
                    *v = (*v / s) as f32 as f64;
                }
            }
            reference::scatter_rows(&rows_t, &shape)
        });
        let weight = (rng.below(2) == 0).then(|| {
            (0..c)
                .map(|_| (0.1 + 2.0 * rng.uniform()) as f32 as f64)
                .collect()
        });
        let eps = [0.0, 0.0, 0.1, 0.7, 1.0][rng.below(5)];
        let reduction = [Reduction::None, Reduction::Mean, Reduction::Sum][rng.below(3)];
        Case {
            shape,
            x,
            index,
            prob,
            weight,
            ignore_index,
            eps,
            reduction,
        }
    }

    fn reduction_name(&self) -> &'static str {
        match self.reduction {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }

    /// The reference's (per-row, reduced, grad).
    fn reference(&self) -> (Vec<f64>, f64, Vec<f64>) {
        let ignore_index = if self.prob.is_some() {
            -100
        } else {
            self.ignore_index
        };
        let opts = RefOpts {
            weight: self.weight.as_deref(),
            ignore_index,
            eps: self.eps,
            reduction: self.reduction_name(),
        };
        let target = match &self.prob {
            Some(p) => RefTarget::Prob(p),
            None => RefTarget::Index(&self.index),
        };
        reference::cross_entropy(&self.x, &self.shape, target, &opts)
    }

    fn describe(&self) -> String {
        format!(
            "shape {:?} prob {} weight {} ignore {} eps {} reduction {:?}",
            self.shape,
            self.prob.is_some(),
            self.weight.is_some(),
            self.ignore_index,
            self.eps,
            self.reduction
        )
    }

    /// Runs xent in type T and returns (loss values, grad) widened to f64.
    fn run<T: xent::Float + xent::Element<Acc = T>>(&self) -> (Vec<f64>, Vec<f64>) {
        let cast = |v: &[f64]| v.iter().map(|&a| T::from_f64(a)).collect::<Vec<T>>();
        let x = cast(&self.x);
        let w = self.weight.as_deref().map(cast);
        let mut opts = CrossEntropyOptions::default()
            .label_smoothing(self.eps)
            .reduction(self.reduction);
        if let Some(w) = &w {
            opts = opts.weight(w);
        }
        let p = self.prob.as_deref().map(cast);
        let (loss, grad) = match &p {
            Some(p) => cross_entropy_with_grad(&x, &self.shape, Targets::Probabilities(p), &opts),
            None => cross_entropy_with_grad(
                &x,
                &self.shape,
                &self.index[..],
                &opts.ignore_index(self.ignore_index),
            ),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", self.describe()));
        let wide = |v: &[T]| v.iter().map(|a| a.to_f64()).collect::<Vec<f64>>();
        (wide(loss.values()), wide(&grad))
    }
}

fn check_case(case: &Case) {
    let (rows, reduced, grad) = case.reference();
    let want: Vec<f64> = if case.reduction == Reduction::None {
        rows
    } else {
        vec![reduced]
    };
    let c = case.shape[if case.shape.len() == 1 { 0 } else { 1 }];
    let what = case.describe();
    let (l64, g64) = case.run::<f64>();
    Tol::f64_rows(c).check_all(&format!("f64 loss {what}"), &l64, &want);
    Tol::f64_rows(c).check_all(&format!("f64 grad {what}"), &g64, &grad);
    let (l32, g32) = case.run::<f32>();
    Tol::f32_rows(c).check_all(&format!("f32 loss {what}"), &l32, &want);
    Tol::f32_rows(c).check_all(&format!("f32 grad {what}"), &g32, &grad);
}

#[test]
fn agrees_with_f64_reference_on_random_cases() {
    let mut rng = Rng::new(0x5eed);
    for _ in 0..400 {
        check_case(&Case::random(&mut rng));
    }
}

#[test]
fn agrees_with_reference_on_long_rows() {
    let mut rng = Rng::new(7);
    for &(n, c) in &[(3usize, 1000usize), (2, 32000), (1, 200_000)] {
        let case = Case {
            shape: vec![n, c],
            x: rng.logits(n * c, 3.0),
            index: (0..n).map(|_| rng.below(c) as i64).collect(),
            prob: None,
            weight: None,
            ignore_index: -100,
            eps: 0.1,
            reduction: Reduction::Mean,
        };
        check_case(&case);
    }
}

#[test]
fn gradcheck_passes_on_random_cases() {
    let mut rng = Rng::new(99);
    for _ in 0..60 {
        let case = Case::random(&mut rng);
        let mut opts = CrossEntropyOptions::default()
            .label_smoothing(case.eps)
            .reduction(case.reduction);
        if let Some(w) = &case.weight {
            opts = opts.weight(w);
        }
        let report = match &case.prob {
            Some(p) => gradcheck_cross_entropy(&case.x, &case.shape, &p[..], &opts),
            None => gradcheck_cross_entropy(
                &case.x,
                &case.shape,
                &case.index[..],
                &opts.ignore_index(case.ignore_index),
            ),
        }
        .unwrap();
        // Central differences with h = 1e-6 on losses of order 1–10: truncation
        // ~h²·f''' ≈ 1e-12, rounding ~ε·|f|/h ≈ 1e-9.
        assert!(
            report.passes(1e-7, 1e-6)
                || report.max_abs_error.is_nan() && case.reduction == Reduction::Mean,
            "{}: {report:?}",
            case.describe()
        );
    }
}

#[test]
fn loss_is_nonnegative_for_valid_distributions() {
    let mut rng = Rng::new(3);
    for _ in 0..300 {
        let mut case = Case::random(&mut rng);
        case.reduction = Reduction::None;
        let (l, _) = case.run::<f32>();
        assert!(l.iter().all(|v| *v >= 0.0), "{}: {l:?}", case.describe());
        let (l, _) = case.run::<f64>();
        assert!(l.iter().all(|v| *v >= 0.0), "{}: {l:?}", case.describe());
    }
}

#[test]
fn gradient_rows_sum_to_zero() {
    let mut rng = Rng::new(4);
    for _ in 0..300 {
        let case = Case::random(&mut rng);
        let (_, g) = case.run::<f64>();
        for (r, row) in reference::gather_rows(&g, &case.shape).iter().enumerate() {
            let s: f64 = row.iter().sum();
            let scale = row.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert!(
                s.abs() <= 1e-14 * scale * row.len() as f64,
                "{} row {r}: {s}",
                case.describe()
            );
        }
    }
}

#[test]
fn adding_a_constant_to_a_row_changes_nothing() {
    let mut rng = Rng::new(5);
    for _ in 0..200 {
        let case = Case::random(&mut rng);
        let (l0, g0) = case.run::<f64>();
        let shift = [3.5, -100.0, 1e3][rng.below(3)];
        let rows: Vec<Vec<f64>> = reference::gather_rows(&case.x, &case.shape)
            .into_iter()
            .map(|r| r.into_iter().map(|v| v + shift).collect())
            .collect();
        let shifted = Case {
            x: reference::scatter_rows(&rows, &case.shape),
            shape: case.shape.clone(),
            index: case.index.clone(),
            prob: case.prob.clone(),
            weight: case.weight.clone(),
            ..case
        };
        let (l1, g1) = shifted.run::<f64>();
        // The shift is exact in the logits but moves rounding by ε·|shift|.
        let tol = Tol {
            abs: 1e-12 * shift.abs(),
            rel: 1e-12 * shift.abs(),
        };
        tol.check_all(&format!("loss {}", shifted.describe()), &l1, &l0);
        tol.check_all(&format!("grad {}", shifted.describe()), &g1, &g0);
    }
}

#[test]
fn nll_of_log_softmax_equals_cross_entropy() {
    let mut rng = Rng::new(6);
    for _ in 0..100 {
        let mut case = Case::random(&mut rng);
        case.prob = None;
        case.eps = 0.0;
        let w = case.weight.clone();
        let mut nll_opts = NllLossOptions::default()
            .ignore_index(case.ignore_index)
            .reduction(case.reduction);
        if let Some(w) = &w {
            nll_opts = nll_opts.weight(w);
        }
        let logp = log_softmax(&case.x, &case.shape).unwrap();
        let (nll, g_logp) =
            nll_loss_with_grad(&logp, &case.shape, &case.index[..], &nll_opts).unwrap();
        let mut g_x = vec![0.0; g_logp.len()];
        xent::log_softmax_backward_into(&logp, &g_logp, &case.shape, &mut g_x).unwrap();
        let (ce, g_ce) = case.run::<f64>();
        let c = case.shape[if case.shape.len() == 1 { 0 } else { 1 }];
        Tol::f64_rows(c).check_all(&format!("loss {}", case.describe()), nll.values(), &ce);
        Tol::f64_rows(c).check_all(&format!("grad {}", case.describe()), &g_x, &g_ce);
    }
}

#[test]
fn accumulate_adds_to_the_buffer_and_overwrite_replaces_it() {
    let x = [0.2f32, -1.0, 3.0, 0.5, 0.5, 0.1];
    let opts = CrossEntropyOptions::default().ignore_index(1);
    let (_, g) = cross_entropy_with_grad(&x, &[2, 3], &[2i64, 1][..], &opts).unwrap();
    let prior = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut acc = prior;
    let mut loss = [0.0f32];
    let out = GradOut::new(&mut acc).mode(GradMode::Accumulate);
    cross_entropy_into(&x, &[2, 3], &[2i64, 1][..], &opts, &mut loss, Some(out)).unwrap();
    for i in 0..6 {
        assert_eq!(acc[i], prior[i] + g[i], "element {i}");
    }
    // The ignored row keeps its prior in accumulate mode, is zeroed in overwrite mode.
    assert_eq!(&acc[3..], &prior[3..]);
    let mut over = prior;
    cross_entropy_into(
        &x,
        &[2, 3],
        &[2i64, 1][..],
        &opts,
        &mut loss,
        Some(GradOut::new(&mut over)),
    )
    .unwrap();
    assert_eq!(over.to_vec(), g);
    assert_eq!(&over[3..], &[0.0; 3]);
}

#[test]
fn empty_and_all_ignored_batches() {
    let none: [f32; 0] = [];
    let opts = CrossEntropyOptions::default();
    let mean = cross_entropy(&none, &[0, 5], &[0i64; 0][..], &opts).unwrap();
    assert!(mean.item().unwrap().is_nan());
    let sum = cross_entropy(
        &none,
        &[0, 5],
        &[0i64; 0][..],
        &opts.reduction(Reduction::Sum),
    )
    .unwrap();
    assert_eq!(sum.item(), Some(0.0));
    let rows = cross_entropy(
        &none,
        &[0, 5],
        &[0i64; 0][..],
        &opts.reduction(Reduction::None),
    )
    .unwrap();
    assert_eq!((rows.shape(), rows.values().len()), (&[0usize][..], 0));

    let x = [1.0f64, 2.0, 3.0, 4.0];
    let opts = CrossEntropyOptions::<f64>::default();
    let (mean, g) = cross_entropy_with_grad(&x, &[2, 2], &[-100i64, -100][..], &opts).unwrap();
    assert!(mean.item().unwrap().is_nan());
    assert_eq!(g, vec![0.0; 4]);
    let sum = cross_entropy(
        &x,
        &[2, 2],
        &[-100i64, -100][..],
        &opts.reduction(Reduction::Sum),
    )
    .unwrap();
    assert_eq!(sum.item(), Some(0.0));
}

#[test]
fn extreme_logits_stay_finite_and_exact() {
    for &big in &[1e4f64, 1e30] {
        let x = [big, -big, 0.0];
        let l = log_softmax(&x, &[3]).unwrap();
        assert_eq!(l, vec![0.0, -2.0 * big, -big]);
        let p = softmax(&x, &[3]).unwrap();
        assert_eq!(p, vec![1.0, 0.0, 0.0]);
        let xf = [big as f32, -big as f32, 0.0];
        let (loss, g) =
            cross_entropy_with_grad(&xf, &[1, 3], &[2u8][..], &CrossEntropyOptions::default())
                .unwrap();
        assert_eq!(loss.item(), Some(big as f32));
        assert_eq!(g, vec![1.0, 0.0, -1.0]);
    }
    // log(softmax) would underflow to -inf here; log_softmax must not.
    let l = log_softmax(&[0.0f32, -200.0], &[2]).unwrap();
    assert_eq!(l[1], -200.0);
    // Rows with -inf entries: those classes have probability 0.
    let (loss, g) = cross_entropy_with_grad(
        &[f64::NEG_INFINITY, 0.0, 0.0],
        &[3],
        &[1i64][..],
        &CrossEntropyOptions::default(),
    )
    .unwrap();
    assert!((loss.item().unwrap() - 2f64.ln()).abs() < 1e-15);
    assert_eq!(g, vec![0.0, -0.5, 0.5]);
    // An all -inf row, a +inf or a NaN gives NaN for that row, as in PyTorch.
    for row in [
        [f64::NEG_INFINITY; 2],
        [f64::INFINITY, 0.0],
        [f64::NAN, 0.0],
    ] {
        let loss = cross_entropy(&row, &[2], &[0i64][..], &CrossEntropyOptions::default()).unwrap();
        assert!(loss.item().unwrap().is_nan(), "{row:?}");
    }
}

#[test]
fn bad_input_is_a_typed_error_naming_the_value() {
    let x = vec![0.0f32; 2 * 3 * 2];
    let opts = CrossEntropyOptions::default();
    // K-dim: the position is the index in the target's (N, d1) shape.
    let err = cross_entropy(&x, &[2, 3, 2], &[0i64, 1, 2, 3][..], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "target 3 at index [1, 1] is out of bounds for 3 classes"
    );
    let err = cross_entropy(&x[..6], &[2, 3], &[-1i32, 0][..], &opts).unwrap_err();
    assert_eq!(
        err,
        Error::TargetOutOfBounds {
            target: -1,
            index: vec![0],
            classes: 3
        }
    );
    let err = cross_entropy(&x[..6], &[2, 3], &[0u64, u64::MAX][..], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "target {} at index [1] is out of bounds for 3 classes",
            u64::MAX
        )
    );
    let err = cross_entropy(&x[..6], &[2, 3], &[0i64, 1, 2][..], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Expected input batch_size (2) to match target batch_size (3)."
    );
    for eps in [-0.1, 1.5, f64::NAN] {
        let err = cross_entropy(&x[..6], &[2, 3], &[0i64, 1][..], &opts.label_smoothing(eps))
            .unwrap_err();
        assert!(
            matches!(err, Error::LabelSmoothing { value } if value.to_bits() == eps.to_bits()),
            "{err}"
        );
    }
    let err =
        cross_entropy(&x[..6], &[2, 3], &[0i64, 1][..], &opts.label_smoothing(1.5)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "label_smoothing must be between 0.0 and 1.0. Got: 1.5"
    );
    let w = [1.0f32; 2];
    let err = cross_entropy(&x[..6], &[2, 3], &[0i64, 1][..], &opts.weight(&w)).unwrap_err();
    assert_eq!(err, Error::WeightLength { len: 2, classes: 3 });
    let err = cross_entropy(&x[..6], &[2, 3], &x[..6], &opts.ignore_index(0)).unwrap_err();
    assert_eq!(err, Error::IgnoreIndexWithProbabilities { ignore_index: 0 });
    let err = cross_entropy(&x[..6], &[2, 3], &x[..5], &opts).unwrap_err();
    assert!(matches!(err, Error::TargetShape { .. }), "{err}");
    let err = cross_entropy(&x[..6], &[2, 4], &[0i64, 1][..], &opts).unwrap_err();
    assert!(matches!(err, Error::BadShape { .. }), "{err}");
    let err = cross_entropy(&x[..0], &[2, 0], &[0i64, 1][..], &opts).unwrap_err();
    assert!(matches!(err, Error::NoClasses { .. }), "{err}");
    let err = cross_entropy(&x[..1], &[], &[0i64][..], &opts).unwrap_err();
    assert!(matches!(err, Error::BadShape { .. }), "{err}");

    // Nothing is written when the call fails.
    let mut loss = [7.0f32];
    let mut grad = [7.0f32; 6];
    let err = cross_entropy_into(
        &x[..6],
        &[2, 3],
        &[0i64, 9][..],
        &opts,
        &mut loss,
        Some(GradOut::new(&mut grad)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TargetOutOfBounds { target: 9, .. }));
    assert_eq!((loss, grad), ([7.0], [7.0; 6]));
    let err = cross_entropy_into(
        &x[..6],
        &[2, 3],
        &[0i64, 1][..],
        &opts,
        &mut loss,
        Some(GradOut::new(&mut grad[..5])),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::OutputLength {
            name: "grad",
            expected: 6,
            len: 5
        }
    );
    let go = [1.0f32; 3];
    let err = cross_entropy_into(
        &x[..6],
        &[2, 3],
        &[0i64, 1][..],
        &opts.reduction(Reduction::None),
        &mut [0.0; 2],
        Some(GradOut::new(&mut grad).grad_output(&go)),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::GradOutputShape {
            expected: vec![2],
            len: 3
        }
    );
}
