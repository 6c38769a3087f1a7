//! Runtime instruction-set dispatch: one binary runs AVX-512, AVX2+FMA or scalar code,
//! chosen on the machine it runs on.

use super::simd::{Kernel, Scalar, Simd};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction set the f32 kernels (f32, bf16 and f16 data) are compiled for.
/// `f64` data always runs the portable kernels.
///
/// ```
/// let isa = xent::Isa::best();
/// assert!(isa.is_available());
/// println!("xent kernels run on {}", isa.name());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code (every machine; the twin the vector paths are tested against).
    Scalar,
    /// AVX2 + FMA + F16C, 8 f32 lanes.
    Avx2,
    /// AVX-512F, 16 f32 lanes.
    Avx512,
}

/// Jobs run per instruction set, counted in this crate's unit tests only (so that a
/// test can prove the path it meant to test ran; nothing is counted, and no atomic
/// is touched, in a library build).
#[cfg(test)]
static RUNS: [std::sync::atomic::AtomicU64; 3] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

#[inline(always)]
fn count_run(isa: Isa) {
    #[cfg(test)]
    RUNS[isa.index()].fetch_add(1, Ordering::Relaxed);
    #[cfg(not(test))]
    let _ = isa;
}
/// 0: none forced; 1 + index otherwise.
static FORCED: AtomicU8 = AtomicU8::new(0);

impl Isa {
    const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    fn index(self) -> usize {
        match self {
            Isa::Scalar => 0,
            Isa::Avx2 => 1,
            Isa::Avx512 => 2,
        }
    }

    /// Its name: `scalar`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether the running CPU can execute it.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::simd::Avx2::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::simd::Avx512::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every instruction set the running CPU can execute, best last.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best instruction set of the running CPU (detected once).
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *Isa::available().last().unwrap_or(&Isa::Scalar))
    }

    /// The instruction set the library uses now: [`Isa::best`], unless
    /// [`Isa::force`] chose another.
    pub fn active() -> Isa {
        match FORCED.load(Ordering::Relaxed) {
            0 => Isa::best(),
            k => Isa::ALL[k as usize - 1],
        }
    }

    /// Makes every later call use `isa` (`None`: the best again) — for benchmarks
    /// and comparisons; results differ only by rounding.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the CPU cannot execute `isa`.
    pub fn force(isa: Option<Isa>) -> Result<()> {
        match isa {
            None => FORCED.store(0, Ordering::Relaxed),
            Some(i) if i.is_available() => FORCED.store(i.index() as u8 + 1, Ordering::Relaxed),
            Some(i) => {
                return Err(Error::InvalidArgument {
                    name: "isa",
                    value: i.name().to_string(),
                    expected: "an instruction set this CPU has",
                })
            }
        }
        Ok(())
    }

    /// How many jobs have run on this instruction set in this process (unit tests).
    #[cfg(test)]
    pub(crate) fn runs(self) -> u64 {
        RUNS[self.index()].load(Ordering::Relaxed)
    }
}

impl core::str::FromStr for Isa {
    type Err = Error;
    fn from_str(s: &str) -> Result<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| Error::InvalidArgument {
                name: "isa",
                value: s.to_string(),
                expected: "one of scalar, avx2, avx512",
            })
    }
}

/// A job: driver code over one block of work (loops, layout, the choice of the
/// kernels and their options), generic over the instruction set. [`dispatch`] runs
/// it with the token of the chosen instruction set but outside vector code; the job
/// enters vector code only through its kernels ([`Simd::vectorize`]), so that
/// `#[target_feature]` wraps each kernel and never a whole job.
pub(crate) trait Job {
    /// What the job returns.
    type Out;
    /// The job's body, for the instruction set `s`.
    fn run<S: Simd>(self, s: S) -> Self::Out;
}

/// Runs `job` with the token of `isa`, falling back to scalar code where the CPU
/// lacks `isa`.
pub(crate) fn dispatch<J: Job>(isa: Isa, job: J) -> J::Out {
    #[cfg(target_arch = "x86_64")]
    {
        use super::simd::{Avx2, Avx512};
        if isa == Isa::Avx512 {
            if let Some(s) = Avx512::detect() {
                count_run(Isa::Avx512);
                return job.run(s);
            }
        }
        if isa == Isa::Avx2 || isa == Isa::Avx512 {
            if let Some(s) = Avx2::detect() {
                count_run(Isa::Avx2);
                return job.run(s);
            }
        }
    }
    let _ = isa;
    count_run(Isa::Scalar);
    job.run(Scalar)
}

/// Runs one kernel on `isa` (a job that only enters it).
pub(crate) fn dispatch_kernel<K: Kernel>(isa: Isa, kernel: K) -> K::Out {
    dispatch(isa, Enter(kernel))
}

/// The job of [`dispatch_kernel`].
struct Enter<K>(K);

impl<K: Kernel> Job for Enter<K> {
    type Out = K::Out;
    fn run<S: Simd>(self, s: S) -> K::Out {
        s.vectorize(self.0)
    }
}
