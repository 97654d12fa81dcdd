//! An inet address and port, and how one is read out of the `sockaddr` bytes a program hands
//! to `bind()`.
//!
//! The decoder works on a byte slice the caller has already proved readable: the library
//! reads the caller's address only after the kernel accepted it (or after copying it with a
//! system call that fails cleanly on a bad pointer), and never beyond the length given.

use core::fmt;

use crate::line::{Hex, Put, Sink};

/// An inet address and port as a bind saw it, printed `127.0.0.1:8000` or `[::1]:8000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::V4(_, p) | Endpoint::V6(_, p) => *p,
        }
    }

    pub fn is_v6(&self) -> bool {
        matches!(self, Endpoint::V6(..))
    }

    /// The wildcard address (0.0.0.0 or ::).
    pub fn is_any(&self) -> bool {
        match self {
            Endpoint::V4(a, _) => *a == [0; 4],
            Endpoint::V6(a, _) => *a == [0; 16],
        }
    }

    /// The IPv4 address of an IPv4 endpoint, or of an IPv4-mapped IPv6 one (::ffff:a.b.c.d).
    pub fn v4(&self) -> Option<[u8; 4]> {
        match self {
            Endpoint::V4(a, _) => Some(*a),
            Endpoint::V6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d], _) => {
                Some([*a, *b, *c, *d])
            }
            Endpoint::V6(..) => None,
        }
    }

    /// A link-local IPv6 address (fe80::/10): the one kind whose scope id the kernel uses
    /// to tell apart binds of the same address.
    pub fn is_link_local(&self) -> bool {
        matches!(self, Endpoint::V6([0xfe, b, ..], _) if b & 0xc0 == 0x80)
    }
}

impl Put for Endpoint {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        match self {
            Endpoint::V4(a, p) => crate::put!(sink, Dotted(*a), ":", p),
            Endpoint::V6(a, p) => {
                sink.push("[");
                put_ipv6(a, sink);
                crate::put!(sink, "]:", p);
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::line::display(self, f)
    }
}

/// An IPv4 address, `a.b.c.d`.
struct Dotted([u8; 4]);

impl Put for Dotted {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        let [a, b, c, d] = self.0;
        crate::put!(sink, a, ".", b, ".", c, ".", d);
    }
}

/// An IPv6 address as RFC 5952 (and Rust's `Ipv6Addr`) writes it: lowercase, the first
/// longest run of two or more zero groups as `::`, an IPv4-mapped address as
/// `::ffff:a.b.c.d`.
fn put_ipv6<S: Sink + ?Sized>(a: &[u8; 16], sink: &mut S) {
    if let [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, w, x, y, z] = *a {
        crate::put!(sink, "::ffff:", Dotted([w, x, y, z]));
        return;
    }
    let mut groups = [0u16; 8];
    for (g, pair) in groups.iter_mut().zip(a.chunks_exact(2)) {
        if let [hi, lo] = *pair {
            *g = u16::from_be_bytes([hi, lo]);
        }
    }
    // (start, length) of the first longest run of zero groups.
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            if run.1 == 0 {
                run.0 = i;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let put_groups = |sink: &mut S, from: usize, to: usize| {
        for (n, g) in groups.iter().enumerate().take(to).skip(from) {
            if n > from {
                sink.push(":");
            }
            Hex(u32::from(*g)).put(sink);
        }
    };
    if best.1 > 1 {
        put_groups(sink, 0, best.0);
        sink.push("::");
        put_groups(sink, best.0 + best.1, groups.len());
    } else {
        put_groups(sink, 0, groups.len());
    }
}

/// How a platform lays out the start of a `sockaddr`, and its family numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockaddrAbi {
    /// BSD and macOS: a length byte, then a one-byte family. Linux: a two-byte family in the
    /// machine's byte order.
    pub len_byte: bool,
    pub af_unspec: u16,
    pub af_inet: u16,
    pub af_inet6: u16,
}

impl SockaddrAbi {
    pub const LINUX: SockaddrAbi = SockaddrAbi {
        len_byte: false,
        af_unspec: 0,
        af_inet: 2,
        af_inet6: 10,
    };
    pub const BSD: SockaddrAbi = SockaddrAbi {
        len_byte: true,
        af_unspec: 0,
        af_inet: 2,
        af_inet6: 30,
    };
}

/// Size of `sockaddr_in`, the shortest inet address a bind takes.
pub const SIN_LEN: usize = 16;
/// RFC 2133's `sockaddr_in6`, without `sin6_scope_id`: the shortest IPv6 address Linux takes.
pub const SIN6_LEN_RFC2133: usize = 24;
/// `sockaddr_in6` with its scope id.
pub const SIN6_LEN: usize = 28;
/// The most bytes of an address the decoder ever looks at.
pub const DECODED_MAX: usize = SIN6_LEN;

/// What a bind asks for: the endpoint, and the IPv6 scope id (0 when the address is too
/// short to carry one, as the kernel takes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddress {
    pub endpoint: Endpoint,
    pub scope_id: u32,
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Reads an inet address out of `bytes` (exactly the length the program passed), as the
/// kernel would take it for a bind: None for anything else (Unix, too short, unknown family).
///
/// `unspec_is_v4`: Linux takes `AF_UNSPEC` with `INADDR_ANY` as `0.0.0.0` on an AF_INET
/// socket (a compatibility rule of its own); the caller says whether the socket is one.
pub fn decode(bytes: &[u8], abi: SockaddrAbi, unspec_is_v4: bool) -> Option<BindAddress> {
    let family = if abi.len_byte {
        u16::from(*bytes.get(1)?)
    } else {
        u16::from_ne_bytes(array(bytes, 0)?)
    };
    let port = u16::from_be_bytes(array(bytes, 2)?);
    let v4 = |bytes: &[u8]| -> Option<[u8; 4]> {
        if bytes.len() < SIN_LEN {
            return None;
        }
        array(bytes, 4)
    };
    if family == abi.af_inet {
        return Some(BindAddress {
            endpoint: Endpoint::V4(v4(bytes)?, port),
            scope_id: 0,
        });
    }
    if family == abi.af_unspec && unspec_is_v4 && !abi.len_byte {
        let a = v4(bytes)?;
        return (a == [0; 4]).then_some(BindAddress {
            endpoint: Endpoint::V4(a, port),
            scope_id: 0,
        });
    }
    if family == abi.af_inet6 && bytes.len() >= SIN6_LEN_RFC2133 {
        let scope_id = if bytes.len() >= SIN6_LEN {
            u32::from_ne_bytes(array(bytes, 24)?)
        } else {
            0
        };
        return Some(BindAddress {
            endpoint: Endpoint::V6(array(bytes, 8)?, port),
            scope_id,
        });
    }
    None
}

/// The port of an address `decode` accepts, and None exactly where it gives None: what a
/// bind's decision needs, without building the address (the hooks' hot path).
#[inline]
pub fn decode_port(bytes: &[u8], abi: SockaddrAbi, unspec_is_v4: bool) -> Option<u16> {
    let family = if abi.len_byte {
        u16::from(*bytes.get(1)?)
    } else {
        u16::from_ne_bytes(array(bytes, 0)?)
    };
    let port = u16::from_be_bytes(array(bytes, 2)?);
    let accepted = if family == abi.af_inet {
        bytes.len() >= SIN_LEN
    } else if family == abi.af_unspec && unspec_is_v4 && !abi.len_byte {
        bytes.len() >= SIN_LEN && array::<4>(bytes, 4) == Some([0; 4])
    } else {
        family == abi.af_inet6 && bytes.len() >= SIN6_LEN_RFC2133
    };
    accepted.then_some(port)
}

/// The port of an address the kernel accepted for a bind, from its first two 16-bit words
/// as memory holds them (the family, then the port in network order, at the same place in
/// both families in Linux's layout) and its length alone, where those decide it as
/// `decode_port` decides it: an AF_INET address of 16 bytes or more, an AF_INET6 one of 24
/// or more. None where `decode_port` must be asked (AF_UNSPEC, any other family, a shorter
/// length). The bind hook's short way: one word read, no slice.
#[inline(always)]
pub fn inet_port_linux(family: u16, port_as_stored: u16, len: usize) -> Option<u16> {
    let abi = SockaddrAbi::LINUX;
    let inet = (family == abi.af_inet && len >= SIN_LEN)
        || (family == abi.af_inet6 && len >= SIN6_LEN_RFC2133);
    inet.then_some(u16::from_be(port_as_stored))
}

#[cfg(test)]
mod port_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Where the short way answers, it answers as `decode_port` does (given what the
        /// hook gives it: at most DECODED_MAX bytes of an address of `len`); where it does
        /// not, `decode_port` answers only for AF_UNSPEC, which takes the long way.
        #[test]
        fn the_short_way_reads_the_port_decode_port_reads(
            bytes in proptest::collection::vec(any::<u8>(), DECODED_MAX),
            family in proptest::sample::select(std::vec![0u16, 1, 2, 10, 17, 30]),
            len in 0usize..1000,
        ) {
            let mut b = bytes.clone();
            b[..2].copy_from_slice(&family.to_ne_bytes());
            let full = decode_port(&b[..len.min(DECODED_MAX)], SockaddrAbi::LINUX, true);
            let stored = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
            match inet_port_linux(stored(0), stored(2), len) {
                Some(p) => prop_assert_eq!(full, Some(p)),
                None => prop_assert!(full.is_none() || family == 0),
            }
        }

        #[test]
        fn decode_port_is_decode_s_port(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            family in 0u16..32,
            bsd: bool,
            unspec: bool,
        ) {
            let abi = if bsd { SockaddrAbi::BSD } else { SockaddrAbi::LINUX };
            let mut b = bytes.clone();
            // Families that matter, often: write one in where the ABI keeps it.
            if b.len() >= 2 {
                if bsd {
                    b[1] = family as u8;
                } else {
                    b[..2].copy_from_slice(&family.to_ne_bytes());
                }
            }
            prop_assert_eq!(
                decode_port(&b, abi, unspec),
                decode(&b, abi, unspec).map(|a| a.endpoint.port())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use proptest::prelude::*;

    fn sin(family: u16, port: u16, addr: [u8; 4]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..2].copy_from_slice(&family.to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&addr);
        b
    }

    fn sin6(port: u16, last: u8, scope: u32) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..2].copy_from_slice(&10u16.to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[23] = last;
        b[24..].copy_from_slice(&scope.to_ne_bytes());
        b
    }

    #[test]
    fn v4_needs_the_whole_sockaddr_in() {
        let b = sin(2, 8000, [127, 0, 0, 1]);
        let a = decode(&b, SockaddrAbi::LINUX, false).unwrap();
        assert_eq!(a.endpoint, Endpoint::V4([127, 0, 0, 1], 8000));
        assert_eq!(std::format!("{}", a.endpoint), "127.0.0.1:8000");
        assert!(decode(&b[..15], SockaddrAbi::LINUX, false).is_none());
        assert!(decode(&[], SockaddrAbi::LINUX, false).is_none());
    }

    #[test]
    fn ipv6_of_either_length() {
        let b = sin6(9, 1, 7);
        let full = decode(&b, SockaddrAbi::LINUX, false).unwrap();
        assert_eq!(std::format!("{}", full.endpoint), "[::1]:9");
        assert_eq!(full.scope_id, 7);
        let short = decode(&b[..24], SockaddrAbi::LINUX, false).unwrap();
        assert_eq!((short.endpoint, short.scope_id), (full.endpoint, 0));
        assert!(decode(&b[..23], SockaddrAbi::LINUX, false).is_none());
    }

    #[test]
    fn unspec_is_the_v4_wildcard_only_on_a_v4_socket() {
        let any = sin(0, 80, [0; 4]);
        assert_eq!(
            decode(&any, SockaddrAbi::LINUX, true).unwrap().endpoint,
            Endpoint::V4([0; 4], 80)
        );
        assert!(decode(&any, SockaddrAbi::LINUX, false).is_none());
        assert!(decode(&sin(0, 80, [127, 0, 0, 1]), SockaddrAbi::LINUX, true).is_none());
        assert!(decode(&sin(1, 80, [0; 4]), SockaddrAbi::LINUX, true).is_none());
    }

    #[test]
    fn bsd_layout() {
        let mut b = [0u8; 16];
        b[0] = 16;
        b[1] = 2;
        b[2..4].copy_from_slice(&443u16.to_be_bytes());
        let a = decode(&b, SockaddrAbi::BSD, false).unwrap();
        assert_eq!(a.endpoint, Endpoint::V4([0; 4], 443));
    }

    proptest! {
        #[test]
        fn never_reads_past_the_length(b in proptest::collection::vec(any::<u8>(), 0..256), unspec: bool) {
            if let Some(a) = decode(&b, SockaddrAbi::LINUX, unspec) {
                let need = if a.endpoint.is_v6() { SIN6_LEN_RFC2133 } else { SIN_LEN };
                prop_assert!(b.len() >= need);
            }
        }
    }
}
