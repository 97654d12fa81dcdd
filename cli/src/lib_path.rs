//! Which `libreuse.so` to preload, and where it is.
//!
//! In order: `REUSE_LIB`; else a library beside the `reuse` executable (a cargo build puts
//! both in target/release), in `../lib` or `../lib/<triplet>` beside it (a tarball, a Debian
//! package); else the copy the command carries inside itself (cli/build.rs), written once to
//! a content-addressed file in a private cache folder. A library on disk built for the other
//! C library than the program's (glibc or musl, told by its NEEDED libc) is passed over for
//! an embedded one that fits, when there is one.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// The multiarch folder a Debian package puts the library in.
const TRIPLET: &str = if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
    "x86_64-linux-gnu"
} else if cfg!(all(target_arch = "aarch64", target_os = "linux")) {
    "aarch64-linux-gnu"
} else {
    ""
};

/// The C library a program or a library was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Libc {
    Gnu,
    Musl,
}

impl Libc {
    pub fn name(self) -> &'static str {
        match self {
            Libc::Gnu => "glibc",
            Libc::Musl => "musl",
        }
    }
}

/// The libraries this command carries: empty where none was built in.
fn embedded(libc: Libc) -> &'static [u8] {
    match libc {
        Libc::Gnu => include_bytes!(env!("REUSE_EMBEDDED_GNU")),
        Libc::Musl => include_bytes!(env!("REUSE_EMBEDDED_MUSL")),
    }
}

/// This command's version and commit, as the library's version mark spells them.
pub fn version() -> &'static str {
    concat!(env!("CARGO_PKG_VERSION"), " ", env!("REUSE_COMMIT"))
}

pub enum NotFound {
    /// REUSE_LIB names something that is not there: an explicit choice is never overridden
    /// by a guess, or a user would debug the wrong library.
    BadOverride(PathBuf),
    Nowhere(Vec<PathBuf>, Option<String>),
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotFound::BadOverride(p) => write!(
                f,
                "REUSE_LIB is set to {}, which is not an existing file; point it at {LIB_NAME} or unset it",
                p.display()
            ),
            NotFound::Nowhere(tried, cache) => {
                write!(f, "{LIB_NAME} not found; looked at")?;
                for (i, p) in tried.iter().enumerate() {
                    write!(f, "{} {}", if i == 0 { "" } else { "," }, p.display())?;
                }
                if let Some(why) = cache {
                    write!(f, "; the copy this command carries could not be written: {why}")?;
                } else {
                    write!(f, "; this command carries no copy of its own")?;
                }
                write!(
                    f,
                    ". Install it beside the reuse command or in ../lib, or set REUSE_LIB to its path"
                )
            }
        }
    }
}

/// The library to preload: its path, the C library it needs (None: unknown, macOS), and
/// whether it is this command's own build.
pub struct Chosen {
    pub path: PathBuf,
    pub libc: Option<Libc>,
}

/// The C library an ELF shared library needs, from its NEEDED names.
pub fn libc_of_library(path: &Path) -> Option<Libc> {
    let bytes = std::fs::read(path).ok()?;
    if !bytes.starts_with(b"\x7fELF") {
        return None;
    }
    // The NEEDED names, as they sit NUL-terminated in the string table: glibc's libc is
    // libc.so.6; musl's is libc.so where musl-gcc links (Debian's musl-tools), or
    // libc.musl-ARCH.so.1 on Alpine.
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if has(b"\0libc.so.6\0") {
        Some(Libc::Gnu)
    } else if has(b"\0libc.so\0") || has(b"\0libc.musl-") {
        Some(Libc::Musl)
    } else {
        None
    }
}

/// Whether `path` is an ELF shared library of this machine's class and architecture.
pub fn is_loadable_here(path: &Path) -> bool {
    use std::io::Read;
    let mut h = [0u8; 20];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .is_ok();
    let machine = u16::from_le_bytes([h[18], h[19]]);
    let want = if cfg!(target_arch = "x86_64") {
        62
    } else if cfg!(target_arch = "aarch64") {
        183
    } else {
        return true;
    };
    ok && h.starts_with(b"\x7fELF") && h[4] == 2 && h[5] == 1 && h[16] == 3 && machine == want
}

/// The version mark of a library file (`VERSION COMMIT`), if it has one.
pub fn version_of_library(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let mark = b"libreuse-version: ";
    let at = bytes.windows(mark.len()).position(|w| w == mark)? + mark.len();
    let rest = bytes.get(at..)?;
    let end = rest.iter().position(|b| *b == b'\n').filter(|&e| e < 80)?;
    Some(String::from_utf8_lossy(rest.get(..end)?).into_owned())
}

/// The absolute path of the library for a program needing `want` (None: any). Relative
/// paths are resolved now, because the program that gets it in LD_PRELOAD may change
/// directory before it starts anything else.
pub fn find(reuse_lib: Option<&OsStr>, want: Option<Libc>) -> Result<Chosen, NotFound> {
    if let Some(v) = reuse_lib.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return match p.canonicalize() {
            Ok(abs) if abs.is_file() => Ok(Chosen {
                libc: libc_of_library(&abs),
                path: abs,
            }),
            _ => Err(NotFound::BadOverride(p)),
        };
    }
    let mut tried = Vec::new();
    let mut mismatched = None;
    if let Some(dir) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        let mut cands = vec![dir.join(LIB_NAME), dir.join("../lib").join(LIB_NAME)];
        if !TRIPLET.is_empty() {
            cands.push(dir.join("../lib").join(TRIPLET).join(LIB_NAME));
        }
        for cand in cands {
            if let Ok(abs) = cand.canonicalize() {
                if abs.is_file() {
                    let libc = libc_of_library(&abs);
                    let fits = want.is_none() || libc.is_none() || libc == want;
                    if fits {
                        return Ok(Chosen { path: abs, libc });
                    }
                    mismatched.get_or_insert(Chosen { path: abs, libc });
                }
            }
            tried.push(cand);
        }
    }
    let flavors = match want {
        Some(w) => vec![w],
        None => vec![Libc::Gnu, Libc::Musl],
    };
    let mut cache_error = None;
    for libc in flavors {
        if embedded(libc).is_empty() {
            continue;
        }
        match write_embedded(libc) {
            Ok(path) => {
                return Ok(Chosen {
                    path,
                    libc: Some(libc),
                })
            }
            Err(e) => cache_error = Some(e),
        }
    }
    // A library that does not fit is still better than none: the caller warns.
    if let Some(m) = mismatched {
        return Ok(m);
    }
    Err(NotFound::Nowhere(tried, cache_error))
}

/// FNV-1a, 64 bits: names the cached copy by its content (the content is compared in full
/// before use; the name only keeps versions apart).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Folders the cached copy may live in: private to this user, and a path LD_PRELOAD can
/// carry (no blank or colon, which it splits on).
fn cache_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        v.push(PathBuf::from(x).join("reuse"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        v.push(PathBuf::from(h).join(".cache/reuse"));
    }
    if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR").filter(|r| !r.is_empty()) {
        v.push(PathBuf::from(r).join("reuse"));
    }
    v.retain(|p| {
        p.is_absolute()
            && !p
                .as_os_str()
                .as_bytes()
                .iter()
                .any(|b| b" \t\n:".contains(b))
    });
    v
}

/// Whether `path` is a file of this user's, writable by nobody else, holding `bytes`.
fn is_our_copy(path: &Path, bytes: &[u8], uid: u32) -> bool {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return false;
    };
    m.is_file()
        && m.uid() == uid
        && m.permissions().mode() & 0o022 == 0
        && std::fs::read(path).is_ok_and(|b| b == bytes)
}

/// Writes the embedded library for `libc` to the cache once; its path.
fn write_embedded(libc: Libc) -> Result<PathBuf, String> {
    let bytes = embedded(libc);
    let uid = crate::sys::euid();
    let name = format!(
        "libreuse-{}-{}-{:016x}.so",
        env!("CARGO_PKG_VERSION"),
        libc.name(),
        fnv64(bytes)
    );
    let mut why = Vec::new();
    for dir in cache_dirs() {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            why.push(format!("{}: {e}", dir.display()));
            continue;
        }
        // The folder is ours alone (made 0700 here, or checked): nobody else may swap the
        // file between our check and the loader's open. Used by its real path, so a symlink
        // on the way cannot be re-pointed after the check.
        let Ok(dir) = dir.canonicalize() else {
            why.push(format!("{}: cannot resolve", dir.display()));
            continue;
        };
        if dir
            .as_os_str()
            .as_bytes()
            .iter()
            .any(|b| b" \t\n:".contains(b))
        {
            why.push(format!("{}: a blank or colon in the path", dir.display()));
            continue;
        }
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Some(bad) = crate::safe_dir::unsafe_because(&dir, uid) {
            why.push(bad);
            continue;
        }
        let path = dir.join(&name);
        if is_our_copy(&path, bytes, uid) {
            return Ok(path);
        }
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) if is_our_copy(&path, bytes, uid) => return Ok(path),
            Ok(()) => why.push(format!("{}: not as written", path.display())),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                why.push(format!("{}: {e}", path.display()));
            }
        }
    }
    if why.is_empty() {
        why.push("no cache folder (set XDG_CACHE_HOME or HOME)".into());
    }
    Err(why.join("; "))
}

/// The preload list with `lib` first, keeping every entry already there. The loader
/// splits LD_PRELOAD on colons and blanks, so both count as separators when looking for
/// the library; the result uses colons, the one separator dyld also understands.
pub fn prepend(existing: Option<&OsStr>, lib: &Path) -> std::ffi::OsString {
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
    s.get(start..end).unwrap_or_default()
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

    #[test]
    fn the_content_names_the_copy() {
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv64(b"a"), fnv64(b"b"));
    }
}
