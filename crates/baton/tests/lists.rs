//! A repository's runs in the lists, against the real binary: a real git repository served by
//! `git daemon` on loopback, pushes delivered as signed GitHub webhooks; the runs list filtered
//! by repository, branch and commit (API and HTML), the run page's links to the forge, the
//! deliveries page (administrators only, paged) and the status badges with their access rules.

mod common;
#[path = "common/users.rs"]
mod users;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::gitrepo::git;
use common::*;

const SECRET: &str = "lists-hook-secret-7";

/// Writes `files`, commits them with `message` and pushes the branch to `origin`; the sha.
fn commit_push(repo: &Path, branch: &str, files: &[(&str, &str)], message: &str) -> String {
    for (path, text) in files {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["push", "-q", "origin", branch]);
    git(repo, &["rev-parse", "HEAD"])
}

/// `git daemon` serving `base` read-only on a free loopback port; killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git_daemon(base: &Path, probe: &str) -> Daemon {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The daemon itself, not the `git daemon` wrapper, so that killing the child stops it.
    let exec_path = git(base, &["--exec-path"]);
    let child = Command::new(Path::new(&exec_path).join("git-daemon"))
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon");
    let daemon = Daemon { child, port };
    let url = format!("git://127.0.0.1:{port}/{probe}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new("git")
            .args(["ls-remote", &url])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return daemon;
        }
        assert!(Instant::now() < deadline, "git daemon did not serve {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn push_payload(url: &str, branch: &str, before: &str, after: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": after,
        "created": before.bytes().all(|b| b == b'0'),
        "deleted": false,
        "repository": {"full_name": "team/app", "clone_url": url, "html_url": url},
        "pusher": {"name": "ada"},
        "sender": {"login": "ada"},
        "head_commit": {"id": after, "message": message,
            "author": {"name": "Ada Tester", "email": "ada@example.com"}},
        "commits": [{"id": after, "message": message, "added": [], "modified": [], "removed": []}],
    }))
    .unwrap()
}

async fn deliver(s: &Server, event: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
    common::forgehook::deliver_github(s, event, delivery, body, SECRET).await
}

/// Delivers a push and waits for every run it started; their ids.
async fn push(s: &Server, url: &str, at: (&str, &str, &str), message: &str, id: &str) -> Vec<i64> {
    let (branch, before, after) = at;
    let body = push_payload(url, branch, before, after, message);
    let (st, v) = deliver(s, "push", id, &body).await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    let runs: Vec<i64> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_i64().unwrap())
        .collect();
    for id in &runs {
        let run = s.wait_run(*id).await;
        assert!(is_terminal(&run), "{run:#}");
    }
    runs
}

fn config(url: &str) -> String {
    format!(
        "administrators: [root]
repos:
  app:
    url: {url}
    forge: github
    secret: env:APP_SECRET
tasks:
  public:
    command: test \"$BATON_BRANCH\" = main
    checkout: false
    authorized_users: ['*']
    on: {{repo: [app], push: {{branches: ['*']}}}}
  private:
    command: 'true'
    authorized_users: [bob]
"
    )
}

struct Fixture {
    _tmp: tempfile::TempDir,
    _daemon: Daemon,
    s: Server,
    url: String,
    main_sha: String,
    dev_sha: String,
    main_runs: Vec<i64>,
    dev_runs: Vec<i64>,
    plain_run: i64,
    root: String,
    alice: String,
}

/// A repository with a commit on `main` and one on `dev`, each pushed and delivered; a run of a
/// task without a repository; users root (administrator) and alice (no task of her own).
async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    let bare: PathBuf = srv.join("team/app.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let repo = tmp.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let ci = "tasks:\n  test:\n    command: test -f ok\n";
    let main_sha = commit_push(
        &repo,
        "main",
        &[(".baton/ci.yml", ci), ("ok", "")],
        "first <ok>",
    );
    let daemon = git_daemon(&srv, "team/app.git");
    let url = format!("git://127.0.0.1:{}/team/app.git", daemon.port);
    let s = Server::start_env(&config(&url), &[("APP_SECRET", SECRET)]);
    let zero = "0".repeat(40);
    let main_runs = push(&s, &url, ("main", &zero, &main_sha), "first <ok>", "d-main").await;
    git(&repo, &["checkout", "-q", "-b", "dev"]);
    git(&repo, &["rm", "-q", "ok"]);
    let dev_sha = commit_push(&repo, "dev", &[("dev.txt", "dev\n")], "no ok on dev");
    let dev_runs = push(&s, &url, ("dev", &zero, &dev_sha), "no ok on dev", "d-dev").await;
    assert_eq!(
        (main_runs.len(), dev_runs.len()),
        (2, 2),
        "app/test and public each"
    );
    let plain_run = id_of(&s.trigger("private", &[]).await);
    s.wait_run(plain_run).await;
    users::add_user(&s, "root", "pw");
    users::add_user(&s, "alice", "pw");
    let root = format!("baton_session={}", users::login(&s, "root", "pw").await);
    let alice = format!("baton_session={}", users::login(&s, "alice", "pw").await);
    Fixture {
        _tmp: tmp,
        _daemon: daemon,
        s,
        url,
        main_sha,
        dev_sha,
        main_runs,
        dev_runs,
        plain_run,
        root,
        alice,
    }
}

async fn page(s: &Server, cookie: &str, path: &str) -> (u16, String) {
    let r = users::no_redirects()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn ids(s: &Server, query: &str) -> Vec<i64> {
    let v = s.get_ok(&format!("/runs?{query}")).await;
    let mut ids: Vec<i64> = v["runs"].as_array().unwrap().iter().map(id_of).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

#[tokio::test]
async fn runs_filter_by_repo_branch_and_commit_in_the_api_and_the_page() {
    let f = fixture().await;
    let s = &f.s;
    let all = sorted([f.main_runs.clone(), f.dev_runs.clone()].concat());
    assert_eq!(ids(s, "repo=app").await, all);
    assert_eq!(
        ids(s, "repo=app&branch=dev").await,
        sorted(f.dev_runs.clone())
    );
    assert_eq!(ids(s, "branch=main").await, sorted(f.main_runs.clone()));
    assert_eq!(
        ids(s, &format!("commit={}", &f.main_sha[..7])).await,
        sorted(f.main_runs.clone())
    );
    let upper = f.dev_sha[..12].to_uppercase();
    assert_eq!(
        ids(s, &format!("commit={upper}")).await,
        sorted(f.dev_runs.clone())
    );
    assert_eq!(
        ids(s, &format!("commit={}", f.dev_sha)).await,
        sorted(f.dev_runs.clone())
    );
    assert!(ids(s, "repo=other").await.is_empty());
    assert!(ids(s, "repo=app&branch=nope").await.is_empty());
    assert!(ids(s, "").await.contains(&f.plain_run));
    let (st, v) = s.get("/runs?commit=xyz").await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("hex"),
        "{v}"
    );
    let one = s.get_ok("/runs?branch=dev&repo=app&task=app/test").await;
    assert_eq!(one["runs"][0]["repo"]["commit"], f.dev_sha.as_str());
    assert_eq!(one["runs"][0]["repo"]["url"], f.url.as_str());

    // The page: the same filters, each row with its repository, branch and short commit.
    let (st, html) = page(s, &f.root, "/runs?repo=app&branch=dev").await;
    assert_eq!(st, 200);
    for id in &f.dev_runs {
        assert!(html.contains(&format!("href=\"/runs/{id}\"")), "{html}");
    }
    for id in f.main_runs.iter().chain([&f.plain_run]) {
        assert!(
            !html.contains(&format!("href=\"/runs/{id}\"")),
            "run {id} filtered out"
        );
    }
    assert!(
        html.contains(&format!(">{}</code>", &f.dev_sha[..10])),
        "{html}"
    );
    assert!(html.contains(" · dev · "), "{html}");
    assert!(html.contains("name=\"branch\" value=\"dev\""), "{html}");
    let (_, html) = page(s, &f.root, &format!("/runs?commit={}", &f.main_sha[..8])).await;
    for id in &f.main_runs {
        assert!(html.contains(&format!("href=\"/runs/{id}\"")), "{html}");
    }
    for id in &f.dev_runs {
        assert!(!html.contains(&format!("href=\"/runs/{id}\"")), "{html}");
    }
    let (st, html) = page(s, &f.root, "/runs?commit=not-hex").await;
    assert_eq!(st, 400, "{html}");
    // Alice sees the public task's runs only (authorized_users: ['*']), filtered the same way.
    let (st, html) = page(s, &f.alice, "/runs?repo=app").await;
    assert_eq!(st, 200);
    for id in f.main_runs.iter().chain(&f.dev_runs) {
        let public = s.run(*id).await["target"] == "public";
        assert_eq!(
            html.contains(&format!("href=\"/runs/{id}\"")),
            public,
            "run {id}: {html}"
        );
    }
}

#[tokio::test]
async fn the_run_page_links_the_commit_and_shows_the_code() {
    let f = fixture().await;
    let s = &f.s;
    let mut test_run = None;
    for id in &f.main_runs {
        if s.run(*id).await["target"] == "app/test" {
            test_run = Some(*id);
        }
    }
    let id = test_run.expect("an app/test run on main");
    let (st, html) = page(s, &f.root, &format!("/runs/{id}")).await;
    assert_eq!(st, 200);
    let web = "https://127.0.0.1/team/app";
    assert!(
        html.contains(&format!("<a href=\"{web}\">app</a>")),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<a href=\"{web}/commit/{}\"><code title=\"{}\">{}</code></a>",
            f.main_sha,
            f.main_sha,
            &f.main_sha[..10]
        )),
        "{html}"
    );
    assert!(
        html.contains("first &#60;ok&#62;"),
        "the subject, escaped: {html}"
    );
    assert!(
        html.contains("<dd id=\"branch\"><a href=\"/runs?repo=app&amp;branch=main\">main</a>"),
        "{html}"
    );
    assert!(html.contains("<dd id=\"event\">push</dd>"), "{html}");
    assert!(
        html.contains("Ada Tester &#60;ada@example.com&#62;"),
        "{html}"
    );
    assert!(!html.contains("id=\"pr\""), "no pull request: {html}");
    // A run without a repository shows none of it.
    let (_, html) = page(s, &f.root, &format!("/runs/{}", f.plain_run)).await;
    assert!(!html.contains("id=\"commit\""), "{html}");
}

#[tokio::test]
async fn deliveries_are_listed_for_administrators_only_newest_first_and_paged() {
    let f = fixture().await;
    let s = &f.s;
    let (st, html) = page(s, &f.root, "/deliveries").await;
    assert_eq!(st, 200, "{html}");
    assert!(
        html.contains("href=\"/deliveries\""),
        "the admin navigation links it"
    );
    let dev = html.find(&f.dev_sha[..10]).expect("the dev push");
    let main = html.find(&f.main_sha[..10]).expect("the main push");
    assert!(dev < main, "newest first");
    for id in f.main_runs.iter().chain(&f.dev_runs) {
        assert!(
            html.contains(&format!("<a href=\"/runs/{id}\">#{id}</a>")),
            "{html}"
        );
    }
    assert!(
        html.contains("refs/heads/dev") && html.contains(">github<") && html.contains(">push<")
    );
    assert!(!html.contains("id=\"older\""), "one page");

    // Alice is no administrator: no link, no page, no API.
    let (st, html) = page(s, &f.alice, "/").await;
    assert_eq!(st, 200);
    assert!(!html.contains("href=\"/deliveries\""), "{html}");
    let (st, _) = page(s, &f.alice, "/deliveries").await;
    assert_eq!(st, 403);
    let (st, _) = page(s, "", "/deliveries").await;
    assert_eq!(st, 303, "a visitor is sent to sign in");

    // 50 a page; the older ones behind the cursor.
    let ping = serde_json::to_vec(&json!({"zen": "Keep it simple.", "hook_id": 1,
        "repository": {"full_name": "team/app", "clone_url": f.url, "html_url": f.url}}))
    .unwrap();
    for i in 0..49 {
        let (st, v) = deliver(s, "ping", &format!("ping-{i}"), &ping).await;
        assert_eq!(st, 200, "{v}");
    }
    let (_, html) = page(s, &f.root, "/deliveries").await;
    assert_eq!(html.matches("<tr id=\"delivery-").count(), 50);
    assert!(html.contains("pong"), "{html}");
    assert!(
        !html.contains(&f.main_sha[..10]),
        "the oldest is on the next page"
    );
    let i = html.find("id=\"older\" href=\"").expect("an older link") + 17;
    let next = &html[i..i + html[i..].find('"').unwrap()];
    let (st, html) = page(s, &f.root, next).await;
    assert_eq!(st, 200);
    assert_eq!(html.matches("<tr id=\"delivery-").count(), 1);
    assert!(html.contains(&f.main_sha[..10]), "{html}");
}

async fn badge(s: &Server, path: &str, token: Option<&str>) -> (u16, String, String, String) {
    let mut req = s.http.get(format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (ct, cc) = (header("content-type"), header("cache-control"));
    (r.status().as_u16(), ct, cc, r.text().await.unwrap())
}

#[tokio::test]
async fn badges_say_passing_failing_or_unknown_and_follow_access() {
    let f = fixture().await;
    let s = &f.s;
    for (branch, verdict) in [
        ("main", "passing"),
        ("dev", "failing"),
        ("feature", "unknown"),
    ] {
        let (st, ct, cc, svg) = badge(s, &format!("/badge/public.svg?branch={branch}"), None).await;
        assert_eq!(st, 200, "{svg}");
        assert!(ct.starts_with("image/svg+xml"), "{ct}");
        assert_eq!(cc, "no-cache");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains(">baton/public</text>"), "{svg}");
        assert!(
            svg.contains(&format!(">{verdict}</text>")),
            "{branch}: {svg}"
        );
    }
    // Without a branch: the newest run on any branch (dev's, which failed).
    let (_, _, _, svg) = badge(s, "/badge/public.svg", None).await;
    assert!(svg.contains(">failing</text>"), "{svg}");

    // A repository's task (REPO/TASK, a `/` in the name) is for administrators: hidden from a
    // visitor and from alice exactly like a task that does not exist.
    let (st, _, cc, missing) = badge(s, "/badge/nothing.svg", None).await;
    assert_eq!((st, cc.as_str()), (404, "no-cache"));
    let alice = users::user_token(s, "alice");
    for (path, token) in [
        ("/badge/app/test.svg?branch=main", None),
        ("/badge/app/test.svg?branch=main", Some(alice.as_str())),
        ("/badge/private.svg", None),
        ("/badge/private.svg", Some(alice.as_str())),
        ("/badge/app/test", None),
    ] {
        let (st, _, _, body) = badge(s, path, token).await;
        assert_eq!((st, body.as_str()), (404, missing.as_str()), "{path}");
    }
    let (st, _, _, svg) = badge(s, "/badge/app/test.svg?branch=main", Some(&s.token)).await;
    assert_eq!(st, 200);
    assert!(
        svg.contains(">baton/app/test</text>") && svg.contains(">passing</text>"),
        "{svg}"
    );
    let (_, _, _, svg) = badge(s, "/badge/app/test.svg?branch=dev", Some(&s.token)).await;
    assert!(svg.contains(">failing</text>"), "{svg}");
    let (st, _, _, svg) = badge(s, "/badge/private.svg", Some(&s.token)).await;
    assert_eq!(st, 200);
    assert!(svg.contains(">passing</text>"), "{svg}");
}
