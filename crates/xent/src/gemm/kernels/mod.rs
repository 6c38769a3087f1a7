//! The microkernels: `C[MR × NR] (+)= A[MR × k] · B[k × NR]`, one function per unit,
//! all with one signature ([`MicroFn`]) and one operand layout per element type, so
//! that the driver and the packing are written once and every kernel can be tested
//! against its scalar twin.
//!
//! Layouts (`k` a multiple of the kernel's `kstep`):
//! - `A`: `MR` rows, element `(i, p)` at `a[i·lda + p]` — the operand in place when
//!   it is `k`-contiguous, or a packed copy;
//! - `B`, `f32`: a panel, element `(p, j)` at `b[p·NR + j]`;
//! - `B`, bf16: a panel of `k/2` pairs of rows, element `(p, j)` at
//!   `b[(p/2)·2·NR + 2·j + p%2]` (the "VNNI" layout `vdpbf16ps` and `tdpbf16ps` read);
//! - `C`: `MR × NR` `f32`, element `(i, j)` at `c[i·ldc + j]`; added to when `acc`,
//!   overwritten otherwise.

use super::Packed;

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// A microkernel: `(k, a, lda, b, c, ldc, acc)` in the layouts of the module docs,
/// `a` and `b` pointing at the kernel's element type (`f32`, or bf16 bits).
///
/// # Safety
/// `a` must be valid for reads of `MR` rows of `k` elements `lda` apart, `b` of a
/// `k × NR` panel, `c` for reads and writes of `MR` rows of `NR` `f32` `ldc` apart;
/// `k` a positive multiple of the kernel's `kstep`; the CPU must have the kernel's unit
/// (checked when the [`Kernel`] was made).
pub(crate) type MicroFn =
    unsafe fn(k: usize, a: *const u8, lda: usize, b: *const u8, c: *mut f32, ldc: usize, acc: bool);

/// The unit a kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Unit {
    /// Portable code: the twin the others are tested against.
    Scalar,
    /// AVX2 + FMA, `f32`.
    Avx2,
    /// AVX-512F, `f32`.
    Avx512,
    /// AVX512-BF16 `vdpbf16ps`, bf16 pairs.
    Avx512Bf16,
    /// AMX `tdpbf16ps` tiles, bf16.
    Amx,
}

impl Unit {
    #[cfg(test)]
    pub(crate) const ALL: [Unit; 5] = [
        Unit::Scalar,
        Unit::Avx2,
        Unit::Avx512,
        Unit::Avx512Bf16,
        Unit::Amx,
    ];

    #[cfg(test)]
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Scalar => "scalar",
            Unit::Avx2 => "avx2",
            Unit::Avx512 => "avx512",
            Unit::Avx512Bf16 => "avx512bf16",
            Unit::Amx => "amx",
        }
    }

    /// The element type the unit multiplies.
    #[cfg(test)]
    pub(crate) fn packed(self) -> Option<Packed> {
        match self {
            Unit::Scalar => None,
            Unit::Avx2 | Unit::Avx512 => Some(Packed::F32),
            Unit::Avx512Bf16 | Unit::Amx => Some(Packed::Bf16),
        }
    }
}

/// Microkernel calls per unit, counted in this crate's unit tests only, so that a
/// test can prove the kernel it meant to test ran.
#[cfg(test)]
pub(crate) static RUNS: [std::sync::atomic::AtomicU64; 5] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 5];

/// A microkernel and its tile.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    pub(crate) unit: Unit,
    pub(crate) packed: Packed,
    pub(crate) mr: usize,
    pub(crate) nr: usize,
    /// `k` of a call is a multiple of this (bf16 pairs, AMX's 32-deep tiles).
    pub(crate) kstep: usize,
    f: MicroFn,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}x{}",
            self.unit.name(),
            self.packed,
            self.mr,
            self.nr
        )
    }
}

impl Kernel {
    /// The kernel of `unit` for elements `packed`, when the running CPU has the unit.
    pub(crate) fn get(unit: Unit, packed: Packed) -> Option<Kernel> {
        let k = |mr, nr, kstep, f| {
            Some(Kernel {
                unit,
                packed,
                mr,
                nr,
                kstep,
                f,
            })
        };
        match (unit, packed) {
            (Unit::Scalar, Packed::F32) => k(4, 16, 1, scalar_f32::<4, 16> as MicroFn),
            (Unit::Scalar, Packed::Bf16) => k(4, 16, 2, scalar_bf16::<4, 16> as MicroFn),
            #[cfg(target_arch = "x86_64")]
            (Unit::Avx2, Packed::F32) if x86::has_avx2() => k(6, 16, 1, x86::avx2_f32 as MicroFn),
            #[cfg(target_arch = "x86_64")]
            (Unit::Avx512, Packed::F32) if x86::has_avx512() => {
                k(6, 64, 1, x86::avx512_f32 as MicroFn)
            }
            #[cfg(target_arch = "x86_64")]
            (Unit::Avx512Bf16, Packed::Bf16) if x86::has_avx512_bf16() => {
                k(6, 64, 2, x86::avx512_bf16 as MicroFn)
            }
            #[cfg(target_arch = "x86_64")]
            (Unit::Amx, Packed::Bf16) if amx::available() => {
                k(amx::MR, amx::NR, amx::KSTEP, amx::kernel as MicroFn)
            }
            _ => None,
        }
    }

    /// The best kernel for `packed` elements on the running CPU: `None` for bf16 on a
    /// CPU without bf16 units (the caller widens to `f32` then).
    pub(crate) fn best(packed: Packed) -> Option<Kernel> {
        let order: &[Unit] = match packed {
            Packed::F32 => &[Unit::Avx512, Unit::Avx2, Unit::Scalar],
            Packed::Bf16 => &[Unit::Amx, Unit::Avx512Bf16],
        };
        order.iter().find_map(|&u| Kernel::get(u, packed))
    }

    /// Runs the microkernel.
    ///
    /// # Safety
    /// As [`MicroFn`], for this kernel's `mr`, `nr` and `kstep`.
    #[inline(always)]
    pub(crate) unsafe fn run(
        &self,
        k: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut f32,
        ldc: usize,
        acc: bool,
    ) {
        debug_assert!(k > 0 && k.is_multiple_of(self.kstep));
        // SAFETY: the caller's contract; the unit was checked in `Kernel::get`.
        unsafe { (self.f)(k, a, lda, b, c, ldc, acc) }
    }
}

/// The scalar `f32` twin.
///
/// # Safety
/// As [`MicroFn`].
unsafe fn scalar_f32<const MR: usize, const NR: usize>(
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    let (a, b) = (a.cast::<f32>(), b.cast::<f32>());
    let mut t = [[0.0f32; NR]; MR];
    for (i, row) in t.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = if acc {
                // SAFETY: (i, j) lies in the C tile (the caller's contract).
                unsafe { *c.add(i * ldc + j) }
            } else {
                0.0
            };
        }
    }
    for p in 0..k {
        for (i, row) in t.iter_mut().enumerate() {
            // SAFETY: row i < MR, p < k lie in A; p·NR + j in the B panel.
            let ai = unsafe { *a.add(i * lda + p) };
            for (j, x) in row.iter_mut().enumerate() {
                // SAFETY: p·NR + j lies in the B panel.
                *x += ai * unsafe { *b.add(p * NR + j) };
            }
        }
    }
    for (i, row) in t.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            // SAFETY: as above.
            unsafe { *c.add(i * ldc + j) = x };
        }
    }
}

/// The scalar bf16 twin: each pair's two exact products added to the `f32` sum one
/// after the other, as `vdpbf16ps` specifies (AMX may round differently; the tests
/// bound the difference).
///
/// # Safety
/// As [`MicroFn`].
unsafe fn scalar_bf16<const MR: usize, const NR: usize>(
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    let (a, b) = (a.cast::<u16>(), b.cast::<u16>());
    let f = |bits: u16| f32::from_bits((bits as u32) << 16);
    let mut t = [[0.0f32; NR]; MR];
    for (i, row) in t.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = if acc {
                // SAFETY: (i, j) lies in the C tile (the caller's contract).
                unsafe { *c.add(i * ldc + j) }
            } else {
                0.0
            };
        }
    }
    for q in 0..k / 2 {
        for (i, row) in t.iter_mut().enumerate() {
            // SAFETY: pair q of row i < MR lies in A, pair q of column j in B.
            let (a0, a1) = unsafe { (f(*a.add(i * lda + 2 * q)), f(*a.add(i * lda + 2 * q + 1))) };
            for (j, x) in row.iter_mut().enumerate() {
                // SAFETY: pair q of column j < NR lies in the B panel.
                let (b0, b1) = unsafe {
                    (
                        f(*b.add(q * 2 * NR + 2 * j)),
                        f(*b.add(q * 2 * NR + 2 * j + 1)),
                    )
                };
                *x += a0 * b0;
                *x += a1 * b1;
            }
        }
    }
    for (i, row) in t.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            // SAFETY: as above.
            unsafe { *c.add(i * ldc + j) = x };
        }
    }
}
