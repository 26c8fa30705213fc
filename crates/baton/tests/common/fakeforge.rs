//! A small local stand-in for each forge's commit-status API that checks every request against
//! the forge's documentation (method, path, auth header, content type, JSON body) and records
//! it; it can fail on purpose. The repository it serves is `local/app`, authorized by [`TOKEN`].

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use super::{Server, WAIT};

/// The forge API token the stand-in accepts.
pub const TOKEN: &str = "forge-token-6f1d2c";

pub use super::forgehook::Kind;

/// One status request the stand-in accepted.
#[derive(Debug, Clone)]
pub struct Seen {
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: String,
    pub target_url: Option<String>,
}

/// The stand-in forge API.
#[derive(Clone)]
pub struct FakeForge {
    pub kind: Kind,
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub problems: Arc<Mutex<Vec<String>>>,
    /// Requests to answer 500 before working again.
    pub fail_next: Arc<AtomicU32>,
    /// Answer 500 to everything while set.
    pub down: Arc<AtomicBool>,
    /// Requests that got a 500.
    pub failed: Arc<AtomicU32>,
}

impl FakeForge {
    pub async fn start(kind: Kind) -> FakeForge {
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

    pub fn of(&self, context: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.context == context)
            .cloned()
            .collect()
    }

    /// Waits until `n` statuses of `context` arrived; returns them.
    pub async fn wait_for(&self, context: &str, n: usize, s: &Server) -> Vec<Seen> {
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
