//! A repository's task triggered by hand (`POST /api/v1/tasks/REPO%2FTASK/trigger` with a
//! `ref`, `baton trigger REPO/TASK --ref main`, the UI's form): the same path as a push — fetch
//! the mirror, resolve the ref to a commit, read `.baton/` at it, honour `on: manual` — for the
//! one target asked for, with event `manual`.

use axum::http::StatusCode;

use baton_core::config::{Config, RepoDef};
use baton_core::on::{EventFact, EventFacts, PushTarget};
use baton_core::run::TriggerKind;
use baton_git::{Mirror, Oid};

use crate::code::Code;
use crate::hooks::push::{fetched_mirror, repo_event};
use crate::{ApiError, AppState};

/// The repository of `target` when it names a repository's task (`REPO/TASK`).
pub(crate) fn repo_of<'c>(config: &'c Config, target: &str) -> Option<&'c RepoDef> {
    let (repo, task) = target.split_once('/')?;
    (!task.is_empty()).then(|| config.repos.get(repo)).flatten()
}

/// Starts `target` (`REPO/TASK`) of `repo` at `git_ref` (a branch, tag, full ref or full
/// commit sha; default `main`, else `master`); answers with the run's id.
pub(crate) async fn trigger(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    target: &str,
    git_ref: Option<&str>,
    (trigger, no_cache): (TriggerKind, bool),
) -> Result<i64, ApiError> {
    if let Some(r) = git_ref {
        check_ref(r)?;
    }
    let mirror = fetched_mirror(st, config, repo)
        .await
        .map_err(|v| ApiError::new(v.status, "fetch_failed", v.text))?;
    let (commit, code_target, full_ref) = resolve(&mirror, &repo.name, git_ref).await?;
    let code = Code {
        git_ref: full_ref,
        target: code_target,
        before: None,
        trigger,
        delivery: None,
        only: Some(target.to_owned()),
        no_cache,
    };
    let facts = EventFacts {
        repo: Some(repo.name.clone()),
        event: EventFact::Manual,
    };
    let v = repo_event(st, config, repo, &mirror, &commit, code, facts).await;
    match v.runs.first() {
        Some(id) => Ok(*id),
        None => {
            let code = match v.status {
                StatusCode::NOT_FOUND => "unknown_target",
                StatusCode::CONFLICT => "not_started",
                StatusCode::BAD_GATEWAY => "fetch_failed",
                StatusCode::SERVICE_UNAVAILABLE => "store_unavailable",
                _ => "not_started",
            };
            let status = if v.status.is_success() {
                StatusCode::CONFLICT
            } else {
                v.status
            };
            Err(ApiError::new(status, code, v.text))
        }
    }
}

/// A ref as a user gives it: a name, never a revision expression (`main~1`, `@{u}`, `a..b`).
fn check_ref(r: &str) -> Result<(), ApiError> {
    let ok = !r.is_empty()
        && r.len() <= 255
        && !r.starts_with(['-', '/', '.'])
        && !r.contains("..")
        && !r.ends_with(['/', '.'])
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_ref",
            format!(
                "invalid ref {r:?}: give a branch, a tag, a full ref (refs/heads/main) or a full commit sha"
            ),
        ))
    }
}

/// The commit `git_ref` names in the (fetched) mirror, with its branch or tag and full ref.
async fn resolve(
    mirror: &Mirror,
    repo: &str,
    git_ref: Option<&str>,
) -> Result<(Oid, Option<PushTarget>, Option<String>), ApiError> {
    let git =
        |e: baton_git::GitError| ApiError::internal(format!("could not resolve the ref: {e}"));
    let unknown = |what: String| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_ref",
            format!("{what} (hint: give a branch, a tag or a full commit sha of {repo})"),
        )
    };
    let candidates: Vec<String> = match git_ref {
        None => vec!["refs/heads/main".into(), "refs/heads/master".into()],
        Some(r) if r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()) => {
            let oid = Oid::parse(r).map_err(|e| unknown(e.to_string()))?;
            if !mirror.has_commit(&oid).await.map_err(git)? {
                return Err(unknown(format!("commit {r} is not in {repo}")));
            }
            return Ok((oid, None, None));
        }
        Some(r) if r.starts_with("refs/") => vec![r.to_owned()],
        Some(r) => vec![format!("refs/heads/{r}"), format!("refs/tags/{r}")],
    };
    for full in &candidates {
        if let Some(oid) = mirror.resolve(full).await.map_err(git)? {
            let target = if let Some(b) = full.strip_prefix("refs/heads/") {
                Some(PushTarget::Branch(b.to_owned()))
            } else {
                full.strip_prefix("refs/tags/")
                    .map(|t| PushTarget::Tag(t.to_owned()))
            };
            return Ok((oid, target, Some(full.clone())));
        }
    }
    Err(unknown(match git_ref {
        None => format!("{repo} has neither a main nor a master branch; give a ref"),
        Some(r) => format!("no branch or tag {r:?} in {repo}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_names_not_expressions() {
        for good in [
            "main",
            "release/1.2",
            "v1.0",
            "refs/heads/main",
            &"a".repeat(40),
        ] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in [
            "", "main~1", "HEAD@{1}", "a..b", "-x", "main^", "a b", "/x", "x/",
        ] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
    }
}
