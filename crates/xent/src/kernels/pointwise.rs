//! The elementwise losses — binary cross-entropy from probabilities and from logits,
//! and the KL divergence — one block of elements at a time: loss, batch sum and
//! gradients in one pass over the inputs.
//!
//! `f32` data runs [`vector`], written once over [`Simd`] and dispatched at run time
//! (vector `ln`, `log1p` and `exp`; the batch sum in `f64` lanes); `f64` data runs
//! [`portable`], the same formulas in scalar code. The ops layer has validated the
//! inputs (binary cross-entropy's probabilities lie in `[0, 1]`).

use super::dispatch::{dispatch, dispatch_kernel, Isa, Job};
use super::f64_path::put;
use super::num::Real;
use super::simd::{Kernel, Simd};
use crate::reduce::CompensatedSum;
use core::marker::PhantomData;

/// A per-element operand of a block: one value for every element, or one each.
#[derive(Debug, Clone, Copy)]
pub enum Src<'a, T> {
    One(T),
    Each(&'a [T]),
}

impl<T: Copy> Src<'_, T> {
    #[inline(always)]
    fn at(self, i: usize) -> T {
        match self {
            Src::One(v) => v,
            Src::Each(s) => s[i],
        }
    }
    fn fits(self, n: usize) -> bool {
        match self {
            Src::One(_) => true,
            Src::Each(s) => s.len() == n,
        }
    }
}

/// Which loss a [`PointCall`] computes. `a` and `b` are its two inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointOp {
    /// `a` = probabilities `p`, `b` = targets `y` (both must lie in `[0, 1]`):
    /// `w·((y − 1)·max(log1p(−p), −100) − y·max(ln p, −100))`, PyTorch's order.
    Bce,
    /// `a` = logits `x`, `b` = targets `y`: `w·((1 − y)·x − l·log σ(x))` with
    /// `l = (pw − 1)·y + 1` (1 without `pos_weight`).
    BceLogits,
    /// `a` = log-probabilities `x`, `b` = targets `t` (log-probabilities with
    /// `log_target`): `xlogy(t, t) − t·x`, or `e^t·(t − x)`.
    Kl { log_target: bool },
}

/// A gradient buffer of a block with the upstream scale of each element.
#[derive(Debug)]
pub struct PointGrad<'a, T> {
    pub buf: &'a mut [T],
    pub scale: Src<'a, T>,
    pub accumulate: bool,
}

/// One block of an elementwise loss: what the ops layer hands the kernels. Every
/// `Each` slice and buffer has `a.len()` elements.
#[derive(Debug)]
pub struct PointCall<'a, T> {
    pub op: PointOp,
    pub a: &'a [T],
    pub b: &'a [T],
    /// Binary cross-entropy's `weight`.
    pub w: Option<Src<'a, T>>,
    /// Binary cross-entropy with logits' `pos_weight`.
    pub pw: Option<Src<'a, T>>,
    /// The elementwise losses (reduction `none`).
    pub loss: Option<&'a mut [T]>,
    /// d loss / d a.
    pub ga: Option<PointGrad<'a, T>>,
    /// d loss / d b (the KL divergence's target).
    pub gb: Option<PointGrad<'a, T>>,
}

impl<T: Copy> PointCall<'_, T> {
    /// Whether every operand has the block's length (the kernels' precondition).
    fn consistent(&self) -> bool {
        let n = self.a.len();
        let src = |s: Option<Src<'_, T>>| s.is_none_or(|s| s.fits(n));
        let grad = |g: &Option<PointGrad<'_, T>>| {
            g.as_ref()
                .is_none_or(|g| g.buf.len() == n && g.scale.fits(n))
        };
        self.b.len() == n
            && src(self.w)
            && src(self.pw)
            && self.loss.as_ref().is_none_or(|l| l.len() == n)
            && grad(&self.ga)
            && grad(&self.gb)
    }
}

/// What a block returns: the sum of its losses.
#[derive(Debug, Clone, Copy, Default)]
pub struct PointOut {
    pub(crate) sum: CompensatedSum,
}

/// PyTorch's clamp of BCE's logarithms.
const LOG_CLAMP: f32 = -100.0;
/// PyTorch's `EPSILON` of BCE's gradient denominator: 1e-12 as a `float`, even for
/// `f64` inputs.
const BCE_EPS: f32 = 1e-12;

/// The portable kernel (`f64` data; the formulas of [`vector`] in scalar code).
pub(crate) fn portable<T: Real>(call: PointCall<'_, T>) -> PointOut {
    assert!(
        call.consistent(),
        "pointwise block operands disagree in length"
    );
    let PointCall {
        op,
        a,
        b,
        w,
        pw,
        mut loss,
        mut ga,
        mut gb,
    } = call;
    let clamp = T::from_f64(LOG_CLAMP as f64);
    let eps = T::from_f64(BCE_EPS as f64);
    let mut sum = CompensatedSum::default();
    for i in 0..a.len() {
        let (x, y) = (a[i], b[i]);
        let w = w.map_or(T::ONE, |w| w.at(i));
        let (v, da, db) = match op {
            PointOp::Bce => {
                let v =
                    w * ((y - T::ONE) * (-x).ln_1p().max_nan(clamp) - y * x.ln().max_nan(clamp));
                let d = ((T::ONE - x) * x).max_nan(eps);
                (v, w * (x - y) / d, T::ZERO)
            }
            PointOp::BceLogits => {
                let pw = pw.map(|pw| pw.at(i));
                let e = (-abs(x)).exp();
                let min = if x < T::ZERO { x } else { T::ZERO };
                let log_sig = min - e.ln_1p();
                let sig = if x >= T::ZERO {
                    T::ONE / (T::ONE + e)
                } else {
                    e / (T::ONE + e)
                };
                let log_weight = pw.map_or(T::ONE, |pw| (pw - T::ONE) * y + T::ONE);
                let v = w * ((T::ONE - y) * x - log_weight * log_sig);
                let pwy = pw.map_or(y, |pw| pw * y);
                (v, w * ((pwy + T::ONE - y) * sig - pwy), T::ZERO)
            }
            PointOp::Kl { log_target: true } => {
                let e = y.exp();
                (e * (y - x), -e, e * (y - x + T::ONE))
            }
            PointOp::Kl { log_target: false } => {
                // xlogy(t, t): 0 at t = 0 (NaN stays NaN).
                let lt = y.ln();
                let tlogt = if y == T::ZERO { T::ZERO } else { y * lt };
                (tlogt - y * x, -y, lt + T::ONE - x)
            }
        };
        if let Some(l) = loss.as_deref_mut() {
            l[i] = v;
        }
        sum.add(v.to_f64());
        if let Some(g) = ga.as_mut() {
            put(g.buf, i, g.scale.at(i) * da, g.accumulate);
        }
        if let Some(g) = gb.as_mut() {
            put(g.buf, i, g.scale.at(i) * db, g.accumulate);
        }
    }
    PointOut { sum }
}

#[inline(always)]
fn abs<T: Real>(v: T) -> T {
    if v < T::ZERO {
        -v
    } else {
        v
    }
}

/// Whether every element of `data` lies in `[0, 1]` (NaN does not), portably.
pub(crate) fn all_in_unit_portable<T: Real>(data: &[T]) -> bool {
    let ok = |v: T| v >= T::ZERO && v <= T::ONE;
    data.iter().fold(true, |all, &v| all & ok(v))
}

/// Whether every element of `data` lies in `[0, 1]` (NaN does not), on the active
/// instruction set.
pub(crate) fn all_in_unit(data: &[f32]) -> bool {
    dispatch_kernel(Isa::active(), UnitJob(data))
}

struct UnitJob<'a>(&'a [f32]);

impl Kernel for UnitJob<'_> {
    type Out = bool;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> bool {
        let data = self.0;
        let lanes = S::LANES;
        let full = data.len() - data.len() % lanes;
        let mut bad = s.splat(0.0);
        let mut i = 0;
        while i < full {
            // SAFETY: i + LANES ≤ full ≤ data.len().
            let v = unsafe { s.load(data.as_ptr().add(i)) };
            bad = s.or(bad, s.outside(v, 0.0, 1.0));
            i += lanes;
        }
        !s.any(bad) && all_in_unit_portable(&data[full..])
    }
}

/// The `f32` kernel on the active instruction set.
pub(crate) fn vector(call: PointCall<'_, f32>) -> PointOut {
    assert!(
        call.consistent(),
        "pointwise block operands disagree in length"
    );
    dispatch(Isa::active(), PointJob(call))
}

struct PointJob<'a>(PointCall<'a, f32>);

impl Job for PointJob<'_> {
    type Out = PointOut;
    fn run<S: Simd>(self, s: S) -> PointOut {
        let call = self.0;
        match call.op {
            PointOp::Bce => s.vectorize(Block::<Bce>(call, PhantomData)),
            PointOp::BceLogits => s.vectorize(Block::<BceLogits>(call, PhantomData)),
            PointOp::Kl { log_target: true } => {
                s.vectorize(Block::<KlLogTarget>(call, PhantomData))
            }
            PointOp::Kl { log_target: false } => s.vectorize(Block::<Kl>(call, PhantomData)),
        }
    }
}

/// A block of one formula ([`run_block`]) as a kernel of its own.
struct Block<'a, F>(PointCall<'a, f32>, PhantomData<F>);

impl<F: Formula> Kernel for Block<'_, F> {
    type Out = PointOut;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> PointOut {
        run_block::<S, F>(s, self.0)
    }
}

/// One vector of a loss: `[loss, d/da, d/db]` (before the upstream scale) from `a`,
/// `b`, the weight and the positive weight (1 where absent). A trait on unit types
/// rather than a function value, so that the `#[inline(always)]` body is inlined
/// into the kernel ([`Block`]) compiled for the instruction set.
trait Formula {
    fn eval<S: Simd>(s: S, a: S::V, b: S::V, w: S::V, pw: S::V) -> [S::V; 3];
}

struct Bce;
struct BceLogits;
struct Kl;
struct KlLogTarget;

impl Formula for Bce {
    #[inline(always)]
    fn eval<S: Simd>(s: S, p: S::V, y: S::V, w: S::V, _pw: S::V) -> [S::V; 3] {
        let one = s.splat(1.0);
        let clamp = s.splat(LOG_CLAMP);
        let log1m = s.max(s.ln_1p(s.sub(s.splat(0.0), p)), clamp);
        let logp = s.max(s.ln(p), clamp);
        let v = s.mul(w, s.sub(s.mul(s.sub(y, one), log1m), s.mul(y, logp)));
        let d = s.max(s.mul(s.sub(one, p), p), s.splat(BCE_EPS));
        let da = s.div(s.mul(w, s.sub(p, y)), d);
        [v, da, s.splat(0.0)]
    }
}

impl Formula for BceLogits {
    #[inline(always)]
    fn eval<S: Simd>(s: S, x: S::V, y: S::V, w: S::V, pw: S::V) -> [S::V; 3] {
        let one = s.splat(1.0);
        let zero = s.splat(0.0);
        // e^{−|x|} ≤ 1: one exp for both log σ and σ, as the portable kernel, and
        // one division: log1p(e) = ln u + (e − (u − 1))/u for u = 1 + e rounded
        // (u − 1 is exact for u in [1, 2], so the correction is u's rounding error,
        // and 0 when u = 1).
        let e = s.exp_small(s.sub(zero, s.abs(x)));
        let u = s.add(one, e);
        let inv = s.div(one, u);
        let log1p_e = s.fma(s.sub(e, s.sub(u, one)), inv, s.ln(u));
        let log_sig = s.sub(s.min(x, zero), log1p_e);
        let sig = s.select(s.lt(x, zero), s.mul(e, inv), inv);
        let log_weight = s.fma(s.sub(pw, one), y, one);
        let v = s.mul(
            w,
            s.sub(s.mul(s.sub(one, y), x), s.mul(log_weight, log_sig)),
        );
        let pwy = s.mul(pw, y);
        let da = s.mul(w, s.sub(s.mul(s.sub(s.add(pwy, one), y), sig), pwy));
        [v, da, zero]
    }
}

impl Formula for Kl {
    #[inline(always)]
    fn eval<S: Simd>(s: S, x: S::V, t: S::V, _w: S::V, _pw: S::V) -> [S::V; 3] {
        let zero = s.splat(0.0);
        let lt = s.ln(t);
        let tlogt = s.select(s.eq(t, zero), zero, s.mul(t, lt));
        let v = s.sub(tlogt, s.mul(t, x));
        let db = s.sub(s.add(lt, s.splat(1.0)), x);
        [v, s.sub(zero, t), db]
    }
}

impl Formula for KlLogTarget {
    #[inline(always)]
    fn eval<S: Simd>(s: S, x: S::V, t: S::V, _w: S::V, _pw: S::V) -> [S::V; 3] {
        let zero = s.splat(0.0);
        let e = s.exp(t);
        let d = s.sub(t, x);
        [
            s.mul(e, d),
            s.sub(zero, e),
            s.mul(e, s.add(d, s.splat(1.0))),
        ]
    }
}

/// A [`Src`] as a pointer: one value, or the block's first element.
#[derive(Clone, Copy)]
enum SrcP {
    One(f32),
    Each(*const f32),
}

impl SrcP {
    fn of(s: Option<Src<'_, f32>>) -> SrcP {
        match s {
            None => SrcP::One(1.0),
            Some(Src::One(v)) => SrcP::One(v),
            Some(Src::Each(v)) => SrcP::Each(v.as_ptr()),
        }
    }
    /// # Safety
    /// For `Each`, `LANES` elements readable from offset `i`.
    #[inline(always)]
    unsafe fn load<S: Simd>(self, s: S, i: usize) -> S::V {
        match self {
            SrcP::One(v) => s.splat(v),
            // SAFETY: the caller's contract.
            SrcP::Each(p) => unsafe { s.load(p.add(i)) },
        }
    }
}

/// The block's operands as pointers (into the caller's slices, or into the stack
/// buffers of the tail).
#[derive(Clone, Copy)]
struct Ptrs {
    a: *const f32,
    b: *const f32,
    w: SrcP,
    pw: SrcP,
    loss: Option<*mut f32>,
    ga: Option<(*mut f32, SrcP, bool)>,
    gb: Option<(*mut f32, SrcP, bool)>,
}

/// One vector at offset `i`: loads, the formula, stores; returns the losses.
///
/// # Safety
/// Every pointer of `p` valid for `LANES` elements from offset `i` (read, or read
/// and write for the outputs).
#[inline(always)]
unsafe fn step<S: Simd, F: Formula>(s: S, p: &Ptrs, i: usize) -> S::V {
    // SAFETY: the caller's contract covers every load and store below.
    unsafe {
        let a = s.load(p.a.add(i));
        let b = s.load(p.b.add(i));
        let [v, da, db] = F::eval(s, a, b, p.w.load(s, i), p.pw.load(s, i));
        if let Some(l) = p.loss {
            s.store(l.add(i), v);
        }
        for (g, d) in [(p.ga, da), (p.gb, db)] {
            if let Some((buf, scale, acc)) = g {
                let mut out = s.mul(scale.load(s, i), d);
                if acc {
                    out = s.add(s.load(buf.add(i) as *const f32), out);
                }
                s.store(buf.add(i), out);
            }
        }
        v
    }
}

/// The whole block: full vectors in place, the tail through stack buffers padded
/// with valid inputs (`½`), whose padding lanes are dropped from the sum.
#[inline(always)]
fn run_block<S: Simd, F: Formula>(s: S, c: PointCall<'_, f32>) -> PointOut {
    let n = c.a.len();
    let lanes = S::LANES;
    let full = n - n % lanes;
    let grad_ptrs = |g: &mut Option<PointGrad<'_, f32>>| {
        g.as_mut()
            .map(|g| (g.buf.as_mut_ptr(), SrcP::of(Some(g.scale)), g.accumulate))
    };
    let mut c = c;
    let p = Ptrs {
        a: c.a.as_ptr(),
        b: c.b.as_ptr(),
        w: SrcP::of(c.w),
        pw: SrcP::of(c.pw),
        loss: c.loss.as_deref_mut().map(|l| l.as_mut_ptr()),
        ga: grad_ptrs(&mut c.ga),
        gb: grad_ptrs(&mut c.gb),
    };
    let mut acc = s.d_zero();
    let mut i = 0;
    while i < full {
        // SAFETY: `consistent()` (asserted by the callers) makes every slice `n`
        // long, and `i + LANES ≤ full ≤ n`.
        let v = unsafe { step::<S, F>(s, &p, i) };
        acc = s.d_add(acc, v);
        i += lanes;
    }
    let rest = n - full;
    if rest > 0 {
        // Tail: copy the rest of every operand into 16-element buffers.
        let mut buf = [[0.5f32; 16]; 9];
        let [ba, bb, bw, bpw, bl, bga, bsa, bgb, bsb] = &mut buf;
        ba[..rest].copy_from_slice(&c.a[full..]);
        bb[..rest].copy_from_slice(&c.b[full..]);
        let tail_src = |src: SrcP, dst: &mut [f32; 16]| match src {
            SrcP::One(v) => SrcP::One(v),
            SrcP::Each(ptr) => {
                // SAFETY: an `Each` operand has `n` elements from `ptr`.
                let s = unsafe { core::slice::from_raw_parts(ptr.add(full), rest) };
                dst[..rest].copy_from_slice(s);
                SrcP::Each(dst.as_ptr())
            }
        };
        let w = tail_src(p.w, bw);
        let pw = tail_src(p.pw, bpw);
        let tail_grad =
            |g: Option<(*mut f32, SrcP, bool)>, gbuf: &mut [f32; 16], sbuf: &mut [f32; 16]| {
                g.map(|(ptr, scale, accumulate)| {
                    if accumulate {
                        // SAFETY: a gradient buffer has `n` elements from `ptr`.
                        let s = unsafe { core::slice::from_raw_parts(ptr.add(full), rest) };
                        gbuf[..rest].copy_from_slice(s);
                    }
                    (gbuf.as_mut_ptr(), tail_src(scale, sbuf), accumulate)
                })
            };
        let ga = tail_grad(p.ga, bga, bsa);
        let gb = tail_grad(p.gb, bgb, bsb);
        let tail = Ptrs {
            a: ba.as_ptr(),
            b: bb.as_ptr(),
            w,
            pw,
            loss: p.loss.map(|_| bl.as_mut_ptr()),
            ga,
            gb,
        };
        // SAFETY: every pointer of `tail` points into a 16-element buffer, and
        // LANES ≤ 16.
        let v = unsafe { step::<S, F>(s, &tail, 0) };
        let mut lanes_v = [0.0f32; 16];
        s.write_lanes(v, &mut lanes_v);
        lanes_v[rest..].fill(0.0);
        acc = s.d_add(acc, s.vector_of(&lanes_v));
        // Copy the tail's outputs back.
        let back = |src: *const f32, dst: Option<*mut f32>| {
            if let Some(dst) = dst {
                // SAFETY: `src` is a 16-element buffer, `dst` an output of `n`
                // elements; `full + rest = n`.
                unsafe { core::ptr::copy_nonoverlapping(src, dst.add(full), rest) };
            }
        };
        back(bl.as_ptr(), p.loss);
        back(bga.as_ptr(), p.ga.map(|g| g.0));
        back(bgb.as_ptr(), p.gb.map(|g| g.0));
    }
    let mut sum = CompensatedSum::default();
    sum.add(s.d_sum(acc));
    PointOut { sum }
}
