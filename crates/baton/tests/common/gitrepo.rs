//! Real git repositories for tests: commits in a temp dir, GitHub-shaped push deliveries, and
//! the byte-for-byte comparison of a checkout with `git archive` of its commit.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::Server;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Ada Tester")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Tester")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A fresh repository at `dir` on branch `main`.
pub fn init(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
}

/// Writes `files`, commits them with `message` on the current branch; returns the sha.
pub fn commit(repo: &Path, files: &[(&str, &[u8])], message: &str) -> String {
    for (path, bytes) in files {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

/// [`commit`] for text files.
pub fn commit_text(repo: &Path, files: &[(&str, &str)], message: &str) -> String {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
    commit(repo, &files, message)
}

/// A push payload in GitHub's documented shape for the repository `url`.
pub fn push_payload(url: &str, branch: &str, after: &str, message: &str) -> Vec<u8> {
    let before = "0".repeat(40);
    serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": after,
        "created": true,
        "deleted": false,
        "repository": {"full_name": "local/app", "clone_url": url, "html_url": url},
        "pusher": {"name": "ada"},
        "sender": {"login": "ada"},
        "head_commit": {"id": after, "message": message,
            "author": {"name": "Ada Tester", "email": "ada@example.com"}},
        "commits": [{"id": after, "message": message, "added": [], "modified": [], "removed": []}],
    }))
    .unwrap()
}

/// Delivers a signed GitHub push of `after` on `main` of `url`; the run ids it started.
pub async fn push(s: &Server, secret: &str, url: &str, after: &str, delivery: &str) -> Vec<i64> {
    let body = push_payload(url, "main", after, "a commit");
    let (status, v) = deliver_github(s, secret, "push", delivery, body).await;
    assert!(
        status == 200 || status == 202,
        "{status} {v}\n{}",
        s.stderr()
    );
    let runs = v["runs"].as_array().cloned().unwrap_or_default();
    assert!(!runs.is_empty(), "the push started nothing: {v}");
    runs.iter().map(|r| r.as_i64().unwrap()).collect()
}

/// Posts `body` to `/hooks/github` as event `event`, signed with `secret`: the answer's status
/// and JSON.
pub async fn deliver_github(
    s: &Server,
    secret: &str,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let sig = format!("sha256={}", baton_forge::sign(secret.as_bytes(), &body));
    let resp = s
        .http
        .post(format!("{}/hooks/github", s.base))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The body of a GitHub push of `refname` at `oid` (a branch or a result ref) with no commits
/// listed, as a push of a new ref is.
pub fn ref_push_payload(url: &str, refname: &str, oid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": refname, "before": "0".repeat(40), "after": oid, "created": true,
        "deleted": false, "commits": [], "head_commit": null,
        "repository": {"full_name": "local/app", "clone_url": url, "html_url": url},
        "pusher": {"name": "ada"}, "sender": {"login": "ada"},
    }))
    .unwrap()
}

/// `git archive` of `commit`, unpacked into `into`.
pub fn archive_tree(repo: &Path, commit: &str, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let tar = into.with_extension("tar");
    git(repo, &["archive", "-o", tar.to_str().unwrap(), commit]);
    untar(&tar, into);
}

pub fn untar(tar: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success(), "cannot unpack {}", tar.display());
}

/// Every regular file below `dir` (relative path → bytes), skipping `.git`.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A repository's CI: `test` archives its working tree into its artifacts (so the test can
/// compare it with the commit) and prints the commit it is on; `nocode` asks for no checkout.
pub const CI: &str = r#"tasks:
  test:
    @QUEUES@
    command: |
      echo "head=$(git rev-parse HEAD) want=$BATON_COMMIT"
      git status --porcelain | wc -l | sed 's/^/dirty=/'
      tar --exclude=./.git -cf "$BATON_OUTPUT_DIR/tree.tar" .
  nocode:
    @QUEUES@
    checkout: false
    command: echo "entries=$(ls -A | wc -l)"
"#;

/// A repository with a few files of every kind (binary, nested, executable, CRLF) and `.baton/`.
pub fn sample_repo(dir: &Path, queues: &str) -> String {
    init(dir);
    let ci = CI.replace("@QUEUES@", queues);
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let sha = commit(
        dir,
        &[
            (".baton/ci.yml", ci.as_bytes()),
            ("src/main.c", b"int main(void) { return 0; }\n"),
            ("deep/a/b/c/d.txt", b"deep\r\nwith crlf\r\n"),
            ("data.bin", &binary),
            ("run.sh", b"#!/bin/sh\necho run\n"),
        ],
        "first",
    );
    git(dir, &["update-index", "--chmod=+x", "run.sh"]);
    git(dir, &["commit", "-q", "-m", "executable"]);
    let _ = sha;
    commit(dir, &[("README.md", b"# app\n")], "second")
}

/// Checks that run `id`'s `test` job checked out `sha` exactly: its log names the commit, the
/// tree it archived equals `git archive` of the commit.
pub async fn assert_checked_out(s: &Server, repo: &Path, id: i64, sha: &str, tmp: &Path) {
    let run = s.wait_run(id).await;
    assert_eq!(
        run["status"],
        "success",
        "{run:#}\n{}",
        s.log_text(id, None).await
    );
    let log = s.log_text(id, None).await;
    assert!(log.contains(&format!("head={sha} want={sha}")), "{log}");
    assert!(log.contains("dirty=0"), "{log}");
    let job = &run["jobs"][0];
    let dir = s.job_dir(
        job["id"].as_i64().unwrap(),
        job["attempt"].as_u64().unwrap(),
    );
    let got = tmp.join(format!("got-{id}"));
    untar(&dir.join("out/tree.tar"), &got);
    let want = tmp.join(format!("want-{id}"));
    archive_tree(repo, sha, &want);
    assert_eq!(
        files(&got),
        files(&want),
        "the checkout differs from git archive"
    );
}
