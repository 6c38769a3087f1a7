//! Throughput of the engine's three products on linear cross-entropy's block shapes,
//! against the `gemm` crate 0.19, and each microkernel's peak on L1-resident data.
//! Not run by `cargo test`; run it in release:
//!
//! ```text
//! cargo test --release -p xent --lib gemm::bench -- --ignored --nocapture
//! ```
//!
//! `XENT_GEMM_BENCH="rows d v"` changes the shape (default `128 1024 32000`).

use super::kernels::{Kernel, Unit};
use super::{round_rows_to_bf16, Gemm, Grad, Packed, Src, View, Workspace};
use half::bf16;
use std::time::Instant;

fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// This process's CPU time in seconds (all threads): on a shared machine it counts
/// the cycles the work took, not the time other processes held the cores.
fn cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The median CPU time per thread of `f` (CPU seconds / threads), `reps` runs.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let threads = rayon::current_num_threads() as f64;
    median(
        (0..reps)
            .map(|_| {
                let (t, c) = (Instant::now(), cpu_s());
                f();
                let _ = t;
                (cpu_s() - c) / threads
            })
            .collect(),
    )
}

fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn bench_products() {
    let shape: Vec<usize> = std::env::var("XENT_GEMM_BENCH")
        .unwrap_or_else(|_| "128 1024 32000".into())
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let (rows, d, v) = (shape[0], shape[1], shape[2]);
    let flops = 2.0 * (rows * d * v) as f64;
    let reps = 5;
    let h = fill(rows * d, 1);
    let w = fill(v * d, 2);
    let g = fill(rows * v, 3);
    let hb: Vec<bf16> = h.iter().map(|&x| bf16::from_f32(x)).collect();
    let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
    let threads = rayon::current_num_threads();
    println!(
        "shape rows={rows} d={d} v={v}, {threads} threads; GFLOP/s per CPU time / threads \\
         (median of {reps}; on a shared machine the CPU time, not the wall time)"
    );

    // Peak of each microkernel: one tile, k = 256, data in L1, one thread.
    for u in Unit::ALL {
        for p in [Packed::F32, Packed::Bf16] {
            let Some(k) = Kernel::get(u, p) else { continue };
            let kk = 256;
            let a = vec![0.5f32; k.mr * kk];
            let b = vec![0.25f32; k.nr * kk];
            let mut c = vec![0.0f32; k.mr * k.nr];
            let calls = if u == Unit::Scalar { 200 } else { 20000 };
            let t = time(3, || {
                for _ in 0..calls {
                    // SAFETY: A holds mr rows of kk (f32, or twice as many bf16),
                    // B a kk × nr panel, C the tile; the unit was checked by `get`.
                    unsafe {
                        k.run(
                            kk,
                            a.as_ptr().cast(),
                            kk,
                            b.as_ptr().cast(),
                            c.as_mut_ptr(),
                            k.nr,
                            true,
                        )
                    };
                }
            });
            let gf = 2.0 * (k.mr * k.nr * kk * calls) as f64 / t * 1e-9;
            println!("peak {k:?}: {gf:.1} GFLOP/s on one core");
        }
    }

    let mut ws = Workspace::default();
    let mut x = vec![0.0f32; rows * v];
    let mut dh = vec![0.0f32; rows * d];
    let mut dw = vec![0.0f32; v * d];
    let row = |name: &str, t: [f64; 3]| {
        let gf = t.map(|t| flops / t * 1e-9);
        println!(
            "{name:<28} logits {:7.1}  dh {:7.1}  dW {:7.1}  (ms {:.1} {:.1} {:.1})",
            gf[0],
            gf[1],
            gf[2],
            t[0] * 1e3,
            t[1] * 1e3,
            t[2] * 1e3
        );
    };
    for (name, logits, grad) in [
        ("engine f32", Packed::F32, Packed::F32),
        ("engine bf16", Packed::Bf16, Packed::Bf16),
        ("engine bf16, G in f32", Packed::Bf16, Packed::F32),
        ("engine bf16 widened", Packed::F32, Packed::F32),
    ] {
        let widened = name.ends_with("widened");
        for lu in Unit::ALL {
            let Some(lk) = Kernel::get(lu, logits) else {
                continue;
            };
            if lu == Unit::Scalar {
                continue;
            }
            let gk = if grad == logits {
                lk
            } else {
                Kernel::best(grad).unwrap()
            };
            let gemm = Gemm {
                logits: lk,
                grad: gk,
            };
            let (hs, wsrc) = match logits {
                Packed::F32 if !widened => (Src::F32(&h), Src::F32(&w)),
                _ => (Src::Bf16(&hb), Src::Bf16(&wb)),
            };
            let tl = time(reps, || {
                gemm.logits(
                    View::new(hs, d, 1),
                    wsrc,
                    None,
                    (rows, d, v),
                    &mut x,
                    &mut ws,
                )
            });
            let mut gbuf = g.clone();
            let grad_v = match grad {
                Packed::F32 => Grad::f32(&g, v),
                Packed::Bf16 => round_rows_to_bf16(&mut gbuf, rows, v),
            };
            let th = time(reps, || {
                gemm.hidden_grad(grad_v, wsrc, (rows, d, v), false, &mut dh)
            });
            let tw = time(reps, || {
                gemm.weight_grad_add(grad_v, View::new(hs, d, 1), (rows, d, v), &mut dw, &mut ws)
            });
            row(&format!("{name} [{lu:?}/{:?}]", gk.unit), [tl, th, tw]);
        }
    }
    let mut gr = vec![0.0f32; rows * v];
    let tr = time(reps, || {
        gr.copy_from_slice(&g);
        round_rows_to_bf16(&mut gr, rows, v);
    });
    let tc = time(reps, || gr.copy_from_slice(&g));
    println!(
        "rounding G to bf16 in place: {:.2} ms (copy alone {:.2} ms)",
        (tr - tc) * 1e3,
        tc * 1e3
    );

    // The gemm crate 0.19, one call per product on all threads.
    let par = gemm::Parallelism::Rayon(threads);
    // Each call: every view lies inside its buffer (the shapes above), the destination
    // is exclusively borrowed and apart from the operands.
    // SAFETY: as said above.
    let tl = time(reps, || unsafe {
        // x (rows × v, row-major) = h (rows × d) · Wᵀ
        gemm::gemm(
            rows,
            v,
            d,
            x.as_mut_ptr(),
            1,
            v as isize,
            false,
            h.as_ptr(),
            1,
            d as isize,
            w.as_ptr(),
            d as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    });
    // SAFETY: as said above.
    let th = time(reps, || unsafe {
        gemm::gemm(
            rows,
            d,
            v,
            dh.as_mut_ptr(),
            1,
            d as isize,
            false,
            g.as_ptr(),
            1,
            v as isize,
            w.as_ptr(),
            1,
            d as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    });
    // SAFETY: as said above.
    let tw = time(reps, || unsafe {
        gemm::gemm(
            v,
            d,
            rows,
            dw.as_mut_ptr(),
            1,
            d as isize,
            true,
            g.as_ptr(),
            v as isize,
            1,
            h.as_ptr(),
            1,
            d as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    });
    row("gemm 0.19 f32 (one call)", [tl, th, tw]);
}
