//! reuse-testkit: what every integration test and the benchmark need: the freshly built library and command, free loopback
//! ports, real child processes that are always reaped, and the kernel's socket table.
//!
//! The library under test is the one `cargo build --release` (or the profile the tests were
//! built with) wrote next to the test binary's folder; nothing is mocked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reuse_core::proc_net;

/// target/<profile>/, found from the test binary in target/<profile>/deps/.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn lib_path() -> PathBuf {
    let name = if cfg!(target_vendor = "apple") {
        "libreuse.dylib"
    } else {
        "libreuse.so"
    };
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build --release` (the README's test command does)",
        p.display()
    );
    p
}

pub fn reuse_bin() -> PathBuf {
    let p = target_dir().join("reuse");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release` first",
        p.display()
    );
    p
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The path of `tool` on PATH. Missing: a failure under CI=true, else None after a message
/// saying what to install (the test then returns early).
pub fn require(tool: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(!in_ci(), "{tool} is required under CI=true: {install}");
        skip(&format!("{tool} not found; install it with: {install}"));
    }
    found
}

/// Says that a test is skipped and why, on stderr past the test harness's capture (so a
/// plain `cargo test` shows it beside the test's `ok`), and in target/test-skips.log, one
/// line per skip, which .ci/run counts in its closing line and clears before each run: no
/// skip is silent. Under CI=true a skip is a failure.
pub fn skip(why: &str) {
    use std::io::Write;
    assert!(!in_ci(), "skipped under CI=true: {why}");
    let test = std::thread::current().name().unwrap_or("?").to_string();
    // Written to the stream itself, not with eprintln!, which the harness captures.
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let bin = exe
        .rsplit_once('-')
        .map_or(exe.as_str(), |(b, _)| b)
        .to_string();
    let line = format!("{bin}::{test}: {why}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target_dir().join("test-skips.log"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The project's Python: the venv .ci/install makes (.venv, with tests/requirements.txt),
/// else the real interpreter of python3 on PATH (not a pyenv shim script, whose extra
/// processes would each load the library and add noise).
pub fn python() -> PathBuf {
    let venv = repo_root().join(".venv/bin/python3");
    if venv.exists() {
        return venv;
    }
    assert!(
        !in_ci(),
        "the project's venv is required under CI=true: .ci/install makes it"
    );
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 must be installed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The system's own Python (Debian's /usr/bin/python3), which every user can run: for
/// processes the tests run as another uid (the python() of root's environment may live
/// under root's home).
pub fn system_python() -> PathBuf {
    let p = PathBuf::from("/usr/bin/python3");
    assert!(
        p.exists(),
        "/usr/bin/python3 is needed: apt-get install python3"
    );
    p
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A loopback TCP port below the ephemeral range (so no client connection takes it while a
/// server is down), bindable now, with no socket of any state on it, on v4 and v6.
pub fn free_port() -> u16 {
    let base = 20000 + (std::process::id() % 400) as u16 * 30;
    for _ in 0..2000 {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = base.wrapping_add(n.wrapping_mul(7)) % 12000 + 20000;
        if sockets_on_port(port).is_empty()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port found in 20000-32000");
}

/// `n` consecutive ports, each free for TCP and UDP on 127.0.0.1 and ::1 right now, taken
/// from 12000-19999: below the range `free_port` hands out to other tests (20000-32000), so
/// no test running beside this one is given a port of the block while its threads bind.
pub fn free_block(n: u16) -> u16 {
    let start = 12000 + (std::process::id() % 97) as u16 * 80;
    for k in 0..200u16 {
        let b = 12000 + (start - 12000 + k * (n + 16)) % (8000 - n);
        let ok = (b..b + n).all(|p| {
            sockets_on_port(p).is_empty()
                && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
                && std::net::TcpListener::bind(("::1", p)).is_ok()
                && std::net::UdpSocket::bind(("::1", p)).is_ok()
        });
        if ok {
            return b;
        }
    }
    panic!("no block of {n} free ports in 12000-19999");
}

/// Every TCP socket on `port` (v4 and v6), from the kernel's tables.
pub fn sockets_on_port(port: u16) -> Vec<proc_net::TcpEntry> {
    let mut v = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read(f).unwrap_or_default();
        for line in text.split(|b| *b == b'\n') {
            if let Some(e) = proc_net::parse_line(line) {
                if e.local.port() == port {
                    v.push(e);
                }
            }
        }
    }
    v
}

pub fn time_wait_count(port: u16) -> usize {
    sockets_on_port(port)
        .iter()
        .filter(|e| e.state == proc_net::TCP_TIME_WAIT)
        .count()
}

pub fn listening(port: u16) -> bool {
    sockets_on_port(port)
        .iter()
        .any(|e| e.state == proc_net::TCP_LISTEN)
}

/// A child process that is killed (its whole process group) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        kill(self.pid(), sig);
    }

    /// Signals the process group the child leads (it and the children it started).
    pub fn signal_group(&self, sig: i32) {
        kill(-self.pid(), sig);
    }

    /// Waits up to `timeout` for the exit; kills the group after that. True if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stops it the way a supervisor would (`sig`), and waits for it to be gone.
    pub fn stop(&mut self, sig: i32) {
        self.signal(sig);
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }

    pub fn stderr_text(mut self) -> String {
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
        } else {
            // The leader is gone; children it left in its group may not be.
            self.signal_group(libc::SIGKILL);
        }
    }
}

/// `cmd.spawn()`, retried on ETXTBSY: a program a test has just copied can be "busy" for a
/// moment while another test's fork still holds the copy's write descriptor (until that
/// child's exec closes it).
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Starts `cmd` in a process group of its own (so its children can be killed with it),
/// stdout discarded, stderr captured.
pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.process_group(0);
    let child = spawn_retrying(cmd).unwrap_or_else(|e| panic!("spawning {name}: {e}"));
    Proc {
        child,
        name: name.to_string(),
    }
}

/// `cmd` with the library preloaded (or not), and the REUSE_* variables of the test's own
/// environment removed so every test states what it uses.
pub fn command(program: impl AsRef<std::ffi::OsStr>, preload: bool) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REUSE_") || k == "LD_PRELOAD" {
            c.env_remove(k);
        }
    }
    if preload {
        c.env(preload_var(), lib_path());
    }
    c
}

pub fn preload_var() -> &'static str {
    if cfg!(target_vendor = "apple") {
        "DYLD_INSERT_LIBRARIES"
    } else {
        "LD_PRELOAD"
    }
}

/// Runs to completion with a time bound; panics if it does not end in time.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.process_group(0);
    let mut child = spawn_retrying(cmd).expect("spawn");
    let t0 = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if t0.elapsed() > timeout {
            kill(-(child.id() as i32), libc::SIGKILL);
            let out = child.wait_with_output().expect("output");
            panic!(
                "timed out after {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One HTTP/1.0 GET; the server closes first, which leaves TIME_WAIT on the server's port.
pub fn http_get(host: &str, port: u16) -> std::io::Result<String> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .expect("address");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Polls until a GET is answered or `timeout` passes; the time it took if it was.
pub fn wait_http(host: &str, port: u16, timeout: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if let Ok(r) = http_get(host, port) {
            if !r.is_empty() {
                return Some(t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Polls until `port` has a listener or `timeout` passes.
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if listening(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Asks `n` requests so the server closes `n` connections first, then checks the kernel
/// really holds TIME_WAIT sockets on the port (the condition every restart test is about).
pub fn leave_time_wait(host: &str, port: u16, n: usize) {
    for _ in 0..n {
        http_get(host, port).expect("request to the running server");
    }
    let t0 = Instant::now();
    while time_wait_count(port) == 0 && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        time_wait_count(port) > 0,
        "no TIME_WAIT socket on port {port} after {n} requests"
    );
}

pub fn repo_root() -> PathBuf {
    // This crate lives in testkit/ of the repository.
    let kit = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    kit.parent().map(Path::to_path_buf).unwrap_or(kit)
}

/// Builds a C file from the repo with cc into a temporary folder; None (skip) without cc.
pub fn build_c(src: &str, out_name: &str, compiler: &str) -> Option<PathBuf> {
    build_c_with(src, out_name, compiler, &["-lpthread"])
}

/// Builds a C file from the repo with `compiler` and `flags` (after the source) into a
/// temporary folder of this test binary; None (skip) without the compiler.
pub fn build_c_with(src: &str, out_name: &str, compiler: &str, flags: &[&str]) -> Option<PathBuf> {
    let cc = require(compiler, "apt-get install gcc (or musl-tools for musl-gcc)")?;
    let dir = std::env::temp_dir().join(format!("reuse-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(out_name);
    let status = Command::new(cc)
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(repo_root().join(src))
        .args(flags)
        .status()
        .expect("cc");
    assert!(status.success(), "building {src} failed");
    Some(out)
}

/// A shared library built from a C file of the repo with cc (`-shared -fPIC` and `flags`).
pub fn build_shared(src: &str, out_name: &str, flags: &[&str]) -> Option<PathBuf> {
    let mut all = vec!["-shared", "-fPIC"];
    all.extend_from_slice(flags);
    build_c_with(src, out_name, "cc", &all)
}

/// nodemon as `.ci/install` puts it (`npm ci` in tests/node); None (skip) when missing
/// locally, a failure under CI=true.
pub fn nodemon() -> Option<PathBuf> {
    require("node", "apt-get install nodejs")?;
    let p = repo_root().join("tests/node/node_modules/.bin/nodemon");
    if !p.exists() {
        let hint = "cd tests/node && npm ci (or run .ci/install)";
        assert!(!in_ci(), "nodemon is required under CI=true: {hint}");
        skip(&format!(
            "nodemon is not installed; install it with: {hint}"
        ));
        return None;
    }
    Some(p)
}

/// tests/c/probe.c, built once per test binary; None (skip) without cc.
pub fn probe() -> Option<PathBuf> {
    static PROBE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| build_c_with("tests/c/probe.c", "probe", "cc", &["-lpthread", "-ldl"]))
        .clone()
}

/// A folder of the test's own under the system's temporary folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh folder (mode 0755), unique to this call even with the same tag.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU16 = AtomicU16::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("reuse-test-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` in the folder, with `mode`; its path.
    pub fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

/// Whether `pid` runs (a zombie, which still answers kill(0), does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// The median of `v` (the mean of the middle two of an even count); None when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// A test's knob from the environment, a number from `range`, else `default` when unset;
/// any other value fails the test, naming the variable.
pub fn env_number(name: &str, range: std::ops::RangeInclusive<u64>, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => n,
            _ => panic!(
                "{name} must be a number from {} to {}, not {v:?}",
                range.start(),
                range.end()
            ),
        },
        Err(_) => default,
    }
}

/// A shared library built with cc from any C source (`-shared -fPIC` and `flags`), at `out`.
pub fn build_shared_from(source: &Path, out: &Path, flags: &[&str]) {
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(source)
        .args(flags)
        .status()
        .expect("cc")
        .success();
    assert!(ok, "building {} failed", out.display());
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// kill(2): `pid` a process (or, negative, a process group) this test started.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill touches no memory of this process.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// mkfifo(3) at `path`.
pub fn mkfifo(path: &Path, mode: u32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is NUL-terminated and outlives the call.
    unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) == 0 }
}

/// Whether this host can bind IPv6 loopback.
pub fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Root and setpriv, to run a program as another uid; None (skip) without them, a failure
/// under CI=true (which runs as root).
pub fn setpriv() -> Option<PathBuf> {
    if !is_root() {
        assert!(!in_ci(), "CI runs the tests as root");
        skip("needs root (to run a process as a second uid)");
        return None;
    }
    require("setpriv", "apt-get install util-linux")
}

/// `setpriv` arguments that run a program as uid/gid `uid` with no supplementary groups.
pub fn as_uid(uid: u32) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

/// Waits until `path` exists (at most `timeout`).
pub fn wait_file(path: &Path, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while !path.exists() {
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Each C program of the tests, built once per test process (None: no compiler, skipped).
pub type Built = std::sync::Mutex<Vec<(&'static str, Option<PathBuf>)>>;

pub fn c_program(src: &'static str, name: &'static str) -> Option<PathBuf> {
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

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads one line from a child's stdout, waiting at most `timeout`. None on EOF or time out.
pub fn read_line(out: &mut std::process::ChildStdout, timeout: Duration) -> Option<String> {
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
pub struct Group(pub Child);

impl Group {
    pub fn start(cmd: &mut Command) -> Group {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Group(cmd.spawn().expect("spawn"))
    }

    pub fn ready(&mut self, timeout: Duration) -> Option<String> {
        read_line(self.0.stdout.as_mut().unwrap(), timeout)
    }

    /// SIGKILL to the group, reaped; what it wrote on stderr.
    pub fn kill(&mut self) -> String {
        kill(-(self.0.id() as i32), libc::SIGKILL);
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

pub mod harness;
