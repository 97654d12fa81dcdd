//! The configuration, read from the environment once at load into a plain struct.
//!
//! Hooks never read the environment: they load one atomic and, once it says the library is
//! active, read the struct that was written before it was published. The constructor does
//! the reading; a hook that runs before it (a bind from another library's constructor) does
//! it on the spot, which is why the first reader claims the work with a compare-and-swap.

use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use reuse_core::config::{self, Config, Level};

use crate::report;

const UNREAD: u8 = 0;
const READING: u8 = 1;
const ACTIVE: u8 = 2;
/// Invalid configuration or secure execution: every hook passes straight through.
const INERT: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNREAD);
/// The level lines are written at; kept apart from the config so an inert library still
/// knows whether to speak.
static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

struct Slot(UnsafeCell<MaybeUninit<Config>>);
// SAFETY: written once by the thread that moved STATE from UNREAD to READING, read only
// after STATE is ACTIVE (Release/Acquire), never written again.
unsafe impl Sync for Slot {}
static CONFIG: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// The active configuration, or None when the library must change nothing.
#[inline(always)]
pub fn active() -> Option<&'static Config> {
    match STATE.load(Ordering::Acquire) {
        // SAFETY: see Slot.
        ACTIVE => Some(unsafe { (*CONFIG.0.get()).assume_init_ref() }),
        UNREAD => read_now(),
        // READING: another thread is reading right now, before the constructor ran (only
        // possible if a thread was started from an earlier constructor). Waiting could hang
        // a host; this one bind is left alone instead.
        _ => None,
    }
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Off,
        1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        _ => Level::Debug,
    }
}

#[inline]
pub fn logs(at: Level) -> bool {
    at != Level::Off && level() >= at
}

fn env(name: &str) -> Option<&'static [u8]> {
    let mut buf = [0u8; 32];
    let n = name.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: buf is NUL-terminated; getenv only scans environ and does not allocate.
    let p = unsafe { libc::getenv(buf.as_ptr().cast()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: environ strings are NUL-terminated and live as long as the process
        // (we use the bytes only while reading, before anything could setenv over them).
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// Secure execution (setuid/setgid, file capabilities): the loader already strips most
/// preloads, but a library in a trusted path can still be loaded, and must then do nothing.
fn secure_execution() -> bool {
    #[cfg(not(target_vendor = "apple"))]
    {
        // SAFETY: plain read of the auxiliary vector.
        unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
    }
    #[cfg(target_vendor = "apple")]
    {
        unsafe { libc::issetugid() != 0 }
    }
}

#[cold]
fn read_now() -> Option<&'static Config> {
    if STATE
        .compare_exchange(UNREAD, READING, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        return active_if_ready();
    }
    if secure_execution() {
        LEVEL.store(Level::Off as u8, Ordering::Relaxed);
        STATE.store(INERT, Ordering::Release);
        return None;
    }
    // SAFETY: this thread alone holds READING.
    let cfg = unsafe { (*CONFIG.0.get()).write(Config::default()) };
    match config::read_into(cfg, env) {
        Ok(()) => {
            LEVEL.store(cfg.log as u8, Ordering::Relaxed);
            STATE.store(ACTIVE, Ordering::Release);
            Some(cfg)
        }
        Err(e) => {
            LEVEL.store(cfg.log as u8, Ordering::Relaxed);
            STATE.store(INERT, Ordering::Release);
            report::config_error(&e);
            None
        }
    }
}

fn active_if_ready() -> Option<&'static Config> {
    if STATE.load(Ordering::Acquire) == ACTIVE {
        Some(unsafe { (*CONFIG.0.get()).assume_init_ref() })
    } else {
        None
    }
}

/// Runs when the library is loaded, before the program's `main`: binds the real symbols and
/// reads the configuration, so the hooks find both ready.
extern "C" fn on_load() {
    crate::real::resolve_all();
    let _ = active();
}

#[cfg(not(target_vendor = "apple"))]
#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

#[cfg(target_vendor = "apple")]
#[used]
#[link_section = "__DATA,__mod_init_func"]
static ON_LOAD: extern "C" fn() = on_load;
