//! What `socket()` created, by descriptor, so `bind()` knows a socket's transport without a
//! system call of its own.
//!
//! A lock-free table of one byte per descriptor: `socket()` writes the entry, `close()`,
//! `dup2()` and `dup3()` keep it true. Descriptors the table cannot vouch for (inherited
//! across exec, made by a raw system call, or past the table's end) read as unknown, and
//! `bind()` then asks the kernel. The table lives in .bss: its pages cost nothing until a
//! descriptor in them is used.

use core::sync::atomic::{AtomicU8, Ordering};

use libc::{c_int, c_void, socklen_t};
use reuse_core::decision::Transport;

const UNKNOWN: u8 = 0;
const TCP: u8 = 1;
const UDP: u8 = 2;
const OTHER_INET: u8 = 3;
const NOT_INET: u8 = 4;

const SLOTS: usize = 1 << 20;
static KINDS: [AtomicU8; SLOTS] = [const { AtomicU8::new(UNKNOWN) }; SLOTS];

#[inline]
fn slot(fd: c_int) -> Option<&'static AtomicU8> {
    KINDS.get(usize::try_from(fd).ok()?)
}

#[cfg(not(target_vendor = "apple"))]
const TYPE_MASK: c_int = 0xf; // SOCK_NONBLOCK and SOCK_CLOEXEC ride in the type argument.
#[cfg(target_vendor = "apple")]
const TYPE_MASK: c_int = !0;

fn code_of(domain: c_int, sock_type: c_int, protocol: c_int) -> u8 {
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return NOT_INET;
    }
    match classify(sock_type & TYPE_MASK, protocol) {
        Transport::Tcp => TCP,
        Transport::Udp => UDP,
        Transport::Other => OTHER_INET,
    }
}

fn classify(sock_type: c_int, protocol: c_int) -> Transport {
    Transport::classify(
        sock_type,
        protocol,
        libc::SOCK_STREAM,
        libc::SOCK_DGRAM,
        libc::IPPROTO_TCP,
        libc::IPPROTO_UDP,
    )
}

#[inline]
pub fn record(fd: c_int, domain: c_int, sock_type: c_int, protocol: c_int) {
    if let Some(s) = slot(fd) {
        s.store(code_of(domain, sock_type, protocol), Ordering::Relaxed);
    }
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
#[inline]
pub fn transport(fd: c_int) -> Option<Transport> {
    match slot(fd).map_or(UNKNOWN, |s| s.load(Ordering::Relaxed)) {
        TCP => Some(Transport::Tcp),
        UDP => Some(Transport::Udp),
        OTHER_INET => Some(Transport::Other),
        NOT_INET => None,
        _ => ask_kernel(fd),
    }
}

fn int_option(fd: c_int, name: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut len = core::mem::size_of::<c_int>() as socklen_t;
    let p = &mut v as *mut c_int as *mut c_void;
    // SAFETY: v and len outlive the call and len is v's size.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, p, &mut len) };
    (rc == 0).then_some(v)
}

#[cold]
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
