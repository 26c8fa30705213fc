//! Webhooks as forges send them, for tests with forge stand-ins: a repository with a `.baton/`,
//! a signed push, and the runs it started.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::gitrepo::git;
use super::{Server, WAIT};

/// The forge a stand-in plays and a webhook comes from.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    GitHub,
    Gitea,
    GitLab,
}

/// A repository at `<tmp>/local/app` (a forge stand-in's `owner/name` is `local/app`) whose
/// `.baton/ci.yml` is `ci`. Returns its path and head commit.
pub fn make_repo(tmp: &Path, ci: &str) -> (String, String) {
    let repo = tmp.join("local/app");
    std::fs::create_dir_all(repo.join(".baton")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".baton/ci.yml"), ci).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    (repo.to_str().unwrap().to_owned(), sha)
}

/// Sends a push of `sha` to `main` as `kind` sends it, signed with `secret`; returns the runs
/// it started.
pub async fn push(
    s: &Server,
    kind: Kind,
    url: &str,
    sha: &str,
    delivery: &str,
    secret: &str,
) -> Vec<i64> {
    let zero = "0".repeat(40);
    let commits = json!([{"id": sha, "message": "first", "timestamp": "2026-01-01T00:00:00Z",
        "author": {"name": "Ada Tester", "email": "ada@example.com"},
        "added": [".baton/ci.yml"], "modified": [], "removed": []}]);
    let body = match kind {
        Kind::GitHub | Kind::Gitea => json!({
            "ref": "refs/heads/main", "before": zero, "after": sha, "created": true,
            "deleted": false, "commits": commits, "head_commit": commits[0],
            "repository": {"full_name": "local/app", "clone_url": url, "html_url": url},
            "pusher": {"name": "ada"}, "sender": {"login": "ada"},
        }),
        Kind::GitLab => json!({
            "object_kind": "push", "ref": "refs/heads/main", "before": zero, "after": sha,
            "checkout_sha": sha, "user_username": "ada", "total_commits_count": 1,
            "commits": commits,
            "project": {"path_with_namespace": "local/app", "git_http_url": url,
                "web_url": url},
            "repository": {"name": "app", "git_http_url": url},
        }),
    };
    let body = serde_json::to_vec(&body).unwrap();
    let hex = baton_forge::sign(secret.as_bytes(), &body);
    let req = s
        .http
        .post(format!(
            "{}/hooks/{}",
            s.base,
            match kind {
                Kind::GitHub => "github",
                Kind::Gitea => "gitea",
                Kind::GitLab => "gitlab",
            }
        ))
        .header("Content-Type", "application/json")
        .body(body);
    let req = match kind {
        Kind::GitHub => req
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", format!("sha256={hex}")),
        Kind::Gitea => req
            .header("X-Gitea-Event", "push")
            .header("X-Gitea-Delivery", delivery)
            .header("X-Gitea-Signature", hex),
        Kind::GitLab => req
            .header("X-Gitlab-Event", "Push Hook")
            .header("X-Gitlab-Event-UUID", delivery)
            .header("X-Gitlab-Token", secret),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert!(
        status == 200 || status == 202,
        "{status} {v}\n{}",
        s.stderr()
    );
    // A slow start answers 202 first; the delivery lists its runs once they start.
    let runs_of = |v: &Value| {
        let list = v["runs"].as_array().or(v["run_ids"].as_array());
        let ids: Option<Vec<i64>> = list.map(|l| l.iter().filter_map(Value::as_i64).collect());
        ids.unwrap_or_default()
    };
    let deadline = Instant::now() + WAIT;
    let mut runs: Vec<i64> = runs_of(&v);
    while runs.is_empty() {
        assert!(Instant::now() < deadline, "no runs: {v}\n{}", s.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
        runs = runs_of(&s.get_ok("/deliveries").await["deliveries"][0]);
    }
    runs
}

/// Runs of the push by target.
pub async fn runs_by_target(s: &Server, ids: &[i64]) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for id in ids {
        let run = s.wait_run(*id).await;
        out.insert(run["target"].as_str().unwrap().to_owned(), run);
    }
    out
}

/// A pull request payload in GitHub's documented shape; `fork` names the head repository's
/// owner when it is a fork.
pub fn pr_payload(
    url: &str,
    action: &str,
    number: u64,
    head: &str,
    branch: &str,
    sender: &str,
    fork: Option<&str>,
) -> Vec<u8> {
    let base_repo = json!({"id": 1, "full_name": "local/app", "clone_url": url, "html_url": url});
    let head_repo = match fork {
        Some(owner) => json!({"id": 2, "full_name": format!("{owner}/app"),
            "clone_url": format!("/forks/{owner}/app"), "html_url": format!("/forks/{owner}/app")}),
        None => base_repo.clone(),
    };
    serde_json::to_vec(&json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "title": format!("PR {number}"),
            "user": {"login": sender},
            "head": {"sha": head, "ref": branch, "repo": head_repo},
            "base": {"ref": "main", "repo": base_repo},
        },
        "repository": base_repo,
        "sender": {"login": sender},
    }))
    .unwrap()
}

/// Delivers `body` as GitHub's `event`, signed with `secret`: the answer's status and body.
pub async fn deliver_github(
    s: &Server,
    event: &str,
    delivery: &str,
    body: &[u8],
    secret: &str,
) -> (u16, Value) {
    let sig = format!("sha256={}", baton_forge::sign(secret.as_bytes(), body));
    let resp = s
        .http
        .post(format!("{}/hooks/github", s.base))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}
