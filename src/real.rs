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
    use crate::next_symbol::{self, From, Name};
    use core::sync::atomic::{AtomicUsize, Ordering};

    macro_rules! real {
        ($get:ident, $slot:ident, $name:literal, $ty:ty, $fallback:path) => {
            #[cfg_attr(target_os = "linux", link_section = ".data")]
            static $slot: AtomicUsize = AtomicUsize::new(0);

            /// The real function, found on its first call.
            #[inline(always)]
            pub fn $get() -> $ty {
                let mut p = $slot.load(Ordering::Relaxed);
                if p == 0 {
                    p = resolve();
                }
                // SAFETY: p is the address of a function of this exact C signature.
                return unsafe { core::mem::transmute::<usize, $ty>(p) };

                #[cold]
                #[inline(never)]
                fn resolve() -> usize {
                    let mut p = next_symbol::next(&Name::new($name));
                    if p == 0 {
                        // No libc defines it after us (a static or odd process): the
                        // system call itself still does the job, without our hook.
                        p = $fallback as $ty as usize;
                    }
                    $slot.store(p, Ordering::Relaxed);
                    p
                }
            }
        };
    }

    real!(socket, SOCKET, b"socket", SocketFn, fallback::socket);

    /// The real `socket()`, called with the caller's arguments still in their registers: the
    /// lookup of a process's first call is a call of its own, so the hook keeps nothing but
    /// the socket's kind across it (one saved register instead of five).
    ///
    /// # Safety
    /// As `socket(2)`.
    #[inline(always)]
    pub unsafe fn call_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        let p = SOCKET.load(Ordering::Relaxed);
        if p == 0 {
            // SAFETY: the caller's promise.
            return unsafe { first_socket(domain, ty, protocol) };
        }
        // SAFETY: SOCKET holds the address of a function of this type once set; the
        // caller's promise.
        unsafe { core::mem::transmute::<usize, SocketFn>(p)(domain, ty, protocol) }
    }

    /// # Safety
    /// As `socket(2)`.
    #[cold]
    #[inline(never)]
    unsafe fn first_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        // SAFETY: the caller's promise.
        unsafe { socket()(domain, ty, protocol) }
    }
    real!(bind, BIND, b"bind", BindFn, fallback::bind);
    real!(close, CLOSE, b"close", CloseFn, fallback::close);
    real!(dup, DUP, b"dup", DupFn, fallback::dup);
    real!(dup2, DUP2, b"dup2", Dup2Fn, fallback::dup2);
    real!(dup3, DUP3, b"dup3", Dup3Fn, fallback::dup3);

    /// `__errno_location`, looked up on its own (errno's first use before the constructor).
    pub fn lookup_errno_location() -> usize {
        next_symbol::next(&Name::new(b"__errno_location"))
    }

    /// Where `environ` lives (the program's copy, if it has one), as found at load.
    #[cfg_attr(target_os = "linux", link_section = ".data")]
    static ENVIRON: AtomicUsize = AtomicUsize::new(0);

    pub fn environ() -> *const *const *const core::ffi::c_char {
        ENVIRON.load(Ordering::Relaxed) as *const *const *const core::ffi::c_char
    }

    /// What the constructor needs before it reads the configuration: where `environ` is.
    /// The real functions are found on their first call instead (a walk of the loaded
    /// objects' symbol tables, without a lock or an allocation, so a first call from a
    /// signal handler is fine), so that a process that never calls one pays nothing for it.
    pub fn at_load() {
        // Built where it is used: a constant array of names would be a table with a pointer
        // in the library's data, relocated at every exec.
        let names = [(Name::new(b"environ"), From::First)];
        let mut found = [0usize];
        next_symbol::find(&names, &mut found);
        let [p] = found;
        ENVIRON.store(p, Ordering::Relaxed);
    }

    /// The real `dlopen`, found on first use.
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub fn dlopen() -> Option<DlopenFn> {
        let mut p = DLOPEN.load(Ordering::Acquire);
        if p == 0 {
            p = resolve_dlopen();
        }
        // SAFETY: p is the address of a function of this exact C signature.
        (p != 0).then(|| unsafe { core::mem::transmute::<usize, DlopenFn>(p) })
    }

    /// Looks the real `dlopen` up and keeps it; what the `dlopen` hook calls on its first
    /// use, before its tail jump (so glibc still sees the program as the caller).
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub extern "C" fn resolve_dlopen() -> usize {
        let p = next_symbol::next(&Name::new(b"dlopen"));
        DLOPEN.store(p, Ordering::Release);
        p
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
        let p = next_symbol::next(&Name::new(b"setenv"));
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
    #[cfg_attr(target_os = "linux", link_section = ".data")]
    pub static DLOPEN: AtomicUsize = AtomicUsize::new(0);

    mod fallback {
        use super::*;
        use libc::{c_long, SYS_bind, SYS_close, SYS_dup, SYS_dup3, SYS_socket};

        /// A system call of up to three arguments, as libc's syscall(2) answers.
        ///
        /// # Safety
        /// As the system call has it.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        unsafe fn sc(n: c_long, [a, b, c]: [usize; 3]) -> c_int {
            // SAFETY: the caller's promise.
            unsafe { crate::sys::raw::call(n as usize, [a, b, c, 0, 0, 0]) as c_int }
        }
        /// # Safety
        /// As the system call has it.
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        unsafe fn sc(n: c_long, [a, b, c]: [usize; 3]) -> c_int {
            // SAFETY: the caller's promise.
            unsafe { libc::syscall(n, a, b, c) as c_int }
        }

        pub unsafe extern "C" fn socket(d: c_int, t: c_int, p: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { sc(SYS_socket, [d as usize, t as usize, p as usize]) }
        }
        pub unsafe extern "C" fn bind(fd: c_int, a: *const sockaddr, l: socklen_t) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { sc(SYS_bind, [fd as usize, a as usize, l as usize]) }
        }
        pub unsafe extern "C" fn close(fd: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { sc(SYS_close, [fd as usize, 0, 0]) }
        }
        pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { sc(SYS_dup, [fd as usize, 0, 0]) }
        }
        pub unsafe extern "C" fn dup3(a: c_int, b: c_int, f: c_int) -> c_int {
            // SAFETY: a system call with the caller's arguments.
            unsafe { sc(SYS_dup3, [a as usize, b as usize, f as usize]) }
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
    /// # Safety
    /// As `socket(2)`.
    pub unsafe fn call_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        // SAFETY: the caller's promise.
        unsafe { libc::socket(domain, ty, protocol) }
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
}

#[cfg(target_vendor = "apple")]
pub use macho::*;
