//! Hold mode: `reuse run --hold PORT` keeps the listening socket across restarts, so a
//! client that keeps asking while the server is killed and started again is never refused.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    refused: usize,
    other: usize,
}

/// Asks `GET /` every 10 ms until `stop` (at most 60 s), counting answers and refusals.
fn client(port: u16, stop: Arc<AtomicBool>) -> thread::JoinHandle<Tally> {
    thread::spawn(move || {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut t = Tally::default();
        let t0 = Instant::now();
        while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(60) {
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
            thread::sleep(Duration::from_millis(10));
        }
        t
    })
}

/// Runs `reuse run [--hold PORT] -- sh restarts.sh` while a client asks, until the script
/// says its restarts are done; then stops reuse with SIGTERM (which it passes on).
fn under_reuse(hold: bool, port: u16, dir: &Path, restarts: usize) -> (Tally, Option<i32>) {
    let script = restart_loop_script(dir, restarts);
    let done = dir.join("done");
    let _ = std::fs::remove_file(&done);
    let mut c = command(reuse_bin(), false);
    c.env("REUSE_LIB", lib_path())
        .current_dir(dir)
        .env("PORT", port.to_string());
    c.arg("run");
    if hold {
        c.args(["--hold", &port.to_string()]);
    }
    c.arg("--").arg("sh").arg(&script);
    let mut p = spawn("reuse", &mut c);
    assert!(
        wait_listening(port, Duration::from_secs(20)),
        "the first instance never listened"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let asking = client(port, stop.clone());
    let t0 = Instant::now();
    while !done.exists() && t0.elapsed() < Duration::from_secs(60) {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let tally = asking.join().unwrap();
    p.signal(libc::SIGTERM);
    let status = p.wait_exit(Duration::from_secs(20)).and_then(|s| s.code());
    (tally, status)
}

/// A shell loop: each instance serves for 300 ms, then gets SIGTERM and the next starts at
/// once; after the last restart the script marks `done` and becomes the final instance.
fn restart_loop_script(dir: &Path, restarts: usize) -> PathBuf {
    let py = python();
    let app = repo_root().join("examples/python/app.py");
    let script = dir.join("restarts.sh");
    std::fs::write(
        &script,
        format!(
            "for i in $(seq {restarts}); do\n  {py} {app} & pid=$!\n  sleep 0.3\n  kill -TERM $pid; wait $pid\ndone\n\
             {py} {app} & pid=$!\nsleep 0.3\ntouch done\ntrap 'kill -TERM $pid' TERM\nwait $pid\nwait $pid\n",
            py = py.display(),
            app = app.display()
        ),
    )
    .unwrap();
    script
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("reuse-hold-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn no_connection_is_refused_while_a_python_server_restarts_15_times() {
    let dir = temp_dir("python");
    let (held, status) = under_reuse(true, free_port(), &dir, 15);
    eprintln!("--hold: {held:?}");
    assert_eq!(
        status,
        Some(0),
        "SIGTERM reaches COMMAND, and reuse ends with its status"
    );
    assert_eq!(
        held.refused, 0,
        "with --hold no connection may be refused: {held:?}"
    );
    let asked = held.answered + held.refused + held.other;
    assert!(
        held.answered * 100 >= asked * 95,
        "nearly every request answered: {held:?}"
    );

    // The control: the same restarts without --hold refuse connections in the gaps.
    let (plain, _) = under_reuse(false, free_port(), &dir, 15);
    eprintln!("without --hold: {plain:?}");
    assert!(
        plain.refused > 0,
        "the control must show refusals: {plain:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_connection_is_refused_while_nodemon_restarts_a_node_app_15_times() {
    let Some(nodemon) = nodemon() else { return };
    let dir = temp_dir("nodemon");
    std::fs::copy(repo_root().join("examples/node/app.js"), dir.join("app.js")).unwrap();
    std::fs::copy(
        repo_root().join("examples/node/nodemon.json"),
        dir.join("nodemon.json"),
    )
    .unwrap();
    let touch = |dir: PathBuf| {
        move || {
            for _ in 0..15 {
                thread::sleep(Duration::from_millis(700));
                let app = dir.join("app.js");
                let text = std::fs::read_to_string(&app).unwrap();
                std::fs::write(&app, format!("{text}\n// touched\n")).unwrap();
            }
            thread::sleep(Duration::from_millis(1500));
        }
    };
    let run = |hold: bool, port: u16| {
        let nm = nodemon.to_str().unwrap().to_string();
        let d = dir.clone();
        let mut c = command(reuse_bin(), false);
        c.env("REUSE_LIB", lib_path())
            .current_dir(&d)
            .env("PORT", port.to_string());
        c.arg("run");
        if hold {
            c.args(["--hold", &port.to_string()]);
        }
        c.args(["--", &nm, "--config", "nodemon.json"]);
        let p = spawn("nodemon", &mut c);
        assert!(
            wait_listening(port, Duration::from_secs(30)),
            "node never listened"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let asking = client(port, stop.clone());
        touch(d)();
        stop.store(true, Ordering::SeqCst);
        let tally = asking.join().unwrap();
        let err = p.stderr_text();
        (tally, err)
    };
    let (held, err) = run(true, free_port());
    eprintln!("nodemon --hold: {held:?}");
    let restarts = err.matches("health server listening").count();
    assert!(restarts >= 11, "nodemon must have restarted the app: {err}");
    assert_eq!(held.refused, 0, "{held:?}\n{err}");
    assert!(!err.contains("EADDRINUSE"), "{err}");

    let (plain, _) = run(false, free_port());
    eprintln!("nodemon without --hold: {plain:?}");
    assert!(
        plain.refused > 0,
        "the control must show refusals: {plain:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn signals_are_forwarded_and_the_status_is_commands() {
    let dir = temp_dir("signals");
    let port = free_port();
    let mut c = command(reuse_bin(), false);
    c.env("REUSE_LIB", lib_path()).env("PORT", port.to_string());
    c.args(["run", "--hold", &port.to_string(), "--"]);
    c.arg(python())
        .arg(repo_root().join("examples/python/app.py"));
    let mut p = spawn("reuse-hold", &mut c);
    assert!(wait_http("127.0.0.1", port, Duration::from_secs(20)).is_some());
    p.signal(libc::SIGTERM); // to reuse; the app exits 0 on SIGTERM
    let status = p
        .wait_exit(Duration::from_secs(20))
        .expect("reuse must end after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(!listening(port), "the held socket closes with reuse");

    let mut c = command(reuse_bin(), false);
    c.env("REUSE_LIB", lib_path());
    c.args(["run", "--hold", "9", "--", "sh", "-c", "exit 7"]);
    let out = run(&mut c, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(7));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_hold_list_is_refused_up_front() {
    let mut c = command(reuse_bin(), false);
    c.env("REUSE_LIB", lib_path());
    c.args(["run", "--hold", "0", "--", "true"]);
    let out = run(&mut c, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--hold") && err.contains("port 0"), "{err}");
}

#[test]
fn the_hand_over_socket_refuses_ports_not_held_and_survives_a_silent_peer() {
    let port = free_port();
    let other = free_port();
    let dir = temp_dir("peers");
    // COMMAND: a shell that prints where reuse listens for hand-overs, waits for the test's
    // peers, then starts a server on the held port.
    let go = dir.join("go");
    let script = format!(
        "echo \"$REUSE_HOLD\" > {d}/path\nfor i in $(seq 200); do [ -e {go} ] && break; sleep 0.05; done\nexec {py} {app}\n",
        d = dir.display(),
        go = go.display(),
        py = python().display(),
        app = repo_root().join("examples/python/app.py").display()
    );
    let mut c = command(reuse_bin(), false);
    c.env("REUSE_LIB", lib_path()).env("PORT", port.to_string());
    c.args([
        "run",
        "--hold",
        &port.to_string(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let _reuse = spawn("reuse-hold", &mut c);
    let path_file = dir.join("path");
    let t0 = Instant::now();
    while !path_file.exists() && t0.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(20));
    }
    let path = std::fs::read_to_string(&path_file)
        .unwrap()
        .trim()
        .to_string();
    // A peer that asks for a port reuse does not hold gets EACCES and no socket; a peer
    // that connects and says nothing must not stop the server's own hand-over.
    let peer = "import socket,struct,sys,time\n\
         silent=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); silent.connect(sys.argv[1])\n\
         s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1])\n\
         req=b'RUH1'+bytes([0,0])+struct.pack('>H',int(sys.argv[2]))+bytes([127,0,0,1])+bytes(12)+bytes(4)+struct.pack('>i',1)+bytes(8)\n\
         s.send(req); r=s.recv(8)\n\
         open(sys.argv[3],'w').write(str(struct.unpack('>i', r[4:8])[0])); time.sleep(2)\n";
    let answer = dir.join("answer");
    let mut p = command(python(), false);
    p.args([
        "-c",
        peer,
        &path,
        &other.to_string(),
        answer.to_str().unwrap(),
    ]);
    let mut peer_proc = spawn("peer", &mut p);
    thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, "").unwrap();
    assert!(
        wait_http("127.0.0.1", port, Duration::from_secs(15)).is_some(),
        "the server must get its held socket while a silent peer is connected"
    );
    assert!(
        !listening(other),
        "reuse must not bind a port it was not asked to hold"
    );
    let _ = peer_proc.wait_exit(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// IPv6 binds are handed the held socket too, whatever length of sockaddr_in6 the program
/// passes: the full 28 bytes, or RFC 2133's 24 (no scope id), which Linux accepts and the
/// library must not read past.
#[test]
fn ipv6_binds_of_either_address_length_get_the_held_socket() {
    let Some(probe) = probe() else { return };
    for fam in ["6", "6rfc2133"] {
        let port = free_port().to_string();
        let mut c = command(reuse_bin(), false);
        c.env("REUSE_LIB", lib_path()).env("REUSE_LOG", "info");
        c.args(["run", "--hold", &port, "--"])
            .arg(&probe)
            .args(["bind", fam, "tcp", "::1", &port]);
        let out = run(&mut c, Duration::from_secs(20));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{fam}: {stdout} {stderr}");
        assert!(
            stdout.starts_with("rc=0 errno=4242 "),
            "{fam}: {stdout} {stderr}"
        );
        assert!(
            stderr.contains(&format!("[::1]:{port} tcp: the socket held by reuse")),
            "{fam}: {stderr}"
        );
    }
}
