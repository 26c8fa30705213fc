//! Operating the server: `--version` names the commit the binary was built from, and
//! `--log-format json` writes the server's log as one JSON object a line.

mod common;

use std::process::Command;

use common::{BIN, Server};

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    let want = format!(
        "baton {} (commit {}",
        env!("CARGO_PKG_VERSION"),
        head.trim()
    );
    assert!(
        text.starts_with(&want),
        "{text:?} does not start with {want:?}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_events_fields() {
    let s = Server::start_env(
        "tasks:\n  t:\n    command: \"true\"\n",
        &[("BATON_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    );
    let id = common::id_of(&s.trigger("t", &[]).await);
    s.wait_run(id).await;
    let log = s.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("---"))
        .collect();
    assert!(!lines.is_empty(), "no log lines at info level:\n{log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{log}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(
            v["message"].is_string() || v["fields"].is_object(),
            "{line}"
        );
    }
}
