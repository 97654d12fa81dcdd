//! Which library `reuse run` preloads, and where it keeps the copy it carries: never a file
//! or folder another user controls, even when root runs it with someone else's HOME; a copy
//! a program that drops root's privileges can still load; a cache several containers (PID
//! namespaces) fill at once; an install path LD_PRELOAD cannot carry.

use reuse_testkit as common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy of the command (which carries the library) at `dir/reuse`: with no library beside
/// it, it uses the copy it carries, from its cache.
fn copy_command(dir: &Path) -> PathBuf {
    let to = dir.join("reuse");
    std::fs::copy(reuse_bin(), &to).unwrap();
    to
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// A folder everyone may write (sticky, as /tmp), holding a copy of reuse that root runs,
/// and a libreuse.so another user put beside it: root never preloads that file, and says
/// why. (It once ran the other user's code as root, without a word.)
#[test]
fn a_library_another_user_put_beside_the_command_is_not_preloaded() {
    if setpriv().is_none() {
        return;
    }
    let dir = TempDir::new("planted");
    let public = dir.join("pub");
    std::fs::create_dir(&public).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let reuse = copy_command(&public);
    let planted = public.join("libreuse.so");
    std::fs::copy(lib_path(), &planted).unwrap();
    chown(&planted, NOBODY);
    let cache = dir.join("cache");
    let o = run(
        Command::new(&reuse)
            .args(["run", "--", "sh", "-c", "echo $LD_PRELOAD"])
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("REUSE_LIB")
            .env_remove("LD_PRELOAD"),
        T,
    );
    assert!(o.status.success(), "{o:?}");
    let preload = stdout(&o);
    assert!(!preload.contains(public.to_str().unwrap()), "{preload}");
    assert!(
        preload.trim().starts_with(cache.to_str().unwrap()),
        "{preload}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("not preloading") && err.contains(&format!("uid {NOBODY}")),
        "{err}"
    );
}

/// Root with another user's cache folder in its environment (sudo -E): a cache folder that
/// is that user's link to a folder of root's is neither followed nor changed (it once made
/// the target 0700 and wrote the library into it), and root's copy goes to
/// /var/cache/reuse instead.
#[test]
fn root_never_follows_another_users_link_into_a_folder_of_its_own() {
    if setpriv().is_none() {
        return;
    }
    let dir = TempDir::new("foreign-cache");
    let alice = dir.join("alice");
    std::fs::create_dir_all(alice.join(".cache")).unwrap();
    let target = dir.join("rootdir");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&target, alice.join(".cache/reuse")).unwrap();
    for p in [
        alice.join(".cache/reuse"),
        alice.join(".cache"),
        alice.clone(),
    ] {
        chown(&p, NOBODY);
    }
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let reuse = copy_command(&bin);
    let o = run(
        common::command(&reuse, false)
            .arg("lib")
            .env("XDG_CACHE_HOME", alice.join(".cache"))
            .env("HOME", &alice)
            .env_remove("REUSE_LIB"),
        T,
    );
    assert!(o.status.success(), "{o:?}");
    let chosen = PathBuf::from(stdout(&o).trim());
    assert!(
        !chosen.starts_with(&target) && !chosen.starts_with(&alice),
        "{}",
        chosen.display()
    );
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "the folder's mode was changed");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "written into"
    );
}

/// Root's copy is one a program that drops root's privileges can still load: the cache is
/// /var/cache/reuse, readable by all (setpriv, gosu, su-exec). (In /root/.cache it was not.)
#[test]
fn a_program_that_drops_roots_privileges_still_loads_the_library() {
    let Some(setpriv) = setpriv() else { return };
    let Some(probe) = probe() else { return };
    let dir = TempDir::new("drop-privileges");
    let reuse = copy_command(&dir.0);
    let port = free_port().to_string();
    let o = run(
        common::command(&reuse, false)
            .arg("run")
            .arg("--")
            .arg(&setpriv)
            .args(as_uid(NOBODY))
            .arg(&probe)
            .args(["bind", "4", "tcp", "127.0.0.1", &port, "loaded"])
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", "/root")
            .env_remove("REUSE_LIB"),
        T,
    );
    let out = stdout(&o);
    assert!(
        out.contains("reuseaddr=1") && out.contains("loaded=1"),
        "{out} {}",
        stderr(&o)
    );
}

/// Several `reuse` in their own PID namespaces (containers sharing a HOME), each PID 1 or
/// so, fill an empty cache at once: every one of them runs its command. (Their temporary
/// files were named by PID alone, and half of them failed.)
#[test]
fn commands_in_separate_pid_namespaces_fill_one_cache_at_once() {
    if setpriv().is_none() {
        return;
    }
    let Some(unshare) = require("unshare", "apt-get install util-linux") else {
        return;
    };
    for round in 0..5 {
        let dir = TempDir::new(&format!("pidns-{round}"));
        let reuse = copy_command(&dir.0);
        let cache = dir.join("cache");
        let go = dir.join("go");
        // Each waits for the others to be ready, then becomes PID 1 of its namespace.
        let script = format!(
            "i=0; while [ ! -e '{}' ] && [ $i -lt 20000 ]; do i=$((i+1)); done; exec '{}' run -- true",
            go.display(),
            reuse.display()
        );
        let children: Vec<_> = (0..6)
            .map(|_| {
                let mut c = Command::new(&unshare);
                c.args(["--pid", "--fork", "--", "sh", "-c", &script])
                    .env("XDG_CACHE_HOME", &cache)
                    .env_remove("HOME")
                    .env_remove("XDG_RUNTIME_DIR")
                    .env_remove("REUSE_LIB")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(&go, "").unwrap();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", stderr(&o));
        }
    }
}

/// An installed copy whose path has a blank (LD_PRELOAD splits on it) is passed over for
/// the copy the command carries, with a warning; the command still runs under the library.
/// (It once ran without it.)
#[test]
fn a_library_on_a_path_with_a_blank_gives_way_to_the_carried_copy() {
    let Some(probe) = probe() else { return };
    let dir = TempDir::new("blank");
    let bin = dir.join("sp ace/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let reuse = copy_command(&bin);
    std::fs::copy(lib_path(), bin.join("libreuse.so")).unwrap();
    let cache = dir.join("cache");
    let port = free_port().to_string();
    let o = run(
        Command::new(&reuse)
            .args(["run", "--"])
            .arg(&probe)
            .args(["bind", "4", "tcp", "127.0.0.1", &port, "loaded"])
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("REUSE_LIB")
            .env_remove("LD_PRELOAD"),
        T,
    );
    let out = stdout(&o);
    assert!(out.contains("loaded=1"), "{out} {}", stderr(&o));
    assert!(stderr(&o).contains("a blank or a colon"), "{}", stderr(&o));
    let owner = std::fs::metadata(&cache).map(|m| m.uid()).ok();
    assert!(owner.is_some(), "the carried copy went to the cache");
}

/// `reuse run` under an inherited `LD_PRELOAD` that names another copy of libreuse keeps
/// one copy in the list it passes (two would act on every bind and say every line twice).
#[test]
fn another_copy_of_the_library_in_ld_preload_gives_way() {
    let dir = TempDir::new("two-copies");
    let old = dir.join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(lib_path(), old.join("libreuse.so")).unwrap();
    let o = run(
        common::command(reuse_bin(), false)
            .args(["run", "--", "sh", "-c", "echo $LD_PRELOAD"])
            .env("LD_PRELOAD", old.join("libreuse.so"))
            .env_remove("REUSE_LIB"),
        T,
    );
    let list = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(list.matches("libreuse").count(), 1, "{list}");
    assert!(!list.contains(old.to_str().unwrap()), "{list}");
}
