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
