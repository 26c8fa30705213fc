//! A run's timing: one bar per job on a shared time axis from the run's queueing (when the job
//! was queued, how long it waited, how long it ran).

use chrono::{DateTime, Utc};

use baton_store::{JobRow, RunRow};

use super::format::dur_ms;

/// One job's bar, in thousandths of the run's span (the SVG's `viewBox` is 1000 wide).
pub(super) struct Bar {
    pub name: String,
    pub status: &'static str,
    /// Where the wait starts (the job was queued), its length, then the run's start and length.
    pub wait_x: i64,
    pub wait_w: i64,
    pub run_x: i64,
    pub run_w: i64,
    /// `waited 1.2s · ran 3.4s`, or `never ran`.
    pub label: String,
}

pub(super) fn ms(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
    (b - a).num_milliseconds().max(0)
}

/// The bars of a run's jobs (in the order given), measured up to `now` while it runs.
pub(super) fn bars(run: &RunRow, jobs: &[JobRow], now: DateTime<Utc>) -> Vec<Bar> {
    let t0 = run.enqueued_at;
    let end_of = |j: &JobRow| j.ended_at.unwrap_or(now);
    let last = jobs
        .iter()
        .map(|j| {
            if j.started_at.is_some() {
                end_of(j)
            } else {
                j.queued_at
            }
        })
        .chain(run.ended_at)
        .max()
        .unwrap_or(now);
    let span = ms(t0, last).max(1);
    let scale = |d: i64| (d * 1000 / span).clamp(0, 1000);
    jobs.iter()
        .map(|j| {
            let queued = j.queued_at.max(t0);
            // A job that never started waited until it ended (skipped, canceled) or until now.
            let wait_end = j.started_at.unwrap_or_else(|| end_of(j)).max(queued);
            let (run_x, run_w, ran) = match j.started_at {
                Some(s) => {
                    let d = ms(s, end_of(j));
                    (scale(ms(t0, s)), scale(d).max(2), Some(d))
                }
                None => (0, 0, None),
            };
            let waited = ms(queued, wait_end);
            let label = match ran {
                Some(d) => format!("waited {} · ran {}", dur_ms(waited), dur_ms(d)),
                None if baton_core::decide::hit_of(j.reason.as_deref()).is_some() => {
                    "cache hit, not run".to_owned()
                }
                None if baton_core::decide::carried_of(j.reason.as_deref()).is_some() => {
                    "carried over, not run".to_owned()
                }
                None => format!("never ran ({})", j.status),
            };
            Bar {
                name: j.name.clone(),
                status: j.status.as_str(),
                wait_x: scale(ms(t0, queued)),
                wait_w: scale(waited),
                run_x,
                run_w,
                label,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::run::{Status, TargetKind, TriggerKind};
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn job(name: &str, started: Option<i64>, ended: Option<i64>, status: Status) -> JobRow {
        let mut j = JobRow::queued(1, 1, name, t(0), Default::default());
        j.started_at = started.map(t);
        j.ended_at = ended.map(t);
        j.status = status;
        j
    }

    fn run(ended: Option<i64>) -> RunRow {
        RunRow {
            id: 1,
            kind: TargetKind::Pipeline,
            target: "p".into(),
            trigger: TriggerKind::Api,
            args: Default::default(),
            tags: vec![],
            definition: serde_json::Value::Null,
            status: Status::Success,
            reason: None,
            priority: 0,
            partition: None,
            enqueued_at: t(0),
            not_before: None,
            started_at: Some(t(0)),
            ended_at: ended.map(t),
            jobs: vec![],
            ancestors: vec![],
            descendants: vec![],
            repo: None,
        }
    }

    #[test]
    fn bars_share_the_runs_time_axis() {
        let jobs = [
            job("build", Some(0), Some(4), Status::Success),
            job("test", Some(4), Some(10), Status::Failed),
            job("publish", None, Some(10), Status::Skipped),
        ];
        let b = bars(&run(Some(10)), &jobs, t(99));
        assert_eq!((b[0].run_x, b[0].run_w), (0, 400));
        // test waited 4 s for build, then ran 6 s.
        assert_eq!((b[1].wait_x, b[1].wait_w), (0, 400));
        assert_eq!((b[1].run_x, b[1].run_w), (400, 600));
        assert_eq!(b[1].label, "waited 4.0s · ran 6.0s");
        assert_eq!(
            (b[2].run_w, b[2].label.as_str()),
            (0, "never ran (skipped)")
        );
    }
}
