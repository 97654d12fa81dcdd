//! The documents keep their word: every relative link in README.md, docs/, CONTRIBUTING.md,
//! BENCHMARKS.md and the examples' READMEs leads to a file that exists (and a `#section` to
//! a heading there); every ```sh block is valid shell; every `reuse` command in them is one
//! the command accepts (flags and values checked by the command's own parser), and those
//! that only read (`reuse lib`, `reuse doctor`, `--version`) are run as written, and so are
//! the server commands of README.md and docs/DESIGN.md (each must serve on its port). The
//! examples' commands are run in full by the restart harness (tests/harness.rs). Left to
//! their own tests: `cargo` and `.ci/` commands (the test suite itself), `sudo`/`systemctl`
//! (tests/cli.rs checks the systemd shims), and `. shims/reuse.sh` (tests/cli.rs).

use reuse_testkit as common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut v = vec![
        root.join("README.md"),
        root.join("CONTRIBUTING.md"),
        root.join("BENCHMARKS.md"),
    ];
    for dir in ["docs", "examples"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "md") {
                v.push(p);
            } else if p.join("README.md").is_file() {
                v.push(p.join("README.md"));
            }
        }
    }
    v.sort();
    v
}

/// `[text](target)` targets of a Markdown text, outside code blocks and spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            // Inside an inline code span (an odd number of backticks before): not a link.
            if rest[..i].matches('`').count() % 2 == 0 {
                out.push(after[..end].to_string());
            }
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, spaces to '-', punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_block = false;
    let mut v = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            v.push(anchor(line.trim_start_matches('#')));
        }
    }
    v
}

#[test]
fn every_relative_link_leads_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, section) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}", doc.display()));
                continue;
            }
            if !section.is_empty() && target.extension().is_some_and(|x| x == "md") {
                let there = std::fs::read_to_string(&target).unwrap();
                if !anchors(&there).iter().any(|a| a == section) {
                    broken.push(format!("{}: {link} (no such section)", doc.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The lines of every ```sh block of a document (comments and blank lines left out).
fn sh_lines(doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(doc).unwrap();
    let mut v = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if in_sh && !t.is_empty() && !t.starts_with('#') {
            v.push(line.to_string());
        }
    }
    v
}

#[test]
fn every_shell_block_is_valid_shell() {
    for doc in documents() {
        let lines = sh_lines(&doc);
        if lines.is_empty() {
            continue;
        }
        let out = run(
            Command::new("sh").arg("-n").arg("-c").arg(lines.join("\n")),
            Duration::from_secs(10),
        );
        assert!(
            out.status.success(),
            "{}: {}",
            doc.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Each `reuse ...` invocation in a line (also after `$(`, `--` or a pipe), as words.
fn reuse_invocations(line: &str) -> Vec<Vec<String>> {
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect();
    let mut v = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let w = w.trim_start_matches("$(").trim_end_matches(')');
        let before = i.checked_sub(1).map(|j| words[j].as_str());
        let starts = i == 0
            || matches!(before, Some("--" | "|" | "&&" | ";" | "exec"))
            || words[i].starts_with("$(")
            || before.is_some_and(|b| b.ends_with('=') || b.contains("=$("));
        if w == "reuse" && starts {
            let rest: Vec<String> = words[i + 1..]
                .iter()
                .take_while(|w| !matches!(w.as_str(), "|" | "&&" | ";"))
                .map(|w| w.trim_end_matches(')').to_string())
                .collect();
            v.push(rest);
        }
    }
    v
}

#[test]
fn every_reuse_command_in_the_documents_is_one_the_command_accepts() {
    let reuse = reuse_bin();
    let mut checked = 0;
    for doc in documents() {
        for line in sh_lines(&doc) {
            for args in reuse_invocations(&line) {
                let Some(sub) = args.first() else { continue };
                // `reuse on` and `reuse off` are the shell function shims/reuse.sh defines
                // (tests/cli.rs runs them).
                if matches!(sub.as_str(), "on" | "off") && line.contains("shims/reuse.sh") {
                    continue;
                }
                // What runs a program is checked up to `--`, with --help, which the
                // command's parser reaches only when every flag before it is valid.
                let (to_run, read_only) = match sub.as_str() {
                    "run" => {
                        let before: Vec<String> =
                            args.iter().take_while(|a| *a != "--").cloned().collect();
                        (before, false)
                    }
                    "lib" | "doctor" | "--version" | "completions" => (args.clone(), true),
                    _ => (args.clone(), false),
                };
                let mut c = Command::new(&reuse);
                c.args(&to_run);
                if !read_only {
                    c.arg("--help");
                }
                let out = run(&mut c, Duration::from_secs(20));
                let code = out.status.code();
                assert!(
                    code == Some(0) || (read_only && sub == "doctor" && code == Some(1)),
                    "{}: `{line}`: reuse {} gave {code:?}: {}",
                    doc.display(),
                    to_run.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} reuse commands found in the documents"
    );
}

/// docs/DESIGN.md's layout names every file of the repository (git's list; the fuzz corpus
/// and npm's lock file aside), so that it stays the map of the code.
#[test]
fn the_layout_names_every_file() {
    let Some(git) = require("git", "apt-get install git") else {
        return;
    };
    let out = run(
        Command::new(git)
            .arg("-C")
            .arg(repo_root())
            .args(["ls-files"]),
        Duration::from_secs(20),
    );
    if !out.status.success() {
        // Not a git checkout (an unpacked source archive): nothing to compare.
        common::skip("not a git checkout: the layout is compared with `git ls-files`");
        return;
    }
    let layout = std::fs::read_to_string(repo_root().join("docs/DESIGN.md")).unwrap();
    let missing: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|f| {
            !f.starts_with("fuzz/corpus/")
                && !f.starts_with("fuzz/artifacts/")
                && *f != "tests/node/package-lock.json"
        })
        .filter(|f| !layout.contains(*f))
        .map(str::to_string)
        .collect();
    assert!(missing.is_empty(), "not in docs/DESIGN.md: {missing:?}");
}

/// The server commands of README.md and docs/DESIGN.md (`reuse run ...`, `LD_PRELOAD=$(reuse
/// lib) ...`, `systemfd ...`) run exactly as written, one at a time, as a user would run them:
/// in a folder holding the files they name (the examples' app.py, and their app.js as app.js
/// and server.js), with `reuse`, nodemon and systemfd on PATH and PORT=8000 in the
/// environment. Each must answer HTTP on port 8000 within 15 s; its process group is then
/// stopped (SIGTERM, then SIGKILL) and the port must be free again before the next.
#[test]
fn the_server_commands_in_the_documents_run_as_written() {
    const PORT: u16 = 8000;
    let root = repo_root();
    let mut lines = Vec::new();
    for doc in [root.join("README.md"), root.join("docs/DESIGN.md")] {
        for line in sh_lines(&doc) {
            let t = line.trim().to_string();
            if t.starts_with("reuse run ")
                || t.starts_with("LD_PRELOAD=$(reuse lib)")
                || t.starts_with("systemfd ")
            {
                lines.push((doc.clone(), t));
            }
        }
    }
    assert!(
        lines.len() >= 10,
        "only {} server commands found in the documents",
        lines.len()
    );
    if listening(PORT) || std::net::TcpListener::bind(("127.0.0.1", PORT)).is_err() {
        skip("port 8000, which the documents' commands use, is taken on this machine");
        return;
    }
    let dir = TempDir::new("documents-servers");
    std::fs::copy(root.join("examples/python/app.py"), dir.0.join("app.py")).unwrap();
    for name in ["app.js", "server.js"] {
        std::fs::copy(root.join("examples/node/app.js"), dir.0.join(name)).unwrap();
    }
    let mut path = vec![reuse_bin().parent().unwrap().to_path_buf()];
    if let Some(nodemon) = nodemon() {
        path.push(nodemon.parent().unwrap().to_path_buf());
    }
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).unwrap();
    let mut ran = 0;
    for (doc, line) in &lines {
        let needs = [
            ("nodemon", "npm ci in tests/node (.ci/install)"),
            ("node", "apt-get install nodejs"),
            (
                "systemfd",
                "cargo install systemfd --locked --version 0.4.6 (.ci/install)",
            ),
            ("python3", "apt-get install python3"),
        ];
        let missing = needs.iter().find(|(tool, install)| {
            line.split_whitespace().any(|w| w == *tool)
                && (if *tool == "nodemon" {
                    nodemon().is_none()
                } else {
                    require(tool, install).is_none()
                })
        });
        if missing.is_some() {
            continue;
        }
        let mut group = Group::start(
            Command::new("sh")
                .arg("-c")
                .arg(line)
                .current_dir(&dir.0)
                .env("PATH", &path)
                .env("PORT", PORT.to_string()),
        );
        let served = wait_http("127.0.0.1", PORT, Duration::from_secs(15));
        // As Ctrl-C would: the whole group, then time for reuse to take its rendezvous
        // folder away once its command has exited.
        let pgid = group.0.id() as i32;
        let stopping = std::time::Instant::now();
        common::kill(-pgid, libc::SIGTERM);
        for _ in 0..200 {
            let _ = group.0.try_wait();
            if !common::kill(-pgid, 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let err = group.kill();
        assert!(
            served.is_some(),
            "{}: `{line}` answered nothing on port {PORT} within 15 s: {err}",
            doc.display()
        );
        let mut free = false;
        for _ in 0..100 {
            if !listening(PORT) {
                free = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            free,
            "{}: `{line}` left port {PORT} listening",
            doc.display()
        );
        eprintln!(
            "{}: `{line}` served in {:?}, stopped in {:?}",
            doc.display(),
            served.unwrap_or_default(),
            stopping.elapsed()
        );
        ran += 1;
    }
    assert!(ran > 0 || !in_ci(), "no server command ran");
}
