//! Loader tests for `cache: {inputs, env, key, max_age}` on tasks and pipeline tasks.

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
