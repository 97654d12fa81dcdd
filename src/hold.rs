//! Hold mode, the library's side: a bind to a held port is answered with the listening
//! socket that `reuse run --hold` keeps open across restarts.
//!
//! The socket comes over a Unix SOCK_SEQPACKET connection as SCM_RIGHTS and is put in place
//! of the server's own socket with dup2, under the same descriptor number, so the server's
//! `listen()`, `accept()` and `getsockname()` work on it unchanged. While no instance runs,
//! connections wait in that socket's queue instead of being refused. Passing it at bind time
//! (rather than leaving it open across exec, as systemd does) survives programs that close
//! the descriptors they inherit, as Python's subprocess and Node do.

use core::mem::{size_of, zeroed};
use core::ptr;

use libc::{c_int, sockaddr_un, socklen_t};
use reuse_core::config::{Hold, Level};
use reuse_core::hold_protocol::{self, Request, REPLY_LEN};
use reuse_core::line::{Endpoint, Write};

use crate::{real, report, sys};

/// How long a server waits for the command to answer before binding on its own.
const ANSWER_TIMEOUT_S: i64 = 5;

fn int_option(fd: c_int, level: c_int, name: c_int) -> c_int {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: v and len outlive the call and len is v's size.
    unsafe { crate::sys::getsockopt(fd, level, name, (&mut v as *mut c_int).cast(), &mut len) };
    v
}

fn set_timeouts(conn: c_int) {
    let tv = libc::timeval {
        tv_sec: ANSWER_TIMEOUT_S as _,
        tv_usec: 0,
    };
    for name in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: tv outlives the call and the length is its size.
        unsafe {
            crate::sys::setsockopt(
                conn,
                libc::SOL_SOCKET,
                name,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as socklen_t,
            )
        };
    }
}

/// Connects to the command's hand-over socket; None if it is not there (the command is
/// gone: the server then binds on its own).
fn connect(path: &[u8]) -> Option<c_int> {
    // SAFETY: zeroed sockaddr_un is valid; the path fits (checked by the config grammar).
    let mut sun: sockaddr_un = unsafe { zeroed() };
    sun.sun_family = libc::AF_UNIX as _;
    if path.len() >= sun.sun_path.len() {
        return None;
    }
    for (d, s) in sun.sun_path.iter_mut().zip(path) {
        *d = *s as _;
    }
    #[cfg(not(target_vendor = "apple"))]
    let ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    #[cfg(target_vendor = "apple")]
    let ty = libc::SOCK_STREAM;
    // SAFETY: through the real socket(): this is the library's own socket, not the host's.
    let conn = unsafe { real::socket()(libc::AF_UNIX, ty, 0) };
    if conn < 0 {
        return None;
    }
    set_timeouts(conn);
    // SAFETY: sun is a valid sockaddr_un of that size.
    let rc = unsafe {
        sys::connect(
            conn,
            (&sun as *const sockaddr_un).cast(),
            size_of::<sockaddr_un>() as socklen_t,
        )
    };
    if rc != 0 {
        unsafe { real::close()(conn) };
        return None;
    }
    Some(conn)
}

/// Sends the request and reads the reply: Ok(held socket) or Err(errno of the command's
/// bind). None when the exchange itself failed.
fn ask(conn: c_int, req: &Request) -> Option<Result<c_int, c_int>> {
    let msg = req.encode();
    // SAFETY: msg is a valid buffer of that length.
    let sent = unsafe { sys::send(conn, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL) };
    if sent != msg.len() as isize {
        return None;
    }
    let mut reply = [0u8; REPLY_LEN];
    let mut iov = libc::iovec {
        iov_base: reply.as_mut_ptr().cast(),
        iov_len: reply.len(),
    };
    // Room for one descriptor, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    // SAFETY: zeroed msghdr is valid; every pointer set below outlives recvmsg.
    let mut mh: libc::msghdr = unsafe { zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.as_mut_ptr().cast();
    mh.msg_controllen = size_of::<[u64; 8]>() as _;
    #[cfg(not(target_vendor = "apple"))]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(target_vendor = "apple")]
    let flags = 0;
    // SAFETY: mh describes valid buffers.
    let n = unsafe { sys::recvmsg(conn, &mut mh, flags) };
    if n < 0 {
        return None;
    }
    // Every descriptor that came is taken first, so none leaks whatever the reply says.
    let mut held = -1;
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const c_int;
                let count =
                    ((*c).cmsg_len as usize - (data as usize - c as usize)) / size_of::<c_int>();
                for i in 0..count {
                    let fd = ptr::read_unaligned(data.add(i));
                    if held < 0 {
                        held = fd;
                    } else {
                        real::close()(fd);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    let errno = if n == REPLY_LEN as isize {
        hold_protocol::decode_reply(&reply)
    } else {
        None
    };
    match (errno, held) {
        (Some(0), fd) if fd >= 0 => Some(Ok(fd)),
        (e, fd) => {
            if fd >= 0 {
                unsafe { real::close()(fd) };
            }
            match e {
                Some(e) if e != 0 => Some(Err(e)),
                _ => None,
            }
        }
    }
}

/// Whether `fd` is what a held socket may stand in for: a TCP socket, not yet listening.
/// Checked with the kernel rather than the descriptor table, which can be stale.
fn replaceable(fd: c_int) -> bool {
    #[cfg(not(target_vendor = "apple"))]
    {
        int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE) == libc::SOCK_STREAM
            && int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == libc::IPPROTO_TCP
            && int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == 0
    }
    #[cfg(target_vendor = "apple")]
    {
        int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE) == libc::SOCK_STREAM
            && int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == 0
    }
}

/// Puts `held` in place of the server's socket `fd`, keeping what the server set on its
/// descriptor: O_NONBLOCK (libuv, asyncio) and FD_CLOEXEC.
fn install(held: c_int, fd: c_int) -> bool {
    // SAFETY: fcntl and dup2 on descriptors this process owns.
    unsafe {
        let fl = sys::fcntl(fd, libc::F_GETFL, 0);
        let fdfl = sys::fcntl(fd, libc::F_GETFD, 0);
        if fl < 0 || fdfl < 0 {
            return false;
        }
        let hfl = sys::fcntl(held, libc::F_GETFL, 0);
        sys::fcntl(
            held,
            libc::F_SETFL,
            (hfl & !libc::O_NONBLOCK) | (fl & libc::O_NONBLOCK),
        );
        // Atomically with its close-on-exec flag where dup3 exists: another thread's
        // fork+exec in between would otherwise inherit the listener.
        #[cfg(not(target_vendor = "apple"))]
        {
            let cloexec = if fdfl & libc::FD_CLOEXEC != 0 {
                libc::O_CLOEXEC
            } else {
                0
            };
            if real::dup3()(held, fd, cloexec) != fd {
                return false;
            }
        }
        #[cfg(target_vendor = "apple")]
        {
            if real::dup2()(held, fd) != fd {
                return false;
            }
            sys::fcntl(fd, libc::F_SETFD, fdfl);
        }
    }
    true
}

/// Answers the bind of `fd` to `ep` (with the IPv6 scope id the caller's address gave, or
/// 0) from the held socket. Some((rc, errno)) when the command answered; None to bind as
/// usual (the command is gone, or the exchange failed).
pub fn take(hold: &Hold, fd: c_int, ep: &Endpoint, scope_id: u32) -> Option<(c_int, c_int)> {
    let v6only = match ep {
        Endpoint::V6(..) => int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) != 0,
        Endpoint::V4(..) => false,
    };
    let req = Request {
        endpoint: *ep,
        v6only,
        scope_id,
        pid: report::pid(),
    };
    if !replaceable(fd) {
        return None;
    }
    let Some(conn) = connect(hold.path()) else {
        report::at(Level::Warn, |l| {
            write!(
                l,
                "{ep}: the reuse command holding this port is gone; binding without it"
            )
        });
        return None;
    };
    let answer = ask(conn, &req);
    // SAFETY: conn is ours.
    unsafe { real::close()(conn) };
    match answer {
        Some(Ok(held)) => {
            let ok = install(held, fd);
            unsafe { real::close()(held) };
            if ok {
                report::at(Level::Info, |l| {
                    write!(l, "{ep} tcp: the socket held by reuse")
                });
                Some((0, 0))
            } else {
                None
            }
        }
        Some(Err(e)) => {
            report::at(Level::Warn, |l| {
                write!(
                    l,
                    "{ep}: the reuse command could not bind this port (errno {e})"
                )
            });
            Some((-1, e))
        }
        None => {
            report::at(Level::Warn, |l| {
                write!(
                    l,
                    "{ep}: no answer from the reuse command holding this port; binding without it"
                )
            });
            None
        }
    }
}
