//! libreuse.so preloaded into real processes: restarts through TIME_WAIT, the options each
//! configuration sets, what is never touched, errno, invalid configuration, threads.

use reuse_testkit as common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs the probe with `env` (and the library when `preload`); stdout and stderr.
fn run_probe(preload: bool, env: &[(&str, &str)], args: &[&str]) -> (String, String) {
    let mut c = command(probe().unwrap(), preload);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(&mut c, Duration::from_secs(20));
    assert!(out.status.success(), "probe {args:?} failed: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn bind_opts(preload: bool, env: &[(&str, &str)], fam: &str, proto: &str, port: u16) -> String {
    let host = if fam == "4" { "127.0.0.1" } else { "::1" };
    run_probe(preload, env, &["bind", fam, proto, host, &port.to_string()]).0
}

/// A Python `socketserver.TCPServer`, whose default leaves SO_REUSEADDR off.
fn start_socketserver(preload: bool, port: u16, env: &[(&str, &str)]) -> Proc {
    let code = "import socketserver,sys\n\
        class H(socketserver.BaseRequestHandler):\n\
        \x20   def handle(self):\n\
        \x20       self.request.recv(1024)\n\
        \x20       self.request.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nok\\n')\n\
        socketserver.TCPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";
    let mut c = command(python(), preload);
    c.args(["-c", code, &port.to_string()]);
    for (k, v) in env {
        c.env(k, v);
    }
    spawn("socketserver", &mut c)
}

/// Starts a server, leaves TIME_WAIT sockets on its port, kills it with `sig`, starts it
/// again at once. Returns whether the second instance answered, and its stderr.
fn restart_cycle(
    port: u16,
    first_preload: bool,
    second_preload: bool,
    sig: i32,
    start: &dyn Fn(bool, u16) -> Proc,
) -> (bool, String) {
    let mut first = start(first_preload, port);
    assert!(
        wait_http("127.0.0.1", port, Duration::from_secs(10)).is_some(),
        "first instance never answered"
    );
    leave_time_wait("127.0.0.1", port, 3);
    first.stop(sig);
    assert!(
        time_wait_count(port) > 0,
        "TIME_WAIT gone before the restart"
    );
    let mut second = start(second_preload, port);
    let answered = wait_http("127.0.0.1", port, Duration::from_secs(4)).is_some();
    let exited = second.wait_exit(Duration::from_millis(10)).is_some();
    assert!(answered != exited || !answered, "answered yet exited");
    (answered, second.stderr_text())
}

#[test]
fn python_socketserver_restarts_through_time_wait_only_with_the_library_in_both_instances() {
    let start = |pre: bool, port: u16| start_socketserver(pre, port, &[("REUSE_LOG", "warn")]);

    let (ok, err) = restart_cycle(free_port(), false, false, libc::SIGTERM, &start);
    assert!(!ok, "control: the restart without the library should fail");
    assert!(
        err.contains("Address already in use"),
        "control stderr: {err}"
    );

    let (ok, err) = restart_cycle(free_port(), true, true, libc::SIGTERM, &start);
    assert!(
        ok,
        "with the library in both instances the restart must work: {err}"
    );
    assert!(!err.contains("libreuse["), "no warning expected: {err}");

    // The kernel rule: the TIME_WAIT sockets of an instance without SO_REUSEADDR block even
    // a socket that has it, and the library says so.
    let (ok, err) = restart_cycle(free_port(), false, true, libc::SIGKILL, &start);
    assert!(
        !ok,
        "only the new instance under the library: the kernel refuses"
    );
    assert!(
        err.contains("TIME_WAIT") && err.contains("without SO_REUSEADDR"),
        "the diagnosis must name the cause: {err}"
    );
}

#[test]
fn legacy_c_server_restarts_after_sigkill() {
    let Some(p) = probe() else { return };
    let start = |pre: bool, port: u16| {
        let mut c = command(&p, pre);
        c.args(["serve", "4", "127.0.0.1", &port.to_string()]);
        spawn("probe-serve", &mut c)
    };
    let (ok, err) = restart_cycle(free_port(), false, false, libc::SIGKILL, &start);
    assert!(
        !ok && err.contains("errno 98"),
        "control must fail with EADDRINUSE: {err}"
    );
    let (ok, err) = restart_cycle(free_port(), true, true, libc::SIGKILL, &start);
    assert!(ok, "under the library the C server must come back: {err}");
}

#[test]
fn ipv6_server_restarts_too() {
    let Some(p) = probe() else { return };
    let port = free_port();
    let start = |pre: bool| {
        let mut c = command(&p, pre);
        c.args(["serve", "6", "::1", &port.to_string()]);
        spawn("probe-serve6", &mut c)
    };
    let mut first = start(true);
    assert!(wait_http("::1", port, Duration::from_secs(10)).is_some());
    leave_time_wait("::1", port, 3);
    first.stop(libc::SIGKILL);
    let _second = start(true);
    assert!(wait_http("::1", port, Duration::from_secs(4)).is_some());
}

#[test]
fn options_follow_the_configuration() {
    if probe().is_none() {
        return;
    }
    let p = free_port();
    let ps = p.to_string();
    let other = free_port();
    let range = format!("{}-{}", p - 1, p + 1);
    let list = format!("1,{ps},65535");
    let none = "reuseaddr=0 reuseport=0 linger=0,0";
    let addr = "reuseaddr=1 reuseport=0 linger=0,0";
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str, u16, &'a str);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (vec![], "4", "tcp", p, addr),
        (vec![], "6", "tcp", p, addr),
        (vec![], "6rfc2133", "tcp", p, addr),
        (vec![], "4", "udp", p, none),
        (vec![], "6", "udp", p, none),
        (vec![], "4", "tcp", 0, none),
        (vec![("REUSE_PORTS", "*")], "4", "tcp", p, addr),
        (vec![("REUSE_PORTS", &ps)], "4", "tcp", p, addr),
        (vec![("REUSE_PORTS", &ps)], "4", "tcp", other, none),
        (vec![("REUSE_PORTS", &range)], "6", "tcp", p, addr),
        (vec![("REUSE_PORTS", &list)], "4", "tcp", p, addr),
        (vec![("REUSE_PORTS", &ps)], "4", "tcp", 0, none),
        (vec![("REUSE_OPTIONS", "port")], "4", "tcp", p, "reuseaddr=0 reuseport=1 linger=0,0"),
        (vec![("REUSE_OPTIONS", "addr,port")], "6", "tcp", p, "reuseaddr=1 reuseport=1 linger=0,0"),
        (vec![("REUSE_OPTIONS", "linger=0")], "4", "tcp", p, "reuseaddr=0 reuseport=0 linger=1,0"),
        (vec![("REUSE_OPTIONS", "addr,linger=7")], "4", "tcp", p, "reuseaddr=1 reuseport=0 linger=1,7"),
        (vec![("REUSE_OPTIONS", "addr,port,linger=5")], "6", "tcp", p, "reuseaddr=1 reuseport=1 linger=1,5"),
        // UDP gets no SO_REUSEADDR (no TIME_WAIT to pass, and a second live server could take
        // its datagrams), only the SO_REUSEPORT sharing `port` asks for.
        (vec![("REUSE_PROTOCOLS", "tcp,udp")], "4", "udp", p, none),
        (vec![("REUSE_PROTOCOLS", "tcp,udp")], "6", "udp", p, none),
        (vec![("REUSE_PROTOCOLS", "tcp,udp"), ("REUSE_OPTIONS", "addr,port,linger=3")], "4", "udp", p, "reuseaddr=0 reuseport=1 linger=0,0"),
        (vec![("REUSE_PROTOCOLS", "udp")], "4", "tcp", p, none),
        (vec![("REUSE_PROTOCOLS", "tcp,udp"), ("REUSE_PORTS", &ps)], "4", "udp", other, none),
    ];
    for (env, fam, proto, port, want) in cases {
        let got = bind_opts(true, &env, fam, proto, port);
        assert!(
            got.starts_with("rc=0 errno=4242 "),
            "{env:?} {fam} {proto} {port}: {got}"
        );
        assert!(
            got.ends_with(want),
            "{env:?} {fam} {proto} {port}: got {got}, want {want}"
        );
    }
    // Without the library nothing is set: the probe itself sets no option.
    assert!(bind_opts(false, &[], "4", "tcp", p).ends_with(none));
}

#[test]
fn unix_sockets_are_untouched() {
    if probe().is_none() {
        return;
    }
    let path = std::env::temp_dir().join(format!("reuse-unix-{}", std::process::id()));
    let (out, _) = run_probe(
        true,
        &[("REUSE_LOG", "debug")],
        &["unix", path.to_str().unwrap()],
    );
    assert_eq!(out, "rc=0 reuseaddr=0 reuseport=0 linger=0,0");
}

#[test]
fn a_socket_moved_by_dup2_keeps_its_own_kind() {
    if probe().is_none() {
        return;
    }
    let (out, _) = run_probe(true, &[], &["dup2", &free_port().to_string()]);
    assert_eq!(
        out, "rc=0 reuseaddr=0 reuseport=0 linger=0,0",
        "a UDP socket got TCP's options"
    );
}

/// The process's very first socket(), bind() and close() made in a signal handler, before
/// the library has found libc's functions (it does so on first use, with no lock and no
/// allocation, so this is safe): the bind gets SO_REUSEADDR, errno is the handler's own.
#[test]
fn the_first_bind_of_a_process_may_come_from_a_signal_handler() {
    if probe().is_none() {
        return;
    }
    let (out, _) = run_probe(true, &[], &["sigfirst", &free_port().to_string()]);
    assert_eq!(out, "rc=0 errno=4242 reuseaddr=1");
}

/// dup3() over an open TCP socket's number: the number now names the UDP socket, which the
/// library leaves alone by default (the hook follows a dup3 that succeeded).
#[test]
fn a_socket_moved_by_dup3_keeps_its_own_kind() {
    if probe().is_none() {
        return;
    }
    let (out, _) = run_probe(true, &[], &["dup3", &free_port().to_string()]);
    assert_eq!(
        out, "rc=0 reuseaddr=0 reuseport=0 linger=0,0",
        "a UDP socket got TCP's options"
    );
}

#[test]
fn a_socket_dup_ed_onto_a_number_freed_inside_libc_keeps_its_own_kind() {
    if probe().is_none() {
        return;
    }
    let (out, _) = run_probe(true, &[], &["dupstale", &free_port().to_string()]);
    assert_eq!(
        out, "rc=0 reuseaddr=1 reuseport=0 linger=0,0",
        "a TCP socket taken for the UDP socket that had the number"
    );
}

#[test]
fn a_live_listener_is_never_masked() {
    let Some(p) = probe() else { return };
    let port = free_port();
    let mut c = command(&p, true);
    c.args(["listen", "4", "127.0.0.1", &port.to_string()]);
    let _holder = spawn("listener", &mut c);
    assert!(wait_listening(port, Duration::from_secs(5)));
    for (fam, host) in [("4", "127.0.0.1"), ("4", "0.0.0.0"), ("6", "::")] {
        let (out, err) = run_probe(true, &[], &["bind", fam, "tcp", host, &port.to_string()]);
        assert!(out.starts_with("rc=-1 errno=98 "), "{host}: {out}");
        assert!(err.contains("is listening on this port"), "{host}: {err}");
    }
}

#[test]
fn a_bind_that_fails_for_another_reason_keeps_its_errno() {
    if probe().is_none() {
        return;
    }
    // 192.0.2.1 (TEST-NET-1) is on no interface here: EADDRNOTAVAIL (99).
    let port = free_port().to_string();
    let (out, err) = run_probe(
        true,
        &[("REUSE_LOG", "debug")],
        &["bind", "4", "tcp", "192.0.2.1", &port],
    );
    // The kernel refused the address before any option could matter: the library set
    // none, and the errno is the kernel's.
    assert!(out.starts_with("rc=-1 errno=99 "), "{out}");
    assert!(!err.contains("EADDRINUSE"), "{err}");
    let (plain, _) = run_probe(false, &[], &["bind", "4", "tcp", "192.0.2.1", &port]);
    assert!(plain.starts_with("rc=-1 errno=99 "), "{plain}");
}

#[test]
fn invalid_configuration_changes_nothing_and_names_the_variable() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let bad: &[(&str, &[&str])] = &[
        (
            "REUSE_PORTS",
            &["", "0", "abc", "80,", "9000-8000", "70000", "*,80", " "],
        ),
        (
            "REUSE_OPTIONS",
            &["", "adr", "addr,addr", "linger", "linger=-1", "linger=x"],
        ),
        ("REUSE_PROTOCOLS", &["", "sctp", "tcp,tcp", "TCP"]),
        ("REUSE_LOG", &["", "loud", "INFO"]),
        ("REUSE_WAIT_MS", &["", "-1", "soon", "99999999999"]),
        ("REUSE_TAKEOVER", &["", "yes", "2"]),
    ];
    for (var, values) in bad {
        for v in *values {
            let (out, err) = run_probe(
                true,
                &[(var, v)],
                &["bind", "4", "tcp", "127.0.0.1", &port.to_string()],
            );
            assert_eq!(
                out, "rc=0 errno=4242 reuseaddr=0 reuseport=0 linger=0,0",
                "{var}={v:?}"
            );
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 1, "{var}={v:?}: exactly one line, got {err:?}");
            assert!(lines[0].starts_with("libreuse["), "{err}");
            assert!(
                lines[0].contains(&format!("invalid {var}")),
                "{var}={v:?}: {err}"
            );
        }
    }
    // Non-UTF-8 and control bytes: reported escaped, the host still runs.
    use std::os::unix::ffi::OsStrExt;
    let mut c = command(probe().unwrap(), true);
    c.env(
        "REUSE_PORTS",
        std::ffi::OsStr::from_bytes(b"80\xff\x1b[31m"),
    );
    c.args(["bind", "4", "tcp", "127.0.0.1", &port.to_string()]);
    let out = run(&mut c, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(err.contains("\\xff\\x1b[31m"), "{err}");
}

#[test]
fn log_levels() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let ps = port.to_string();
    let (_, err) = run_probe(true, &[], &["bind", "4", "tcp", "127.0.0.1", &ps]);
    assert_eq!(
        err, "",
        "warn (the default) is silent when nothing goes wrong"
    );
    let (_, err) = run_probe(
        true,
        &[("REUSE_LOG", "info")],
        &["bind", "4", "tcp", "127.0.0.1", &ps],
    );
    let pid_prefix = err.split(':').next().unwrap();
    assert!(
        pid_prefix.starts_with("libreuse[") && pid_prefix.ends_with(']'),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(": 127.0.0.1:{port} tcp: SO_REUSEADDR\n")),
        "{err}"
    );
    let (_, err) = run_probe(
        true,
        &[
            ("REUSE_LOG", "info"),
            ("REUSE_OPTIONS", "addr,port,linger=5"),
        ],
        &["bind", "6", "tcp", "::1", &ps],
    );
    assert!(
        err.contains(&format!(
            "[::1]:{port} tcp: SO_REUSEADDR, SO_REUSEPORT, SO_LINGER 5s"
        )),
        "{err}"
    );
    let (_, err) = run_probe(
        true,
        &[("REUSE_LOG", "debug")],
        &["bind", "4", "udp", "127.0.0.1", &ps],
    );
    assert!(
        err.contains("udp: left alone, protocol not in REUSE_PROTOCOLS"),
        "{err}"
    );
    let (_, err) = run_probe(
        true,
        &[("REUSE_LOG", "info")],
        &["bind", "4", "udp", "127.0.0.1", &ps],
    );
    assert_eq!(err, "", "info does not list what was left alone");
    let (_, err) = run_probe(
        true,
        &[("REUSE_LOG", "off"), ("REUSE_PORTS", "0")],
        &["bind", "4", "tcp", "127.0.0.1", &ps],
    );
    assert_eq!(err, "", "off is off");
}

#[test]
fn thirty_two_threads_binding_at_once() {
    if probe().is_none() {
        return;
    }
    // 32 distinct free ports, consecutive, so each thread has its own.
    let base = free_block(32);
    let (out, err) = run_probe(true, &[], &["threads", "32", &base.to_string()]);
    assert_eq!(out, "threads=32 failed=0 without_reuseaddr=0", "{err}");
}

#[test]
fn the_host_runs_normally_with_the_library_loaded() {
    let out = run(
        command("sh", true).args(["-c", "echo hello; ls / >/dev/null; exit 3"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // The library exports only the hooks, and depends on libc alone.
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_path())
        .output();
    if let Ok(nm) = nm {
        let text = String::from_utf8_lossy(&nm.stdout);
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        names.sort();
        // dlopen too, on glibc (x86_64, aarch64): to reach objects loaded with RTLD_DEEPBIND.
        let with_dlopen = cfg!(target_env = "gnu");
        let mut want = vec!["bind", "close", "dup", "dup2", "dup3", "socket"];
        if with_dlopen {
            want.insert(2, "dlopen");
        }
        assert_eq!(names, want, "{text}");
    }
}

#[test]
fn a_bind_before_the_librarys_constructor_is_handled() {
    if probe().is_none() {
        return;
    }
    let early = build_shared("tests/c/early_bind.c", "early_bind.so", &["-O1", "-ldl"]).unwrap();
    let port = free_port();
    // The loader runs the constructors of independent preloads last-loaded first.
    let mut c = command(probe().unwrap(), false);
    c.env(
        "LD_PRELOAD",
        format!("{} {}", lib_path().display(), early.display()),
    );
    c.env("EARLY_PORT", port.to_string())
        .env("REUSE_LOG", "info");
    c.args(["bind", "4", "tcp", "127.0.0.1", &free_port().to_string()]);
    let out = run(&mut c, Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("early rc=0 errno=4242 reuseaddr=1 dlopen=ok\n"),
        "{stdout}"
    );
    assert!(stdout.contains("rc=0 errno=4242 reuseaddr=1"), "{stdout}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches(&format!("127.0.0.1:{port} tcp: SO_REUSEADDR"))
            .count(),
        1,
        "{err}"
    );
}

/// A library preloaded after libreuse whose constructor (which the loader runs first) sets
/// REUSE_OPTIONS: the configuration is what it set, as it was when the library read
/// `environ` at load. (Reading the environment the loader passed once missed it.)
#[test]
fn a_variable_set_by_an_earlier_constructor_is_seen() {
    let Some(probe) = probe() else { return };
    let setter = build_shared("tests/c/env_setter.c", "env_setter.so", &[]).unwrap();
    let mut c = command(&probe, false);
    c.args(["bind", "4", "tcp", "127.0.0.1", &free_port().to_string()])
        .env(
            "LD_PRELOAD",
            format!("{}:{}", lib_path().display(), setter.display()),
        )
        .env("SET_REUSE_OPTIONS", "addr,port");
    let out = run(&mut c, Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("rc=0 errno=4242 reuseaddr=1 reuseport=1"),
        "{stdout}"
    );
}

/// The same when the program is run by its loader by hand (`ld.so ./program`, glibc's and
/// musl's): the kernel then describes the loader, not the program (AT_BASE 0), and the
/// library still finds libc's functions, so the early bind gets its option, a refused one
/// its errno (98), and dlopen works. (It once found nothing: dlopen gave NULL, errno stayed.)
#[test]
fn a_program_run_by_its_loader_by_hand_is_reached() {
    let Some(probe) = probe() else { return };
    let loader = std::path::Path::new("/lib64/ld-linux-x86-64.so.2");
    if !cfg!(target_arch = "x86_64") || !loader.exists() {
        return;
    }
    let early = build_shared("tests/c/early_bind.c", "early_bind.so", &["-O1", "-ldl"]).unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    for (early_port, want) in [
        (free_port(), "early rc=0 errno=4242 reuseaddr=1 dlopen=ok"),
        (busy_port, "early rc=-1 errno=98 reuseaddr=1 dlopen=ok"),
    ] {
        let mut c = command(loader, false);
        c.arg(&probe)
            .args(["bind", "4", "tcp", "127.0.0.1", &free_port().to_string()])
            .env(
                "LD_PRELOAD",
                format!("{} {}", lib_path().display(), early.display()),
            )
            .env("EARLY_PORT", early_port.to_string());
        let out = run(&mut c, Duration::from_secs(10));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some(want), "{stdout}");
        assert!(
            lines
                .next()
                .is_some_and(|l| l.starts_with("rc=0 errno=4242 reuseaddr=1")),
            "{stdout}"
        );
    }
    // musl's loader, which is its libc, run by hand.
    let musl_loader = std::path::Path::new("/lib/ld-musl-x86_64.so.1");
    let Some(musl_probe) = build_c("tests/c/probe.c", "probe-musl", "musl-gcc") else {
        return;
    };
    if !musl_loader.exists() {
        return;
    }
    let port = busy_port.to_string();
    let out = run(
        command(musl_loader, true)
            .arg(&musl_probe)
            .args(["bind", "4", "tcp", "127.0.0.1", &port]),
        Duration::from_secs(10),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("rc=-1 errno=98 reuseaddr=1"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn no_log_line_goes_to_a_network_connection_on_descriptor_2() {
    use std::io::Read;
    use std::os::fd::OwnedFd;
    if probe().is_none() {
        return;
    }
    // A daemon whose descriptor 2 ended up a TCP connection: the library must stay silent
    // rather than write into a client's stream.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let mut c = command(probe().unwrap(), true);
    c.env("REUSE_LOG", "debug");
    c.args(["bind", "4", "tcp", "127.0.0.1", &free_port().to_string()]);
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    c.stderr(std::process::Stdio::from(OwnedFd::from(client)));
    let out = c.output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("reuseaddr=1"));
    assert!(
        out.stderr.is_empty(),
        "stderr was the connection, not a pipe"
    );
    peer.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let _ = peer.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "written to the connection: {}",
        String::from_utf8_lossy(&got)
    );
}

/// A listener on a fresh port, so a bind there fails and the library has a warning to write.
fn taken_port() -> (u16, std::net::TcpListener) {
    let port = free_port();
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    (port, l)
}

#[test]
fn a_broken_stderr_pipe_never_kills_the_host() {
    if probe().is_none() {
        return;
    }
    let (port, _holder) = taken_port();
    let mut c = command(probe().unwrap(), true);
    c.args(["bind", "4", "tcp", "127.0.0.1", &port.to_string()]);
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = spawn_retrying(&mut c).unwrap();
    drop(child.stderr.take()); // the reader is gone before the library writes its warning
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the host must not die of SIGPIPE: {:?}",
        out.status
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rc=-1 errno=98 "));
}

#[test]
fn no_log_line_goes_into_a_file_that_took_descriptor_2() {
    if probe().is_none() {
        return;
    }
    let (port, _holder) = taken_port();
    let file = std::env::temp_dir().join(format!("reuse-fd2-{}", std::process::id()));
    let (out, _) = run_probe(
        true,
        &[("REUSE_LOG", "debug")],
        &["closed2", file.to_str().unwrap(), &port.to_string()],
    );
    let written = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    assert!(out.starts_with("rc=-1 errno=98 "), "{out}");
    assert_eq!(written, "", "the library wrote into the daemon's file");
}

/// Bad address pointers and lengths get exactly the kernel's answer: a pointer of 1, NULL,
/// and IPv6 addresses ending at the last byte before an unmapped page with lengths of 24
/// (Linux takes RFC 2133's short sockaddr_in6), 28 and 1000. The library once read the
/// address first and took the host down with SIGSEGV; it reads it only after the kernel did.
#[test]
fn bad_address_pointers_get_the_kernels_answer_never_a_crash() {
    if probe().is_none() {
        return;
    }
    let port = free_port().to_string();
    let (plain, _) = run_probe(false, &[], &["badaddr", &port]);
    assert_eq!(
        plain, "badaddr -1/14 -1/14 0/0 -1/14 -1/22",
        "the kernel's own answers"
    );
    for env in [
        vec![],
        vec![("REUSE_PORTS", port.as_str())],
        vec![("REUSE_PORTS", "1")],
        vec![
            ("REUSE_OPTIONS", "addr,port,linger=1"),
            ("REUSE_LOG", "debug"),
        ],
        vec![("REUSE_WAIT_MS", "100"), ("REUSE_TAKEOVER", "1")],
    ] {
        let (out, _) = run_probe(true, &env, &["badaddr", &port]);
        assert_eq!(out, plain, "{env:?}");
    }
}

/// Only a dup2/dup3 that succeeded may change what the descriptor table says: a failed
/// `dup3(udp, tcp, bad flags)` or `dup2(closed, tcp)` leaves the TCP socket TCP.
#[test]
fn failed_dups_leave_the_descriptor_table_alone() {
    if probe().is_none() {
        return;
    }
    let (out, _) = run_probe(true, &[], &["dupfail", &free_port().to_string()]);
    assert_eq!(
        out,
        "dup3=-1/22 rc=0 reuseaddr=1 reuseport=0 linger=0,0\ndup2=-1/9 rc=0 reuseaddr=1 reuseport=0 linger=0,0",
        "a TCP socket judged by a failed dup's source"
    );
}

/// A stale table entry (TCP, for a number a raw close freed) may name a socket of another
/// family: a packet socket binds with sa_family AF_INET6 and 16 bytes. The library's short
/// way for the usual configuration (REUSE_LOG below info) must decide as its long way (info)
/// and as the kernel's answer alone would: no option on it. (The short way once read "lo"
/// as a port and set SO_REUSEADDR.)
#[test]
fn a_stale_entry_for_a_packet_socket_gets_nothing_either_way() {
    if probe().is_none() {
        return;
    }
    if !is_root() {
        assert!(
            !in_ci(),
            "CI runs as root (a packet socket needs CAP_NET_RAW)"
        );
        common::skip("a packet socket needs root");
        return;
    }
    let (plain, _) = run_probe(false, &[], &["stalepacket"]);
    assert_eq!(plain, "rc=0 errno=4242 reuseaddr=0", "without the library");
    for level in ["warn", "info"] {
        let (out, err) = run_probe(true, &[("REUSE_LOG", level)], &["stalepacket"]);
        assert_eq!(out, plain, "REUSE_LOG={level}: {err}");
    }
}

/// MPTCP is a TCP listener to every client (and leaves TIME_WAIT alike); an AF_INET socket
/// bound with sin_family AF_UNSPEC and INADDR_ANY, which Linux takes, is a v4 bind. Both get
/// the options.
#[test]
fn mptcp_and_unspec_family_binds_get_the_options() {
    if probe().is_none() {
        return;
    }
    let port = free_port().to_string();
    let (plain, _) = run_probe(false, &[], &["sock", "4", "mptcp", "127.0.0.1", &port]);
    if plain.starts_with("socket errno=") {
        assert!(!in_ci(), "MPTCP is needed under CI=true: {plain}");
        common::skip(&format!("this kernel has no MPTCP ({plain})"));
    } else {
        assert!(plain.contains("reuseaddr=0"), "{plain}");
        let (out, err) = run_probe(
            true,
            &[("REUSE_LOG", "info")],
            &["sock", "4", "mptcp", "127.0.0.1", &port],
        );
        assert!(
            out.starts_with("rc=0 errno=4242 type=1 ") && out.contains("reuseaddr=1"),
            "{out} {err}"
        );
    }
    let (plain, _) = run_probe(false, &[], &["sock", "4unspec", "tcp", "0.0.0.0", &port]);
    assert!(
        plain.starts_with("rc=0 ") && plain.contains("reuseaddr=0"),
        "{plain}"
    );
    let (out, err) = run_probe(
        true,
        &[("REUSE_LOG", "info")],
        &["sock", "4unspec", "tcp", "0.0.0.0", &port],
    );
    assert!(out.contains("reuseaddr=1"), "{out} {err}");
    assert!(
        err.contains(&format!("0.0.0.0:{port} tcp: SO_REUSEADDR")),
        "{err}"
    );
}

/// A UDP server that binds and waits, under the library or not.
fn udp_server(preload: bool, port: u16, env: &[(&str, &str)]) -> Proc {
    let code = "import socket,sys,time\n\
        s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind(('127.0.0.1', int(sys.argv[1])))\n\
        print('bound', flush=True)\n\
        time.sleep(60)\n";
    let mut c = command(python(), preload);
    c.args(["-c", code, &port.to_string()]);
    c.envs(env.iter().copied());
    c.stdout(std::process::Stdio::piped());
    let mut p = Proc {
        child: {
            c.stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            std::os::unix::process::CommandExt::process_group(&mut c, 0);
            spawn_retrying(&mut c).expect("python")
        },
        name: "udp".into(),
    };
    let mut line = String::new();
    let mut out = std::io::BufReader::new(p.child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "bound");
    p
}

/// UDP has no TIME_WAIT, so SO_REUSEADDR gains a restart nothing there, and on Linux it lets
/// a second live server bind the port and take its datagrams. Under the library a UDP bind
/// never succeeds where a live socket would have made it fail, unless sharing was asked
/// (`port`), and then the sharing is announced with the other PID. A failure names the UDP
/// holder, not a TCP server that happens to use the same number.
#[test]
fn a_second_live_udp_server_is_refused_unless_sharing_was_asked() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let ps = port.to_string();
    // A TCP listener on the same number, to be left out of the story.
    let mut tcp = command(probe().unwrap(), false);
    tcp.args(["listen", "4", "127.0.0.1", &ps]);
    let _tcp = spawn("tcp", &mut tcp);
    assert!(wait_listening(port, Duration::from_secs(5)));
    let udp_env = [("REUSE_PROTOCOLS", "tcp,udp")];
    let first = udp_server(true, port, &udp_env);
    let (out, err) = run_probe(true, &udp_env, &["bind", "4", "udp", "127.0.0.1", &ps]);
    assert!(
        out.starts_with("rc=-1 errno=98 "),
        "the second live UDP server must be refused: {out}"
    );
    assert!(
        err.contains(&format!("PID {} (python3", first.pid())) && err.contains("UDP"),
        "the UDP holder is named: {err}"
    );
    drop(first);

    // Sharing asked on both sides: the second binds, and says with whom.
    let share = [
        ("REUSE_PROTOCOLS", "tcp,udp"),
        ("REUSE_OPTIONS", "addr,port"),
    ];
    let port = free_port();
    let ps = port.to_string();
    let first = udp_server(true, port, &share);
    let (out, err) = run_probe(true, &share, &["bind", "4", "udp", "127.0.0.1", &ps]);
    assert!(
        out.starts_with("rc=0 errno=4242 reuseaddr=0 reuseport=1"),
        "{out} {err}"
    );
    assert!(
        err.contains(&format!(
            "now sharing this port with PID {} (python3)",
            first.pid()
        )) && err.contains("datagrams"),
        "{err}"
    );
    // reuse doctor --udp names it too.
    let o = run(
        command(reuse_bin(), false).args(["doctor", "--udp", &ps]),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!(
            "ipv4 udp: bound on 127.0.0.1:{port}, PID {}",
            first.pid()
        )),
        "{text}"
    );
    assert_eq!(o.status.code(), Some(1), "{text}");
}

/// PHP loads its extensions with RTLD_DEEPBIND, so ext/sockets' `socket_bind()` went to libc
/// directly: no option, no line, every restart failed. The library now points such objects'
/// imports of the hooked functions at the hooks: a PHP ext/sockets daemon restarts through
/// TIME_WAIT under it (and not without it), and says so at REUSE_LOG=info.
#[test]
fn a_php_ext_sockets_server_restarts_at_once() {
    let Some(php) = require("php", "apt-get install php-cli") else {
        return;
    };
    let script = repo_root().join("tests/apps/php_server.php");
    let start = |pre: bool, port: u16| {
        let mut c = command(&php, pre);
        c.arg(&script)
            .env("PORT", port.to_string())
            .env("REUSE_LOG", "info");
        spawn("php", &mut c)
    };
    let (ok, err) = restart_cycle(free_port(), false, false, libc::SIGKILL, &start);
    assert!(
        !ok && err.contains("Address already in use"),
        "control: {err}"
    );
    let port = free_port();
    let (ok, err) = restart_cycle(port, true, true, libc::SIGKILL, &start);
    assert!(ok, "under the library the PHP server must come back: {err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port} tcp: SO_REUSEADDR")),
        "{err}"
    );
}

/// An invalid configuration inherited by a wrapper chain is reported once per process tree,
/// not once per exec (a pyenv shim runs dozens of programs): the first reporter leaves a
/// mark its children inherit. A child with another invalid value reports that one.
#[test]
fn an_invalid_configuration_is_reported_once_per_process_tree() {
    let script = "sh -c true; sh -c 'sh -c true'; sh -c true; \
                  REUSE_PORTS=abc sh -c 'sh -c true; sh -c true'";
    let mut c = command("sh", true);
    c.args(["-c", script]).env("REUSE_PORTS", "80O");
    let out = run(&mut c, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("invalid REUSE_PORTS") && lines[0].contains("\"80O\""),
        "{err}"
    );
    assert!(lines[1].contains("\"abc\""), "{err}");
}
