//! What the library does to a process: what the loader is told about it (no NEEDED library,
//! no import), the system calls it adds (strace), and what its binary could read from the
//! environment.

use reuse_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

struct Trace {
    /// (name, first argument, the whole line) of each call after the program's first
    /// socket(): what main() does, the loader and constructors left out.
    program: Vec<(String, String, String)>,
    /// Names of the calls before it (loader, constructors).
    startup: Vec<String>,
}

fn strace(cmd_env: &[(&str, &str)], preload: Option<&Path>, args: &[&str]) -> Trace {
    let strace = require("strace", "apt-get install strace").unwrap();
    let dir = TempDir::new("strace");
    let log = dir.0.join("trace");
    let mut c = command(&strace, false);
    c.args(["-f", "-qq", "-e", "trace=all", "-s", "64", "-o"])
        .arg(&log);
    if let Some(lib) = preload {
        // Through strace's -E, so that strace itself runs without the library.
        c.arg("-E").arg(format!("LD_PRELOAD={}", lib.display()));
    }
    for (k, v) in cmd_env {
        c.arg("-E").arg(format!("{k}={v}"));
    }
    c.arg(probe().unwrap()).args(args);
    let out = run(&mut c, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    let trace = std::fs::read_to_string(&log).unwrap();
    let mut t = Trace {
        program: Vec::new(),
        startup: Vec::new(),
    };
    let mut in_main = false;
    for line in trace.lines() {
        // "PID name(args) = result" with -f and -o.
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .trim_start();
        let Some((name, rest)) = call.split_once('(') else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // "+++ exited", "--- SIGCHLD", "<... resumed>"
        }
        in_main |= name == "socket";
        let first = rest.split([',', ')']).next().unwrap_or("").to_string();
        if in_main {
            t.program.push((name.to_string(), first, line.to_string()));
        } else {
            t.startup.push(name.to_string());
        }
    }
    t
}

fn counts<'a>(names: impl Iterator<Item = &'a str>) -> std::collections::BTreeMap<String, i64> {
    let mut m = std::collections::BTreeMap::new();
    for n in names {
        *m.entry(n.to_string()).or_insert(0) += 1;
    }
    m
}

/// with - without, per system call name, zero counts left out.
fn extra(
    with: &[(String, String, String)],
    without: &[(String, String, String)],
) -> Vec<(String, i64)> {
    let a = counts(with.iter().map(|c| c.0.as_str()));
    let b = counts(without.iter().map(|c| c.0.as_str()));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| (n.clone(), a.get(n).unwrap_or(&0) - b.get(n).unwrap_or(&0)))
        .filter(|(_, d)| *d != 0)
        .collect()
}

/// What the loader is told about the library: it needs no other library and imports no
/// symbol (each would be a lookup at every exec; the library finds libc's functions itself),
/// binds at load (BIND_NOW), and has build.rs's layout: two segments, no RELRO.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_library_needs_no_library_and_imports_no_symbol() {
    let Some(readelf) = require("readelf", "apt-get install binutils") else {
        return;
    };
    let lib = lib_path();
    let show = |flag: &str| {
        let out = run(
            Command::new(&readelf).args([flag, "-W"]).arg(&lib),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dynamic = show("-d");
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
    assert!(dynamic.contains("BIND_NOW"), "{dynamic}");
    assert!(!dynamic.contains("TEXTREL"), "{dynamic}");
    let symbols = show("--dyn-syms");
    let undefined: Vec<&str> = symbols
        .lines()
        .filter(|l| l.contains(" UND ") && !l.trim_end().ends_with("UND"))
        .collect();
    assert!(undefined.is_empty(), "imports: {undefined:?}");
    let exported: Vec<&str> = symbols
        .lines()
        .filter(|l| l.contains(" GLOBAL ") && l.contains(" FUNC "))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let mut want = vec!["bind", "close", "dup", "dup2", "dup3", "socket"];
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        want.push("dlopen");
    }
    let mut got = exported.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "the library exports the hooks and nothing else");
    let segments = show("-l");
    let loads = segments
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .count();
    assert_eq!(loads, 2, "{segments}");
    assert!(!segments.contains("GNU_RELRO"), "{segments}");
    // No .bss: the data segment is as large in the file as in memory, so the loader has no
    // partial page to clear.
    let data = segments
        .lines()
        .find(|l| l.trim_start().starts_with("LOAD") && l.contains(" RW "))
        .unwrap_or_else(|| panic!("no data segment: {segments}"));
    let fields: Vec<&str> = data.split_whitespace().collect();
    assert_eq!(fields[4], fields[5], "file and memory sizes differ: {data}");
    // Each pointer in the library's data is a relocation the loader applies at every exec.
    // Left: the constructor's entry and the GOT entries of the memory functions the
    // compiler calls (memcpy, memmove, memset, memcmp, strlen: rustc calls them through the
    // GOT). A format string, a table of strings or a function pointer taken the usual way
    // would add more.
    let relocations = show("-r");
    let relative = relocations
        .lines()
        .filter(|l| l.contains("_RELATIVE"))
        .count();
    let other: Vec<&str> = relocations
        .lines()
        .filter(|l| l.starts_with("0") && !l.contains("_RELATIVE"))
        .collect();
    assert!(
        other.is_empty(),
        "relocations other than RELATIVE: {other:?}"
    );
    if cfg!(target_arch = "x86_64") {
        assert!(relative <= 6, "{relative} relocations: {relocations}");
    }
}

#[test]
fn strace_shows_the_library_adds_only_setsockopt_to_a_successful_bind() {
    if probe().is_none() {
        return;
    }
    if require("strace", "apt-get install strace").is_none() {
        return;
    }
    let lib = lib_path();
    let port = free_port().to_string();
    let args = ["bind", "4", "tcp", "127.0.0.1", port.as_str()];
    let plain = strace(&[], None, &args);
    let with = strace(&[], Some(&lib), &args);
    let added = extra(&with.program, &plain.program);
    eprintln!(
        "strace, program part: without the library {:?}; added by it {added:?}",
        counts(plain.program.iter().map(|c| c.0.as_str()))
    );
    // The first inet socket() maps the descriptor table (1 MiB of address space, not
    // mapped at load so that programs that never make a socket do not pay for it); the
    // bind adds the one setsockopt.
    assert_eq!(
        added,
        [("mmap".to_string(), 1), ("setsockopt".to_string(), 1)],
        "{:#?}",
        with.program
    );
    let table = "1048576, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE";
    let at = |name: &str| with.program.iter().position(|c| c.0 == name);
    let map = with
        .program
        .iter()
        .position(|c| c.0 == "mmap" && c.2.contains(table));
    assert!(
        map.is_some() && at("socket") < map && map < at("setsockopt"),
        "{:#?}",
        with.program
    );
    let set = with.program.iter().find(|c| c.0 == "setsockopt").unwrap();
    assert!(
        set.2.contains("SOL_SOCKET, SO_REUSEADDR, [1], 4"),
        "{}",
        set.2
    );

    // Loading: the library's constructor makes no system call, and the only file touched
    // because of it is the library itself, mapped by the loader. Compare with a preload
    // that does nothing at all.
    let empty = {
        let dir = std::env::temp_dir().join(format!("reuse-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let so = dir.join("empty_preload.so");
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&so)
            .arg(repo_root().join("tests/c/empty_preload.c"))
            .status()
            .unwrap();
        assert!(st.success());
        so
    };
    let baseline = strace(&[], Some(&empty), &args);
    let as_calls = |t: &[String]| -> Vec<(String, String, String)> {
        t.iter()
            .map(|n| (n.clone(), String::new(), String::new()))
            .collect()
    };
    let loading = extra(&as_calls(&with.startup), &as_calls(&baseline.startup));
    // The loader maps libreuse.so in two segments without RELRO (build.rs), so it makes no
    // mmap or mprotect an empty C library built with the compiler's defaults does not;
    // the constructor makes one fstat of descriptor 2 (so no log line ever goes to a file
    // that takes that number later); nothing else may be added.
    // (Built by rustc's lld on x86_64 that is two mmap calls and one mprotect fewer.)
    for (name, count) in &loading {
        assert!(
            (name == "fstat" && *count == 1) || *count < 0,
            "startup with libreuse.so vs an empty preload differs in {name}: {loading:?}\n{:?}\n{:?}",
            with.startup,
            baseline.startup
        );
    }
    assert!(loading.contains(&("fstat".to_string(), 1)), "{loading:?}");
    eprintln!(
        "strace, startup: {} calls with libreuse.so, {} with an empty preload (difference {loading:?}), {} without any",
        with.startup.len(),
        baseline.startup.len(),
        plain.startup.len()
    );

    // At REUSE_LOG=info the library speaks: the added calls are the option, its PID for the
    // line, a look at what descriptor 2 is (still the file it was at load, and no network
    // connection), SIGPIPE held off around the write (a stderr pipe without a reader must
    // not kill the host), and one write, to stderr; and the table's mmap, as above.
    let info = strace(&[("REUSE_LOG", "info")], Some(&lib), &args);
    let added = extra(&info.program, &plain.program);
    for (name, n) in &added {
        assert!(
            [
                "mmap",
                "setsockopt",
                "getpid",
                "fstat",
                "getsockopt",
                "rt_sigpending",
                "rt_sigprocmask",
                "write"
            ]
            .contains(&name.as_str())
                && *n > 0,
            "{added:?}"
        );
    }
    let on_stderr = |name: &str| {
        info.program
            .iter()
            .filter(|c| c.0 == name && c.1 == "2")
            .count() as i64
    };
    let added_getsockopt = added
        .iter()
        .find(|a| a.0 == "getsockopt")
        .map_or(0, |a| a.1);
    assert_eq!(
        added_getsockopt,
        on_stderr("getsockopt"),
        "{:#?}",
        info.program
    );
    let writes: Vec<&String> = info
        .program
        .iter()
        .filter(|c| c.0 == "write" && c.1 != "1")
        .map(|c| &c.2)
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].contains("write(2, \"libreuse["), "{}", writes[0]);
}

#[test]
fn after_a_failed_bind_the_library_only_reads_proc_and_writes_stderr() {
    if probe().is_none() || require("strace", "apt-get install strace").is_none() {
        return;
    }
    let held = free_port();
    let mut lc = command(probe().unwrap(), false);
    lc.args(["listen", "4", "127.0.0.1", &held.to_string()]);
    let _holder = spawn("holder", &mut lc);
    assert!(wait_listening(held, Duration::from_secs(10)));
    let hs = held.to_string();
    let t = strace(
        &[("REUSE_WAIT_MS", "30")],
        Some(&lib_path()),
        &["bind", "4", "tcp", "127.0.0.1", &hs],
    );
    let mut opened = Vec::new();
    for (name, first, line) in &t.program {
        match name.as_str() {
            "open" | "openat" | "openat2" | "creat" => {
                assert!(
                    line.contains("\"/proc/") || line.contains("\"/proc\""),
                    "opened outside /proc: {line}"
                );
                assert!(line.contains("O_RDONLY"), "not read-only: {line}");
                assert!(
                    !line.contains("O_CREAT")
                        && !line.contains("O_WRONLY")
                        && !line.contains("O_RDWR")
                );
                opened.push(line.split('"').nth(1).unwrap_or("").to_string());
            }
            "write" | "writev" | "pwrite64" | "sendto" | "sendmsg" => assert!(
                first == "1" || first == "2",
                "the probe writes stdout, the library stderr; nothing else: {line}"
            ),
            "unlink" | "unlinkat" | "rename" | "renameat" | "renameat2" | "mkdir" | "mkdirat"
            | "truncate" | "ftruncate" | "chmod" | "fchmod" | "fchmodat" => {
                panic!("changes a file: {line}")
            }
            _ => {}
        }
    }
    opened.sort();
    opened.dedup();
    let shown: Vec<&String> = opened.iter().take(6).collect();
    eprintln!(
        "after EADDRINUSE the library opened {} distinct /proc paths, read-only: {shown:?} ...",
        opened.len()
    );
    assert!(opened.iter().any(|p| p == "/proc/net/tcp"), "{opened:?}");
}

#[test]
fn the_library_reads_no_environment_variable_but_its_own() {
    // The library walks `environ` once, read-only, and keeps only the REUSE_* names it
    // knows (reuse_core::config::pick_variables, unit-tested there). Here, from outside:
    // look-alikes of its variables, set to values that would be invalid, change nothing,
    // and the library imports nothing that could change the environment.
    if probe().is_none() {
        return;
    }
    let port = free_port().to_string();
    let lookalikes = [
        ("REUSE_PORTSX", "0"),
        ("XREUSE_PORTS", "0"),
        ("reuse_ports", "0"),
        ("REUSE_PORT", "0"),
        ("REUSE_", "0"),
        ("REUSE_LOG_LEVEL", "loud"),
        ("REUSE_OPTIONS_", "nonsense"),
    ];
    let mut c = command(probe().unwrap(), true);
    c.args(["bind", "4", "tcp", "127.0.0.1", &port]);
    c.envs(lookalikes.iter().copied());
    let o = run(&mut c, Duration::from_secs(20));
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(out.starts_with("rc=0 errno=4242 reuseaddr=1 "), "{out}");
    assert_eq!(err, "", "look-alike variables must be ignored: {err}");

    let Some(nm) = require("nm", "apt-get install binutils") else {
        return;
    };
    let out = run(
        Command::new(nm)
            .args(["-D", "--undefined-only"])
            .arg(lib_path()),
        Duration::from_secs(20),
    );
    let imports: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .last()
                .map(|s| s.split('@').next().unwrap().to_string())
        })
        .collect();
    for forbidden in [
        "getenv",
        "secure_getenv",
        "__secure_getenv",
        "setenv",
        "unsetenv",
        "putenv",
        "clearenv",
        "getenv_r",
        "fopen",
        "fopen64",
        "open64",
        "creat",
        "mkstemp",
    ] {
        assert!(
            !imports.iter().any(|i| i == forbidden),
            "libreuse.so imports {forbidden}: {imports:?}"
        );
    }
    eprintln!("libreuse.so: environment access: environ, read once; imports {imports:?}");
}
