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

#[test]
fn artifacts_globs_as_a_list_or_with_required() {
    let c = load(
        "tasks:\n  a:\n    command: x\n    artifacts: [dist/*.tar.gz, \"reports/**\"]\n  b:\n    command: x\n    artifacts: {paths: [out.bin], required: true}\n\
         pipelines:\n  ci:\n    tasks:\n      unit:\n        script: [make]\n        artifacts: [\"*.log\"]\n",
    )
    .unwrap();
    assert_eq!(
        c.tasks["a"].artifacts.paths,
        ["dist/*.tar.gz", "reports/**"]
    );
    assert!(!c.tasks["a"].artifacts.required);
    assert_eq!(c.tasks["b"].artifacts.paths, ["out.bin"]);
    assert!(c.tasks["b"].artifacts.required);
    assert_eq!(c.pipelines["ci"].tasks["unit"].artifacts.paths, ["*.log"]);
    let errors = load(
        "tasks:\n  t:\n    command: x\n    artifacts: {paths: [\"../x\", \"{a,b}\"], required: yes, keep: 1}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains("artifacts glob \"../x\" must be relative"),
        "{errors}"
    );
    assert!(
        errors.contains("list each alternative as its own glob"),
        "{errors}"
    );
    assert!(
        errors.contains("unknown key \"keep\" in \"artifacts\" of task \"t\""),
        "{errors}"
    );
}

#[test]
fn an_s3_artifact_store_takes_its_keys_only_by_reference() {
    let resolve = |s: &SecretSource| match s {
        SecretSource::Env(v) if v == "S3_KEY" => Ok("key-value".to_owned()),
        SecretSource::Env(v) if v == "S3_SECRET" => Ok("secret-value".to_owned()),
        other => Err(format!("{other} is not set")),
    };
    let yaml = "server:\n  artifacts:\n    s3: {bucket: b, endpoint: \"http://127.0.0.1:9000\", access_key: env:S3_KEY, secret_key: env:S3_SECRET}\n";
    let c = load_sources_with(&[(PathBuf::from("t.yaml"), yaml.to_owned())], &resolve).unwrap();
    let s3 = c.server.artifacts.as_ref().unwrap();
    assert_eq!((s3.bucket.as_str(), s3.region.as_str()), ("b", "us-east-1"));
    assert_eq!(s3.secret_key.value.expose(), "secret-value");
    // Jobs never inherit the keys' variables.
    assert!(c.secret_env_vars().contains(&"S3_SECRET".to_owned()));
    let bad = "server:\n  artifacts:\n    s3: {endpoint: \"ftp://x\", access_key: plain-key}\n";
    let errors = load_sources_with(&[(PathBuf::from("t.yaml"), bad.to_owned())], &resolve)
        .unwrap_err()
        .to_string();
    assert!(errors.contains("needs \"bucket\""), "{errors}");
    assert!(errors.contains("invalid endpoint \"ftp://x\""), "{errors}");
    assert!(errors.contains("must be a reference"), "{errors}");
    assert!(!errors.contains("plain-key"), "{errors}");
    assert!(errors.contains("needs \"secret_key\""), "{errors}");
}
