//! Where the hand-over socket lives: a fresh private folder (mode 0700) under a base folder
//! no other user can tamper with, removed when reuse exits.
//!
//! The base is `XDG_RUNTIME_DIR`, else `TMPDIR`, else /tmp, the first that is safe: the
//! folder and every folder above it belong to this user or root, and none is writable by
//! anyone else unless it is sticky (as /tmp is, so others cannot rename what is ours). A
//! base that fails (`XDG_RUNTIME_DIR` still naming another user's folder after `su` without
//! `-`) is passed over with one line saying why. Whoever owns a folder on the way could
//! otherwise swap the socket for one of their own and be handed every connection.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::safe_dir::unsafe_because;
use std::path::{Path, PathBuf};

use crate::out::say;

/// A private folder for the hand-over socket, removed (with the socket) when dropped.
pub struct Rendezvous {
    dir: PathBuf,
    pub socket: PathBuf,
}

impl Rendezvous {
    pub fn create() -> io::Result<Rendezvous> {
        let uid = crate::sys::euid();
        let mut refused = Vec::new();
        let candidates = [
            ("XDG_RUNTIME_DIR", std::env::var_os("XDG_RUNTIME_DIR")),
            ("TMPDIR", std::env::var_os("TMPDIR")),
            ("/tmp", Some("/tmp".into())),
        ];
        for (name, dir) in candidates {
            let Some(dir) = dir.filter(|d| !d.is_empty()).map(PathBuf::from) else {
                continue;
            };
            if !dir.is_absolute() {
                refused.push(format!("{name} is not an absolute path"));
                continue;
            }
            // Checked and used as the real path: a symlink on the way (which its owner could
            // point elsewhere after the check) is resolved once, here.
            let dir = match dir.canonicalize() {
                Ok(d) => d,
                Err(e) => {
                    refused.push(format!("{name}: {}: {e}", dir.display()));
                    continue;
                }
            };
            match unsafe_because(&dir, uid) {
                None => {
                    for why in &refused {
                        say!("reuse run: --hold: not using {why}");
                    }
                    return Self::create_in(&dir, uid);
                }
                Some(why) => refused.push(if name.starts_with('/') {
                    why
                } else {
                    format!("{name}: {why}")
                }),
            }
        }
        Err(io::Error::other(format!(
            "no safe folder for the hand-over socket ({}); set XDG_RUNTIME_DIR to a folder of your own with mode 0700",
            refused.join("; ")
        )))
    }

    fn create_in(base: &Path, uid: u32) -> io::Result<Rendezvous> {
        let mut template = base.join("reuse-hold-XXXXXX").into_os_string().into_vec();
        template.push(0);
        // SAFETY: template is a NUL-terminated, writable mkdtemp template.
        let p = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        template.pop();
        let dir = PathBuf::from(OsString::from_vec(template));
        let r = Rendezvous {
            socket: dir.join("hold.sock"),
            dir,
        };
        // mkdtemp made it 0700 and ours; check what is there now, not what was asked.
        let m = std::fs::symlink_metadata(&r.dir)?;
        if !m.is_dir() || m.uid() != uid || m.permissions().mode() & 0o777 != 0o700 {
            return Err(io::Error::other(format!(
                "{} is not the private folder just made",
                r.dir.display()
            )));
        }
        if r.socket.as_os_str().len() > reuse_core::config::HOLD_PATH_MAX {
            return Err(io::Error::other(format!(
                "{} is too long for a Unix socket; set XDG_RUNTIME_DIR or TMPDIR to a shorter folder",
                r.socket.display()
            )));
        }
        Ok(r)
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
