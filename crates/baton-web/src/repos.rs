//! Repositories for users: `GET /api/v1/repos` and the `/repos` page (each repository's URL
//! without credentials, forge, polling, last fetch and its error, recent runs); hand triggers
//! of a repository's task (`manual`), the poller of repositories with `poll:` (`poll`), and
//! the timers of repositories' tasks with `on: schedule:` (`schedules`).

pub(crate) mod manual;
pub(crate) mod poll;
pub(crate) mod schedules;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::api_types as t;
use crate::auth::{Access, CurrentUser};
use crate::{ApiError, AppState};

/// How many recent runs each repository shows.
const RECENT_RUNS: u32 = 5;

pub(crate) fn api_routes() -> Router<AppState> {
    Router::new().route("/repos", get(list))
}

#[utoipa::path(get, path = "/api/v1/repos",
    responses(
        (status = 200, description = "the repositories, their last fetch and recent runs", body = t::RepoList),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: CurrentUser,
) -> Result<Json<t::RepoList>, ApiError> {
    Ok(Json(repos(&st, &user).await?))
}

/// The repositories as `user` may see them: those whose own tasks they may see.
pub(crate) async fn repos(st: &AppState, user: &CurrentUser) -> Result<t::RepoList, ApiError> {
    let a = Access::of(st, user).await?;
    let fetches = st.store.repo_fetches().await?;
    let mut repos = Vec::new();
    // A repository is listed to administrators and to the users its `authorized_users` admit.
    let listed = a
        .config
        .repos
        .values()
        .filter(|r| baton_core::access::can_see_repo(&a.who, &a.config.administrators, r));
    for r in listed {
        let fetch = fetches.get(&r.name);
        let recent_runs = st
            .store
            .repo_runs(&r.name, RECENT_RUNS)
            .await?
            .into_iter()
            .filter(|run| a.can_see(run.kind, &run.target))
            .map(t::Run::from)
            .collect();
        repos.push(t::Repo {
            name: r.name.clone(),
            url: without_credentials(&r.url),
            forge: r.forge.as_str().to_owned(),
            branches: r.branches.clone(),
            poll_secs: r.poll.map(|p| p.as_secs()),
            last_fetch_at: fetch.map(|f| f.fetched_at),
            last_fetch_ok_at: fetch.and_then(|f| f.ok_at),
            last_fetch_error: fetch.and_then(|f| f.error.clone()),
            last_poll_at: fetch.and_then(|f| f.polled_at),
            recent_runs,
        });
    }
    Ok(t::RepoList { repos })
}

/// `https://user:token@host/x` → `https://host/x`; other URLs as they are (an ssh user such as
/// `git@` is not a credential).
pub(crate) fn without_credentials(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(i + 3);
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials as w;

    #[test]
    fn credentials_are_dropped_from_urls() {
        assert_eq!(
            w("https://ada:s3cret@example.com/a/b.git"),
            "https://example.com/a/b.git"
        );
        assert_eq!(w("https://tok@example.com/a"), "https://example.com/a");
        assert_eq!(w("https://example.com/a@b"), "https://example.com/a@b");
        assert_eq!(w("git@github.com:o/r.git"), "git@github.com:o/r.git");
        assert_eq!(w("/srv/git/app"), "/srv/git/app");
    }
}
