//! The commands in examples/*/README.md, run exactly as written: each example is copied to a
//! folder of its own, `reuse` (target/release) and nodemon (tests/node) are put on PATH, and
//! every command line of the README's `sh` blocks runs through `sh -c`. A build line (`cc
//! ...`) must succeed; a server line is restarted with TIME_WAIT on its port (SIGTERM, then
//! SIGKILL; for nodemon, changes of the watched file) and must answer again each time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{change_until_gone, stop, wait_ready, Accept, Instance, HOST, START_TIMEOUT};
use crate as common;
use crate::TempDir;

/// The examples, each with the file nodemon watches there.
const EXAMPLES: [(&str, &str, &str); 3] = [
    ("python", "app.py", "#"),
    ("node", "app.js", "//"),
    ("legacy-c", "server.c", "//"),
];

/// Command lines of the README's ```sh blocks (comments and blank lines left out).
pub fn readme_commands(readme: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(readme)
        .unwrap_or_else(|e| panic!("reading {}: {e}", readme.display()));
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if in_sh && !t.is_empty() && !t.starts_with('#') {
            out.push(t.to_string());
        }
    }
    out
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let reuse = common::target_dir().join("reuse");
    if !reuse.exists() {
        let hint = "cargo build --release --workspace";
        assert!(
            !common::in_ci(),
            "{} is required under CI=true: {hint}",
            reuse.display()
        );
        common::skip(&format!(
            "{} is missing; build it with: {hint}",
            reuse.display()
        ));
        return None;
    }
    common::require("cc", "apt-get install gcc")?;
    let bin = common::nodemon()?.parent()?.to_path_buf();
    Some((common::target_dir(), bin))
}

fn shell(line: &str, dir: &Path, path: &std::ffi::OsStr, port: u16) -> Command {
    let mut c = common::command("sh", false);
    c.arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        .env("PORT", port.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The examples' own defaults: loopback for Python and C, every address for Node.
        .env_remove("HOST");
    c
}

fn start(name: &str, cmd: Command, port: u16) -> Instance {
    let mut inst = Instance::launch(name, cmd);
    if let Err(why) = wait_ready(&mut inst, port, START_TIMEOUT, Accept::OwnGroup, None) {
        let log = inst.finish();
        panic!("`{name}` did not answer on port {port}: {why}; output:\n{log}");
    }
    inst
}

pub fn run_all() {
    let Some((reuse_dir, nodemon_dir)) = tools() else {
        return;
    };
    let path = std::env::join_paths([reuse_dir, nodemon_dir].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    for (example, watched, comment) in EXAMPLES {
        let src = common::repo_root().join("examples").join(example);
        let dir = TempDir::new(&format!("example-{example}"));
        for entry in std::fs::read_dir(&src).expect("example folder").flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.path().join(entry.file_name()))
                    .expect("copying the example");
            }
        }
        let lines = readme_commands(&src.join("README.md"));
        assert!(
            lines.iter().any(|l| l.starts_with("reuse run --"))
                && lines.iter().any(|l| l.starts_with("LD_PRELOAD=$(reuse lib)")),
            "examples/{example}/README.md must give both `reuse run -- ...` and `LD_PRELOAD=$(reuse lib) ...`: {lines:?}"
        );
        for line in &lines {
            if line.starts_with("cc ") {
                let out = common::run(
                    &mut shell(line, dir.path(), &path, 0),
                    Duration::from_secs(120),
                );
                assert!(
                    out.status.success(),
                    "examples/{example}: `{line}` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            }
            let port = common::free_port();
            let name = format!("examples/{example}: {line}");
            let mut inst = start(&name, shell(line, dir.path(), &path, port), port);
            if line.contains("nodemon") {
                let file = dir.path().join(watched);
                for n in 1..=3 {
                    common::leave_time_wait(HOST, port, 2);
                    let old = inst.answered_by.expect("the example names its PID");
                    let mark = inst.log_len();
                    assert!(
                        change_until_gone(&file, comment, n, old).is_some(),
                        "`{name}`: nodemon did not stop PID {old}"
                    );
                    if let Err(why) = wait_ready(
                        &mut inst,
                        port,
                        START_TIMEOUT,
                        Accept::NotFrom(old),
                        Some(("app crashed", mark)),
                    ) {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "`{name}`: restart {n} after a file change: {why}; output:\n{}",
                            inst.log_since(mark)
                        );
                    }
                }
            } else {
                for sig in [libc::SIGTERM, libc::SIGKILL] {
                    common::leave_time_wait(HOST, port, 2);
                    stop(&mut inst, sig, true);
                    let old = std::mem::replace(
                        &mut inst,
                        start(&name, shell(line, dir.path(), &path, port), port),
                    );
                    drop(old.finish());
                }
            }
            drop(inst.finish());
        }
    }
}
