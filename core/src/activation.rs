//! Socket activation (systemd's `LISTEN_FDS` protocol, also spoken by systemfd, catflap and
//! einhorn): a service manager creates the listening sockets and passes them to the program
//! from descriptor 3 on, with `LISTEN_FDS=N` and `LISTEN_PID=PID` in its environment.
//!
//! The rules, as `sd_listen_fds(3)` has them: the variables concern this process only if
//! LISTEN_PID is unset (systemfd --no-pid) or names this very process; LISTEN_FDS is a
//! decimal count, the descriptors run from SD_LISTEN_FDS_START (3). Anything else: none.

/// The first descriptor passed (SD_LISTEN_FDS_START).
pub const FIRST_FD: i32 = 3;

/// At most this many passed descriptors are looked at (a hostile count costs nothing).
pub const MAX_FDS: u32 = 64;

/// The descriptors passed to this process: `FIRST_FD .. FIRST_FD + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activation {
    pub count: u32,
}

fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The activation described by LISTEN_FDS and LISTEN_PID (each None when unset), for the
/// process `pid`.
pub fn parse(listen_fds: Option<&[u8]>, listen_pid: Option<&[u8]>, pid: u32) -> Option<Activation> {
    if let Some(p) = listen_pid {
        if decimal(p)? != u64::from(pid) {
            return None;
        }
    }
    let count = decimal(listen_fds?)?;
    (count > 0).then(|| Activation {
        count: count.min(u64::from(MAX_FDS)) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_sd_listen_fds() {
        assert_eq!(
            parse(Some(b"2"), Some(b"42"), 42),
            Some(Activation { count: 2 })
        );
        assert_eq!(parse(Some(b"1"), None, 42), Some(Activation { count: 1 }));
        assert_eq!(
            parse(Some(b"1"), Some(b"43"), 42),
            None,
            "another process's"
        );
        assert_eq!(parse(Some(b"0"), None, 42), None);
        assert_eq!(parse(None, Some(b"42"), 42), None);
        assert_eq!(parse(Some(b"x"), None, 42), None);
        assert_eq!(parse(Some(b"1"), Some(b""), 42), None);
        assert_eq!(
            parse(Some(b"99999"), None, 42),
            Some(Activation { count: MAX_FDS })
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
                        b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
                        pid: u32) {
            let _ = parse(Some(&a), Some(&b), pid);
        }
    }
}
