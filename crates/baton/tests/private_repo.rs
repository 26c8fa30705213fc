//! A private repository: the forge is a stand-in HTTP server on loopback that serves a bare
//! repository with `git http-backend` (through `baton_git::serve_http`) only to requests
//! carrying the repository's token. Baton's mirror fetches with the token, and the token is in
//! no process's argv during the fetch, no log, no API answer and no file Baton wrote.

mod common;

use common::gitrepo;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use common::Server;

const SECRET: &str = "private-repo-hook-secret";
const TOKEN: &str = "ghp_PrivateRepoToken1234567890abcdef";

struct Forge {
    bare: PathBuf,
    /// `Authorization` header value the forge accepts.
    expected: String,
    /// Requests served with the right token.
    served: Mutex<u32>,
    /// Requests refused (no or a wrong token).
    refused: Mutex<u32>,
    /// Processes whose argv held the token while a fetch was being served.
    leaks: Mutex<Vec<String>>,
}

/// Every process's command line that contains one of `needles`.
fn argv_with(needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().any(|n| line.contains(n)) {
            hits.push(line);
        }
    }
    hits
}

async fn forge(
    State(f): State<Arc<Forge>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(f.expected.as_str()) {
        *f.refused.lock().unwrap() += 1;
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"forge\"")],
        )
            .into_response();
    }
    // The fetching git is alive while its request is served: look at every argv now.
    let encoded = f.expected.trim_start_matches("Basic ").to_owned();
    f.leaks
        .lock()
        .unwrap()
        .extend(argv_with(&[TOKEN, encoded.as_str()]));
    *f.served.lock().unwrap() += 1;
    let Some(rest) = uri.path().strip_prefix("/app.git/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let text = |n: header::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let req = baton_git::HttpRequest {
        method: method.as_str().to_owned(),
        path: rest.to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        content_type: text(header::CONTENT_TYPE),
        content_encoding: text(header::CONTENT_ENCODING),
        git_protocol: text(header::HeaderName::from_static("git-protocol")),
        body: body.to_vec(),
    };
    let answer = baton_git::serve_http(&f.bare, req).await.unwrap();
    let mut resp = Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    resp.body(Body::from_stream(tokio_util::io::ReaderStream::new(
        answer.body,
    )))
    .unwrap()
}

/// Starts the stand-in forge for `bare`; its base URL.
async fn start_forge(f: Arc<Forge>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(forge).with_state(f);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// Every file below `dir` whose bytes contain one of `needles`.
fn files_with(dir: &Path, needles: &[&str]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            hits.extend(files_with(&p, needles));
        } else if t.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            if needles.iter().any(|n| text.contains(n)) {
                hits.push(p);
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_is_fetched_with_its_token_which_leaks_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("app");
    let sha = gitrepo::sample_repo(&work, "");
    let bare = tmp.path().join("app.git");
    gitrepo::git(
        tmp.path(),
        &["clone", "-q", "--bare", "app", bare.to_str().unwrap()],
    );
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"));
    let f = Arc::new(Forge {
        bare,
        expected: format!("Basic {pair}"),
        served: Mutex::new(0),
        refused: Mutex::new(0),
        leaks: Mutex::new(Vec::new()),
    });
    let base = start_forge(f.clone()).await;
    let url = format!("{base}/app.git");
    let wrong_url = format!("{base}/other.git");
    let yaml = format!(
        "repos:
  app:
    url: {url}
    forge: github
    secret: env:HOOK_SECRET
    token: env:APP_TOKEN
  wrong:
    url: {wrong_url}
    forge: github
    secret: env:HOOK_SECRET
    token: env:WRONG_TOKEN
"
    );
    let s = Server::start_env(
        &yaml,
        &[
            ("HOOK_SECRET", SECRET),
            ("APP_TOKEN", TOKEN),
            ("WRONG_TOKEN", "not-the-token"),
        ],
    );

    let runs = gitrepo::push(&s, SECRET, &url, &sha, "push-1").await;
    let test = {
        let mut found = None;
        for id in runs {
            let run = s.wait_run(id).await;
            if run["target"] == "app/test" {
                found = Some(id);
            }
        }
        found.expect("app/test ran")
    };
    gitrepo::assert_checked_out(&s, &work, test, &sha, tmp.path()).await;
    assert!(
        *f.served.lock().unwrap() >= 2,
        "the mirror fetched over http"
    );
    let leaks = f.leaks.lock().unwrap().clone();
    assert!(
        leaks.is_empty(),
        "the token was in a process's argv: {leaks:?}"
    );

    // A wrong token is refused by the forge; the delivery says the fetch failed, without it.
    let refused_before = *f.refused.lock().unwrap();
    let body = gitrepo::push_payload(&wrong_url, "main", &sha, "x");
    let sig = format!("sha256={}", baton_forge::sign(SECRET.as_bytes(), &body));
    let resp = s
        .http
        .post(format!("{}/hooks/github", s.base))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "push-2")
        .header("X-Hub-Signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut text = resp.text().await.unwrap();
    // The fetch is retried with backoff, so the answer may come later: in the deliveries list.
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        let list = s.get_ok("/deliveries").await;
        let done = list["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["delivery"] == "push-2" && d["status_code"] == 502)
            .cloned();
        if let Some(d) = done {
            text.push_str(&d.to_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed fetch: {list:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(text.contains("could not fetch"), "{text}");
    assert!(*f.refused.lock().unwrap() > refused_before);

    // The token is in no answer, log or file of the server's.
    let encoded = pair.as_str();
    let needles = [TOKEN, encoded, "not-the-token"];
    let mut answers = String::new();
    for path in ["/runs", &format!("/runs/{test}"), "/deliveries"] {
        answers.push_str(&s.get_ok(path).await.to_string());
    }
    answers.push_str(&s.log_text(test, None).await);
    answers.push_str(&text);
    answers.push_str(&s.stderr());
    for n in needles {
        assert!(!answers.contains(n), "{n} leaked: {answers}");
    }
    let hits = files_with(s.root.path(), &needles);
    assert!(hits.is_empty(), "files holding the token: {hits:?}");
}
