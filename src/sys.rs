//! The system calls the library makes of its own (the socket options it sets, logging,
//! diagnosis, waiting, hold mode's hand-over), made through libc's `syscall` on Linux x86_64
//! and aarch64.
//!
//! Why not through the libc functions of those names: the library is loaded into every
//! process that inherits the environment, and the loader resolves each libc symbol it
//! imports, eagerly, at every exec (Rust calls through the GOT, so there is no lazy PLT
//! binding to defer the work): about 600 instructions a symbol. Sixteen functions cost
//! every `exec` about 10,000 instructions of symbol lookups; one `syscall` import costs one.
//! Elsewhere (macOS, other architectures) these are the libc functions.

#![allow(clippy::missing_safety_doc)]

use libc::{c_int, c_void, msghdr, pid_t, size_t, sockaddr, socklen_t, ssize_t, timespec};

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use super::*;
    use libc::{c_long, syscall};

    #[inline]
    fn ret(r: c_long) -> c_int {
        r as c_int
    }

    pub unsafe fn open(path: *const libc::c_char, flags: c_int) -> c_int {
        ret(syscall(
            libc::SYS_openat,
            libc::AT_FDCWD as c_long,
            path,
            flags as c_long,
            0 as c_long,
        ))
    }
    pub unsafe fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
        syscall(libc::SYS_read, fd as c_long, buf, n) as ssize_t
    }
    pub unsafe fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
        syscall(libc::SYS_write, fd as c_long, buf, n) as ssize_t
    }
    pub unsafe fn readlink(
        path: *const libc::c_char,
        buf: *mut libc::c_char,
        n: size_t,
    ) -> ssize_t {
        syscall(libc::SYS_readlinkat, libc::AT_FDCWD as c_long, path, buf, n) as ssize_t
    }
    pub fn getpid() -> pid_t {
        unsafe { syscall(libc::SYS_getpid) as pid_t }
    }
    pub fn getuid() -> libc::uid_t {
        unsafe { syscall(libc::SYS_getuid) as libc::uid_t }
    }
    pub fn geteuid() -> libc::uid_t {
        unsafe { syscall(libc::SYS_geteuid) as libc::uid_t }
    }
    pub unsafe fn getsockname(fd: c_int, a: *mut sockaddr, l: *mut socklen_t) -> c_int {
        ret(syscall(libc::SYS_getsockname, fd as c_long, a, l))
    }
    /// Copies `n` bytes at `from` in this process into `to`, or fails with EFAULT (never a
    /// SIGSEGV) if they are not all readable.
    pub unsafe fn read_own_memory(to: *mut c_void, from: *const c_void, n: size_t) -> ssize_t {
        let local = libc::iovec {
            iov_base: to,
            iov_len: n,
        };
        let remote = libc::iovec {
            iov_base: from as *mut c_void,
            iov_len: n,
        };
        syscall(
            libc::SYS_process_vm_readv,
            getpid() as c_long,
            &local as *const libc::iovec,
            1 as c_long,
            &remote as *const libc::iovec,
            1 as c_long,
            0 as c_long,
        ) as ssize_t
    }
    pub fn kill(pid: pid_t, sig: c_int) -> c_int {
        // SAFETY: kill touches no memory of this process.
        ret(unsafe { syscall(libc::SYS_kill, pid as c_long, sig as c_long) })
    }
    pub unsafe fn nanosleep(t: *const timespec) -> c_int {
        ret(syscall(
            libc::SYS_nanosleep,
            t,
            core::ptr::null_mut::<timespec>(),
        ))
    }
    pub unsafe fn clock_monotonic(t: *mut timespec) -> c_int {
        ret(syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_MONOTONIC as c_long,
            t,
        ))
    }
    pub unsafe fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int {
        ret(syscall(
            libc::SYS_fcntl,
            fd as c_long,
            cmd as c_long,
            arg as c_long,
        ))
    }
    pub unsafe fn connect(fd: c_int, a: *const sockaddr, l: socklen_t) -> c_int {
        ret(syscall(libc::SYS_connect, fd as c_long, a, l as c_long))
    }
    pub unsafe fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
        syscall(
            libc::SYS_sendto,
            fd as c_long,
            buf,
            n,
            flags as c_long,
            core::ptr::null::<sockaddr>(),
            0 as c_long,
        ) as ssize_t
    }
    pub unsafe fn recvmsg(fd: c_int, m: *mut msghdr, flags: c_int) -> ssize_t {
        syscall(libc::SYS_recvmsg, fd as c_long, m, flags as c_long) as ssize_t
    }
    pub unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
        ret(syscall(libc::SYS_fstat, fd as c_long, st))
    }
    pub unsafe fn setsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *const c_void,
        len: socklen_t,
    ) -> c_int {
        let (fd, level, name, len) = (fd as c_long, level as c_long, name as c_long, len as c_long);
        ret(syscall(libc::SYS_setsockopt, fd, level, name, v, len))
    }
    pub unsafe fn getsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *mut c_void,
        len: *mut socklen_t,
    ) -> c_int {
        let (fd, level, name) = (fd as c_long, level as c_long, name as c_long);
        ret(syscall(libc::SYS_getsockopt, fd, level, name, v, len))
    }
    /// What a panic ends in (none is expected): SIGABRT to this thread, as abort(3) raises
    /// it, and if the host catches or blocks it, the end of the process all the same, with
    /// the status a shell shows for SIGABRT.
    pub fn abort() -> ! {
        unsafe {
            let tid = syscall(libc::SYS_gettid);
            syscall(
                libc::SYS_tgkill,
                getpid() as c_long,
                tid,
                libc::SIGABRT as c_long,
            );
            loop {
                syscall(libc::SYS_exit_group, 134 as c_long);
            }
        }
    }
    /// Private anonymous memory, reserved lazily by the kernel; null on failure.
    pub unsafe fn map_zeroed(len: size_t) -> *mut c_void {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let r = syscall(
            libc::SYS_mmap,
            0 as c_long,
            len,
            (libc::PROT_READ | libc::PROT_WRITE) as c_long,
            flags as c_long,
            -1 as c_long,
            0 as c_long,
        );
        if r < 0 {
            core::ptr::null_mut()
        } else {
            r as *mut c_void
        }
    }
    pub unsafe fn unmap(p: *mut c_void, len: size_t) {
        syscall(libc::SYS_munmap, p, len);
    }
    pub unsafe fn protect(p: *mut c_void, len: size_t, prot: c_int) -> c_int {
        ret(syscall(libc::SYS_mprotect, p, len, prot as c_long))
    }

    /// The kernel's signal set for these architectures: one 64-bit word.
    const SIGSET_BYTES: c_long = 8;

    /// Writes without letting a SIGPIPE from this write reach the host: SIGPIPE is blocked
    /// for this thread around the write, and one it raised is taken back if it was not
    /// pending before.
    pub unsafe fn write_no_sigpipe(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
        let pipe: u64 = 1 << (libc::SIGPIPE - 1);
        let mut old: u64 = 0;
        let mut pending: u64 = 0;
        syscall(
            libc::SYS_rt_sigpending,
            &mut pending as *mut u64,
            SIGSET_BYTES,
        );
        let was_pending = pending & pipe != 0;
        syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK as c_long,
            &pipe as *const u64,
            &mut old as *mut u64,
            SIGSET_BYTES,
        );
        let r = write(fd, buf, n);
        if r < 0 && *libc::__errno_location() == libc::EPIPE && !was_pending {
            let zero = timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let mut info = [0u64; 16];
            syscall(
                libc::SYS_rt_sigtimedwait,
                &pipe as *const u64,
                info.as_mut_ptr(),
                &zero as *const timespec,
                SIGSET_BYTES,
            );
        }
        syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as c_long,
            &old as *const u64,
            core::ptr::null_mut::<u64>(),
            SIGSET_BYTES,
        );
        r
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    use super::*;

    pub unsafe fn open(path: *const libc::c_char, flags: c_int) -> c_int {
        libc::open(path, flags)
    }
    pub unsafe fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
        libc::read(fd, buf, n)
    }
    pub unsafe fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
        libc::write(fd, buf, n)
    }
    pub unsafe fn readlink(
        path: *const libc::c_char,
        buf: *mut libc::c_char,
        n: size_t,
    ) -> ssize_t {
        libc::readlink(path, buf, n)
    }
    pub fn getpid() -> pid_t {
        unsafe { libc::getpid() }
    }
    pub fn getuid() -> libc::uid_t {
        unsafe { libc::getuid() }
    }
    pub fn geteuid() -> libc::uid_t {
        unsafe { libc::geteuid() }
    }
    pub unsafe fn getsockname(fd: c_int, a: *mut sockaddr, l: *mut socklen_t) -> c_int {
        libc::getsockname(fd, a, l)
    }
    /// No way to copy from an unchecked pointer without faulting here: hold mode (which
    /// needs it) is Linux-only, and this reports ENOSYS.
    pub unsafe fn read_own_memory(_to: *mut c_void, _from: *const c_void, _n: size_t) -> ssize_t {
        crate::errno::set(libc::ENOSYS);
        -1
    }
    pub fn kill(pid: pid_t, sig: c_int) -> c_int {
        // SAFETY: kill touches no memory of this process.
        unsafe { libc::kill(pid, sig) }
    }
    pub unsafe fn nanosleep(t: *const timespec) -> c_int {
        libc::nanosleep(t, core::ptr::null_mut())
    }
    pub unsafe fn clock_monotonic(t: *mut timespec) -> c_int {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, t)
    }
    pub unsafe fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int {
        libc::fcntl(fd, cmd, arg)
    }
    pub unsafe fn connect(fd: c_int, a: *const sockaddr, l: socklen_t) -> c_int {
        libc::connect(fd, a, l)
    }
    pub unsafe fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
        libc::send(fd, buf, n, flags)
    }
    pub unsafe fn recvmsg(fd: c_int, m: *mut msghdr, flags: c_int) -> ssize_t {
        libc::recvmsg(fd, m, flags)
    }
    pub unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
        libc::fstat(fd, st)
    }
    pub unsafe fn setsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *const c_void,
        len: socklen_t,
    ) -> c_int {
        libc::setsockopt(fd, level, name, v, len)
    }
    pub unsafe fn getsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *mut c_void,
        len: *mut socklen_t,
    ) -> c_int {
        libc::getsockopt(fd, level, name, v, len)
    }
    pub fn abort() -> ! {
        unsafe { libc::abort() }
    }
    pub unsafe fn map_zeroed(len: size_t) -> *mut c_void {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let p = libc::mmap(
            core::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANON,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            core::ptr::null_mut()
        } else {
            p
        }
    }
    pub unsafe fn unmap(p: *mut c_void, len: size_t) {
        libc::munmap(p, len);
    }
    pub unsafe fn protect(p: *mut c_void, len: size_t, prot: c_int) -> c_int {
        libc::mprotect(p, len, prot)
    }

    /// Writes without letting a SIGPIPE from this write reach the host (see the Linux one).
    pub unsafe fn write_no_sigpipe(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
        let mut pipe: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        let mut pending: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let r = write(fd, buf, n);
        if r < 0 && !was_pending {
            libc::sigpending(&mut pending);
            if libc::sigismember(&pending, libc::SIGPIPE) == 1 {
                let mut sig = 0;
                libc::sigwait(&pipe, &mut sig);
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        r
    }
}

pub use imp::*;

/// CLOCK_MONOTONIC in milliseconds.
pub fn monotonic_ms() -> u64 {
    let mut ts = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    unsafe { clock_monotonic(&mut ts) };
    (ts.tv_sec as u64).saturating_mul(1000) + ts.tv_nsec as u64 / 1_000_000
}

/// Sleeps `ms`; false when a signal cut the sleep short (its handler ran), so a wait can end
/// there as a Ctrl-C or a handled SIGTERM asks.
pub fn sleep_ms(ms: u64) -> bool {
    let ts = timespec {
        tv_sec: (ms / 1000) as _,
        tv_nsec: ((ms % 1000) * 1_000_000) as _,
    };
    // SAFETY: ts is a valid timespec.
    let rc = unsafe { nanosleep(&ts) };
    !(rc != 0 && crate::errno::get() == libc::EINTR)
}

/// The size of a memory page (4 kB on x86_64; 4, 16 or 64 kB on aarch64).
#[cfg(target_os = "linux")]
pub fn page_size() -> usize {
    // SAFETY: a plain read of the auxiliary vector.
    match unsafe { libc::getauxval(libc::AT_PAGESZ) } {
        0 => 4096,
        n => n as usize,
    }
}
