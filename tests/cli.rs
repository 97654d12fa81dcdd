//! The `reuse` command and the shims, as users run them: the built binary and library, real
//! child processes, real ports on 127.0.0.1 and ::1.

use reuse_testkit as common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{has_ipv6, python, reuse_bin, TempDir};

const T: Duration = Duration::from_secs(20);

/// The built command with a clean environment: no REUSE_* and no LD_PRELOAD of the test's own.
fn reuse() -> Command {
    common::command(reuse_bin(), false)
}

fn run(cmd: &mut Command) -> Output {
    common::run(cmd, T)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn lib() -> PathBuf {
    common::lib_path().canonicalize().unwrap()
}

/// A TCP server that answers one HTTP line per connection and closes first (leaving
/// TIME_WAIT on its port), with socketserver's default of no SO_REUSEADDR: a restart of it
/// fails with EADDRINUSE unless both instances ran under reuse.
const PLAIN_SERVER: &str = r#"
import socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
class S(socketserver.TCPServer):
    allow_reuse_address = False
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Listens on 127.0.0.1:PORT and, where the host has IPv6, on [::1]:PORT, until killed.
const LISTENER: &str = r#"
import socket, sys, time
port, fams = int(sys.argv[1]), sys.argv[2]
keep = []
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    if (fam == socket.AF_INET and "4" in fams) or (fam == socket.AF_INET6 and "6" in fams):
        s = socket.socket(fam)
        s.bind((host, port))
        s.listen()
        keep.append(s)
time.sleep(60)
"#;

// ---------------------------------------------------------------- reuse run

#[test]
fn run_prepends_the_library_to_ld_preload_without_replacing_it() {
    let lib = lib();
    let o = run(reuse().args(["run", "--", "sh", "-c", "echo \"$LD_PRELOAD\""]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), lib.to_str().unwrap());

    // An existing entry stays, after the library (the loader's first match wins).
    let o = run(reuse().env("LD_PRELOAD", "/nonexistent/other.so").args([
        "run",
        "--",
        "sh",
        "-c",
        "echo \"$LD_PRELOAD\"",
    ]));
    assert_eq!(
        stdout(&o).trim(),
        format!("{}:/nonexistent/other.so", lib.display())
    );

    // Already there: not added twice.
    let o = run(reuse().env("LD_PRELOAD", &lib).args([
        "run",
        "--",
        "sh",
        "-c",
        "echo \"$LD_PRELOAD\"",
    ]));
    assert_eq!(stdout(&o).trim(), lib.to_str().unwrap());

    // And the loader really maps it into the command.
    let o = run(reuse().args(["run", "--", "cat", "/proc/self/maps"]));
    assert!(stdout(&o).contains(lib.to_str().unwrap()));
}

#[test]
fn run_sets_the_variables_of_the_flags_given_and_leaves_inherited_ones() {
    let o = run(reuse().env("REUSE_LOG", "info").args([
        "run",
        "--ports",
        "8000,9000-9010",
        "--wait",
        "250",
        "--takeover",
        "--",
        "env",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut vars: Vec<&str> = Vec::new();
    let text = stdout(&o);
    vars.extend(text.lines().filter(|l| l.starts_with("REUSE_")));
    vars.sort();
    assert_eq!(
        vars,
        [
            "REUSE_LOG=info",
            "REUSE_PORTS=8000,9000-9010",
            "REUSE_TAKEOVER=1",
            "REUSE_WAIT_MS=250"
        ]
    );

    let o = run(reuse().args([
        "run",
        "--options",
        "addr,port",
        "--protocols",
        "tcp,udp",
        "--log",
        "debug",
        "--",
        "env",
    ]));
    let text = stdout(&o);
    for v in [
        "REUSE_OPTIONS=addr,port",
        "REUSE_PROTOCOLS=tcp,udp",
        "REUSE_LOG=debug",
    ] {
        assert!(text.lines().any(|l| l == v), "{v} missing in:\n{text}");
    }
    assert!(!text.contains("REUSE_PORTS="), "{text}");
}

#[test]
fn run_execs_so_pid_exit_status_and_signals_are_the_commands() {
    // Same PID: the shell's $$ is the process `reuse` was started as.
    let child = reuse()
        .args(["run", "--", "sh", "-c", "echo $$"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o).trim(), pid.to_string());

    let o = run(reuse().args(["run", "--", "sh", "-c", "exit 7"]));
    assert_eq!(o.status.code(), Some(7));

    let o = run(reuse().args(["run", "--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(o.status.signal(), Some(libc::SIGTERM));

    // A signal sent to the PID a supervisor started reaches the program itself.
    let mut p = common::spawn("sleep", reuse().args(["run", "--", "sleep", "30"]));
    std::thread::sleep(Duration::from_millis(200));
    p.signal(libc::SIGTERM);
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("sleep ended by SIGTERM");
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[test]
fn run_rejects_bad_flags_with_status_2_naming_the_flag_and_the_bad_part() {
    for (flag, value, part) in [
        ("--ports", "80,http", "http"),
        ("--ports", "0", "0"),
        ("--ports", "9010-9000", "9010-9000"),
        ("--options", "addr,adr", "adr"),
        ("--options", "linger=x", "linger=x"),
        ("--protocols", "tcp,sctp", "sctp"),
        ("--wait", "-1", "-1"),
        ("--wait", "3600001", "3600001"),
        ("--log", "verbose", "verbose"),
    ] {
        let o = run(reuse().args(["run", flag, value, "--", "sh", "-c", "echo ran"]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
        assert!(
            err.contains(&format!("\"{part}\"")),
            "{flag} {value}: {err}"
        );
        assert!(
            stdout(&o).is_empty(),
            "the command ran despite {flag} {value}"
        );
    }
    // No command at all is a usage error too.
    assert_eq!(run(reuse().args(["run"])).status.code(), Some(2));
    assert_eq!(
        run(reuse().args(["run", "--ports", "80"])).status.code(),
        Some(2)
    );
}

#[test]
fn run_refuses_invalid_inherited_configuration_up_front() {
    for (var, value) in [
        ("REUSE_PORTS", "0"),
        ("REUSE_PORTS", ""),
        ("REUSE_OPTIONS", "addr,addr"),
        ("REUSE_TAKEOVER", "yes"),
        ("REUSE_WAIT_MS", "soon"),
    ] {
        let o = run(reuse()
            .env(var, value)
            .args(["run", "--", "sh", "-c", "echo ran"]));
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {}", stderr(&o));
        assert!(stderr(&o).contains(var), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
    // A flag overrides the inherited value, so what the command would see is valid.
    let o = run(reuse().env("REUSE_PORTS", "0").args([
        "run",
        "--ports",
        "8000",
        "--",
        "sh",
        "-c",
        "echo $REUSE_PORTS",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "8000");
}

#[test]
fn run_reports_missing_and_unrunnable_commands_like_env() {
    let o = run(reuse().args(["run", "--", "reuse-no-such-command"]));
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("reuse-no-such-command"),
        "{}",
        stderr(&o)
    );

    let dir = TempDir::new("noexec");
    let f = dir.write("data.txt", "not a program\n", 0o644);
    let o = run(reuse().arg("run").arg("--").arg(&f));
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("data.txt"));
}

#[test]
fn run_restarts_a_python_server_through_time_wait() {
    let dir = TempDir::new("restart");
    let script = dir.write("server.py", PLAIN_SERVER, 0o644);
    let port = common::free_port();
    let py = python();
    let under_reuse = || {
        let mut c = reuse();
        c.arg("run")
            .args(["--ports", &port.to_string(), "--"])
            .arg(&py)
            .arg(&script)
            .arg(port.to_string());
        c
    };

    let mut first = common::spawn("first", &mut under_reuse());
    assert!(
        common::wait_listening(port, Duration::from_secs(10)),
        "first instance did not listen"
    );
    common::leave_time_wait("127.0.0.1", port, 3);
    first.stop(libc::SIGTERM);
    assert!(common::time_wait_count(port) > 0);

    // Without reuse the same server cannot come back: that is what the command fixes.
    let mut plain = common::command(&py, false);
    plain.arg(&script).arg(port.to_string());
    let o = run(&mut plain);
    assert!(
        !o.status.success(),
        "a plain restart bound through TIME_WAIT"
    );
    assert!(
        stderr(&o).contains("Address already in use"),
        "{}",
        stderr(&o)
    );

    let second = common::spawn("second", &mut under_reuse());
    let took = common::wait_http("127.0.0.1", port, Duration::from_secs(10));
    assert!(
        took.is_some(),
        "the restart under reuse did not come back: {}",
        second.stderr_text()
    );
}

/// A statically linked program, or None (skip) where libc.a is missing outside CI.
fn static_program(dir: &TempDir) -> Option<PathBuf> {
    let cc = common::require("cc", "apt-get install gcc libc6-dev")?;
    let libc_a = Command::new(&cc)
        .arg("-print-file-name=libc.a")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.exists());
    if libc_a.is_none() {
        assert!(
            !common::in_ci(),
            "libc.a is required under CI=true: apt-get install libc6-dev"
        );
        common::skip("no libc.a for a static build; install it with: apt-get install libc6-dev");
        return None;
    }
    let src = dir.write(
        "static.c",
        "#include <stdio.h>\nint main(void) { puts(\"static ok\"); return 0; }\n",
        0o644,
    );
    let out = dir.join("static-prog");
    let st = Command::new(cc)
        .arg("-static")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc -static failed");
    Some(out)
}

#[test]
fn run_warns_when_the_program_is_statically_linked() {
    let dir = TempDir::new("static");
    let Some(prog) = static_program(&dir) else {
        return;
    };
    let o = run(reuse().arg("run").arg("--").arg(&prog));
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "static ok", "the program still runs");
    let err = stderr(&o);
    assert!(err.contains("statically linked"), "{err}");
    assert!(err.contains(prog.to_str().unwrap()), "{err}");

    // Found through PATH as well.
    let path = format!(
        "{}:{}",
        dir.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = run(reuse().env("PATH", path).args(["run", "--", "static-prog"]));
    assert!(stderr(&o).contains("statically linked"), "{}", stderr(&o));

    // A script is judged by its interpreter.
    let script = dir.write(
        "script",
        &format!("#!{}\nthis line is never read\n", prog.display()),
        0o755,
    );
    let o = run(reuse().arg("run").arg("--").arg(&script));
    let err = stderr(&o);
    assert!(
        err.contains("statically linked") && err.contains("interpreter"),
        "{err}"
    );

    // --log error (or REUSE_LOG below warn) quiets the command too.
    let o = run(reuse().args(["run", "--log", "error", "--"]).arg(&prog));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn run_warns_that_go_programs_bypass_libc() {
    // A C program carrying the section Go's linker writes into every binary it links: the
    // check reads section names, so this stands in for a Go build without a Go toolchain.
    let dir = TempDir::new("go");
    let src = dir.write(
        "fakego.c",
        "__attribute__((section(\".go.buildinfo\"), used))\n\
         static const char info[] = \"\\xff Go buildinf:\";\n\
         int main(void) { return 0; }\n",
        0o644,
    );
    let Some(cc) = common::require("cc", "apt-get install gcc") else {
        return;
    };
    let prog = dir.join("fakego");
    let st = Command::new(cc)
        .arg("-o")
        .arg(&prog)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc failed");
    let o = run(reuse().arg("run").arg("--").arg(&prog));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("Go program") && err.contains("SO_REUSEADDR"),
        "{err}"
    );
}

fn copy_of(tool: &str, dir: &TempDir, name: &str, mode: u32) -> PathBuf {
    let src = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{tool} not on PATH"));
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
    dst
}

#[test]
fn run_warns_about_setuid_setgid_and_file_capabilities() {
    let dir = TempDir::new("setuid");
    for (mode, word) in [(0o4755, "setuid"), (0o2755, "setgid")] {
        let prog = copy_of("true", &dir, word, mode);
        let o = run(reuse().arg("run").arg("--").arg(&prog));
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(word) && err.contains("LD_PRELOAD"), "{err}");
    }

    // File capabilities need setcap and the right to use it (root); skipped otherwise.
    let prog = copy_of("true", &dir, "capable", 0o755);
    let setcap = ["/usr/sbin/setcap", "/sbin/setcap"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let granted = setcap.is_some_and(|s| {
        Command::new(s)
            .arg("cap_net_bind_service+ep")
            .arg(&prog)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    });
    if !granted {
        common::skip("file capabilities: setcap missing or not permitted (apt-get install libcap2-bin; run as root)");
        return;
    }
    let o = run(reuse().arg("run").arg("--").arg(&prog));
    assert!(stderr(&o).contains("file capabilities"), "{}", stderr(&o));
}

#[test]
fn run_is_quiet_for_programs_the_library_reaches() {
    let dir = TempDir::new("quiet");
    let script = dir.write("hello", "#!/usr/bin/env sh\necho hello\n", 0o755);
    for args in [
        vec![OsStr::new("sh"), OsStr::new("-c"), OsStr::new("true")],
        vec![script.as_os_str()],
        vec![python().as_os_str(), OsStr::new("-c"), OsStr::new("pass")],
    ] {
        let o = run(reuse().args(["run", "--"]).args(&args));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

// ---------------------------------------------------------------- reuse lib

#[test]
fn lib_prints_the_absolute_path_of_the_built_library() {
    let o = run(reuse().arg("lib"));
    assert!(o.status.success(), "{}", stderr(&o));
    let p = PathBuf::from(stdout(&o).trim_end_matches('\n'));
    assert!(p.is_absolute() && p.is_file(), "{}", p.display());
    assert_eq!(p, lib());
}

#[test]
fn lib_honours_reuse_lib_and_refuses_a_missing_one() {
    let dir = TempDir::new("reuse-lib");
    let copy = dir.join("libreuse.so");
    std::fs::copy(lib(), &copy).unwrap();
    let copy = copy.canonicalize().unwrap();

    let o = run(reuse().env("REUSE_LIB", &copy).arg("lib"));
    assert_eq!(stdout(&o).trim(), copy.to_str().unwrap());

    // A relative REUSE_LIB comes back absolute.
    let o = run(reuse()
        .current_dir(&dir.0)
        .env("REUSE_LIB", "libreuse.so")
        .arg("lib"));
    assert_eq!(stdout(&o).trim(), copy.to_str().unwrap());

    // `run` preloads the same one.
    let o =
        run(reuse()
            .env("REUSE_LIB", &copy)
            .args(["run", "--", "sh", "-c", "echo $LD_PRELOAD"]));
    assert_eq!(stdout(&o).trim(), copy.to_str().unwrap());

    let missing = dir.join("nope/libreuse.so");
    for args in [vec!["lib"], vec!["run", "--", "true"]] {
        let o = run(reuse().env("REUSE_LIB", &missing).args(&args));
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("REUSE_LIB"), "{}", stderr(&o));
    }
}

#[test]
fn lib_is_found_beside_the_command_and_in_lib_next_to_it() {
    let dir = TempDir::new("layout");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let bin = dir.join("bin/reuse");
    std::fs::copy(reuse_bin(), &bin).unwrap();

    let cache = dir.join("cache");
    let lib_of = |bin: &Path| {
        let o = run(common::command(bin, false)
            .env("XDG_CACHE_HOME", &cache)
            .arg("lib"));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        PathBuf::from(stdout(&o).trim())
    };
    // Nothing beside it: the copy the command carries, written to the cache once.
    let carried = lib_of(&bin);
    assert!(
        carried.starts_with(cache.join("reuse")),
        "{}",
        carried.display()
    );
    let mark = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        let at = b
            .windows(18)
            .position(|w| w == b"libreuse-version: ")
            .unwrap();
        let end = b[at..].iter().position(|c| *c == b'\n').unwrap();
        String::from_utf8_lossy(&b[at..at + end]).to_string()
    };
    assert_eq!(
        mark(&carried),
        mark(&lib()),
        "the same version as the built library"
    );
    let mode = std::fs::metadata(cache.join("reuse"))
        .unwrap()
        .permissions()
        .mode();
    // Writable by this user alone; readable by all, so that a program that drops root's
    // privileges can still load the copy.
    assert_eq!(mode & 0o777, 0o755, "the cache folder's mode");
    let file_mode = std::fs::metadata(&carried).unwrap().permissions().mode();
    assert_eq!(file_mode & 0o777, 0o644, "the cached copy's mode");
    assert_eq!(lib_of(&bin), carried, "written once, found again");

    std::fs::copy(lib(), dir.join("lib/libreuse.so")).unwrap();
    let want = dir.join("lib/libreuse.so").canonicalize().unwrap();
    assert_eq!(
        lib_of(&bin),
        want,
        "a library in ../lib comes before the carried one"
    );

    // Beside the command comes first.
    std::fs::copy(lib(), dir.join("bin/libreuse.so")).unwrap();
    let want = dir.join("bin/libreuse.so").canonicalize().unwrap();
    assert_eq!(lib_of(&bin), want);
}

// ---------------------------------------------------------------- reuse doctor

#[test]
fn doctor_calls_a_free_port_free() {
    let port = common::free_port();
    let o = run(reuse().args(["doctor", &port.to_string()]));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.contains(&format!("port {port}")), "{text}");
    assert!(text.contains("verdict: free\n"), "{text}");
}

#[test]
fn doctor_names_the_pid_and_program_of_a_live_listener() {
    let v6 = has_ipv6();
    let port = common::free_port();
    let fams = if v6 { "46" } else { "4" };
    let holder = common::spawn(
        "listener",
        common::command(python(), false)
            .args(["-c", LISTENER])
            .arg(port.to_string())
            .arg(fams),
    );
    assert!(common::wait_listening(port, Duration::from_secs(10)));
    let o = run(reuse().args(["doctor", &port.to_string()]));
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("held by PID {}", holder.pid())),
        "{text}"
    );
    assert!(text.contains("python"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    if v6 {
        assert!(text.contains(&format!("[::1]:{port}")), "{text}");
    }
    assert!(text.contains(&format!("kill {}", holder.pid())), "{text}");
    drop(holder);
}

/// For a UDP port, the advice names `--protocols tcp,udp`: without it the library leaves
/// UDP binds alone, and `--wait` or `--takeover` alone would do nothing. (It once advised
/// them bare.)
#[test]
fn doctor_advice_for_a_udp_port_asks_for_udp() {
    let port = common::free_port();
    let held = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let o = run(reuse().args(["doctor", "--udp", &port.to_string()]));
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("`reuse run --protocols tcp,udp --wait MS`")
            && text.contains("`reuse run --protocols tcp,udp --takeover`"),
        "{text}"
    );
    drop(held);
}

#[test]
fn doctor_sees_an_ipv6_only_listener() {
    if !has_ipv6() {
        common::skip("no IPv6 on this host");
        return;
    }
    let port = common::free_port();
    let holder = common::spawn(
        "listener6",
        common::command(python(), false)
            .args(["-c", LISTENER])
            .arg(port.to_string())
            .arg("6"),
    );
    assert!(common::wait_listening(port, Duration::from_secs(10)));
    let o = run(reuse().args(["doctor", &port.to_string()]));
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "ipv6: listening on [::1]:{port}, PID {}",
            holder.pid()
        )),
        "{text}"
    );
}

#[test]
fn doctor_reports_time_wait_left_and_its_seconds() {
    let dir = TempDir::new("doctor-tw");
    let script = dir.write("server.py", PLAIN_SERVER, 0o644);
    let port = common::free_port();
    let mut server = common::spawn(
        "server",
        common::command(python(), false)
            .arg(&script)
            .arg(port.to_string()),
    );
    assert!(common::wait_listening(port, Duration::from_secs(10)));
    common::leave_time_wait("127.0.0.1", port, 2);
    server.stop(libc::SIGTERM);

    let o = run(reuse().args(["doctor", &port.to_string()]));
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("TIME_WAIT"), "{text}");
    let verdict = text.lines().find(|l| l.contains("verdict:")).unwrap();
    assert!(verdict.contains("free under reuse"), "{verdict}");
    let secs: u32 = verdict
        .split(" for ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in: {verdict}"));
    assert!((1..=60).contains(&secs), "{verdict}");
    assert!(verdict.contains("more seconds"), "{verdict}");
}

#[test]
fn doctor_json_is_one_document_scripts_can_read() {
    let port = common::free_port();
    let free = common::free_port();
    let holder = common::spawn(
        "listener",
        common::command(python(), false)
            .args(["-c", LISTENER])
            .arg(port.to_string())
            .arg("4"),
    );
    assert!(common::wait_listening(port, Duration::from_secs(10)));
    let o = run(reuse().args(["doctor", "--json", &port.to_string(), &free.to_string()]));
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(doc["free_under_reuse"], false);
    let held = &doc["ports"][0];
    assert_eq!(held["port"], port);
    assert_eq!(held["status"], "held");
    assert_eq!(held["held"], true);
    assert_eq!(held["pids"][0], holder.pid());
    let l = &held["listeners"][0];
    assert_eq!(l["family"], "ipv4");
    assert_eq!(l["address"], format!("127.0.0.1:{port}"));
    assert_eq!(l["processes"][0]["pid"], holder.pid());
    assert!(l["user"].is_string());
    let f = &doc["ports"][1];
    assert_eq!(
        (f["port"].as_u64(), f["status"].as_str()),
        (Some(free as u64), Some("free"))
    );
    assert_eq!(f["verdict"], "free");
    assert_eq!(f["time_wait"], 0);

    let o = run(reuse().args(["doctor", "--json", &free.to_string()]));
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(doc["free_under_reuse"], true);
}

#[test]
fn doctor_usage_errors_exit_2() {
    for args in [
        vec!["doctor"],
        vec!["doctor", "0"],
        vec!["doctor", "65536"],
        vec!["doctor", "http"],
        vec!["doctor", "--bogus", "80"],
    ] {
        let o = run(reuse().args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_documents_every_command_variable_and_examples() {
    let o = run(reuse().arg("--help"));
    assert!(o.status.success());
    let text = stdout(&o);
    for word in reuse_core::config::VARIABLES.iter().copied().chain([
        "REUSE_LIB",
        "reuse run",
        "reuse lib",
        "reuse doctor",
        "--json",
        "Examples",
        "LD_PRELOAD",
    ]) {
        assert!(text.contains(word), "--help lacks {word}");
    }
    let o = run(reuse().args(["run", "--help"]));
    let text = stdout(&o);
    for flag in [
        "--ports",
        "--options",
        "--protocols",
        "--wait",
        "--takeover",
        "--log",
    ] {
        assert!(text.contains(flag), "run --help lacks {flag}");
    }
    assert_eq!(
        run(&mut reuse()).status.code(),
        Some(2),
        "no subcommand is a usage error"
    );
}

// ---------------------------------------------------------------- shims

fn shims() -> PathBuf {
    common::repo_root().join("shims")
}

/// PATH with the built command first, as an installed one would be.
fn path_with_reuse() -> String {
    format!(
        "{}:{}",
        common::target_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn shim_sh_turns_the_library_on_and_off_for_the_shell() {
    let lib = lib();
    let script = r#"
        . "$SHIM"
        reuse on; echo "on=$LD_PRELOAD"
        reuse on; echo "again=$LD_PRELOAD"
        reuse status
        grep -q libreuse /proc/self/maps && echo mapped || echo unmapped
        reuse off; echo "off=${LD_PRELOAD-unset}"
        grep -q libreuse /proc/self/maps && echo mapped || echo unmapped
        reuse status
        LD_PRELOAD=/x/a.so; export LD_PRELOAD
        reuse on; echo "kept=$LD_PRELOAD"
        reuse off; echo "restored=$LD_PRELOAD"
    "#;
    let mut shells = vec![PathBuf::from("sh")];
    for extra in ["dash", "bash"] {
        if let Some(p) = common::require(extra, &format!("apt-get install {extra}")) {
            shells.push(p);
        }
    }
    for sh in shells {
        let o = run(common::command(&sh, false)
            .env("SHIM", shims().join("reuse.sh"))
            .env("PATH", path_with_reuse())
            .args(["-c", script]));
        assert!(o.status.success(), "{}: {}", sh.display(), stderr(&o));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        let l = lib.display();
        assert_eq!(
            lines,
            [
                format!("on={l}"),
                format!("again={l}"),
                format!("reuse: on (LD_PRELOAD={l})"),
                "mapped".to_string(),
                "off=unset".to_string(),
                "unmapped".to_string(),
                "reuse: off".to_string(),
                format!("kept={l}:/x/a.so"),
                "restored=/x/a.so".to_string(),
            ],
            "{}",
            sh.display()
        );
        // Each switch says what it did, on stderr, as `torsocks on` does.
        let err = stderr(&o);
        assert!(
            err.contains(&format!("reuse: on for this shell: every program started here preloads {l} (ports: all; options: addr)")),
            "{}: {err}",
            sh.display()
        );
        assert!(
            err.contains("reuse: off for this shell"),
            "{}: {err}",
            sh.display()
        );
    }

    // Other arguments go to the command.
    let o = run(common::command("sh", false)
        .env("SHIM", shims().join("reuse.sh"))
        .env("PATH", path_with_reuse())
        .args(["-c", ". \"$SHIM\"; reuse lib"]));
    assert_eq!(stdout(&o).trim(), lib.to_str().unwrap());

    // Without the command on PATH, REUSE_LIB is used; with neither, `reuse on` fails.
    let o = run(common::command("sh", false)
        .env("SHIM", shims().join("reuse.sh"))
        .env("PATH", "/usr/bin:/bin")
        .env("REUSE_LIB", &lib)
        .args(["-c", ". \"$SHIM\"; reuse on && echo \"$LD_PRELOAD\""]));
    assert_eq!(stdout(&o).trim(), lib.to_str().unwrap());
    let o = run(common::command("sh", false)
        .env("SHIM", shims().join("reuse.sh"))
        .env("PATH", "/usr/bin:/bin")
        .args([
            "-c",
            ". \"$SHIM\"; reuse on; echo \"rc=$? ${LD_PRELOAD-unset}\"",
        ]));
    assert_eq!(stdout(&o).trim(), "rc=1 unset");
}

/// The `reuse run` flags in a shim's command line, checked by the command itself.
fn check_run_flags(args: &[&str]) {
    let dash = args
        .iter()
        .position(|a| *a == "--")
        .expect("`--` before the program");
    assert_eq!(&args[..2], ["reuse", "run"], "{args:?}");
    let o = run(reuse().args(&args[1..dash]).args(["--", "true"]));
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
}

#[test]
fn shim_nodemon_config_runs_the_app_under_reuse_run() {
    let text = std::fs::read_to_string(shims().join("nodemon.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let exec = cfg["exec"].as_str().expect("an exec string");
    let args: Vec<&str> = exec.split_whitespace().collect();
    check_run_flags(&args);
    assert_eq!(
        args.last(),
        Some(&"node"),
        "nodemon appends the script to exec"
    );
    assert_eq!(cfg["signal"], "SIGTERM");
}

/// `[Section]` and `Key=Value` lines, comments and blanks skipped.
fn ini_pairs(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        assert!(!section.is_empty(), "line {}: key outside a section", n + 1);
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

#[test]
fn shim_systemd_drop_in_preloads_the_library() {
    let file = shims().join("systemd/reuse.conf");
    let text = std::fs::read_to_string(&file).unwrap();
    let pairs = ini_pairs(&text);
    let env: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == "Environment")
        .map(|(_, _, v)| v.split_once('=').expect("Environment=VAR=VALUE"))
        .collect();
    let preload = env
        .iter()
        .find(|(k, _)| *k == "LD_PRELOAD")
        .expect("Environment=LD_PRELOAD=...")
        .1;
    assert!(
        preload.starts_with('/') && preload.ends_with("/libreuse.so"),
        "{preload}"
    );
    // The REUSE_* values it sets are valid: the command refuses invalid ones.
    let mut c = reuse();
    for (k, v) in env.iter().filter(|(k, _)| k.starts_with("REUSE_")) {
        c.env(k, v);
    }
    let o = run(c.args(["run", "--", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));

    let Some(analyze) = common::require("systemd-analyze", "apt-get install systemd") else {
        return;
    };
    let dir = TempDir::new("systemd");
    let unit = dir.write(
        "reuse-demo.service",
        "[Unit]\nDescription=demo\n\n[Service]\nExecStart=/bin/sleep 60\n",
        0o644,
    );
    std::fs::create_dir_all(dir.join("reuse-demo.service.d")).unwrap();
    std::fs::copy(&file, dir.join("reuse-demo.service.d/reuse.conf")).unwrap();
    let o = run(Command::new(analyze).arg("verify").arg(&unit));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("reuse.conf"),
        "systemd-analyze complains: {err}"
    );
}

#[test]
fn shim_dockerfile_snippet_installs_and_preloads_the_library() {
    let text = std::fs::read_to_string(shims().join("Dockerfile.reuse")).unwrap();
    let copies: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("COPY --from="))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let lib_dest = copies
        .iter()
        .find(|c| c[2].ends_with("/libreuse.so"))
        .expect("COPY of libreuse.so")[3];
    let bin_dest = copies
        .iter()
        .find(|c| c[2].ends_with("/reuse"))
        .expect("COPY of the reuse command")[3];
    // `reuse` in the image finds the library in ../lib beside the command.
    let bin_dir = Path::new(bin_dest).parent().unwrap();
    assert_eq!(
        bin_dir.parent().unwrap().join("lib/libreuse.so"),
        Path::new(lib_dest),
        "the library is not in ../lib beside {bin_dest}"
    );
    assert!(
        text.contains("ENTRYPOINT [\"reuse\", \"run\", \"--\"]"),
        "the server runs under reuse run"
    );
    // The archive the stage unpacks is the one dist/release.sh names.
    let release = std::fs::read_to_string(common::repo_root().join("dist/release.sh")).unwrap();
    assert!(text.contains("reuse-${REUSE_VERSION}-x86_64-linux-musl.tar.gz"));
    assert!(release.contains("archive x86_64-linux-musl"));
    let version = std::fs::read_to_string(common::repo_root().join("Cargo.toml")).unwrap();
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .unwrap()
        .trim_end_matches('"');
    assert!(
        text.contains(&format!("ARG REUSE_VERSION={version}")),
        "the Dockerfile names the current version"
    );
}

/// With a variable in the environment twice, `reuse run` checks the entry the library reads
/// (the first, as getenv has it) and passes on exactly that one: it once checked the first
/// and let the program see the last, accepting a configuration that left the library inert.
#[test]
fn run_checks_and_passes_on_the_entry_the_library_reads() {
    let Some(probe) = common::probe() else { return };
    let port = common::free_port().to_string();
    let bin = reuse_bin();
    let run_dup = |first: &str, second: &str| {
        run(common::command(&probe, false)
            .args([
                "exec",
                &format!("REUSE_PORTS={first}"),
                &format!("REUSE_PORTS={second}"),
                "REUSE_LOG=info",
                "--",
            ])
            .arg(&bin)
            .args(["run", "--"])
            .arg(&probe)
            .args(["bind", "4", "tcp", "127.0.0.1", &port]))
    };
    let o = run_dup(&port, "abc");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("rc=0 errno=4242 reuseaddr=1"),
        "the program must see the REUSE_PORTS that was checked: {} {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!stderr(&o).contains("invalid"), "{}", stderr(&o));
    let o = run_dup("abc", &port);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("REUSE_PORTS") && stderr(&o).contains("\"abc\""),
        "{}",
        stderr(&o)
    );
}

// ------------------------------------------------------------- the first hour's edges

/// An option reuse does not have, before COMMAND, is a usage error with clap's suggestion,
/// not a program to run (it once ran `--prots` and exited 127); what follows COMMAND's first
/// word, or `--`, is COMMAND's.
#[test]
fn typos_before_command_are_usage_errors() {
    for (args, hint) in [
        (
            vec!["run", "--prots", "8000", "--", "true"],
            Some("a similar argument exists: '--ports'"),
        ),
        (vec!["run", "-p", "8000", "--", "true"], None),
        (vec!["run", "--version"], None),
    ] {
        let o = run(reuse().args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("unexpected argument"), "{args:?}: {err}");
        if let Some(h) = hint {
            assert!(err.contains(h), "{args:?}: {err}");
        }
    }
    let o = run(reuse().args(["run", "sh", "-c", "echo ran $0", "--version"]));
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "ran --version"),
        "{}",
        stderr(&o)
    );
    let o = run(reuse().args(["run", "--", "--weird"]));
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--weird: command not found"),
        "{}",
        stderr(&o)
    );
    let o = run(reuse().args(["doctor", "abc"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value for '<PORT>...': not a port (1-65535) in \"abc\""),
        "{}",
        stderr(&o)
    );
}

/// `-h` is the short help; `--help` the long one, with the reference (once, and "Commands"
/// once: clap's list).
#[test]
fn short_and_long_help() {
    let short = stdout(&run(reuse().arg("-h")));
    let long = stdout(&run(reuse().arg("--help")));
    assert!(short.lines().count() < 30, "{short}");
    assert!(
        !short.contains("REUSE_PORTS") && short.contains("--help"),
        "{short}"
    );
    assert!(
        long.contains("Reference:") && long.contains("REUSE_WAIT_MS"),
        "{long}"
    );
    assert_eq!(long.matches("Commands:").count(), 1, "{long}");
    assert!(long.lines().count() > short.lines().count() + 20);
}

/// A bad flag value is quoted cut and escaped, never echoed whole (131 kB, control bytes);
/// and every message about a variable says how to fix it (none ends "override it with ?").
#[test]
fn errors_are_short_and_safe_to_print() {
    let huge = format!("80\u{1b}[2J{}", "9".repeat(131_000));
    let o = run(reuse().args(["run", "--ports", &huge, "--", "true"]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.len() < 600, "{} bytes of error", err.len());
    assert!(!err.contains('\u{1b}'), "a raw control byte: {err:?}");
    assert!(err.contains("--ports") && err.contains("\\x1b"), "{err}");
    for (var, value) in [("REUSE_HOLD", "relative"), ("REUSE_HOLD_PORTS", "8000")] {
        let o = run(reuse().env(var, value).args(["run", "--", "true"]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains('?') && err.contains("--hold"), "{var}: {err}");
    }
}

/// A minimal ELF file header and program headers of `class` (1: 32-bit, 2: 64-bit) and
/// `machine`, naming /lib/ld.so as its loader: enough for `reuse run` to judge it.
fn elf_stub(path: &Path, class: u8, machine: u16) {
    let mut b = vec![
        0x7f, b'E', b'L', b'F', class, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let interp = b"/lib/ld.so\0";
    let (ehsize, phsize): (u16, u16) = if class == 1 { (52, 32) } else { (64, 56) };
    let off = ehsize as u64 + phsize as u64;
    let word = |b: &mut Vec<u8>, v: u64| {
        if class == 1 {
            b.extend_from_slice(&(v as u32).to_le_bytes())
        } else {
            b.extend_from_slice(&v.to_le_bytes())
        }
    };
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&machine.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    word(&mut b, 0); // entry
    word(&mut b, ehsize as u64); // phoff
    word(&mut b, 0); // shoff
    b.extend_from_slice(&0u32.to_le_bytes());
    for v in [ehsize, phsize, 1, 0, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    // PT_INTERP
    b.extend_from_slice(&3u32.to_le_bytes());
    if class == 1 {
        for v in [off, 0, 0, interp.len() as u64, interp.len() as u64] {
            word(&mut b, v);
        }
        b.extend_from_slice(&4u32.to_le_bytes());
        word(&mut b, 1);
    } else {
        b.extend_from_slice(&4u32.to_le_bytes());
        for v in [off, 0, 0, interp.len() as u64, interp.len() as u64, 1] {
            word(&mut b, v);
        }
    }
    b.extend_from_slice(interp);
    std::fs::write(path, b).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What can never work is said before it fails: a 32-bit or foreign-machine program, an
/// unknown REUSE_* variable (a typo), a REUSE_LIB that is no shared library for this
/// machine, a library path with a blank or colon (which LD_PRELOAD splits on); and a `#!`
/// interpreter that is a FIFO does not hang the command.
#[test]
fn run_says_up_front_what_cannot_work() {
    let dir = TempDir::new("cannot-work");
    for (class, machine, what) in [
        (1u8, 3u16, "a 32-bit x86 program"),
        (2, 183, "an aarch64 program"),
    ] {
        if cfg!(target_arch = "aarch64") && machine == 183 {
            continue;
        }
        let p = dir.join(&format!("stub-{machine}"));
        elf_stub(&p, class, machine);
        let o = run(reuse().args(["run", "--"]).arg(&p));
        assert!(
            stderr(&o).contains(what) && stderr(&o).contains("cannot load it"),
            "{}",
            stderr(&o)
        );
    }
    let o = run(reuse()
        .env("REUSE_PORT", "8000")
        .args(["run", "--", "true"]));
    assert!(
        stderr(&o).contains(
            "REUSE_PORT is not a reuse variable and is ignored; did you mean REUSE_PORTS?"
        ),
        "{}",
        stderr(&o)
    );
    let text = dir.write("not-a-library.so", "hello\n", 0o644);
    let o = run(reuse().env("REUSE_LIB", &text).args([
        "run",
        "--",
        "sh",
        "-c",
        "echo ${LD_PRELOAD-unset}",
    ]));
    assert!(
        stderr(&o).contains("not a shared library for this machine"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stdout(&o).trim(),
        "unset",
        "nothing the loader would refuse is preloaded"
    );
    std::fs::create_dir_all(dir.join("with space")).unwrap();
    std::fs::copy(lib(), dir.join("with space/libreuse.so")).unwrap();
    let o = run(reuse()
        .env("REUSE_LIB", dir.join("with space/libreuse.so"))
        .args(["run", "--", "sh", "-c", "echo ${LD_PRELOAD-unset}"]));
    assert!(stderr(&o).contains("blank or a colon"), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "unset");
    // A `#!` interpreter that is a FIFO: opening it to look inside would block forever.
    let fifo = dir.join("fifo");
    assert!(common::mkfifo(&fifo, 0o755));
    let script = dir.write("script", &format!("#!{}\n", fifo.display()), 0o755);
    let o = common::run(
        reuse().args(["run", "--"]).arg(&script),
        Duration::from_secs(10),
    );
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// The socket unit and its service agree: the port systemd listens on is the one the
/// service holds, the service requires the socket, and systemd-analyze accepts both.
#[test]
fn shim_systemd_socket_unit_and_its_service_agree() {
    let socket = std::fs::read_to_string(shims().join("systemd/reuse-app.socket")).unwrap();
    let service = std::fs::read_to_string(shims().join("systemd/reuse-app.service")).unwrap();
    let (socket, service) = (ini_pairs(&socket), ini_pairs(&service));
    let get = |pairs: &[(String, String, String)], s: &str, k: &str| {
        pairs
            .iter()
            .find(|(a, b, _)| a == s && b == k)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_else(|| panic!("[{s}] {k}"))
    };
    let listen = get(&socket, "Socket", "ListenStream");
    let port = listen.rsplit(':').next().unwrap();
    let exec = get(&service, "Service", "ExecStart");
    assert!(exec.contains(&format!("run --hold {port} -- ")), "{exec}");
    assert_eq!(get(&service, "Unit", "Requires"), "reuse-app.socket");
    assert_eq!(get(&service, "Service", "Restart"), "always");
    let Some(analyze) = common::require("systemd-analyze", "apt-get install systemd") else {
        return;
    };
    let dir = TempDir::new("socket-unit");
    for f in ["reuse-app.socket", "reuse-app.service"] {
        std::fs::copy(shims().join("systemd").join(f), dir.join(f)).unwrap();
    }
    let o = run(Command::new(analyze)
        .arg("verify")
        .arg(dir.join("reuse-app.socket"))
        .arg(dir.join("reuse-app.service")));
    let err = stderr(&o);
    // systemd-analyze checks the commands exist: /usr/bin/reuse and /srv/app may not here.
    let real = err
        .lines()
        .filter(|l| {
            !l.contains("/usr/bin/reuse")
                && !l.contains("/srv/app")
                && !l.contains("is not executable")
                && !l.trim().is_empty()
        })
        .collect::<Vec<_>>();
    assert!(real.is_empty(), "systemd-analyze: {err}");
}
