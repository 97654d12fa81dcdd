//! The table of every server's figures, written when the last case is done.

use super::*;

pub(crate) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

pub fn median(v: &[Duration]) -> String {
    let Some(m) = median_of(v) else {
        return "-".into();
    };
    let ms = m.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

pub(crate) enum Kind {
    Restart,
    Outliving,
}

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) restart: BTreeMap<usize, Vec<String>>,
    pub(crate) outliving: BTreeMap<usize, Vec<String>>,
    pub(crate) notes: BTreeMap<usize, Vec<String>>,
    pub(crate) finished: usize,
}

pub(crate) static TABLE: Mutex<Table> = Mutex::new(Table {
    restart: BTreeMap::new(),
    outliving: BTreeMap::new(),
    notes: BTreeMap::new(),
    finished: 0,
});

pub(crate) const RESTART_HEADER: [&str; 10] = [
    "server",
    "sets SO_REUSEADDR itself",
    "restarted by",
    "TIME_WAIT at restart",
    "ready with libreuse",
    "ready without",
    "restart to ready, with",
    "restart to ready, without",
    "cold start",
    "without libreuse",
];

pub(crate) const OUTLIVING_HEADER: [&str; 7] = [
    "server, only the master SIGKILLed",
    "old socket still listening",
    "ready with libreuse, no requests meanwhile",
    "ready with libreuse, requests arriving",
    "ready without, no requests",
    "what the new instance said",
    "after killing the old process group, with libreuse",
];

pub(crate) fn md_row(cells: &[impl AsRef<str>]) -> String {
    let mut s = String::from("|");
    for c in cells {
        s.push(' ');
        s.push_str(&c.as_ref().replace('|', "/"));
        s.push_str(" |");
    }
    s.push('\n');
    s
}

pub(crate) fn md_table(header: &[&str], rows: &[&Vec<String>]) -> String {
    let mut s = md_row(header);
    s.push_str(&md_row(&vec!["---"; header.len()]));
    for r in rows {
        s.push_str(&md_row(r));
    }
    s
}

pub(crate) fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string();
    format!("{cpus} CPUs (nproc), Linux {kernel}, {os}, {date}, load average {load} when written")
}

impl Table {
    pub(crate) fn render(&self) -> String {
        let n = cycles();
        let mut s = format!(
            "Rapid-restart harness: {n} restart cycles per server (REUSE_HARNESS_CYCLES) with \
             libreuse and {n} without, interleaved, each with TIME_WAIT sockets on the port (the \
             fewest seen at a restart is shown), cycles alternating SIGTERM and SIGKILL; restart \
             to ready = the old instance's death to the first answered request (median); cold \
             start = spawn to first answer on a fresh port, with libreuse (median of \
             {}). Without libreuse, one attempt per cycle with a {}-s readiness \
             timeout (the servers that fail exit at once).\nMachine: {}.\n\n",
            cold_starts(),
            CONTROL_TIMEOUT.as_secs(),
            machine()
        );
        if !self.restart.is_empty() {
            s.push_str(&md_table(
                &RESTART_HEADER,
                &self.restart.values().collect::<Vec<_>>(),
            ));
        }
        if !self.outliving.is_empty() {
            s.push_str(&format!(
                "\nThe old listening socket outlives the killed master ({} cycles each, a fresh \
                 port each):\n\n",
                n.min(OUTLIVE_CYCLES)
            ));
            s.push_str(&md_table(
                &OUTLIVING_HEADER,
                &self.outliving.values().collect::<Vec<_>>(),
            ));
        }
        let notes: Vec<&String> = self.notes.values().flatten().collect();
        if !notes.is_empty() {
            s.push_str("\nNotes:\n");
            for n in notes {
                s.push_str(&format!("- {}\n", n.replace('\n', " ")));
            }
        }
        s
    }
}

pub(crate) fn table_path() -> PathBuf {
    common::target_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(common::target_dir)
        .join("harness-table.md")
}

/// Adds a row, rewrites target/harness-table.md with every row of this run so far, and
/// prints this row's table on the real stdout (past the test harness's capture).
pub(crate) fn record(order: usize, kind: Kind, row: Vec<String>, notes: Vec<String>) {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let one = match kind {
        Kind::Restart => {
            t.restart.insert(order, row.clone());
            md_table(&RESTART_HEADER, &[&row])
        }
        Kind::Outliving => {
            t.outliving.insert(order, row.clone());
            md_table(&OUTLIVING_HEADER, &[&row])
        }
    };
    if !notes.is_empty() {
        t.notes.insert(order, notes);
    }
    let text = t.render();
    let path = table_path();
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("writing {}: {e}", path.display());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{one}");
}
