//! "What does this socket get?": the one decision the `bind()` hook asks for.

use crate::config::{Config, Level, Options};

/// The transport of a socket, as far as the library cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    /// AF_INET/AF_INET6 but neither TCP nor UDP (raw, SCTP, ...): never touched.
    Other,
}

/// The `type` argument of `socket()`, without SOCK_NONBLOCK and SOCK_CLOEXEC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    Stream,
    Dgram,
    Other,
}

/// The `protocol` argument of `socket()` (or SO_PROTOCOL) for an inet socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// 0: the family's default for the type (TCP for stream, UDP for datagram).
    Default,
    Tcp,
    Udp,
    /// Multipath TCP (IPPROTO_MPTCP): a TCP listener to every client, and TIME_WAIT alike.
    Mptcp,
    Other,
}

/// A string constant the optimizer may not gather into a table with its neighbours: a `match`
/// whose arms are only string constants becomes a lookup table of pointers, and each pointer
/// in the library's data is a relocation the loader applies at every exec. The arms using
/// this cost a few instructions more, on the paths that write a log line.
#[inline(always)]
pub fn text(s: &'static str) -> &'static str {
    core::hint::black_box(s)
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => text("tcp"),
            Transport::Udp => text("udp"),
            Transport::Other => text("other"),
        }
    }

    /// What an inet socket of this type and protocol is, as far as the library cares.
    #[inline]
    pub fn classify(ty: SocketType, protocol: Protocol) -> Transport {
        match (ty, protocol) {
            (SocketType::Stream, Protocol::Default | Protocol::Tcp | Protocol::Mptcp) => {
                Transport::Tcp
            }
            (SocketType::Dgram, Protocol::Default | Protocol::Udp) => Transport::Udp,
            _ => Transport::Other,
        }
    }
}

/// Why a socket is left as the program made it (shown at `REUSE_LOG=debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    PortZero,
    PortNotListed,
    ProtocolNotListed,
    NotTcpOrUdp,
    /// UDP without `port`: UDP leaves no TIME_WAIT, so SO_REUSEADDR gains a restart nothing,
    /// and on Linux it would let a second live server bind the port and take its datagrams.
    UdpWithoutPort,
}

impl LeaveReason {
    pub fn text(self) -> &'static str {
        match self {
            LeaveReason::PortZero => text("port 0 (the kernel picks a free port)"),
            LeaveReason::PortNotListed => text("port not in REUSE_PORTS"),
            LeaveReason::ProtocolNotListed => text("protocol not in REUSE_PROTOCOLS"),
            LeaveReason::NotTcpOrUdp => text("neither TCP nor UDP"),
            LeaveReason::UdpWithoutPort => {
                text("UDP gets only SO_REUSEPORT, and only when REUSE_OPTIONS has port (UDP leaves no TIME_WAIT, and SO_REUSEADDR would let a second live server take its datagrams)")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Set these options, in this order: SO_REUSEADDR, SO_REUSEPORT, SO_LINGER.
    Apply(Options),
    Leave(LeaveReason),
}

/// Whether a bind to `port` deserves a look at all. This is checked before the socket's
/// transport is known, so that binds to unlisted ports never pay for finding it out.
#[inline]
pub fn port_wanted(cfg: &Config, port: u16) -> Result<(), LeaveReason> {
    if port == 0 {
        Err(LeaveReason::PortZero)
    } else if !cfg.ports.contains(port) {
        Err(LeaveReason::PortNotListed)
    } else {
        Ok(())
    }
}

/// Whether binds of this transport are the library's business at all (REUSE_PROTOCOLS):
/// then a refused bind to a listed port is waited for and explained, options or not.
pub fn in_scope(cfg: &Config, transport: Transport) -> bool {
    match transport {
        Transport::Tcp => cfg.protocols.tcp,
        Transport::Udp => cfg.protocols.udp,
        Transport::Other => false,
    }
}

/// Whether the configuration is the usual one, in which a successful bind needs only its
/// port and whether its socket is TCP: TCP gets SO_REUSEADDR alone, every other socket
/// nothing (`decide`), and no line is logged for a bind (below `info`). The bind hook takes
/// a short way then.
pub fn tcp_addr_only(cfg: &Config) -> bool {
    cfg.protocols.tcp && cfg.options == Options::DEFAULT && cfg.log < Level::Info
}

/// The options a bind of an inet socket of `transport` to `port` gets.
pub fn decide(cfg: &Config, transport: Transport, port: u16) -> Decision {
    if let Err(why) = port_wanted(cfg, port) {
        return Decision::Leave(why);
    }
    decide_for_wanted_port(cfg, transport)
}

/// As `decide`, for a port `port_wanted` has passed: what the transport gets.
#[inline]
pub fn decide_for_wanted_port(cfg: &Config, transport: Transport) -> Decision {
    let wanted = match transport {
        Transport::Tcp => cfg.protocols.tcp,
        Transport::Udp => cfg.protocols.udp,
        Transport::Other => return Decision::Leave(LeaveReason::NotTcpOrUdp),
    };
    if !wanted {
        return Decision::Leave(LeaveReason::ProtocolNotListed);
    }
    let mut options = cfg.options;
    if transport == Transport::Udp {
        // SO_LINGER governs how a connection's close ends; a datagram socket has none.
        // SO_REUSEADDR passes no TIME_WAIT on UDP (there is none) but lets a second live
        // socket bind the same address and port and take its datagrams: only the sharing
        // the user asked for (`port`) is set.
        options.linger = None;
        options.addr = false;
        if !options.port {
            return Decision::Leave(LeaveReason::UdpWithoutPort);
        }
    }
    Decision::Apply(options)
}

impl Options {
    /// Whether these options can turn an EADDRINUSE into a successful bind (SO_LINGER
    /// cannot), so that a bind refused without them is worth one more try with them.
    pub fn relax_bind(&self) -> bool {
        self.addr || self.port
    }
}

/// What the `bind()` hook does, all in one: answer from the held socket, set options, or
/// leave the bind alone, and why. `transport` is None for a socket that is not inet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Hold,
    Set(Options),
    Leave(LeaveReason),
}

pub fn plan(cfg: &Config, transport: Option<Transport>, port: u16) -> Plan {
    let Some(t) = transport else {
        return Plan::Leave(LeaveReason::NotTcpOrUdp);
    };
    if hold_wanted(cfg, t, port) {
        return Plan::Hold;
    }
    match decide(cfg, t, port) {
        Decision::Apply(o) => Plan::Set(o),
        Decision::Leave(why) => Plan::Leave(why),
    }
}

/// Whether a bind should be answered with a socket held by `reuse run --hold`: TCP, to a
/// held port. Held binds skip the options: the held socket already has them.
pub fn hold_wanted(cfg: &Config, transport: Transport, port: u16) -> bool {
    match &cfg.hold {
        Some(h) => transport == Transport::Tcp && port != 0 && h.ports.contains(port),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_options, parse_ports, parse_protocols, Config};
    use proptest::prelude::*;

    fn cfg(ports: &str, options: &str, protocols: &str) -> Config {
        Config {
            ports: parse_ports(ports.as_bytes()).unwrap(),
            options: parse_options(options.as_bytes()).unwrap(),
            protocols: parse_protocols(protocols.as_bytes()).unwrap(),
            ..Config::default()
        }
    }

    #[test]
    fn defaults_give_reuseaddr_to_tcp_only() {
        let c = Config::default();
        assert_eq!(
            decide(&c, Transport::Tcp, 8000),
            Decision::Apply(Options::DEFAULT)
        );
        assert_eq!(
            decide(&c, Transport::Udp, 8000),
            Decision::Leave(LeaveReason::ProtocolNotListed)
        );
        assert_eq!(
            decide(&c, Transport::Tcp, 0),
            Decision::Leave(LeaveReason::PortZero)
        );
        assert_eq!(
            decide(&c, Transport::Other, 80),
            Decision::Leave(LeaveReason::NotTcpOrUdp)
        );
    }

    #[test]
    fn only_tcp_binds_to_held_ports_are_held() {
        let mut c = Config::default();
        assert!(!hold_wanted(&c, Transport::Tcp, 8000));
        crate::config::read_into(&mut c, |k| match k {
            "REUSE_HOLD" => Some(&b"/tmp/h"[..]),
            "REUSE_HOLD_PORTS" => Some(&b"8000"[..]),
            _ => None,
        })
        .unwrap();
        assert!(hold_wanted(&c, Transport::Tcp, 8000));
        assert!(!hold_wanted(&c, Transport::Udp, 8000));
        assert!(!hold_wanted(&c, Transport::Tcp, 8001));
    }

    #[test]
    fn udp_gets_no_linger() {
        let c = cfg("*", "addr,port,linger=3", "tcp,udp");
        let Decision::Apply(o) = decide(&c, Transport::Udp, 53) else {
            panic!()
        };
        assert_eq!((o.addr, o.port, o.linger), (false, true, None));
        let Decision::Apply(o) = decide(&c, Transport::Tcp, 53) else {
            panic!()
        };
        assert_eq!(o.linger, Some(3));
    }

    #[test]
    fn classify_inet_types() {
        use Protocol as P;
        use SocketType as S;
        let k = Transport::classify;
        assert_eq!(k(S::Stream, P::Default), Transport::Tcp);
        assert_eq!(k(S::Stream, P::Tcp), Transport::Tcp);
        assert_eq!(k(S::Stream, P::Mptcp), Transport::Tcp);
        assert_eq!(k(S::Stream, P::Other), Transport::Other); // SCTP
        assert_eq!(k(S::Dgram, P::Default), Transport::Udp);
        assert_eq!(k(S::Dgram, P::Udp), Transport::Udp);
        assert_eq!(k(S::Dgram, P::Tcp), Transport::Other);
        assert_eq!(k(S::Other, P::Default), Transport::Other); // raw, seqpacket
    }

    #[test]
    fn udp_gets_port_only_and_only_when_asked() {
        let c = cfg("*", "addr", "tcp,udp");
        assert_eq!(
            decide(&c, Transport::Udp, 53),
            Decision::Leave(LeaveReason::UdpWithoutPort)
        );
        let c = cfg("*", "addr,port", "tcp,udp");
        let Decision::Apply(o) = decide(&c, Transport::Udp, 53) else {
            panic!()
        };
        assert_eq!((o.addr, o.port), (false, true));
        assert!(o.relax_bind());
        assert!(!parse_options(b"linger=0").unwrap().relax_bind());
    }

    #[test]
    fn the_plan_puts_hold_first() {
        let mut c = Config::default();
        crate::config::read_into(&mut c, |k| match k {
            "REUSE_HOLD" => Some(&b"/tmp/h"[..]),
            "REUSE_HOLD_PORTS" => Some(&b"8000"[..]),
            _ => None,
        })
        .unwrap();
        assert_eq!(plan(&c, Some(Transport::Tcp), 8000), Plan::Hold);
        assert_eq!(
            plan(&c, Some(Transport::Tcp), 8001),
            Plan::Set(Options::DEFAULT)
        );
        assert_eq!(plan(&c, None, 8000), Plan::Leave(LeaveReason::NotTcpOrUdp));
    }

    proptest! {
        /// The short way agrees with `decide`: TCP on a wanted port gets SO_REUSEADDR
        /// alone, nothing else gets anything.
        #[test]
        fn the_short_way_decides_as_decide_does(
            options in proptest::sample::select(std::vec!["addr", "port", "addr,port", "linger=0", "addr,linger=5"]),
            protocols in proptest::sample::select(std::vec!["tcp", "udp", "tcp,udp"]),
            log in proptest::sample::select(Level::NAMES.to_vec()),
            listed: u16, port: u16,
        ) {
            let mut c = cfg(&std::format!("{}", listed.max(1)), options, protocols);
            c.log = log.1;
            if tcp_addr_only(&c) {
                for t in [Transport::Tcp, Transport::Udp, Transport::Other] {
                    let wanted = port_wanted(&c, port).is_ok();
                    let short = if t == Transport::Tcp && wanted {
                        Decision::Apply(Options::DEFAULT)
                    } else {
                        Decision::Leave(LeaveReason::NotTcpOrUdp)
                    };
                    let full = decide(&c, t, port);
                    prop_assert_eq!(matches!(full, Decision::Apply(_)), matches!(short, Decision::Apply(_)));
                    if let Decision::Apply(o) = full {
                        prop_assert_eq!(o, Options::DEFAULT);
                    }
                }
                prop_assert!(c.log < Level::Info);
            } else {
                prop_assert!(!c.protocols.tcp || c.options != Options::DEFAULT || c.log >= Level::Info);
            }
        }

        #[test]
        fn only_listed_nonzero_ports_of_listed_protocols_are_touched(
            list in proptest::collection::vec(1u16.., 1..6),
            port: u16, udp_allowed: bool, is_udp: bool,
        ) {
            let text: std::vec::Vec<std::string::String> = list.iter().map(|p| std::format!("{p}")).collect();
            let c = cfg(&text.join(","), "addr,port", if udp_allowed { "tcp,udp" } else { "tcp" });
            let t = if is_udp { Transport::Udp } else { Transport::Tcp };
            let applied = decide(&c, t, port);
            prop_assert_eq!(matches!(applied, Decision::Apply(_)), port != 0 && list.contains(&port) && (!is_udp || udp_allowed));
            // UDP never gets SO_REUSEADDR: a second live server could take its datagrams.
            if let (true, Decision::Apply(o)) = (is_udp, applied) {
                prop_assert!(!o.addr && o.port && o.linger.is_none());
            }
        }
    }
}
