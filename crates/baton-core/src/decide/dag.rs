//! A pipeline run's DAG: which jobs are ready, skipped or canceled, and what a job waits for.

use std::collections::{BTreeMap, BTreeSet};

use crate::run::Status;

/// A pipeline job's view for DAG decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagJob {
    pub name: String,
    pub depends_on: Vec<String>,
    pub status: Status,
    pub allow_failure: bool,
    /// Skipped by a cache hit: its inputs already passed, so it counts as a success.
    pub cached: bool,
}

/// What to do with the queued jobs of a pipeline run after its jobs' statuses changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagStep {
    /// Queued jobs whose dependencies all succeeded: they may be dispatched.
    pub ready: BTreeSet<String>,
    /// Queued jobs that will never run, with the reason (`skipped`).
    pub skip: BTreeMap<String, String>,
    /// Queued or active jobs to cancel because the pipeline fails fast.
    pub cancel: BTreeMap<String, String>,
}

fn counts_as_success(j: &DagJob) -> bool {
    j.status == Status::Success
        || (j.status == Status::Skipped && j.cached)
        || (j.allow_failure && j.status.is_failure())
}

/// Walks a pipeline run's DAG. A failed job (not `allow_failure`) either cancels every other
/// unfinished job (fail fast, prunner's default) or, with `continue_after_failure`, skips only
/// the jobs that depend on it, transitively.
pub fn dag_step(jobs: &[DagJob], continue_after_failure: bool) -> DagStep {
    let by_name: BTreeMap<&str, &DagJob> = jobs.iter().map(|j| (j.name.as_str(), j)).collect();
    let mut step = DagStep::default();
    let failed: Vec<&DagJob> = jobs
        .iter()
        .filter(|j| j.status.is_failure() && !j.allow_failure)
        .collect();
    if let Some(first) = failed.first()
        && !continue_after_failure
    {
        for j in jobs.iter().filter(|j| !j.status.is_terminal()) {
            step.cancel.insert(
                j.name.clone(),
                format!(
                    "canceled: task `{}` {} (fail fast)",
                    first.name, first.status
                ),
            );
        }
        return step;
    }
    // Skipped/failed propagate transitively: iterate to a fixpoint over the queued jobs.
    let mut doomed: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut changed = false;
        for j in jobs.iter().filter(|j| j.status == Status::Queued) {
            if doomed.contains_key(&j.name) {
                continue;
            }
            for dep in &j.depends_on {
                let dep_dead = match by_name.get(dep.as_str()) {
                    Some(d) => {
                        (d.status.is_terminal() && !counts_as_success(d))
                            || doomed.contains_key(dep)
                    }
                    None => true,
                };
                if dep_dead {
                    doomed.insert(
                        j.name.clone(),
                        format!("skipped: dependency `{dep}` did not succeed"),
                    );
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for j in jobs.iter().filter(|j| j.status == Status::Queued) {
        if doomed.contains_key(&j.name) {
            continue;
        }
        let deps_done = j.depends_on.iter().all(|d| {
            by_name
                .get(d.as_str())
                .is_some_and(|d| counts_as_success(d))
        });
        if deps_done {
            step.ready.insert(j.name.clone());
        }
    }
    step.skip = doomed;
    step
}

/// The first thing a queued pipeline job waits for, for its reason.
pub fn dag_wait_reason(job: &DagJob, jobs: &[DagJob]) -> Option<String> {
    let pending: Vec<&str> = job
        .depends_on
        .iter()
        .filter(|d| {
            jobs.iter()
                .find(|j| &j.name == *d)
                .is_some_and(|j| !j.status.is_terminal())
        })
        .map(String::as_str)
        .collect();
    (!pending.is_empty()).then(|| {
        format!(
            "queued: waiting for {}",
            pending
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}
