//! The gradient pass of a contiguous row: from the exps its statistics pass stored
//! ([`row_rescale`]), recomputed ([`row_grad`]), or recomputed into an L1 buffer and
//! streamed past the caches ([`row_grad_stream`]).

use super::row::{chunk_stats_store, shift, Coef, GradConsts, NoCoef, Xform};
use super::simd::{Kernel, Scalar, Simd, Store32};
use crate::sizes::{CHUNK, MAX_STORED_CHUNKS};

/// The gradient from stored `e` (see [`row_stats_store`]):
/// `g = α·e·exp(shift(m_chunk) − shift(m)) − β·a` (added to `g` when accumulating),
/// without the target fix-up, with regular stores. `e` may be `g` itself when `G`
/// is `f32`.
///
/// # Safety
/// `e` readable for `n` f32, `g` readable and writable for `n` elements (they may
/// alias when `G` is `f32`); `coef` valid for `n` classes.
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
    accumulate: bool,
) {
    let mut c0 = 0;
    let mut k_chunk = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        // SAFETY: [c0, c0 + len) lies within the row.
        unsafe {
            let (e, g, coef) = (e.add(c0), g.add(c0), coef.offset(c0));
            let alpha = chunk_alpha(chunk_max[k_chunk], ms, k);
            chunk_rescale(s, e, g, len, coef, (alpha, k.beta), (accumulate, false));
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
/// streaming stores; the caller fences ([`Simd::stream_fence`]) before the gradient
/// is handed to another thread). Without a transform each chunk's
/// `exp(x − shift(m_chunk))` is recomputed as [`row_stats_store`] computes it (the
/// same chunks, the same kernel) and rescaled as [`row_rescale`] rescales it; with
/// one, [`chunk_grad`] computes the chunk's f32 gradient. Either
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
                let (q, _) = chunk_stats_store::<S, E, f32, NoCoef, X, f32, true, false>(
                    s,
                    x,
                    ep,
                    len,
                    NoCoef,
                    xf,
                    ep,
                    f32::NEG_INFINITY,
                );
                let ab = (chunk_alpha(q.m, ms, k), k.beta);
                chunk_rescale(s, ep, g, len, coef, ab, (accumulate, true));
            }
        }
        c0 += len;
    }
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
