//! The fast paths: determinism across thread counts, bf16/f16, in-place, z-loss and
//! soft-capping (SIMD f32 kernels against the independent portable f64 kernels).

mod common;

use common::{Rng, Tol};
use xent::{
    bf16, cross_entropy_inplace, cross_entropy_into, cross_entropy_with_grad, f16,
    gradcheck_cross_entropy, CrossEntropyOptions, Element, GradOut, Reduction, Targets,
};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// (loss bits, grad bits) of one fused call.
fn fused_bits<T: Element>(
    x: &[T],
    shape: &[usize],
    target: Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
) -> (Vec<u64>, Vec<u64>)
where
    T::Acc: Into<f64>,
{
    let (loss, grad) = cross_entropy_with_grad(x, shape, target, opts).unwrap();
    let lb = loss
        .values()
        .iter()
        .map(|v| (*v).into().to_bits())
        .collect();
    let gb = grad.iter().map(|g| g.to_acc().into().to_bits()).collect();
    (lb, gb)
}

/// Results are bit-for-bit identical on 1, 2, 3 and 8 threads: rows, blocks, the
/// batch reduction, and long rows split across threads.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut rng = Rng::new(11);
    // (shape, long row?) — 300_000 classes take the split-row path.
    let shapes: [&[usize]; 5] = [
        &[4099, 10],
        &[37, 1000],
        &[2, 300_000],
        &[3, 21, 17, 9],
        &[700],
    ];
    for shape in shapes {
        let len: usize = shape.iter().product();
        let c = if shape.len() == 1 { shape[0] } else { shape[1] };
        let rows = len / c;
        let x: Vec<f32> = rng.logits(len, 3.0).into_iter().map(|v| v as f32).collect();
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let y: Vec<i64> = (0..rows).map(|_| rng.below(c) as i64).collect();
        for reduction in [Reduction::Mean, Reduction::None] {
            let opts = CrossEntropyOptions::default()
                .label_smoothing(0.1)
                .z_loss(1e-4)
                .reduction(reduction);
            let base = pool(1).install(|| fused_bits(&x, shape, (&y[..]).into(), &opts));
            let base_b = pool(1).install(|| fused_bits(&xb, shape, (&y[..]).into(), &opts));
            for threads in [2, 3, 8] {
                let got = pool(threads).install(|| fused_bits(&x, shape, (&y[..]).into(), &opts));
                assert!(
                    got == base,
                    "f32 {shape:?} {reduction:?}: {threads} threads differ from 1"
                );
                let got = pool(threads).install(|| fused_bits(&xb, shape, (&y[..]).into(), &opts));
                assert!(
                    got == base_b,
                    "bf16 {shape:?} {reduction:?}: {threads} threads differ from 1"
                );
            }
        }
    }
}

/// bf16 and f16 logits: the loss in f32 equals the f64 loss of the same (rounded)
/// logits to f32 accuracy — not rounded through bf16 as PyTorch does — and the
/// gradient is the f32 gradient rounded once to the logits' type, or f32 on request.
#[test]
fn half_precision_logits_accumulate_in_f32() {
    let mut rng = Rng::new(12);
    for &(n, c) in &[(8usize, 32000usize), (64, 1000), (5, 7)] {
        let x64 = rng.logits(n * c, 4.0);
        let y: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
        let xb: Vec<bf16> = x64.iter().map(|&v| bf16::from_f64(v)).collect();
        let xh: Vec<f16> = x64.iter().map(|&v| f16::from_f64(v)).collect();
        for (name, exact) in [
            ("bf16", xb.iter().map(|v| v.to_f64()).collect::<Vec<_>>()),
            ("f16", xh.iter().map(|v| v.to_f64()).collect::<Vec<_>>()),
        ] {
            let opts64 = CrossEntropyOptions::<f64>::default().label_smoothing(0.05);
            let (want, gwant) = cross_entropy_with_grad(&exact, &[n, c], &y[..], &opts64).unwrap();
            let opts = CrossEntropyOptions::<f32>::default().label_smoothing(0.05);
            let (loss, g32, ghalf): (f32, Vec<f64>, Vec<f64>) = if name == "bf16" {
                let (l, g) = cross_entropy_with_grad(&xb, &[n, c], &y[..], &opts).unwrap();
                let mut g32 = vec![0.0f32; n * c];
                let mut lo = [0.0f32];
                cross_entropy_into(
                    &xb,
                    &[n, c],
                    &y[..],
                    &opts,
                    &mut lo,
                    Some(GradOut::new_acc(&mut g32)),
                )
                .unwrap();
                assert_eq!(lo[0], l.item().unwrap());
                (
                    l.item().unwrap(),
                    g32.iter().map(|&v| v as f64).collect(),
                    g.iter().map(|v| v.to_f64()).collect(),
                )
            } else {
                let (l, g) = cross_entropy_with_grad(&xh, &[n, c], &y[..], &opts).unwrap();
                let mut g32 = vec![0.0f32; n * c];
                let mut lo = [0.0f32];
                cross_entropy_into(
                    &xh,
                    &[n, c],
                    &y[..],
                    &opts,
                    &mut lo,
                    Some(GradOut::new_acc(&mut g32)),
                )
                .unwrap();
                (
                    l.item().unwrap(),
                    g32.iter().map(|&v| v as f64).collect(),
                    g.iter().map(|v| v.to_f64()).collect(),
                )
            };
            let w = want.item().unwrap();
            Tol::f32_rows(c).check(&format!("{name} loss ({n}, {c})"), loss as f64, w, w.abs());
            Tol::f32_rows(c).check_all(&format!("{name} f32 grad ({n}, {c})"), &g32, &gwant);
            // One rounding to the half type: half an ulp, relative 2^-8 (bf16) / 2^-11
            // (f16), or half the smallest subnormal (2^-134 / 2^-25) below the normal range.
            let (rel, abs) = if name == "bf16" {
                (1.0 / 256.0, 2f64.powi(-134))
            } else {
                (1.0 / 2048.0, 2f64.powi(-25))
            };
            for (i, (h, f)) in ghalf.iter().zip(&g32).enumerate() {
                assert!(
                    (h - f).abs() <= rel * f.abs() + abs,
                    "{name} grad[{i}]: {h} vs {f}"
                );
            }
        }
    }
}

/// In-place mode overwrites the logits with exactly the gradient the two-buffer call
/// writes, for f32 and bf16, class indices and probabilities, and K-dim layouts (of
/// few classes, through the lane tiles, and of many, gathered into rows).
#[test]
fn inplace_equals_the_two_buffer_gradient() {
    let mut rng = Rng::new(13);
    for shape in [
        vec![33usize, 1000],
        vec![3, 5, 40],
        vec![2, 5203, 19],
        vec![2, 200_000],
    ] {
        let len: usize = shape.iter().product();
        let c = shape[1];
        let rows = len / c;
        let x: Vec<f32> = rng.logits(len, 2.0).into_iter().map(|v| v as f32).collect();
        let y: Vec<i64> = (0..rows)
            .map(|r| {
                if r % 4 == 1 {
                    -100
                } else {
                    rng.below(c) as i64
                }
            })
            .collect();
        let t: Vec<f32> = (0..len).map(|_| rng.uniform() as f32 / c as f32).collect();
        let opts = CrossEntropyOptions::default()
            .label_smoothing(0.2)
            .softcap(20.0);
        for probs in [false, true] {
            let target = |_: ()| -> Targets<'_, f32> {
                if probs {
                    (&t[..]).into()
                } else {
                    (&y[..]).into()
                }
            };
            let (loss, g) = cross_entropy_with_grad(&x, &shape, target(()), &opts).unwrap();
            let mut buf = x.clone();
            let mut l = [0.0f32];
            cross_entropy_inplace(&mut buf, &shape, target(()), &opts, &mut l, None).unwrap();
            assert_eq!(
                l[0].to_bits(),
                loss.item().unwrap().to_bits(),
                "{shape:?} probs {probs}"
            );
            assert!(
                buf.iter().zip(&g).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{shape:?} probs {probs}"
            );
        }
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let (_, g) = cross_entropy_with_grad(&xb, &shape, &y[..], &opts).unwrap();
        let mut buf = xb.clone();
        cross_entropy_inplace(&mut buf, &shape, &y[..], &opts, &mut [0.0f32], None).unwrap();
        assert!(buf == g, "bf16 {shape:?}");
    }
}

/// K-dim rows of many classes (gathered into contiguous rows for the row kernels)
/// give the gradient bits and row losses of the same rows laid out contiguously, in
/// f32 and bf16, with and without probability targets.
#[test]
fn kdim_rows_of_many_classes_equal_the_same_rows_contiguous() {
    let mut rng = Rng::new(15);
    let (n, c, inner) = (2usize, 5203usize, 19usize);
    let rows = n * inner;
    let x: Vec<f32> = rng
        .logits(n * c * inner, 3.0)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let t: Vec<f32> = (0..n * c * inner)
        .map(|_| rng.uniform() as f32 / c as f32)
        .collect();
    let y: Vec<i64> = (0..rows)
        .map(|r| {
            if r % 5 == 2 {
                -100
            } else {
                rng.below(c) as i64
            }
        })
        .collect();
    // (n, c, inner) → (n·inner, c): row (b, i) is x[b, :, i].
    let to_rows = |v: &[f32]| -> Vec<f32> {
        let mut out = vec![0.0f32; v.len()];
        for b in 0..n {
            for k in 0..c {
                for i in 0..inner {
                    out[(b * inner + i) * c + k] = v[(b * c + k) * inner + i];
                }
            }
        }
        out
    };
    let (xr, tr) = (to_rows(&x), to_rows(&t));
    let opts = CrossEntropyOptions::default()
        .label_smoothing(0.1)
        .reduction(Reduction::None);
    let kdim = [n, c, inner];
    for probs in [false, true] {
        let (tk, trow): (Targets<'_, f32>, Targets<'_, f32>) = if probs {
            ((&t[..]).into(), (&tr[..]).into())
        } else {
            ((&y[..]).into(), (&y[..]).into())
        };
        let (lk, gk) = cross_entropy_with_grad(&x, &kdim, tk, &opts).unwrap();
        let (lr, gr) = cross_entropy_with_grad(&xr, &[rows, c], trow, &opts).unwrap();
        let (lk, lr) = (lk.values(), lr.values());
        assert!(
            lk.iter().zip(lr).all(|(a, b)| a.to_bits() == b.to_bits()),
            "probs {probs}: losses"
        );
        assert!(to_rows(&gk)
            .iter()
            .zip(&gr)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let xbr: Vec<bf16> = to_rows(&xb.iter().map(|v| v.to_f32()).collect::<Vec<_>>())
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let (lk, gk) = cross_entropy_with_grad(&xb, &kdim, &y[..], &opts).unwrap();
    let (lr, gr) = cross_entropy_with_grad(&xbr, &[rows, c], &y[..], &opts).unwrap();
    assert!(lk
        .values()
        .iter()
        .zip(lr.values())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let gk: Vec<f32> = gk.iter().map(|v| v.to_f32()).collect();
    let gr: Vec<f32> = gr.iter().map(|v| v.to_f32()).collect();
    assert!(to_rows(&gk)
        .iter()
        .zip(&gr)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// z-loss and soft-capping: the SIMD f32 kernels agree with the portable f64 kernels
/// (a separate implementation), and the f64 gradient passes gradcheck.
#[test]
fn z_loss_and_softcap_agree_across_implementations() {
    let mut rng = Rng::new(14);
    for shape in [vec![7usize, 50], vec![2, 9, 11], vec![13], vec![1, 140_000]] {
        let len: usize = shape.iter().product();
        let c = if shape.len() == 1 { shape[0] } else { shape[1] };
        let rows = len / c;
        let x = rng.logits(len, 10.0);
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let y: Vec<i64> = (0..rows)
            .map(|r| {
                if r % 3 == 2 {
                    -100
                } else {
                    rng.below(c) as i64
                }
            })
            .collect();
        let w: Vec<f64> = (0..c).map(|_| 0.5 + rng.uniform()).collect();
        let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for (z, cap) in [(1e-3, None), (0.0, Some(3.0)), (2e-2, Some(15.0))] {
                let mut o64 = CrossEntropyOptions::default()
                    .weight(&w)
                    .label_smoothing(0.1)
                    .z_loss(z)
                    .reduction(reduction);
                let mut o32 = CrossEntropyOptions::default()
                    .weight(&wf)
                    .label_smoothing(0.1)
                    .z_loss(z)
                    .reduction(reduction);
                if let Some(cap) = cap {
                    o64 = o64.softcap(cap);
                    o32 = o32.softcap(cap);
                }
                let (l64, g64) = cross_entropy_with_grad(&x, &shape, &y[..], &o64).unwrap();
                let (l32, g32) = cross_entropy_with_grad(&xf, &shape, &y[..], &o32).unwrap();
                let what = format!("{shape:?} {reduction:?} z {z} cap {cap:?}");
                let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
                Tol::f32_rows(c).check_all(
                    &format!("loss {what}"),
                    &wide(l32.values()),
                    l64.values(),
                );
                Tol::f32_rows(c).check_all(&format!("grad {what}"), &wide(&g32), &g64);
                if z > 0.0 {
                    let (a, b) = (l32.z_loss().unwrap() as f64, l64.z_loss().unwrap());
                    Tol::f32_rows(c).check(&format!("z term {what}"), a, b, b.abs());
                    assert!(b > 0.0, "{what}: z term {b}");
                } else {
                    assert_eq!(l32.z_loss(), None);
                }
                if len < 1000 {
                    let r = gradcheck_cross_entropy(&x, &shape, &y[..], &o64).unwrap();
                    assert!(r.passes(1e-7, 1e-6), "{what}: {r:?}");
                }
            }
        }
    }
}

/// The elementwise losses (bce, bce-with-logits, kl_div) run in fixed blocks on
/// rayon's threads: loss, per-element losses and gradients are bit-for-bit the same on
/// 1, 2, 3 and 8 threads, for f32 and f64, over several blocks and a ragged tail.
#[test]
fn elementwise_losses_do_not_depend_on_the_thread_count() {
    use xent::{
        binary_cross_entropy_with_grad, binary_cross_entropy_with_logits_with_grad,
        kl_div_with_grad, BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions,
        KlDivOptions, KlReduction,
    };
    fn bits<T: Into<f64> + Copy>(v: &[T]) -> Vec<u64> {
        v.iter().map(|&x| x.into().to_bits()).collect()
    }
    fn run<T: xent::Float + Into<f64>>(cast: fn(f64) -> T) -> Vec<Vec<u64>> {
        let (rows, cols) = (1013, 97); // 98 261 elements: 6 blocks and a tail
        let n = rows * cols;
        let mut rng = Rng::new(11);
        let p: Vec<T> = (0..n).map(|_| cast(rng.uniform())).collect();
        let y: Vec<T> = (0..n).map(|_| cast(rng.uniform())).collect();
        let x: Vec<T> = (0..n).map(|_| cast(rng.normal(3.0))).collect();
        let w: Vec<T> = (0..cols).map(|_| cast(0.5 + rng.uniform())).collect();
        let logq: Vec<T> = (0..n).map(|_| cast(rng.uniform().max(1e-3).ln())).collect();
        let shape = [rows, cols];
        let mut out = Vec::new();
        for reduction in [Reduction::Mean, Reduction::None] {
            let o = BinaryCrossEntropyOptions::default()
                .weight(&w)
                .reduction(reduction);
            let (l, g) = binary_cross_entropy_with_grad(&p, &shape, &y, &o).unwrap();
            out.extend([bits(l.values()), bits(&g)]);
            let o = BinaryCrossEntropyWithLogitsOptions::default()
                .pos_weight(&w)
                .reduction(reduction);
            let (l, g) = binary_cross_entropy_with_logits_with_grad(&x, &shape, &y, &o).unwrap();
            out.extend([bits(l.values()), bits(&g)]);
        }
        for reduction in [KlReduction::BatchMean, KlReduction::None] {
            for log_target in [false, true] {
                let o = KlDivOptions::default()
                    .reduction(reduction)
                    .log_target(log_target);
                let t = if log_target { &logq } else { &p };
                let (l, gi, gt) = kl_div_with_grad(&logq, &shape, t, &o).unwrap();
                out.extend([bits(l.values()), bits(&gi), bits(&gt)]);
            }
        }
        out
    }
    let one32 = pool(1).install(|| run::<f32>(|v| v as f32));
    let one64 = pool(1).install(|| run::<f64>(|v| v));
    for threads in [2, 3, 8] {
        assert!(
            pool(threads).install(|| run::<f32>(|v| v as f32)) == one32,
            "f32, {threads} threads"
        );
        assert!(
            pool(threads).install(|| run::<f64>(|v| v)) == one64,
            "f64, {threads} threads"
        );
    }
}

/// bf16 logits agree with f64 on the same rounded values, loss and gradient, with
/// and without accumulation: K-dim logits (through the f32 tiles) and a long row
/// split across threads (its exps stored in a scratch row, as the gradient is not
/// an overwritten f32 buffer).
#[test]
fn half_precision_kdim_and_long_rows_match_f64() {
    let mut rng = Rng::new(15);
    for shape in [vec![3usize, 21, 40], vec![1, 200_000]] {
        let len: usize = shape.iter().product();
        let c = shape[1];
        let rows = len / c;
        let x64 = rng.logits(len, 3.0);
        let xb: Vec<bf16> = x64.iter().map(|&v| bf16::from_f64(v)).collect();
        let exact: Vec<f64> = xb.iter().map(|v| v.to_f64()).collect();
        let y: Vec<i64> = (0..rows)
            .map(|r| {
                if r % 9 == 4 {
                    -100
                } else {
                    rng.below(c) as i64
                }
            })
            .collect();
        let o64 = CrossEntropyOptions::<f64>::default().label_smoothing(0.1);
        let (want, gwant) = cross_entropy_with_grad(&exact, &shape, &y[..], &o64).unwrap();
        let o32 = CrossEntropyOptions::<f32>::default().label_smoothing(0.1);
        let mut g32 = vec![0.5f32; len];
        let mut loss = [0.0f32];
        let out = GradOut::new_acc(&mut g32).mode(xent::GradMode::Accumulate);
        cross_entropy_into(&xb, &shape, &y[..], &o32, &mut loss, Some(out)).unwrap();
        let w = want.item().unwrap();
        let tol = Tol::f32_rows(c);
        tol.check(&format!("bf16 {shape:?} loss"), loss[0] as f64, w, w.abs());
        let got: Vec<f64> = g32.iter().map(|&v| v as f64 - 0.5).collect();
        tol.check_all(&format!("bf16 {shape:?} accumulated grad"), &got, &gwant);
        // Accumulating into a bf16 gradient: one rounding of prior + gradient.
        let mut gacc = vec![bf16::from_f32(0.25); len];
        let out = GradOut::new(&mut gacc).mode(xent::GradMode::Accumulate);
        cross_entropy_into(&xb, &shape, &y[..], &o32, &mut loss, Some(out)).unwrap();
        for (i, (h, f)) in gacc.iter().zip(&gwant).enumerate() {
            let want = 0.25 + f;
            assert!(
                (h.to_f64() - want).abs() <= want.abs() / 128.0 + 1e-6,
                "bf16 {shape:?} accumulated bf16 grad[{i}]: {h} vs {want}"
            );
        }
        let (_, gb) = cross_entropy_with_grad(&xb, &shape, &y[..], &o32).unwrap();
        for (i, (h, f)) in gb.iter().zip(&gwant).enumerate() {
            assert!(
                (h.to_f64() - f).abs() <= f.abs() / 128.0 + 1e-6,
                "bf16 {shape:?} grad[{i}]: {h} vs {f}"
            );
        }
    }
}
