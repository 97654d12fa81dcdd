//! Link options for libreuse.so: the layout of a library that every exec under it maps.
//!
//! On the 2-vCPU VM of BENCHMARKS.md an mmap costs about 2 µs and a page fault about 3.5 µs,
//! and an exec of /bin/true about 560 µs, so each segment or page the loader touches is
//! worth about 0.5 % of an exec. The options below take the library from four loadable
//! segments, a RELRO mprotect and seven page faults more than an exec without it to two
//! segments and two or three:
//!
//! - `-nostartfiles`: no crti/crtbegin/crtend. They bring `.init`, `.fini`, a TM clone
//!   table, a `__cxa_finalize` call at exit and four weak imports the loader must look up
//!   (and fail to find) at every exec; the constructor is in `.init_array`, which the
//!   loader runs itself.
//! - `-z norelro`: RELRO would split the writable data into a page of its own, mapped and
//!   then write-protected with one more mmap, one mprotect and one more fault. What it would
//!   protect here (a few GOT entries of the library's own functions) sits beside the
//!   resolved `socket`/`bind` pointers, which must stay writable anyway. The host's own RELRO is untouched.
//! - one read-only-and-executable segment for code and constants (`-z noseparate-code` for
//!   GNU ld; for lld, `--no-rosegment`, with `-z separate-loadable-segments` so the data
//!   starts on a page of its own and fits in one). It costs the constants (about 3 kB) and
//!   the symbol tables being executable. lld is rustc's own linker on
//!   x86_64-unknown-linux-gnu since Rust 1.90, but not in every build of rustc (distribution
//!   packages often link with the system's GNU ld, which refuses `--no-rosegment`), so the
//!   lld options are tried on an empty library first and given only if it links.
//!
//! Other targets (macOS's ld64) keep their defaults.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[path = "build_commit.rs"]
mod build_commit;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build_commit.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let repo = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!(
        "cargo:rustc-env=REUSE_COMMIT={}",
        build_commit::commit(&repo)
    );
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    for arg in [
        "-nostartfiles",
        "-Wl,-z,norelro",
        "-Wl,-z,noseparate-code",
        "-Wl,-Bsymbolic-functions",
    ] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
    if lld_options_link() {
        for arg in LLD_ONLY {
            println!("cargo:rustc-cdylib-link-arg={arg}");
        }
    }
}

const LLD_ONLY: [&str; 2] = ["-Wl,--no-rosegment", "-Wl,-z,separate-loadable-segments"];

/// Whether the linker rustc will use takes the lld options: links an empty no_std library
/// with them, with the same rustc, target, flags and linker as the real one.
fn lld_options_link() -> bool {
    let (Some(out), Ok(target)) = (env::var_os("OUT_DIR"), env::var("TARGET")) else {
        return false;
    };
    let dir = PathBuf::from(out);
    let src = dir.join("link_probe.rs");
    let probe =
        "#![no_std]\n#[panic_handler]\nfn p(_: &core::panic::PanicInfo) -> ! {\n    loop {}\n}\n";
    if std::fs::write(&src, probe).is_err() {
        return false;
    }
    let mut c = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    c.args([
        "--crate-type",
        "cdylib",
        "--crate-name",
        "link_probe",
        "--edition",
        "2021",
    ])
    .args(["-C", "panic=abort", "--target", &target, "-o"])
    .arg(dir.join("liblink_probe.so"))
    .arg(&src);
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    c.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        c.arg("-C").arg(format!("linker={linker}"));
    }
    for arg in LLD_ONLY {
        c.arg("-C").arg(format!("link-arg={arg}"));
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c.status().is_ok_and(|s| s.success())
}
