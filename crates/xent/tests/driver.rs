//! The one driver (`par::Blocks`) under the losses that are not cross-entropy: the
//! elementwise losses, the divergences, linear cross-entropy's GEMM tasks. Shapes span
//! many blocks; results are bit-identical on any thread count, and each row of a
//! blocked divergence equals the same row computed alone.

mod common;

use common::Rng;
use xent::{
    binary_cross_entropy_with_logits_with_grad, js_div_with_grad, js_div_with_logits_with_grad,
    kl_div_with_grad, BinaryCrossEntropyWithLogitsOptions, JsDivOptions, KlDivOptions, Reduction,
};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Rows of probabilities over dim 1 of `(outer, c, inner)`.
fn probs(rng: &mut Rng, (outer, c, inner): (usize, usize, usize)) -> Vec<f64> {
    let mut p = rng.logits(outer * c * inner, 2.0);
    for n in 0..outer {
        for i in 0..inner {
            let at = |k: usize| n * c * inner + k * inner + i;
            let m = (0..c).map(|k| p[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..c).map(|k| (p[at(k)] - m).exp()).sum();
            for k in 0..c {
                p[at(k)] = (p[at(k)] - m).exp() / s;
            }
        }
    }
    p
}

/// JS over a K-dim shape of many blocks: each row (and its gradient) equals that row
/// computed as a call of its own, and the result does not depend on the thread count.
#[test]
fn js_rows_over_many_blocks() {
    let mut rng = Rng::new(41);
    let (outer, c, inner) = (70, 5, 200);
    let shape = [outer, c, inner];
    let p = probs(&mut rng, (outer, c, inner));
    let q = probs(&mut rng, (outer, c, inner));
    let a = rng.logits(p.len(), 3.0);
    let b = rng.logits(p.len(), 3.0);
    let opts = JsDivOptions::default().reduction(Reduction::None);
    for logits in [false, true] {
        let (x, y) = if logits { (&a, &b) } else { (&p, &q) };
        let run = |threads: usize| {
            pool(threads).install(|| {
                if logits {
                    js_div_with_logits_with_grad(x, &shape, y, &opts).unwrap()
                } else {
                    js_div_with_grad(x, &shape, y, &opts).unwrap()
                }
            })
        };
        let (l1, gx1, gy1) = run(1);
        for threads in [2, 3] {
            let (l, gx, gy) = run(threads);
            assert_eq!(
                bits(l.values()),
                bits(l1.values()),
                "logits {logits}: {threads} threads"
            );
            assert_eq!(bits(&gx), bits(&gx1), "logits {logits}: {threads} threads");
            assert_eq!(bits(&gy), bits(&gy1), "logits {logits}: {threads} threads");
        }
        assert_eq!(l1.shape(), [outer, inner]);
        for (n, i) in [(0, 0), (0, inner - 1), (33, 17), (outer - 1, inner - 1)] {
            let at = |k: usize| n * c * inner + k * inner + i;
            let (xr, yr): (Vec<f64>, Vec<f64>) = (0..c).map(|k| (x[at(k)], y[at(k)])).unzip();
            let (lr, gxr, gyr) = if logits {
                js_div_with_logits_with_grad(&xr, &[c], &yr, &opts).unwrap()
            } else {
                js_div_with_grad(&xr, &[c], &yr, &opts).unwrap()
            };
            assert_eq!(
                lr.values()[0].to_bits(),
                l1.values()[n * inner + i].to_bits()
            );
            for k in 0..c {
                assert_eq!(
                    gxr[k].to_bits(),
                    gx1[at(k)].to_bits(),
                    "row ({n}, {i}) class {k}"
                );
                assert_eq!(
                    gyr[k].to_bits(),
                    gy1[at(k)].to_bits(),
                    "row ({n}, {i}) class {k}"
                );
            }
        }
    }
}

/// Elementwise losses over many blocks: the same bits on any thread count, for the
/// reduced loss and for the elementwise losses.
#[test]
fn elementwise_losses_over_many_blocks() {
    let mut rng = Rng::new(42);
    let n = 100_003;
    let x = rng.logits(n, 3.0);
    let t: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
    let p = probs(&mut rng, (1, n, 1));
    for reduction in [Reduction::Mean, Reduction::None] {
        let bce = BinaryCrossEntropyWithLogitsOptions::default().reduction(reduction);
        let base =
            pool(1).install(|| binary_cross_entropy_with_logits_with_grad(&x, &[n], &t, &bce));
        let (l1, g1) = base.unwrap();
        let kl = KlDivOptions::default();
        let (k1, kg1, kt1) = pool(1)
            .install(|| kl_div_with_grad(&x, &[n], &p, &kl))
            .unwrap();
        for threads in [2, 3] {
            let (l, g) = pool(threads)
                .install(|| binary_cross_entropy_with_logits_with_grad(&x, &[n], &t, &bce))
                .unwrap();
            assert_eq!(bits(l.values()), bits(l1.values()), "bce {reduction:?}");
            assert_eq!(bits(&g), bits(&g1), "bce {reduction:?}");
            let (k, kg, kt) = pool(threads)
                .install(|| kl_div_with_grad(&x, &[n], &p, &kl))
                .unwrap();
            assert_eq!(bits(k.values()), bits(k1.values()), "kl");
            assert_eq!(bits(&kg), bits(&kg1), "kl");
            assert_eq!(bits(&kt), bits(&kt1), "kl");
        }
    }
}
