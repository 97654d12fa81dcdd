//! The calling thread's `errno`: the library saves it around its own system calls so the
//! host sees exactly what the kernel left after the real call.
//!
//! On ELF systems the thread's errno slot comes from libc's `__errno_location`, found on
//! first use among the loaded objects (`next_symbol`), not imported: an import costs every
//! exec a symbol lookup.

#[cfg(not(target_vendor = "apple"))]
use core::sync::atomic::{AtomicUsize, Ordering};

use libc::c_int;

/// `__errno_location`, once found (0: not yet).
#[cfg(not(target_vendor = "apple"))]
#[cfg_attr(target_os = "linux", link_section = ".data")]
static LOCATION: AtomicUsize = AtomicUsize::new(0);

#[cfg(not(target_vendor = "apple"))]
#[cold]
#[inline(never)]
fn resolve() -> usize {
    let f = crate::real::lookup_errno_location();
    LOCATION.store(f, Ordering::Relaxed);
    f
}

/// The thread's errno slot, or null if this process has no libc to say where it is.
#[cfg(not(target_vendor = "apple"))]
#[inline]
fn location() -> *mut c_int {
    type LocationFn = unsafe extern "C" fn() -> *mut c_int;
    let mut f = LOCATION.load(Ordering::Relaxed);
    if f == 0 {
        f = resolve();
        if f == 0 {
            return core::ptr::null_mut();
        }
    }
    // SAFETY: f is libc's __errno_location, which only returns the calling thread's slot.
    unsafe { core::mem::transmute::<usize, LocationFn>(f)() }
}

#[cfg(target_vendor = "apple")]
#[inline]
fn location() -> *mut c_int {
    // SAFETY: returns the address of the calling thread's errno.
    unsafe { libc::__error() }
}

#[inline]
pub fn get() -> c_int {
    let p = location();
    if p.is_null() {
        return 0;
    }
    // SAFETY: the calling thread's own errno, valid for the thread's life.
    unsafe { *p }
}

#[inline]
pub fn set(e: c_int) {
    let p = location();
    if !p.is_null() {
        // SAFETY: as in get().
        unsafe { *p = e }
    }
}
