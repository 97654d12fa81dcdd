//! musl (Alpine): the library built for x86_64-unknown-linux-musl loads into a musl program
//! and lets a legacy server built with musl-gcc restart through TIME_WAIT.

use reuse_testkit as common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

const TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the musl library with the project's own cargo configuration, in a target folder
/// of its own (the test's cargo holds the lock on the main one).
fn musl_library() -> Option<PathBuf> {
    require("musl-gcc", "apt-get install musl-tools")?;
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib").join(TARGET).exists() {
        assert!(
            !in_ci(),
            "the {TARGET} target is required under CI=true: rustup target add {TARGET}"
        );
        common::skip(&format!("rustup target add {TARGET}"));
        return None;
    }
    let target_dir = repo_root().join("target/musl-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(
        Command::new(cargo)
            .current_dir(repo_root())
            .args([
                "build",
                "--release",
                "--lib",
                "-p",
                "reuse",
                "--target",
                TARGET,
            ])
            .arg("--target-dir")
            .arg(&target_dir),
        Duration::from_secs(600),
    );
    assert!(
        out.status.success(),
        "musl build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(target_dir.join(TARGET).join("release/libreuse.so"))
}

#[test]
fn a_musl_legacy_server_restarts_through_time_wait_under_the_musl_library() {
    let Some(lib) = musl_library() else { return };
    // It names no library (no glibc, no libgcc_s) and imports no symbol: it finds musl's
    // functions itself, and reads the auxiliary vector from /proc/self/auxv (musl's loader
    // passes constructors no arguments).
    let elf = run(
        Command::new("readelf").args(["-d", "--dyn-syms"]).arg(&lib),
        Duration::from_secs(10),
    );
    let dynamic = String::from_utf8_lossy(&elf.stdout);
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
    assert!(
        !dynamic
            .lines()
            .any(|l| l.contains(" UND ") && !l.trim_end().ends_with("UND")),
        "{dynamic}"
    );

    let Some(server) = build_c("tests/c/probe.c", "probe-musl", "musl-gcc") else {
        return;
    };
    let interp = run(
        Command::new("readelf").arg("-l").arg(&server),
        Duration::from_secs(10),
    );
    assert!(
        String::from_utf8_lossy(&interp.stdout).contains("ld-musl"),
        "not a musl program"
    );

    let start = |preload: bool, port: u16| {
        let mut c = command(&server, false);
        c.args(["serve", "4", "127.0.0.1", &port.to_string()]);
        c.env("REUSE_LOG", "info");
        if preload {
            c.env("LD_PRELOAD", &lib);
        }
        spawn("musl-server", &mut c)
    };
    for preload in [false, true] {
        let port = free_port();
        let mut first = start(preload, port);
        assert!(wait_http("127.0.0.1", port, Duration::from_secs(10)).is_some());
        leave_time_wait("127.0.0.1", port, 3);
        first.stop(libc::SIGKILL);
        let second = start(preload, port);
        let answered = wait_http("127.0.0.1", port, Duration::from_secs(3)).is_some();
        let err = second.stderr_text();
        if preload {
            assert!(
                answered,
                "under the musl library the restart must work: {err}"
            );
            assert!(
                err.contains(&format!("127.0.0.1:{port} tcp: SO_REUSEADDR")),
                "{err}"
            );
        } else {
            assert!(
                !answered && err.contains("errno 98"),
                "control must fail: {err}"
            );
        }
    }
}
