//! The FFI edge: every exported function of the library. Each gathers facts (the address,
//! the socket's transport), asks `reuse_core::decision`, acts, and hands back exactly what the
//! real function returned, with the errno it left.
//!
//! On ELF systems these are exported under the libc names, so the dynamic linker resolves
//! the program's calls to them first. On macOS they keep Rust names and dyld's interpose
//! table (at the end of this file) points the libc names at them.

use core::mem::size_of;
use core::ptr;

use libc::{c_int, c_void, sockaddr, sockaddr_in, sockaddr_in6, socklen_t};
use reuse_core::config::Options;
use reuse_core::decision::{self, Decision, LeaveReason};
use reuse_core::line::Endpoint;

use crate::{errno, hold, holder, real, report, socket_kinds, state};

/// `socket()`: remember what was made, so `bind()` needs no system call to find out.
#[cfg_attr(not(target_vendor = "apple"), export_name = "socket")]
pub unsafe extern "C" fn reuse_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let fd = real::socket()(domain, ty, protocol);
    if fd >= 0 {
        socket_kinds::record(fd, domain, ty, protocol);
    }
    fd
}

#[cfg_attr(not(target_vendor = "apple"), export_name = "close")]
pub unsafe extern "C" fn reuse_close(fd: c_int) -> c_int {
    // Forget first: once the real close returns, another thread may get this number back.
    socket_kinds::forget(fd);
    real::close()(fd)
}

/// `dup()`: the new number names the same socket. Without this, a number whose last socket
/// was closed behind libc's back (`fclose` of an `fdopen`ed socket, a raw close) would keep
/// that socket's kind.
#[cfg_attr(not(target_vendor = "apple"), export_name = "dup")]
pub unsafe extern "C" fn reuse_dup(old: c_int) -> c_int {
    let new = real::dup()(old);
    if new >= 0 {
        socket_kinds::copy(old, new);
    }
    new
}

#[cfg_attr(not(target_vendor = "apple"), export_name = "dup2")]
pub unsafe extern "C" fn reuse_dup2(old: c_int, new: c_int) -> c_int {
    if old != new {
        socket_kinds::copy(old, new);
    }
    real::dup2()(old, new)
}

#[cfg(not(target_vendor = "apple"))]
#[export_name = "dup3"]
pub unsafe extern "C" fn reuse_dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if old != new {
        socket_kinds::copy(old, new);
    }
    real::dup3()(old, new, flags)
}

/// The shortest sockaddr_in6 Linux takes in a bind: RFC 2133's, without sin6_scope_id.
const SIN6_LEN_RFC2133: usize = 24;

/// The address a bind names, if it is an inet one the kernel would accept the length of.
/// The caller's buffer may be unaligned, hence the unaligned reads, and may be as short as
/// the length says, hence field by field for IPv6.
unsafe fn endpoint(addr: *const sockaddr, len: socklen_t) -> Option<Endpoint> {
    if addr.is_null() || (len as usize) < size_of::<sockaddr_in>() {
        return None;
    }
    let family = ptr::read_unaligned(addr).sa_family as c_int;
    if family == libc::AF_INET {
        let a = ptr::read_unaligned(addr.cast::<sockaddr_in>());
        Some(Endpoint::V4(
            a.sin_addr.s_addr.to_ne_bytes(),
            u16::from_be(a.sin_port),
        ))
    } else if family == libc::AF_INET6 && len as usize >= SIN6_LEN_RFC2133 {
        let base = addr.cast::<u8>();
        let port = ptr::read_unaligned(
            base.add(core::mem::offset_of!(sockaddr_in6, sin6_port))
                .cast::<u16>(),
        );
        let ip = ptr::read_unaligned(
            base.add(core::mem::offset_of!(sockaddr_in6, sin6_addr))
                .cast::<[u8; 16]>(),
        );
        Some(Endpoint::V6(ip, u16::from_be(port)))
    } else {
        None
    }
}

/// The IPv6 scope id of an address `endpoint` accepted: 0 when the address is too short to
/// carry one (RFC 2133's), as the kernel takes it.
unsafe fn scope_id(addr: *const sockaddr, len: socklen_t) -> u32 {
    let at = core::mem::offset_of!(sockaddr_in6, sin6_scope_id);
    if ptr::read_unaligned(addr).sa_family as c_int != libc::AF_INET6
        || (len as usize) < at + size_of::<u32>()
    {
        return 0;
    }
    ptr::read_unaligned(addr.cast::<u8>().add(at).cast::<u32>())
}

#[cfg_attr(not(target_vendor = "apple"), export_name = "bind")]
pub unsafe extern "C" fn reuse_bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let real_bind = real::bind();
    let Some(cfg) = state::active() else {
        return real_bind(fd, addr, len);
    };
    let Some(ep) = endpoint(addr, len) else {
        return real_bind(fd, addr, len);
    };
    let maybe_held = cfg
        .hold
        .as_ref()
        .is_some_and(|h| h.ports.contains(ep.port()));
    // Unlisted ports are decided before anything else is looked at: they pay one lookup.
    if let (false, Err(why)) = (maybe_held, decision::port_wanted(cfg, ep.port())) {
        if state::logs(reuse_core::config::Level::Debug) {
            let saved = errno::get();
            report::left(&ep, None, why);
            errno::set(saved);
        }
        return real_bind(fd, addr, len);
    }
    let saved = errno::get();
    let transport = socket_kinds::transport(fd);
    if let (true, Some(t)) = (maybe_held, transport) {
        if decision::hold_wanted(cfg, t, ep.port()) {
            let scope = scope_id(addr, len);
            if let Some((rc, err)) = cfg
                .hold
                .as_ref()
                .and_then(|h| hold::take(h, fd, &ep, scope))
            {
                errno::set(if rc == 0 { saved } else { err });
                return rc;
            }
        }
    }
    let decision = match transport {
        Some(t) => decision::decide(cfg, t, ep.port()),
        None => Decision::Leave(LeaveReason::NotTcpOrUdp),
    };
    let options = match decision {
        Decision::Apply(o) => o,
        Decision::Leave(why) => {
            report::left(&ep, transport, why);
            errno::set(saved);
            return real_bind(fd, addr, len);
        }
    };
    apply(fd, &ep, &options);
    errno::set(saved);

    let rc = real_bind(fd, addr, len);
    let err = errno::get();
    let (rc, err) = if rc != 0 && err == libc::EADDRINUSE {
        holder::after_addrinuse(cfg, fd, addr, len, &ep, options.addr)
    } else {
        (rc, err)
    };
    if rc == 0 {
        if let Some(t) = transport {
            report::applied(&ep, t, &options);
        }
        if options.port && state::logs(reuse_core::config::Level::Warn) {
            holder::announce_sharing(&ep);
        }
        // A bind that succeeded, at once or after retries, leaves errno as the program had it.
        errno::set(saved);
    } else {
        errno::set(err);
    }
    rc
}

fn set_int(fd: c_int, name: c_int, v: c_int) -> c_int {
    // SAFETY: v outlives the call and the length is its size.
    unsafe {
        crate::sys::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            &v as *const c_int as *const c_void,
            size_of::<c_int>() as socklen_t,
        )
    }
}

#[cfg(not(target_vendor = "apple"))]
const LINGER_OPTION: (c_int, &str) = (libc::SO_LINGER, "SO_LINGER");
// macOS counts SO_LINGER in clock ticks; SO_LINGER_SEC takes seconds, as asked.
#[cfg(target_vendor = "apple")]
const LINGER_OPTION: (c_int, &str) = (libc::SO_LINGER_SEC, "SO_LINGER_SEC");

/// One setsockopt per option asked, the floor; a failure is reported and the bind goes on.
fn apply(fd: c_int, ep: &Endpoint, o: &Options) {
    if o.addr && set_int(fd, libc::SO_REUSEADDR, 1) != 0 {
        report::option_failed(ep, "SO_REUSEADDR", errno::get());
    }
    if o.port && set_int(fd, libc::SO_REUSEPORT, 1) != 0 {
        report::option_failed(ep, "SO_REUSEPORT", errno::get());
    }
    if let Some(seconds) = o.linger {
        let l = libc::linger {
            l_onoff: 1,
            l_linger: seconds as c_int,
        };
        // SAFETY: l outlives the call and the length is its size.
        let rc = unsafe {
            crate::sys::setsockopt(
                fd,
                libc::SOL_SOCKET,
                LINGER_OPTION.0,
                &l as *const libc::linger as *const c_void,
                size_of::<libc::linger>() as socklen_t,
            )
        };
        if rc != 0 {
            report::option_failed(ep, LINGER_OPTION.1, errno::get());
        }
    }
}

#[cfg(target_vendor = "apple")]
mod interpose {
    use super::*;

    #[repr(C)]
    pub struct Interpose {
        replacement: *const c_void,
        original: *const c_void,
    }
    // SAFETY: read-only function addresses.
    unsafe impl Sync for Interpose {}

    #[used]
    #[link_section = "__DATA,__interpose"]
    static INTERPOSE: [Interpose; 5] = [
        Interpose {
            replacement: reuse_socket as *const c_void,
            original: libc::socket as *const c_void,
        },
        Interpose {
            replacement: reuse_bind as *const c_void,
            original: libc::bind as *const c_void,
        },
        Interpose {
            replacement: reuse_close as *const c_void,
            original: libc::close as *const c_void,
        },
        Interpose {
            replacement: reuse_dup as *const c_void,
            original: libc::dup as *const c_void,
        },
        Interpose {
            replacement: reuse_dup2 as *const c_void,
            original: libc::dup2 as *const c_void,
        },
    ];
}
