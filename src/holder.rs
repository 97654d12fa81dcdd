//! After a bind to an allowed port failed with EADDRINUSE: wait the holder out
//! (`REUSE_WAIT_MS`), optionally stop an orphan of the same program (`REUSE_TAKEOVER`), and
//! say in one line who holds the port, so nobody needs lsof.
//!
//! Everything here runs only on that failure path (or, for SO_REUSEPORT sharing, once after
//! a bind that asked for it). It reads the kernel's socket tables and the process table with
//! raw system calls into stack buffers: still no allocation, no lock, no stdio.

use core::ffi::CStr;

use libc::{c_int, sockaddr, socklen_t};
use reuse_core::config::{Config, Level};
use reuse_core::line::{Endpoint, Write};
use reuse_core::proc_net::{self, PortSummary};

use crate::{errno, real, report, sys};

/// Reads a file line by line through a fixed buffer; lines longer than it are skipped.
fn for_each_line(path: &CStr, mut f: impl FnMut(&[u8])) -> bool {
    // SAFETY: path is NUL-terminated.
    let fd = unsafe { sys::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let mut have = 0usize;
    // Bounded: the socket tables of a busy host run to a few MB at most.
    for _ in 0..16384 {
        // SAFETY: writes at most buf.len() - have bytes into buf[have..].
        let n = unsafe { sys::read(fd, buf[have..].as_mut_ptr().cast(), buf.len() - have) };
        if n <= 0 {
            if have > 0 {
                f(&buf[..have]);
            }
            break;
        }
        have += n as usize;
        let mut start = 0;
        while let Some(i) = buf[start..have].iter().position(|b| *b == b'\n') {
            f(&buf[start..start + i]);
            start += i + 1;
        }
        if start == 0 && have == buf.len() {
            have = 0; // a line longer than the buffer: not one of ours
        } else {
            buf.copy_within(start..have, 0);
            have -= start;
        }
    }
    // SAFETY: fd is ours.
    unsafe { real::close()(fd) };
    true
}

/// Who and what stands on the port of `wanted`, from /proc/net/tcp and tcp6.
pub fn summarize(wanted: &Endpoint) -> PortSummary {
    let mut s = PortSummary::default();
    for path in [c"/proc/net/tcp", c"/proc/net/tcp6"] {
        for_each_line(path, |line| {
            if let Some(e) = proc_net::parse_line(line) {
                s.add(&e, wanted);
            }
        });
    }
    s
}

/// A process found holding a socket.
pub struct Owner {
    pub pid: i32,
    pub comm: [u8; 16],
    pub comm_len: usize,
}

impl Owner {
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.comm[..self.comm_len]).unwrap_or("?")
    }
}

/// Writes `parts` into `buf` as one NUL-terminated path.
fn path<'a>(buf: &'a mut [u8; 64], parts: &[&[u8]]) -> &'a CStr {
    let mut n = 0;
    for p in parts {
        let k = p.len().min(buf.len() - 1 - n);
        buf[n..n + k].copy_from_slice(&p[..k]);
        n += k;
    }
    buf[n] = 0;
    CStr::from_bytes_until_nul(&buf[..=n]).unwrap_or(c"/")
}

fn itoa(mut v: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &out[i..]
}

/// Elsewhere there is no /proc to read: holders stay unnamed and takeover finds no one, but
/// waiting works the same.
#[cfg(not(target_os = "linux"))]
fn for_each_number(_dir: &CStr, _f: impl FnMut(u64) -> bool) {}

/// Calls `f` with each numeric entry of a /proc directory, through getdents64 (readdir would
/// allocate its DIR).
#[cfg(target_os = "linux")]
fn for_each_number(dir: &CStr, mut f: impl FnMut(u64) -> bool) {
    // SAFETY: dir is NUL-terminated.
    let fd = unsafe {
        sys::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 4096];
    'outer: for _ in 0..4096 {
        // SAFETY: the kernel writes at most buf.len() bytes of dirent64 records.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd as libc::c_long,
                buf.as_mut_ptr(),
                buf.len() as libc::c_long,
            )
        };
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n as usize {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
                let v = name.iter().fold(0u64, |a, d| {
                    a.wrapping_mul(10).wrapping_add((d - b'0') as u64)
                });
                if !f(v) {
                    break 'outer;
                }
            }
            off += reclen;
        }
    }
    // SAFETY: fd is ours.
    unsafe { real::close()(fd) };
}

fn read_comm(pid: &[u8], out: &mut Owner) {
    let mut pb = [0u8; 64];
    let p = path(&mut pb, &[b"/proc/", pid, b"/comm"]);
    for_each_line(p, |line| {
        let k = line.len().min(16);
        out.comm[..k].copy_from_slice(&line[..k]);
        out.comm_len = k;
    });
}

/// How long naming a holder may take.
const OWNER_SCAN_MS: u64 = 250;

/// The process (other than this one, when `skip_self`) that holds socket `inode`. Scans at
/// most 32768 processes and 65536 descriptors each, for 250 ms at most; /proc of other
/// users' processes is unreadable without privilege, which leaves those holders unnamed.
pub fn owner_of(inode: u64, skip_self: bool) -> Option<Owner> {
    let mut want = [0u8; 40];
    let mut ib = [0u8; 20];
    let digits = itoa(inode, &mut ib);
    let wl = {
        let mut n = 0;
        for part in [&b"socket:["[..], digits, b"]"] {
            want[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        n
    };
    let me = report::pid() as u64;
    let mut found: Option<Owner> = None;
    let mut procs = 0;
    // A bind waits for this: on a host with thousands of processes, give up unnamed
    // rather than hold the server up.
    let deadline = monotonic_ms() + OWNER_SCAN_MS;
    for_each_number(c"/proc", |pid| {
        procs += 1;
        if monotonic_ms() > deadline {
            return false;
        }
        if skip_self && pid == me {
            return procs < 32768;
        }
        let mut pb = [0u8; 20];
        let pid_s = itoa(pid, &mut pb);
        let mut db = [0u8; 64];
        let dir = path(&mut db, &[b"/proc/", pid_s, b"/fd"]);
        let mut fds = 0;
        for_each_number(dir, |fd| {
            fds += 1;
            let mut fb = [0u8; 20];
            let mut lb = [0u8; 64];
            let link = path(&mut lb, &[b"/proc/", pid_s, b"/fd/", itoa(fd, &mut fb)]);
            let mut target = [0u8; 40];
            // SAFETY: link is NUL-terminated; target has room for what we ask.
            let n =
                unsafe { sys::readlink(link.as_ptr(), target.as_mut_ptr().cast(), target.len()) };
            if n as usize == wl && target[..wl] == want[..wl] {
                let mut o = Owner {
                    pid: pid as i32,
                    comm: [0; 16],
                    comm_len: 0,
                };
                read_comm(pid_s, &mut o);
                found = Some(o);
                return false;
            }
            fds < 65536
        });
        found.is_none() && procs < 32768
    });
    found
}

fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { sys::clock_monotonic(&mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as _,
        tv_nsec: ((ms % 1000) * 1_000_000) as _,
    };
    // SAFETY: plain sleep; an interrupting signal only shortens it.
    unsafe { sys::nanosleep(&ts) };
}

/// Retries the bind until it succeeds, fails otherwise, or `wait_ms` has passed: 2 ms at
/// first, doubling to 100 ms, so a holder that lets go is noticed quickly without spinning.
fn retry(fd: c_int, addr: *const sockaddr, len: socklen_t, wait_ms: u64) -> (c_int, c_int) {
    let deadline = monotonic_ms() + wait_ms;
    let mut pause = 2u64;
    let mut last = (-1, libc::EADDRINUSE);
    while monotonic_ms() < deadline {
        sleep_ms(pause.min(deadline.saturating_sub(monotonic_ms())).max(1));
        pause = (pause * 2).min(100);
        // SAFETY: the caller's own arguments, passed on unchanged.
        let rc = unsafe { real::bind()(fd, addr, len) };
        if rc == 0 {
            return (0, 0);
        }
        last = (rc, errno::get());
        if last.1 != libc::EADDRINUSE {
            break;
        }
    }
    last
}

fn exe_of(pid: &[u8], out: &mut [u8; 256]) -> usize {
    let mut pb = [0u8; 64];
    let p = path(&mut pb, &[b"/proc/", pid, b"/exe"]);
    // SAFETY: out has room for what we ask.
    let n = unsafe { sys::readlink(p.as_ptr(), out.as_mut_ptr().cast(), out.len()) };
    if n > 0 && (n as usize) < out.len() {
        n as usize
    } else {
        0
    }
}

/// Reads a whole small file (up to the buffer) through raw calls; its length.
fn read_small(path: &CStr, out: &mut [u8]) -> usize {
    // SAFETY: path is NUL-terminated; reads write into `out` only.
    unsafe {
        let fd = sys::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let mut n = 0usize;
        while n < out.len() {
            let r = sys::read(fd, out[n..].as_mut_ptr().cast(), out.len() - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        real::close()(fd);
        n
    }
}

/// What makes `pid` this program's earlier instance, or why not. The same executable is
/// not enough (every Python script runs python3): the command line must match too, as it
/// does for a restarted server and for the workers it forked.
fn same_program(pid: i32) -> Result<(), &'static str> {
    let mut pb = [0u8; 20];
    let pid_s = itoa(pid as u64, &mut pb);
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    let na = exe_of(b"self", &mut a);
    let nb = exe_of(pid_s, &mut b);
    if na == 0 || na != nb || a[..na] != b[..nb] {
        return Err("another program");
    }
    let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
    let mut qb = [0u8; 64];
    let na = read_small(path(&mut qb, &[b"/proc/self/cmdline"]), &mut a);
    let nb = read_small(path(&mut qb, &[b"/proc/", pid_s, b"/cmdline"]), &mut b);
    if na == 0 || na != nb || a[..na] != b[..nb] {
        return Err("the same program with another command line");
    }
    Ok(())
}

/// With REUSE_TAKEOVER=1 and no REUSE_WAIT_MS, how long a stopped holder has to exit.
const TAKEOVER_GRACE_MS: u64 = 3000;

/// The bind failed with EADDRINUSE: wait, take over, explain. Returns the final result and
/// errno of the bind, which the hook hands to the program.
pub fn after_addrinuse(
    cfg: &Config,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
    ep: &Endpoint,
    applied_addr: bool,
) -> (c_int, c_int) {
    let mut result = (-1, libc::EADDRINUSE);
    if cfg.wait_ms > 0 {
        result = retry(fd, addr, len, cfg.wait_ms as u64);
        if result.0 == 0 {
            report::at(Level::Info, |l| {
                write!(l, "{ep}: bound after waiting for the port's holder")
            });
            return result;
        }
    }
    if result.1 != libc::EADDRINUSE {
        return result;
    }
    let summary = summarize(ep);
    if cfg.takeover {
        if let Some(r) = take_over(cfg, fd, addr, len, ep, &summary) {
            return r;
        }
    }
    if state_logs_warn() {
        explain(ep, &summary, applied_addr, cfg.wait_ms);
    }
    result
}

fn state_logs_warn() -> bool {
    crate::state::logs(Level::Warn)
}

fn take_over(
    cfg: &Config,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
    ep: &Endpoint,
    s: &PortSummary,
) -> Option<(c_int, c_int)> {
    // SAFETY: getuid cannot fail.
    let me = sys::getuid();
    for &(inode, uid) in s.listener_inodes() {
        let Some(owner) = owner_of(inode, true) else {
            continue;
        };
        let why_not = if uid != me {
            Err("another user's process")
        } else {
            same_program(owner.pid)
        };
        if let Err(why) = why_not {
            report::at(Level::Warn, |l| {
                write!(
                    l,
                    "{ep}: not taking over from PID {} ({}): {why}",
                    owner.pid,
                    owner.name()
                )
            });
            continue;
        }
        report::at(Level::Warn, |l| {
            write!(
                l,
                "{ep}: taking over: stopping PID {} ({}), an earlier instance of this program still listening (REUSE_TAKEOVER=1)",
                owner.pid,
                owner.name()
            )
        });
        // What matters is the port, not the process: bind as soon as it is released (a
        // zombie or a slow exit handler no longer holds it), SIGKILL only if it is not.
        let grace = if cfg.wait_ms > 0 {
            cfg.wait_ms as u64
        } else {
            TAKEOVER_GRACE_MS
        };
        // SAFETY: plain signals to the process found holding this port, checked above to be
        // this user's and this program's.
        unsafe { sys::kill(owner.pid, libc::SIGTERM) };
        let mut r = retry(fd, addr, len, grace);
        // The PID may have exited and been reused while we waited: SIGKILL only the process
        // that still holds this very socket.
        if r.0 != 0
            && r.1 == libc::EADDRINUSE
            && owner_of(inode, true).is_some_and(|o| o.pid == owner.pid)
        {
            report::at(Level::Warn, |l| {
                write!(
                    l,
                    "{ep}: PID {} still holds the port after {grace} ms: SIGKILL",
                    owner.pid
                )
            });
            // SAFETY: as above, and checked again just now.
            unsafe { sys::kill(owner.pid, libc::SIGKILL) };
            r = retry(fd, addr, len, 1000);
        }
        if r.0 == 0 {
            report::at(Level::Info, |l| write!(l, "{ep}: bound after taking over"));
        }
        return Some(r);
    }
    None
}

fn explain(ep: &Endpoint, s: &PortSummary, applied_addr: bool, wait_ms: u32) {
    let waited = |l: &mut reuse_core::line::Line| -> core::fmt::Result {
        if wait_ms > 0 {
            write!(l, " after waiting {wait_ms} ms")?;
        }
        Ok(())
    };
    if let Some(&(inode, uid)) = s.listener_inodes().first() {
        let owner = owner_of(inode, false);
        report::at(Level::Warn, |l| {
            write!(l, "{ep}: bind failed (EADDRINUSE)")?;
            waited(l)?;
            match &owner {
                Some(o) => write!(
                    l,
                    ": PID {} ({}, uid {uid}) is listening on this port; stop it, or run with REUSE_WAIT_MS to wait for it",
                    o.pid,
                    o.name()
                ),
                None => write!(
                    l,
                    ": a live listener (uid {uid}, process not visible to this user) holds this port"
                ),
            }
        });
    } else if s.time_wait > 0 && applied_addr {
        report::at(Level::Warn, |l| {
            write!(l, "{ep}: bind failed (EADDRINUSE)")?;
            waited(l)?;
            write!(
                l,
                ": only {} TIME_WAIT socket(s) left, from an instance that ran without SO_REUSEADDR (Linux lets a bind pass TIME_WAIT only when both sides set it; run every instance under reuse); they expire in {} s",
                s.time_wait,
                s.time_wait_seconds()
            )
        });
    } else if s.time_wait > 0 {
        report::at(Level::Warn, |l| {
            write!(l, "{ep}: bind failed (EADDRINUSE)")?;
            waited(l)?;
            write!(
                l,
                ": {} TIME_WAIT socket(s) on this port, expiring in {} s; REUSE_OPTIONS has no addr, so this bind could not pass them",
                s.time_wait,
                s.time_wait_seconds()
            )
        });
    } else {
        report::at(Level::Warn, |l| {
            write!(l, "{ep}: bind failed (EADDRINUSE)")?;
            waited(l)?;
            write!(l, ": no listener or TIME_WAIT socket found on this port (another socket bound but not listening, or a UDP socket)")
        });
    }
}

/// After a bind that set SO_REUSEPORT: if a live listener of another process is on the port,
/// the two now split its connections, and the user should know.
pub fn announce_sharing(ep: &Endpoint) {
    let s = summarize(ep);
    for &(inode, _) in s.listener_inodes() {
        if let Some(o) = owner_of(inode, true) {
            report::at(Level::Warn, |l| {
                write!(
                    l,
                    "{ep}: SO_REUSEPORT: now sharing this port with PID {} ({}); connections are split between the two",
                    o.pid,
                    o.name()
                )
            });
            return;
        }
    }
}
