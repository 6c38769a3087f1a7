//! The driver's choice of stores: a gradient streamed past the caches (as one of
//! `STREAM_BYTES` or more is) has the bits of the one written with regular stores,
//! on every instruction set and thread count.

use super::ce::force_stream;
use crate::kernels::dispatch::Isa;
use crate::kernels::tests::FORCING;
use crate::sizes::{LONG_ROW, PIECE};
use crate::{bf16, cross_entropy_into, f16, CrossEntropyOptions, Element, GradMode, GradOut};
use crate::{ClassIndices, Reduction, Targets, DEFAULT_IGNORE_INDEX};

/// One call's per-row losses and gradient, as bits.
type Bits = (Vec<u32>, Vec<u32>);

/// `cross_entropy_into` with `reduction = none` on `threads` threads, the gradient
/// streamed or not, written at element `at` of its buffer (so that rows start at
/// every alignment) over a buffer of known values (for `accumulate`).
fn run<T: Element<Acc = f32>>(
    x: &[T],
    (n, c): (usize, usize),
    target: Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, f32>,
    (accumulate, at): (bool, usize),
    (stream, threads): (bool, usize),
) -> Bits {
    let mut g: Vec<T> = (0..n * c + at)
        .map(|i| T::from_acc((i % 7) as f32 * 0.25 - 0.5))
        .collect();
    let mut loss = vec![0.0f32; n];
    let mode = if accumulate {
        GradMode::Accumulate
    } else {
        GradMode::Overwrite
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        force_stream(Some(stream), || {
            let out = GradOut::new(&mut g[at..]).mode(mode);
            cross_entropy_into(x, &[n, c], target, opts, &mut loss, Some(out)).unwrap();
        })
    });
    let bits = |v: &[T]| v.iter().map(|e| e.to_acc().to_bits()).collect();
    (loss.iter().map(|l| l.to_bits()).collect(), bits(&g[at..]))
}

/// Streamed against regular stores for logits of type `T` on the active instruction
/// set: long rows split across threads (the exps recomputed chunk by chunk; rows
/// below the long-row split never stream); soft-capped and scaled logits (the
/// gradient computed from the logits); rows whose length is not a multiple of a
/// vector, a misaligned buffer, overwritten and accumulated, one thread and two,
/// with and without the linear terms' coefficients, an ignored row.
fn streamed_equals_stored<T: Element<Acc = f32>>(isa: Isa) {
    // Long rows of three pieces, the last a partial one; the second row starts
    // 77 elements after a piece boundary (a debug build takes seconds over them).
    let shapes = [((2, LONG_ROW + 77), &[3][..], &[0, 1, 2, 3][..])];
    const { assert!(LONG_ROW + 77 > 2 * PIECE) };
    for ((n, c), ats, which) in shapes {
        let x: Vec<T> = (0..n * c)
            .map(|i| T::from_acc(((i * 2_654_435_761) % 1000) as f32 * 0.013 - 6.0))
            .collect();
        let mut y: Vec<i64> = (0..n).map(|r| ((r * 7919) % c) as i64).collect();
        y[1] = DEFAULT_IGNORE_INDEX;
        let w: Vec<f32> = (0..c).map(|j| 0.5 + (j % 5) as f32 * 0.25).collect();
        // Probability targets (unnormalized: the kernels take them as given).
        let t: Vec<T> = (0..n * c)
            .map(|i| T::from_acc(((i * 40_503) % 97) as f32 / (97.0 * c as f32)))
            .collect();
        let none = CrossEntropyOptions::default().reduction(Reduction::None);
        let with_terms = CrossEntropyOptions::default()
            .reduction(Reduction::None)
            .label_smoothing(0.1)
            .weight(&w);
        // The gradient pass from the logits (the chain factor of a transform).
        let capped = with_terms.softcap(5.0).logit_scale(1.5);
        // Probability targets with smoothing: their coefficients are an `fma` in a
        // vector lane and not in `Scalar`, so the elements a vector computes must
        // stay the same whatever the gradient's alignment.
        let all = [
            (none, false),
            (with_terms, false),
            (capped, false),
            (with_terms, true),
        ];
        for (oi, (opts, probs)) in which.iter().map(|&i| (i, &all[i])) {
            let target = || match probs {
                true => Targets::Probabilities(&t),
                false => Targets::Indices(ClassIndices::from(&y[..])),
            };
            for accumulate in [false, true] {
                for &at in ats {
                    let what = format!(
                        "{isa:?} {} ({n}, {c}) opts {oi} acc {accumulate} at {at}",
                        core::any::type_name::<T>()
                    );
                    let (xs, shape) = (&x[..], (n, c));
                    let flags = (accumulate, at);
                    let stored = run(xs, shape, target(), opts, flags, (false, 1));
                    for threads in [1, 2] {
                        let streamed = run(xs, shape, target(), opts, flags, (true, threads));
                        assert!(streamed.0 == stored.0, "{what} threads {threads}: losses");
                        let diff = streamed.1.iter().zip(&stored.1).position(|(a, b)| a != b);
                        assert_eq!(diff, None, "{what} threads {threads}: gradient");
                    }
                }
            }
        }
    }
}

#[test]
fn streamed_gradients_equal_stored_ones() {
    // No other test of this binary forces an instruction set meanwhile.
    let _forcing = FORCING.lock().unwrap_or_else(|e| e.into_inner());
    for isa in Isa::available() {
        Isa::force(Some(isa)).unwrap();
        streamed_equals_stored::<f32>(isa);
        streamed_equals_stored::<bf16>(isa);
        streamed_equals_stored::<f16>(isa);
    }
    Isa::force(None).unwrap();
}
