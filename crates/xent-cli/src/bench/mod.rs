//! `xent bench`: throughput of the fused cross-entropy, next to a memory floor
//! measured in the same run.
//!
//! Per case — a shape, a dtype (`f32`, `bf16`) and a pass — the logits are
//! pseudo-random (deterministic, roughly normal with standard deviation 2), the
//! targets uniform class indices, and every buffer is allocated and touched once
//! before timing and reused by every repetition. The passes:
//!
//! - `fwd`: [`xent::cross_entropy_into`] without a gradient (mean loss). Its floor is
//!   a parallel read of the logits (a wrapping sum of their bits).
//! - `fwd_bwd`: the loss and its gradient, in the logits' dtype. Its floor is a
//!   parallel `copy_from_slice` of the logits into a preallocated gradient buffer: the
//!   logits read once, a gradient's worth of bytes written once. The gradient is
//!   - `reuse`: written into that preallocated buffer ([`xent::cross_entropy_into`]),
//!     the fastest path of a training loop;
//!   - `fresh`: returned by [`xent::cross_entropy_with_grad`] in a new buffer (huge
//!     pages when large, see [`xent::alloc`]), allocated, faulted in and freed every
//!     repetition, as a training loop with the allocating API pays;
//!   - `plain` (only on request): a new `vec!` on the plain allocator every
//!     repetition, then `cross_entropy_into`.
//!
//!   `fresh` and `plain` warm up for at least 1 s and time at least 1 s: they report
//!   the steady state of a training loop, not a process's first large allocations
//!   (which can cost several times more).
//!
//! The header names the kernel's transparent-huge-page mode ([`xent::alloc::thp_mode`]):
//! with `never`, `fresh` runs on 4 KiB pages.
//!
//! A repetition runs the kernel and then the floor, on the same rayon pool, so both
//! see the same machine; the report gives the median of each, their ratio and the
//! bytes moved per second (`fwd`: the logits; `fwd_bwd`: the logits and the gradient).
//!
//! Only xent's public API is used; `cargo bench -p xent-cli` runs this same code.

use std::hint::black_box;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use xent::{
    bf16, cross_entropy_stats_into, cross_entropy_with_grad, ClassIndices, CrossEntropyOptions,
    Element, GradOut, RowOutputs,
};
use xent::{Isa, Targets};

mod family;

pub use family::{run_family, FAMILY_ELEMS};

/// The default shapes: `(N, C)` rows and one K-dim input `(N, C, d1, d2)`.
pub const DEFAULT_SHAPES: [&[usize]; 6] = [
    &[65536, 10],
    &[16384, 1000],
    &[4096, 32000],
    &[1024, 128256],
    &[1, 4_000_000],
    &[32, 21, 128, 128],
];

/// A logits dtype the benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `f32` logits and gradient.
    F32,
    /// `bf16` logits and gradient (f32 accumulation, f32 loss).
    Bf16,
}

impl Dtype {
    /// Both, in report order.
    pub const ALL: [Dtype; 2] = [Dtype::F32, Dtype::Bf16];

    /// `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
        }
    }
}

/// A pass the benchmark times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The loss only.
    Fwd,
    /// The loss and its gradient.
    FwdBwd,
}

impl Pass {
    /// Both, in report order.
    pub const ALL: [Pass; 2] = [Pass::Fwd, Pass::FwdBwd];

    /// `fwd` or `fwd_bwd`.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Fwd => "fwd",
            Pass::FwdBwd => "fwd_bwd",
        }
    }

    /// The floor it is compared with: `read` (the logits once) or `copy` (the logits
    /// into the gradient buffer).
    pub fn floor_name(self) -> &'static str {
        match self {
            Pass::Fwd => "read",
            Pass::FwdBwd => "copy",
        }
    }
}

/// How a `fwd_bwd` repetition gets its gradient buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alloc {
    /// One buffer kept across repetitions.
    Reuse,
    /// A new buffer from the allocating API every repetition.
    Fresh,
    /// A new `vec!` on the plain allocator every repetition (not run by default).
    Plain,
}

impl Alloc {
    /// Every mode, in report order.
    pub const ALL: [Alloc; 3] = [Alloc::Reuse, Alloc::Fresh, Alloc::Plain];

    /// `reuse`, `fresh` or `plain`.
    pub fn name(self) -> &'static str {
        match self {
            Alloc::Reuse => "reuse",
            Alloc::Fresh => "fresh",
            Alloc::Plain => "plain",
        }
    }
}

/// What to run and how to report it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Input shapes: `(N, C)` or `(N, C, d1, ..., dk)`.
    pub shapes: Vec<Vec<usize>>,
    /// Logits dtypes.
    pub dtypes: Vec<Dtype>,
    /// Passes.
    pub passes: Vec<Pass>,
    /// Gradient allocations of the `fwd_bwd` pass.
    pub allocs: Vec<Alloc>,
    /// Threads of the rayon pool everything runs in (`None`: rayon's default).
    pub threads: Option<usize>,
    /// The instruction set to force (`None`: the best of this CPU).
    pub isa: Option<Isa>,
    /// Fewer, shorter repetitions.
    pub quick: bool,
    /// One JSON object per line instead of a table.
    pub json: bool,
    /// Ask for every per-row output ([`RowOutputs`]: lse, entropy, argmax, z) in the
    /// `fwd` and `fwd_bwd`/`reuse` cases, into buffers kept across repetitions.
    pub row_outputs: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shapes: DEFAULT_SHAPES.iter().map(|s| s.to_vec()).collect(),
            dtypes: Dtype::ALL.to_vec(),
            passes: Pass::ALL.to_vec(),
            allocs: vec![Alloc::Reuse, Alloc::Fresh],
            threads: None,
            isa: None,
            quick: false,
            json: false,
            row_outputs: false,
        }
    }
}

/// Parses a shape written `4096x32000` (or with commas): at least two dimensions,
/// none of them zero.
pub fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    let dims = s
        .split(['x', 'X', ','])
        .map(|d| d.trim().replace('_', "").parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("shape {s:?}: expected dimensions like 4096x32000"))?;
    if dims.len() < 2 || dims.contains(&0) {
        return Err(format!(
            "shape {s:?}: expected (N, C) or (N, C, d1, ...), no zero dimension"
        ));
    }
    Ok(dims)
}

/// One timed case.
#[derive(Debug, Clone)]
pub struct Record {
    /// The logits' shape.
    pub shape: Vec<usize>,
    /// The logits' dtype.
    pub dtype: Dtype,
    /// The pass.
    pub pass: Pass,
    /// The gradient's allocation (`fwd_bwd` only).
    pub alloc: Option<Alloc>,
    /// The kernel's transparent-huge-page mode.
    pub thp: &'static str,
    /// Median time of the kernel, in milliseconds.
    pub median_ms: f64,
    /// Median time of the floor, in milliseconds.
    pub floor_ms: f64,
    /// Bytes the pass must move: the logits (`fwd`), or the logits and the gradient.
    pub bytes: usize,
    /// Repetitions timed.
    pub reps: usize,
    /// Threads of the pool.
    pub threads: usize,
    /// The instruction set the kernels ran on.
    pub isa: &'static str,
    /// The mean loss (as a check that something was computed).
    pub loss: f32,
    /// Whether every per-row output was asked for.
    pub row_outputs: bool,
}

impl Record {
    /// Kernel time over floor time.
    pub fn ratio(&self) -> f64 {
        self.median_ms / self.floor_ms
    }

    /// Bytes moved per second by the kernel, in GB/s (10^9).
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / (self.median_ms * 1e6)
    }

    /// Bytes moved per second by the floor, in GB/s.
    pub fn floor_gbps(&self) -> f64 {
        self.bytes as f64 / (self.floor_ms * 1e6)
    }

    /// The shape as `4096x32000`.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        dims.join("x")
    }

    /// The record as one line of JSON.
    pub fn json(&self) -> String {
        let round = |v: f64| (v * 1e4).round() / 1e4;
        serde_json::json!({
            "shape": self.shape,
            "dtype": self.dtype.name(),
            "pass": self.pass.name(),
            "alloc": self.alloc.map(Alloc::name),
            "thp": self.thp,
            "median_ms": round(self.median_ms),
            "floor_ms": round(self.floor_ms),
            "floor": self.pass.floor_name(),
            "ratio": round(self.ratio()),
            "gbps": round(self.gbps()),
            "floor_gbps": round(self.floor_gbps()),
            "bytes": self.bytes,
            "reps": self.reps,
            "threads": self.threads,
            "isa": self.isa,
            "loss": self.loss,
            "row_outputs": self.row_outputs,
        })
        .to_string()
    }

    /// The record as a row of the text table.
    pub fn row(&self) -> String {
        format!(
            "{:<18} {:<5} {:<8} {:<5} {:>11.3} {:>10.3} {:<5} {:>6.2} {:>8.1} {:>9.1} {:>5} {:>3} {:<6}",
            self.shape_text(),
            self.dtype.name(),
            self.pass.name(),
            self.alloc.map_or("-", Alloc::name),
            self.median_ms,
            self.floor_ms,
            self.pass.floor_name(),
            self.ratio(),
            self.gbps(),
            self.floor_gbps(),
            self.reps,
            self.threads,
            self.isa,
        )
    }
}

/// The header of the text table.
pub fn header() -> String {
    format!(
        "{:<18} {:<5} {:<8} {:<5} {:>11} {:>10} {:<5} {:>6} {:>8} {:>9} {:>5} {:>3} {:<6}",
        "shape",
        "dtype",
        "pass",
        "alloc",
        "median_ms",
        "floor_ms",
        "floor",
        "ratio",
        "GB/s",
        "floor GB/s",
        "reps",
        "thr",
        "isa"
    )
}

/// Runs every case of `config` and writes each result to `out` as it finishes (a
/// table, or JSON lines); returns the records.
///
/// # Errors
/// A message when the thread pool cannot be built or `config.isa` is not available
/// on this CPU; I/O errors of `out` are returned as they are.
pub fn run(config: &Config, out: &mut (dyn Write + Send)) -> Result<Vec<Record>, Error> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = config.threads {
        builder = builder.num_threads(n);
    }
    let pool = builder
        .build()
        .map_err(|e| Error::Setup(format!("cannot build a thread pool: {e}")))?;
    Isa::force(config.isa).map_err(|e| Error::Setup(e.to_string()))?;
    let result = pool.install(|| run_in_pool(config, out));
    // The forced instruction set is process-wide: leave the process as we found it.
    Isa::force(None).map_err(|e| Error::Setup(e.to_string()))?;
    result
}

/// Why `run` stopped.
#[derive(Debug)]
pub enum Error {
    /// The benchmark could not be set up.
    Setup(String),
    /// Writing the report failed.
    Io(io::Error),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

fn run_in_pool(config: &Config, out: &mut (dyn Write + Send)) -> Result<Vec<Record>, Error> {
    let threads = rayon::current_num_threads();
    if !config.json {
        writeln!(
            out,
            "# xent bench: {threads} thread(s), isa {}, transparent huge pages {}; floor: \
             fwd = parallel read of the logits, fwd_bwd = parallel copy of the logits into \
             the gradient buffer; times are medians",
            Isa::active().name(),
            xent::alloc::thp_mode()
        )?;
        writeln!(out, "{}", header())?;
    }
    let mut records = Vec::new();
    for shape in &config.shapes {
        for &dtype in &config.dtypes {
            let recs = match dtype {
                Dtype::F32 => run_case::<f32>(shape, dtype, config, threads, out)?,
                Dtype::Bf16 => run_case::<bf16>(shape, dtype, config, threads, out)?,
            };
            records.extend(recs);
        }
    }
    Ok(records)
}

/// The element types the benchmark generates and sums.
trait BenchElement: Element<Acc = f32> {
    fn from_f32(v: f32) -> Self;
    /// The raw bits, widened: what the read floor sums.
    fn bits(self) -> u32;
}

impl BenchElement for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn bits(self) -> u32 {
        self.to_bits()
    }
}

impl BenchElement for bf16 {
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn bits(self) -> u32 {
        u32::from(self.to_bits())
    }
}

/// Elements generated per seed: the data do not depend on the thread count.
const GEN_CHUNK: usize = 1 << 16;

/// SplitMix64: small, fast, and good enough for benchmark data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Roughly normal with standard deviation 2: the sum of four uniforms (Irwin–Hall),
    /// centred and scaled.
    fn normalish(&mut self) -> f32 {
        let r = self.next();
        let u = |k: u32| ((r >> (16 * k)) & 0xFFFF) as f32 / 65536.0;
        (u(0) + u(1) + u(2) + u(3) - 2.0) * (2.0 * 3.0f32.sqrt())
    }
}

fn logits<T: BenchElement>(len: usize, seed: u64) -> Vec<T> {
    let mut x: Vec<T> = Vec::with_capacity(len);
    x.spare_capacity_mut()
        .par_chunks_mut(GEN_CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut rng = SplitMix(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            for v in chunk {
                v.write(T::from_f32(rng.normalish()));
            }
        });
    // SAFETY: every element of the spare capacity was written just above.
    unsafe { x.set_len(len) };
    x
}

fn targets(rows: usize, classes: usize, seed: u64) -> Vec<i64> {
    let mut rng = SplitMix(seed);
    (0..rows)
        .map(|_| (rng.next() % classes as u64) as i64)
        .collect()
}

/// Chunk length for per-thread pieces of a floor pass: one piece per thread.
fn floor_chunk(len: usize, threads: usize) -> usize {
    len.div_ceil(threads.max(1)).max(1)
}

fn read_floor<T: BenchElement>(x: &[T], chunk: usize) -> u32 {
    x.par_chunks(chunk)
        .map(|c| c.iter().fold(0u32, |a, v| a.wrapping_add(v.bits())))
        .reduce(|| 0, u32::wrapping_add)
}

fn copy_floor<T: BenchElement>(x: &[T], dst: &mut [T], chunk: usize) {
    dst.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// How long and how often to repeat.
#[derive(Clone)]
struct Plan {
    warmup: Duration,
    min_time: Duration,
    min_reps: usize,
    max_reps: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                warmup: Duration::ZERO,
                min_time: Duration::from_millis(20),
                min_reps: 3,
                max_reps: 50,
            }
        } else {
            Plan {
                warmup: Duration::from_millis(100),
                min_time: Duration::from_millis(500),
                min_reps: 5,
                max_reps: 2000,
            }
        }
    }

    /// The plan for a case that allocates its gradient every repetition: a warm-up
    /// of at least 1 s and the timing of at least 1 s (unless `--quick`). A process's
    /// first large allocations can cost several times the steady state (115–340 ms
    /// each against 70–75 ms for a 500 MiB gradient on a 2-core VM), while a training
    /// loop pays the steady state at every step.
    fn allocating(&self) -> Plan {
        let mut plan = self.clone();
        if plan.warmup > Duration::ZERO {
            plan.warmup = plan.warmup.max(Duration::from_secs(1));
            plan.min_time = plan.min_time.max(Duration::from_secs(1));
        }
        plan
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `kernel` and `floor` alternately; returns their medians (ms) and the reps.
fn measure(plan: &Plan, mut kernel: impl FnMut(), mut floor: impl FnMut()) -> (f64, f64, usize) {
    let start = Instant::now();
    loop {
        kernel();
        floor();
        if start.elapsed() >= plan.warmup {
            break;
        }
    }
    let (mut ks, mut fs) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while ks.len() < plan.max_reps && (ks.len() < plan.min_reps || start.elapsed() < plan.min_time)
    {
        let t = Instant::now();
        kernel();
        ks.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        floor();
        fs.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let reps = ks.len();
    (median(ks), median(fs), reps)
}

fn run_case<T: BenchElement>(
    shape: &[usize],
    dtype: Dtype,
    config: &Config,
    threads: usize,
    out: &mut (dyn Write + Send),
) -> Result<Vec<Record>, Error> {
    let len: usize = shape.iter().product();
    let classes = shape[1];
    let rows = len / classes;
    let seed = shape.iter().fold(0x5EED_u64, |h, &d| {
        h.wrapping_mul(31).wrapping_add(d as u64)
    });
    let x = logits::<T>(len, seed);
    let y = targets(rows, classes, seed ^ 0xA5A5);
    let mut grad = logits::<T>(len, seed ^ 1);
    let opts = CrossEntropyOptions::<f32>::default();
    let mut loss = [0.0f32];
    let chunk = floor_chunk(len, threads);
    let plan = Plan::new(config.quick);
    let elem = std::mem::size_of::<T>();
    let target = || Targets::<T>::Indices(ClassIndices::from(&y[..]));
    // The per-row outputs, when asked for: kept across repetitions like `grad`.
    let mut outs = RowBuffers::new(rows, config.row_outputs);
    let mut ce_into =
        |x: &[T], target: Targets<'_, T>, loss: &mut [f32], g: Option<GradOut<'_, T>>| {
            cross_entropy_stats_into(x, shape, target, &opts, loss, g, outs.outputs())
        };

    // Validate once, outside the timed region (a repetition cannot fail after this).
    let checked = ce_into(
        &x[..],
        target(),
        &mut loss,
        Some(GradOut::new(&mut grad[..])),
    );
    if let Err(e) = checked {
        return Err(Error::Setup(format!(
            "shape {shape:?} {}: {e}",
            dtype.name()
        )));
    }

    let mut records = Vec::new();
    let mut cases = Vec::new();
    for &pass in &config.passes {
        match pass {
            Pass::Fwd => cases.push((pass, None)),
            Pass::FwdBwd => cases.extend(config.allocs.iter().map(|&a| (pass, Some(a)))),
        }
    }
    for (pass, alloc) in cases {
        let mut failure = None;
        let (median_ms, floor_ms, reps, bytes) = match (pass, alloc) {
            (Pass::Fwd, _) => {
                let (k, f, r) = measure(
                    &plan,
                    || {
                        if let Err(e) = ce_into(
                            black_box(&x[..]),
                            target(),
                            &mut loss,
                            None::<GradOut<'_, T>>,
                        ) {
                            failure = Some(e);
                        }
                        black_box(&loss);
                    },
                    || {
                        black_box(read_floor(black_box(&x[..]), chunk));
                    },
                );
                (k, f, r, len * elem)
            }
            (Pass::FwdBwd, alloc) => {
                // The floor writes into the kept gradient buffer (no third buffer);
                // `reuse` writes there too.
                let grad = std::cell::RefCell::new(&mut grad[..]);
                let plan = match alloc {
                    Some(Alloc::Fresh | Alloc::Plain) => plan.allocating(),
                    _ => plan.clone(),
                };
                let (k, f, r) = measure(
                    &plan,
                    || {
                        let result = match alloc.unwrap_or(Alloc::Reuse) {
                            Alloc::Reuse => {
                                let mut g = grad.borrow_mut();
                                ce_into(
                                    black_box(&x[..]),
                                    target(),
                                    &mut loss,
                                    Some(GradOut::new(&mut g[..])),
                                )
                                .map(|_| ())
                            }
                            // The buffer is freed inside the repetition, as a training
                            // step frees the previous step's gradient.
                            Alloc::Fresh => {
                                cross_entropy_with_grad(black_box(&x[..]), shape, target(), &opts)
                                    .map(|(l, g)| {
                                        loss[0] = l.item().unwrap_or(f32::NAN);
                                        black_box(&g);
                                    })
                            }
                            Alloc::Plain => {
                                let mut g = vec![T::from_f32(0.0); len];
                                let r = ce_into(
                                    black_box(&x[..]),
                                    target(),
                                    &mut loss,
                                    Some(GradOut::new(&mut g[..])),
                                );
                                black_box(&g);
                                r.map(|_| ())
                            }
                        };
                        if let Err(e) = result {
                            failure = Some(e);
                        }
                        black_box(&loss);
                    },
                    || {
                        let mut g = grad.borrow_mut();
                        copy_floor(black_box(&x[..]), &mut g[..], chunk);
                        black_box(&g[..]);
                    },
                );
                (k, f, r, 2 * len * elem)
            }
        };
        if let Some(e) = failure {
            return Err(Error::Setup(format!(
                "shape {shape:?} {} {}: {e}",
                dtype.name(),
                pass.name()
            )));
        }
        let record = Record {
            shape: shape.to_vec(),
            dtype,
            pass,
            alloc,
            thp: xent::alloc::thp_mode().name(),
            median_ms,
            floor_ms,
            bytes,
            reps,
            threads,
            isa: Isa::active().name(),
            loss: loss[0],
            row_outputs: config.row_outputs,
        };
        if config.json {
            writeln!(out, "{}", record.json())?;
        } else {
            writeln!(out, "{}", record.row())?;
        }
        out.flush()?;
        records.push(record);
    }
    Ok(records)
}

/// The per-row output buffers of a case with `--row-outputs`.
struct RowBuffers {
    lse: Vec<f32>,
    entropy: Vec<f32>,
    z: Vec<f32>,
    argmax: Vec<i64>,
    on: bool,
}

impl RowBuffers {
    fn new(rows: usize, on: bool) -> Self {
        let n = if on { rows } else { 0 };
        RowBuffers {
            lse: vec![0.0; n],
            entropy: vec![0.0; n],
            z: vec![0.0; n],
            argmax: vec![0; n],
            on,
        }
    }

    /// Every output when asked for, else none.
    fn outputs(&mut self) -> RowOutputs<'_, f32> {
        if !self.on {
            return RowOutputs::new();
        }
        RowOutputs::new()
            .lse(&mut self.lse)
            .entropy(&mut self.entropy)
            .z(&mut self.z)
            .argmax(&mut self.argmax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocating_cases_warm_up_and_time_for_a_second_unless_quick() {
        let full = Plan::new(false).allocating();
        assert_eq!(full.warmup, Duration::from_secs(1));
        assert_eq!(full.min_time, Duration::from_secs(1));
        let quick = Plan::new(true).allocating();
        assert_eq!(quick.warmup, Duration::ZERO);
        assert_eq!(quick.min_time, Plan::new(true).min_time);
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("4096x32000"), Ok(vec![4096, 32000]));
        assert_eq!(parse_shape("1x4_000_000"), Ok(vec![1, 4_000_000]));
        assert_eq!(parse_shape("32,21,128,128"), Ok(vec![32, 21, 128, 128]));
        assert!(parse_shape("10").is_err());
        assert!(parse_shape("0x10").is_err());
        assert!(parse_shape("ax10").is_err());
    }

    #[test]
    fn logits_do_not_depend_on_threads() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let a: Vec<f32> = one.install(|| logits(3 * GEN_CHUNK + 5, 7));
        let b: Vec<f32> = three.install(|| logits(3 * GEN_CHUNK + 5, 7));
        assert_eq!(a, b);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / a.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.1,
            "{mean} {var}"
        );
    }

    #[test]
    fn floors_read_and_copy_everything() {
        let x: Vec<f32> = (0..1001).map(|i| i as f32).collect();
        let mut d = vec![0.0f32; x.len()];
        copy_floor(&x, &mut d, floor_chunk(x.len(), 3));
        assert_eq!(x, d);
        let want = x.iter().fold(0u32, |a, v| a.wrapping_add(v.to_bits()));
        assert_eq!(read_floor(&x, floor_chunk(x.len(), 3)), want);
    }
}
