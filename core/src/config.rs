//! The configuration grammar: the `REUSE_*` variables turned into a plain [`Config`].
//!
//! Parsing never allocates, so the preloaded library can run it in its load-time
//! constructor, and the `reuse` command uses the very same functions to validate its flags.
//!
//! Grammar (blanks around items are allowed; an empty value is an error, never "unset"):
//!
//! ```text
//! REUSE_PORTS     = "*" | item ("," item)*        item = port | port "-" port, 1 <= port <= 65535
//! REUSE_OPTIONS   = opt ("," opt)*                opt  = "addr" | "port" | "linger=" seconds (0..=65535)
//! REUSE_PROTOCOLS = proto ("," proto)*            proto = "tcp" | "udp"
//! REUSE_LOG       = "off" | "error" | "warn" | "info" | "debug"
//! REUSE_WAIT_MS   = 0..=3600000
//! REUSE_TAKEOVER  = "0" | "1"
//! ```

use core::fmt;

use crate::line::{Hex2, Put, Sink};

pub use crate::ports::{PortSet, MAX_RANGES};

/// Upper bound of `REUSE_WAIT_MS`: an hour. A longer wait is a typo, not a plan.
pub const MAX_WAIT_MS: u32 = 3_600_000;

/// The variables, in the order they are read and reported.
pub const VARIABLES: [&str; 8] = [
    "REUSE_PORTS",
    "REUSE_OPTIONS",
    "REUSE_PROTOCOLS",
    "REUSE_LOG",
    "REUSE_WAIT_MS",
    "REUSE_TAKEOVER",
    "REUSE_HOLD",
    "REUSE_HOLD_PORTS",
];

/// Set by the library in the environment its children inherit once it has reported an
/// invalid configuration: the FNV-1a hash of the offending `NAME=value`, so the same line is
/// not written again by every program of a wrapper chain, while a different value is.
pub const REPORTED_VARIABLE: &str = "REUSE_INVALID_REPORTED";

/// The mark [`REPORTED_VARIABLE`] carries for one offending variable.
pub fn reported_mark(var: &str, value: &[u8]) -> u64 {
    var.bytes()
        .chain(core::iter::once(b'='))
        .chain(value.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Longest path of a Unix socket (sun_path less its NUL).
pub const HOLD_PATH_MAX: usize = 107;

/// What a chosen socket gets before its `bind()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Options {
    /// SO_REUSEADDR 1: pass TIME_WAIT sockets whose owner also had it.
    pub addr: bool,
    /// SO_REUSEPORT 1: share the port with another live socket that has it too (same user).
    pub port: bool,
    /// SO_LINGER {1, seconds}: `Some(0)` resets connections on close instead of a FIN.
    pub linger: Option<u16>,
}

impl Options {
    pub const DEFAULT: Options = Options {
        addr: true,
        port: false,
        linger: None,
    };
    pub const NONE: Options = Options {
        addr: false,
        port: false,
        linger: None,
    };
}

impl Options {
    /// Writes the options as REUSE_OPTIONS spells them (`addr,port,linger=5`), or, with
    /// `kernel_names`, as the log does (`SO_REUSEADDR, SO_REUSEPORT, SO_LINGER 5s`).
    pub fn write_as<S: Sink + ?Sized>(&self, f: &mut S, kernel_names: bool) {
        let (addr, port, sep) = if kernel_names {
            ("SO_REUSEADDR", "SO_REUSEPORT", ", ")
        } else {
            ("addr", "port", ",")
        };
        let mut first = true;
        let mut item = |f: &mut S| {
            if !first {
                f.push(sep);
            }
            first = false;
        };
        if self.addr {
            item(f);
            f.push(addr);
        }
        if self.port {
            item(f);
            f.push(port);
        }
        if let Some(s) = self.linger {
            item(f);
            if kernel_names {
                crate::put!(f, "SO_LINGER ", s, "s");
            } else {
                crate::put!(f, "linger=", s);
            }
        }
    }
}

impl Put for Options {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        self.write_as(sink, false);
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::line::display(self, f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    pub tcp: bool,
    pub udp: bool,
}

impl Protocols {
    pub const DEFAULT: Protocols = Protocols {
        tcp: true,
        udp: false,
    };
}

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.tcp, self.udp) {
            (true, true) => f.write_str("tcp,udp"),
            (true, false) => f.write_str("tcp"),
            (false, true) => f.write_str("udp"),
            (false, false) => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub const NAMES: [(&'static str, Level); 5] = [
        ("off", Level::Off),
        ("error", Level::Error),
        ("warn", Level::Warn),
        ("info", Level::Info),
        ("debug", Level::Debug),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Everything the library needs to decide, read once at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub ports: PortSet,
    pub options: Options,
    pub protocols: Protocols,
    pub log: Level,
    pub wait_ms: u32,
    pub takeover: bool,
    /// Hold mode, set by `reuse run --hold` for the programs it runs.
    pub hold: Option<Hold>,
}

/// Hold mode: binds of TCP sockets to these ports are answered with a listening socket the
/// `reuse` command keeps open across restarts, asked for over the Unix socket at `path`.
/// Set through REUSE_HOLD (the path) and REUSE_HOLD_PORTS (the REUSE_PORTS grammar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    path: [u8; HOLD_PATH_MAX],
    path_len: u8,
    pub ports: PortSet,
}

impl Hold {
    pub fn path(&self) -> &[u8] {
        self.path.get(..self.path_len as usize).unwrap_or_default()
    }
}

/// REUSE_HOLD: an absolute path short enough for a Unix socket address.
pub fn parse_hold_path(value: &[u8]) -> Result<([u8; HOLD_PATH_MAX], u8), ConfigError<'_>> {
    let err = |why| ConfigError {
        var: "REUSE_HOLD",
        part: value,
        why,
    };
    if value.first() != Some(&b'/') {
        return Err(err("not an absolute path"));
    }
    if value.len() > HOLD_PATH_MAX {
        return Err(err("longer than a Unix socket path can be (107 bytes)"));
    }
    let mut path = [0u8; HOLD_PATH_MAX];
    for (d, s) in path.iter_mut().zip(value) {
        *d = *s;
    }
    Ok((path, value.len() as u8))
}

impl Config {
    /// No variable set: every nonzero port, SO_REUSEADDR, TCP, warnings.
    pub const DEFAULT: Config = Config {
        ports: PortSet::all(),
        options: Options::DEFAULT,
        protocols: Protocols::DEFAULT,
        log: Level::Warn,
        wait_ms: 0,
        takeover: false,
        hold: None,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// A rejected value: which variable, which part of its value, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError<'a> {
    pub var: &'static str,
    /// The offending bytes, borrowed from the value (may not be UTF-8).
    pub part: &'a [u8],
    pub why: &'static str,
}

impl Put for ConfigError<'_> {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) {
        crate::put!(sink, self.var, ": ", self.why, " in \"");
        write_escaped(sink, self.part);
        sink.push("\"");
    }
}

impl fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::line::display(self, f)
    }
}

/// Writes bytes as text a terminal can show safely: printable ASCII as is, the rest as `\xNN`,
/// cut after 64 bytes so a hostile 128 kB value cannot flood stderr.
pub fn write_escaped<S: Sink + ?Sized>(f: &mut S, bytes: &[u8]) {
    const SHOWN: usize = 64;
    for &b in bytes.iter().take(SHOWN) {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            let one = [b];
            f.push(core::str::from_utf8(&one).unwrap_or_default());
        } else {
            crate::put!(f, "\\x", Hex2(b));
        }
    }
    if bytes.len() > SHOWN {
        crate::put!(f, "...(", bytes.len(), " bytes)");
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_blank(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// Comma-separated items, trimmed; empty items are reported by the callers.
fn items(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|b| *b == b',').map(trim)
}

/// A decimal number of at most `max`, digits only (no sign, no blanks inside).
fn number(s: &[u8], max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    if n > max as u64 {
        None
    } else {
        Some(n as u32)
    }
}

pub fn parse_ports(value: &[u8]) -> Result<PortSet, ConfigError<'_>> {
    let err = |part, why| ConfigError {
        var: "REUSE_PORTS",
        part,
        why,
    };
    if trim(value).is_empty() {
        return Err(err(
            value,
            "empty value (unset the variable to mean every port)",
        ));
    }
    if trim(value) == b"*" {
        return Ok(PortSet::all());
    }
    let mut set = PortSet::empty();
    for item in items(value) {
        if item.is_empty() {
            return Err(err(value, "empty item"));
        }
        if item == b"*" {
            return Err(err(item, "'*' must stand alone"));
        }
        let port = |s: &[u8]| match number(s, 65535) {
            Some(0) => Err(err(item, "port 0 is never reused")),
            Some(p) => Ok(p as u16),
            None => Err(err(item, "not a port (1-65535)")),
        };
        let (lo, hi) = match item.iter().position(|b| *b == b'-') {
            None => {
                let p = port(item)?;
                (p, p)
            }
            Some(dash) => {
                let (before, after) = item.split_at(dash);
                let lo = port(trim(before))?;
                let hi = port(trim(after.get(1..).unwrap_or_default()))?;
                if lo > hi {
                    return Err(err(item, "range runs backwards"));
                }
                (lo, hi)
            }
        };
        if !set.insert_range(lo, hi) {
            return Err(err(item, "more than 64 separate ranges"));
        }
    }
    Ok(set)
}

/// REUSE_HOLD_PORTS (`reuse run --hold`): single ports only. A held port's bind is answered
/// with a listening socket, so `*` or a range would also catch a client socket that binds a
/// port of its own before connecting, and hand it a listener; a server's ports are known.
pub fn parse_hold_ports(value: &[u8]) -> Result<PortSet, ConfigError<'_>> {
    let err = |part, why| ConfigError {
        var: "REUSE_HOLD_PORTS",
        part,
        why,
    };
    let set = parse_ports(value).map_err(|e| ConfigError {
        var: "REUSE_HOLD_PORTS",
        ..e
    })?;
    for item in items(value) {
        if item == b"*" {
            return Err(err(
                item,
                "hold takes the server's ports one by one, not '*' (a held port's bind gets a listening socket, client sockets too)",
            ));
        }
        if item.contains(&b'-') {
            return Err(err(
                item,
                "hold takes the server's ports one by one, not ranges (a held port's bind gets a listening socket, client sockets too)",
            ));
        }
    }
    Ok(set)
}

pub fn parse_options(value: &[u8]) -> Result<Options, ConfigError<'_>> {
    let err = |part, why| ConfigError {
        var: "REUSE_OPTIONS",
        part,
        why,
    };
    if trim(value).is_empty() {
        return Err(err(value, "empty value"));
    }
    let mut seen = [false; 3];
    let mut o = Options {
        addr: false,
        port: false,
        linger: None,
    };
    for item in items(value) {
        let slot = match item {
            b"addr" => {
                o.addr = true;
                0
            }
            b"port" => {
                o.port = true;
                1
            }
            _ if item.starts_with(b"linger=") => {
                match number(trim(item.get(7..).unwrap_or_default()), 65535) {
                    Some(s) => o.linger = Some(s as u16),
                    None => return Err(err(item, "linger takes whole seconds (0-65535)")),
                }
                2
            }
            b"" => return Err(err(value, "empty item")),
            _ => return Err(err(item, "unknown option (addr, port, linger=SECONDS)")),
        };
        match seen.get_mut(slot) {
            Some(true) => return Err(err(item, "given twice")),
            Some(s) => *s = true,
            None => {}
        }
    }
    Ok(o)
}

pub fn parse_protocols(value: &[u8]) -> Result<Protocols, ConfigError<'_>> {
    let err = |part, why| ConfigError {
        var: "REUSE_PROTOCOLS",
        part,
        why,
    };
    if trim(value).is_empty() {
        return Err(err(value, "empty value"));
    }
    let mut p = Protocols {
        tcp: false,
        udp: false,
    };
    for item in items(value) {
        let flag = match item {
            b"tcp" => &mut p.tcp,
            b"udp" => &mut p.udp,
            b"" => return Err(err(value, "empty item")),
            _ => return Err(err(item, "unknown protocol (tcp, udp)")),
        };
        if *flag {
            return Err(err(item, "given twice"));
        }
        *flag = true;
    }
    Ok(p)
}

pub fn parse_log(value: &[u8]) -> Result<Level, ConfigError<'_>> {
    let v = trim(value);
    // A match, not a search of NAMES: a table of string slices in the library's data would
    // be relocated at every exec.
    match v {
        b"off" => Ok(Level::Off),
        b"error" => Ok(Level::Error),
        b"warn" => Ok(Level::Warn),
        b"info" => Ok(Level::Info),
        b"debug" => Ok(Level::Debug),
        _ => Err(ConfigError {
            var: "REUSE_LOG",
            part: value,
            why: "unknown level (off, error, warn, info, debug)",
        }),
    }
}

pub fn parse_wait_ms(value: &[u8]) -> Result<u32, ConfigError<'_>> {
    number(trim(value), MAX_WAIT_MS).ok_or(ConfigError {
        var: "REUSE_WAIT_MS",
        part: value,
        why: "not a number of milliseconds (0-3600000)",
    })
}

pub fn parse_takeover(value: &[u8]) -> Result<bool, ConfigError<'_>> {
    match trim(value) {
        b"0" => Ok(false),
        b"1" => Ok(true),
        _ => Err(ConfigError {
            var: "REUSE_TAKEOVER",
            part: value,
            why: "must be 0 or 1",
        }),
    }
}

/// The values of [`VARIABLES`] among `NAME=value` entries (a process environment), in that
/// order. The first entry of a name wins, as with getenv. One pass, so the library reads its
/// variables in a single walk of the environment instead of one getenv scan each.
pub fn pick_variables<'a>(
    entries: impl Iterator<Item = &'a [u8]>,
) -> [Option<&'a [u8]>; VARIABLES.len()] {
    let mut found = [None; VARIABLES.len()];
    for entry in entries {
        let Some(eq) = entry.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (name, value) = entry.split_at(eq);
        if let Some(i) = VARIABLES.iter().position(|v| v.as_bytes() == name) {
            if let Some(slot @ None) = found.get_mut(i) {
                *slot = value.get(1..);
            }
        }
    }
    found
}

/// Looks a variable up in what [`pick_variables`] found.
pub fn lookup<'a>(found: &[Option<&'a [u8]>; VARIABLES.len()], name: &str) -> Option<&'a [u8]> {
    VARIABLES
        .iter()
        .position(|v| *v == name)
        .and_then(|i| found.get(i).copied().flatten())
}

/// Reads every variable through `get` (None = unset) into `out`.
///
/// `out` is written in place, field by field, into the library's static. On error the
/// caller must not act on `out`.
pub fn read_into<'a>(
    out: &mut Config,
    get: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<(), ConfigError<'a>> {
    out.ports = PortSet::all();
    out.options = Options::DEFAULT;
    out.protocols = Protocols::DEFAULT;
    out.log = Level::Warn;
    out.wait_ms = 0;
    out.takeover = false;
    out.hold = None;
    // The log level first, so an error in a later variable is reported at the level asked.
    if let Some(v) = get("REUSE_LOG") {
        out.log = parse_log(v)?;
    }
    if let Some(v) = get("REUSE_PORTS") {
        out.ports = parse_ports(v)?;
    }
    if let Some(v) = get("REUSE_OPTIONS") {
        out.options = parse_options(v)?;
    }
    if let Some(v) = get("REUSE_PROTOCOLS") {
        out.protocols = parse_protocols(v)?;
    }
    if let Some(v) = get("REUSE_WAIT_MS") {
        out.wait_ms = parse_wait_ms(v)?;
    }
    if let Some(v) = get("REUSE_TAKEOVER") {
        out.takeover = parse_takeover(v)?;
    }
    match (get("REUSE_HOLD"), get("REUSE_HOLD_PORTS")) {
        (None, None) => {}
        (Some(p), Some(ports)) => {
            let (path, path_len) = parse_hold_path(p)?;
            let ports = parse_hold_ports(ports)?;
            out.hold = Some(Hold {
                path,
                path_len,
                ports,
            });
        }
        (Some(p), None) => {
            return Err(ConfigError {
                var: "REUSE_HOLD",
                part: p,
                why: "set without REUSE_HOLD_PORTS",
            })
        }
        (None, Some(p)) => {
            return Err(ConfigError {
                var: "REUSE_HOLD_PORTS",
                part: p,
                why: "set without REUSE_HOLD",
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn ports(s: &str) -> Vec<(u16, u16)> {
        parse_ports(s.as_bytes()).unwrap().ranges().collect()
    }

    #[test]
    fn ports_grammar() {
        assert_eq!(ports("8000"), [(8000, 8000)]);
        assert_eq!(ports("8000,9000-9010"), [(8000, 8000), (9000, 9010)]);
        assert_eq!(ports(" 8000 , 9000 - 9010 "), [(8000, 8000), (9000, 9010)]);
        assert_eq!(ports("1-3,2-5"), [(1, 5)]);
        assert_eq!(ports("65535"), [(65535, 65535)]);
        assert!(parse_ports(b"*").unwrap().is_all());
        assert!(!parse_ports(b"*").unwrap().contains(0));
    }

    #[test]
    fn ports_rejects_bad_input_naming_the_part() {
        for (v, part) in [
            ("", ""),
            ("  ", "  "),
            ("0", "0"),
            ("0-10", "0-10"),
            ("65536", "65536"),
            ("80,,81", "80,,81"),
            ("80,", "80,"),
            ("9010-9000", "9010-9000"),
            ("http", "http"),
            ("*,80", "*"),
            ("-5", "-5"),
            ("5-", "5-"),
            ("+80", "+80"),
            ("8 0", "8 0"),
            ("99999999999", "99999999999"),
        ] {
            let e = parse_ports(v.as_bytes()).unwrap_err();
            assert_eq!(e.var, "REUSE_PORTS");
            assert_eq!(e.part, part.as_bytes(), "{v:?}");
        }
    }

    #[test]
    fn ranges_merge_and_are_capped() {
        assert_eq!(ports("5,3,4,10-12,1"), [(1, 1), (3, 5), (10, 12)]);
        assert_eq!(ports("100-200,150-300,301"), [(100, 301)]);
        let many: Vec<String> = (1..=64).map(|i| (i * 2).to_string()).collect();
        assert_eq!(
            parse_ports(many.join(",").as_bytes())
                .unwrap()
                .ranges()
                .count(),
            64
        );
        let too_many: Vec<String> = (1..=65).map(|i| (i * 2).to_string()).collect();
        let text = too_many.join(",");
        let e = parse_ports(text.as_bytes()).unwrap_err();
        assert_eq!(e.part, b"130");
    }

    #[test]
    fn options_grammar() {
        assert_eq!(parse_options(b"addr").unwrap(), Options::DEFAULT);
        let o = parse_options(b"addr,port,linger=5").unwrap();
        assert_eq!((o.addr, o.port, o.linger), (true, true, Some(5)));
        let o = parse_options(b"port").unwrap();
        assert_eq!((o.addr, o.port, o.linger), (false, true, None));
        assert_eq!(parse_options(b"linger=0").unwrap().linger, Some(0));
        for bad in [
            "",
            "adr",
            "addr,addr",
            "linger",
            "linger=",
            "linger=-1",
            "linger=70000",
            "addr,",
            "linger=1,linger=2",
            "ADDR",
        ] {
            assert_eq!(
                parse_options(bad.as_bytes()).unwrap_err().var,
                "REUSE_OPTIONS",
                "{bad}"
            );
        }
    }

    #[test]
    fn every_level_name_parses_to_its_level() {
        for (name, level) in Level::NAMES {
            assert_eq!(parse_log(name.as_bytes()).unwrap(), level);
            assert_eq!(level.name(), name);
        }
        assert!(parse_log(b"loud").is_err());
    }

    #[test]
    fn options_spelled_both_ways() {
        let o = parse_options(b"addr,port,linger=5").unwrap();
        assert_eq!(o.to_string(), "addr,port,linger=5");
        let mut s = String::new();
        o.write_as(&mut s, true);
        assert_eq!(s, "SO_REUSEADDR, SO_REUSEPORT, SO_LINGER 5s");
        let mut s = String::new();
        parse_options(b"linger=0").unwrap().write_as(&mut s, true);
        assert_eq!(s, "SO_LINGER 0s");
    }

    #[test]
    fn protocols_and_levels() {
        assert_eq!(parse_protocols(b"tcp").unwrap(), Protocols::DEFAULT);
        assert_eq!(
            parse_protocols(b"tcp,udp").unwrap(),
            Protocols {
                tcp: true,
                udp: true
            }
        );
        assert_eq!(
            parse_protocols(b"udp").unwrap(),
            Protocols {
                tcp: false,
                udp: true
            }
        );
        for bad in ["", "tcp,tcp", "sctp", "tcp,"] {
            assert!(parse_protocols(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(parse_log(b"debug").unwrap(), Level::Debug);
        assert!(parse_log(b"verbose").is_err());
        assert!(parse_log(b"").is_err());
        assert_eq!(parse_wait_ms(b"2500").unwrap(), 2500);
        assert!(parse_wait_ms(b"3600001").is_err());
        assert!(parse_wait_ms(b"-1").is_err());
        assert!(parse_takeover(b"1").unwrap());
        assert!(parse_takeover(b"yes").is_err());
    }

    #[test]
    fn read_into_defaults_and_errors() {
        let mut c = Config::default();
        read_into(&mut c, |_| None).unwrap();
        assert_eq!(c, Config::default());
        let e =
            read_into(&mut c, |k| (k == "REUSE_PROTOCOLS").then_some(&b"icmp"[..])).unwrap_err();
        assert_eq!(e.var, "REUSE_PROTOCOLS");
        assert_eq!(
            e.to_string(),
            "REUSE_PROTOCOLS: unknown protocol (tcp, udp) in \"icmp\""
        );
    }

    #[test]
    fn variables_are_picked_from_the_environment_in_one_pass() {
        let env: [&[u8]; 6] = [
            b"PATH=/bin",
            b"REUSE_PORTS=8000",
            b"REUSE_PORTSX=1",
            b"REUSE_LOG=debug",
            b"REUSE_PORTS=9000",
            b"NOEQUALS",
        ];
        let found = pick_variables(env.iter().copied());
        assert_eq!(lookup(&found, "REUSE_PORTS"), Some(&b"8000"[..]));
        assert_eq!(lookup(&found, "REUSE_LOG"), Some(&b"debug"[..]));
        assert_eq!(lookup(&found, "REUSE_OPTIONS"), None);
        assert_eq!(lookup(&found, "PATH"), None);
        let empty: [&[u8]; 1] = [b"REUSE_WAIT_MS="];
        assert_eq!(
            lookup(&pick_variables(empty.iter().copied()), "REUSE_WAIT_MS"),
            Some(&b""[..])
        );
    }

    #[test]
    fn hold_needs_both_variables() {
        let mut c = Config::default();
        let env = |path: &'static [u8], ports: &'static [u8]| {
            move |k: &str| match k {
                "REUSE_HOLD" => Some(path),
                "REUSE_HOLD_PORTS" => Some(ports),
                _ => None,
            }
        };
        read_into(&mut c, env(b"/run/reuse/hold", b"8000")).unwrap();
        let h = c.hold.unwrap();
        assert_eq!(h.path(), b"/run/reuse/hold");
        assert!(h.ports.contains(8000) && !h.ports.contains(8001));
        assert_eq!(
            read_into(&mut c, env(b"rel/path", b"8000"))
                .unwrap_err()
                .var,
            "REUSE_HOLD"
        );
        assert_eq!(
            read_into(&mut c, env(b"/x", b"0")).unwrap_err().var,
            "REUSE_HOLD_PORTS"
        );
        for bad in [&b"*"[..], b"8000-8010", b"80,9000-9001"] {
            let e = read_into(&mut c, env(b"/x", bad)).unwrap_err();
            assert_eq!(e.var, "REUSE_HOLD_PORTS", "{bad:?}");
            assert!(e.why.contains("one by one"), "{}", e.why);
        }
        read_into(&mut c, env(b"/x", b"80, 443,8080")).unwrap();
        let long = [b'/'; 108];
        assert!(parse_hold_path(&long).is_err());
        let only = |k: &str| (k == "REUSE_HOLD").then_some(&b"/x"[..]);
        assert_eq!(
            read_into(&mut c, only).unwrap_err().why,
            "set without REUSE_HOLD_PORTS"
        );
    }

    #[test]
    fn error_text_escapes_hostile_bytes() {
        let v = [b'8', 0x1b, b'[', 0xff, b'\n'];
        let e = parse_ports(&v).unwrap_err();
        assert_eq!(
            e.to_string(),
            "REUSE_PORTS: not a port (1-65535) in \"8\\x1b[\\xff\\x0a\""
        );
        let long: String = "9".repeat(200);
        assert!(parse_ports(long.as_bytes()).unwrap_err().to_string().len() < 160);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(v in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = parse_ports(&v);
                let _ = parse_options(&v);
                let _ = parse_protocols(&v);
                let _ = parse_log(&v);
                let _ = parse_wait_ms(&v);
                let _ = parse_takeover(&v);
            }

            #[test]
            fn ports_from_grammar_chars_never_panic(v in "[0-9,* -]{0,40}") {
                if let Ok(set) = parse_ports(v.as_bytes()) {
                    prop_assert!(!set.contains(0));
                    prop_assert!(!set.is_empty());
                }
            }

            #[test]
            fn ports_round_trip(ranges in proptest::collection::vec((1u16.., 0u16..300), 1..8)) {
                let text: Vec<String> = ranges.iter().map(|(lo, w)| {
                    let hi = lo.saturating_add(*w);
                    if w % 2 == 0 { std::format!("{lo}-{hi}") } else { std::format!("{lo}") }
                }).collect();
                let text = text.join(",");
                let set = parse_ports(text.as_bytes()).unwrap();
                for (lo, w) in &ranges {
                    let hi = if w % 2 == 0 { lo.saturating_add(*w) } else { *lo };
                    prop_assert!(set.contains(*lo) && set.contains(hi));
                }
                let again = parse_ports(set.to_string().as_bytes()).unwrap();
                prop_assert_eq!(again, set);
            }

            #[test]
            fn a_listed_port_is_exactly_a_member(list in proptest::collection::btree_set(1u16.., 1..20), probe in 0u16..) {
                let text: Vec<String> = list.iter().map(|p| p.to_string()).collect();
                let set = parse_ports(text.join(",").as_bytes()).unwrap();
                prop_assert_eq!(set.contains(probe), list.contains(&probe));
            }

            #[test]
            fn range_set_matches_a_plain_model(ranges in proptest::collection::vec((0u16.., 0u16..2000), 0..70), probe: u16) {
                let mut set = PortSet::empty();
                let mut model = std::collections::BTreeSet::new();
                let mut fits = true;
                for (lo, w) in &ranges {
                    let hi = lo.saturating_add(*w);
                    fits &= set.insert_range(*lo, hi);
                    if !fits { break; }
                    model.extend((*lo..=hi).filter(|p| *p != 0));
                }
                prop_assume!(fits);
                prop_assert_eq!(set.contains(probe), model.contains(&probe));
                let text = set.to_string();
                if !set.is_empty() { prop_assert_eq!(parse_ports(text.as_bytes()).unwrap(), set); }
            }

            #[test]
            fn options_round_trip(addr: bool, port: bool, linger in proptest::option::of(0u16..)) {
                prop_assume!(addr || port || linger.is_some());
                let o = Options { addr, port, linger };
                prop_assert_eq!(parse_options(o.to_string().as_bytes()).unwrap(), o);
            }
        }
    }
}
