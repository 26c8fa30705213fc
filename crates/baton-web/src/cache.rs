//! `GET /api/v1/jobs/{id}/cache`: a job's CI cache record, the job it hit, or what made its
//! inputs differ from the last successful job of its task (`baton cache why`).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use baton_results::cache::CacheFacts;

use crate::api_types::{JobCacheInfo, JobLink};
use crate::{ApiError, AppState, CurrentUser};

fn facts(json: &str) -> CacheFacts {
    serde_json::from_str(json).unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/cache",
    params(("id" = i64, Path, description = "job id")),
    responses(
        (status = 200, description = "the job's cache digest and why it hit or missed", body = crate::api_types::JobCacheInfo),
        (status = 400, description = "an id or query parameter that is not a number (`bad_request`)", body = crate::api_types::ErrorBody),
        (status = 401, description = "no or bad credentials", body = crate::api_types::ErrorBody),
        (status = 404, description = "no such job with a cache record, or hidden (`not_found`)", body = crate::api_types::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::api_types::ErrorBody)
    )
)]
pub(crate) async fn job_cache(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<JobCacheInfo>, ApiError> {
    let Path(id) = id?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job {id} has no cache record (its task has no cache:, or it has not started)"),
        )
    };
    let rec = s.store.job_cache(id).await?.ok_or_else(not_found)?;
    let run = s.store.get_run(rec.run_id).await?.ok_or_else(not_found)?;
    // A hidden run's job answers exactly like a missing one.
    if !crate::auth::Access::of(&s, &user)
        .await?
        .can_see(run.kind, &run.target)
    {
        return Err(not_found());
    }
    let mine = facts(&rec.facts);
    let previous = match rec.hit {
        Some(_) => None,
        None => s.store.previous_cache_source(&rec).await?,
    };
    let differences = previous
        .as_ref()
        .map(|p| mine.differences(&facts(&p.facts)))
        .unwrap_or_default();
    Ok(Json(JobCacheInfo {
        job_id: rec.job_id,
        run_id: rec.run_id,
        task: rec.task.clone(),
        digest: rec.digest.clone(),
        inputs: mine.files.len(),
        hit: rec.hit.map(|(job_id, run_id)| JobLink { job_id, run_id }),
        compared_with: previous.map(|p| JobLink {
            job_id: p.job_id,
            run_id: p.run_id,
        }),
        differences,
    }))
}
