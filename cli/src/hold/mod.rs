//! `reuse run --hold PORTS`: keep the listening sockets of those ports open across restarts,
//! so no client is refused while the server is down.
//!
//! reuse stays as COMMAND's parent. When any process of COMMAND's tree binds a held TCP
//! port, the library asks over a Unix socket (`rendezvous`) and is handed a listening socket
//! (SCM_RIGHTS) that reuse created on the first such bind and keeps until it exits
//! (`handover`). Connections that arrive while no instance runs wait in that socket's queue;
//! the next instance accepts them. This file is the supervision: signals sent to reuse go
//! to COMMAND, and reuse exits with COMMAND's status.

mod handover;
mod rendezvous;

pub use rendezvous::Rendezvous;

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use reuse_core::config::{Options, PortSet};

use crate::out::say;

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

fn listen_unix(path: &Path) -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned right away.
    let fd = unsafe {
        OwnedFd::from_raw_fd(cvt(libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
        ))?)
    };
    // SAFETY: a zeroed sockaddr_un is valid.
    let mut sun: libc::sockaddr_un = unsafe { zeroed() };
    sun.sun_family = libc::AF_UNIX as _;
    for (d, s) in sun.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
        *d = *s as _;
    }
    // SAFETY: sun is a valid sockaddr_un of that size; fd is ours.
    unsafe {
        cvt(libc::bind(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        ))?;
        cvt(libc::listen(fd.as_raw_fd(), 128))?;
    }
    Ok(fd)
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
        // SAFETY: a zeroed siginfo_t is valid for sigwaitinfo to fill.
        let mut info: libc::siginfo_t = unsafe { zeroed() };
        // SAFETY: set and info are valid.
        let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue;
        }
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 && info.si_code != libc::SI_KERNEL {
            crate::sys::kill(child, sig);
        }
    }
}

/// Waits for COMMAND (`pid`) to end, reaping the orphans adopted meanwhile; its status.
fn wait_for(pid: i32) -> std::process::ExitStatus {
    loop {
        let mut status = 0;
        // SAFETY: status outlives the call.
        let got = unsafe { libc::waitpid(-1, &mut status, 0) };
        if got == pid {
            return std::process::ExitStatus::from_raw(status);
        }
        if got < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return std::process::ExitStatus::from_raw(1 << 8);
        }
    }
}

/// The listening sockets a service manager passed to this process (LISTEN_FDS, for this
/// PID or none named: systemd, `systemfd --no-pid`), taken out of the environment COMMAND
/// gets: reuse holds them now, and hands them over like its own.
pub fn passed_sockets() -> Vec<OwnedFd> {
    let get = |k| std::env::var_os(k).map(|v| v.into_encoded_bytes());
    let (fds, pid) = (get("LISTEN_FDS"), get("LISTEN_PID"));
    let Some(act) =
        reuse_core::activation::parse(fds.as_deref(), pid.as_deref(), std::process::id())
    else {
        return Vec::new();
    };
    (0..act.count as i32)
        .map(|n| reuse_core::activation::FIRST_FD + n)
        .filter(|&fd| crate::sys::fcntl(fd, libc::F_GETFD, 0) >= 0)
        // SAFETY: the service manager passed these open descriptors to this process; each
        // is owned once, here.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// What hold mode was asked.
pub struct Asked {
    /// Sockets passed by a service manager, to hold on their ports (see `passed_sockets`).
    pub passed: Vec<OwnedFd>,
    pub options: Options,
    pub ports: PortSet,
    /// Lines at the default level (warn and above).
    pub speak: bool,
    /// Every hand-over (info).
    pub verbose: bool,
}

/// Runs `cmd` under hold mode and ends as it ended: with its exit code, or killed by the
/// same signal.
pub fn supervise(mut cmd: Command, rendezvous: Rendezvous, asked: Asked) -> i32 {
    let listener = match listen_unix(&rendezvous.socket) {
        Ok(l) => l,
        Err(e) => {
            say!(
                "reuse run: --hold: cannot listen on {}: {e}",
                rendezvous.socket.display()
            );
            return 1;
        }
    };
    // Block the forwarded signals in every thread of reuse, so the forwarding thread alone
    // takes them; COMMAND gets an empty mask back before its exec.
    let set = signal_set();
    // SAFETY: set is a valid signal set.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let seen = Arc::new(Mutex::new(handover::Seen::default()));
    let mut server = handover::Server::new(
        listener,
        asked.options,
        asked.ports,
        asked.speak,
        asked.verbose,
        seen.clone(),
    );
    for fd in asked.passed {
        if let Err(fd) = server.adopt(fd) {
            if asked.speak {
                say!(
                    "reuse run: --hold: descriptor {} passed by the service manager is no listening TCP socket on a held port; COMMAND does not get it",
                    fd.as_raw_fd()
                );
            }
        }
    }
    std::thread::spawn(move || server.serve());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    // COMMAND's orphans (a worker whose master was killed) become reuse's children instead
    // of init's: the processes that can hold a held socket stay in one tree, which the
    // hand-over server looks through, and reuse reaps them.
    // SAFETY: a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            say!("reuse run: cannot run {:?}: {e}", cmd.get_program());
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
    let status = wait_for(child.id() as i32);
    std::mem::forget(child);
    CHILD.store(0, Ordering::SeqCst);
    if asked.speak {
        let bound = seen.lock().map(|s| s.ports.clone()).unwrap_or_default();
        for (port, _) in asked.ports.ranges().filter(|(p, _)| !bound.contains(p)) {
            say!("reuse run: --hold {port}: no process of the command bound this port, so it was never held");
        }
    }
    drop(rendezvous);
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => {
            // Die of the same signal, so whoever waits for reuse sees what killed COMMAND;
            // without a core file of reuse's own over COMMAND's.
            // SAFETY: plain process-wide calls on locals.
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
