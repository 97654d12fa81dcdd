//! The kernel's socket tables (`/proc/net/tcp`, `tcp6`, `udp`, `udp6`; one format), read
//! line by line without allocating, and summed up for one port: who listens (TCP) or is
//! bound (UDP), and how many TIME_WAIT sockets are left and for how long.
//!
//! Both the library (after a bind failed with EADDRINUSE) and `reuse doctor` use this, so
//! the two always tell the same story.

use crate::decision::Transport;
use crate::endpoint::Endpoint;

/// TCP states as the kernel numbers them in these tables.
pub const TCP_TIME_WAIT: u8 = 0x06;
pub const TCP_LISTEN: u8 = 0x0A;

/// The tables count timers in clock ticks of USER_HZ, which Linux fixes at 100 per second.
pub const TICKS_PER_SECOND: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpEntry {
    pub local: Endpoint,
    pub state: u8,
    /// Ticks until the entry's timer fires (for TIME_WAIT: until the socket goes away).
    pub timer_ticks: u32,
    pub uid: u32,
    /// Socket inode, `socket:[inode]` in `/proc/PID/fd`; 0 for TIME_WAIT sockets.
    pub inode: u64,
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut n = 0u64;
    for &b in s {
        let d = (b as char).to_digit(16)?;
        n = n << 4 | d as u64;
    }
    Some(n)
}

fn dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|b| *b == sep)?;
    let (a, b) = s.split_at(i);
    Some((a, b.get(1..)?))
}

/// The kernel prints each 32-bit word of an address as the CPU loaded it, so the bytes of a
/// word come back out with the machine's own byte order.
fn address(s: &[u8]) -> Option<([u8; 16], bool)> {
    let mut out = [0u8; 16];
    match s.len() {
        8 => {
            out[..4].copy_from_slice(&(hex(s)? as u32).to_ne_bytes());
            Some((out, false))
        }
        32 => {
            for (word, dest) in s.chunks_exact(8).zip(out.chunks_exact_mut(4)) {
                let w = hex(word)? as u32;
                dest.copy_from_slice(&w.to_ne_bytes());
            }
            Some((out, true))
        }
        _ => None,
    }
}

/// Parses one data line of `/proc/net/tcp` or `/proc/net/tcp6`; the header gives `None`.
pub fn parse_line(line: &[u8]) -> Option<TcpEntry> {
    let mut f = line
        .split(|b| *b == b' ' || *b == b'\t' || *b == b'\n')
        .filter(|s| !s.is_empty());
    let _slot = f.next()?;
    let (addr, port) = split_once(f.next()?, b':')?;
    let _remote = f.next()?;
    let state = hex(f.next()?)? as u8;
    let _queues = f.next()?;
    let (_timer, when) = split_once(f.next()?, b':')?;
    let _retransmits = f.next()?;
    let uid = dec(f.next()?)? as u32;
    let _timeout = f.next()?;
    let inode = dec(f.next()?)?;
    let (a, v6) = address(addr)?;
    let port = hex(port)? as u16;
    let local = if v6 {
        Endpoint::V6(a, port)
    } else {
        Endpoint::V4([a[0], a[1], a[2], a[3]], port)
    };
    Some(TcpEntry {
        local,
        state,
        timer_ticks: hex(when)?.min(u32::MAX as u64) as u32,
        uid,
        inode,
    })
}

/// Whether a socket bound at `held` can stand in the way of a bind to `wanted` (same port,
/// and addresses that overlap: equal, or one of them the wildcard). A v6 wildcard is
/// counted as dual-stack, which is Linux's default.
pub fn overlaps(held: &Endpoint, wanted: &Endpoint) -> bool {
    if held.port() != wanted.port() {
        return false;
    }
    if held.is_any() || wanted.is_any() {
        return match (held, wanted) {
            (Endpoint::V4(..), Endpoint::V4(..)) | (Endpoint::V6(..), Endpoint::V6(..)) => true,
            // A v4 wildcard does not cover a native v6 address, nor the reverse, but the
            // v6 wildcard covers every v4 address.
            (Endpoint::V6(..), Endpoint::V4(..)) => held.is_any(),
            (Endpoint::V4(..), Endpoint::V6(..)) => wanted.is_any() || wanted.v4().is_some(),
        };
    }
    match (held.v4(), wanted.v4()) {
        (Some(a), Some(b)) => a == b,
        (None, None) => held == wanted,
        _ => false,
    }
}

/// What stands in the way of one bind, summed over the socket tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSummary {
    /// Up to four listener inodes with their owners' uids (a port rarely has more).
    pub listeners: [(u64, u32); 4],
    pub listener_count: u32,
    pub time_wait: u32,
    /// Ticks until the last TIME_WAIT socket on the port expires.
    pub time_wait_ticks: u32,
    /// Connections in other states (established, closing) on the port.
    pub other: u32,
}

impl PortSummary {
    /// Counts `e`, a line of the table of `transport`, if it stands in the way of `wanted`.
    /// For UDP every bound socket holds its port (there is no listening state).
    pub fn add(&mut self, e: &TcpEntry, wanted: &Endpoint, transport: Transport) {
        if !overlaps(&e.local, wanted) {
            return;
        }
        let state = if transport == Transport::Udp {
            TCP_LISTEN
        } else {
            e.state
        };
        match state {
            TCP_LISTEN => {
                if let Some(slot) = self.listeners.get_mut(self.listener_count as usize) {
                    *slot = (e.inode, e.uid);
                }
                self.listener_count += 1;
            }
            TCP_TIME_WAIT => {
                self.time_wait += 1;
                self.time_wait_ticks = self.time_wait_ticks.max(e.timer_ticks);
            }
            _ => self.other += 1,
        }
    }

    /// Seconds, rounded up, until the last TIME_WAIT socket is gone.
    pub fn time_wait_seconds(&self) -> u32 {
        self.time_wait_ticks.div_ceil(TICKS_PER_SECOND)
    }

    pub fn listener_inodes(&self) -> &[(u64, u32)] {
        self.listeners
            .get(..(self.listener_count as usize).min(4))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTEN_V4: &[u8] = b"   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
    const TW_V4: &[u8] = b"   3: 0100007F:1F40 0100007F:D1E2 06 00000000:00000000 03:00000F9A 00000000     0        0 0 3 0000000000000000";
    const LISTEN_V6_ANY: &[u8] = b"   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";

    #[test]
    fn parses_listener_and_time_wait() {
        let l = parse_line(LISTEN_V4).unwrap();
        assert_eq!(l.local, Endpoint::V4([127, 0, 0, 1], 8000));
        assert_eq!((l.state, l.uid, l.inode), (TCP_LISTEN, 1000, 123456));
        let t = parse_line(TW_V4).unwrap();
        assert_eq!((t.state, t.timer_ticks, t.inode), (TCP_TIME_WAIT, 0xF9A, 0));
        let header = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        assert!(parse_line(header).is_none());
        assert!(parse_line(b"").is_none());
        assert!(parse_line(b"garbage: zz").is_none());
    }

    #[test]
    fn v6_wildcard_blocks_v4_but_not_the_reverse_for_native_v6() {
        let any6 = parse_line(LISTEN_V6_ANY).unwrap();
        assert!(overlaps(&any6.local, &Endpoint::V4([127, 0, 0, 1], 8000)));
        let mut loop6 = [0u8; 16];
        loop6[15] = 1;
        assert!(!overlaps(
            &Endpoint::V4([0; 4], 8000),
            &Endpoint::V6(loop6, 8000)
        ));
        assert!(!overlaps(
            &Endpoint::V4([127, 0, 0, 1], 8000),
            &Endpoint::V4([127, 0, 0, 2], 8000)
        ));
        assert!(!overlaps(
            &Endpoint::V4([127, 0, 0, 1], 8001),
            &Endpoint::V4([127, 0, 0, 1], 8000)
        ));
    }

    #[test]
    fn summary_counts_and_rounds_up() {
        let mut s = PortSummary::default();
        let want = Endpoint::V4([0; 4], 8000);
        s.add(&parse_line(LISTEN_V4).unwrap(), &want, Transport::Tcp);
        s.add(&parse_line(TW_V4).unwrap(), &want, Transport::Tcp);
        assert_eq!(s.listener_inodes(), &[(123456, 1000)]);
        assert_eq!((s.time_wait, s.time_wait_seconds()), (1, 40));
    }

    #[test]
    fn every_bound_udp_socket_holds_its_port() {
        // /proc/net/udp: an unconnected bound socket is in state 07.
        let udp = b"  120: 0100007F:1F40 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 5555 2 0000000000000000 0";
        let e = parse_line(udp).unwrap();
        let mut s = PortSummary::default();
        s.add(&e, &Endpoint::V4([0; 4], 8000), Transport::Udp);
        assert_eq!(s.listener_inodes(), &[(5555, 1000)]);
        let mut t = PortSummary::default();
        t.add(&e, &Endpoint::V4([0; 4], 8000), Transport::Tcp);
        assert_eq!((t.listener_count, t.other), (0, 1));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_line(&v);
        }
    }
}
