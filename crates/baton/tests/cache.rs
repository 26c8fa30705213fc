//! The CI cache end to end against the real binary and real git: a repository's task with
//! `cache:` runs once; a new commit that changes no input skips it (`skipped`, "cache hit: same
//! inputs as job N (run M)"), its results and artifacts being the first job's; `no_cache` runs
//! it anyway; changing an input runs it, and `baton cache why` names the file. In a pipeline, a
//! hit counts as a success for the tasks that depend on it.

mod common;

use serde_json::{Value, json};

use common::gitrepo::{commit, init};
use common::{Server, reason, status};

const CI: &str = r#"tasks:
  build:
    cache: {inputs: ["src/**"], key: v1}
    command: |
      mkdir -p "$BATON_OUTPUT_DIR/dist"
      cat src/a.c > "$BATON_OUTPUT_DIR/dist/a.txt"
      printf '<testsuite name="s"><testcase name="compiles"/></testsuite>' > "$BATON_OUTPUT_DIR/junit.xml"
pipelines:
  ci:
    tasks:
      build:
        cache: {inputs: ["src/**"]}
        script: [cat src/a.c]
      test:
        depends_on: [build]
        script: [echo tested]
"#;

async fn trigger(s: &Server, target: &str, body: Value) -> Value {
    let path = format!("/tasks/{}/trigger", target.replace('/', "%2F"));
    let (st, run) = s.post(&path, body).await;
    assert_eq!(st, 201, "{run}\n{}", s.stderr());
    s.wait_run(run["id"].as_i64().unwrap()).await
}

fn job_id(run: &Value) -> i64 {
    run["jobs"][0]["id"].as_i64().unwrap()
}

async fn page(s: &Server, path: &str) -> String {
    let resp = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.text().await.unwrap()
}

fn why(s: &Server, job: i64) -> String {
    let out = s.cli(&["cache", "why", &job.to_string()]);
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_inputs_already_passed_is_skipped_and_reuses_that_jobs_results() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    commit(
        &repo,
        &[
            (".baton/ci.yml", CI.as_bytes()),
            ("src/a.c", b"one\n"),
            ("README.md", b"# a\n"),
        ],
        "one",
    );
    let url = repo.to_str().unwrap();
    let s = Server::start(&format!(
        "repos:\n  app:\n    url: {url}\n    forge: git\ntasks:\n  plain:\n    command: echo plain\n"
    ));

    let first = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&first), "success", "{first:#}");
    let (run1, job1) = (first["id"].as_i64().unwrap(), job_id(&first));

    // A commit that changes no input: not run.
    commit(&repo, &[("README.md", b"# b\n")], "docs only");
    let second = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&second["jobs"][0]), "skipped", "{second:#}");
    let hit = format!("cache hit: same inputs as job {job1} (run {run1})");
    assert_eq!(reason(&second["jobs"][0]), hit, "{second:#}");
    let (run2, job2) = (second["id"].as_i64().unwrap(), job_id(&second));
    assert!(
        !s.job_dir(job2, 1).join("exit.json").exists(),
        "a hit never starts the job"
    );
    // Its results and artifacts are the first job's.
    let r = s.get_ok(&format!("/runs/{run2}/results")).await;
    assert_eq!(r["tree"]["summary"]["passed"], 1, "{r}");
    let html = page(&s, &format!("/runs/{run2}")).await;
    assert!(html.contains("dist/a.txt"), "{html}");
    assert!(
        html.contains(&format!("href=\"/runs/{run1}?job=app/build\"")),
        "{html}"
    );
    assert!(html.contains("id=\"run-anyway\""), "{html}");
    let text = page(&s, &format!("/runs/{run2}/artifacts/{job2}/dist/a.txt")).await;
    assert_eq!(text, "one\n");
    assert!(why(&s, job2).contains(&hit));

    // No cache: it runs.
    let forced = trigger(&s, "app/build", json!({"no_cache": true})).await;
    assert_eq!(status(&forced), "success", "{forced:#}");
    assert!(s.job_dir(job_id(&forced), 1).join("exit.json").exists());
    let (code, rerun) = s
        .post(&format!("/runs/{run2}/rerun?no_cache=true"), Value::Null)
        .await;
    assert_eq!(code, 201, "{rerun}");
    let rerun = s.wait_run(rerun["id"].as_i64().unwrap()).await;
    assert_eq!(status(&rerun), "success", "{rerun:#}");

    // An input changed: a miss, and `cache why` says which.
    commit(&repo, &[("src/a.c", b"two\n")], "code");
    let third = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&third), "success", "{third:#}");
    let out = why(&s, job_id(&third));
    assert!(out.contains("file src/a.c: content changed"), "{out}");
    assert!(!out.contains("README"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_task_that_hits_counts_as_a_success_for_its_dependents() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    commit(
        &repo,
        &[(".baton/ci.yml", CI.as_bytes()), ("src/a.c", b"one\n")],
        "one",
    );
    let url = repo.to_str().unwrap();
    let s = Server::start(&format!(
        "repos:\n  app:\n    url: {url}\n    forge: git\ntasks:\n  plain:\n    command: echo plain\n"
    ));
    let path = "/pipelines/app%2Fci/trigger";
    let (st, run) = s.post(path, json!({})).await;
    assert_eq!(st, 201, "{run}");
    let first = s.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(status(&first), "success", "{first:#}");
    let (st, run) = s.post(path, json!({})).await;
    assert_eq!(st, 201, "{run}");
    let second = s.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(status(&second), "success", "{second:#}");
    let build = common::job(&second, "build");
    assert_eq!(status(build), "skipped", "{second:#}");
    assert!(
        reason(build).starts_with("cache hit: same inputs as job "),
        "{second:#}"
    );
    assert_eq!(
        status(common::job(&second, "test")),
        "success",
        "{second:#}"
    );
}
