//! Commit statuses end to end: a real git repository, a signed push webhook to the real
//! binary, and a small local stand-in for each forge's status API that checks every request
//! against the forge's documentation (method, path, auth header, content type, JSON body) and
//! records it. Statuses arrive in order with the run's URL, survive a failing endpoint and a
//! SIGKILL of the server, and never change a run's result.

mod common;
#[path = "common/users.rs"]
mod users;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use common::forgehook::{Kind, runs_by_target};
use common::{Server, WAIT};

const SECRET: &str = "status-hook-secret";
const TOKEN: &str = "forge-token-6f1d2c";
const PUBLIC: &str = "https://ci.example.test";

/// One status request the stand-in accepted.
#[derive(Debug, Clone)]
struct Seen {
    sha: String,
    context: String,
    state: String,
    description: String,
    target_url: Option<String>,
}

/// The stand-in forge API.
#[derive(Clone)]
struct FakeForge {
    kind: Kind,
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    problems: Arc<Mutex<Vec<String>>>,
    /// Requests to answer 500 before working again.
    fail_next: Arc<AtomicU32>,
    /// Answer 500 to everything while set.
    down: Arc<AtomicBool>,
    /// Requests that got a 500.
    failed: Arc<AtomicU32>,
}

impl FakeForge {
    async fn start(kind: Kind) -> FakeForge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let forge = FakeForge {
            kind,
            base,
            seen: Arc::default(),
            problems: Arc::default(),
            fail_next: Arc::default(),
            down: Arc::default(),
            failed: Arc::default(),
        };
        let f = forge.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let f = f.clone();
                async move { f.handle(method, uri, headers, body) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        forge
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
        let problems = self.check(&method, &uri, &headers, &body);
        if let Err(p) = problems {
            self.problems.lock().unwrap().push(p);
            return StatusCode::BAD_REQUEST;
        }
        if self.down.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        self.seen.lock().unwrap().push(problems.unwrap());
        StatusCode::CREATED
    }

    /// The request as the forge documents it, or what is wrong with it.
    fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Seen, String> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        if method != Method::POST {
            return Err(format!("method {method} for {uri}"));
        }
        if !header("content-type").starts_with("application/json") {
            return Err(format!("content-type {:?}", header("content-type")));
        }
        let path = uri.path();
        let (prefix, auth_ok, states, name_key): (&str, bool, &[&str], &str) = match self.kind {
            Kind::GitHub => (
                "/repos/local/app/statuses/",
                header("authorization") == format!("Bearer {TOKEN}")
                    && header("accept") == "application/vnd.github+json"
                    && header("x-github-api-version") == "2022-11-28",
                &["pending", "success", "failure", "error"],
                "context",
            ),
            Kind::Gitea => (
                "/api/v1/repos/local/app/statuses/",
                header("authorization") == format!("token {TOKEN}"),
                &["pending", "success", "error", "failure", "warning"],
                "context",
            ),
            Kind::GitLab => (
                "/api/v4/projects/local%2Fapp/statuses/",
                header("private-token") == TOKEN,
                &["pending", "running", "success", "failed", "canceled"],
                "name",
            ),
        };
        let Some(sha) = path.strip_prefix(prefix) else {
            return Err(format!("path {path} (expected {prefix}SHA)"));
        };
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha {sha:?}"));
        }
        if !auth_ok {
            return Err(format!("auth headers of {path}: {headers:?}"));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let obj = v.as_object().ok_or("body is not an object")?;
        let allowed = ["state", "target_url", "description", name_key];
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("unexpected field {k} in {v}"));
        }
        let field = |k: &str| v[k].as_str().map(str::to_owned);
        let state = field("state").ok_or("no state")?;
        if !states.contains(&state.as_str()) {
            return Err(format!("state {state:?} is not one of {states:?}"));
        }
        let description = field("description").ok_or("no description")?;
        if description.chars().count() > 140 || description.contains('\n') {
            return Err(format!("description {description:?}"));
        }
        Ok(Seen {
            sha: sha.to_owned(),
            context: field(name_key).ok_or(format!("no {name_key}"))?,
            state,
            description,
            target_url: field("target_url"),
        })
    }

    fn of(&self, context: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.context == context)
            .cloned()
            .collect()
    }

    /// Waits until `n` statuses of `context` arrived; returns them.
    async fn wait_for(&self, context: &str, n: usize, s: &Server) -> Vec<Seen> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.of(context);
            let problems = self.problems.lock().unwrap().clone();
            assert!(problems.is_empty(), "bad status requests: {problems:#?}");
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{n} statuses of {context} did not arrive; got {got:#?}\n{}",
                s.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

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
