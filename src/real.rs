//! The real libc functions behind the hooks, bound once in one place.
//!
//! Every call the library makes to a function it also exports goes through these pointers,
//! never through the public name: inside a preloaded object the public name resolves back to
//! the hook itself. On ELF systems the next definition is found as `dlsym(RTLD_NEXT)` would
//! (`next_symbol`), so another interposer loaded after this one still sees the call. On macOS the hooks are
//! installed through dyld's interpose table, which does not apply to the interposing image
//! itself, so the libc names already are the real functions there.

use libc::{c_int, sockaddr, socklen_t};

pub type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
pub type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
pub type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
pub type DupFn = unsafe extern "C" fn(c_int) -> c_int;
pub type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
#[cfg(not(target_vendor = "apple"))]
pub type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
#[cfg(all(
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub type DlopenFn = unsafe extern "C" fn(*const core::ffi::c_char, c_int) -> *mut core::ffi::c_void;

#[cfg(not(target_vendor = "apple"))]
mod elf {
    use super::*;
    use core::ffi::CStr;
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// The next definition of `name` after this library; 0 if none.
    fn next(name: &CStr) -> usize {
        let mut found = [0usize];
        crate::next_symbol::find(&[name], &mut found);
        found[0]
    }

    macro_rules! real {
        ($get:ident, $slot:ident, $name:literal, $ty:ty, $fallback:path) => {
            static $slot: AtomicUsize = AtomicUsize::new(0);

            /// The real function; resolved at load, or here on a first call that came
            /// before the library's constructor (another library's constructor binding).
            #[inline]
            pub fn $get() -> $ty {
                let mut p = $slot.load(Ordering::Relaxed);
                if p == 0 {
                    p = next($name);
                    if p == 0 {
                        // No libc defines it after us (a static or odd process): the
                        // system call itself still does the job, without our hook.
                        p = $fallback as $ty as usize;
                    }
                    $slot.store(p, Ordering::Relaxed);
                }
                // SAFETY: p is the address of a function of this exact C signature.
                unsafe { core::mem::transmute::<usize, $ty>(p) }
            }
        };
    }

    real!(socket, SOCKET, c"socket", SocketFn, fallback::socket);
    real!(bind, BIND, c"bind", BindFn, fallback::bind);
    real!(close, CLOSE, c"close", CloseFn, fallback::close);
    real!(dup, DUP, c"dup", DupFn, fallback::dup);
    real!(dup2, DUP2, c"dup2", Dup2Fn, fallback::dup2);
    real!(dup3, DUP3, c"dup3", Dup3Fn, fallback::dup3);

    /// Binds every symbol now, from the constructor, in one walk of the loaded objects, so
    /// that no hook resolves on a hot path.
    pub fn resolve_all() {
        let names = [c"socket", c"bind", c"close", c"dup", c"dup2", c"dup3"];
        let slots = [&SOCKET, &BIND, &CLOSE, &DUP, &DUP2, &DUP3];
        let mut found = [0usize; 6];
        crate::next_symbol::find(&names, &mut found);
        for (slot, p) in slots.iter().zip(found) {
            if p != 0 {
                slot.store(p, Ordering::Relaxed);
            }
        }
        // Whatever was not found falls back to the system call on first use.
        let _ = (socket(), bind(), close(), dup(), dup2(), dup3());
    }

    /// The real `dlopen`, found on first use: `dlopen` is no hot path and no
    /// async-signal-safe function, and every exec that never calls it pays nothing.
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub fn dlopen() -> Option<DlopenFn> {
        let mut p = DLOPEN.load(Ordering::Acquire);
        if p == 0 {
            p = next(c"dlopen");
            DLOPEN.store(p, Ordering::Release);
        }
        // SAFETY: p is the address of a function of this exact C signature.
        (p != 0).then(|| unsafe { core::mem::transmute::<usize, DlopenFn>(p) })
    }

    /// libc's setenv, looked up on the one rare path that needs it (an invalid
    /// configuration reported at load): both arguments NUL-terminated.
    pub fn setenv(name: &[u8], value: &[u8]) {
        type SetenvFn = unsafe extern "C" fn(
            *const core::ffi::c_char,
            *const core::ffi::c_char,
            c_int,
        ) -> c_int;
        if name.last() != Some(&0) && !name.contains(&0)
            || value.last() != Some(&0) && !value.contains(&0)
        {
            return;
        }
        let p = next(c"setenv");
        if p != 0 {
            // SAFETY: p is libc's setenv; both strings are NUL-terminated (checked above).
            unsafe {
                let f = core::mem::transmute::<usize, SetenvFn>(p);
                f(name.as_ptr().cast(), value.as_ptr().cast(), 1);
            }
        }
    }

    /// The slot the `dlopen` hook's tail jump reads.
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub static DLOPEN: AtomicUsize = AtomicUsize::new(0);

    mod fallback {
        use super::*;
        use libc::{c_long, syscall, SYS_bind, SYS_close, SYS_dup, SYS_dup3, SYS_socket};

        pub unsafe extern "C" fn socket(d: c_int, t: c_int, p: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { syscall(SYS_socket, d as c_long, t as c_long, p as c_long) as c_int }
        }
        pub unsafe extern "C" fn bind(fd: c_int, a: *const sockaddr, l: socklen_t) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { syscall(SYS_bind, fd as c_long, a, l as c_long) as c_int }
        }
        pub unsafe extern "C" fn close(fd: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { syscall(SYS_close, fd as c_long) as c_int }
        }
        pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { syscall(SYS_dup, fd as c_long) as c_int }
        }
        pub unsafe extern "C" fn dup3(a: c_int, b: c_int, f: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { syscall(SYS_dup3, a as c_long, b as c_long, f as c_long) as c_int }
        }
        /// dup2 through dup3 (some architectures have no dup2 system call); dup3 refuses
        /// equal descriptors, where dup2 only checks that the descriptor is open.
        pub unsafe extern "C" fn dup2(a: c_int, b: c_int) -> c_int {
            if a == b {
                if crate::sys::fcntl(a, libc::F_GETFD, 0) < 0 {
                    return -1;
                }
                return b;
            }
            // SAFETY: dup3 takes no memory.
            unsafe { dup3(a, b, 0) }
        }
    }
}

#[cfg(not(target_vendor = "apple"))]
pub use elf::*;

#[cfg(target_vendor = "apple")]
mod macho {
    use super::*;
    pub fn setenv(name: &[u8], value: &[u8]) {
        if name.contains(&0) && value.contains(&0) {
            // SAFETY: both strings are NUL-terminated (checked).
            unsafe { libc::setenv(name.as_ptr().cast(), value.as_ptr().cast(), 1) };
        }
    }
    pub fn socket() -> SocketFn {
        libc::socket
    }
    pub fn bind() -> BindFn {
        libc::bind
    }
    pub fn close() -> CloseFn {
        libc::close
    }
    pub fn dup() -> DupFn {
        libc::dup
    }
    pub fn dup2() -> Dup2Fn {
        libc::dup2
    }
    pub fn resolve_all() {}
}

#[cfg(target_vendor = "apple")]
pub use macho::*;
