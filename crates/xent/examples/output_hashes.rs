//! Hashes of every loss and gradient the cross-entropy family computes, one line
//! per case: the check that a refactor of the library's middle layer changed no
//! bit. Run it on two builds and compare the outputs (`diff`):
//!
//! ```text
//! cargo run --release -p xent --example output_hashes > after.txt
//! ```
//!
//! Each case runs on every instruction set the CPU has (`Isa::force`: scalar,
//! AVX2, AVX-512) and every dtype (f32, f64, bf16, f16), over the layouts `(C,)`,
//! `(N, C)` and K-dim `(N, C, d1)`, short rows, long rows (past the driver's split
//! of one row across threads), gradients large enough to be streamed past the
//! caches, and the options: class weights, label smoothing,
//! `ignore_index`, probability targets, z-loss, soft-capping, each reduction, an
//! upstream gradient, accumulate mode, `f32` gradients of half inputs, in place;
//! then `nll_loss`, softmax and its backward, linear cross-entropy and the class
//! shard protocol (one and two shards), and the binary and divergence losses.
//! A line is `case  hash`, the hash an FNV-1a of the outputs' bits widened to `f64`
//! (exact), so equal lines mean bit-identical outputs.

use xent::{
    bf16, binary_cross_entropy_with_logits_into, cross_entropy_inplace, cross_entropy_into,
    cross_entropy_shard_grad_into, cross_entropy_shard_stats, f16, js_div_into, kl_div_into,
    linear_cross_entropy_into, linear_cross_entropy_shard_grad_into,
    linear_cross_entropy_shard_stats, log_softmax_backward_into, log_softmax_into, nll_loss_into,
    softmax_backward_into, softmax_into, BinaryCrossEntropyWithLogitsOptions, ClassIndices,
    ClassShard, CrossEntropyOptions, Element, Float, GradMode, GradOut, Isa, JsDivOptions,
    KlDivOptions, LinearCrossEntropyOptions, LinearGradOut, LinearInputs, NllLossOptions,
    Reduction, ShardStats,
};

/// FNV-1a over the `f64` bits of the values.
#[derive(Clone, Copy)]
struct Hash(u64);

impl Hash {
    fn new() -> Self {
        Hash(0xcbf2_9ce4_8422_2325)
    }
    fn bits(&mut self, b: u64) {
        for byte in b.to_le_bytes() {
            self.0 ^= byte as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    fn acc<A: Float>(&mut self, v: &[A]) {
        for &x in v {
            self.bits(x.to_f64().to_bits());
        }
    }
    fn elem<T: Element>(&mut self, v: &[T]) {
        for &x in v {
            self.bits(x.to_acc().to_f64().to_bits());
        }
    }
}

/// A reproducible stream of numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn values<T: Element>(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::from_acc(<T::Acc as Float>::from_f64(rng.uniform(lo, hi))))
        .collect()
}

fn acc_values<A: Float>(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<A> {
    (0..n).map(|_| A::from_f64(rng.uniform(lo, hi))).collect()
}

/// Rows normalized to sum 1 over the class dim of an `(N, C, inner)` array.
fn probabilities<T: Element>(rng: &mut Rng, n: usize, c: usize, inner: usize) -> Vec<T> {
    let raw: Vec<f64> = (0..n * c * inner).map(|_| rng.uniform(0.0, 1.0)).collect();
    let mut out = vec![0.0; raw.len()];
    for i in 0..n {
        for k in 0..inner {
            let s: f64 = (0..c).map(|j| raw[(i * c + j) * inner + k]).sum();
            for j in 0..c {
                out[(i * c + j) * inner + k] = raw[(i * c + j) * inner + k] / s;
            }
        }
    }
    out.iter()
        .map(|&v| T::from_acc(<T::Acc as Float>::from_f64(v)))
        .collect()
}

/// The cases' option sets, by name.
fn option_sets() -> Vec<&'static str> {
    vec![
        "plain", "weight", "smooth", "ignore", "zloss", "softcap", "all", "sum", "none",
    ]
}

fn options<'a, A: Float>(name: &str, weight: &'a [A]) -> CrossEntropyOptions<'a, A> {
    let o = CrossEntropyOptions::default();
    match name {
        "plain" => o,
        "weight" => o.weight(weight),
        "smooth" => o.label_smoothing(0.1),
        "ignore" => o.ignore_index(1),
        "zloss" => o.z_loss(1e-4),
        "softcap" => o.softcap(5.0),
        "all" => o
            .weight(weight)
            .label_smoothing(0.05)
            .ignore_index(1)
            .z_loss(1e-3)
            .softcap(8.0)
            .reduction(Reduction::Sum),
        "sum" => o.reduction(Reduction::Sum).label_smoothing(0.2),
        "none" => o.reduction(Reduction::None).weight(weight).softcap(3.0),
        _ => unreachable!("{name}"),
    }
}

/// The loss's length: one per row (the class dim dropped) for `none`, else 1.
fn loss_len(shape: &[usize], reduction: Reduction) -> usize {
    match (reduction, shape.len()) {
        (Reduction::None, len) if len > 1 => shape.iter().product::<usize>() / shape[1],
        _ => 1,
    }
}

fn line(case: &str, h: Hash) {
    println!("{case:<60} {:016x}", h.0);
}

/// Every cross-entropy case of one dtype and shape.
fn cross_entropy_cases<T: Element>(tag: &str, shape: &[usize], rng: &mut Rng) {
    let numel: usize = shape.iter().product();
    let c = if shape.len() == 1 { shape[0] } else { shape[1] };
    let n = if shape.len() == 1 { 1 } else { shape[0] };
    let inner: usize = shape.iter().skip(2).product();
    let rows = n * inner;
    let x: Vec<T> = values(rng, numel, -6.0, 6.0);
    let idx: Vec<i64> = (0..rows).map(|_| rng.below(c) as i64).collect();
    let probs: Vec<T> = probabilities(rng, n, c, inner);
    let weight: Vec<T::Acc> = acc_values(rng, c, 0.25, 2.0);
    let upstream: Vec<T::Acc> = acc_values(rng, rows, -1.0, 1.0);
    for name in option_sets() {
        let opts = options(name, &weight);
        let red = opts.reduction;
        let len = loss_len(shape, red);
        let go: Vec<T::Acc> = if red == Reduction::None {
            upstream.clone()
        } else {
            vec![<T::Acc as Float>::from_f64(0.75)]
        };
        for (tname, probs_target) in [("idx", false), ("prob", true)] {
            if probs_target && name == "ignore" {
                continue;
            }
            let opts = if probs_target && opts.ignore_index >= 0 {
                opts.ignore_index(-100)
            } else {
                opts
            };
            let target = |_: ()| -> xent::Targets<'_, T> {
                if probs_target {
                    xent::Targets::Probabilities(&probs)
                } else {
                    xent::Targets::Indices(ClassIndices::from(&idx[..]))
                }
            };
            // Loss only, then loss and gradient (overwrite), then accumulate with an
            // upstream gradient into a gradient already holding values.
            let mut h = Hash::new();
            let mut loss = vec![<T::Acc as Float>::ZERO; len];
            let z = cross_entropy_into(&x, shape, target(()), &opts, &mut loss, None).unwrap();
            h.acc(&loss);
            h.acc(&z.into_iter().collect::<Vec<_>>());
            let mut g = vec![T::from_acc(<T::Acc as Float>::ZERO); numel];
            cross_entropy_into(
                &x,
                shape,
                target(()),
                &opts,
                &mut loss,
                Some(GradOut::new(&mut g)),
            )
            .unwrap();
            h.acc(&loss);
            h.elem(&g);
            let mut ga: Vec<T> = values(rng, numel, -0.5, 0.5);
            let out = GradOut::new(&mut ga)
                .grad_output(&go)
                .mode(GradMode::Accumulate);
            cross_entropy_into(&x, shape, target(()), &opts, &mut loss, Some(out)).unwrap();
            h.elem(&ga);
            let mut gacc = vec![<T::Acc as Float>::ZERO; numel];
            let out = GradOut::<T>::new_acc(&mut gacc).grad_output(&go);
            cross_entropy_into(&x, shape, target(()), &opts, &mut loss, Some(out)).unwrap();
            h.acc(&gacc);
            let mut xi = x.clone();
            cross_entropy_inplace(&mut xi, shape, target(()), &opts, &mut loss, Some(&go)).unwrap();
            h.acc(&loss);
            h.elem(&xi);
            line(&format!("ce {tag} {shape:?} {name} {tname}"), h);
        }
    }
    // nll_loss over log-probabilities.
    let mut lp = vec![T::from_acc(<T::Acc as Float>::ZERO); numel];
    log_softmax_into(&x, shape, &mut lp).unwrap();
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let opts = NllLossOptions::default()
            .weight(&weight)
            .reduction(red)
            .ignore_index(0);
        let mut loss = vec![<T::Acc as Float>::ZERO; loss_len(shape, red)];
        let mut g = vec![T::from_acc(<T::Acc as Float>::ZERO); numel];
        nll_loss_into(
            &lp,
            shape,
            &idx[..],
            &opts,
            &mut loss,
            Some(GradOut::new(&mut g)),
        )
        .unwrap();
        let mut h = Hash::new();
        h.acc(&loss);
        h.elem(&g);
        line(&format!("nll {tag} {shape:?} {red:?}"), h);
    }
    // softmax, log_softmax and their backward.
    let mut h = Hash::new();
    let mut p = vec![T::from_acc(<T::Acc as Float>::ZERO); numel];
    softmax_into(&x, shape, &mut p).unwrap();
    h.elem(&p);
    h.elem(&lp);
    let gy: Vec<T> = values(rng, numel, -1.0, 1.0);
    let mut gx = vec![T::from_acc(<T::Acc as Float>::ZERO); numel];
    softmax_backward_into(&p, &gy, shape, &mut gx).unwrap();
    h.elem(&gx);
    log_softmax_backward_into(&lp, &gy, shape, &mut gx).unwrap();
    h.elem(&gx);
    line(&format!("softmax {tag} {shape:?}"), h);
}

/// The class shard protocol of `cross_entropy`, in `parts` shards, run in turn as
/// processes would run it.
fn shard_cases<T: Element>(tag: &str, shape: &[usize], rng: &mut Rng) {
    let (n, c) = (shape[0], shape[1]);
    let inner: usize = shape.iter().skip(2).product();
    let rows = n * inner;
    let x: Vec<T> = values(rng, n * c * inner, -6.0, 6.0);
    let idx: Vec<i64> = (0..rows).map(|_| rng.below(c) as i64).collect();
    let probs: Vec<T> = probabilities(rng, n, c, inner);
    let weight: Vec<T::Acc> = acc_values(rng, c, 0.25, 2.0);
    let upstream: Vec<T::Acc> = acc_values(rng, rows, -1.0, 1.0);
    for name in ["plain", "all", "none", "smooth"] {
        for probs_target in [false, true] {
            let opts = options(name, &weight);
            let opts = if probs_target {
                opts.ignore_index(-100)
            } else {
                opts
            };
            for parts in [1usize, 2] {
                let shards: Vec<(ClassShard, usize)> = (0..parts)
                    .map(|i| ClassShard::even(c, parts, i).unwrap())
                    .collect();
                // This shard's columns of an (N, C, inner) array.
                let cols = |a: &[T], sh: ClassShard, w: usize| -> Vec<T> {
                    let mut out = Vec::with_capacity(n * w * inner);
                    for i in 0..n {
                        out.extend_from_slice(
                            &a[(i * c + sh.offset) * inner..(i * c + sh.offset + w) * inner],
                        );
                    }
                    out
                };
                let mut local_shape = shape.to_vec();
                let mut stats: Vec<ShardStats> = Vec::new();
                for &(sh, w) in &shards {
                    local_shape[1] = w;
                    let xs = cols(&x, sh, w);
                    let ps = cols(&probs, sh, w);
                    let s = if probs_target {
                        cross_entropy_shard_stats(
                            &xs,
                            &local_shape,
                            xent::Targets::Probabilities(&ps),
                            &opts,
                            sh,
                        )
                    } else {
                        cross_entropy_shard_stats(&xs, &local_shape, &idx[..], &opts, sh)
                    };
                    stats.push(s.unwrap());
                }
                reduce(&mut stats);
                let mut h = Hash::new();
                let red = opts.reduction;
                let go: Vec<T::Acc> = if red == Reduction::None {
                    upstream.clone()
                } else {
                    vec![<T::Acc as Float>::from_f64(0.5)]
                };
                for (s, &(sh, w)) in stats.iter_mut().zip(&shards) {
                    let counts = s.counts();
                    let mut loss = vec![
                        <T::Acc as Float>::ZERO;
                        if red == Reduction::None { rows } else { 1 }
                    ];
                    let z = s.finish(counts, &mut loss).unwrap();
                    h.acc(&loss);
                    h.acc(&z.into_iter().collect::<Vec<_>>());
                    local_shape[1] = w;
                    let xs = cols(&x, sh, w);
                    let ps = cols(&probs, sh, w);
                    let mut g = vec![T::from_acc(<T::Acc as Float>::ZERO); xs.len()];
                    let out = GradOut::new(&mut g).grad_output(&go);
                    if probs_target {
                        cross_entropy_shard_grad_into(
                            &xs,
                            &local_shape,
                            xent::Targets::Probabilities(&ps),
                            &opts,
                            sh,
                            s,
                            out,
                        )
                    } else {
                        cross_entropy_shard_grad_into(
                            &xs,
                            &local_shape,
                            &idx[..],
                            &opts,
                            sh,
                            s,
                            out,
                        )
                    }
                    .unwrap();
                    h.elem(&g);
                }
                let t = if probs_target { "prob" } else { "idx" };
                line(
                    &format!("shard {tag} {shape:?} {name} {t} parts={parts}"),
                    h,
                );
            }
        }
    }
}

/// The MAX then SUM all-reduces of the shard protocol, over the shards in hand.
fn reduce(stats: &mut [ShardStats]) {
    let rows = stats[0].rows();
    for r in 0..rows {
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
}

/// Linear cross-entropy, whole and in class shards.
fn linear_cases<E: Element>(tag: &str, (n, d, v): (usize, usize, usize), rng: &mut Rng) {
    let h: Vec<E> = values(rng, n * d, -1.0, 1.0);
    let w: Vec<E> = values(rng, v * d, -0.5, 0.5);
    let b: Vec<E> = values(rng, v, -0.5, 0.5);
    let idx: Vec<i64> = (0..n).map(|_| rng.below(v) as i64).collect();
    let weight: Vec<E::Acc> = acc_values(rng, v, 0.25, 2.0);
    let upstream: Vec<E::Acc> = acc_values(rng, n, -1.0, 1.0);
    for name in ["plain", "all", "none", "smooth", "ignore"] {
        for scratch in [xent::DEFAULT_SCRATCH_BYTES, 4096] {
            let ce = options(name, &weight);
            let mut opts = LinearCrossEntropyOptions::default().scratch_bytes(scratch);
            opts.cross_entropy = ce;
            let red = ce.reduction;
            let len = if red == Reduction::None { n } else { 1 };
            let go: Vec<E::Acc> = if red == Reduction::None {
                upstream.clone()
            } else {
                vec![<E::Acc as Float>::from_f64(0.5)]
            };
            let inputs = || LinearInputs::new(&h, [n, d], &w, [v, d]).linear_bias(&b);
            let mut hs = Hash::new();
            let mut loss = vec![<E::Acc as Float>::ZERO; len];
            let z = linear_cross_entropy_into(inputs(), &idx[..], &opts, &mut loss, None).unwrap();
            hs.acc(&loss);
            hs.acc(&z.into_iter().collect::<Vec<_>>());
            let zero = <E::Acc as Float>::ZERO;
            let (mut dh, mut dw, mut db) = (vec![zero; n * d], vec![zero; v * d], vec![zero; v]);
            let out = LinearGradOut::new()
                .hidden(&mut dh)
                .linear_weight(&mut dw)
                .linear_bias(&mut db)
                .grad_output(&go);
            linear_cross_entropy_into(inputs(), &idx[..], &opts, &mut loss, Some(out)).unwrap();
            hs.acc(&loss);
            hs.acc(&dh);
            hs.acc(&dw);
            hs.acc(&db);
            let out = LinearGradOut::new()
                .hidden(&mut dh)
                .linear_weight(&mut dw)
                .mode(GradMode::Accumulate);
            linear_cross_entropy_into(inputs(), &idx[..], &opts, &mut loss, Some(out)).unwrap();
            hs.acc(&dh);
            hs.acc(&dw);
            line(
                &format!("linear {tag} {:?} {name} scratch={scratch}", (n, d, v)),
                hs,
            );

            // Two class shards of W and b.
            let mut hs = Hash::new();
            let shards: Vec<(ClassShard, usize)> =
                (0..2).map(|i| ClassShard::even(v, 2, i).unwrap()).collect();
            let part = |sh: ClassShard, k: usize| {
                (
                    w[sh.offset * d..(sh.offset + k) * d].to_vec(),
                    b[sh.offset..sh.offset + k].to_vec(),
                )
            };
            let mut stats = Vec::new();
            for &(sh, k) in &shards {
                let (ws, bs) = part(sh, k);
                let i = LinearInputs::new(&h, [n, d], &ws, [k, d]).linear_bias(&bs);
                stats.push(
                    linear_cross_entropy_shard_stats(i, ClassIndices::from(&idx[..]), &opts, sh)
                        .unwrap(),
                );
            }
            reduce(&mut stats);
            for (s, &(sh, k)) in stats.iter_mut().zip(&shards) {
                let counts = s.counts();
                s.finish(counts, &mut loss).unwrap();
                hs.acc(&loss);
                let (ws, bs) = part(sh, k);
                let i = LinearInputs::new(&h, [n, d], &ws, [k, d]).linear_bias(&bs);
                let (mut dh, mut dw, mut db) =
                    (vec![zero; n * d], vec![zero; k * d], vec![zero; k]);
                let out = LinearGradOut::new()
                    .hidden(&mut dh)
                    .linear_weight(&mut dw)
                    .linear_bias(&mut db)
                    .grad_output(&go);
                linear_cross_entropy_shard_grad_into(
                    i,
                    ClassIndices::from(&idx[..]),
                    &opts,
                    sh,
                    s,
                    out,
                )
                .unwrap();
                hs.acc(&dh);
                hs.acc(&dw);
                hs.acc(&db);
            }
            line(
                &format!(
                    "linear-shard {tag} {:?} {name} scratch={scratch}",
                    (n, d, v)
                ),
                hs,
            );
        }
    }
}

/// The binary and divergence losses (computed in `f32`/`f64` only).
fn pointwise_cases<A: Float>(tag: &str, rng: &mut Rng) {
    for shape in [vec![37usize], vec![16, 129], vec![300, 70]] {
        let numel: usize = shape.iter().product();
        let x: Vec<A> = acc_values(rng, numel, -8.0, 8.0);
        let t: Vec<A> = acc_values(rng, numel, 0.0, 1.0);
        let mut h = Hash::new();
        let mut loss = vec![A::ZERO; 1];
        let mut g = vec![A::ZERO; numel];
        let opts = BinaryCrossEntropyWithLogitsOptions::default();
        binary_cross_entropy_with_logits_into(
            &x,
            &shape,
            &t,
            &opts,
            &mut loss,
            Some(GradOut::new(&mut g)),
        )
        .unwrap();
        h.acc(&loss);
        h.acc(&g);
        line(&format!("bce-logits {tag} {shape:?}"), h);
        if shape.len() == 2 {
            let c = shape[1];
            let rows = numel / c;
            let mut lp = vec![A::ZERO; numel];
            log_softmax_into(&x, &shape, &mut lp).unwrap();
            let q: Vec<A> = probabilities(rng, rows, c, 1);
            let mut h = Hash::new();
            let (mut g1, mut g2) = (vec![A::ZERO; numel], vec![A::ZERO; numel]);
            kl_div_into(
                &lp,
                &shape,
                &q,
                &KlDivOptions::default(),
                &mut loss,
                Some(GradOut::new(&mut g1)),
                Some(GradOut::new(&mut g2)),
            )
            .unwrap();
            h.acc(&loss);
            h.acc(&g1);
            h.acc(&g2);
            let p: Vec<A> = probabilities(rng, rows, c, 1);
            js_div_into(
                &p,
                &shape,
                &q,
                &JsDivOptions::default(),
                &mut loss,
                Some(GradOut::new(&mut g1)),
                Some(GradOut::new(&mut g2)),
            )
            .unwrap();
            h.acc(&loss);
            h.acc(&g1);
            h.acc(&g2);
            line(&format!("divergence {tag} {shape:?}"), h);
        }
    }
}

fn dtype_cases<T: Element>(tag: &str, isa: Isa, long: bool) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ tag.len() as u64);
    let mut shapes: Vec<Vec<usize>> = vec![
        vec![7],
        vec![1000],
        vec![3, 5],
        vec![64, 3],
        vec![33, 17],
        vec![40, 31],
        vec![129, 100],
        vec![9, 1000],
        vec![4, 5000],
        vec![5, 7, 3],
        vec![4, 3, 37],
        vec![3, 40, 19],
        vec![2, 5, 6, 7],
        vec![2, 200, 33],
    ];
    // Gradients of 16 MiB or more (the library's streaming threshold) in
    // f32/bf16/f16: rows of an odd length (rows start at every alignment) and one
    // long row; f64 has no streaming path. They draw from a generator of their own,
    // so that the cases after them get the same inputs as in versions without them.
    let mut streamed: Vec<Vec<usize>> = Vec::new();
    if long {
        // Past the driver's long-row split (2^17 classes).
        shapes.push(vec![3, (1 << 17) + 77]);
        let size = core::mem::size_of::<T>();
        if size < 8 {
            let big = (16 << 20) / size;
            streamed.push(vec![big / 32_003 + 1, 32_003]);
            streamed.push(vec![1, big + 4099]);
        }
    }
    let isa = format!("{isa:?}");
    let tag = format!("{isa} {tag}");
    for shape in &shapes {
        cross_entropy_cases::<T>(&tag, shape, &mut rng);
    }
    let mut streamed_rng = Rng(0x0016_0000_5eed_0001 ^ tag.len() as u64);
    for shape in &streamed {
        cross_entropy_cases::<T>(&tag, shape, &mut streamed_rng);
    }
    for shape in [
        vec![6usize, 40],
        vec![33, 17],
        vec![4, 5000],
        vec![3, 9, 5],
        vec![2, 300, 20],
    ] {
        shard_cases::<T>(&tag, &shape, &mut rng);
    }
    for dims in [(5usize, 8usize, 13usize), (33, 24, 300), (130, 16, 700)] {
        linear_cases::<T>(&tag, dims, &mut rng);
    }
}

fn main() {
    let long = !std::env::args().any(|a| a == "--short");
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
        if Isa::force(Some(isa)).is_err() {
            eprintln!("{isa:?}: not on this CPU, skipped");
            continue;
        }
        dtype_cases::<f32>("f32", isa, long);
        dtype_cases::<f64>("f64", isa, long);
        dtype_cases::<bf16>("bf16", isa, long);
        dtype_cases::<f16>("f16", isa, long);
        let mut rng = Rng(7);
        pointwise_cases::<f32>(&format!("{isa:?} f32"), &mut rng);
        pointwise_cases::<f64>(&format!("{isa:?} f64"), &mut rng);
    }
    Isa::force(None).unwrap();
}
