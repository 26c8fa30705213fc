//! Artifact downloads from the web UI.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;

use super::page::{PageResult, not_found};
use super::request::page_user;
use super::run::visible_run;
use crate::AppState;
use crate::range::Ranged;

/// Serves one artifact: a regular file inside the job's `out/` folder, opened without following
/// any symlink (`crate::artifacts`); anything else is a 404. `Range` works as on logs.
pub(super) async fn artifact(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(i64, i64, String)>, axum::extract::rejection::PathRejection>,
) -> PageResult {
    let (_, a, _) = page_user(&s, &headers, &uri).await?;
    // A link that is not `/runs/N/artifacts/JOB_ID/PATH` leads nowhere: the 404 page.
    let Path((id, job_id, rel)) = path.map_err(|_| not_found())?;
    let run = visible_run(&s, &a, id).await?;
    // `?inline=1`: opened in the browser (text, or an `index.html` as a sandboxed page).
    let inline = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "inline=1"));
    let kind = crate::artifacts::content_type(&rel);
    let job = run
        .jobs
        .iter()
        .find(|j| j.id == job_id)
        .ok_or_else(not_found)?;
    let shelf = crate::artifact_store::shelf_of(&s, job).await;
    let art = shelf.open(&rel).await.ok_or_else(not_found)?;
    let size = art.size();
    let (start, len) = match crate::range::of_request(&headers, size) {
        Ranged::Full => (0, size),
        Ranged::Part { start, end } => (start, end - start + 1),
        Ranged::Unsatisfiable => {
            return Ok(crate::range::unsatisfiable(&headers, size, "artifact"));
        }
    };
    let name = rel
        .rsplit('/')
        .next()
        .unwrap_or(&rel)
        .replace(['"', '\\', '\r', '\n'], "_");
    let mut resp = Response::new(Body::from_stream(art.stream(start, len).await));
    if len != size {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            Ranged::content_range(start, start + len - 1, size),
        );
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let disposition = if inline { "inline" } else { "attachment" };
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Sandboxed (an opaque origin, no scripts): an HTML artifact opened in the browser cannot
    // act as the user or read Baton's pages.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::headers::ARTIFACT_CSP),
    );
    Ok(resp)
}
