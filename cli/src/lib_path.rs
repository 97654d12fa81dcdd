//! Where the preloadable library is: `REUSE_LIB`, else beside the `reuse` executable (a
//! cargo build puts both in target/release), else in `../lib` beside it (an install into
//! /usr/local/bin and /usr/local/lib).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

pub const LIB_NAME: &str = if cfg!(target_vendor = "apple") {
    "libreuse.dylib"
} else {
    "libreuse.so"
};

/// The loader's variable for preloading.
pub const PRELOAD_VAR: &str = if cfg!(target_vendor = "apple") {
    "DYLD_INSERT_LIBRARIES"
} else {
    "LD_PRELOAD"
};

pub enum NotFound {
    /// REUSE_LIB names something that is not there: an explicit choice is never overridden
    /// by a guess, or a user would debug the wrong library.
    BadOverride(PathBuf),
    Nowhere(Vec<PathBuf>),
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotFound::BadOverride(p) => write!(
                f,
                "REUSE_LIB is set to {}, which is not an existing file; point it at {LIB_NAME} or unset it",
                p.display()
            ),
            NotFound::Nowhere(tried) => {
                write!(f, "{LIB_NAME} not found; looked at")?;
                for (i, p) in tried.iter().enumerate() {
                    write!(f, "{} {}", if i == 0 { "" } else { "," }, p.display())?;
                }
                write!(
                    f,
                    ". Build it with `cargo build --release`, install it beside the reuse command or in ../lib, or set REUSE_LIB to its path"
                )
            }
        }
    }
}

/// The absolute path of the library. Relative paths are resolved now, because the program
/// that gets it in LD_PRELOAD may change directory before it starts anything else.
pub fn find(reuse_lib: Option<&OsStr>) -> Result<PathBuf, NotFound> {
    if let Some(v) = reuse_lib.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return match p.canonicalize() {
            Ok(abs) if abs.is_file() => Ok(abs),
            _ => Err(NotFound::BadOverride(p)),
        };
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        for cand in [dir.join(LIB_NAME), dir.join("../lib").join(LIB_NAME)] {
            if let Ok(abs) = cand.canonicalize() {
                if abs.is_file() {
                    return Ok(abs);
                }
            }
            tried.push(cand);
        }
    }
    Err(NotFound::Nowhere(tried))
}

/// The preload list with `lib` first, keeping every entry already there. The loader
/// splits LD_PRELOAD on colons and blanks, so both count as separators when looking for
/// the library; the result uses colons, the one separator dyld also understands.
pub fn prepend(existing: Option<&OsStr>, lib: &Path) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    let existing = existing.map(OsStr::as_bytes).unwrap_or_default();
    let same = |entry: &[u8]| {
        let e = Path::new(OsStr::from_bytes(entry));
        e == lib || e.canonicalize().is_ok_and(|c| c == lib)
    };
    let present = existing
        .split(|b| *b == b':' || *b == b' ' || *b == b'\t')
        .filter(|e| !e.is_empty())
        .any(same);
    if present {
        return OsStr::from_bytes(existing).to_os_string();
    }
    let mut v = lib.as_os_str().as_bytes().to_vec();
    let rest = trim_separators(existing);
    if !rest.is_empty() {
        v.push(b':');
        v.extend_from_slice(rest);
    }
    OsStr::from_bytes(&v).to_os_string()
}

fn trim_separators(s: &[u8]) -> &[u8] {
    let sep = |b: &u8| matches!(b, b':' | b' ' | b'\t');
    let start = s.iter().position(|b| !sep(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !sep(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepends_and_keeps_what_was_there() {
        let lib = Path::new("/opt/r/libreuse.so");
        assert_eq!(prepend(None, lib), "/opt/r/libreuse.so");
        assert_eq!(prepend(Some("".as_ref()), lib), "/opt/r/libreuse.so");
        assert_eq!(
            prepend(Some("/x/a.so b.so".as_ref()), lib),
            "/opt/r/libreuse.so:/x/a.so b.so"
        );
        assert_eq!(
            prepend(Some(":/x/a.so:".as_ref()), lib),
            "/opt/r/libreuse.so:/x/a.so"
        );
    }

    #[test]
    fn never_adds_the_library_twice() {
        let lib = Path::new("/opt/r/libreuse.so");
        for v in [
            "/opt/r/libreuse.so",
            "/x/a.so:/opt/r/libreuse.so",
            "/x/a.so /opt/r/libreuse.so",
        ] {
            assert_eq!(prepend(Some(v.as_ref()), lib), v);
        }
    }
}
