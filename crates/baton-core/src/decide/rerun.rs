//! Rerunning only the failed jobs of a pipeline run: which of the old run's jobs are carried
//! over (their success, results and artifacts referenced, never run again) and which run again
//! (every job that did not succeed, and every job that depends on one of those, transitively).

use std::collections::{BTreeMap, BTreeSet};

use crate::run::Status;

/// The start of a carried-over job's reason.
pub const CARRIED: &str = "carried over: succeeded as job ";

/// A job of the run being rerun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerunJob {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub depends_on: Vec<String>,
    pub status: Status,
    /// Its reason: a cache hit or a carried-over job points at the job that really ran.
    pub reason: Option<String>,
}

/// Why a failed-jobs rerun is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RerunRefusal {
    #[error("run {run} has not ended yet; rerun its failed jobs once it has (or cancel it first)")]
    NotEnded { run: i64 },
    #[error("run {run} is a task, not a pipeline; rerun the whole run instead")]
    NotPipeline { run: i64 },
    #[error(
        "no job of run {run} failed, so there is nothing to rerun; rerun the whole run instead"
    )]
    NothingFailed { run: i64 },
    #[error(
        "a rerun of only the failed jobs of run {run} keeps its arguments (the jobs it carries over ran with them); rerun the whole run to change them"
    )]
    ArgsChanged { run: i64 },
    #[error("run {run} built a repository's commit and takes no arguments; rerun it without any")]
    RepoArgs { run: i64 },
}

/// The reason of a job carried over from `job_id` of `run_id`.
pub fn carried_reason(job_id: i64, run_id: i64) -> String {
    format!("{CARRIED}{job_id} (run {run_id})")
}

/// The job and run a carried-over job's reason points at.
pub fn carried_of(reason: Option<&str>) -> Option<(i64, i64)> {
    let rest = reason?.strip_prefix(CARRIED)?;
    let (job, run) = rest.split_once(" (run ")?;
    Some((job.parse().ok()?, run.strip_suffix(')')?.parse().ok()?))
}

/// The job whose results and artifacts a skipped job shows as its own (a cache hit or a
/// carried-over job), with its run; `None` for a job that ran (or never did).
pub fn result_source(reason: Option<&str>) -> Option<(i64, i64)> {
    super::cache::hit_of(reason).or_else(|| carried_of(reason))
}

/// The jobs of a new run that are carried over from `jobs` (an ended pipeline run), each with
/// its reason (naming the job that really ran); the other jobs run again.
pub fn carried_over(
    run: i64,
    ended: bool,
    pipeline: bool,
    jobs: &[RerunJob],
) -> Result<BTreeMap<String, String>, RerunRefusal> {
    if !pipeline {
        return Err(RerunRefusal::NotPipeline { run });
    }
    if !ended {
        return Err(RerunRefusal::NotEnded { run });
    }
    let succeeded = |j: &RerunJob| {
        j.status == Status::Success
            || (j.status == Status::Skipped && result_source(j.reason.as_deref()).is_some())
    };
    let mut again: BTreeSet<&str> = jobs
        .iter()
        .filter(|j| !succeeded(j))
        .map(|j| j.name.as_str())
        .collect();
    if again.is_empty() {
        return Err(RerunRefusal::NothingFailed { run });
    }
    // Dependents of a job that runs again run again too, to a fixpoint.
    loop {
        let before = again.len();
        for j in jobs {
            if j.depends_on.iter().any(|d| again.contains(d.as_str())) {
                again.insert(&j.name);
            }
        }
        if again.len() == before {
            break;
        }
    }
    Ok(jobs
        .iter()
        .filter(|j| !again.contains(j.name.as_str()))
        .map(|j| {
            let (id, run) = result_source(j.reason.as_deref()).unwrap_or((j.id, j.run_id));
            (j.name.clone(), carried_reason(id, run))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(id: i64, name: &str, deps: &[&str], status: Status) -> RerunJob {
        RerunJob {
            id,
            run_id: 7,
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            status,
            reason: None,
        }
    }

    #[test]
    fn failed_jobs_and_their_dependents_run_again_the_rest_is_carried() {
        let mut cached = j(5, "lint", &[], Status::Skipped);
        cached.reason = Some(super::super::cache::hit_reason(2, 1));
        let mut carried = j(6, "docs", &[], Status::Skipped);
        carried.reason = Some(carried_reason(3, 4));
        let jobs = [
            j(10, "build", &[], Status::Success),
            j(11, "test", &["build"], Status::Failed),
            j(12, "package", &["test"], Status::Skipped),
            j(13, "report", &["build"], Status::Success),
            j(14, "publish", &["report", "package"], Status::Success),
            cached,
            carried,
        ];
        let carry = carried_over(7, true, true, &jobs).unwrap();
        assert_eq!(
            carry.keys().map(String::as_str).collect::<Vec<_>>(),
            ["build", "docs", "lint", "report"]
        );
        assert_eq!(carry["build"], "carried over: succeeded as job 10 (run 7)");
        // A job that was itself a hit or carried over points at the job that ran.
        assert_eq!(carry["lint"], "carried over: succeeded as job 2 (run 1)");
        assert_eq!(carry["docs"], "carried over: succeeded as job 3 (run 4)");
        assert_eq!(carried_of(Some(&carry["build"])), Some((10, 7)));
        assert_eq!(result_source(Some(&carry["lint"])), Some((2, 1)));
    }

    #[test]
    fn canceled_broken_and_plain_skipped_jobs_run_again() {
        let jobs = [
            j(1, "a", &[], Status::Canceled),
            j(2, "b", &[], Status::Broken),
            j(3, "c", &[], Status::Skipped),
            j(4, "d", &[], Status::Success),
        ];
        let carry = carried_over(7, true, true, &jobs).unwrap();
        assert_eq!(carry.keys().collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn a_rerun_of_failed_jobs_is_refused_when_it_makes_no_sense() {
        let ok = [j(1, "a", &[], Status::Success)];
        assert_eq!(
            carried_over(7, true, true, &ok),
            Err(RerunRefusal::NothingFailed { run: 7 })
        );
        let failed = [j(1, "a", &[], Status::Failed)];
        assert_eq!(
            carried_over(7, false, true, &failed),
            Err(RerunRefusal::NotEnded { run: 7 })
        );
        assert_eq!(
            carried_over(7, true, false, &failed),
            Err(RerunRefusal::NotPipeline { run: 7 })
        );
        assert!(
            RerunRefusal::NothingFailed { run: 7 }
                .to_string()
                .contains("nothing to rerun")
        );
    }
}
