//! `reuse run`: check the configuration, put the library in the preload list, and become
//! COMMAND with exec, so its PID, signals and exit status are its own (a supervisor that
//! signals "reuse" signals the server, and `$!` is the server's PID).

use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use reuse_core::config::{self, Config, ConfigError, Level};
use reuse_core::line::Fmt;

use crate::out::say;
use crate::{lib_path, reach};

/// What `reuse run` was asked; every value already passed the library's parser.
pub struct Request {
    /// (variable, value) for each flag given.
    pub set: Vec<(&'static str, OsString)>,
    pub command: Vec<OsString>,
}

/// What to say about fixing a bad variable: the flag that overrides it, if any.
pub fn fix_hint(var: &str) -> &'static str {
    match var {
        "REUSE_PORTS" => "fix it, unset it, or override it with --ports",
        "REUSE_OPTIONS" => "fix it, unset it, or override it with --options",
        "REUSE_PROTOCOLS" => "fix it, unset it, or override it with --protocols",
        "REUSE_LOG" => "fix it, unset it, or override it with --log",
        "REUSE_WAIT_MS" => "fix it, unset it, or override it with --wait",
        "REUSE_TAKEOVER" => "set it to 0 or 1, unset it, or use --takeover",
        "REUSE_HOLD" | "REUSE_HOLD_PORTS" => {
            "these are set by `reuse run --hold` for the programs it runs: unset them, and use --hold"
        }
        _ => "fix it or unset it",
    }
}

/// Bytes as the library's messages show them: printable ASCII, the rest escaped, cut.
pub fn escaped(bytes: &[u8]) -> String {
    let mut s = String::new();
    config::write_escaped(&mut Fmt::new(&mut s), bytes);
    s
}

/// `why in "part"`, the part escaped as the library's own messages escape it.
pub fn describe(e: &ConfigError<'_>) -> String {
    format!("{} in \"{}\"", e.why, escaped(e.part))
}

/// The environment as the program will get it: each name once, with its first value (the
/// one getenv, and so the library, reads), and the variables in `set` in place of theirs.
/// Passing the environment through std's Command as it is would keep the *last* of two
/// entries of one name, so the command would check one value and the program see another.
fn child_env(set: &[(&'static str, OsString)]) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if !out.iter().any(|(n, _)| *n == k) {
            out.push((k, v));
        }
    }
    for (k, v) in set {
        match out.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.clone(),
            None => out.push((OsString::from(k), v.clone())),
        }
    }
    out
}

fn first_value<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsString> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The configuration COMMAND will see, checked with the library's own parser. The library
/// turns itself off on invalid configuration (it cannot refuse to let a program start); the
/// command can, and does, before anything runs.
fn effective_config(env: &[(OsString, OsString)]) -> Result<Config, String> {
    let mut cfg = Config::default();
    config::read_into(&mut cfg, |k| first_value(env, k).map(|v| v.as_bytes())).map_err(|e| {
        format!(
            "invalid {} in the environment: {}; {}",
            e.var,
            describe(&e),
            fix_hint(e.var)
        )
    })?;
    Ok(cfg)
}

/// Never returns on success; otherwise the exit status, as env(1) has it: 2 for invalid
/// configuration, 1 when the library is missing, 127 when COMMAND is not found, 126 when
/// it cannot be run.
pub fn run(#[allow(unused_mut)] mut req: Request) -> i32 {
    #[cfg(target_os = "linux")]
    let rendezvous = if req.set.iter().any(|(k, _)| *k == "REUSE_HOLD_PORTS") {
        match crate::hold::Rendezvous::create() {
            Ok(r) => {
                req.set
                    .push(("REUSE_HOLD", r.socket.clone().into_os_string()));
                Some(r)
            }
            Err(e) => {
                say!("reuse run: --hold: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    #[cfg(not(target_os = "linux"))]
    if req.set.iter().any(|(k, _)| *k == "REUSE_HOLD_PORTS") {
        say!("reuse run: --hold needs Linux (SOCK_SEQPACKET hand-over)");
        return 2;
    }
    let program = &req.command[0];
    let path_var = std::env::var_os("PATH");
    let wants = reach::libc_of(program, path_var.as_deref());
    let reuse_lib = std::env::var_os("REUSE_LIB");
    let lib = match lib_path::find(reuse_lib.as_deref(), wants) {
        Ok(c) => c,
        Err(e) => {
            say!("reuse run: {e}");
            return 1;
        }
    };
    let cfg = match effective_config(&child_env(&req.set)) {
        Ok(c) => c,
        Err(msg) => {
            say!("reuse run: {msg}");
            return 2;
        }
    };
    let speak = cfg.log != Level::Off && cfg.log >= Level::Warn;
    let mut warnings = reach::check(program, path_var.as_deref());
    warnings.extend(unknown_variables(std::env::vars_os().map(|(k, _)| k)));
    let (lib_warnings, unloadable) = library_warnings(&lib, wants, reuse_lib.is_some());
    warnings.extend(lib_warnings);
    let too_old = glibc_too_old(&lib.path, program, path_var.as_deref());
    let unloadable = unloadable || too_old.is_some();
    warnings.extend(too_old);
    if speak {
        for w in &warnings {
            say!("reuse run: warning: {w}");
        }
    }
    // A library the program's loader would refuse is not preloaded: glibc's and musl's
    // loaders stop a program whose preload they cannot load, and the program is better off
    // running without reuse than not at all.
    if unloadable {
        if speak {
            say!("reuse run: warning: running it without libreuse");
        }
    } else {
        let preload = lib_path::prepend(
            std::env::var_os(lib_path::PRELOAD_VAR).as_deref(),
            &lib.path,
        );
        req.set.push((lib_path::PRELOAD_VAR, preload));
    }
    let env = child_env(&req.set);

    let mut cmd = Command::new(program);
    cmd.args(&req.command[1..]);
    cmd.env_clear();
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    #[cfg(target_os = "linux")]
    if let Some(r) = rendezvous {
        // Socket activation: reuse holds the sockets a service manager passed, and COMMAND
        // (another PID, which the variables would not name) gets them by hand-over instead.
        let passed = crate::hold::passed_sockets();
        if !passed.is_empty() {
            for k in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
                cmd.env_remove(k);
            }
        }
        let asked = crate::hold::Asked {
            passed,
            options: cfg.options,
            ports: cfg
                .hold
                .map(|h| h.ports)
                .unwrap_or_else(config::PortSet::empty),
            speak,
            verbose: cfg.log >= Level::Info,
        };
        return crate::hold::supervise(cmd, r, asked);
    }
    let err = cmd.exec();
    let shown = String::from_utf8_lossy(program.as_bytes());
    match err.kind() {
        ErrorKind::NotFound => {
            if program.as_bytes().contains(&b'/') {
                say!("reuse run: {shown}: no such file");
            } else {
                say!("reuse run: {shown}: command not found (searched PATH)");
            }
            127
        }
        _ => {
            say!("reuse run: {shown}: cannot run it: {err}");
            126
        }
    }
}

/// Variables that look like reuse's and are not (`REUSE_PORT=8000` would be ignored
/// without a word), with the name meant where it is close.
fn unknown_variables(names: impl Iterator<Item = OsString>) -> Vec<String> {
    let known = |n: &str| {
        config::VARIABLES.contains(&n) || n == "REUSE_LIB" || n == config::REPORTED_VARIABLE
    };
    let mut out = Vec::new();
    for name in names {
        let Some(n) = name.to_str().filter(|n| n.starts_with("REUSE_")) else {
            continue;
        };
        if known(n) {
            continue;
        }
        let near = config::VARIABLES
            .iter()
            .chain(["REUSE_LIB"].iter())
            .min_by_key(|v| distance(n, v))
            .filter(|v| distance(n, v) <= 2);
        out.push(match near {
            Some(v) => format!("{n} is not a reuse variable and is ignored; did you mean {v}?"),
            None => format!("{n} is not a reuse variable and is ignored"),
        });
    }
    out
}

/// Edit distance (insertions, deletions, substitutions) of two short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// What is wrong with the library about to be preloaded, for this program: built for the
/// other C library or another machine, a path LD_PRELOAD cannot carry, another version than
/// this command's. True with the warnings when the program's loader could not load it.
fn library_warnings(
    lib: &lib_path::Chosen,
    wants: Option<lib_path::Libc>,
    overridden: bool,
) -> (Vec<String>, bool) {
    let mut out: Vec<String> = lib
        .passed_over
        .iter()
        .map(|p| format!("not preloading {p}"))
        .collect();
    let mut unloadable = false;
    let shown = lib.path.display();
    if let (Some(have), Some(want)) = (lib.libc, wants) {
        if have != want {
            unloadable = true;
            out.push(format!(
                "{shown} is built for {}, and the program runs on {}: its loader cannot load it. \
                 Use a reuse that carries both (the release archives), or set REUSE_LIB to a {} build",
                have.name(),
                want.name(),
                want.name()
            ));
        }
    }
    if lib
        .path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| b" \t\n:".contains(b))
    {
        unloadable = true;
        out.push(format!(
            "{shown} has a blank or a colon in its path, which LD_PRELOAD splits on: the loader cannot find it. \
             Move it, or set REUSE_LIB to a path without them"
        ));
    }
    if !cfg!(target_vendor = "apple") && !lib_path::is_loadable_here(&lib.path) {
        unloadable = true;
        out.push(format!(
            "{shown} is not a shared library for this machine ({}): the loader cannot load it",
            std::env::consts::ARCH
        ));
    }
    match lib_path::version_of_library(&lib.path) {
        Some(v) if v == lib_path::version() => {}
        Some(v) => out.push(format!(
            "{shown} is libreuse {v}, and this reuse is {}{}",
            lib_path::version(),
            if overridden { " (REUSE_LIB)" } else { "" }
        )),
        None => out.push(format!(
            "{shown} carries no libreuse version mark: it is a build older than this reuse ({}), or not libreuse",
            lib_path::version()
        )),
    }
    (out, unloadable)
}

/// When the program's glibc is older than the library needs, the loader would refuse the
/// library ("version GLIBC_2.x not found") and stop the program: said before that happens.
fn glibc_too_old(
    lib: &std::path::Path,
    program: &OsStr,
    path_var: Option<&OsStr>,
) -> Option<String> {
    let libc = reach::glibc_of(program, path_var)?;
    let (have, need) = (reach::newest_glibc(&libc)?, reach::newest_glibc(lib)?);
    (need > have).then(|| {
        format!(
            "{} needs GLIBC_{}.{}, which the program's glibc ({}) does not provide (its newest is GLIBC_{}.{}): \
             its loader would refuse to start the program. Use the libreuse.so of the release archives, which needs no particular glibc",
            lib.display(),
            need.0,
            need.1,
            libc.display(),
            have.0,
            have.1
        )
    })
}

/// Checks one flag's value with the library's parser; clap reports an error with the
/// flag's name and exits with status 2.
pub fn check_flag<T>(
    value: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError<'_>>,
) -> Result<OsString, String> {
    parse(value.as_bytes())
        .map(|_| OsStr::new(value).to_os_string())
        .map_err(|e| describe(&e))
}
