//! Every block size of the GEMM engine, in one place (as `gemm-common`'s `cache.rs`).
//!
//! The microkernel's own tile (`MR × NR`, its `k` step) is fixed by its registers
//! and lives with it ([`super::kernels::Kernel`]); what is decided here is how much
//! of `k` one microkernel call covers (`KC`: its `B` panel of `KC × NR` stays in L1
//! or L2 while `MR`-row panels of `A` stream past it) and how the three products of
//! linear cross-entropy split into tasks. Task ranges depend on the shape only, never
//! on the thread count, so that results do not either.

use super::Packed;

/// `k` per microkernel call for `f32` kernels: a `256 × 64` `f32` panel of `B` is
/// 64 KiB (L2), six rows of `A` over it 6 KiB (L1).
pub(crate) const KC_F32: usize = 256;

/// `k` per microkernel call for bf16 kernels: twice `KC_F32` at half the bytes.
pub(crate) const KC_BF16: usize = 512;

/// `k` per call for the `k` range of a product, by kernel type.
pub(crate) fn kc(p: Packed) -> usize {
    match p {
        Packed::F32 => KC_F32,
        Packed::Bf16 => KC_BF16,
    }
}

/// Classes per task of the logits (`h_block·Wᵀ`, split over the classes `W` holds):
/// each task writes its classes of the logits through a `classes × rows` tile of its
/// own (`384 × 128` `f32` = 192 KiB). A multiple of every kernel's `MR` (6 and 32).
pub(crate) const LOGITS_CLASSES: usize = 384;

/// Columns of `dh` per call of the blocked GEMM in `dh_block = G·W`, and per task
/// packing `W` for it: a `KC × 256` block of packed `W` (256 KiB in `f32`, 256 KiB in
/// bf16 at twice the `KC`) stays in L2 while a task's panels of `G` pass it. A
/// multiple of every `NR`.
pub(crate) const DH_COLUMNS: usize = 256;

/// Tasks per range of classes of `dh_block = G·W` (split over the block's rows, in
/// whole kernel panels): few, because each task reads all of the packed `W` range
/// (`KC × D`) from L3, and at least two per core of a two-core machine, so that the
/// pool can balance a core taken by another process.
pub(crate) const DH_ROW_TASKS: usize = 4;

/// Classes (rows of `dW`) per task of `dW += Gᵀ·h_block`: the task copies its
/// classes of `G` transposed (`classes × rows`, 192 KiB for 128 `f32` rows).
pub(crate) const DW_CLASSES: usize = 384;

const _: () = assert!(LOGITS_CLASSES.is_multiple_of(6) && LOGITS_CLASSES.is_multiple_of(32));
const _: () = assert!(DW_CLASSES.is_multiple_of(6) && DW_CLASSES.is_multiple_of(32));
const _: () = assert!(
    DH_COLUMNS.is_multiple_of(64) && KC_F32.is_multiple_of(32) && KC_BF16.is_multiple_of(32)
);
