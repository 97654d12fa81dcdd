//! Socket activation, the library's side: a bind the kernel refused because a listening
//! socket passed by a service manager (systemd's `LISTEN_FDS`, systemfd, catflap) already
//! holds the address is answered with that socket, put in place of the program's own under
//! the same descriptor number, keeping the program's O_NONBLOCK and FD_CLOEXEC. The
//! program's `listen()` then only adjusts the backlog: an unmodified server serves on the
//! socket its service manager made, which outlives every restart of the server.
//!
//! A passed socket stands in for the program's when it is of the same family and type, on
//! the same port, at an address that overlaps the one asked (equal, or either a wildcard, as
//! the kernel sees a conflict): the bind the kernel refused is exactly the bind the service
//! manager's socket was made for. A passed socket stands in for one of the program's at a
//! time: again once the program has closed the one it stood in for (a server that closes
//! and binds again), never for two at once (a second bind of the same address is refused,
//! as without a service manager). And only while its descriptor still holds the socket
//! that was passed: a program that closed descriptor 3 and put a listener of its own there
//! (a stale LISTEN_FDS inherited) keeps its own sockets apart.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use libc::c_int;
use reuse_core::activation::{Activation, FIRST_FD};
use reuse_core::config::Level;
use reuse_core::decision::Transport;
use reuse_core::endpoint::{self, Endpoint};
use reuse_core::put;

use crate::{handover, report, sys};

/// The most passed sockets looked after.
const MAX: usize = 64;

/// What each passed descriptor held at load: (device, inode) of the socket, 0 if none.
#[cfg_attr(target_os = "linux", link_section = ".data")]
static PASSED: [(AtomicU64, AtomicU64); MAX] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; MAX];

/// Notes what the passed descriptors hold, at load (only when LISTEN_FDS is this
/// process's): one fstat each.
pub fn remember(count: u32) {
    for (n, slot) in PASSED.iter().enumerate().take(count as usize) {
        if let Some(id) = identity(FIRST_FD + n as c_int) {
            slot.0.store(id.0, Ordering::Relaxed);
            slot.1.store(id.1, Ordering::Relaxed);
        }
    }
}

// st_dev and st_ino are u64 on Linux but narrower or signed on macOS.
#[allow(clippy::unnecessary_cast)]
fn identity(fd: c_int) -> Option<(u64, u64)> {
    let st = sys::fstat(fd)?;
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// Whether passed socket `n` is still at its descriptor, and free to stand in: no other
/// descriptor of the program holds it (the one it stood in for was closed, wherever it was
/// dup()ed to).
fn available(n: usize, passed: c_int) -> bool {
    let Some(slot) = PASSED.get(n) else {
        return false;
    };
    let was = (
        slot.0.load(Ordering::Relaxed),
        slot.1.load(Ordering::Relaxed),
    );
    was != (0, 0)
        && identity(passed) == Some(was)
        && !crate::procfs::socket_open_elsewhere(was.1, passed)
}

/// Two threads binding the same address at once take turns here.
#[cfg_attr(target_os = "linux", link_section = ".data")]
static ADOPTING: AtomicBool = AtomicBool::new(false);

fn int_option(fd: c_int, name: c_int) -> Option<c_int> {
    sys::getsockopt_int(fd, libc::SOL_SOCKET, name)
}

/// Where `fd` is bound, if it is an inet socket.
fn bound_at(fd: c_int) -> Option<Endpoint> {
    let (bytes, len) = sys::getsockname(fd)?;
    endpoint::decode(bytes.get(..len)?, handover::abi(), false).map(|a| a.endpoint)
}

fn overlaps(a: &Endpoint, b: &Endpoint) -> bool {
    a.port() == b.port() && a.is_v6() == b.is_v6() && (a == b || a.is_any() || b.is_any())
}

/// Puts the passed socket bound where `ep` asks in place of `fd`; true if one did.
pub fn adopt(act: Activation, fd: c_int, ep: &Endpoint, transport: Transport) -> bool {
    let want_type = match transport {
        Transport::Tcp => libc::SOCK_STREAM,
        Transport::Udp => libc::SOCK_DGRAM,
        Transport::Other => return false,
    };
    for n in 0..(act.count as usize).min(MAX) {
        let passed = FIRST_FD + n as c_int;
        if passed == fd || !available(n, passed) {
            continue;
        }
        if int_option(passed, libc::SO_TYPE) != Some(want_type)
            || (want_type == libc::SOCK_STREAM
                && int_option(passed, libc::SO_ACCEPTCONN) != Some(1))
        {
            continue;
        }
        let Some(at) = bound_at(passed) else {
            continue;
        };
        if !overlaps(&at, ep) {
            continue;
        }
        if ADOPTING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue; // another thread is taking a passed socket right now
        }
        // Looked at again with the turn held: another thread may have taken it meanwhile.
        let installed = available(n, passed) && handover::install(passed, fd);
        ADOPTING.store(false, Ordering::Release);
        if !installed {
            return false;
        }
        report::at(Level::Info, |l| {
            put!(
                l,
                ep,
                " ",
                transport.name(),
                ": the socket passed by the service manager (LISTEN_FDS, descriptor ",
                passed,
                ", bound to ",
                at,
                ")"
            )
        });
        return true;
    }
    false
}
