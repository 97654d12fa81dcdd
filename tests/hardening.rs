//! Hardening: the library in hostile and heavy conditions, with figures.
//!
//! Hostile values in every REUSE_* variable; restart cycles of a legacy server; 64 threads
//! binding for a set time; children made every way and binds from signal handlers; valgrind
//! memcheck; 8 MB responses closed at once (whole by default, cut with linger=0); secure
//! execution (setuid) and the kernel's own-user rule for SO_REUSEPORT; strace of what the
//! library adds to a process, and what its binary could read from the environment.
//!
//! Knobs (outside CI, for the long runs the README quotes):
//!   REUSE_STRESS_CYCLES=10000   restart cycles (default 200)
//!   REUSE_STRESS_SECONDS=30     seconds of the 64-thread run (default 30)

mod common;

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------
// Helpers of this file.

/// Each C program of the tests, built once per test process (None: no compiler, skipped).
type Built = std::sync::Mutex<Vec<(&'static str, Option<PathBuf>)>>;

fn c_program(src: &'static str, name: &'static str) -> Option<PathBuf> {
    static BUILT: OnceLock<Built> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| *n == name) {
        return p.clone();
    }
    let p = build_c(src, name, "cc");
    built.push((name, p.clone()));
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads one line from a child's stdout, waiting at most `timeout`. None on EOF or time out.
fn read_line(out: &mut std::process::ChildStdout, timeout: Duration) -> Option<String> {
    let t0 = Instant::now();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while t0.elapsed() < timeout {
        let left = timeout.saturating_sub(t0.elapsed()).as_millis().max(1) as i32;
        let mut p = libc::pollfd {
            fd: out.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, left.min(1000)) } <= 0 {
            continue;
        }
        match out.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return Some(text(&line)),
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    None
}

/// A process group started here, killed and reaped when dropped.
struct Group(Child);

impl Group {
    fn start(cmd: &mut Command) -> Group {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Group(cmd.spawn().expect("spawn"))
    }

    fn ready(&mut self, timeout: Duration) -> Option<String> {
        read_line(self.0.stdout.as_mut().unwrap(), timeout)
    }

    /// SIGKILL to the group, reaped; what it wrote on stderr.
    fn kill(&mut self) -> String {
        common::kill(-(self.0.id() as i32), libc::SIGKILL);
        let _ = self.0.wait();
        let mut s = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.kill();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hostile values.

/// The kernel refuses an argument or environment string longer than this, NUL included.
const MAX_ARG_STRLEN: usize = 131072;

fn hostile_values(var: &str) -> Vec<(&'static str, Vec<u8>)> {
    let near_limit = MAX_ARG_STRLEN - var.len() - 2; // "VAR=" + value + NUL
    let mut many_items = b"1,".repeat(near_limit / 2);
    many_items.truncate(near_limit - 1);
    many_items.push(b'x');
    vec![
        (
            "overlong",
            [b"8000,".repeat(4000), b"\x7f".to_vec()].concat(),
        ),
        (
            "control characters",
            b"\x01\x02\x1b[2J\x1b]0;owned\x07\r\n\t\x7f=\x08".to_vec(),
        ),
        (
            "non-UTF-8",
            b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\x80\xf0\x28\x8c\x28".to_vec(),
        ),
        ("128 kB of digits", b"9".repeat(near_limit)),
        ("128 kB of items", many_items),
    ]
}

/// The line the library wrote, checked: one line, printable, short, naming `var`.
fn assert_one_short_line(err: &[u8], var: &str, whole_value_shown: Option<usize>, what: &str) {
    let lines: Vec<&[u8]> = err.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), 1, "{what}: one line, got {:?}", text(err));
    let line = lines[0];
    assert!(line.ends_with(b"\n"), "{what}: {:?}", text(err));
    assert!(
        line.len() <= reuse_core::line::LINE_MAX,
        "{what}: {} bytes",
        line.len()
    );
    assert!(
        line[..line.len() - 1]
            .iter()
            .all(|b| (0x20..0x7f).contains(b)),
        "{what}: raw control or non-ASCII bytes on stderr: {:?}",
        text(err)
    );
    let s = text(line);
    assert!(s.starts_with("libreuse["), "{what}: {s}");
    assert!(s.contains(&format!("invalid {var}")), "{what}: {s}");
    assert!(s.contains("libreuse changes nothing"), "{what}: {s}");
    if let Some(n) = whole_value_shown {
        let cut = format!("...({n} bytes)\"");
        assert!(s.contains(&cut), "{what}: a long value is cut short: {s}");
    }
}

#[test]
fn hostile_values_in_every_variable_leave_the_host_running_and_unchanged() {
    let Some(p) = probe() else { return };
    let port = free_port().to_string();
    let untouched = "rc=0 errno=4242 reuseaddr=0 reuseport=0 linger=0,0";
    let mut runs = 0;
    for var in reuse_core::config::VARIABLES {
        for (what, value) in hostile_values(var) {
            let mut c = command(&p, true);
            c.env(var, OsStr::from_bytes(&value));
            c.args(["bind", "4", "tcp", "127.0.0.1", &port]);
            let out = run(&mut c, Duration::from_secs(20));
            let label = format!("{var} = {what} ({} bytes)", value.len());
            assert_eq!(out.status.code(), Some(0), "{label}: {out:?}");
            assert_eq!(text(&out.stdout).trim(), untouched, "{label}");
            // A value of one item is the part the message quotes: cut after 64 bytes.
            let one_item = what == "128 kB of digits";
            assert_one_short_line(&out.stderr, var, one_item.then_some(value.len()), &label);
            runs += 1;
        }
    }
    // Every variable at the limit at once (about 1 MB of environment): the first read
    // (REUSE_LOG) is reported, and only that.
    let mut c = command(&p, true);
    for var in reuse_core::config::VARIABLES {
        c.env(var, OsStr::from_bytes(&hostile_values(var)[3].1));
    }
    c.args(["bind", "4", "tcp", "127.0.0.1", &port]);
    let out = run(&mut c, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), untouched);
    let n = hostile_values("REUSE_LOG")[3].1.len();
    assert_one_short_line(&out.stderr, "REUSE_LOG", Some(n), "all at once");
    // And a shell runs as ever with such a value: output and exit status its own.
    let out = run(
        command("sh", true)
            .env(
                "REUSE_PORTS",
                OsStr::from_bytes(&hostile_values("REUSE_PORTS")[4].1),
            )
            .args(["-c", "echo hello; exit 7"]),
        Duration::from_secs(20),
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(7), "hello\n".into())
    );
    // The values were at the kernel's limit: one byte more and exec itself refuses.
    let over = b"9".repeat(MAX_ARG_STRLEN - "REUSE_PORTS".len() - 1);
    let e = command(&p, true)
        .env("REUSE_PORTS", OsStr::from_bytes(&over))
        .arg("bind")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|mut c| c.wait())
        .expect_err("exec must refuse a string over MAX_ARG_STRLEN");
    assert_eq!(e.raw_os_error(), Some(libc::E2BIG), "{e}");
    eprintln!("hostile values: {runs} runs + 1 with all variables at 128 kB: host unchanged");
}

// ---------------------------------------------------------------------------------------
// Stress.

#[test]
fn restart_cycles_of_a_legacy_server_never_fail() {
    let Some(p) = probe() else { return };
    let cycles = common::env_number("REUSE_STRESS_CYCLES", 1..=3600, 200);
    let port = free_port();
    let ps = port.to_string();
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut checked_time_wait = 0;
    for cycle in 0..cycles {
        let mut c = command(&p, true);
        c.args(["serve", "4", "127.0.0.1", &ps]);
        let mut server = Group::start(&mut c);
        match server.ready(Duration::from_secs(10)) {
            Some(l) if l == "ready" => {}
            other => {
                let err = server.kill();
                failures.push(format!("cycle {cycle}: no ready line ({other:?}): {err}"));
                continue;
            }
        }
        // The server answers and closes first: a TIME_WAIT socket on its port.
        match http_get("127.0.0.1", port) {
            Ok(r) if r.starts_with("HTTP/1.0 200") => {}
            other => failures.push(format!("cycle {cycle}: request: {other:?}")),
        }
        if cycle < 10 || cycle % 100 == 0 {
            // Before the kill, the kernel really holds TIME_WAIT (checked on some cycles:
            // the table grows by one socket a cycle).
            let deadline = Instant::now() + Duration::from_secs(2);
            while time_wait_count(port) == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(time_wait_count(port) > 0, "cycle {cycle}: no TIME_WAIT");
            checked_time_wait += 1;
        }
        server.kill();
        assert!(failures.len() < 20, "{failures:#?}");
    }
    let took = t0.elapsed();
    // The control: the same server without the library cannot bind through what the cycles
    // left on the port.
    let mut c = command(&p, false);
    c.args(["serve", "4", "127.0.0.1", &ps]);
    let mut control = Group::start(&mut c);
    let waited = Instant::now();
    let status = loop {
        match control.0.try_wait() {
            Ok(Some(s)) => break s.code(),
            _ if waited.elapsed() > Duration::from_secs(10) => break None,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let err = control.kill();
    assert!(
        status == Some(98) && err.contains("errno 98"),
        "without the library the restart must fail: {status:?} {err}"
    );
    eprintln!(
        "restart cycles: {cycles} run, {} failed, in {:.1} s ({checked_time_wait} checked for TIME_WAIT; {} TIME_WAIT sockets on the port now)",
        failures.len(),
        took.as_secs_f64(),
        time_wait_count(port)
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn sixty_four_threads_create_bind_and_close_for_the_set_time() {
    let Some(stress) = c_program("tests/c/stress.c", "stress") else {
        return;
    };
    let seconds = common::env_number("REUSE_STRESS_SECONDS", 1..=3600, 30);
    let base = free_block(64);
    let mut c = command(&stress, true);
    c.args(["stress", "64", &seconds.to_string(), &base.to_string()]);
    let out = run(&mut c, Duration::from_secs(seconds + 120));
    let line = text(&out.stdout).trim().to_string();
    eprintln!("64 threads: {line}");
    assert!(out.status.success(), "{out:?}");
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing in {line}"))
    };
    assert_eq!(field("threads"), 64);
    if field("failed") != 0 {
        // Who else had the port: a flake seen twice in full runs, never alone.
        let holders = Command::new("ss").args(["-tuanpe"]).output();
        let at = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("first_failure="))
            .and_then(|f| f.rsplit(':').next())
            .unwrap_or("");
        let seen: String = holders
            .map(|o| text(&o.stdout))
            .unwrap_or_default()
            .lines()
            .filter(|l| !at.is_empty() && l.contains(&format!(":{at} ")))
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{line}; stderr: {}; sockets on that port: {seen}",
            text(&out.stderr)
        );
    }
    assert_eq!(field("tcp_without_reuseaddr"), 0, "{line}");
    assert_eq!(field("udp_with_reuseaddr"), 0, "{line}");
    assert!(field("binds") >= 64 * seconds, "too few binds: {line}");
    assert_eq!(text(&out.stderr), "", "the library stays silent");
}

#[test]
fn children_of_every_kind_and_signal_handlers_get_the_option() {
    let Some(children) = c_program("tests/c/children.c", "children") else {
        return;
    };
    let (p1, p2) = (free_port().to_string(), free_port().to_string());
    let mut c = command(&children, true);
    c.args(["all", &p1, &p2]);
    let out = run(&mut c, Duration::from_secs(120));
    let stdout = text(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stderr), "");
    let kinds = [
        "fork",
        "vfork",
        "vfork+exec",
        "posix_spawn",
        "posix_spawnp",
        "exec-chain(3)",
        "system",
    ];
    for kind in kinds {
        let want = format!("{kind} rc=0 errno=0 reuseaddr=1");
        assert!(
            stdout.lines().any(|l| l == want),
            "{kind}: want {want:?} in\n{stdout}"
        );
    }
    let signal = stdout
        .lines()
        .find(|l| l.starts_with("signal "))
        .expect("signal line");
    assert!(
        signal.ends_with(" failed=0 without=0"),
        "binds from the main thread and the handler: {signal}"
    );
    let handler: u64 = signal
        .split_whitespace()
        .find_map(|f| f.strip_prefix("handler="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(handler >= 1, "the handler never ran: {signal}");
    // Without the library, the same program sees no option (the control).
    let out = run(
        command(&children, false).args(["all", &p1, &p2]),
        Duration::from_secs(120),
    );
    assert!(text(&out.stdout).contains("fork rc=0 errno=0 reuseaddr=0"));

    // An exec chain through two shells (`sh -c "sh -c ..."`), each shell a process of its
    // own that loads the library too.
    let inner = format!("'{}' bind {p1} sh-chain; true", children.display());
    let outer = format!("sh -c \"{inner}\"; true");
    let out = run(
        command("sh", true).args(["-c", &outer]),
        Duration::from_secs(30),
    );
    assert_eq!(
        text(&out.stdout),
        "sh-chain rc=0 errno=0 reuseaddr=1\n",
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Memory.

#[test]
fn valgrind_memcheck_reports_no_error_in_a_preloaded_program() {
    let Some(p) = probe() else { return };
    let Some(valgrind) = require("valgrind", "apt-get install valgrind") else {
        return;
    };
    let dir = TempDir::new("valgrind");
    let port = free_port();
    let ps = port.to_string();
    let other = free_port().to_string();
    let held = free_port();
    let mut lc = command(&p, false);
    lc.args(["listen", "4", "127.0.0.1", &held.to_string()]);
    let _holder = spawn("holder", &mut lc);
    assert!(wait_listening(held, Duration::from_secs(10)));
    let held = held.to_string();
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<&'a str>,
        &'a str,
        &'a str,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("allowed port", vec![("REUSE_PORTS", &ps)], vec!["bind", "4", "tcp", "127.0.0.1", &ps],
         "rc=0 errno=4242 reuseaddr=1", "SO_REUSEADDR"),
        ("unlisted port", vec![("REUSE_PORTS", &other)], vec!["bind", "6", "tcp", "::1", &ps],
         "rc=0 errno=4242 reuseaddr=0", "port not in REUSE_PORTS"),
        ("every option, udp", vec![("REUSE_PROTOCOLS", "tcp,udp"), ("REUSE_OPTIONS", "addr,port,linger=3")],
         vec!["bind", "4", "udp", "127.0.0.1", &ps], "rc=0 errno=4242 reuseaddr=0 reuseport=1", "udp: SO_REUSEPORT"),
        ("EADDRINUSE, waited and diagnosed", vec![("REUSE_WAIT_MS", "60")], vec!["bind", "4", "tcp", "127.0.0.1", &held],
         "rc=-1 errno=98 reuseaddr=1", "is listening on this port"),
        ("invalid configuration", vec![("REUSE_PORTS", "80,\u{1b}x")], vec!["bind", "4", "tcp", "127.0.0.1", &ps],
         "rc=0 errno=4242 reuseaddr=0", "invalid REUSE_PORTS"),
        // The holder is a probe with another command line: takeover looks it up, reads its
        // executable and command line, and leaves it alone.
        ("EADDRINUSE, takeover refused", vec![("REUSE_TAKEOVER", "1"), ("REUSE_WAIT_MS", "100")],
         vec!["bind", "4", "tcp", "127.0.0.1", &held], "rc=-1 errno=98 reuseaddr=1", "not taking over from PID"),
    ];
    let mut summaries = Vec::new();
    for (what, env, args, want_out, want_err) in cases {
        let log = dir.0.join(format!("{}.log", summaries.len()));
        let mut c = command(&valgrind, true);
        c.args([
            "--tool=memcheck",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,possible",
            "--track-fds=no",
        ]);
        c.arg(format!("--log-file={}", log.display()));
        c.arg(&p).args(&args).env("REUSE_LOG", "debug");
        c.envs(env.iter().copied());
        let out = run(&mut c, Duration::from_secs(120));
        let report = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(out.status.code(), Some(0), "{what}: {out:?}\n{report}");
        assert!(text(&out.stdout).starts_with(want_out), "{what}: {out:?}");
        assert!(text(&out.stderr).contains(want_err), "{what}: {out:?}");
        let summary = report
            .lines()
            .find(|l| l.contains("ERROR SUMMARY"))
            .unwrap_or_else(|| panic!("{what}: no summary in {report}"))
            .to_string();
        assert!(
            summary.contains("ERROR SUMMARY: 0 errors"),
            "{what}: {report}"
        );
        assert!(
            !report.contains("definitely lost:") || report.contains("definitely lost: 0 bytes"),
            "{what}: {report}"
        );
        summaries.push(format!(
            "{what}: {}",
            summary.split("== ").nth(1).unwrap_or(&summary)
        ));
    }
    eprintln!("valgrind memcheck:\n  {}", summaries.join("\n  "));
}

// ---------------------------------------------------------------------------------------
// Data integrity.

const BIG: usize = 8 << 20;

/// Connects with a small receive buffer and waits before reading, so the server's data is
/// still queued when it closes; then reads to EOF, checking every byte. (bytes, how it ended)
fn fetch_big(port: u16) -> (usize, Result<(), std::io::Error>) {
    // SAFETY: plain socket calls on a descriptor this function owns.
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let small: libc::c_int = 64 * 1024;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &small as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_port = port.to_be();
        a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let rc = libc::connect(
            fd,
            &a as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        std::net::TcpStream::from_raw_fd(fd)
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let mut s = stream;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        match s.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => {
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b as usize, (got + i) % 251, "corrupt byte at {}", got + i);
                }
                got += n;
                if got < 1 << 20 {
                    // Slowly at first: the server's queue stays full a while longer.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Err(e)),
        }
    }
    panic!("reading took over 60 s");
}

fn big_server(env: &[(&str, &str)]) -> (Group, u16) {
    let p = probe().unwrap();
    let port = free_port();
    let mut c = command(&p, true);
    c.args([
        "bigserve",
        "4",
        "127.0.0.1",
        &port.to_string(),
        &BIG.to_string(),
    ]);
    c.envs(env.iter().copied());
    let mut g = Group::start(&mut c);
    assert_eq!(g.ready(Duration::from_secs(10)).as_deref(), Some("ready"));
    (g, port)
}

#[test]
fn eight_megabyte_responses_closed_at_once_arrive_whole_by_default() {
    if probe().is_none() {
        return;
    }
    let (_server, port) = big_server(&[]);
    let mut whole = 0;
    for i in 0..20 {
        let (n, end) = fetch_big(port);
        assert!(
            end.is_ok() && n == BIG,
            "response {i}: {n} of {BIG} bytes, {end:?}"
        );
        whole += 1;
    }
    eprintln!(
        "default options: {whole} of 20 responses of {BIG} bytes arrived whole ({} bytes checked)",
        whole * BIG
    );
}

#[test]
fn linger_zero_cuts_responses_with_a_reset() {
    if probe().is_none() {
        return;
    }
    let (_server, port) = big_server(&[("REUSE_OPTIONS", "addr,linger=0")]);
    let (mut cut, mut reset, mut whole) = (0, 0, 0);
    let n = 8;
    for _ in 0..n {
        let (got, end) = fetch_big(port);
        match end {
            Ok(()) if got == BIG => whole += 1,
            Ok(()) => cut += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                assert!(got < BIG);
                cut += 1;
                reset += 1;
            }
            Err(e) => panic!("unexpected end after {got} bytes: {e}"),
        }
    }
    eprintln!(
        "linger=0: {cut} of {n} responses cut short ({reset} with ECONNRESET), {whole} whole"
    );
    assert!(
        reset >= 1,
        "linger=0 must show the reset the README warns about"
    );
}

// ---------------------------------------------------------------------------------------
// Secure execution and other users.

fn is_root() -> bool {
    common::is_root()
}

/// Root only (CI is root); elsewhere a skip message.
fn require_root(what: &str) -> bool {
    if !is_root() {
        assert!(!in_ci(), "{what} needs root under CI=true");
        common::skip(&format!(
            "{what} needs root (it installs a setuid library and runs as nobody)"
        ));
    }
    is_root()
}

const NOBODY: u32 = 65534;

/// Runs as uid/gid 65534 (nobody), no supplementary groups.
fn as_nobody(program: &Path, preload: Option<&OsStr>) -> Command {
    let mut c = command("setpriv", false);
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
    ]);
    c.arg(program);
    if let Some(p) = preload {
        c.env("LD_PRELOAD", p);
    }
    c
}

/// Files this test put outside its temporary folder, removed even on panic.
struct Installed(Vec<PathBuf>);

impl Drop for Installed {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A folder where a set-user-ID bit takes effect (not mounted nosuid).
fn suid_capable(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated; st is written by the call.
    unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_NOSUID == 0 }
}

/// The trusted directory glibc searches for a secure-mode preload.
fn system_lib_dir() -> PathBuf {
    let multiarch = Command::new("cc")
        .arg("-print-multiarch")
        .output()
        .map(|o| text(&o.stdout).trim().to_string())
        .unwrap_or_default();
    for d in [
        format!("/usr/lib/{multiarch}"),
        "/usr/lib64".into(),
        "/usr/lib".into(),
    ] {
        if !d.ends_with('/') && Path::new(&d).is_dir() {
            return PathBuf::from(d);
        }
    }
    PathBuf::from("/usr/lib")
}

#[test]
fn a_setuid_program_run_by_an_ordinary_user_gets_no_change() {
    if probe().is_none() || !require_root("the secure-execution test") {
        return;
    }
    let Some(_) = require("setpriv", "apt-get install util-linux") else {
        return;
    };
    let dir = TempDir::new("setuid");
    assert!(
        suid_capable(&dir.0),
        "{} is mounted nosuid",
        dir.0.display()
    );
    let suid = dir.0.join("probe-setuid");
    let plain = dir.0.join("probe-plain");
    for (f, mode) in [(&suid, 0o4755), (&plain, 0o755)] {
        std::fs::copy(probe().unwrap(), f).unwrap();
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // glibc loads a preload into a secure-execution process only by a bare name, only from
    // its trusted directories, and only if the file is set-user-ID: give it every chance.
    let name = format!("libreuse-test-{}.so", std::process::id());
    let installed_lib = system_lib_dir().join(&name);
    let _installed = Installed(vec![installed_lib.clone()]);
    std::fs::copy(lib_path(), &installed_lib).unwrap();
    std::fs::set_permissions(&installed_lib, std::fs::Permissions::from_mode(0o4755)).unwrap();

    let port = free_port().to_string();
    let bind = ["bind", "4", "tcp", "127.0.0.1", port.as_str(), "loaded"];
    let go = |mut c: Command| -> (String, String) {
        c.args(bind).env("REUSE_LOG", "debug");
        let out = run(&mut c, Duration::from_secs(20));
        assert!(out.status.success(), "{out:?}");
        (text(&out.stdout).trim().to_string(), text(&out.stderr))
    };

    // The setuid program, run by nobody: mapped, and inert (and silent, even at debug).
    let (out, err) = go(as_nobody(&suid, Some(OsStr::new(&name))));
    assert_eq!(
        out, "rc=0 errno=4242 reuseaddr=0 reuseport=0 linger=0,0 loaded=1",
        "setuid under nobody"
    );
    assert_eq!(err, "", "setuid under nobody");
    // With a path (the usual way to preload) the loader does not even map it.
    let (out, _) = go(as_nobody(&suid, Some(installed_lib.as_os_str())));
    assert!(
        out.ends_with("reuseaddr=0 reuseport=0 linger=0,0 loaded=0"),
        "{out}"
    );

    // Controls: the same library acts in an ordinary process, of root or of nobody.
    let mut root = command(&plain, false);
    root.env("LD_PRELOAD", &name);
    let (out, err) = go(root);
    assert_eq!(
        out,
        "rc=0 errno=4242 reuseaddr=1 reuseport=0 linger=0,0 loaded=1"
    );
    assert!(err.contains("SO_REUSEADDR"), "{err}");
    let (out, _) = go(as_nobody(&plain, Some(OsStr::new(&name))));
    assert_eq!(
        out,
        "rc=0 errno=4242 reuseaddr=1 reuseport=0 linger=0,0 loaded=1"
    );
    eprintln!(
        "secure execution: setuid-root probe run by uid {NOBODY}: library mapped, bind unchanged"
    );
}

#[test]
fn the_kernel_refuses_so_reuseport_sharing_with_another_users_listener() {
    if probe().is_none() || !require_root("the other-user SO_REUSEPORT test") {
        return;
    }
    let Some(_) = require("setpriv", "apt-get install util-linux") else {
        return;
    };
    // Copies nobody can read and run, wherever the build put the originals.
    let dir = TempDir::new("otheruser");
    let prog = dir.0.join("probe");
    let lib = dir.0.join("libreuse.so");
    std::fs::copy(probe().unwrap(), &prog).unwrap();
    std::fs::copy(lib_path(), &lib).unwrap();
    for f in [&prog, &lib] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = free_port();
    let ps = port.to_string();
    let opts = ("REUSE_OPTIONS", "addr,port");
    let mut lc = command(&prog, false);
    lc.env("LD_PRELOAD", &lib).env(opts.0, opts.1);
    lc.args(["listen", "4", "127.0.0.1", &ps]);
    let _root_listener = spawn("root listener", &mut lc);
    assert!(wait_listening(port, Duration::from_secs(10)));

    let mut c = as_nobody(&prog, Some(lib.as_os_str()));
    c.env(opts.0, opts.1)
        .args(["bind", "4", "tcp", "127.0.0.1", &ps]);
    let out = run(&mut c, Duration::from_secs(20));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.starts_with("rc=-1 errno=98 reuseaddr=1 reuseport=1"),
        "nobody must not join root's SO_REUSEPORT group: {stdout} {stderr}"
    );
    assert!(
        stderr.contains("uid 0"),
        "the diagnosis names the other user: {stderr}"
    );

    // The control: root, the listener's own user, shares the port.
    let mut c = command(&prog, false);
    c.env("LD_PRELOAD", &lib).env(opts.0, opts.1);
    c.args(["bind", "4", "tcp", "127.0.0.1", &ps]);
    let out = run(&mut c, Duration::from_secs(20));
    assert!(
        text(&out.stdout).starts_with("rc=0 errno=4242 reuseaddr=1 reuseport=1"),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------
// What the library does to a process: system calls, files, environment.

struct Trace {
    /// (name, first argument, the whole line) of each call after the program's first
    /// socket(): what main() does, the loader and constructors left out.
    program: Vec<(String, String, String)>,
    /// Names of the calls before it (loader, constructors).
    startup: Vec<String>,
}

fn strace(cmd_env: &[(&str, &str)], preload: Option<&Path>, args: &[&str]) -> Trace {
    let strace = require("strace", "apt-get install strace").unwrap();
    let dir = TempDir::new("strace");
    let log = dir.0.join("trace");
    let mut c = command(&strace, false);
    c.args(["-f", "-qq", "-e", "trace=all", "-s", "64", "-o"])
        .arg(&log);
    if let Some(lib) = preload {
        // Through strace's -E, so that strace itself runs without the library.
        c.arg("-E").arg(format!("LD_PRELOAD={}", lib.display()));
    }
    for (k, v) in cmd_env {
        c.arg("-E").arg(format!("{k}={v}"));
    }
    c.arg(probe().unwrap()).args(args);
    let out = run(&mut c, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    let trace = std::fs::read_to_string(&log).unwrap();
    let mut t = Trace {
        program: Vec::new(),
        startup: Vec::new(),
    };
    let mut in_main = false;
    for line in trace.lines() {
        // "PID name(args) = result" with -f and -o.
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .trim_start();
        let Some((name, rest)) = call.split_once('(') else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // "+++ exited", "--- SIGCHLD", "<... resumed>"
        }
        in_main |= name == "socket";
        let first = rest.split([',', ')']).next().unwrap_or("").to_string();
        if in_main {
            t.program.push((name.to_string(), first, line.to_string()));
        } else {
            t.startup.push(name.to_string());
        }
    }
    t
}

fn counts<'a>(names: impl Iterator<Item = &'a str>) -> std::collections::BTreeMap<String, i64> {
    let mut m = std::collections::BTreeMap::new();
    for n in names {
        *m.entry(n.to_string()).or_insert(0) += 1;
    }
    m
}

/// with - without, per system call name, zero counts left out.
fn extra(
    with: &[(String, String, String)],
    without: &[(String, String, String)],
) -> Vec<(String, i64)> {
    let a = counts(with.iter().map(|c| c.0.as_str()));
    let b = counts(without.iter().map(|c| c.0.as_str()));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| (n.clone(), a.get(n).unwrap_or(&0) - b.get(n).unwrap_or(&0)))
        .filter(|(_, d)| *d != 0)
        .collect()
}

/// What the loader is told about the library: it needs no other library and imports no
/// symbol (each would be a lookup at every exec; the library finds libc's functions itself),
/// binds at load (BIND_NOW), and has build.rs's layout: two segments, no RELRO.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_library_needs_no_library_and_imports_no_symbol() {
    let Some(readelf) = require("readelf", "apt-get install binutils") else {
        return;
    };
    let lib = lib_path();
    let show = |flag: &str| {
        let out = run(
            Command::new(&readelf).args([flag, "-W"]).arg(&lib),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dynamic = show("-d");
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
    assert!(dynamic.contains("BIND_NOW"), "{dynamic}");
    assert!(!dynamic.contains("TEXTREL"), "{dynamic}");
    let symbols = show("--dyn-syms");
    let undefined: Vec<&str> = symbols
        .lines()
        .filter(|l| l.contains(" UND ") && !l.trim_end().ends_with("UND"))
        .collect();
    assert!(undefined.is_empty(), "imports: {undefined:?}");
    let exported: Vec<&str> = symbols
        .lines()
        .filter(|l| l.contains(" GLOBAL ") && l.contains(" FUNC "))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let mut want = vec!["bind", "close", "dup", "dup2", "dup3", "socket"];
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        want.push("dlopen");
    }
    let mut got = exported.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "the library exports the hooks and nothing else");
    let segments = show("-l");
    let loads = segments
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .count();
    assert_eq!(loads, 2, "{segments}");
    assert!(!segments.contains("GNU_RELRO"), "{segments}");
}

#[test]
fn strace_shows_the_library_adds_only_setsockopt_to_a_successful_bind() {
    if probe().is_none() {
        return;
    }
    if require("strace", "apt-get install strace").is_none() {
        return;
    }
    let lib = lib_path();
    let port = free_port().to_string();
    let args = ["bind", "4", "tcp", "127.0.0.1", port.as_str()];
    let plain = strace(&[], None, &args);
    let with = strace(&[], Some(&lib), &args);
    let added = extra(&with.program, &plain.program);
    eprintln!(
        "strace, program part: without the library {:?}; added by it {added:?}",
        counts(plain.program.iter().map(|c| c.0.as_str()))
    );
    // The first inet socket() maps the descriptor table (1 MiB of address space, not
    // mapped at load so that programs that never make a socket do not pay for it); the
    // bind adds the one setsockopt.
    assert_eq!(
        added,
        [("mmap".to_string(), 1), ("setsockopt".to_string(), 1)],
        "{:#?}",
        with.program
    );
    let table = "1048576, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE";
    let at = |name: &str| with.program.iter().position(|c| c.0 == name);
    let map = with
        .program
        .iter()
        .position(|c| c.0 == "mmap" && c.2.contains(table));
    assert!(
        map.is_some() && at("socket") < map && map < at("setsockopt"),
        "{:#?}",
        with.program
    );
    let set = with.program.iter().find(|c| c.0 == "setsockopt").unwrap();
    assert!(
        set.2.contains("SOL_SOCKET, SO_REUSEADDR, [1], 4"),
        "{}",
        set.2
    );

    // Loading: the library's constructor makes no system call, and the only file touched
    // because of it is the library itself, mapped by the loader. Compare with a preload
    // that does nothing at all.
    let empty = {
        let dir = std::env::temp_dir().join(format!("reuse-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let so = dir.join("empty_preload.so");
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&so)
            .arg(repo_root().join("tests/c/empty_preload.c"))
            .status()
            .unwrap();
        assert!(st.success());
        so
    };
    let baseline = strace(&[], Some(&empty), &args);
    let as_calls = |t: &[String]| -> Vec<(String, String, String)> {
        t.iter()
            .map(|n| (n.clone(), String::new(), String::new()))
            .collect()
    };
    let loading = extra(&as_calls(&with.startup), &as_calls(&baseline.startup));
    // The loader maps libreuse.so in two segments without RELRO (build.rs), so it makes no
    // mmap or mprotect an empty C library built with the compiler's defaults does not;
    // the constructor makes one fstat of descriptor 2 (so no log line ever goes to a file
    // that takes that number later); nothing else may be added.
    // (Built by rustc's lld on x86_64 that is two mmap calls and one mprotect fewer.)
    for (name, count) in &loading {
        assert!(
            (name == "fstat" && *count == 1) || *count < 0,
            "startup with libreuse.so vs an empty preload differs in {name}: {loading:?}\n{:?}\n{:?}",
            with.startup,
            baseline.startup
        );
    }
    assert!(loading.contains(&("fstat".to_string(), 1)), "{loading:?}");
    eprintln!(
        "strace, startup: {} calls with libreuse.so, {} with an empty preload (difference {loading:?}), {} without any",
        with.startup.len(),
        baseline.startup.len(),
        plain.startup.len()
    );

    // At REUSE_LOG=info the library speaks: the added calls are the option, its PID for the
    // line, a look at what descriptor 2 is (still the file it was at load, and no network
    // connection), SIGPIPE held off around the write (a stderr pipe without a reader must
    // not kill the host), and one write, to stderr; and the table's mmap, as above.
    let info = strace(&[("REUSE_LOG", "info")], Some(&lib), &args);
    let added = extra(&info.program, &plain.program);
    for (name, n) in &added {
        assert!(
            [
                "mmap",
                "setsockopt",
                "getpid",
                "fstat",
                "getsockopt",
                "rt_sigpending",
                "rt_sigprocmask",
                "write"
            ]
            .contains(&name.as_str())
                && *n > 0,
            "{added:?}"
        );
    }
    let on_stderr = |name: &str| {
        info.program
            .iter()
            .filter(|c| c.0 == name && c.1 == "2")
            .count() as i64
    };
    let added_getsockopt = added
        .iter()
        .find(|a| a.0 == "getsockopt")
        .map_or(0, |a| a.1);
    assert_eq!(
        added_getsockopt,
        on_stderr("getsockopt"),
        "{:#?}",
        info.program
    );
    let writes: Vec<&String> = info
        .program
        .iter()
        .filter(|c| c.0 == "write" && c.1 != "1")
        .map(|c| &c.2)
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].contains("write(2, \"libreuse["), "{}", writes[0]);
}

#[test]
fn after_a_failed_bind_the_library_only_reads_proc_and_writes_stderr() {
    if probe().is_none() || require("strace", "apt-get install strace").is_none() {
        return;
    }
    let held = free_port();
    let mut lc = command(probe().unwrap(), false);
    lc.args(["listen", "4", "127.0.0.1", &held.to_string()]);
    let _holder = spawn("holder", &mut lc);
    assert!(wait_listening(held, Duration::from_secs(10)));
    let hs = held.to_string();
    let t = strace(
        &[("REUSE_WAIT_MS", "30")],
        Some(&lib_path()),
        &["bind", "4", "tcp", "127.0.0.1", &hs],
    );
    let mut opened = Vec::new();
    for (name, first, line) in &t.program {
        match name.as_str() {
            "open" | "openat" | "openat2" | "creat" => {
                assert!(
                    line.contains("\"/proc/") || line.contains("\"/proc\""),
                    "opened outside /proc: {line}"
                );
                assert!(line.contains("O_RDONLY"), "not read-only: {line}");
                assert!(
                    !line.contains("O_CREAT")
                        && !line.contains("O_WRONLY")
                        && !line.contains("O_RDWR")
                );
                opened.push(line.split('"').nth(1).unwrap_or("").to_string());
            }
            "write" | "writev" | "pwrite64" | "sendto" | "sendmsg" => assert!(
                first == "1" || first == "2",
                "the probe writes stdout, the library stderr; nothing else: {line}"
            ),
            "unlink" | "unlinkat" | "rename" | "renameat" | "renameat2" | "mkdir" | "mkdirat"
            | "truncate" | "ftruncate" | "chmod" | "fchmod" | "fchmodat" => {
                panic!("changes a file: {line}")
            }
            _ => {}
        }
    }
    opened.sort();
    opened.dedup();
    let shown: Vec<&String> = opened.iter().take(6).collect();
    eprintln!(
        "after EADDRINUSE the library opened {} distinct /proc paths, read-only: {shown:?} ...",
        opened.len()
    );
    assert!(opened.iter().any(|p| p == "/proc/net/tcp"), "{opened:?}");
}

#[test]
fn the_library_reads_no_environment_variable_but_its_own() {
    // The library walks `environ` once, read-only, and keeps only the REUSE_* names it
    // knows (reuse_core::config::pick_variables, unit-tested there). Here, from outside:
    // look-alikes of its variables, set to values that would be invalid, change nothing,
    // and the library imports nothing that could change the environment.
    if probe().is_none() {
        return;
    }
    let port = free_port().to_string();
    let lookalikes = [
        ("REUSE_PORTSX", "0"),
        ("XREUSE_PORTS", "0"),
        ("reuse_ports", "0"),
        ("REUSE_PORT", "0"),
        ("REUSE_", "0"),
        ("REUSE_LOG_LEVEL", "loud"),
        ("REUSE_OPTIONS_", "nonsense"),
    ];
    let mut c = command(probe().unwrap(), true);
    c.args(["bind", "4", "tcp", "127.0.0.1", &port]);
    c.envs(lookalikes.iter().copied());
    let o = run(&mut c, Duration::from_secs(20));
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(out.starts_with("rc=0 errno=4242 reuseaddr=1 "), "{out}");
    assert_eq!(err, "", "look-alike variables must be ignored: {err}");

    let Some(nm) = require("nm", "apt-get install binutils") else {
        return;
    };
    let out = run(
        Command::new(nm)
            .args(["-D", "--undefined-only"])
            .arg(lib_path()),
        Duration::from_secs(20),
    );
    let imports: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .last()
                .map(|s| s.split('@').next().unwrap().to_string())
        })
        .collect();
    for forbidden in [
        "getenv",
        "secure_getenv",
        "__secure_getenv",
        "setenv",
        "unsetenv",
        "putenv",
        "clearenv",
        "getenv_r",
        "fopen",
        "fopen64",
        "open64",
        "creat",
        "mkstemp",
    ] {
        assert!(
            !imports.iter().any(|i| i == forbidden),
            "libreuse.so imports {forbidden}: {imports:?}"
        );
    }
    eprintln!("libreuse.so: environment access: environ, read once; imports {imports:?}");
}
