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
    // functions itself, and asks the kernel for the auxiliary vector (musl's loader passes
    // constructors no arguments).
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

/// The running kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// musl's loader passes a constructor no arguments, so the library asks the kernel for the
/// auxiliary vector (AT_SECURE first): one `prctl(PR_GET_AUXV)` where the kernel has it
/// (Linux 6.4 on), which needs no /proc; where it fails, /proc/self/auxv (three calls).
/// Either way the library is active: the bind gets SO_REUSEADDR.
#[test]
fn the_musl_library_asks_the_kernel_for_the_auxiliary_vector_in_one_call() {
    let Some(lib) = musl_library() else { return };
    let Some(probe) = build_c("tests/c/probe.c", "probe-musl", "musl-gcc") else {
        return;
    };
    let Some(strace) = require("strace", "apt-get install strace") else {
        return;
    };
    let glibc_probe = common::probe();
    if glibc_probe.is_none() {
        return;
    }
    let dir = TempDir::new("musl-auxv");
    let trace = |refuse_prctl: bool| -> String {
        let log = dir.0.join(format!("trace-{refuse_prctl}"));
        let port = free_port().to_string();
        let mut c = command(&strace, false);
        c.args([
            "-f",
            "-qq",
            "-e",
            "trace=prctl,open,openat,setsockopt",
            "-o",
        ])
        .arg(&log);
        if refuse_prctl {
            // The filter is set by the glibc probe (musl-gcc has no seccomp headers);
            // only the musl program gets the library.
            c.arg(glibc_probe.as_ref().unwrap()).args(["noauxv", "env"]);
        } else {
            c.arg("-E");
        }
        c.arg(format!("LD_PRELOAD={}", lib.display()))
            .arg(&probe)
            .args(["sock", "4", "tcp", "127.0.0.1", &port]);
        let out = run(&mut c, Duration::from_secs(60));
        assert!(out.status.success(), "{out:?}");
        std::fs::read_to_string(&log).unwrap()
    };
    let asks = |t: &str| t.contains("prctl(0x41555856") || t.contains("prctl(PR_GET_AUXV");
    let usual = trace(false);
    assert!(
        usual.contains("SO_REUSEADDR"),
        "the library was inert:\n{usual}"
    );
    if kernel_version() >= (6, 4) {
        assert!(asks(&usual), "no PR_GET_AUXV:\n{usual}");
        assert!(
            !usual.contains("/proc/self/auxv"),
            "/proc read although the kernel answered:\n{usual}"
        );
    } else {
        eprintln!("PR_GET_AUXV needs Linux 6.4; only the /proc path is checked here");
    }
    // Where the kernel refuses it (older kernels, a seccomp filter), /proc answers.
    let refused = trace(true);
    assert!(
        refused.contains("/proc/self/auxv") && refused.contains("SO_REUSEADDR"),
        "{refused}"
    );
}

/// With neither source of the auxiliary vector (no PR_GET_AUXV, no /proc mounted, as in a
/// bare chroot or container), the library cannot rule out secure execution and does
/// nothing: the program runs as without it. (It once crashed the program: the failed read
/// set errno, and finding errno needed the vector.)
#[test]
fn without_proc_or_prctl_the_musl_library_does_nothing_and_the_program_runs() {
    let Some(lib) = musl_library() else { return };
    let Some(probe) = build_c("tests/c/probe.c", "probe-musl", "musl-gcc") else {
        return;
    };
    let Some(glibc_probe) = common::probe() else {
        return;
    };
    if !is_root() {
        assert!(!in_ci(), "CI runs the tests as root");
        common::skip("needs root (to mount over /proc in a mount namespace)");
        return;
    }
    let Some(unshare) = require("unshare", "apt-get install util-linux") else {
        return;
    };
    let port = free_port().to_string();
    let out = run(
        Command::new(&unshare)
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs none /proc && exec \"$@\"")
            .arg("sh")
            .arg(&glibc_probe)
            .args(["noauxv", "env"])
            .arg(format!("LD_PRELOAD={}", lib.display()))
            .arg("REUSE_LOG=debug")
            .arg(&probe)
            .args(["sock", "4", "tcp", "127.0.0.1", &port]),
        Duration::from_secs(30),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.starts_with("rc=0 ") && said.contains("reuseaddr=0"),
        "{out:?}"
    );
}
