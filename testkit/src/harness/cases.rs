//! The cases the tests call: one server's restart series and its row in the table.

use super::*;

/// Counts a finished test (passed, failed or skipped); the last one prints the whole table.
pub(crate) struct Finished;

impl Drop for Finished {
    fn drop(&mut self) {
        let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        t.finished += 1;
        if t.finished == row_tests() && !(t.restart.is_empty() && t.outliving.is_empty()) {
            let text = t.render();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "\n--- rapid-restart harness: all servers ---\n{text}");
        }
    }
}

/// What a restart case measured, for the overhead benchmark: the server, and the medians of
/// restart-to-ready with the library and of its cold starts. (The tests only assert.)
#[allow(dead_code)]
pub struct Measured {
    pub name: String,
    pub restart: Option<Duration>,
    pub cold: Option<Duration>,
    /// The median of restart i / cold start i: the two were measured moments apart, so a
    /// slow spell of the machine falls on both.
    pub paired: Option<f64>,
}

/// One restart case: cold starts, N restarts with the library, N without; a table row; then
/// the assertions (after the row is written, so a failure shows in the table too).
pub fn restart_case(make: impl FnOnce() -> Option<Spec>) -> Option<Measured> {
    let _finished = Finished;
    let spec = make()?;
    let n = cycles();
    let (with, without, cold) = interleaved(&spec, n);
    let restarted_by = match &spec.restart {
        Restart::Harness { workers: false } => "harness: SIGTERM / SIGKILL",
        Restart::Harness { workers: true } => "harness: SIGTERM master / SIGKILL group",
        Restart::Nodemon { .. } => "nodemon, on a file change",
        Restart::MasterKilled => unreachable!(),
    };
    let without_said = if without.attempts == without.ok {
        "restarts at once".to_string()
    } else {
        format!(
            "{} of {} failed, {} with EADDRINUSE",
            without.attempts - without.ok,
            without.attempts,
            without.in_use
        )
    };
    let row = vec![
        spec.name.clone(),
        yes_no(spec.own_reuseaddr),
        restarted_by.to_string(),
        [with.min_time_wait, without.min_time_wait]
            .into_iter()
            .flatten()
            .min()
            .map_or("-".into(), |m| format!(">= {m}")),
        format!("{}/{}", with.ok, with.attempts),
        format!("{}/{}", without.ok, without.attempts),
        median(&with.times),
        median(&without.times),
        median(&cold),
        without_said,
    ];
    let mut notes = Vec::new();
    for f in &with.failures {
        notes.push(format!("{}, with libreuse: {f}", spec.name));
    }
    for f in without.failures.iter().take(1) {
        notes.push(format!("{}, without libreuse: {f}", spec.name));
    }
    record(spec.order, Kind::Restart, row, notes);

    assert_eq!(
        with.ok, n,
        "{}: with libreuse only {} of {n} restarts answered: {:?}",
        spec.name, with.ok, with.failures
    );
    if spec.own_reuseaddr {
        assert_eq!(
            without.ok, n,
            "{} sets SO_REUSEADDR itself, yet without libreuse only {} of {n} restarts answered: {:?}",
            spec.name, without.ok, without.failures
        );
    } else {
        assert_eq!(
            without.ok, 0,
            "{} leaves SO_REUSEADDR off, yet without libreuse {} of {n} restarts answered: \
             the harness did not reproduce the problem",
            spec.name, without.ok
        );
        assert_eq!(
            without.in_use, n,
            "{}: not every failed restart without libreuse said EADDRINUSE: {:?}",
            spec.name, without.failures
        );
    }
    let mut ratios: Vec<f64> = with
        .times
        .iter()
        .zip(&cold)
        .map(|(r, c)| r.as_secs_f64() / c.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some(Measured {
        name: spec.name.clone(),
        restart: median_of(&with.times),
        cold: median_of(&cold),
        paired: ratios.get(ratios.len() / 2).copied(),
    })
}

pub fn median_of(v: &[Duration]) -> Option<Duration> {
    let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    common::median(&secs).map(Duration::from_secs_f64)
}

/// One outliving case: only the master is SIGKILLed; what the restart does, with and without
/// the library; and that killing the old process group lets the restart through.
pub fn outliving_case(make: impl FnOnce() -> Option<Spec>) {
    let _finished = Finished;
    let Some(spec) = make() else { return };
    let n = cycles().min(OUTLIVE_CYCLES);
    let with = outliving_series(&spec, true, n);
    let without = outliving_series(&spec, false, n);
    let said = with
        .series
        .failures
        .first()
        .or(with.busy.failures.first())
        .map(|f| {
            f.split_once(": ")
                .map_or(f.as_str(), |(_, r)| r)
                .to_string()
        })
        .unwrap_or_else(|| "-".into());
    let ok_median = |s: &Series| {
        if s.ok > 0 {
            format!("{}/{}, {}", s.ok, s.attempts, median(&s.times))
        } else {
            format!("{}/{}", s.ok, s.attempts)
        }
    };
    let row = vec![
        spec.name.clone(),
        format!("{}/{n}", with.held),
        ok_median(&with.series),
        ok_median(&with.busy),
        ok_median(&without.series),
        said,
        ok_median(&with.remedy),
    ];
    let mut notes = Vec::new();
    for f in with.remedy.failures.iter().chain(&without.remedy.failures) {
        notes.push(format!("{}, after killing the group: {f}", spec.name));
    }
    record(spec.order, Kind::Outliving, row, notes);

    assert_eq!(
        with.held + without.held,
        2 * n,
        "{}: after the master's SIGKILL the port was not always still held; this row's premise \
         no longer holds",
        spec.name
    );
    assert_eq!(
        (with.remedy.ok, without.remedy.ok),
        (n, n),
        "{}: after killing the old process group the restart did not always answer: {:?} {:?}",
        spec.name,
        with.remedy.failures,
        without.remedy.failures
    );
}
