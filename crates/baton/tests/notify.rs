//! Run-end notifications end to end: the real binary, real runs, and a receiver on loopback
//! that checks every request the way a receiver of GitHub-shaped webhooks would (POST, JSON,
//! `X-Baton-Event: run`, `X-Baton-Signature-256: sha256=HEX` — the HMAC-SHA256 of the exact
//! body with the shared key, computed here independently) and records it. Exactly one
//! notification per matching run end, none for other tasks or statuses; a failing receiver
//! gets it after retries, also across a SIGKILL of the server; the run's result never changes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use common::{Server, WAIT, id_of};

const KEY_A: &str = "notify-key-a-5d0c9e";
const KEY_B: &str = "notify-key-b-77e1aa";
const PUBLIC: &str = "https://ci.example.test";

/// One notification the receiver accepted.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    delivery: String,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    problems: Arc<Mutex<Vec<String>>>,
    /// Requests to answer 500 before working again.
    fail_next: Arc<AtomicU32>,
    /// Answer 500 to everything while set.
    down: Arc<AtomicBool>,
    /// Requests answered 500, with their delivery ids.
    failed: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            base: format!("http://{}", listener.local_addr().unwrap()),
            seen: Arc::default(),
            problems: Arc::default(),
            fail_next: Arc::default(),
            down: Arc::default(),
            failed: Arc::default(),
        };
        let me = r.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move { me.handle(method, uri, headers, body) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
        let seen = match check(&method, &uri, &headers, &body) {
            Ok(s) => s,
            Err(p) => {
                self.problems.lock().unwrap().push(p);
                return StatusCode::BAD_REQUEST;
            }
        };
        if self.down.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.lock().unwrap().push(seen.delivery);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        self.seen.lock().unwrap().push(seen);
        StatusCode::NO_CONTENT
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn assert_no_problems(&self) {
        let p = self.problems.lock().unwrap();
        assert!(p.is_empty(), "bad notification requests: {p:#?}");
    }

    /// Waits until `n` notifications were accepted.
    async fn wait_for(&self, n: usize, server: &Server) -> Vec<Seen> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.assert_no_problems();
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} notifications, got {seen:#?}\nfailed: {:?}\n{}",
                self.failed.lock().unwrap(),
                server.stderr()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The request as a receiver verifies it (the key chosen by the path), or what is wrong.
fn check(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Seen, String> {
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
    if header("x-baton-event") != "run" {
        return Err(format!("X-Baton-Event {:?}", header("x-baton-event")));
    }
    let key = match uri.path() {
        "/a" => KEY_A,
        "/b" => KEY_B,
        p => return Err(format!("unknown path {p}")),
    };
    let sig = header("x-baton-signature-256");
    let Some(hex_sig) = sig.strip_prefix("sha256=") else {
        return Err(format!("X-Baton-Signature-256 {sig:?} lacks sha256="));
    };
    let raw = hex::decode(hex_sig).map_err(|e| format!("signature not hex: {e}"))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&raw)
        .map_err(|_| format!("signature {sig} does not match the body with the key of {uri}"))?;
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    for field in ["run_id", "task", "status", "started_at", "ended_at", "url"] {
        if body.get(field).is_none() {
            return Err(format!("body lacks {field:?}: {body}"));
        }
    }
    if body["event"] != "run" {
        return Err(format!("event {} in {body}", body["event"]));
    }
    let delivery = header("x-baton-delivery");
    if delivery.is_empty() {
        return Err("no X-Baton-Delivery".into());
    }
    Ok(Seen {
        path: uri.path().to_owned(),
        delivery,
        body,
    })
}

fn config(r: &Receiver) -> String {
    format!(
        "server:\n  public_url: {PUBLIC}/\ntasks:\n  ok:\n    command: \"true\"\n  bad:\n    command: exit 3\n  other:\n    command: exit 1\n  done:\n    command: \"true\"\nnotify:\n  - webhook: {0}/a\n    secret: env:KEY_A\n    tasks: [ok, bad, done]\n    on: [success, failed]\n  - webhook: {0}/b\n    secret: env:KEY_B\n    tasks: ['**', '!ok']\n    on: [failed]\n",
        r.base
    )
}

fn start(r: &Receiver) -> Server {
    Server::start_env(&config(r), &[("KEY_A", KEY_A), ("KEY_B", KEY_B)])
}

/// (path, task, status) of each notification, sorted.
fn summary(seen: &[Seen]) -> Vec<(String, String, String)> {
    let mut s: Vec<_> = seen
        .iter()
        .map(|x| {
            (
                x.path.clone(),
                x.body["task"].as_str().unwrap_or("").to_owned(),
                x.body["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_matching_run_end_is_told_once_signed_and_others_not_at_all() {
    let r = Receiver::start().await;
    let s = start(&r);
    let mut ids = Vec::new();
    for task in ["ok", "bad", "other"] {
        let run = s.trigger(task, &[]).await;
        ids.push(id_of(&run));
    }
    for id in &ids {
        s.wait_run(*id).await;
    }
    // A last run told to /a: every earlier end was fanned out no later than it.
    let done = id_of(&s.trigger("done", &[]).await);
    assert_eq!(s.wait_run(done).await["status"], "success");
    let seen = r.wait_for(5, &s).await;
    let want = |p: &str, t: &str, st: &str| (p.to_owned(), t.to_owned(), st.to_owned());
    assert_eq!(
        summary(&seen),
        [
            want("/a", "bad", "failed"),
            want("/a", "done", "success"),
            want("/a", "ok", "success"),
            want("/b", "bad", "failed"),
            want("/b", "other", "failed"),
        ],
        "{seen:#?}"
    );
    // Every end before `done` was fanned out before it: the outbox holds exactly these five,
    // so no notification for a non-matching task or status can come later.
    assert_eq!(
        s.sql("SELECT COUNT(*) FROM notifications WHERE webhook IS NOT NULL"),
        "5"
    );
    let bad = seen
        .iter()
        .find(|x| x.path == "/a" && x.body["task"] == "bad")
        .unwrap();
    assert_eq!(bad.body["run_id"], ids[1]);
    assert_eq!(bad.body["url"], format!("{PUBLIC}/runs/{}", ids[1]));
    assert_eq!(bad.body["kind"], "task");
    assert!(bad.body["ended_at"].is_string(), "{:#}", bad.body);
    assert!(bad.body.get("commit").is_none(), "{:#}", bad.body);
    // The runs kept their results.
    assert_eq!(s.run(ids[0]).await["status"], "success");
    assert_eq!(s.run(ids[1]).await["status"], "failed");
    r.assert_no_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_notification_on_the_third_try() {
    let r = Receiver::start().await;
    r.fail_next.store(2, Ordering::SeqCst);
    let s = start(&r);
    let id = id_of(&s.trigger("ok", &[]).await);
    assert_eq!(s.wait_run(id).await["status"], "success");
    let seen = r.wait_for(1, &s).await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].body["run_id"], id);
    let failed = r.failed.lock().unwrap().clone();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().all(|d| *d == seen[0].delivery),
        "every try is the same delivery: {failed:?} then {}",
        seen[0].delivery
    );
    assert_eq!(s.run(id).await["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_not_sent_before_a_sigkill_is_sent_after_the_restart() {
    let r = Receiver::start().await;
    r.down.store(true, Ordering::SeqCst);
    let mut s = start(&r);
    let id = id_of(&s.trigger("bad", &[]).await);
    assert_eq!(s.wait_run(id).await["status"], "failed");
    let deadline = Instant::now() + WAIT;
    while r.failed.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no tries:\n{}", s.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.kill9();
    r.down.store(false, Ordering::SeqCst);
    s.restart();
    let seen = r.wait_for(2, &s).await;
    assert_eq!(
        summary(&seen),
        [
            ("/a".to_owned(), "bad".to_owned(), "failed".to_owned()),
            ("/b".to_owned(), "bad".to_owned(), "failed".to_owned()),
        ]
    );
    assert_eq!(s.run(id).await["status"], "failed");
}
