//! "What does this socket get?": the one decision the `bind()` hook asks for.

use crate::config::{Config, Options};

/// The transport of a socket, as far as the library cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    /// AF_INET/AF_INET6 but neither TCP nor UDP (raw, SCTP, ...): never touched.
    Other,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Other => "other",
        }
    }

    /// Classifies the arguments of `socket(domain, type, protocol)` for an inet domain.
    /// `sock_type` is the base type with SOCK_NONBLOCK/SOCK_CLOEXEC already masked off.
    pub fn classify(
        sock_type: i32,
        protocol: i32,
        stream: i32,
        dgram: i32,
        ipproto_tcp: i32,
        ipproto_udp: i32,
    ) -> Transport {
        if sock_type == stream && (protocol == 0 || protocol == ipproto_tcp) {
            Transport::Tcp
        } else if sock_type == dgram && (protocol == 0 || protocol == ipproto_udp) {
            Transport::Udp
        } else {
            Transport::Other
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
}

impl LeaveReason {
    pub fn text(self) -> &'static str {
        match self {
            LeaveReason::PortZero => "port 0 (the kernel picks a free port)",
            LeaveReason::PortNotListed => "port not in REUSE_PORTS",
            LeaveReason::ProtocolNotListed => "protocol not in REUSE_PROTOCOLS",
            LeaveReason::NotTcpOrUdp => "neither TCP nor UDP",
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

/// The options a bind of an inet socket of `transport` to `port` gets.
pub fn decide(cfg: &Config, transport: Transport, port: u16) -> Decision {
    if let Err(why) = port_wanted(cfg, port) {
        return Decision::Leave(why);
    }
    let wanted = match transport {
        Transport::Tcp => cfg.protocols.tcp,
        Transport::Udp => cfg.protocols.udp,
        Transport::Other => return Decision::Leave(LeaveReason::NotTcpOrUdp),
    };
    if !wanted {
        return Decision::Leave(LeaveReason::ProtocolNotListed);
    }
    let mut options = cfg.options;
    // SO_LINGER governs how a connection's close ends; a datagram socket has none, so
    // setting it would only cost a system call.
    if transport == Transport::Udp {
        options.linger = None;
    }
    Decision::Apply(options)
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
        assert_eq!((o.addr, o.port, o.linger), (true, true, None));
        let Decision::Apply(o) = decide(&c, Transport::Tcp, 53) else {
            panic!()
        };
        assert_eq!(o.linger, Some(3));
    }

    #[test]
    fn classify_inet_types() {
        let k = |t, p| Transport::classify(t, p, 1, 2, 6, 17);
        assert_eq!(k(1, 0), Transport::Tcp);
        assert_eq!(k(1, 6), Transport::Tcp);
        assert_eq!(k(1, 132), Transport::Other); // SCTP
        assert_eq!(k(2, 0), Transport::Udp);
        assert_eq!(k(2, 17), Transport::Udp);
        assert_eq!(k(3, 0), Transport::Other); // raw
        assert_eq!(k(5, 0), Transport::Other); // seqpacket
    }

    proptest! {
        #[test]
        fn only_listed_nonzero_ports_of_listed_protocols_are_touched(
            list in proptest::collection::vec(1u16.., 1..6),
            port: u16, udp_allowed: bool, is_udp: bool,
        ) {
            let text: std::vec::Vec<std::string::String> = list.iter().map(|p| std::format!("{p}")).collect();
            let c = cfg(&text.join(","), "addr", if udp_allowed { "tcp,udp" } else { "tcp" });
            let t = if is_udp { Transport::Udp } else { Transport::Tcp };
            let applied = matches!(decide(&c, t, port), Decision::Apply(_));
            prop_assert_eq!(applied, port != 0 && list.contains(&port) && (!is_udp || udp_allowed));
        }
    }
}
