//! Logs: byte ranges of a job's log file, and a live follow over Server-Sent Events that resumes
//! from any offset (`Last-Event-ID` or `?offset=`). Both read the file the supervisor appends to;
//! memory stays bounded whatever the log's size. Live viewers of a job share one watcher of its
//! log ([`hub`]); [`follow`] is what each of them runs.

mod follow;
mod hub;

pub(crate) use hub::LogHub;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use baton_store::{JobRow, RunRow};

use crate::api::load_run;
use crate::auth::{Access, CurrentUser};
use crate::range::Ranged;
use crate::{ApiError, AppState};

pub(super) const CHUNK: u64 = 64 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/log", get(log))
        .route("/runs/{id}/log/stream", get(follow::stream))
        .route("/events", get(events))
}

/// SSE: a `change` event whenever runs the caller may see change state, at most about once a
/// second, carrying `{"runs": [ids]}` (and `"config": true` when the config in force changed);
/// the UI refreshes its lists on it. Changes to runs the caller may not see send nothing: not
/// even their timing reaches them.
async fn events(
    State(s): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    // Subscribe before anything else, so no change after the answer's headers is missed.
    let rx = s.sched.subscribe();
    let access = Access::of(&s, &user).await?;
    let events = futures::stream::unfold((rx, access), |(mut rx, mut access)| async move {
        let mut runs = std::collections::BTreeSet::new();
        let mut config = false;
        let mut deadline = None;
        loop {
            let next = match deadline {
                None => rx.recv().await,
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => break, // the window is over: tell what gathered
                },
            };
            match next {
                Ok(batch) => {
                    if let Some(c) = &batch.config {
                        access = Access {
                            config: c.clone(),
                            who: access.who.clone(),
                        };
                        config = true;
                    }
                    runs.extend(
                        batch
                            .runs
                            .iter()
                            .filter(|r| access.can_see(r.kind, &r.target))
                            .map(|r| r.id),
                    );
                }
                // Fell behind: what was missed is unknown, so only an administrator (who may
                // see everything) is told to refresh.
                Err(RecvError::Lagged(_)) => config |= access.is_admin(),
                Err(RecvError::Closed) => return None,
            }
            if deadline.is_none() && (config || !runs.is_empty()) {
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            }
        }
        let mut data = json!({ "runs": runs });
        if config {
            data["config"] = json!(true);
        }
        let ev = Event::default().event("change").data(data.to_string());
        Some((Ok::<_, Infallible>(ev), (rx, access)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// The job's name (pipelines) or id; optional when the run has one job.
    job: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
}

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

async fn log(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<LogQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let Query(q) = q?;
    let run = load_run(&s, &user, id).await?;
    let job = pick_job(&run, q.job.as_deref())?;
    let path = s.folders.log_path(job.id, job.attempt);
    let size = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let (start, len, partial) = if headers.contains_key(header::RANGE) {
        match crate::range::of_request(&headers, size) {
            Ranged::Full => (0, size, false),
            Ranged::Part { start, end } => (start, end - start + 1, true),
            Ranged::Unsatisfiable => return Ok(crate::range::unsatisfiable(&headers, size, "log")),
        }
    } else {
        let start = q.offset.unwrap_or(0);
        if start > size {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                format!("offset {start} is past the end of the log ({size} bytes)"),
            ));
        }
        let len = q.length.unwrap_or(u64::MAX).min(size - start);
        (start, len, q.offset.is_some())
    };
    // Large logs stream from disk in chunks; memory stays bounded.
    let stream = file_stream(path, start, len);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("x-log-size", HeaderValue::from(size));
    h.insert(
        "x-job-status",
        HeaderValue::from_static(job.status.as_str()),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if partial && len > 0 {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            Ranged::content_range(start, start + len - 1, size),
        );
    }
    Ok(resp)
}

pub(crate) fn file_stream(
    path: std::path::PathBuf,
    start: u64,
    len: u64,
) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold((start, len), move |(pos, left)| {
        let path = path.clone();
        async move {
            if left == 0 {
                return None;
            }
            let want = left.min(CHUNK);
            let res =
                tokio::task::spawn_blocking(move || baton_exec::read_log_range(&path, pos, want))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match res {
                Ok(bytes) if bytes.is_empty() => None,
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    Some((Ok(bytes), (pos + n, left - n)))
                }
                Err(e) => Some((Err(e), (pos, 0))),
            }
        }
    })
}
