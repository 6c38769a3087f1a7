//! The AMX microkernel: `32 × 32` of `C` in four `16 × 16` `f32` tiles (`tmm0..3`),
//! two tiles of `A` (16 rows × 32 bf16 each, `tmm4`, `tmm5`, loaded in place with the
//! row stride `lda`) and two of `B` (16 pairs × 16 columns, `tmm6`, `tmm7`, from one
//! packed `32`-column panel: rows 128 bytes apart), four `tdpbf16ps` per 32 of `k`.
//!
//! AMX intrinsics are not stable in Rust; `asm!` is. The tile registers are
//! configured, used and released inside one call (nothing else in the process touches
//! them, and no Rust code runs with a tile configured across a call boundary). Linux
//! hands out the tile data state only on request, once per process:
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`.

use std::arch::asm;

/// Rows of the `C` tile.
pub(crate) const MR: usize = 32;
/// Columns of the `C` tile.
pub(crate) const NR: usize = 32;
/// `k` per step: one tile of `A` holds 32 bf16 per row.
pub(crate) const KSTEP: usize = 32;

/// The tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

static CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Whether the CPU has AMX-BF16 (CPUID leaf 7: AMX-TILE and AMX-BF16) and the OS
/// granted this process the tile data state. Asked once per process.
pub(crate) fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| cpu_has_amx() && request_tile_state())
}

fn cpu_has_amx() -> bool {
    // CPUID exists on every x86-64 CPU; leaf 7 is read only when the maximum leaf
    // (leaf 0's eax) covers it.
    let (max, edx) = {
        let max = std::arch::x86_64::__cpuid(0).eax;
        let edx = if max >= 7 {
            std::arch::x86_64::__cpuid_count(7, 0).edx
        } else {
            0
        };
        (max, edx)
    };
    let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
    max >= 7 && amx_bf16 && amx_tile
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes which extended states
    // this process may use; it reads and writes no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    // Other systems are not asked (nor known to grant it without asking).
    false
}

/// The AMX microkernel (see the module docs).
///
/// # Safety
/// As [`super::MicroFn`] with `MR = NR = 32`, `k` a positive multiple of 32, after
/// [`available`] returned true.
pub(crate) unsafe fn kernel(
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    let lda_b = lda * 2;
    let ldc_b = ldc * 4;
    let ldb_b = NR * 2 * 2; // 32 columns × a pair of bf16
    let steps = k / KSTEP;
    // SAFETY: the tile rows of A, B and C below are the ones the caller's contract
    // covers: A rows 0..32 (two tiles of 16 rows, 64 bytes of k each step), B pairs of
    // rows 0..k/2 of a 32-column panel (64-byte halves of 128-byte rows), C rows
    // 0..32 × 32 f32. The tile state was granted (`available`); the configuration is
    // loaded first and released last, and no other code uses tile registers.
    unsafe {
        let a1 = a.add(16 * lda_b);
        let c1 = c.add(16 * ldc).cast::<u8>();
        let c0 = c.cast::<u8>();
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        if acc {
            asm!(
                "tileloadd tmm0, [{c0} + {ldc}*1]",
                "tileloadd tmm1, [{c0} + {ldc}*1 + 64]",
                "tileloadd tmm2, [{c1} + {ldc}*1]",
                "tileloadd tmm3, [{c1} + {ldc}*1 + 64]",
                c0 = in(reg) c0,
                c1 = in(reg) c1,
                ldc = in(reg) ldc_b,
                options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        asm!(
            "2:",
            "tileloadd tmm4, [{a0} + {lda}*1]",
            "tileloadd tmm5, [{a1} + {lda}*1]",
            "tileloadd tmm6, [{b} + {ldb}*1]",
            "tileloadd tmm7, [{b} + {ldb}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 64",
            "add {a1}, 64",
            "add {b}, 2048",
            "dec {n}",
            "jnz 2b",
            a0 = inout(reg) a => _,
            a1 = inout(reg) a1 => _,
            b = inout(reg) b => _,
            n = inout(reg) steps => _,
            lda = in(reg) lda_b,
            ldb = in(reg) ldb_b,
            options(nostack, readonly),
        );
        asm!(
            "tilestored [{c0} + {ldc}*1], tmm0",
            "tilestored [{c0} + {ldc}*1 + 64], tmm1",
            "tilestored [{c1} + {ldc}*1], tmm2",
            "tilestored [{c1} + {ldc}*1 + 64], tmm3",
            "tilerelease",
            c0 = in(reg) c0,
            c1 = in(reg) c1,
            ldc = in(reg) ldc_b,
            options(nostack),
        );
    }
}
