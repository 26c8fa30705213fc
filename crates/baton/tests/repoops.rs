//! Repository operations end to end against the real binary and real git: a repository's task
//! triggered by hand at a branch, tag or commit (API and CLI) and rerun at the same commit;
//! polling that picks up a new commit once (and not again after a restart); the repositories
//! list with a fetch error; the forge-wide webhook secret.

mod common;
#[path = "common/users.rs"]
mod users;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::Server;
use common::gitrepo::{commit, git, init};

const CI: &str = "tasks:
  test:
    command: echo \"commit=$BATON_COMMIT ref=$BATON_REF event=$BATON_EVENT\"; cat version.txt
  pushonly:
    command: echo never by hand
    checkout: false
    on: {push: {branches: [main]}, manual: false}
";

fn repo_config(url: &str, extra: &str) -> String {
    format!(
        "repos:\n  app:\n    url: {url}\n    forge: git\n{extra}tasks:\n  plain:\n    command: echo plain\n"
    )
}

/// Polls `f` until it gives `Some`, failing with `what` after [`common::WAIT`].
async fn eventually<T, F, Fut>(s: &Server, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + common::WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}\n{}", s.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a poll recorded after `after`; returns its time.
async fn polled_after(s: &Server, after: String) -> String {
    eventually(s, "no further poll", || {
        let after = after.clone();
        async move {
            let at = repo_entry(s, "app").await["last_poll_at"]
                .as_str()
                .map(str::to_owned)?;
            (at > after).then_some(at)
        }
    })
    .await
}

async fn repo_entry(s: &Server, name: &str) -> Value {
    let v = s.get_ok("/repos").await;
    v["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no repo {name}: {v:#}"))
}

#[tokio::test]
async fn a_repo_task_runs_at_the_ref_asked_for_by_api_and_cli_and_reruns_the_same_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    let v1 = commit(
        &repo,
        &[(".baton/ci.yml", CI.as_bytes()), ("version.txt", b"one\n")],
        "one",
    );
    git(&repo, &["tag", "-a", "v1", "-m", "release one"]);
    let two = commit(&repo, &[("version.txt", b"two\n")], "two");
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    let feat = commit(&repo, &[("version.txt", b"feature\n")], "feature work");
    git(&repo, &["checkout", "-q", "main"]);
    let url = repo.to_str().unwrap();
    let s = Server::start(&repo_config(url, ""));

    // By tag, over the API: the run builds the tag's commit, in a checkout of it.
    let (st, run) = s
        .post("/tasks/app%2Ftest/trigger", json!({"ref": "v1"}))
        .await;
    assert_eq!(st, 201, "{run}\n{}", s.stderr());
    let id = run["id"].as_i64().unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["target"], "app/test");
    assert_eq!(run["trigger"], "api");
    assert_eq!(run["repo"]["commit"], v1.as_str());
    assert_eq!(run["repo"]["tag"], "v1");
    assert_eq!(run["repo"]["event"], "manual");
    let log = s.log_text(id, None).await;
    assert!(
        log.contains(&format!("commit={v1} ref=refs/tags/v1 event=manual")),
        "{log}"
    );
    // The job's checkout holds the tag's version.txt (`cat` in its command).
    assert!(log.lines().any(|l| l == "one"), "{log}");

    // Without a ref: the main branch.
    let (st, run) = s.post("/tasks/app%2Ftest/trigger", json!({})).await;
    assert_eq!(st, 201, "{run}");
    let run = s.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["repo"]["commit"], two.as_str());
    assert_eq!(run["repo"]["branch"], "main");

    // By full commit sha, on the two-segment path too.
    let (st, run) = s.post("/tasks/app/test/trigger", json!({"ref": v1})).await;
    assert_eq!(st, 201, "{run}");
    let run = s.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["repo"]["commit"], v1.as_str());
    assert_eq!(run["repo"]["branch"], Value::Null);

    // By branch, from the CLI.
    let out = s.cli(&["trigger", "app/test", "--ref", "feature", "--wait"]);
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let runs = s.get_ok("/runs?limit=1").await;
    let run = &runs["runs"][0];
    assert_eq!(run["trigger"], "cli", "{run:#}");
    assert_eq!(run["repo"]["commit"], feat.as_str());
    assert_eq!(run["repo"]["branch"], "feature");
    assert_eq!(run["status"], "success");
    let cli_id = run["id"].as_i64().unwrap();
    assert!(s.log_text(cli_id, None).await.contains("feature"));

    // A rerun builds the same commit again.
    let (st, rerun) = s.post(&format!("/runs/{cli_id}/rerun"), json!({})).await;
    assert_eq!(st, 201, "{rerun}");
    let rerun = s.wait_run(rerun["id"].as_i64().unwrap()).await;
    assert_eq!(rerun["status"], "success", "{rerun:#}");
    assert_eq!(rerun["trigger"], "rerun");
    assert_eq!(rerun["repo"]["commit"], feat.as_str());
    assert_eq!(rerun["ancestors"], json!([cli_id]));

    // Refusals say why.
    let (st, v) = s
        .post("/tasks/app%2Fpushonly/trigger", json!({"ref": "main"}))
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(v.to_string().contains("manual"), "{v}");
    let (st, v) = s
        .post("/tasks/app%2Fnope/trigger", json!({"ref": "main"}))
        .await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = s
        .post("/tasks/app%2Ftest/trigger", json!({"ref": "main~1"}))
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .post("/tasks/app%2Ftest/trigger", json!({"ref": "nosuch"}))
        .await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = s.post("/tasks/plain/trigger", json!({"ref": "main"})).await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test]
async fn polling_triggers_a_new_commit_once_and_not_again_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    let ci = "tasks:\n  test:\n    command: echo built $BATON_COMMIT $BATON_EVENT\n    checkout: false\n";
    commit(&repo, &[(".baton/ci.yml", ci.as_bytes())], "one");
    let url = repo.to_str().unwrap();
    let mut s = Server::start(&repo_config(url, "    poll: 1s\n    branches: [main]\n"));

    // The first poll records the heads and starts nothing.
    let first = eventually(&s, "the repository was never polled", || async {
        let r = repo_entry(&s, "app").await;
        r["last_poll_at"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(s.get_ok("/runs").await["runs"], json!([]));

    let two = commit(&repo, &[("a.txt", b"a\n")], "two");
    git(&repo, &["checkout", "-q", "-b", "other"]);
    commit(&repo, &[("b.txt", b"b\n")], "not watched");
    git(&repo, &["checkout", "-q", "main"]);
    let run = eventually(&s, "the new commit was never built", || async {
        let runs = s.get_ok("/runs").await;
        runs["runs"].as_array().unwrap().first().cloned()
    })
    .await;
    let run = s.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["trigger"], "poll");
    assert_eq!(run["repo"]["commit"], two.as_str());
    assert_eq!(run["repo"]["event"], "push");
    assert_eq!(run["repo"]["branch"], "main");
    assert!(
        s.log_text(run["id"].as_i64().unwrap(), None)
            .await
            .contains(&two)
    );

    // Later polls and a restart start nothing more.
    let later = polled_after(&s, first).await;
    let later = polled_after(&s, later).await;
    assert_eq!(s.get_ok("/runs").await["runs"].as_array().unwrap().len(), 1);
    s.kill9();
    s.restart();
    s.http = reqwest::Client::new();
    let later = polled_after(&s, later).await;
    polled_after(&s, later).await;
    let runs = s.get_ok("/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs:#}");
}

#[tokio::test]
async fn an_unreachable_repository_shows_its_fetch_error_without_credentials() {
    let s = Server::start(&repo_config(
        "https://ada:hunter2secret@127.0.0.1:1/app.git",
        "    poll: 1s\n",
    ));
    let r = eventually(&s, "no fetch error shown", || async {
        let r = repo_entry(&s, "app").await;
        r["last_fetch_error"].is_string().then_some(r)
    })
    .await;
    assert_eq!(r["url"], "https://127.0.0.1:1/app.git", "{r:#}");
    assert_eq!(r["forge"], "git");
    assert_eq!(r["poll_secs"], 1);
    assert!(r["last_fetch_at"].is_string(), "{r:#}");
    assert_eq!(r["last_fetch_ok_at"], Value::Null);
    let all = s.get_ok("/repos").await.to_string();
    assert!(!all.contains("hunter2secret"), "{all}");
}

#[tokio::test]
async fn the_forge_wide_secret_is_checked_before_an_unknown_repository_is_404() {
    let cfg = "server:\n  webhook_secret: env:FORGE_SECRET\nrepos:\n  app:\n    url: https://example.com/o/app.git\n    forge: github\n    secret: env:APP_SECRET\n";
    let s = Server::start_env(
        cfg,
        &[("FORGE_SECRET", "forge-wide"), ("APP_SECRET", "app")],
    );
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": "1".repeat(40),
        "repository": {"full_name": "o/unknown", "clone_url": "https://example.com/o/unknown.git",
            "html_url": "https://example.com/o/unknown"},
        "commits": [],
    }))
    .unwrap();
    let send = |sig: Option<String>| {
        let mut req = s
            .http
            .post(format!("{}/hooks/github", s.base))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", "d-1")
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header("X-Hub-Signature-256", sig);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let sign = |secret: &str| {
        Some(format!(
            "sha256={}",
            baton_forge::sign(secret.as_bytes(), &body)
        ))
    };
    let (st, text) = send(None).await;
    assert_eq!(st, 401, "{text}");
    let (st, text) = send(sign("app")).await;
    assert_eq!(st, 401, "{text}");
    let (st, text) = send(sign("forge-wide")).await;
    assert_eq!(st, 404, "{text}");
    assert!(text.contains("no repository"), "{text}");
}

#[tokio::test]
async fn the_repositories_page_shows_fetch_errors_and_triggers_a_task_at_a_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    let v1 = commit(
        &repo,
        &[(".baton/ci.yml", CI.as_bytes()), ("version.txt", b"one\n")],
        "one",
    );
    commit(&repo, &[("version.txt", b"two\n")], "two");
    let cfg = format!(
        "administrators: [root]\nrepos:\n  app:\n    url: {}\n    forge: git\n  broken:\n    url: /nonexistent/broken\n    poll: 1s\n",
        repo.to_str().unwrap()
    );
    let s = Server::start(&cfg);
    users::add_user(&s, "root", "pw-root-1");
    let cookie = format!(
        "baton_session={}",
        users::login(&s, "root", "pw-root-1").await
    );
    eventually(&s, "no fetch error for broken", || async {
        repo_entry(&s, "broken").await["last_fetch_error"]
            .is_string()
            .then_some(())
    })
    .await;
    let http = users::no_redirects();
    let html = users::page(&s, &cookie, "/repos").await;
    assert!(html.contains("id=\"repo-app\""), "{html}");
    assert!(html.contains("id=\"repo-broken\""), "{html}");
    assert!(html.contains("Fetch error"), "{html}");
    let csrf = users::csrf_in(&html);
    let resp = http
        .post(format!("{}/repos/app/trigger", s.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(users::form_encode(&[
            ("csrf", &csrf),
            ("task", "test"),
            ("ref", &v1),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    let id: i64 = to.strip_prefix("/runs/").unwrap().parse().unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["repo"]["commit"], v1.as_str());

    // The task's own trigger form asks for a ref.
    let form = users::page(&s, &cookie, "/trigger/task/app%2Ftest").await;
    assert!(form.contains("name=\"ref\""), "{form}");
}
