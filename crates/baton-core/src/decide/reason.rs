//! Why a run ended as it did.

use crate::run::Status;

/// A job of an ended run, for its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonJob<'a> {
    pub name: &'a str,
    pub status: Status,
    pub reason: Option<&'a str>,
    /// A failure of this job does not fail the run.
    pub allow_failure: bool,
    /// When it ended among the run's jobs (`None`: ended without running, sorts first).
    pub ended_seq: Option<u64>,
}

/// The reason of a run that ended with `status`: the reason of the first job that ended with
/// that status — for a failure, the first that was not allowed to fail, as
/// [`crate::run::run_status`] picks it; a job that ran is named before one that ended without
/// running (a canceled pipeline blames the job that was canceled while it ran, not the ones
/// that never started). A pipeline's reason names the job (`task `x` ...`).
/// `None` while the run has not ended, or when that job has no reason.
pub fn run_reason(status: Status, jobs: &[ReasonJob<'_>], pipeline: bool) -> Option<String> {
    if !status.is_terminal() {
        return None;
    }
    let first = jobs
        .iter()
        .filter(|j| j.status == status)
        .filter(|j| !(status.is_failure() && j.allow_failure))
        .min_by_key(|j| (j.ended_seq.is_none(), j.ended_seq))?;
    let why = first.reason?;
    Some(if pipeline {
        format!("task `{}` {why}", first.name)
    } else {
        why.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{JobView, run_status};
    use proptest::prelude::*;

    fn job(name: &str, status: Status, allow_failure: bool, seq: u64) -> ReasonJob<'_> {
        ReasonJob {
            name,
            status,
            reason: Some("why"),
            allow_failure,
            ended_seq: Some(seq),
        }
    }

    #[test]
    fn the_reason_names_the_first_job_that_failed_the_run() {
        let jobs = [
            job("flaky", Status::Failed, true, 1),
            job("bad", Status::Failed, false, 2),
            job("worse", Status::Failed, false, 3),
        ];
        assert_eq!(
            run_reason(Status::Failed, &jobs, true).as_deref(),
            Some("task `bad` why")
        );
        assert_eq!(
            run_reason(Status::Failed, &jobs[1..], false).as_deref(),
            Some("why")
        );
        assert_eq!(run_reason(Status::Running, &jobs, true), None);
        assert_eq!(
            run_reason(
                Status::Success,
                &[job("a", Status::Success, false, 1)],
                true
            ),
            Some("task `a` why".into())
        );
    }

    #[test]
    fn a_canceled_run_names_the_job_that_ran_not_one_that_never_started() {
        let mut never = job("package", Status::Canceled, false, 0);
        never.ended_seq = None;
        let jobs = [never, job("compile", Status::Canceled, false, 4)];
        assert_eq!(
            run_reason(Status::Canceled, &jobs, true).as_deref(),
            Some("task `compile` why")
        );
        // Only jobs that never started: one of them is named.
        assert_eq!(
            run_reason(Status::Canceled, &jobs[..1], true).as_deref(),
            Some("task `package` why")
        );
    }

    fn jobs() -> impl Strategy<Value = Vec<(Status, bool)>> {
        let ended = [
            Status::Success,
            Status::Failed,
            Status::Broken,
            Status::Jammed,
            Status::Canceled,
            Status::Skipped,
        ];
        proptest::collection::vec(
            (proptest::sample::select(ended.to_vec()), any::<bool>()),
            1..8,
        )
    }

    proptest! {
        /// A failed run's reason names a job that failed with the run's status and was not
        /// allowed to fail.
        #[test]
        fn reasons_name_a_job_that_actually_failed(jobs in jobs()) {
            let names: Vec<String> = (0..jobs.len()).map(|i| format!("j{i}")).collect();
            let views: Vec<JobView> = jobs
                .iter()
                .enumerate()
                .map(|(i, (s, a))| JobView { status: *s, allow_failure: *a, ended_seq: i as u64 })
                .collect();
            let status = run_status(&views);
            let rjobs: Vec<ReasonJob<'_>> = jobs
                .iter()
                .enumerate()
                .map(|(i, (s, a))| job(&names[i], *s, *a, i as u64))
                .collect();
            let reason = run_reason(status, &rjobs, true);
            if status.is_failure() {
                let reason = reason.expect("a failed run has a reason");
                let named = reason
                    .strip_prefix("task `")
                    .and_then(|r| r.split('`').next())
                    .unwrap();
                let i: usize = named[1..].parse().unwrap();
                prop_assert_eq!(jobs[i].0, status);
                prop_assert!(!jobs[i].1, "{} was allowed to fail", named);
            }
        }
    }
}
