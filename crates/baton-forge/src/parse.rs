//! Parsing a delivery's headers and JSON body into an [`Event`], per forge.
//!
//! GitHub and Gitea/Forgejo share a payload shape (Gitea copied GitHub's); GitLab has its own.
//! Only the fields Baton uses are read, so new fields the forges add change nothing.

use std::collections::BTreeSet;

use crate::json::{At, parse_body};
use crate::verify::{Headers, VerifyError, verify};
use crate::{
    CommitSummary, Event, EventKind, Forge, PrAction, PullRequest, Push, RefTarget, Repository,
};

/// Why a verified delivery could not be understood. Answer `400`: the forge sent something
/// Baton cannot read (or the hook is pointed at the wrong forge's path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("missing header {0} (hint: is the webhook pointed at the right /hooks/FORGE path?)")]
    MissingHeader(&'static str),
    #[error(
        "body is not JSON at line {line} column {column}: {message} (hint: set the webhook's content type to application/json)"
    )]
    NotJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("field `{path}` is {problem}")]
    Field { path: String, problem: String },
    #[error("unsupported event {name}: {reason}")]
    Unsupported { name: String, reason: &'static str },
}

/// Why a delivery was refused: not authentic (answer `401`) or not understood (answer `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Verifies a delivery against `secret`, then parses it. Nothing of the body is read before the
/// signature checks out.
pub fn receive(
    forge: Forge,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &[u8],
) -> Result<Event, HookError> {
    verify(forge, headers, body, secret)?;
    Ok(parse(forge, headers, body)?)
}

/// Parses a delivery that was already verified (see [`receive`]).
pub fn parse(
    forge: Forge,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<Event, ParseError> {
    let (event_header, delivery) = match forge {
        Forge::GitHub => ("X-GitHub-Event", headers.get("X-GitHub-Delivery")),
        Forge::Gitea => ("X-Gitea-Event", headers.get("X-Gitea-Delivery")),
        Forge::Forgejo => ("X-Forgejo-Event", headers.get("X-Forgejo-Delivery")),
        Forge::GitLab => (
            "X-Gitlab-Event",
            headers
                .get("Idempotency-Key")
                .or_else(|| headers.get("X-Gitlab-Event-UUID")),
        ),
    };
    let name = headers
        .get(event_header)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(ParseError::MissingHeader(event_header))?;
    let delivery = delivery
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let body = parse_body(body)?;
    let root = At::root(&body);
    let (name, repo, sender, kind) = match forge {
        Forge::GitHub => github_like(forge, name, None, &root)?,
        Forge::Gitea => github_like(forge, name, headers.get("X-Gitea-Event-Type"), &root)?,
        Forge::Forgejo => github_like(forge, name, headers.get("X-Forgejo-Event-Type"), &root)?,
        Forge::GitLab => gitlab(name, &root)?,
    };
    Ok(Event {
        forge,
        delivery,
        name,
        repo,
        sender,
        kind,
    })
}

type Parsed = (String, Repository, Option<String>, EventKind);

/// The all-zero object id forges use for "no commit" (a created or deleted ref).
pub fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

fn github_like(
    forge: Forge,
    event: &str,
    event_type: Option<&str>,
    root: &At<'_>,
) -> Result<Parsed, ParseError> {
    let event_type = event_type.map(str::trim).filter(|t| !t.is_empty());
    let name = event_type.unwrap_or(event).to_owned();
    let sender = root
        .get("sender")
        .get("login")
        .opt_str()
        .or_else(|| root.get("pusher").get("login").opt_str())
        .or_else(|| root.get("pusher").get("name").opt_str())
        .map(str::to_owned);
    let is_pr = matches!(event, "pull_request" | "pull_request_sync")
        || event_type == Some("pull_request_sync");
    let kind = match event {
        "push" => EventKind::Push(github_push(root)?),
        _ if is_pr => EventKind::PullRequest(github_pr(root)?),
        "ping" if forge == Forge::GitHub => EventKind::Ping,
        _ => EventKind::Other(name.clone()),
    };
    let repo_at = root.get("repository");
    let repo = if matches!(kind, EventKind::Other(_)) && repo_at.is_null() {
        Repository::default()
    } else {
        github_repo(&repo_at)?
    };
    Ok((name, repo, sender, kind))
}

const GITHUB_URL_KEYS: &[&str] = &["html_url", "clone_url", "ssh_url", "git_url", "svn_url"];

fn github_repo(at: &At<'_>) -> Result<Repository, ParseError> {
    Ok(Repository {
        full_name: at.get("full_name").str()?.to_owned(),
        urls: urls(at, GITHUB_URL_KEYS),
    })
}

fn urls(at: &At<'_>, keys: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in keys {
        if let Some(u) = at.get(k).opt_str().filter(|u| !u.is_empty())
            && !out.iter().any(|o| o == u)
        {
            out.push(u.to_owned());
        }
    }
    out
}

fn commit_summary(at: &At<'_>) -> Result<CommitSummary, ParseError> {
    let author = at.get("author");
    let name = author.get("name").opt_str().unwrap_or_default();
    let author = match author.get("email").opt_str().filter(|e| !e.is_empty()) {
        Some(email) => format!("{name} <{email}>"),
        None => name.to_owned(),
    };
    Ok(CommitSummary {
        id: at.get("id").str()?.to_owned(),
        message: at.get("message").opt_str().unwrap_or_default().to_owned(),
        author,
    })
}

/// The shared part of a push: ref, shas, commits and their paths.
fn push_common(
    root: &At<'_>,
    head: Option<CommitSummary>,
    commit_count: Option<usize>,
) -> Result<Push, ParseError> {
    let git_ref = root.get("ref").str()?.to_owned();
    let before = root.get("before").str()?.to_owned();
    let after = root.get("after").str()?.to_owned();
    let commits = root.get("commits");
    let mut changed_paths = BTreeSet::new();
    let mut head_commit = head;
    for (i, _) in commits.list()?.iter().enumerate() {
        let c = commits.get_index(i);
        for key in ["added", "modified", "removed"] {
            changed_paths.extend(c.get(key).strings()?.into_iter().map(str::to_owned));
        }
        if head_commit.is_none() && c.get("id").opt_str() == Some(after.as_str()) {
            head_commit = Some(commit_summary(&c)?);
        }
    }
    let commits_listed = commits.list()?.len();
    Ok(Push {
        target: RefTarget::from_ref(&git_ref),
        created: root
            .get("created")
            .opt_bool()
            .unwrap_or(is_zero_sha(&before)),
        deleted: root
            .get("deleted")
            .opt_bool()
            .unwrap_or(is_zero_sha(&after)),
        git_ref,
        before,
        after,
        head_commit,
        changed_paths,
        commit_count: commit_count.unwrap_or(commits_listed).max(commits_listed),
        commits_listed,
    })
}

fn github_push(root: &At<'_>) -> Result<Push, ParseError> {
    let head = root.get("head_commit");
    let head = if head.is_null() {
        None
    } else {
        Some(commit_summary(&head)?)
    };
    // Gitea counts all commits in `total_commits` (newer versions); GitHub lists them all.
    let total = root.get("total_commits").value.as_u64().map(|n| n as usize);
    push_common(root, head, total)
}

fn normalize_action(raw: &str) -> PrAction {
    match raw {
        "opened" => PrAction::Opened,
        // GitHub spells it `synchronize`, Gitea/Forgejo `synchronized`.
        "synchronize" | "synchronized" => PrAction::Synchronize,
        "reopened" => PrAction::Reopened,
        "closed" => PrAction::Closed,
        other => PrAction::Other(other.to_owned()),
    }
}

/// The id of a pull request side's repository: GitHub `repo.id`, Gitea `repo_id` too.
fn side_repo_key(side: &At<'_>) -> Option<String> {
    let repo = side.get("repo");
    repo.get("id")
        .value
        .as_u64()
        .or_else(|| side.get("repo_id").value.as_u64())
        .map(|id| id.to_string())
        .or_else(|| repo.get("full_name").opt_str().map(str::to_owned))
}

fn github_pr(root: &At<'_>) -> Result<PullRequest, ParseError> {
    let raw_action = root.get("action").str()?.to_owned();
    let pr = root.get("pull_request");
    let number = match root.get("number").value.as_u64() {
        Some(n) => n,
        None => pr.get("number").u64()?,
    };
    let head = pr.get("head");
    let base = pr.get("base");
    let head_repo_at = head.get("repo");
    let head_repo = if head_repo_at.is_null() {
        None
    } else {
        Some(github_repo(&head_repo_at)?)
    };
    let (hk, bk) = (side_repo_key(&head), side_repo_key(&base));
    let from_fork = head_repo.is_none() || hk.is_none() || hk != bk;
    Ok(PullRequest {
        action: normalize_action(&raw_action),
        raw_action,
        number,
        title: pr.get("title").opt_str().unwrap_or_default().to_owned(),
        head_sha: head.get("sha").str()?.to_owned(),
        head_ref: head.get("ref").str()?.to_owned(),
        head_repo,
        base_ref: base.get("ref").str()?.to_owned(),
        base_sha: base.get("sha").opt_str().map(str::to_owned),
        from_fork,
    })
}

const GITLAB_URL_KEYS: &[&str] = &[
    "web_url",
    "git_http_url",
    "git_ssh_url",
    "http_url",
    "ssh_url",
    "url",
    "homepage",
];

fn gitlab_repo(root: &At<'_>) -> Result<Repository, ParseError> {
    let project = root.get("project");
    if project.is_null() {
        // Old payloads have only `repository` (without a full name).
        let repo = root.get("repository");
        let urls = urls(&repo, GITLAB_URL_KEYS);
        let full_name = repo.get("name").str()?.to_owned();
        return Ok(Repository { full_name, urls });
    }
    Ok(Repository {
        full_name: project.get("path_with_namespace").str()?.to_owned(),
        urls: urls(&project, GITLAB_URL_KEYS),
    })
}

fn gitlab(name: &str, root: &At<'_>) -> Result<Parsed, ParseError> {
    let expected_kind = match name {
        "Push Hook" | "Push Event" => Some("push"),
        "Tag Push Hook" | "Tag Push Event" => Some("tag_push"),
        "Merge Request Hook" | "Merge Request Event" => Some("merge_request"),
        "System Hook" => {
            return Err(ParseError::Unsupported {
                name: name.to_owned(),
                reason: "system hooks have another payload shape (hint: add the webhook to the project instead of the instance)",
            });
        }
        _ => None,
    };
    let Some(expected_kind) = expected_kind else {
        let repo = gitlab_repo(root).unwrap_or_default();
        let sender = root
            .get("user")
            .get("username")
            .opt_str()
            .map(str::to_owned);
        return Ok((
            name.to_owned(),
            repo,
            sender,
            EventKind::Other(name.to_owned()),
        ));
    };
    let kind_at = root.get("object_kind");
    let object_kind = kind_at.str()?;
    if object_kind != expected_kind {
        return Err(ParseError::Field {
            path: kind_at.path(),
            problem: format!("{object_kind:?} but header X-Gitlab-Event says {name:?}"),
        });
    }
    let repo = gitlab_repo(root)?;
    let (sender, kind) = if expected_kind == "merge_request" {
        let sender = root.get("user").get("username").opt_str();
        (sender, EventKind::PullRequest(gitlab_mr(root)?))
    } else {
        // `user_name` is a display name, not a login: older payloads without
        // `user_username` name no sender.
        let sender = root.get("user_username").opt_str();
        let total = root
            .get("total_commits_count")
            .value
            .as_u64()
            .map(|n| n as usize);
        (sender, EventKind::Push(push_common(root, None, total)?))
    };
    Ok((name.to_owned(), repo, sender.map(str::to_owned), kind))
}

fn gitlab_mr(root: &At<'_>) -> Result<PullRequest, ParseError> {
    let oa = root.get("object_attributes");
    let raw_action = oa.get("action").opt_str().unwrap_or_default().to_owned();
    let action = match raw_action.as_str() {
        "open" => PrAction::Opened,
        "reopen" => PrAction::Reopened,
        "close" | "merge" => PrAction::Closed,
        // An update with `oldrev` moved the source branch; other updates edit the title, labels…
        "update" if !oa.get("oldrev").is_null() => PrAction::Synchronize,
        other => PrAction::Other(other.to_owned()),
    };
    let source = oa.get("source");
    let head_repo = if source.is_null() {
        None
    } else {
        Some(Repository {
            full_name: source
                .get("path_with_namespace")
                .opt_str()
                .unwrap_or_default()
                .to_owned(),
            urls: urls(&source, GITLAB_URL_KEYS),
        })
    };
    let source_id = oa.get("source_project_id").value.as_u64();
    let from_fork = source_id.is_none() || source_id != oa.get("target_project_id").value.as_u64();
    Ok(PullRequest {
        action,
        raw_action,
        number: oa.get("iid").u64()?,
        title: oa.get("title").opt_str().unwrap_or_default().to_owned(),
        head_sha: oa.get("last_commit").get("id").str()?.to_owned(),
        head_ref: oa.get("source_branch").str()?.to_owned(),
        head_repo,
        base_ref: oa.get("target_branch").str()?.to_owned(),
        base_sha: None,
        from_fork,
    })
}
