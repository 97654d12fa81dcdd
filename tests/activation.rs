//! Socket activation for unmodified servers: the library takes a listening socket passed by a
//! service manager (LISTEN_FDS), and `reuse run --hold` holds the passed sockets, so the
//! socket belongs to the service manager and a restart of everything refuses nothing. Real
//! processes: systemd's own `systemd-socket-activate`, and a small supervisor of the test's
//! own that passes a socket the way systemd does and restarts what dies (Restart=always).

use reuse_testkit as common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// The inodes of the listening sockets on `port`, from the kernel's table.
fn listener_inodes(port: u16) -> Vec<u64> {
    sockets_on_port(port)
        .into_iter()
        .filter(|e| e.state == reuse_core::proc_net::TCP_LISTEN)
        .map(|e| e.inode)
        .collect()
}

/// An unmodified Python server and a legacy C server, started by systemd-socket-activate on
/// its first connection with the library preloaded, serve on the very socket the activator
/// made (one listener on the port, the activator's), and the library says so.
#[test]
fn systemd_socket_activate_starts_unmodified_servers_on_its_socket() {
    let Some(ssa) = require("systemd-socket-activate", "apt-get install systemd") else {
        return;
    };
    let Some(probe) = probe() else { return };
    let app = repo_root().join("examples/python/app.py");
    for (name, server) in [
        (
            "python",
            vec![python().display().to_string(), app.display().to_string()],
        ),
        (
            "legacy C",
            vec![
                probe.display().to_string(),
                "serve".into(),
                "4".into(),
                "127.0.0.1".into(),
            ],
        ),
    ] {
        let port = free_port();
        let mut c = command(&ssa, false);
        c.arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!("--setenv=LD_PRELOAD={}", lib_path().display()))
            .arg("--setenv=REUSE_LOG=info")
            .arg(format!("--setenv=PORT={port}"))
            .args(&server);
        if name == "legacy C" {
            c.arg(port.to_string());
        }
        let p = spawn("systemd-socket-activate", &mut c);
        assert!(
            wait_listening(port, Duration::from_secs(10)),
            "{name}: the activator never listened"
        );
        let made = listener_inodes(port);
        assert_eq!(made.len(), 1, "{name}");
        // The first connection starts the server; it must answer on the activator's socket.
        let answered = wait_http("127.0.0.1", port, Duration::from_secs(20));
        let after = listener_inodes(port);
        let err = p.stderr_text();
        assert!(answered.is_some(), "{name}: {err}");
        assert_eq!(
            after, made,
            "{name}: the server listens on a socket of its own: {err}"
        );
        assert!(
            err.contains("the socket passed by the service manager (LISTEN_FDS, descriptor 3"),
            "{name}: {err}"
        );
    }
}

/// LISTEN_FDS concerns the process LISTEN_PID names: another process's passed socket is left
/// alone (the bind fails as it would), this process's is taken.
#[test]
fn a_socket_passed_to_another_process_is_left_alone() {
    let Some(probe) = probe() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let fd = listener.as_raw_fd();
    let run_with = |pid: &str| {
        let mut c = command("sh", true);
        c.arg("-c")
            .arg(format!(
                "LISTEN_PID={pid} exec \"$0\" sock 4 tcp 127.0.0.1 {port}"
            ))
            .arg(&probe);
        pass_at_3(&mut c, fd);
        let out = run(&mut c, Duration::from_secs(20));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let theirs = run_with("1");
    assert!(theirs.starts_with("rc=-1 errno=98 "), "{theirs}");
    let mine = run_with("$$");
    assert!(
        mine.starts_with(&format!("rc=0 errno=4242 type=1 listening=1 port={port} ")),
        "{mine}"
    );
}

#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    refused: usize,
    other: usize,
}

fn client(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut t = Tally::default();
        let t0 = Instant::now();
        while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(120) {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(mut s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut body = String::new();
                    let ok = s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
                        && s.read_to_string(&mut body).is_ok()
                        && body.contains("ok");
                    if ok {
                        t.answered += 1;
                    } else {
                        t.other += 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => t.refused += 1,
                Err(_) => t.other += 1,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        t
    })
}

/// Starts `reuse run --hold PORT -- sh -c 'while :; do SERVER; done'` as a service manager
/// would: its socket as descriptor 3, LISTEN_FDS=1, LISTEN_PID naming reuse, in a process
/// group of its own (systemd kills a unit's whole cgroup).
fn start_unit(listener: &TcpListener, port: u16, log: &std::path::Path) -> Child {
    let fd = listener.as_raw_fd();
    let server = format!(
        "while :; do {} {}; done",
        python().display(),
        repo_root().join("examples/python/app.py").display()
    );
    let mut c = command("sh", false);
    c.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" run --hold \"$PORT\" -- sh -c \"$1\"")
        .arg(reuse_bin())
        .arg(server)
        .env("REUSE_LIB", lib_path())
        .env("PORT", port.to_string())
        // The rendezvous folder in the test's own folder: reuse is SIGKILLed here and
        // cannot take it away itself.
        .env("XDG_RUNTIME_DIR", log.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .process_group(0);
    pass_at_3(&mut c, fd);
    spawn_retrying(&mut c).expect("reuse")
}

/// A supervisor of the test's own (the socket, LISTEN_FDS, Restart=always) runs `reuse run
/// --hold` around a restart loop; while a client asks every 10 ms, the test kills the server
/// 10 times and reuse itself (its whole group, as systemd stops a unit) 5 times. The socket
/// is the supervisor's, so no connection is ever refused.
#[test]
fn killing_the_server_and_reuse_itself_refuses_nothing_under_a_socket_unit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = TempDir::new("socket-unit");
    let log = dir.join("unit.log");
    let mut unit = start_unit(&listener, port, &log);
    assert!(
        wait_http("127.0.0.1", port, Duration::from_secs(20)).is_some(),
        "never served"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let asking = client(port, stop.clone());
    let server_pid = || -> Option<i32> {
        http_get("127.0.0.1", port)
            .ok()?
            .rsplit("pid=")
            .next()?
            .trim()
            .parse()
            .ok()
    };
    let mut kills = (0, 0);
    for round in 0..15 {
        std::thread::sleep(Duration::from_millis(400));
        if round % 3 == 2 {
            // reuse and everything under it, as `systemctl restart` does; then Restart=always.
            common::kill(-(unit.id() as i32), libc::SIGKILL);
            let _ = unit.wait();
            unit = start_unit(&listener, port, &log);
            kills.1 += 1;
        } else if let Some(pid) = server_pid() {
            common::kill(pid, libc::SIGKILL);
            kills.0 += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let t = asking.join().unwrap();
    common::kill(-(unit.id() as i32), libc::SIGKILL);
    let _ = unit.wait();
    eprintln!("socket unit: {kills:?} kills (server, reuse): {t:?}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        said.matches(&format!(
            "holding 127.0.0.1:{port}, the socket passed by the service manager"
        ))
        .count(),
        6,
        "each reuse holds the unit's socket: {said}"
    );
    assert!(kills.0 >= 8 && kills.1 == 5, "{kills:?}");
    assert_eq!(t.refused, 0, "{t:?}");
    assert!(t.answered > 100, "{t:?}");
}

/// The development loop systemfd's users want, without listenfd in the app: `systemfd
/// --no-pid -s PORT -- reuse run --hold PORT -- <restart loop>` (cargo watch in real life).
/// systemfd makes the socket, reuse holds it for every instance: nothing refused.
#[test]
fn systemfd_then_reuse_hold_refuses_nothing_across_restarts() {
    let Some(systemfd) = require(
        "systemfd",
        "cargo install systemfd --locked --version 0.4.6 (.ci/install)",
    ) else {
        return;
    };
    let port = free_port();
    let dir = TempDir::new("systemfd");
    let done = dir.join("done");
    let server = format!(
        "{} {}",
        python().display(),
        repo_root().join("examples/python/app.py").display()
    );
    let script = format!(
        "for i in $(seq 8); do {server} & pid=$!; sleep 0.4; kill -TERM $pid; wait $pid; sleep 0.1; done\n\
         {server} & pid=$!; sleep 0.3; touch {done}; trap 'kill -TERM $pid' TERM; wait $pid\n",
        done = done.display()
    );
    let mut c = command(&systemfd, false);
    c.args(["--no-pid", "-s", &format!("127.0.0.1:{port}"), "--"])
        .arg(reuse_bin())
        .args([
            "run",
            "--hold",
            &port.to_string(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("REUSE_LIB", lib_path())
        .env("PORT", port.to_string());
    let mut p = spawn("systemfd", &mut c);
    assert!(wait_listening(port, Duration::from_secs(20)));
    let stop = Arc::new(AtomicBool::new(false));
    let asking = client(port, stop.clone());
    wait_file(&done, Duration::from_secs(60));
    stop.store(true, Ordering::SeqCst);
    let t = asking.join().unwrap();
    p.signal_group(libc::SIGTERM);
    let _ = p.wait_exit(Duration::from_secs(10));
    let err = p.stderr_text();
    eprintln!("systemfd + reuse --hold: {t:?}");
    assert!(
        err.contains(&format!(
            "holding 127.0.0.1:{port}, the socket passed by the service manager (LISTEN_FDS"
        )),
        "reuse holds systemfd's socket: {err}"
    );
    assert_eq!(t.refused, 0, "{t:?}\n{err}");
    assert!(t.answered > 100, "{t:?}");
}

/// A program started with a socket passed at descriptor 3 (LISTEN_FDS=1, LISTEN_PID its
/// own), running Python's `socket`: binds, closes and binds again three times, each bind
/// answered with the passed socket (it once stood in only once: the second bind failed);
/// and a second socket bound while the first is open is refused, as without activation.
#[test]
fn a_passed_socket_stands_in_again_after_the_program_closed_its_own() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    let passed_inode = listener_inodes(port);
    assert_eq!(passed_inode.len(), 1);
    let script = format!(
        "import os, socket\n\
         for i in range(3):\n\
         \x20   s = socket.socket()\n\
         \x20   s.bind(('127.0.0.1', {port}))\n\
         \x20   print('bound', os.fstat(s.fileno()).st_ino)\n\
         \x20   t = socket.socket()\n\
         \x20   try:\n\
         \x20       t.bind(('127.0.0.1', {port}))\n\
         \x20       print('second bound too')\n\
         \x20   except OSError as e:\n\
         \x20       print('second', e.errno)\n\
         \x20   t.close()\n\
         \x20   s.close()\n"
    );
    let out = python_with_passed_socket(fd, &script);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let want = format!("bound {}\nsecond 98\n", passed_inode[0]).repeat(3);
    assert_eq!(text, want, "{}", String::from_utf8_lossy(&out.stderr));
}

/// LISTEN_FDS inherited by a program that closes descriptor 3 and makes a listener of its
/// own there: a second bind of that address is refused, as without the library; the
/// program's own listener never stands in for another of its sockets. (It once did: both
/// descriptors shared one socket.)
#[test]
fn a_listener_the_program_put_at_descriptor_3_is_not_taken_for_a_passed_one() {
    let port = free_port();
    let script = format!(
        "import os, socket\n\
         try:\n\
         \x20   os.close(3)\n\
         except OSError:\n\
         \x20   pass\n\
         s = socket.socket()\n\
         assert s.fileno() == 3, s.fileno()\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n{}",
        bind_again(port)
    );
    let mut c = command(python(), true);
    c.arg("-c").arg(&script).env("LISTEN_FDS", "1");
    let out = run(&mut c, Duration::from_secs(20));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "refused 98",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A program that dup()s the socket the passed one stood in for, closes the original and
/// binds again still holds the passed socket: the second bind is refused, as without the
/// service manager. (The check once looked at the first descriptor number only.)
#[test]
fn a_passed_socket_kept_under_another_number_does_not_stand_in_twice() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    let script = format!(
        "import os, socket\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', {port}))\n\
         kept = os.dup(s.fileno())\n\
         s.close()\n{}",
        bind_again(port)
    );
    let out = python_with_passed_socket(fd, &script);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "refused 98",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Has `c` start as under a service manager: `fd` at descriptor 3, inherited, and
/// LISTEN_FDS=1 (LISTEN_PID is the caller's to set).
fn pass_at_3(c: &mut std::process::Command, fd: std::os::fd::RawFd) {
    c.env("LISTEN_FDS", "1");
    // SAFETY: dup2 and fcntl only, between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A Python script started with `fd` passed to it, LISTEN_PID its own PID.
fn python_with_passed_socket(fd: std::os::fd::RawFd, script: &str) -> std::process::Output {
    let mut c = command("sh", true);
    c.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" -c \"$1\"")
        .arg(python())
        .arg(script);
    pass_at_3(&mut c, fd);
    run(&mut c, Duration::from_secs(20))
}

/// Python lines that bind a new socket to `port` and print `bound again`, or `refused
/// ERRNO`.
fn bind_again(port: u16) -> String {
    format!(
        "t = socket.socket()\n\
         try:\n\
         \x20   t.bind(('127.0.0.1', {port}))\n\
         \x20   print('bound again')\n\
         except OSError as e:\n\
         \x20   print('refused', e.errno)\n"
    )
}
