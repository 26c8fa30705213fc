//! What a run builds: the code of a repository event (`Code`), the `RunRepo` a run records for
//! it, and `.baton/`'s YAML files as config sources. Shared by webhooks, pollers, hand triggers
//! and repository schedules, which all start runs of a repository's commit.

use std::path::PathBuf;

use baton_core::config::RepoDef;
use baton_core::on::{EventFact, PushTarget};
use baton_core::run::TriggerKind;
use baton_git::Oid;
use baton_store::RunRepo;

/// Where a commit came from, besides the commit itself.
pub(crate) struct Code {
    /// The full ref (`refs/heads/main`); `None` for a bare commit.
    pub(crate) git_ref: Option<String>,
    /// The branch or tag; `None` for a bare commit.
    pub(crate) target: Option<PushTarget>,
    /// The commit the branch pointed at before (for `paths:` filters).
    pub(crate) before: Option<Oid>,
    pub(crate) trigger: TriggerKind,
    pub(crate) delivery: Option<String>,
    /// Start only this target (a hand trigger of `REPO/TASK`); `None`: all that match.
    pub(crate) only: Option<String>,
    /// `--no-cache` on a hand trigger: jobs with `cache:` run even on a hit.
    pub(crate) no_cache: bool,
}

/// The code a run of `code` at `commit` builds, as the run records it.
pub(crate) fn run_repo(
    repo: &RepoDef,
    commit: &Oid,
    info: &baton_git::CommitInfo,
    code: &Code,
    event: &EventFact,
) -> RunRepo {
    let (branch, tag) = match &code.target {
        Some(PushTarget::Branch(b)) => (Some(b.clone()), None),
        Some(PushTarget::Tag(t)) => (None, Some(t.clone())),
        None => (None, None),
    };
    let event = match event {
        EventFact::Push { .. } => "push",
        EventFact::PullRequest { .. } => "pull_request",
        EventFact::Schedule { .. } => "schedule",
        EventFact::Manual => "manual",
    };
    RunRepo {
        repo: repo.name.clone(),
        url: repo.url.clone(),
        commit: commit.to_string(),
        git_ref: code.git_ref.clone(),
        branch,
        tag,
        pr: None,
        event: event.into(),
        delivery: code.delivery.clone(),
        author: Some(format!("{} <{}>", info.author_name, info.author_email)),
        subject: Some(info.subject.clone()),
        ..RunRepo::default()
    }
}

/// The YAML files among `.baton/`'s files, as config sources.
pub(crate) fn yaml_sources(files: &[(String, Vec<u8>)]) -> Vec<(PathBuf, String)> {
    files
        .iter()
        .filter(|(path, _)| path.ends_with(".yml") || path.ends_with(".yaml"))
        .map(|(path, bytes)| {
            (
                PathBuf::from(path),
                String::from_utf8_lossy(bytes).into_owned(),
            )
        })
        .collect()
}
