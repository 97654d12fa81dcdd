//! The auxiliary vector the kernel gave this process (AT_SECURE, where the program's headers
//! and the loader are, the page size), read without importing `getauxval`: an import costs
//! every exec a symbol lookup.
//!
//! glibc's loader calls a library's constructors with `(argc, argv, envp)`, and the kernel put
//! the auxiliary vector right after the environment array's NULL, on the stack, where it
//! stays. The constructor takes it from there when the arguments are what glibc passes:
//! `envp` is `argv + argc + 1` above the constructor's own stack frame (musl's loader passes
//! no arguments, and what is in those registers then does not line up so), and the vector
//! found there is consistent: it ends in AT_NULL within 64 entries and its AT_RANDOM points
//! just above it, where the kernel put those bytes. Otherwise (musl, a `dlopen` after
//! `setenv`, a hook called before the constructor), the kernel is asked: one
//! `prctl(PR_GET_AUXV)` (Linux 6.4 on), else /proc/self/auxv (three system calls), without
//! touching errno (finding errno needs the vector). Unknown (an older kernel with no
//! /proc), the library does nothing: secure execution cannot be ruled out.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use libc::c_ulong;

/// The entries kept: AT_PHDR, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_SECURE.
const KINDS: [c_ulong; 5] = [
    libc::AT_PHDR,
    libc::AT_PHNUM,
    libc::AT_PAGESZ,
    libc::AT_BASE,
    libc::AT_SECURE,
];

#[link_section = ".data"]
static VALUES: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];

const UNKNOWN: u8 = 0;
const KNOWN: u8 = 1;
const UNAVAILABLE: u8 = 2;
#[link_section = ".data"]
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// An entry of the auxiliary vector (0 if the kernel gave none of that kind); None when the
/// vector could not be read.
pub fn get(kind: c_ulong) -> Option<usize> {
    if STATE.load(Ordering::Acquire) == UNKNOWN {
        read_proc();
    }
    if STATE.load(Ordering::Acquire) != KNOWN {
        return None;
    }
    let i = KINDS.iter().position(|k| *k == kind)?;
    VALUES.get(i).map(|v| v.load(Ordering::Relaxed))
}

/// Keeps the entries of a vector of (kind, value) words, up to AT_NULL.
fn keep(words: impl Iterator<Item = (usize, usize)>) -> bool {
    let mut seen_end = false;
    for (kind, value) in words.take(256) {
        if kind == libc::AT_NULL as usize {
            seen_end = true;
            break;
        }
        if let Some(i) = KINDS.iter().position(|k| *k as usize == kind) {
            if let Some(v) = VALUES.get(i) {
                v.store(value, Ordering::Relaxed);
            }
        }
    }
    if seen_end {
        STATE.store(KNOWN, Ordering::Release);
    }
    seen_end
}

/// Whether the constructor's arguments are glibc's `(argc, argv, envp)` for the arrays at
/// the top of this thread's stack: nothing is read unless they line up so and lie above the
/// caller's stack frame (so in mapped memory); then `argv[argc]` must be NULL.
pub fn glibc_arguments(argc: libc::c_int, argv: *const usize, envp: *const usize) -> bool {
    let frame = 0u8;
    let here = &frame as *const u8 as usize;
    let (argv_at, envp_at) = (argv as usize, envp as usize);
    let Ok(argc) = usize::try_from(argc) else {
        return false;
    };
    if argc > 1 << 20
        || argv_at % core::mem::size_of::<usize>() != 0
        || argv_at <= here
        || envp_at != argv_at.wrapping_add((argc + 1) * core::mem::size_of::<usize>())
    {
        return false;
    }
    // SAFETY: argv[argc] is the word before envp, on the stack above this frame (checked).
    unsafe { *argv.add(argc) == 0 }
}

/// Reads the vector that follows the environment array whose terminating NULL is at `end`
/// (the arrays checked by `glibc_arguments`): true if it was found and is consistent.
///
/// # Safety
/// `end` is the NULL that ends the environment array at the top of the stack.
pub unsafe fn from_stack(end: *const usize) -> bool {
    // SAFETY: the caller's promise; the vector follows, ending in AT_NULL, and every read
    // stays within 64 entries of it, checked for consistency before anything is kept.
    unsafe {
        let mut p = end;
        let mut n = 0;
        // An `unsetenv` by an earlier constructor moves the NULL down: skip the run of them.
        while *p == 0 {
            p = p.add(1);
            n += 1;
            if n > 1 << 20 {
                return false;
            }
        }
        // One pass over the vector: the entries kept, and AT_RANDOM for the consistency
        // check, which the kernel points at 16 bytes it put just above the vector.
        let mut values = [0usize; 5];
        let (mut random, mut ended) = (0usize, false);
        for _ in 0..64 {
            let (k, v) = (*p, *p.add(1));
            p = p.add(2);
            match k as c_ulong {
                libc::AT_NULL => {
                    ended = true;
                    break;
                }
                libc::AT_PHDR => values[0] = v,
                libc::AT_PHNUM => values[1] = v,
                libc::AT_PAGESZ => values[2] = v,
                libc::AT_BASE => values[3] = v,
                libc::AT_SECURE => values[4] = v,
                libc::AT_RANDOM => random = v,
                _ => {}
            }
        }
        if !ended || random <= p as usize || random - (p as usize) > 1 << 16 {
            return false;
        }
        for (slot, v) in VALUES.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
        STATE.store(KNOWN, Ordering::Release);
        true
    }
}

/// Asks the kernel (`sys::auxv_bytes`: one `prctl`, else /proc/self/auxv).
fn read_proc() {
    let mut buf = [0u8; 1024];
    let Some(got) = crate::sys::auxv_bytes(&mut buf) else {
        STATE.store(UNAVAILABLE, Ordering::Release);
        return;
    };
    let words = buf
        .get(..got)
        .unwrap_or_default()
        .chunks_exact(2 * core::mem::size_of::<usize>());
    let pairs = words.map(|w| {
        let (k, v) = w.split_at(core::mem::size_of::<usize>());
        let word = |b: &[u8]| {
            let mut a = [0u8; core::mem::size_of::<usize>()];
            for (d, s) in a.iter_mut().zip(b) {
                *d = *s;
            }
            usize::from_ne_bytes(a)
        };
        (word(k), word(v))
    });
    if !keep(pairs) {
        STATE.store(UNAVAILABLE, Ordering::Release);
    }
}
