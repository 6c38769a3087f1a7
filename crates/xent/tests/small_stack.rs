//! Every kernel family runs on 256 KiB thread stacks, on every instruction set this
//! CPU has, in whatever build the tests are compiled in (debug included, where an
//! unoptimized kernel's frame is largest).
//!
//! A test binary of its own: it forces the instruction set with [`Isa::force`],
//! which holds for the whole process.

use xent::{
    bf16, binary_cross_entropy_with_grad, binary_cross_entropy_with_logits_with_grad,
    cross_entropy_with_grad, kl_div_with_grad, log_softmax, softmax, softmax_backward_into,
    BinaryCrossEntropyOptions, CrossEntropyOptions, Element, Isa, KlDivOptions, Reduction,
};

/// The stack of the calling thread and of every pool thread.
const STACK: usize = 256 << 10;

/// Deterministic values in `[-scale, scale)`.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Cross-entropy forward and backward of one shape with the options that select
/// different kernels: plain, label smoothing with weights, probability targets,
/// z-loss with soft-capping; f32 and bf16 logits.
fn cross_entropy_family(shape: &[usize]) {
    let len: usize = shape.iter().product();
    let c = if shape.len() == 1 { shape[0] } else { shape[1] };
    let rows = len / c;
    let x = values(len, 1, 4.0);
    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let y: Vec<i64> = (0..rows).map(|r| ((r * 7) % c) as i64).collect();
    let w: Vec<f32> = (0..c).map(|k| 0.5 + (k % 3) as f32).collect();
    let probs: Vec<f32> = values(len, 2, 1.0).iter().map(|v| v.abs()).collect();
    let options = [
        CrossEntropyOptions::default(),
        CrossEntropyOptions::default()
            .label_smoothing(0.1)
            .weight(&w)
            .reduction(Reduction::None),
        CrossEntropyOptions::default().z_loss(1e-4).softcap(3.0),
    ];
    for opts in &options {
        let (loss, grad) = cross_entropy_with_grad(&x, shape, &y[..], opts).unwrap();
        check(shape, loss.values(), &grad);
        let (loss, grad) = cross_entropy_with_grad(&xb, shape, &y[..], opts).unwrap();
        check(shape, loss.values(), &grad);
    }
    let opts = CrossEntropyOptions::default().label_smoothing(0.05);
    let (loss, grad) = cross_entropy_with_grad(&x, shape, &probs[..], &opts).unwrap();
    check(shape, loss.values(), &grad);
}

/// The results are finite: the call ran to its end and wrote every value.
fn check<T: Element<Acc = f32>>(shape: &[usize], loss: &[f32], grad: &[T]) {
    assert!(
        loss.iter().all(|v| v.is_finite()),
        "{shape:?}: loss not finite"
    );
    assert!(
        grad.iter().all(|g| g.to_acc().is_finite()),
        "{shape:?}: gradient not finite"
    );
}

/// softmax, log_softmax and their backward over rows and K-dim rows.
fn softmax_family(shape: &[usize]) {
    let len: usize = shape.iter().product();
    let x = values(len, 3, 4.0);
    let gy = values(len, 4, 1.0);
    let p = softmax(&x, shape).unwrap();
    let lp = log_softmax(&x, shape).unwrap();
    let mut gx = vec![0.0f32; len];
    softmax_backward_into(&p, &gy, shape, &mut gx).unwrap();
    assert!(p.iter().chain(&lp).chain(&gx).all(|v| v.is_finite()));
}

/// The elementwise losses, one kernel each.
fn pointwise_family() {
    let n = 1000;
    let p: Vec<f32> = values(n, 5, 0.45).iter().map(|v| v + 0.5).collect();
    let y: Vec<f32> = values(n, 6, 0.5).iter().map(|v| v + 0.5).collect();
    let x = values(n, 7, 5.0);
    let (l, g) =
        binary_cross_entropy_with_grad(&p, &[n], &y, &BinaryCrossEntropyOptions::default())
            .unwrap();
    assert!(l.item().unwrap().is_finite() && g.iter().all(|v| v.is_finite()));
    let (l, g) =
        binary_cross_entropy_with_logits_with_grad(&x, &[n], &y, &Default::default()).unwrap();
    assert!(l.item().unwrap().is_finite() && g.iter().all(|v| v.is_finite()));
    let logq: Vec<f32> = p.iter().map(|v| v.ln()).collect();
    for log_target in [false, true] {
        let t: Vec<f32> = if log_target { logq.clone() } else { y.clone() };
        let opts = KlDivOptions::default().log_target(log_target);
        let (l, g, gt) = kl_div_with_grad(&logq, &[n], &t, &opts).unwrap();
        assert!(l.item().unwrap().is_finite());
        assert!(g.iter().chain(&gt).all(|v| v.is_finite()));
    }
}

#[test]
fn every_kernel_family_runs_on_a_256_kib_stack_on_every_isa() {
    for isa in Isa::available() {
        Isa::force(Some(isa)).unwrap();
        let run = move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .stack_size(STACK)
                .build()
                .expect("thread pool");
            pool.install(|| {
                // Contiguous rows (with a stored-exp scratch), short rows through
                // lane tiles, K-dim tiles, K-dim rows of many classes gathered into
                // contiguous ones, and one long row split across threads.
                for shape in [
                    &[64, 1000][..],
                    &[67, 10],
                    &[2, 21, 300],
                    &[1, 6000, 20],
                    &[1, 140_000],
                ] {
                    cross_entropy_family(shape);
                }
                softmax_family(&[16, 300]);
                softmax_family(&[2, 7, 40]);
                pointwise_family();
            });
        };
        std::thread::Builder::new()
            .name(format!("small-stack-{}", isa.name()))
            .stack_size(STACK)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap_or_else(|_| panic!("{} kernels failed on a 256 KiB stack", isa.name()));
    }
    Isa::force(None).unwrap();
}
