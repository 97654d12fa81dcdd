//! Lines on stderr, `libreuse[PID]: ...`, one `write(2)` each, at the level REUSE_LOG asks.
//!
//! A line is built in a stack buffer (no allocation) and written with one `write`, whose
//! result is ignored: a host with a closed or broken stderr must not be disturbed. Callers
//! keep errno around these calls.

use reuse_core::config::{write_escaped, ConfigError, Level, Options};
use reuse_core::decision::{LeaveReason, Transport};
use reuse_core::endpoint::Endpoint;
use reuse_core::line::Line;
use reuse_core::put;

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// The level lines are written at (REUSE_LOG); set once the configuration is read, kept
/// apart from it so that an inert library still knows whether to speak.
static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

#[inline(always)]
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Off,
        1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        _ => Level::Debug,
    }
}

#[inline(always)]
pub fn logs(at: Level) -> bool {
    at != Level::Off && level() >= at
}

pub fn pid() -> i32 {
    crate::sys::getpid()
}

/// Which file descriptor 2 was when the library loaded: (device, inode), or none to never
/// write. A daemon that closes its stderr can get descriptor 2 back for a data file or a
/// client connection; a log line written there would corrupt it. So lines go to
/// descriptor 2 only while it is still the file it was at load, and never to an inet
/// socket (Unix sockets are fine: journald's stderr under systemd is one).
#[cfg_attr(target_os = "linux", link_section = ".data")]
static STDERR_DEV: AtomicU64 = AtomicU64::new(0);
#[cfg_attr(target_os = "linux", link_section = ".data")]
static STDERR_INO: AtomicU64 = AtomicU64::new(0);
#[cfg_attr(target_os = "linux", link_section = ".data")]
static STDERR_OK: AtomicBool = AtomicBool::new(false);

// st_dev and st_ino are u64 on Linux but narrower or signed on macOS.
#[allow(clippy::unnecessary_cast)]
fn stderr_id() -> Option<(u64, u64)> {
    let st = crate::sys::fstat(2)?;
    Some((st.st_dev as u64, st.st_ino as u64))
}

fn stderr_is_inet_socket() -> bool {
    #[cfg(not(target_vendor = "apple"))]
    {
        // A non-socket just fails with ENOTSOCK.
        crate::sys::getsockopt_int(2, libc::SOL_SOCKET, libc::SO_DOMAIN)
            .is_some_and(|v| v == libc::AF_INET || v == libc::AF_INET6)
    }
    #[cfg(target_vendor = "apple")]
    {
        // A non-socket fails with ENOTSOCK.
        crate::sys::getsockname(2).is_some_and(|(b, len)| {
            let family = b.get(1).copied().map(i32::from).filter(|_| len >= 2);
            family == Some(libc::AF_INET) || family == Some(libc::AF_INET6)
        })
    }
}

/// Called once at load, before anything is logged: one fstat.
pub fn remember_stderr() {
    if let Some((dev, ino)) = stderr_id() {
        STDERR_DEV.store(dev, Ordering::Relaxed);
        STDERR_INO.store(ino, Ordering::Relaxed);
        STDERR_OK.store(true, Ordering::Relaxed);
    }
}

fn stderr_unchanged() -> bool {
    STDERR_OK.load(Ordering::Relaxed)
        && stderr_id()
            == Some((
                STDERR_DEV.load(Ordering::Relaxed),
                STDERR_INO.load(Ordering::Relaxed),
            ))
}

fn emit(line: &mut Line) {
    if !stderr_unchanged() || stderr_is_inet_socket() {
        return;
    }
    // A stderr pipe whose reader is gone must not kill a host that never writes to stderr
    // itself.
    crate::sys::write_no_sigpipe(2, line.finish());
}

/// Builds and writes one line if `at` is enabled.
/// Writes one line at `at`, if the level says so: the check inlined at every call (a hook's
/// hot path pays a load and a compare), the line built out of line.
#[inline(always)]
pub fn at(at: Level, build: impl FnOnce(&mut Line)) {
    if logs(at) {
        write_line(build);
    }
}

#[cold]
#[inline(never)]
fn write_line(build: impl FnOnce(&mut Line)) {
    // The host's errno survives the library's own calls (fstat, write).
    let saved = crate::errno::get();
    let mut line = Line::new(pid());
    build(&mut line);
    emit(&mut line);
    crate::errno::set(saved);
}

pub fn config_error(e: &ConfigError<'_>) {
    at(Level::Error, |l| {
        put!(l, "invalid ", e.var, ": ", e.why, " in \"");
        write_escaped(l, e.part);
        put!(l, "\"; libreuse changes nothing in this process");
    });
}

#[inline(always)]
pub fn applied(ep: &Endpoint, t: Transport, o: &Options) {
    at(Level::Info, |l| {
        put!(l, ep, " ", t.name(), ": ");
        o.write_as(l, true);
    });
}

#[inline(always)]
pub fn left(ep: &Endpoint, t: Option<Transport>, why: LeaveReason) {
    at(Level::Debug, |l| {
        put!(
            l,
            ep,
            " ",
            t.map_or("?", Transport::name),
            ": left alone, ",
            why.text()
        )
    });
}

pub fn option_failed(ep: &Endpoint, name: &str, errno: i32) {
    at(Level::Warn, |l| {
        put!(
            l,
            ep,
            ": setting ",
            name,
            " failed (errno ",
            errno,
            "); the socket goes on without it"
        )
    });
}
