//! The pointer types of a call, from the ops layer down to the kernels: the start of
//! a caller's buffer that the tasks write ([`Ptr`]) or only read ([`ConstPtr`]), and
//! where the gradient goes ([`GradPtr`]). A kernel turns them into raw pointers for
//! its own arithmetic.

use crate::kernels::num::Storage;
use core::ptr::NonNull;

/// The start of a caller's buffer that the tasks of one call write: the driver
/// gives every task a disjoint region of it.
pub struct Ptr<T>(pub(crate) NonNull<T>);

/// The start of a caller's buffer that the tasks of one call only read.
pub struct ConstPtr<T>(NonNull<T>);

impl<T> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ptr<T> {}
impl<T> Clone for ConstPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ConstPtr<T> {}

// SAFETY: a `Ptr` comes from a `&mut [T]` borrowed for the whole call, whose elements
// may move between threads (`T: Send`); the tasks write disjoint regions and read
// only what no other task writes (`T: Sync`).
unsafe impl<T: Send + Sync> Send for Ptr<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Ptr<T> {}
// SAFETY: a `ConstPtr` comes from a slice borrowed for the whole call, and is only
// read through, from any thread (`T: Sync`).
unsafe impl<T: Sync> Send for ConstPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for ConstPtr<T> {}

impl<T> Ptr<T> {
    /// The start of `buf`.
    pub(crate) fn new(buf: &mut [T]) -> Self {
        Ptr(NonNull::from(buf).cast())
    }

    /// Element `k`.
    ///
    /// # Safety
    /// `k` is at most the length of the buffer the pointer came from.
    pub(crate) unsafe fn at(self, k: usize) -> *mut T {
        // SAFETY: within (or one past) the buffer, by the caller's contract.
        unsafe { self.0.as_ptr().add(k) }
    }

    /// The buffer from element `k` on.
    ///
    /// # Safety
    /// As [`Ptr::at`].
    pub(crate) unsafe fn add(self, k: usize) -> Self {
        // SAFETY: forwarded; a pointer into (or one past) a buffer is not null.
        unsafe { Ptr(NonNull::new_unchecked(self.at(k))) }
    }

    /// The raw pointer, for a kernel's own arithmetic.
    #[inline(always)]
    pub(crate) fn as_ptr(self) -> *mut T {
        self.0.as_ptr()
    }

    /// The same buffer, read only.
    pub(crate) fn as_const(self) -> ConstPtr<T> {
        ConstPtr(self.0)
    }

    /// The same buffer as elements of another type (only `f32` as `f32`: the
    /// caller checks `Store32::IS_F32`).
    pub(crate) fn cast<U>(self) -> Ptr<U> {
        Ptr(self.0.cast())
    }
}

impl<T> ConstPtr<T> {
    /// The start of `buf`.
    pub(crate) fn new(buf: &[T]) -> Self {
        ConstPtr(NonNull::from(buf).cast())
    }

    /// The raw pointer, for a kernel's own arithmetic.
    #[inline(always)]
    pub(crate) fn as_ptr(self) -> *const T {
        self.0.as_ptr()
    }

    /// Element `k`.
    ///
    /// # Safety
    /// `k` is at most the length of the buffer the pointer came from.
    pub(crate) unsafe fn at(self, k: usize) -> *const T {
        // SAFETY: within (or one past) the buffer, by the caller's contract.
        unsafe { self.0.as_ptr().add(k) }
    }

    /// The buffer from element `k` on.
    ///
    /// # Safety
    /// As [`ConstPtr::at`].
    pub(crate) unsafe fn add(self, k: usize) -> Self {
        // SAFETY: forwarded; a pointer into (or one past) a buffer is not null.
        unsafe { ConstPtr(NonNull::new_unchecked(self.at(k) as *mut T)) }
    }
}

/// Where the gradient goes.
#[derive(Clone, Copy)]
pub enum GradPtr<T: Storage> {
    None,
    /// In the logits' type.
    Same(Ptr<T>),
    /// In the compute type (f32 for bf16/f16).
    Acc(Ptr<T::Acc>),
}
