//! The hand-over server: answers the library's requests for held sockets, all connections
//! at once through one poll loop, so a silent or slow peer delays nobody else.
//!
//! Semantics (README, hold mode):
//! - Each address a server binds is held on its own, keyed by (family, address, port,
//!   IPV6_V6ONLY, scope): nginx's `listen 80; listen [::]:80;` gets two held sockets.
//! - A held socket is handed to an instance only while no other live process has it: the
//!   hand-over bridges the gap after the previous instance's death, it does not let two
//!   live instances share one socket (and one O_NONBLOCK flag). A second live instance gets
//!   EADDRINUSE, as without reuse (and waits or takes over if asked), unless sharing was
//!   asked for (`--options port`, or SO_REUSEPORT set by the server on its own socket):
//!   then it binds a socket of its own in the port's SO_REUSEPORT group.
//! - A new address on a held port replaces the held sockets it conflicts with only when
//!   none of them is in use and the new socket could be made; a failed request keeps them.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reuse_core::config::{Options, PortSet};
use reuse_core::decision::Transport;
use reuse_core::endpoint::Endpoint;
use reuse_core::hold_protocol::{Message, Reply, Request, MESSAGE_LEN};
use reuse_core::proc_net;

use crate::out::say;
use crate::procfs;

/// How long a peer has to send its request, and to say whether it installed the socket.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; beyond that the oldest is dropped.
const MAX_CONNS: usize = 256;
/// How long looking for a live holder of a held socket may take (then it counts as in use).
const SCAN_LIMIT: Duration = Duration::from_secs(2);

type Key = (Endpoint, bool, u32);

struct Held {
    request: Request,
    fd: OwnedFd,
    inode: u64,
    /// Hand-overs sent and not yet confirmed or refused by the peer.
    pending: usize,
    /// Passed by a service manager (LISTEN_FDS): its socket, which outlives reuse, and
    /// never replaced.
    passed: bool,
}

enum State {
    Asking,
    Confirming(Key),
}

struct Conn {
    fd: OwnedFd,
    pid: i32,
    deadline: Instant,
    state: State,
}

/// What the server tells the supervisor: the ports some instance bound.
#[derive(Default)]
pub struct Seen {
    pub ports: Vec<u16>,
}

pub struct Server {
    listener: OwnedFd,
    options: Options,
    ports: PortSet,
    held: Vec<Held>,
    conns: Vec<Conn>,
    uid: u32,
    me: i32,
    /// Processes the library confirmed it gave a held socket to.
    takers: Vec<i32>,
    /// Lines at the default level (the first hold of each address); off with --log error.
    speak: bool,
    /// Every hand-over too (--log info).
    verbose: bool,
    seen: Arc<Mutex<Seen>>,
    /// The last address that could not be held, and why: said once.
    last_refusal: Option<(Endpoint, i32)>,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn get_int(fd: RawFd, level: i32, name: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len outlive the call and len is v's size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

fn set_int(fd: RawFd, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: v outlives the call and the length is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// A listening socket for `req`, with SO_REUSEADDR (so the instances' connections left in
/// TIME_WAIT never stand in its way) and what `--options` asks: SO_REUSEPORT, SO_LINGER
/// (which the connections accepted from it inherit).
fn open_listener(req: &Request, options: &Options, reuseport: bool) -> io::Result<OwnedFd> {
    let family = match req.endpoint {
        Endpoint::V4(..) => libc::AF_INET,
        Endpoint::V6(..) => libc::AF_INET6,
    };
    // SAFETY: plain socket call; the fd is owned right away.
    let fd = unsafe {
        OwnedFd::from_raw_fd(cvt(libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ))?)
    };
    let raw = fd.as_raw_fd();
    set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if options.port || reuseport {
        set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if let Some(seconds) = options.linger {
        let l = libc::linger {
            l_onoff: 1,
            l_linger: seconds.into(),
        };
        // SAFETY: l outlives the call and the length is its size.
        cvt(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        })?;
    }
    let rc = match req.endpoint {
        Endpoint::V4(a, port) => {
            // SAFETY: a zeroed sockaddr_in is valid.
            let mut sin: libc::sockaddr_in = unsafe { zeroed() };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a);
            // SAFETY: sin is a valid sockaddr_in of that size.
            unsafe {
                libc::bind(
                    raw,
                    (&sin as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        Endpoint::V6(a, port) => {
            set_int(
                raw,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                req.v6only.into(),
            )?;
            // SAFETY: a zeroed sockaddr_in6 is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { zeroed() };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = port.to_be();
            sin6.sin6_addr.s6_addr = a;
            sin6.sin6_scope_id = req.scope_id;
            // SAFETY: sin6 is a valid sockaddr_in6 of that size.
            unsafe {
                libc::bind(
                    raw,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    cvt(rc)?;
    cvt(crate::sys::listen(raw, libc::SOMAXCONN))?;
    Ok(fd)
}

/// Sends `reply`, with `fd` as SCM_RIGHTS; false if it could not be sent.
fn send_reply(conn: RawFd, reply: Reply, fd: Option<RawFd>) -> bool {
    let msg = reply.encode();
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive sendmsg.
    let mut mh: libc::msghdr = unsafe { zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: the control buffer has room for one descriptor, filled through the macros.
        unsafe {
            mh.msg_control = control.as_mut_ptr().cast();
            mh.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
        }
    }
    // SAFETY: mh describes valid buffers.
    let n = unsafe { libc::sendmsg(conn, &mh, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    n == msg.len() as isize
}

/// The peer's uid and PID (SO_PEERCRED).
fn peer(conn: RawFd) -> Option<(u32, i32)> {
    // SAFETY: a zeroed ucred is valid.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len outlive the call and len is cred's size.
    let rc = unsafe {
        libc::getsockopt(
            conn,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((cred.uid, cred.pid))
}

/// Where a socket of ours is bound.
fn local_endpoint(fd: RawFd) -> Option<Endpoint> {
    // SAFETY: a zeroed sockaddr_storage is valid; getsockname fills at most its size.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    if unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    // SAFETY: ss is plain bytes of its own size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&ss as *const libc::sockaddr_storage).cast::<u8>(),
            len as usize,
        )
    };
    reuse_core::endpoint::decode(bytes, reuse_core::endpoint::SockaddrAbi::LINUX, false)
        .map(|a| a.endpoint)
}

/// Whether a listener other than `ours` is on an address that conflicts with `req`.
fn someone_else_listens(req: &Request, ours: &[u64]) -> bool {
    [false, true].into_iter().any(|v6| {
        procfs::table(reuse_core::decision::Transport::Tcp, v6)
            .unwrap_or_default()
            .iter()
            .any(|e| {
                e.state == reuse_core::proc_net::TCP_LISTEN
                    && !ours.contains(&e.inode)
                    && reuse_core::proc_net::overlaps(&e.local, &req.endpoint)
            })
    })
}

impl Server {
    pub fn new(
        listener: OwnedFd,
        options: Options,
        ports: PortSet,
        speak: bool,
        verbose: bool,
        seen: Arc<Mutex<Seen>>,
    ) -> Server {
        // SAFETY: the listener is ours; non-blocking so accepting never waits.
        unsafe {
            let fl = libc::fcntl(listener.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(listener.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        Server {
            listener,
            options,
            ports,
            held: Vec::new(),
            conns: Vec::new(),
            uid: crate::sys::euid(),
            me: std::process::id() as i32,
            takers: Vec::new(),
            speak,
            verbose,
            seen,
            last_refusal: None,
        }
    }

    /// Takes a listening socket passed by a service manager (LISTEN_FDS) as the held socket
    /// of its address, if it is a listening TCP socket on a held port; else gives it back.
    pub fn adopt(&mut self, fd: OwnedFd) -> Result<(), OwnedFd> {
        let raw = fd.as_raw_fd();
        let int = |level, name| get_int(raw, level, name);
        if int(libc::SOL_SOCKET, libc::SO_TYPE) != Some(libc::SOCK_STREAM)
            || int(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Some(1)
        {
            return Err(fd);
        }
        let Some(endpoint) = local_endpoint(raw) else {
            return Err(fd);
        };
        if !self.ports.contains(endpoint.port()) {
            return Err(fd);
        }
        let v6only = endpoint.is_v6() && int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Some(1);
        crate::sys::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC);
        if self.speak {
            say!(
                "reuse[{}]: holding {endpoint}{}, the socket passed by the service manager (LISTEN_FDS, descriptor {raw})",
                self.me,
                if v6only { " (IPv6 only)" } else { "" }
            );
        }
        if let Ok(mut s) = self.seen.lock() {
            s.ports.push(endpoint.port());
        }
        self.held.push(Held {
            request: Request {
                endpoint,
                v6only,
                scope_id: 0,
                reuseport: false,
            },
            inode: procfs::inode_of(fd.as_fd()).unwrap_or(0),
            fd,
            pending: 0,
            passed: true,
        });
        Ok(())
    }

    /// Serves until the process exits. Nothing a peer does ends it.
    pub fn serve(mut self) {
        loop {
            self.turn();
        }
    }

    fn turn(&mut self) {
        let now = Instant::now();
        let timeout = self
            .conns
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .map_or(-1, |d| d.as_millis().min(60_000) as i32 + 1);
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.listener.as_raw_fd())
            .chain(self.conns.iter().map(|c| c.fd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            // The held sockets too, for POLLHUP alone (which poll reports whatever is
            // asked): a server that calls shutdown() on its listener (socat does, when it
            // stops) ends it for everyone, and reuse listens again at once.
            .chain(self.held.iter().map(|h| libc::pollfd {
                fd: h.fd.as_raw_fd(),
                events: 0,
                revents: 0,
            }))
            .collect();
        // SAFETY: fds is a valid array of that length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        let conns = self.conns.len();
        let hung: Vec<usize> = fds
            .iter()
            .skip(1 + conns)
            .enumerate()
            .filter(|(_, p)| p.revents & libc::POLLHUP != 0)
            .map(|(i, _)| i)
            .collect();
        for at in hung {
            let pid = self.me;
            if let Some(req) = self.held.get(at).map(|h| h.request) {
                let _ = self.revive(at, pid, &req);
            }
        }
        fds.truncate(1 + conns);
        let ready: Vec<bool> = fds.iter().map(|p| p.revents != 0).collect();
        // Connections first (by position, before accepting adds any), then new ones.
        let mut done = Vec::new();
        for (i, r) in ready.iter().enumerate().skip(1) {
            if *r && !self.read_from(i - 1) {
                done.push(i - 1);
            }
        }
        let now = Instant::now();
        for (i, c) in self.conns.iter().enumerate() {
            if c.deadline <= now && !done.contains(&i) {
                done.push(i);
            }
        }
        done.sort_unstable();
        for i in done.into_iter().rev() {
            self.drop_conn(i);
        }
        if ready.first() == Some(&true) {
            self.accept_all();
        }
    }

    fn accept_all(&mut self) {
        for _ in 0..64 {
            // SAFETY: accept on our listening socket; the connection is owned right away.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if fd < 0 {
                // EAGAIN: all taken. EMFILE and the like: the pending ones wait for the next
                // turn; nothing ends the service.
                return;
            }
            // SAFETY: a descriptor accept just gave us.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let Some((uid, pid)) = peer(fd.as_raw_fd()) else {
                continue;
            };
            if uid != self.uid && uid != 0 {
                if self.verbose {
                    say!("reuse[{}]: refused a hand-over request from PID {pid} (uid {uid}): only this user and root are served", self.me);
                }
                send_reply(fd.as_raw_fd(), Reply::NotYourUser, None);
                continue;
            }
            if self.conns.len() >= MAX_CONNS {
                self.drop_conn(0);
            }
            self.conns.push(Conn {
                fd,
                pid,
                deadline: Instant::now() + PEER_TIMEOUT,
                state: State::Asking,
            });
        }
    }

    fn drop_conn(&mut self, i: usize) {
        if i >= self.conns.len() {
            return;
        }
        let c = self.conns.remove(i);
        if let State::Confirming(key) = c.state {
            self.unpend(&key);
        }
    }

    fn unpend(&mut self, key: &Key) {
        if let Some(h) = self.held.iter_mut().find(|h| h.request.key() == *key) {
            h.pending = h.pending.saturating_sub(1);
        }
    }

    /// Reads what connection `i` sent; false when it is finished with.
    fn read_from(&mut self, i: usize) -> bool {
        let Some(c) = self.conns.get(i) else {
            return false;
        };
        let mut buf = [0u8; 64];
        // SAFETY: buf is valid for its length; the socket is non-blocking.
        let n = unsafe {
            libc::recv(
                c.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
            return true;
        }
        let msg = (n == MESSAGE_LEN as isize)
            .then(|| buf.get(..MESSAGE_LEN).and_then(Message::decode))
            .flatten();
        match (&c.state, msg) {
            (State::Asking, Some(Message::Ask(req))) => {
                let (fd, pid) = (c.fd.as_raw_fd(), c.pid);
                self.answer(i, fd, pid, &req)
            }
            (State::Confirming(key), Some(Message::Installed)) => {
                let (key, pid) = (*key, c.pid);
                self.unpend(&key);
                if !self.takers.contains(&pid) {
                    self.takers.push(pid);
                }
                if let Some(c) = self.conns.get_mut(i) {
                    c.state = State::Asking;
                }
                false
            }
            // NotInstalled, end of file, garbage: finished; drop_conn releases a pending
            // hand-over.
            _ => false,
        }
    }

    /// Answers one request; true while the connection has more to say (a confirmation).
    fn answer(&mut self, i: usize, conn: RawFd, pid: i32, req: &Request) -> bool {
        let port = req.endpoint.port();
        if port == 0 || !self.ports.contains(port) {
            send_reply(conn, Reply::NotHeld, None);
            return false;
        }
        let key = req.key();
        // The socket of this key; else a passed one this bind was made for (same family
        // and port, overlapping address): the service manager's unit says where to listen.
        let found = self
            .held
            .iter()
            .position(|h| h.request.key() == key)
            .or_else(|| {
                self.held.iter().position(|h| {
                    h.passed
                        && h.request.endpoint.is_v6() == req.endpoint.is_v6()
                        && h.request.endpoint.port() == port
                        && (h.request.endpoint == req.endpoint
                            || h.request.endpoint.is_any()
                            || req.endpoint.is_any())
                })
            });
        let at = match found {
            Some(at) => {
                if self.taken(at) {
                    // Sharing asked for, by --options port or by the server itself (its
                    // own socket has SO_REUSEPORT, as the held one then has): the second
                    // instance binds beside the first, as it could without reuse.
                    let share = self.options.port || req.reuseport;
                    let reply = if share {
                        Reply::BindYourself
                    } else {
                        Reply::Fail(libc::EADDRINUSE)
                    };
                    if self.verbose {
                        say!(
                            "reuse[{}]: PID {pid} asked for {} while another live process has it: {}",
                            self.me,
                            req.endpoint,
                            if share { "it binds its own socket (SO_REUSEPORT)" } else { "EADDRINUSE" }
                        );
                    }
                    send_reply(conn, reply, None);
                    return false;
                }
                if !(self.options.port || req.reuseport) && self.shared_beside(at) {
                    // An instance that asked for no sharing would join the live ones'
                    // SO_REUSEPORT group through the held socket: as without reuse, the
                    // port is in use.
                    if self.verbose {
                        say!(
                            "reuse[{}]: PID {pid} asked for {} while other live instances share the port: EADDRINUSE",
                            self.me,
                            req.endpoint
                        );
                    }
                    send_reply(conn, Reply::Fail(libc::EADDRINUSE), None);
                    return false;
                }
                match self.revive(at, pid, req) {
                    Ok(at) => at,
                    Err(e) => {
                        send_reply(conn, Reply::Fail(e), None);
                        return false;
                    }
                }
            }
            None => match self.hold_new(req, pid) {
                Ok(at) => at,
                Err(e) => {
                    send_reply(conn, Reply::Fail(e), None);
                    return false;
                }
            },
        };
        let Some(h) = self.held.get_mut(at) else {
            return false;
        };
        if !send_reply(conn, Reply::Socket, Some(h.fd.as_raw_fd())) {
            return false;
        }
        h.pending += 1;
        if self.verbose {
            say!("reuse[{}]: handed {} to PID {pid}", self.me, req.endpoint);
        }
        if let Some(c) = self.conns.get_mut(i) {
            c.state = State::Confirming(key);
            c.deadline = Instant::now() + PEER_TIMEOUT;
        }
        true
    }

    /// Makes the socket for `req` in place of held sockets `ours`, with no moment in which
    /// the port is free: the old sockets and the new one share this user's SO_REUSEPORT group
    /// while the new one is made (the kernel lets no other user in, where closing first
    /// would let anyone bind), then the old ones close.
    fn replace(&mut self, ours: &[usize], req: &Request) -> io::Result<OwnedFd> {
        for &k in ours {
            if let Some(h) = self.held.get(k) {
                let _ = set_int(h.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
            }
        }
        let made = open_listener(req, &self.options, true);
        if made.is_err() {
            for &k in ours {
                if let Some(h) = self
                    .held
                    .get(k)
                    .filter(|h| !self.options.port && !h.request.reuseport)
                {
                    let _ = set_int(h.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 0);
                }
            }
            return made;
        }
        for &k in ours.iter().rev() {
            if k < self.held.len() {
                let old = self.held.remove(k);
                say!(
                    "reuse[{}]: no longer holding {}: replaced by {}",
                    self.me,
                    old.request.endpoint,
                    req.endpoint
                );
            }
        }
        if let (Ok(fd), false) = (&made, self.options.port || req.reuseport) {
            let _ = set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 0);
        }
        made
    }

    /// Whether held socket `at` is in use: handed over and not yet confirmed, or open in a
    /// process other than reuse. The processes that can have it are COMMAND's tree (reuse is
    /// its subreaper, so even an orphaned worker stays in it) and the processes it was handed
    /// to; one of those whose descriptors cannot be read, or a look that takes too long,
    /// counts as having it: two live instances must never share one socket by a guess.
    fn taken(&mut self, at: usize) -> bool {
        let Some(h) = self.held.get(at) else {
            return false;
        };
        if h.pending > 0 {
            return true;
        }
        self.takers
            .retain(|p| Path::new(&format!("/proc/{p}")).exists());
        let mut pids = procfs::descendants(self.me);
        for p in &self.takers {
            if !pids.contains(p) {
                pids.push(*p);
            }
        }
        match procfs::who_holds(h.inode, &pids, SCAN_LIMIT) {
            procfs::Holding::Nobody => false,
            procfs::Holding::Pid(p) => {
                if self.verbose {
                    say!(
                        "reuse[{}]: {} is in use by PID {p}",
                        self.me,
                        h.request.endpoint
                    );
                }
                true
            }
            procfs::Holding::Unsure(why) => {
                if self.speak {
                    say!(
                        "reuse[{}]: {}: counted as in use: {why}",
                        self.me,
                        h.request.endpoint
                    );
                }
                true
            }
        }
    }

    /// Whether a live socket other than held socket `at` listens on its address (instances
    /// that shared the port bound their own beside it).
    fn shared_beside(&self, at: usize) -> bool {
        let Some(h) = self.held.get(at) else {
            return false;
        };
        // Nobody can be bound beside a socket without SO_REUSEPORT (the kernel refuses the
        // bind; and it is cleared only for an instance that shared with nobody): the usual
        // restart reads no socket table.
        if get_int(h.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT) != Some(1) {
            return false;
        }
        let ep = h.request.endpoint;
        let Some(table) = procfs::table(Transport::Tcp, ep.is_v6()) else {
            return false;
        };
        table.iter().any(|e| {
            e.state == proc_net::TCP_LISTEN
                && e.inode != h.inode
                && e.local.port() == ep.port()
                && (e.local == ep || e.local.is_any() || ep.is_any())
        })
    }

    /// Listens again on held socket `at` if a server shut it down (socat calls shutdown()
    /// on its listener when it stops), or makes it anew; its index, or the errno.
    fn revive(&mut self, at: usize, pid: i32, asked: &Request) -> Result<usize, i32> {
        let options = self.options;
        let Some(h) = self.held.get_mut(at) else {
            return Err(libc::EIO);
        };
        let fd = h.fd.as_raw_fd();
        // SO_REUSEPORT as this instance set it on its own socket (or as --options asks),
        // whatever the one before did: it may have set it on the held socket itself.
        if !options.port {
            let _ = set_int(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                asked.reuseport.into(),
            );
            h.request.reuseport = asked.reuseport;
        }
        let listening = get_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_some_and(|v| v != 0);
        if listening || crate::sys::listen(fd, libc::SOMAXCONN) == 0 {
            return Ok(at);
        }
        let req = h.request;
        if self.speak {
            say!(
                "reuse[{}]: {} was shut down by a server; making it anew",
                self.me,
                req.endpoint
            );
        }
        self.held.remove(at);
        self.hold_new(&req, pid)
    }

    /// Makes the listening socket for a new address; the index of its entry, or the errno.
    fn hold_new(&mut self, req: &Request, pid: i32) -> Result<usize, i32> {
        let mut made = open_listener(req, &self.options, req.reuseport);
        if matches!(&made, Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE)) {
            // Maybe in the way of held sockets of ours (the server moved to another address
            // between restarts): replace those, but only if none is in use and nothing else
            // stands in the way, so a request that fails anyway costs no held socket.
            let ours: Vec<usize> = (0..self.held.len())
                .filter(|&k| {
                    self.held
                        .get(k)
                        .is_some_and(|h| !h.passed && h.request.conflicts(req))
                })
                .collect();
            let inodes: Vec<u64> = ours
                .iter()
                .filter_map(|&k| self.held.get(k).map(|h| h.inode))
                .collect();
            if !ours.is_empty()
                && !ours.iter().any(|&k| self.taken(k))
                && !someone_else_listens(req, &inodes)
            {
                made = self.replace(&ours, req);
            }
        }
        match made {
            Ok(fd) => {
                let inode = procfs::inode_of(fd.as_fd()).unwrap_or(0);
                if self.speak {
                    say!(
                        "reuse[{}]: holding {}{} for PID {pid} and the instances after it",
                        self.me,
                        req.endpoint,
                        if req.endpoint.is_v6() && req.v6only {
                            " (IPv6 only)"
                        } else {
                            ""
                        }
                    );
                }
                if let Ok(mut s) = self.seen.lock() {
                    s.ports.push(req.endpoint.port());
                }
                self.held.push(Held {
                    request: *req,
                    fd,
                    inode,
                    pending: 0,
                    passed: false,
                });
                Ok(self.held.len() - 1)
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                // Once, not at every retry of a server that waits or takes over.
                if self.speak && self.last_refusal != Some((req.endpoint, errno)) {
                    say!("reuse[{}]: cannot hold {}: {e}", self.me, req.endpoint);
                }
                self.last_refusal = Some((req.endpoint, errno));
                Err(errno)
            }
        }
    }
}
