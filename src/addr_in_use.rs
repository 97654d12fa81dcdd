//! After a bind to a chosen port failed with EADDRINUSE: wait the holder out
//! (`REUSE_WAIT_MS`), optionally stop a leftover instance of the same program
//! (`REUSE_TAKEOVER`), and say in one line who holds the port, so nobody needs lsof. Also the
//! line that announces SO_REUSEPORT sharing.
//!
//! The words and the rules are `reuse_core::in_use`; this file gathers the facts from /proc
//! and acts.

use libc::c_int;
use reuse_core::config::{Config, Level};
use reuse_core::decision::{text, Transport};
use reuse_core::endpoint::Endpoint;
use reuse_core::in_use::{self, Cause, Holder};
use reuse_core::put;

use crate::procfs::{self, Ancestry};
use crate::{report, sys};

/// One more try at the bind (the real call, or asking `reuse run --hold` again): its result
/// and errno.
pub type Attempt<'a> = &'a mut dyn FnMut() -> (c_int, c_int);

/// What the failed bind was.
pub struct Failed<'a> {
    pub ep: &'a Endpoint,
    pub transport: Transport,
    /// Whether the bind had SO_REUSEADDR (which decides what TIME_WAIT means).
    pub had_addr: bool,
    /// Processes that hold the port for this one and are not the ones to name or stop: the
    /// `reuse run --hold` command.
    pub skip: &'a [i32],
}

/// Retries until the bind succeeds, fails otherwise, `wait_ms` has passed, or a signal
/// arrives: 2 ms at first, doubling to 100 ms, so a holder that lets go is noticed quickly
/// without spinning. The last result.
fn retry(attempt: Attempt<'_>, wait_ms: u64) -> (c_int, c_int) {
    let deadline = sys::monotonic_ms() + wait_ms;
    let mut pause = 2u64;
    let mut last = (-1, libc::EADDRINUSE);
    while sys::monotonic_ms() < deadline {
        let left = deadline.saturating_sub(sys::monotonic_ms());
        if !sys::sleep_ms(pause.min(left).max(1)) {
            break;
        }
        pause = (pause * 2).min(100);
        last = attempt();
        if last.0 == 0 || last.1 != libc::EADDRINUSE {
            break;
        }
    }
    last
}

/// Writes the one line about the first live holder (named when visible), or about TIME_WAIT.
fn with_cause(f: &Failed<'_>, write: impl FnOnce(&Cause<'_>)) {
    let summary = procfs::summarize(f.ep, f.transport);
    let inode = summary.listener_inodes().first().map(|&(inode, _)| inode);
    // The server instance that has the socket, past the `reuse run --hold` command that
    // keeps it for them; if the command is all there is, that is the story.
    let owner =
        inode.and_then(|i| procfs::owner_of(i, f.skip).or_else(|| procfs::owner_of(i, &[])));
    let holder = owner.as_ref().map(|o| Holder {
        pid: o.pid,
        program: if procfs::is_hold_command(o.pid) {
            in_use::HOLD_COMMAND
        } else {
            o.name()
        },
    });
    write(&Cause::of(
        &summary,
        f.transport,
        f.had_addr,
        holder,
        crate::sys::getpid(),
    ));
}

/// The bind failed with EADDRINUSE: wait, take over, explain. Returns the final result and
/// errno of the bind, which the hook hands to the program.
pub fn after(cfg: &Config, f: &Failed<'_>, attempt: Attempt<'_>) -> (c_int, c_int) {
    let mut result = (-1, libc::EADDRINUSE);
    if cfg.wait_ms > 0 {
        if report::logs(Level::Warn) {
            with_cause(f, |cause| {
                report::at(Level::Warn, |l| {
                    in_use::write_waiting(l, f.ep, cause, cfg.wait_ms)
                })
            });
        }
        let t0 = sys::monotonic_ms();
        result = retry(&mut *attempt, cfg.wait_ms as u64);
        if result.0 == 0 {
            let took = sys::monotonic_ms().saturating_sub(t0);
            report::at(Level::Info, |l| {
                put!(
                    l,
                    f.ep,
                    ": bound after waiting ",
                    took,
                    " ms for the port's holder"
                )
            });
            return result;
        }
    }
    if result.1 != libc::EADDRINUSE {
        return result;
    }
    if cfg.takeover {
        if let Some(r) = take_over(cfg, f, attempt) {
            return r;
        }
    }
    if report::logs(Level::Warn) {
        with_cause(f, |cause| {
            report::at(Level::Warn, |l| {
                in_use::write_failure(l, f.ep, cause, cfg.wait_ms, cfg.takeover)
            })
        });
    }
    result
}

/// With REUSE_TAKEOVER=1 and no REUSE_WAIT_MS, how long a stopped holder has to exit.
const TAKEOVER_GRACE_MS: u64 = 3000;

/// Most processes one takeover stops: a leftover instance can be a master and its workers,
/// all holding the one socket.
const TAKEOVER_MAX: usize = 16;

/// Rounds of stopping: a master stopped may have forked a worker in between, which holds the
/// socket too. Each round lasts at most the grace and one second.
const TAKEOVER_ROUNDS: usize = 4;

/// Stops every process that holds the port, when every one may be stopped (a leftover of
/// this same program, not the caller's own family, not another user's), and binds as soon
/// as the port is free. Several processes can hold one listening socket (a master and the
/// workers it forked; workers that outlive their master's SIGTERM, as PHP's built-in
/// server's do), so all the holders of a socket are found first: if one of them may not be
/// stopped, none of them is, since stopping the others would not free that socket. None
/// when nobody was stopped or the port is still held: the caller then names the holder.
fn take_over(cfg: &Config, f: &Failed<'_>, attempt: Attempt<'_>) -> Option<(c_int, c_int)> {
    let ep = f.ep;
    let me = sys::getpid();
    let mine = Ancestry::of(me);
    let mut skip = [me; 4];
    for (d, s) in skip.iter_mut().skip(1).zip(f.skip) {
        *d = *s;
    }
    // Each process is named once.
    let mut named = [0i32; TAKEOVER_MAX];
    let mut said = 0;
    let mut name_once = |pid: i32| {
        if named.contains(&pid) {
            return false;
        }
        if let Some(slot) = named.get_mut(said) {
            *slot = pid;
            said += 1;
        }
        true
    };
    for _ in 0..TAKEOVER_ROUNDS {
        let summary = procfs::summarize(ep, f.transport);
        let mut targets: [Option<(procfs::Owner, u64)>; TAKEOVER_MAX] =
            [const { None }; TAKEOVER_MAX];
        let mut count = 0;
        for &(inode, uid) in summary.listener_inodes() {
            // All the holders of one socket, or none: if one may not be stopped, stopping
            // the others would not free it. (Another socket on the port may not even be in
            // the way: an IPv6-only one beside this IPv4 bind.)
            let first = count;
            let mut refused = false;
            procfs::holders(inode, &skip, |owner| {
                if let Some(why) = refusal(&owner, uid, me, mine.as_ref()) {
                    if name_once(owner.pid) {
                        report::at(Level::Warn, |l| {
                            put!(
                                l,
                                ep,
                                ": not taking over from PID ",
                                owner.pid,
                                " (",
                                owner.name(),
                                "): ",
                                why.text()
                            )
                        });
                    }
                    refused = true;
                    return false;
                }
                // Past the round's room, the rest are still looked at for a refusal; the
                // next round stops them.
                if let Some(slot) = targets.get_mut(count) {
                    *slot = Some((owner, inode));
                    count += 1;
                }
                true
            });
            if refused {
                for slot in targets.iter_mut().take(count).skip(first) {
                    *slot = None;
                }
                count = first;
            }
        }
        if count == 0 {
            return None;
        }
        for (owner, _) in targets.iter().flatten() {
            if name_once(owner.pid) {
                report::at(Level::Warn, |l| {
                    put!(
                        l,
                        ep,
                        ": taking over: stopping PID ",
                        owner.pid,
                        " (",
                        owner.name(),
                        "), an earlier instance of this program still ",
                        if f.transport == Transport::Udp {
                            text("bound")
                        } else {
                            text("listening")
                        },
                        " (REUSE_TAKEOVER=1)"
                    )
                });
            }
            sys::kill(owner.pid, libc::SIGTERM);
        }
        let r = wait_for_release(cfg, ep, &targets, &mut *attempt);
        if r.0 == 0 {
            report::at(Level::Info, |l| put!(l, ep, ": bound after taking over"));
            return Some(r);
        }
        if r.1 != libc::EADDRINUSE {
            return Some(r);
        }
    }
    // Still in use: the caller's line names who holds the port.
    None
}

/// Why the process holding a socket of user `uid` may not be stopped, if it may not.
fn refusal(
    owner: &procfs::Owner,
    uid: u32,
    me: i32,
    mine: Option<&Ancestry>,
) -> Option<in_use::Refusal> {
    if uid != sys::getuid() {
        return Some(in_use::Refusal::AnotherUser);
    }
    let (Some(m), Some(t)) = (mine, Ancestry::of(owner.pid)) else {
        // A process that cannot be placed in the tree is not stopped.
        return Some(in_use::Refusal::AnotherProgram);
    };
    let mine = m.lineage(me);
    let forked = mine
        .ancestors
        .first()
        .is_some_and(|&parent| procfs::same_program(parent).is_ok());
    in_use::kinship(&mine, &t.lineage(owner.pid), forked)
        .or_else(|| procfs::same_program(owner.pid).err())
}

/// After SIGTERM to `targets`: binds as soon as the port is free; returns as soon as none of
/// them holds its socket any longer (another process may have taken it up: the next round
/// looks again); SIGKILL to those that still do after the grace. What matters is the port,
/// not the processes: a zombie or a slow exit handler no longer holds it. The last try's
/// result.
fn wait_for_release(
    cfg: &Config,
    ep: &Endpoint,
    targets: &[Option<(procfs::Owner, u64)>],
    attempt: Attempt<'_>,
) -> (c_int, c_int) {
    let grace = if cfg.wait_ms > 0 {
        cfg.wait_ms as u64
    } else {
        TAKEOVER_GRACE_MS
    };
    let holding = || {
        targets
            .iter()
            .flatten()
            .any(|(o, inode)| procfs::holds(o.pid, *inode))
    };
    let deadline = sys::monotonic_ms() + grace;
    let mut pause = 2u64;
    let mut last = (-1, libc::EADDRINUSE);
    while sys::monotonic_ms() < deadline {
        if !sys::sleep_ms(pause) {
            return last;
        }
        pause = (pause * 2).min(100);
        last = attempt();
        if last.0 == 0 || last.1 != libc::EADDRINUSE || !holding() {
            return last;
        }
    }
    // A PID may have exited and been reused while we waited: SIGKILL only a process that
    // still holds this very socket.
    for (o, inode) in targets.iter().flatten() {
        if procfs::holds(o.pid, *inode) {
            report::at(Level::Warn, |l| {
                put!(
                    l,
                    ep,
                    ": PID ",
                    o.pid,
                    " still holds the port after ",
                    grace,
                    " ms: SIGKILL"
                )
            });
            sys::kill(o.pid, libc::SIGKILL);
        }
    }
    let end = sys::monotonic_ms() + 1000;
    while sys::monotonic_ms() < end {
        if !sys::sleep_ms(10) {
            break;
        }
        last = attempt();
        if last.0 == 0 || last.1 != libc::EADDRINUSE || !holding() {
            break;
        }
    }
    last
}

/// After a bind that needed SO_REUSEPORT to succeed: another process's live socket is on the
/// port, the two now split its connections (or datagrams), and the user should know.
pub fn announce_sharing(ep: &Endpoint, transport: Transport, also_skip: i32) {
    let s = procfs::summarize(ep, transport);
    let skip = [sys::getpid(), also_skip];
    for &(inode, _) in s.listener_inodes() {
        if let Some(o) = procfs::owner_of(inode, &skip) {
            let what = if transport == Transport::Udp {
                "datagrams"
            } else {
                "connections"
            };
            report::at(Level::Warn, |l| {
                put!(
                    l,
                    ep,
                    " ",
                    transport.name(),
                    ": SO_REUSEPORT: now sharing this port with PID ",
                    o.pid,
                    " (",
                    o.name(),
                    "); ",
                    what,
                    " are split between the two"
                )
            });
            return;
        }
    }
}
