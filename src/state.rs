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

#[cfg_attr(target_os = "linux", link_section = ".data")]
static STATE: AtomicU8 = AtomicU8::new(UNREAD);

/// How many listening sockets a service manager passed (LISTEN_FDS, for this process); 0:
/// none. Written before STATE is published.
#[cfg_attr(target_os = "linux", link_section = ".data")]
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
// Holds the default from the start (in the library's data, not written at load): a process
// with no REUSE_ variable, the usual case, publishes it as it is.
static CONFIG: Slot = Slot(UnsafeCell::new(MaybeUninit::new(Config::DEFAULT)));

/// `decision::tcp_addr_only` of the active configuration, published with it (read after
/// `active` returned it).
#[cfg(target_os = "linux")]
#[link_section = ".data"]
static TCP_ADDR_ONLY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

#[cfg(target_os = "linux")]
#[inline(always)]
pub fn tcp_addr_only() -> bool {
    TCP_ADDR_ONLY.load(Ordering::Relaxed)
}

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
                let bytes = entry.cast::<u8>();
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
#[cfg_attr(target_os = "linux", link_section = ".data")]
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
    // Every exec under the library pays this loop once per variable, so an entry that cannot
    // be ours costs one bit test of its first byte: the bits of 'R' and 'L' modulo 64 (a
    // few control and high bytes share them, and the full check below turns them away).
    const FIRST: u64 = 1 << (b'R' & 63) | 1 << (b'L' & 63);
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
            if FIRST >> (first & 63) & 1 != 0 {
                // The first byte is not the NUL, so the second is there.
                let two = [first, *entry.cast::<u8>().add(1)];
                if matches!(&two, b"RE" | b"LI" | b"LD") {
                    ours |= note_entry(entry.cast());
                }
            }
            p = p.add(1);
        }
    }
    (p, ours)
}

/// The few entries that pass the first byte's test: whether it is ours, and what the DEEPBIND
/// search and the preload check keep of LD_ entries.
///
/// # Safety
/// `bytes` is a NUL-terminated string of the loader's environment.
#[cfg(target_os = "linux")]
#[cold]
#[inline(never)]
unsafe fn note_entry(bytes: *const u8) -> bool {
    // SAFETY: the caller's promise.
    unsafe {
        if *bytes == b'L' {
            note_library_path(bytes);
            note_preloads(bytes);
        }
        is_ours(bytes)
    }
}

/// LD_LIBRARY_PATH as the program started with it (its value's address), for the DEEPBIND
/// search (`deepbind`), which must search it where glibc does; 0 if unset.
#[cfg(target_os = "linux")]
#[link_section = ".data"]
static LIBRARY_PATH: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// # Safety
/// `bytes` is a NUL-terminated string that lives as long as the process (the environment
/// the loader passed).
#[cfg(target_os = "linux")]
unsafe fn note_library_path(bytes: *const u8) {
    const NAME: &[u8] = b"LD_LIBRARY_PATH=";
    // SAFETY: the caller's promise.
    if unsafe { starts_with(bytes, NAME) } {
        // SAFETY: the value follows the name within the string.
        let value = unsafe { bytes.add(NAME.len()) };
        LIBRARY_PATH.store(value as usize, Ordering::Relaxed);
    }
}

/// The length of a NUL-terminated string, a machine word at a time: aligned words never
/// cross a page, so reading the whole word that holds the NUL is safe.
///
/// # Safety
/// `s` is NUL-terminated.
#[cfg(target_os = "linux")]
unsafe fn string_length(s: *const u8) -> usize {
    const W: usize = core::mem::size_of::<usize>();
    const ONES: usize = usize::MAX / 255;
    const HIGHS: usize = ONES << 7;
    let mut p = s;
    // SAFETY: byte by byte up to alignment, stopping at the NUL; then aligned words, each
    // within the page of a byte of the string or of its NUL.
    unsafe {
        while !(p as usize).is_multiple_of(W) {
            if *p == 0 {
                return p as usize - s as usize;
            }
            p = p.add(1);
        }
        let mut w = p as *const usize;
        loop {
            let v = aligned_word(w);
            if v.wrapping_sub(ONES) & !v & HIGHS != 0 {
                break;
            }
            w = w.add(1);
        }
        let mut q = w as *const u8;
        while *q != 0 {
            q = q.add(1);
        }
        q as usize - s as usize
    }
}

/// One aligned machine word, read by the processor rather than as a Rust value: the word
/// may run past the end of the string into bytes of the same page, which a Rust read may
/// not touch.
///
/// # Safety
/// `w` is aligned and its first byte is readable.
#[cfg(target_os = "linux")]
#[inline(always)]
unsafe fn aligned_word(w: *const usize) -> usize {
    let v: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's promise; an aligned word lies within one page.
    unsafe {
        core::arch::asm!("mov {v}, qword ptr [{w}]", w = in(reg) w, v = lateout(reg) v,
            options(nostack, preserves_flags, readonly));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("ldr {v}, [{w}]", w = in(reg) w, v = lateout(reg) v,
            options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: elsewhere the word is read byte by byte, each up to the NUL.
    unsafe {
        let b = w as *const u8;
        let mut bytes = [0u8; core::mem::size_of::<usize>()];
        for (i, d) in bytes.iter_mut().enumerate() {
            *d = *b.add(i);
            if *d == 0 {
                break;
            }
        }
        v = usize::from_ne_bytes(bytes);
    }
    v
}

/// Whether LD_PRELOAD names another library after this one: the loader runs the
/// constructors of preloaded libraries last-listed first, so theirs ran before this one's.
#[cfg(target_os = "linux")]
#[link_section = ".data"]
static OTHERS_PRELOADED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// # Safety
/// `bytes` is a NUL-terminated string.
#[cfg(target_os = "linux")]
unsafe fn note_preloads(bytes: *const u8) {
    const NAME: &[u8] = b"LD_PRELOAD=";
    const ME: &[u8] = b"libreuse";
    // SAFETY: the caller's promise.
    if !unsafe { starts_with(bytes, NAME) } {
        return;
    }
    // SAFETY: the value follows the name, NUL-terminated.
    let value = unsafe { bytes.add(NAME.len()) };
    // Most often this library is the last entry (alone, or after valgrind's): found from the
    // end without a pass over the whole value.
    // SAFETY: as above.
    let len = unsafe { string_length(value) };
    // SAFETY: every index read is below len.
    let last_is_me = unsafe {
        let sep = |c: u8| c == b':' || c == b' ';
        let mut end = len;
        while end > 0 && sep(*value.add(end - 1)) {
            end -= 1;
        }
        // The usual name, `.../libreuse.so`, is matched by two word compares of its last
        // eleven bytes; any other name by a walk back to the start of its file name.
        let usual = end >= 11
            && value.add(end - 11).cast::<u64>().read_unaligned()
                == u64::from_ne_bytes(*b"libreuse")
            && value.add(end - 8).cast::<u64>().read_unaligned()
                == u64::from_ne_bytes(*b"reuse.so")
            && (end == 11 || {
                let c = *value.add(end - 12);
                sep(c) || c == b'/'
            });
        usual || {
            let mut file = end;
            while file > 0 && !sep(*value.add(file - 1)) && *value.add(file - 1) != b'/' {
                file -= 1;
            }
            end - file >= ME.len()
                && value.add(file).cast::<u64>().read_unaligned()
                    == u64::from_ne_bytes(*b"libreuse")
        }
    };
    let after = !last_is_me && {
        // One pass over the value, up to its NUL: whether an entry follows one whose file
        // name starts with "libreuse". Without such an entry (another name), nothing is
        // assumed.
        let (mut seen_me, mut after) = (false, false);
        // SAFETY: every read stops at the value's NUL.
        unsafe {
            let mut p = value;
            let mut file = p;
            let mut in_entry = false;
            loop {
                let c = *p;
                if c == 0 || c == b':' || c == b' ' {
                    if in_entry {
                        if seen_me {
                            after = true;
                            break;
                        }
                        seen_me = ME.iter().enumerate().all(|(i, b)| *file.add(i) == *b);
                    }
                    if c == 0 {
                        break;
                    }
                    in_entry = false;
                    file = p.add(1);
                } else {
                    in_entry = true;
                    if c == b'/' {
                        file = p.add(1);
                    }
                }
                p = p.add(1);
            }
        }
        after
    };
    OTHERS_PRELOADED.store(after, Ordering::Relaxed);
}

/// LD_LIBRARY_PATH's value as the program started with it, if set.
#[cfg(all(
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn library_path() -> Option<&'static [u8]> {
    let p = LIBRARY_PATH.load(Ordering::Relaxed);
    // SAFETY: the value of an environment string the loader passed, NUL-terminated, which
    // lives as long as the process.
    (p != 0).then(|| unsafe { core::ffi::CStr::from_ptr(p as *const c_char) }.to_bytes())
}

/// Whether a NUL-terminated string starts with `prefix`, compared byte by byte up to the
/// first difference, so never past the NUL.
///
/// # Safety
/// `bytes` is a NUL-terminated string.
#[inline(always)]
unsafe fn starts_with(bytes: *const u8, prefix: &[u8]) -> bool {
    // SAFETY: the caller's promise; a shorter string ends in a NUL, which matches no prefix
    // byte, so nothing past it is read.
    prefix
        .iter()
        .enumerate()
        .all(|(i, b)| unsafe { *bytes.add(i) } == *b)
}

/// Whether an environment entry starts with REUSE_ or LISTEN_.
///
/// # Safety
/// `bytes` is a NUL-terminated string.
unsafe fn is_ours(bytes: *const u8) -> bool {
    // SAFETY: the caller's promise (the first byte is there: at worst the NUL).
    unsafe {
        // Most entries fail at the first byte.
        match *bytes {
            b'R' => starts_with(bytes, b"REUSE_"),
            b'L' => starts_with(bytes, b"LISTEN_"),
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
    #[cfg(target_os = "linux")]
    if !ENV_HAS_OURS.load(Ordering::Relaxed) {
        // SAFETY: CONFIG holds Config::DEFAULT, never written before STATE leaves READING.
        let cfg = unsafe { (*CONFIG.0.get()).assume_init_ref() };
        report::set_level(cfg.log);
        TCP_ADDR_ONLY.store(reuse_core::decision::tcp_addr_only(cfg), Ordering::Relaxed);
        STATE.store(ACTIVE, Ordering::Release);
        return Some(cfg);
    }
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
            #[cfg(target_os = "linux")]
            TCP_ADDR_ONLY.store(reuse_core::decision::tcp_addr_only(cfg), Ordering::Relaxed);
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
/// glibc's do (`auxv`), saving a search for `environ` and a system call for the auxiliary
/// vector.
extern "C" fn on_load(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    core::hint::black_box(crate::VERSION_MARK.as_ptr());
    #[cfg(target_os = "linux")]
    if crate::auxv::glibc_arguments(argc, argv.cast(), envp.cast()) {
        // SAFETY: envp is glibc's environment array (checked): NULL-terminated strings.
        let (end, ours) = unsafe { scan_environment(envp) };
        // SAFETY: end is that array's NULL, at the top of the stack.
        let found = unsafe { crate::auxv::from_stack(end.cast()) };
        // The array the loader passed is the environment as the program started. Other
        // preloaded libraries' constructors run before this one and may have changed it
        // (setenv of a new variable makes a new array): then `environ` is read instead.
        if found && !OTHERS_PRELOADED.load(Ordering::Relaxed) {
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
