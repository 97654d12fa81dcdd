//! What the library costs a program, measured side by side on this machine:
//!
//!     cargo build --release && cargo bench --bench overhead
//!
//! Rounds alternate without and with the library, so drift of a noisy machine hits both
//! sides alike; the medians and their ratio are printed. Instructions per bind() come from
//! callgrind (stable whatever else the machine is doing), system calls per bind() from strace.
//! REUSE_BENCH_ROUNDS (default 15) sets the rounds.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs one timing; `preload` is None (nothing preloaded) or the library to preload.
fn time_op(bench: &std::path::Path, preload: Option<&std::path::Path>, args: &[&str]) -> f64 {
    let mut c = command(bench, false);
    c.args(args);
    if let Some(lib) = preload {
        c.env(preload_var(), lib);
    }
    let out = run(&mut c, Duration::from_secs(300));
    assert!(out.status.success(), "bench {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ns")
}

/// Total instructions callgrind counts for one run.
fn instructions(
    bench: &std::path::Path,
    preload: Option<&std::path::Path>,
    args: &[&str],
) -> Option<u64> {
    require("valgrind", "apt-get install valgrind")?;
    let file = std::env::temp_dir().join(format!("reuse-cg-{}", std::process::id()));
    let mut c = command("valgrind", false);
    c.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(bench)
        .args(args);
    if let Some(p) = preload {
        c.env(preload_var(), p);
    }
    let out = run(&mut c, Duration::from_secs(600));
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_file(&file);
    err.lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
}

/// System calls of each kind made by one run, from `strace -c`.
fn syscalls(bench: &std::path::Path, args: &[&str]) -> Option<Vec<(String, u64)>> {
    require("strace", "apt-get install strace")?;
    let file = std::env::temp_dir().join(format!("reuse-strace-{}", std::process::id()));
    let mut c = command("strace", false);
    c.args(["-f", "-c", "-o"])
        .arg(&file)
        .arg("-E")
        .arg(format!("{}={}", preload_var(), lib_path().display()))
        .arg(bench)
        .args(args);
    run(&mut c, Duration::from_secs(120));
    let text = std::fs::read_to_string(&file).ok()?;
    let _ = std::fs::remove_file(&file);
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // % time, seconds, usecs/call, calls, [errors], syscall
                if f.len() >= 5 && f[0].contains('.') {
                    let calls = f[3].parse().ok()?;
                    Some((f.last()?.to_string(), calls))
                } else {
                    None
                }
            })
            .collect(),
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let rounds: usize = std::env::var("REUSE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let bench = build_c("tests/c/bench.c", "bench", "cc").expect("cc is needed");
    let empty = empty_preload();
    let lib = lib_path();
    let port = free_port().to_string();
    let truth =
        std::fs::canonicalize("/bin/true").map_or("/bin/true".into(), |p| p.display().to_string());
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "bind() on an allowed port (socket+bind+close)",
            vec!["bind", "20000", &port],
        ),
        ("socket()+close()", vec!["socket", "50000"]),
        (
            "exec of /bin/true (posix_spawn+wait)",
            vec!["exec", "300", &truth],
        ),
    ];
    println!("reuse overhead, {rounds} alternating rounds; {}", machine());
    println!();
    println!("The floor: an empty C library preloaded (no constructor, one symbol) shows what preloading anything costs.");
    println!();
    println!("| operation | without (ns) | empty preload (ns) | libreuse (ns) | ratio | ratio to the floor |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut minima = Vec::new();
    for (name, args) in &cases {
        let (mut a, mut e, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(time_op(&bench, None, args));
            e.push(time_op(&bench, Some(&empty), args));
            b.push(time_op(&bench, Some(&lib), args));
        }
        let (ma, me, mb) = (median(&mut a), median(&mut e), median(&mut b));
        println!(
            "| {name} | {ma:.0} | {me:.0} | {mb:.0} | {:.3} | {:.3} |",
            mb / ma,
            mb / me
        );
        // Sorted by median(); the fastest round is the least disturbed one.
        minima.push((name, a[0], e[0], b[0]));
    }
    println!();
    println!("The fastest round of each (noise on a shared machine only ever adds time):");
    println!();
    println!("| operation | without (ns) | empty preload (ns) | libreuse (ns) | ratio | ratio to the floor |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, a, e, b) in minima {
        println!(
            "| {name} | {a:.0} | {e:.0} | {b:.0} | {:.3} | {:.3} |",
            b / a,
            b / e
        );
    }

    // Instructions per bind: the slope between 1000 and 2000 binds cancels loading costs.
    let per_bind = |preload: Option<&std::path::Path>| -> Option<f64> {
        let one = instructions(&bench, preload, &["bind", "1000", &port])?;
        let two = instructions(&bench, preload, &["bind", "2000", &port])?;
        Some((two as f64 - one as f64) / 1000.0)
    };
    if let (Some(a), Some(b)) = (per_bind(None), per_bind(Some(&lib))) {
        println!();
        println!("callgrind: {a:.0} instructions per socket+bind+close without, {b:.0} with: +{:.0} per bind", b - a);
    }
    let load = |preload: Option<&std::path::Path>| instructions(&bench, preload, &["socket", "1"]);
    if let (Some(a), Some(e), Some(b)) = (load(None), load(Some(&empty)), load(Some(&lib))) {
        println!(
            "callgrind: a program that starts and exits: {a} instructions without, {e} with the empty library (+{}), {b} with libreuse (+{}: loading and the constructor)",
            e - a,
            b - a
        );
    }
    if let Some(calls) = syscalls(&bench, &["bind", "1000", &port]) {
        let get = |n: &str| calls.iter().find(|(k, _)| k == n).map_or(0, |(_, c)| *c);
        println!(
            "strace: 1000 binds made {} bind, {} setsockopt, {} getsockopt calls (the floor for REUSE_OPTIONS=addr: 1000 setsockopt, 0 getsockopt)",
            get("bind"),
            get("setsockopt"),
            get("getsockopt")
        );
    }
    if let Some(rows) = perf_exec(&empty, &lib) {
        println!();
        println!("perf stat, 500 runs of /bin/true each (the process's own CPU time and page faults, without perf's or the parent's):");
        println!();
        println!("| preloaded | task-clock (ms) | page faults |");
        println!("|---|---:|---:|");
        for (name, ms, faults) in rows {
            println!("| {name} | {ms:.3} | {faults} |");
        }
    }
    let table = target_dir().join("..").join("harness-table.md");
    if let Ok(t) = std::fs::read_to_string(&table) {
        println!();
        println!(
            "restart-to-ready beside cold start, from the last harness run ({}):",
            table.display()
        );
        println!("{t}");
    } else {
        println!();
        println!("restart-to-ready: run the harness first (cargo test --release --test harness -- --nocapture) for its table");
    }
}

/// CPU time and page faults of /bin/true with nothing, the empty library and libreuse
/// preloaded, from `perf stat` (software counters, which work in virtual machines too).
fn perf_exec(
    empty: &std::path::Path,
    lib: &std::path::Path,
) -> Option<Vec<(&'static str, f64, u64)>> {
    require("perf", "apt-get install linux-perf")?;
    let mut rows = Vec::new();
    for (name, preload) in [
        ("nothing", None),
        ("empty C library", Some(empty)),
        ("libreuse.so", Some(lib)),
    ] {
        let mut c = command("perf", false);
        c.args([
            "stat",
            "-r",
            "500",
            "-x,",
            "-e",
            "task-clock,page-faults",
            "/bin/true",
        ]);
        if let Some(p) = preload {
            c.env(preload_var(), p);
        }
        let out = run(&mut c, Duration::from_secs(300));
        let err = String::from_utf8_lossy(&out.stderr);
        let field = |event: &str| {
            err.lines()
                .find(|l| l.split(',').nth(2) == Some(event))
                .and_then(|l| l.split(',').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        rows.push((name, field("task-clock")?, field("page-faults")? as u64));
    }
    Some(rows)
}

/// Builds tests/c/empty_preload.c into a shared library.
fn empty_preload() -> std::path::PathBuf {
    let out = std::env::temp_dir().join(format!("reuse-empty-{}.so", std::process::id()));
    let ok = std::process::Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/c/empty_preload.c"))
        .status()
        .expect("cc")
        .success();
    assert!(ok, "building the empty preload library failed");
    out
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name\t: ").map(str::to_string))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Linux {}, {cores} cores, {cpu}", kernel.trim())
}
