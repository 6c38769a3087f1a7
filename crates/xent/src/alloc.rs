//! Output buffers on huge pages.
//!
//! A fresh `N × C` gradient costs more to fault in than to compute: on 4 KiB pages
//! every 4 KiB written first takes a page fault (a trap, a page zeroed by the
//! kernel, a page-table update), and a 500 MB buffer takes about 128 000 of them.
//! With 2 MiB transparent huge pages (THP) there are 512 times fewer faults.
//!
//! So every buffer the allocating functions return that is [`HUGE_PAGE_BYTES`] or
//! larger is advised `MADV_HUGEPAGE` on Linux, and none is zero-filled in user
//! space: fresh pages come zeroed from the kernel at their first touch, and that
//! touch happens inside the parallel kernel, on the thread that writes the page.
//! Smaller buffers, and every buffer on other systems, come from the plain global
//! allocator.
//!
//! - [`zeroed_vec`] returns a `Vec<T>` (what candle's storage and most bindings
//!   hold). A `Vec` is the global allocator's, which cannot be asked for a 2 MiB
//!   alignment: every whole 2 MiB-aligned region inside it is advised, so at most
//!   the two partial regions at its ends stay on 4 KiB pages.
//! - [`HugeBuf`] is 2 MiB-aligned and mapped by itself, every page of it eligible:
//!   for bindings that can keep an owner object, and as a gradient buffer kept across
//!   training steps.
//!
//! The fastest path remains a buffer kept across steps (`*_into` with the same
//! [`HugeBuf`] or `Vec` every step): it faults once, on the first step, and never
//! again. A fresh buffer per step pays the kernel's page zeroing each time.
//!
//! Whether the kernel backs advised memory with huge pages depends on its THP mode,
//! which [`thp_mode`] reads; in mode `never` the advice is ignored and the buffers
//! behave like plain ones.

use core::alloc::Layout;
use core::fmt;
use core::ops::{Deref, DerefMut};

use crate::dtype::Element;
use crate::error::{Error, Result};

/// The huge-page size buffers are aligned and advised to: 2 MiB (x86-64 and
/// aarch64 with 4 KiB base pages). Buffers smaller than this come from the plain
/// allocator.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// The kernel's transparent-huge-page mode, from
/// `/sys/kernel/mm/transparent_hugepage/enabled`.
///
/// ```
/// let mode = xent::alloc::thp_mode();
/// println!("THP mode: {}", mode.name()); // "madvise" on most distributions
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThpMode {
    /// Every anonymous mapping may get huge pages.
    Always,
    /// Only mappings advised `MADV_HUGEPAGE` get huge pages (what this module does).
    Madvise,
    /// No huge pages: the advice is accepted and ignored.
    Never,
    /// No THP on this system (not Linux, or a kernel without it, or the file is
    /// unreadable).
    Unavailable,
}

impl ThpMode {
    /// `always`, `madvise`, `never` or `unavailable`.
    pub fn name(self) -> &'static str {
        match self {
            ThpMode::Always => "always",
            ThpMode::Madvise => "madvise",
            ThpMode::Never => "never",
            ThpMode::Unavailable => "unavailable",
        }
    }

    /// The mode named in brackets in the sysfs file's text (`always [madvise] never`).
    fn parse(text: &str) -> ThpMode {
        let chosen = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')));
        match chosen {
            Some("always") => ThpMode::Always,
            Some("madvise") => ThpMode::Madvise,
            Some("never") => ThpMode::Never,
            _ => ThpMode::Unavailable,
        }
    }
}

impl fmt::Display for ThpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel's transparent-huge-page mode, read from
/// `/sys/kernel/mm/transparent_hugepage/enabled` on each call;
/// [`ThpMode::Unavailable`] where there is no such file.
pub fn thp_mode() -> ThpMode {
    match std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled") {
        Ok(text) => ThpMode::parse(&text),
        Err(_) => ThpMode::Unavailable,
    }
}

/// The element count of `shape`, or the error naming it when it overflows.
fn elements(name: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::Allocation {
            name,
            shape: shape.to_vec(),
            bytes: None,
        })
}

/// A vector of `shape`'s element count filled with `value`, or [`Error::Allocation`]
/// naming `what` and `shape` when the count or its bytes overflow or the allocator
/// refuses: for buffers whose size comes from the caller's shapes rather than from
/// data the caller already holds (a `(2⁴⁰, 0)` weight holds no data but asks for
/// `2⁴⁰`-class rows), which must fail as an `Err`, not abort the process.
pub(crate) fn try_vec<T: Clone>(what: &'static str, shape: &[usize], value: T) -> Result<Vec<T>> {
    let fail = |bytes| Error::Allocation {
        name: what,
        shape: shape.to_vec(),
        bytes,
    };
    let len = elements(what, shape)?;
    let bytes = len
        .checked_mul(core::mem::size_of::<T>())
        .ok_or_else(|| fail(None))?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| fail(Some(bytes)))?;
    v.resize(len, value);
    Ok(v)
}

/// The layout of `len` elements of `T`, or the error naming `shape` when its size
/// in bytes overflows `isize::MAX`.
fn layout_of<T>(name: &'static str, shape: &[usize], len: usize) -> Result<Layout> {
    Layout::array::<T>(len).map_err(|_| Error::Allocation {
        name,
        shape: shape.to_vec(),
        bytes: None,
    })
}

/// A zeroed `Vec<T>` of `shape`'s element count, advised `MADV_HUGEPAGE` on Linux
/// when it is [`HUGE_PAGE_BYTES`] or larger (every whole 2 MiB-aligned region in it).
/// Nothing is written in user space: the allocator's `calloc` returns fresh pages,
/// which the kernel zeroes at their first touch (a recycled block is zeroed by the
/// allocator).
///
/// `name` is the buffer's name in the error message.
///
/// # Errors
/// [`Error::Allocation`], naming `name` and `shape`, when the size overflows or the
/// allocation fails; never an abort.
///
/// ```
/// let grad = xent::alloc::zeroed_vec::<f32>("grad", &[1024, 1024])?; // 4 MiB: advised
/// assert!(grad.len() == 1 << 20 && grad.iter().all(|&g| g == 0.0));
/// let err = xent::alloc::zeroed_vec::<f32>("grad", &[1 << 62, 8]).unwrap_err();
/// assert_eq!(err.to_string(), "cannot allocate grad of shape [4611686018427387904, 8]: \
///     its size overflows the address space");
/// # Ok::<(), xent::Error>(())
/// ```
pub fn zeroed_vec<T: Element>(name: &'static str, shape: &[usize]) -> Result<Vec<T>> {
    zeroed_vec_advised(name, shape).map(|(v, _)| v)
}

/// [`zeroed_vec`], and whether it was advised huge pages.
pub(crate) fn zeroed_vec_advised<T: Element>(
    name: &'static str,
    shape: &[usize],
) -> Result<(Vec<T>, bool)> {
    let len = elements(name, shape)?;
    let layout = layout_of::<T>(name, shape, len)?;
    if layout.size() == 0 {
        return Ok((Vec::new(), false));
    }
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(Error::Allocation {
            name,
            shape: shape.to_vec(),
            bytes: Some(layout.size()),
        });
    }
    let advised = layout.size() >= HUGE_PAGE_BYTES && advise_interior(ptr.cast(), layout.size());
    // SAFETY: `ptr` was allocated by the global allocator with `Layout::array::<T>(len)`,
    // the layout of a `Vec<T>` of capacity `len`; its `len` elements are initialised,
    // as all-zero bits are `+0.0` in every `Element` type (f32, f64, bf16, f16).
    let v = unsafe { Vec::from_raw_parts(ptr, len, len) };
    Ok((v, advised))
}

/// Advises `MADV_HUGEPAGE` on every whole 2 MiB-aligned region of the `bytes` bytes
/// at `ptr`; returns whether a region was advised.
#[cfg(target_os = "linux")]
fn advise_interior(ptr: *mut u8, bytes: usize) -> bool {
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE_BYTES);
    let end = (ptr as usize + bytes) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if end <= start {
        return false;
    }
    // SAFETY: [start, end) lies within the caller's allocation, is page-aligned, and
    // MADV_HUGEPAGE changes no byte of it: it only lets the kernel back it with huge
    // pages.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn advise_interior(_ptr: *mut u8, _bytes: usize) -> bool {
    false
}

/// A zeroed buffer of `T` that is 2 MiB-aligned and advised `MADV_HUGEPAGE` when it is
/// [`HUGE_PAGE_BYTES`] or larger on Linux (an anonymous mapping of its own), and a
/// plain `Vec` otherwise. It dereferences to `[T]`.
///
/// Use it as a gradient buffer kept across training steps, or where a binding can
/// keep an owner object alive for the memory it hands out. Nothing is written when
/// it is made: each page is zeroed by the kernel at its first touch.
///
/// ```
/// use xent::alloc::HugeBuf;
/// use xent::{cross_entropy_into, CrossEntropyOptions, GradOut};
/// let (n, c) = (4, 3);
/// let x = vec![0.5f32; n * c];
/// let mut grad = HugeBuf::<f32>::zeroed("grad", &[n, c])?; // kept across steps
/// let mut loss = [0.0f32];
/// for _step in 0..3 {
///     let g = GradOut::new(&mut grad);
///     cross_entropy_into(&x, &[n, c], &[0u8, 1, 2, 0][..], &CrossEntropyOptions::default(),
///         &mut loss, Some(g))?;
/// }
/// assert!((grad[0] - (1.0 / 3.0 - 1.0) / 4.0).abs() < 1e-6);
/// assert!(!grad.huge_pages_advised()); // 48 bytes: the plain allocator
/// # Ok::<(), xent::Error>(())
/// ```
pub struct HugeBuf<T: Element> {
    storage: Storage<T>,
}

enum Storage<T> {
    Plain(Vec<T>),
    /// `len` elements at `ptr`, in a mapping of `bytes` bytes (a multiple of
    /// [`HUGE_PAGE_BYTES`]) starting there.
    #[cfg(target_os = "linux")]
    Mapped {
        ptr: core::ptr::NonNull<T>,
        len: usize,
        bytes: usize,
    },
}

// SAFETY: a `HugeBuf` owns its memory alone, as a `Vec<T>` does.
unsafe impl<T: Element> Send for HugeBuf<T> {}
// SAFETY: shared access only reads, as for a `Vec<T>`.
unsafe impl<T: Element> Sync for HugeBuf<T> {}

impl<T: Element> HugeBuf<T> {
    /// A zeroed buffer of `shape`'s element count; `name` names it in errors.
    ///
    /// # Errors
    /// [`Error::Allocation`], naming `name` and `shape`, when the size overflows or the
    /// memory cannot be had.
    pub fn zeroed(name: &'static str, shape: &[usize]) -> Result<Self> {
        let len = elements(name, shape)?;
        let layout = layout_of::<T>(name, shape, len)?;
        #[cfg(target_os = "linux")]
        if layout.size() >= HUGE_PAGE_BYTES {
            return Self::mapped(name, shape, len, layout.size());
        }
        let _ = layout;
        zeroed_vec(name, shape).map(|v| HugeBuf {
            storage: Storage::Plain(v),
        })
    }

    /// An anonymous private mapping, 2 MiB-aligned: `size` rounded up to whole huge
    /// pages, mapped with one huge page of slack whose unaligned ends are unmapped.
    #[cfg(target_os = "linux")]
    fn mapped(name: &'static str, shape: &[usize], len: usize, size: usize) -> Result<Self> {
        let failed = |bytes| Error::Allocation {
            name,
            shape: shape.to_vec(),
            bytes,
        };
        let bytes = size
            .checked_next_multiple_of(HUGE_PAGE_BYTES)
            .filter(|&b| b <= isize::MAX as usize - HUGE_PAGE_BYTES)
            .ok_or_else(|| failed(None))?;
        let map_len = bytes + HUGE_PAGE_BYTES;
        // SAFETY: a new anonymous private mapping, at an address the kernel chooses;
        // nothing else is affected.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(failed(Some(size)));
        }
        let base = base as usize;
        let start = base.next_multiple_of(HUGE_PAGE_BYTES);
        let (head, tail) = (start - base, base + map_len - (start + bytes));
        // SAFETY: the head [base, start) and the tail [start + bytes, base + map_len)
        // are parts of the mapping just made (page-aligned: mmap returns whole pages,
        // `start` and `bytes` are multiples of 2 MiB), that nothing refers to. A
        // failed unmap leaves them mapped until the process ends, unused.
        unsafe {
            if head > 0 {
                libc::munmap(base as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((start + bytes) as *mut libc::c_void, tail);
            }
            // No byte changes: the kernel may back the region with huge pages. A
            // kernel without THP refuses the advice, and the buffer works as it is.
            libc::madvise(start as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        let ptr = core::ptr::NonNull::new(start as *mut T).ok_or_else(|| failed(Some(size)))?;
        Ok(HugeBuf {
            storage: Storage::Mapped { ptr, len, bytes },
        })
    }

    /// Whether the buffer is a 2 MiB-aligned mapping of its own, advised
    /// `MADV_HUGEPAGE`. The kernel then backs it with huge pages unless its
    /// [`thp_mode`] is `never` (or it finds no free huge page).
    pub fn huge_pages_advised(&self) -> bool {
        match self.storage {
            Storage::Plain(_) => false,
            #[cfg(target_os = "linux")]
            Storage::Mapped { .. } => true,
        }
    }
}

impl<T: Element> Deref for HugeBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Plain(v) => v,
            #[cfg(target_os = "linux")]
            Storage::Mapped { ptr, len, .. } => {
                // SAFETY: the mapping holds `len` elements at `ptr`, zeroed by the
                // kernel (all-zero bits are `+0.0` in every `Element` type) or written
                // since; it lives as long as `self`.
                unsafe { core::slice::from_raw_parts(ptr.as_ptr(), *len) }
            }
        }
    }
}

impl<T: Element> DerefMut for HugeBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.storage {
            Storage::Plain(v) => v,
            #[cfg(target_os = "linux")]
            Storage::Mapped { ptr, len, .. } => {
                // SAFETY: as in `deref`, and `&mut self` makes the access unique.
                unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), *len) }
            }
        }
    }
}

impl<T: Element> Drop for HugeBuf<T> {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Storage::Mapped { ptr, bytes, .. } = self.storage {
            // SAFETY: the mapping made in `mapped`, unmapped once, here; no slice of it
            // outlives `self`.
            unsafe { libc::munmap(ptr.as_ptr().cast(), bytes) };
        }
    }
}

impl<T: Element> fmt::Debug for HugeBuf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeBuf")
            .field("len", &self.len())
            .field("huge_pages_advised", &self.huge_pages_advised())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `VmFlags` of the mapping that holds `addr`, from `/proc/self/smaps`.
    pub(crate) fn vm_flags(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = head.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return Some(flags.trim().to_string());
                }
            }
        }
        None
    }

    /// Whether the kernel has THP at all (then `MADV_HUGEPAGE` must succeed and set
    /// the mapping's `hg` flag, whatever the mode).
    fn kernel_has_thp() -> bool {
        cfg!(target_os = "linux") && thp_mode() != ThpMode::Unavailable
    }

    #[test]
    fn thp_mode_parses_the_bracketed_word() {
        assert_eq!(ThpMode::parse("always [madvise] never\n"), ThpMode::Madvise);
        assert_eq!(ThpMode::parse("[always] madvise never"), ThpMode::Always);
        assert_eq!(ThpMode::parse("always madvise [never]"), ThpMode::Never);
        assert_eq!(ThpMode::parse(""), ThpMode::Unavailable);
        assert_eq!(ThpMode::Never.to_string(), "never");
    }

    #[test]
    fn small_vectors_keep_the_plain_allocator() {
        let (v, advised) = zeroed_vec_advised::<f32>("grad", &[512, 1023]).unwrap();
        assert!(v.len() * 4 < HUGE_PAGE_BYTES && !advised);
        assert!(v.iter().all(|&x| x == 0.0));
        let b = HugeBuf::<f64>::zeroed("grad", &[10, 3]).unwrap();
        assert!(!b.huge_pages_advised() && b.len() == 30 && b.iter().all(|&x| x == 0.0));
        let (e, advised) = zeroed_vec_advised::<f32>("grad", &[0, 1000]).unwrap();
        assert!(e.is_empty() && !advised);
    }

    #[test]
    fn large_vectors_are_advised_huge_pages() {
        let (mut v, advised) = zeroed_vec_advised::<crate::bf16>("grad", &[2048, 3000]).unwrap();
        assert!(v.iter().all(|x| x.to_f32() == 0.0));
        v[12345] = crate::bf16::from_f32(1.0);
        if kernel_has_thp() {
            assert!(advised);
            let inner = (v.as_ptr() as usize).next_multiple_of(HUGE_PAGE_BYTES);
            let flags = vm_flags(inner).expect("the vector's mapping is in smaps");
            assert!(flags.split(' ').any(|f| f == "hg"), "VmFlags: {flags}");
        }
    }

    #[test]
    fn huge_buffers_are_aligned_mappings_of_their_own() {
        let mut b = HugeBuf::<f32>::zeroed("grad", &[1000, 1000]).unwrap();
        assert_eq!(b.len(), 1_000_000);
        assert!(b.iter().all(|&x| x == 0.0));
        b[999_999] = 2.0;
        assert_eq!(b[999_999], 2.0);
        if cfg!(target_os = "linux") {
            assert!(b.huge_pages_advised());
            assert_eq!(b.as_ptr() as usize % HUGE_PAGE_BYTES, 0);
        }
        if kernel_has_thp() {
            let flags = vm_flags(b.as_ptr() as usize).unwrap();
            assert!(flags.split(' ').any(|f| f == "hg"), "VmFlags: {flags}");
        }
        let moved = std::thread::spawn(move || b[999_999]).join().unwrap();
        assert_eq!(moved, 2.0);
    }

    #[test]
    fn impossible_sizes_are_errors_naming_the_shape() {
        let e = zeroed_vec::<f32>("grad", &[usize::MAX, 2]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot allocate grad of shape [{}, 2]: its size overflows the address space",
                usize::MAX
            )
        );
        let e = HugeBuf::<f64>::zeroed("dW", &[1 << 61, 1]).unwrap_err();
        assert!(
            e.to_string()
                .contains("dW of shape [2305843009213693952, 1]"),
            "{e}"
        );
        // Representable but far more than any machine has: a failed mapping.
        let e = HugeBuf::<f32>::zeroed("grad", &[1 << 44, 1 << 10]).unwrap_err();
        assert!(matches!(e, Error::Allocation { bytes: Some(_), .. }), "{e}");
        assert!(
            e.to_string().starts_with("cannot allocate grad of shape ["),
            "{e}"
        );
    }
}
