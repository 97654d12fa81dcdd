//! Whether the preloaded library can reach a program at all, checked before the exec so the
//! user hears it from `reuse run` instead of wondering why nothing changed.
//!
//! The dynamic loader is what honours LD_PRELOAD, so a program it never runs (a static
//! executable) or runs in secure-execution mode (setuid, setgid, file capabilities) never
//! gets the library; Go programs make their socket calls without libc even when dynamically
//! linked; and on macOS, System Integrity Protection strips DYLD_* variables from the
//! system's own binaries. For a script, what runs is its interpreter, so that is checked.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::lib_path::Libc;

/// The kernel follows at most this many `#!` levels (BINPRM_MAX_RECURSION is 4).
const MAX_SCRIPT_DEPTH: usize = 4;

/// The PATH execvp falls back to when PATH is unset (glibc's _CS_PATH).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Finds `command` the way execvp will: as given when it has a slash, else the first
/// executable regular file along PATH.
pub fn resolve(command: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    if command.as_bytes().contains(&b'/') {
        let p = PathBuf::from(command);
        return p.is_file().then_some(p);
    }
    if command.is_empty() {
        return None;
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path_var)
        // An empty PATH entry means the current directory, as for execvp.
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".").join(command)
            } else {
                d.join(command)
            }
        })
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Warnings, each a full sentence with what to do instead; empty when the library will load.
pub fn check(command: &OsStr, path_var: Option<&OsStr>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(path) = resolve(command, path_var) {
        examine(&path, None, path_var, 0, &mut out);
    }
    out
}

/// `via`: the script that names `path` as its interpreter, if any.
fn examine(
    path: &Path,
    via: Option<&Path>,
    path_var: Option<&OsStr>,
    depth: usize,
    out: &mut Vec<String>,
) {
    let Some(mut file) = open_regular(path) else {
        return;
    };
    let mut head = [0u8; 256];
    let n = read_up_to(&mut file, &mut head);
    let head = &head[..n];
    let who = match via {
        Some(script) => format!(
            "{} (the interpreter of {})",
            path.display(),
            script.display()
        ),
        None => path.display().to_string(),
    };

    if head.starts_with(b"#!") {
        if depth < MAX_SCRIPT_DEPTH {
            for interp in interpreters(head, path_var) {
                examine(&interp, Some(path), path_var, depth + 1, out);
            }
        }
        // The kernel ignores setuid and setgid on scripts, so nothing else applies.
        return;
    }

    if head.starts_with(b"\x7fELF") {
        if let Some(elf) = elf_facts(&mut file) {
            if elf.go {
                out.push(format!(
                    "{who} is a Go program: Go makes its socket calls directly, not through libc, so libreuse cannot reach it. \
                     Go's net package already sets SO_REUSEADDR on listeners, so restarts pass TIME_WAIT without reuse; \
                     for SO_REUSEPORT set it in net.ListenConfig.Control"
                ));
            } else if !elf.has_interp {
                out.push(format!(
                    "{who} is statically linked: the dynamic loader never runs for it, so LD_PRELOAD cannot load libreuse into it. \
                     Build it dynamically linked, or set SO_REUSEADDR in the program itself"
                ));
            } else if let Some(what) = foreign(&elf) {
                out.push(format!(
                    "{who} is {what}, and libreuse is built for {THIS_MACHINE}: the loader cannot load it into that program \
                     (it says \"wrong ELF class\" or skips it) and runs it without reuse. Use a reuse built for that architecture"
                ));
            }
        }
    }

    let Ok(meta) = file.metadata() else {
        return;
    };
    let mode = meta.mode();
    for (bit, what, owner) in [
        (0o4000, "setuid", format!("user {}", meta.uid())),
        (0o2000, "setgid", format!("group {}", meta.gid())),
    ] {
        if mode & bit != 0 {
            out.push(format!(
                "{who} is {what} ({owner}): whenever that changes the rights it runs with, the loader runs it in \
                 secure-execution mode and ignores LD_PRELOAD, so libreuse does nothing. \
                 Run a copy without the {what} bit, or give the program SO_REUSEADDR itself"
            ));
        }
    }
    if has_file_capabilities(path) {
        out.push(format!(
            "{who} has file capabilities (security.capability): unless root runs it, the loader runs it in \
             secure-execution mode and ignores LD_PRELOAD, so libreuse does nothing. Run a copy without them \
             (and grant the capability another way, e.g. AmbientCapabilities= in a systemd unit)"
        ));
    }
    if let Some(prefix) = sip_prefix(path) {
        out.push(format!(
            "{who} is under {prefix}, protected by System Integrity Protection: macOS strips DYLD_INSERT_LIBRARIES from it, \
             so libreuse does nothing. Run a copy from elsewhere (e.g. Homebrew's under /opt/homebrew or /usr/local)"
        ));
    }
}

/// The dynamic loader a program names (for a script: its interpreter's, and for
/// `#!/usr/bin/env prog`, prog's); None when it has none or cannot be read.
pub fn loader_of(command: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let mut path = resolve(command, path_var)?;
    for _ in 0..MAX_SCRIPT_DEPTH {
        let mut file = open_regular(&path)?;
        let mut head = [0u8; 256];
        let n = read_up_to(&mut file, &mut head);
        let head = head.get(..n)?;
        if head.starts_with(b"#!") {
            path = interpreters(head, path_var).pop()?;
            continue;
        }
        let facts = elf_facts(&mut file)?;
        return (!facts.interp.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(&facts.interp)));
    }
    None
}

/// The C library a program runs on, from its loader: None when it cannot be told (not ELF,
/// static, unreadable).
pub fn libc_of(command: &OsStr, path_var: Option<&OsStr>) -> Option<Libc> {
    let loader = loader_of(command, path_var)?;
    let name = loader.file_name()?.as_bytes();
    if name.starts_with(b"ld-musl") {
        Some(Libc::Musl)
    } else if name.starts_with(b"ld-linux")
        || name.starts_with(b"ld64.so")
        || name.starts_with(b"ld-2.")
    {
        Some(Libc::Gnu)
    } else {
        None
    }
}

/// The newest GLIBC_x.y version named in a file (2, y): what a library needs, or what a
/// libc.so.6 defines.
pub fn newest_glibc(path: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(path).ok()?;
    let mut best = None;
    let tag = b"GLIBC_";
    let mut at = 0;
    while let Some(i) = bytes.get(at..)?.windows(tag.len()).position(|w| w == tag) {
        let rest = bytes.get(at + i + tag.len()..)?;
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .unwrap_or(rest.len());
        let text = std::str::from_utf8(rest.get(..end)?).ok()?;
        let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
        if let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) {
            best = best.max(Some((major, minor)));
        }
        at += i + tag.len();
    }
    best
}

/// The libc.so.6 a program's loader sits beside (glibc installs them in one folder).
pub fn glibc_of(command: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let loader = loader_of(command, path_var)?.canonicalize().ok()?;
    let libc = loader.parent()?.join("libc.so.6");
    libc.is_file().then_some(libc)
}

/// Opens `path` only if it is a regular file, without blocking: a FIFO or a device named as
/// a program or a `#!` interpreter must not hang the command.
fn open_regular(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// What a `#!` line runs: the interpreter, and for `/usr/bin/env [-S] [VAR=x] prog` also
/// the program env will look up, since that is where the library must load.
fn interpreters(head: &[u8], path_var: Option<&OsStr>) -> Vec<PathBuf> {
    let line = &head[2..];
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let mut words = line
        .split(|b| *b == b' ' || *b == b'\t' || *b == b'\r')
        .filter(|w| !w.is_empty());
    let Some(interp) = words.next() else {
        return Vec::new();
    };
    let interp = PathBuf::from(OsStr::from_bytes(interp));
    let mut found = vec![interp.clone()];
    if interp.file_name() == Some(OsStr::new("env")) {
        let prog = words.find(|w| !w.starts_with(b"-") && !w.contains(&b'='));
        if let Some(p) = prog.and_then(|p| resolve(OsStr::from_bytes(p), path_var)) {
            found.push(p);
        }
    }
    found
}

/// The machine this command (and the library it carries) is built for.
const THIS_MACHINE: &str = if cfg!(target_arch = "x86_64") {
    "x86_64"
} else if cfg!(target_arch = "aarch64") {
    "aarch64"
} else {
    std::env::consts::ARCH
};
const EM_386: u16 = 3;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// What a program is, when the library cannot load into it: 32-bit, or another machine.
fn foreign(elf: &ElfFacts) -> Option<String> {
    let this = match THIS_MACHINE {
        "x86_64" => EM_X86_64,
        "aarch64" => EM_AARCH64,
        _ => return None,
    };
    if elf.machine == this && elf.wide {
        return None;
    }
    Some(match (elf.machine, elf.wide) {
        (EM_386, _) => "a 32-bit x86 program".to_string(),
        (EM_ARM, _) => "a 32-bit ARM program".to_string(),
        (EM_X86_64, true) => "an x86_64 program".to_string(),
        (EM_AARCH64, true) => "an aarch64 program".to_string(),
        (m, false) => format!("a 32-bit program (machine {m})"),
        (m, true) => format!("a program for another machine ({m})"),
    })
}

struct ElfFacts {
    has_interp: bool,
    /// The dynamic loader it names (PT_INTERP), which tells glibc from musl.
    interp: Vec<u8>,
    go: bool,
    /// 64-bit (ELFCLASS64).
    wide: bool,
    /// e_machine.
    machine: u16,
}

const PT_INTERP: u32 = 3;

/// Reads just the ELF header, the program headers and the section-name table. Sizes are
/// capped, so a corrupt or hostile file costs at most a few hundred kilobytes of reading.
fn elf_facts(f: &mut File) -> Option<ElfFacts> {
    let mut h = [0u8; 64];
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_exact(&mut h).ok()?;
    let wide = match h[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match h[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |b: &[u8], o: usize| -> u16 {
        let v = [b[o], b[o + 1]];
        if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |b: &[u8], o: usize| -> u32 {
        let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let u64_at = |b: &[u8], o: usize| -> u64 {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[o..o + 8]);
        if le {
            u64::from_le_bytes(v)
        } else {
            u64::from_be_bytes(v)
        }
    };
    let word = |b: &[u8], o64: usize, o32: usize| -> u64 {
        if wide {
            u64_at(b, o64)
        } else {
            u32_at(b, o32) as u64
        }
    };
    let phoff = word(&h, 0x20, 0x1c);
    let shoff = word(&h, 0x28, 0x20);
    let (phentsize, phnum) = if wide {
        (u16_at(&h, 0x36), u16_at(&h, 0x38))
    } else {
        (u16_at(&h, 0x2a), u16_at(&h, 0x2c))
    };
    let (shentsize, shnum, shstrndx) = if wide {
        (u16_at(&h, 0x3a), u16_at(&h, 0x3c), u16_at(&h, 0x3e))
    } else {
        (u16_at(&h, 0x2e), u16_at(&h, 0x30), u16_at(&h, 0x32))
    };

    let read_at = |f: &mut File, off: u64, len: usize| -> Option<Vec<u8>> {
        let mut v = vec![0u8; len];
        f.seek(SeekFrom::Start(off)).ok()?;
        f.read_exact(&mut v).ok()?;
        Some(v)
    };

    let min_ph = if wide { 56 } else { 32 };
    if (phentsize as usize) < min_ph || phnum == 0 || phnum > 512 {
        return None;
    }
    let ph = read_at(f, phoff, phentsize as usize * phnum as usize)?;
    let interp_ph = ph
        .chunks_exact(phentsize as usize)
        .find(|e| u32_at(e, 0) == PT_INTERP);
    let has_interp = interp_ph.is_some();
    let interp = interp_ph
        .and_then(|e| {
            let (off, size) = (word(e, 0x08, 0x04), word(e, 0x20, 0x10));
            (size <= 4096).then_some(())?;
            read_at(f, off, size as usize)
        })
        .map(|mut v| {
            v.retain(|b| *b != 0);
            v
        })
        .unwrap_or_default();
    let machine = u16_at(&h, 0x12);

    // Go's linker names its build-id note and build-info section in every binary it
    // writes, stripped or not.
    let mut go = false;
    let min_sh = if wide { 64 } else { 40 };
    if shoff != 0 && (shentsize as usize) >= min_sh && shstrndx < shnum && shnum <= 4096 {
        let at = shoff + shstrndx as u64 * shentsize as u64;
        if let Some(sh) = read_at(f, at, shentsize as usize) {
            let (off, size) = (word(&sh, 0x18, 0x10), word(&sh, 0x20, 0x14));
            if size <= 1 << 20 {
                if let Some(names) = read_at(f, off, size as usize) {
                    go = names
                        .split(|b| *b == 0)
                        .any(|n| n == b".go.buildinfo" || n == b".note.go.buildid");
                }
            }
        }
    }
    Some(ElfFacts {
        has_interp,
        interp,
        go,
        wide,
        machine,
    })
}

#[cfg(target_os = "linux")]
fn has_file_capabilities(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a NULL buffer of size 0 asks only for the size.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n > 0
}

#[cfg(not(target_os = "linux"))]
fn has_file_capabilities(_: &Path) -> bool {
    false
}

/// The protected prefix `path` lies under, on macOS. Symlinks are followed first:
/// /usr/local/bin/python3 may well point into /usr/bin, and SIP judges the real file.
fn sip_prefix(path: &Path) -> Option<&'static str> {
    if !cfg!(target_vendor = "apple") {
        return None;
    }
    const PROTECTED: [&str; 6] = [
        "/usr/bin",
        "/usr/sbin",
        "/usr/libexec",
        "/bin",
        "/sbin",
        "/System",
    ];
    let real = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    PROTECTED.into_iter().find(|p| real.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_shebang_names_the_program_too() {
        let found = interpreters(b"#!/usr/bin/env -S VAR=1 sh -e\n", None);
        assert_eq!(found[0], Path::new("/usr/bin/env"));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].ends_with("sh"));
        assert_eq!(
            interpreters(b"#!/bin/sh\necho", None),
            [Path::new("/bin/sh")]
        );
        assert!(interpreters(b"#!   \n", None).is_empty());
    }

    #[test]
    fn the_running_test_binary_is_dynamic_and_not_go() {
        let exe = std::env::current_exe().unwrap();
        let mut f = File::open(exe).unwrap();
        let facts = elf_facts(&mut f).unwrap();
        assert!(facts.has_interp && !facts.go);
    }

    #[test]
    fn resolves_like_execvp() {
        assert!(resolve(
            OsStr::new("sh"),
            Some(OsStr::new("/nonexistent:/bin:/usr/bin"))
        )
        .is_some());
        assert!(resolve(OsStr::new("no-such-program-here"), None).is_none());
        assert!(resolve(OsStr::new(""), None).is_none());
    }
}
