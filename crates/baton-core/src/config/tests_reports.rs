//! Loader tests for `reports: {junit: [GLOB, …]}` on tasks and pipeline tasks.

use std::path::PathBuf;

use super::*;

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_sources_with(&[(PathBuf::from("t.yaml"), yaml.to_owned())], &|_| {
        Err("no secrets here".to_owned())
    })
}

#[test]
fn reports_junit_globs_on_tasks_and_pipeline_tasks() {
    let c = load(
        "tasks:\n  test:\n    command: make test\n    reports:\n      junit: [\"target/*.xml\", \"reports/**/TEST-*.xml\"]\n\
         pipelines:\n  ci:\n    tasks:\n      unit:\n        script: [make]\n        reports: {junit: [junit.xml]}\n",
    )
    .unwrap();
    assert_eq!(
        c.tasks["test"].reports.junit,
        ["target/*.xml", "reports/**/TEST-*.xml"]
    );
    assert_eq!(c.pipelines["ci"].tasks["unit"].reports.junit, ["junit.xml"]);
    let c = load("tasks:\n  plain:\n    command: \"true\"\n").unwrap();
    assert!(c.tasks["plain"].reports.junit.is_empty());
}

#[test]
fn bad_reports_are_errors_at_their_place() {
    let errors: Vec<String> = load(
        "tasks:\n  t:\n    command: x\n    reports:\n      junit: [\"/etc/*.xml\", \"../up.xml\", \"a[.xml\", 3]\n      html: [x]\n",
    )
    .unwrap_err()
    .diagnostics
    .iter()
    .map(ToString::to_string)
    .collect();
    let text = errors.join("\n");
    assert!(
        text.contains("t.yaml:5:15: reports.junit glob \"/etc/*.xml\" must be relative"),
        "{text}"
    );
    assert!(text.contains("\"../up.xml\" must be relative"), "{text}");
    assert!(
        text.contains("invalid reports.junit glob \"a[.xml\""),
        "{text}"
    );
    assert!(text.contains("expected a string in \"junit\""), "{text}");
    assert!(
        text.contains("unknown key \"html\" in \"reports\" of task \"t\""),
        "{text}"
    );
}
