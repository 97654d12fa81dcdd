//! `reuse`: run an unmodified server under libreuse.so (`reuse run`), find the library
//! (`reuse lib`), and say who holds a port (`reuse doctor`).

mod doctor;
#[cfg(target_os = "linux")]
mod hold;
mod lib_path;
mod out;
mod procfs;
mod reach;
mod run;
mod safe_dir;
mod sys;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::out::say;
use reuse_core::config;

const OVERVIEW: &str = "\
Lets an unmodified server restart on its port at once.

`reuse run` puts libreuse.so in LD_PRELOAD and execs the server. The library sets SO_REUSEADDR
(and whatever REUSE_OPTIONS asks) on the program's listening sockets just before bind(), so a
restarted server binds at once instead of failing with EADDRINUSE while TIME_WAIT sockets of
its previous run are left. Linux lets a bind pass TIME_WAIT only when the old and the new
socket both had SO_REUSEADDR: run every instance under reuse.";

const REFERENCE: &str = "\
Reference:
  reuse run [--ports LIST] [--options LIST] [--protocols LIST] [--wait MS] [--takeover]
            [--hold LIST] [--log LEVEL] -- COMMAND [ARG...]
      Checks every flag and every inherited REUSE_* variable with the library's own parser,
      sets REUSE_* for the flags given (inherited ones stay as they are), prepends the
      library's absolute path to LD_PRELOAD (DYLD_INSERT_LIBRARIES on macOS) without
      dropping what is there, and execs COMMAND: its PID, signals and exit status are its
      own. Warns first when the library cannot reach COMMAND: statically linked, a Go
      program, setuid/setgid, file capabilities, a macOS SIP-protected path (for a #!
      script: its interpreter).
      Exit status: COMMAND's; 2 invalid flag or REUSE_* variable; 1 library not found;
      126 COMMAND cannot be run; 127 COMMAND not found.
      With --hold LIST (Linux), reuse does not exec: it stays as COMMAND's parent, and the
      first bind of a listed TCP port by any process of COMMAND's tree is answered with a
      listening socket reuse keeps open until it exits; every later instance gets the same
      socket. Connections arriving while no instance runs wait in its queue instead of
      being refused. Signals sent to reuse go to COMMAND; reuse ends as COMMAND ended.
  reuse lib
      Prints the library's absolute path: REUSE_LIB if set (it must exist), else beside
      the reuse executable, else in ../lib beside it, else the copy reuse carries, written
      once to a cache ($XDG_CACHE_HOME/reuse; for root /var/cache/reuse; ~/.cache/reuse;
      $XDG_RUNTIME_DIR/reuse). Exit status 1 if not found.
  reuse doctor [--json] PORT...
      For each port, TCP over IPv4 and IPv6: live listeners with PID, program and user;
      TIME_WAIT sockets and when the last expires; then a verdict: free; free under reuse
      but TIME_WAIT for N more seconds; or held by PID (program), with what to do.
      Exit status 0 when a bind under reuse would succeed on every port, 1 when one is
      held, 2 on a usage error.

Environment (read by the library when a program loads it; `reuse run` flags set them):
  REUSE_PORTS     = \"*\" | item (\",\" item)*         item = port | port \"-\" port, 1-65535
                    ports the library acts on (default: *, every port)
  REUSE_OPTIONS   = opt (\",\" opt)*   opt = \"addr\" | \"port\" | \"linger=\" SECONDS (0-65535)
                    addr: SO_REUSEADDR; port: SO_REUSEPORT (share a live port, same user);
                    linger=N: SO_LINGER N s, 0 resets connections on close (default: addr)
  REUSE_PROTOCOLS = proto (\",\" proto)*   proto = \"tcp\" | \"udp\"          (default: tcp)
  REUSE_LOG       = \"off\" | \"error\" | \"warn\" | \"info\" | \"debug\"      (default: warn)
                    lines go to stderr as libreuse[PID]: ...; below warn, reuse run's own
                    warnings are silent too
  REUSE_WAIT_MS   = 0-3600000   on EADDRINUSE, retry the bind for up to this many ms (default: 0)
  REUSE_TAKEOVER  = \"0\" | \"1\"   on EADDRINUSE, stop (SIGTERM, then SIGKILL) a listener of the
                    same user running the same executable with the same command line,
                    and bind (default: 0)
  REUSE_HOLD, REUSE_HOLD_PORTS = set by `reuse run --hold` for COMMAND: where to ask for held
                    sockets, and for which ports
  REUSE_LIB       = path of libreuse.so, for `reuse run` and `reuse lib`
  Blanks around items are allowed; an empty value is an error, never \"unset\". With invalid
  configuration `reuse run` refuses to start (exit 2); the library alone changes nothing and
  says why.

Examples:
  reuse run -- python3 -m http.server 8000
  reuse run --ports 8000,9000-9010 --wait 2000 -- node server.js
  reuse run --options addr,port --log info -- ./server   # SO_REUSEPORT as well
  reuse run --hold 8000 -- nodemon app.js                 # no refused connection on restarts
  LD_PRELOAD=$(reuse lib) REUSE_PORTS=8000 ./server       # without the command
  reuse doctor 8000
  reuse doctor --json 8000 8443
  . shims/reuse.sh && reuse on                            # every program from this shell";

const SHORT_EXAMPLES: &str = "\
Examples:
  reuse run -- python3 -m http.server 8000
  reuse run --hold 8000 -- nodemon app.js
  reuse doctor 8000

'reuse --help' has every variable, its grammar and more examples.";

#[derive(Parser)]
#[command(
    name = "reuse",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("REUSE_COMMIT"), ")"),
    about = "Lets an unmodified server restart on its port at once",
    long_about = OVERVIEW,
    after_help = SHORT_EXAMPLES,
    after_long_help = REFERENCE,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run COMMAND with libreuse.so preloaded (exec: same PID, signals, exit status)
    #[command(override_usage = "reuse run [OPTIONS] -- COMMAND [ARG...]")]
    #[command(
        after_help = "Examples:\n  reuse run -- python3 -m http.server 8000\n  \
                            reuse run --ports 8000 --wait 2000 -- node server.js\n\n\
                            Run `reuse --help` for the REUSE_* variables and their grammar."
    )]
    Run(RunArgs),
    /// Print the absolute path of libreuse.so (for LD_PRELOAD=$(reuse lib) COMMAND)
    #[command(
        long_about = "Print the absolute path of the library: REUSE_LIB if set (it must exist), \
                      else beside the reuse executable, else in ../lib beside it (a file of \
                      this user's or root's, in folders only they can write), else the copy \
                      the command carries, written once to a cache: $XDG_CACHE_HOME/reuse, \
                      for root /var/cache/reuse, ~/.cache/reuse, $XDG_RUNTIME_DIR/reuse (the \
                      first that is safe; readable by all, writable by this user).\n\n\
                      Example: LD_PRELOAD=$(reuse lib) REUSE_PORTS=8000 ./server"
    )]
    Lib,
    /// Who holds PORT: listeners (PID, program, user), TIME_WAIT left, and a verdict
    #[command(
        long_about = "For each port, TCP over IPv4 and IPv6: live listeners with PID, program and \
                      user; TIME_WAIT sockets and when the last expires; then a verdict in plain \
                      words.\n\nExit status 0 when a bind under reuse would succeed on every port, \
                      1 when a port is held, 2 on a usage error."
    )]
    #[command(override_usage = "reuse doctor [--json] [--udp] PORT...")]
    Doctor(DoctorArgs),
    /// Print a completion script for SHELL (bash, zsh, fish) on standard output
    #[command(
        long_about = "Print a completion script for SHELL on standard output, e.g.\n  \
                      reuse completions bash > ~/.local/share/bash-completion/completions/reuse\n  \
                      reuse completions zsh > ~/.zfunc/_reuse\n  \
                      reuse completions fish > ~/.config/fish/completions/reuse.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) on standard output
    #[command(hide = true)]
    Man,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn ports_flag(s: &str) -> Result<OsString, String> {
    run::check_flag(s, config::parse_ports)
}
fn options_flag(s: &str) -> Result<OsString, String> {
    run::check_flag(s, config::parse_options)
}
fn protocols_flag(s: &str) -> Result<OsString, String> {
    run::check_flag(s, config::parse_protocols)
}
fn wait_flag(s: &str) -> Result<OsString, String> {
    run::check_flag(s, config::parse_wait_ms)
}
fn log_flag(s: &str) -> Result<OsString, String> {
    run::check_flag(s, config::parse_log)
}
/// A port for `reuse doctor`: the library's own word for a bad one.
fn port_arg(s: &str) -> Result<u16, String> {
    match config::parse_ports(s.as_bytes()).map(|set| set.ranges().collect::<Vec<_>>()) {
        Ok(r) if r.len() == 1 && r[0].0 == r[0].1 => Ok(r[0].0),
        Ok(_) => Err(format!(
            "one port (1-65535) in \"{}\"",
            run::escaped(s.as_bytes())
        )),
        Err(e) => Err(run::describe(&e)),
    }
}

fn hold_flag(s: &str) -> Result<OsString, String> {
    run::check_flag(s, config::parse_hold_ports)
}

#[derive(clap::Args)]
struct RunArgs {
    /// Ports to act on: "*" or a list of ports and ranges, e.g. 8000,9000-9010 [REUSE_PORTS]
    #[arg(long, value_name = "LIST", value_parser = ports_flag)]
    ports: Option<OsString>,
    /// Socket options: addr (SO_REUSEADDR), port (SO_REUSEPORT), linger=SECONDS [REUSE_OPTIONS]
    #[arg(long, value_name = "LIST", value_parser = options_flag)]
    options: Option<OsString>,
    /// Protocols: tcp, udp, or tcp,udp [REUSE_PROTOCOLS]
    #[arg(long, value_name = "LIST", value_parser = protocols_flag)]
    protocols: Option<OsString>,
    /// On EADDRINUSE, retry the bind for up to MS milliseconds (0-3600000) [REUSE_WAIT_MS]
    #[arg(long, value_name = "MS", value_parser = wait_flag, allow_negative_numbers = true)]
    wait: Option<OsString>,
    /// On EADDRINUSE, stop a leftover listener of the same user and command [REUSE_TAKEOVER=1]
    #[arg(long)]
    takeover: bool,
    /// Hold these ports' listening sockets across restarts: reuse stays as COMMAND's parent
    /// and hands the socket to each new instance, so no connection is refused (Linux)
    #[arg(long, value_name = "PORTS", value_parser = hold_flag)]
    hold: Option<OsString>,
    /// Log level of the library: off, error, warn, info, debug [REUSE_LOG]
    #[arg(long, value_name = "LEVEL", value_parser = log_flag)]
    log: Option<OsString>,
    /// The program to run and its arguments
    // Everything from the first word that is not an option of reuse's own (or after `--`)
    // is COMMAND's. A mistyped option before it is a usage error, not a program to run.
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

#[derive(clap::Args)]
struct DoctorArgs {
    /// Print one JSON document instead of text
    #[arg(long)]
    json: bool,
    /// Diagnose UDP instead of TCP: the sockets bound on the port, and who has them
    #[arg(long)]
    udp: bool,
    /// Ports to diagnose (1-65535)
    #[arg(value_name = "PORT", required = true, value_parser = port_arg)]
    ports: Vec<u16>,
}

/// A usage error as clap would print it, except that a bad value is never echoed raw: the
/// parsers' own message quotes it cut and escaped (a 128 kB value, control bytes).
fn usage_error(e: clap::Error) -> u8 {
    use clap::error::{ContextKind, ErrorKind};
    match e.kind() {
        ErrorKind::ValueValidation => {
            let arg = e
                .get(ContextKind::InvalidArg)
                .map(|a| a.to_string())
                .unwrap_or_else(|| "a value".into());
            let why = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "invalid".into());
            say!("error: invalid value for '{arg}': {why}\n\nFor more information, try '--help'.");
            2
        }
        _ => {
            let _ = e.print();
            u8::try_from(e.exit_code()).unwrap_or(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return ExitCode::from(usage_error(e)),
    };
    let status = match cli.command {
        Cmd::Run(a) => {
            let mut set = Vec::new();
            for (var, v) in [
                ("REUSE_PORTS", a.ports),
                ("REUSE_OPTIONS", a.options),
                ("REUSE_PROTOCOLS", a.protocols),
                ("REUSE_LOG", a.log),
                ("REUSE_WAIT_MS", a.wait),
                ("REUSE_TAKEOVER", a.takeover.then(|| "1".into())),
                ("REUSE_HOLD_PORTS", a.hold),
            ] {
                if let Some(v) = v {
                    set.push((var, v));
                }
            }
            run::run(run::Request {
                set,
                command: a.command,
            })
        }
        Cmd::Lib => match lib_path::find(
            std::env::var_os("REUSE_LIB").as_deref(),
            // For `LD_PRELOAD=$(reuse lib) ./server`: the C library of this system's shell.
            reach::libc_of("/bin/sh".as_ref(), None),
        ) {
            Ok(p) => {
                use std::os::unix::ffi::OsStrExt;
                let mut line = p.path.as_os_str().as_bytes().to_vec();
                line.push(b'\n');
                i32::from(!out::out(&line))
            }
            Err(e) => {
                say!("reuse lib: {e}");
                1
            }
        },
        Cmd::Doctor(a) => doctor::run(&a.ports, a.json, a.udp),
        Cmd::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "reuse", &mut text);
            i32::from(!out::out(&text))
        }
        Cmd::Man => {
            let mut text = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut text) {
                Ok(()) => i32::from(!out::out(&text)),
                Err(e) => {
                    say!("reuse man: {e}");
                    1
                }
            }
        }
    };
    ExitCode::from(status.clamp(0, 255) as u8)
}
