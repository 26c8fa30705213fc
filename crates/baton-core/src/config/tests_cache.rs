//! Loader tests for `cache: {inputs, env, key, max_age}` on tasks and pipeline tasks, and for
//! `retention:` on tasks and in `server:`.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_sources_with(&[(PathBuf::from("t.yaml"), yaml.to_owned())], &|_| {
        Err("no secrets here".to_owned())
    })
}

#[test]
fn cache_on_tasks_and_pipeline_tasks() {
    let c = load(
        "tasks:\n  build:\n    command: make\n    cache:\n      inputs: [\"src/**\", Cargo.lock]\n      env: [RUSTFLAGS]\n      key: v2\n      max_age: 7d\n\
         pipelines:\n  ci:\n    tasks:\n      unit:\n        script: [make]\n        cache: {inputs: [\"*.c\"]}\n",
    )
    .unwrap();
    let cache = c.tasks["build"].cache.clone().unwrap();
    assert_eq!(cache.inputs, ["src/**", "Cargo.lock"]);
    assert_eq!(cache.env, ["RUSTFLAGS"]);
    assert_eq!(cache.key, "v2");
    assert_eq!(cache.max_age(), Duration::from_secs(7 * 86_400));
    let unit = c.pipelines["ci"].tasks["unit"].cache.clone().unwrap();
    assert_eq!(unit.inputs, ["*.c"]);
    assert_eq!(unit.max_age(), CacheDef::DEFAULT_MAX_AGE);
    let c = load("tasks:\n  plain:\n    command: \"true\"\n").unwrap();
    assert!(c.tasks["plain"].cache.is_none());
}

#[test]
fn bad_cache_settings_are_errors_at_their_place() {
    let errors: Vec<String> = load(
        "tasks:\n  t:\n    command: x\n    cache:\n      inputs: [\"/etc/*\", \"a[\"]\n      env: [\"A B\"]\n      keys: x\n",
    )
    .unwrap_err()
    .diagnostics
    .iter()
    .map(ToString::to_string)
    .collect();
    let text = errors.join("\n");
    assert!(
        text.contains("t.yaml:5:16: cache.inputs glob \"/etc/*\" must be relative"),
        "{text}"
    );
    assert!(text.contains("invalid cache.inputs glob \"a[\""), "{text}");
    assert!(text.contains("cache.env \"A B\" is not"), "{text}");
    assert!(
        text.contains("unknown key \"keys\" in \"cache\" of task \"t\""),
        "{text}"
    );
}

#[test]
fn retention_on_tasks_and_in_server() {
    let c = load(
        "server:\n  retention: {max_age: 30d}\ntasks:\n  t:\n    command: x\n    retention: {keep_last: 5, max_age: 2d, keep_failed: 3}\n  u:\n    command: y\n",
    )
    .unwrap();
    let r = c.tasks["t"].retention.as_deref().copied().unwrap();
    assert_eq!(
        (r.keep_last, r.max_age, r.keep_failed),
        (Some(5), Some(Duration::from_secs(2 * 86_400)), Some(3))
    );
    assert!(c.tasks["u"].retention.is_none());
    assert_eq!(
        c.server.retention.unwrap().max_age,
        Some(Duration::from_secs(30 * 86_400))
    );
    let err = load("tasks:\n  t:\n    command: x\n    retention: {keep: 1}\n").unwrap_err();
    let text: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        text.join("\n")
            .contains("unknown key \"keep\" in \"retention\" of task \"t\""),
        "{text:?}"
    );
}
