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
//! manager's socket was made for. Each passed socket stands in once.

use core::sync::atomic::{AtomicU64, Ordering};

use libc::c_int;
use reuse_core::activation::{Activation, FIRST_FD};
use reuse_core::config::Level;
use reuse_core::decision::Transport;
use reuse_core::endpoint::{self, Endpoint};
use reuse_core::line::Write;

use crate::{handover, report, sys};

/// Passed sockets already standing in for one of the program's (bit n: FIRST_FD + n).
static USED: AtomicU64 = AtomicU64::new(0);

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
    for n in 0..act.count.min(64) {
        let passed = FIRST_FD + n as c_int;
        let bit = 1u64 << n;
        if passed == fd || USED.load(Ordering::Relaxed) & bit != 0 {
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
        if USED.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            continue; // another thread took it meanwhile
        }
        if !handover::install(passed, fd) {
            USED.fetch_and(!bit, Ordering::Relaxed);
            return false;
        }
        report::at(Level::Info, |l| {
            write!(
                l,
                "{ep} {}: the socket passed by the service manager (LISTEN_FDS, descriptor {passed}, bound to {at})",
                transport.name()
            )
        });
        return true;
    }
    false
}
