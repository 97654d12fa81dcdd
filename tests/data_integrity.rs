//! 8 MB responses closed at once arrive whole by default; with linger=0 they are cut with a
//! reset, as the docs warn.

use reuse_testkit as common;

use std::io::Read;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::*;

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
