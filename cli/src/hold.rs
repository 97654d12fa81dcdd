//! `reuse run --hold PORTS`: keep the listening sockets of those ports open across restarts,
//! so no client is refused while the server is down.
//!
//! reuse stays as COMMAND's parent. When any process of COMMAND's tree binds a held TCP
//! port, the library asks over a Unix socket and is handed a listening socket (SCM_RIGHTS)
//! that reuse created on the first such bind and keeps until it exits. Connections that
//! arrive while no instance runs wait in that socket's queue; the next instance accepts
//! them. Signals sent to reuse go to COMMAND; reuse exits with COMMAND's status.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use reuse_core::config::{Options, PortSet};
use reuse_core::hold_protocol::{self, Request, REQUEST_LEN};
use reuse_core::line::Endpoint;

/// Signals reuse passes on to COMMAND.
const FORWARDED: [i32; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A private folder (mode 0700) for the hand-over socket, removed when reuse exits.
pub struct Rendezvous {
    dir: PathBuf,
    pub socket: PathBuf,
}

impl Rendezvous {
    pub fn create() -> io::Result<Rendezvous> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let mut template = base.join("reuse-hold-XXXXXX").into_os_string().into_vec();
        template.push(0);
        // SAFETY: template is a NUL-terminated, writable mkdtemp template.
        let p = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        template.pop();
        let dir = PathBuf::from(OsString::from_vec(template));
        let socket = dir.join("hold.sock");
        if socket.as_os_str().len() > reuse_core::config::HOLD_PATH_MAX {
            let _ = std::fs::remove_dir(&dir);
            return Err(io::Error::other(format!(
                "{} is too long for a Unix socket; set XDG_RUNTIME_DIR or TMPDIR to a shorter folder",
                socket.display()
            )));
        }
        Ok(Rendezvous { dir, socket })
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

use std::os::unix::ffi::OsStringExt;

fn listen_unix(path: &Path) -> io::Result<OwnedFd> {
    // SAFETY: plain socket calls; the fd is owned right away.
    let fd = unsafe {
        OwnedFd::from_raw_fd(cvt(libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
        ))?)
    };
    let mut sun: libc::sockaddr_un = unsafe { zeroed() };
    sun.sun_family = libc::AF_UNIX as _;
    for (d, s) in sun.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
        *d = *s as _;
    }
    unsafe {
        cvt(libc::bind(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        ))?;
        cvt(libc::listen(fd.as_raw_fd(), 64))?;
    }
    Ok(fd)
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

/// A listening socket for `req`, with SO_REUSEADDR (and SO_REUSEPORT if asked), so that the
/// instances' connections left in TIME_WAIT never stand in its way.
fn open_listener(req: &Request, options: &Options) -> io::Result<OwnedFd> {
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
    if options.port {
        set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let rc = match req.endpoint {
        Endpoint::V4(a, port) => {
            let mut sin: libc::sockaddr_in = unsafe { zeroed() };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a);
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
                req.v6only as i32,
            )?;
            let mut sin6: libc::sockaddr_in6 = unsafe { zeroed() };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = port.to_be();
            sin6.sin6_addr.s6_addr = a;
            sin6.sin6_scope_id = req.scope_id;
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
    cvt(unsafe { libc::listen(raw, libc::SOMAXCONN) })?;
    Ok(fd)
}

fn reply(conn: RawFd, errno: i32, fd: Option<RawFd>) {
    let msg = hold_protocol::encode_reply(errno);
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    let mut control = [0u64; 8];
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
    unsafe { libc::sendmsg(conn, &mh, libc::MSG_NOSIGNAL) };
}

fn log(quiet: bool, msg: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("reuse[{}]: {msg}", std::process::id());
    }
}

/// Whether the peer of a hand-over connection runs as this user (or root). The rendezvous
/// folder is 0700 already; this is the second lock on the door.
fn peer_is_trusted(conn: RawFd) -> bool {
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
    rc == 0 && (cred.uid == 0 || cred.uid == unsafe { libc::getuid() })
}

/// Answers hand-over requests until reuse exits. Nothing a peer does ends it: a peer that
/// says nothing times out after a second, a request for a port not held is refused, and a
/// failing accept (out of descriptors) is waited out.
fn serve(listener: OwnedFd, options: Options, ports: PortSet, verbose: bool) {
    let mut held: HashMap<(Endpoint, bool), OwnedFd> = HashMap::new();
    loop {
        // SAFETY: accept on our listening socket; the connection is owned right away.
        let conn = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            continue;
        }
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: timeout outlives the call and the length is its size.
        unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if !peer_is_trusted(conn.as_raw_fd()) {
            continue;
        }
        let mut buf = [0u8; 64];
        let n = unsafe { libc::recv(conn.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Some(req) = (n == REQUEST_LEN as isize)
            .then(|| Request::decode(&buf[..REQUEST_LEN]))
            .flatten()
        else {
            continue;
        };
        let port = req.endpoint.port();
        if port == 0 || !ports.contains(port) {
            reply(conn.as_raw_fd(), libc::EACCES, None);
            continue;
        }
        let key = (req.endpoint, req.v6only);
        if !held.contains_key(&key) {
            // A new address for a port already held (the server changed its bind address):
            // the old socket would stand in the way; instances that still use it keep it.
            held.retain(|(e, _), _| e.port() != port);
            match open_listener(&req, &options) {
                Ok(fd) => {
                    log(
                        !verbose,
                        format_args!(
                            "holding {} for PID {} and its successors",
                            req.endpoint, req.pid
                        ),
                    );
                    held.insert(key, fd);
                }
                Err(e) => {
                    log(false, format_args!("cannot hold {}: {e}", req.endpoint));
                    reply(
                        conn.as_raw_fd(),
                        e.raw_os_error().unwrap_or(libc::EIO),
                        None,
                    );
                    continue;
                }
            }
        }
        let fd = held[&key].as_raw_fd();
        reply(conn.as_raw_fd(), 0, Some(fd));
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Passes signals on to COMMAND. A SIGINT or SIGQUIT from the terminal already reached
/// COMMAND (same process group) and is not sent twice.
fn forward_signals(set: libc::sigset_t) {
    loop {
        let mut info: libc::siginfo_t = unsafe { zeroed() };
        // SAFETY: set and info are valid.
        let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue;
        }
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 && info.si_code != libc::SI_KERNEL {
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Runs `cmd` under hold mode and ends as it ended: with its exit code, or killed by the
/// same signal.
pub fn supervise(
    mut cmd: Command,
    rendezvous: Rendezvous,
    options: Options,
    ports: PortSet,
    verbose: bool,
) -> i32 {
    let listener = match listen_unix(&rendezvous.socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "reuse run: --hold: cannot listen on {}: {e}",
                rendezvous.socket.display()
            );
            return 1;
        }
    };
    // Block the forwarded signals in every thread of reuse, so the forwarding thread alone
    // takes them; COMMAND gets an empty mask back before its exec.
    let set = signal_set();
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    std::thread::spawn(move || serve(listener, options, ports, verbose));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reuse run: cannot run {:?}: {e}", cmd.get_program());
            return if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    // Only now: a signal that came before COMMAND existed stayed pending, and goes to it.
    std::thread::spawn(move || forward_signals(set));
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break std::process::ExitStatus::from_raw(1 << 8),
        }
    };
    CHILD.store(0, Ordering::SeqCst);
    drop(rendezvous);
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => {
            // Die of the same signal, so whoever waits for reuse sees what killed COMMAND;
            // without a core file of reuse's own over COMMAND's.
            unsafe {
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                libc::signal(sig, libc::SIG_DFL);
                let mut one: libc::sigset_t = zeroed();
                libc::sigemptyset(&mut one);
                libc::sigaddset(&mut one, sig);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
                libc::raise(sig);
            }
            128 + sig
        }
        _ => 1,
    }
}
