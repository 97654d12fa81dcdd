//! When a live socket holds the port: REUSE_WAIT_MS waits it out, REUSE_TAKEOVER stops an
//! orphan of the same program, and the failure line names the holder.

use reuse_testkit as common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn listener(preload: bool, port: u16, env: &[(&str, &str)]) -> Proc {
    let mut c = command(probe().unwrap(), preload);
    c.args(["listen", "4", "127.0.0.1", &port.to_string()]);
    c.envs(env.iter().copied());
    let p = spawn("listener", &mut c);
    assert!(
        wait_listening(port, Duration::from_secs(5)),
        "listener did not start"
    );
    p
}

fn bind_once(env: &[(&str, &str)], port: u16) -> (String, String, Duration) {
    let mut c = command(probe().unwrap(), true);
    c.args(["bind", "4", "tcp", "127.0.0.1", &port.to_string()]);
    c.envs(env.iter().copied());
    let t0 = Instant::now();
    let out = run(&mut c, Duration::from_secs(30));
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        t0.elapsed(),
    )
}

#[test]
fn a_holder_that_lets_go_is_waited_for() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let mut holder = listener(false, port, &[]);
    let pid = holder.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        common::kill(pid, libc::SIGKILL);
    });
    let (out, err, took) = bind_once(&[("REUSE_WAIT_MS", "5000"), ("REUSE_LOG", "info")], port);
    killer.join().unwrap();
    holder.stop(libc::SIGKILL);
    assert!(
        out.starts_with("rc=0 errno=4242 reuseaddr=1"),
        "{out} {err}"
    );
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(err.contains("bound after waiting"), "{err}");
}

#[test]
fn a_holder_that_stays_is_named_after_the_window() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let holder = listener(false, port, &[]);
    let (out, err, took) = bind_once(&[("REUSE_WAIT_MS", "300")], port);
    assert!(out.starts_with("rc=-1 errno=98 "), "{out}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let want = format!("PID {} (probe", holder.pid());
    // Two lines: the wait says whom it waits for and how long at most; the failure names the
    // holder again and does not advise the wait it just did.
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains(&want)
            && lines[0].contains("uid ")
            && lines[0].contains("waiting up to 300 ms"),
        "{err}"
    );
    assert!(
        lines[1].contains(&want) && lines[1].contains("after waiting 300 ms"),
        "{err}"
    );
    assert!(!lines[1].contains("REUSE_WAIT_MS"), "{err}");
    // Without a wait the failure is immediate and still explained.
    let (out, err, _) = bind_once(&[], port);
    assert!(out.starts_with("rc=-1 errno=98 "), "{out}");
    assert!(err.contains(&want), "{err}");
}

/// A pre-forking server; returns the master and the PID of its worker.
fn fork_server(port: u16) -> (Proc, i32) {
    let mut c = command(probe().unwrap(), true);
    c.args(["forkserve", "4", "127.0.0.1", &port.to_string()]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    // Owned by a Proc at once, so a failure below still kills the master and its worker.
    let mut p = Proc {
        child: c.spawn().expect("spawn forkserve"),
        name: "forkserve".into(),
    };
    // The worker's "ready" and the master's "worker=PID" race; look for the latter.
    let worker = BufReader::new(p.child.stdout.take().unwrap())
        .lines()
        .take(4)
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("worker=")
                .and_then(|p| p.parse::<i32>().ok())
        })
        .expect("forkserve prints its worker's PID");
    (p, worker)
}

#[test]
fn an_orphaned_worker_of_the_same_program_is_taken_over() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let (mut master, worker) = fork_server(port);
    assert!(wait_http("127.0.0.1", port, Duration::from_secs(5)).is_some());
    master.signal(libc::SIGKILL); // the worker is orphaned and still listens
    let _ = master.child.wait();
    assert!(alive(worker) && listening(port));

    // Without takeover: refused, and the orphan is named.
    let mut c = command(probe().unwrap(), true);
    c.args(["serve", "4", "127.0.0.1", &port.to_string()]);
    let out = run(&mut c, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(98));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("PID {worker} ")));
    assert!(alive(worker));

    // Under takeover, the same executable with another command line is not the same server
    // (every Python script runs python3): left alone, and named.
    let mut c = command(probe().unwrap(), true);
    c.args(["serve", "4", "127.0.0.1", &port.to_string()]);
    c.env("REUSE_TAKEOVER", "1").env("REUSE_WAIT_MS", "200");
    let out = run(&mut c, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(98));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "not taking over from PID {worker} (probe): the same program with another command line"
        )),
        "{err}"
    );
    assert!(alive(worker));

    // The same server started again (same executable, same command line): taken over.
    let mut c = command(probe().unwrap(), true);
    c.args(["forkserve", "4", "127.0.0.1", &port.to_string()]);
    c.env("REUSE_TAKEOVER", "1").env("REUSE_WAIT_MS", "2000");
    let next = spawn("next", &mut c);
    assert!(wait_http("127.0.0.1", port, Duration::from_secs(10)).is_some());
    let t0 = Instant::now();
    while alive(worker) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(worker), "the orphan must be gone");
    let err = next.stderr_text();
    assert!(
        err.contains(&format!("taking over: stopping PID {worker} (probe)")),
        "{err}"
    );
}

/// Starts `python3 -c CODE PORT` in a process group of its own (the test kills it with a
/// `Group`), and returns it with the first line it printed.
fn start_python(code: &str, port: &str, preload: bool, env: &[(&str, &str)]) -> (Proc, String) {
    let mut c = command(python(), preload);
    c.args(["-c", code, port]).envs(env.iter().copied());
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut p = Proc {
        child: c.spawn().expect("spawn python"),
        name: "python".into(),
    };
    let mut line = String::new();
    let _ = BufReader::new(p.child.stdout.take().unwrap()).read_line(&mut line);
    (p, line)
}

/// Whether `pid` ends within `limit`.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let t0 = Instant::now();
    while alive(pid) && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
    !alive(pid)
}

/// The PIDs a line lists.
fn pids(line: &str) -> Vec<i32> {
    line.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A leftover instance of several processes that share one listening socket (a master and
/// its workers, as `php -S` with PHP_CLI_SERVER_WORKERS makes, whose workers outlive their
/// master's SIGTERM): takeover stops each of them in turn, then binds. (It once stopped the
/// master alone and gave up without a word, and the server failed with EADDRINUSE.)
#[test]
fn takeover_stops_every_process_of_a_leftover_instance_that_holds_the_socket() {
    let code = "import os,socket,sys,time
s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)
kids = []
for _ in range(2):
    k = os.fork()
    if k == 0:
        for _ in range(60): time.sleep(1)
        os._exit(0)
    kids.append(k)
print(' '.join(str(p) for p in [os.getpid()] + kids), flush=True)
time.sleep(60)
";
    let port = free_port().to_string();
    let start = |preload: bool, env: &[(&str, &str)]| {
        let (p, line) = start_python(code, &port, preload, env);
        (p, pids(&line))
    };
    let (old, old_pids) = start(false, &[]);
    let _group = Group(old.pid());
    assert_eq!(old_pids.len(), 3, "the old instance did not start");
    let (new, new_pids) = start(true, &[("REUSE_TAKEOVER", "1"), ("REUSE_WAIT_MS", "1000")]);
    let _new_group = Group(new.pid());
    let err = new.stderr_text();
    assert_eq!(new_pids.len(), 3, "the new instance did not bind: {err}");
    for pid in &old_pids {
        assert!(
            gone_within(*pid, Duration::from_secs(5)),
            "PID {pid} of the old instance still runs: {err}"
        );
    }
    assert!(err.contains("taking over: stopping PID"), "{err}");
}

/// When one of the processes that hold the socket may not be stopped (here `sleep`, another
/// program, which inherited it), takeover stops none of them: stopping the others would not
/// free the port. The bind fails, and the line names who holds it. (Which processes were
/// stopped once depended on the order of their PIDs.)
#[test]
fn takeover_stops_nobody_when_one_holder_may_not_be_stopped() {
    let code = "import os,socket,sys,time
s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)
os.set_inheritable(s.fileno(), True)
kids = []
for _ in range(2):
    k = os.fork()
    if k == 0:
        for _ in range(30): time.sleep(1)
        os._exit(0)
    kids.append(k)
other = os.fork()
if other == 0:
    os.execvp('sleep', ['sleep', '30'])
print(' '.join(str(p) for p in [os.getpid()] + kids + [other]), flush=True)
time.sleep(30)
";
    let port = free_port().to_string();
    let start = |preload: bool, env: &[(&str, &str)]| {
        let (p, line) = start_python(code, &port, preload, env);
        (p, pids(&line))
    };
    let (old, old_pids) = start(false, &[]);
    let _group = Group(old.pid());
    assert_eq!(old_pids.len(), 4, "the old instance did not start");
    let (mut new, new_pids) = start(true, &[("REUSE_TAKEOVER", "1")]);
    let _new_group = Group(new.pid());
    let _ = new.child.wait();
    let err = new.stderr_text();
    assert!(new_pids.is_empty(), "the new instance bound: {err}");
    for pid in &old_pids {
        assert!(alive(*pid), "PID {pid} was stopped: {err}");
    }
    let sleep = old_pids[3];
    assert!(
        err.contains(&format!(
            "not taking over from PID {sleep} (sleep): another program"
        )) && !err.contains("taking over: stopping")
            && err.contains("bind failed (EADDRINUSE)"),
        "{err}"
    );
}

/// A socket on the port that is not in the bind's way (an IPv6-only listener of another
/// program, beside an IPv4 bind) does not stop the takeover of the leftover that is. (A
/// refusal anywhere on the port once ended the whole takeover.)
#[test]
fn a_holder_of_another_socket_on_the_port_does_not_block_the_takeover() {
    if !has_ipv6() {
        common::skip("no IPv6 on this host");
        return;
    }
    let v6only = "import socket,sys,time
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(('::', int(sys.argv[1]))); s.listen(8); print('v6', flush=True); time.sleep(20)
";
    let code = "import os,socket,sys,time
s = socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(8)
k = os.fork()
if k == 0:
    for _ in range(20): time.sleep(1)
    os._exit(0)
print(os.getpid(), k, flush=True)
time.sleep(20)
";
    let port = free_port().to_string();
    let start =
        |code: &str, preload: bool, env: &[(&str, &str)]| start_python(code, &port, preload, env);
    let (other, said) = start(v6only, false, &[]);
    let _other_group = Group(other.pid());
    assert_eq!(said.trim(), "v6");
    let (old, old_pids) = start(code, false, &[]);
    let _group = Group(old.pid());
    let old_pids = pids(&old_pids);
    assert_eq!(old_pids.len(), 2, "the old instance did not start");
    let (new, new_pids) = start(code, true, &[("REUSE_TAKEOVER", "1")]);
    let _new_group = Group(new.pid());
    let err = new.stderr_text();
    assert_eq!(
        new_pids.split_whitespace().count(),
        2,
        "the new instance did not bind: {err}"
    );
    assert!(
        alive(other.pid()),
        "the IPv6-only listener was stopped: {err}"
    );
    for pid in &old_pids {
        assert!(
            gone_within(*pid, Duration::from_secs(5)),
            "PID {pid} of the old instance still runs: {err}"
        );
    }
}

/// Kills a process group the test made, when the test ends (passed or not).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: signals the group this test created.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

#[test]
fn a_listener_of_another_program_is_left_alone_under_takeover() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    // The holder is Python, the binder is the C probe: different executables.
    let mut c = command(python(), false);
    c.args([
        "-c",
        "import socket,sys,time\ns=socket.socket(); s.bind(('127.0.0.1',int(sys.argv[1]))); s.listen()\ntime.sleep(60)",
        &port.to_string(),
    ]);
    let holder = spawn("python-holder", &mut c);
    assert!(wait_listening(port, Duration::from_secs(10)));
    let (out, err, _) = bind_once(&[("REUSE_TAKEOVER", "1"), ("REUSE_WAIT_MS", "200")], port);
    assert!(out.starts_with("rc=-1 errno=98 "), "{out}");
    assert!(alive(holder.pid()), "another program must never be touched");
    assert!(
        err.contains(&format!(
            "not taking over from PID {} (python",
            holder.pid()
        )),
        "{err}"
    );
    assert!(err.contains("another program"), "{err}");
}

#[test]
fn so_reuseport_sharing_is_announced_with_the_other_pid() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let env = [("REUSE_OPTIONS", "addr,port")];
    let holder = listener(true, port, &env);
    let (out, err, _) = bind_once(&env, port);
    assert!(
        out.starts_with("rc=0 ") && out.contains("reuseport=1"),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "sharing this port with PID {} (probe)",
            holder.pid()
        )),
        "{err}"
    );
    // Alone on its port, the same options say nothing.
    let (_, err, _) = bind_once(&env, free_port());
    assert_eq!(err, "");
}

#[test]
fn the_wait_costs_nothing_when_the_port_is_free() {
    if probe().is_none() {
        return;
    }
    let (out, err, took) = bind_once(&[("REUSE_WAIT_MS", "3000")], free_port());
    assert!(out.starts_with("rc=0 "), "{out} {err}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let _ = Command::new("true").status();
}

/// nodemon restarting a Python app whose shutdown keeps its port for a second
/// (tests/apps/slow_release.py): nodemon starts the next instance at once, which crashes with
/// EADDRINUSE; with REUSE_WAIT_MS the next instance waits for the port and comes back.
#[test]
fn nodemon_restarts_an_app_that_keeps_its_port_a_second_only_with_the_wait() {
    let Some(nodemon) = nodemon() else { return };
    let dir = std::env::temp_dir().join(format!("reuse-slow-release-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app.py");
    std::fs::copy(repo_root().join("tests/apps/slow_release.py"), &app).unwrap();
    let exec = format!("{} app.py", python().display());

    let cycle = |wait: Option<&str>| -> (usize, String) {
        let port = free_port();
        let mut c = command(reuse_bin(), false);
        c.env("REUSE_LIB", lib_path())
            .env("PORT", port.to_string())
            .current_dir(&dir);
        c.arg("run");
        if let Some(ms) = wait {
            c.args(["--wait", ms]);
        }
        c.arg("--").arg(&nodemon);
        c.args([
            "--watch", "app.py", "--signal", "SIGTERM", "--delay", "0", "--exec", &exec,
        ]);
        let p = spawn("nodemon", &mut c);
        assert!(
            wait_http("127.0.0.1", port, Duration::from_secs(20)).is_some(),
            "first start"
        );
        let mut back = 0;
        for _ in 0..4 {
            let text = std::fs::read_to_string(&app).unwrap();
            std::fs::write(&app, format!("{text}\n# touched\n")).unwrap();
            // The old instance must be gone before asking, or it would answer for the new one.
            std::thread::sleep(Duration::from_millis(300));
            if wait_http("127.0.0.1", port, Duration::from_secs(4)).is_some() {
                back += 1;
            } else {
                break;
            }
        }
        (back, p.stderr_text())
    };

    let (back, err) = cycle(None);
    assert_eq!(back, 0, "without the wait the restart must fail: {err}");
    assert!(
        err.contains("Address already in use") && err.contains("is listening on this port"),
        "{err}"
    );

    let (back, err) = cycle(Some("3000"));
    assert_eq!(back, 4, "with the wait every restart comes back: {err}");
    assert!(!err.contains("Address already in use"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pre-forking Python server: the master binds and listens, forks a worker that keeps the
/// listener; then `who` (master or worker) binds the port once more, which the kernel
/// refuses. Prints that bind's errno; both stay up 30 s unless stopped.
const FAMILY: &str = "import os,socket,sys,time
port, who = int(sys.argv[1]), sys.argv[2]
s = socket.socket(); s.bind(('127.0.0.1', port)); s.listen(8)
pid = os.fork()
me = 'worker' if pid == 0 else 'master'
if pid: print('worker', pid, flush=True)
if me == who:
    time.sleep(0.3)
    t = socket.socket()
    try:
        t.bind(('127.0.0.1', port)); print(me, 'bound', flush=True)
    except OSError as e:
        print(me, e.errno, flush=True)
time.sleep(30)
";

/// Takeover never stops the caller's own family: a master's second bind does not stop its
/// own forked worker, and a worker's failing bind does not stop its master. (Both hold the
/// listener, run the same executable with the same command line, as the same user: what
/// takeover looks for in a leftover instance.)
#[test]
fn takeover_never_stops_the_callers_own_master_or_worker() {
    for who in ["master", "worker"] {
        let port = free_port();
        let mut c = command(python(), true);
        c.args(["-c", FAMILY, &port.to_string(), who])
            .env("REUSE_TAKEOVER", "1")
            .env("REUSE_WAIT_MS", "200")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut p = Proc {
            child: spawn_retrying(&mut c).expect("python"),
            name: "family".into(),
        };
        let master = p.pid();
        let mut lines = BufReader::new(p.child.stdout.take().unwrap()).lines();
        let worker: i32 = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.strip_prefix("worker ").and_then(|w| w.parse().ok()))
            .expect("worker pid");
        let said = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            said,
            format!("{who} 98"),
            "the second bind is refused as without reuse"
        );
        std::thread::sleep(Duration::from_millis(300));
        let (alive_master, alive_worker) = (alive(master), alive(worker));
        let err = p.stderr_text();
        assert!(
            alive_master && alive_worker,
            "{who}'s bind stopped its family: {err}"
        );
        let (other, why) = if who == "master" {
            (worker, "this process started it")
        } else {
            (master, "it started this process")
        };
        assert!(
            err.contains(&format!("not taking over from PID {other} (python")) && err.contains(why),
            "{who}: {err}"
        );
        common::kill(worker, libc::SIGKILL);
    }
}

/// A signal delivered while REUSE_WAIT_MS waits ends the wait: the bind returns EADDRINUSE
/// at once, as it would have without waiting, and the program's handler runs (Ctrl-C, a
/// handled SIGTERM). It once waited out the whole window.
#[test]
fn a_signal_ends_the_wait() {
    if probe().is_none() {
        return;
    }
    let port = free_port();
    let _holder = listener(false, port, &[]);
    let code = "import signal,socket,sys,time
signal.signal(signal.SIGUSR1, lambda *a: print('handled', flush=True))
print('binding', flush=True)
t0 = time.monotonic()
try:
    socket.socket().bind(('127.0.0.1', int(sys.argv[1])))
except OSError as e:
    print('errno', e.errno, 'after', round(time.monotonic() - t0, 1), flush=True)
";
    let mut c = command(python(), true);
    c.args(["-c", code, &port.to_string()])
        .env("REUSE_WAIT_MS", "15000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut p = Proc {
        child: spawn_retrying(&mut c).expect("python"),
        name: "waiter".into(),
    };
    let mut lines = BufReader::new(p.child.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("binding")
    );
    std::thread::sleep(Duration::from_millis(700));
    let t0 = Instant::now();
    p.signal(libc::SIGUSR1);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the wait went on after the signal: {took:?}"
    );
    assert!(rest.iter().any(|l| l == "handled"), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("errno 98 after ")),
        "{rest:?}"
    );
}
