//! Pull requests as the forges send them, for end-to-end tests: a repository with `.baton/`,
//! a pull request's head published as the forge would (`refs/pull/N/head`), GitHub-shaped
//! payloads and signed deliveries, and the runs a delivery answered with.

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

use super::Server;
use super::gitrepo::{commit_text as commit, git};

pub const SECRET: &str = "test-pr-secret-17";

/// A repository `app` on `main` with `.baton/ci.yml` = `ci`; `main.txt` on main.
pub fn make_repo(root: &Path, ci: &str) -> std::path::PathBuf {
    let repo = root.join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit(
        &repo,
        &[(".baton/ci.yml", ci), ("main.txt", "main 1\n")],
        "first",
    );
    repo
}

/// Commits `files` on a new branch `name` off main, publishes it as the forge would
/// (`refs/pull/N/head`), and goes back to main; returns the head sha.
pub fn open_pr(repo: &Path, name: &str, number: u64, files: &[(&str, &str)]) -> String {
    git(repo, &["checkout", "-q", "-b", name, "main"]);
    let head = commit(repo, files, &format!("work on {name}"));
    git(
        repo,
        &["update-ref", &format!("refs/pull/{number}/head"), &head],
    );
    git(repo, &["checkout", "-q", "main"]);
    head
}

#[allow(unused_imports)] // not every test that includes `common` uses it
pub use super::forgehook::pr_payload;

/// Delivers `body` as GitHub's `event`, signed with [`SECRET`].
pub async fn deliver(s: &Server, event: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
    super::forgehook::deliver_github(s, event, delivery, body, SECRET).await
}

pub fn run_ids(v: &Value) -> Vec<i64> {
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_i64().unwrap())
        .collect()
}

/// The run of `target` among the runs a delivery answered with.
pub async fn run_of(s: &Server, v: &Value, target: &str) -> i64 {
    for id in run_ids(v) {
        if s.run(id).await["target"] == target {
            return id;
        }
    }
    panic!("no run of {target} in {v}");
}
