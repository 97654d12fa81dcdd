//! valgrind memcheck of a program with the library preloaded: no error, no leak of the
//! library's own.

use reuse_testkit as common;

use std::time::Duration;

use common::*;

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
