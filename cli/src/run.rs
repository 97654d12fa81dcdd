//! `reuse run`: check the configuration, put the library in the preload list, and become
//! COMMAND with exec, so its PID, signals and exit status are its own (a supervisor that
//! signals "reuse" signals the server, and `$!` is the server's PID).

use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use reuse_core::config::{self, Config, ConfigError, Level};

use crate::{lib_path, reach};

/// What `reuse run` was asked; every value already passed the library's parser.
pub struct Request {
    /// (variable, value) for each flag given.
    pub set: Vec<(&'static str, OsString)>,
    pub command: Vec<OsString>,
}

/// The flag that sets each variable, for messages.
pub fn flag_of(var: &str) -> &'static str {
    match var {
        "REUSE_PORTS" => "--ports",
        "REUSE_OPTIONS" => "--options",
        "REUSE_PROTOCOLS" => "--protocols",
        "REUSE_LOG" => "--log",
        "REUSE_WAIT_MS" => "--wait",
        "REUSE_TAKEOVER" => "--takeover",
        _ => "?",
    }
}

/// `why in "part"`, the part escaped as the library's own messages escape it.
pub fn describe(e: &ConfigError<'_>) -> String {
    struct S(String);
    impl std::fmt::Write for S {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.push_str(s);
            Ok(())
        }
    }
    let mut s = S(format!("{} in \"", e.why));
    let _ = config::write_escaped(&mut s, e.part);
    s.0.push('"');
    s.0
}

/// The configuration COMMAND will see: the flags, and the inherited variables they do not
/// override. The library turns itself off on invalid configuration (it cannot refuse to let
/// a program start); the command can, and does, before anything runs.
fn effective_config(set: &[(&'static str, OsString)]) -> Result<Config, String> {
    let values: Vec<(&str, OsString)> = config::VARIABLES
        .iter()
        .filter_map(|var| {
            let flag = set.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
            flag.or_else(|| std::env::var_os(var)).map(|v| (*var, v))
        })
        .collect();
    let get = |k: &str| {
        values
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_bytes())
    };
    let mut cfg = Config::default();
    config::read_into(&mut cfg, get).map_err(|e| {
        format!(
            "invalid {} in the environment: {}; fix it, unset it, or override it with {}",
            e.var,
            describe(&e),
            flag_of(e.var)
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
                eprintln!("reuse run: --hold: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    #[cfg(not(target_os = "linux"))]
    if req.set.iter().any(|(k, _)| *k == "REUSE_HOLD_PORTS") {
        eprintln!("reuse run: --hold needs Linux (SOCK_SEQPACKET hand-over)");
        return 2;
    }
    let cfg = match effective_config(&req.set) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("reuse run: {msg}");
            return 2;
        }
    };
    let lib = match lib_path::find(std::env::var_os("REUSE_LIB").as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("reuse run: {e}");
            return 1;
        }
    };
    let program = &req.command[0];
    let path_var = std::env::var_os("PATH");
    if cfg.log != Level::Off && cfg.log >= Level::Warn {
        for w in reach::check(program, path_var.as_deref()) {
            eprintln!("reuse run: warning: {w}");
        }
    }

    let preload = lib_path::prepend(std::env::var_os(lib_path::PRELOAD_VAR).as_deref(), &lib);
    let mut cmd = Command::new(program);
    cmd.args(&req.command[1..]);
    cmd.env(lib_path::PRELOAD_VAR, preload);
    for (k, v) in &req.set {
        cmd.env(k, v);
    }
    #[cfg(target_os = "linux")]
    if let Some(r) = rendezvous {
        let ports = cfg
            .hold
            .map(|h| h.ports)
            .unwrap_or_else(config::PortSet::empty);
        return crate::hold::supervise(cmd, r, cfg.options, ports, cfg.log >= Level::Info);
    }
    let err = cmd.exec();
    let shown = String::from_utf8_lossy(program.as_bytes());
    match err.kind() {
        ErrorKind::NotFound => {
            if program.as_bytes().contains(&b'/') {
                eprintln!("reuse run: {shown}: no such file");
            } else {
                eprintln!("reuse run: {shown}: command not found (searched PATH)");
            }
            127
        }
        _ => {
            eprintln!("reuse run: {shown}: cannot run it: {err}");
            126
        }
    }
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
