//! The rapid-restart harness's engine: start a stock server on a loopback port, make it close
//! connections first so TIME_WAIT sockets stay on its port, kill it, start it again at once,
//! and see whether it answers; with the library and without it (the control); then write the
//! figures into one table.
//!
//! Every wait is bounded by time, every loop by count; every process runs in a process group
//! of its own and is killed with that group when its `Instance` goes away.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{self, alive, Proc, TempDir};

pub mod examples;
pub mod servers;

/// Every server listens on loopback only.
pub const HOST: &str = "127.0.0.1";
/// Cold starts measured per server, each on a fresh port, with the library:
/// REUSE_HARNESS_COLD_STARTS, default 5 (the overhead benchmark takes as many as restarts).
pub fn cold_starts() -> usize {
    common::env_number("REUSE_HARNESS_COLD_STARTS", 1..=1000, 5) as usize
}
/// Restart cycles for servers whose old listening socket outlives the killed process: each
/// failing attempt costs the server's own bind retries, and the outcome does not vary.
pub const OUTLIVE_CYCLES: usize = 3;
/// How long a start under the library, or a cold start, may take before it counts as failed.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The control's one attempt: a restart blocked by TIME_WAIT stays blocked for 60 s, so
/// it is not retried. The servers that fail exit at once; this bounds the others, which must
/// answer (long enough for Flask or gunicorn on a loaded machine).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// A restart while an orphan still listens: long enough for the servers' own bind retries
/// (gunicorn 5 x 1 s, nginx 5 x 0.5 s) to run out.
pub const OUTLIVE_TIMEOUT: Duration = Duration::from_secs(8);
/// A signalled server that has not exited by then is killed, and the test fails.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many test functions record a row (each calls `restart_case` or `outliving_case` once,
/// counted in tests/harness.rs itself); the last to finish prints the whole table.
pub fn row_tests() -> usize {
    include_str!("../harness.rs")
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("restart_case(") || l.starts_with("outliving_case("))
        .count()
}

const LOG_CAP: usize = 1 << 20;

/// N, the restart cycles per server: REUSE_HARNESS_CYCLES, default 20.
pub fn cycles() -> usize {
    common::env_number("REUSE_HARNESS_CYCLES", 1..=1000, 20) as usize
}

// ---------------------------------------------------------------------------------------
// One running server

/// A running server (or supervisor): its process group, and everything it wrote to stdout
/// and stderr, drained continuously so a chatty server never blocks on a full pipe.
pub struct Instance {
    pub proc: Proc,
    log: Arc<Mutex<Vec<u8>>>,
    drains: Vec<JoinHandle<()>>,
    /// The PID named by the last accepted answer (`pid=N` in its body), if the body names one.
    pub answered_by: Option<i32>,
}

fn drain(mut from: impl Read + Send + 'static, log: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() < LOG_CAP {
                        l.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    })
}

impl Instance {
    pub fn launch(name: &str, mut cmd: Command) -> Instance {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut drains = Vec::new();
        if let Some(o) = child.stdout.take() {
            drains.push(drain(o, log.clone()));
        }
        if let Some(e) = child.stderr.take() {
            drains.push(drain(e, log.clone()));
        }
        Instance {
            proc: Proc {
                child,
                name: name.to_string(),
            },
            log,
            drains,
            answered_by: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn log_since(&self, mark: usize) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(l.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Kills the whole process group, reaps the leader, lets the drains read what is left
    /// (up to a second), and returns everything the instance wrote.
    pub fn finish(mut self) -> String {
        self.proc.signal_group(libc::SIGKILL);
        let _ = self.proc.child.wait();
        let t0 = Instant::now();
        while self.drains.iter().any(|d| !d.is_finished()) && t0.elapsed() < Duration::from_secs(1)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.log_since(0)
    }

    /// Waits for the leader to exit after a signal; kills the group and panics if it does not.
    fn reap(&mut self, sig: i32) {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return;
            }
            if t0.elapsed() > STOP_TIMEOUT {
                self.proc.signal_group(libc::SIGKILL);
                let _ = self.proc.child.wait();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of signal {sig}; output:\n{}",
                    self.proc.name,
                    self.log_since(0)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Signals the instance (its leader, or its whole process group) and waits until the leader
/// is reaped and every process of its group is gone: the moment the old instance is dead.
pub fn stop(inst: &mut Instance, sig: i32, group: bool) -> Instant {
    let members = group_members(inst.pid());
    if group {
        inst.proc.signal_group(sig);
    } else {
        inst.proc.signal(sig);
    }
    inst.reap(sig);
    // Workers close their copies of the listening socket when they exit (a process's files
    // are closed before it becomes a zombie); a master stopped by SIGTERM waits for them.
    let t0 = Instant::now();
    while members.iter().any(|p| alive(*p)) && t0.elapsed() < STOP_TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    let dead = Instant::now();
    assert!(
        !members.iter().any(|p| alive(*p)),
        "{}: processes of its group still run {STOP_TIMEOUT:?} after signal {sig}",
        inst.proc.name
    );
    dead
}

/// Every process in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| proc_stat(*p).is_some_and(|(_, g)| g == pgid))
        .collect()
}

/// The PID an answer names (`pid=N` in its body), if it names one.
pub fn answering_pid(response: &str) -> Option<i32> {
    let at = response.rfind("pid=")? + 4;
    let digits: String = response[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// (state, process group) of a live process, from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Polls until `pid` is gone (or a zombie); the moment it was seen gone.
pub fn wait_gone(pid: i32, timeout: Duration) -> Option<Instant> {
    let t0 = Instant::now();
    while alive(pid) {
        if t0.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Some(Instant::now())
}

/// Which answer counts as the new instance's.
#[derive(Clone, Copy)]
pub enum Accept {
    /// One from this instance's own process group: an orphaned worker of the previous
    /// instance that still answers on the port does not count. An answer naming no PID, or a
    /// PID already gone, counts.
    OwnGroup,
    /// One from a process other than the old app (a supervisor restarted it).
    NotFrom(i32),
}

impl Accept {
    fn accepts(self, inst: &Instance, pid: Option<i32>) -> bool {
        match self {
            Accept::OwnGroup => match pid.and_then(proc_stat) {
                Some((_, pgrp)) => pgrp == inst.pid(),
                None => true,
            },
            Accept::NotFrom(old) => pid.is_some_and(|p| p != old),
        }
    }
}

/// Why a start did not answer.
#[derive(Debug)]
pub enum NotReady {
    Exited(ExitStatus),
    /// The supervisor said its app crashed.
    Crashed,
    Timeout(Duration),
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Exited(s) => write!(f, "exited ({s})"),
            NotReady::Crashed => f.write_str("nodemon: app crashed"),
            NotReady::Timeout(t) => write!(f, "no answer within {t:?}"),
        }
    }
}

/// Polls the port with real HTTP/1.0 requests until an answer `accept` takes, the instance
/// exits, its supervisor logs `crash` (text, searched from a log offset), or `timeout` ends.
pub fn wait_ready(
    inst: &mut Instance,
    port: u16,
    timeout: Duration,
    accept: Accept,
    crash: Option<(&str, usize)>,
) -> Result<Instant, NotReady> {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(status)) = inst.proc.child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if let Some((marker, mark)) = crash {
            if inst.log_since(mark).contains(marker) {
                return Err(NotReady::Crashed);
            }
        }
        if let Ok(r) = common::http_get(HOST, port) {
            let pid = answering_pid(&r);
            if !r.is_empty() && accept.accepts(inst, pid) {
                inst.answered_by = pid;
                return Ok(Instant::now());
            }
        }
        if t0.elapsed() >= timeout {
            return Err(NotReady::Timeout(timeout));
        }
        // Finely at first, so a server ready in a few milliseconds (nginx, socat, the C
        // server) is not measured in steps of the poll; a refused connect costs microseconds.
        let step = if t0.elapsed() < FINE_POLL_FOR { 1 } else { 5 };
        std::thread::sleep(Duration::from_millis(step));
    }
}

/// How long wait_ready polls every millisecond before every 5 ms.
const FINE_POLL_FOR: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------
// What a server is, and how it is restarted

pub enum Restart {
    /// The harness stops and starts it. Cycles alternate SIGTERM and SIGKILL. With
    /// `workers` (a master and worker processes), SIGTERM goes to the master (its own
    /// graceful stop) and SIGKILL to the whole process group, as a service manager does.
    Harness { workers: bool },
    /// nodemon restarts the app when the watched file changes; `comment` starts a line the
    /// harness appends to it.
    Nodemon {
        /// The file in the folder of the instance without the library, and with it: two
        /// folders, so that a change restarts only the one nodemon.
        watched: [PathBuf; 2],
        comment: &'static str,
    },
    /// Only the master is SIGKILLed, as `kill -9 MASTER` does; its workers keep the
    /// listening socket.
    MasterKilled,
}

type Launch = Box<dyn Fn(u16, bool) -> Command + Send + Sync>;

pub struct Spec {
    /// Its place in the table.
    pub order: usize,
    pub name: String,
    pub own_reuseaddr: bool,
    pub restart: Restart,
    /// The command for a fresh instance on `port`, with the library preloaded or not.
    pub launch: Launch,
    /// Files it needs (removed with the spec).
    pub _files: Option<TempDir>,
}

impl Spec {
    pub fn launch(&self, port: u16, preload: bool) -> Instance {
        Instance::launch(&self.name, (self.launch)(port, preload))
    }

    /// A fresh instance on `port` that answers, or a panic saying why not.
    pub fn start_ready(&self, port: u16, preload: bool) -> Instance {
        let mut inst = self.launch(port, preload);
        if let Err(why) = wait_ready(&mut inst, port, START_TIMEOUT, Accept::OwnGroup, None) {
            let log = inst.finish();
            panic!(
                "{} did not start on fresh port {port} (library {}): {why}; output:\n{log}",
                self.name,
                if preload { "on" } else { "off" }
            );
        }
        inst
    }
}

// ---------------------------------------------------------------------------------------
// Series of restarts

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

fn says_in_use(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("address already in use")
        || l.contains("eaddrinuse")
        || l.contains("connection in use")
}

/// The line of a log that tells most: the first that says the address is in use, else the
/// last one.
fn telling_line(log: &str) -> String {
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
fn strip_stamp(line: &str) -> &str {
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

fn signal_name(sig: i32) -> &'static str {
    if sig == libc::SIGKILL {
        "SIGKILL"
    } else {
        "SIGTERM"
    }
}

/// Checks the condition every restart is about, in the kernel's table, and notes it.
fn time_wait_at_restart(s: &mut Series, name: &str, port: u16) {
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
fn change_until_gone(path: &Path, comment: &str, n: usize, old: i32) -> Option<Instant> {
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
struct Chain<'a> {
    spec: &'a Spec,
    preload: bool,
    port: u16,
    inst: Instance,
    s: Series,
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
fn cold_start(spec: &Spec) -> Duration {
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
fn interleaved(spec: &Spec, n: usize) -> (Series, Series, Vec<Duration>) {
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
fn listener_pids(port: u16) -> Vec<i32> {
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
fn wait_bound(inst: &mut Instance, port: u16, timeout: Duration) -> Result<(), NotReady> {
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
fn outliving_series(spec: &Spec, preload: bool, n: usize) -> Outliving {
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

// ---------------------------------------------------------------------------------------
// The cases

/// Counts a finished test (passed, failed or skipped); the last one prints the whole table.
struct Finished;

impl Drop for Finished {
    fn drop(&mut self) {
        let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        t.finished += 1;
        if t.finished == row_tests() && !(t.restart.is_empty() && t.outliving.is_empty()) {
            let text = t.render();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "\n--- rapid-restart harness: all servers ---\n{text}");
        }
    }
}

/// What a restart case measured, for the overhead benchmark: the server, and the medians of
/// restart-to-ready with the library and of its cold starts. (The tests only assert.)
#[allow(dead_code)]
pub struct Measured {
    pub name: String,
    pub restart: Option<Duration>,
    pub cold: Option<Duration>,
    /// The median of restart i / cold start i: the two were measured moments apart, so a
    /// slow spell of the machine falls on both.
    pub paired: Option<f64>,
}

/// One restart case: cold starts, N restarts with the library, N without; a table row; then
/// the assertions (after the row is written, so a failure shows in the table too).
pub fn restart_case(make: impl FnOnce() -> Option<Spec>) -> Option<Measured> {
    let _finished = Finished;
    let spec = make()?;
    let n = cycles();
    let (with, without, cold) = interleaved(&spec, n);
    let restarted_by = match &spec.restart {
        Restart::Harness { workers: false } => "harness: SIGTERM / SIGKILL",
        Restart::Harness { workers: true } => "harness: SIGTERM master / SIGKILL group",
        Restart::Nodemon { .. } => "nodemon, on a file change",
        Restart::MasterKilled => unreachable!(),
    };
    let without_said = if without.attempts == without.ok {
        "restarts at once".to_string()
    } else {
        format!(
            "{} of {} failed, {} with EADDRINUSE",
            without.attempts - without.ok,
            without.attempts,
            without.in_use
        )
    };
    let row = vec![
        spec.name.clone(),
        yes_no(spec.own_reuseaddr),
        restarted_by.to_string(),
        [with.min_time_wait, without.min_time_wait]
            .into_iter()
            .flatten()
            .min()
            .map_or("-".into(), |m| format!(">= {m}")),
        format!("{}/{}", with.ok, with.attempts),
        format!("{}/{}", without.ok, without.attempts),
        median(&with.times),
        median(&without.times),
        median(&cold),
        without_said,
    ];
    let mut notes = Vec::new();
    for f in &with.failures {
        notes.push(format!("{}, with libreuse: {f}", spec.name));
    }
    for f in without.failures.iter().take(1) {
        notes.push(format!("{}, without libreuse: {f}", spec.name));
    }
    record(spec.order, Kind::Restart, row, notes);

    assert_eq!(
        with.ok, n,
        "{}: with libreuse only {} of {n} restarts answered: {:?}",
        spec.name, with.ok, with.failures
    );
    if spec.own_reuseaddr {
        assert_eq!(
            without.ok, n,
            "{} sets SO_REUSEADDR itself, yet without libreuse only {} of {n} restarts answered: {:?}",
            spec.name, without.ok, without.failures
        );
    } else {
        assert_eq!(
            without.ok, 0,
            "{} leaves SO_REUSEADDR off, yet without libreuse {} of {n} restarts answered: \
             the harness did not reproduce the problem",
            spec.name, without.ok
        );
        assert_eq!(
            without.in_use, n,
            "{}: not every failed restart without libreuse said EADDRINUSE: {:?}",
            spec.name, without.failures
        );
    }
    let mut ratios: Vec<f64> = with
        .times
        .iter()
        .zip(&cold)
        .map(|(r, c)| r.as_secs_f64() / c.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some(Measured {
        name: spec.name.clone(),
        restart: median_of(&with.times),
        cold: median_of(&cold),
        paired: ratios.get(ratios.len() / 2).copied(),
    })
}

pub fn median_of(v: &[Duration]) -> Option<Duration> {
    let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    common::median(&secs).map(Duration::from_secs_f64)
}

/// One outliving case: only the master is SIGKILLed; what the restart does, with and without
/// the library; and that killing the old process group lets the restart through.
pub fn outliving_case(make: impl FnOnce() -> Option<Spec>) {
    let _finished = Finished;
    let Some(spec) = make() else { return };
    let n = cycles().min(OUTLIVE_CYCLES);
    let with = outliving_series(&spec, true, n);
    let without = outliving_series(&spec, false, n);
    let said = with
        .series
        .failures
        .first()
        .or(with.busy.failures.first())
        .map(|f| {
            f.split_once(": ")
                .map_or(f.as_str(), |(_, r)| r)
                .to_string()
        })
        .unwrap_or_else(|| "-".into());
    let ok_median = |s: &Series| {
        if s.ok > 0 {
            format!("{}/{}, {}", s.ok, s.attempts, median(&s.times))
        } else {
            format!("{}/{}", s.ok, s.attempts)
        }
    };
    let row = vec![
        spec.name.clone(),
        format!("{}/{n}", with.held),
        ok_median(&with.series),
        ok_median(&with.busy),
        ok_median(&without.series),
        said,
        ok_median(&with.remedy),
    ];
    let mut notes = Vec::new();
    for f in with.remedy.failures.iter().chain(&without.remedy.failures) {
        notes.push(format!("{}, after killing the group: {f}", spec.name));
    }
    record(spec.order, Kind::Outliving, row, notes);

    assert_eq!(
        with.held + without.held,
        2 * n,
        "{}: after the master's SIGKILL the port was not always still held; this row's premise \
         no longer holds",
        spec.name
    );
    assert_eq!(
        (with.remedy.ok, without.remedy.ok),
        (n, n),
        "{}: after killing the old process group the restart did not always answer: {:?} {:?}",
        spec.name,
        with.remedy.failures,
        without.remedy.failures
    );
}

// ---------------------------------------------------------------------------------------
// The table

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

pub fn median(v: &[Duration]) -> String {
    let Some(m) = median_of(v) else {
        return "-".into();
    };
    let ms = m.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

enum Kind {
    Restart,
    Outliving,
}

#[derive(Default)]
struct Table {
    restart: BTreeMap<usize, Vec<String>>,
    outliving: BTreeMap<usize, Vec<String>>,
    notes: BTreeMap<usize, Vec<String>>,
    finished: usize,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    restart: BTreeMap::new(),
    outliving: BTreeMap::new(),
    notes: BTreeMap::new(),
    finished: 0,
});

const RESTART_HEADER: [&str; 10] = [
    "server",
    "sets SO_REUSEADDR itself",
    "restarted by",
    "TIME_WAIT at restart",
    "ready with libreuse",
    "ready without",
    "restart to ready, with",
    "restart to ready, without",
    "cold start",
    "without libreuse",
];

const OUTLIVING_HEADER: [&str; 7] = [
    "server, only the master SIGKILLed",
    "old socket still listening",
    "ready with libreuse, no requests meanwhile",
    "ready with libreuse, requests arriving",
    "ready without, no requests",
    "what the new instance said",
    "after killing the old process group, with libreuse",
];

fn md_row(cells: &[impl AsRef<str>]) -> String {
    let mut s = String::from("|");
    for c in cells {
        s.push(' ');
        s.push_str(&c.as_ref().replace('|', "/"));
        s.push_str(" |");
    }
    s.push('\n');
    s
}

fn md_table(header: &[&str], rows: &[&Vec<String>]) -> String {
    let mut s = md_row(header);
    s.push_str(&md_row(&vec!["---"; header.len()]));
    for r in rows {
        s.push_str(&md_row(r));
    }
    s
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string();
    format!("{cpus} CPUs (nproc), Linux {kernel}, {os}, {date}, load average {load} when written")
}

impl Table {
    fn render(&self) -> String {
        let n = cycles();
        let mut s = format!(
            "Rapid-restart harness: {n} restart cycles per server (REUSE_HARNESS_CYCLES) with \
             libreuse and {n} without, interleaved, each with TIME_WAIT sockets on the port (the \
             fewest seen at a restart is shown), cycles alternating SIGTERM and SIGKILL; restart \
             to ready = the old instance's death to the first answered request (median); cold \
             start = spawn to first answer on a fresh port, with libreuse (median of \
             {}). Without libreuse, one attempt per cycle with a {}-s readiness \
             timeout (the servers that fail exit at once).\nMachine: {}.\n\n",
            cold_starts(),
            CONTROL_TIMEOUT.as_secs(),
            machine()
        );
        if !self.restart.is_empty() {
            s.push_str(&md_table(
                &RESTART_HEADER,
                &self.restart.values().collect::<Vec<_>>(),
            ));
        }
        if !self.outliving.is_empty() {
            s.push_str(&format!(
                "\nThe old listening socket outlives the killed master ({} cycles each, a fresh \
                 port each):\n\n",
                n.min(OUTLIVE_CYCLES)
            ));
            s.push_str(&md_table(
                &OUTLIVING_HEADER,
                &self.outliving.values().collect::<Vec<_>>(),
            ));
        }
        let notes: Vec<&String> = self.notes.values().flatten().collect();
        if !notes.is_empty() {
            s.push_str("\nNotes:\n");
            for n in notes {
                s.push_str(&format!("- {}\n", n.replace('\n', " ")));
            }
        }
        s
    }
}

fn table_path() -> PathBuf {
    common::target_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(common::target_dir)
        .join("harness-table.md")
}

/// Adds a row, rewrites target/harness-table.md with every row of this run so far, and
/// prints this row's table on the real stdout (past the test harness's capture).
fn record(order: usize, kind: Kind, row: Vec<String>, notes: Vec<String>) {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let one = match kind {
        Kind::Restart => {
            t.restart.insert(order, row.clone());
            md_table(&RESTART_HEADER, &[&row])
        }
        Kind::Outliving => {
            t.outliving.insert(order, row.clone());
            md_table(&OUTLIVING_HEADER, &[&row])
        }
    };
    if !notes.is_empty() {
        t.notes.insert(order, notes);
    }
    let text = t.render();
    let path = table_path();
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("writing {}: {e}", path.display());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{one}");
}
