//! The allocating functions' buffers (`xent::alloc`): large outputs on huge pages,
//! small ones on the plain allocator, and every output element written by the
//! kernels under every option, whatever the buffer held before — so that a fresh
//! buffer needs no zero-fill of its own and no kernel reads what it did not write.

mod common;

use common::Rng;
use std::sync::Mutex;
use xent::alloc::{self, HugeBuf, ThpMode, HUGE_PAGE_BYTES};
use xent::{
    bf16, binary_cross_entropy_into, binary_cross_entropy_with_logits_into, cross_entropy_into,
    cross_entropy_with_grad, f16, js_div_into, kl_div_into, linear_cross_entropy_into,
    linear_cross_entropy_with_grad, log_softmax_into, nll_loss_into, softmax_into,
    BinaryCrossEntropyOptions, BinaryCrossEntropyWithLogitsOptions, CrossEntropyOptions, Element,
    GradOut, Isa, JsDivOptions, KlDivOptions, KlReduction, LinearCrossEntropyOptions,
    LinearGradOut, LinearInputs, NllLossOptions, Reduction, Targets,
};

/// The instruction set is process-wide: tests that force one run one at a time.
static ISA: Mutex<()> = Mutex::new(());

/// An element type with a bit pattern no kernel writes: a signalling NaN with a
/// payload (arithmetic only ever yields quiet NaNs).
trait Poison: Element {
    fn poison() -> Self;
    fn bits(self) -> u64;
    fn of(v: f64) -> Self;
}

impl Poison for f32 {
    fn poison() -> Self {
        f32::from_bits(0x7FA5_A5A5)
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
    fn of(v: f64) -> Self {
        v as f32
    }
}
impl Poison for f64 {
    fn poison() -> Self {
        f64::from_bits(0x7FF4_A5A5_A5A5_A5A5)
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
    fn of(v: f64) -> Self {
        v
    }
}
impl Poison for bf16 {
    fn poison() -> Self {
        bf16::from_bits(0x7FA5)
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
    fn of(v: f64) -> Self {
        bf16::from_f64(v)
    }
}
impl Poison for f16 {
    fn poison() -> Self {
        f16::from_bits(0x7D5A)
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
    fn of(v: f64) -> Self {
        f16::from_f64(v)
    }
}

/// Runs `f` on buffers of lengths `lens` filled first with the poison, then with
/// zeros, and checks that it leaves the same bits in both: every element written,
/// none of them from a value read before it was written.
fn written_fully<T: Poison>(what: &str, lens: &[usize], f: impl Fn(&mut [Vec<T>])) {
    let run = |fill: T| {
        let mut bufs: Vec<Vec<T>> = lens.iter().map(|&n| vec![fill; n]).collect();
        f(&mut bufs);
        bufs
    };
    let (poisoned, zeroed) = (run(T::poison()), run(T::of(0.0)));
    for (b, (p, z)) in poisoned.iter().zip(&zeroed).enumerate() {
        for (i, (a, c)) in p.iter().zip(z).enumerate() {
            assert!(
                a.bits() == c.bits() && a.bits() != T::poison().bits(),
                "{what}: buffer {b} element {i} depends on the buffer's prior contents \
                 ({:#x} after poison, {:#x} after zeros)",
                a.bits(),
                c.bits()
            );
        }
    }
}

fn values<T: Poison>(rng: &mut Rng, n: usize, scale: f64) -> Vec<T> {
    rng.logits(n, scale).into_iter().map(T::of).collect()
}

/// The shapes that reach each path of the cross-entropy driver: short rows (lane
/// tiles, with a ragged tail), rows, unbatched, K-dim with few and with many
/// classes, and rows long enough to be split across threads.
const SHAPES: [&[usize]; 7] = [
    &[37, 10],
    &[9, 1000],
    &[1000],
    &[3, 5, 7],
    &[2, 40, 19],
    &[2, 2000, 3],
    &[1, 140_000],
];

/// One set of options of a case (class-index or probability targets).
struct Opts {
    name: &'static str,
    reduction: Reduction,
    eps: f64,
    weight: bool,
    z: f64,
    cap: Option<f64>,
    /// Every `ignore_every`-th row has the ignored target (0: none).
    ignore_every: usize,
    /// `ignore_index` (−100, or one inside [0, C)).
    ignore_index: i64,
    probs: bool,
    grad_output: bool,
}

const OPTS: [Opts; 9] = {
    const D: Opts = Opts {
        name: "default",
        reduction: Reduction::Mean,
        eps: 0.0,
        weight: false,
        z: 0.0,
        cap: None,
        ignore_every: 0,
        ignore_index: -100,
        probs: false,
        grad_output: false,
    };
    [
        D,
        Opts {
            name: "none, ignored rows",
            reduction: Reduction::None,
            ignore_every: 3,
            ..D
        },
        Opts {
            name: "sum, smoothing, weights, ignored rows",
            reduction: Reduction::Sum,
            eps: 0.1,
            weight: true,
            ignore_every: 2,
            ..D
        },
        Opts {
            name: "mean, z-loss, softcap",
            z: 1e-3,
            cap: Some(5.0),
            ignore_every: 4,
            ..D
        },
        Opts {
            name: "none, per-row grad_output, smoothing",
            reduction: Reduction::None,
            eps: 0.2,
            grad_output: true,
            ignore_every: 5,
            ..D
        },
        Opts {
            name: "all rows ignored",
            ignore_every: 1,
            ..D
        },
        Opts {
            name: "ignore_index 1 inside [0, C)",
            reduction: Reduction::None,
            ignore_index: 1,
            ..D
        },
        Opts {
            name: "probabilities, smoothing, weights",
            probs: true,
            eps: 0.1,
            weight: true,
            ..D
        },
        Opts {
            name: "probabilities, none, softcap",
            probs: true,
            reduction: Reduction::None,
            cap: Some(3.0),
            ..D
        },
    ]
};

/// Cross-entropy into a gradient of the logits' type (`acc = false`) or of the compute
/// type (`acc = true`), under every option and on every path.
fn cross_entropy_writes_everything<T: Poison>(acc: bool)
where
    T::Acc: Poison,
{
    let mut rng = Rng::new(20);
    for shape in SHAPES {
        let len: usize = shape.iter().product();
        let c = if shape.len() == 1 { shape[0] } else { shape[1] };
        let rows = len / c;
        let x: Vec<T> = values(&mut rng, len, 3.0);
        let probs: Vec<T> = (0..len).map(|_| T::of(rng.uniform())).collect();
        let w: Vec<T::Acc> = (0..c).map(|_| T::Acc::of(0.5 + rng.uniform())).collect();
        let go: Vec<T::Acc> = (0..rows).map(|_| T::Acc::of(rng.normal(1.0))).collect();
        for o in &OPTS {
            let y: Vec<i64> = (0..rows)
                .map(|r| match o.ignore_every {
                    k if k > 0 && r % k == 0 => o.ignore_index,
                    _ => (r * 7 + 3) as i64 % c as i64,
                })
                .collect();
            let mut opts = CrossEntropyOptions::default()
                .reduction(o.reduction)
                .label_smoothing(o.eps)
                .z_loss(o.z)
                .ignore_index(if o.probs { -100 } else { o.ignore_index });
            if o.weight {
                opts = opts.weight(&w);
            }
            if let Some(cap) = o.cap {
                opts = opts.softcap(cap);
            }
            let target = || match o.probs {
                true => Targets::Probabilities(&probs[..]),
                false => Targets::from(&y[..]),
            };
            let loss_len = if o.reduction == Reduction::None {
                rows
            } else {
                1
            };
            let what = format!("{} {shape:?} {}, acc grad {acc}", T::NAME, o.name);
            let go = o.grad_output.then_some(&go[..]);
            if acc {
                // The gradient in the compute type: one buffer of Acc for loss and grad.
                written_fully::<T::Acc>(&what, &[loss_len, len], |b| {
                    let (loss, grad) = b.split_at_mut(1);
                    let mut g = GradOut::<T>::new_acc(&mut grad[0]);
                    if let Some(go) = go {
                        g = g.grad_output(go);
                    }
                    cross_entropy_into(&x, shape, target(), &opts, &mut loss[0], Some(g)).unwrap();
                });
            } else {
                written_fully::<T>(&what, &[len], |b| {
                    let mut loss = vec![T::Acc::poison(); loss_len];
                    let mut g = GradOut::new(&mut b[0]);
                    if let Some(go) = go {
                        g = g.grad_output(go);
                    }
                    cross_entropy_into(&x, shape, target(), &opts, &mut loss, Some(g)).unwrap();
                    if o.reduction == Reduction::None {
                        assert!(
                            loss.iter().all(|l| l.bits() != T::Acc::poison().bits()),
                            "{what}"
                        );
                    }
                });
            }
        }
    }
}

/// On every instruction set of this CPU.
fn on_each_isa(f: impl Fn()) {
    let _guard = ISA.lock().unwrap_or_else(|p| p.into_inner());
    for isa in Isa::available() {
        Isa::force(Some(isa)).unwrap();
        f();
    }
    Isa::force(None).unwrap();
}

#[test]
fn cross_entropy_f32_writes_every_element() {
    on_each_isa(|| cross_entropy_writes_everything::<f32>(false));
}

#[test]
fn cross_entropy_bf16_writes_every_element() {
    on_each_isa(|| {
        cross_entropy_writes_everything::<bf16>(false);
        cross_entropy_writes_everything::<bf16>(true);
    });
}

#[test]
fn cross_entropy_f16_and_f64_write_every_element() {
    on_each_isa(|| cross_entropy_writes_everything::<f16>(false));
    cross_entropy_writes_everything::<f64>(false);
}

#[test]
fn the_other_losses_write_every_element() {
    let _guard = ISA.lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = Rng::new(21);
    for shape in [&[37usize, 10][..], &[3, 5, 7], &[9, 1000]] {
        let len: usize = shape.iter().product();
        let c = shape[1];
        let rows = len / c;
        let x: Vec<f32> = values(&mut rng, len, 2.0);
        let p: Vec<f32> = (0..len)
            .map(|_| 0.01 + 0.98 * rng.uniform() as f32)
            .collect();
        let t: Vec<f32> = (0..len).map(|_| rng.uniform() as f32).collect();
        let y: Vec<i64> = (0..rows)
            .map(|r| if r % 3 == 0 { -100 } else { (r % c) as i64 })
            .collect();
        for reduction in [Reduction::Mean, Reduction::None] {
            let what = format!("{shape:?} {reduction:?}");
            let nl = if reduction == Reduction::None {
                rows
            } else {
                1
            };
            let el = if reduction == Reduction::None { len } else { 1 };
            let nll = NllLossOptions::default().reduction(reduction);
            written_fully::<f32>(&format!("nll_loss {what}"), &[nl, len], |b| {
                let (l, g) = b.split_at_mut(1);
                nll_loss_into(
                    &x,
                    shape,
                    &y[..],
                    &nll,
                    &mut l[0],
                    Some(GradOut::new(&mut g[0])),
                )
                .unwrap();
            });
            let bce = BinaryCrossEntropyOptions::default().reduction(reduction);
            written_fully::<f32>(&format!("binary_cross_entropy {what}"), &[el, len], |b| {
                let (l, g) = b.split_at_mut(1);
                binary_cross_entropy_into(
                    &p,
                    shape,
                    &t,
                    &bce,
                    &mut l[0],
                    Some(GradOut::new(&mut g[0])),
                )
                .unwrap();
            });
            let bcel = BinaryCrossEntropyWithLogitsOptions::default().reduction(reduction);
            written_fully::<f32>(&format!("bce_with_logits {what}"), &[el, len], |b| {
                let (l, g) = b.split_at_mut(1);
                binary_cross_entropy_with_logits_into(
                    &x,
                    shape,
                    &t,
                    &bcel,
                    &mut l[0],
                    Some(GradOut::new(&mut g[0])),
                )
                .unwrap();
            });
            let js = JsDivOptions::default().reduction(reduction);
            written_fully::<f32>(&format!("js_div {what}"), &[nl, len, len], |b| {
                let (l, g) = b.split_at_mut(1);
                let (gp, gq) = g.split_at_mut(1);
                js_div_into(
                    &p,
                    shape,
                    &t,
                    &js,
                    &mut l[0],
                    Some(GradOut::new(&mut gp[0])),
                    Some(GradOut::new(&mut gq[0])),
                )
                .unwrap();
            });
        }
        let kl = KlDivOptions::default().reduction(KlReduction::None);
        let logq: Vec<f32> = p.iter().map(|v| v.ln()).collect();
        written_fully::<f32>(&format!("kl_div {shape:?}"), &[len, len, len], |b| {
            let (l, g) = b.split_at_mut(1);
            let (gi, gt) = g.split_at_mut(1);
            kl_div_into(
                &logq,
                shape,
                &t,
                &kl,
                &mut l[0],
                Some(GradOut::new(&mut gi[0])),
                Some(GradOut::new(&mut gt[0])),
            )
            .unwrap();
        });
        written_fully::<f32>(&format!("softmax {shape:?}"), &[len, len], |b| {
            softmax_into(&x, shape, &mut b[0]).unwrap();
            log_softmax_into(&x, shape, &mut b[1]).unwrap();
        });
    }
}

#[test]
fn linear_cross_entropy_writes_every_element() {
    let _guard = ISA.lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = Rng::new(22);
    let (n, d, v) = (70, 9, 300);
    let h: Vec<f32> = values(&mut rng, n * d, 1.0);
    let w: Vec<f32> = values(&mut rng, v * d, 1.0);
    let b: Vec<f32> = values(&mut rng, v, 1.0);
    let y: Vec<i64> = (0..n)
        .map(|r| {
            if r % 4 == 0 {
                -100
            } else {
                (r * 13 % v) as i64
            }
        })
        .collect();
    for reduction in [Reduction::Mean, Reduction::None] {
        // A small scratch: several row blocks.
        let opts = LinearCrossEntropyOptions::default()
            .reduction(reduction)
            .label_smoothing(0.1)
            .scratch_bytes(16 * v * 4);
        let nl = if reduction == Reduction::None { n } else { 1 };
        written_fully::<f32>(
            &format!("linear_cross_entropy {reduction:?}"),
            &[nl, n * d, v * d, v],
            |bufs| {
                let (l, g) = bufs.split_at_mut(1);
                let (dh, g) = g.split_at_mut(1);
                let (dw, db) = g.split_at_mut(1);
                let grad = LinearGradOut::new()
                    .hidden(&mut dh[0])
                    .linear_weight(&mut dw[0])
                    .linear_bias(&mut db[0]);
                let inputs = LinearInputs::new(&h, [n, d], &w, [v, d]).linear_bias(&b);
                linear_cross_entropy_into(inputs, &y[..], &opts, &mut l[0], Some(grad)).unwrap();
            },
        );
    }
}

/// The `VmFlags` of the mapping that holds `addr`, from `/proc/self/smaps`.
fn vm_flags(addr: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = head.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = (a..b).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_string());
            }
        }
    }
    None
}

/// Whether the 2 MiB-aligned region at or after `ptr` (within the buffer) lies in a
/// mapping advised `MADV_HUGEPAGE`; `None` where the kernel has no THP.
fn advised<T>(buf: &[T]) -> Option<bool> {
    if !cfg!(target_os = "linux") || alloc::thp_mode() == ThpMode::Unavailable {
        return None;
    }
    let start = (buf.as_ptr() as usize).next_multiple_of(HUGE_PAGE_BYTES);
    assert!(start + HUGE_PAGE_BYTES <= buf.as_ptr() as usize + std::mem::size_of_val(buf));
    let flags = vm_flags(start).expect("the buffer's mapping is in smaps");
    Some(flags.split(' ').any(|f| f == "hg"))
}

#[test]
fn large_gradients_are_on_huge_pages() {
    let _guard = ISA.lock().unwrap_or_else(|p| p.into_inner());
    // 2048 × 1024 f32 = 8 MiB of gradient.
    let (n, c) = (2048, 1024);
    let x = vec![0.25f32; n * c];
    let y: Vec<u16> = (0..n).map(|r| (r % c) as u16).collect();
    let (loss, grad) =
        cross_entropy_with_grad(&x, &[n, c], &y[..], &CrossEntropyOptions::default()).unwrap();
    assert!((loss.item().unwrap() - (c as f32).ln()).abs() < 1e-4);
    assert!((grad[1] - 1.0 / (c * n) as f32).abs() < 1e-9);
    if let Some(hg) = advised(&grad) {
        assert!(hg, "an 8 MiB gradient is advised MADV_HUGEPAGE");
    }
    // Linear cross-entropy: dW (V × D) and dh (N × D) of 4 MiB each.
    let (n, d, v) = (1024, 1024, 1024);
    let h = vec![0.01f32; n * d];
    let w = vec![0.02f32; v * d];
    let y: Vec<i64> = (0..n as i64).collect();
    let (_, grads) = linear_cross_entropy_with_grad(
        LinearInputs::new(&h, [n, d], &w, [v, d]),
        &y[..],
        &LinearCrossEntropyOptions::default(),
    )
    .unwrap();
    if let (Some(a), Some(b)) = (advised(&grads.hidden), advised(&grads.linear_weight)) {
        assert!(a && b, "dh and dW of 4 MiB are advised MADV_HUGEPAGE");
    }
    // The aligned buffer for a gradient kept across steps.
    let buf = HugeBuf::<bf16>::zeroed("grad", &[n, c]).unwrap();
    if cfg!(target_os = "linux") {
        assert!(buf.huge_pages_advised());
        assert_eq!(buf.as_ptr() as usize % HUGE_PAGE_BYTES, 0);
    }
}

#[test]
fn small_outputs_keep_the_plain_allocator() {
    // 1 MiB: below the huge-page size.
    let buf = HugeBuf::<f32>::zeroed("grad", &[256, 1024]).unwrap();
    assert!(!buf.huge_pages_advised());
    let (_, grad) = cross_entropy_with_grad(
        &[1.0f32, 2.0, 3.0],
        &[1, 3],
        &[2u8][..],
        &CrossEntropyOptions::default(),
    )
    .unwrap();
    assert_eq!(grad.len(), 3);
    assert!((grad[2] - (0.66524096 - 1.0)).abs() < 1e-6);
}

#[test]
fn allocation_failures_are_errors() {
    // Representable in the address space but more than any machine has: the
    // allocator refuses, and that is an error naming the shape, never an abort.
    let e = alloc::zeroed_vec::<f32>("grad", &[1 << 40, 1 << 20]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot allocate grad of shape [1099511627776, 1048576] ("),
        "{e}"
    );
}
