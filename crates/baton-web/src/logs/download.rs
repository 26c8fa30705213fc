//! A job's log as bytes (`GET /api/v1/runs/{id}/log`): whole, from an offset, or a `Range`,
//! streamed from disk in chunks.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::Stream;
use serde::Deserialize;

use super::job::{CHUNK, pick_job};
use crate::auth::CurrentUser;
use crate::auth::load_run;
use crate::range::Ranged;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    /// The job's name (pipelines) or id; optional when the run has one job.
    job: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
}

pub(super) async fn log(
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

fn file_stream(
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
