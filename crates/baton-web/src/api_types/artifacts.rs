//! A run's artifacts (`GET /api/v1/runs/{id}/artifacts`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One artifact: a regular file of a job's `out/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactEntry {
    /// Relative to the job's `out/`.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// The media type it is served with (by its extension).
    #[serde(rename = "type")]
    pub content_type: String,
}

/// A job's artifacts (for a job skipped by a cache hit, those of the job it hit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobArtifacts {
    pub job_id: i64,
    pub name: String,
    pub artifacts: Vec<ArtifactEntry>,
}

/// A run's artifacts, per job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunArtifacts {
    pub run_id: i64,
    pub jobs: Vec<JobArtifacts>,
}
