//! A job's CI cache record (`GET /api/v1/jobs/{id}/cache`, `baton cache why`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A job and its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLink {
    pub job_id: i64,
    pub run_id: i64,
}

/// A job's cache digest, the job it hit (if it was skipped), or else what made its inputs
/// differ from the last successful job of its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobCacheInfo {
    pub job_id: i64,
    pub run_id: i64,
    /// The task, or `PIPELINE/TASK`.
    pub task: String,
    pub digest: String,
    /// How many input files the digest covers.
    pub inputs: usize,
    /// The job whose results and artifacts are this one's (it was not run).
    pub hit: Option<JobLink>,
    /// The last earlier job of the task that ran and succeeded.
    pub compared_with: Option<JobLink>,
    /// What differs from `compared_with` (files added, removed or changed, the definition,
    /// the image, environment variables by name, the key).
    pub differences: Vec<String>,
}
