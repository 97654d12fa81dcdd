//! Hold mode's hand-over messages, between the library (in a server that binds a held port)
//! and the `reuse` command that keeps the listening socket.
//!
//! One request, one reply, each a fixed-size datagram on a Unix SOCK_SEQPACKET connection;
//! a successful reply carries the listening socket as SCM_RIGHTS. Fixed sizes and plain
//! bytes: the library builds and reads them without allocating.

use crate::line::Endpoint;

const MAGIC: [u8; 4] = *b"RUH1";
pub const REQUEST_LEN: usize = 40;
pub const REPLY_LEN: usize = 8;

/// "Give me a listening TCP socket bound to this address."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub endpoint: Endpoint,
    /// IPV6_V6ONLY as the server set it on its own socket (v6 only).
    pub v6only: bool,
    /// sin6_scope_id, for link-local v6 addresses.
    pub scope_id: u32,
    /// The asking process, for the command's log.
    pub pid: i32,
}

impl Request {
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&MAGIC);
        let (v6, addr, port) = match self.endpoint {
            Endpoint::V4(a, p) => {
                let mut x = [0u8; 16];
                x[..4].copy_from_slice(&a);
                (0u8, x, p)
            }
            Endpoint::V6(a, p) => (1u8, a, p),
        };
        b[4] = v6;
        b[5] = self.v6only as u8;
        b[6..8].copy_from_slice(&port.to_be_bytes());
        b[8..24].copy_from_slice(&addr);
        b[24..28].copy_from_slice(&self.scope_id.to_be_bytes());
        b[28..32].copy_from_slice(&self.pid.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Request> {
        if b.len() != REQUEST_LEN || b[..4] != MAGIC || b[4] > 1 || b[5] > 1 {
            return None;
        }
        let port = u16::from_be_bytes([b[6], b[7]]);
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&b[8..24]);
        let endpoint = if b[4] == 0 {
            Endpoint::V4([addr[0], addr[1], addr[2], addr[3]], port)
        } else {
            Endpoint::V6(addr, port)
        };
        Some(Request {
            endpoint,
            v6only: b[5] == 1,
            scope_id: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
            pid: i32::from_be_bytes([b[28], b[29], b[30], b[31]]),
        })
    }
}

/// The reply: 0 and a socket, or the errno the command's own bind failed with.
pub fn encode_reply(errno: i32) -> [u8; REPLY_LEN] {
    let mut b = [0u8; REPLY_LEN];
    b[..4].copy_from_slice(&MAGIC);
    b[4..].copy_from_slice(&errno.to_be_bytes());
    b
}

pub fn decode_reply(b: &[u8]) -> Option<i32> {
    if b.len() != REPLY_LEN || b[..4] != MAGIC {
        return None;
    }
    Some(i32::from_be_bytes([b[4], b[5], b[6], b[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn requests_round_trip(v6: bool, a: [u8; 16], port: u16, v6only: bool, scope_id: u32, pid: i32) {
            let endpoint = if v6 { Endpoint::V6(a, port) } else { Endpoint::V4([a[0], a[1], a[2], a[3]], port) };
            let r = Request { endpoint, v6only, scope_id, pid };
            prop_assert_eq!(Request::decode(&r.encode()), Some(r));
        }

        #[test]
        fn garbage_is_refused_not_panicked_on(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&b);
            let _ = decode_reply(&b);
        }

        #[test]
        fn replies_round_trip(e: i32) {
            prop_assert_eq!(decode_reply(&encode_reply(e)), Some(e));
        }
    }
}
