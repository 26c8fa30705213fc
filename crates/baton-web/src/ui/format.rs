//! How the pages show times and durations.

use chrono::{DateTime, Utc};

use baton_store::{JobRow, RunRow};

pub(super) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn dur_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

pub(super) fn span(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<i64> {
    Some((b? - a?).num_milliseconds())
}

pub(super) fn took(r: &RunRow) -> String {
    match (r.started_at, r.ended_at) {
        (Some(s), Some(e)) => dur_ms((e - s).num_milliseconds()),
        (Some(s), None) => format!("{} so far", dur_ms((Utc::now() - s).num_milliseconds())),
        _ => "–".into(),
    }
}

pub(super) fn job_took(j: &JobRow) -> String {
    match (j.started_at, j.ended_at) {
        (Some(s), Some(e)) => dur_ms((e - s).num_milliseconds()),
        (Some(_), None) => "running".into(),
        _ => j.status.as_str().into(),
    }
}
