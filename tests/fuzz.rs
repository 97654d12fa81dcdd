//! A short pass of the fuzz target `config` (fuzz/fuzz_targets/config.rs): 200,000 inputs or
//! 60 s, whichever comes first. The long run is documented in the README:
//!   cd fuzz && cargo fuzz run config -- -dict=config.dict -runs=1000000
//!
//! It needs the dated nightly of fuzz/rust-toolchain.toml and cargo-fuzz (.ci/install
//! installs both): missing, they
//! fail the test under CI=true and skip it elsewhere. The fuzz crate builds in fuzz/target,
//! a target folder of its own, so it never waits on the lock this test's cargo holds.

use reuse_testkit as common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The toolchain fuzz/rust-toolchain.toml pins.
fn pinned_nightly() -> String {
    let file = std::fs::read_to_string(repo_root().join("fuzz/rust-toolchain.toml")).unwrap();
    file.lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("a channel in fuzz/rust-toolchain.toml")
}

/// The tools, or a skip message (a failure under CI=true).
fn tools() -> Option<std::path::PathBuf> {
    let rustup = require("rustup", "https://rustup.rs, then .ci/install")?;
    require(
        "cargo-fuzz",
        "cargo install cargo-fuzz --locked --version 0.13.2",
    )?;
    let nightly = Command::new(&rustup)
        .args(["run", &pinned_nightly(), "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nightly {
        let how = format!(
            "rustup toolchain install {} --profile minimal",
            pinned_nightly()
        );
        assert!(
            !in_ci(),
            "the nightly toolchain is required under CI=true: {how}"
        );
        common::skip(&format!("no nightly toolchain; {how}"));
        return None;
    }
    Some(rustup)
}

#[test]
fn fuzz_target_config_short_pass() {
    let Some(rustup) = tools() else { return };
    let fuzz = repo_root().join("fuzz");
    let logs = std::env::temp_dir().join(format!("reuse-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let (out_path, err_path) = (logs.join("stdout"), logs.join("stderr"));
    let mut c = Command::new(rustup);
    // `rustup run NIGHTLY` is `cargo +NIGHTLY` without relying on PATH finding rustup's
    // proxy first. The variables cargo set for this test would steer the inner cargo to
    // the stable toolchain or to the main target folder: drop them.
    let nightly = pinned_nightly();
    c.args(["run", &nightly, "cargo", "fuzz", "run", "config", "--"])
        .args([
            "-dict=config.dict",
            "-runs=200000",
            "-max_total_time=60",
            "-print_final_stats=1",
        ])
        .current_dir(&fuzz);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k.starts_with("CARGO") && k != "CARGO_HOME")
            || k.starts_with("RUSTC")
            || k.starts_with("RUSTFLAGS")
            || k == "RUSTUP_TOOLCHAIN"
            || k == "RUSTDOCFLAGS"
        {
            c.env_remove(k);
        }
    }
    c.env("CARGO_TARGET_DIR", fuzz.join("target"));
    c.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let t0 = Instant::now();
    let mut child = c.spawn().expect("rustup run NIGHTLY cargo fuzz");
    // The first build compiles libFuzzer (a few minutes on two cores); then 60 s at most.
    let limit = Duration::from_secs(1200);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            common::kill(-(child.id() as i32), libc::SIGKILL);
            let _ = child.wait();
            panic!(
                "cargo fuzz did not finish in {limit:?}; see {}",
                logs.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let tail: Vec<&str> = err
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        status.success(),
        "the fuzz target failed ({status}); crash inputs are in {}:\n{}",
        fuzz.join("artifacts/config").display(),
        tail.join("\n")
    );
    let runs: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no run count in the output:\n{}", tail.join("\n")));
    let done = err.lines().find(|l| l.starts_with("Done ")).unwrap_or("");
    eprintln!(
        "fuzz target config: {runs} inputs without a failure ({done}); {:.0} s with the build",
        t0.elapsed().as_secs_f64()
    );
    assert!(runs >= 10_000, "only {runs} inputs ran: {done}");
    let _ = std::fs::remove_dir_all(&logs);
    assert!(Path::new(&fuzz).join("Cargo.lock").exists());
}
