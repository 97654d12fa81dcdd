//! `reuse doctor PORT...`: who holds a port, what TIME_WAIT is left on it, and whether a
//! server started under reuse could bind it now; so nobody needs lsof or ss to find out.
//!
//! The socket tables are read with `reuse_core::proc_net`, the same code the library runs
//! after a failed bind, and a wildcard address (0.0.0.0:PORT, [::]:PORT) is the bind target,
//! because that is what a server binds unless told otherwise and it overlaps every address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use reuse_core::line::Endpoint;
use reuse_core::proc_net::{self, PortSummary, TcpEntry};
use serde_json::{json, Value};

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

    fn table(self) -> &'static str {
        match self {
            Family::V4 => "/proc/net/tcp",
            Family::V6 => "/proc/net/tcp6",
        }
    }

    fn wildcard(self, port: u16) -> Endpoint {
        match self {
            Family::V4 => Endpoint::V4([0; 4], port),
            Family::V6 => Endpoint::V6([0; 16], port),
        }
    }
}

struct Process {
    pid: i32,
    program: String,
}

struct Listener {
    family: Family,
    entry: TcpEntry,
    user: String,
    processes: Vec<Process>,
}

struct PortReport {
    port: u16,
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
        for l in &self.listeners {
            for p in &l.processes {
                if seen.insert(p.pid) {
                    named.push(format!("{} ({}, user {})", p.pid, p.program, l.user));
                }
            }
        }
        if named.is_empty() {
            let users: BTreeSet<&str> = self.listeners.iter().map(|l| l.user.as_str()).collect();
            let users: Vec<&str> = users.into_iter().collect();
            return format!(
                "held by a listener of user {} whose process this user cannot see; run reuse doctor as root to name it",
                users.join(", ")
            );
        }
        let pids: Vec<String> = seen.iter().map(i32::to_string).collect();
        format!(
            "held by PID {}; stop it (kill {}) before starting the new instance, or start the new one with \
             `reuse run --wait MS` to wait for it to let go; if it is a leftover instance of the same program, \
             `reuse run --takeover` stops it for you",
            named.join(", PID "),
            pids.join(" ")
        )
    }

    fn text(&self, out: &mut String) {
        let _ = writeln!(out, "port {}", self.port);
        for (i, fam) in Family::ALL.into_iter().enumerate() {
            let s = &self.summaries[i];
            let mut said = false;
            for l in self.listeners.iter().filter(|l| l.family == fam) {
                said = true;
                let _ = write!(out, "  {}: listening on {}", fam.name(), l.entry.local);
                if l.processes.is_empty() {
                    let _ = write!(out, ", user {} (process not visible)", l.user);
                }
                for p in &l.processes {
                    let _ = write!(out, ", PID {} ({}, user {})", p.pid, p.program, l.user);
                }
                out.push('\n');
            }
            if s.time_wait > 0 {
                said = true;
                let _ = writeln!(
                    out,
                    "  {}: {} TIME_WAIT socket(s), the last expires in {} seconds",
                    fam.name(),
                    s.time_wait,
                    s.time_wait_seconds()
                );
            }
            if s.other > 0 {
                said = true;
                let _ = writeln!(
                    out,
                    "  {}: {} connection(s) in other states",
                    fam.name(),
                    s.other
                );
            }
            if !said {
                let _ = writeln!(out, "  {}: no socket", fam.name());
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
                    "processes": l.processes.iter().map(|p| json!({"pid": p.pid, "program": p.program})).collect::<Vec<_>>(),
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

fn read_table(fam: Family) -> Option<Vec<TcpEntry>> {
    let text = std::fs::read(fam.table()).ok()?;
    Some(
        text.split(|b| *b == b'\n')
            .filter_map(proc_net::parse_line)
            .collect(),
    )
}

/// uid -> name from /etc/passwd. NSS (LDAP, systemd-homed) is left out on purpose: it would
/// mean linking libc's resolver machinery for a label; an unknown uid is shown as a number.
fn users() -> HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut m = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) {
            if let Ok(uid) = uid.parse() {
                m.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }
    m
}

/// Every process holding one of `inodes`, from the `socket:[N]` links in /proc/*/fd. A
/// socket can have many holders (forked workers share the parent's listener). Processes of
/// other users are unreadable without privilege and are silently missed.
fn holders(inodes: &BTreeSet<u64>) -> BTreeMap<u64, Vec<Process>> {
    let mut found: BTreeMap<u64, Vec<Process>> = BTreeMap::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for dent in procs.flatten().take(1 << 16) {
        let name = dent.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(dent.path().join("fd")) else {
            continue;
        };
        let mut mine = BTreeSet::new();
        for fd in fds.flatten().take(1 << 16) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(i) = inode.filter(|i| inodes.contains(i)) {
                mine.insert(i);
            }
        }
        if mine.is_empty() {
            continue;
        }
        let program = std::fs::read_to_string(dent.path().join("comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| "?".into());
        for i in mine {
            found.entry(i).or_default().push(Process {
                pid,
                program: program.clone(),
            });
        }
    }
    found
}

/// Runs the diagnosis and prints it; the exit status: 0 when every port can be bound under
/// reuse, 1 when one is held, 2 when the socket tables cannot be read.
pub fn run(ports: &[u16], as_json: bool) -> i32 {
    let (Some(v4), v6) = (read_table(Family::V4), read_table(Family::V6)) else {
        eprintln!(
            "reuse doctor: cannot read /proc/net/tcp; it needs Linux's /proc (on macOS use `lsof -nP -iTCP:PORT`)"
        );
        return 2;
    };
    // A kernel without IPv6 has no tcp6 table: nothing can stand there.
    let tables = [v4, v6.unwrap_or_default()];
    let names = users();
    let user = |uid: u32| names.get(&uid).cloned().unwrap_or_else(|| uid.to_string());

    let mut reports = Vec::new();
    let mut wanted_inodes = BTreeSet::new();
    for &port in ports {
        let mut summaries = [PortSummary::default(); 2];
        let mut listeners = Vec::new();
        for (i, fam) in Family::ALL.into_iter().enumerate() {
            let target = fam.wildcard(port);
            for e in &tables[i] {
                summaries[i].add(e, &target);
                if e.state == proc_net::TCP_LISTEN && proc_net::overlaps(&e.local, &target) {
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
            summaries,
            listeners,
        });
    }
    let mut owners = holders(&wanted_inodes);
    for r in &mut reports {
        for l in &mut r.listeners {
            if let Some(ps) = owners.get_mut(&l.entry.inode) {
                // Several ports may name the same socket; each report gets its own copy.
                l.processes = ps
                    .iter()
                    .map(|p| Process {
                        pid: p.pid,
                        program: p.program.clone(),
                    })
                    .collect();
            }
        }
    }

    let held = reports.iter().any(PortReport::held);
    if as_json {
        let doc = json!({
            "ports": reports.iter().map(PortReport::json).collect::<Vec<_>>(),
            "free_under_reuse": !held,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON of plain values")
        );
    } else {
        let mut out = String::new();
        for r in &reports {
            r.text(&mut out);
        }
        print!("{out}");
    }
    i32::from(held)
}
