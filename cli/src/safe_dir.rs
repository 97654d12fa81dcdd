//! Whether a folder is safe to put something in that another program will trust (the hold
//! mode's rendezvous, the cached copy of the library): the folder and every folder above it
//! belong to this user or root, and none is writable by anyone else unless it is sticky (as
//! /tmp is, so others cannot rename what is ours). Whoever could write a folder on the way
//! could swap what we put there for something of their own.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Why `dir` is not safe for `uid`, or None.
pub fn unsafe_because(dir: &Path, uid: u32) -> Option<String> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", dir.display())),
    };
    if !meta.is_dir() {
        return Some(format!("{} is not a folder", dir.display()));
    }
    let mut at = Some(dir);
    while let Some(d) = at {
        let m = match std::fs::metadata(d) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", d.display())),
        };
        if m.uid() != uid && m.uid() != 0 {
            return Some(format!(
                "{} belongs to uid {}, not to this user (uid {uid}) or root",
                d.display(),
                m.uid()
            ));
        }
        let mode = m.permissions().mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Some(format!(
                "{} can be written by other users (mode {:o}) and is not sticky",
                d.display(),
                mode & 0o7777
            ));
        }
        at = d.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tmp_is_safe_and_a_world_writable_folder_is_not() {
        let uid = crate::sys::euid();
        assert_eq!(unsafe_because(Path::new("/tmp"), uid), None);
        let d = std::env::temp_dir().join(format!("reuse-rdv-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(unsafe_because(&d, uid).unwrap().contains("not sticky"));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(unsafe_because(&d, uid), None);
        assert!(unsafe_because(&d, uid + 1).is_some() || uid == 0);
        std::fs::remove_dir(&d).unwrap();
    }
}
