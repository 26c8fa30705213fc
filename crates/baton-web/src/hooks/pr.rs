//! An accepted pull (merge) request event: fetch the mirror (it copies `refs/pull/*` and
//! `refs/merge-requests/*`), merge the head into the target branch (`merge-tree`, no working
//! tree), read `.baton/` at that merge, match `on: pull_request` and trigger what matches. Runs
//! build the merge commit, or the head alone for tasks with `pr_head: true`. A pull request that
//! does not merge cleanly starts nothing and its verdict names the conflicting files. Pull
//! requests from forks get no secrets and wait for approval unless their author is one of the
//! repository's `trusted_users`.

use axum::http::StatusCode;

use baton_core::config::{Config, RepoDef};
use baton_core::on::{EventFact, EventFacts};
use baton_core::run::TriggerKind;
use baton_forge::{Event, Forge, PullRequest};
use baton_git::{MergeOutcome, Mirror, Oid};
use baton_sched::TargetDef;
use baton_store::RunRepo;

use super::Verdict;
use super::push::{Wanted, fetched_mirror_since, repo_targets, server_targets, start_runs};
use crate::AppState;

/// The ref a forge keeps a pull request's head at (copied into the mirror by its refspecs).
pub(super) fn head_ref(forge: Forge, number: u64) -> String {
    match forge {
        Forge::GitLab => format!("refs/merge-requests/{number}/head"),
        Forge::GitHub | Forge::Gitea | Forge::Forgejo => format!("refs/pull/{number}/head"),
    }
}

/// Why a fork's pull request waits, or `None` when it runs at once (not from a fork, or its
/// author is trusted).
pub(super) fn approval_needed(repo: &RepoDef, pr: &PullRequest, user: &str) -> Option<String> {
    if !pr.from_fork || repo.trusted_users.iter().any(|u| u == user) {
        return None;
    }
    Some(format!(
        "needs approval (pull request from a fork by {user})"
    ))
}

/// A pull request that does not merge cleanly gets an `error` commit status `baton/merge` on its
/// head saying so (`text`), instead of runs; sent like every status (retried, after a restart).
async fn report_pr_conflict(st: &AppState, repo: &RepoDef, head: &Oid, text: &str) {
    tracing::info!(repo = repo.name, commit = %head, "pull request conflict: {text}");
    let state = baton_core::report::CommitState::Error;
    if let Err(e) = (st.statuses)
        .report_commit(&repo.name, head.as_str(), "baton/merge", state, text)
        .await
    {
        tracing::warn!(
            repo = repo.name,
            "could not record the conflict's commit status: {e}"
        );
    }
}

pub(super) async fn build(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    event: &Event,
    pr: &PullRequest,
    since: Option<baton_git::FetchTicket>,
) -> Verdict {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Verdict::new(StatusCode::BAD_GATEWAY, format!("{what}: {e}"))
    };
    let number = pr.number;
    let mirror = match fetched_mirror_since(st, config, repo, since).await {
        Ok(m) => m,
        Err(v) => return v,
    };
    let head = match pr_head(&mirror, event.forge, pr).await {
        Ok(h) => h,
        Err(text) => return Verdict::new(StatusCode::BAD_GATEWAY, text),
    };
    let merge = match merge(st, &mirror, repo, pr, &head).await {
        Ok(m) => m,
        Err(v) => return v,
    };
    let info = match mirror.commit_info(&head).await {
        Ok(i) => i,
        Err(e) => return fail("could not read the pull request's head commit", &e),
    };
    let facts = EventFacts {
        repo: Some(repo.name.clone()),
        event: EventFact::PullRequest {
            action: pr.action.as_str().to_owned(),
            target_branch: pr.base_ref.clone(),
        },
    };
    let user = event
        .sender
        .clone()
        .unwrap_or_else(|| "an unknown user".into());
    let hold = approval_needed(repo, pr, &user);
    let merged = RunRepo {
        repo: repo.name.clone(),
        url: repo.url.clone(),
        commit: merge.to_string(),
        git_ref: Some(head_ref(event.forge, number)),
        branch: None,
        tag: None,
        pr: i64::try_from(number).ok(),
        pr_head: Some(head.to_string()),
        pr_base: Some(pr.base_ref.clone()),
        pr_fork: pr.from_fork,
        event: "pull_request".into(),
        delivery: event.delivery.clone(),
        author: Some(format!("{} <{}>", info.author_name, info.author_email)),
        subject: Some(info.subject.clone()),
        ran_on: None,
    };
    let mut wanted: Vec<(String, Option<TargetDef>)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    match mirror.read_tree(&merge, ".baton").await {
        Err(e) => return fail("could not read .baton/ at the pull request's merge", &e),
        Ok(files) => repo_targets(config, repo, &files, &facts, &mut wanted, &mut notes),
    }
    server_targets(config, repo, &facts, &mut wanted, &mut notes);
    let wanted = wanted
        .into_iter()
        .map(|(target, def)| {
            let mut code = merged.clone();
            if wants_head(config, &target, def.as_ref()) {
                code.commit = head.to_string();
            }
            Wanted {
                target,
                def,
                repo: code,
                hold: hold.clone(),
            }
        })
        .collect();
    start_runs(
        st,
        wanted,
        (TriggerKind::Webhook, false),
        notes,
        &format!("pull request #{number}"),
    )
    .await
}

/// The merge commit of the pull request's `head` into its target branch, or the verdict that
/// starts nothing (no such branch, a conflict, a git failure).
async fn merge(
    st: &AppState,
    mirror: &Mirror,
    repo: &RepoDef,
    pr: &PullRequest,
    head: &Oid,
) -> Result<Oid, Verdict> {
    let number = pr.number;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Verdict::new(StatusCode::BAD_GATEWAY, format!("{what}: {e}"))
    };
    let base_ref = format!("refs/heads/{}", pr.base_ref);
    let base = match mirror.resolve(&base_ref).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            let text = format!(
                "pull request #{number} targets branch {}, which the repository does not have",
                pr.base_ref
            );
            return Err(Verdict::new(StatusCode::ACCEPTED, text));
        }
        Err(e) => return Err(fail("could not read the target branch", &e)),
    };
    match mirror.merge_for_pr(&base, head).await {
        Ok(MergeOutcome::Merged { commit, .. }) => Ok(commit),
        Ok(MergeOutcome::Conflict { paths }) => {
            let text = format!(
                "pull request #{number} does not merge cleanly into {}: conflict in {}",
                pr.base_ref,
                paths.join(", ")
            );
            report_pr_conflict(st, repo, head, &text).await;
            Err(Verdict::new(StatusCode::ACCEPTED, text))
        }
        Err(e) => Err(fail("could not merge the pull request", &e)),
    }
}

/// The pull request's head commit: the payload's, once the fetch brought it (else the one the
/// forge's pull request ref points at).
async fn pr_head(mirror: &Mirror, forge: Forge, pr: &PullRequest) -> Result<Oid, String> {
    if let Ok(sha) = Oid::parse(&pr.head_sha)
        && mirror.has_commit(&sha).await.unwrap_or(false)
    {
        return Ok(sha);
    }
    let name = head_ref(forge, pr.number);
    match mirror.resolve(&name).await {
        Ok(Some(oid)) => Ok(oid),
        Ok(None) => Err(format!(
            "pull request #{}: the repository has neither its head commit {} nor {name} (hint: check that the forge publishes pull request refs)",
            pr.number, pr.head_sha
        )),
        Err(e) => Err(format!("could not read {name}: {e}")),
    }
}

/// Whether `target` builds the pull request's head alone (`pr_head: true`).
fn wants_head(config: &Config, target: &str, def: Option<&TargetDef>) -> bool {
    match def {
        Some(TargetDef::Task(t)) => t.pr_head,
        Some(TargetDef::Pipeline(p)) => p.pr_head,
        None => config
            .tasks
            .get(target)
            .map(|t| t.pr_head)
            .or_else(|| config.pipelines.get(target).map(|p| p.pr_head))
            .unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_forge::PrAction;

    fn pr(from_fork: bool) -> PullRequest {
        PullRequest {
            action: PrAction::Opened,
            raw_action: "opened".into(),
            number: 3,
            title: "t".into(),
            head_sha: "a".repeat(40),
            head_ref: "feature".into(),
            head_repo: None,
            base_ref: "main".into(),
            base_sha: None,
            from_fork,
        }
    }

    fn repo(trusted: &[&str]) -> RepoDef {
        RepoDef {
            name: "app".into(),
            url: "/srv/app".into(),
            forge: baton_core::config::Forge::Github,
            secret: None,
            token: None,
            ssh_key: None,
            api: None,
            branches: Vec::new(),
            poll: None,
            trusted_users: trusted.iter().map(|u| (*u).to_owned()).collect(),
            github_app: None,
            job_tokens: None,
            authorized_users: Vec::new(),
            trust_local_runs: false,
        }
    }

    #[test]
    fn pull_request_refs_per_forge() {
        assert_eq!(head_ref(Forge::GitHub, 7), "refs/pull/7/head");
        assert_eq!(head_ref(Forge::Gitea, 7), "refs/pull/7/head");
        assert_eq!(head_ref(Forge::Forgejo, 7), "refs/pull/7/head");
        assert_eq!(head_ref(Forge::GitLab, 7), "refs/merge-requests/7/head");
    }

    #[test]
    fn only_untrusted_forks_wait() {
        assert_eq!(approval_needed(&repo(&[]), &pr(false), "eve"), None);
        assert_eq!(approval_needed(&repo(&["carol"]), &pr(true), "carol"), None);
        assert_eq!(
            approval_needed(&repo(&["carol"]), &pr(true), "eve").as_deref(),
            Some("needs approval (pull request from a fork by eve)")
        );
    }
}
