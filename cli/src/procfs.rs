//! What the command reads from /proc: the kernel's socket tables, which processes hold a
//! socket (the `socket:[INODE]` links in /proc/PID/fd), user names, and whether a process
//! is a `reuse run --hold` command. Processes of other users are unreadable without
//! privilege and are silently missed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use reuse_core::decision::Transport;
use reuse_core::proc_net::{self, TcpEntry};

#[derive(Clone, Debug)]
pub struct Process {
    pub pid: i32,
    pub program: String,
    /// A `reuse run --hold` command: it keeps the socket for a server's instances.
    pub hold: bool,
}

/// The table of one family and transport; None when it cannot be read.
pub fn table(transport: Transport, v6: bool) -> Option<Vec<TcpEntry>> {
    let name = match (transport, v6) {
        (Transport::Udp, false) => "/proc/net/udp",
        (Transport::Udp, true) => "/proc/net/udp6",
        (_, false) => "/proc/net/tcp",
        (_, true) => "/proc/net/tcp6",
    };
    let text = std::fs::read(name).ok()?;
    Some(
        text.split(|b| *b == b'\n')
            .filter_map(proc_net::parse_line)
            .collect(),
    )
}

/// uid -> name from /etc/passwd. NSS (LDAP, systemd-homed) is left out on purpose: it would
/// mean linking libc's resolver machinery for a label; an unknown uid is shown as a number.
pub fn users() -> HashMap<u32, String> {
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

fn socket_inode(link: &std::path::Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Calls `f(pid, inodes held by pid among `inodes`)` for every process but `skip` holding
/// one of them, until it returns false or `limit` has passed.
fn scan(
    inodes: &BTreeSet<u64>,
    skip: i32,
    limit: Duration,
    mut f: impl FnMut(i32, BTreeSet<u64>) -> bool,
) {
    if inodes.is_empty() {
        return;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let t0 = Instant::now();
    for dent in procs.flatten().take(1 << 16) {
        if t0.elapsed() > limit {
            return;
        }
        let Some(pid) = dent
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == skip {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(dent.path().join("fd")) else {
            continue;
        };
        let mine: BTreeSet<u64> = fds
            .flatten()
            .take(1 << 16)
            .filter_map(|fd| socket_inode(&fd.path()))
            .filter(|i| inodes.contains(i))
            .collect();
        if !mine.is_empty() && !f(pid, mine) {
            return;
        }
    }
}

/// The program name (comm) of a process.
pub fn program(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether `pid` runs `reuse run ... --hold ...`, from its command line.
pub fn is_hold_command(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    let named_reuse = args
        .next()
        .and_then(|a0| a0.rsplit(|b| *b == b'/').next())
        .is_some_and(|n| n == b"reuse");
    let args: Vec<&[u8]> = args.collect();
    let run_at = args.iter().position(|a| *a == b"run");
    let end = args.iter().position(|a| *a == b"--").unwrap_or(args.len());
    named_reuse
        && run_at.is_some_and(|r| {
            args.get(r..end)
                .unwrap_or_default()
                .iter()
                .any(|a| *a == b"--hold" || a.starts_with(b"--hold="))
        })
}

/// Every process holding one of `inodes`. A socket can have many holders (forked workers
/// share the parent's listener).
pub fn holders(inodes: &BTreeSet<u64>) -> BTreeMap<u64, Vec<Process>> {
    let mut found: BTreeMap<u64, Vec<Process>> = BTreeMap::new();
    scan(inodes, 0, Duration::from_secs(10), |pid, mine| {
        let p = Process {
            pid,
            program: program(pid),
            hold: is_hold_command(pid),
        };
        for i in mine {
            found.entry(i).or_default().push(p.clone());
        }
        true
    });
    found
}

/// Whether any of some processes has a socket open.
pub enum Holding {
    Nobody,
    Pid(i32),
    /// Could not tell: a process whose descriptors cannot be read, or out of time.
    Unsure(String),
}

/// Which of `pids` has socket `inode` open, looked for for at most `limit`.
pub fn who_holds(inode: u64, pids: &[i32], limit: Duration) -> Holding {
    let t0 = Instant::now();
    let want = format!("socket:[{inode}]");
    for &pid in pids {
        if t0.elapsed() > limit {
            return Holding::Unsure(format!(
                "looking through the descriptors took over {limit:?}"
            ));
        }
        let dir = format!("/proc/{pid}/fd");
        let fds = match std::fs::read_dir(&dir) {
            Ok(f) => f,
            // Gone meanwhile: it holds nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    continue;
                }
                return Holding::Unsure(format!("PID {pid}'s descriptors cannot be read ({e})"));
            }
        };
        for fd in fds.flatten().take(1 << 20) {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                return Holding::Pid(pid);
            }
        }
    }
    Holding::Nobody
}

/// The children of `pid` (every thread's), from /proc/PID/task/TID/children; None where
/// the kernel has no such file.
fn children(pid: i32) -> Option<Vec<i32>> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).ok()?;
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok()),
        );
    }
    Some(out)
}

/// Every descendant of `pid` (children, their children, ...), at most 65536.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    let mut next = vec![pid];
    let by_stat = |p: i32| -> Vec<i32> {
        // Without /proc/PID/task/TID/children: every process's parent, from its stat.
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|d| d.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
            .filter(|c| {
                std::fs::read(format!("/proc/{c}/stat"))
                    .ok()
                    .and_then(|s| reuse_core::in_use::parse_stat(&s))
                    .is_some_and(|s| s.ppid == p)
            })
            .collect()
    };
    while let Some(p) = next.pop() {
        let kids = children(p).unwrap_or_else(|| by_stat(p));
        for k in kids {
            if !out.contains(&k) && out.len() < 1 << 16 {
                out.push(k);
                next.push(k);
            }
        }
    }
    out
}

/// The inode of a socket this process holds, from fstat.
pub fn inode_of(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    f.metadata().ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_is_not_a_hold_command() {
        assert!(!is_hold_command(std::process::id() as i32));
        assert_eq!(program(-1), "?");
    }

    #[test]
    fn a_child_is_a_descendant_and_holds_what_it_inherited() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(std::os::fd::AsFd::as_fd(&l)).unwrap();
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kid = child.id() as i32;
        assert!(descendants(me).contains(&kid));
        assert!(
            matches!(who_holds(inode, &[me], Duration::from_secs(5)), Holding::Pid(p) if p == me)
        );
        assert!(matches!(
            who_holds(inode, &[kid], Duration::from_secs(5)),
            Holding::Nobody
        ));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
