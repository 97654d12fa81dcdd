//! The "address already in use" policy: why a bind failed, in one line a user can act on;
//! and whom `REUSE_TAKEOVER` may stop. Pure functions over what the library read from
//! /proc, so the same words come out of every process and the rules can be tested alone.

use crate::line::Sink;
use crate::put;

use crate::decision::{text, Transport};
use crate::endpoint::Endpoint;
use crate::proc_net::PortSummary;

/// The program name given to a holder that is a `reuse run --hold` command.
pub const HOLD_COMMAND: &str = "reuse run --hold";

/// A process found holding the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub pid: i32,
    pub program: &'a str,
}

/// What stands in the way of a bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause<'a> {
    /// A live socket: a TCP listener, or a bound UDP socket. `holder` is None when the
    /// process is not visible to this user.
    Live {
        transport: Transport,
        uid: u32,
        holder: Option<Holder<'a>>,
    },
    /// The process that binds holds the port itself: a second bind of the same address, or
    /// a socket its service manager passed (LISTEN_FDS) for another family or address.
    ThisProcess {
        transport: Transport,
    },
    /// A `reuse run --hold` command holds the port's listening socket, for the servers it
    /// runs.
    HeldByReuse {
        pid: i32,
    },
    /// TIME_WAIT sockets left by an instance that ran without SO_REUSEADDR (this bind had
    /// it): Linux lets a bind pass them only when both sides set it.
    TimeWaitFromPlainInstance {
        count: u32,
        seconds: u32,
    },
    /// TIME_WAIT sockets, and this bind did not set SO_REUSEADDR.
    TimeWaitWithoutAddr {
        count: u32,
        seconds: u32,
    },
    Unknown,
}

impl<'a> Cause<'a> {
    /// From the socket tables' summary of the port, and the first live holder found; `me`
    /// is the PID of the process that binds.
    pub fn of(
        summary: &PortSummary,
        transport: Transport,
        applied_addr: bool,
        holder: Option<Holder<'a>>,
        me: i32,
    ) -> Cause<'a> {
        if let Some(h) = holder.filter(|h| h.program == HOLD_COMMAND) {
            return Cause::HeldByReuse { pid: h.pid };
        }
        if holder.is_some_and(|h| h.pid == me) {
            return Cause::ThisProcess { transport };
        }
        if let Some(&(_, uid)) = summary.listener_inodes().first() {
            return Cause::Live {
                transport,
                uid,
                holder,
            };
        }
        let (count, seconds) = (summary.time_wait, summary.time_wait_seconds());
        match (count > 0, applied_addr) {
            (true, true) => Cause::TimeWaitFromPlainInstance { count, seconds },
            (true, false) => Cause::TimeWaitWithoutAddr { count, seconds },
            (false, _) => Cause::Unknown,
        }
    }

    fn write_what<S: Sink + ?Sized>(&self, w: &mut S) {
        match *self {
            Cause::Live {
                transport,
                uid,
                holder: Some(h),
            } => put!(
                w,
                "PID ",
                h.pid,
                " (",
                h.program,
                ", uid ",
                uid,
                ") ",
                live_verb(transport),
                " this port"
            ),
            Cause::Live {
                transport,
                uid,
                holder: None,
            } => put!(
                w,
                "a live ",
                live_noun(transport),
                " of uid ",
                uid,
                " (process not visible to this user) holds this port"
            ),
            Cause::ThisProcess { transport } => put!(
                w,
                "this process itself already has a ",
                live_noun(transport),
                " on this port (a second bind of the same address, or a socket its service manager passed in LISTEN_FDS for another address or family)"
            ),
            Cause::HeldByReuse { pid } => put!(
                w,
                "`reuse run --hold` (PID ",
                pid,
                ") holds this port for the servers it runs, and this process did not get the held socket (see the line before); run it under that command, or stop the command to free the port"
            ),
            Cause::TimeWaitFromPlainInstance { count, seconds } => put!(
                w,
                "only ",
                count,
                " TIME_WAIT socket(s) left, from an instance that ran without SO_REUSEADDR (Linux lets a bind pass TIME_WAIT only when both sides set it; run every instance under reuse); they expire in ",
                seconds,
                " s"
            ),
            Cause::TimeWaitWithoutAddr { count, seconds } => put!(
                w,
                count,
                " TIME_WAIT socket(s) on this port, expiring in ",
                seconds,
                " s; REUSE_OPTIONS has no addr, so this bind could not pass them"
            ),
            Cause::Unknown => w.push(
                "no listener or TIME_WAIT socket found on this port (another socket bound but not listening)",
            ),
        }
    }
}

fn live_verb(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "has a UDP socket bound on",
        _ => "is listening on",
    }
}

fn live_noun(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP socket",
        _ => "listener",
    }
}

/// The line written once a bind has failed for good: `EP: bind failed (EADDRINUSE)[ after
/// waiting N ms]: cause[; advice]`. The advice to wait is left out when the bind waited.
pub fn write_failure<S: Sink + ?Sized>(
    w: &mut S,
    ep: &Endpoint,
    cause: &Cause<'_>,
    waited_ms: u32,
    took_over: bool,
) {
    put!(w, ep, ": bind failed (EADDRINUSE)");
    if waited_ms > 0 {
        put!(w, " after waiting ", waited_ms, " ms");
    }
    w.push(": ");
    cause.write_what(w);
    if let Cause::Live { .. } = cause {
        w.push(match (waited_ms > 0, took_over) {
            (false, _) => "; stop it, or run with REUSE_WAIT_MS to wait for it",
            (true, false) => "; stop it, or run with REUSE_TAKEOVER=1 if it is a leftover instance of this program",
            (true, true) => "; stop it",
        });
    }
}

/// The line written when a wait starts: who is waited for, and for how long at most.
pub fn write_waiting<S: Sink + ?Sized>(w: &mut S, ep: &Endpoint, cause: &Cause<'_>, wait_ms: u32) {
    put!(w, ep, ": in use: ");
    cause.write_what(w);
    put!(
        w,
        "; waiting up to ",
        wait_ms,
        " ms for it to let go (REUSE_WAIT_MS)"
    );
}

/// Where a process stands in the process tree, as /proc tells it.
#[derive(Clone, Copy, Debug)]
pub struct Lineage<'a> {
    pub pid: i32,
    pub pgrp: i32,
    /// Parent first, up to (not including) PID 1 or a process that could not be read.
    pub ancestors: &'a [i32],
}

impl Lineage<'_> {
    fn parent(&self) -> Option<i32> {
        self.ancestors.first().copied()
    }
}

/// Why a listener may not be stopped by `REUSE_TAKEOVER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    AnotherUser,
    AnotherProgram,
    AnotherCommandLine,
    /// The caller's parent, grandparent, ...: a worker's bind must not stop its master.
    Ancestor,
    /// A process the caller started (directly or not): a master's bind must not stop its
    /// own worker.
    Descendant,
    /// Another child of the caller's parent, when that parent runs the caller's own program
    /// (a pre-forking master): workers of one live master.
    Sibling,
    /// In the process group the caller leads: its own tree, even where a middle process
    /// died and left the rest to init.
    OwnProcessGroup,
}

impl Refusal {
    pub fn text(self) -> &'static str {
        match self {
            Refusal::AnotherUser => text("another user's process"),
            Refusal::AnotherProgram => text("another program"),
            Refusal::AnotherCommandLine => text("the same program with another command line"),
            Refusal::Ancestor => text("it started this process (its parent or an ancestor)"),
            Refusal::Descendant => text("this process started it"),
            Refusal::Sibling => text("another worker of the master that started this process"),
            Refusal::OwnProcessGroup => text("it is in the process group this process leads"),
        }
    }
}

/// Whether `target` is the caller's own family, which takeover never stops: an ancestor, a
/// descendant, another worker of the master that forked the caller (`forked_by_parent`: the
/// caller's parent runs the caller's own program), or a member of the process group the
/// caller leads. A leftover instance is none of these: the earlier instance, or a worker it
/// left, belongs to another tree (init adopted it when its parent died), and two instances
/// a shell started one after the other are children of a shell, not of a master.
pub fn kinship(
    caller: &Lineage<'_>,
    target: &Lineage<'_>,
    forked_by_parent: bool,
) -> Option<Refusal> {
    if caller.ancestors.contains(&target.pid) {
        Some(Refusal::Ancestor)
    } else if target.ancestors.contains(&caller.pid) {
        Some(Refusal::Descendant)
    } else if forked_by_parent && caller.parent().is_some() && caller.parent() == target.parent() {
        Some(Refusal::Sibling)
    } else if caller.pid == caller.pgrp && target.pgrp == caller.pgrp {
        Some(Refusal::OwnProcessGroup)
    } else {
        None
    }
}

/// The fields of `/proc/PID/stat` the library needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// R, S, D, Z, T, ...
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Parses `/proc/PID/stat`. The command name (field 2) sits in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from the last ')'.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = text.get(close + 1..)?;
    let mut f = rest
        .split(|b| *b == b' ' || *b == b'\n')
        .filter(|s| !s.is_empty());
    let state = *f.next()?.first()?;
    let num = |s: &[u8]| -> Option<i32> { core::str::from_utf8(s).ok()?.parse().ok() };
    let ppid = num(f.next()?)?;
    let pgrp = num(f.next()?)?;
    Some(Stat { state, ppid, pgrp })
}

#[cfg(test)]
mod self_tests {
    use super::*;

    #[test]
    fn a_process_holding_the_port_itself_is_told_so_without_advice_to_stop_itself() {
        let me = Holder {
            pid: 7,
            program: "node",
        };
        let c = Cause::of(&PortSummary::default(), Transport::Tcp, true, Some(me), 7);
        assert_eq!(
            c,
            Cause::ThisProcess {
                transport: Transport::Tcp
            }
        );
        let mut s = crate::line::Line::new(7);
        write_failure(&mut s, &Endpoint::V4([127, 0, 0, 1], 8000), &c, 0, false);
        let text = core::str::from_utf8(s.finish()).unwrap();
        assert!(text.contains("this process itself"), "{text}");
        assert!(!text.contains("stop it"), "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use crate::line::Fmt;
    use std::string::String;

    fn line(f: impl FnOnce(&mut Fmt<'_, String>)) -> String {
        let mut s = String::new();
        let mut sink = Fmt::new(&mut s);
        f(&mut sink);
        sink.result().unwrap();
        s
    }

    #[test]
    fn a_failure_names_the_holder_and_advises_only_what_was_not_done() {
        let ep = Endpoint::V4([127, 0, 0, 1], 8000);
        let cause = Cause::Live {
            transport: Transport::Tcp,
            uid: 1000,
            holder: Some(Holder {
                pid: 42,
                program: "python3",
            }),
        };
        let now = line(|s| write_failure(s, &ep, &cause, 0, false));
        assert_eq!(now, "127.0.0.1:8000: bind failed (EADDRINUSE): PID 42 (python3, uid 1000) is listening on this port; stop it, or run with REUSE_WAIT_MS to wait for it");
        let later = line(|s| write_failure(s, &ep, &cause, 300, false));
        assert!(
            later.contains("after waiting 300 ms") && !later.contains("REUSE_WAIT_MS"),
            "{later}"
        );
        let waiting = line(|s| write_waiting(s, &ep, &cause, 2000));
        assert_eq!(waiting, "127.0.0.1:8000: in use: PID 42 (python3, uid 1000) is listening on this port; waiting up to 2000 ms for it to let go (REUSE_WAIT_MS)");
        let udp = Cause::Live {
            transport: Transport::Udp,
            uid: 0,
            holder: None,
        };
        assert!(
            line(|s| write_failure(s, &ep, &udp, 0, false)).contains("a live UDP socket of uid 0")
        );
    }

    #[test]
    fn time_wait_causes_depend_on_whether_this_bind_had_addr() {
        let s = PortSummary {
            time_wait: 3,
            time_wait_ticks: 5800,
            ..PortSummary::default()
        };
        let c = Cause::of(&s, Transport::Tcp, true, None, 1);
        assert_eq!(
            c,
            Cause::TimeWaitFromPlainInstance {
                count: 3,
                seconds: 58
            }
        );
        assert!(line(|w| c.write_what(w)).contains("without SO_REUSEADDR"));
        let c = Cause::of(&s, Transport::Tcp, false, None, 1);
        assert!(line(|w| c.write_what(w)).contains("REUSE_OPTIONS has no addr"));
        assert_eq!(
            Cause::of(&PortSummary::default(), Transport::Tcp, true, None, 1),
            Cause::Unknown
        );
    }

    #[test]
    fn family_is_never_a_takeover_target() {
        // init(1) <- shell(10) <- master(20) <- worker(30); master leads group 20.
        let master = Lineage {
            pid: 20,
            pgrp: 20,
            ancestors: &[10],
        };
        let worker = Lineage {
            pid: 30,
            pgrp: 20,
            ancestors: &[20, 10],
        };
        let worker2 = Lineage {
            pid: 31,
            pgrp: 20,
            ancestors: &[20, 10],
        };
        assert_eq!(kinship(&master, &worker, false), Some(Refusal::Descendant));
        assert_eq!(kinship(&worker, &master, true), Some(Refusal::Ancestor));
        assert_eq!(kinship(&worker, &worker2, true), Some(Refusal::Sibling));
        // A grandchild whose parent died: adopted by init, still in the master's group.
        let orphan_of_mine = Lineage {
            pid: 40,
            pgrp: 20,
            ancestors: &[],
        };
        assert_eq!(
            kinship(&master, &orphan_of_mine, false),
            Some(Refusal::OwnProcessGroup)
        );
        // The leftover worker of an earlier instance (master 50 gone): adopted by init, in
        // group 50; the new instance (60) is a child of the same shell. Fair game.
        let leftover = Lineage {
            pid: 51,
            pgrp: 50,
            ancestors: &[],
        };
        let new = Lineage {
            pid: 60,
            pgrp: 60,
            ancestors: &[10],
        };
        assert_eq!(kinship(&new, &leftover, false), None);
        // An earlier instance the same shell still runs in the background: a sibling by
        // birth, but the shell is no master of it.
        let earlier = Lineage {
            pid: 55,
            pgrp: 55,
            ancestors: &[10],
        };
        assert_eq!(kinship(&new, &earlier, false), None);
        assert_eq!(kinship(&new, &earlier, true), Some(Refusal::Sibling));
        // Under a shell loop that leads the group, the new instance leads nothing: still fair.
        let looped = Lineage {
            pid: 61,
            pgrp: 10,
            ancestors: &[10],
        };
        let leftover_in_loop = Lineage {
            pid: 52,
            pgrp: 10,
            ancestors: &[],
        };
        assert_eq!(kinship(&looped, &leftover_in_loop, false), None);
        // Two orphans adopted by init are not siblings in any sense that matters.
        let a = Lineage {
            pid: 70,
            pgrp: 70,
            ancestors: &[],
        };
        assert_eq!(kinship(&a, &leftover, true), None);
    }

    #[test]
    fn stat_lines_with_odd_names() {
        let s = parse_stat(b"4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100").unwrap();
        assert_eq!(
            s,
            Stat {
                state: b'S',
                ppid: 1,
                pgrp: 4242
            }
        );
        assert_eq!(parse_stat(b"7 (x) Z 3 9 9").unwrap().state, b'Z');
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 (a) S x 1").is_none());
    }

    proptest::proptest! {
        #[test]
        fn stat_never_panics(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let _ = parse_stat(&v);
        }
    }
}
