//! How the pages show times and durations. One duration format everywhere (pages, the page's
//! script `app.js`, which ticks running durations, and the CLI): `0.4s`, `9.9s`, `14s`,
//! `2m 05s`, `1h 02m`.

use chrono::{DateTime, Utc};

use baton_store::RunRow;

pub(super) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn dur_ms(ms: i64) -> String {
    baton_core::run::format_duration_ms(ms)
}

pub(super) fn span(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<i64> {
    Some((b? - a?).num_milliseconds())
}

/// `started` in ms since the epoch while it has not ended (0 otherwise): what the page's
/// script counts a running duration from.
pub(super) fn running_since(started: Option<DateTime<Utc>>, ended: Option<DateTime<Utc>>) -> i64 {
    match (started, ended) {
        (Some(s), None) => s.timestamp_millis(),
        _ => 0,
    }
}

pub(super) fn took(r: &RunRow) -> String {
    match (r.started_at, r.ended_at) {
        (Some(s), Some(e)) => dur_ms((e - s).num_milliseconds()),
        (Some(s), None) => format!("{} so far", dur_ms((Utc::now() - s).num_milliseconds())),
        _ => "–".into(),
    }
}

/// A run's test counts in the list (from the counts the store keeps per job, never a tree).
pub(super) struct TestCounts {
    pub passed: i64,
    /// Failed and errored.
    pub failed: i64,
    pub skipped: i64,
    pub flaky: i64,
}

impl TestCounts {
    /// The counts of an ended run that has test results; `None` otherwise.
    pub(super) fn of(
        run: &baton_store::RunRow,
        counts: &std::collections::BTreeMap<i64, baton_store::ResultCounts>,
    ) -> Option<TestCounts> {
        let c = counts.get(&run.id).filter(|_| run.status.is_terminal())?;
        let t = TestCounts {
            passed: c.passed,
            failed: c.failed + c.errors,
            skipped: c.skipped,
            flaky: c.flaky,
        };
        (t.passed + t.failed + t.skipped + t.flaky > 0).then_some(t)
    }
}
