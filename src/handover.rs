//! Hold mode, the library's side: a bind to a held port is answered with the listening
//! socket that `reuse run --hold` keeps open across restarts.
//!
//! The socket comes over a Unix SOCK_SEQPACKET connection as SCM_RIGHTS and is put in place
//! of the server's own socket under the same descriptor number, so the server's `listen()`,
//! `accept()` and `getsockname()` work on it unchanged. While no instance runs, connections
//! wait in that socket's queue instead of being refused. Passing it at bind time (rather
//! than leaving it open across exec, as systemd does) survives programs that close the
//! descriptors they inherit, as Python's subprocess and Node do.
//!
//! Nothing that comes over the connection is trusted as such: the answering process must
//! run as this user or root (SO_PEERCRED), and a descriptor must be a listening TCP socket
//! bound to the very address asked before it replaces anything. Anything else is refused
//! and the bind goes on as without hold, with one line saying why.

use core::mem::{size_of, zeroed};
use core::sync::atomic::{AtomicI32, Ordering};

use libc::{c_int, sockaddr_un};
use reuse_core::config::{Hold, Level};
use reuse_core::endpoint::{self, Endpoint, SockaddrAbi};
use reuse_core::hold_protocol::{Message, Reply, Request, REPLY_LEN};
use reuse_core::put;

use crate::{errno, real, report, sys};

/// How long a server waits for the command to answer before binding on its own.
const ANSWER_TIMEOUT_S: i64 = 5;

/// The PID of the `reuse` command that answered last: it holds the port on this process's
/// behalf, so it is never the holder to name or stop.
#[cfg_attr(target_os = "linux", link_section = ".data")]
static COMMAND_PID: AtomicI32 = AtomicI32::new(0);

pub fn command_pid() -> i32 {
    COMMAND_PID.load(Ordering::Relaxed)
}

fn int_option(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    sys::getsockopt_int(fd, level, name)
}

#[cfg(not(target_vendor = "apple"))]
fn protocol_is_tcp(fd: c_int) -> bool {
    int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
}

#[cfg(target_vendor = "apple")]
fn protocol_is_tcp(_fd: c_int) -> bool {
    true
}

pub fn family_of(ep: &Endpoint) -> c_int {
    if ep.is_v6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    }
}

#[cfg(not(target_vendor = "apple"))]
fn domain(fd: c_int) -> Option<c_int> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

#[cfg(target_vendor = "apple")]
fn domain(_fd: c_int) -> Option<c_int> {
    None
}

/// The family of `fd` if it is a TCP socket (not MPTCP), not yet listening: what a held
/// socket may stand in for. Asked of the kernel, not of the descriptor table, which can be
/// stale.
pub fn replaceable(fd: c_int) -> Option<c_int> {
    let family = domain(fd)?;
    (int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && protocol_is_tcp(fd)
        && int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(0))
    .then_some(family)
}

/// Whether `fd`, as received, is what was asked for: a listening TCP socket bound to `ep`.
fn is_the_socket_asked(fd: c_int, ep: &Endpoint) -> bool {
    if sys::fstat(fd).is_none_or(|st| st.st_mode & libc::S_IFMT != libc::S_IFSOCK) {
        return false;
    }
    if domain(fd).is_some_and(|d| d != family_of(ep))
        || int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE) != Some(libc::SOCK_STREAM)
        || !protocol_is_tcp(fd)
        || int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Some(1)
    {
        return false;
    }
    sys::getsockname(fd).is_some_and(|(bytes, len)| {
        bytes
            .get(..len)
            .and_then(|b| endpoint::decode(b, abi(), false))
            .is_some_and(|a| a.endpoint == *ep)
    })
}

pub fn abi() -> SockaddrAbi {
    if cfg!(target_vendor = "apple") {
        SockaddrAbi::BSD
    } else {
        SockaddrAbi::LINUX
    }
}

fn set_timeouts(conn: c_int) {
    let tv = libc::timeval {
        tv_sec: ANSWER_TIMEOUT_S as _,
        tv_usec: 0,
    };
    for name in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        sys::setsockopt_value(conn, libc::SOL_SOCKET, name, &tv);
    }
}

/// Why the hand-over socket could not be used.
enum Unreachable {
    /// Nothing listens at the path any more: the command is gone.
    Gone,
    /// The path is not ours to use (another user's folder).
    Forbidden,
    /// The process answering is another user's (not root): a stand-in.
    Stranger(u32),
    Other(c_int),
}

struct Conn(c_int);

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the descriptor is the library's own.
        unsafe { real::close()(self.0) };
    }
}

#[cfg(not(target_vendor = "apple"))]
fn peer(conn: c_int) -> Option<(u32, i32)> {
    // SAFETY: a zeroed ucred is a valid value.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len outlive the call and len is cred's size.
    let rc = unsafe {
        sys::getsockopt_raw(
            conn,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((cred.uid, cred.pid))
}

#[cfg(target_vendor = "apple")]
fn peer(_conn: c_int) -> Option<(u32, i32)> {
    None
}

/// Connects to the command's hand-over socket and checks who answers.
fn connect(path: &[u8]) -> Result<Conn, Unreachable> {
    // SAFETY: a zeroed sockaddr_un is valid.
    let mut sun: sockaddr_un = unsafe { zeroed() };
    sun.sun_family = libc::AF_UNIX as _;
    if path.len() >= sun.sun_path.len() {
        return Err(Unreachable::Other(libc::ENAMETOOLONG));
    }
    for (d, s) in sun.sun_path.iter_mut().zip(path) {
        *d = *s as _;
    }
    #[cfg(not(target_vendor = "apple"))]
    let ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    #[cfg(target_vendor = "apple")]
    let ty = libc::SOCK_STREAM;
    // SAFETY: through the real socket(): this is the library's own socket, not the host's.
    let fd = unsafe { real::socket()(libc::AF_UNIX, ty, 0) };
    if fd < 0 {
        return Err(Unreachable::Other(errno::get()));
    }
    let conn = Conn(fd);
    set_timeouts(fd);
    let rc = sys::connect_unix(fd, &sun);
    if rc != 0 {
        return Err(match errno::get() {
            libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR => Unreachable::Gone,
            libc::EACCES | libc::EPERM => Unreachable::Forbidden,
            e => Unreachable::Other(e),
        });
    }
    let me = sys::geteuid();
    match peer(fd) {
        Some((uid, pid)) if uid == me || uid == 0 => {
            COMMAND_PID.store(pid, Ordering::Relaxed);
            Ok(conn)
        }
        Some((uid, _)) => Err(Unreachable::Stranger(uid)),
        None if cfg!(target_vendor = "apple") => Ok(conn),
        None => Err(Unreachable::Other(errno::get())),
    }
}

fn send(conn: &Conn, m: Message) -> bool {
    let msg = m.encode();
    let sent = sys::send(conn.0, &msg, libc::MSG_NOSIGNAL);
    sent == msg.len() as isize
}

/// Reads the reply, and the descriptor that came with it (every other one is closed).
fn receive(conn: &Conn) -> Option<(Reply, Option<c_int>)> {
    let mut reply = [0u8; REPLY_LEN];
    let mut iov = libc::iovec {
        iov_base: reply.as_mut_ptr().cast(),
        iov_len: reply.len(),
    };
    // Room for a few descriptors, aligned as cmsghdr wants; a peer that sends more than
    // fits gets MSG_CTRUNC and the kernel closes the rest.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives recvmsg.
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
    let n = unsafe { sys::recvmsg(conn.0, &mut mh, flags) };
    if n < 0 {
        return None;
    }
    // Every descriptor that came is taken first, so none leaks whatever the reply says.
    let mut held: Option<c_int> = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc macros, within
    // the length it reported.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const c_int;
                let bytes = ((*c).cmsg_len as usize).saturating_sub(data as usize - c as usize);
                for i in 0..bytes / size_of::<c_int>() {
                    let fd = core::ptr::read_unaligned(data.add(i));
                    match held {
                        None => held = Some(fd),
                        Some(_) => {
                            real::close()(fd);
                        }
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    let answer = reply.get(..n as usize).and_then(Reply::decode);
    match (answer, held) {
        (Some(Reply::Socket), Some(fd)) => Some((Reply::Socket, Some(fd))),
        (a, fd) => {
            if let Some(fd) = fd {
                // SAFETY: a descriptor this process just received and nobody else knows.
                unsafe { real::close()(fd) };
            }
            a.filter(|r| *r != Reply::Socket).map(|r| (r, None))
        }
    }
}

/// Puts `held` in place of the server's socket `fd`, keeping what the server set on its
/// descriptor: O_NONBLOCK (libuv, asyncio) and FD_CLOEXEC.
pub fn install(held: c_int, fd: c_int) -> bool {
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
        // SAFETY: dup3 takes no memory; both descriptors are this process's.
        if unsafe { real::dup3()(held, fd, cloexec) } != fd {
            return false;
        }
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: dup2 takes no memory; both descriptors are this process's.
        if unsafe { real::dup2()(held, fd) } != fd {
            return false;
        }
        sys::fcntl(fd, libc::F_SETFD, fdfl);
    }
    true
}

/// What came of asking.
pub enum Outcome {
    /// The held socket is now `fd`: the bind succeeded.
    Installed,
    /// The bind fails with this errno, as it would have without reuse.
    Failed(c_int),
    /// Bind as without hold: the command is gone, refused this process, or asked for it.
    Unavailable,
}

/// Says once per process that hold mode cannot read bind addresses here (process_vm_readv
/// refused, as a seccomp filter can), so the server binds without the held socket.
pub fn cannot_read_addresses(errno: c_int) {
    #[cfg_attr(target_os = "linux", link_section = ".data")]
    static SAID: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        report::at(Level::Warn, |l| {
            put!(l, "hold mode cannot read this process's bind addresses (process_vm_readv failed with errno ", errno, ": a seccomp filter?); its binds go on without the held sockets")
        });
    }
}

/// IPV6_V6ONLY as the server set it on its socket.
pub fn v6only(fd: c_int) -> bool {
    int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_some_and(|v| v != 0)
}

/// SO_REUSEPORT as the server set it on its socket.
pub fn reuseport(fd: c_int) -> bool {
    int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT).is_some_and(|v| v != 0)
}

/// Answers the bind of `fd` from the held socket, or says why not.
pub fn take(hold: &Hold, fd: c_int, request: &Request) -> Outcome {
    let ep = request.endpoint;
    let conn = match connect(hold.path()) {
        Ok(c) => c,
        Err(why) => {
            report::at(Level::Warn, |l| {
                put!(l, ep, ": ");
                match why {
                    Unreachable::Gone => put!(l, "the reuse command holding this port is gone"),
                    Unreachable::Forbidden => put!(
                        l,
                        "the reuse command holding this port belongs to another user (its hand-over socket is not this user's to use)"
                    ),
                    Unreachable::Stranger(uid) => put!(
                        l,
                        "refused the hand-over socket at REUSE_HOLD: it is answered by uid ",
                        uid,
                        ", neither this user nor root"
                    ),
                    Unreachable::Other(e) => put!(
                        l,
                        "cannot reach the reuse command holding this port (errno ",
                        e,
                        ")"
                    ),
                }
                put!(l, "; binding without it");
            });
            return Outcome::Unavailable;
        }
    };
    if !send(&conn, Message::Ask(*request)) {
        return no_answer(&ep);
    }
    match receive(&conn) {
        Some((Reply::Socket, Some(held))) => {
            let ok = is_the_socket_asked(held, &ep) && install(held, fd);
            // SAFETY: held is this process's own copy, now installed (or refused).
            unsafe { real::close()(held) };
            let _ = send(
                &conn,
                if ok {
                    Message::Installed
                } else {
                    Message::NotInstalled
                },
            );
            if ok {
                report::at(Level::Info, |l| {
                    put!(l, ep, " tcp: the socket held by reuse")
                });
                Outcome::Installed
            } else {
                report::at(Level::Warn, |l| {
                    put!(l, ep, ": refused the descriptor handed over: not a listening TCP socket bound to this address; binding without it")
                });
                Outcome::Unavailable
            }
        }
        Some((Reply::Fail(e), _)) => Outcome::Failed(e),
        Some((Reply::BindYourself, _)) => {
            report::at(Level::Info, |l| {
                put!(l, ep, ": another live instance has the held socket; binding a socket of this process's own (SO_REUSEPORT sharing was asked)")
            });
            Outcome::Unavailable
        }
        Some((Reply::NotHeld, _)) => {
            report::at(Level::Warn, |l| {
                put!(l, ep, ": the reuse command does not hold this port (REUSE_HOLD_PORTS differs from its --hold); binding without it")
            });
            Outcome::Unavailable
        }
        Some((Reply::NotYourUser, _)) => {
            report::at(Level::Warn, |l| {
                put!(l, ep, ": the reuse command holding this port serves only its own user, and this process (uid ", sys::geteuid(), ") is not it; binding without it")
            });
            Outcome::Unavailable
        }
        _ => no_answer(&ep),
    }
}

fn no_answer(ep: &Endpoint) -> Outcome {
    report::at(Level::Warn, |l| {
        put!(
            l,
            ep,
            ": no answer from the reuse command holding this port; binding without it"
        )
    });
    Outcome::Unavailable
}
