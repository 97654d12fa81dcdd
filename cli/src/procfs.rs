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

/// A process other than `skip` that has socket `inode` open, looked for for at most `limit`
/// (after which the answer is None, as if nobody had it).
pub fn holder_other_than(inode: u64, skip: i32, limit: Duration) -> Option<i32> {
    let mut found = None;
    scan(&BTreeSet::from([inode]), skip, limit, |pid, _| {
        found = Some(pid);
        false
    });
    found
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
}
