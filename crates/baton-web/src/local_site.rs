//! `baton web`: a read-only site of one repository's stored local runs, served from its refs
//! (no database, no server config): branches with their recent commits and runs, and each run's
//! own tree (`index.html`, logs, artifacts) under `/runs/{id}/`.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use baton_git::LocalRepo;
use baton_local::history;

/// Commits shown per branch.
const COMMITS_PER_BRANCH: usize = 20;

struct RunLink {
    id: String,
    status: String,
    targets: String,
    dirty: bool,
}

struct CommitRow {
    id: String,
    short: String,
    subject: String,
    runs: Vec<RunLink>,
}

struct Branch {
    name: String,
    commits: Vec<CommitRow>,
}

#[derive(Template)]
#[template(path = "local_site.html")]
struct SiteTpl {
    name: String,
    css: String,
    branches: Vec<Branch>,
}

/// The site of `repo`'s runs.
pub fn router(repo: LocalRepo) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/runs/{id}/", get(run_index))
        .route("/runs/{id}/{*path}", get(run_file))
        .with_state(Arc::new(repo))
}

fn fail(status: StatusCode, e: impl std::fmt::Display) -> Response {
    (status, e.to_string()).into_response()
}

async fn index(State(repo): State<Arc<LocalRepo>>) -> Response {
    let heads = match repo.refs("refs/heads/").await {
        Ok(h) => h,
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let mut branches = Vec::new();
    for (name, _) in heads {
        let commits = match history::commits_with_runs(&repo, &name, COMMITS_PER_BRANCH).await {
            Ok(c) => c,
            Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let commits = commits
            .into_iter()
            .map(|c| CommitRow {
                short: c.id.as_str()[..10].to_owned(),
                id: c.id.to_string(),
                subject: c.subject,
                runs: c
                    .runs
                    .into_iter()
                    .map(|(run, rec)| RunLink {
                        status: rec.as_ref().map_or("unknown".into(), |r| r.status.clone()),
                        targets: rec.as_ref().map_or(String::new(), |r| r.targets.join(", ")),
                        dirty: rec.as_ref().is_some_and(|r| r.dirty),
                        id: run.id,
                    })
                    .collect(),
            })
            .collect();
        let name = name.trim_start_matches("refs/heads/").to_owned();
        branches.push(Branch { name, commits });
    }
    let top = repo.top().unwrap_or(repo.git_dir());
    let tpl = SiteTpl {
        name: top
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        css: crate::local_page::inline_css(),
        branches,
    };
    match tpl.render() {
        Ok(html) => file_response("index.html", html.into_bytes()),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn run_index(State(repo): State<Arc<LocalRepo>>, Path(id): Path<String>) -> Response {
    serve(&repo, &id, "index.html").await
}

async fn run_file(
    State(repo): State<Arc<LocalRepo>>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    serve(&repo, &id, &path).await
}

async fn serve(repo: &LocalRepo, id: &str, path: &str) -> Response {
    let run = match history::find(repo, id).await {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::NOT_FOUND, e),
    };
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
        return fail(StatusCode::NOT_FOUND, "no such file in the run");
    }
    match repo.read_file(&run.refname, path).await {
        Ok(Some(bytes)) => file_response(path, bytes),
        Ok(None) => fail(StatusCode::NOT_FOUND, format!("run {id} has no {path}")),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A file of a run: HTML may style itself but run nothing and load nothing; logs and text are
/// plain text; anything else is a download.
fn file_response(path: &str, bytes: Vec<u8>) -> Response {
    let kind = if path.ends_with(".html") {
        "text/html; charset=utf-8"
    } else if path.ends_with("/log") || path.ends_with(".txt") || path.ends_with(".json") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    resp
}
