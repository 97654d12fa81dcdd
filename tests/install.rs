//! reuse as users install it: `cargo install` alone, the release archives (glibc, static
//! musl, macOS), the Debian package; the glibc it needs, and an older one it loads into.
//!
//! The archives come from `dist/release.sh`, which this test runs once (its builds go to
//! target/dist-build, apart from the main target folder). It needs what `.ci/install`
//! installs: the musl and Apple rustup targets, musl-tools, Zig in the project's venv and
//! cargo-zigbuild; locally a test skips without them, under CI=true it fails.

use reuse_testkit as common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// The newest GLIBC_x.y a file names in its dynamic symbol versions (objdump -T).
fn glibc_versions(lib: &Path) -> Vec<(u32, u32)> {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(lib)
        .output()
        .expect("objdump (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<(u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|w| {
            let mut p = w.split('.').map(|n| n.parse::<u32>().ok());
            Some((p.next()??, p.next()??))
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The library imports no symbol version newer than GLIBC_2.17 (RHEL 7's glibc, the oldest
/// a Rust toolchain still targets): it once needed dlsym@GLIBC_2.34, and every program on an
/// older glibc refused to start with it in LD_PRELOAD. On x86_64 and aarch64 it imports no
/// symbol at all (tests/footprint.rs checks that), so it names no version.
#[test]
fn the_library_needs_no_glibc_newer_than_2_17() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    require("objdump", "apt-get install binutils").expect("objdump");
    let versions = glibc_versions(&lib_path());
    if let Some(newest) = versions.last() {
        assert!(
            *newest <= (2, 17),
            "needs GLIBC_{}.{}: {versions:?}",
            newest.0,
            newest.1
        );
    }
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        assert!(versions.is_empty(), "versioned imports: {versions:?}");
    }
}

/// The unpacked libc6 of Debian 11 (glibc 2.31), fetched by .ci/install.
fn old_glibc() -> Option<PathBuf> {
    let dir = repo_root().join("target/test-deps/glibc-2.31/lib/x86_64-linux-gnu");
    if !dir.join("ld-2.31.so").exists() {
        assert!(
            !in_ci(),
            "glibc 2.31 is required under CI=true: .ci/install fetches it"
        );
        common::skip("no glibc 2.31 in target/test-deps; run .ci/install");
        return None;
    }
    Some(dir)
}

/// Zig, from the project's venv (.ci/install installs PyPI's ziglang there).
fn zig() -> Option<PathBuf> {
    let py = repo_root().join(".venv/bin/python3");
    let out = Command::new(&py)
        .args([
            "-c",
            "import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(out) = out else {
        assert!(
            !in_ci(),
            "zig is required under CI=true: .ci/install (ziglang in .venv)"
        );
        common::skip("no zig in .venv; run .ci/install");
        return None;
    };
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The probe linked against glibc 2.17's symbols (with Zig), loaded by `loader`.
fn old_probe(zig: &Path, loader: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reuse-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("probe-glibc-2.17");
    let status = Command::new(zig)
        .args(["cc", "-target", "x86_64-linux-gnu.2.17", "-O1", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/c/probe.c"))
        .args(["-lpthread", "-ldl"])
        .arg(format!("-Wl,--dynamic-linker={}", loader.display()))
        .arg(format!("-Wl,-rpath,{}", loader.parent().unwrap().display()))
        .status()
        .unwrap();
    assert!(status.success(), "zig cc failed");
    out
}

/// On glibc 2.31 (before dlsym moved into libc under GLIBC_2.34), a program runs with the
/// library preloaded and its bind gets SO_REUSEADDR. And where a library does need a newer
/// glibc than the program's, `reuse run` says so and runs the program without it, instead
/// of letting the loader stop it.
#[test]
fn the_library_loads_into_a_program_on_glibc_2_31() {
    if !cfg!(all(target_arch = "x86_64", target_env = "gnu")) {
        return;
    }
    let (Some(old), Some(zig)) = (old_glibc(), zig()) else {
        return;
    };
    let loader = old.join("ld-2.31.so");
    let probe = old_probe(&zig, &loader);
    let port = free_port().to_string();
    let mut c = command(&probe, true);
    c.args(["bind", "4", "tcp", "127.0.0.1", &port]);
    let out = run(&mut c, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("rc=0 errno=4242 reuseaddr=1"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A library built to need GLIBC_2.34 (dlsym, as the library once did).
    let Some(newer) = build_shared("tests/c/needs_glibc_2_34.c", "libneeds234.so", &["-ldl"])
    else {
        return;
    };
    let mut c = command(reuse_bin(), false);
    c.env("REUSE_LIB", &newer)
        .arg("run")
        .arg("--")
        .arg(&probe)
        .args(["bind", "4", "tcp", "127.0.0.1", &port]);
    let out = run(&mut c, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the program must run: {err}");
    assert!(
        err.contains("needs GLIBC_2.34") && err.contains("running it without libreuse"),
        "{err}"
    );
}

/// The files `git ls-files` names, copied as they are now into `dir`: a clean checkout of
/// the work in progress.
fn clean_copy(dir: &Path) {
    let out = Command::new("git")
        .current_dir(repo_root())
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .expect("git");
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).to_string();
        let from = repo_root().join(&name);
        if !from.is_file() {
            continue;
        }
        let to = dir.join(&name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
}

/// `cargo install --path cli` alone gives a working reuse: with nothing else copied, it
/// writes the library it carries to a private cache, restarts a Python server through
/// TIME_WAIT, and holds a port. (It once said "libreuse.so not found".)
#[test]
fn cargo_install_alone_gives_a_working_reuse() {
    let dir = TempDir::new("cargo-install");
    let src = dir.join("src");
    clean_copy(&src);
    let root = dir.join("root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(
        Command::new(cargo)
            .args(["install", "--locked", "--path"])
            .arg(src.join("cli"))
            .arg("--root")
            .arg(&root)
            // Its own target folder, kept between runs (the test's cargo holds the main
            // one's lock).
            .env("CARGO_TARGET_DIR", repo_root().join("target/install-test"))
            .env_remove("RUSTFLAGS"),
        Duration::from_secs(1200),
    );
    assert!(
        out.status.success(),
        "cargo install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = root.join("bin/reuse");
    let entries: Vec<_> = std::fs::read_dir(root.join("bin"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["reuse"], "one binary, nothing else");

    let cache = dir.join("cache");
    let reuse = || {
        let mut c = command(&bin, false);
        c.env("XDG_CACHE_HOME", &cache).env_remove("REUSE_LIB");
        c
    };
    let lib = run(reuse().arg("lib"), Duration::from_secs(20));
    let lib = PathBuf::from(String::from_utf8_lossy(&lib.stdout).trim());
    assert!(lib.starts_with(cache.join("reuse")), "{}", lib.display());
    assert!(lib
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("libreuse-0."));

    // A restart through TIME_WAIT, as the README's demo does it.
    let app = repo_root().join("examples/python/app.py");
    let start = |port: u16| {
        let mut c = reuse();
        c.args(["run", "--"])
            .arg(python())
            .arg(&app)
            .env("PORT", port.to_string());
        spawn("app", &mut c)
    };
    let port = free_port();
    let mut first = start(port);
    assert!(wait_http("127.0.0.1", port, Duration::from_secs(20)).is_some());
    leave_time_wait("127.0.0.1", port, 3);
    first.stop(libc::SIGTERM);
    let mut second = start(port);
    let back = wait_http("127.0.0.1", port, Duration::from_secs(10));
    second.stop(libc::SIGTERM);
    assert!(
        back.is_some(),
        "the restart failed: {}",
        second.stderr_text()
    );

    // Hold mode from the same single binary.
    let port = free_port().to_string();
    let probe = probe().expect("cc");
    let out = run(
        reuse()
            .args(["run", "--hold", &port, "--"])
            .arg(&probe)
            .args(["sock", "4", "tcp", "127.0.0.1", &port]),
        Duration::from_secs(20),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("rc=0 errno=4242 type=1 listening=1 "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs dist/release.sh once for this test binary; target/dist, or None (skip).
fn dist() -> Option<&'static Path> {
    static DIST: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIST.get_or_init(|| {
        for (tool, how) in [
            ("musl-gcc", "apt-get install musl-tools"),
            ("dpkg-deb", "apt-get install dpkg"),
            (
                "cargo-zigbuild",
                "cargo install cargo-zigbuild --locked (.ci/install)",
            ),
        ] {
            require(tool, how)?;
        }
        zig()?;
        let out = run(
            Command::new(repo_root().join("dist/release.sh")).env_remove("RUSTFLAGS"),
            Duration::from_secs(1800),
        );
        assert!(
            out.status.success(),
            "dist/release.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(repo_root().join("target/dist"))
    })
    .as_deref()
}

fn version() -> String {
    let text = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap()
}

/// Unpacks an archive of target/dist into `into`; its top folder.
fn unpack(dist: &Path, name: &str, into: &Path) -> PathBuf {
    let file = dist.join(format!("reuse-{}-{name}.tar.gz", version()));
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&file)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success(), "{}", file.display());
    into.join(format!("reuse-{}-{name}", version()))
}

/// The release archives hold what the README says: the command, the library, the man page,
/// completions for bash, zsh and fish, the licences; and the command in each runs.
#[test]
fn the_release_archives_hold_the_command_the_library_and_the_documents() {
    let Some(dist) = dist() else { return };
    let dir = TempDir::new("archives");
    for (name, lib) in [
        ("x86_64-linux-gnu", "libreuse.so"),
        ("x86_64-linux-musl", "libreuse.so"),
        ("aarch64-apple-darwin", "libreuse.dylib"),
        ("x86_64-apple-darwin", "libreuse.dylib"),
    ] {
        let top = unpack(dist, name, dir.path());
        for f in [
            "bin/reuse".to_string(),
            format!("lib/{lib}"),
            "share/man/man1/reuse.1".into(),
            "share/bash-completion/completions/reuse".into(),
            "share/zsh/site-functions/_reuse".into(),
            "share/fish/vendor_completions.d/reuse.fish".into(),
            "LICENSE-MIT".into(),
            "LICENSE-APACHE".into(),
        ] {
            assert!(top.join(&f).is_file(), "{name}: {f} missing");
        }
        let man = std::fs::read_to_string(top.join("share/man/man1/reuse.1")).unwrap();
        assert!(
            man.contains(".TH reuse 1") && man.contains("doctor"),
            "{name}: man page"
        );
    }
    for name in ["x86_64-linux-gnu", "x86_64-linux-musl"] {
        let bin = dir.join(&format!("reuse-{}-{name}/bin/reuse", version()));
        let out = run(Command::new(&bin).arg("--version"), Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("reuse {} (commit ", version())),
            "{name}: {text}"
        );
    }
    // The command is static in both Linux archives: no loader, so no libgcc_s to find on
    // Alpine, and no glibc too old for it (a glibc build needed GLIBC_2.34 while the
    // package said 2.17).
    for name in ["x86_64-linux-gnu", "x86_64-linux-musl"] {
        let bin = dir.join(&format!("reuse-{}-{name}/bin/reuse", version()));
        let out = run(
            Command::new("readelf").arg("-l").arg(&bin),
            Duration::from_secs(10),
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("interpreter"),
            "{name}: the command needs a loader"
        );
        assert!(glibc_versions(&bin).is_empty(), "{name}: versioned imports");
    }
}

/// The Alpine recipe (README, shims/Dockerfile.reuse): the musl archive's command and
/// library, with a server built by musl-gcc, which restarts through TIME_WAIT under it; the
/// same command serves a glibc program with the glibc library it carries.
#[test]
fn the_musl_archive_restarts_a_musl_server_and_a_glibc_one() {
    let Some(dist) = dist() else { return };
    let Some(musl_probe) = build_c("tests/c/probe.c", "probe-musl", "musl-gcc") else {
        return;
    };
    let dir = TempDir::new("alpine");
    let top = unpack(dist, "x86_64-linux-musl", dir.path());
    let reuse = top.join("bin/reuse");
    for (probe, which) in [(musl_probe, "musl"), (probe().unwrap(), "glibc")] {
        let start = |port: u16, pre: bool| {
            let mut c = command(&reuse, false);
            c.env("XDG_CACHE_HOME", dir.join("cache"))
                .env("REUSE_LOG", "info")
                .arg("run");
            if !pre {
                c.args(["--ports", "1"]);
            }
            c.arg("--")
                .arg(&probe)
                .args(["serve", "4", "127.0.0.1", &port.to_string()]);
            spawn("probe", &mut c)
        };
        let port = free_port();
        let mut first = start(port, true);
        assert!(
            wait_http("127.0.0.1", port, Duration::from_secs(10)).is_some(),
            "{which}"
        );
        leave_time_wait("127.0.0.1", port, 3);
        first.stop(libc::SIGKILL);
        let second = start(port, true);
        let back = wait_http("127.0.0.1", port, Duration::from_secs(5));
        second.signal(libc::SIGKILL);
        let err = second.stderr_text();
        assert!(back.is_some(), "{which}: {err}");
        assert!(err.contains("tcp: SO_REUSEADDR"), "{which}: {err}");
        assert!(!err.contains("warning"), "{which}: {err}");
    }
}

/// The Debian package installs with dpkg -i, its /usr/bin/reuse restarts a stock server from
/// the installed files (the library in /usr/lib/x86_64-linux-gnu), and dpkg -r removes every
/// file it installed. Root only (CI runs as root).
#[test]
fn the_debian_package_installs_runs_and_removes_cleanly() {
    let Some(dist) = dist() else { return };
    if !is_root() {
        assert!(!in_ci(), "CI runs as root");
        common::skip("installing a package needs root");
        return;
    }
    if Path::new("/usr/bin/reuse").exists()
        && !Path::new("/var/lib/dpkg/info/reuse-restart.list").exists()
    {
        common::skip("another /usr/bin/reuse is installed (Debian's licensing tool?)");
        assert!(!in_ci(), "CI has no other /usr/bin/reuse");
        return;
    }
    let deb = dist.join(format!("reuse-restart_{}_amd64.deb", version()));
    let out = run(
        Command::new("dpkg").arg("-i").arg(&deb),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "dpkg -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = std::fs::read_to_string("/var/lib/dpkg/info/reuse-restart.list").unwrap();
    let installed: Vec<PathBuf> = files
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    for want in [
        "/usr/bin/reuse",
        "/usr/lib/x86_64-linux-gnu/libreuse.so",
        "/usr/share/man/man1/reuse.1.gz",
    ] {
        assert!(
            installed.contains(&PathBuf::from(want)),
            "{want} not installed: {files}"
        );
    }
    let lib = run(
        command("/usr/bin/reuse", false).arg("lib"),
        Duration::from_secs(10),
    );
    assert_eq!(
        String::from_utf8_lossy(&lib.stdout).trim(),
        "/usr/lib/x86_64-linux-gnu/libreuse.so"
    );
    // A stock server restarted through TIME_WAIT: socketserver, from the installed files.
    let app = repo_root().join("examples/python/app.py");
    let start = |port: u16| {
        let mut c = command("/usr/bin/reuse", false);
        c.args(["run", "--"])
            .arg(python())
            .arg(&app)
            .env("PORT", port.to_string());
        spawn("app", &mut c)
    };
    let port = free_port();
    let mut first = start(port);
    let up = wait_http("127.0.0.1", port, Duration::from_secs(20)).is_some();
    if up {
        leave_time_wait("127.0.0.1", port, 3);
    }
    first.stop(libc::SIGTERM);
    let mut second = start(port);
    let back = wait_http("127.0.0.1", port, Duration::from_secs(10));
    second.stop(libc::SIGTERM);
    let out = run(
        Command::new("dpkg").args(["-r", "reuse-restart"]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "dpkg -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        up && back.is_some(),
        "the installed reuse did not restart the server"
    );
    for f in &installed {
        assert!(!f.exists(), "{} left behind", f.display());
    }
}

/// The macOS dylibs, linked for real (Zig): `__DATA,__interpose` has one entry per hooked
/// function, its replacement the exported `reuse_*` hook and its original libSystem's
/// function; and the library exports those hooks and nothing else.
#[test]
fn the_macos_dylibs_interpose_exactly_the_hooks() {
    let Some(_) = dist() else { return };
    let Some(objdump) = require("llvm-objdump", "apt-get install llvm") else {
        return;
    };
    let nm = require("llvm-nm", "apt-get install llvm").unwrap();
    for target in ["aarch64-apple-darwin", "x86_64-apple-darwin"] {
        let lib = repo_root().join(format!(
            "target/dist-build/mac/{target}/release/libreuse.dylib"
        ));
        let exports = run(
            Command::new(&nm).args(["-gU"]).arg(&lib),
            Duration::from_secs(20),
        );
        let exports: Vec<(u64, String)> = String::from_utf8_lossy(&exports.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((
                    u64::from_str_radix(w.next()?, 16).ok()?,
                    w.nth(1)?.to_string(),
                ))
            })
            .collect();
        let names: Vec<&str> = exports.iter().map(|(_, n)| n.as_str()).collect();
        let hooks = ["bind", "close", "dup", "dup2", "socket"];
        let mut want: Vec<String> = hooks.iter().map(|h| format!("_reuse_{h}")).collect();
        want.sort();
        let mut got: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, want, "{target}: exports");

        let binds = run(
            Command::new(&objdump).args(["--macho", "--bind"]).arg(&lib),
            Duration::from_secs(20),
        );
        let binds = String::from_utf8_lossy(&binds.stdout).to_string();
        // segment section address type addend dylib symbol
        let originals: Vec<(u64, String)> = binds
            .lines()
            .filter(|l| l.contains("__interpose"))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                Some((
                    u64::from_str_radix(w.get(2)?.trim_start_matches("0x"), 16).ok()?,
                    w.get(6)?.to_string(),
                ))
            })
            .collect();
        assert_eq!(originals.len(), hooks.len(), "{target}: {binds}");
        let content = run(
            Command::new(&objdump)
                .args(["--macho", "-s", "--section=__DATA,__interpose"])
                .arg(&lib),
            Duration::from_secs(20),
        );
        // Each entry is {replacement, original}: 16 bytes. llvm-objdump prints the section as
        // bytes (x86_64) or as 32-bit numbers (arm64); either way, the bytes in memory order.
        let mut bytes: Vec<(u64, u8)> = Vec::new();
        for line in String::from_utf8_lossy(&content.stdout).lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let Some(mut addr) = w.first().and_then(|a| u64::from_str_radix(a, 16).ok()) else {
                continue;
            };
            for tok in &w[1..] {
                match tok.len() {
                    2 => {
                        bytes.push((addr, u8::from_str_radix(tok, 16).unwrap()));
                        addr += 1;
                    }
                    8 => {
                        for b in u32::from_str_radix(tok, 16).unwrap().to_le_bytes() {
                            bytes.push((addr, b));
                            addr += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        let word_at = |at: u64| -> Option<u64> {
            let mut v = [0u8; 8];
            for (i, b) in v.iter_mut().enumerate() {
                *b = bytes.iter().find(|(a, _)| *a == at + i as u64)?.1;
            }
            Some(u64::from_le_bytes(v))
        };
        let words: Vec<(u64, u64)> = originals
            .iter()
            .filter_map(|(at, _)| Some((at - 8, word_at(at - 8)?)))
            .collect();
        for (at, original) in &originals {
            let hook = original.trim_start_matches('_');
            let replacement = words.iter().find(|(a, _)| *a + 8 == *at).map(|(_, v)| *v);
            let export = exports
                .iter()
                .find(|(_, n)| *n == format!("_reuse_{hook}"))
                .map(|(a, _)| *a);
            assert!(
                replacement.is_some() && replacement == export,
                "{target}: {hook}: {replacement:?} vs {export:?}"
            );
        }
    }
}

/// The man page and completions come from the command's own definition, and --version names
/// the version and the commit.
#[test]
fn man_page_completions_and_version_come_from_the_command() {
    let reuse = reuse_bin();
    let v = run(
        command(&reuse, false).arg("--version"),
        Duration::from_secs(10),
    );
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    assert!(
        v.starts_with(&format!("reuse {} (commit ", version())) && v.trim_end().ends_with(')'),
        "{v}"
    );
    let man = run(command(&reuse, false).arg("man"), Duration::from_secs(10));
    let man = String::from_utf8_lossy(&man.stdout).to_string();
    for word in [".TH reuse 1", "run", "doctor", "lib", "completions"] {
        assert!(man.contains(word), "{word}: {man}");
    }
    for (shell, mark) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef reuse"),
        ("fish", "complete -c reuse"),
    ] {
        let out = run(
            command(&reuse, false).args(["completions", shell]),
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(mark) && text.contains("doctor") && text.contains("hold"),
            "{shell}: {text}"
        );
    }
    // A library of another build is named as such.
    let Some(other) = build_shared("tests/c/empty_preload.c", "libempty.so", &[]) else {
        return;
    };
    let out = run(
        command(&reuse, false)
            .env("REUSE_LIB", &other)
            .args(["run", "--", "true"]),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("carries no libreuse version mark"), "{err}");
}
