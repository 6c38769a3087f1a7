//! What a fresh gradient buffer costs on this machine: cross-entropy forward + backward
//! into a buffer kept across calls against the allocating `cross_entropy_with_grad`,
//! next to what the operating system alone charges for a fresh buffer of that size:
//! allocate it, have the kernel fault in and zero every page on all threads
//! (`MADV_POPULATE_WRITE` on each thread's share, Linux 5.14 and later, nothing
//! written from user space) and free it. An allocating call pays that on top of the
//! kernel's own work, less what the two overlap (xent's allocating functions touch
//! the fresh pages first inside the parallel kernel); only a buffer kept across calls
//! avoids it (`cross_entropy_into`, `xent::alloc::HugeBuf`).
//!
//! ```text
//! cargo run --release -p xent --example fresh_pages -- [N] [C] [reps] [threads]
//! ```
//!
//! Defaults: N = 4096, C = 32000 (f32), 7 repetitions of each case in alternation,
//! rayon's default thread count. On Linux it also prints the transparent-huge-page
//! mode and how many huge-page faults succeeded or fell back to 4 KiB pages during
//! the run (`/proc/vmstat`). Times are medians; run it on a quiet machine.

use std::time::Instant;

use rayon::prelude::*;
use xent::{
    cross_entropy_into, cross_entropy_with_grad, ClassIndices, CrossEntropyOptions, GradOut,
    Targets,
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Faults in every page of `buf` on the pool's threads (each a contiguous share) with
/// `MADV_POPULATE_WRITE`: the kernel's page faults and zeroing, no user-space write.
/// `Err` with the OS error where the kernel does not support it.
#[cfg(target_os = "linux")]
fn populate(buf: &mut [f32]) -> std::io::Result<()> {
    const PAGE: usize = 4096;
    let start = (buf.as_mut_ptr() as usize).next_multiple_of(PAGE);
    let end = (buf.as_mut_ptr() as usize + std::mem::size_of_val(buf)) / PAGE * PAGE;
    if end <= start {
        return Ok(());
    }
    let share = (end - start)
        .div_ceil(rayon::current_num_threads())
        .next_multiple_of(2 << 20);
    (start..end).step_by(share).par_bridge().try_for_each(|a| {
        let len = share.min(end - a);
        // SAFETY: [a, a + len) is page-aligned and lies inside `buf`, which we borrow
        // mutably; MADV_POPULATE_WRITE faults its pages in writable and changes no byte.
        let r = unsafe { libc::madvise(a as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    })
}

#[cfg(not(target_os = "linux"))]
fn populate(_buf: &mut [f32]) -> std::io::Result<()> {
    Err(std::io::Error::other("MADV_POPULATE_WRITE is Linux-only"))
}

/// `thp_fault_alloc` and `thp_fault_fallback` from `/proc/vmstat` (zeros elsewhere).
fn thp_faults() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let get = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    (get("thp_fault_alloc"), get("thp_fault_fallback"))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (n, c, reps) = (arg(0, 4096), arg(1, 32000), arg(2, 7).max(1));
    if n == 0 || c == 0 {
        return Err(format!("N and C must be positive, got N = {n}, C = {c}").into());
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(&t) = args.get(3) {
        pool = pool.num_threads(t);
    }
    let pool = pool.build()?;
    let shape = [n, c];
    let len = n.checked_mul(c).ok_or("N·C overflows")?;
    let x: Vec<f32> = (0..len)
        .map(|i| (i.wrapping_mul(2654435761) % 1000) as f32 * 0.01)
        .collect();
    let y: Vec<i64> = (0..n).map(|i| (i.wrapping_mul(7919) % c) as i64).collect();
    let opts = CrossEntropyOptions::<f32>::default();
    let target = || Targets::<f32>::Indices(ClassIndices::from(&y[..]));

    let before = thp_faults();
    let (kept, fresh, floor) = pool.install(|| {
        let mut buf = xent::alloc::zeroed_vec::<f32>("grad", &shape)?;
        let mut loss = [0.0f32];
        let (mut kept, mut fresh, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        // One untimed round first: code, pools and the kept buffer warm.
        for rep in 0..=reps {
            let t = Instant::now();
            cross_entropy_into(
                &x[..],
                &shape,
                target(),
                &opts,
                &mut loss,
                Some(GradOut::new(&mut buf[..])),
            )?;
            std::hint::black_box(&buf);
            let t_kept = ms(t);

            let t = Instant::now();
            let (l, g) = cross_entropy_with_grad(&x[..], &shape, target(), &opts)?;
            std::hint::black_box((&l, &g));
            drop(g);
            let t_fresh = ms(t);

            let t = Instant::now();
            let mut g = xent::alloc::zeroed_vec::<f32>("grad", &shape)?;
            let populated = populate(&mut g);
            std::hint::black_box(&g);
            drop(g);
            let t_floor = populated.map(|()| ms(t));

            if rep > 0 {
                kept.push(t_kept);
                fresh.push(t_fresh);
                floor.push(t_floor);
            }
        }
        let floor: std::io::Result<Vec<f64>> = floor.into_iter().collect();
        Ok::<_, xent::Error>((median(kept), median(fresh), floor.map(median)))
    })?;
    let after = thp_faults();

    let mib = (len * 4) as f64 / (1 << 20) as f64;
    println!(
        "# fresh_pages: ({n}, {c}) f32, gradient {mib:.1} MiB, {} thread(s), transparent \
         huge pages {}, medians of {reps}",
        pool.current_num_threads(),
        xent::alloc::thp_mode().name()
    );
    println!("cross-entropy fwd+bwd, kept buffer     {kept:>9.2} ms");
    println!(
        "cross-entropy fwd+bwd, fresh buffer    {fresh:>9.2} ms   fresh / kept {:.2}",
        fresh / kept
    );
    match floor {
        Ok(floor) => println!(
            "fresh pages alone (fault + zero + free) {floor:>8.2} ms   (kept + that) / kept {:.2}",
            (kept + floor) / kept
        ),
        Err(e) => println!("fresh pages alone: not measured ({e})"),
    }
    println!(
        "huge-page faults during the run: {} taken, {} fell back to 4 KiB pages",
        after.0 - before.0,
        after.1 - before.1
    );
    Ok(())
}
