//! Every instruction set against the scalar twin, and the vector `exp`/`tanh`
//! against `f64`. Paths the CPU lacks are reported, and the test that checks
//! dispatch fails if the best path of this CPU did not run.

use super::dispatch::{dispatch, Isa, Job};
use super::fused::{CeConsts, CeJob, Scale};
use super::simd::{Simd, Store32};
use crate::element::{bf16, f16};
use crate::targets::ClassIndices;

/// Applies `exp` or `tanh` to a slice with one instruction set.
struct MapJob<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
    tanh: bool,
}

impl Job for MapJob<'_> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let n = self.x.len() - self.x.len() % S::LANES;
        for i in (0..n).step_by(S::LANES) {
            // SAFETY: i + LANES ≤ len of both slices.
            unsafe {
                let v = s.load(self.x.as_ptr().add(i));
                let r = if self.tanh { s.tanh(v) } else { s.exp(v) };
                s.store(self.out.as_mut_ptr().add(i), r);
            }
        }
    }
}

/// Round-trips a slice through one instruction set's load and store of `E`.
struct RoundTrip<'a, E> {
    x: &'a [f32],
    out: &'a mut [E],
}

impl<E: Store32> Job for RoundTrip<'_, E> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let n = self.x.len() - self.x.len() % S::LANES;
        for i in (0..n).step_by(S::LANES) {
            // SAFETY: i + LANES ≤ len of both slices.
            unsafe {
                let v = s.load(self.x.as_ptr().add(i));
                s.store(self.out.as_mut_ptr().add(i), v);
            }
        }
    }
}

fn ulps(got: f32, want: f64) -> f64 {
    let ulp = (want.abs().max(f32::MIN_POSITIVE as f64)).log2().floor() - 23.0;
    (got as f64 - want).abs() / 2f64.powf(ulp)
}

fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
        .collect()
}

/// The vector `exp` stays within 2 ulp of `f64` for normal results, flushes below,
/// and gets the special values exactly: the bound stated in `simd.rs`.
#[test]
fn vector_exp_error_bound() {
    let mut x = grid(-104.0, 88.7, 400_003);
    x.extend([
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        89.0,
        -87.0,
    ]);
    x.resize(x.len().next_multiple_of(16), 0.0);
    for isa in Isa::available() {
        let mut out = vec![0.0f32; x.len()];
        dispatch(
            isa,
            MapJob {
                x: &x,
                out: &mut out,
                tanh: false,
            },
        );
        let mut worst = 0.0f64;
        for (&xi, &got) in x.iter().zip(&out) {
            let want = (xi as f64).exp();
            if xi.is_nan() {
                assert!(got.is_nan(), "{isa:?}: exp(NaN) = {got}");
            } else if want > f32::MAX as f64 {
                assert_eq!(got, f32::INFINITY, "{isa:?}: exp({xi})");
            } else if want >= f32::MIN_POSITIVE as f64 {
                worst = worst.max(ulps(got, want));
            } else {
                assert!(
                    (got as f64 - want).abs() < f32::MIN_POSITIVE as f64,
                    "{isa:?}: exp({xi}) = {got}"
                );
            }
        }
        assert_eq!(
            out[x.iter().position(|v| *v == f32::NEG_INFINITY).unwrap()],
            0.0
        );
        println!("{}: max exp error {worst:.2} ulp", isa.name());
        assert!(worst <= 2.0, "{isa:?}: exp error {worst} ulp");
    }
}

/// The vector `tanh` (soft-capping) within 4 ulp (absolute 1e-7 near 0).
#[test]
fn vector_tanh_error_bound() {
    let mut x = grid(-20.0, 20.0, 200_001);
    x.extend(grid(-0.7, 0.7, 20_001));
    x.resize(x.len().next_multiple_of(16), 0.0);
    for isa in Isa::available() {
        let mut out = vec![0.0f32; x.len()];
        dispatch(
            isa,
            MapJob {
                x: &x,
                out: &mut out,
                tanh: true,
            },
        );
        let mut worst = 0.0f64;
        for (&xi, &got) in x.iter().zip(&out) {
            let want = (xi as f64).tanh();
            let err = if want.abs() < 1e-3 {
                (got as f64 - want).abs() / 1e-10
            } else {
                ulps(got, want)
            };
            worst = worst.max(err.min(ulps(got, want)));
        }
        println!("{}: max tanh error {worst:.2} ulp", isa.name());
        assert!(worst <= 4.0, "{isa:?}: tanh error {worst} ulp");
    }
}

/// bf16 and f16 loads and stores match `half`'s conversions (round to nearest even,
/// NaN stays NaN, infinities and subnormals kept).
#[test]
fn half_precision_round_trips_match_half() {
    let mut x: Vec<f32> = grid(-70000.0, 70000.0, 20_011);
    x.extend(grid(-1e-6, 1e-6, 1001));
    x.extend([
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
        1e-40,
    ]);
    x.resize(x.len().next_multiple_of(16), 0.5);
    for isa in Isa::available() {
        let mut b = vec![bf16::ZERO; x.len()];
        dispatch(isa, RoundTrip { x: &x, out: &mut b });
        let mut h = vec![f16::ZERO; x.len()];
        dispatch(isa, RoundTrip { x: &x, out: &mut h });
        for (i, &v) in x.iter().enumerate() {
            let (wb, wh) = (bf16::from_f32(v), f16::from_f32(v));
            if v.is_nan() {
                assert!(b[i].is_nan() && h[i].is_nan(), "{isa:?}: NaN");
            } else {
                assert_eq!(b[i].to_bits(), wb.to_bits(), "{isa:?}: bf16 of {v}");
                assert_eq!(h[i].to_bits(), wh.to_bits(), "{isa:?}: f16 of {v}");
            }
        }
    }
}

/// A seeded random problem for the job tests.
struct Problem {
    x: Vec<f32>,
    t: Vec<f32>,
    idx: Vec<i64>,
    w: Vec<f32>,
    go: Vec<f32>,
}

fn problem(outer: usize, c: usize, inner: usize, seed: u64) -> Problem {
    let mut state = seed.wrapping_add(17);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) as f32
    };
    let n = outer * c * inner;
    let rows = outer * inner;
    let mut x: Vec<f32> = (0..n).map(|_| (next() - 0.5) * 8.0).collect();
    if n > 3 {
        x[1] = f32::NEG_INFINITY;
    }
    let t: Vec<f32> = (0..n).map(|_| next() / c as f32).collect();
    let idx = (0..rows)
        .map(|r| {
            if r % 5 == 3 {
                -100
            } else {
                ((next() * c as f32) as i64).min(c as i64 - 1)
            }
        })
        .collect();
    let w = (0..c).map(|_| 0.2 + next()).collect();
    let go = (0..rows).map(|_| next() - 0.3).collect();
    Problem { x, t, idx, w, go }
}

/// Runs one CE job with `isa` and returns (loss sum, z sum, per-row losses, grad).
fn run_ce(
    isa: Isa,
    p: &Problem,
    (outer, c, inner): (usize, usize, usize),
    probs: bool,
    weighted: bool,
    eps: f32,
    z: f32,
    cap: Option<f32>,
    accumulate: bool,
    with_scratch: bool,
) -> (f64, f64, Vec<f32>, Vec<f32>) {
    let mut g: Vec<f32> = (0..p.x.len()).map(|i| (i % 7) as f32 * 0.25).collect();
    let mut losses = vec![0.0f32; outer * inner];
    // Without scratch: the direct K-dim path and the recomputing gradient pass; with
    // it: tiles and the stored exp.
    let mut scratch = if with_scratch {
        vec![0.0f32; super::fused::scratch_len(c, inner)]
    } else {
        Vec::new()
    };
    let job = CeJob::<f32, f32> {
        x: p.x.as_ptr(),
        g: g.as_mut_ptr(),
        accumulate,
        t: if probs {
            p.t.as_ptr()
        } else {
            core::ptr::null()
        },
        idx: (!probs).then(|| (ClassIndices::from(&p.idx[..]), -100)),
        row0: 0,
        outer,
        classes: c,
        inner,
        weight: weighted.then_some(&p.w[..]),
        consts: CeConsts {
            eps,
            classes: c as f32,
            z,
        },
        cap,
        scale: Scale::PerRow(&p.go),
        loss_out: losses.as_mut_ptr(),
        scratch: if scratch.is_empty() {
            core::ptr::null_mut()
        } else {
            scratch.as_mut_ptr()
        },
    };
    let (a, b) = dispatch(isa, job);
    (a.value(), b.value(), losses, g)
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(
        1.0f32,
        |m, v| if v.is_finite() { m.max(v.abs()) } else { m },
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || !w.is_finite() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{what}[{i}]: {g} vs {w}"
            );
        } else {
            // Vector and scalar paths differ by exp's 2 ulp and summation order.
            assert!((g - w).abs() <= 2e-5 * scale, "{what}[{i}]: {g} vs {w}");
        }
    }
}

/// Every instruction set gives the scalar twin's results (within rounding) for every
/// option: probability targets, weights, smoothing, z-loss, soft-capping, K-dim
/// layouts with tails, accumulation, and lengths that are not multiples of a vector.
#[test]
fn every_isa_matches_the_scalar_twin() {
    let shapes = [
        (3, 37, 1),
        (2, 2053, 1),
        (2, 5, 19),
        (1, 3, 16),
        (4, 1, 1),
        (2, 11, 3),
    ];
    for isa in Isa::available() {
        for (si, &shape) in shapes.iter().enumerate() {
            let p = problem(shape.0, shape.1, shape.2, si as u64);
            for probs in [false, true] {
                for weighted in [false, true] {
                    for (eps, z, cap, acc, sc) in [
                        (0.0, 0.0, None, false, false),
                        (0.0, 0.0, None, false, true),
                        (0.1, 0.0, None, true, false),
                        (0.1, 0.0, None, true, true),
                        (0.0, 1e-3, None, false, true),
                        (0.2, 1e-2, Some(5.0), true, true),
                        (0.2, 1e-2, Some(5.0), true, false),
                        (1.0, 0.0, Some(30.0), false, true),
                    ] {
                        let what = format!(
                            "{isa:?} {shape:?} probs {probs} w {weighted} eps {eps} z {z} \
                             cap {cap:?} acc {acc} scratch {sc}"
                        );
                        let want = run_ce(
                            Isa::Scalar,
                            &p,
                            shape,
                            probs,
                            weighted,
                            eps,
                            z,
                            cap,
                            acc,
                            false,
                        );
                        let got = run_ce(isa, &p, shape, probs, weighted, eps, z, cap, acc, sc);
                        close(&format!("{what} losses"), &got.2, &want.2);
                        close(&format!("{what} grad"), &got.3, &want.3);
                        let same_nan = got.1 == want.1 || got.1.is_nan() && want.1.is_nan();
                        assert!(
                            same_nan || (got.1 - want.1).abs() <= 1e-5 * want.1.abs().max(1.0),
                            "{what}: z"
                        );
                    }
                }
            }
        }
    }
}

/// The public API dispatches to the best instruction set of this CPU, and that path
/// really ran; on x86-64 machines with AVX2 the best is never scalar.
#[test]
fn dispatch_runs_the_best_path() {
    let best = Isa::best();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert_ne!(best, Isa::Scalar, "AVX2 present but not selected");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(best, Isa::Avx512);
    }
    let before = best.runs();
    let x = vec![0.5f32; 64 * 100];
    let y = vec![3i64; 64];
    crate::cross_entropy(
        &x,
        &[64, 100],
        &y[..],
        &crate::CrossEntropyOptions::default(),
    )
    .unwrap();
    assert!(best.runs() > before, "{best:?} kernels did not run");
    println!("best instruction set here: {}", best.name());
}
