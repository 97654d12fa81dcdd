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

/// A DEEPBIND dlopen in one thread while another loads and unloads an unrelated library
/// whose file has the name of the first one's dependency: no crash. (The library once
/// followed the dependency by name, took the other one, and read it after it was unloaded.)
#[test]
fn a_deepbind_dlopen_beside_another_threads_dlclose_does_not_crash() {
    if require("cc", "apt-get install gcc").is_none() {
        return;
    }
    let dir = TempDir::new("dlopen-race");
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // b/libdep.so: many relocations, so its loading and unloading take a while.
    let many: String = (0..4000)
        .map(|i| format!("int m{i}(void) {{ return {i}; }}\n"))
        .collect();
    std::fs::write(dir.join("many.c"), many).unwrap();
    build_shared_from(&dir.join("many.c"), &dir.join("libmany.so"), &["-O0"]);
    let decls: String = (0..4000).map(|i| format!("int m{i}(void);\n")).collect();
    let calls: String = (0..4000).map(|i| format!("s += m{i}();")).collect();
    std::fs::write(
        dir.join("other.c"),
        format!("{decls}int sum(void) {{ int s = 0; {calls} return s; }}\n"),
    )
    .unwrap();
    let search = format!("-L{}", dir.0.display());
    let rpath = format!("-Wl,-rpath,{}", dir.0.display());
    build_shared_from(
        &dir.join("other.c"),
        &b.join("libdep.so"),
        &["-fno-plt", &search, "-lmany", "-Wl,-z,now,-z,relro", &rpath],
    );
    // a/libplug.so needs libdep.so, which a/libdep-real.so (that SONAME) provides.
    std::fs::write(dir.join("dep.c"), "int dep_value(void) { return 7; }\n").unwrap();
    build_shared_from(
        &dir.join("dep.c"),
        &a.join("libdep-real.so"),
        &["-Wl,-soname,libdep.so"],
    );
    std::fs::write(
        dir.join("plug.c"),
        "#include <sys/socket.h>\nint dep_value(void);\n\
         int plug(void) { int fd = socket(AF_INET, SOCK_STREAM, 0); return fd + dep_value(); }\n",
    )
    .unwrap();
    let real = a.join("libdep-real.so").display().to_string();
    build_shared_from(
        &dir.join("plug.c"),
        &a.join("libplug.so"),
        &[&real, "-Wl,-z,now"],
    );
    let program = dir.join("dlopen_race");
    let ok = Command::new("cc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&program)
        .arg(repo_root().join("tests/c/dlopen_race.c"))
        .arg("-ldl")
        .status()
        .unwrap()
        .success();
    assert!(ok, "building dlopen_race");
    for round in 0..3 {
        let mut c = command(&program, true);
        c.arg(a.join("libplug.so"))
            .arg(b.join("libdep.so"))
            .arg("3")
            .arg(a.join("libdep-real.so"));
        let out = run(&mut c, Duration::from_secs(60));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "done",
            "round {round}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// With another interposer preloaded after the library (as `reuse run` puts the library
/// first in an inherited LD_PRELOAD), a DEEPBIND object's bind still gets SO_REUSEADDR: its
/// slot holds libc's bind, a definition after the library, though not the next one.
#[test]
fn an_interposer_after_the_library_leaves_deepbind_objects_reached() {
    let Some(probe) = probe() else { return };
    let deep = build_shared(
        "tests/c/deep.c",
        "deep-now.so",
        &["-Wl,-z,now", "-Wl,-z,relro"],
    )
    .unwrap();
    let interposer = build_shared("tests/c/interposer.c", "interposer.so", &["-ldl"]).unwrap();
    let port = free_port().to_string();
    let mut c = command(&probe, false);
    c.arg("deepbind").arg(&deep).args(["now", &port]).env(
        "LD_PRELOAD",
        format!("{}:{}", lib_path().display(), interposer.display()),
    );
    let out = run(&mut c, Duration::from_secs(20));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "rc=0 reuseaddr=1 own_dup=1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A DEEPBIND dlopen of a bare name is searched as glibc searches it for the program: the
/// program's RUNPATH before the system's folders (a libz.so.1 of its own wins over the
/// system's), and when nothing is found, dlerror() names what the program asked for.
#[test]
fn a_deepbind_dlopen_by_bare_name_is_searched_in_glibc_s_order() {
    if require("cc", "apt-get install gcc").is_none() {
        return;
    }
    let dir = TempDir::new("search-order");
    let program = runpath_program(&dir.0, false);
    // The program's own libz.so.1 (a plugin with deep_bind), in its RUNPATH.
    std::fs::copy(dir.join("libs/libplugin.so"), dir.join("libs/libz.so.1")).unwrap();
    let port = free_block(2).to_string();
    for pre in [false, true] {
        let out = run(
            command(&program, pre).args(["deep", &port, "libz.so.1"]),
            Duration::from_secs(20),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let want = if pre {
            "try 0: rc=0 reuseaddr=1"
        } else {
            "try 0: rc=0 reuseaddr=0"
        };
        assert!(text.starts_with(want), "preloaded {pre}: {text}");
        let out = run(
            command(&program, pre).args(["deep", &port, "libnothere.so"]),
            Duration::from_secs(20),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("try 0: libnothere.so: cannot open shared object file"),
            "preloaded {pre}: {text}"
        );
    }
}
