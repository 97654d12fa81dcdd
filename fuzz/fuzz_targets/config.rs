//! Every byte string the environment or /proc/net/tcp could hand the library, through every
//! parser it runs: `reuse_core::config::parse_*`, `read_into` and `proc_net::parse_line`;
//! hold mode's hand-over messages (`hold_protocol`), which the command reads from any
//! process that connects; the address decoding of a bind (`endpoint::decode`), with the
//! input placed right before an unmapped page at every length from 0 to 256; and the
//! /proc/PID/stat reader.
//!
//! Invariants (a failed one aborts the run like a panic does):
//! - nothing panics;
//! - an accepted REUSE_PORTS is non-empty, never contains port 0, and is a sorted list of
//!   disjoint, non-adjacent ranges;
//! - whatever parses prints (Display) to a canonical text that parses back to an equal value,
//!   and that text is its own canonical form;
//! - a rejected value names a part of the input itself, and its message is short printable
//!   ASCII, whatever bytes came in;
//! - `read_into` accepts exactly when every variable present parses on its own, and otherwise
//!   reports the first bad variable in its reading order, with the same error;
//! - an address decodes only from at least the bytes its family needs, never reads past the
//!   length given (the page after it is unmapped), and gives back the port in its bytes;
//! - a decoded hand-over message or reply encodes back to exactly its bytes.
//!
//! Input layout: the whole input goes to each `parse_*` and, line by line, to `parse_line`.
//! For `read_into`, the first byte says which of the eight variables are set (bit i for the
//! i-th of PORTS, OPTIONS, PROTOCOLS, LOG, WAIT_MS, TAKEOVER, HOLD, HOLD_PORTS) and the
//! rest, split at NUL bytes, gives their values in that order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reuse_core::config::{self, Config, ConfigError, Level, Options, PortSet, Protocols};
use reuse_core::decision::Transport;
use reuse_core::endpoint::{self, Endpoint, SockaddrAbi};
use reuse_core::line::Fmt;
use reuse_core::proc_net::{self, PortSummary};

fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fn check_error(e: &ConfigError<'_>, input: &[u8], var: &str) {
    assert_eq!(e.var, var);
    assert!(
        within(e.part, input),
        "{var}: the error's part is not from the input"
    );
    let text = e.to_string();
    // Var name + reason + at most 64 escaped bytes (4 characters each) + a length.
    assert!(text.len() < 512, "{var}: message of {} bytes", text.len());
    assert!(
        text.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{var}: unprintable byte in {text:?}"
    );
}

fn check_ports(set: &PortSet) {
    assert!(!set.is_empty());
    assert!(!set.contains(0));
    let ranges: Vec<(u16, u16)> = set.ranges().collect();
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        assert!(1 <= lo && lo <= hi, "{set:?}");
        assert!(set.contains(lo) && set.contains(hi));
        if let Some(&(next_lo, _)) = ranges.get(i + 1) {
            assert!(
                hi as u32 + 1 < next_lo as u32,
                "ranges touch or overlap: {set:?}"
            );
            assert!(!set.contains(hi + 1));
        }
    }
    assert!(ranges.len() <= config::MAX_RANGES);
    let text = set.to_string();
    let again = config::parse_ports(text.as_bytes()).expect("canonical ports reparse");
    assert_eq!(&again, set, "{text}");
    assert_eq!(again.to_string(), text);
}

fn check_options(o: &Options) {
    assert!(o.addr || o.port || o.linger.is_some(), "{o:?}");
    let text = o.to_string();
    let again = config::parse_options(text.as_bytes()).expect("canonical options reparse");
    assert_eq!(&again, o, "{text}");
    assert_eq!(again.to_string(), text);
}

fn check_protocols(p: &Protocols) {
    assert!(p.tcp || p.udp, "{p:?}");
    let text = p.to_string();
    let again = config::parse_protocols(text.as_bytes()).expect("canonical protocols reparse");
    assert_eq!(&again, p, "{text}");
}

fn check_log(l: Level) {
    assert_eq!(config::parse_log(l.name().as_bytes()), Ok(l));
}

fn check_wait(ms: u32) {
    assert!(ms <= config::MAX_WAIT_MS);
    assert_eq!(config::parse_wait_ms(ms.to_string().as_bytes()), Ok(ms));
}

fn check_takeover(t: bool) {
    let text = if t { "1" } else { "0" };
    assert_eq!(config::parse_takeover(text.as_bytes()), Ok(t));
}

fn check_hold_path(v: &[u8], path: &[u8; config::HOLD_PATH_MAX], len: u8) {
    assert_eq!(&path[..len as usize], v, "the path is the value, unchanged");
    assert!(v.first() == Some(&b'/') && v.len() <= config::HOLD_PATH_MAX);
}

/// Parses `v` as variable `var` alone, checking its invariants; Err is the parser's error.
fn parse_one<'a>(var: &str, v: &'a [u8], into: &mut Config) -> Result<(), ConfigError<'a>> {
    let r = match var {
        "REUSE_PORTS" => config::parse_ports(v).map(|s| {
            check_ports(&s);
            into.ports = s;
        }),
        "REUSE_OPTIONS" => config::parse_options(v).map(|o| {
            check_options(&o);
            into.options = o;
        }),
        "REUSE_PROTOCOLS" => config::parse_protocols(v).map(|p| {
            check_protocols(&p);
            into.protocols = p;
        }),
        "REUSE_LOG" => config::parse_log(v).map(|l| {
            check_log(l);
            into.log = l;
        }),
        "REUSE_WAIT_MS" => config::parse_wait_ms(v).map(|ms| {
            check_wait(ms);
            into.wait_ms = ms;
        }),
        "REUSE_TAKEOVER" => config::parse_takeover(v).map(|t| {
            check_takeover(t);
            into.takeover = t;
        }),
        "REUSE_HOLD" => {
            config::parse_hold_path(v).map(|(path, len)| check_hold_path(v, &path, len))
        }
        _ => unreachable!("{var}"),
    };
    if let Err(e) = &r {
        check_error(e, v, var);
    }
    r
}

/// The variables, in the order of the input's fields (the library's own list).
use reuse_core::config::VARIABLES;

/// The order `read_into` reads the plain variables in: the log level first.
const READ_ORDER: [&str; 6] = [
    "REUSE_LOG",
    "REUSE_PORTS",
    "REUSE_OPTIONS",
    "REUSE_PROTOCOLS",
    "REUSE_WAIT_MS",
    "REUSE_TAKEOVER",
];

/// Hold mode as the model sees it: the path and the ports.
type HoldModel<'a> = Option<(&'a [u8], PortSet)>;

/// The model of `read_into`: each variable on its own, in reading order, first error wins;
/// then REUSE_HOLD and REUSE_HOLD_PORTS, which go together.
fn model<'a>(
    get: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<(Config, HoldModel<'a>), ConfigError<'a>> {
    let mut want = Config::default();
    for var in READ_ORDER {
        if let Some(v) = get(var) {
            parse_one(var, v, &mut want)?;
        }
    }
    let hold = match (get("REUSE_HOLD"), get("REUSE_HOLD_PORTS")) {
        (None, None) => None,
        (Some(path), Some(ports)) => {
            parse_one("REUSE_HOLD", path, &mut want)?;
            let set = config::parse_hold_ports(ports).inspect_err(|e| {
                check_error(e, ports, "REUSE_HOLD_PORTS");
            })?;
            check_ports(&set);
            // Single ports only: every range of the set is one port or merges listed ones.
            assert!(config::parse_ports(ports).is_ok_and(|s| s == set));
            Some((path, set))
        }
        (Some(path), None) => {
            return Err(ConfigError {
                var: "REUSE_HOLD",
                part: path,
                why: "",
            })
        }
        (None, Some(ports)) => {
            return Err(ConfigError {
                var: "REUSE_HOLD_PORTS",
                part: ports,
                why: "",
            })
        }
    };
    Ok((want, hold))
}

fn check_read_into(data: &[u8]) {
    let Some((&mask, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|b| *b == 0);
    let mut values: [Option<&[u8]>; 8] = [None; 8];
    for (i, slot) in values.iter_mut().enumerate() {
        let field = fields.next();
        if mask & (1 << i) != 0 {
            *slot = field;
        }
    }
    let get = |name: &str| {
        let i = VARIABLES.iter().position(|v| *v == name)?;
        values[i]
    };
    // read_into writes over whatever was there.
    let mut got = Config {
        ports: PortSet::empty(),
        options: Options {
            addr: false,
            port: true,
            linger: Some(9),
        },
        protocols: Protocols {
            tcp: false,
            udp: true,
        },
        log: Level::Off,
        wait_ms: 7,
        takeover: true,
        ..Config::default()
    };
    match (config::read_into(&mut got, get), model(get)) {
        (Ok(()), Ok((want, hold))) => {
            let plain = |c: &Config| {
                (
                    c.ports,
                    c.options,
                    c.protocols,
                    c.log,
                    c.wait_ms,
                    c.takeover,
                )
            };
            assert_eq!(plain(&got), plain(&want));
            match (&got.hold, hold) {
                (None, None) => {}
                (Some(h), Some((path, ports))) => {
                    assert_eq!(h.path(), path);
                    assert_eq!(h.ports, ports);
                }
                (g, w) => panic!("hold: read_into {g:?}, model {w:?}"),
            }
        }
        (Err(e), Err(w)) => {
            assert_eq!((e.var, e.part), (w.var, w.part));
            if !w.why.is_empty() {
                assert_eq!(e.why, w.why);
            }
            check_error(&e, e.part, e.var);
        }
        (got, want) => panic!("read_into gave {got:?}, the model {want:?}"),
    }
}

fn check_tcp_line(line: &[u8]) {
    let Some(e) = proc_net::parse_line(line) else {
        return;
    };
    assert!(proc_net::overlaps(&e.local, &e.local), "{e:?}");
    // An entry stands in the way of a bind to its own address and to its family's wildcard.
    let family_any = match e.local {
        Endpoint::V4(..) => Endpoint::V4([0; 4], e.local.port()),
        Endpoint::V6(..) => Endpoint::V6([0; 16], e.local.port()),
    };
    let mut s = PortSummary::default();
    s.add(&e, &e.local, Transport::Tcp);
    s.add(&e, &family_any, Transport::Tcp);
    assert_eq!(s.listener_count + s.time_wait + s.other, 2, "{e:?}");
    s.add(&e, &Endpoint::V4([0; 4], e.local.port()), Transport::Tcp);
    s.add(&e, &Endpoint::V6([0; 16], e.local.port()), Transport::Tcp);
    let mut u = PortSummary::default();
    u.add(&e, &e.local, Transport::Udp);
    assert_eq!(
        u.listener_count, 1,
        "every bound UDP socket holds its port: {e:?}"
    );
    let _ = s.time_wait_seconds();
    assert!(s.listener_inodes().len() <= 4);
    let _ = e.local.to_string();
}

/// Hold mode's hand-over messages, as the `reuse` command reads them from any process that
/// connects, and the replies the library reads: whatever decodes encodes back to exactly
/// those bytes.
fn check_hold_messages(data: &[u8]) {
    use reuse_core::hold_protocol::{Message, Reply};
    if let Some(m) = Message::decode(data) {
        assert_eq!(&m.encode()[..], data);
    }
    if let Some(r) = Reply::decode(data) {
        assert_eq!(&r.encode()[..], data);
    }
}

/// Two pages, the second unmapped, made once: bytes copied to the end of the first are
/// followed by nothing readable, as a program's address at the end of a mapping is.
fn guarded_page() -> &'static mut [u8] {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let size = 4096usize;
    let p = *PAGE.get_or_init(|| unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            2 * size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        libc::mprotect(p.cast::<u8>().add(size).cast(), size, libc::PROT_NONE);
        p as usize
    });
    // SAFETY: the first page of a private mapping made above, used by this thread alone.
    unsafe { std::slice::from_raw_parts_mut(p as *mut u8, size) }
}

/// A bind's address as the library decodes it: every length 0..=256 of the input, placed so
/// that its last byte is the last readable one.
fn check_address_decoding(data: &[u8]) {
    let data = &data[..data.len().min(256)];
    let page = guarded_page();
    let at = page.len() - data.len();
    page[at..].copy_from_slice(data);
    for len in 0..=data.len() {
        let bytes = &page[at..at + len];
        for (abi, unspec) in [
            (SockaddrAbi::LINUX, false),
            (SockaddrAbi::LINUX, true),
            (SockaddrAbi::BSD, false),
        ] {
            let Some(a) = endpoint::decode(bytes, abi, unspec) else {
                continue;
            };
            let need = if a.endpoint.is_v6() {
                endpoint::SIN6_LEN_RFC2133
            } else {
                endpoint::SIN_LEN
            };
            assert!(len >= need, "decoded from {len} bytes: {a:?}");
            assert_eq!(a.endpoint.port(), u16::from_be_bytes([bytes[2], bytes[3]]));
            if a.scope_id != 0 {
                assert!(len >= endpoint::SIN6_LEN);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_hold_messages(data);
    if data.len() >= 32 {
        check_hold_messages(&data[..32]);
        check_hold_messages(&data[..12]);
    }
    check_address_decoding(data);
    let _ = reuse_core::in_use::parse_stat(data);
    let mut scratch = Config::default();
    for var in &VARIABLES[..7] {
        let _ = parse_one(var, data, &mut scratch);
    }
    if let Err(e) = config::parse_hold_ports(data) {
        check_error(&e, data, "REUSE_HOLD_PORTS");
    }
    check_read_into(data);
    check_tcp_line(data);
    for line in data.split(|b| *b == b'\n') {
        check_tcp_line(line);
    }
    let mut escaped = String::new();
    let mut sink = Fmt::new(&mut escaped);
    config::write_escaped(&mut sink, data);
    sink.result().unwrap();
    assert!(escaped.bytes().all(|b| (0x20..0x7f).contains(&b)));
    assert!(escaped.len() <= 64 * 4 + 32);
});
