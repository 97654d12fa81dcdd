//! Series of restarts, with and without the library, and of servers that outlive a kill.

use super::*;

/// The outcome of N restarts, with or without the library.
#[derive(Default)]
pub struct Series {
    pub attempts: usize,
    pub ok: usize,
    /// Restart-to-ready of each answered restart.
    pub times: Vec<Duration>,
    /// Failed attempts whose output said the address was in use.
    pub in_use: usize,
    /// What the first failed attempts showed.
    pub failures: Vec<String>,
    /// The fewest TIME_WAIT sockets seen on the port at a restart.
    pub min_time_wait: Option<usize>,
}

pub(crate) fn says_in_use(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("address already in use")
        || l.contains("eaddrinuse")
        || l.contains("connection in use")
}

/// The line of a log that tells most: the first that says the address is in use, else the
/// last one.
pub(crate) fn telling_line(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    // The server's own words first; the library's line (`libreuse[PID]: ...`) after them.
    let line = lines
        .iter()
        .find(|l| says_in_use(l) && !l.starts_with("libreuse["))
        .or(lines.iter().find(|l| says_in_use(l)))
        .or(lines.last())
        .copied()
        .unwrap_or("(no output)");
    // Without the terminal colours nodemon writes.
    let line: String = line
        .split('\u{1b}')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once('m').map_or("", |(_, rest)| rest)
            }
        })
        .collect();
    strip_stamp(&line).chars().take(160).collect()
}

/// A log line without its leading timestamp (`2026/01/02 03:04:05 ` or `[2026-01-02 ...] `).
pub(crate) fn strip_stamp(line: &str) -> &str {
    let b = line.as_bytes();
    if b.first() == Some(&b'[') && b.get(1).is_some_and(u8::is_ascii_digit) {
        if let Some((_, rest)) = line.split_once("] ") {
            return rest;
        }
    }
    if b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && matches!(b[4], b'/' | b'-') {
        let mut parts = line.splitn(3, ' ');
        if let (Some(_), Some(_), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
            return rest;
        }
    }
    line
}

impl Series {
    fn failed(&mut self, what: String, why: &NotReady, log: &str) {
        if says_in_use(log) {
            self.in_use += 1;
        }
        if self.failures.len() < 3 {
            self.failures
                .push(format!("{what}: {why}: {}", telling_line(log)));
        }
    }

    fn saw_time_wait(&mut self, n: usize) {
        self.min_time_wait = Some(self.min_time_wait.map_or(n, |m| m.min(n)));
    }
}

pub(crate) fn signal_name(sig: i32) -> &'static str {
    if sig == libc::SIGKILL {
        "SIGKILL"
    } else {
        "SIGTERM"
    }
}

/// Checks the condition every restart is about, in the kernel's table, and notes it.
pub(crate) fn time_wait_at_restart(s: &mut Series, name: &str, port: u16) {
    let tw = common::time_wait_count(port);
    assert!(
        tw > 0,
        "{name}: no TIME_WAIT socket left on port {port} at the restart"
    );
    s.saw_time_wait(tw);
}

/// Makes the change nodemon watches for (a line appended to the watched file) and waits for
/// the old app, `old`, to be gone: the moment it was seen gone. A change nodemon missed is
/// made again, up to three times.
pub(crate) fn change_until_gone(path: &Path, comment: &str, n: usize, old: i32) -> Option<Instant> {
    for _ in 0..3 {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        writeln!(f, "{comment} change {n}").expect("appending to the watched file");
        drop(f);
        if let Some(t) = wait_gone(old, STOP_TIMEOUT / 2) {
            return Some(t);
        }
    }
    None
}

/// One server restarted again and again on one port, with the library or without. A failed
/// restart poisons its port for 60 s, so the chain goes on from a fresh instance on a fresh
/// port.
pub(crate) struct Chain<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) preload: bool,
    pub(crate) port: u16,
    pub(crate) inst: Instance,
    pub(crate) s: Series,
}

impl<'a> Chain<'a> {
    fn new(spec: &'a Spec, preload: bool) -> Chain<'a> {
        let port = common::free_port();
        let inst = spec.start_ready(port, preload);
        Chain {
            spec,
            preload,
            port,
            inst,
            s: Series::default(),
        }
    }

    fn timeout(&self) -> Duration {
        if self.preload {
            START_TIMEOUT
        } else {
            CONTROL_TIMEOUT
        }
    }

    fn start_afresh(&mut self) {
        self.port = common::free_port();
        let fresh = self.spec.start_ready(self.port, self.preload);
        drop(std::mem::replace(&mut self.inst, fresh).finish());
    }

    /// Restart `i` (from 0): TIME_WAIT left on the port, checked in the kernel's table (before
    /// the kill, outside the timed window: the read takes milliseconds, TIME_WAIT lasts 60 s),
    /// then the restart.
    fn restart(&mut self, i: usize) {
        common::leave_time_wait(HOST, self.port, 2);
        time_wait_at_restart(&mut self.s, &self.spec.name, self.port);
        self.s.attempts += 1;
        match &self.spec.restart {
            Restart::Harness { workers } => self.harness_restart(i, *workers),
            Restart::Nodemon { watched, comment } => {
                self.nodemon_restart(i, &watched[self.preload as usize], comment)
            }
            Restart::MasterKilled => unreachable!("outliving servers have their own series"),
        }
    }

    /// The harness kills it (SIGTERM on even cycles, SIGKILL on odd ones) and starts it again
    /// at once on the same port.
    fn harness_restart(&mut self, i: usize, workers: bool) {
        let sig = if i.is_multiple_of(2) {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        let dead = stop(&mut self.inst, sig, workers && sig == libc::SIGKILL);
        let mut next = self.spec.launch(self.port, self.preload);
        match wait_ready(&mut next, self.port, self.timeout(), Accept::OwnGroup, None) {
            Ok(t) => {
                self.s.ok += 1;
                self.s.times.push(t - dead);
                drop(std::mem::replace(&mut self.inst, next).finish());
            }
            Err(why) => {
                let log = next.finish();
                let what = format!("cycle {} ({})", i + 1, signal_name(sig));
                self.s.failed(what, &why, &log);
                self.start_afresh();
            }
        }
    }

    /// nodemon restarts it on a change of the watched file: the old app must be gone and a
    /// new one answer; nodemon's "app crashed - waiting for file changes" is a failed restart.
    fn nodemon_restart(&mut self, i: usize, watched: &Path, comment: &str) {
        let old = self
            .inst
            .answered_by
            .expect("the app names its PID in its answers");
        let mark = self.inst.log_len();
        let Some(dead) = change_until_gone(watched, comment, i + 1, old) else {
            panic!(
                "{}: nodemon did not stop the old app (PID {old}) after three changes of the \
                 watched file; output:\n{}",
                self.spec.name,
                self.inst.log_since(0)
            );
        };
        let crash = Some(("app crashed", mark));
        let timeout = self.timeout();
        match wait_ready(
            &mut self.inst,
            self.port,
            timeout,
            Accept::NotFrom(old),
            crash,
        ) {
            Ok(t) => {
                self.s.ok += 1;
                self.s.times.push(t - dead);
            }
            Err(why) => {
                // Let the app's last lines arrive before reading them.
                std::thread::sleep(Duration::from_millis(100));
                let log = self.inst.log_since(mark);
                self.s.failed(format!("change {}", i + 1), &why, &log);
                self.start_afresh();
            }
        }
    }

    fn end(self) -> Series {
        drop(self.inst.finish());
        self.s
    }
}

/// One start on a fresh port, with the library: spawn to first answer.
pub(crate) fn cold_start(spec: &Spec) -> Duration {
    let port = common::free_port();
    let t0 = Instant::now();
    let mut inst = spec.launch(port, true);
    let r = wait_ready(&mut inst, port, START_TIMEOUT, Accept::OwnGroup, None);
    let log = inst.finish();
    match r {
        Ok(t) => t - t0,
        Err(why) => panic!("{}: cold start failed: {why}; output:\n{log}", spec.name),
    }
}

/// N restarts with the library and N without, interleaved (one of each in turn, so a change
/// of the machine's load falls on both alike), and the cold starts among them.
pub(crate) fn interleaved(spec: &Spec, n: usize) -> (Series, Series, Vec<Duration>) {
    let mut with = Chain::new(spec, true);
    let mut without = Chain::new(spec, false);
    let mut cold = Vec::new();
    let colds = cold_starts();
    for i in 0..n.max(colds) {
        if i < n {
            with.restart(i);
            without.restart(i);
        }
        if i < colds {
            cold.push(cold_start(spec));
        }
    }
    (with.end(), without.end(), cold)
}

/// PIDs of the processes that hold a listening socket on `port`: the socket inodes from the
/// kernel's table, found among every process's open files.
pub(crate) fn listener_pids(port: u16) -> Vec<i32> {
    let targets: Vec<String> = common::sockets_on_port(port)
        .iter()
        .filter(|e| e.state == reuse_core::proc_net::TCP_LISTEN)
        .map(|e| format!("socket:[{}]", e.inode))
        .collect();
    let mut pids = Vec::new();
    if targets.is_empty() {
        return pids;
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let fds = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten();
        if fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| targets.iter().any(|t| l.as_os_str() == t.as_str()))
        }) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits, sending no request, until the instance holds a listening socket on the port, exits,
/// or `timeout` ends.
pub(crate) fn wait_bound(
    inst: &mut Instance,
    port: u16,
    timeout: Duration,
) -> Result<(), NotReady> {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(status)) = inst.proc.child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        let own = inst.pid();
        if listener_pids(port)
            .into_iter()
            .any(|p| proc_stat(p).is_some_and(|(_, g)| g == own))
        {
            return Ok(());
        }
        if t0.elapsed() >= timeout {
            return Err(NotReady::Timeout(timeout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server whose old listening socket outlives its killed master.
#[derive(Default)]
pub struct Outliving {
    /// Restarts with no request arriving meanwhile.
    pub series: Series,
    /// Cycles in which the port still had a listener right after the master was reaped.
    pub held: usize,
    /// Restarts while requests arrive (the orphans answer them), with the library only.
    pub busy: Series,
    /// Restarts after the old process group was killed, as the README says to do.
    pub remedy: Series,
}

/// Kill only the master (SIGKILL) and start a new instance at once: first with no request
/// arriving (as after a crash at night), then, with the library, while requests arrive (the
/// orphaned workers answer them); then kill the old process group and start again (what to
/// do). Each cycle on a fresh port.
pub(crate) fn outliving_series(spec: &Spec, preload: bool, n: usize) -> Outliving {
    let mut o = Outliving::default();
    for i in 0..n {
        let port = common::free_port();
        let mut old = spec.start_ready(port, preload);
        common::leave_time_wait(HOST, port, 2);
        time_wait_at_restart(&mut o.series, &spec.name, port);
        old.proc.signal(libc::SIGKILL);
        old.reap(libc::SIGKILL);
        let dead = Instant::now();
        if common::listening(port) {
            o.held += 1;
        }

        o.series.attempts += 1;
        let mut next = spec.launch(port, preload);
        let r = wait_bound(&mut next, port, OUTLIVE_TIMEOUT)
            .and_then(|()| wait_ready(&mut next, port, START_TIMEOUT, Accept::OwnGroup, None));
        let log = next.finish();
        match r {
            Ok(t) => {
                o.series.ok += 1;
                o.series.times.push(t - dead);
            }
            Err(why) => o.series.failed(format!("cycle {}", i + 1), &why, &log),
        }

        if preload && common::listening(port) {
            o.busy.attempts += 1;
            let t0 = Instant::now();
            let mut next = spec.launch(port, preload);
            let r = wait_ready(&mut next, port, OUTLIVE_TIMEOUT, Accept::OwnGroup, None);
            let log = next.finish();
            match r {
                Ok(t) => {
                    o.busy.ok += 1;
                    o.busy.times.push(t - t0);
                }
                Err(why) => o.busy.failed(format!("cycle {}", i + 1), &why, &log),
            }
        }

        // What to do: stop the old instance's whole process group, then start.
        let dead = stop(&mut old, libc::SIGKILL, true);
        o.remedy.attempts += 1;
        let mut again = spec.launch(port, preload);
        let r = wait_ready(&mut again, port, START_TIMEOUT, Accept::OwnGroup, None);
        let log = again.finish();
        match r {
            Ok(t) => {
                o.remedy.ok += 1;
                o.remedy.times.push(t - dead);
            }
            Err(why) => o.remedy.failed(format!("cycle {}", i + 1), &why, &log),
        }
        drop(old.finish());
    }
    o
}
