//! A target's numbers: its success rate (over the runs that ended in a way that could fail),
//! its median duration, a duration against that median, and the trend of its last runs.

use baton_core::run::Status;
use baton_store::RunRow;

use super::format::dur_ms;
use super::gantt::ms;

/// How many of a target's last finished runs its median duration is taken over.
pub(super) const MEDIAN_OF: u32 = 20;

/// The share of runs that succeeded among those that ended and could have failed (canceled
/// and skipped runs tell nothing of the code): `87%`, or `–` when there are none.
pub(super) fn success_rate(runs: &[RunRow]) -> String {
    let counted: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.status.is_terminal())
        .filter(|r| !matches!(r.status, Status::Canceled | Status::Skipped))
        .collect();
    if counted.is_empty() {
        return "–".into();
    }
    let ok = counted
        .iter()
        .filter(|r| r.status == Status::Success)
        .count();
    format!("{}%", ok * 100 / counted.len())
}

/// The median of the durations (ms) of finished runs, newest first, at most [`MEDIAN_OF`].
pub(super) fn median_ms(runs: &[RunRow]) -> Option<i64> {
    let mut d: Vec<i64> = runs
        .iter()
        .filter(|r| r.status.is_terminal())
        .filter_map(|r| Some(ms(r.started_at?, r.ended_at?)))
        .take(MEDIAN_OF as usize)
        .collect();
    d.sort_unstable();
    d.get(d.len() / 2).copied()
}

/// `12s, 40% longer than the median (8.6s) of the last 20 finished runs`.
pub(super) fn against_median(took: i64, median: i64, of: usize) -> String {
    let runs = if of == 1 {
        "the last finished run".to_owned()
    } else {
        format!("the last {of} finished runs")
    };
    if median <= 0 {
        return format!("median of {runs}: {}", dur_ms(median));
    }
    let pct = (took - median) * 100 / median;
    let how = match pct {
        p if p.abs() < 5 => "about the median".to_owned(),
        p if p > 0 => format!("{p}% longer than the median"),
        p => format!("{}% shorter than the median", -p),
    };
    format!("{how} ({}) of {runs}", dur_ms(median))
}

/// How many bars the trend has room for.
const TREND_SLOTS: i64 = 50;

/// The last runs (newest first) as an SVG of bars, oldest on the left: height by duration,
/// colour by status, each a link to its run.
pub(super) fn trend_svg(runs: &[RunRow]) -> String {
    let ran: Vec<(&RunRow, i64)> = runs
        .iter()
        .filter_map(|r| Some((r, ms(r.started_at?, r.ended_at?))))
        .collect();
    let Some(longest) = ran.iter().map(|(_, d)| *d).max() else {
        return String::new();
    };
    let longest = longest.max(1);
    // A slot per run the page lists at most, the newest on the right: a few runs stay bars.
    let slots = (ran.len() as i64).max(TREND_SLOTS);
    let first = slots - ran.len() as i64;
    let mut svg = format!(
        "<svg class=\"trend\" id=\"trend\" viewBox=\"0 0 {} 60\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"durations of the last runs\">",
        slots * 10
    );
    for (i, (r, d)) in ran.iter().rev().enumerate() {
        let i = first + i as i64;
        let h = (d * 56 / longest).max(2);
        svg.push_str(&format!(
            "<a href=\"/runs/{}\"><rect class=\"bar f-{}\" x=\"{}\" y=\"{}\" width=\"8\" height=\"{h}\"><title>#{} {} {}</title></rect></a>",
            r.id,
            r.status.as_str(),
            i * 10 + 1,
            60 - h,
            r.id,
            r.status.as_str(),
            dur_ms(*d)
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::run::{TargetKind, TriggerKind};
    use chrono::{DateTime, TimeZone, Utc};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn run(status: Status, took: Option<i64>) -> RunRow {
        RunRow {
            id: 1,
            kind: TargetKind::Task,
            target: "t".into(),
            trigger: TriggerKind::Api,
            args: Default::default(),
            tags: vec![],
            definition: serde_json::Value::Null,
            status,
            reason: None,
            priority: 0,
            partition: None,
            enqueued_at: t(0),
            not_before: None,
            started_at: Some(t(0)),
            ended_at: took.map(t),
            jobs: vec![],
            ancestors: vec![],
            descendants: vec![],
            repo: None,
        }
    }

    #[test]
    fn the_success_rate_counts_only_runs_that_could_fail() {
        let runs = [
            run(Status::Success, Some(1)),
            run(Status::Failed, Some(1)),
            run(Status::Canceled, Some(1)),
            run(Status::Skipped, Some(1)),
            run(Status::Running, None),
        ];
        assert_eq!(success_rate(&runs), "50%");
        assert_eq!(success_rate(&runs[2..]), "–");
    }

    #[test]
    fn a_duration_is_told_against_the_median_of_finished_runs() {
        let mut runs: Vec<RunRow> = [10, 20, 30]
            .iter()
            .map(|e| run(Status::Success, Some(*e)))
            .collect();
        runs.push(run(Status::Running, None));
        assert_eq!(median_ms(&runs), Some(20_000));
        assert_eq!(
            against_median(30_000, 20_000, 3),
            "50% longer than the median (20s) of the last 3 finished runs"
        );
        assert!(against_median(10_000, 20_000, 3).starts_with("50% shorter"));
        assert!(against_median(20_500, 20_000, 3).starts_with("about the median"));
        assert!(trend_svg(&runs).contains("<rect class=\"bar f-success\""));
    }
}
