//! The calling thread's `errno`: the library saves it around its own system calls so the
//! host sees exactly what the kernel left after the real call.

use libc::c_int;

/// The thread's errno slot, from libc.
fn location() -> *mut c_int {
    // SAFETY: both functions only return the address of the calling thread's errno.
    #[cfg(target_vendor = "apple")]
    unsafe {
        libc::__error()
    }
    // SAFETY: as above.
    #[cfg(not(target_vendor = "apple"))]
    unsafe {
        libc::__errno_location()
    }
}

#[inline]
pub fn get() -> c_int {
    // SAFETY: the calling thread's own errno, valid for the thread's life.
    unsafe { *location() }
}

#[inline]
pub fn set(e: c_int) {
    // SAFETY: as in get().
    unsafe { *location() = e }
}
