//! `POST /api/v1/callbacks/jobs/{job_id}`: a remote worker reports that a job ended.
//!
//! Not behind bearer auth: the caller is a job's runner on a worker, which holds only that job's
//! own token (header `X-Baton-Job-Token`). The token is checked in constant time by
//! [`baton_exec::CallbackHub`] and dies with the job. The body (the exit code) is not trusted:
//! the callback only wakes the executor, which reads the job's end from the worker itself.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use baton_exec::CallbackError;

use crate::{ApiError, AppState};

/// The header that carries the job's token.
pub const TOKEN_HEADER: &str = "x-baton-job-token";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/callbacks/jobs/{job_id}", post(job_ended))
}

async fn job_ended(
    State(s): State<AppState>,
    Path(job_id): Path<i64>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing X-Baton-Job-Token header (job callbacks come from a job's runner on a worker)",
            )
        })?;
    match s.callbacks.deliver(job_id, token) {
        Ok(()) => {
            tracing::info!(job_id, "job end reported by its worker");
            Ok(Json(json!({"status": "ok"})))
        }
        Err(e @ CallbackError::UnknownJob(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ CallbackError::BadToken(_)) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            e.to_string(),
        )),
    }
}
