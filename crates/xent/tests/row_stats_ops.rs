//! Issue 28 on the other entry points: nll's denominator, linear cross-entropy's
//! row outputs, scale and denominator (several row blocks, f32 and bf16), the
//! class-shard protocol with a denominator, and the typed errors of bad values,
//! against the `f64` reference of `common/row_stats.rs`.

mod common;

use common::reference::ksum;
use common::row_stats::*;
use common::{Rng, Tol};
use xent::{
    bf16, cross_entropy_into, cross_entropy_shard_grad_into, cross_entropy_shard_stats,
    cross_entropy_stats_into, linear_cross_entropy_stats_into, nll_loss_with_grad, ClassShard,
    CrossEntropyOptions, CrossEntropySettings, Error, GradOut, LinearCrossEntropyOptions,
    LinearGradOut, LinearInputs, NllLossOptions, Reduction, RowOutputs,
};
// ---------------------------------------------------------------------------------
// nll_loss, linear cross-entropy, shards

#[test]
fn nll_denominator() {
    let logp = [-0.5f64, -1.5, -2.0, -0.25, -3.0, -0.1];
    let w = [2.0, 1.0, 0.5];
    let opts = NllLossOptions::default().weight(&w).denominator(4.0);
    let (loss, grad) = nll_loss_with_grad(&logp, &[2, 3], &[1i64, 0][..], &opts).unwrap();
    assert!((loss.item().unwrap() - (1.0 * 1.5 + 2.0 * 0.25) / 4.0).abs() < 1e-15);
    assert_eq!(grad, [0.0, -0.25, 0.0, -0.5, 0.0, 0.0]);
    let (loss, grad) = nll_loss_with_grad(&logp, &[2, 3], &[-100i64, -100][..], &opts).unwrap();
    assert_eq!((loss.item(), grad), (Some(0.0), vec![0.0; 6]));
    let err = nll_loss_with_grad(
        &logp,
        &[2, 3],
        &[1i64, 0][..],
        &NllLossOptions::default()
            .denominator(4.0)
            .reduction(Reduction::Sum),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "denominator",
                ..
            }
        ),
        "{err}"
    );
}

/// Linear cross-entropy against the reference on `h·Wᵀ + b` formed in f64, with
/// several row blocks (a small scratch budget), in f32 and bf16.
#[test]
fn linear_rows_scale_and_denominator() {
    let (n, d, v) = (37, 8, 29);
    let mut rng = Rng::new(17);
    let h = rng.logits(n * d, 1.0);
    let w = rng.logits(v * d, 0.5);
    let b = rng.logits(v, 0.5);
    let y = targets(&mut rng, n, v, -100);
    let run = |hx: &[f64], wx: &[f64], bx: &[f64], o: &Opts<'_>, half: bool| -> (Out, Out) {
        let logits: Vec<f64> = (0..n * v)
            .map(|i| bx[i % v] + ksum((0..d).map(|k| hx[(i / v) * d + k] * wx[(i % v) * d + k])))
            .collect();
        let want = ref_call(&logits, &[n, v], &y, o);
        let opts = LinearCrossEntropyOptions::from(o.library::<f32>(None)).scratch_bytes(4096);
        let mut loss = vec![0.0f32; if o.reduction == "none" { n } else { 1 }];
        let mut dh = vec![0.0f32; n * d];
        let (mut lse, mut ent, mut arg, mut z) = (
            vec![0.0f32; n],
            vec![0.0f32; n],
            vec![0i64; n],
            vec![0.0f32; n],
        );
        let rows = RowOutputs::new()
            .lse(&mut lse)
            .entropy(&mut ent)
            .argmax(&mut arg)
            .z(&mut z);
        let g = LinearGradOut::new().hidden(&mut dh);
        let zt = if half {
            let cvt = |s: &[f64]| s.iter().map(|&v| bf16::from_f64(v)).collect::<Vec<_>>();
            let (hb, wb, bb) = (cvt(hx), cvt(wx), cvt(bx));
            let inputs = LinearInputs::new(&hb, [n, d], &wb, [v, d]).linear_bias(&bb);
            linear_cross_entropy_stats_into(inputs, &y[..], &opts, &mut loss, Some(g), rows)
        } else {
            let cvt = |s: &[f64]| s.iter().map(|&v| v as f32).collect::<Vec<_>>();
            let (hf, wf, bf) = (cvt(hx), cvt(wx), cvt(bx));
            let inputs = LinearInputs::new(&hf, [n, d], &wf, [v, d]).linear_bias(&bf);
            linear_cross_entropy_stats_into(inputs, &y[..], &opts, &mut loss, Some(g), rows)
        }
        .unwrap();
        // dh = G·W from the reference's logit gradient.
        let dh_want: Vec<f64> = (0..n * d)
            .map(|i| ksum((0..v).map(|c| want.grad[(i / d) * v + c] * wx[c * d + i % d])))
            .collect();
        let got = Out {
            loss: to_f64(&loss),
            z_term: zt.map(f64::from),
            grad: to_f64(&dh),
            lse: to_f64(&lse),
            entropy: to_f64(&ent),
            argmax: arg,
            z: to_f64(&z),
        };
        (
            got,
            Out {
                grad: dh_want,
                ..want
            },
        )
    };
    let t = Tol::f32_rows(v * d);
    let tol = Tol {
        abs: 8.0 * t.abs,
        rel: 8.0 * t.rel,
    };
    for o in [
        Opts {
            scale: 0.7,
            softcap: Some(3.0),
            z_loss: 0.01,
            denominator: Some(50.0),
            ..Opts::default()
        },
        Opts {
            scale: 1.9,
            eps: 0.1,
            reduction: "none",
            ..Opts::default()
        },
        Opts {
            reduction: "sum",
            z_loss: 0.02,
            ..Opts::default()
        },
    ] {
        let (got, want) = run(&h, &w, &b, &o, false);
        compare(&format!("linear f32 {o:?}"), &got, &want, tol, true);
        let r = |s: &[f64]| {
            s.iter()
                .map(|&v| bf16::from_f64(v).to_f64())
                .collect::<Vec<_>>()
        };
        let (got, want) = run(&r(&h), &r(&w), &r(&b), &o, true);
        // bf16 multiplies the logit gradient in bf16 for dh: its own bound.
        compare(
            &format!("linear bf16 {o:?}"),
            &Out {
                grad: Vec::new(),
                ..got.clone()
            },
            &Out {
                grad: Vec::new(),
                ..want.clone()
            },
            tol,
            true,
        );
        let scale = want.grad.iter().fold(1.0f64, |m, g| m.max(g.abs()));
        for (g, w) in got.grad.iter().zip(&want.grad) {
            assert!((g - w).abs() <= scale / 64.0, "bf16 dh {g} vs {w}");
        }
    }
}

/// The shard protocol honours the denominator: two class shards give the loss and
/// gradient of the unsharded call (the logit scale: tests/shard_rows.rs).
#[test]
fn shards_honour_the_denominator() {
    let mut rng = Rng::new(23);
    let x = rng.logits(3 * 6, 2.0);
    let y = [5i64, -100, 1];
    let opts = CrossEntropyOptions::<f64>::default()
        .denominator(5.0)
        .z_loss(0.01);
    let want = ref_call(
        &x,
        &[3, 6],
        &y,
        &Opts {
            denominator: Some(5.0),
            z_loss: 0.01,
            ..Opts::default()
        },
    );
    let cols = |sh: ClassShard| -> Vec<f64> {
        (0..3)
            .flat_map(|r| x[r * 6 + sh.offset..r * 6 + sh.offset + 3].to_vec())
            .collect()
    };
    let shards = [ClassShard::new(0, 6), ClassShard::new(3, 6)];
    let mut stats: Vec<_> = shards
        .iter()
        .map(|&sh| cross_entropy_shard_stats(&cols(sh), &[3, 3], &y[..], &opts, sh).unwrap())
        .collect();
    for r in 0..3 {
        let m = stats
            .iter_mut()
            .map(|s| s.max_mut()[r])
            .fold(f64::NEG_INFINITY, f64::max);
        stats.iter_mut().for_each(|s| s.max_mut()[r] = m);
    }
    let len = stats[0].sums_mut().len();
    let sums: Vec<f64> = (0..len)
        .map(|k| stats.iter_mut().map(|s| s.sums_mut()[k]).sum())
        .collect();
    stats
        .iter_mut()
        .for_each(|s| s.sums_mut().copy_from_slice(&sums));
    let tol = Tol::f64_rows(6);
    for (s, sh) in stats.iter_mut().zip(shards) {
        let mut loss = [0.0];
        // Counts that would be wrong for this batch: the denominator replaces them.
        s.finish([1.0, 1.0], &mut loss).unwrap();
        tol.check("shard loss", loss[0], want.loss[0], 1.0);
        let mut g = vec![0.0; 9];
        cross_entropy_shard_grad_into(
            &cols(sh),
            &[3, 3],
            &y[..],
            &opts,
            sh,
            s,
            GradOut::new(&mut g),
        )
        .unwrap();
        for r in 0..3 {
            for c in 0..3 {
                tol.check(
                    "shard grad",
                    g[r * 3 + c],
                    want.grad[r * 6 + sh.offset + c],
                    1.0,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Errors

#[test]
fn bad_values_are_typed_errors() {
    let x = [0.5f32, 1.0, -1.0, 2.0];
    let y = [1i64, 0];
    let mut loss = [0.0f32];
    let call = |opts: CrossEntropyOptions<'_, f32>| {
        let mut l = vec![
            0.0f32;
            if opts.reduction == Reduction::None {
                2
            } else {
                1
            }
        ];
        cross_entropy_into(&x, &[2, 2], &y[..], &opts, &mut l, None).unwrap_err()
    };
    for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = call(CrossEntropyOptions::default().logit_scale(s));
        assert!(
            matches!(
                &err,
                Error::InvalidArgument {
                    name: "logit_scale",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&s.to_string()), "{err}");
    }
    for d in [0.0, -2.0, f64::NAN, f64::NEG_INFINITY] {
        let err = call(CrossEntropyOptions::default().denominator(d));
        assert!(
            matches!(
                &err,
                Error::InvalidArgument {
                    name: "denominator",
                    ..
                }
            ),
            "{err}"
        );
    }
    for red in [Reduction::Sum, Reduction::None] {
        let err = call(
            CrossEntropyOptions::default()
                .denominator(2.0)
                .reduction(red),
        );
        assert!(
            matches!(
                &err,
                Error::InvalidArgument {
                    name: "denominator",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("with reduction"), "{err}");
    }
    // Row outputs of the wrong length name themselves; nothing is written.
    let opts = CrossEntropyOptions::default();
    let (mut lse, mut ent, mut arg, mut z) = ([7.0f32; 3], [7.0f32; 1], [7i64; 2], [7.0f32; 0]);
    for (rows, name) in [
        (RowOutputs::new().lse(&mut lse[..]), "lse"),
        (RowOutputs::new().entropy(&mut ent[..]), "entropy"),
        (RowOutputs::new().argmax(&mut arg[..1]), "argmax"),
        (RowOutputs::new().z(&mut z[..]), "z"),
    ] {
        let err = cross_entropy_stats_into(&x, &[2, 2], &y[..], &opts, &mut loss, None, rows)
            .unwrap_err();
        assert!(
            matches!(err, Error::OutputLength { name: n, expected: 2, .. } if n == name),
            "{err}"
        );
    }
    assert_eq!((lse, ent, arg, loss), ([7.0; 3], [7.0; 1], [7; 2], [0.0]));
    // Linear: the same checks.
    let (h, w) = ([1.0f32, 0.0], [1.0f32, 2.0]);
    let inputs = LinearInputs::new(&h, [2, 1], &w, [2, 1]);
    let mut short = [0.0f32; 1];
    let err = linear_cross_entropy_stats_into(
        inputs,
        &y[..],
        &LinearCrossEntropyOptions::default(),
        &mut loss,
        None,
        RowOutputs::new().lse(&mut short),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::OutputLength { name: "lse", .. }),
        "{err}"
    );
    let err = linear_cross_entropy_stats_into(
        inputs,
        &y[..],
        &LinearCrossEntropyOptions::default().logit_scale(-1.0),
        &mut loss,
        None,
        RowOutputs::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "logit_scale",
                ..
            }
        ),
        "{err}"
    );
    // Settings carry both into every option set; nll refuses a logit scale.
    let s = CrossEntropySettings::default()
        .logit_scale(2.0)
        .denominator(8.0);
    assert_eq!(s.options::<f32>(None).logit_scale, 2.0);
    assert_eq!(
        s.linear_options::<f32>(None, 1 << 20)
            .cross_entropy
            .denominator,
        Some(8.0)
    );
    let err = s.nll_options::<f32>(None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "logit_scale",
                ..
            }
        ),
        "{err}"
    );
}
