//! What the library costs a program, measured side by side on this machine:
//!
//!     cargo build --release && cargo bench --bench overhead
//!
//! Each round runs every variant (nothing preloaded, two empty libraries, libreuse) back to
//! back, so drift of a noisy machine hits them alike; the medians and the medians of each
//! round's ratios are printed. Instructions come from callgrind and system calls from
//! strace (both stable whatever else the machine is doing), page faults from perf.
//! REUSE_BENCH_ROUNDS (default 31) sets the rounds.

use reuse_testkit as common;
// The restart harness's servers and measurements, run here one server at a time.
use reuse_testkit::harness as harness_support;

use std::time::Duration;

use common::*;

/// Sorts `v` (callers read its fastest round after) and gives its median.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    common::median(v).unwrap_or(f64::NAN)
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
    instructions_with(bench, preload, args, &[])
}

/// As `instructions`, with these variables added to the environment.
fn instructions_with(
    bench: &std::path::Path,
    preload: Option<&std::path::Path>,
    args: &[&str],
    env: &[(String, String)],
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
    c.envs(env.iter().map(|(k, v)| (k, v)));
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

/// The columns: nothing, the empty C library, the minimal preload, libreuse.
const MINIMAL: usize = 2;
const LIBREUSE: usize = 3;

/// What is preloaded in one column of the tables.
struct Variant {
    name: &'static str,
    preload: Option<std::path::PathBuf>,
}

/// Medians of one operation over the rounds: ns per operation for each variant, and the
/// median of each round's ratio to the run without anything preloaded (each round runs the
/// variants back to back, in an order that rotates, so a slow spell of the machine hits a
/// round's variants alike and mostly cancels out of its ratios).
struct Row {
    medians: Vec<f64>,
    fastest: Vec<f64>,
    ratios: Vec<f64>,
    /// The median of each round's libreuse / minimal preload.
    to_floor: f64,
}

fn measure(bench: &std::path::Path, variants: &[Variant], args: &[&str], rounds: usize) -> Row {
    let n = variants.len();
    let mut times = vec![Vec::new(); n];
    let mut ratios = vec![Vec::new(); n];
    let mut to_floor = Vec::new();
    for r in 0..rounds {
        let mut this = vec![0.0; n];
        for i in 0..n {
            let v = (i + r) % n;
            // "PORT" is a port found free just now: one picked once for the whole run
            // was, once, taken by something else between rounds.
            let port = free_port().to_string();
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "PORT" { port.as_str() } else { a })
                .collect();
            this[v] = time_op(bench, variants[v].preload.as_deref(), &args);
        }
        for v in 0..n {
            times[v].push(this[v]);
            ratios[v].push(this[v] / this[0]);
        }
        to_floor.push(this[LIBREUSE] / this[MINIMAL]);
    }
    Row {
        medians: times.iter_mut().map(|t| median(t)).collect(),
        // median() sorted them: the fastest round is the least disturbed one.
        fastest: times.iter().map(|t| t[0]).collect(),
        ratios: ratios.iter_mut().map(|t| median(t)).collect(),
        to_floor: median(&mut to_floor),
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let rounds: usize = std::env::var("REUSE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(31)
        .max(1);
    let bench = build_c("tests/c/bench.c", "bench", "cc").expect("cc is needed");
    let lib = variant_path("l");
    std::fs::copy(lib_path(), &lib).expect("copying libreuse.so beside the other variants");
    let variants = [
        Variant {
            name: "nothing",
            preload: None,
        },
        Variant {
            name: "empty C library",
            preload: Some(empty_preload("d", &[])),
        },
        Variant {
            name: "minimal preload",
            preload: Some(empty_preload("m", MINIMAL_LINK)),
        },
        Variant {
            name: "libreuse.so",
            preload: Some(lib.clone()),
        },
    ];
    let (empty, minimal) = (
        variants[1].preload.clone().unwrap(),
        variants[2].preload.clone().unwrap(),
    );
    let port = free_port().to_string();
    let truth =
        std::fs::canonicalize("/bin/true").map_or("/bin/true".into(), |p| p.display().to_string());
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "`bind()` on an allowed port (socket+bind+close)",
            vec!["bind", "20000", "PORT"],
        ),
        ("`socket()+close()`", vec!["socket", "50000"]),
        (
            "exec of `/bin/true` (posix_spawn+wait)",
            vec!["exec", "100", &truth],
        ),
    ];
    println!("reuse overhead, {rounds} rounds; {}", machine());
    println!();
    println!("Preloaded: nothing; an empty C library (one function) built with the compiler's defaults; the same library linked like libreuse.so (build.rs: no start files, no RELRO, code and constants in one segment), the floor of preloading anything; libreuse.so (REUSE_OPTIONS=addr).");
    println!();
    println!("Medians, ns per operation; the ratios are medians of each round's ratio to the run without anything preloaded:");
    println!();
    println!("| operation | nothing | empty C library | minimal preload | libreuse | libreuse / nothing | minimal / nothing | libreuse / minimal |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut fastest = Vec::new();
    for (name, args) in &cases {
        let row = measure(&bench, &variants, args, rounds);
        let m = &row.medians;
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} |",
            m[0], m[1], m[2], m[3], row.ratios[LIBREUSE], row.ratios[MINIMAL], row.to_floor
        );
        fastest.push((name, row.fastest));
    }
    println!();
    println!("The fastest round of each (noise on a shared machine only ever adds time):");
    println!();
    println!("| operation | nothing | empty C library | minimal preload | libreuse | libreuse / nothing | libreuse / minimal |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, f) in fastest {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} |",
            f[0],
            f[1],
            f[2],
            f[3],
            f[3] / f[0],
            f[3] / f[2]
        );
    }

    // Instructions per bind: the slope between 1000 and 2000 binds cancels loading costs.
    let per_bind = |preload: Option<&std::path::Path>| -> Option<f64> {
        let one = instructions(&bench, preload, &["bind", "1000", &port])?;
        let two = instructions(&bench, preload, &["bind", "2000", &port])?;
        Some((two as f64 - one as f64) / 1000.0)
    };
    println!();
    if let (Some(a), Some(b)) = (per_bind(None), per_bind(Some(&lib))) {
        println!("- callgrind: {a:.0} instructions per socket+bind+close without, {b:.0} with: +{:.0} per bind", b - a);
    }
    let truth = std::path::Path::new("/bin/true");
    let load = |preload: Option<&std::path::Path>| instructions(truth, preload, &[]);
    if let (Some(a), Some(e), Some(m), Some(b)) = (
        load(None),
        load(Some(&empty)),
        load(Some(&minimal)),
        load(Some(&lib)),
    ) {
        println!(
            "- callgrind, /bin/true (starts and exits): {a} instructions without; +{} with the empty C library, +{} with the minimal preload, +{} with libreuse (loading, the constructor): {} above the minimal preload, with {} environment variables",
            e - a,
            m - a,
            b - a,
            b as i64 - m as i64,
            std::env::vars_os().count()
        );
        // The constructor walks the environment once, which the floor does not: what each
        // variable costs, from 50 more (names that start like no variable the library reads).
        let more: Vec<(String, String)> = (0..50)
            .map(|i| (format!("PAD_{i}"), "x".repeat(20)))
            .collect();
        let with_more = |p: &std::path::Path| instructions_with(truth, Some(p), &[], &more);
        if let (Some(m2), Some(b2)) = (with_more(&minimal), with_more(&lib)) {
            let above = b2 as i64 - m2 as i64;
            println!(
                "- the same with 50 more environment variables: {above} above the minimal preload, {:.1} instructions a variable",
                (above - (b as i64 - m as i64)) as f64 / 50.0
            );
        }
    }
    // What the first socket+bind+close pays once: the real functions and errno's location
    // found (a walk of the loaded objects' symbol tables), the descriptor table mapped.
    let first = |preload: Option<&std::path::Path>| -> Option<i64> {
        let zero = instructions(&bench, preload, &["bind", "0", &port])?;
        let one = instructions(&bench, preload, &["bind", "1", &port])?;
        Some(one as i64 - zero as i64)
    };
    if let (Some(a), Some(b)) = (first(None), first(Some(&lib))) {
        println!(
            "- callgrind, the first socket+bind+close of a process: {a} instructions without, {b} with (+{} once: finding libc's functions, mapping the descriptor table)",
            b - a
        );
    }
    if let Some(calls) = syscalls(&bench, &["bind", "1000", &port]) {
        let get = |n: &str| calls.iter().find(|(k, _)| k == n).map_or(0, |(_, c)| *c);
        println!(
            "- strace: 1000 binds made {} bind, {} setsockopt, {} getsockopt calls (the floor for REUSE_OPTIONS=addr: 1000 setsockopt, 0 getsockopt)",
            get("bind"),
            get("setsockopt"),
            get("getsockopt")
        );
    }
    let mapping: Vec<String> = variants
        .iter()
        .filter_map(|v| {
            Some(format!(
                "{} {}",
                v.name,
                startup_calls(v.preload.as_deref())?
            ))
        })
        .collect();
    if !mapping.is_empty() {
        println!(
            "- strace, system calls to start /bin/true: {}",
            mapping.join("; ")
        );
    }
    if let Some(rows) = perf_exec(&variants) {
        println!();
        println!("perf stat, 500 runs of /bin/true each (the process's own CPU time and page faults, without perf's or the parent's):");
        println!();
        println!("| preloaded | task-clock (ms) | page faults |");
        println!("|---|---:|---:|");
        for (name, ms, faults) in rows {
            println!("| {name} | {ms:.3} | {faults} |");
        }
    }
    if let Some(dir) = lib.parent().and_then(|l| l.parent()) {
        let _ = std::fs::remove_dir_all(dir);
    }
    restart_to_ready();
}

/// Restart-to-ready of each stock server beside its cold start, measured by the restart
/// harness's own code (20 restarts with the library, 20 without, 20 cold starts each; see
/// README, "The restart harness"), one server at a time so no other server's start shares
/// the CPUs (the harness's tests run side by side). REUSE_BENCH_HARNESS=0 skips it.
fn restart_to_ready() {
    if std::env::var("REUSE_BENCH_HARNESS").as_deref() == Ok("0") {
        return;
    }
    // As many cold starts as restarts: five (the tests' default) leave a median that moves
    // by several per cent between runs for the Python servers.
    if std::env::var_os("REUSE_HARNESS_COLD_STARTS").is_none() {
        let n = harness_support::cycles().to_string();
        std::env::set_var("REUSE_HARNESS_COLD_STARTS", n);
    }
    use harness_support::servers::*;
    type Make = fn() -> Option<harness_support::Spec>;
    let servers: [Make; 11] = [
        socketserver,
        http_server,
        flask,
        uvicorn,
        gunicorn,
        node_http,
        socat,
        legacy_c,
        nginx,
        nodemon_node_app,
        nodemon_python_app,
    ];
    println!();
    println!("Restart-to-ready (the old instance's death to the first answer, with libreuse) beside a cold start (spawn to first answer on a fresh port); each server's row of the harness table is printed as it is measured, the summary at the end:");
    let mut lines = Vec::new();
    for make in servers {
        let Some(m) = harness_support::restart_case(make) else {
            continue;
        };
        if let (Some(r), Some(c)) = (m.restart, m.cold) {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            lines.push(format!(
                "| {} | {:.1} | {:.1} | {:.3} | {} |",
                m.name,
                ms(r),
                ms(c),
                ms(r) / ms(c),
                m.paired.map_or("-".into(), |p| format!("{p:.3}"))
            ));
        }
    }
    println!();
    println!("| server | restart to ready, median (ms) | cold start, median (ms) | ratio of the medians | median of the paired ratios |");
    println!("|---|---:|---:|---:|---:|");
    for l in lines {
        println!("{l}");
    }
    println!();
    println!(
        "The harness table of these servers (this run's rows only): {}",
        target_dir().join("..").join("harness-table.md").display()
    );
}

/// The link options build.rs gives libreuse.so that any C compiler's driver takes (rustc's
/// lld also gets --no-rosegment, which GNU ld refuses; GNU ld merges the same segments
/// with -z noseparate-code).
const MINIMAL_LINK: &[&str] = &["-nostartfiles", "-Wl,-z,norelro", "-Wl,-z,noseparate-code"];

/// The system calls a start of /bin/true makes, counted by strace: all, and the mmap and
/// mprotect calls among them (the loader's work for each loaded object).
fn startup_calls(preload: Option<&std::path::Path>) -> Option<String> {
    require("strace", "apt-get install strace")?;
    let mut c = command("strace", false);
    c.args(["-qq", "-e", "trace=all", "/bin/true"]);
    if let Some(p) = preload {
        c.env(preload_var(), p);
    }
    let out = run(&mut c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    let calls: Vec<&str> = err
        .lines()
        .filter(|l| l.contains('(') && !l.starts_with("execve"))
        .collect();
    let maps = calls
        .iter()
        .filter(|l| l.starts_with("mmap(") || l.starts_with("mprotect("))
        .count();
    Some(format!("{} calls ({maps} mmap/mprotect)", calls.len()))
}

/// CPU time and page faults of /bin/true with each variant preloaded, from `perf stat`
/// (software counters, which work in virtual machines too).
fn perf_exec(variants: &[Variant]) -> Option<Vec<(&'static str, f64, u64)>> {
    require("perf", "apt-get install linux-perf")?;
    let mut rows = Vec::new();
    for v in variants {
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
        if let Some(p) = &v.preload {
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
        rows.push((v.name, field("task-clock")?, field("page-faults")? as u64));
    }
    Some(rows)
}

/// Builds tests/c/empty_preload.c into a shared library, with extra link options.
/// A folder of its own for each preloaded variant, one letter long, so that every variant
/// is a file named `libreuse.so` on a path of the same length: the loader's work at every
/// exec grows with the length of `LD_PRELOAD` (about 24 instructions a byte under
/// callgrind), which would otherwise count as a difference between the libraries.
fn variant_path(letter: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("reuse-bench-{}", std::process::id()))
        .join(letter);
    std::fs::create_dir_all(&dir).expect("a folder for the benchmark's libraries");
    dir.join("libreuse.so")
}

fn empty_preload(letter: &str, link: &[&str]) -> std::path::PathBuf {
    let out = variant_path(letter);
    let ok = std::process::Command::new("cc")
        .args(["-O2", "-shared", "-fPIC"])
        .args(link)
        .arg("-o")
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
