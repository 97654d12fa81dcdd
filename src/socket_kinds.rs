//! What `socket()` created, by descriptor, so `bind()` knows a socket's transport without a
//! system call of its own.
//!
//! A lock-free table of one byte per descriptor: `socket()` writes the entry, `close()`,
//! `dup()`, `dup2()` and `dup3()` keep it true. Descriptors the table cannot vouch for (inherited
//! across exec, made by a raw system call, or past the table's end) read as unknown, and
//! `bind()` then asks the kernel.
//!
//! The table (1 MiB of address space, pages made only where descriptors are used) is mapped
//! by the first inet `socket()`, not at load: a mapping made at load is one more `mmap`
//! and teardown in every process that inherits the library, and most of them (shells,
//! compilers, `/bin/true`) never make a socket. The first inet socket claims the table with
//! a compare-and-swap, without a lock; if the mapping fails (address space exhausted, a
//! seccomp filter), the table stays absent, no later socket tries again, and every bind
//! asks the kernel.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

use libc::{c_int, c_void};
use reuse_core::decision::{Protocol, SocketType, Transport};

use crate::{errno, sys};

// The codes the table keeps. An inet socket made with the default protocol keeps its type
// (1-15) as its code: SOCK_STREAM is TCP's, SOCK_DGRAM UDP's, any other an inet socket of
// another kind (like OTHER_INET).
const UNKNOWN: u8 = 0;
const TCP: u8 = 1;
const UDP: u8 = 2;
const OTHER_INET: u8 = 3;
const NOT_INET: u8 = 16;

const SLOTS: usize = 1 << 20;
type Table = [AtomicU8; SLOTS];

#[cfg_attr(target_os = "linux", link_section = ".data")]
static KINDS: AtomicPtr<Table> = AtomicPtr::new(ptr::null_mut());
/// The mapping failed once: a system call per socket to fail again would buy nothing.
#[cfg_attr(target_os = "linux", link_section = ".data")]
static NO_TABLE: AtomicBool = AtomicBool::new(false);

fn table() -> Option<&'static Table> {
    // SAFETY: non-null only once it points at a mapping of SLOTS zeroed bytes that is never
    // unmapped; AtomicU8 has the layout of u8, and zero is UNKNOWN.
    unsafe { KINDS.load(Ordering::Acquire).as_ref() }
}

#[cold]
fn map_table() -> Option<&'static Table> {
    if NO_TABLE.load(Ordering::Relaxed) {
        return None;
    }
    let saved = errno::get();
    // SAFETY: a fresh private anonymous mapping of the table's size.
    let mine = sys::map_zeroed(SLOTS).cast::<Table>();
    let won = if mine.is_null() {
        NO_TABLE.store(true, Ordering::Relaxed);
        None
    } else {
        match KINDS.compare_exchange(ptr::null_mut(), mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(mine),
            Err(theirs) => {
                // Another thread's first socket was faster: use its table, drop ours.
                // SAFETY: our own fresh mapping, which no one else has seen.
                unsafe { sys::unmap(mine.cast::<c_void>(), SLOTS) };
                Some(theirs)
            }
        }
    };
    errno::set(saved);
    // SAFETY: as in table().
    won.and_then(|p| unsafe { p.as_ref() })
}

#[inline]
fn slot(fd: c_int) -> Option<&'static AtomicU8> {
    table()?.get(usize::try_from(fd).ok()?)
}

#[cfg(not(target_vendor = "apple"))]
const TYPE_MASK: c_int = 0xf; // SOCK_NONBLOCK and SOCK_CLOEXEC ride in the type argument.
#[cfg(target_vendor = "apple")]
const TYPE_MASK: c_int = !0;

#[inline(always)]
fn code_of(domain: c_int, sock_type: c_int, protocol: c_int) -> u8 {
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return NOT_INET;
    }
    let sock_type = sock_type & TYPE_MASK;
    if protocol == 0 {
        // The family's default protocol, as nearly every program asks: TCP for a stream
        // socket, UDP for a datagram one, what `classify` says without its two matches. The
        // type is its own code (see the codes above). A type of 0 (masked) makes no socket,
        // so no socket is ever recorded as UNKNOWN.
        const _: () =
            assert!(TCP as c_int == libc::SOCK_STREAM && UDP as c_int == libc::SOCK_DGRAM);
        return (sock_type & 0xf) as u8;
    }
    match classify(sock_type, protocol) {
        Transport::Tcp => TCP,
        Transport::Udp => UDP,
        Transport::Other => OTHER_INET,
    }
}

/// Multipath TCP's protocol number (Linux); nowhere else.
#[cfg(any(target_os = "linux", target_os = "android"))]
const IPPROTO_MPTCP: c_int = libc::IPPROTO_MPTCP;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const IPPROTO_MPTCP: c_int = -1;

#[inline(always)]
fn classify(sock_type: c_int, protocol: c_int) -> Transport {
    let ty = match sock_type {
        libc::SOCK_STREAM => SocketType::Stream,
        libc::SOCK_DGRAM => SocketType::Dgram,
        _ => SocketType::Other,
    };
    let protocol = match protocol {
        0 => Protocol::Default,
        libc::IPPROTO_TCP => Protocol::Tcp,
        libc::IPPROTO_UDP => Protocol::Udp,
        IPPROTO_MPTCP => Protocol::Mptcp,
        _ => Protocol::Other,
    };
    Transport::classify(ty, protocol)
}

/// What `socket(domain, type, protocol)` makes, as the table keeps it.
#[derive(Clone, Copy)]
pub struct Kind(u8);

#[inline(always)]
pub fn kind_of(domain: c_int, sock_type: c_int, protocol: c_int) -> Kind {
    Kind(code_of(domain, sock_type, protocol))
}

/// Records what `fd` is and hands `fd` back, so that the hook keeps nothing across the
/// first call's mapping of the table (a call of its own).
#[inline(always)]
pub fn record(fd: c_int, kind: Kind) -> c_int {
    if let Some(table) = table() {
        if let Some(s) = usize::try_from(fd).ok().and_then(|i| table.get(i)) {
            s.store(kind.0, Ordering::Relaxed);
        }
        return fd;
    }
    record_first(fd, kind)
}

#[cold]
#[inline(never)]
fn record_first(fd: c_int, kind: Kind) -> c_int {
    let code = kind.0;
    // A table that does not exist yet holds no entry to correct: only inet sockets make it.
    let table = match table() {
        Some(t) => t,
        None if code == NOT_INET => return fd,
        None => match map_table() {
            Some(t) => t,
            None => return fd,
        },
    };
    if let Some(s) = usize::try_from(fd).ok().and_then(|i| table.get(i)) {
        s.store(code, Ordering::Relaxed);
    }
    fd
}

#[inline]
pub fn forget(fd: c_int) {
    if let Some(s) = slot(fd) {
        s.store(UNKNOWN, Ordering::Relaxed);
    }
}

/// `new` now names the same socket as `old`.
#[inline]
pub fn copy(old: c_int, new: c_int) {
    if let Some(dst) = slot(new) {
        let v = slot(old).map_or(UNKNOWN, |s| s.load(Ordering::Relaxed));
        dst.store(v, Ordering::Relaxed);
    }
}

/// The transport of an inet socket, from the table or, when it cannot tell, from the kernel.
/// None: not an inet socket at all.
#[inline(always)]
pub fn transport(fd: c_int) -> Option<Transport> {
    match slot(fd).map_or(UNKNOWN, |s| s.load(Ordering::Relaxed)) {
        TCP => Some(Transport::Tcp),
        UDP => Some(Transport::Udp),
        UNKNOWN => ask_kernel(fd),
        NOT_INET => None,
        _ => Some(Transport::Other),
    }
}

/// Whether the table says `fd` is a TCP socket: None when it does not know (then
/// `transport` asks the kernel).
#[cfg(target_os = "linux")]
#[inline(always)]
pub fn is_tcp(fd: c_int) -> Option<bool> {
    match slot(fd).map_or(UNKNOWN, |s| s.load(Ordering::Relaxed)) {
        UNKNOWN => None,
        code => Some(code == TCP),
    }
}

fn int_option(fd: c_int, name: c_int) -> Option<c_int> {
    sys::getsockopt_int(fd, libc::SOL_SOCKET, name)
}

#[cold]
#[inline(never)]
fn ask_kernel(fd: c_int) -> Option<Transport> {
    let sock_type = int_option(fd, libc::SO_TYPE)?;
    #[cfg(not(target_vendor = "apple"))]
    {
        let domain = int_option(fd, libc::SO_DOMAIN)?;
        let protocol = int_option(fd, libc::SO_PROTOCOL)?;
        match code_of(domain, sock_type, protocol) {
            NOT_INET => None,
            _ => Some(classify(sock_type, protocol)),
        }
    }
    #[cfg(target_vendor = "apple")]
    {
        // No SO_PROTOCOL here; the caller only asks for sockets bound to an inet address.
        Some(classify(sock_type, 0))
    }
}
