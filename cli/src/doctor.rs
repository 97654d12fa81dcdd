//! `reuse doctor PORT...`: who holds a port, what TIME_WAIT is left on it, and whether a
//! server started under reuse could bind it now; so nobody needs lsof or ss to find out.
//!
//! The socket tables are read with `reuse_core::proc_net`, the same code the library runs
//! after a failed bind, and a wildcard address (0.0.0.0:PORT, [::]:PORT) is the bind target,
//! because that is what a server binds unless told otherwise and it overlaps every address.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use reuse_core::decision::Transport;
use reuse_core::endpoint::Endpoint;
use reuse_core::proc_net::{self, PortSummary, TcpEntry};
use serde_json::{json, Value};

use crate::out::say;
use crate::procfs::{self, Process};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    fn wildcard(self, port: u16) -> Endpoint {
        match self {
            Family::V4 => Endpoint::V4([0; 4], port),
            Family::V6 => Endpoint::V6([0; 16], port),
        }
    }
}

struct Listener {
    family: Family,
    entry: TcpEntry,
    user: String,
    processes: Vec<Process>,
}

struct PortReport {
    port: u16,
    transport: Transport,
    /// One summary per family, in Family::ALL order.
    summaries: [PortSummary; 2],
    listeners: Vec<Listener>,
}

impl PortReport {
    fn held(&self) -> bool {
        !self.listeners.is_empty()
    }

    fn time_wait(&self) -> u32 {
        self.summaries.iter().map(|s| s.time_wait).sum()
    }

    fn time_wait_seconds(&self) -> u32 {
        self.summaries
            .iter()
            .map(PortSummary::time_wait_seconds)
            .max()
            .unwrap_or(0)
    }

    fn status(&self) -> &'static str {
        if self.held() {
            "held"
        } else if self.time_wait() > 0 {
            "time_wait"
        } else {
            "free"
        }
    }

    fn verdict(&self) -> String {
        if !self.held() {
            let tw = self.time_wait();
            if tw == 0 {
                return "free".into();
            }
            return format!(
                "free under reuse, but {tw} TIME_WAIT socket(s) block a server that does not run under it for {} more seconds \
                 (and block reuse too if the instance that left them ran without it)",
                self.time_wait_seconds()
            );
        }
        let mut seen = BTreeSet::new();
        let mut named = Vec::new();
        let mut hold = Vec::new();
        for l in &self.listeners {
            for p in &l.processes {
                if p.hold {
                    if !hold.contains(&p.pid) {
                        hold.push(p.pid);
                    }
                } else if seen.insert(p.pid) {
                    named.push(format!("{} ({}, user {})", p.pid, p.program, l.user));
                }
            }
        }
        if let Some(reuse) = hold.first() {
            let serving = if named.is_empty() {
                "no instance has it now; connections wait in its queue".to_string()
            } else {
                format!("served now by PID {}", named.join(", PID "))
            };
            return format!(
                "held by reuse --hold for PID {reuse} ({serving}); restart the server freely; stop reuse (kill {reuse}) to free the port"
            );
        }
        if named.is_empty() {
            let users: BTreeSet<&str> = self.listeners.iter().map(|l| l.user.as_str()).collect();
            let users: Vec<&str> = users.into_iter().collect();
            return format!(
                "held by a {} of user {} whose process this user cannot see; run reuse doctor as root to name it",
                if self.transport == Transport::Udp { "socket" } else { "listener" },
                users.join(", ")
            );
        }
        let pids: Vec<String> = seen.iter().map(i32::to_string).collect();
        // The library handles UDP binds only when asked: without it, --wait and --takeover
        // would do nothing for this port.
        let udp = if self.transport == Transport::Udp {
            " --protocols tcp,udp"
        } else {
            ""
        };
        format!(
            "held by PID {}; stop it (kill {}) before starting the new instance, or start the new one with \
             `reuse run{udp} --wait MS` to wait for it to let go; if it is a leftover instance of the same program, \
             `reuse run{udp} --takeover` stops it for you",
            named.join(", PID "),
            pids.join(" ")
        )
    }

    /// `ipv4` for TCP (the default), `ipv4 udp` for UDP.
    fn label(&self, fam: Family) -> String {
        match self.transport {
            Transport::Udp => format!("{} udp", fam.name()),
            _ => fam.name().to_string(),
        }
    }

    fn text(&self, out: &mut String) {
        let _ = writeln!(out, "port {}", self.port);
        for (i, fam) in Family::ALL.into_iter().enumerate() {
            let s = &self.summaries[i];
            let mut said = false;
            for l in self.listeners.iter().filter(|l| l.family == fam) {
                said = true;
                let verb = if self.transport == Transport::Udp {
                    "bound on"
                } else {
                    "listening on"
                };
                let _ = write!(out, "  {}: {verb} {}", self.label(fam), l.entry.local);
                if l.processes.is_empty() {
                    let _ = write!(out, ", user {} (process not visible)", l.user);
                }
                for p in &l.processes {
                    let _ = write!(out, ", PID {} ({}, user {})", p.pid, p.program, l.user);
                    if p.hold {
                        out.push_str(" [reuse run --hold]");
                    }
                }
                out.push('\n');
            }
            if s.time_wait > 0 {
                said = true;
                let _ = writeln!(
                    out,
                    "  {}: {} TIME_WAIT socket(s), the last expires in {} seconds",
                    self.label(fam),
                    s.time_wait,
                    s.time_wait_seconds()
                );
            }
            if s.other > 0 {
                said = true;
                let _ = writeln!(
                    out,
                    "  {}: {} connection(s) in other states",
                    self.label(fam),
                    s.other
                );
            }
            if !said {
                let _ = writeln!(out, "  {}: no socket", self.label(fam));
            }
        }
        let _ = writeln!(out, "  verdict: {}", self.verdict());
    }

    fn json(&self) -> Value {
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(|l| {
                json!({
                    "family": l.family.name(),
                    "address": l.entry.local.to_string(),
                    "uid": l.entry.uid,
                    "user": l.user,
                    "inode": l.entry.inode,
                    "processes": l.processes.iter().map(|p| json!({"pid": p.pid, "program": p.program, "reuse_hold": p.hold})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut families = serde_json::Map::new();
        for (i, fam) in Family::ALL.into_iter().enumerate() {
            let s = &self.summaries[i];
            families.insert(
                fam.name().into(),
                json!({
                    "listeners": s.listener_count,
                    "time_wait": s.time_wait,
                    "time_wait_seconds": s.time_wait_seconds(),
                    "other": s.other,
                }),
            );
        }
        let pids: BTreeSet<i32> = self
            .listeners
            .iter()
            .flat_map(|l| l.processes.iter().map(|p| p.pid))
            .collect();
        json!({
            "port": self.port,
            "protocol": self.transport.name(),
            "status": self.status(),
            "held": self.held(),
            "free_under_reuse": !self.held(),
            "verdict": self.verdict(),
            "pids": pids,
            "listeners": listeners,
            "time_wait": self.time_wait(),
            "time_wait_seconds": self.time_wait_seconds(),
            "families": families,
        })
    }
}

/// Runs the diagnosis and prints it; the exit status: 0 when every port can be bound under
/// reuse, 1 when one is held, 2 when the socket tables cannot be read.
pub fn run(ports: &[u16], as_json: bool, udp: bool) -> i32 {
    let transport = if udp { Transport::Udp } else { Transport::Tcp };
    let (Some(v4), v6) = (
        procfs::table(transport, false),
        procfs::table(transport, true),
    ) else {
        say!(
            "reuse doctor: cannot read /proc/net/{}; it needs Linux's /proc (on macOS use `lsof -nP -i{}:PORT`)",
            transport.name(),
            transport.name().to_uppercase()
        );
        return 2;
    };
    // A kernel without IPv6 has no tcp6 table: nothing can stand there.
    let tables = [v4, v6.unwrap_or_default()];
    let names = procfs::users();
    let user = |uid: u32| names.get(&uid).cloned().unwrap_or_else(|| uid.to_string());

    let mut reports = Vec::new();
    let mut wanted_inodes = BTreeSet::new();
    for &port in ports {
        let mut summaries = [PortSummary::default(); 2];
        let mut listeners = Vec::new();
        for (i, fam) in Family::ALL.into_iter().enumerate() {
            let target = fam.wildcard(port);
            for e in tables.get(i).into_iter().flatten() {
                if let Some(s) = summaries.get_mut(i) {
                    s.add(e, &target, transport);
                }
                let holds = transport == Transport::Udp || e.state == proc_net::TCP_LISTEN;
                if holds && proc_net::overlaps(&e.local, &target) {
                    wanted_inodes.insert(e.inode);
                    listeners.push(Listener {
                        family: fam,
                        entry: *e,
                        user: user(e.uid),
                        processes: Vec::new(),
                    });
                }
            }
        }
        reports.push(PortReport {
            port,
            transport,
            summaries,
            listeners,
        });
    }
    let owners = procfs::holders(&wanted_inodes);
    for r in &mut reports {
        for l in &mut r.listeners {
            if let Some(ps) = owners.get(&l.entry.inode) {
                l.processes = ps.clone();
            }
        }
    }

    let held = reports.iter().any(PortReport::held);
    let text = if as_json {
        let doc = json!({
            "ports": reports.iter().map(PortReport::json).collect::<Vec<_>>(),
            "free_under_reuse": !held,
        });
        let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
        s.push('\n');
        s
    } else {
        let mut out = String::new();
        for r in &reports {
            r.text(&mut out);
        }
        out
    };
    // A reader that went away (`reuse doctor 80 | head -1`) is not an error of the diagnosis.
    let _ = crate::out::out(text.as_bytes());
    i32::from(held)
}
