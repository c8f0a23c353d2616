//! An output buffer that parallel tasks write in disjoint parts (the CPU kernels' GEMMs write
//! straight into their block of the result, with no per-task buffer to copy back).

/// A raw pointer to the buffer, shareable across rayon tasks.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);
// SAFETY: users write only the part their task owns; the buffer outlives the tasks.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(buffer: &mut [f32]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// The element at `offset` (a method, so closures capture the `Send` wrapper whole).
    ///
    /// # Safety
    /// `offset` within the buffer.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's.
        unsafe { self.0.add(offset) }
    }
}
