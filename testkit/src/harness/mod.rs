//! The rapid-restart harness's engine: start a stock server on a loopback port, make it close
//! connections first so TIME_WAIT sockets stay on its port, kill it, start it again at once,
//! and see whether it answers; with the library and without it (the control); then write the
//! figures into one table.
//!
//! Every wait is bounded by time, every loop by count; every process runs in a process group
//! of its own and is killed with that group when its `Instance` goes away.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{self as common, alive, Proc, TempDir};

pub mod examples;
pub mod servers;

/// Every server listens on loopback only.
pub const HOST: &str = "127.0.0.1";
/// Cold starts measured per server, each on a fresh port, with the library:
/// REUSE_HARNESS_COLD_STARTS, default 5 (the overhead benchmark takes as many as restarts).
pub fn cold_starts() -> usize {
    common::env_number("REUSE_HARNESS_COLD_STARTS", 1..=1000, 5) as usize
}
/// Restart cycles for servers whose old listening socket outlives the killed process: each
/// failing attempt costs the server's own bind retries, and the outcome does not vary.
pub const OUTLIVE_CYCLES: usize = 3;
/// How long a start under the library, or a cold start, may take before it counts as failed.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The control's one attempt: a restart blocked by TIME_WAIT stays blocked for 60 s, so
/// it is not retried. The servers that fail exit at once; this bounds the others, which must
/// answer (long enough for Flask or gunicorn on a loaded machine).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// A restart while an orphan still listens: long enough for the servers' own bind retries
/// (gunicorn 5 x 1 s, nginx 5 x 0.5 s) to run out.
pub const OUTLIVE_TIMEOUT: Duration = Duration::from_secs(8);
/// A signalled server that has not exited by then is killed, and the test fails.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many test functions record a row (each calls `restart_case` or `outliving_case` once,
/// counted in tests/harness.rs itself); the last to finish prints the whole table.
pub fn row_tests() -> usize {
    include_str!("../../../tests/harness.rs")
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("restart_case(") || l.starts_with("outliving_case("))
        .count()
}

const LOG_CAP: usize = 1 << 20;

/// N, the restart cycles per server: REUSE_HARNESS_CYCLES, default 20.
pub fn cycles() -> usize {
    common::env_number("REUSE_HARNESS_CYCLES", 1..=1000, 20) as usize
}

mod cases;
mod instance;
mod series;
mod spec;
mod table;
pub use cases::*;
pub use instance::*;
pub use series::*;
pub use spec::*;
pub use table::*;
