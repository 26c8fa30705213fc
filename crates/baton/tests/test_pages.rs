//! The pages that show tests across runs, end to end: the runs list (and a target's page) shows
//! each ended run's test counts; a test's own page (`/tests/{task}/{test id}`, linked from the
//! run's Tests tab) lists its results across the task's runs and says whether it is flaky, also
//! once it passes.

mod common;

use common::{Server, id_of, status};
use serde_json::Value;

const CONFIG: &str = r#"
server:
  local_workers: 2
tasks:
  flip:
    command: |
      n=$(cat "$counter" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$counter"
      if [ "$n" = 1 ]; then body='<failure message="first try fails"/>'; else body=''; fi
      printf '<testsuite name="s"><testcase name="wobbly">%s</testcase><testcase name="steady"/><testcase name="later"><skipped/></testcase></testsuite>' "$body" > "$BATON_OUTPUT_DIR/junit.xml"
  none:
    command: "true"
pipelines:
  ci:
    tasks:
      unit:
        script:
          - >-
            printf '<testsuite name="s"><testcase name="ok"/></testsuite>' > "$BATON_OUTPUT_DIR/junit.xml"
"#;

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

/// The `<tr>` of run `id` in a page's runs table.
fn row_of(html: &str, id: i64) -> String {
    let start = html
        .find(&format!("<tr><td><a href=\"/runs/{id}\">#{id}</a>"))
        .unwrap_or_else(|| panic!("no row of run {id} in {html}"));
    let end = html[start..].find("</tr>").unwrap() + start;
    html[start..end].to_owned()
}

/// The test counts a runs table shows for a run.
fn counts_cell(passed: u32, failed: u32, skipped: u32) -> String {
    format!(
        "<span class=\"n-passed\">{passed} passed</span> · <span class=\"n-failed\">{failed} failed</span> · <span class=\"n-skipped\">{skipped} skipped</span>"
    )
}

async fn ended(s: &Server, id: i64) -> Value {
    let run = s.wait_run(id).await;
    // Its results are collected (reading them collects them if the collector has not yet).
    s.get_ok(&format!("/runs/{id}/results")).await;
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runs_list_shows_each_ended_runs_test_counts() {
    let s = Server::start(CONFIG);
    let counter = s.root.path().join("counter");
    let args = [("counter", counter.to_str().unwrap())];
    let first = id_of(&s.trigger("flip", &args).await);
    ended(&s, first).await;
    let second = id_of(&s.trigger("flip", &args).await);
    ended(&s, second).await;
    let plain = id_of(&s.trigger("none", &[]).await);
    assert_eq!(status(&ended(&s, plain).await), "success");

    let (code, html) = page(&s, "/runs").await;
    assert_eq!(code, 200, "{html}");
    let row = row_of(&html, first);
    assert!(row.contains(&counts_cell(1, 1, 1)), "{row}");
    assert!(
        row.contains(&format!("href=\"/runs/{first}/tests\"")),
        "{row}"
    );
    let row = row_of(&html, second);
    assert!(row.contains(&counts_cell(2, 0, 1)), "{row}");
    // A run without test results shows none.
    let row = row_of(&html, plain);
    assert!(row.contains("<td class=\"tests\"></td>"), "{row}");

    // The task's own page lists its runs with their counts too.
    let (code, html) = page(&s, "/targets/task/flip").await;
    assert_eq!(code, 200, "{html}");
    let row = row_of(&html, first);
    assert!(row.contains(&counts_cell(1, 1, 1)), "{row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tests_page_shows_its_history_and_stays_flaky_once_it_passes() {
    let s = Server::start(CONFIG);
    let counter = s.root.path().join("counter");
    let args = [("counter", counter.to_str().unwrap())];
    let first = id_of(&s.trigger("flip", &args).await);
    ended(&s, first).await;

    // The Tests tab links each test to its own page (the failing one and the tree's).
    let wobbly = "/tests/flip/s%20%3E%20wobbly";
    let steady = "/tests/flip/s%20%3E%20steady";
    let (_, tab) = page(&s, &format!("/runs/{first}/tests")).await;
    assert_eq!(
        tab.matches(&format!("href=\"{wobbly}\"")).count(),
        2,
        "{tab}"
    );
    assert!(tab.contains(&format!("href=\"{steady}\"")), "{tab}");
    // report.html is read away from the server: no links into it.
    let (_, report) = page(&s, &format!("/runs/{first}/report.html")).await;
    assert!(!report.contains("/tests/flip/"), "{report}");

    let (code, html) = page(&s, wobbly).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("s &#62; wobbly"), "{html}");
    assert!(html.contains("id=\"not-flaky\""), "{html}");
    assert!(html.contains(&format!("data-run=\"{first}\"")), "{html}");

    // Passed on a rerun of the run where it failed (the same code): flaky, though it passes.
    let (code, rerun) = s.post(&format!("/runs/{first}/rerun"), Value::Null).await;
    assert_eq!(code, 201, "{rerun}");
    let rerun = id_of(&rerun);
    ended(&s, rerun).await;
    let (code, html) = page(&s, wobbly).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("id=\"flaky\""), "{html}");
    assert!(
        html.contains("<span class=\"pill s-passed\">passed</span> now"),
        "{html}"
    );
    // Newest first, each run linked, with its status and the code it ran on.
    let a = html.find(&format!("data-run=\"{rerun}\"")).unwrap();
    let b = html.find(&format!("data-run=\"{first}\"")).unwrap();
    assert!(a < b, "newest first: {html}");
    let line = &html[a..b];
    assert!(
        line.contains(&format!("href=\"/runs/{rerun}/tests\"")),
        "{line}"
    );
    assert!(line.contains("s-passed"), "{line}");
    assert!(line.contains(&format!("run #{first}")), "{line}");
    assert!(html[b..].contains("s-failed"), "{html}");

    // A test that always passed is not flaky.
    let (code, html) = page(&s, steady).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("id=\"not-flaky\""), "{html}");

    // A pipeline's task is one path segment (`PIPELINE%2FTASK`).
    let p = id_of(&s.trigger_pipeline("ci", &[]).await);
    ended(&s, p).await;
    let link = "/tests/ci%2Funit/s%20%3E%20ok";
    let (_, tab) = page(&s, &format!("/runs/{p}/tests")).await;
    assert!(tab.contains(&format!("href=\"{link}\"")), "{tab}");
    let (code, html) = page(&s, link).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains(&format!("data-run=\"{p}\"")), "{html}");

    // A test that never ran is not found.
    let (code, _) = page(&s, "/tests/flip/s%20%3E%20nothing").await;
    assert_eq!(code, 404);
}
