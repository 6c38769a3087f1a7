//! Every instruction set against the scalar twin, and the vector `exp`/`tanh`
//! against `f64`. Paths the CPU lacks are reported, and the test that checks
//! dispatch fails if the best path of this CPU did not run.

use super::dispatch::{dispatch_kernel, Isa};
use super::plan::{CePlan, Options, RowPlan, Scale};
use super::ptr::{ConstPtr, GradPtr, Ptr};
use super::simd::{Kernel, Simd, Store32};
use super::transpose::{copy_convert, copy_out_streaming};
use crate::indices::ClassIndices;
use crate::sizes::SMALL_C;
use half::{bf16, f16};

/// A vector function under test.
#[derive(Clone, Copy)]
enum Func {
    Exp,
    ExpSmall,
    Tanh,
    Ln,
    Ln1p,
}

/// Applies a [`Func`] to a slice with one instruction set.
struct MapJob<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
    func: Func,
}

impl Kernel for MapJob<'_> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let n = self.x.len() - self.x.len() % S::LANES;
        for i in (0..n).step_by(S::LANES) {
            // SAFETY: i + LANES ≤ len of both slices.
            unsafe {
                let v = s.load(self.x.as_ptr().add(i));
                let r = match self.func {
                    Func::Exp => s.exp(v),
                    Func::ExpSmall => s.exp_small(v),
                    Func::Tanh => s.tanh(v),
                    Func::Ln => s.ln(v),
                    Func::Ln1p => s.ln_1p(v),
                };
                s.store(self.out.as_mut_ptr().add(i), r);
            }
        }
    }
}

/// `func` over `x` (padded to whole vectors) on `isa`.
fn map(isa: Isa, func: Func, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    dispatch_kernel(
        isa,
        MapJob {
            x,
            out: &mut out,
            func,
        },
    );
    out
}

/// Round-trips a slice through one instruction set's load and store of `E`.
/// Loads `x` and stores it into `out` as `E`: one vector per store, or with `pairs`
/// two vectors per [`Simd::store2`].
struct RoundTrip<'a, E> {
    x: &'a [f32],
    out: &'a mut [E],
    pairs: bool,
}

impl<E: Store32> Kernel for RoundTrip<'_, E> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let step = if self.pairs { 2 * S::LANES } else { S::LANES };
        let n = self.x.len() - self.x.len() % step;
        for i in (0..n).step_by(step) {
            // SAFETY: i + step ≤ len of both slices.
            unsafe {
                let v = s.load(self.x.as_ptr().add(i));
                if self.pairs {
                    let w = s.load(self.x.as_ptr().add(i + S::LANES));
                    s.store2(self.out.as_mut_ptr().add(i), v, w);
                } else {
                    s.store(self.out.as_mut_ptr().add(i), v);
                }
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
/// and gets the special values exactly: the bound stated in `simd/math.rs`.
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
        let out = map(isa, Func::Exp, &x);
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

/// `exp_small`, the kernels' `exp` of `x − max`, on its domain `x ≤ 88.37`: the same
/// 2-ulp bound as `exp`, 0 at −inf (and in vector code exactly 0 below −87.987
/// down), NaN for NaN.
#[test]
fn vector_exp_small_error_bound() {
    let mut x = grid(-104.0, 88.37, 400_003);
    x.extend([f32::NEG_INFINITY, f32::NAN, 0.0, -0.0, -87.0, -87.5, -1e30]);
    x.resize(x.len().next_multiple_of(16), 0.0);
    for isa in Isa::available() {
        let out = map(isa, Func::ExpSmall, &x);
        let mut worst = 0.0f64;
        for (&xi, &got) in x.iter().zip(&out) {
            let want = (xi as f64).exp();
            if xi.is_nan() {
                assert!(got.is_nan(), "{isa:?}: exp_small(NaN) = {got}");
            } else if want >= f32::MIN_POSITIVE as f64 {
                worst = worst.max(ulps(got, want));
            } else {
                assert!(
                    got >= 0.0 && (got as f64 - want).abs() < f32::MIN_POSITIVE as f64,
                    "{isa:?}: exp_small({xi}) = {got}"
                );
            }
        }
        // The vector form's zero (libm's `expf` has subnormals down to −103.97).
        for (&xi, &got) in x.iter().zip(&out) {
            if isa != Isa::Scalar && xi < -87.987 {
                assert_eq!(got.to_bits(), 0, "{isa:?}: exp_small({xi}) = {got}");
            }
        }
        println!("{}: max exp_small error {worst:.2} ulp", isa.name());
        assert!(worst <= 2.0, "{isa:?}: exp_small error {worst} ulp");
    }
}

/// The vector `tanh` (soft-capping) within 4 ulp (absolute 1e-7 near 0).
#[test]
fn vector_tanh_error_bound() {
    let mut x = grid(-20.0, 20.0, 200_001);
    x.extend(grid(-0.7, 0.7, 20_001));
    x.resize(x.len().next_multiple_of(16), 0.0);
    for isa in Isa::available() {
        let out = map(isa, Func::Tanh, &x);
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

/// Every positive f32 magnitude from the smallest subnormal to the largest finite,
/// log-spaced, plus a dense grid around 1.
fn positive_range() -> Vec<f32> {
    let mut x: Vec<f32> = (0..200_000)
        .map(|i| f32::from_bits(1 + (i as u64 * (f32::MAX.to_bits() as u64 - 1) / 199_999) as u32))
        .collect();
    x.extend(grid(0.5, 2.0, 100_001));
    x
}

/// The vector `ln` stays within 2 ulp of `f64` over every positive float (subnormals
/// included) and gets the special values exactly, also when one lane of a vector is
/// special and the others are not: the bound stated in `simd/math.rs`.
#[test]
fn vector_ln_error_bound() {
    let mut x = positive_range();
    let specials = [
        0.0,
        -0.0,
        f32::INFINITY,
        -1.0,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-40,
    ];
    // Each special value alone among normal lanes, then all together.
    for &sp in &specials {
        x.extend([
            3.0, 0.25, sp, 7.5, 1.0, 2.0, 9.0, 0.1, 5.0, 1e-3, 1e3, 6.0, 0.7, 1.5, 4.0, 8.0,
        ]);
    }
    x.extend(specials);
    x.resize(x.len().next_multiple_of(16), 1.0);
    for isa in Isa::available() {
        let out = map(isa, Func::Ln, &x);
        let mut worst = 0.0f64;
        for (&xi, &got) in x.iter().zip(&out) {
            if xi.is_nan() || xi < 0.0 {
                assert!(got.is_nan(), "{isa:?}: ln({xi}) = {got}");
            } else if xi == 0.0 {
                assert_eq!(got, f32::NEG_INFINITY, "{isa:?}: ln({xi})");
            } else if xi == f32::INFINITY {
                assert_eq!(got, f32::INFINITY, "{isa:?}: ln(inf)");
            } else {
                let want = (xi as f64).ln();
                // ln 1 = 0 exactly; elsewhere relative error in ulps of the result.
                let err = if want == 0.0 {
                    got.abs() as f64
                } else {
                    ulps(got, want)
                };
                worst = worst.max(err);
            }
        }
        println!("{}: max ln error {worst:.2} ulp", isa.name());
        assert!(worst <= 2.0, "{isa:?}: ln error {worst} ulp");
    }
}

/// The vector `ln_1p` within 3 ulp of `f64` on `[−1, f32::MAX]` (tiny arguments,
/// where `1 + a` rounds to 1, included), `−1 → −inf`, `inf → inf`, NaN below −1.
#[test]
fn vector_ln_1p_error_bound() {
    let mut x: Vec<f32> = positive_range()
        .iter()
        .flat_map(|&v| [v, -v.min(1.0)])
        .collect();
    x.extend(grid(-1.0, 1.0, 200_001));
    x.extend([
        -1.0,
        f32::INFINITY,
        -2.0,
        f32::NAN,
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        5.9604645e-8,
    ]);
    x.resize(x.len().next_multiple_of(16), 0.0);
    for isa in Isa::available() {
        let out = map(isa, Func::Ln1p, &x);
        let mut worst = 0.0f64;
        for (&xi, &got) in x.iter().zip(&out) {
            if xi.is_nan() || xi < -1.0 {
                assert!(got.is_nan(), "{isa:?}: ln_1p({xi}) = {got}");
            } else if xi == -1.0 {
                assert_eq!(got, f32::NEG_INFINITY, "{isa:?}: ln_1p(-1)");
            } else if xi == f32::INFINITY {
                assert_eq!(got, f32::INFINITY, "{isa:?}: ln_1p(inf)");
            } else if xi == 0.0 {
                assert_eq!(got, 0.0, "{isa:?}: ln_1p(0)");
            } else {
                worst = worst.max(ulps(got, (xi as f64).ln_1p()));
            }
        }
        println!("{}: max ln_1p error {worst:.2} ulp", isa.name());
        assert!(worst <= 3.0, "{isa:?}: ln_1p error {worst} ulp");
    }
}

/// bf16 and f16 loads and stores, one vector or two packed together per store,
/// match `half`'s conversions (round to nearest even, NaN stays NaN, infinities and
/// subnormals kept).
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
    x.resize(x.len().next_multiple_of(32), 0.5);
    for (isa, pairs) in Isa::available()
        .into_iter()
        .flat_map(|i| [(i, false), (i, true)])
    {
        let mut b = vec![bf16::ZERO; x.len()];
        dispatch_kernel(
            isa,
            RoundTrip {
                x: &x,
                out: &mut b,
                pairs,
            },
        );
        let mut h = vec![f16::ZERO; x.len()];
        dispatch_kernel(
            isa,
            RoundTrip {
                x: &x,
                out: &mut h,
                pairs,
            },
        );
        for (i, &v) in x.iter().enumerate() {
            let (wb, wh) = (bf16::from_f32(v), f16::from_f32(v));
            if v.is_nan() {
                assert!(b[i].is_nan() && h[i].is_nan(), "{isa:?} {pairs}: NaN");
            } else {
                assert_eq!(b[i].to_bits(), wb.to_bits(), "{isa:?} {pairs}: bf16 of {v}");
                assert_eq!(h[i].to_bits(), wh.to_bits(), "{isa:?} {pairs}: f16 of {v}");
            }
        }
    }
}

/// `rows_to_tile` then `tile_to_rows` with one instruction set: the tile, and the
/// rows written back (every element of `out` in the `LANES` rows of `c` classes
/// starting at `row0`, and nothing else).
struct TileTrip<'a, E> {
    x: &'a [E],
    out: &'a mut [E],
    c: usize,
    row0: usize,
    tile: &'a mut Vec<f32>,
}

impl<E: Store32> Kernel for TileTrip<'_, E> {
    /// The lane count.
    type Out = usize;
    fn run<S: Simd>(self, s: S) -> usize {
        self.tile.clear();
        self.tile.resize(S::LANES * self.c, f32::NAN);
        let at = self.row0 * self.c;
        assert!(at + S::LANES * self.c <= self.x.len().min(self.out.len()));
        // SAFETY: LANES rows of c elements from `at` lie in both slices (asserted),
        // and the tile holds LANES·c f32.
        unsafe {
            let (x, out) = (self.x.as_ptr().add(at), self.out.as_mut_ptr().add(at));
            s.rows_to_tile(x, self.c, self.c, self.tile.as_mut_ptr());
            s.tile_to_rows(self.tile.as_ptr(), out, self.c, self.c);
        }
        S::LANES
    }
}

fn tile_trip_is_exact<E: Store32 + PartialEq + core::fmt::Debug>(isa: Isa, x: &[E]) {
    for c in 1..=SMALL_C {
        for row0 in [0, 1, 3] {
            let mut out = vec![E::from_f32(-7.0); x.len()];
            let mut tile = Vec::new();
            let job = TileTrip {
                x,
                out: &mut out,
                c,
                row0,
                tile: &mut tile,
            };
            let lanes = dispatch_kernel(isa, job);
            for l in 0..lanes {
                for k in 0..c {
                    let want = x[(row0 + l) * c + k].to_f32();
                    assert_eq!(tile[k * lanes + l], want, "{isa:?} c {c} tile ({k}, {l})");
                }
            }
            let (lo, hi) = (row0 * c, (row0 + lanes) * c);
            for (i, (&o, &v)) in out.iter().zip(x).enumerate() {
                let want = if (lo..hi).contains(&i) {
                    v
                } else {
                    E::from_f32(-7.0)
                };
                assert_eq!(o, want, "{isa:?} c {c} row0 {row0} element {i}");
            }
        }
    }
}

/// Short rows go through class-major tiles (8 × 8 register transposes on AVX2 and
/// AVX-512): every class of every row lands at its place and comes back unchanged,
/// for every row length up to `SMALL_C` and f32, bf16 and f16 rows.
#[test]
fn short_row_tiles_round_trip() {
    let n = 20 * SMALL_C;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 40.0).collect();
    let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    for isa in Isa::available() {
        tile_trip_is_exact(isa, &x);
        tile_trip_is_exact(isa, &b);
        tile_trip_is_exact(isa, &h);
    }
}

/// Copies an f32 row into `out[at..at + n]` with streaming stores.
struct StreamOut<'a, E> {
    src: &'a [f32],
    out: &'a mut [E],
    at: usize,
    streaming: bool,
}

impl<E: Store32> Kernel for StreamOut<'_, E> {
    type Out = ();
    fn run<S: Simd>(self, s: S) {
        let n = self.src.len();
        assert!(self.at + n <= self.out.len());
        // SAFETY: the source has n elements and the output n from `at` (checked).
        unsafe {
            let dst = self.out.as_mut_ptr().add(self.at);
            if self.streaming {
                copy_out_streaming(s, self.src.as_ptr(), dst, n);
                s.stream_fence();
            } else {
                copy_convert(s, self.src.as_ptr(), dst, n);
            }
        }
    }
}

fn stream_out_is_a_copy<E: Store32 + PartialEq + core::fmt::Debug>(isa: Isa) {
    let src: Vec<f32> = (0..100).map(|i| i as f32 * 0.75 - 30.0).collect();
    for n in [0, 1, 7, 8, 9, 16, 31, 33, 64, 100] {
        for at in 0..17 {
            let mut streamed = vec![E::from_f32(-5.0); 140];
            let mut plain = vec![E::from_f32(-5.0); 140];
            let (src, at) = (&src[..n], at);
            dispatch_kernel(
                isa,
                StreamOut {
                    src,
                    out: &mut streamed,
                    at,
                    streaming: true,
                },
            );
            dispatch_kernel(
                isa,
                StreamOut {
                    src,
                    out: &mut plain,
                    at,
                    streaming: false,
                },
            );
            assert_eq!(streamed, plain, "{isa:?} n {n} at {at}");
            for (i, v) in streamed.iter().enumerate() {
                if !(at..at + n).contains(&i) {
                    assert_eq!(*v, E::from_f32(-5.0), "{isa:?} n {n} at {at}: element {i}");
                }
            }
        }
    }
}

/// Streaming stores (K-dim tiles going back to a large gradient) write what plain
/// stores write, at every alignment of the destination, and nothing outside it.
#[test]
fn streaming_copy_out_matches_plain_stores() {
    for isa in Isa::available() {
        stream_out_is_a_copy::<f32>(isa);
        stream_out_is_a_copy::<bf16>(isa);
        stream_out_is_a_copy::<f16>(isa);
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
    (scale, cap): (f32, Option<f32>),
    accumulate: bool,
    with_scratch: bool,
) -> (f64, f64, Vec<f32>, Vec<f32>) {
    let mut g: Vec<f32> = (0..p.x.len()).map(|i| (i % 7) as f32 * 0.25).collect();
    let mut losses = vec![0.0f32; outer * inner];
    // Without scratch: the direct K-dim path and the recomputing gradient pass; with
    // it: tiles (or K-dim rows gathered into contiguous ones) and the stored exp.
    let mut scratch = if with_scratch {
        vec![0.0f32; crate::sizes::scratch_len(c, inner)]
    } else {
        Vec::new()
    };
    let opts = Options::new(eps as f64, z as f64, cap.map(f64::from), c).scaled(scale as f64);
    let idx = (!probs).then(|| (ClassIndices::from(&p.idx[..]), -100));
    let mut plan = CePlan::<f32> {
        x: ConstPtr::new(&p.x),
        probs: probs.then(|| ConstPtr::new(&p.t)),
        grad: GradPtr::None,
        outer,
        inner,
        offset: 0,
        rows: RowPlan::new(c, opts, idx, weighted.then_some(&p.w[..]), 0.0),
    };
    plan.rows.accumulate = accumulate;
    plan.rows.scale = Scale::PerRow(&p.go);
    plan.rows.loss_out = Some(Ptr::new(&mut losses));
    let scratch = (!scratch.is_empty()).then(|| Ptr::new(&mut scratch[..]));
    // With the tiles, wide ones go back with streaming stores.
    let job = plan.block((0, outer), Some(Ptr::new(&mut g)), scratch, with_scratch);
    let (a, b) = super::fused::run_ce_block(isa, job);
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
        // K-dim rows over several tiles (816 lanes for 200 classes, a padded class
        // stride) and a last, partial tile of 44 lanes (five units, four one-lane
        // rows).
        (1, 200, 2 * 816 + 44),
        // K-dim rows of many classes, gathered into contiguous rows: a whole group of
        // 16 lanes and a partial one of 3, and 5203 classes, whose last transpose
        // window overlaps the one before.
        (2, 5203, 19),
        // Tiles wide enough for streaming stores, at offsets of every alignment,
        // over one tile and over two.
        (2, 7, 301),
        (1, 3, 2500),
        // Short rows through the transposed tiles: whole units and tails, rows of
        // fewer than 8 classes, exactly 8, one window and a half, and SMALL_C.
        (19, 10, 1),
        (9, 5, 1),
        (17, 8, 1),
        (16, 13, 1),
        (33, 32, 1),
    ];
    // The K-dim shapes above take the tiles (three of them with 816-lane tiles) and
    // the gathered rows.
    assert_eq!(crate::sizes::tile_lanes(200), 816);
    assert!(!crate::sizes::kdim_as_rows(200) && crate::sizes::kdim_as_rows(5203));
    assert!(!crate::sizes::kdim_as_rows(5120) && crate::sizes::kdim_as_rows(5121));
    // Rows the row kernels' stored-exp pass cannot hold stay on the tiles.
    assert!(crate::sizes::kdim_as_rows(crate::sizes::LONG_ROW - 1));
    assert!(!crate::sizes::kdim_as_rows(crate::sizes::LONG_ROW));
    for isa in Isa::available() {
        for (si, &shape) in shapes.iter().enumerate() {
            let p = problem(shape.0, shape.1, shape.2, si as u64);
            for probs in [false, true] {
                for weighted in [false, true] {
                    for (eps, z, cap, acc, sc) in [
                        (0.0, 0.0, (1.0, None), false, false),
                        (0.0, 0.0, (1.0, None), false, true),
                        (0.1, 0.0, (1.0, None), true, false),
                        (0.1, 0.0, (1.0, None), true, true),
                        (0.0, 1e-3, (1.0, None), false, true),
                        (0.2, 1e-2, (1.0, Some(5.0)), true, true),
                        (0.2, 1e-2, (1.0, Some(5.0)), true, false),
                        (1.0, 0.0, (1.0, Some(30.0)), false, true),
                        // The logit scale, alone and before a soft-cap.
                        (0.0, 1e-3, (1.7, None), false, true),
                        (0.1, 0.0, (0.6, None), true, false),
                        (0.2, 1e-2, (2.5, Some(5.0)), true, true),
                    ] {
                        let what = format!(
                            "{isa:?} {shape:?} probs {probs} w {weighted} eps {eps} z {z} \
                             cap {cap:?} acc {acc} scratch {sc}"
                        );
                        // The twin runs without scratch (the direct lane kernels),
                        // except for K-dim rows gathered into contiguous ones: their
                        // twin gathers too (the lane kernels sum thousands of classes
                        // in another order; `kdim_rows_of_many_classes_equal_the_same_
                        // rows_contiguous` in tests/kernels.rs checks them bit for
                        // bit against the row kernels).
                        let twin_sc = sc && shape.2 > 1 && crate::sizes::kdim_as_rows(shape.1);
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
                            twin_sc,
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

/// Held by a test while it forces an instruction set (process-wide) and by tests that
/// check which one ran.
pub(crate) static FORCING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The public API dispatches to the best instruction set of this CPU, and that path
/// really ran; on x86-64 machines with AVX2 the best is never scalar.
#[test]
fn dispatch_runs_the_best_path() {
    // No other test of this binary forces an instruction set meanwhile.
    let _forcing = FORCING.lock().unwrap_or_else(|e| e.into_inner());
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

/// The elementwise-loss kernels on every instruction set against the portable `f64`
/// kernel on the same inputs: losses, both gradients (overwritten and accumulated,
/// with per-element and uniform scales), the block sum, and tails of every length.
#[test]
fn pointwise_kernels_match_f64() {
    use super::pointwise::{portable, vector, PointCall, PointGrad, PointOp, Src};
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let ops = [
        PointOp::Bce,
        PointOp::BceLogits,
        PointOp::Kl { log_target: false },
        PointOp::Kl { log_target: true },
    ];
    for n in [1, 7, 8, 15, 16, 17, 37, 1000] {
        for op in ops {
            let (a, b): (Vec<f32>, Vec<f32>) = (0..n)
                .map(|i| match op {
                    // Probabilities with exact 0 and 1 among them.
                    PointOp::Bce => (
                        [0.0, 1.0, uniform()][i % 3],
                        [1.0, 0.0, uniform()][(i / 3) % 3],
                    ),
                    PointOp::BceLogits => (40.0 * uniform() - 20.0, uniform()),
                    PointOp::Kl { log_target } => {
                        let t = [0.0, uniform()][i % 2];
                        (
                            -5.0 * uniform(),
                            if log_target { -5.0 * uniform() } else { t },
                        )
                    }
                })
                .unzip();
            let w: Vec<f32> = (0..n).map(|_| 2.0 * uniform()).collect();
            let go: Vec<f32> = (0..n).map(|_| uniform() - 0.5).collect();
            let start: Vec<f32> = (0..n).map(|_| uniform()).collect();
            let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let (a64, b64, w64, go64, start64) =
                (wide(&a), wide(&b), wide(&w), wide(&go), wide(&start));
            // Reference: loss, grad a (per-element scale, accumulated), grad b (0.25).
            let mut loss64 = vec![0.0f64; n];
            let mut ga64 = start64.clone();
            let mut gb64 = vec![0.0f64; n];
            let sum64 = portable(PointCall {
                op,
                a: &a64,
                b: &b64,
                w: (op == PointOp::Bce).then_some(Src::Each(&w64)),
                pw: (op == PointOp::BceLogits).then_some(Src::Each(&w64)),
                loss: Some(&mut loss64),
                ga: Some(PointGrad {
                    buf: &mut ga64,
                    scale: Src::Each(&go64),
                    accumulate: true,
                }),
                gb: Some(PointGrad {
                    buf: &mut gb64,
                    scale: Src::One(0.25),
                    accumulate: false,
                }),
            })
            .sum
            .value();
            for isa in Isa::available() {
                let _forcing = FORCING.lock().unwrap_or_else(|e| e.into_inner());
                Isa::force(Some(isa)).unwrap();
                let mut loss = vec![0.0f32; n];
                let mut ga = start.clone();
                let mut gb = vec![0.0f32; n];
                let sum = vector(PointCall {
                    op,
                    a: &a,
                    b: &b,
                    w: (op == PointOp::Bce).then_some(Src::Each(&w)),
                    pw: (op == PointOp::BceLogits).then_some(Src::Each(&w)),
                    loss: Some(&mut loss),
                    ga: Some(PointGrad {
                        buf: &mut ga,
                        scale: Src::Each(&go),
                        accumulate: true,
                    }),
                    gb: Some(PointGrad {
                        buf: &mut gb,
                        scale: Src::One(0.25),
                        accumulate: false,
                    }),
                })
                .sum
                .value();
                Isa::force(None).unwrap();
                let close = |got: f32, want: f64| {
                    got as f64 == want
                        || (got as f64 - want).abs() <= 2e-6 * want.abs().max(1.0)
                        || (got.is_nan() && want.is_nan())
                };
                for i in 0..n {
                    for (what, got, want) in [
                        ("loss", loss[i], loss64[i]),
                        ("grad a", ga[i], ga64[i]),
                        ("grad b", gb[i], gb64[i]),
                    ] {
                        assert!(
                            close(got, want),
                            "{isa:?} {op:?} n={n} {what}[{i}] = {got}, f64 {want} (a {}, b {})",
                            a[i],
                            b[i]
                        );
                    }
                }
                assert!(
                    (sum - sum64).abs() <= 2e-6 * sum64.abs().max(1.0) * (n as f64).sqrt(),
                    "{isa:?} {op:?} n={n}: sum {sum} vs {sum64}"
                );
            }
        }
    }
}
