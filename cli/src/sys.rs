//! The system calls the command makes that touch no memory of its own, as safe functions:
//! the unsafe blocks elsewhere are then only those that lend the kernel a buffer.

use std::os::fd::RawFd;

pub fn euid() -> u32 {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// kill(2) to a process (or, negative, a process group) this command started.
pub fn kill(pid: i32, sig: i32) -> i32 {
    // SAFETY: kill touches no memory of this process.
    unsafe { libc::kill(pid, sig) }
}

/// fcntl(2) with an integer argument (F_GETFD, F_SETFD, F_GETFL, F_SETFL).
pub fn fcntl(fd: RawFd, cmd: i32, arg: i32) -> i32 {
    // SAFETY: these commands take an integer, not a pointer.
    unsafe { libc::fcntl(fd, cmd, arg) }
}

pub fn listen(fd: RawFd, backlog: i32) -> i32 {
    // SAFETY: listen touches no memory of this process.
    unsafe { libc::listen(fd, backlog) }
}
