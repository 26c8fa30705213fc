//! Operating the server: `--version` names the commit the binary was built from,
//! `--log-format json` writes the server's log as one JSON object a line, `baton pause` and
//! `resume` hold and release queues, and `baton drain` and SIGTERM let running jobs end before
//! the server stops.

mod common;
#[path = "common/users.rs"]
mod users;

use std::process::Command;

use common::{BIN, Server, gate, id_of, reason, status};

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

const QUEUES: &str = r#"
administrators: [root]
workers:
  w1: {queues: [default]}
  w2: {queues: [gpu]}
tasks:
  cpu:
    command: echo cpu
  train:
    queues: [gpu]
    command: echo train
  hold:
    command: |
      @GATE@
"#;

fn queues_config() -> String {
    QUEUES.replace("@GATE@", &gate("go"))
}

fn cli_ok(s: &Server, args: &[&str]) -> String {
    let out = s.cli(args);
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "baton {args:?}: {stdout}{stderr}");
    stdout
}

#[tokio::test]
async fn a_paused_queue_holds_its_jobs_with_a_reason_until_resumed() {
    let s = Server::start(&queues_config());
    users::add_user(&s, "alice", "alice-password-long");
    let alice = users::user_token(&s, "alice");
    let refused = s
        .http
        .post(s.url("/pause"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(refused, 403, "only administrators pause");

    assert_eq!(cli_ok(&s, &["pause", "gpu"]).trim(), "paused: gpu");
    let train = id_of(&s.trigger("train", &[]).await);
    let cpu = id_of(&s.trigger("cpu", &[]).await);
    assert_eq!(
        status(&s.wait_run(cpu).await),
        "success",
        "other queues go on"
    );
    let held = s
        .wait_until(train, "held by the pause", |r| {
            reason(r).contains("queue paused")
        })
        .await;
    assert_eq!(status(&held), "queued", "{held:#}");
    assert!(reason(&held).contains("gpu"), "{held:#}");
    assert_eq!(s.get_ok("/paused").await["paused"]["queues"][0], "gpu");

    assert_eq!(
        cli_ok(&s, &["pause"]).trim(),
        "paused: every queue (baton resume)"
    );
    let cpu2 = id_of(&s.trigger("cpu", &[]).await);
    let held = s
        .wait_until(cpu2, "held", |r| reason(r).contains("every queue"))
        .await;
    assert_eq!(status(&held), "queued");

    assert_eq!(cli_ok(&s, &["resume"]).trim(), "no queue is paused");
    assert_eq!(status(&s.wait_run(train).await), "success");
    assert_eq!(status(&s.wait_run(cpu2).await), "success");
}

#[tokio::test]
async fn drain_lets_running_jobs_end_then_stops_the_server() {
    let mut s = Server::start(&queues_config());
    let go = s.root.path().join("go");
    let go_s = go.to_str().unwrap();
    let hold = id_of(&s.trigger("hold", &[("go", go_s)]).await);
    s.wait_until(hold, "running", |r| status(r) == "running")
        .await;
    let out = cli_ok(&s, &["drain"]);
    assert!(out.contains("1 running job"), "{out}");
    let later = id_of(&s.trigger("cpu", &[]).await);
    let held = s
        .wait_until(later, "held", |r| reason(r).contains("queue paused"))
        .await;
    assert_eq!(status(&held), "queued");
    std::fs::write(&go, b"").unwrap();
    assert!(s.wait_exit().success(), "{}", s.stderr());
    // Everything was recorded before it stopped; the next start runs what waited.
    // Connections to the stopped server are gone: a new client for the new one.
    s.http = reqwest::Client::new();
    s.restart();
    assert_eq!(status(&s.run(hold).await), "success");
    assert_eq!(
        status(&s.wait_run(later).await),
        "success",
        "a restart is not paused"
    );
}

#[tokio::test]
async fn sigterm_drains_with_a_time_limit() {
    let mut s = Server::start_env(&queues_config(), &[("BATON_DRAIN_TIMEOUT", "1s")]);
    let go = s.root.path().join("go");
    let hold = id_of(&s.trigger("hold", &[("go", go.to_str().unwrap())]).await);
    s.wait_until(hold, "running", |r| status(r) == "running")
        .await;
    let pid = s.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The job outlives the limit: the server stops and leaves it running under its supervisor.
    assert!(s.wait_exit().success(), "{}", s.stderr());
    let log = s.stderr();
    assert!(log.contains("SIGTERM: draining"), "{log}");
    assert!(log.contains("1 jobs still running after 1s"), "{log}");
    std::fs::write(&go, b"").unwrap();
    // Connections to the stopped server are gone: a new client for the new one.
    s.http = reqwest::Client::new();
    s.restart();
    assert_eq!(
        status(&s.wait_run(hold).await),
        "success",
        "re-attached and ended"
    );
}
