//! Every JUnit fixture in `tests/fixtures/junit/` parsed with the counts its README gives
//! (tests / failures / errors / skipped (passed)), and corrupt ones reported, not crashed on.

use std::path::PathBuf;

use baton_results::junit::{Budget, JunitError, parse_file, parse_reader};
use baton_results::{Kind, Node, Status, collect_job, job_node};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/junit")
        .join(name)
}

/// (tests, failed, errors, skipped, passed) of one file.
fn counts(name: &str) -> (u64, u64, u64, u64, u64) {
    let suites = parse_file(&fixture(name), &mut Budget::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: not JUnit"));
    let job = job_node("job", 1, "succeeded", suites);
    let s = job.summary;
    (s.total(), s.failed, s.errors, s.skipped, s.passed + s.flaky)
}

#[test]
fn every_fixture_has_the_readme_counts() {
    let expected = [
        ("pytest/pytest-junit-fail.xml", (5, 1, 0, 1, 3)),
        ("pytest/pytest-gloo-elastic.xml", (14, 0, 0, 4, 10)),
        ("pytest/pytest-single-case.xml", (1, 0, 0, 0, 1)),
        (
            "pytest/python-unittest-xmlrunner-cdata.xml",
            (8, 1, 1, 2, 4),
        ),
        ("nextest/nextest-basic.xml", (3, 1, 0, 0, 2)),
        ("surefire/TEST-EmailAddressTest.xml", (9, 2, 5, 0, 2)),
        ("surefire/TEST-AllOkTest.xml", (1, 0, 0, 0, 1)),
        ("surefire/junit4-complete.xml", (8, 1, 1, 1, 5)),
        ("jest/jest-junit-dorny.xml", (6, 4, 0, 1, 1)),
        ("jest/jest-junit-empty-testsuite.xml", (0, 0, 0, 0, 0)),
    ];
    for (name, want) in expected {
        assert_eq!(counts(name), want, "{name}");
    }
}

#[test]
fn corrupt_fixtures_are_errors_with_a_place() {
    for name in [
        "pytest/pytest-corrupt-xml.xml",
        "surefire/TEST-CorruptTest.xml",
    ] {
        let err = parse_file(&fixture(name), &mut Budget::default()).unwrap_err();
        assert!(
            matches!(err, JunitError::Xml { .. } | JunitError::Truncated(_)),
            "{name}: {err}"
        );
        assert!(!err.to_string().is_empty());
    }
}

fn find<'a>(n: &'a Node, name: &str) -> Option<&'a Node> {
    if n.name == name {
        return Some(n);
    }
    n.children.iter().find_map(|c| find(c, name))
}

#[test]
fn cases_keep_message_output_file_line_and_entities() {
    let suites = parse_file(
        &fixture("nextest/nextest-basic.xml"),
        &mut Budget::default(),
    )
    .unwrap()
    .unwrap();
    let job = job_node("job", 1, "failed", suites);
    let failed = find(&job, "test_failure").unwrap();
    assert_eq!(failed.status, Some(Status::Failed));
    assert_eq!(failed.message.as_deref(), Some("test failure"));
    let out = failed.output.as_deref().unwrap();
    assert!(out.contains("thread 'test_failure' panicked"), "{out}");
    assert!(out.contains("--- system-out ---"), "{out}");
    assert!((failed.duration.unwrap() - 0.774).abs() < 1e-9);

    let suites = parse_file(
        &fixture("pytest/pytest-junit-fail.xml"),
        &mut Budget::default(),
    )
    .unwrap()
    .unwrap();
    let job = job_node("job", 1, "failed", suites);
    let case = find(&job, "test_get_available_devices").unwrap();
    assert_eq!(case.status, Some(Status::Skipped));
    assert_eq!(case.file.as_deref(), Some("test/test_spark.py"));
    assert_eq!(case.line, Some(1641));
    assert!(case.message.as_deref().unwrap().contains("Spark 3.0"));
}

#[test]
fn nested_suites_reruns_and_entities() {
    let xml = r#"<?xml version="1.0"?>
<testsuites>
  <testsuite name="outer" time="3">
    <testsuite name="inner">
      <testcase name="a &amp; b" classname="k" time="1"/>
      <testcase name="retried" time="1"><flakyFailure message="first try">x</flakyFailure></testcase>
      <testcase name="both"><failure message="f"/><error message="e"/></testcase>
    </testsuite>
    <testcase name="&#x263A;"><skipped/></testcase>
  </testsuite>
</testsuites>"#;
    let suites = parse_reader(xml.as_bytes(), &mut Budget::default())
        .unwrap()
        .unwrap();
    let job = job_node("j", 7, "failed", suites);
    let s = job.summary;
    assert_eq!(
        (s.passed, s.flaky, s.errors, s.failed, s.skipped),
        (1, 1, 1, 0, 1)
    );
    let outer = &job.children[0];
    assert_eq!(outer.name, "outer");
    assert_eq!(outer.summary.duration, 3.0);
    assert_eq!(outer.children[0].name, "inner");
    assert_eq!(outer.children[0].children[0].name, "a & b");
    assert_eq!(outer.children[1].name, "\u{263A}");
    assert_eq!(job.status, Some(Status::Error));
    let failing = job.failing().unwrap();
    assert_eq!(failing.children[0].children.len(), 1);
    assert_eq!(failing.children[0].children[0].children[0].name, "both");
}

#[test]
fn not_junit_is_none_and_budget_bounds_nodes() {
    let none = parse_reader(&b"<project/>"[..], &mut Budget::default()).unwrap();
    assert!(none.is_none());
    let mut xml = String::from("<testsuite name=\"big\">");
    for i in 0..50 {
        xml.push_str(&format!(
            "<testcase name=\"t{i}\"><failure>{}</failure></testcase>",
            "x".repeat(100)
        ));
    }
    xml.push_str("</testsuite>");
    let mut budget = Budget {
        nodes: 10,
        text: 1000,
        quiet_text: 1000,
        exhausted: false,
    };
    let suites = parse_reader(xml.as_bytes(), &mut budget).unwrap().unwrap();
    assert!(budget.exhausted);
    let kept: usize = suites.iter().map(Node::size).sum();
    assert!(kept <= 10, "{kept}");
}

#[test]
fn passing_output_is_kept_while_its_budget_lasts_and_failing_output_always() {
    let mut xml = String::from("<testsuite name=\"s\">");
    for i in 0..10 {
        xml.push_str(&format!(
            "<testcase name=\"ok{i}\"><system-out>  {}  </system-out></testcase>",
            "o".repeat(100)
        ));
        xml.push_str(&format!(
            "<testcase name=\"bad{i}\"><system-out>{}</system-out><failure message=\"m\"/></testcase>",
            "b".repeat(100)
        ));
    }
    xml.push_str("</testsuite>");
    let mut budget = Budget {
        quiet_text: 400,
        ..Budget::default()
    };
    let text_before = budget.text;
    let suites = parse_reader(xml.as_bytes(), &mut budget).unwrap().unwrap();
    let job = job_node("job", 1, "failed", suites);
    // The first three passing cases keep their (trimmed) output, the others none; every
    // failing case keeps its own; nothing counts as exhausted (no warning).
    for i in 0..10 {
        let ok = find(&job, &format!("ok{i}")).unwrap();
        assert_eq!(ok.status, Some(Status::Passed));
        if i < 3 {
            let out = ok.output.as_deref().unwrap();
            assert!(
                out.starts_with("--- system-out ---\n") && out.ends_with('o'),
                "{out:?}"
            );
        } else {
            assert_eq!(ok.output, None, "ok{i}");
        }
        let bad = find(&job, &format!("bad{i}")).unwrap();
        assert!(bad.output.as_deref().unwrap().contains(&"b".repeat(100)));
    }
    assert!(!budget.exhausted);
    // Each kept one: its `--- system-out ---` line, then its text (trimmed at the end only).
    assert_eq!(budget.quiet_text, 400 - 3 * (19 + 2 + 100));
    // Text not kept went back to the budget: only the kept outputs count.
    let kept: usize = job
        .leaves()
        .iter()
        .filter_map(|(_, n)| n.output.as_ref().map(String::len))
        .sum();
    assert_eq!(text_before - budget.text, kept);
}

#[test]
fn a_job_folder_gives_reports_own_nodes_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    std::fs::create_dir_all(out.join("reports/.baton")).unwrap();
    std::fs::create_dir_all(out.join(".baton")).unwrap();
    std::fs::copy(
        fixture("surefire/TEST-AllOkTest.xml"),
        out.join("reports/ok.xml"),
    )
    .unwrap();
    std::fs::copy(
        fixture("pytest/pytest-corrupt-xml.xml"),
        out.join("bad.xml"),
    )
    .unwrap();
    std::fs::write(out.join("pom.xml"), "<project/>").unwrap();
    std::fs::write(
        out.join(".baton/results.json"),
        r#"[{"name": "lint", "status": "passed", "duration": 2.5},
            {"name": "deploy", "kind": "job", "children": [{"name": "upload", "status": "failed", "message": "403"}]}]"#,
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", out.join("link.xml")).unwrap();

    let job = job_node("build", 3, "failed", collect_job(out, &[]));
    let s = job.summary;
    assert_eq!((s.passed, s.failed, s.warnings), (2, 1, 1), "{job:#?}");
    let warning = job
        .children
        .iter()
        .find(|n| n.kind == Kind::Warning)
        .unwrap();
    assert_eq!(warning.name, "bad.xml");
    assert!(warning.message.as_deref().unwrap().contains("not read"));
    let deploy = find(&job, "deploy").unwrap();
    assert_eq!(deploy.kind, Kind::Step);

    // Named by globs: only those files, and a glob that matches nothing is a warning.
    let globs = vec![
        "reports/*.xml".to_owned(),
        "missing/*.xml".to_owned(),
        "pom.xml".to_owned(),
    ];
    let job = job_node("build", 3, "failed", collect_job(out, &globs));
    let warnings: Vec<&str> = job
        .children
        .iter()
        .filter(|n| n.kind == Kind::Warning)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(warnings, ["pom.xml", "missing/*.xml"]);
    assert_eq!(job.summary.passed, 2);
}

/// A JUnit report of `cases` cases made on the fly (nothing on disk or in memory).
struct Generated {
    cases: usize,
    at: usize,
    pending: Vec<u8>,
    done: bool,
}

impl std::io::Read for Generated {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() && !self.done {
            self.pending = if self.at == 0 {
                b"<testsuites><testsuite name=\"huge\">".to_vec()
            } else if self.at > self.cases {
                self.done = true;
                b"</testsuite></testsuites>".to_vec()
            } else {
                format!(
                    "<testcase classname=\"k\" name=\"t{}\" time=\"0.001\"><failure message=\"m\">{}</failure><system-out>{}</system-out></testcase>\n",
                    self.at,
                    "x".repeat(400),
                    "y".repeat(400)
                )
                .into_bytes()
            };
            self.at += 1;
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_100_mb_report_keeps_memory_bounded() {
    // ~900 bytes a case: 115,000 cases make a report of about 100 MB.
    let input = std::io::BufReader::new(Generated {
        cases: 115_000,
        at: 0,
        pending: Vec::new(),
        done: false,
    });
    let before = vm_hwm_kib();
    let mut budget = Budget::default();
    let suites = parse_reader(input, &mut budget).unwrap().unwrap();
    let grown_mib = vm_hwm_kib().saturating_sub(before) / 1024;
    assert!(budget.exhausted);
    let kept: usize = suites.iter().map(Node::size).sum();
    assert!(kept <= Budget::default().nodes, "{kept}");
    // The budget (100,000 nodes, 32 MiB of text) bounds what is kept, not the file's size.
    assert!(grown_mib < 150, "peak memory grew by {grown_mib} MiB");
}
