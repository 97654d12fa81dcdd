//! Secure execution (a setuid program run by an ordinary user gets no change) and the
//! kernel's own-user rule for SO_REUSEPORT (no sharing with another user's listener).

use reuse_testkit as common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Root only (CI is root); elsewhere a skip message.
fn require_root(what: &str) -> bool {
    if !is_root() {
        assert!(!in_ci(), "{what} needs root under CI=true");
        common::skip(&format!(
            "{what} needs root (it installs a setuid library and runs as nobody)"
        ));
    }
    is_root()
}

const NOBODY: u32 = 65534;

/// Runs as uid/gid 65534 (nobody), no supplementary groups.
fn as_nobody(program: &Path, preload: Option<&OsStr>) -> Command {
    let mut c = command("setpriv", false);
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
    ]);
    c.arg(program);
    if let Some(p) = preload {
        c.env("LD_PRELOAD", p);
    }
    c
}

/// Files this test put outside its temporary folder, removed even on panic.
struct Installed(Vec<PathBuf>);

impl Drop for Installed {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A folder where a set-user-ID bit takes effect (not mounted nosuid).
fn suid_capable(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated; st is written by the call.
    unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_NOSUID == 0 }
}

/// The trusted directory glibc searches for a secure-mode preload.
fn system_lib_dir() -> PathBuf {
    let multiarch = Command::new("cc")
        .arg("-print-multiarch")
        .output()
        .map(|o| text(&o.stdout).trim().to_string())
        .unwrap_or_default();
    for d in [
        format!("/usr/lib/{multiarch}"),
        "/usr/lib64".into(),
        "/usr/lib".into(),
    ] {
        if !d.ends_with('/') && Path::new(&d).is_dir() {
            return PathBuf::from(d);
        }
    }
    PathBuf::from("/usr/lib")
}

#[test]
fn a_setuid_program_run_by_an_ordinary_user_gets_no_change() {
    if probe().is_none() || !require_root("the secure-execution test") {
        return;
    }
    let Some(_) = require("setpriv", "apt-get install util-linux") else {
        return;
    };
    let dir = TempDir::new("setuid");
    assert!(
        suid_capable(&dir.0),
        "{} is mounted nosuid",
        dir.0.display()
    );
    let suid = dir.0.join("probe-setuid");
    let plain = dir.0.join("probe-plain");
    for (f, mode) in [(&suid, 0o4755), (&plain, 0o755)] {
        std::fs::copy(probe().unwrap(), f).unwrap();
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // glibc loads a preload into a secure-execution process only by a bare name, only from
    // its trusted directories, and only if the file is set-user-ID: give it every chance.
    let name = format!("libreuse-test-{}.so", std::process::id());
    let installed_lib = system_lib_dir().join(&name);
    let _installed = Installed(vec![installed_lib.clone()]);
    std::fs::copy(lib_path(), &installed_lib).unwrap();
    std::fs::set_permissions(&installed_lib, std::fs::Permissions::from_mode(0o4755)).unwrap();

    let port = free_port().to_string();
    let bind = ["bind", "4", "tcp", "127.0.0.1", port.as_str(), "loaded"];
    let go = |mut c: Command| -> (String, String) {
        c.args(bind).env("REUSE_LOG", "debug");
        let out = run(&mut c, Duration::from_secs(20));
        assert!(out.status.success(), "{out:?}");
        (text(&out.stdout).trim().to_string(), text(&out.stderr))
    };

    // The setuid program, run by nobody: mapped, and inert (and silent, even at debug).
    let (out, err) = go(as_nobody(&suid, Some(OsStr::new(&name))));
    assert_eq!(
        out, "rc=0 errno=4242 reuseaddr=0 reuseport=0 linger=0,0 loaded=1",
        "setuid under nobody"
    );
    assert_eq!(err, "", "setuid under nobody");
    // With a path (the usual way to preload) the loader does not even map it.
    let (out, _) = go(as_nobody(&suid, Some(installed_lib.as_os_str())));
    assert!(
        out.ends_with("reuseaddr=0 reuseport=0 linger=0,0 loaded=0"),
        "{out}"
    );

    // Controls: the same library acts in an ordinary process, of root or of nobody.
    let mut root = command(&plain, false);
    root.env("LD_PRELOAD", &name);
    let (out, err) = go(root);
    assert_eq!(
        out,
        "rc=0 errno=4242 reuseaddr=1 reuseport=0 linger=0,0 loaded=1"
    );
    assert!(err.contains("SO_REUSEADDR"), "{err}");
    let (out, _) = go(as_nobody(&plain, Some(OsStr::new(&name))));
    assert_eq!(
        out,
        "rc=0 errno=4242 reuseaddr=1 reuseport=0 linger=0,0 loaded=1"
    );
    eprintln!(
        "secure execution: setuid-root probe run by uid {NOBODY}: library mapped, bind unchanged"
    );
}

#[test]
fn the_kernel_refuses_so_reuseport_sharing_with_another_users_listener() {
    if probe().is_none() || !require_root("the other-user SO_REUSEPORT test") {
        return;
    }
    let Some(_) = require("setpriv", "apt-get install util-linux") else {
        return;
    };
    // Copies nobody can read and run, wherever the build put the originals.
    let dir = TempDir::new("otheruser");
    let prog = dir.0.join("probe");
    let lib = dir.0.join("libreuse.so");
    std::fs::copy(probe().unwrap(), &prog).unwrap();
    std::fs::copy(lib_path(), &lib).unwrap();
    for f in [&prog, &lib] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = free_port();
    let ps = port.to_string();
    let opts = ("REUSE_OPTIONS", "addr,port");
    let mut lc = command(&prog, false);
    lc.env("LD_PRELOAD", &lib).env(opts.0, opts.1);
    lc.args(["listen", "4", "127.0.0.1", &ps]);
    let _root_listener = spawn("root listener", &mut lc);
    assert!(wait_listening(port, Duration::from_secs(10)));

    let mut c = as_nobody(&prog, Some(lib.as_os_str()));
    c.env(opts.0, opts.1)
        .args(["bind", "4", "tcp", "127.0.0.1", &ps]);
    let out = run(&mut c, Duration::from_secs(20));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.starts_with("rc=-1 errno=98 reuseaddr=1 reuseport=1"),
        "nobody must not join root's SO_REUSEPORT group: {stdout} {stderr}"
    );
    assert!(
        stderr.contains("uid 0"),
        "the diagnosis names the other user: {stderr}"
    );

    // The control: root, the listener's own user, shares the port.
    let mut c = command(&prog, false);
    c.env("LD_PRELOAD", &lib).env(opts.0, opts.1);
    c.args(["bind", "4", "tcp", "127.0.0.1", &ps]);
    let out = run(&mut c, Duration::from_secs(20));
    assert!(
        text(&out.stdout).starts_with("rc=0 errno=4242 reuseaddr=1 reuseport=1"),
        "{out:?}"
    );
}
