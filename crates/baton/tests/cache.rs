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

/// The digest `GET /jobs/{id}/cache` recorded for a job.
async fn digest(s: &Server, job: i64) -> String {
    let c = s.get_ok(&format!("/jobs/{job}/cache")).await;
    c["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("{c}"))
        .to_owned()
}

fn ran(s: &Server, run: &Value) -> bool {
    s.job_dir(job_id(run), 1).join("exit.json").exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_of_another_repository_with_the_same_inputs_never_hits() {
    let tmp = tempfile::tempdir().unwrap();
    let files: &[(&str, &[u8])] = &[(".baton/ci.yml", CI.as_bytes()), ("src/a.c", b"one\n")];
    let (app, lib) = (tmp.path().join("app"), tmp.path().join("lib"));
    for repo in [&app, &lib] {
        init(repo);
        commit(repo, files, "one");
    }
    let s = Server::start(&format!(
        "repos:\n  app:\n    url: {}\n    forge: git\n  lib:\n    url: {}\n    forge: git\n",
        app.display(),
        lib.display()
    ));
    let first = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&first), "success", "{first:#}");
    assert!(ran(&s, &first));

    // The same task, inputs and definition in another repository: the same digest, a miss.
    let other = trigger(&s, "lib/build", json!({})).await;
    assert_eq!(status(&other), "success", "{other:#}");
    assert!(ran(&s, &other), "a hit across repositories: {other:#}");
    assert_eq!(
        digest(&s, job_id(&first)).await,
        digest(&s, job_id(&other)).await,
        "only the repository differs"
    );
    let c = s.get_ok(&format!("/jobs/{}/cache", job_id(&other))).await;
    assert!(c["hit"].is_null(), "{c}");

    // Within one repository the same inputs hit (each its own first job).
    for (repo, source) in [("app", &first), ("lib", &other)] {
        let again = trigger(&s, &format!("{repo}/build"), json!({})).await;
        let hit = format!(
            "cache hit: same inputs as job {} (run {})",
            job_id(source),
            source["id"]
        );
        assert_eq!(reason(&again["jobs"][0]), hit, "{again:#}");
        assert!(!ran(&s, &again));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_entry_older_than_max_age_no_longer_hits() {
    // A short max_age: within it the same inputs hit, past it they run again.
    const MAX_AGE_S: u64 = 8;
    let ci = format!(
        "tasks:\n  build:\n    cache: {{inputs: [\"src/**\"], max_age: {MAX_AGE_S}s}}\n    command: cat src/a.c\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    commit(
        &repo,
        &[(".baton/ci.yml", ci.as_bytes()), ("src/a.c", b"one\n")],
        "one",
    );
    let s = Server::start(&format!(
        "repos:\n  app:\n    url: {}\n    forge: git\n",
        repo.display()
    ));
    let first = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&first), "success", "{first:#}");
    let ended = first["ended_at"].as_str().unwrap().to_owned();
    let hit = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&hit["jobs"][0]), "skipped", "{hit:#}");

    // Wait until the first job's end is older than max_age (by the server's clock, which
    // stamped it), then the same inputs run again.
    let ended = chrono::DateTime::parse_from_rfc3339(&ended).unwrap();
    let expiry = ended + chrono::Duration::seconds(MAX_AGE_S as i64 + 1);
    while chrono::Utc::now() < expiry {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let expired = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&expired), "success", "{expired:#}");
    assert_eq!(status(&expired["jobs"][0]), "success", "{expired:#}");
    assert!(ran(&s, &expired), "an expired entry hit: {expired:#}");
    assert_eq!(
        digest(&s, job_id(&expired)).await,
        digest(&s, job_id(&first)).await,
        "only the age differs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_image_under_the_same_tag_misses() {
    use common::busybox::{Leftovers, docker, import_as};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag = format!("baton-test-cache-{nanos}:v1");
    let one = import_as(&tag, "one");
    let ci = format!(
        "tasks:\n  build:\n    image: {tag}\n    cache: {{inputs: [\"src/**\"]}}\n    command: cat /marker\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    commit(
        &repo,
        &[(".baton/ci.yml", ci.as_bytes()), ("src/a.c", b"one\n")],
        "one",
    );
    let s = Server::start(&format!(
        "repos:\n  app:\n    url: {}\n    forge: git\n",
        repo.display()
    ));
    let _leftovers = Leftovers::of(&s);
    let first = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&first), "success", "{first:#}\n{}", s.stderr());
    let log = std::fs::read_to_string(s.job_dir(job_id(&first), 1).join("log")).unwrap();
    assert!(log.contains("one"), "{log}");
    let same = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&same["jobs"][0]), "skipped", "{same:#}");

    // Another image under the same tag: a miss, and `cache why` says the image changed.
    let two = import_as(&tag, "two");
    assert_ne!(one, two);
    let again = trigger(&s, "app/build", json!({})).await;
    assert_eq!(status(&again), "success", "{again:#}");
    assert!(ran(&s, &again), "the new image hit: {again:#}");
    let log = std::fs::read_to_string(s.job_dir(job_id(&again), 1).join("log")).unwrap();
    assert!(log.contains("two"), "{log}");
    let out = why(&s, job_id(&again));
    assert!(
        out.contains(&format!("image: {tag}@{one} -> {tag}@{two}")),
        "{out}"
    );

    let _ = docker(&["rmi", "-f", &tag, &one, &two]);
}
