//! A run's artifacts over the API: their listing with sizes and types
//! (`GET /api/v1/runs/{id}/artifacts`) and one `.tar.gz` of the run's (or one job's) artifacts
//! (`GET /api/v1/runs/{id}/artifacts.tar.gz?job=ID`), streamed as it is made: files are read
//! one at a time through `crate::artifacts` (never a symlink, never outside `out/`) and the
//! archive is written on a blocking thread into a small channel, so memory stays flat whatever
//! the size.

use std::io::Write;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;

use crate::api_types::{ArtifactEntry, JobArtifacts, RunArtifacts};
use crate::artifact_store::{BlockingReader, Shelf, shelf_of};
use crate::{ApiError, AppState, CurrentUser};

/// The run's jobs (all, or the one `job` names) with where their artifacts are.
async fn job_folders(
    s: &AppState,
    run: &baton_store::RunRow,
    job: Option<i64>,
) -> Result<Vec<(i64, String, Shelf)>, ApiError> {
    let mut out = Vec::new();
    for j in run.jobs.iter().filter(|j| job.is_none_or(|id| id == j.id)) {
        out.push((j.id, j.name.clone(), shelf_of(s, j).await));
    }
    if out.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "job_not_found",
            format!("run {} has no job {}", run.id, job.unwrap_or_default()),
        ));
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/artifacts",
    params(("id" = i64, Path, description = "run id")),
    responses(
        (status = 200, description = "each job's artifacts with sizes and types", body = crate::api_types::RunArtifacts),
        (status = 400, description = "an id or query parameter that is not a number (`bad_request`)", body = crate::api_types::ErrorBody),
        (status = 401, description = "no or bad credentials", body = crate::api_types::ErrorBody),
        (status = 404, description = "no such run, or hidden (`run_not_found`)", body = crate::api_types::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::api_types::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<RunArtifacts>, ApiError> {
    let Path(id) = id?;
    let run = crate::auth::load_run(&s, &user, id).await?;
    let mut jobs = Vec::new();
    for (job_id, name, shelf) in job_folders(&s, &run, None).await? {
        let files = shelf.list().await;
        let artifacts = files
            .into_iter()
            .map(|(path, size)| ArtifactEntry {
                content_type: crate::artifacts::content_type(&path).to_owned(),
                path,
                size,
            })
            .collect();
        jobs.push(JobArtifacts {
            job_id,
            name,
            artifacts,
        });
    }
    Ok(Json(RunArtifacts { run_id: id, jobs }))
}

/// `?job=ID`: only that job's artifacts.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ArchiveQuery {
    job: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/artifacts.tar.gz",
    params(("id" = i64, Path, description = "run id"), ArchiveQuery),
    responses(
        (status = 200, description = "the artifacts as a gzipped tar, streamed (a run's: one folder per job)", content_type = "application/gzip"),
        (status = 400, description = "an id or query parameter that is not a number (`bad_request`)", body = crate::api_types::ErrorBody),
        (status = 401, description = "no or bad credentials", body = crate::api_types::ErrorBody),
        (status = 404, description = "no such run or job, or hidden", body = crate::api_types::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::api_types::ErrorBody)
    )
)]
pub(crate) async fn tar_gz(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<ArchiveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let Query(q) = q?;
    let run = crate::auth::load_run(&s, &user, id).await?;
    let folders = job_folders(&s, &run, q.job).await?;
    let one_job = q.job.is_some();
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let sender = tx.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_archive(&handle, &folders, one_job, ChannelWriter(sender)) {
            tracing::warn!(run = id, "artifact archive cut short: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    let name = match q.job {
        Some(job) => format!("run-{id}-job-{job}-artifacts.tar.gz"),
        None => format!("run-{id}-artifacts.tar.gz"),
    };
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Hands the archive's bytes to the response body; fails once the client went away.
struct ChannelWriter(mpsc::Sender<std::io::Result<Vec<u8>>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the jobs' artifacts as a gzipped tar: `JOB/PATH` for a run (a job's `/` becomes
/// `-`), `PATH` for one job. A file that changed or vanished since it was listed is left out.
fn write_archive(
    handle: &tokio::runtime::Handle,
    folders: &[(i64, String, Shelf)],
    one_job: bool,
    w: ChannelWriter,
) -> std::io::Result<()> {
    let buffered = std::io::BufWriter::with_capacity(64 * 1024, w);
    let gz = flate2::write::GzEncoder::new(buffered, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (_, name, shelf) in folders {
        let prefix = if one_job {
            String::new()
        } else {
            format!("{}/", name.replace('/', "-"))
        };
        for (rel, _) in handle.block_on(shelf.list()) {
            let Some(a) = handle.block_on(shelf.open(&rel)) else {
                continue;
            };
            let size = a.size();
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            let reader = BlockingReader::new(handle.clone(), a);
            let mut reader = std::io::Read::take(reader, size);
            tar.append_data(&mut h, format!("{prefix}{rel}"), &mut reader)?;
        }
    }
    tar.into_inner()?.finish()?.flush()
}
