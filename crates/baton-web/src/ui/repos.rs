//! The repositories page (`/repos`): each repository's URL (without credentials), forge,
//! polling, last fetch and its error, and recent runs (`crate::repos` gathers them, as for
//! `GET /api/v1/repos`); administrators trigger a repository's task at a ref from it.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect};

use baton_core::run::TriggerKind;

use super::format::when;
use super::page::{Nav, PageError, PageResult, not_found, render};
use super::request::{Fields, field, form_user, page_user};
use crate::AppState;

struct RunView {
    id: i64,
    target: String,
    status: String,
    git_ref: String,
    commit: String,
}

struct RepoView {
    name: String,
    forge: String,
    url: String,
    poll: String,
    fetched: String,
    error: String,
    runs: Vec<RunView>,
}

#[derive(Template)]
#[template(path = "repos.html")]
struct ReposTpl {
    nav: Nav,
    repos: Vec<RepoView>,
}

pub(super) async fn repos_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> PageResult {
    let (user, _, nav) = page_user(&s, &headers, &uri).await?;
    let list = crate::repos::repos(&s, &user).await?;
    let repos = list
        .repos
        .into_iter()
        .map(|r| RepoView {
            poll: r.poll_secs.map_or_else(
                || "no (webhooks only)".to_owned(),
                |p| format!("every {p}s"),
            ),
            fetched: match (r.last_fetch_at, r.last_fetch_ok_at) {
                (None, _) => "never".to_owned(),
                (Some(at), Some(ok)) if ok == at => format!("{} (ok)", when(at)),
                (Some(at), Some(ok)) => format!("{} (failed; last success {})", when(at), when(ok)),
                (Some(at), None) => format!("{} (failed; never succeeded)", when(at)),
            },
            error: r.last_fetch_error.unwrap_or_default(),
            runs: r
                .recent_runs
                .into_iter()
                .map(|run| RunView {
                    id: run.id,
                    target: run.target,
                    status: run.status.as_str().to_owned(),
                    git_ref: run
                        .repo
                        .as_ref()
                        .and_then(|c| c.git_ref.clone())
                        .unwrap_or_default(),
                    commit: run
                        .repo
                        .map(|c| c.commit.chars().take(12).collect())
                        .unwrap_or_default(),
                })
                .collect(),
            name: r.name,
            forge: r.forge,
            url: r.url,
        })
        .collect();
    Ok(render(&ReposTpl { nav, repos }))
}

/// `POST /repos/{repo}/trigger` (fields `task`, `ref`): starts `REPO/TASK` at the ref.
pub(super) async fn trigger(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(repo): Path<String>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (_, a, _) = form_user(&s, &headers, &uri, &f).await?;
    let target = format!("{repo}/{}", field(&f, "task").trim());
    if !a.can_see(baton_core::run::TargetKind::Task, &target) {
        return Err(not_found());
    }
    let Some(def) = crate::repos::manual::repo_of(&a.config, &target) else {
        return Err(not_found());
    };
    let git_ref = field(&f, "ref").trim().to_owned();
    let git_ref = (!git_ref.is_empty()).then_some(git_ref.as_str());
    let id = crate::repos::manual::trigger(
        &s,
        &a.config,
        def,
        &target,
        git_ref,
        (TriggerKind::Api, false),
    )
    .await
    .map_err(|e| PageError::Page(e.status, e.message))?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}
