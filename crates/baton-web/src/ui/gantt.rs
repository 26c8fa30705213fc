//! A run's timing: one bar per job on a shared time axis from the run's queueing (when the job
//! was queued, how long it waited for its DAG dependencies, then for a worker, how long it ran).

use chrono::{DateTime, Utc};

use baton_store::{JobRow, RunRow};

use super::format::dur_ms;

/// One job's bar, in thousandths of the run's span (the SVG's `viewBox` is 1000 wide).
pub(super) struct Bar {
    pub name: String,
    pub status: &'static str,
    /// The wait for its DAG dependencies (from when it was queued until they were done), then
    /// the wait for a worker (until it started), then the run: each a start and a length.
    pub deps_x: i64,
    pub deps_w: i64,
    pub wait_x: i64,
    pub wait_w: i64,
    pub run_x: i64,
    pub run_w: i64,
    /// `waited 1.2s for dependencies, 0.3s for a worker · ran 3.4s`, or `never ran (…)`.
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
    let pipeline = run.kind == baton_core::run::TargetKind::Pipeline;
    jobs.iter()
        .map(|j| {
            let queued = j.queued_at.max(t0);
            // A job that never started waited until it ended (skipped, canceled) or until now.
            let wait_end = j.started_at.unwrap_or_else(|| end_of(j)).max(queued);
            // When its dependencies were done: a task's job was ready when queued; a pipeline
            // job never made ready waited for them all along; one that started without the
            // time recorded (from before Baton kept it) waited for either: not split.
            let ready = match j.ready_at {
                Some(r) => Some(r.clamp(queued, wait_end)),
                None if !pipeline => Some(queued),
                None if j.started_at.is_none() => Some(wait_end),
                None => None,
            };
            let (run_x, run_w, ran) = match j.started_at {
                Some(s) => {
                    let d = ms(s, end_of(j));
                    (scale(ms(t0, s)), scale(d).max(2), Some(d))
                }
                None => (0, 0, None),
            };
            let on_deps = ready.map_or(0, |r| ms(queued, r));
            let on_worker = ms(ready.unwrap_or(queued), wait_end);
            let waited = match (ready, on_deps, on_worker) {
                (None, _, w) => format!("waited {}", dur_ms(w)),
                (_, 0, w) => format!("waited {} for a worker", dur_ms(w)),
                (_, d, 0) => format!("waited {} for dependencies", dur_ms(d)),
                (_, d, w) => format!(
                    "waited {} for dependencies, {} for a worker",
                    dur_ms(d),
                    dur_ms(w)
                ),
            };
            let label = match ran {
                Some(d) => format!("{waited} · ran {}", dur_ms(d)),
                None if baton_core::decide::hit_of(j.reason.as_deref()).is_some() => {
                    "cache hit, not run".to_owned()
                }
                None if baton_core::decide::carried_of(j.reason.as_deref()).is_some() => {
                    "carried over, not run".to_owned()
                }
                None if j.status == baton_core::run::Status::Queued => {
                    format!("{waited} so far")
                }
                None => format!("never ran ({})", j.status),
            };
            Bar {
                name: j.name.clone(),
                status: j.status.as_str(),
                deps_x: scale(ms(t0, queued)),
                deps_w: scale(on_deps),
                wait_x: scale(ms(t0, ready.unwrap_or(queued))),
                wait_w: scale(on_worker),
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
        // No readiness recorded (from before Baton kept it): the wait is not split.
        assert_eq!((b[1].wait_x, b[1].wait_w), (0, 400));
        assert_eq!((b[1].run_x, b[1].run_w), (400, 600));
        assert_eq!(b[1].label, "waited 4.0s · ran 6.0s");
        assert_eq!(
            (b[2].run_w, b[2].label.as_str()),
            (0, "never ran (skipped)")
        );
        // A skipped job never became ready: it waited on its dependencies all along.
        assert_eq!((b[2].deps_x, b[2].deps_w, b[2].wait_w), (0, 1000, 0));
    }

    #[test]
    fn the_wait_splits_into_dependencies_then_a_worker() {
        let mut test = job("test", Some(5), Some(10), Status::Success);
        test.ready_at = Some(t(3));
        let mut queued = job("package", None, None, Status::Queued);
        queued.ready_at = Some(t(8));
        let jobs = [
            job("build", Some(0), Some(3), Status::Success),
            test,
            queued,
        ];
        let b = bars(&run(None), &jobs, t(10));
        // test waited 3 s for build, then 2 s for a worker, then ran 5 s.
        assert_eq!((b[1].deps_x, b[1].deps_w), (0, 300));
        assert_eq!((b[1].wait_x, b[1].wait_w), (300, 200));
        assert_eq!((b[1].run_x, b[1].run_w), (500, 500));
        assert_eq!(
            b[1].label,
            "waited 3.0s for dependencies, 2.0s for a worker · ran 5.0s"
        );
        // build's job started at once: no wait at all.
        assert_eq!((b[0].deps_w, b[0].wait_w), (0, 0));
        // package is ready since 8 s and still waits for a worker.
        assert_eq!((b[2].deps_w, b[2].wait_x, b[2].wait_w), (800, 800, 200));
        assert_eq!(
            b[2].label,
            "waited 8.0s for dependencies, 2.0s for a worker so far"
        );
    }
}
