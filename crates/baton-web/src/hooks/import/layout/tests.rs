use super::*;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn repo() -> baton_core::config::RepoDef {
    let c = baton_core::config::load_str(
        std::path::Path::new("t.yaml"),
        "repos:\n  app: {url: /srv/app}\n",
    )
    .expect("valid config");
    c.repos["app"].clone()
}

fn run_ref(jci: bool) -> RunRef {
    let prefix = if jci { "jci" } else { "baton" };
    RunRef::parse(
        &format!("refs/{prefix}-runs/{SHA}/20261207T031502123Z-9f3a1c"),
        baton_git::Oid::parse(&"b".repeat(40)).unwrap(),
    )
    .unwrap()
}

fn blob(path: &str, bytes: &[u8]) -> Blob {
    Blob {
        path: path.into(),
        executable: false,
        bytes: bytes.to_vec(),
    }
}

fn record(jobs: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": 1, "id": "20261207T031502123Z-9f3a1c", "status": "failed",
        "targets": ["test", "ci"], "commit": SHA, "head": SHA, "dirty": false,
        "branch": "feature", "trigger": "push",
        "started_at": "2026-12-07T03:15:02.123Z", "ended_at": "2026-12-07T03:15:04Z",
        "duration_ms": 1877,
        "machine": {"hostname": "laptop", "user": "ada", "os": "linux", "arch": "x86_64"},
        "baton_version": "0.1.0", "jobs": jobs,
    }))
    .unwrap()
}

fn job(name: &str, target: &str, status: &str, folder: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "target": target, "status": status,
        "started_at": "2026-12-07T03:15:02.200Z", "ended_at": "2026-12-07T03:15:03Z",
        "log": format!("{folder}/log"), "artifacts": []})
}

fn known() -> Known {
    Known {
        author: Some("Ada <ada@example.com>".into()),
        subject: Some("first".into()),
    }
}

#[test]
fn a_baton_run_becomes_one_read_only_run_per_target_with_its_files() {
    let jobs = serde_json::json!([
        job("test", "test", "success", "jobs/01-test"),
        job("ci/build", "ci", "success", "jobs/02-ci_build"),
        job("ci/lint", "ci", "failed", "jobs/03-ci_lint"),
    ]);
    let files = vec![
        blob("run.json", &record(jobs)),
        blob("index.html", b"<html>"),
        blob("jobs/01-test/log", b"testing\n"),
        blob("jobs/01-test/out/report.txt", b"report\n"),
        blob("jobs/01-test/out/deep/junit.xml", b"<testsuite/>"),
        blob("jobs/03-ci_lint/log", b"lint broke\n"),
    ];
    let runs = plan(&repo(), &run_ref(false), files, &known(), Utc::now()).unwrap();
    assert_eq!(runs.len(), 2);
    let (test, ci) = (&runs[0], &runs[1]);
    assert_eq!(test.row.target, "app/test");
    assert_eq!(test.row.kind, TargetKind::Task);
    assert_eq!(test.row.trigger, TriggerKind::Local);
    assert_eq!(test.row.status, Status::Success);
    let code = test.row.repo.as_ref().unwrap();
    assert_eq!(code.ran_on.as_deref(), Some("ada@laptop"));
    assert_eq!(code.commit, SHA);
    assert_eq!(code.branch.as_deref(), Some("feature"));
    assert_eq!(code.event, "local");
    assert_eq!(code.subject.as_deref(), Some("first"));
    assert_eq!(test.files[0].log.as_deref(), Some(&b"testing\n"[..]));
    let out: Vec<&str> = test.files[0].out.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(out, ["deep/junit.xml", "report.txt"]);
    assert_eq!(ci.row.target, "app/ci");
    assert_eq!(ci.row.kind, TargetKind::Pipeline);
    assert_eq!(ci.row.status, Status::Failed);
    let names: Vec<&str> = ci.row.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["build", "lint"]);
    assert_eq!(ci.row.jobs[1].worker.as_deref(), Some("local:ada@laptop"));
    assert_eq!(
        ci.files[0].log, None,
        "build's log is missing from the tree"
    );
}

#[test]
fn an_allowed_failure_does_not_fail_the_imported_pipeline() {
    let mut lint = job("ci/lint", "ci", "failed", "jobs/02-ci_lint");
    lint["allow_failure"] = true.into();
    let jobs = serde_json::json!([job("ci/build", "ci", "success", "jobs/01-ci_build"), lint]);
    let runs = plan(
        &repo(),
        &run_ref(false),
        vec![blob("run.json", &record(jobs))],
        &known(),
        Utc::now(),
    )
    .unwrap();
    assert_eq!(runs[0].row.status, Status::Success);
}

#[test]
fn unusable_records_are_refused_with_why_and_unended_ones_wait() {
    let refuse = |files: Vec<Blob>, jci: bool| {
        plan(&repo(), &run_ref(jci), files, &known(), Utc::now())
            .err()
            .unwrap()
    };
    let one = serde_json::json!([job("test", "test", "success", "jobs/01-test")]);
    let mut dirty: serde_json::Value = serde_json::from_slice(&record(one.clone())).unwrap();
    dirty["dirty"] = true.into();
    let why = refuse(
        vec![blob("run.json", &serde_json::to_vec(&dirty).unwrap())],
        false,
    );
    assert!(
        matches!(&why, Refusal::Never(w) if w.contains("--dirty")),
        "{why:?}"
    );
    let mut other: serde_json::Value = serde_json::from_slice(&record(one.clone())).unwrap();
    other["commit"] = "f".repeat(40).into();
    let why = refuse(
        vec![blob("run.json", &serde_json::to_vec(&other).unwrap())],
        false,
    );
    assert!(
        matches!(&why, Refusal::Never(w) if w.contains("its name says commit")),
        "{why:?}"
    );
    let why = refuse(vec![blob("run.json", b"{not json")], false);
    assert!(
        matches!(&why, Refusal::Never(w) if w.contains("not a Baton run record")),
        "{why:?}"
    );
    let why = refuse(vec![blob("notes.txt", b"x")], false);
    assert_eq!(why, Refusal::Never("it has no run.json".into()));
    let many: Vec<serde_json::Value> = (0..=MAX_JOBS)
        .map(|i| job(&format!("t{i}"), &format!("t{i}"), "success", "jobs/x"))
        .collect();
    let why = refuse(vec![blob("run.json", &record(many.into()))], false);
    assert!(
        matches!(&why, Refusal::Never(w) if w.contains("at most 100")),
        "{why:?}"
    );
    let running = serde_json::json!([job("test", "test", "running", "jobs/01-test")]);
    let why = refuse(vec![blob("run.json", &record(running))], false);
    assert!(matches!(why, Refusal::Later(_)), "{why:?}");
    let why = refuse(vec![blob("status.txt", b"running\n")], true);
    assert!(matches!(why, Refusal::Later(_)), "{why:?}");
}

#[test]
fn a_git_jci_run_is_one_job_whose_output_folder_becomes_its_artifacts() {
    let files = vec![
        blob("status.txt", b"err\n"),
        blob("run.output.txt", b"boom\n"),
        blob("index.html", b"<html>"),
        blob("coverage/summary.txt", b"81%\n"),
    ];
    let runs = plan(&repo(), &run_ref(true), files, &known(), Utc::now()).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r.row.target, "app/.jci/run.sh");
    assert_eq!(r.row.status, Status::Failed);
    assert_eq!(
        r.row.repo.as_ref().unwrap().ran_on.as_deref(),
        Some("an unknown machine (git-jci)")
    );
    assert_eq!(r.files[0].log.as_deref(), Some(&b"boom\n"[..]));
    let out: Vec<&str> = r.files[0].out.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(out, ["coverage/summary.txt"]);
}

#[test]
fn only_plain_relative_paths_become_files() {
    for good in ["log", "out/a/b.xml", "a.b/c"] {
        assert!(safe_path(good), "{good}");
    }
    for bad in [
        "",
        "/etc/passwd",
        "a//b",
        "../x",
        "a/../../x",
        "a/./b",
        "a/",
    ] {
        assert!(!safe_path(bad), "{bad}");
    }
}
