//! Fused f32 row kernels, generic over the instruction set.
//!
//! A row is read in chunks of [`CHUNK`] classes: pass A finds the chunk's max, pass B
//! (on the chunk, now in L1) sums `exp(x − m)` and the linear terms `Σ a_c·(x_c − m)`,
//! `Σ a_c`. Chunk partials merge with the online-softmax rule, so every logit is read
//! from memory once, and a row's result does not depend on how many threads ran it.
//! The gradient pass re-reads the row (from cache for rows up to L2 size) and writes
//! each gradient once.
//!
//! `−inf` logits are handled without NaN: the shift `m` of a chunk that is all `−inf`
//! is taken as 0 so that `exp(−inf − 0) = 0`; an all-`−inf` row still ends in NaN, as
//! in PyTorch, because `ln 0 − (−inf − 0)` is NaN.

pub(crate) use super::coef::{Coef, Coefs, NoCoef, Ones, Weights};
use super::simd::{Kernel, Scalar, Simd, Store32};
pub(crate) use super::xform::{Identity, SoftCap, Xform};
use crate::sizes::{CACHE_LINE, CHUNK, MAX_STORED_CHUNKS};

/// The statistics of a row: of one chunk, of a merged run of chunks, or of a whole
/// row. `V` is a vector of an instruction set ([`Simd::V`]), one row per lane (the
/// K-dim and short-row kernels), or `f32` for one contiguous row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowStats<V> {
    /// Max of the (transformed) logits.
    pub m: V,
    /// `Σ exp(x − shift(m))`.
    pub s: V,
    /// `Σ a_c·(x_c − shift(m))`.
    pub l: V,
    /// `Σ a_c`.
    pub a: V,
}

/// The shift used for a max: 0 for an all-`−inf` run, so that `x − shift` is never
/// `−inf − (−inf)`.
#[inline(always)]
pub(crate) fn shift(m: f32) -> f32 {
    if m == f32::NEG_INFINITY {
        0.0
    } else {
        m
    }
}

impl RowStats<f32> {
    pub(crate) const EMPTY: RowStats<f32> = RowStats {
        m: f32::NEG_INFINITY,
        s: 0.0,
        l: 0.0,
        a: 0.0,
    };

    /// Merges the partial of a later run: rescales both to the common max.
    #[inline]
    pub(crate) fn merge(self, o: RowStats<f32>) -> RowStats<f32> {
        let m = Scalar.max(self.m, o.m);
        let ms = shift(m);
        let rescale = |p: RowStats<f32>| {
            let ps = shift(p.m);
            // An all −inf run has s = 0 (or NaN); never form exp(0 − ms), which can be inf.
            let f = if p.m == f32::NEG_INFINITY {
                0.0
            } else {
                (ps - ms).exp()
            };
            (p.s * f, p.l - p.a * (ms - ps))
        };
        let (s1, l1) = rescale(self);
        let (s2, l2) = rescale(o);
        RowStats {
            m,
            s: s1 + s2,
            l: l1 + l2,
            a: self.a + o.a,
        }
    }
}

/// What a row's per-row outputs need beyond its [`RowStats`], for the same run of
/// classes: `t = Σ e^{x̃−shift(m)}·(x̃ − shift(m))` (a class with `e = 0` adds 0,
/// never `0·(−inf)`), so that `entropy = ln s − t/s`; and the argmax: the first
/// index of the largest `x̃`, or of the first NaN (as `torch.argmax`), with its
/// raw logit `top` (NaN for a NaN).
///
/// The argmax compares the raw logits: `x̃ = softcap(s·x)` (`s > 0`) is
/// non-decreasing in `x`, so the first max of `x` is a first max of `x̃`, and it does
/// not depend on where a class falls in a chunk (the vector `tanh` and the scalar
/// tail's may differ in the last bit, which would break exact ties of `x̃` by
/// position, and differently on a shard of the classes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OutStats {
    pub t: f32,
    pub top: f32,
    /// The argmax's index within the run.
    pub arg: usize,
}

impl OutStats {
    pub(crate) const EMPTY: OutStats = OutStats {
        t: 0.0,
        top: f32::NEG_INFINITY,
        arg: 0,
    };

    /// Merges the partial `o` of the run that starts `len` classes after this one's,
    /// `(p, q)` being the two runs' [`RowStats`]: `t` is rescaled to the common
    /// shift like `s`; a later argmax wins only with a larger value, or as the
    /// first NaN.
    #[inline]
    pub(crate) fn merge(
        self,
        p: &RowStats<f32>,
        o: OutStats,
        q: &RowStats<f32>,
        len: usize,
    ) -> OutStats {
        let ms = shift(Scalar.max(p.m, q.m));
        let rescale = |r: &RowStats<f32>, t: f32| {
            let rs = shift(r.m);
            let f = if r.m == f32::NEG_INFINITY {
                0.0
            } else {
                (rs - ms).exp()
            };
            // f = 0 (a run far below the max) adds 0, whatever t − s·Δ is.
            if f == 0.0 {
                0.0
            } else {
                f * (t - r.s * (ms - rs))
            }
        };
        let later = (o.top.is_nan() && !self.top.is_nan()) || o.top > self.top;
        OutStats {
            t: rescale(p, self.t) + rescale(q, o.t),
            top: if later { o.top } else { self.top },
            arg: if later { len + o.arg } else { self.arg },
        }
    }

    /// The argmax of the `n` raw logits at `x` with NaN first: the vector max
    /// may skip NaN, so a run whose sum is NaN (a NaN or a `+inf`) is searched
    /// here instead of for its max.
    ///
    /// # Safety
    /// `x` readable for `n` elements.
    #[inline(never)]
    unsafe fn argmax_slow<E: Store32>(x: *const E, n: usize) -> (f32, usize) {
        let (mut top, mut arg) = (f32::NEG_INFINITY, 0);
        for j in 0..n {
            // SAFETY: j < n.
            let v: f32 = unsafe { Scalar.load(x.add(j)) };
            if v.is_nan() {
                return (v, j);
            }
            if v > top {
                (top, arg) = (v, j);
            }
        }
        (top, arg)
    }
}

/// The row outputs `(lse, entropy, argmax)` of a whole row's statistics, as
/// `torch.logsumexp` (`+inf` with a `+inf` logit, `−inf` when all are `−inf`),
/// `torch.special.entr` summed (NaN where the softmax is NaN) and `torch.argmax`.
#[inline]
pub(crate) fn row_outputs(p: &RowStats<f32>, o: &OutStats) -> (f32, f32, i64) {
    let ln_s = p.s.ln();
    let lse = if p.m == f32::INFINITY && !o.top.is_nan() {
        f32::INFINITY
    } else {
        shift(p.m) + ln_s
    };
    let entropy = if o.top.is_nan() {
        f32::NAN
    } else {
        ln_s - o.t / p.s
    };
    (lse, entropy, o.arg as i64)
}

/// Pass A and pass B over `n` contiguous classes at `x`; with `OUT`, `best` is the
/// [`OutStats::top`] of the classes before these in the row (see
/// [`chunk_stats_store`]).
///
/// # Safety
/// `x` readable for `n` elements; `coef` valid for `n` classes.
#[inline]
pub(crate) unsafe fn chunk_stats<S: Simd, E: Store32, C: Coef, X: Xform, const OUT: bool>(
    s: S,
    x: *const E,
    n: usize,
    coef: C,
    xf: X,
    best: f32,
) -> (RowStats<f32>, OutStats) {
    // SAFETY: forwarded; no store.
    unsafe {
        chunk_stats_store::<S, E, f32, C, X, f32, false, OUT>(
            s,
            x,
            core::ptr::null_mut(),
            n,
            coef,
            xf,
            core::ptr::null(),
            best,
        )
    }
}

/// [`chunk_stats`] that also stores `e = exp(x − shift(m))` into `g` when `STORE`
/// (the gradient pass then rescales `e` instead of recomputing `exp`).
///
/// With `OUT` it computes the chunk's [`OutStats`] too ([`OutStats::EMPTY`]
/// otherwise), but the argmax only where it can win the row: `best` is the `top` of
/// the row's classes before the chunk (`−inf` for none, which always finds it), and
/// a chunk whose largest raw logit `r` is not above it (ties go to the earlier
/// class) returns `top = r` with `arg = 0`, which [`OutStats::merge`] never takes. With `STORE`,
/// pass B also prefetches the `n` elements at `ahead`: the gradient lines that are
/// written next (see [`row_stats_store`]). Their type `P` is a parameter, so that
/// the prefetch loop's stride is a constant of the kernel.
///
/// # Safety
/// As [`chunk_stats`], and `g` writable for `n` elements when `STORE` (may alias `x`:
/// each element is read before it is written). `ahead` may point anywhere (a
/// prefetch never faults).
#[inline]
pub(crate) unsafe fn chunk_stats_store<
    S: Simd,
    E: Store32,
    G: Store32,
    C: Coef,
    X: Xform,
    P,
    const STORE: bool,
    const OUT: bool,
>(
    s: S,
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ahead: *const P,
    best: f32,
) -> (RowStats<f32>, OutStats) {
    s.vectorize(ChunkStats::<E, G, C, X, P, STORE, OUT> {
        x,
        g,
        n,
        coef,
        xf,
        ahead,
        best,
    })
}

/// The kernel of [`chunk_stats_store`], with its arguments.
struct ChunkStats<E, G, C, X, P, const STORE: bool, const OUT: bool> {
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ahead: *const P,
    best: f32,
}

impl<E: Store32, G: Store32, C: Coef, X: Xform, P, const STORE: bool, const OUT: bool> Kernel
    for ChunkStats<E, G, C, X, P, STORE, OUT>
{
    type Out = (RowStats<f32>, OutStats);
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> (RowStats<f32>, OutStats) {
        let ChunkStats {
            x,
            g,
            n,
            coef,
            xf,
            ahead,
            best,
        } = self;
        // The fields are the arguments of `chunk_stats_store`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let lanes = S::LANES;
        let body = n - n % lanes;
        // SAFETY: every load is at i < body ≤ n with i + LANES ≤ n, or at
        // j < n in the scalar tails; the caller guarantees n readable elements.
        unsafe {
            let (mut m0, mut m1) = (s.splat(f32::NEG_INFINITY), s.splat(f32::NEG_INFINITY));
            // With OUT and a transform, the largest raw logit `r` too (the argmax
            // compares raw logits, see `OutStats`); for the identity, r = m.
            let raw = OUT && !X::IDENTITY;
            let (mut r0, mut r1) = (m0, m1);
            let mut i = 0;
            while i + 2 * lanes <= body {
                let (u0, u1) = (s.load(x.add(i)), s.load(x.add(i + lanes)));
                if raw {
                    r0 = s.max(r0, u0);
                    r1 = s.max(r1, u1);
                }
                m0 = s.max(m0, xf.apply(s, u0));
                m1 = s.max(m1, xf.apply(s, u1));
                i += 2 * lanes;
            }
            if i < body {
                let u0 = s.load(x.add(i));
                if raw {
                    r0 = s.max(r0, u0);
                }
                m0 = s.max(m0, xf.apply(s, u0));
            }
            let mut m = s.reduce_max(s.max(m0, m1));
            let mut r = f32::NEG_INFINITY;
            if raw {
                r = s.reduce_max(s.max(r0, r1));
            }
            for j in body..n {
                let u = Scalar.load(x.add(j));
                if raw {
                    r = Scalar.max(r, u);
                }
                m = Scalar.max(m, xf.apply(Scalar, u));
            }
            if OUT && !raw {
                r = m;
            }
            let mut o = OutStats::EMPTY;
            let ms = shift(m);
            let msv = s.splat(ms);
            let zero = s.splat(0.0);
            let (mut s0, mut s1, mut l0, mut l1, mut a0, mut a1) =
                (zero, zero, zero, zero, zero, zero);
            // With OUT, Σ e·(x̃ − shift): NaN from a `−inf` logit (0·(−inf)) is
            // redone below.
            let (mut t0, mut t1) = (zero, zero);
            // Pass B works from L1; meanwhile the next `n` elements (the next chunk, or
            // the next row) are prefetched so that pass A does not wait for memory, and
            // with `STORE` so are the gradient lines written next (their read for
            // ownership would stall the stores otherwise).
            let x_ahead = x.wrapping_add(n) as *const u8;
            let (g_ahead, g_step) = (ahead as *const u8, size_of::<P>());
            let x_step = size_of::<E>();
            let mut i = 0;
            while i + 2 * lanes <= body {
                let mut b = 0;
                while b < 2 * lanes * x_step {
                    s.prefetch(x_ahead.wrapping_add(i * x_step + b));
                    b += CACHE_LINE;
                }
                let mut b = 0;
                while STORE && b < 2 * lanes * g_step {
                    s.prefetch(g_ahead.wrapping_add(i * g_step + b));
                    b += CACHE_LINE;
                }
                let d0 = s.sub(xf.apply(s, s.load(x.add(i))), msv);
                let d1 = s.sub(xf.apply(s, s.load(x.add(i + lanes))), msv);
                let (e0, e1) = (s.exp_small(d0), s.exp_small(d1));
                if STORE {
                    s.store(g.add(i), e0);
                    s.store(g.add(i + lanes), e1);
                }
                s0 = s.add(s0, e0);
                s1 = s.add(s1, e1);
                if OUT {
                    t0 = s.fma(e0, d0, t0);
                    t1 = s.fma(e1, d1, t1);
                }
                if C::ACTIVE {
                    let c0 = coef.load(s, i);
                    let c1 = coef.load(s, i + lanes);
                    l0 = s.fma(c0, d0, l0);
                    l1 = s.fma(c1, d1, l1);
                    a0 = s.add(a0, c0);
                    a1 = s.add(a1, c1);
                }
                i += 2 * lanes;
            }
            if i < body {
                let d0 = s.sub(xf.apply(s, s.load(x.add(i))), msv);
                let e0 = s.exp_small(d0);
                if STORE {
                    s.store(g.add(i), e0);
                }
                s0 = s.add(s0, e0);
                if OUT {
                    t0 = s.fma(e0, d0, t0);
                }
                if C::ACTIVE {
                    let c0 = coef.load(s, i);
                    l0 = s.fma(c0, d0, l0);
                    a0 = s.add(a0, c0);
                }
            }
            let mut p = RowStats {
                m,
                s: s.reduce_add(s.add(s0, s1)),
                l: s.reduce_add(s.add(l0, l1)),
                a: s.reduce_add(s.add(a0, a1)),
            };
            for j in body..n {
                let d = xf.apply(Scalar, Scalar.load(x.add(j))) - ms;
                let e = d.exp();
                if STORE {
                    Scalar.store(g.add(j), e);
                }
                p.s += e;
                if OUT && e != 0.0 {
                    o.t += e * d;
                }
                if C::ACTIVE {
                    let c = coef.load(Scalar, j);
                    p.l += c * d;
                    p.a += c;
                }
            }
            if OUT {
                let mut t = s.reduce_add(s.add(t0, t1));
                if t.is_nan() && !p.s.is_nan() {
                    t = s.vectorize(ChunkT { x, n, xf, ms });
                }
                o.t += t;
                if p.s.is_nan() {
                    (o.top, o.arg) = OutStats::argmax_slow(x, n);
                } else {
                    o.top = r;
                    if r > best {
                        o.arg = match first_eq(s, x, n, r) {
                            Some(j) => j,
                            None => OutStats::argmax_slow(x, n).1,
                        };
                    }
                }
            }
            (p, o)
        }
    }
}

/// The first `j < n` with `x[j] == r` (the chunk is in L1 after its passes), two
/// vectors at a time until one holds it.
///
/// # Safety
/// `x` readable for `n` elements.
#[inline(always)]
unsafe fn first_eq<S: Simd, E: Store32>(s: S, x: *const E, n: usize, r: f32) -> Option<usize> {
    let lanes = S::LANES;
    let rv = s.splat(r);
    let mut i = 0;
    // SAFETY: every vector load is at i with i + LANES ≤ n, every scalar one at j < n.
    unsafe {
        while i + 2 * lanes <= n {
            let (u0, u1) = (s.load(x.add(i)), s.load(x.add(i + lanes)));
            if s.any(s.or(s.eq(u0, rv), s.eq(u1, rv))) {
                break;
            }
            i += 2 * lanes;
        }
        (i..n).find(|&j| Scalar.load(x.add(j)) == r)
    }
}

/// The vector part of a chunk's `Σ e·(x̃ − shift)` (see [`ChunkStats`]) when it came
/// out NaN with a finite sum of `e`: a `−inf` logit gave `0·(−inf)`. The same sums in
/// the same order with `x̃ − shift` clamped to a finite value, so such a class adds
/// 0; the scalar tail is not redone (it skips `e = 0`).
struct ChunkT<E, X> {
    x: *const E,
    n: usize,
    xf: X,
    ms: f32,
}

impl<E: Store32, X: Xform> Kernel for ChunkT<E, X> {
    type Out = f32;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> f32 {
        let ChunkT { x, n, xf, ms } = self;
        let lanes = S::LANES;
        let body = n - n % lanes;
        let (msv, lowest) = (s.splat(ms), s.splat(f32::MIN));
        let (mut t0, mut t1) = (s.splat(0.0), s.splat(0.0));
        let mut i = 0;
        // SAFETY: every load is at i with i + LANES ≤ body ≤ n, and the fields are
        // those of a `ChunkStats` whose caller guarantees n readable elements.
        unsafe {
            while i + 2 * lanes <= body {
                let d0 = s.sub(xf.apply(s, s.load(x.add(i))), msv);
                let d1 = s.sub(xf.apply(s, s.load(x.add(i + lanes))), msv);
                let (e0, e1) = (s.exp_small(d0), s.exp_small(d1));
                t0 = s.fma(e0, s.max(d0, lowest), t0);
                t1 = s.fma(e1, s.max(d1, lowest), t1);
                i += 2 * lanes;
            }
            if i < body {
                let d0 = s.sub(xf.apply(s, s.load(x.add(i))), msv);
                t0 = s.fma(s.exp_small(d0), s.max(d0, lowest), t0);
            }
        }
        s.reduce_add(s.add(t0, t1))
    }
}

/// The statistics of a whole contiguous row of `n` classes, chunk by chunk, with its
/// [`OutStats`] when `out` ([`OutStats::EMPTY`] otherwise).
///
/// # Safety
/// As [`chunk_stats`] for `n` elements.
#[inline]
pub(crate) unsafe fn row_stats<S: Simd, E: Store32, C: Coef, X: Xform>(
    s: S,
    x: *const E,
    n: usize,
    coef: C,
    xf: X,
    out: bool,
) -> (RowStats<f32>, OutStats) {
    let (mut p, mut o) = (RowStats::EMPTY, OutStats::EMPTY);
    let mut c0 = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        // SAFETY: [c0, c0 + len) lies within the row.
        let (q, qo) = unsafe {
            let (x, coef) = (x.add(c0), coef.offset(c0));
            if out {
                chunk_stats::<S, E, C, X, true>(s, x, len, coef, xf, o.top)
            } else {
                chunk_stats::<S, E, C, X, false>(s, x, len, coef, xf, f32::NEG_INFINITY)
            }
        };
        if out {
            o = o.merge(&p, qo, &q, c0);
        }
        p = p.merge(q);
        c0 += len;
    }
    (p, o)
}

/// [`row_stats`] that stores each chunk's `exp(x − shift(m_chunk))` into `g` and its
/// max into `chunk_max`, for [`row_rescale`].
///
/// `grad` is the gradient when the row's gradient pass follows and writes elsewhere
/// than `g`: each chunk's pass B then prefetches that chunk's gradient lines (`P`
/// is the gradient's type). Without it, pass B prefetches the lines of `g` that the
/// next chunk stores into (`P` is then `f32`).
///
/// # Safety
/// As [`row_stats`]; `g` writable for `n` f32 (may alias `x`);
/// `n ≤ MAX_STORED_CHUNKS·CHUNK`; `P` is `f32` when `grad` is `None`.
#[inline]
pub(crate) unsafe fn row_stats_store<S: Simd, E: Store32, C: Coef, X: Xform, P>(
    s: S,
    x: *const E,
    g: *mut f32,
    n: usize,
    coef: C,
    xf: X,
    chunk_max: &mut [f32; MAX_STORED_CHUNKS],
    grad: Option<*const P>,
    out: bool,
) -> (RowStats<f32>, OutStats) {
    let (mut p, mut o) = (RowStats::EMPTY, OutStats::EMPTY);
    let mut c0 = 0;
    let mut k = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        let ahead = match grad {
            Some(p) => p.wrapping_add(c0),
            // P is f32 here (the caller's contract); a prefetch never faults.
            None => g.wrapping_add(c0 + len) as *const P,
        };
        // SAFETY: [c0, c0 + len) lies within the row.
        let (q, qo) = unsafe {
            let (x, g, coef) = (x.add(c0), g.add(c0), coef.offset(c0));
            if out {
                let best = o.top;
                chunk_stats_store::<S, E, f32, C, X, P, true, true>(
                    s, x, g, len, coef, xf, ahead, best,
                )
            } else {
                let best = f32::NEG_INFINITY;
                chunk_stats_store::<S, E, f32, C, X, P, true, false>(
                    s, x, g, len, coef, xf, ahead, best,
                )
            }
        };
        chunk_max[k] = q.m;
        if out {
            o = o.merge(&p, qo, &q, c0);
        }
        p = p.merge(q);
        c0 += len;
        k += 1;
    }
    (p, o)
}

/// The gradient constants of a row: `g_j = (α·exp(x̃_j − shift) − β·a_j)·dx̃_j/dx_j`,
/// minus `b·dx̃_y/dx_y` at the target; `V` as for [`RowStats`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GradConsts<V> {
    pub alpha: V,
    pub beta: V,
    pub b: V,
}
