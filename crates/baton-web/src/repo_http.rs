//! `/api/v1/jobs/{job}/{attempt}/repo.git/…`: the repository of a running job, served read-only
//! over git's smart HTTP protocol to that job alone, so SSH workers and agents check out its
//! commit from the server's mirror and need no forge credentials or route to the forge.
//!
//! Not behind the normal API auth: the caller is a job's runner on an SSH worker (header
//! `X-Baton-Job-Token`, checked by [`baton_exec::CallbackHub`], dead when the job ends) or the
//! agent the job is assigned to (its agent credential as a bearer token). Only fetches are
//! served (`baton_git::serve_http` refuses pushes); a job without a repository is a 404.
//! When the job's commit has submodules or LFS files, the ref advertisement first makes sure
//! the mirror holds its flattened tree (`Mirror::flat_commit`: the server's checkout with
//! them), which the runner fetches after the commit, so workers get them with no credentials.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use baton_exec::CallbackError;

use crate::callbacks::TOKEN_HEADER;
use crate::{ApiError, AppState};

/// The largest fetch request accepted (want and have lines; a clone's is a few KiB).
const MAX_REQUEST: usize = 16 * 1024 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/jobs/{job}/{attempt}/repo.git/info/refs",
            get(advertise),
        )
        .route(
            "/api/v1/jobs/{job}/{attempt}/repo.git/git-upload-pack",
            post(upload_pack).layer(DefaultBodyLimit::max(MAX_REQUEST)),
        )
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// What a job's fetch reads: its repository's mirror, and the commit it checks out.
struct JobCode {
    mirror: std::path::PathBuf,
    repo: baton_store::RunRepo,
    commit: Option<String>,
}

/// Checks that the caller holds job `job`'s credential; the code the job builds.
async fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    job: i64,
    attempt: u32,
) -> Result<JobCode, ApiError> {
    if let Some(token) = headers.get(TOKEN_HEADER) {
        let token = token.to_str().unwrap_or_default().trim();
        match s.callbacks.check(job, token) {
            Ok(()) => {}
            Err(e @ CallbackError::UnknownJob(_)) => {
                return Err(ApiError::not_found(e.to_string()));
            }
            Err(e @ CallbackError::BadToken(_)) => return Err(unauthorized(e.to_string())),
        }
    } else if headers.contains_key(header::AUTHORIZATION) {
        let agent = crate::agents::agent_of(s, headers).await?;
        crate::agents::job_dir(s, &agent, job, attempt).await?;
    } else {
        return Err(unauthorized(
            "missing X-Baton-Job-Token or agent credential (a job's repository is served to that job only)",
        ));
    }
    let dir = s.folders.job_dir(job, attempt);
    let no_repo =
        || ApiError::not_found(format!("job {job} attempt {attempt} builds no repository"));
    let spec = tokio::fs::read(dir.join(baton_exec::layout::SPEC_FILE))
        .await
        .map_err(|_| no_repo())?;
    let spec: baton_exec::JobSpec = serde_json::from_slice(&spec).map_err(|_| no_repo())?;
    let run = s.store.get_run(spec.run_id).await?.ok_or_else(no_repo)?;
    let repo = run.repo.ok_or_else(no_repo)?;
    Ok(JobCode {
        mirror: s.folders.repo_mirror(&repo.repo),
        repo,
        commit: spec.checkout,
    })
}

/// Makes sure the mirror holds the flattened tree of the job's commit when it has submodules
/// or LFS files (made with the repository's credentials, like a server checkout).
async fn prepare_flat(s: &AppState, code: &JobCode) -> Result<(), ApiError> {
    let Some(commit) = code.commit.as_deref() else {
        return Ok(());
    };
    let fail = |e: &dyn std::fmt::Display| {
        tracing::warn!(
            repo = code.repo.repo,
            commit,
            "cannot prepare the checkout's submodules and LFS files: {e}"
        );
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "checkout_failed",
            format!("cannot prepare the submodules and LFS files of commit {commit}: {e}"),
        )
    };
    let commit = baton_git::Oid::parse(commit).map_err(|e| fail(&e))?;
    let config = s.sched.config().await?;
    let env = config
        .repos
        .get(&code.repo.repo)
        .and_then(|def| baton_sched::git_env(&config, def).ok())
        .unwrap_or_default();
    let mirror = baton_git::Mirror::ensure_with(&code.repo.url, &code.mirror, env)
        .await
        .map_err(|e| fail(&e))?;
    mirror.flat_commit(&commit).await.map_err(|e| fail(&e))?;
    Ok(())
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn serve(
    s: AppState,
    headers: HeaderMap,
    p: Result<Path<(i64, u32)>, PathRejection>,
    method: Method,
    path: &str,
    query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Path((job, attempt)) = p?;
    let code = authorize(&s, &headers, job, attempt).await?;
    if path == "info/refs" {
        prepare_flat(&s, &code).await?;
    }
    let mirror = code.mirror;
    let req = baton_git::HttpRequest {
        method: method.as_str().to_owned(),
        path: path.to_owned(),
        query: query.unwrap_or_default(),
        content_type: header_text(&headers, &header::CONTENT_TYPE),
        content_encoding: header_text(&headers, &header::CONTENT_ENCODING),
        git_protocol: header_text(&headers, &HeaderName::from_static("git-protocol")),
        body: body.to_vec(),
    };
    let answer = baton_git::serve_http(&mirror, req)
        .await
        .map_err(|e| match e {
            baton_git::GitError::BadArgument { .. } => ApiError::bad_request(e.to_string()),
            e => {
                tracing::warn!(job, attempt, "cannot serve the job's repository: {e}");
                ApiError::internal(format!("cannot serve job {job}'s repository"))
            }
        })?;
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (k, v) in &answer.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            resp = resp.header(k, v);
        }
    }
    let stream = tokio_util::io::ReaderStream::new(answer.body);
    resp.body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn advertise(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(i64, u32)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    serve(s, headers, p, Method::GET, "info/refs", query, Bytes::new()).await
}

async fn upload_pack(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(i64, u32)>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    serve(s, headers, p, Method::POST, "git-upload-pack", None, body).await
}
