//! Block sizes and path thresholds, in one place (as `gemm-common`'s `cache.rs`
//! keeps the GEMM's): the driver's blocks and tasks, the kernels' chunks, tiles and
//! path choices, and linear cross-entropy's GEMM tasks. Each says what it is sized
//! for and what measured it. This file imports nothing: every layer reads it.

/// Elements per block of rows: enough work per task, little enough to stay in L2.
pub(crate) const BLOCK_ELEMS: usize = 1 << 15;

/// Rows with at least this many classes are split across threads.
pub(crate) const LONG_ROW: usize = 1 << 17;
// Rows below LONG_ROW take the block path, whose stored-exp pass keeps one max per chunk.
const _: () = assert!(LONG_ROW <= MAX_STORED_CHUNKS * CHUNK);

/// Classes per piece of a long row.
pub(crate) const PIECE: usize = 32 * CHUNK;
const _: () = assert!(PIECE <= MAX_STORED_CHUNKS * CHUNK);

/// Elements per task: enough work per task, the rows' logits within L2.
pub(crate) const TASK_ELEMS: usize = 1 << 15;

/// Elements per block of the elementwise losses: blocks are the unit of parallel
/// work and of the batch sum, so their boundaries depend only on the element count.
pub(crate) const ELEMENTWISE_BLOCK: usize = 1 << 14;

/// Bytes per cache line, the prefetch granularity.
pub(crate) const CACHE_LINE: usize = 64;

/// Classes per chunk: 8 KiB of f32, so that pass B reads the chunk from L1.
pub(crate) const CHUNK: usize = 2048;

/// Rows short enough for [`row_stats_store`](crate::kernels::row::row_stats_store): at most this many chunks.
pub(crate) const MAX_STORED_CHUNKS: usize = 64;

/// Gradients of at least this many bytes are written past the caches where a kernel
/// can (see [`Block::stream`](crate::kernels::plan::Block::stream)); the L3 caches of the machines we measure hold 32 MiB.
pub(crate) const STREAM_BYTES: usize = 16 << 20;

/// Tiles whose class rows are at least this many lanes go back with streaming
/// stores when [`Block::stream`](crate::kernels::plan::Block::stream) is set (shorter runs would leave lines partly written).
pub(crate) const STREAM_LANES: usize = 256;

/// Lanes per K-dim tile: class-major tiles of `C` classes × at most 2048 lanes. A lane
/// unit walks its classes at the tile's stride, which keeps its working set (a line
/// per class) in L1 even where `inner` makes the classes alias in the cache (a 64 KiB
/// stride puts every class of a row in the same L1 and L2 set). The tile itself is
/// sized for long runs per class, which the hardware prefetchers and the memory
/// follow, rather than for L2: 96-lane tiles made the K-dim benchmark (C = 21) ~15 %
/// slower than 2048-lane ones, and with 40 Ki-element tiles (within L2) C = 150, 300
/// and 1000 were 1.2–1.7× slower than with the 160 Ki-element tiles used now (about
/// 1100, 540 and 160 lanes; see BENCHMARKS.md, design note "K-dim inputs").
pub(crate) fn tile_lanes(classes: usize) -> usize {
    ((TILE_ELEMS / classes.max(1)) / 16 * 16).clamp(16, 2048)
}

/// The f32 elements of a K-dim tile (640 KiB), within [`tile_lanes`]' clamp.
pub(crate) const TILE_ELEMS: usize = 160 * 1024;

/// The distance between a K-dim tile's classes, in f32: at least `tw`, and an odd
/// number of 64-byte lines so that the classes of a lane fall in different L1 sets.
pub(crate) fn tile_stride(tw: usize) -> usize {
    let lines = tw.div_ceil(16);
    16 * (lines | 1)
}

/// Whether K-dim rows of this many classes are gathered into contiguous rows for the
/// row kernels ([`Block::kdim_rows`](crate::kernels::plan::Block::kdim_rows)) rather than run through the lane tiles: above
/// `TILE_ELEMS / 32` classes the tiles are down to their 16 lanes, a line per class,
/// and a lane unit's three walks over all C lines no longer stay in cache (against
/// a first gather of 8 rows at a time, C = 8192 and 32000 took 1.8–1.9× as long
/// through the tiles, and C = 2048, with 80-lane tiles, 1.3× as long through the
/// rows; see BENCHMARKS.md, design note "K-dim inputs"). Rows of [`LONG_ROW`] classes or
/// more stay on the tiles (the row kernels' stored-exp pass keeps one max per chunk,
/// for shorter rows only).
pub(crate) fn kdim_as_rows(classes: usize) -> bool {
    classes > TILE_ELEMS / 32 && classes < MAX_STORED_CHUNKS * CHUNK
}

/// K-dim rows gathered into contiguous ones go [`KDIM_GROUP`] lanes at a time: a
/// whole 64-byte line of f32 logits per class.
pub(crate) const KDIM_GROUP: usize = 16;

/// Rows of at most this many classes are transposed into tiles
/// ([`Block::small_rows`](crate::kernels::plan::Block::small_rows)): per-row overhead
/// would dominate them otherwise.
pub(crate) const SMALL_C: usize = 32;

/// The f32 scratch a block of this shape needs: a row's stored `exp` for contiguous
/// rows, three K-dim tiles (logits, targets, gradient), or for K-dim rows gathered
/// into contiguous ones three groups of [`KDIM_GROUP`] rows and a row's stored `exp`.
pub(crate) fn scratch_len(classes: usize, inner: usize) -> usize {
    if inner > 1 && kdim_as_rows(classes) {
        (3 * KDIM_GROUP + 1) * classes
    } else if inner > 1 {
        3 * classes * tile_stride(tile_lanes(classes))
    } else if classes > SMALL_C {
        classes
    } else {
        0
    }
}

/// The most rows a block takes, whatever the budget. Each block reads `W` twice and
/// reads and writes `dW` once (`2·B` flops per byte of `dW`), so more rows mean less
/// memory traffic, but a larger block of logits. For `N = 4096, D = 1024, V = 32000`
/// (f32, 2 threads) the call's peak added memory measured 18.7 MiB, 3.7% of the
/// unfused form's `N × V` logits, with 128 rows: the 15.6 MiB block of logits, 0.5 MiB
/// of per-thread tiles, 0.5 MiB of column-major `h_block`, 0.5 MiB of `gemm`'s
/// per-thread packing buffers, 0.3 MiB of the fused kernel's per-thread work rows and
/// about 1 MiB of code paged in. 160 rows measured 4.5% and ran no faster (6.7 s
/// against 6.3 s); for `V = 128256`, 128 rows are 3.3%.
pub(crate) const MAX_BLOCK_ROWS: usize = 128;

/// Classes of a half-precision `W` widened to `f32` at a time (per thread): 1 MiB for
/// `D = 1024`. With it, and blocks of at most `MAX_BLOCK_ROWS / 2` rows (the block's
/// logits are `f32`, twice the inputs' width), bf16 inputs add the same fraction of
/// their own (bf16) logits as `f32` inputs do.
pub(crate) const WIDEN_CLASSES: usize = 256;

/// Classes per task of the logits GEMM. `gemm` wants its destination column-major and
/// packs (transposes, element by element) whichever operand is not: with the block's
/// logits row-major, that was all of `W` for every block, a third of the GEMM's time.
/// A task instead computes `h_block·W_cᵀ` column-major into its thread's `B × 512`
/// tile — `W_c` is then read in place and only `h_block` is packed, once per task —
/// and transposes it into the logits rows. 512 rather than 1024 halves the tiles
/// (`threads · B · 512` elements) for one more packing of `h_block` per 512 classes
/// (`B·D` copies against `2·B·D·512` flops).
pub(crate) const X_CLASS_CHUNK: usize = 512;

/// The rows of the logits GEMM are padded to a multiple of this. `gemm` allocates a
/// buffer per call to pack the whole left operand at once when it is not column-major
/// or its row count is not a multiple of the SIMD width (at most 16 elements), and
/// otherwise packs it piece by piece into a per-thread buffer that it keeps; so
/// `h_block` goes in column-major (copied, `B·D` elements per block) and padded.
pub(crate) const LHS_ROW_ALIGN: usize = 16;

/// Columns of `dh_block = G·W` per task: each task packs its own columns of `W`, so
/// `W` is packed once per block (a GEMM split across threads by `gemm` itself packed it
/// once per thread).
pub(crate) const DH_COL_CHUNK: usize = 256;

/// Classes (rows of `dW`) per task of `dW += Gᵀ·h_block`: enough work per task, and
/// the task's copy of `classes × B` values of `G` fits in the logits tile's scratch.
pub(crate) const DW_CLASS_CHUNK: usize = 512;
const _: () = assert!(DW_CLASS_CHUNK <= X_CLASS_CHUNK);

/// Columns of `dW` per `gemm` call of a `dW` task: `gemm` packs (in a new allocation)
/// a right operand that is contiguous along `k` when the output has more than
/// `128·MR` rows in its column-major view (`MR` ≥ 4 on x86-64), here `dW`'s columns.
pub(crate) const DW_COL_CHUNK: usize = 512;

/// Columns per task of `db += Σ_rows G`: every column is summed in row order by one
/// task, whatever the thread count.
pub(crate) const DB_COL_CHUNK: usize = 4096;

/// Rows per block `B`: the most with `B·(V + D)` elements (the block's logits and its
/// hidden states, column-major) within the budget, at most `max_rows`
/// ([`MAX_BLOCK_ROWS`] scaled by the inputs' width over the logits'), at least 1, and
/// a multiple of [`LHS_ROW_ALIGN`] when that many fit; 0 when there are no rows, so
/// that an empty batch allocates nothing (its `D` may be anything). The thread count
/// does not enter: the block size changes the rounding of `dW` and `db`, and results
/// must not depend on the thread count.
pub(crate) fn block_rows(
    n: usize,
    (d, v): (usize, usize),
    elem: usize,
    scratch_bytes: usize,
    max_rows: usize,
) -> usize {
    let per_row = v.saturating_add(d).max(1);
    let rows = (scratch_bytes / elem.max(1) / per_row).clamp(1, max_rows.max(1));
    let rows = if rows >= LHS_ROW_ALIGN {
        rows / LHS_ROW_ALIGN * LHS_ROW_ALIGN
    } else {
        rows
    };
    rows.min(n)
}
