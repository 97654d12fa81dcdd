//! libreuse: loaded into a program with `LD_PRELOAD` (`DYLD_INSERT_LIBRARIES` on macOS), it
//! sets SO_REUSEADDR (and, when asked, SO_REUSEPORT and SO_LINGER) on the program's
//! listening sockets just before their `bind()`, so a restarted server can bind its port at
//! once instead of failing with EADDRINUSE while TIME_WAIT sockets are left.
//!
//! Layout: `hooks` is the whole FFI edge; `real` holds the resolved libc symbols that every
//! internal call goes through; `state` is the configuration read once at load; `socket_kinds`
//! remembers what `socket()` created; `report` writes stderr lines; `addr_in_use` waits out,
//! takes over and explains a bind refused with EADDRINUSE, reading /proc through `procfs`;
//! `handover` gets a server the socket `reuse run --hold` keeps; `sys` makes the library's
//! own system calls. Every decision is a pure function of `reuse-core`.
//!
//! The library is `no_std` with `panic = "abort"`: no unwinder, no allocator, no libgcc_s,
//! and no import: two segments to map into every process that inherits the environment, and
//! nothing for the loader to look up. Its zero-initialized statics are put in `.data`
//! (`link_section`) rather than `.bss`: with no `.bss`, the data segment's file size is its
//! memory size, and the loader has no partial page to clear at every exec (a `memset` of
//! about 3 kB, some 220 instructions).
#![cfg_attr(not(test), no_std)]
// What could abort a host, or a diagnosis in it: never outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used
    )
)]

mod activation;
mod addr_in_use;
#[cfg(target_os = "linux")]
mod auxv;
#[cfg(all(
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod deepbind;
mod errno;
mod handover;
mod hooks;
#[cfg(not(target_vendor = "apple"))]
mod next_symbol;
mod procfs;
mod real;
mod report;
mod socket_kinds;
mod state;
mod sys;

// On Linux x86_64 and aarch64 the library names no NEEDED library and imports nothing: it
// reads the auxiliary vector itself (`auxv`) and finds libc's functions on first use
// (`next_symbol`), which saves every exec the loader's lookups, NEEDED and version checks.
// Elsewhere it calls libc's functions by name, and names libc.
#[cfg(all(
    target_os = "linux",
    not(any(target_arch = "x86_64", target_arch = "aarch64"))
))]
#[link(name = "c")]
extern "C" {}

// The memory functions the compiler calls (copies of structures, comparisons of slices), of
// the library's own: importing libc's would cost a symbol lookup each, and an IFUNC resolver
// each, at every exec.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod mem;

/// What `reuse run` reads to tell whether the library it preloads is the one it was built
/// with: the version and the commit after a fixed mark, in the library's constants (kept
/// there by the constructor's reference to it).
pub static VERSION_MARK: &str = concat!(
    "libreuse-version: ",
    env!("CARGO_PKG_VERSION"),
    " ",
    env!("REUSE_COMMIT"),
    "\n"
);

/// Nothing in the library panics by design (no indexing out of range, no unwrap on data from
/// outside); if it ever did, aborting is the only safe thing: unwinding through a host's C
/// frames is undefined behaviour.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::abort()
}
