//! What bounds a long-row cross-entropy on this machine: the memory system's rates
//! for the access patterns the kernels use, next to xent's own rate on data that
//! sits in cache (its compute rate) and in memory.
//!
//! ```text
//! cargo run --release -p xent --example mem_probe -- [MiB] [reps]
//! ```
//!
//! Defaults: 256 MiB per buffer (far beyond any L3), 5 repetitions, medians. With 1
//! and 2 threads (each a contiguous share), 256-bit AVX loads and stores:
//! - `read`: sum the buffer (the forward's floor);
//! - `write` / `write_nt`: fill the buffer with regular / non-temporal stores;
//! - `copy` / `copy_nt`: read one buffer, write the other (the fwd+bwd floor of
//!   `xent bench`), regular / non-temporal stores;
//! - `rmw`: scale the buffer in place (read and write back the same lines);
//! - `x→g, rmw g`: the stored-exp fwd+bwd pattern of a row that does not fit in
//!   cache: read `x`, write `g`, then read and write `g` again.
//!
//! GB/s counts the bytes the program asks for (a copy: read + write), not the
//! extra read for ownership that a regular store of a line not in cache costs (a
//! write-allocate): that is what the non-temporal rows show. Then xent itself: f32
//! `cross_entropy_into` forward (mean, class indices) and forward + backward (into a
//! kept buffer) on 8 × 4000 logits (128 KiB, in L2: the compute rate) and on
//! 1024 × 32000 (128 MiB, in memory), in G logits per second, with 1 and 2 threads.
//! A forward at the read floor reads 4 bytes a logit; fwd+bwd at the copy floor moves 8.

use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of `f`, median of `reps` runs after one warm-up.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

#[cfg(target_arch = "x86_64")]
mod bw {
    //! The bandwidth loops, 32 floats (four 256-bit vectors) per step.
    use core::arch::x86_64::*;

    /// The access patterns measured.
    #[derive(Clone, Copy, Debug)]
    pub enum Op {
        Read,
        Write,
        WriteNt,
        Copy,
        CopyNt,
        Rmw,
    }

    /// Runs `op` over `a` (and `b`, the destination of a copy); returns a sum so that
    /// reads are not optimized away.
    ///
    /// # Safety
    /// AVX available; `a` and `b` 32-byte aligned, lengths multiples of 32.
    #[target_feature(enable = "avx")]
    pub unsafe fn run(op: Op, a: &mut [f32], b: &mut [f32]) -> f32 {
        let n = a.len() / 32 * 32;
        let (pa, pb) = (a.as_mut_ptr(), b.as_mut_ptr());
        // SAFETY: every index i + 24 + 8 ≤ n ≤ a.len() (and b.len() for a copy, which
        // the caller sizes alike); pointers 32-byte aligned for the streaming stores.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 4];
            let k = _mm256_set1_ps(1.0000001);
            let mut i = 0;
            while i < n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    let p = pa.add(i + 8 * u);
                    let q = pb.add(i + 8 * u);
                    match op {
                        Op::Read => *acc = _mm256_add_ps(*acc, _mm256_load_ps(p)),
                        Op::Write => _mm256_store_ps(p, k),
                        Op::WriteNt => _mm256_stream_ps(p, k),
                        Op::Copy => _mm256_store_ps(q, _mm256_load_ps(p)),
                        Op::CopyNt => _mm256_stream_ps(q, _mm256_load_ps(p)),
                        Op::Rmw => _mm256_store_ps(p, _mm256_mul_ps(k, _mm256_load_ps(p))),
                    }
                }
                i += 32;
            }
            _mm_sfence();
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut out = [0.0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), s);
            out.iter().sum()
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn bandwidth(mib: usize, reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    use bw::Op;
    if !is_x86_feature_detected!("avx") {
        return Err("the bandwidth loops need AVX".into());
    }
    let n = (mib << 20) / 4 / 1024 * 1024;
    let mut a_buf = xent::alloc::zeroed_vec::<f32>("a", &[n + 8])?;
    let mut b_buf = xent::alloc::zeroed_vec::<f32>("b", &[n + 8])?;
    // 32-byte aligned views of n floats (the allocator aligns f32 to 4 bytes).
    let a_off = a_buf.as_ptr().align_offset(32);
    let b_off = b_buf.as_ptr().align_offset(32);
    let a = &mut a_buf[a_off..a_off + n];
    let b = &mut b_buf[b_off..b_off + n];
    a.iter_mut().for_each(|v| *v = 1.0);
    b.iter_mut().for_each(|v| *v = 1.0);
    // Bytes the program moves per element of `a`.
    let cases: [(&str, &[Op], f64); 7] = [
        ("read", &[Op::Read], 4.0),
        ("write", &[Op::Write], 4.0),
        ("write_nt", &[Op::WriteNt], 4.0),
        ("copy", &[Op::Copy], 8.0),
        ("copy_nt", &[Op::CopyNt], 8.0),
        ("rmw", &[Op::Rmw], 8.0),
        ("x→g, rmw g", &[Op::Copy, Op::Rmw], 16.0),
    ];
    println!("# memory: {mib} MiB buffers, medians of {reps}; GB/s of the bytes asked for");
    println!(
        "{:<12} {:>10} {:>10} {:>10}",
        "pattern", "1 thr GB/s", "2 thr GB/s", "2thr ms"
    );
    for (name, ops, bytes) in cases {
        let mut row = Vec::new();
        for threads in [1usize, 2] {
            let share = (n / threads).div_ceil(1024) * 1024;
            let secs = time(reps, || {
                std::thread::scope(|scope| {
                    for (ca, cb) in a.chunks_mut(share).zip(b.chunks_mut(share)) {
                        scope.spawn(move || {
                            for &op in ops {
                                // The rmw of the second pass works on `b`, the copy's
                                // destination (the gradient).
                                let (x, y) = match op {
                                    Op::Rmw if ops.len() > 1 => (&mut *cb, &mut *ca),
                                    _ => (&mut *ca, &mut *cb),
                                };
                                // SAFETY: AVX checked above; the chunks start at
                                // multiples of 1024 floats of 32-byte aligned buffers.
                                std::hint::black_box(unsafe { bw::run(op, x, y) });
                            }
                        });
                    }
                })
            });
            row.push((n as f64 * bytes / secs / 1e9, secs * 1e3));
        }
        println!(
            "{:<12} {:>10.1} {:>10.1} {:>10.1}",
            name, row[0].0, row[1].0, row[1].1
        );
    }
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
fn bandwidth(_mib: usize, _reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    println!("# memory: the bandwidth loops are x86-64 only");
    Ok(())
}

/// xent's f32 cross-entropy rate (G logits/s) on `n × c`, forward and fwd+bwd.
fn xent_rate(
    n: usize,
    c: usize,
    threads: usize,
    reps: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    use xent::{cross_entropy_into, ClassIndices, CrossEntropyOptions, GradOut, Targets};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let shape = [n, c];
    let x: Vec<f32> = (0..n * c)
        .map(|i| (i.wrapping_mul(2654435761) % 1000) as f32 * 0.01)
        .collect();
    let y: Vec<i64> = (0..n).map(|i| (i.wrapping_mul(7919) % c) as i64).collect();
    let opts = CrossEntropyOptions::<f32>::default();
    let target = || Targets::<f32>::Indices(ClassIndices::from(&y[..]));
    let mut g = xent::alloc::zeroed_vec::<f32>("grad", &shape)?;
    let mut loss = [0.0f32];
    // Small shapes repeat inside one timing so that it lasts about a millisecond.
    let inner = (1 << 20) / (n * c) + 1;
    pool.install(|| -> Result<(f64, f64), xent::Error> {
        let mut err = None;
        let fwd = time(reps, || {
            for _ in 0..inner {
                if let Err(e) = cross_entropy_into(&x[..], &shape, target(), &opts, &mut loss, None)
                {
                    err = Some(e);
                }
            }
        });
        let bwd = time(reps, || {
            for _ in 0..inner {
                let grad = Some(GradOut::new(&mut g[..]));
                if let Err(e) = cross_entropy_into(&x[..], &shape, target(), &opts, &mut loss, grad)
                {
                    err = Some(e);
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let elems = (n * c * inner) as f64;
        Ok((elems / fwd / 1e9, elems / bwd / 1e9))
    })
    .map_err(Into::into)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let mib = args.first().copied().unwrap_or(256).max(1);
    let reps = args.get(1).copied().unwrap_or(5).max(1);
    bandwidth(mib, reps)?;
    println!("# xent f32 cross_entropy_into, isa {}: G logits/s (fwd at the read floor: GB/s ÷ 4; fwd+bwd at the copy floor: GB/s ÷ 8)", xent::Isa::active().name());
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8}",
        "shape", "fwd 1t", "fwd 2t", "f+b 1t", "f+b 2t"
    );
    for (n, c) in [(8, 4000), (1024, 32000)] {
        let (f1, b1) = xent_rate(n, c, 1, reps)?;
        let (f2, b2) = xent_rate(n, c, 2, reps)?;
        println!(
            "{:<22} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            format!("{n}x{c}"),
            f1,
            f2,
            b1,
            b2
        );
    }
    Ok(())
}
