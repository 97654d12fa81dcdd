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
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    /// Copies on disk passed over, and why (another user's file, a path LD_PRELOAD cannot
    /// carry): said as warnings.
    pub passed_over: Vec<String>,
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
                passed_over: Vec::new(),
            }),
            _ => Err(NotFound::BadOverride(p)),
        };
    }
    let mut tried = Vec::new();
    let mut mismatched = None;
    let mut passed_over = Vec::new();
    let uid = crate::sys::euid();
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
                    // A copy that another user could have put or changed there is never
                    // preloaded (reuse may run as root), nor one LD_PRELOAD cannot carry.
                    if let Some(why) = untrusted_file(&abs, uid).or_else(|| unusable_path(&abs)) {
                        passed_over.push(format!("{}: {why}", abs.display()));
                        tried.push(cand);
                        continue;
                    }
                    let libc = libc_of_library(&abs);
                    let fits = want.is_none() || libc.is_none() || libc == want;
                    if fits {
                        return Ok(Chosen {
                            path: abs,
                            libc,
                            passed_over,
                        });
                    }
                    mismatched.get_or_insert((abs, libc));
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
                    passed_over,
                })
            }
            Err(e) => cache_error = Some(e),
        }
    }
    // A library that does not fit is still better than none: the caller warns.
    if let Some((path, libc)) = mismatched {
        return Ok(Chosen {
            path,
            libc,
            passed_over,
        });
    }
    if !passed_over.is_empty() {
        let why = passed_over.join("; ");
        cache_error = Some(match cache_error {
            Some(e) => format!("{why}; {e}"),
            None => why,
        });
    }
    Err(NotFound::Nowhere(tried, cache_error))
}

/// Why a library file is not to be trusted by this user: it, or its folder (or a folder
/// above), belongs to another user (not root) or can be written by others.
fn untrusted_file(path: &Path, uid: u32) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if m.uid() != uid && m.uid() != 0 {
        return Some(format!(
            "belongs to uid {}, not to this user (uid {uid}) or root",
            m.uid()
        ));
    }
    if m.permissions().mode() & 0o022 != 0 {
        return Some(format!(
            "can be written by other users (mode {:o})",
            m.permissions().mode() & 0o7777
        ));
    }
    crate::safe_dir::unsafe_because(path.parent()?, uid)
}

/// Why LD_PRELOAD cannot carry a path (it splits on blanks and colons), or None.
fn unusable_path(path: &Path) -> Option<String> {
    path.as_os_str()
        .as_bytes()
        .iter()
        .any(|b| b" \t\n:".contains(b))
        .then(|| "a blank or a colon in its path, which LD_PRELOAD splits on".to_string())
}

/// FNV-1a, 64 bits: names the cached copy by its content (the content is compared in full
/// before use; the name only keeps versions apart).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Folders the cached copy may live in, and why others named by the environment are not:
/// an absolute path LD_PRELOAD can carry (no blank or colon, which it splits on).
/// XDG_CACHE_HOME when set; then, for root, /var/cache/reuse, where a program that drops
/// root's privileges (setpriv, gosu, su-exec) can still read it (/root is closed to every
/// other user); then ~/.cache/reuse and XDG_RUNTIME_DIR.
fn cache_dirs() -> (Vec<PathBuf>, Vec<String>) {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        v.push(("XDG_CACHE_HOME".into(), PathBuf::from(x).join("reuse")));
    }
    if crate::sys::euid() == 0 {
        v.push(("/var/cache/reuse".into(), PathBuf::from("/var/cache/reuse")));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        v.push(("HOME".into(), PathBuf::from(h).join(".cache/reuse")));
    }
    if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR").filter(|r| !r.is_empty()) {
        v.push(("XDG_RUNTIME_DIR".into(), PathBuf::from(r).join("reuse")));
    }
    let mut why = Vec::new();
    let dirs = v
        .into_iter()
        .filter_map(|(var, p): (String, PathBuf)| {
            if !p.is_absolute() {
                why.push(format!("{var} gives a relative path ({})", p.display()));
                None
            } else if let Some(bad) = unusable_path(&p) {
                why.push(format!("{} ({var}): {bad}", p.display()));
                None
            } else {
                Some(p)
            }
        })
        .collect();
    (dirs, why)
}

/// Creates `dir` (and what is missing above it) if need be, and says whether the library
/// may be left there: no symlink on the way belongs to another user (not root), and no
/// folder on the way belongs to one or can be written by others unless sticky
/// (`safe_dir`). Nothing is created or changed before the folders above are found safe, so
/// a folder another user points at is never touched.
fn prepare_cache_dir(dir: &Path, uid: u32) -> Result<PathBuf, String> {
    // The folders that exist, from the top: each link and folder checked before going in.
    let mut existing = dir;
    while std::fs::symlink_metadata(existing).is_err() {
        existing = existing
            .parent()
            .ok_or_else(|| format!("{}: nothing of it exists", dir.display()))?;
    }
    let mut at = Some(existing);
    while let Some(d) = at {
        if let Ok(m) = std::fs::symlink_metadata(d) {
            if m.file_type().is_symlink() && m.uid() != uid && m.uid() != 0 {
                return Err(format!(
                    "{} is a link of uid {}, not of this user (uid {uid}) or root",
                    d.display(),
                    m.uid()
                ));
            }
        }
        at = d.parent();
    }
    if let Some(bad) = crate::safe_dir::unsafe_because(existing, uid) {
        return Err(bad);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let real = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // A folder of this user's own that others may write gets its mode fixed; anything else
    // is judged as it is.
    if let Ok(m) = std::fs::metadata(&real) {
        if m.uid() == uid && m.permissions().mode() & 0o022 != 0 {
            let _ = std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755));
        }
    }
    if let Some(bad) = crate::safe_dir::unsafe_because(&real, uid) {
        return Err(bad);
    }
    if let Some(bad) = unusable_path(&real) {
        return Err(format!("{}: {bad}", real.display()));
    }
    Ok(real)
}

/// A name no other process picks: this PID (which another PID namespace may share) and
/// random bytes.
fn temp_name(name: &str) -> String {
    use std::io::Read;
    let mut r = [0u8; 8];
    let random = match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut r)) {
        Ok(()) => u64::from_ne_bytes(r),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    format!(".{name}.{}.{random:016x}", std::process::id())
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
    let (dirs, mut why) = cache_dirs();
    for dir in dirs {
        // Used by its real path, so a symlink on the way cannot be re-pointed after the
        // checks; the folder is writable by this user alone (and root), so nobody else may
        // swap the file between our check and the loader's open.
        let dir = match prepare_cache_dir(&dir, uid) {
            Ok(d) => d,
            Err(e) => {
                why.push(e);
                continue;
            }
        };
        let path = dir.join(&name);
        if is_our_copy(&path, bytes, uid) {
            return Ok(path);
        }
        let mut tmp = None;
        for _ in 0..8 {
            let t = dir.join(temp_name(&name));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&t)
            {
                Ok(f) => {
                    tmp = Some((t, f));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    why.push(format!("{}: {e}", t.display()));
                    break;
                }
            }
        }
        let Some((tmp, mut file)) = tmp else {
            continue;
        };
        // The file is made by this process (create_new): only it is removed on failure.
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) if is_our_copy(&path, bytes, uid) => return Ok(path),
            Ok(()) => why.push(format!("{}: not as written", path.display())),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                why.push(format!("{}: {e}", tmp.display()));
            }
        }
    }
    if why.is_empty() {
        why.push("no cache folder (set XDG_CACHE_HOME or HOME)".into());
    }
    Err(why.join("; "))
}

/// The preload list with `lib` first, keeping every entry already there but another copy of
/// libreuse (an inherited `LD_PRELOAD=libreuse.so`): two copies would each act on every
/// bind and say every line twice. The loader splits LD_PRELOAD on colons and blanks, so
/// both count as separators; the result uses colons, the one separator dyld also
/// understands.
pub fn prepend(existing: Option<&OsStr>, lib: &Path) -> std::ffi::OsString {
    let existing = existing.map(OsStr::as_bytes).unwrap_or_default();
    let same = |entry: &[u8]| {
        let e = Path::new(OsStr::from_bytes(entry));
        e == lib || e.canonicalize().is_ok_and(|c| c == lib)
    };
    let another_copy = |entry: &[u8]| {
        let file = entry.rsplit(|b| *b == b'/').next().unwrap_or(entry);
        file.starts_with(b"libreuse") && !same(entry)
    };
    let entries: Vec<&[u8]> = existing
        .split(|b| *b == b':' || *b == b' ' || *b == b'\t')
        .filter(|e| !e.is_empty())
        .collect();
    if entries.iter().any(|e| same(e)) && !entries.iter().any(|e| another_copy(e)) {
        return OsStr::from_bytes(existing).to_os_string();
    }
    let mut v = lib.as_os_str().as_bytes().to_vec();
    for e in entries.into_iter().filter(|e| !same(e) && !another_copy(e)) {
        v.push(b':');
        v.extend_from_slice(e);
    }
    OsStr::from_bytes(&v).to_os_string()
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
            "/opt/r/libreuse.so:/x/a.so:b.so"
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
    fn another_copy_of_the_library_gives_way() {
        let lib = Path::new("/opt/r/libreuse.so");
        assert_eq!(
            prepend(Some("/old/libreuse.so:/x/a.so".as_ref()), lib),
            "/opt/r/libreuse.so:/x/a.so"
        );
        assert_eq!(
            prepend(
                Some("/x/a.so /home/u/.cache/reuse/libreuse-0.1.0-glibc-00.so".as_ref()),
                lib
            ),
            "/opt/r/libreuse.so:/x/a.so"
        );
    }

    #[test]
    fn the_content_names_the_copy() {
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv64(b"a"), fnv64(b"b"));
    }
}
