//! Every microkernel, through the three products, against an `f64` reference of the
//! same (rounded) operands, on every unit the machine has; odd shapes (1, primes, not
//! multiples of any tile, `k` across the `KC` ranges); the same bits on any thread
//! count.

use super::kernels::{Kernel, Unit, RUNS};
use super::{bf16_bits, round_rows_to_bf16, Gemm, Grad, Packed, Src, View, Workspace};
use half::{bf16, f16};
use std::sync::atomic::Ordering;

/// xorshift: uniform in [-1, 1).
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            2.0 * u - 1.0
        })
        .collect()
}

/// The operand types a kernel of `packed` multiplies exactly: bf16 kernels see
/// bf16-rounded values, f32 kernels the values themselves.
fn as_kernel_sees(x: &[f32], p: Packed) -> Vec<f64> {
    x.iter()
        .map(|&v| match p {
            Packed::F32 => v as f64,
            Packed::Bf16 => f32::from_bits((bf16_bits(v) as u32) << 16) as f64,
        })
        .collect()
}

/// The error bound of an `f32`-accumulated dot product of `k` terms:
/// `γ_k·Σ|a·b|` with `γ_k = k·u/(1 − k·u)`, `u = 2⁻²⁴`, plus slack for the bf16 units'
/// flushing of subnormal results (none occur with these operands) — named here rather
/// than as literals in the asserts.
fn dot_bound(k: usize, abs_sum: f64) -> f64 {
    let u = 2f64.powi(-24);
    let kk = (k + 2) as f64;
    kk * u / (1.0 - kk * u) * abs_sum + 1e-30
}

fn check(name: &str, got: &[f32], want: &[f64], bound: &[f64]) {
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        assert!(
            (g as f64 - w).abs() <= b,
            "{name}: element {i}: got {g}, want {w} (bound {b:e})"
        );
    }
}

/// The kernels to test: every (unit, element type) pair the machine has.
fn kernels() -> Vec<Kernel> {
    let mut ks = Vec::new();
    for u in Unit::ALL {
        for p in [Packed::F32, Packed::Bf16] {
            if let Some(k) = Kernel::get(u, p) {
                ks.push(k);
            }
        }
    }
    ks
}

/// Runs the three products on one shape with `ker` and checks them.
fn products(ker: Kernel, (rows, d, v): (usize, usize, usize), seed: u64) {
    let h = rand_vec(rows * d, seed);
    let w = rand_vec(v * d, seed + 1);
    let bias = rand_vec(v, seed + 2);
    let g = rand_vec(rows * v, seed + 3);
    let (hs, ws_, gs) = (
        as_kernel_sees(&h, ker.packed),
        as_kernel_sees(&w, ker.packed),
        as_kernel_sees(&g, ker.packed),
    );
    let gemm = Gemm {
        logits: ker,
        grad: ker,
    };
    // bf16 kernels take bf16 storage (f32 storage would be rounded while packed; the
    // in-place rows of A are only read as bf16).
    let hb: Vec<bf16> = h.iter().map(|&x| bf16::from_f32(x)).collect();
    let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
    let (hsrc, wsrc) = match ker.packed {
        Packed::F32 => (Src::F32(&h), Src::F32(&w)),
        Packed::Bf16 => (Src::Bf16(&hb), Src::Bf16(&wb)),
    };
    let mut ws = Workspace::default();
    let tag = format!("{ker:?} rows={rows} d={d} v={v}");

    // logits
    let mut x = vec![f32::NAN; rows * v];
    gemm.logits(
        View::new(hsrc, d, 1),
        wsrc,
        Some(&bias),
        (rows, d, v),
        &mut x,
        &mut ws,
    );
    let (mut want, mut bound) = (vec![0.0; rows * v], vec![0.0; rows * v]);
    for r in 0..rows {
        for c in 0..v {
            let (mut s, mut a) = (bias[c] as f64, bias[c].abs() as f64);
            for k in 0..d {
                s += hs[r * d + k] * ws_[c * d + k];
                a += (hs[r * d + k] * ws_[c * d + k]).abs();
            }
            want[r * v + c] = s;
            bound[r * v + c] = dot_bound(d, a);
        }
    }
    check(&format!("logits {tag}"), &x, &want, &bound);

    // dh = G·W, overwrite then accumulate.
    let mut gbuf = g.clone();
    let grad = match ker.packed {
        Packed::F32 => Grad::f32(&gbuf, v),
        Packed::Bf16 => round_rows_to_bf16(&mut gbuf, rows, v),
    };
    for accumulate in [false, true] {
        let init = rand_vec(rows * d, seed + 4);
        let mut dh = if accumulate {
            init.clone()
        } else {
            vec![f32::NAN; rows * d]
        };
        gemm.hidden_grad(grad, wsrc, (rows, d, v), accumulate, &mut dh);
        let (mut want, mut bound) = (vec![0.0; rows * d], vec![0.0; rows * d]);
        for r in 0..rows {
            for j in 0..d {
                let base = if accumulate {
                    init[r * d + j] as f64
                } else {
                    0.0
                };
                let (mut s, mut a) = (base, base.abs());
                for c in 0..v {
                    s += gs[r * v + c] * ws_[c * d + j];
                    a += (gs[r * v + c] * ws_[c * d + j]).abs();
                }
                want[r * d + j] = s;
                bound[r * d + j] = dot_bound(v, a);
            }
        }
        check(
            &format!("dh (accumulate {accumulate}) {tag}"),
            &dh,
            &want,
            &bound,
        );
    }

    // dW += Gᵀ·h
    let init = rand_vec(v * d, seed + 5);
    let mut dw = init.clone();
    gemm.weight_grad_add(grad, View::new(hsrc, d, 1), (rows, d, v), &mut dw, &mut ws);
    let (mut want, mut bound) = (vec![0.0; v * d], vec![0.0; v * d]);
    for c in 0..v {
        for j in 0..d {
            let base = init[c * d + j] as f64;
            let (mut s, mut a) = (base, base.abs());
            for r in 0..rows {
                s += gs[r * v + c] * hs[r * d + j];
                a += (gs[r * v + c] * hs[r * d + j]).abs();
            }
            want[c * d + j] = s;
            bound[c * d + j] = dot_bound(rows, a);
        }
    }
    check(&format!("dW {tag}"), &dw, &want, &bound);
}

/// Shapes: 1, primes, not multiples of MR (6, 32), NR (16, 32, 64) or kstep (2, 32);
/// `d` across KC_F32 = 256, `v` across KC_BF16 = 512 and the 384-class tasks.
const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (1, 7, 3),
    (7, 13, 31),
    (33, 1, 389),
    (5, 97, 2),
    (37, 263, 41),
    (13, 67, 521),
];

#[test]
fn every_kernel_matches_the_reference_on_odd_shapes() {
    for ker in kernels() {
        let before = RUNS[ker.unit.index()].load(Ordering::Relaxed);
        for (i, &shape) in SHAPES.iter().enumerate() {
            products(ker, shape, 10 * i as u64 + 1);
        }
        let after = RUNS[ker.unit.index()].load(Ordering::Relaxed);
        assert!(after > before, "{ker:?} was meant to run and did not");
    }
}

/// The units this machine lacks are named in the test output (and each unit it has
/// is found by the kernel lookup, so that its test above ran).
#[test]
fn every_available_unit_is_tested() {
    #[cfg(target_arch = "x86_64")]
    let has = |u: Unit| match u {
        Unit::Scalar => true,
        Unit::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        Unit::Avx512 => is_x86_feature_detected!("avx512f"),
        Unit::Avx512Bf16 => is_x86_feature_detected!("avx512bf16"),
        Unit::Amx => super::kernels::amx::available(),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let has = |u: Unit| u == Unit::Scalar;
    for u in Unit::ALL {
        let p = u.packed().unwrap_or(Packed::F32);
        match (has(u), Kernel::get(u, p)) {
            (true, Some(_)) => println!("gemm unit {}: tested", u.name()),
            (false, None) => println!("gemm unit {}: SKIPPED (this CPU lacks it)", u.name()),
            (true, None) => panic!("unit {} is available but has no kernel", u.name()),
            (false, Some(_)) => panic!("unit {} has a kernel but is not available", u.name()),
        }
    }
}

/// f16 and bf16 operands (and a bf16 `G`) widened for the `f32` kernels give the
/// `f32` kernel's result on the widened values exactly.
#[test]
fn half_operands_widen_exactly_for_f32_kernels() {
    let ker = Kernel::best(Packed::F32).unwrap();
    let gemm = Gemm {
        logits: ker,
        grad: ker,
    };
    let (rows, d, v) = (9, 45, 70);
    let h = rand_vec(rows * d, 7);
    let w = rand_vec(v * d, 8);
    let hf: Vec<f16> = h.iter().map(|&x| f16::from_f32(x)).collect();
    let wf: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
    let hw: Vec<f32> = hf.iter().map(|x| x.to_f32()).collect();
    let ww: Vec<f32> = wf.iter().map(|x| x.to_f32()).collect();
    let mut ws = Workspace::default();
    let (mut x1, mut x2) = (vec![0.0; rows * v], vec![0.0; rows * v]);
    gemm.logits(
        View::new(Src::F16(&hf), d, 1),
        Src::F16(&wf),
        None,
        (rows, d, v),
        &mut x1,
        &mut ws,
    );
    gemm.logits(
        View::new(Src::F32(&hw), d, 1),
        Src::F32(&ww),
        None,
        (rows, d, v),
        &mut x2,
        &mut ws,
    );
    assert_eq!(x1, x2);
    let g = rand_vec(rows * v, 9);
    let (mut d1, mut d2) = (vec![0.0; rows * d], vec![0.0; rows * d]);
    gemm.hidden_grad(
        Grad::f32(&g, v),
        Src::F16(&wf),
        (rows, d, v),
        false,
        &mut d1,
    );
    gemm.hidden_grad(
        Grad::f32(&g, v),
        Src::F32(&ww),
        (rows, d, v),
        false,
        &mut d2,
    );
    assert_eq!(d1, d2);

    // bf16 operands and a bf16 G on the f32 kernels (a CPU without bf16 units): the
    // same as the widened values in f32.
    let hb: Vec<bf16> = h.iter().map(|&x| bf16::from_f32(x)).collect();
    let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
    let hw: Vec<f32> = hb.iter().map(|x| x.to_f32()).collect();
    let ww: Vec<f32> = wb.iter().map(|x| x.to_f32()).collect();
    let (hb_v, hw_v) = (
        View::new(Src::Bf16(&hb), d, 1),
        View::new(Src::F32(&hw), d, 1),
    );
    let dims = (rows, d, v);
    gemm.logits(hb_v, Src::Bf16(&wb), None, dims, &mut x1, &mut ws);
    gemm.logits(hw_v, Src::F32(&ww), None, dims, &mut x2, &mut ws);
    assert_eq!(x1, x2);
    let mut gb = g.clone();
    let grad = round_rows_to_bf16(&mut gb, rows, v);
    let gw: Vec<f32> = g.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    gemm.hidden_grad(grad, Src::Bf16(&wb), dims, false, &mut d1);
    gemm.hidden_grad(Grad::f32(&gw, v), Src::F32(&ww), dims, false, &mut d2);
    assert_eq!(d1, d2);
    let (mut w1, mut w2) = (vec![0.0; v * d], vec![0.0; v * d]);
    gemm.weight_grad_add(grad, hb_v, dims, &mut w1, &mut ws);
    gemm.weight_grad_add(Grad::f32(&gw, v), hw_v, dims, &mut w2, &mut ws);
    assert_eq!(w1, w2);
}

/// The same bits on 1 and 3 threads, for every kernel.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (rows, d, v) = (19, 300, 1100);
    let h = rand_vec(rows * d, 3);
    let w = rand_vec(v * d, 4);
    let g = rand_vec(rows * v, 5);
    for ker in kernels() {
        let gemm = Gemm {
            logits: ker,
            grad: ker,
        };
        let run = || {
            let mut ws = Workspace::default();
            let mut x = vec![0.0; rows * v];
            gemm.logits(
                View::new(Src::F32(&h), d, 1),
                Src::F32(&w),
                None,
                (rows, d, v),
                &mut x,
                &mut ws,
            );
            let mut dh = vec![0.0; rows * d];
            gemm.hidden_grad(Grad::f32(&g, v), Src::F32(&w), (rows, d, v), false, &mut dh);
            let mut dw = vec![0.0; v * d];
            gemm.weight_grad_add(
                Grad::f32(&g, v),
                View::new(Src::F32(&h), d, 1),
                (rows, d, v),
                &mut dw,
                &mut ws,
            );
            (x, dh, dw)
        };
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let one = pool(1).install(run);
        let three = pool(3).install(run);
        assert!(
            one == three,
            "{ker:?}: results differ between 1 and 3 threads"
        );
    }
}

/// In-place rounding equals `half`'s round-to-nearest-even on every special value,
/// ties included, for row lengths around the 16-wide step.
#[test]
fn rounding_g_in_place_matches_half() {
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        f32::from_bits(0x3f80_8000), // a tie, rounds to even (down)
        f32::from_bits(0x3f81_8000), // a tie, rounds up
        f32::from_bits(0x7f7f_ffff), // rounds to infinity
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(0x7f80_0001), // a signalling NaN stays NaN
        1e-40,                       // subnormal
    ];
    for v in [1usize, 15, 16, 17, 33] {
        let rows = 3;
        let src: Vec<f32> = (0..rows * v)
            .map(|i| specials[i % specials.len()] * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let mut g = src.clone();
        let grad = round_rows_to_bf16(&mut g, rows, v);
        let Src::Bf16(s) = grad.src else {
            panic!("bf16 expected")
        };
        for r in 0..rows {
            for c in 0..v {
                let (got, x) = (s[r * grad.ld + c], src[r * v + c]);
                let want = bf16::from_f32(x);
                if x.is_nan() {
                    assert!(got.is_nan(), "{x} -> {got}");
                } else {
                    assert_eq!(got.to_bits(), want.to_bits(), "{x:e} (row {r}, col {c})");
                }
            }
        }
    }
}
