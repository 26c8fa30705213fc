//! Runs made with `baton run` on a developer's machine, pushed with `baton push` to the bare
//! repository the server mirrors, and imported by the real server read-only: on a signed
//! webhook for the result ref, or at the next poll. Once, bounded, and marked as local.

mod common;
#[path = "common/users.rs"]
mod users;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::gitrepo::{commit_text, deliver_github, git, init, ref_push_payload};
use common::sse::Events;
use common::{Server, WAIT, text};

const SECRET: &str = "local-import-secret-42";

const CI: &str = r#"tasks:
  test:
    command: |
      echo "testing $BATON_COMMIT"
      echo report > "$BATON_OUTPUT_DIR/report.txt"
pipelines:
  ci:
    tasks:
      build: {script: ["echo building"]}
      lint: {script: ["echo lint broke; exit 3"], depends_on: [build]}
"#;

/// A bare "forge" repository and a developer's clone of it with `.baton/`, pushed; returns
/// (bare, clone, head).
fn repos(tmp: &Path) -> (PathBuf, PathBuf, String) {
    let bare = tmp.join("forge/app.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let clone = tmp.join("laptop/app");
    init(&clone);
    let head = commit_text(&clone, &[(".baton/ci.yaml", CI)], "first");
    git(&clone, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(&clone, &["push", "-q", "origin", "main"]);
    (bare, clone, head)
}

/// The real binary in the developer's clone, with a home of its own.
fn baton(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(common::BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("USER", "ada")
        .env_remove("BATON_SERVER")
        .output()
        .expect("run baton")
}

fn run_refs(dir: &Path) -> Vec<(String, String)> {
    git(
        dir,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/baton-runs/",
        ],
    )
    .lines()
    .map(|l| {
        let (r, o) = l.split_once(' ').unwrap();
        (r.to_owned(), o.to_owned())
    })
    .collect()
}

/// A signed GitHub push of result ref `refname` (at `oid`) of the repository at `url`.
async fn deliver_ref(
    s: &Server,
    url: &str,
    refname: &str,
    oid: &str,
    delivery: &str,
) -> (u16, Value) {
    let body = ref_push_payload(url, refname, oid);
    deliver_github(s, SECRET, "push", delivery, body).await
}

fn ids(v: &Value) -> Vec<i64> {
    v["runs"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

async fn local_runs(s: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = "/runs?trigger=local&limit=100".to_owned();
    loop {
        let page = s.get_ok(&path).await;
        all.extend(page["runs"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_i64() {
            Some(c) => path = format!("/runs?trigger=local&limit=100&cursor={c}"),
            None => return all,
        }
    }
}

async fn page(s: &Server, cookie: &str, path: &str) -> String {
    let r = users::no_redirects()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.text().await.unwrap()
}

/// The imported runs (`runs`: test, then ci) as the API and the job folders show them.
async fn assert_imported_as_run(s: &Server, runs: &[i64], head: &str) {
    let test = s.run(runs[0]).await;
    let ci = s.run(runs[1]).await;
    assert_eq!(
        (test["target"].as_str(), ci["target"].as_str()),
        (Some("app/test"), Some("app/ci"))
    );
    assert_eq!(
        (test["status"].as_str(), ci["status"].as_str()),
        (Some("success"), Some("failed"))
    );
    for run in [&test, &ci] {
        assert_eq!(run["trigger"], "local", "{run}");
        assert_eq!(run["repo"]["commit"], head);
        assert_eq!(run["repo"]["branch"], "main");
        assert_eq!(run["repo"]["event"], "local");
        assert_eq!(
            run["repo"]["subject"], "first",
            "the mirror knows the commit"
        );
        let machine = run["repo"]["ran_on"].as_str().unwrap();
        assert!(
            machine.starts_with("ada@") && machine.len() > 4,
            "{machine}"
        );
    }
    assert_eq!(ci["kind"], "pipeline");
    let jobs: Vec<&str> = ci["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["build", "lint"]);
    assert!(
        s.log_text(runs[0], None)
            .await
            .contains(&format!("testing {head}"))
    );
    assert!(
        s.log_text(runs[1], Some("lint"))
            .await
            .contains("lint broke")
    );
    let job = test["jobs"][0]["id"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(s.job_dir(job, 1).join("out/report.txt")).unwrap(),
        "report\n"
    );
    let mirror = s.data.join("repos/app.git");
    assert_eq!(
        git(
            &mirror,
            &["for-each-ref", "refs/baton/import/", "refs/baton-runs/"]
        ),
        "",
        "nothing of the import stays in the mirror's refs"
    );
}

/// The runs list and the run page mark the imported runs, and offer no rerun.
async fn assert_marked_in_pages(s: &Server, runs: &[i64]) {
    users::add_user(s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(s, "root", "pw").await);
    let list = page(s, &cookie, "/runs").await;
    assert_eq!(list.matches("ran locally on ada@").count(), 2, "{list}");
    let run_page = page(s, &cookie, &format!("/runs/{}", runs[1])).await;
    assert!(run_page.contains("id=\"ran-locally\""), "{run_page}");
    assert!(!run_page.contains("id=\"rerun\""), "{run_page}");
    assert!(
        run_page.contains("lint broke"),
        "the failed job's log shows"
    );
}

#[tokio::test]
async fn a_pushed_local_run_is_imported_once_read_only_and_marked_as_local() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, clone, head) = repos(tmp.path());
    let url = bare.to_str().unwrap();
    let s = Server::start_env(
        &format!(
            "administrators: [root]\nrepos:\n  app:\n    url: {url}\n    forge: github\n    secret: env:APP_SECRET\n"
        ),
        &[("APP_SECRET", SECRET)],
    );
    let out = baton(&clone, &["run"]);
    assert_eq!(out.status.code(), Some(1), "lint fails: {:?}", text(&out));
    let out = baton(&clone, &["push"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let refs = run_refs(&clone);
    assert_eq!(refs.len(), 1, "{refs:?}");
    let (refname, oid) = refs[0].clone();

    // The live change feed the UI's lists refresh on, open before the push.
    let mut events = Events::open(&s, &s.token, "root").await;
    let (code, v) = deliver_ref(&s, url, &refname, &oid, "d-1").await;
    assert_eq!(code, 200, "{v}\n{}", s.stderr());
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .contains("imported 2 local run(s)"),
        "{v}"
    );
    let runs = ids(&v);
    assert_eq!(runs.len(), 2, "one run per target: {v}");
    // Told live, as a run the server started is: no reload needed to list them.
    events.until_runs(&runs, &runs).await;
    assert_imported_as_run(&s, &runs, &head).await;

    // The same delivery again, then another delivery of the same ref: nothing new.
    let (code, again) = deliver_ref(&s, url, &refname, &oid, "d-1").await;
    assert_eq!((code, ids(&again)), (200, runs.clone()), "{again}");
    let (code, other) = deliver_ref(&s, url, &refname, &oid, "d-2").await;
    assert_eq!(code, 202, "{other}");
    assert!(ids(&other).is_empty(), "{other}");
    let verdict = other["verdict"].as_str().unwrap();
    assert!(
        verdict.contains(&format!("imported before as run {}", runs[0])),
        "{verdict}"
    );
    assert_eq!(local_runs(&s).await.len(), 2);

    // Never run again: a rerun is refused.
    let (code, v) = s.post(&format!("/runs/{}/rerun", runs[0]), json!({})).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("imported_run")),
        "{v}"
    );

    assert_marked_in_pages(&s, &runs).await;
}

/// The import waits at a gate (`BATON_TEST_IMPORT_GATE`, read by debug builds only) after
/// recording the first run of a ref and before writing its files; the server is SIGKILLed
/// there. After the restart the unfinished import is undone and done again: every run of the
/// ref is there once, with its logs and artifacts.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_killed_between_its_run_and_its_files_is_done_again_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, clone, head) = repos(tmp.path());
    let url = bare.to_str().unwrap();
    let gate = tmp.path().join("import-gate");
    let mut s = Server::start_env(
        &format!("repos:\n  app:\n    url: {url}\n    forge: github\n    secret: env:APP_SECRET\n"),
        &[
            ("APP_SECRET", SECRET),
            ("BATON_TEST_IMPORT_GATE", gate.to_str().unwrap()),
        ],
    );
    let out = baton(&clone, &["run"]);
    assert_eq!(out.status.code(), Some(1), "lint fails: {:?}", text(&out));
    assert!(baton(&clone, &["push"]).status.success());
    let (refname, oid) = run_refs(&clone)[0].clone();

    // Accepted durably; its processing stops at the gate with the first run recorded.
    let (code, v) = deliver_ref(&s, url, &refname, &oid, "d-crash").await;
    assert_eq!(code, 202, "{v}\n{}", s.stderr());
    let deadline = Instant::now() + WAIT;
    let partial = loop {
        let runs = local_runs(&s).await;
        if !runs.is_empty() {
            break runs;
        }
        assert!(Instant::now() < deadline, "no run recorded\n{}", s.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(partial.len(), 1, "stopped after the first run: {partial:?}");
    let lost = partial[0]["id"].as_i64().unwrap();
    let job = s.run(lost).await["jobs"][0]["id"].as_i64().unwrap();
    s.kill9();
    assert!(
        !s.job_dir(job, 1).join("log").exists(),
        "killed before the files were written"
    );

    // The restart finishes the delivery; the import it left is undone and done again.
    std::fs::write(&gate, "").unwrap();
    s.restart();
    let deadline = Instant::now() + WAIT;
    let runs = loop {
        let runs = local_runs(&s).await;
        if runs.len() == 2 && runs.iter().all(|r| r["id"].as_i64() != Some(lost)) {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "the import was not done again: {runs:?}\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // `test` was recorded before `ci`.
    let mut ids: Vec<i64> = runs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert_imported_as_run(&s, &ids, &head).await;
    assert_eq!(s.get(&format!("/runs/{lost}")).await.0, 404);
    let seen = s.stderr();
    assert!(
        seen.contains("an import of this result ref did not finish"),
        "{seen}"
    );
    // Finished now: another delivery of the ref imports nothing.
    let (code, other) = deliver_ref(&s, url, &refname, &oid, "d-after").await;
    assert_eq!(code, 202, "{other}");
    assert_eq!(local_runs(&s).await.len(), 2);
}

/// A result ref written with plumbing: `files` in its tree, under `refs/baton-runs/<head>/id`.
fn plumbing_ref(repo: &Path, head: &str, id: &str, files: &[(&str, &Path)]) -> String {
    let mut tree = String::new();
    for (name, path) in files {
        let blob = git(repo, &["hash-object", "-w", path.to_str().unwrap()]);
        tree.push_str(&format!("100644 blob {blob}\t{name}\n"));
    }
    let tree_id = {
        use std::io::Write;
        let mut child = std::process::Command::new("git")
            .args(["mktree"])
            .current_dir(repo)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(tree.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let commit = git(repo, &["commit-tree", &tree_id, "-m", "hand-made"]);
    let name = format!("refs/baton-runs/{head}/{id}");
    git(repo, &["update-ref", &name, &commit]);
    name
}

/// Waits for a poll that ended after the one seen at `after` (`""`: any); returns its time.
async fn poll_after(s: &Server, after: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let repos = s.get_ok("/repos").await;
        let at = repos["repos"][0]["last_poll_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !at.is_empty() && at != after {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "no new poll after {after:?}: {repos}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_poller_imports_a_bounded_number_per_round_and_refuses_unusable_refs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, clone, head) = repos(tmp.path());
    let out = baton(&clone, &["run", "test"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (real, _) = run_refs(&clone)[0].clone();
    // Twenty copies of the run under their own names, one that is not a run and one too big.
    for i in 0..19 {
        let copy = format!("refs/baton-runs/{head}/20261207T0400000{i:02}Z-00000{i:x}");
        git(&clone, &["update-ref", &copy, &real]);
    }
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, "{not json").unwrap();
    plumbing_ref(
        &clone,
        &head,
        "20260101T000000000Z-000001",
        &[("run.json", &junk)],
    );
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 17 << 20]).unwrap();
    plumbing_ref(
        &clone,
        &head,
        "20260101T000000000Z-000002",
        &[("run.json", &junk), ("big.bin", &big)],
    );
    let out = baton(&clone, &["push"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(run_refs(&bare).len(), 22);

    let url = bare.to_str().unwrap();
    let s = Server::start(&format!("repos:\n  app:\n    url: {url}\n    poll: 1s\n"));
    let deadline = Instant::now() + WAIT;
    while local_runs(&s).await.len() < 20 {
        assert!(Instant::now() < deadline, "{}", s.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = s.stderr();
    assert!(
        log.contains("more result ref(s) wait for the next push or poll (at most 20 per import)"),
        "{log}"
    );
    assert!(
        log.contains("its run.json is not a Baton run record"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "its file big.bin has {} bytes (at most 16777216)",
            17 << 20
        )),
        "{log}"
    );
    for run in local_runs(&s).await {
        assert_eq!(run["target"], "app/test");
        assert_eq!(run["status"], "success");
    }
    // Two more polls: nothing new, and the refused refs are not read again.
    let refusals = log
        .matches("its run.json is not a Baton run record")
        .count();
    let mut at = poll_after(&s, "").await;
    for _ in 0..2 {
        at = poll_after(&s, &at).await;
    }
    assert_eq!(local_runs(&s).await.len(), 20);
    let log = s.stderr();
    assert_eq!(
        log.matches("its run.json is not a Baton run record")
            .count(),
        refusals,
        "{log}"
    );
}

const JUNIT_CI: &str = r#"tasks:
  unit:
    command: |
      mkdir -p "$BATON_OUTPUT_DIR/reports" "$BATON_OUTPUT_DIR/.baton"
      cat > "$BATON_OUTPUT_DIR/reports/junit.xml" <<'XML'
      <testsuite name="math" tests="2"><testcase classname="math.Add" name="adds" time="0.1"/><testcase classname="math.Add" name="carries" time="0.2"><failure message="expected 2, got 3">assert</failure></testcase></testsuite>
      XML
      echo '<testsuite name="ignored"><testcase name="x"/></testsuite>' > "$BATON_OUTPUT_DIR/other.xml"
      echo '{"name": "lint", "status": "passed"}' > "$BATON_OUTPUT_DIR/.baton/results.json"
    reports: {junit: ["reports/*.xml"]}
"#;

#[tokio::test]
async fn local_test_results_are_stored_shown_and_imported_with_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, clone, _) = repos(tmp.path());
    commit_text(&clone, &[(".baton/ci.yaml", JUNIT_CI)], "unit tests");
    git(&clone, &["push", "-q", "origin", "main"]);
    let out = baton(&clone, &["run", "unit"]);
    assert!(
        out.status.success(),
        "the job itself passed: {:?}",
        text(&out)
    );
    let (refname, oid) = run_refs(&clone)[0].clone();
    let blob = |path: &str| git(&clone, &["cat-file", "blob", &format!("{refname}:{path}")]);
    let rec: Value = serde_json::from_str(&blob("run.json")).unwrap();
    let tests = &rec["jobs"][0]["tests"];
    assert_eq!(
        (tests["passed"].as_u64(), tests["failed"].as_u64()),
        (Some(2), Some(1)),
        "{rec:#}"
    );
    assert_eq!(
        tests["failing"],
        json!(["math > math.Add > carries"]),
        "only the listed report is read"
    );
    let tree: Value = serde_json::from_str(&blob("results.json")).unwrap();
    assert_eq!(tree["kind"], "run");
    assert_eq!(tree["summary"]["failed"], 1);
    let case = &tree["children"][0]["children"][0]["children"][1];
    assert_eq!(
        (case["name"].as_str(), case["message"].as_str()),
        (Some("carries"), Some("expected 2, got 3"))
    );
    let page = blob("index.html");
    assert!(
        page.contains("Tests: 2 passed, 1 failed")
            && page.contains("math &#62; math.Add &#62; carries"),
        "{page}"
    );
    let id = rec["id"].as_str().unwrap();
    let (show, _) = text(&baton(&clone, &["show", id]));
    assert!(
        show.contains("tests    2 passed, 1 failed")
            && show.contains("✗ math > math.Add > carries"),
        "{show}"
    );

    // Pushed and imported: the server reads the same results from the imported artifacts.
    assert!(baton(&clone, &["push"]).status.success());
    let url = bare.to_str().unwrap();
    let s = Server::start_env(
        &format!("repos:\n  app:\n    url: {url}\n    forge: github\n    secret: env:APP_SECRET\n"),
        &[("APP_SECRET", SECRET)],
    );
    let (code, v) = deliver_ref(&s, url, &refname, &oid, "d-results").await;
    assert_eq!(code, 200, "{v}\n{}", s.stderr());
    let run = ids(&v)[0];
    let results = s.get_ok(&format!("/runs/{run}/results")).await;
    let summary = &results["tree"]["summary"];
    assert_eq!(
        (summary["passed"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1)),
        "{results:#}"
    );
}
