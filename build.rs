//! Link options for libreuse.so: the layout of a library that every exec under it maps.
//!
//! On the 2-vCPU VM of BENCHMARKS.md an mmap costs about 2 µs and a page fault about 3.5 µs,
//! and an exec of /bin/true about 560 µs, so each segment or page the loader touches is
//! worth about 0.5 % of an exec. The options below take the library from four loadable
//! segments, a RELRO mprotect and seven page faults to two segments and three faults:
//!
//! - `-nostartfiles`: no crti/crtbegin/crtend. They bring `.init`, `.fini`, a TM clone
//!   table, a `__cxa_finalize` call at exit and four weak imports the loader must look up
//!   (and fail to find) at every exec; the constructor is in `.init_array`, which the
//!   loader runs itself.
//! - `-z norelro`: RELRO would split the writable data into a page of its own, mapped and
//!   then write-protected with one more mmap, one mprotect and one more fault. What it would
//!   protect here (a GOT of a dozen entries) sits beside the resolved `socket`/`bind`
//!   pointers, which must stay writable anyway. The host's own RELRO is untouched.
//! - one read-only-and-executable segment for code and constants (`-z noseparate-code` for
//!   GNU ld, `--no-rosegment` for lld, the default linker of x86_64-unknown-linux-gnu since
//!   Rust 1.90). It costs rodata being executable, a few hundred bytes of constants.
//!
//! Other targets (macOS's ld64) keep their defaults.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    for arg in ["-nostartfiles", "-Wl,-z,norelro", "-Wl,-z,noseparate-code"] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
    if links_with_lld() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-rosegment");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,separate-loadable-segments");
    }
}

/// Whether rustc will link with its own lld: the default on x86_64-unknown-linux-gnu since
/// 1.90, unless the flags choose a linker. When unsure, no: GNU ld refuses `--no-rosegment`,
/// and without it the library only keeps one more segment.
fn links_with_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let chooses_linker = [
        "linker-features",
        "linker-flavor",
        "link-self-contained",
        "fuse-ld",
    ]
    .iter()
    .any(|f| flags.contains(f));
    if chooses_linker {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
