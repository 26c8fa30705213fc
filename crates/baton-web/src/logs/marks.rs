//! `GET /api/v1/runs/{id}/log/marks`: when each part of a job's log arrived, and from which
//! stream (the log's `log.idx`, [`baton_exec::logidx`]).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::job::pick_job;
use crate::api_types::{LogMark, LogMarks};
use crate::auth::{CurrentUser, load_run};
use crate::{ApiError, AppState};

/// The most marks one answer holds.
pub(super) const MAX_MARKS: usize = 10_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MarksQuery {
    /// The job's name (pipelines) or id; optional when the run has one job.
    job: Option<String>,
    /// The first byte of the range (default 0).
    offset: Option<u64>,
    /// The range's length in bytes (default: to the end of the log).
    length: Option<u64>,
    /// The most marks to return (default and at most 10000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/log/marks",
    params(("id" = i64, Path, description = "run id"), MarksQuery),
    responses(
        (status = 200, description = "the marks covering the range: the one in force at `offset`, then every later one before its end", body = crate::api_types::LogMarks),
        (status = 400, description = "a run with several jobs and no `job`, or a parameter that is not a number (`bad_request`)", body = crate::api_types::ErrorBody),
        (status = 401, description = "no or bad credentials", body = crate::api_types::ErrorBody),
        (status = 404, description = "no such run or job, or hidden (`not_found`)", body = crate::api_types::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::api_types::ErrorBody)
    )
)]
pub(crate) async fn marks(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<MarksQuery>, QueryRejection>,
) -> Result<Json<LogMarks>, ApiError> {
    let Path(id) = id?;
    let Query(q) = q?;
    let run = load_run(&s, &user, id).await?;
    let job = pick_job(&run, q.job.as_deref())?;
    let path = s.folders.log_path(job.id, job.attempt);
    let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
    let from = q.offset.unwrap_or(0);
    let to = q.length.map_or(u64::MAX, |l| from.saturating_add(l));
    let limit = q.limit.unwrap_or(MAX_MARKS).clamp(1, MAX_MARKS);
    // One more than asked tells whether the answer was cut short.
    let mut found =
        tokio::task::spawn_blocking(move || baton_exec::read_marks(&path, from, to, limit + 1))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("cannot read the log's index: {e}")))?;
    let next = (found.len() > limit).then(|| found[limit].offset);
    found.truncate(limit);
    Ok(Json(LogMarks {
        job_id: job.id,
        size,
        marks: found.into_iter().map(LogMark::from).collect(),
        next,
    }))
}
