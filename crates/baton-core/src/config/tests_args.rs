//! Loader tests for `args:` on tasks and pipelines, and `enabled`/`tags` on pipelines.

use std::path::PathBuf;

use super::*;

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_sources_with(&[(PathBuf::from("t.yaml"), yaml.to_owned())], &|_| {
        Err("no secrets here".to_owned())
    })
}

fn errors(yaml: &str) -> String {
    load(yaml)
        .unwrap_err()
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn declared_arguments_keep_their_order_and_scalars_become_text() {
    let c = load(
        "tasks:\n  deploy:\n    command: x\n    args:\n      version: {required: true, description: which}\n      \
         env: {default: staging, choices: [staging, prod]}\n      level: {default: 3, choices: [1, 3]}\n\
         pipelines:\n  ci:\n    enabled: false\n    tags: [nightly]\n    args:\n      fast: {default: true}\n    tasks:\n      a: {script: [x]}\n",
    )
    .unwrap();
    let names: Vec<&str> = c.tasks["deploy"]
        .args
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["version", "env", "level"]);
    let v = &c.tasks["deploy"].args[0];
    assert!(v.required && v.default.is_none() && v.description == "which");
    assert_eq!(c.tasks["deploy"].args[2].default.as_deref(), Some("3"));
    assert_eq!(c.tasks["deploy"].args[2].choices, ["1", "3"]);
    let p = &c.pipelines["ci"];
    assert!(!p.enabled);
    assert_eq!(p.tags, ["nightly"]);
    assert_eq!(p.args[0].default.as_deref(), Some("true"));
    assert!(
        load("pipelines:\n  p:\n    tasks:\n      a: {script: [x]}\n")
            .unwrap()
            .pipelines["p"]
            .enabled
    );
}

#[test]
fn bad_declarations_are_errors_at_their_place() {
    let text = errors(
        "tasks:\n  t:\n    command: x\n    args:\n      PATH: {}\n      env: {default: dev, choices: [staging, prod]}\n      \
         v: {required: true, default: 1}\n      w: {choices: []}\n      x: {choices: [a, a], requird: true}\n      y: {default: [1]}\n",
    );
    assert!(
        text.contains("t.yaml:5:7: in \"args\" of task \"t\": invalid argument \"PATH\""),
        "{text}"
    );
    assert!(
        text.contains("t.yaml:6:22: default \"dev\" of argument \"env\" is not one of its choices (staging, prod)"),
        "{text}"
    );
    assert!(
        text.contains("t.yaml:7:27: argument \"v\" is required and has a default"),
        "{text}"
    );
    assert!(text.contains("\"choices\" must not be empty"), "{text}");
    assert!(text.contains("choice \"a\" is listed twice"), "{text}");
    assert!(
        text.contains("unknown key \"requird\" in argument \"x\""),
        "{text}"
    );
    assert!(
        text.contains("expected a string, number or boolean for \"default\""),
        "{text}"
    );
    let text = errors(
        "tasks:\n  n:\n    command: x\n    period: 1h\n    args:\n      v: {required: true}\n",
    );
    assert!(
        text.contains("t.yaml:5:5: task \"n\" has \"period\", whose runs get no arguments, but argument \"v\" is required"),
        "{text}"
    );
}
