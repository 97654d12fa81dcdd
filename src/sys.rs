//! The system calls the library makes of its own (the socket options it sets, logging,
//! diagnosis, waiting, hold mode's hand-over), made directly with the `syscall` (x86_64) or
//! `svc` (aarch64) instruction on Linux; and the clocks.
//!
//! Why not through libc: the library is loaded into every process that inherits the
//! environment, and the loader looks up each symbol a library imports, eagerly, at every
//! exec (Rust calls through the GOT, so there is no lazy PLT binding to defer the work):
//! about 650 instructions a symbol, and the first one costs 2,300 more (libc as NEEDED, its
//! version checks). So the library imports nothing: it reads the auxiliary vector itself
//! (`auxv`) and finds the few libc functions it must call through (the real `socket`,
//! `bind`, ... and `__errno_location`) on their first use (`next_symbol`). Elsewhere (macOS,
//! other architectures) these are the libc functions.
//!
//! Each wrapper takes Rust references and slices where the call reads or writes memory, so
//! that it is a safe function; the few that take raw pointers say what they need.

use core::ffi::CStr;
use core::mem::{size_of, zeroed};

use libc::{c_int, c_void, msghdr, pid_t, size_t, sockaddr, socklen_t, ssize_t, timespec};

/// A system call with up to six arguments, each passed as a machine word; what the kernel
/// returns, or -1 with errno set as libc's `syscall(2)` does.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
macro_rules! syscall {
    ($n:expr $(,)?) => { crate::sys::raw::call($n as usize, [0, 0, 0, 0, 0, 0]) };
    ($n:expr, $a:expr $(,)?) => { crate::sys::raw::call($n as usize, [$a as usize, 0, 0, 0, 0, 0]) };
    ($n:expr, $a:expr, $b:expr $(,)?) => {
        crate::sys::raw::call($n as usize, [$a as usize, $b as usize, 0, 0, 0, 0])
    };
    ($n:expr, $a:expr, $b:expr, $c:expr $(,)?) => {
        crate::sys::raw::call($n as usize, [$a as usize, $b as usize, $c as usize, 0, 0, 0])
    };
    ($n:expr, $a:expr, $b:expr, $c:expr, $d:expr $(,)?) => {
        crate::sys::raw::call(
            $n as usize,
            [$a as usize, $b as usize, $c as usize, $d as usize, 0, 0],
        )
    };
    ($n:expr, $a:expr, $b:expr, $c:expr, $d:expr, $e:expr $(,)?) => {
        crate::sys::raw::call(
            $n as usize,
            [$a as usize, $b as usize, $c as usize, $d as usize, $e as usize, 0],
        )
    };
    ($n:expr, $a:expr, $b:expr, $c:expr, $d:expr, $e:expr, $f:expr $(,)?) => {
        crate::sys::raw::call(
            $n as usize,
            [$a as usize, $b as usize, $c as usize, $d as usize, $e as usize, $f as usize],
        )
    };
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub mod raw {
    use libc::c_long;

    /// The kernel's own answer: a value, or -errno (-4095..=-1).
    ///
    /// # Safety
    /// As the system call `n` has it for these arguments (the memory it reads or writes).
    #[inline(always)]
    pub unsafe fn kernel(n: usize, args: [usize; 6]) -> isize {
        let [a, b, c, d, e, f] = args;
        let r: isize;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's promise; the instruction clobbers rcx and r11 only.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => r,
                in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e, in("r9") f,
                lateout("rcx") _, lateout("r11") _,
                options(nostack, preserves_flags)
            );
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the caller's promise.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a as isize => r,
                in("x1") b, in("x2") c, in("x3") d, in("x4") e, in("x5") f,
                options(nostack, preserves_flags)
            );
        }
        r
    }

    /// As `kernel`, with the answer as libc gives it: -1 and errno for an error.
    ///
    /// # Safety
    /// As `kernel`.
    #[inline(always)]
    pub unsafe fn call(n: usize, args: [usize; 6]) -> c_long {
        // SAFETY: the caller's promise.
        let r = unsafe { kernel(n, args) };
        if (-4095..0).contains(&r) {
            crate::errno::set(-r as libc::c_int);
            -1
        } else {
            r as c_long
        }
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use super::*;
    use libc::c_long;

    #[inline]
    fn ret(r: c_long) -> c_int {
        r as c_int
    }

    pub fn open(path: &CStr, flags: c_int) -> c_int {
        // SAFETY: path is NUL-terminated; openat reads only it.
        ret(unsafe {
            syscall!(
                libc::SYS_openat,
                libc::AT_FDCWD as c_long,
                path.as_ptr(),
                flags as c_long,
                0 as c_long,
            )
        })
    }
    pub fn read(fd: c_int, buf: &mut [u8]) -> ssize_t {
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        unsafe { syscall!(libc::SYS_read, fd as c_long, buf.as_mut_ptr(), buf.len()) as ssize_t }
    }
    pub fn write(fd: c_int, buf: &[u8]) -> ssize_t {
        // SAFETY: the kernel reads buf.len() bytes of buf.
        unsafe { syscall!(libc::SYS_write, fd as c_long, buf.as_ptr(), buf.len()) as ssize_t }
    }
    pub fn readlink(path: &CStr, buf: &mut [u8]) -> ssize_t {
        // SAFETY: path is NUL-terminated; the kernel writes at most buf.len() bytes.
        unsafe {
            syscall!(
                libc::SYS_readlinkat,
                libc::AT_FDCWD as c_long,
                path.as_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
            ) as ssize_t
        }
    }
    pub fn getpid() -> pid_t {
        // SAFETY: no memory involved.
        unsafe { syscall!(libc::SYS_getpid) as pid_t }
    }
    pub fn getuid() -> libc::uid_t {
        // SAFETY: no memory involved.
        unsafe { syscall!(libc::SYS_getuid) as libc::uid_t }
    }
    pub fn geteuid() -> libc::uid_t {
        // SAFETY: no memory involved.
        unsafe { syscall!(libc::SYS_geteuid) as libc::uid_t }
    }
    /// # Safety
    /// `a` and `l` as getsockname(2) has them: `*l` bytes writable at `a`.
    pub unsafe fn getsockname_raw(fd: c_int, a: *mut sockaddr, l: *mut socklen_t) -> c_int {
        // SAFETY: the caller's promise.
        ret(unsafe { syscall!(libc::SYS_getsockname, fd as c_long, a, l) })
    }
    /// Copies `to.len()` bytes at address `from` of this process into `to`, or fails with
    /// EFAULT (never a SIGSEGV) if they are not all readable: the kernel checks.
    pub fn read_own_memory(to: &mut [u8], from: usize) -> ssize_t {
        let local = libc::iovec {
            iov_base: to.as_mut_ptr().cast(),
            iov_len: to.len(),
        };
        let remote = libc::iovec {
            iov_base: from as *mut c_void,
            iov_len: to.len(),
        };
        // SAFETY: the kernel writes into `to` (its length) and reads the remote range with
        // its own checks, reporting EFAULT for what is not mapped.
        unsafe {
            syscall!(
                libc::SYS_process_vm_readv,
                getpid() as c_long,
                &local as *const libc::iovec,
                1 as c_long,
                &remote as *const libc::iovec,
                1 as c_long,
                0 as c_long,
            ) as ssize_t
        }
    }
    pub fn kill(pid: pid_t, sig: c_int) -> c_int {
        // SAFETY: kill touches no memory of this process.
        ret(unsafe { syscall!(libc::SYS_kill, pid as c_long, sig as c_long) })
    }
    pub fn nanosleep(t: &timespec) -> c_int {
        // SAFETY: the kernel reads *t; no remainder is asked for.
        ret(unsafe {
            syscall!(
                libc::SYS_nanosleep,
                t as *const timespec,
                core::ptr::null_mut::<timespec>(),
            )
        })
    }
    pub fn clock_monotonic(t: &mut timespec) -> c_int {
        // SAFETY: the kernel writes one timespec into *t.
        ret(unsafe {
            syscall!(
                libc::SYS_clock_gettime,
                libc::CLOCK_MONOTONIC as c_long,
                t as *mut timespec,
            )
        })
    }
    /// fcntl with an integer argument (F_GETFD, F_SETFD, F_GETFL, F_SETFL): no memory.
    pub fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int {
        // SAFETY: the commands used take an integer, not a pointer.
        ret(unsafe { syscall!(libc::SYS_fcntl, fd as c_long, cmd as c_long, arg as c_long) })
    }
    pub fn connect_unix(fd: c_int, a: &libc::sockaddr_un) -> c_int {
        // SAFETY: the kernel reads one sockaddr_un.
        ret(unsafe {
            syscall!(
                libc::SYS_connect,
                fd as c_long,
                a as *const libc::sockaddr_un,
                size_of::<libc::sockaddr_un>() as c_long,
            )
        })
    }
    pub fn send(fd: c_int, buf: &[u8], flags: c_int) -> ssize_t {
        // SAFETY: the kernel reads buf.len() bytes of buf.
        unsafe {
            syscall!(
                libc::SYS_sendto,
                fd as c_long,
                buf.as_ptr(),
                buf.len(),
                flags as c_long,
                core::ptr::null::<sockaddr>(),
                0 as c_long,
            ) as ssize_t
        }
    }
    /// # Safety
    /// `m` describes buffers valid for the kernel to write, as recvmsg(2) has it.
    pub unsafe fn recvmsg(fd: c_int, m: *mut msghdr, flags: c_int) -> ssize_t {
        // SAFETY: the caller's promise.
        unsafe { syscall!(libc::SYS_recvmsg, fd as c_long, m, flags as c_long) as ssize_t }
    }
    /// The auxiliary vector, as the kernel gives it, into `buf`: the bytes read, or None.
    /// `prctl(PR_GET_AUXV)` (Linux 6.4 on: one call, no /proc needed), else, where that
    /// fails (an older kernel, a seccomp filter), /proc/self/auxv. errno is left alone:
    /// this runs before the library knows where errno is (finding that needs the vector,
    /// so setting it here would recurse), and in a hook's first call.
    pub fn auxv_bytes(buf: &mut [u8]) -> Option<usize> {
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        let asked = unsafe {
            raw::kernel(
                libc::SYS_prctl as usize,
                [
                    PR_GET_AUXV as usize,
                    buf.as_mut_ptr() as usize,
                    buf.len(),
                    0,
                    0,
                    0,
                ],
            )
        };
        // A larger answer is the vector's whole size: it did not fit, so it is not used.
        if let Ok(n @ 1..) = usize::try_from(asked) {
            return (n <= buf.len()).then_some(n);
        }
        let path = c"/proc/self/auxv";
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as usize;
        // SAFETY: path is NUL-terminated; openat reads only it.
        let fd = unsafe {
            raw::kernel(
                libc::SYS_openat as usize,
                [
                    libc::AT_FDCWD as usize,
                    path.as_ptr() as usize,
                    flags,
                    0,
                    0,
                    0,
                ],
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        let n = unsafe {
            raw::kernel(
                libc::SYS_read as usize,
                [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
            )
        };
        // SAFETY: closes the descriptor opened above.
        unsafe { raw::kernel(libc::SYS_close as usize, [fd as usize, 0, 0, 0, 0, 0]) };
        usize::try_from(n).ok()
    }
    /// Gives the processor to another thread.
    #[cfg(target_env = "gnu")]
    pub fn yield_now() {
        // SAFETY: no memory involved.
        unsafe { syscall!(libc::SYS_sched_yield) };
    }
    /// Directory entries (`struct linux_dirent64` records) into `buf`.
    pub fn getdents64(fd: c_int, buf: &mut [u8]) -> ssize_t {
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        unsafe { syscall!(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) as ssize_t }
    }
    pub fn fstat(fd: c_int) -> Option<libc::stat> {
        // SAFETY: a zeroed stat is a valid value for the kernel to fill.
        let mut st: libc::stat = unsafe { zeroed() };
        // SAFETY: the kernel writes one stat.
        let rc = unsafe { syscall!(libc::SYS_fstat, fd as c_long, &mut st as *mut libc::stat) };
        (rc == 0).then_some(st)
    }
    /// # Safety
    /// `len` bytes readable at `v`, as setsockopt(2) has them.
    pub unsafe fn setsockopt_raw(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *const c_void,
        len: socklen_t,
    ) -> c_int {
        let (fd, level, name, len) = (fd as c_long, level as c_long, name as c_long, len as c_long);
        // SAFETY: the caller's promise.
        ret(unsafe { syscall!(libc::SYS_setsockopt, fd, level, name, v, len) })
    }
    /// # Safety
    /// `*len` bytes writable at `v`, as getsockopt(2) has them.
    pub unsafe fn getsockopt_raw(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *mut c_void,
        len: *mut socklen_t,
    ) -> c_int {
        let (fd, level, name) = (fd as c_long, level as c_long, name as c_long);
        // SAFETY: the caller's promise.
        ret(unsafe { syscall!(libc::SYS_getsockopt, fd, level, name, v, len) })
    }
    /// What a panic ends in (none is expected): SIGABRT to this thread, as abort(3) raises
    /// it, and if the host catches or blocks it, the end of the process all the same, with
    /// the status a shell shows for SIGABRT.
    pub fn abort() -> ! {
        // SAFETY: signals and exit touch no memory of this process.
        unsafe {
            let tid = syscall!(libc::SYS_gettid);
            syscall!(
                libc::SYS_tgkill,
                getpid() as c_long,
                tid,
                libc::SIGABRT as c_long,
            );
            loop {
                syscall!(libc::SYS_exit_group, 134 as c_long);
            }
        }
    }
    /// Private anonymous memory, reserved lazily by the kernel; null on failure.
    pub fn map_zeroed(len: size_t) -> *mut c_void {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let r = unsafe {
            syscall!(
                libc::SYS_mmap,
                0 as c_long,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as c_long,
                flags as c_long,
                -1 as c_long,
                0 as c_long,
            )
        };
        if r < 0 {
            core::ptr::null_mut()
        } else {
            r as *mut c_void
        }
    }
    /// # Safety
    /// `p..p+len` is a mapping of this library's own that nothing uses any more.
    pub unsafe fn unmap(p: *mut c_void, len: size_t) {
        // SAFETY: the caller's promise.
        unsafe { syscall!(libc::SYS_munmap, p, len) };
    }
    /// # Safety
    /// The pages `p..p+len` may take the protection `prot` with no access breaking.
    #[cfg(target_env = "gnu")]
    pub unsafe fn protect(p: *mut c_void, len: size_t, prot: c_int) -> c_int {
        // SAFETY: the caller's promise.
        ret(unsafe { syscall!(libc::SYS_mprotect, p, len, prot as c_long) })
    }

    /// The kernel's signal set for these architectures: one 64-bit word.
    const SIGSET_BYTES: c_long = 8;

    /// Writes without letting a SIGPIPE from this write reach the host: SIGPIPE is blocked
    /// for this thread around the write, and one it raised is taken back if it was not
    /// pending before.
    pub fn write_no_sigpipe(fd: c_int, buf: &[u8]) -> ssize_t {
        let pipe: u64 = 1 << (libc::SIGPIPE - 1);
        let mut old: u64 = 0;
        let mut pending: u64 = 0;
        // SAFETY: each call reads or writes one signal set of SIGSET_BYTES, or a siginfo
        // into a buffer of 128 bytes, all locals.
        unsafe {
            syscall!(
                libc::SYS_rt_sigpending,
                &mut pending as *mut u64,
                SIGSET_BYTES,
            );
            let was_pending = pending & pipe != 0;
            syscall!(
                libc::SYS_rt_sigprocmask,
                libc::SIG_BLOCK as c_long,
                &pipe as *const u64,
                &mut old as *mut u64,
                SIGSET_BYTES,
            );
            let r = write(fd, buf);
            if r < 0 && crate::errno::get() == libc::EPIPE && !was_pending {
                let zero = timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                let mut info = [0u64; 16];
                syscall!(
                    libc::SYS_rt_sigtimedwait,
                    &pipe as *const u64,
                    info.as_mut_ptr(),
                    &zero as *const timespec,
                    SIGSET_BYTES,
                );
            }
            syscall!(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK as c_long,
                &old as *const u64,
                core::ptr::null_mut::<u64>(),
                SIGSET_BYTES,
            );
            r
        }
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    use super::*;

    pub fn open(path: &CStr, flags: c_int) -> c_int {
        // SAFETY: path is NUL-terminated.
        unsafe { libc::open(path.as_ptr(), flags) }
    }
    pub fn read(fd: c_int, buf: &mut [u8]) -> ssize_t {
        // SAFETY: at most buf.len() bytes are written into buf.
        unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
    }
    pub fn write(fd: c_int, buf: &[u8]) -> ssize_t {
        // SAFETY: buf.len() bytes of buf are read.
        unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
    }
    pub fn readlink(path: &CStr, buf: &mut [u8]) -> ssize_t {
        // SAFETY: path is NUL-terminated; at most buf.len() bytes are written.
        unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    }
    pub fn getpid() -> pid_t {
        // SAFETY: no memory involved.
        unsafe { libc::getpid() }
    }
    pub fn getuid() -> libc::uid_t {
        // SAFETY: no memory involved.
        unsafe { libc::getuid() }
    }
    pub fn geteuid() -> libc::uid_t {
        // SAFETY: no memory involved.
        unsafe { libc::geteuid() }
    }
    /// # Safety
    /// `a` and `l` as getsockname(2) has them.
    pub unsafe fn getsockname_raw(fd: c_int, a: *mut sockaddr, l: *mut socklen_t) -> c_int {
        // SAFETY: the caller's promise.
        unsafe { libc::getsockname(fd, a, l) }
    }
    /// No way to copy from an unchecked pointer without faulting here: hold mode (which
    /// needs it) is Linux-only, and this reports ENOSYS.
    pub fn read_own_memory(_to: &mut [u8], _from: usize) -> ssize_t {
        crate::errno::set(libc::ENOSYS);
        -1
    }
    pub fn kill(pid: pid_t, sig: c_int) -> c_int {
        // SAFETY: kill touches no memory of this process.
        unsafe { libc::kill(pid, sig) }
    }
    pub fn nanosleep(t: &timespec) -> c_int {
        // SAFETY: *t is read; no remainder is asked for.
        unsafe { libc::nanosleep(t, core::ptr::null_mut()) }
    }
    pub fn clock_monotonic(t: &mut timespec) -> c_int {
        // SAFETY: one timespec is written into *t.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, t) }
    }
    /// fcntl with an integer argument: no memory.
    pub fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int {
        // SAFETY: the commands used take an integer, not a pointer.
        unsafe { libc::fcntl(fd, cmd, arg) }
    }
    pub fn connect_unix(fd: c_int, a: &libc::sockaddr_un) -> c_int {
        // SAFETY: one sockaddr_un is read.
        unsafe {
            libc::connect(
                fd,
                (a as *const libc::sockaddr_un).cast(),
                size_of::<libc::sockaddr_un>() as socklen_t,
            )
        }
    }
    pub fn send(fd: c_int, buf: &[u8], flags: c_int) -> ssize_t {
        // SAFETY: buf.len() bytes of buf are read.
        unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) }
    }
    /// # Safety
    /// `m` describes buffers valid for the kernel to write, as recvmsg(2) has it.
    pub unsafe fn recvmsg(fd: c_int, m: *mut msghdr, flags: c_int) -> ssize_t {
        // SAFETY: the caller's promise.
        unsafe { libc::recvmsg(fd, m, flags) }
    }
    /// Closes a descriptor of the library's own (never one the program knows).
    #[cfg(target_os = "linux")]
    pub fn close(fd: c_int) -> c_int {
        // SAFETY: no memory involved.
        unsafe { libc::close(fd) }
    }
    /// As on x86_64 and aarch64, through libc, with errno put back.
    #[cfg(target_os = "linux")]
    pub fn auxv_bytes(buf: &mut [u8]) -> Option<usize> {
        // SAFETY: libc's own errno slot for this thread.
        let saved = unsafe { *libc::__errno_location() };
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        let asked = unsafe {
            libc::prctl(
                PR_GET_AUXV,
                buf.as_mut_ptr() as libc::c_ulong,
                buf.len() as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        let got = match usize::try_from(asked) {
            Ok(n @ 1..) => (n <= buf.len()).then_some(n),
            _ => {
                let fd = open(c"/proc/self/auxv", libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    None
                } else {
                    let n = read(fd, buf);
                    close(fd);
                    usize::try_from(n).ok()
                }
            }
        };
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
        got
    }
    /// Directory entries (`struct linux_dirent64` records) into `buf`.
    #[cfg(target_os = "linux")]
    pub fn getdents64(fd: c_int, buf: &mut [u8]) -> ssize_t {
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd as libc::c_long,
                buf.as_mut_ptr(),
                buf.len(),
            ) as ssize_t
        }
    }
    pub fn fstat(fd: c_int) -> Option<libc::stat> {
        // SAFETY: a zeroed stat is a valid value for fstat to fill.
        let mut st: libc::stat = unsafe { zeroed() };
        // SAFETY: one stat is written.
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
    }
    /// # Safety
    /// `len` bytes readable at `v`.
    pub unsafe fn setsockopt_raw(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *const c_void,
        len: socklen_t,
    ) -> c_int {
        // SAFETY: the caller's promise.
        unsafe { libc::setsockopt(fd, level, name, v, len) }
    }
    /// # Safety
    /// `*len` bytes writable at `v`.
    pub unsafe fn getsockopt_raw(
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *mut c_void,
        len: *mut socklen_t,
    ) -> c_int {
        // SAFETY: the caller's promise.
        unsafe { libc::getsockopt(fd, level, name, v, len) }
    }
    pub fn abort() -> ! {
        // SAFETY: ends the process.
        unsafe { libc::abort() }
    }
    pub fn map_zeroed(len: size_t) -> *mut c_void {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANON,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            core::ptr::null_mut()
        } else {
            p
        }
    }
    /// # Safety
    /// `p..p+len` is a mapping of this library's own that nothing uses any more.
    pub unsafe fn unmap(p: *mut c_void, len: size_t) {
        // SAFETY: the caller's promise.
        unsafe { libc::munmap(p, len) };
    }

    /// Writes without letting a SIGPIPE from this write reach the host (see the Linux one).
    pub fn write_no_sigpipe(fd: c_int, buf: &[u8]) -> ssize_t {
        // SAFETY: signal sets are locals, initialized by sigemptyset before use.
        unsafe {
            let mut pipe: libc::sigset_t = zeroed();
            let mut old: libc::sigset_t = zeroed();
            let mut pending: libc::sigset_t = zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            libc::sigpending(&mut pending);
            let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
            let r = write(fd, buf);
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
}

/// prctl's option for a copy of the auxiliary vector (Linux 6.4; not in every libc's
/// headers yet).
#[cfg(target_os = "linux")]
const PR_GET_AUXV: c_int = 0x4155_5856;

pub use imp::*;

/// An integer socket option; None if the kernel refused.
pub fn getsockopt_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: v and len outlive the call and len is v's size.
    let rc = unsafe { getsockopt_raw(fd, level, name, (&mut v as *mut c_int).cast(), &mut len) };
    (rc == 0).then_some(v)
}

/// Sets a socket option to the bytes of `v` (an integer, a linger, a timeval).
pub fn setsockopt_value<T: Copy>(fd: c_int, level: c_int, name: c_int, v: &T) -> c_int {
    // SAFETY: v outlives the call and the length is its size.
    unsafe {
        setsockopt_raw(
            fd,
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as socklen_t,
        )
    }
}

/// Sets a socket option to the bytes of `v`, leaving errno alone: 0, or the error number.
#[inline]
pub fn set_option<T: Copy>(fd: c_int, level: c_int, name: c_int, v: &T) -> c_int {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let args = [
            fd as usize,
            level as usize,
            name as usize,
            v as *const T as usize,
            size_of::<T>(),
            0,
        ];
        // SAFETY: v outlives the call and the length is its size.
        let r = unsafe { raw::kernel(libc::SYS_setsockopt as usize, args) };
        if r < 0 {
            -r as c_int
        } else {
            0
        }
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        let saved = crate::errno::get();
        if setsockopt_value(fd, level, name, v) == 0 {
            return 0;
        }
        let e = crate::errno::get();
        crate::errno::set(saved);
        e
    }
}

/// Where a socket is bound, as the kernel says: the address bytes (a `sockaddr_storage`
/// prefix of the returned length).
pub fn getsockname(fd: c_int) -> Option<([u8; size_of::<libc::sockaddr_storage>()], usize)> {
    let mut buf = [0u8; size_of::<libc::sockaddr_storage>()];
    let mut len = buf.len() as socklen_t;
    // SAFETY: buf has room for len bytes, and the kernel writes at most that.
    let rc = unsafe { getsockname_raw(fd, buf.as_mut_ptr().cast(), &mut len) };
    (rc == 0).then_some((buf, (len as usize).min(buf.len())))
}

/// CLOCK_MONOTONIC in milliseconds.
pub fn monotonic_ms() -> u64 {
    let mut ts = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    clock_monotonic(&mut ts);
    (ts.tv_sec as u64).saturating_mul(1000) + ts.tv_nsec as u64 / 1_000_000
}

/// Sleeps `ms`; false when a signal cut the sleep short (its handler ran), so a wait can end
/// there as a Ctrl-C or a handled SIGTERM asks.
pub fn sleep_ms(ms: u64) -> bool {
    let ts = timespec {
        tv_sec: (ms / 1000) as _,
        tv_nsec: ((ms % 1000) * 1_000_000) as _,
    };
    let rc = nanosleep(&ts);
    !(rc != 0 && crate::errno::get() == libc::EINTR)
}

/// The size of a memory page (4 kB on x86_64; 4, 16 or 64 kB on aarch64).
#[cfg(all(
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn page_size() -> usize {
    match crate::auxv::get(libc::AT_PAGESZ) {
        None | Some(0) => 4096,
        Some(n) => n,
    }
}
