//! Hold mode's hand-over messages, between the library (in a server that binds a held port)
//! and the `reuse` command that keeps the listening sockets.
//!
//! On one Unix SOCK_SEQPACKET connection: the library asks (`Ask`), the command answers
//! (`Reply`, with the listening socket as SCM_RIGHTS when the answer is `Socket`), and after a
//! socket came the library says whether it put it in place (`Installed` or `NotInstalled`).
//! Until then the command counts the socket as taken, so a second instance asking in the
//! same instant is not handed it too. Fixed sizes and plain bytes: the library builds and
//! reads them without allocating.

use crate::endpoint::Endpoint;

const MAGIC: [u8; 4] = *b"RUH2";
/// Every message from the library is this long.
pub const MESSAGE_LEN: usize = 32;
/// Every reply from the command is this long.
pub const REPLY_LEN: usize = 12;

/// "Give me the listening TCP socket bound to this address."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub endpoint: Endpoint,
    /// IPV6_V6ONLY as the server set it on its own socket (v6 only).
    pub v6only: bool,
    /// sin6_scope_id, for link-local v6 addresses.
    pub scope_id: u32,
    /// SO_REUSEPORT as the server set it on its own socket: a second live instance may then
    /// bind beside the first, as it could without reuse. Not part of the key.
    pub reuseport: bool,
}

impl Request {
    /// Which held socket answers this request: requests with the same key get the same
    /// socket. IPV6_V6ONLY counts for IPv6 only, and the scope id for link-local addresses
    /// only: the kernel ignores it elsewhere, and a sockaddr_in6 left unzeroed must not make
    /// a second socket (or stand in the way of the first).
    pub fn key(&self) -> (Endpoint, bool, u32) {
        let v6only = self.endpoint.is_v6() && self.v6only;
        let scope = if self.endpoint.is_link_local() {
            self.scope_id
        } else {
            0
        };
        (self.endpoint, v6only, scope)
    }

    /// Whether the kernel would refuse one of these binds while the other's socket exists:
    /// the same port, and addresses that overlap (equal, a wildcard of the same family, an
    /// IPv4-mapped address and its IPv4 one, or the dual-stack IPv6 wildcard over IPv4).
    pub fn conflicts(&self, other: &Request) -> bool {
        if self.endpoint.port() != other.endpoint.port() {
            return false;
        }
        let dual = |r: &Request| r.endpoint.is_v6() && !r.v6only;
        // The IPv4 side of a request: its own, or a mapped one on a dual-stack socket.
        let v4 = |r: &Request| match r.endpoint {
            Endpoint::V4(..) => r.endpoint.v4(),
            Endpoint::V6(..) if dual(r) => r.endpoint.v4(),
            Endpoint::V6(..) => None,
        };
        let v6_any_dual = |r: &Request| dual(r) && r.endpoint.is_any();
        if v6_any_dual(self) || v6_any_dual(other) {
            return true;
        }
        match (self.endpoint, other.endpoint) {
            (Endpoint::V6(x, _), Endpoint::V6(y, _)) => {
                x == [0; 16] || y == [0; 16] || (x == y && self.key().2 == other.key().2)
            }
            _ => match (v4(self), v4(other)) {
                (Some(a), Some(b)) => a == b || a == [0; 4] || b == [0; 4],
                _ => false,
            },
        }
    }
}

/// What the library sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    Ask(Request),
    /// The socket that came is now the server's.
    Installed,
    /// The socket that came was refused or could not be put in place; the server binds
    /// without it.
    NotInstalled,
}

const ASK: u8 = b'Q';
const INSTALLED: u8 = b'I';
const NOT_INSTALLED: u8 = b'N';

impl Message {
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let (kind, body) = match self {
            Message::Ask(r) => {
                let (v6, addr, port) = match r.endpoint {
                    Endpoint::V4([a, b, c, d], p) => {
                        (0u8, [a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], p)
                    }
                    Endpoint::V6(a, p) => (1u8, a, p),
                };
                let mut body = [0u8; 25];
                let fields = [v6, u8::from(r.v6only)]
                    .into_iter()
                    .chain(port.to_be_bytes())
                    .chain(addr)
                    .chain(r.scope_id.to_be_bytes())
                    .chain([u8::from(r.reuseport)]);
                for (d, s) in body.iter_mut().zip(fields) {
                    *d = s;
                }
                (ASK, body)
            }
            Message::Installed => (INSTALLED, [0u8; 25]),
            Message::NotInstalled => (NOT_INSTALLED, [0u8; 25]),
        };
        let mut b = [0u8; MESSAGE_LEN];
        for (d, s) in b
            .iter_mut()
            .zip(MAGIC.into_iter().chain([kind]).chain(body))
        {
            *d = s;
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Message> {
        let b: &[u8; MESSAGE_LEN] = b.try_into().ok()?;
        let [m0, m1, m2, m3, kind, v6, v6only, p0, p1, rest @ ..] = *b;
        if [m0, m1, m2, m3] != MAGIC {
            return None;
        }
        let ack = |m| {
            let body = [v6, v6only, p0, p1];
            (body.iter().chain(rest.iter()).all(|z| *z == 0)).then_some(m)
        };
        match kind {
            INSTALLED => return ack(Message::Installed),
            NOT_INSTALLED => return ack(Message::NotInstalled),
            ASK => {}
            _ => return None,
        }
        if v6 > 1 || v6only > 1 {
            return None;
        }
        let (addr, rest) = rest.split_first_chunk::<16>()?;
        let (scope, rest) = rest.split_first_chunk::<4>()?;
        let (&[reuseport], reserved) = rest.split_first_chunk::<1>()?;
        if reuseport > 1 || reserved.iter().any(|z| *z != 0) {
            return None;
        }
        let port = u16::from_be_bytes([p0, p1]);
        let endpoint = if v6 == 0 {
            let (a4, zeros) = addr.split_first_chunk::<4>()?;
            if zeros.iter().any(|z| *z != 0) {
                return None;
            }
            Endpoint::V4(*a4, port)
        } else {
            Endpoint::V6(*addr, port)
        };
        Some(Message::Ask(Request {
            endpoint,
            v6only: v6only == 1,
            scope_id: u32::from_be_bytes(*scope),
            reuseport: reuseport == 1,
        }))
    }
}

/// The command's answer to an `Ask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The listening socket comes with this reply.
    Socket,
    /// The bind fails with this errno, as it would have without reuse (EADDRINUSE while
    /// another live instance has the socket, or the command's own bind failed).
    Fail(i32),
    /// Bind a socket of your own: another live instance has the held socket and sharing was
    /// asked for (`--options port`), so this one joins the port's SO_REUSEPORT group.
    BindYourself,
    /// This port is not one the command holds.
    NotHeld,
    /// The command serves only its own user (and root); this peer is neither.
    NotYourUser,
}

impl Reply {
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let (code, errno) = match *self {
            Reply::Socket => (0u8, 0),
            Reply::Fail(e) => (1, e),
            Reply::BindYourself => (2, 0),
            Reply::NotHeld => (3, 0),
            Reply::NotYourUser => (4, 0),
        };
        let mut b = [0u8; REPLY_LEN];
        let bytes = MAGIC
            .into_iter()
            .chain([code, 0, 0, 0])
            .chain(errno.to_be_bytes());
        for (d, s) in b.iter_mut().zip(bytes) {
            *d = s;
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Reply> {
        let b: &[u8; REPLY_LEN] = b.try_into().ok()?;
        let [m0, m1, m2, m3, code, 0, 0, 0, e0, e1, e2, e3] = *b else {
            return None;
        };
        if [m0, m1, m2, m3] != MAGIC {
            return None;
        }
        let errno = i32::from_be_bytes([e0, e1, e2, e3]);
        match (code, errno) {
            (0, 0) => Some(Reply::Socket),
            (1, e) if e > 0 => Some(Reply::Fail(e)),
            (2, 0) => Some(Reply::BindYourself),
            (3, 0) => Some(Reply::NotHeld),
            (4, 0) => Some(Reply::NotYourUser),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            Just(Reply::Socket),
            (1i32..).prop_map(Reply::Fail),
            Just(Reply::BindYourself),
            Just(Reply::NotHeld),
            Just(Reply::NotYourUser),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(v6: bool, a: [u8; 16], port: u16, v6only: bool, scope_id: u32, reuseport: bool) {
            let endpoint = if v6 { Endpoint::V6(a, port) } else { Endpoint::V4([a[0], a[1], a[2], a[3]], port) };
            let m = Message::Ask(Request { endpoint, v6only, scope_id, reuseport });
            prop_assert_eq!(Message::decode(&m.encode()), Some(m));
        }

        #[test]
        fn acks_round_trip(installed: bool) {
            let m = if installed { Message::Installed } else { Message::NotInstalled };
            prop_assert_eq!(Message::decode(&m.encode()), Some(m));
        }

        #[test]
        fn replies_round_trip(r in reply()) {
            prop_assert_eq!(Reply::decode(&r.encode()), Some(r));
        }

        /// Whatever a peer sends, decoding refuses it or gives a message that encodes back
        /// to exactly those bytes: nothing is half-read.
        #[test]
        fn garbage_is_refused_or_read_exactly(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(m) = Message::decode(&b) {
                prop_assert_eq!(&m.encode()[..], &b[..]);
            }
            if let Some(r) = Reply::decode(&b) {
                prop_assert_eq!(&r.encode()[..], &b[..]);
            }
        }
    }

    fn r(endpoint: Endpoint, v6only: bool, scope_id: u32) -> Request {
        Request {
            endpoint,
            v6only,
            scope_id,
            reuseport: false,
        }
    }

    #[test]
    fn keys_and_conflicts_follow_the_kernel() {
        let lo6 = {
            let mut a = [0u8; 16];
            a[15] = 1;
            a
        };
        let ll = {
            let mut a = [0u8; 16];
            a[0] = 0xfe;
            a[1] = 0x80;
            a[15] = 1;
            a
        };
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
        // The scope id counts for link-local addresses only.
        assert_eq!(
            r(Endpoint::V6(lo6, 80), false, 0).key(),
            r(Endpoint::V6(lo6, 80), false, 7).key()
        );
        assert_ne!(
            r(Endpoint::V6(ll, 80), false, 2).key(),
            r(Endpoint::V6(ll, 80), false, 3).key()
        );
        assert!(!r(Endpoint::V6(ll, 80), false, 2).conflicts(&r(Endpoint::V6(ll, 80), false, 3)));
        assert!(r(Endpoint::V6(lo6, 80), false, 0).conflicts(&r(Endpoint::V6(lo6, 80), false, 9)));
        // nginx's dual-stack pair does not conflict; a dual-stack wildcard does.
        let v4any = r(Endpoint::V4([0; 4], 80), false, 0);
        let v6only = r(Endpoint::V6([0; 16], 80), true, 0);
        let dual = r(Endpoint::V6([0; 16], 80), false, 0);
        assert!(!v4any.conflicts(&v6only) && !v6only.conflicts(&v4any));
        assert!(v4any.conflicts(&dual) && dual.conflicts(&v4any));
        // An IPv4-mapped address is its IPv4 address.
        let lo4 = r(Endpoint::V4([127, 0, 0, 1], 80), false, 0);
        assert!(lo4.conflicts(&r(Endpoint::V6(mapped, 80), false, 0)));
        assert!(lo4.conflicts(&v4any));
        assert!(!lo4.conflicts(&r(Endpoint::V4([127, 0, 0, 2], 80), false, 0)));
        assert!(!lo4.conflicts(&r(Endpoint::V4([127, 0, 0, 1], 81), false, 0)));
    }

    #[test]
    fn a_v4_request_with_bytes_in_the_v6_part_is_refused() {
        let m = Message::Ask(Request {
            endpoint: Endpoint::V4([127, 0, 0, 1], 80),
            v6only: false,
            scope_id: 0,
            reuseport: false,
        });
        let mut b = m.encode();
        b[20] = 1;
        assert_eq!(Message::decode(&b), None);
        assert_eq!(Message::decode(&b[..31]), None);
    }
}
