//! Test results end to end: a task writes a JUnit report (and its own results.json) to
//! `$BATON_OUTPUT_DIR`; the server parses it after the job ends, the API gives the tree with
//! counts at every level (`?status=failed` only the failing branch), the runs list shows the
//! counts and the run's Tests page the failing test's message. A corrupt report is a warning
//! node and changes nothing about the run.

mod common;

use std::path::PathBuf;

use common::{Server, id_of, status};
use serde_json::Value;

const CONFIG: &str = r#"
server:
  local_workers: 2
tasks:
  unit:
    command: |
      mkdir -p "$BATON_OUTPUT_DIR/reports" "$BATON_OUTPUT_DIR/.baton"
      cat > "$BATON_OUTPUT_DIR/reports/junit.xml" <<'XML'
      <?xml version="1.0" encoding="UTF-8"?>
      <testsuites>
        <testsuite name="math" time="0.5">
          <testcase classname="math.Add" name="adds" time="0.1"/>
          <testcase classname="math.Add" name="carries" time="0.2">
            <failure message="expected 2, got 3">assert 1 + 1 == 2</failure>
            <system-out>computing &lt;1+1&gt;</system-out>
          </testcase>
          <testsuite name="nested">
            <testcase classname="math.Mul" name="multiplies" time="0.1"/>
            <testcase classname="math.Mul" name="big" time="0"><skipped message="slow"/></testcase>
          </testsuite>
        </testsuite>
      </testsuites>
      XML
      echo '<project/>' > "$BATON_OUTPUT_DIR/pom.xml"
      echo '[{"name": "lint", "status": "passed", "duration": 1.5}]' > "$BATON_OUTPUT_DIR/.baton/results.json"
  corrupt:
    command: cp "$fixture" "$BATON_OUTPUT_DIR/report.xml"
  globbed:
    reports:
      junit: ["only/*.xml", "missing/*.xml"]
    command: |
      mkdir -p "$BATON_OUTPUT_DIR/only"
      cp "$fixture" "$BATON_OUTPUT_DIR/only/a.xml"
      cp "$fixture" "$BATON_OUTPUT_DIR/ignored.xml"
  none:
    command: "true"
  flip:
    command: |
      n=$(cat "$counter" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$counter"
      if [ "$n" = 1 ]; then body='<failure message="first try fails"/>'; else body=''; fi
      printf '<testsuite name="s"><testcase name="wobbly">%s</testcase></testsuite>' "$body" > "$BATON_OUTPUT_DIR/junit.xml"
pipelines:
  ci:
    tasks:
      unit:
        reports:
          junit: ["r/*.xml"]
        script:
          - mkdir -p "$BATON_OUTPUT_DIR/r"
          - >-
            printf '<testsuite name="s"><testcase name="ok"/><testcase name="bad"><error message="boom"/></testcase></testsuite>' > "$BATON_OUTPUT_DIR/r/junit.xml"
      lint:
        depends_on: [unit]
        script:
          - mkdir -p "$BATON_OUTPUT_DIR/.baton"
          - >-
            echo '{"name": "lint", "children": [{"name": "style", "status": "passed"}, {"name": "types", "status": "skipped"}]}' > "$BATON_OUTPUT_DIR/.baton/results.json"
"#;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/junit")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn counts(summary: &Value) -> [u64; 6] {
    ["passed", "failed", "errors", "skipped", "flaky", "warnings"].map(|k| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    })
}

fn find<'a>(n: &'a Value, name: &str) -> Option<&'a Value> {
    if n["name"] == name {
        return Some(n);
    }
    n["children"].as_array()?.iter().find_map(|c| find(c, name))
}

async fn page(s: &Server, path: &str) -> (u16, String) {
    let resp = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_junit_report_becomes_the_runs_result_tree() {
    let s = Server::start(CONFIG);
    let id = id_of(&s.trigger("unit", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run}");

    let r = s.get_ok(&format!("/runs/{id}/results")).await;
    let tree = &r["tree"];
    assert_eq!(tree["kind"], "run");
    assert_eq!(counts(&tree["summary"]), [3, 1, 0, 1, 0, 0], "{r}");
    let job = &tree["children"][0];
    assert_eq!(
        (job["kind"].as_str(), job["job_status"].as_str()),
        (Some("job"), Some("success"))
    );
    assert_eq!(counts(&job["summary"]), [3, 1, 0, 1, 0, 0]);
    let math = find(tree, "math").unwrap();
    assert_eq!(math["kind"], "suite");
    assert_eq!(math["summary"]["duration"], 0.5);
    assert_eq!(
        counts(&find(tree, "nested").unwrap()["summary"]),
        [1, 0, 0, 1, 0, 0]
    );
    let carries = find(tree, "carries").unwrap();
    assert_eq!(carries["status"], "failed");
    assert_eq!(carries["message"], "expected 2, got 3");
    assert!(
        carries["output"]
            .as_str()
            .unwrap()
            .contains("computing <1+1>"),
        "{carries}"
    );
    assert_eq!(find(tree, "lint").unwrap()["kind"], "step");

    // Only the failing branch.
    let f = s.get_ok(&format!("/runs/{id}/results?status=failed")).await;
    let math = find(&f["tree"], "math").unwrap();
    assert_eq!(math["children"].as_array().unwrap().len(), 1, "{f}");
    assert!(find(&f["tree"], "adds").is_none());
    assert!(find(&f["tree"], "lint").is_none());
    assert_eq!(counts(&f["tree"]["summary"]), [3, 1, 0, 1, 0, 0]);
    let (code, body) = s.get(&format!("/runs/{id}/results?status=passed")).await;
    assert_eq!(code, 400, "{body}");

    // The runs list shows the counts.
    let list = s.get_ok("/runs?task=unit").await;
    assert_eq!(
        counts(&list["runs"][0]["results"]),
        [3, 1, 0, 1, 0, 0],
        "{list}"
    );

    // The Tests page: counts, the failing test first with its message; search by name.
    let (code, html) = page(&s, &format!("/runs/{id}/tests")).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("expected 2, got 3"), "{html}");
    assert!(html.contains("1 failed"), "{html}");
    let (_, found) = page(&s, &format!("/runs/{id}/tests?q=multipl")).await;
    assert!(
        found.contains("multiplies") && !found.contains("carries"),
        "{found}"
    );
    // report.html: the same tree, self-contained (inline CSS, no script, nothing fetched).
    let (code, report) = page(&s, &format!("/runs/{id}/report.html")).await;
    assert_eq!(code, 200);
    assert!(
        report.contains("expected 2, got 3") && report.contains("multiplies"),
        "{report}"
    );
    assert!(report.contains("<style>"), "{report}");
    for external in ["<script", "<link", "src=", "url("] {
        assert!(!report.contains(external), "{external} in {report}");
    }
    let (_, run_page) = page(&s, &format!("/runs/{id}")).await;
    assert!(
        run_page.contains(&format!("/runs/{id}/tests")),
        "{run_page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_report_is_a_warning_and_the_run_is_unchanged() {
    let s = Server::start(CONFIG);
    let bad = fixture("pytest/pytest-corrupt-xml.xml");
    let id = id_of(&s.trigger("corrupt", &[("fixture", &bad)]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run}");
    // The server collects after the job ended, without anyone asking for the results.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let list = s.get_ok("/runs?task=corrupt").await;
        if !list["runs"][0]["results"].is_null() {
            assert_eq!(
                counts(&list["runs"][0]["results"]),
                [0, 0, 0, 0, 0, 1],
                "{list}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never collected: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = s.get_ok(&format!("/runs/{id}/results")).await;
    let warning = find(&r["tree"], "report.xml").unwrap_or_else(|| panic!("{r}"));
    assert_eq!(warning["kind"], "warning");
    assert!(
        warning["message"].as_str().unwrap().contains("not read"),
        "{warning}"
    );
    assert_eq!(counts(&r["tree"]["summary"]), [0, 0, 0, 0, 0, 1]);
    assert_eq!(status(&s.run(id).await), "success");

    // Globs pick the reports; one that matches nothing is a warning.
    let good = fixture("surefire/TEST-AllOkTest.xml");
    let id = id_of(&s.trigger("globbed", &[("fixture", &good)]).await);
    assert_eq!(status(&s.wait_run(id).await), "success");
    let r = s.get_ok(&format!("/runs/{id}/results")).await;
    assert_eq!(counts(&r["tree"]["summary"]), [1, 0, 0, 0, 0, 1], "{r}");
    assert!(find(&r["tree"], "missing/*.xml").is_some());

    // A job without reports still has its node.
    let id = id_of(&s.trigger("none", &[]).await);
    s.wait_run(id).await;
    let r = s.get_ok(&format!("/runs/{id}/results")).await;
    assert_eq!(r["tree"]["children"][0]["kind"], "job");
    assert_eq!(counts(&r["tree"]["summary"]), [0; 6]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelines_tree_has_one_node_per_job() {
    let s = Server::start(CONFIG);
    let id = id_of(&s.trigger_pipeline("ci", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run}");
    let r = s.get_ok(&format!("/runs/{id}/results")).await;
    let tree = &r["tree"];
    assert_eq!(counts(&tree["summary"]), [2, 0, 1, 1, 0, 0], "{r}");
    let jobs: Vec<&str> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(jobs.len(), 2, "{r}");
    assert!(jobs.contains(&"unit") && jobs.contains(&"lint"), "{jobs:?}");
    let bad = find(tree, "bad").unwrap();
    assert_eq!(
        (bad["status"].as_str(), bad["message"].as_str()),
        (Some("error"), Some("boom"))
    );
    assert_eq!(
        counts(&find(tree, "lint").unwrap()["children"][0]["summary"]),
        [1, 0, 0, 1, 0, 0]
    );
    let f = s.get_ok(&format!("/runs/{id}/results?status=failed")).await;
    assert_eq!(f["tree"]["children"].as_array().unwrap().len(), 1, "{f}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_that_passes_on_a_rerun_is_flaky_and_the_report_is_stored_at_the_end() {
    let s = Server::start(CONFIG);
    let counter = s.root.path().join("counter");
    let args = [("counter", counter.to_str().unwrap())];
    let first = id_of(&s.trigger("flip", &args).await);
    s.wait_run(first).await;
    // Stored once the run ended, and that copy is what is downloaded.
    let stored = s.data.join(format!("runs/{first}/report.html"));
    common::wait_file(&stored).await;
    let flaky_pill = "passed and failed on the same commit";
    let (_, html) = page(&s, &format!("/runs/{first}/tests")).await;
    assert!(
        html.contains("first try fails") && !html.contains(flaky_pill),
        "{html}"
    );

    // Fixed by a new run (new code): not flaky.
    let fresh = id_of(&s.trigger("flip", &args).await);
    s.wait_run(fresh).await;
    // Its results are collected (reading them collects them if the collector has not yet).
    s.get_ok(&format!("/runs/{fresh}/results")).await;
    let (_, html) = page(&s, &format!("/runs/{first}/tests")).await;
    assert!(html.contains(&format!("/runs/{fresh}/tests")), "{html}");
    assert!(!html.contains(flaky_pill), "{html}");

    // Passed on a rerun of the run where it failed: flaky.
    let (code, rerun) = s.post(&format!("/runs/{first}/rerun"), Value::Null).await;
    assert_eq!(code, 201, "{rerun}");
    let rerun = id_of(&rerun);
    s.wait_run(rerun).await;
    s.get_ok(&format!("/runs/{rerun}/results")).await;
    let (_, html) = page(&s, &format!("/runs/{first}/tests")).await;
    assert!(html.contains(flaky_pill), "{html}");

    // The stored report is the one written when the first run ended: no later runs in it.
    let (code, report) = page(&s, &format!("/runs/{first}/report.html")).await;
    assert_eq!(code, 200);
    assert_eq!(report, std::fs::read_to_string(&stored).unwrap());
    assert!(report.contains("first try fails"), "{report}");
    assert!(
        !report.contains(&format!("/runs/{fresh}/tests")),
        "{report}"
    );
}
