//! The configuration, read from the environment once at load into a plain struct.
//!
//! Hooks never read the environment: they load one atomic and, once it says the library is
//! active, read the struct that was written before it was published. The constructor does
//! the reading; a hook that runs before it (a bind from another library's constructor) does
//! it on the spot, which is why the first reader claims the work with a compare-and-swap.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use reuse_core::activation::{self, Activation};
use reuse_core::config::{self, Config, Level};

use crate::report;

const UNREAD: u8 = 0;
const READING: u8 = 1;
const ACTIVE: u8 = 2;
/// Invalid configuration or secure execution: every hook passes straight through.
const INERT: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNREAD);

/// How many listening sockets a service manager passed (LISTEN_FDS, for this process); 0:
/// none. Written before STATE is published.
static ACTIVATION: AtomicU32 = AtomicU32::new(0);

/// The sockets passed by socket activation, if any (from descriptor 3 on).
pub fn activation() -> Option<Activation> {
    match ACTIVATION.load(Ordering::Relaxed) {
        0 => None,
        count => Some(Activation { count }),
    }
}

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
        UNREAD => read_now(false),
        // READING: another thread is reading right now, before the constructor ran (only
        // possible if a thread was started from an earlier constructor). Waiting could hang
        // a host; this one bind is left alone instead.
        _ => None,
    }
}

/// The process environment's entries that start with `REUSE_` or `LISTEN_` (socket
/// activation), walked once. Reading `environ` directly instead of calling getenv for each
/// variable saves the library a scan of the whole environment per variable, and two symbol
/// imports, at every exec.
fn reuse_entries() -> impl Iterator<Item = &'static [u8]> {
    #[cfg(not(target_vendor = "apple"))]
    let mut p: *const *const c_char = environment();
    #[cfg(target_os = "linux")]
    if !ENV_HAS_OURS.load(Ordering::Relaxed) {
        p = core::ptr::null();
    }
    #[cfg(target_vendor = "apple")]
    // SAFETY: _NSGetEnviron returns the process's environ pointer.
    let mut p: *const *const c_char = unsafe { *libc::_NSGetEnviron() as *const *const c_char };
    core::iter::from_fn(move || {
        if p.is_null() {
            return None;
        }
        // SAFETY: environ is a NULL-terminated array of NUL-terminated strings; each entry is
        // read up to its NUL, and only the bytes of the entries used while parsing matter.
        unsafe {
            loop {
                let entry = *p;
                if entry.is_null() {
                    return None;
                }
                p = p.add(1);
                let bytes = entry as *const u8;
                if is_ours(bytes) {
                    let mut n = 6;
                    while *bytes.add(n) != 0 {
                        n += 1;
                    }
                    return Some(core::slice::from_raw_parts(bytes, n));
                }
            }
        }
    })
}

/// The environment as glibc's loader passed it to the constructor (null: not so).
#[cfg(not(target_vendor = "apple"))]
static LOADER_ENVP: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Whether the environment glibc's loader passed holds a REUSE_ or LISTEN_ entry; when it
/// holds none (plain `LD_PRELOAD=libreuse.so`), the configuration is the default without a
/// second walk.
#[cfg(target_os = "linux")]
static ENV_HAS_OURS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

/// One walk of an environment array: where its NULL is, and whether an entry starts with
/// REUSE_ or LISTEN_.
///
/// # Safety
/// `envp` is a NULL-terminated array of NUL-terminated strings.
#[cfg(target_os = "linux")]
unsafe fn scan_environment(envp: *const *const c_char) -> (*const *const c_char, bool) {
    let mut ours = false;
    let mut p = envp;
    // SAFETY: the caller's promise; each entry is compared up to its first differing byte,
    // so never past its NUL.
    unsafe {
        loop {
            let entry = *p;
            if entry.is_null() {
                break;
            }
            let first = *entry.cast::<u8>();
            if first == b'R' || first == b'L' {
                ours |= is_ours(entry.cast());
            }
            p = p.add(1);
        }
    }
    (p, ours)
}

/// Whether an environment entry starts with REUSE_ or LISTEN_.
///
/// # Safety
/// `bytes` is a NUL-terminated string.
unsafe fn is_ours(bytes: *const u8) -> bool {
    // SAFETY: compared byte by byte: a shorter entry ends in a NUL, which matches no prefix
    // byte, so nothing past it is read.
    unsafe {
        let starts = |prefix: &[u8]| prefix.iter().enumerate().all(|(i, b)| *bytes.add(i) == *b);
        // Most entries fail at the first byte.
        match *bytes {
            b'R' => starts(b"REUSE_"),
            b'L' => starts(b"LISTEN_"),
            _ => false,
        }
    }
}

/// The process's environment array: the one glibc's loader handed the constructor, else
/// what `environ` holds (looked up among the loaded objects: musl, or a hook called before
/// the constructor).
#[cfg(not(target_vendor = "apple"))]
fn environment() -> *const *const c_char {
    let p = LOADER_ENVP.load(Ordering::Relaxed);
    if p != 0 {
        return p as *const *const c_char;
    }
    let mut at = crate::real::environ();
    if at.is_null() {
        crate::real::at_load();
        at = crate::real::environ();
    }
    if at.is_null() {
        return core::ptr::null();
    }
    // SAFETY: the address of libc's (or the program's) `environ`.
    unsafe { core::ptr::read_volatile(at) }
}

/// No `environ` found among the loaded objects: the configuration cannot be read, so the
/// library leaves everything as it is rather than act on every port.
fn no_environment() -> bool {
    #[cfg(not(target_vendor = "apple"))]
    {
        environment().is_null()
    }
    #[cfg(target_vendor = "apple")]
    {
        false
    }
}

/// Secure execution (setuid/setgid, file capabilities): the loader already strips most
/// preloads, but a library in a trusted path can still be loaded, and must then do nothing.
fn secure_execution() -> bool {
    #[cfg(not(target_vendor = "apple"))]
    {
        // With no auxiliary vector to read, secure execution cannot be ruled out.
        crate::auxv::get(libc::AT_SECURE) != Some(0)
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: no memory involved.
        unsafe { libc::issetugid() != 0 }
    }
}

#[cold]
fn read_now(at_load: bool) -> Option<&'static Config> {
    if STATE
        .compare_exchange(UNREAD, READING, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        return active_if_ready();
    }
    if secure_execution() || no_environment() {
        report::set_level(Level::Off);
        STATE.store(INERT, Ordering::Release);
        return None;
    }
    report::remember_stderr();
    // SAFETY: this thread alone holds READING.
    let cfg = unsafe { (*CONFIG.0.get()).write(Config::default()) };
    let (mut listen_fds, mut listen_pid) = (None, None);
    let found = config::pick_variables(reuse_entries().inspect(|e| {
        if let Some(v) = e.strip_prefix(b"LISTEN_FDS=") {
            listen_fds.get_or_insert(v);
        } else if let Some(v) = e.strip_prefix(b"LISTEN_PID=") {
            listen_pid.get_or_insert(v);
        }
    }));
    if listen_fds.is_some() {
        let pid = crate::sys::getpid() as u32;
        if let Some(a) = activation::parse(listen_fds, listen_pid, pid) {
            ACTIVATION.store(a.count, Ordering::Relaxed);
            crate::activation::remember(a.count);
        }
    }
    match config::read_into(cfg, |name| config::lookup(&found, name)) {
        Ok(()) => {
            report::set_level(cfg.log);
            STATE.store(ACTIVE, Ordering::Release);
            Some(cfg)
        }
        Err(e) => {
            report::set_level(cfg.log);
            STATE.store(INERT, Ordering::Release);
            let value = config::lookup(&found, e.var).unwrap_or_default();
            let mark = config::reported_mark(e.var, value);
            if reported_mark() != Some(mark) {
                report::config_error(&e);
                if at_load {
                    mark_reported(mark);
                }
            }
            None
        }
    }
}

/// The mark an ancestor left after reporting an invalid configuration, if any.
fn reported_mark() -> Option<u64> {
    let name = config::REPORTED_VARIABLE.as_bytes();
    reuse_entries().find_map(|e| {
        let value = e.strip_prefix(name)?.strip_prefix(b"=")?;
        let text = core::str::from_utf8(value).ok()?;
        u64::from_str_radix(text, 16).ok()
    })
}

/// Leaves the mark in the environment this process's children inherit, so that a wrapper
/// chain (a pyenv shim runs dozens of programs) says it once. Only from the constructor of a
/// process with one thread: setenv is no function to call beside other threads.
fn mark_reported(mark: u64) {
    if crate::procfs::thread_count() != Some(1) {
        return;
    }
    let mut value = [0u8; 17];
    for (i, d) in value.iter_mut().take(16).enumerate() {
        let nibble = (mark >> (60 - 4 * i)) & 0xf;
        *d = b"0123456789abcdef"
            .get(nibble as usize)
            .copied()
            .unwrap_or(b'0');
    }
    let mut name = [0u8; 32];
    for (d, s) in name.iter_mut().zip(config::REPORTED_VARIABLE.bytes()) {
        *d = s;
    }
    crate::real::setenv(&name, &value);
}

fn active_if_ready() -> Option<&'static Config> {
    if STATE.load(Ordering::Acquire) == ACTIVE {
        // SAFETY: ACTIVE is stored (Release) only after the configuration was written.
        Some(unsafe { (*CONFIG.0.get()).assume_init_ref() })
    } else {
        None
    }
}

/// Runs when the library is loaded, before the program's `main`: reads the configuration,
/// so the hooks find it ready. glibc's loader passes `(argc, argv, envp)`; musl's and dyld
/// pass nothing that may be read, so the arguments are used only when they line up as
/// glibc's do (`auxv`), saving a search for `environ` and a read of /proc/self/auxv.
extern "C" fn on_load(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    core::hint::black_box(crate::VERSION_MARK.as_ptr());
    #[cfg(target_os = "linux")]
    if crate::auxv::glibc_arguments(argc, argv.cast(), envp.cast()) {
        // SAFETY: envp is glibc's environment array (checked): NULL-terminated strings.
        let (end, ours) = unsafe { scan_environment(envp) };
        // SAFETY: end is that array's NULL, at the top of the stack.
        if unsafe { crate::auxv::from_stack(end.cast()) } {
            LOADER_ENVP.store(envp as usize, Ordering::Relaxed);
            ENV_HAS_OURS.store(ours, Ordering::Relaxed);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (argc, argv, envp);
    if STATE.load(Ordering::Acquire) == UNREAD {
        let _ = read_now(true);
    }
}

#[cfg(not(target_vendor = "apple"))]
#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = on_load;

#[cfg(target_vendor = "apple")]
#[used]
#[link_section = "__DATA,__mod_init_func"]
static ON_LOAD: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = on_load;
