//! Commit statuses end to end: a real git repository, a signed push webhook to the real
//! binary, and a small local stand-in for each forge's status API that checks every request
//! against the forge's documentation (method, path, auth header, content type, JSON body) and
//! records it. Statuses arrive in order with the run's URL, survive a failing endpoint and a
//! SIGKILL of the server, and never change a run's result.

mod common;
#[path = "common/users.rs"]
mod users;

use std::path::Path;
use std::sync::atomic::Ordering;

use common::Server;
use common::fakeforge::{FakeForge, Kind, TOKEN};
use common::forgehook::runs_by_target;

const SECRET: &str = "status-hook-secret";
const PUBLIC: &str = "https://ci.example.test";

/// A repository at `<tmp>/local/app` (the stand-in's `owner/name` is `local/app`) with a
/// `.baton/` of two tasks: `ok` succeeds, `bad` exits 3. Returns its path and head commit.
fn make_repo(tmp: &Path) -> (String, String) {
    common::forgehook::make_repo(
        tmp,
        "tasks:\n  ok:\n    command: echo fine\n    checkout: false\n  bad:\n    command: exit 3\n    checkout: false\n",
    )
}

/// Sends a signed push of `sha` to `main` as `kind` sends it; returns the runs it started.
async fn push(s: &Server, kind: Kind, url: &str, sha: &str, delivery: &str) -> Vec<i64> {
    common::forgehook::push(s, kind, url, sha, delivery, SECRET).await
}

fn start(kind: Kind, url: &str, api: &str) -> Server {
    let forge = match kind {
        Kind::GitHub => "github",
        Kind::Gitea => "gitea",
        Kind::GitLab => "gitlab",
    };
    let config = format!(
        "administrators: [root]\nserver:\n  public_url: {PUBLIC}/\nrepos:\n  app:\n    url: {url}\n    forge: {forge}\n    secret: env:APP_SECRET\n    token: env:APP_TOKEN\n    api: {api}\n"
    );
    Server::start_env(&config, &[("APP_SECRET", SECRET), ("APP_TOKEN", TOKEN)])
}

/// Each forge gets queued → running → the end, in order, in its own words, with the run's URL.
async fn statuses_follow_the_runs(kind: Kind) {
    let forge = FakeForge::start(kind).await;
    let tmp = tempfile::tempdir().unwrap();
    let (url, sha) = make_repo(tmp.path());
    let s = start(kind, &url, &forge.base);
    let ids = push(&s, kind, &url, &sha, "push-1").await;
    let runs = runs_by_target(&s, &ids).await;
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs["app/ok"]["status"], "success");
    assert_eq!(runs["app/bad"]["status"], "failed");

    let (running, failed) = match kind {
        Kind::GitLab => ("running", "failed"),
        _ => ("pending", "failure"),
    };
    for (target, end, first_word) in [
        ("app/ok", "success", "succeeded"),
        ("app/bad", failed, "failed"),
    ] {
        let id = runs[target]["id"].as_i64().unwrap();
        let got = forge.wait_for(&format!("baton/{target}"), 3, &s).await;
        let states: Vec<&str> = got.iter().map(|g| g.state.as_str()).collect();
        assert_eq!(states, ["pending", running, end], "{got:#?}");
        let descriptions: Vec<&str> = got.iter().map(|g| g.description.as_str()).collect();
        assert_eq!(&descriptions[..2], ["queued", "running"], "{got:#?}");
        assert!(descriptions[2].starts_with(first_word), "{got:#?}");
        for g in &got {
            assert_eq!(g.sha, sha);
            assert_eq!(
                g.target_url.as_deref(),
                Some(&*format!("{PUBLIC}/runs/{id}"))
            );
        }
        // The run tells how its statuses went.
        let run = s
            .wait_until(id, "all statuses sent", |r| {
                r["statuses"]
                    .as_array()
                    .is_some_and(|l| l.len() == 3 && l.iter().all(|x| x["outcome"] == "sent"))
            })
            .await;
        assert_eq!(
            run["statuses"][2]["state"],
            if end == "success" {
                "success"
            } else {
                "failure"
            }
        );
    }
    assert!(!s.stderr().contains(TOKEN), "the token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_gets_statuses_in_order() {
    statuses_follow_the_runs(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_gets_statuses_in_order() {
    statuses_follow_the_runs(Kind::Gitea).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_gets_statuses_in_order() {
    statuses_follow_the_runs(Kind::GitLab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_and_the_run_keeps_its_result() {
    let forge = FakeForge::start(Kind::GitHub).await;
    forge.fail_next.store(2, Ordering::SeqCst);
    let tmp = tempfile::tempdir().unwrap();
    let (url, sha) = make_repo(tmp.path());
    let s = start(Kind::GitHub, &url, &forge.base);
    let ids = push(&s, Kind::GitHub, &url, &sha, "push-1").await;
    let runs = runs_by_target(&s, &ids).await;
    for target in ["app/ok", "app/bad"] {
        let got = forge.wait_for(&format!("baton/{target}"), 3, &s).await;
        let states: Vec<&str> = got.iter().map(|g| g.state.as_str()).collect();
        assert_eq!(states[0], "pending", "{got:#?}");
        assert_eq!(states.len(), 3, "{got:#?}");
    }
    assert_eq!(forge.failed.load(Ordering::SeqCst), 2);
    let tries: u64 = {
        let mut n = 0;
        for target in ["app/ok", "app/bad"] {
            let id = runs[target]["id"].as_i64().unwrap();
            let run = s
                .wait_until(id, "all statuses sent", |r| {
                    r["statuses"]
                        .as_array()
                        .is_some_and(|l| l.len() == 3 && l.iter().all(|x| x["outcome"] == "sent"))
                })
                .await;
            for st in run["statuses"].as_array().unwrap() {
                n += st["attempts"].as_u64().unwrap();
            }
        }
        n
    };
    assert_eq!(
        tries,
        6 + 2,
        "two statuses needed a second try each, or one needed three"
    );
    // The failures changed no run.
    assert_eq!(
        s.run(runs["app/ok"]["id"].as_i64().unwrap()).await["status"],
        "success"
    );
    assert_eq!(
        s.run(runs["app/bad"]["id"].as_i64().unwrap()).await["status"],
        "failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_statuses_are_sent_after_a_restart() {
    let forge = FakeForge::start(Kind::GitHub).await;
    forge.down.store(true, Ordering::SeqCst);
    let tmp = tempfile::tempdir().unwrap();
    let (url, sha) = make_repo(tmp.path());
    let mut s = start(Kind::GitHub, &url, &forge.base);
    let ids = push(&s, Kind::GitHub, &url, &sha, "push-1").await;
    let runs = runs_by_target(&s, &ids).await;
    let id = runs["app/ok"]["id"].as_i64().unwrap();
    let run = s
        .wait_until(id, "a status retried", |r| {
            r["statuses"]
                .as_array()
                .is_some_and(|l| l.first().is_some_and(|x| x["outcome"] == "retrying"))
        })
        .await;
    assert!(
        run["statuses"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{run:#}"
    );
    assert_eq!(run["status"], "success");
    // The run page says so too.
    users::add_user(&s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(&s, "root", "pw").await);
    let page = |s: &Server| {
        let req = users::no_redirects()
            .get(format!("{}/runs/{id}", s.base))
            .header("cookie", cookie.clone());
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let html = page(&s).await;
    assert!(html.contains("<code>baton/app/ok</code>"), "{html}");
    assert!(html.contains("retrying (try "), "{html}");
    s.kill9();
    assert!(forge.of("baton/app/ok").is_empty());
    forge.down.store(false, Ordering::SeqCst);
    s.restart();
    let got = forge.wait_for("baton/app/ok", 3, &s).await;
    let states: Vec<&str> = got.iter().map(|g| g.state.as_str()).collect();
    assert_eq!(states, ["pending", "pending", "success"], "{got:#?}");
    assert_eq!(got[1].description, "running");
    let got = forge.wait_for("baton/app/bad", 3, &s).await;
    assert_eq!(got[2].state, "failure", "{got:#?}");
    // Each status was sent once, after the restart.
    assert_eq!(forge.seen.lock().unwrap().len(), 6);
    s.wait_until(id, "all statuses sent", |r| {
        r["statuses"]
            .as_array()
            .is_some_and(|l| l.iter().all(|x| x["outcome"] == "sent"))
    })
    .await;
    let html = page(&s).await;
    assert!(html.contains("sent "), "{html}");
    assert!(!html.contains("retrying"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_without_a_token_gets_no_statuses_and_the_log_says_so_once() {
    let forge = FakeForge::start(Kind::GitHub).await;
    let tmp = tempfile::tempdir().unwrap();
    let (url, sha) = make_repo(tmp.path());
    let config = format!(
        "repos:\n  app:\n    url: {url}\n    forge: github\n    secret: env:APP_SECRET\n    api: {}\n",
        forge.base
    );
    let s = Server::start_env(&config, &[("APP_SECRET", SECRET)]);
    let ids = push(&s, Kind::GitHub, &url, &sha, "push-1").await;
    let runs = runs_by_target(&s, &ids).await;
    assert_eq!(runs["app/ok"]["status"], "success");
    for run in runs.values() {
        let id = run["id"].as_i64().unwrap();
        let run = s
            .wait_until(id, "its statuses skipped", |r| {
                r["statuses"]
                    .as_array()
                    .is_some_and(|l| l.len() == 3 && l.iter().all(|x| x["outcome"] == "skipped"))
            })
            .await;
        assert!(
            run["statuses"][0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("no token")),
            "{run:#}"
        );
    }
    assert!(forge.seen.lock().unwrap().is_empty());
    assert_eq!(
        s.stderr().matches("repos.app has no token").count(),
        1,
        "{}",
        s.stderr()
    );
}
