//! Which job of a run a log request means, and how much of a log is read at once.

use baton_store::{JobRow, RunRow};

use crate::ApiError;

/// How much of a log file is read (and sent) at once.
pub(super) const CHUNK: u64 = 64 * 1024;

pub(super) fn pick_job(run: &RunRow, job: Option<&str>) -> Result<JobRow, ApiError> {
    match job {
        Some(name) => run
            .jobs
            .iter()
            .find(|j| j.name == name || j.id.to_string() == name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("run {} has no job {name:?}", run.id))),
        None if run.jobs.len() == 1 => Ok(run.jobs[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "run {} has {} jobs; pick one with ?job=NAME (one of: {})",
            run.id,
            run.jobs.len(),
            run.jobs
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
