//! The one `Event` every forge's delivery becomes, whatever the forge spells.

use std::collections::BTreeSet;
use std::fmt;

/// The forges Baton receives webhooks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forge {
    GitHub,
    Gitea,
    Forgejo,
    GitLab,
}

impl Forge {
    /// The lowercase name used in config (`forge: gitea`) and in hook paths (`/hooks/gitea`).
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::GitLab => "gitlab",
        }
    }

    /// The forge named `name` (as in [`Forge::as_str`]).
    pub fn from_name(name: &str) -> Option<Forge> {
        [Forge::GitHub, Forge::Gitea, Forge::Forgejo, Forge::GitLab]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One verified and parsed webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub forge: Forge,
    /// The forge's id of this delivery (redeliveries repeat it), if it sent one.
    pub delivery: Option<String>,
    /// The event name as the forge's header spells it (`push`, `Merge Request Hook`, …).
    pub name: String,
    /// The repository the event happened in (for a pull request: the target repository).
    pub repo: Repository,
    /// Login of the user who caused the event, if the payload names one.
    pub sender: Option<String>,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Push(Push),
    PullRequest(PullRequest),
    /// The forge checking that the hook works (GitHub's `ping`): answer 2xx, start nothing.
    Ping,
    /// Any other event, with its name: starts nothing.
    Other(String),
}

/// A repository as a payload describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repository {
    /// `owner/name` (GitLab: `path_with_namespace`).
    pub full_name: String,
    /// Every URL the payload gives for it (web page, https and ssh clone URLs, `git://`), in the
    /// payload's order, without duplicates. Match them with [`crate::same_repo`].
    pub urls: Vec<String>,
}

/// What a push names: a branch, a tag, or another ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefTarget {
    Branch(String),
    Tag(String),
    Other(String),
}

impl RefTarget {
    /// Classifies a full ref name (`refs/heads/main` → branch `main`).
    pub fn from_ref(full: &str) -> RefTarget {
        if let Some(b) = full.strip_prefix("refs/heads/") {
            RefTarget::Branch(b.to_owned())
        } else if let Some(t) = full.strip_prefix("refs/tags/") {
            RefTarget::Tag(t.to_owned())
        } else {
            RefTarget::Other(full.to_owned())
        }
    }
}

/// A commit as a payload describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    pub id: String,
    pub message: String,
    /// `Name <email>` (or just the name when the payload has no email).
    pub author: String,
}

/// A push of a branch or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The full ref (`refs/heads/main`).
    pub git_ref: String,
    pub target: RefTarget,
    /// The ref's old commit; all zeros when the ref was created.
    pub before: String,
    /// The ref's new commit; all zeros when the ref was deleted.
    pub after: String,
    pub created: bool,
    /// A deletion starts nothing.
    pub deleted: bool,
    pub head_commit: Option<CommitSummary>,
    /// Paths added, modified or removed by the commits the payload lists, sorted.
    /// Incomplete when `commits_listed < commit_count`: prefer `git diff before after`.
    pub changed_paths: BTreeSet<String>,
    /// How many commits the push brought, as the forge counts them.
    pub commit_count: usize,
    /// How many of them the payload lists (forges cap the list, at 20 for example).
    pub commits_listed: usize,
}

/// What happened to a pull (merge) request, normalized across forges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    Opened,
    /// New commits on the head (GitHub `synchronize`, Gitea `synchronized`, GitLab `update` with
    /// `oldrev`).
    Synchronize,
    Reopened,
    /// Closed or merged.
    Closed,
    /// Anything else (labels, edits, reviews…), as the forge spells it.
    Other(String),
}

impl PrAction {
    /// The name `on: pull_request: types:` uses, or the forge's spelling for `Other`.
    pub fn as_str(&self) -> &str {
        match self {
            PrAction::Opened => "opened",
            PrAction::Synchronize => "synchronize",
            PrAction::Reopened => "reopened",
            PrAction::Closed => "closed",
            PrAction::Other(s) => s,
        }
    }
}

/// A pull request (GitLab: merge request) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub action: PrAction,
    /// The forge's own spelling of the action.
    pub raw_action: String,
    /// GitHub/Gitea `number`, GitLab `iid`.
    pub number: u64,
    pub title: String,
    pub head_sha: String,
    pub head_ref: String,
    /// The repository the head commit lives in; `None` when the fork was deleted.
    pub head_repo: Option<Repository>,
    pub base_ref: String,
    /// The target branch's commit, when the payload gives it (GitLab's does not).
    pub base_sha: Option<String>,
    /// Head and base are different repositories (or the head repository is gone).
    pub from_fork: bool,
}

/// The marker that makes a push start nothing, if `message` contains one: `[skip ci]` or
/// `[ci skip]`, in any case.
pub fn skip_ci(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    ["[skip ci]", "[ci skip]"]
        .into_iter()
        .find(|m| lower.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_ci_markers() {
        assert_eq!(skip_ci("fix typo [skip ci]"), Some("[skip ci]"));
        assert_eq!(skip_ci("docs\n\n[CI SKIP]\n"), Some("[ci skip]"));
        assert_eq!(skip_ci("Skip CI please"), None);
        assert_eq!(skip_ci("[skip-ci]"), None);
        assert_eq!(skip_ci(""), None);
    }

    #[test]
    fn ref_targets() {
        assert_eq!(
            RefTarget::from_ref("refs/heads/feature/x"),
            RefTarget::Branch("feature/x".into())
        );
        assert_eq!(
            RefTarget::from_ref("refs/tags/v1.0"),
            RefTarget::Tag("v1.0".into())
        );
        assert_eq!(
            RefTarget::from_ref("refs/notes/x"),
            RefTarget::Other("refs/notes/x".into())
        );
    }

    #[test]
    fn forge_names_round_trip() {
        for f in [Forge::GitHub, Forge::Gitea, Forge::Forgejo, Forge::GitLab] {
            assert_eq!(Forge::from_name(f.as_str()), Some(f));
        }
        assert_eq!(Forge::from_name("bitbucket"), None);
    }
}
