//! The parallel primitive: [`Blocks`] of items on rayon's pool, the kernels'
//! per-thread scratch, and per-thread buffers allocated up front.

use crate::kernels::ptr::Ptr;
use crate::sizes::BLOCK_ELEMS;
use core::ptr::NonNull;
use rayon::prelude::*;

/// One cache line of f32 scratch: the unit the scratch is allocated in, so that it
/// starts on a line (the kernels' vector loads and stores of it never straddle two).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    /// Each pool thread's kernel scratch, kept across calls: O(threads · C) memory.
    static SCRATCH: core::cell::RefCell<Vec<Line>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with at least `len` f32 of this thread's scratch, cache-line aligned
/// (none for `len = 0`). Kernels do not call back into rayon, so the borrow is never
/// nested; if it ever were, a temporary buffer is used instead of panicking.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(Option<Ptr<f32>>) -> R) -> R {
    if len == 0 {
        return f(None);
    }
    let lines = len.div_ceil(16);
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < lines {
                v.resize(lines, Line([0.0; 16]));
            }
            f(Some(Ptr(NonNull::from(&mut v[..]).cast())))
        }
        Err(_) => f(Some(Ptr(NonNull::from(
            &mut vec![Line([0.0; 16]); lines][..],
        )
        .cast()))),
    })
}

/// `n` items (rows, elements, classes, columns) cut into blocks of `per` items, the
/// last one shorter: the unit of parallel work and of every ordered reduction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocks {
    n: usize,
    per: usize,
}

impl Blocks {
    /// `n` items in blocks of `per` (at least 1).
    pub(crate) fn new(n: usize, per: usize) -> Self {
        Blocks { n, per: per.max(1) }
    }

    /// The `outer` indices of an `(outer, classes, inner)` tensor, whole indices per
    /// block, about [`BLOCK_ELEMS`] elements each.
    pub(crate) fn of_rows(outer: usize, classes: usize, inner: usize) -> Self {
        let per_index = classes.saturating_mul(inner).max(1);
        Blocks::new(outer, (BLOCK_ELEMS / per_index).max(1))
    }

    /// The number of blocks.
    pub(crate) fn count(self) -> usize {
        self.n.div_ceil(self.per)
    }

    /// The items of block `b`.
    pub(crate) fn range(self, b: usize) -> core::ops::Range<usize> {
        b * self.per..((b + 1) * self.per).min(self.n)
    }

    /// Runs `f` on every block's items on rayon's pool; the results come back in
    /// block order.
    pub(crate) fn map<R: Send>(
        self,
        f: impl Fn(core::ops::Range<usize>) -> R + Sync + Send,
    ) -> Vec<R> {
        (0..self.count())
            .into_par_iter()
            .map(|b| f(self.range(b)))
            .collect()
    }

    /// Runs `f` on every block's items on rayon's pool.
    pub(crate) fn for_each(self, f: impl Fn(core::ops::Range<usize>) + Sync + Send) {
        (0..self.count())
            .into_par_iter()
            .for_each(|b| f(self.range(b)));
    }

    /// [`Blocks::map`] with `K` buffers cut along the blocks: buffer `k` holds
    /// `stride_k` elements per item (`n·stride_k` in all), and `f` gets the part of
    /// each present buffer that belongs to its block.
    pub(crate) fn map_mut<'a, T: Send, R: Send, const K: usize>(
        self,
        bufs: [(Option<&'a mut [T]>, usize); K],
        f: impl Fn(core::ops::Range<usize>, [Option<&'a mut [T]>; K]) -> R + Sync + Send,
    ) -> Vec<R> {
        let count = self.count();
        // Each buffer's blocks, then the blocks' parts of every buffer.
        let mut cut: Vec<std::vec::IntoIter<Option<&'a mut [T]>>> = bufs
            .into_iter()
            .map(|(buf, stride)| {
                let parts: Vec<Option<&'a mut [T]>> = match buf {
                    Some(b) => b
                        .chunks_mut(self.per.saturating_mul(stride).max(1))
                        .map(Some)
                        .chain(core::iter::repeat_with(|| None))
                        .take(count)
                        .collect(),
                    None => (0..count).map(|_| None).collect(),
                };
                parts.into_iter()
            })
            .collect();
        let parts: Vec<[Option<&'a mut [T]>; K]> = (0..count)
            .map(|_| core::array::from_fn(|k| cut[k].next().flatten()))
            .collect();
        parts
            .into_par_iter()
            .enumerate()
            .map(|(b, part)| f(self.range(b), part))
            .collect()
    }
}

/// Runs `f(n0, n1)` on every block `[n0, n1)` of whole `n` indices of an
/// `(outer, classes, inner)` tensor; the results come back in block order.
pub(crate) fn blocks<R: Send>(
    (outer, c, inner): (usize, usize, usize),
    f: impl Fn(usize, usize) -> R + Sync + Send,
) -> Vec<R> {
    Blocks::of_rows(outer, c, inner).map(|r| f(r.start, r.end))
}

/// The number of threads of the pool that runs the current call.
pub(crate) fn pool_threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// One scratch buffer per thread of the pool that runs a call, allocated up front by
/// the calling thread (tasks that allocate their own on pool threads leave glibc's
/// per-thread arenas holding freed memory).
pub(crate) struct ThreadScratch<T> {
    bufs: Vec<std::sync::Mutex<Vec<T>>>,
    len: usize,
    fill: T,
}

impl<T: Copy> ThreadScratch<T> {
    /// `len` elements, set to `fill`, for each of `threads` threads (the pool's:
    /// [`pool_threads`]; 0 when no task will need one).
    pub(crate) fn new(threads: usize, len: usize, fill: T) -> Self {
        ThreadScratch {
            bufs: (0..threads)
                .map(|_| std::sync::Mutex::new(vec![fill; len]))
                .collect(),
            len,
            fill,
        }
    }

    /// Runs `f` on this thread's buffer; on a thread outside the pool, or if the buffer
    /// is taken (a task never runs inside another on one thread: the tasks do not call
    /// into rayon), on a new one.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let slot = rayon::current_thread_index().and_then(|i| self.bufs.get(i));
        match slot.and_then(|m| m.try_lock().ok()) {
            Some(mut buf) => f(&mut buf),
            None => f(&mut vec![self.fill; self.len]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_scratch;

    /// The kernels' scratch starts on a cache line, for every length and also when
    /// the thread's buffer is taken (the fallback buffer); it holds `len` f32.
    #[test]
    fn scratch_is_cache_line_aligned() {
        for len in [1, 15, 16, 17, 1000, 40_000] {
            with_scratch(len, |outer| {
                let outer = outer.expect("len > 0 gives a buffer");
                assert_eq!(outer.as_ptr() as usize % 64, 0, "len {len}");
                // SAFETY: the scratch holds at least len f32.
                unsafe { outer.as_ptr().add(len - 1).write(1.0) };
                with_scratch(len, |inner| {
                    let inner = inner.expect("len > 0 gives a buffer");
                    assert_ne!(
                        inner.as_ptr(),
                        outer.as_ptr(),
                        "a nested call gets its own buffer"
                    );
                    assert_eq!(inner.as_ptr() as usize % 64, 0, "nested, len {len}");
                });
            });
        }
        with_scratch(0, |none| assert!(none.is_none()));
    }
}
