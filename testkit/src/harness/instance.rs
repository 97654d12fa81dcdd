//! One running server: its process group, its drained output, stopping it, waiting for it.

use super::*;

/// A running server (or supervisor): its process group, and everything it wrote to stdout
/// and stderr, drained continuously so a chatty server never blocks on a full pipe.
pub struct Instance {
    pub proc: Proc,
    pub(crate) log: Arc<Mutex<Vec<u8>>>,
    pub(crate) drains: Vec<JoinHandle<()>>,
    /// The PID named by the last accepted answer (`pid=N` in its body), if the body names one.
    pub answered_by: Option<i32>,
}

pub(crate) fn drain(
    mut from: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
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
    pub(crate) fn reap(&mut self, sig: i32) {
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
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
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
pub(crate) fn proc_stat(pid: i32) -> Option<(char, i32)> {
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
pub(crate) const FINE_POLL_FOR: Duration = Duration::from_millis(500);
