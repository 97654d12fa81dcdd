//! The calling thread's `errno`: the library saves it around its own system calls so the
//! host sees exactly what the kernel left after the real call.

use libc::c_int;

#[cfg(target_vendor = "apple")]
unsafe fn location() -> *mut c_int {
    libc::__error()
}

#[cfg(not(target_vendor = "apple"))]
unsafe fn location() -> *mut c_int {
    libc::__errno_location()
}

#[inline]
pub fn get() -> c_int {
    unsafe { *location() }
}

#[inline]
pub fn set(e: c_int) {
    unsafe { *location() = e }
}
