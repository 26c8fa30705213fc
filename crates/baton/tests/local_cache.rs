//! The CI cache with `baton run`: a job whose inputs an earlier stored run had is skipped, its
//! digest made as the server makes it; and a server that trusts local runs counts an imported
//! local run as a cache hit for its own (one that does not, runs the job).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::gitrepo::{commit_text, deliver_github, git, init, ref_push_payload};
use common::{Server, text};

const SECRET: &str = "local-cache-secret-42";

const CI: &str = r#"tasks:
  build:
    command: echo "built $(cat src/a.txt)"
    cache: {inputs: ["src/**"], key: v1}
"#;

fn baton(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(common::BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("BATON_SERVER")
        .output()
        .expect("run baton")
}

/// The newest stored run's record (run ids sort by time; refs sort by commit first).
fn newest(dir: &Path) -> Value {
    let refs = git(
        dir,
        &["for-each-ref", "--format=%(refname)", "refs/baton-runs/"],
    );
    let newest = refs
        .lines()
        .max_by_key(|r| r.rsplit('/').next().unwrap().to_owned())
        .expect("a stored run");
    serde_json::from_str(&git(
        dir,
        &["cat-file", "blob", &format!("{newest}:run.json")],
    ))
    .unwrap()
}

fn app(tmp: &Path) -> (PathBuf, PathBuf, String) {
    let bare = tmp.join("forge/app.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let dir = tmp.join("laptop/app");
    init(&dir);
    let head = commit_text(
        &dir,
        &[(".baton/ci.yaml", CI), ("src/a.txt", "one\n")],
        "first",
    );
    git(&dir, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(&dir, &["push", "-q", "origin", "main"]);
    (bare, dir, head)
}

#[test]
fn baton_run_skips_a_job_whose_inputs_an_earlier_run_had() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir, _) = app(tmp.path());
    let out = baton(&dir, &["run", "build"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let first = newest(&dir);
    let digest = first["jobs"][0]["cache"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(digest.len(), 64, "{first:#}");

    // Same inputs: skipped as a hit on the first run (a run of hits only is `skipped`, as on
    // the server).
    let out = baton(&dir, &["run", "build"]);
    assert_eq!(out.status.code(), Some(6), "{:?}", text(&out));
    let hit = newest(&dir);
    assert_eq!(hit["jobs"][0]["status"], "skipped");
    let reason = hit["jobs"][0]["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!(
            "cache hit: same inputs as build in run {}",
            first["id"].as_str().unwrap()
        )
    );
    assert_eq!(hit["jobs"][0]["cache"]["digest"], digest.as_str());

    // --no-cache runs it anyway.
    let out = baton(&dir, &["run", "build", "--no-cache"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(newest(&dir)["jobs"][0]["status"], "success");

    // A changed input misses; a change elsewhere still hits.
    commit_text(&dir, &[("src/a.txt", "two\n")], "change an input");
    assert_eq!(baton(&dir, &["run", "build"]).status.code(), Some(0));
    let changed = newest(&dir);
    assert_ne!(changed["jobs"][0]["cache"]["digest"], digest.as_str());
    commit_text(&dir, &[("README", "docs\n")], "not an input");
    assert_eq!(baton(&dir, &["run", "build"]).status.code(), Some(6));
    let reason = newest(&dir)["jobs"][0]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.ends_with(changed["id"].as_str().unwrap()),
        "{reason}"
    );
}

/// A signed GitHub push of `refname` at `oid` (a branch or a result ref).
async fn deliver(s: &Server, url: &str, refname: &str, oid: &str, delivery: &str) -> Value {
    let body = ref_push_payload(url, refname, oid);
    let (status, v) = deliver_github(s, SECRET, "push", delivery, body).await;
    assert_eq!(status, 200, "{v}\n{}", s.stderr());
    v
}

#[tokio::test]
async fn a_server_counts_imported_local_runs_for_its_cache_only_when_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, dir, head) = app(tmp.path());
    assert_eq!(baton(&dir, &["run", "build"]).status.code(), Some(0));
    assert!(baton(&dir, &["push"]).status.success());
    let local = newest(&dir);
    let refs = git(
        &dir,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/baton-runs/",
        ],
    );
    let (refname, oid) = refs.split_once(' ').unwrap();
    let url = bare.to_str().unwrap();
    for trust in [true, false] {
        let s = Server::start_env(
            &format!(
                "repos:\n  app:\n    url: {url}\n    forge: github\n    secret: env:APP_SECRET\n    trust_local_runs: {trust}\n"
            ),
            &[("APP_SECRET", SECRET)],
        );
        let imported = deliver(&s, url, refname, oid, "import").await["runs"][0]
            .as_i64()
            .unwrap();
        let v = deliver(&s, url, "refs/heads/main", &head, "push").await;
        let run = s.wait_run(v["runs"][0].as_i64().unwrap()).await;
        let job = &run["jobs"][0];
        let why = s.get_ok(&format!("/jobs/{}/cache", job["id"])).await;
        if trust {
            assert_eq!(job["status"], "skipped", "{run:#}\n{why:#}\n{}", s.stderr());
            let reason = job["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("cache hit: same inputs as job ")
                    && reason.ends_with(&format!("(run {imported})")),
                "{reason}"
            );
        } else {
            assert_eq!(job["status"], "success", "{run:#}");
            assert!(
                s.log_text(run["id"].as_i64().unwrap(), None)
                    .await
                    .contains("built one")
            );
        }
        assert_eq!(
            why["digest"], local["jobs"][0]["cache"]["digest"],
            "the server's digest is the laptop's: {why}"
        );
    }
}
