//! Reading /proc without allocating: the socket tables, which process holds a socket, and
//! where a process stands in the process tree. Only on failure paths (a bind refused with
//! EADDRINUSE) and after SO_REUSEPORT sharing; raw system calls into stack buffers.

use core::ffi::CStr;

use reuse_core::decision::Transport;
use reuse_core::endpoint::Endpoint;
use reuse_core::in_use::{self, Lineage, Stat};
use reuse_core::proc_net::{self, PortSummary};

use crate::{real, sys};

/// Reads a file line by line through a fixed buffer; lines longer than it are skipped.
fn for_each_line(path: &CStr, mut f: impl FnMut(&[u8])) -> bool {
    let fd = sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let mut have = 0usize;
    // Bounded: the socket tables of a busy host run to a few MB at most.
    for _ in 0..16384 {
        let Some(room) = buf.get_mut(have..) else {
            break;
        };
        let n = sys::read(fd, room);
        if n <= 0 {
            if let Some(last) = buf.get(..have).filter(|l| !l.is_empty()) {
                f(last);
            }
            break;
        }
        have = (have + n as usize).min(buf.len());
        let mut start = 0;
        while let Some(i) = buf
            .get(start..have)
            .and_then(|s| s.iter().position(|b| *b == b'\n'))
        {
            if let Some(line) = buf.get(start..start + i) {
                f(line);
            }
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

/// The file mapped at `addr` in this process, from /proc/self/maps, into `out`; its length
/// (0 if none).
#[cfg(all(
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn mapped_file(addr: usize, out: &mut [u8]) -> usize {
    let mut n = 0;
    for_each_line(c"/proc/self/maps", |line| {
        if n != 0 {
            return;
        }
        // "start-end perms offset dev inode   path"
        let mut fields = line.split(|b| *b == b' ').filter(|f| !f.is_empty());
        let Some(range) = fields.next() else { return };
        let Some(dash) = range.iter().position(|b| *b == b'-') else {
            return;
        };
        let hex = |s: &[u8]| {
            core::str::from_utf8(s)
                .ok()
                .and_then(|t| usize::from_str_radix(t, 16).ok())
        };
        let (Some(lo), Some(hi)) = (
            range.get(..dash).and_then(hex),
            range.get(dash + 1..).and_then(hex),
        ) else {
            return;
        };
        if addr < lo || addr >= hi {
            return;
        }
        let Some(path) = fields.nth(4).filter(|p| p.first() == Some(&b'/')) else {
            return;
        };
        let start = line.len() - line.iter().rev().position(|b| *b == b' ').unwrap_or(0);
        let full = line
            .get(start..)
            .filter(|p| p.first() == Some(&b'/'))
            .unwrap_or(path);
        for (d, s) in out.iter_mut().zip(full) {
            *d = *s;
        }
        n = full.len().min(out.len());
    });
    n
}

/// Who and what stands on the port of `wanted`, from the kernel's tables of `transport`.
pub fn summarize(wanted: &Endpoint, transport: Transport) -> PortSummary {
    let mut s = PortSummary::default();
    let tables = if transport == Transport::Udp {
        [c"/proc/net/udp", c"/proc/net/udp6"]
    } else {
        [c"/proc/net/tcp", c"/proc/net/tcp6"]
    };
    for path in tables {
        for_each_line(path, |line| {
            if let Some(e) = proc_net::parse_line(line) {
                s.add(&e, wanted, transport);
            }
        });
    }
    s
}

/// A process found holding a socket.
pub struct Owner {
    pub pid: i32,
    comm: [u8; 16],
    comm_len: usize,
}

impl Owner {
    pub fn name(&self) -> &str {
        self.comm
            .get(..self.comm_len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("?")
    }
}

/// A NUL-terminated path built from parts in a stack buffer.
struct PathBuf {
    buf: [u8; 64],
    len: usize,
}

impl PathBuf {
    fn new(parts: &[&[u8]]) -> PathBuf {
        let mut p = PathBuf {
            buf: [0; 64],
            len: 0,
        };
        for part in parts {
            for b in part.iter() {
                if p.len + 1 < p.buf.len() {
                    if let Some(d) = p.buf.get_mut(p.len) {
                        *d = *b;
                    }
                    p.len += 1;
                }
            }
        }
        p
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn c(&self) -> &CStr {
        self.buf
            .get(..=self.len)
            .and_then(|b| CStr::from_bytes_until_nul(b).ok())
            .unwrap_or(c"/")
    }
}

/// Decimal digits of `v` in a stack buffer.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn of(mut v: u64) -> Digits {
        let mut d = Digits {
            buf: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            if let Some(slot) = d.buf.get_mut(d.start) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || d.start == 0 {
                break;
            }
        }
        d
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

/// Elsewhere there is no /proc to read: holders stay unnamed and takeover finds no one, but
/// waiting works the same.
#[cfg(not(target_os = "linux"))]
fn for_each_number(_dir: &CStr, _f: impl FnMut(u64) -> bool) {}

/// Calls `f` with each numeric entry of a /proc directory, through getdents64 (readdir would
/// allocate its DIR), until it returns false.
#[cfg(target_os = "linux")]
fn for_each_number(dir: &CStr, mut f: impl FnMut(u64) -> bool) {
    let fd = sys::open(dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 4096];
    'outer: for _ in 0..4096 {
        let n = sys::getdents64(fd, &mut buf);
        if n <= 0 {
            break;
        }
        let records = buf.get(..n as usize).unwrap_or_default();
        let mut off = 0usize;
        // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
        while let Some(rec) = records.get(off..) {
            let Some(&[r0, r1]) = rec.get(16..18) else {
                break;
            };
            let reclen = u16::from_ne_bytes([r0, r1]) as usize;
            let Some(name) = rec.get(19..reclen).filter(|_| reclen > 19) else {
                break;
            };
            let name = name.split(|b| *b == 0).next().unwrap_or_default();
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
    let p = PathBuf::new(&[b"/proc/", pid, b"/comm"]);
    for_each_line(p.c(), |line| {
        let k = line.len().min(16);
        if let (Some(d), Some(s)) = (out.comm.get_mut(..k), line.get(..k)) {
            d.copy_from_slice(s);
            out.comm_len = k;
        }
    });
}

/// How long naming a holder may take.
const OWNER_SCAN_MS: u64 = 250;

/// The process (other than those in `skip`) that holds socket `inode`. Scans
/// at most 32768 processes and 65536 descriptors each, for 250 ms at most; /proc of other
/// users' processes is unreadable without privilege, which leaves those holders unnamed.
pub fn owner_of(inode: u64, skip: &[i32]) -> Option<Owner> {
    let mut found = None;
    holders(inode, skip, |o| {
        found = Some(o);
        false
    });
    found
}

/// Every process (other than those in `skip`) that holds socket `inode`, to `f` until it
/// returns false; the same bounds as `owner_of`.
pub fn holders(inode: u64, skip: &[i32], mut f: impl FnMut(Owner) -> bool) {
    let want = socket_link(inode);
    let mut procs = 0;
    // A bind waits for this: on a host with thousands of processes, give up unnamed
    // rather than hold the server up.
    let deadline = sys::monotonic_ms() + OWNER_SCAN_MS;
    for_each_number(c"/proc", |pid| {
        procs += 1;
        if sys::monotonic_ms() > deadline {
            return false;
        }
        if skip.iter().any(|s| *s as u64 == pid) {
            return procs < 32768;
        }
        let pid_s = Digits::of(pid);
        let mut more = true;
        if has_socket(pid_s.bytes(), &want) {
            let mut o = Owner {
                pid: pid as i32,
                comm: [0; 16],
                comm_len: 0,
            };
            read_comm(pid_s.bytes(), &mut o);
            more = f(o);
        }
        more && procs < 32768
    });
}

/// Whether process `pid` still has socket `inode` open.
pub fn holds(pid: i32, inode: u64) -> bool {
    let Ok(pid) = u64::try_from(pid) else {
        return false;
    };
    has_socket(Digits::of(pid).bytes(), &socket_link(inode))
}

/// What /proc/PID/fd/N links to for a socket: `socket:[INODE]`.
fn socket_link(inode: u64) -> PathBuf {
    let digits = Digits::of(inode);
    PathBuf::new(&[b"socket:[", digits.bytes(), b"]"])
}

/// Whether one of process `pid_s`'s descriptors (at most 65536 looked at) is that socket.
fn has_socket(pid_s: &[u8], want: &PathBuf) -> bool {
    let dir = PathBuf::new(&[b"/proc/", pid_s, b"/fd"]);
    let mut fds = 0;
    let mut found = false;
    for_each_number(dir.c(), |fd| {
        fds += 1;
        let fd_s = Digits::of(fd);
        let link = PathBuf::new(&[b"/proc/", pid_s, b"/fd/", fd_s.bytes()]);
        let mut target = [0u8; 40];
        let n = sys::readlink(link.c(), &mut target);
        found = n > 0 && target.get(..n as usize) == Some(want.bytes());
        !found && fds < 65536
    });
    found
}

/// Whether a descriptor of this process other than `but` holds socket `inode` (/proc/self/fd,
/// 65536 descriptors at most). Unreadable: true, as the careful answer.
pub fn socket_open_elsewhere(inode: u64, but: i32) -> bool {
    let digits = Digits::of(inode);
    let want = PathBuf::new(&[b"socket:[", digits.bytes(), b"]"]);
    let want = want.buf.get(..want.len).unwrap_or_default();
    let mut seen = false;
    let mut fds = 0;
    let mut any = false;
    for_each_number(c"/proc/self/fd", |fd| {
        any = true;
        fds += 1;
        if fd as i64 == i64::from(but) {
            return fds < 65536;
        }
        let fd_s = Digits::of(fd);
        let link = PathBuf::new(&[b"/proc/self/fd/", fd_s.bytes()]);
        let mut target = [0u8; 40];
        let n = sys::readlink(link.c(), &mut target);
        if n > 0 && target.get(..n as usize) == Some(want) {
            seen = true;
            return false;
        }
        fds < 65536
    });
    seen || !any
}

/// Reads a whole small file (up to the buffer) through raw calls; its length.
fn read_small(path: &CStr, out: &mut [u8]) -> usize {
    let fd = sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return 0;
    }
    let mut n = 0usize;
    while let Some(room) = out.get_mut(n..).filter(|r| !r.is_empty()) {
        let r = sys::read(fd, room);
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: fd is ours.
    unsafe { real::close()(fd) };
    n.min(out.len())
}

pub fn stat(pid: i32) -> Option<Stat> {
    let d = Digits::of(pid as u64);
    let p = PathBuf::new(&[b"/proc/", d.bytes(), b"/stat"]);
    let mut buf = [0u8; 512];
    let n = read_small(p.c(), &mut buf);
    in_use::parse_stat(buf.get(..n)?)
}

/// Up to 32 ancestors of a process, parent first, ending before PID 1.
pub struct Ancestry {
    pids: [i32; 32],
    len: usize,
    pgrp: i32,
}

impl Ancestry {
    pub fn of(pid: i32) -> Option<Ancestry> {
        let first = stat(pid)?;
        let mut a = Ancestry {
            pids: [0; 32],
            len: 0,
            pgrp: first.pgrp,
        };
        let mut next = first.ppid;
        while next > 1 {
            let Some(slot) = a.pids.get_mut(a.len) else {
                break;
            };
            *slot = next;
            a.len += 1;
            next = match stat(next) {
                Some(s) => s.ppid,
                None => break,
            };
        }
        Some(a)
    }

    pub fn lineage(&self, pid: i32) -> Lineage<'_> {
        Lineage {
            pid,
            pgrp: self.pgrp,
            ancestors: self.pids.get(..self.len).unwrap_or_default(),
        }
    }
}

fn exe_of(pid: &[u8], out: &mut [u8; 256]) -> usize {
    let p = PathBuf::new(&[b"/proc/", pid, b"/exe"]);
    let n = sys::readlink(p.c(), out);
    if n > 0 && (n as usize) < out.len() {
        n as usize
    } else {
        0
    }
}

/// Whether `pid` runs the executable this process runs, with the same command line.
pub fn same_program(pid: i32) -> Result<(), in_use::Refusal> {
    let pid_s = Digits::of(pid as u64);
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    if pid <= 1 {
        return Err(in_use::Refusal::AnotherProgram);
    }
    let na = exe_of(b"self", &mut a);
    let nb = exe_of(pid_s.bytes(), &mut b);
    if na == 0 || a.get(..na) != b.get(..nb) {
        return Err(in_use::Refusal::AnotherProgram);
    }
    let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
    let na = read_small(c"/proc/self/cmdline", &mut a);
    let theirs = PathBuf::new(&[b"/proc/", pid_s.bytes(), b"/cmdline"]);
    let nb = read_small(theirs.c(), &mut b);
    if na == 0 || a.get(..na) != b.get(..nb) {
        return Err(in_use::Refusal::AnotherCommandLine);
    }
    Ok(())
}

/// Whether `pid` runs `reuse run ... --hold ...`, from its command line.
pub fn is_hold_command(pid: i32) -> bool {
    let d = Digits::of(pid as u64);
    let p = PathBuf::new(&[b"/proc/", d.bytes(), b"/cmdline"]);
    let mut buf = [0u8; 4096];
    let n = read_small(p.c(), &mut buf);
    let mut args = buf.get(..n).unwrap_or_default().split(|b| *b == 0);
    let named_reuse = args
        .next()
        .and_then(|a0| a0.rsplit(|b| *b == b'/').next())
        .is_some_and(|n| n == b"reuse");
    let mut run = false;
    for a in args {
        match a {
            b"--" => break,
            b"run" => run = true,
            _ if run && (a == b"--hold" || a.starts_with(b"--hold=")) => return named_reuse,
            _ => {}
        }
    }
    false
}

/// How many threads this process has (/proc/self/task); None if it cannot be read.
pub fn thread_count() -> Option<usize> {
    let mut n = 0usize;
    let mut any = false;
    for_each_number(c"/proc/self/task", |_| {
        any = true;
        n += 1;
        n < 4
    });
    any.then_some(n)
}
