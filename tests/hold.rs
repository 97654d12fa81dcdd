//! Hold mode: `reuse run --hold PORT` keeps the listening socket across restarts, so a
//! client that keeps asking while the server is killed and started again is never refused.

use reuse_testkit as common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    refused: usize,
    reset: usize,
    other: usize,
}

/// Asks `GET /` at `addr` every 10 ms until `stop` (at most 120 s), counting answers,
/// refusals, resets and other failures.
fn client_at(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<Tally> {
    thread::spawn(move || {
        let mut t = Tally::default();
        let t0 = Instant::now();
        while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(120) {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(mut s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut body = String::new();
                    let sent = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                    let read = sent.and_then(|()| s.read_to_string(&mut body).map(|_| ()));
                    match read {
                        Ok(()) if body.contains("ok") => t.answered += 1,
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => t.reset += 1,
                        _ => t.other += 1,
                    }
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => t.refused += 1,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => t.reset += 1,
                Err(_) => t.other += 1,
            }
            thread::sleep(Duration::from_millis(10));
        }
        t
    })
}

fn client(port: u16, stop: Arc<AtomicBool>) -> thread::JoinHandle<Tally> {
    client_at(format!("127.0.0.1:{port}").parse().unwrap(), stop)
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

/// `reuse run` with the built library, no REUSE_* of the test's own, and `args`.
fn reuse_run(args: &[&str]) -> Command {
    let mut c = command(reuse_bin(), false);
    c.env("REUSE_LIB", lib_path()).arg("run").args(args);
    c
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
            .env("PORT", port.to_string())
            // The rendezvous folder in the test's own: reuse is killed here.
            .env("XDG_RUNTIME_DIR", &d);
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
    c.env("REUSE_LIB", lib_path())
        .env("PORT", port.to_string())
        .env("XDG_RUNTIME_DIR", &dir);
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
         req=b'RUH2Q'+bytes([0,0])+struct.pack('>H',int(sys.argv[2]))+bytes([127,0,0,1])+bytes(12)+bytes(4)+bytes(3)\n\
         s.send(req); r=s.recv(12)\n\
         open(sys.argv[3],'w').write(str(r[4])); time.sleep(2)\n";
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
    assert_eq!(
        std::fs::read_to_string(&answer).unwrap_or_default(),
        "3",
        "the peer hears that the port is not held"
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

/// Runs `reuse run [--hold PORT] -- sh -c SCRIPT` while one client per address asks, until
/// the script touches `done` in `dir` (at most 120 s); then stops reuse with SIGTERM. The
/// tallies, in the order of `addrs`, and reuse's stderr.
fn hammer(
    hold: bool,
    port: u16,
    dir: &Path,
    script: &str,
    addrs: &[SocketAddr],
) -> (Vec<Tally>, String) {
    let done = dir.join("done");
    let _ = std::fs::remove_file(&done);
    let p = port.to_string();
    let mut args = Vec::new();
    if hold {
        args.extend(["--hold", p.as_str()]);
    }
    args.extend(["--", "sh", "-c", script]);
    let mut c = reuse_run(&args);
    c.current_dir(dir).env("PORT", &p);
    let mut reuse = spawn("reuse", &mut c);
    assert!(
        wait_listening(port, Duration::from_secs(20)),
        "the first instance never listened"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = addrs.iter().map(|a| client_at(*a, stop.clone())).collect();
    wait_file(&done, Duration::from_secs(120));
    stop.store(true, Ordering::SeqCst);
    let tallies = clients.into_iter().map(|c| c.join().unwrap()).collect();
    reuse.signal(libc::SIGTERM);
    let _ = reuse.wait_exit(Duration::from_secs(20));
    (tallies, reuse.stderr_text())
}

/// An nginx configuration as Debian ships it, `listen PORT; listen [::]:PORT;`: one IPv4
/// wildcard socket and one IPv6-only wildcard socket on the same port.
fn dual_stack_nginx(dir: &Path, port: u16) -> PathBuf {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let conf = dir.join("nginx.conf");
    let tmp = tmp.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\nerror_log stderr notice;\n\
             pid {dir}/nginx.pid;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n\
             \x20 fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n\
             \x20 server {{\n    listen {port};\n    listen [::]:{port};\n\
             \x20   location / {{ default_type text/plain; return 200 \"ok pid=$pid\\n\"; }}\n  }}\n}}\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    conf
}

/// Hold mode keeps *each* socket of a port: stock nginx with Debian's default dual-stack
/// `listen 80; listen [::]:80;` is stopped (SIGQUIT, its graceful stop) and started again 10
/// times, 100 ms apart, while a client on each family asks every 10 ms: none refused, none
/// reset. Without
/// --hold the same restarts refuse connections. (reuse once held one family only, and reset
/// the other's queue at every restart.)
#[test]
fn every_socket_of_a_dual_stack_nginx_is_held_across_10_restarts() {
    let Some(nginx) = require("nginx", "apt-get install nginx-light") else {
        return;
    };
    if !has_ipv6() {
        assert!(!in_ci(), "CI needs IPv6 on loopback");
        common::skip("no IPv6 on this host");
        return;
    }
    let dir = TempDir::new("nginx-dual");
    let run = |hold: bool| {
        let port = free_port();
        let conf = dual_stack_nginx(dir.path(), port);
        let start = format!(
            "{nginx} -p {d} -e stderr -c {conf} 2>>{d}/nginx.log & pid=$!",
            nginx = nginx.display(),
            d = dir.path().display(),
            conf = conf.display()
        );
        let script = format!(
            "for i in $(seq 10); do\n  {start}\n  sleep 0.5\n  kill -QUIT $pid; wait $pid; sleep 0.1\ndone\n\
             {start}\nsleep 0.5\ntouch done\ntrap 'kill -QUIT $pid' TERM\nwait $pid\nwait $pid\n"
        );
        let addrs = [
            format!("127.0.0.1:{port}").parse().unwrap(),
            format!("[::1]:{port}").parse().unwrap(),
        ];
        hammer(hold, port, dir.path(), &script, &addrs)
    };
    let (held, err) = run(true);
    eprintln!("--hold: ipv4 {:?}, ipv6 {:?}", held[0], held[1]);
    for (family, t) in ["IPv4", "IPv6"].iter().zip(&held) {
        assert_eq!((t.refused, t.reset), (0, 0), "{family}: {t:?}\n{err}");
        assert!(t.answered >= 200, "{family}: {t:?}");
    }
    assert!(
        err.contains("holding 0.0.0.0:") && err.contains("holding [::]:"),
        "{err}"
    );
    let (plain, _) = run(false);
    eprintln!("without --hold: ipv4 {:?}, ipv6 {:?}", plain[0], plain[1]);
    assert!(
        plain[0].refused > 0 && plain[1].refused > 0,
        "the control must show refusals on both families: {plain:?}"
    );
}

/// A server restarted 200 times (a legacy C server, SIGKILLed each time after 50 ms) while a
/// client asks every 10 ms: no connection refused (those in flight at a SIGKILL are reset,
/// as they would be anyway). REUSE_HOLD_RESTARTS changes the count.
#[test]
fn no_connection_is_refused_across_200_restarts() {
    let Some(probe) = probe() else { return };
    let restarts: usize = std::env::var("REUSE_HOLD_RESTARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = TempDir::new("restarts-200");
    let port = free_port();
    let serve = format!("{} serve 4 127.0.0.1 {port}", probe.display());
    let script = format!(
        "i=0\nwhile [ $i -lt {restarts} ]; do\n  {serve} >/dev/null & pid=$!\n  sleep 0.05\n  kill -KILL $pid; wait $pid\n  i=$((i+1))\ndone\n\
         {serve} >/dev/null & pid=$!\nsleep 0.2\ntouch done\ntrap 'kill -TERM $pid' TERM\nwait $pid\n"
    );
    let t0 = Instant::now();
    let (t, err) = hammer(
        true,
        port,
        dir.path(),
        &script,
        &[format!("127.0.0.1:{port}").parse().unwrap()],
    );
    eprintln!("{restarts} restarts in {:?}: {:?}", t0.elapsed(), t[0]);
    assert_eq!(t[0].refused, 0, "{:?}\n{err}", t[0]);
    assert!(t[0].answered > restarts, "{:?}", t[0]);
}

/// What `probe sock` prints after binding under the command.
fn sock_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bind that fails (a second bind on a held port, at another address the kernel refuses)
/// must not cost the socket already held: after the server is gone, connections to the held
/// address still wait in its queue instead of being refused.
#[test]
fn a_failed_request_keeps_the_held_socket() {
    let port = free_port();
    let code = "import socket,sys,time
p = int(sys.argv[1])
a = socket.socket(); a.bind(('127.0.0.1', p)); a.listen(8)
b = socket.socket()
try:
    b.bind(('0.0.0.0', p)); print('second bound', flush=True)
except OSError as e:
    print('second', e.errno, flush=True)
";
    let script = format!(
        "{} -c \"$0\" {port}; echo exited; sleep 30",
        python().display()
    );
    let mut c = reuse_run(&["--hold", &port.to_string(), "--", "sh", "-c", &script, code]);
    // The rendezvous folder in the test's own: reuse is killed here.
    let xdg = TempDir::new("hold-keeps");
    c.env("XDG_RUNTIME_DIR", &xdg.0);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut p = Proc {
        child: spawn_retrying(&mut c).unwrap(),
        name: "reuse".into(),
    };
    let lines: Vec<String> =
        std::io::BufRead::lines(std::io::BufReader::new(p.child.stdout.take().unwrap()))
            .take(2)
            .map_while(Result::ok)
            .collect();
    assert_eq!(
        lines,
        ["second 98", "exited"],
        "as without reuse, the second bind fails"
    );
    let queued = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    );
    let err = p.stderr_text();
    assert!(
        queued.is_ok(),
        "the held socket was dropped: {queued:?}\n{err}"
    );
}

/// The rendezvous is never made under a folder another user controls: with XDG_RUNTIME_DIR
/// naming a folder of a second uid (as after `su` without `-`), reuse passes it over and
/// says why; such a user could otherwise swap the hand-over socket for one of their own.
#[test]
fn the_rendezvous_is_never_under_another_users_folder() {
    let Some(_) = setpriv() else { return };
    let dir = TempDir::new("xdg-other");
    let xdg = dir.join("run-54321");
    std::fs::create_dir(&xdg).unwrap();
    std::os::unix::fs::chown(&xdg, Some(54321), Some(54321)).unwrap();
    let mut c = reuse_run(&["--hold", "9", "--", "sh", "-c", "echo \"$REUSE_HOLD\""]);
    c.env("XDG_RUNTIME_DIR", &xdg);
    let out = run(&mut c, Duration::from_secs(20));
    let (path, err) = (
        sock_line(&out),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !path.starts_with(xdg.to_str().unwrap()),
        "rendezvous under another user's folder: {path}"
    );
    assert!(
        err.contains("not using XDG_RUNTIME_DIR") && err.contains("belongs to uid 54321"),
        "{err}"
    );
}

/// A stand-in rendezvous (python): serves one request, answering with a descriptor of its
/// choice (`tcp-listen PORT`: a listening TCP socket of its own on PORT; `udp PORT`: a UDP
/// socket bound to PORT), in the protocol of whichever library asks.
const FAKE_RENDEZVOUS: &str = "import array,os,socket,struct,sys
path, kind, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == 'udp':
    give = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
else:
    give = socket.socket(); give.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
give.bind(('127.0.0.1', port))
if kind != 'udp': give.listen(8)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
srv.bind(path); os.chmod(path, 0o777); srv.listen(4)
print('ready', flush=True)
c, _ = srv.accept()
req = c.recv(64)
reply = b'RUH1' + bytes(4) if req[:4] == b'RUH1' else b'RUH2' + bytes(8)
c.sendmsg([reply], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [give.fileno()]))])
print('answered', flush=True)
c.recv(64)
";

/// Starts FAKE_RENDEZVOUS at `path` (as `uid` when given) and waits until it listens.
fn fake_rendezvous(path: &Path, kind: &str, port: u16, uid: Option<u32>) -> Proc {
    let mut c = match uid {
        Some(uid) => {
            let mut c = command(setpriv().unwrap(), false);
            c.args(as_uid(uid)).arg(system_python());
            c
        }
        None => command(python(), false),
    };
    c.args(["-c", FAKE_RENDEZVOUS])
        .arg(path)
        .args([kind, &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let p = Proc {
        child: spawn_retrying(&mut c).unwrap(),
        name: "fake rendezvous".into(),
    };
    assert!(
        wait_file(path, Duration::from_secs(10)),
        "the stand-in never listened"
    );
    p
}

/// The library checks who answers on the rendezvous and what comes back: a second uid's
/// stand-in is refused (it could hand root's server a socket of its own and read its
/// traffic), and so is a descriptor that is not a listening TCP socket on the address asked,
/// from whoever it comes. The bind then goes on as without hold, with one line saying why.
#[test]
fn the_library_refuses_a_stand_in_and_a_wrong_descriptor() {
    let Some(probe) = probe() else { return };
    let Some(_) = setpriv() else { return };
    let dir = TempDir::new("stand-in");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cases = [
        (Some(54321), "tcp-listen", "answered by uid 54321"),
        (None, "udp", "refused the descriptor handed over"),
        (None, "tcp-listen", "refused the descriptor handed over"),
    ];
    for (i, (uid, kind, why)) in cases.into_iter().enumerate() {
        let port = free_port();
        let theirs = free_port();
        let home = dir.join(&format!("fake-{i}"));
        std::fs::create_dir(&home).unwrap();
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
        }
        let sock = home.join("hold.sock");
        let _fake = fake_rendezvous(&sock, kind, if kind == "udp" { port } else { theirs }, uid);
        let mut c = command(&probe, true);
        c.env("REUSE_HOLD", &sock)
            .env("REUSE_HOLD_PORTS", port.to_string())
            .args(["sock", "4", "tcp", "127.0.0.1", &port.to_string()]);
        let out = run(&mut c, Duration::from_secs(20));
        let (line, err) = (
            sock_line(&out),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(
            line.starts_with(&format!("rc=0 errno=4242 type=1 listening=0 port={port} ")),
            "{uid:?} {kind}: the server's own socket, bound as without hold: {line}\n{err}"
        );
        assert!(err.contains(why), "{uid:?} {kind}: {err}");
    }
}

/// A server of COMMAND's tree running as another user cannot use the rendezvous (its folder
/// is private), and says so: not that the reuse command is gone.
#[test]
fn another_users_process_hears_why_it_got_no_held_socket() {
    let Some(probe) = probe() else { return };
    let Some(setpriv) = setpriv() else { return };
    let port = free_port().to_string();
    let mut c = reuse_run(&["--hold", &port, "--"]);
    c.arg(setpriv)
        .args(as_uid(54321))
        .arg(&probe)
        .args(["sock", "4", "tcp", "127.0.0.1", &port]);
    let out = run(&mut c, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        sock_line(&out).starts_with("rc=0 "),
        "{}\n{err}",
        sock_line(&out)
    );
    assert!(
        err.contains("belongs to another user") && !err.contains("is gone"),
        "{err}"
    );
}

/// reuse outlives its own stderr: with stderr a FIFO whose reader is gone, its log lines
/// fail quietly and hold mode keeps holding and supervising (it once aborted with status
/// 134, orphaning the server and leaving its rendezvous folder). `reuse doctor --json |
/// head` does not panic either.
#[test]
fn reuse_outlives_a_stderr_whose_reader_is_gone() {
    let dir = TempDir::new("dead-stderr");
    let fifo = dir.join("stderr.fifo");
    assert!(common::mkfifo(&fifo, 0o600));
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    drop(reader);
    let port = free_port();
    let app = repo_root().join("examples/python/app.py");
    let script = format!(
        "echo \"$REUSE_HOLD\" > {d}/path; exec 2>/dev/null; while :; do {py} {app}; done",
        d = dir.path().display(),
        py = python().display(),
        app = app.display()
    );
    let mut c = reuse_run(&[
        "--hold",
        &port.to_string(),
        "--log",
        "info",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    c.env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut reuse = Proc {
        child: spawn_retrying(&mut c).unwrap(),
        name: "reuse".into(),
    };
    assert!(wait_http("127.0.0.1", port, Duration::from_secs(20)).is_some());
    // Each restart makes reuse log a hand-over into the dead pipe.
    for _ in 0..3 {
        let before = http_get("127.0.0.1", port).unwrap();
        let pid: i32 = before
            .rsplit("pid=")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        common::kill(pid, libc::SIGKILL);
        let after = http_get("127.0.0.1", port).expect("queued in the held socket, then served");
        assert!(
            after.contains("ok pid=") && !after.contains(&format!("pid={pid}\n")),
            "{after}"
        );
    }
    assert!(reuse.child.try_wait().unwrap().is_none(), "reuse died");
    let rendezvous = std::fs::read_to_string(dir.join("path")).unwrap();
    let rendezvous = Path::new(rendezvous.trim()).parent().unwrap().to_path_buf();
    assert!(rendezvous.exists());
    reuse.signal(libc::SIGTERM);
    let status = reuse
        .wait_exit(Duration::from_secs(20))
        .expect("reuse ends after SIGTERM");
    assert_ne!(status.code(), Some(134), "reuse aborted");
    assert!(!rendezvous.exists(), "the rendezvous folder is left behind");

    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let mut d = command(reuse_bin(), false);
    d.args(["doctor", "--json", &port.to_string()]).stdout(w);
    let out = d.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "{:?} {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs COMMAND under hold mode with `flags`, where COMMAND starts instance A (a Python
/// server on the held port), and once A answers runs `probe sock` as instance B; the probe's
/// line and reuse's stderr.
fn two_instances(flags: &[&str], kill_a_after: Option<Duration>) -> (String, String, i32) {
    let probe = probe().unwrap();
    let port = free_port();
    let dir = TempDir::new("two-live");
    let app = repo_root().join("examples/python/app.py");
    let kill = kill_a_after.map_or(String::new(), |d| {
        format!("(sleep {}; kill -TERM $a) & ", d.as_secs_f64())
    });
    let script = format!(
        "{py} {app} & a=$!; echo $a > {d}/a\n\
         for i in $(seq 200); do {py} -c 'import socket,sys; socket.create_connection((\"127.0.0.1\", int(sys.argv[1])))' {port} 2>/dev/null && break; sleep 0.05; done\n\
         {kill}{probe} sock 4 tcp 127.0.0.1 {port}\nkill -TERM $a; wait $a\n",
        py = python().display(),
        app = app.display(),
        d = dir.path().display(),
        probe = probe.display()
    );
    let p = port.to_string();
    let mut args = vec!["--hold", p.as_str()];
    args.extend(flags);
    args.extend(["--", "sh", "-c", &script]);
    let mut c = reuse_run(&args);
    c.env("PORT", &p);
    let out = run(&mut c, Duration::from_secs(30));
    let a: i32 = std::fs::read_to_string(dir.join("a"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (
        sock_line(&out),
        String::from_utf8_lossy(&out.stderr).to_string(),
        a,
    )
}

/// Two live instances: the hand-over bridges the gap after an instance's death, it does not
/// let a second live instance share the first one's socket (and its O_NONBLOCK flag). By
/// default the second gets EADDRINUSE, as without reuse, and hears who has the port; with
/// `--options port` (sharing asked) it binds a socket of its own in the port's SO_REUSEPORT
/// group, announced; with `--wait` it gets the held socket once the first is gone.
#[test]
fn a_second_live_instance_is_refused_unless_sharing_or_waiting_was_asked() {
    let Some(_) = probe() else { return };
    let (line, err, a) = two_instances(&[], None);
    assert!(line.starts_with("rc=-1 errno=98 "), "{line}\n{err}");
    assert!(
        err.contains(&format!("PID {a} (python3")),
        "the live instance is named: {err}"
    );

    let (line, err, a) = two_instances(&["--options", "addr,port"], None);
    assert!(
        line.starts_with("rc=0 errno=4242 type=1 listening=0 ") && line.contains("reuseport=1"),
        "a socket of its own: {line}\n{err}"
    );
    assert!(
        err.contains(&format!("now sharing this port with PID {a} (python3)")),
        "{err}"
    );

    let (line, err, _) = two_instances(&["--wait", "5000"], Some(Duration::from_millis(500)));
    assert!(
        line.starts_with("rc=0 errno=4242 type=1 listening=1 "),
        "the held socket after the wait: {line}\n{err}"
    );
}

/// A same-user client that connects to the hand-over socket and says nothing delays nobody:
/// with 20 such clients connected, the server's request is answered at once (requests were
/// once served one at a time, a second each).
#[test]
fn silent_clients_do_not_stall_the_hand_over() {
    let dir = TempDir::new("silent");
    let port = free_port();
    let go = dir.join("go");
    let script = format!(
        "echo \"$REUSE_HOLD\" > {d}/path\nfor i in $(seq 400); do [ -e {go} ] && break; sleep 0.05; done\nexec {py} {app}\n",
        d = dir.path().display(),
        go = go.display(),
        py = python().display(),
        app = repo_root().join("examples/python/app.py").display()
    );
    let mut c = reuse_run(&["--hold", &port.to_string(), "--", "sh", "-c", &script]);
    c.env("PORT", port.to_string())
        .env("XDG_RUNTIME_DIR", dir.path());
    let _reuse = spawn("reuse", &mut c);
    assert!(wait_file(&dir.join("path"), Duration::from_secs(10)));
    let path = std::fs::read_to_string(dir.join("path")).unwrap();
    let silent: Vec<std::os::fd::OwnedFd> = (0..20)
        .map(|_| {
            // SAFETY: a plain socket call.
            let fd = unsafe {
                libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0)
            };
            assert!(fd >= 0);
            // SAFETY: a zeroed sockaddr_un is a valid value.
            let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
            sun.sun_family = libc::AF_UNIX as _;
            for (d, s) in sun.sun_path.iter_mut().zip(path.trim().as_bytes()) {
                *d = *s as _;
            }
            // SAFETY: sun is a sockaddr_un of that size.
            let rc = unsafe {
                libc::connect(
                    fd,
                    (&sun as *const libc::sockaddr_un).cast(),
                    std::mem::size_of::<libc::sockaddr_un>() as u32,
                )
            };
            assert_eq!(rc, 0);
            // SAFETY: the descriptor socket() just made, owned once, here.
            unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
        })
        .collect();
    let t0 = Instant::now();
    std::fs::write(&go, "").unwrap();
    let served = wait_http("127.0.0.1", port, Duration::from_secs(30));
    assert!(served.is_some(), "never served");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the server waited {:?} behind silent clients",
        t0.elapsed()
    );
    drop(silent);
}

/// Switching to hold while the old instance (not under hold) is still shutting down: hold
/// honours --wait and --takeover as the library does, and names the holder the same way. It
/// once failed at once with "cannot hold ...: Address already in use".
#[test]
fn hold_waits_for_and_takes_over_from_an_old_instance() {
    let Some(probe) = probe() else { return };
    // --wait: an old C server that goes away after 800 ms.
    let port = free_port();
    let mut old = command(&probe, false);
    old.args(["listen", "4", "127.0.0.1", &port.to_string()]);
    let mut old = spawn("old", &mut old);
    assert!(wait_listening(port, Duration::from_secs(5)));
    let pid = old.pid();
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(800));
        common::kill(pid, libc::SIGKILL);
    });
    let mut c = reuse_run(&["--hold", &port.to_string(), "--wait", "5000", "--"]);
    c.arg(&probe)
        .args(["sock", "4", "tcp", "127.0.0.1", &port.to_string()]);
    let out = run(&mut c, Duration::from_secs(20));
    killer.join().unwrap();
    old.stop(libc::SIGKILL);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        sock_line(&out).starts_with("rc=0 errno=4242 type=1 listening=1 "),
        "{}\n{err}",
        sock_line(&out)
    );
    assert!(
        err.contains(&format!("PID {pid} (probe")) && err.contains("waiting up to 5000 ms"),
        "{err}"
    );
    // Said once, not at every retry of the wait.
    assert!(err.matches("cannot hold").count() <= 1, "{err}");

    // --takeover: the old instance runs the same command line, outside reuse.
    let port = free_port();
    let code = "import socket,sys,time
s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)
print('listening', flush=True); time.sleep(30)
";
    let mut old = command(python(), false);
    old.args(["-c", code, &port.to_string()]);
    let mut old = spawn("old", &mut old);
    assert!(wait_listening(port, Duration::from_secs(10)));
    let mut c = reuse_run(&["--hold", &port.to_string(), "--takeover", "--"]);
    // The rendezvous folder in the test's own: reuse is killed here.
    let xdg = TempDir::new("hold-takeover");
    c.env("XDG_RUNTIME_DIR", &xdg.0);
    c.arg(python()).args(["-c", code, &port.to_string()]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut new = Proc {
        child: spawn_retrying(&mut c).unwrap(),
        name: "reuse".into(),
    };
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(new.child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let ended = old.wait_exit(Duration::from_secs(5));
    let err = new.stderr_text();
    assert_eq!(line.trim(), "listening", "{err}");
    assert!(ended.is_some(), "the old instance was not stopped: {err}");
    assert!(
        err.contains(&format!("taking over: stopping PID {}", old.pid())),
        "{err}"
    );
}

/// Options asked for a held port are set on the held socket (SO_LINGER, SO_REUSEPORT), which
/// the connections it accepts inherit; they were once dropped silently.
#[test]
fn options_apply_to_the_held_socket() {
    let Some(probe) = probe() else { return };
    let port = free_port().to_string();
    let mut c = reuse_run(&["--hold", &port, "--options", "addr,port,linger=0", "--"]);
    c.arg(&probe).args(["sock", "4", "tcp", "127.0.0.1", &port]);
    let out = run(&mut c, Duration::from_secs(20));
    assert_eq!(
        sock_line(&out),
        format!(
            "rc=0 errno=4242 type=1 listening=1 port={port} reuseaddr=1 reuseport=1 linger=1,0"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// --hold takes single ports: `*` or a range would also catch a client socket bound to a
/// port before connecting, and hand it a listening socket.
#[test]
fn hold_takes_ports_one_by_one() {
    for bad in ["*", "8000-8010", "80,9000-9001"] {
        let out = run(
            &mut reuse_run(&["--hold", bad, "--", "true"]),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("--hold") && err.contains("one by one"),
            "{bad}: {err}"
        );
    }
}

/// Hold mode says what it does at the default level: a line when it starts holding a port,
/// one for a port of --hold that COMMAND never bound; and `reuse doctor` tells a port held
/// by `reuse run --hold` from a stuck server.
#[test]
fn hold_mode_says_what_it_holds_and_doctor_knows_it() {
    let port = free_port();
    let never = free_port();
    let list = format!("{port},{never}");
    let mut c = reuse_run(&["--hold", &list, "--"]);
    c.arg(python())
        .arg(repo_root().join("examples/python/app.py"))
        .env("PORT", port.to_string());
    let mut reuse = spawn("reuse", &mut c);
    assert!(wait_http("127.0.0.1", port, Duration::from_secs(20)).is_some());
    let o = run(
        command(reuse_bin(), false).args(["doctor", &port.to_string()]),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.contains(&format!("held by reuse --hold for PID {}", reuse.pid()))
            && text.contains("restart the server freely"),
        "{text}"
    );
    reuse.signal(libc::SIGTERM);
    let _ = reuse.wait_exit(Duration::from_secs(20));
    let err = reuse.stderr_text();
    assert!(
        err.contains(&format!("holding 127.0.0.1:{port} for PID")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "--hold {never}: no process of the command bound this port"
        )),
        "{err}"
    );
}

/// A PHP ext/sockets daemon (its extension loaded with RTLD_DEEPBIND, which once bypassed the
/// library and so hold mode too) restarted 10 times under --hold: none refused.
#[test]
fn a_php_ext_sockets_server_is_held_across_restarts() {
    let Some(php) = require("php", "apt-get install php-cli") else {
        return;
    };
    let dir = TempDir::new("php-hold");
    let port = free_port();
    let serve = format!(
        "{} {}",
        php.display(),
        repo_root().join("tests/apps/php_server.php").display()
    );
    let script = format!(
        "for i in $(seq 10); do\n  {serve} & pid=$!\n  sleep 0.3\n  kill -TERM $pid; wait $pid; sleep 0.1\ndone\n\
         {serve} & pid=$!\nsleep 0.3\ntouch done\ntrap 'kill -TERM $pid' TERM\nwait $pid\n"
    );
    let (t, err) = hammer(
        true,
        port,
        dir.path(),
        &script,
        &[format!("127.0.0.1:{port}").parse().unwrap()],
    );
    eprintln!("php --hold: {:?}", t[0]);
    assert_eq!(t[0].refused, 0, "{:?}\n{err}", t[0]);
    assert!(t[0].answered > 50, "{:?}\n{err}", t[0]);
}

/// Runs `reuse run --hold PORT -- sh -c SCRIPT` to its end; stdout and stderr.
fn hold_script(port: u16, script: &str, env: &[(&str, &str)]) -> (String, String) {
    let mut c = reuse_run(&["--hold", &port.to_string(), "--", "sh", "-c", script]);
    c.envs(env.iter().copied());
    let out = run(&mut c, Duration::from_secs(60));
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A server that sets SO_REUSEPORT itself runs two live instances on one port, as without
/// reuse: under hold, the second binds a socket of its own beside the held one (which has
/// SO_REUSEPORT too, as the server's own socket would have). A server that does not set it
/// gets EADDRINUSE for a second instance, also when the instance it would join is one that
/// shared, or one that set SO_REUSEPORT on the held socket itself after its bind. (Two such
/// instances once failed under hold where they ran without it; then a non-sharing instance
/// joined the sharing ones.)
#[test]
fn a_server_that_sets_so_reuseport_itself_runs_two_instances_under_hold() {
    let code = "import socket,sys,time
s = socket.socket()
mode = sys.argv[2]
if mode == 'share': s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind(('127.0.0.1', int(sys.argv[1])))
    if mode == 'after': s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.listen(8); print('bound', flush=True)
except OSError as e:
    print('errno', e.errno, flush=True)
time.sleep(float(sys.argv[3]))
";
    let cases: [(&str, &[&str]); 4] = [
        // Two sharing instances: both bind.
        ("S share 2 & sleep 0.5; S share 0.5; wait", &["bound", "bound"]),
        // Two that do not share: the second is refused.
        ("S alone 2 & sleep 0.5; S alone 0.5; wait", &["bound", "errno 98"]),
        // A and B share; A goes; C, which does not share, is refused: B is live.
        (
            "S share 3 & a=$!; sleep 0.5; S share 3 & sleep 0.5; kill $a; sleep 0.3; S alone 0; kill %2; wait",
            &["bound", "bound", "errno 98"],
        ),
        // A set SO_REUSEPORT on the held socket after its bind and goes; C does not share,
        // so D, which does, is refused while C lives.
        (
            "S after 0.3; S alone 2 & sleep 0.5; S share 0; wait",
            &["bound", "bound", "errno 98"],
        ),
    ];
    for (script, want) in cases {
        let port = free_port();
        let script = format!(
            "S() {{ {py} -c \"$CODE\" {port} \"$@\"; }}\n{script}\n",
            py = python().display()
        );
        let mut c = reuse_run(&["--hold", &port.to_string(), "--", "sh", "-c", &script]);
        c.env("CODE", code);
        let out = run(&mut c, Duration::from_secs(30));
        let (stdout, err) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, want, "{script}: {stdout}\n{err}");
    }
}

/// Whether a live instance has the held socket is judged by looking at the descriptors of
/// COMMAND's tree; an instance whose descriptors cannot be read (here: not dumpable, under a
/// reuse run by an ordinary user) counts as having it. It was once taken as proof of the
/// opposite, and a second live instance got the same socket.
#[test]
fn an_instance_whose_descriptors_cannot_be_read_counts_as_holding() {
    let Some(probe) = probe() else { return };
    let Some(setpriv) = setpriv() else { return };
    let dir = TempDir::new("nodump");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let port = free_port();
    let first = "import ctypes,socket,sys,time
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)
print('first', flush=True); time.sleep(5)
";
    let script = format!(
        "{py} -c \"$FIRST\" {port} & a=$!\nsleep 1\n{probe} sock 4 tcp 127.0.0.1 {port}\nkill $a\n",
        py = system_python().display(),
        probe = probe.display()
    );
    let mut c = command(setpriv, false);
    c.args(as_uid(54321))
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
        .env("FIRST", first)
        .env("HOME", dir.path())
        .env("TMPDIR", dir.path())
        .current_dir(dir.path());
    let out = run(&mut c, Duration::from_secs(30));
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("first"), "{stdout}\n{err}");
    assert!(
        stdout.contains("rc=-1 errno=98 "),
        "the second live instance got the socket: {stdout}\n{err}"
    );
}

/// The kernel uses an IPv6 scope id for link-local addresses only: a second instance binding
/// ::1 with another (an unzeroed sockaddr_in6) gets the held socket. It was once refused
/// with EADDRINUSE, though nobody else had the port.
#[test]
fn a_scope_id_on_a_global_ipv6_address_does_not_matter() {
    let Some(probe) = probe() else { return };
    if !has_ipv6() {
        common::skip("no IPv6 on this host");
        return;
    }
    let port = free_port();
    let script = format!(
        "{p} sock 6 tcp ::1 {port}\nPROBE_SCOPE=7 {p} sock 6 tcp ::1 {port}\n",
        p = probe.display()
    );
    let (out, err) = hold_script(port, &script, &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}\n{err}");
    for l in lines {
        assert!(
            l.starts_with("rc=0 errno=4242 type=1 listening=1 "),
            "{out}\n{err}"
        );
    }
}

/// A server that moves to another address between restarts (127.0.0.1, then 0.0.0.0, then
/// ::ffff:127.0.0.1) has the held socket replaced with no moment in which the port is free:
/// another user trying to bind it all along never gets it. (The old socket was once closed
/// before the new one was made, and a squatter took the port.)
#[test]
fn a_moved_address_is_replaced_without_a_gap_for_a_squatter() {
    let Some(probe) = probe() else { return };
    let Some(setpriv) = setpriv() else { return };
    let dir = TempDir::new("squat");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (go, stop) = (dir.join("go"), dir.join("stop"));
    let port = free_port();
    // From `go` (the port held) to `stop`, another user tries to bind it, all the time.
    let squat = format!(
        "import os,socket,time
t0 = time.time()
while not os.path.exists('{go}') and time.time() - t0 < 20: time.sleep(0.01)
won = tries = 0
while not os.path.exists('{stop}') and time.time() - t0 < 40:
    for a in ('127.0.0.1', '0.0.0.0'):
        s = socket.socket(); tries += 1
        try:
            s.bind((a, {port})); won += 1
        except OSError:
            pass
        s.close()
print('squatter won', won, 'of', tries, flush=True)
",
        go = go.display(),
        stop = stop.display()
    );
    let mut sq = command(setpriv, false);
    sq.args(as_uid(54321))
        .arg(system_python())
        .args(["-c", &squat]);
    sq.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let squatter = sq.spawn().unwrap();
    let p = probe.display();
    let mut script = format!(
        "{p} sock 4 tcp 127.0.0.1 {port}\ntouch {}\nsleep 0.3\n",
        go.display()
    );
    for _ in 0..4 {
        for (fam, addr) in [
            ("4", "0.0.0.0"),
            ("6", "::ffff:127.0.0.1"),
            ("4", "127.0.0.1"),
        ] {
            script.push_str(&format!("{p} sock {fam} tcp {addr} {port}\nsleep 0.05\n"));
        }
    }
    script.push_str(&format!("touch {}\nsleep 0.3\n", stop.display()));
    let (out, err) = hold_script(port, &script, &[]);
    let squatted =
        String::from_utf8_lossy(&squatter.wait_with_output().unwrap().stdout).to_string();
    eprintln!("{}", squatted.trim());
    assert!(
        squatted.starts_with("squatter won 0 of "),
        "{squatted}\n{out}\n{err}"
    );
    assert_eq!(out.lines().count(), 13, "{out}\n{err}");
    assert!(
        out.lines()
            .all(|l| l.starts_with("rc=0 errno=4242 type=1 listening=1 ")),
        "{out}\n{err}"
    );
    assert!(err.contains("no longer holding 127.0.0.1:"), "{err}");
}

/// socat shuts its listening socket down when it stops: the next instance still gets a
/// listening socket (reuse listens again), and no client is refused. (reuse once kept
/// handing out the dead socket.)
#[test]
fn a_server_that_shuts_its_listener_down_does_not_end_hold_mode() {
    let Some(socat) = require("socat", "apt-get install socat") else {
        return;
    };
    let dir = TempDir::new("socat-hold");
    let port = free_port();
    let serve = format!(
        "{} TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1 SYSTEM:'echo ok'",
        socat.display()
    );
    let script = format!(
        "for i in $(seq 5); do\n  {serve} & pid=$!\n  sleep 0.4\n  kill -TERM $pid; wait $pid; sleep 0.1\ndone\n\
         {serve} & pid=$!\nsleep 0.3\ntouch done\ntrap 'kill -TERM $pid' TERM\nwait $pid\n"
    );
    let (t, err) = hammer(
        true,
        port,
        dir.path(),
        &script,
        &[format!("127.0.0.1:{port}").parse().unwrap()],
    );
    eprintln!("socat --hold: {:?}", t[0]);
    assert_eq!(t[0].refused, 0, "{:?}\n{err}", t[0]);
    assert!(t[0].answered > 20, "{:?}\n{err}", t[0]);
}

/// Where a seccomp filter refuses process_vm_readv, hold mode cannot read bind addresses:
/// the library says so once, and the failure line names `reuse run --hold` as what holds
/// the port, not as a process to stop blindly.
#[test]
fn hold_mode_says_when_it_cannot_read_addresses() {
    let Some(probe) = probe() else { return };
    let port = free_port();
    let p = probe.display();
    let script =
        format!("{p} sock 4 tcp 127.0.0.1 {port}\n{p} noprv {p} sock 4 tcp 127.0.0.1 {port}\n");
    let (out, err) = hold_script(port, &script, &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.contains("listening=1")),
        "{out}\n{err}"
    );
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with("rc=-1 errno=98 ")),
        "{out}\n{err}"
    );
    assert!(err.contains("process_vm_readv failed"), "{err}");
    assert!(err.contains("`reuse run --hold` (PID"), "{err}");
}

/// The base folder is judged by its real path: a symlink owned by another user, pointing at
/// a folder of root's, is resolved once, and the rendezvous is made in the folder itself, so
/// re-pointing the link afterwards changes nothing.
#[test]
fn a_symlinked_base_folder_is_used_by_its_real_path() {
    let Some(_) = setpriv() else { return };
    let dir = TempDir::new("xdg-link");
    let real = dir.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(54321), Some(54321)).unwrap();
    let mut c = reuse_run(&["--hold", "9", "--", "sh", "-c", "echo \"$REUSE_HOLD\""]);
    c.env("XDG_RUNTIME_DIR", &link);
    let out = run(&mut c, Duration::from_secs(20));
    let path = sock_line(&out);
    assert!(
        path.starts_with(real.canonicalize().unwrap().to_str().unwrap()),
        "{path}"
    );
}
