//! Pull requests end to end against the real binary, with real git and signed webhooks: a pull
//! request runs on the merge of its head into the target branch, a conflicting one starts
//! nothing and says why, a newer push to the same pull request cancels the older run, and a
//! pull request from a fork waits for approval and then runs without secrets.

mod common;
#[path = "common/users.rs"]
mod users;

use std::path::Path;

use serde_json::json;

use common::Server;
use common::gitrepo::{commit_text as commit, git};
use common::pulls::{SECRET, deliver, make_repo, open_pr, pr_payload, run_ids, run_of};

fn config(url: &str, extra: &str) -> String {
    format!(
        "repos:
  app:
    url: {url}
    forge: github
    secret: env:APP_SECRET
{extra}"
    )
}

fn start(url: &str, extra: &str) -> Server {
    Server::start_env(&config(url, extra), &[("APP_SECRET", SECRET)])
}

#[tokio::test]
async fn a_pull_request_runs_on_its_merge_and_a_conflict_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ci = "tasks:
  test:
    command: echo \"commit=$BATON_COMMIT pr=$BATON_PR event=$BATON_EVENT\"; cat main.txt feature.txt
  head:
    pr_head: true
    command: echo \"head=$BATON_COMMIT\"; ls; echo \"main=$(cat main.txt)\"
";
    let repo = make_repo(tmp.path(), ci);
    let head = open_pr(&repo, "feature", 1, &[("feature.txt", "feature work\n")]);
    let main2 = commit(&repo, &[("main.txt", "main 2\n")], "main moves on");
    let url = repo.to_str().unwrap().to_owned();
    let s = start(&url, "");

    let body = pr_payload(&url, "opened", 1, &head, "feature", "ada", None);
    let (st, v) = deliver(&s, "pull_request", "pr-1", &body).await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    let ids = run_ids(&v);
    assert_eq!(ids.len(), 2, "{v}");
    let mut by_target = std::collections::BTreeMap::new();
    for id in ids {
        let run = s.wait_run(id).await;
        by_target.insert(run["target"].as_str().unwrap().to_owned(), run);
    }
    let run = &by_target["app/test"];
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["repo"]["event"], "pull_request");
    assert_eq!(run["repo"]["pr"], 1);
    assert_eq!(run["repo"]["pr_head"], head.as_str());
    assert_eq!(run["repo"]["pr_base"], "main");
    assert_eq!(run["repo"]["pr_fork"], false);
    assert_eq!(run["repo"]["git_ref"], "refs/pull/1/head");
    let merge = run["repo"]["commit"].as_str().unwrap().to_owned();
    assert_ne!(merge, head);
    assert_ne!(merge, main2);
    // The run's commit is the merge of the head into main, as the mirror holds it.
    let mirror = s.data.join("repos/app.git");
    let parents = git(&mirror, &["rev-list", "--parents", "-n", "1", &merge]);
    assert_eq!(parents, format!("{merge} {main2} {head}"));
    let log = s.log_text(run["id"].as_i64().unwrap(), None).await;
    assert!(
        log.contains(&format!("commit={merge} pr=1 event=pull_request")),
        "{log}"
    );
    assert!(log.contains("main 2\nfeature work\n"), "both sides: {log}");
    // `pr_head: true` builds the head alone: no main.txt change from main.
    let run = &by_target["app/head"];
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["repo"]["commit"], head.as_str());
    let log = s.log_text(run["id"].as_i64().unwrap(), None).await;
    assert!(log.contains(&format!("head={head}")), "{log}");
    assert!(log.contains("main=main 1\n"), "{log}");

    // A pull request that conflicts with main: no run, and the verdict says where.
    let before = s.get_ok("/runs").await["runs"].as_array().unwrap().len();
    let bad = open_pr(&repo, "clash", 2, &[("main.txt", "clash\n")]);
    commit(
        &repo,
        &[("main.txt", "main 3\n")],
        "main changes the same line",
    );
    let body = pr_payload(&url, "opened", 2, &bad, "clash", "ada", None);
    let (st, v) = deliver(&s, "pull_request", "pr-2", &body).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        v["verdict"], "pull request #2 does not merge cleanly into main: conflict in main.txt",
        "{v}"
    );
    assert!(run_ids(&v).is_empty());
    let after = s.get_ok("/runs").await["runs"].as_array().unwrap().len();
    assert_eq!(before, after, "a conflicting pull request started a run");
}

/// A push payload in GitHub's documented shape.
fn push_payload(url: &str, before: &str, after: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "repository": {"id": 1, "full_name": "local/app", "clone_url": url, "html_url": url},
        "sender": {"login": "ada"},
        "head_commit": {"id": after, "message": "work",
            "author": {"name": "Ada Tester", "email": "ada@example.com"}},
        "commits": [],
    }))
    .unwrap()
}

const SUPERSEDE_CI: &str = "tasks:
  slow:
    command: sleep \"$(cat delay.txt)\"; echo done
  eager:
    cancel_superseded: true
    on: push
    command: sleep \"$(cat delay.txt)\"; echo done
";

#[tokio::test]
async fn a_newer_push_to_a_pull_request_or_branch_cancels_the_older_run() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(tmp.path(), SUPERSEDE_CI);
    let first = commit(&repo, &[("delay.txt", "60\n")], "slow");
    let url = repo.to_str().unwrap().to_owned();
    let s = start(&url, "server:\n  local_workers: 4\n");

    // A pull request: the newer head cancels the older run (the default for pull requests).
    let head1 = open_pr(&repo, "feature", 5, &[("f.txt", "1\n")]);
    let body = pr_payload(&url, "opened", 5, &head1, "feature", "ada", None);
    let (st, v) = deliver(&s, "pull_request", "pr-5a", &body).await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    let old_pr = run_of(&s, &v, "app/slow").await;
    s.wait_until(old_pr, "running", |r| r["status"] == "running")
        .await;
    git(&repo, &["checkout", "-q", "feature"]);
    let head2 = commit(&repo, &[("delay.txt", "0\n")], "fast now");
    git(&repo, &["update-ref", "refs/pull/5/head", &head2]);
    git(&repo, &["checkout", "-q", "main"]);
    let body = pr_payload(&url, "synchronize", 5, &head2, "feature", "ada", None);
    let (st, v) = deliver(&s, "pull_request", "pr-5b", &body).await;
    assert_eq!(st, 200, "{v}");
    let new_pr = run_of(&s, &v, "app/slow").await;
    let old = s.wait_run(old_pr).await;
    assert_eq!(old["status"], "canceled", "{old:#}");
    assert_eq!(
        old["reason"],
        format!("superseded by run {new_pr}"),
        "{old:#}"
    );
    let new = s.wait_run(new_pr).await;
    assert_eq!(new["status"], "success", "{new:#}");

    // Pushes: only the task that says cancel_superseded: true cancels its older run.
    let body = push_payload(&url, &"0".repeat(40), &first);
    let (st, v) = deliver(&s, "push", "push-1", &body).await;
    assert_eq!(st, 200, "{v}");
    let old_eager = run_of(&s, &v, "app/eager").await;
    let old_slow = run_of(&s, &v, "app/slow").await;
    s.wait_until(old_eager, "running", |r| r["status"] == "running")
        .await;
    let second = commit(&repo, &[("delay.txt", "0\n")], "fast");
    let body = push_payload(&url, &first, &second);
    let (st, v) = deliver(&s, "push", "push-2", &body).await;
    assert_eq!(st, 200, "{v}");
    let new_eager = run_of(&s, &v, "app/eager").await;
    let old = s.wait_run(old_eager).await;
    assert_eq!(old["status"], "canceled", "{old:#}");
    assert_eq!(old["reason"], format!("superseded by run {new_eager}"));
    assert_eq!(s.wait_run(new_eager).await["status"], "success");
    let slow = s.run(old_slow).await;
    assert!(
        matches!(
            slow["status"].as_str(),
            Some("queued" | "started" | "running")
        ),
        "a push's run is not superseded by default: {slow:#}"
    );
}

/// `{token}`: the path of the file holding the secret (a file, not the server's environment,
/// which local jobs inherit).
const FORK_EXTRA: &str = "    trusted_users: [carol]
administrators: [root]
secrets:
  DEPLOY_TOKEN: file:{token}
tasks:
  central:
    checkout: false
    secrets: [DEPLOY_TOKEN]
    on: {repo: [app], pull_request: {}}
    command: echo \"token=[${DEPLOY_TOKEN:-none}] pr=$BATON_PR\"
";

#[tokio::test]
async fn a_fork_pull_request_waits_for_approval_and_runs_without_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(tmp.path(), "tasks:\n  test:\n    command: cat fork.txt\n");
    let url = repo.to_str().unwrap().to_owned();
    let token = tmp.path().join("token.txt");
    std::fs::write(&token, "s3cr3t-deploy-value\n").unwrap();
    let extra = FORK_EXTRA.replace("{token}", token.to_str().unwrap());
    let mut s = Server::start_env(&config(&url, &extra), &[("APP_SECRET", SECRET)]);
    let head = open_pr(&repo, "fork-work", 9, &[("fork.txt", "from a fork\n")]);
    let body = pr_payload(
        &url,
        "opened",
        9,
        &head,
        "fork-work",
        "mallory",
        Some("mallory"),
    );
    let (st, v) = deliver(&s, "pull_request", "fork-1", &body).await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .contains("waits for approval"),
        "{v}"
    );
    let ids = run_ids(&v);
    assert_eq!(ids.len(), 2, "{v}");
    for id in &ids {
        let run = s.run(*id).await;
        assert_eq!(run["status"], "waiting", "{run:#}");
        assert_eq!(
            run["reason"], "needs approval (pull request from a fork by mallory)",
            "{run:#}"
        );
        assert_eq!(run["repo"]["pr_fork"], true);
        assert_eq!(run["jobs"][0]["status"], "waiting", "{run:#}");
    }

    // A waiting run survives a restart, still waiting.
    s.kill9();
    s.restart();
    s.http = reqwest::Client::new();
    for id in &ids {
        assert_eq!(s.run(*id).await["status"], "waiting");
    }
    // Only a waiting run can be approved; approval queues it, and it runs without secrets.
    let (st, e) = s.post(&format!("/runs/{}/approve", 999), json!({})).await;
    assert_eq!(st, 404, "{e}");
    approve_by_page_and_cli(&s, &ids).await;
    for id in &ids {
        let run = s.wait_run(*id).await;
        assert_eq!(run["status"], "success", "{run:#}");
        let (st, e) = s.post(&format!("/runs/{id}/approve"), json!({})).await;
        assert_eq!(st, 409, "{e}");
        assert_eq!(e["error"]["code"], "not_waiting", "{e}");
    }
    let central = run_of(&s, &v, "central").await;
    let log = s.log_text(central, None).await;
    assert!(
        log.contains("token=[none] pr=9"),
        "a fork got a secret: {log}"
    );
    let test = run_of(&s, &v, "app/test").await;
    assert!(s.log_text(test, None).await.contains("from a fork"));

    trusted_and_own_pull_requests(&s, &repo, &url).await;
}

/// Approves `ids[0]` with the run page's Approve button (a form with the session's CSRF
/// token) and `ids[1]` with `baton approve RUN`.
async fn approve_by_page_and_cli(s: &Server, ids: &[i64]) {
    // One through the run page's Approve button (a form with the session's CSRF token)...
    users::add_user(s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(s, "root", "pw").await);
    let http = users::no_redirects();
    let page = |path: String| {
        let req = http
            .get(format!("{}{path}", s.base))
            .header("cookie", cookie.clone());
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let html = page(format!("/runs/{}", ids[0])).await;
    assert!(
        html.contains("id=\"approve\""),
        "no Approve button:\n{html}"
    );
    let form = users::form_encode(&[("csrf", &users::csrf_in(&html))]);
    let resp = http
        .post(format!("{}/runs/{}/approve", s.base, ids[0]))
        .header("cookie", cookie.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        303,
        "{}",
        resp.text().await.unwrap()
    );
    // ... the other with `baton approve RUN`.
    let out = s.cli(&["approve", &ids[1].to_string()]);
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with(&format!("run {}: ", ids[1])), "{stdout}");
    assert!(!stdout.contains("waiting"), "{stdout}");
}

/// A trusted user's fork runs at once (still without secrets); a pull request from the
/// repository itself gets its secrets (masked in the log).
async fn trusted_and_own_pull_requests(s: &Server, repo: &Path, url: &str) {
    // A trusted user's fork runs at once (still without secrets).
    let head = open_pr(repo, "carol-work", 10, &[("fork.txt", "carol\n")]);
    let body = pr_payload(
        url,
        "opened",
        10,
        &head,
        "carol-work",
        "carol",
        Some("carol"),
    );
    let (st, v) = deliver(s, "pull_request", "fork-2", &body).await;
    assert_eq!(st, 200, "{v}");
    let central = run_of(s, &v, "central").await;
    let run = s.wait_run(central).await;
    assert_eq!(run["status"], "success", "{run:#}");
    assert!(
        s.log_text(central, None)
            .await
            .contains("token=[none] pr=10")
    );

    // A pull request from the repository itself gets its secrets (masked in the log).
    let head = open_pr(repo, "inside", 11, &[("fork.txt", "inside\n")]);
    let body = pr_payload(url, "opened", 11, &head, "inside", "ada", None);
    let (st, v) = deliver(s, "pull_request", "inside-1", &body).await;
    assert_eq!(st, 200, "{v}");
    let central = run_of(s, &v, "central").await;
    assert_eq!(s.wait_run(central).await["status"], "success");
    assert!(
        s.log_text(central, None)
            .await
            .contains("token=[***] pr=11")
    );
}
