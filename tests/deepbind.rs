//! Objects loaded with `dlopen(RTLD_DEEPBIND)` (PHP's extensions) are reached, and the
//! `dlopen` hook changes nothing else: the caller's RUNPATH is searched as without the
//! library, and threads loading libraries at once do not crash.

use reuse_testkit as common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A library of our own loaded with RTLD_DEEPBIND, built both ways a library
/// is linked (lazy binding with partial RELRO, and -z now with full RELRO, loaded RTLD_LAZY
/// and RTLD_NOW): its bind gets SO_REUSEADDR, and a `dup` it defines itself stays its own.
#[test]
fn objects_loaded_with_rtld_deepbind_are_reached() {
    let Some(probe) = probe() else { return };
    let lazy = build_shared(
        "tests/c/deep.c",
        "deep-lazy.so",
        &["-Wl,-z,lazy", "-Wl,-z,norelro"],
    )
    .unwrap();
    let now = build_shared(
        "tests/c/deep.c",
        "deep-now.so",
        &["-Wl,-z,now", "-Wl,-z,relro"],
    )
    .unwrap();
    for (lib, mode) in [
        (&lazy, "lazy"),
        (&lazy, "now"),
        (&now, "lazy"),
        (&now, "now"),
    ] {
        let port = free_port().to_string();
        let run_it = |pre: bool| {
            let mut c = command(&probe, pre);
            c.arg("deepbind").arg(lib).args([mode, &port]);
            let out = run(&mut c, Duration::from_secs(20));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(
            run_it(false),
            "rc=0 reuseaddr=0 own_dup=1",
            "{lib:?} {mode}"
        );
        assert_eq!(run_it(true), "rc=0 reuseaddr=1 own_dup=1", "{lib:?} {mode}");
    }
}

/// Builds tests/c/dlopen_runpath.c into `dir`, with RUNPATH (or, `old_rpath`, RPATH)
/// `$ORIGIN/libs`, and tests/c/deep.c into `dir/libs/libplugin.so`.
fn runpath_program(dir: &Path, old_rpath: bool) -> PathBuf {
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    build_shared_from(
        &repo_root().join("tests/c/deep.c"),
        &libs.join("libplugin.so"),
        &[],
    );
    let program = dir.join(if old_rpath {
        "rpath-main"
    } else {
        "runpath-main"
    });
    let tag = if old_rpath {
        "-Wl,--disable-new-dtags"
    } else {
        "-Wl,--enable-new-dtags"
    };
    let ok = Command::new("cc")
        .args(["-o"])
        .arg(&program)
        .arg(repo_root().join("tests/c/dlopen_runpath.c"))
        .args([tag, "-Wl,-rpath,$ORIGIN/libs", "-ldl"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the program");
    program
}

/// A plugin found only through the caller's RUNPATH (or RPATH) loads under the library as
/// without it, from the first `dlopen` on, plain or RTLD_DEEPBIND; the DEEPBIND one's bind
/// gets SO_REUSEADDR. (The first plain dlopen once went through the library's own call and
/// glibc searched the library's RUNPATH, none; a DEEPBIND one by bare name always did.)
#[test]
fn dlopen_by_bare_name_searches_the_callers_runpath() {
    if require("cc", "apt-get install gcc").is_none() {
        return;
    }
    let dir = TempDir::new("runpath");
    for old_rpath in [false, true] {
        let program = runpath_program(&dir.0, old_rpath);
        for mode in ["plain", "deep"] {
            let port = free_block(2);
            let run_it = |pre: bool| {
                let mut c = command(&program, pre);
                c.args([mode, &port.to_string()]);
                let out = run(&mut c, Duration::from_secs(20));
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            };
            let want =
                |reuse: u8| format!("try 0: rc=0 reuseaddr={reuse}\ntry 1: rc=0 reuseaddr={reuse}");
            assert_eq!(run_it(false), want(0), "{mode} rpath={old_rpath}");
            assert_eq!(run_it(true), want(1), "{mode} rpath={old_rpath}");
        }
    }
}

/// Builds `n` libraries for tests/c/dlopen_threads.c, each with thousands of relocations
/// (so a loader relocates one for a while), linked -z now with full RELRO.
fn thread_libraries(dir: &Path, n: usize) {
    let many: String = (0..3000)
        .map(|i| format!("int m{i}(int x) {{ return x + {i}; }}\n"))
        .collect();
    std::fs::write(dir.join("many.c"), many).unwrap();
    build_shared_from(&dir.join("many.c"), &dir.join("libmany.so"), &["-O0"]);
    let decls: String = (0..3000).map(|i| format!("int m{i}(int);\n")).collect();
    let calls: String = (0..3000).map(|i| format!("  s += m{i}(x);\n")).collect();
    let src = format!(
        "#include <netinet/in.h>\n#include <string.h>\n#include <sys/socket.h>\n#include <unistd.h>\n\
         {decls}\nint sum(int x) {{\n  int s = 0;\n{calls}  return s;\n}}\n\
         int thread_bind(void) {{\n\
           int fd = socket(AF_INET, SOCK_STREAM, 0);\n\
           struct sockaddr_in a; memset(&a, 0, sizeof a); a.sin_family = AF_INET;\n\
           a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);\n\
           int rc = bind(fd, (struct sockaddr *)&a, sizeof a);\n\
           close(fd);\n\
           return rc + sum(0) - 4498500;\n\
         }}\n"
    );
    std::fs::write(dir.join("thread.c"), src).unwrap();
    let search = format!("-L{}", dir.display());
    for i in 0..n {
        build_shared_from(
            &dir.join("thread.c"),
            &dir.join(format!("libthread{i}.so")),
            &[
                "-O0",
                &search,
                "-lmany",
                "-Wl,-z,now",
                "-Wl,-z,relro",
                "-Wl,-rpath,$ORIGIN",
            ],
        );
    }
}

/// Threads loading RTLD_DEEPBIND libraries at once never crash the host: the library only
/// touches the objects of a dlopen that has returned (relocated, RELRO in place), never one
/// another thread's loader is still relocating, and two patchers take turns. (It once
/// crashed about one run in five with two threads, in the loader, writing a GOT whose page
/// the library had just made read-only.)
#[test]
fn threads_loading_deepbind_libraries_at_once_do_not_crash() {
    if require("cc", "apt-get install gcc").is_none() {
        return;
    }
    let dir = TempDir::new("dlopen-threads");
    let threads = 8;
    thread_libraries(&dir.0, threads);
    let program = dir.0.join("dlopen_threads");
    let ok = Command::new("cc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&program)
        .arg(repo_root().join("tests/c/dlopen_threads.c"))
        .arg("-ldl")
        .status()
        .unwrap()
        .success();
    assert!(ok, "building dlopen_threads");
    let mut failures = Vec::new();
    for round in 0..20 {
        let mut c = command(&program, true);
        c.arg(&dir.0).args([&threads.to_string(), "20"]);
        let out = run(&mut c, Duration::from_secs(60));
        if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "done" {
            failures.push(format!(
                "round {round}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
