//! Hostile values in every REUSE_* variable (empty, huge, control bytes, invalid UTF-8,
//! separators only): the host keeps running unchanged and the library says one short line.

use reuse_testkit as common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

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
