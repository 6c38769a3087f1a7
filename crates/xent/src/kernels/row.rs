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

/// Pass A and pass B over `n` contiguous classes at `x`.
///
/// # Safety
/// `x` readable for `n` elements; `coef` valid for `n` classes.
#[inline]
pub(crate) unsafe fn chunk_stats<S: Simd, E: Store32, C: Coef, X: Xform>(
    s: S,
    x: *const E,
    n: usize,
    coef: C,
    xf: X,
) -> RowStats<f32> {
    // SAFETY: forwarded; no store.
    unsafe {
        chunk_stats_store::<S, E, f32, C, X, f32, false>(
            s,
            x,
            core::ptr::null_mut(),
            n,
            coef,
            xf,
            core::ptr::null(),
        )
    }
}

/// [`chunk_stats`] that also stores `e = exp(x − shift(m))` into `g` when `STORE`
/// (the gradient pass then rescales `e` instead of recomputing `exp`). With `STORE`,
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
>(
    s: S,
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ahead: *const P,
) -> RowStats<f32> {
    s.vectorize(ChunkStats::<E, G, C, X, P, STORE> {
        x,
        g,
        n,
        coef,
        xf,
        ahead,
    })
}

/// The kernel of [`chunk_stats_store`], with its arguments.
struct ChunkStats<E, G, C, X, P, const STORE: bool> {
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ahead: *const P,
}

impl<E: Store32, G: Store32, C: Coef, X: Xform, P, const STORE: bool> Kernel
    for ChunkStats<E, G, C, X, P, STORE>
{
    type Out = RowStats<f32>;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> RowStats<f32> {
        let ChunkStats {
            x,
            g,
            n,
            coef,
            xf,
            ahead,
        } = self;
        // The fields are the arguments of `chunk_stats_store`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        let lanes = S::LANES;
        let body = n - n % lanes;
        // SAFETY: every load is at i < body ≤ n with i + LANES ≤ n, or at
        // j < n in the scalar tails; the caller guarantees n readable elements.
        unsafe {
            let (mut m0, mut m1) = (s.splat(f32::NEG_INFINITY), s.splat(f32::NEG_INFINITY));
            let mut i = 0;
            while i + 2 * lanes <= body {
                m0 = s.max(m0, xf.apply(s, s.load(x.add(i))));
                m1 = s.max(m1, xf.apply(s, s.load(x.add(i + lanes))));
                i += 2 * lanes;
            }
            if i < body {
                m0 = s.max(m0, xf.apply(s, s.load(x.add(i))));
            }
            let mut m = s.reduce_max(s.max(m0, m1));
            for j in body..n {
                m = Scalar.max(m, xf.apply(Scalar, Scalar.load(x.add(j))));
            }
            let ms = shift(m);
            let msv = s.splat(ms);
            let zero = s.splat(0.0);
            let (mut s0, mut s1, mut l0, mut l1, mut a0, mut a1) =
                (zero, zero, zero, zero, zero, zero);
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
                if C::ACTIVE {
                    let c = coef.load(Scalar, j);
                    p.l += c * d;
                    p.a += c;
                }
            }
            p
        }
    }
}

/// The statistics of a whole contiguous row of `n` classes, chunk by chunk.
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
) -> RowStats<f32> {
    let mut p = RowStats::EMPTY;
    let mut c0 = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        // SAFETY: [c0, c0 + len) lies within the row.
        p = p.merge(unsafe { chunk_stats(s, x.add(c0), len, coef.offset(c0), xf) });
        c0 += len;
    }
    p
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
) -> RowStats<f32> {
    let mut p = RowStats::EMPTY;
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
        let q = unsafe {
            chunk_stats_store::<S, E, f32, C, X, P, true>(
                s,
                x.add(c0),
                g.add(c0),
                len,
                coef.offset(c0),
                xf,
                ahead,
            )
        };
        chunk_max[k] = q.m;
        p = p.merge(q);
        c0 += len;
        k += 1;
    }
    p
}

/// The gradient from stored `e` (see [`row_stats_store`]):
/// `g = α·e·exp(shift(m_chunk) − shift(m)) − β·a` (added to `g` when accumulating),
/// without the target fix-up. `e` may be `g` itself when `G` is `f32` (and `stream`
/// is off). With `stream` the gradient is written with streaming stores
/// ([`chunk_rescale`]); the caller fences ([`Simd::stream_fence`]) before the
/// gradient is handed to another thread.
///
/// # Safety
/// `e` readable for `n` f32, `g` readable and writable for `n` elements (they may
/// alias when `G` is `f32`, without `stream`); `coef` valid for `n` classes.
#[inline]
pub(crate) unsafe fn row_rescale<S: Simd, G: Store32, C: Coef>(
    s: S,
    e: *const f32,
    g: *mut G,
    n: usize,
    coef: C,
    chunk_max: &[f32; MAX_STORED_CHUNKS],
    ms: f32,
    k: GradConsts<f32>,
    (accumulate, stream): (bool, bool),
) {
    let mut c0 = 0;
    let mut k_chunk = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        // SAFETY: [c0, c0 + len) lies within the row.
        unsafe {
            let (e, g, coef) = (e.add(c0), g.add(c0), coef.offset(c0));
            let alpha = chunk_alpha(chunk_max[k_chunk], ms, k);
            chunk_rescale(s, e, g, len, coef, (alpha, k.beta), (accumulate, stream));
        }
        c0 += len;
        k_chunk += 1;
    }
}

/// The factor `α·exp(shift(m_chunk) − shift(m))` of a chunk's stored exps.
#[inline]
fn chunk_alpha(m_chunk: f32, ms: f32, k: GradConsts<f32>) -> f32 {
    // An all −inf chunk stored zeros: any finite factor keeps them 0.
    let f = if m_chunk == f32::NEG_INFINITY {
        0.0
    } else {
        (shift(m_chunk) - ms).exp()
    };
    k.alpha * f
}

/// [`row_rescale`] of one chunk of `len ≤ CHUNK` classes: `α·e − β·a (+ g)` with the
/// chunk's `(α, β)`.
///
/// Every element's value depends only on its own inputs, whichever vector lane
/// computes it, so the streaming form may start its vectors where `g` is aligned for
/// [`Simd::stream`] (the elements before and after the aligned vectors are stored
/// one by one, from vectors) and still write the plain form's bits.
///
/// # Safety
/// As [`row_rescale`] for `len` elements.
#[inline]
unsafe fn chunk_rescale<S: Simd, G: Store32, C: Coef>(
    s: S,
    e: *const f32,
    g: *mut G,
    len: usize,
    coef: C,
    (alpha, beta): (f32, f32),
    (accumulate, stream): (bool, bool),
) {
    macro_rules! go {
        ($acc:literal, $stream:literal) => {
            s.vectorize(RescaleChunk::<G, C, $acc, $stream> {
                e,
                g,
                len,
                coef,
                alpha,
                beta,
            })
        };
    }
    match (accumulate, stream) {
        (false, false) => go!(false, false),
        (true, false) => go!(true, false),
        (false, true) => go!(false, true),
        (true, true) => go!(true, true),
    }
}

/// One vector (or, on [`Scalar`], one element) of a rescaled gradient.
#[inline(always)]
unsafe fn rescaled<S: Simd, G: Store32, C: Coef, const ACC: bool>(
    s: S,
    (e, g): (*const f32, *mut G),
    i: usize,
    coef: &C,
    alpha: S::V,
    beta: S::V,
) -> S::V {
    // SAFETY: the caller keeps i + LANES within the chunk.
    unsafe {
        let mut v = s.mul(alpha, s.load(e.add(i)));
        if C::ACTIVE {
            v = s.sub(v, s.mul(beta, coef.load(s, i)));
        }
        if ACC {
            v = s.add(v, s.load(g.add(i)));
        }
        v
    }
}

/// The kernel of [`chunk_rescale`], with its arguments; for bf16 and f16 the plain
/// form stores two vectors per [`Simd::store2`] (bf16 packs them into one store).
struct RescaleChunk<G, C, const ACC: bool, const STREAM: bool> {
    e: *const f32,
    g: *mut G,
    len: usize,
    coef: C,
    alpha: f32,
    beta: f32,
}

impl<G: Store32, C: Coef, const ACC: bool, const STREAM: bool> Kernel
    for RescaleChunk<G, C, ACC, STREAM>
{
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let RescaleChunk {
            e,
            g,
            len,
            coef,
            alpha,
            beta,
        } = self;
        let coef = &coef;
        let (av, bv) = (s.splat(alpha), s.splat(beta));
        let lanes = S::LANES;
        // The elements below `vec_end` are computed in vectors, the rest one by one,
        // in both forms: the coefficients of probability targets with smoothing are
        // an `fma` in a vector lane but not in `Scalar`, so the form of an element's
        // arithmetic must not depend on where `g` is aligned.
        let vec_end = len - len % lanes;
        // SAFETY: indices stay below len, within the chunk that `chunk_rescale`'s
        // caller guarantees readable (e) and writable (g); every vector read starts
        // at i with i + LANES ≤ vec_end ≤ len; with STREAM, g + i is aligned to a
        // vector for each streamed i.
        unsafe {
            let mut i = 0;
            if STREAM {
                // Vectors from the first element where `g` is aligned to one; the
                // elements before (`head`) and after the last whole aligned vector
                // come from the vectors at 0 and at `vec_end − LANES`, stored lane by
                // lane, both computed before any streaming store to the chunk (with
                // ACC they read `g`).
                let head = g.align_offset(lanes * size_of::<G>()).min(vec_end);
                let mid = head + (vec_end - head) / lanes * lanes;
                let mut spill = [0.0f32; 16];
                let mut lanes_of = |at: usize, from: usize, to: usize| {
                    let v = rescaled::<S, G, C, ACC>(s, (e, g), at, coef, av, bv);
                    s.write_lanes(v, &mut spill);
                    for j in from..to {
                        Scalar.store(g.add(j), spill[j - at]);
                    }
                };
                if head > 0 {
                    lanes_of(0, 0, head);
                }
                if mid < vec_end {
                    lanes_of(vec_end - lanes, mid, vec_end);
                }
                i = head;
                while i < mid {
                    let v = rescaled::<S, G, C, ACC>(s, (e, g), i, coef, av, bv);
                    s.stream(g.add(i), v);
                    i += lanes;
                }
            } else {
                // f32 stores one vector at a time (the compiler unrolls that loop itself).
                while !G::IS_F32 && i + 2 * lanes <= vec_end {
                    let v0 = rescaled::<S, G, C, ACC>(s, (e, g), i, coef, av, bv);
                    let v1 = rescaled::<S, G, C, ACC>(s, (e, g), i + lanes, coef, av, bv);
                    s.store2(g.add(i), v0, v1);
                    i += 2 * lanes;
                }
                while i < vec_end {
                    let v = rescaled::<S, G, C, ACC>(s, (e, g), i, coef, av, bv);
                    s.store(g.add(i), v);
                    i += lanes;
                }
            }
            for j in vec_end..len {
                let v = rescaled::<Scalar, G, C, ACC>(Scalar, (e, g), j, coef, alpha, beta);
                Scalar.store(g.add(j), v);
            }
        }
    }
}

/// The gradient of a row whose statistics pass stored nothing, written with
/// streaming stores a chunk at a time through an 8 KiB buffer in L1 (for gradients
/// too large for the caches, whose lines are then never read or written before the
/// streaming stores; the caller fences as for [`row_rescale`]). Without a transform
/// each chunk's `exp(x − shift(m_chunk))` is recomputed as [`row_stats_store`]
/// computes it (the same chunks, the same kernel) and rescaled as [`row_rescale`]
/// rescales it; with one, [`chunk_grad`] computes the chunk's f32 gradient. Either
/// way the bits are those of the regular-store path.
///
/// # Safety
/// As [`chunk_grad`] for `n` elements.
#[inline]
pub(crate) unsafe fn row_grad_stream<S: Simd, E: Store32, G: Store32, C: Coef, X: Xform>(
    s: S,
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ms: f32,
    k: GradConsts<f32>,
    accumulate: bool,
) {
    let mut e = [0.0f32; CHUNK];
    let ep = e.as_mut_ptr();
    let mut c0 = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        // SAFETY: [c0, c0 + len) lies within the row, and len ≤ CHUNK within `e`.
        // The exps do not depend on the coefficients; the prefetch ahead of the
        // stores is of `e` itself (in L1), never of the gradient.
        unsafe {
            let (x, g, coef) = (x.add(c0), g.add(c0), coef.offset(c0));
            if X::CHAINED {
                chunk_grad(s, x, ep, len, coef, xf, ms, k, false);
                // `1·v (+ g)` is `v (+ g)` bit for bit (v, computed, is a quiet NaN
                // if it is one, which `1·v` keeps).
                chunk_rescale(s, ep, g, len, NoCoef, (1.0, 0.0), (accumulate, true));
            } else {
                let q = chunk_stats_store::<S, E, f32, NoCoef, X, f32, true>(
                    s, x, ep, len, NoCoef, xf, ep,
                );
                let ab = (chunk_alpha(q.m, ms, k), k.beta);
                chunk_rescale(s, ep, g, len, coef, ab, (accumulate, true));
            }
        }
        c0 += len;
    }
}

/// The gradient constants of a row: `g_j = (α·exp(x̃_j − shift) − β·a_j)·dx̃_j/dx_j`,
/// minus `b·dx̃_y/dx_y` at the target; `V` as for [`RowStats`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GradConsts<V> {
    pub alpha: V,
    pub beta: V,
    pub b: V,
}

/// Writes (or adds) the gradient of `n` contiguous classes.
///
/// # Safety
/// `x` readable and `g` writable for `n` elements (they may be the same memory:
/// every element is read before it is written); `coef` valid for `n` classes.
#[inline]
pub(crate) unsafe fn chunk_grad<S: Simd, E: Store32, G: Store32, C: Coef, X: Xform>(
    s: S,
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ms: f32,
    k: GradConsts<f32>,
    accumulate: bool,
) {
    s.vectorize(ChunkGrad {
        x,
        g,
        n,
        coef,
        xf,
        ms,
        k,
        accumulate,
    })
}

/// The kernel of [`chunk_grad`], with its arguments.
struct ChunkGrad<E, G, C, X> {
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ms: f32,
    k: GradConsts<f32>,
    accumulate: bool,
}

impl<E: Store32, G: Store32, C: Coef, X: Xform> Kernel for ChunkGrad<E, G, C, X> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let ChunkGrad {
            x,
            g,
            n,
            coef,
            xf,
            ms,
            k,
            accumulate,
        } = self;
        // The fields are the arguments of `chunk_grad`, whose caller guarantees its
        // contract for them: the SAFETY comments below rely on it.
        #[inline(always)]
        unsafe fn one<S: Simd, E: Store32, G: Store32, C: Coef, X: Xform>(
            s: S,
            x: *const E,
            g: *mut G,
            i: usize,
            coef: &C,
            xf: &X,
            msv: S::V,
            alpha: S::V,
            beta: S::V,
            accumulate: bool,
        ) {
            // SAFETY: the caller keeps i + LANES within the row.
            unsafe {
                let (xt, d) = xf.apply_d(s, s.load(x.add(i)));
                let mut v = s.mul(alpha, s.exp_small(s.sub(xt, msv)));
                if C::ACTIVE {
                    v = s.sub(v, s.mul(beta, coef.load(s, i)));
                }
                if X::CHAINED {
                    v = s.mul(v, d);
                }
                if accumulate {
                    v = s.add(v, s.load(g.add(i)));
                }
                s.store(g.add(i), v);
            }
        }
        let lanes = S::LANES;
        let body = n - n % lanes;
        let (msv, alpha, beta) = (s.splat(ms), s.splat(k.alpha), s.splat(k.beta));
        let mut i = 0;
        while i < body {
            // SAFETY: i + LANES ≤ body ≤ n.
            unsafe { one(s, x, g, i, &coef, &xf, msv, alpha, beta, accumulate) };
            i += lanes;
        }
        for j in body..n {
            // SAFETY: j < n.
            unsafe { one(Scalar, x, g, j, &coef, &xf, ms, k.alpha, k.beta, accumulate) };
        }
    }
}

/// The gradient of a whole contiguous row, chunk by chunk (so that the `exp` pass
/// works on the part of the row that the previous chunk left in L1).
///
/// # Safety
/// As [`chunk_grad`] for `n` elements.
#[inline]
pub(crate) unsafe fn row_grad<S: Simd, E: Store32, G: Store32, C: Coef, X: Xform>(
    s: S,
    x: *const E,
    g: *mut G,
    n: usize,
    coef: C,
    xf: X,
    ms: f32,
    k: GradConsts<f32>,
    accumulate: bool,
) {
    let mut c0 = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        // SAFETY: [c0, c0 + len) lies within the row.
        unsafe {
            chunk_grad(
                s,
                x.add(c0),
                g.add(c0),
                len,
                coef.offset(c0),
                xf,
                ms,
                k,
                accumulate,
            )
        };
        c0 += len;
    }
}
