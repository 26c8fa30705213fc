//! Timed triggers (`period`, cron `schedule`), the missed-slot rule across a restart, and
//! SIGHUP reloads.

mod common;

use std::time::{Duration, Instant};

use common::{Server, WAIT, status};
use serde_json::Value;

async fn schedule_runs(s: &Server, task: &str) -> Vec<Value> {
    s.get_ok(&format!("/runs?task={task}&trigger=schedule&limit=500"))
        .await["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_for_schedule_runs(s: &Server, task: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let runs = schedule_runs(s, task).await;
        if runs.len() >= n {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{task} fired {} times, expected {n}; stderr:\n{}",
            runs.len(),
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn period_and_cron_tasks_fire() {
    let s = Server::start(
        r#"
server: {local_workers: 2}
tasks:
  every-second:
    period: 1s
    command: echo tick
  cron-second:
    schedule: "* * * * * *"
    command: echo tock
  never:
    period: 1w
    command: echo never
"#,
    );
    let ticks = wait_for_schedule_runs(&s, "every-second", 2).await;
    let tocks = wait_for_schedule_runs(&s, "cron-second", 2).await;
    for r in ticks.iter().chain(&tocks) {
        assert_eq!(r["trigger"], "schedule", "{r:#}");
    }
    let done = s.wait_run(ticks[0]["id"].as_i64().unwrap()).await;
    assert_eq!(status(&done), "success");
    assert_eq!(
        s.log_text(done["id"].as_i64().unwrap(), None).await,
        "tick\n"
    );
    assert!(
        schedule_runs(&s, "never").await.is_empty(),
        "a weekly task must not fire on first sight"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missed_slots_fire_once_after_downtime() {
    let mut s = Server::start(
        r#"
server: {local_workers: 2}
tasks:
  hourly-ish:
    period: 3s
    command: echo fired
"#,
    );
    let before = wait_for_schedule_runs(&s, "hourly-ish", 1).await.len();
    s.kill9();
    // Several 3 s slots pass while the server is down.
    tokio::time::sleep(Duration::from_secs(10)).await;
    s.restart();
    // One catch-up run for all the missed slots, then the next slot a period later: had the
    // missed slots fired one run each, the first runs after the restart would be enqueued
    // together, not a period apart.
    let after = wait_for_schedule_runs(&s, "hourly-ish", before + 2).await;
    let enqueued = |r: &Value| {
        chrono::DateTime::parse_from_rfc3339(r["enqueued_at"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("no enqueued_at in {r:#}: {e}"))
    };
    // Newest first: the catch-up run is the (before + 1)th from the end.
    let catch_up = &after[after.len() - before - 1];
    let next = &after[after.len() - before - 2];
    let gap = enqueued(next) - enqueued(catch_up);
    assert!(
        gap >= chrono::Duration::milliseconds(1500),
        "missed slots must collapse into one run, the next slot a period (3 s) later; runs {} and {} are {gap} apart: {after:#?}",
        catch_up["id"],
        next["id"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let s = Server::start("server: {local_workers: 1}\ntasks:\n  a: {command: echo a}\n");
    s.write_config(
        "baton.yaml",
        "server: {local_workers: 1}\ntasks:\n  a: {command: echo a}\n  b: {command: echo b}\n",
    );
    let hup = |pid: u32| {
        let rc = unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        assert_eq!(rc, 0, "cannot signal the server");
    };
    hup(s.pid());
    let deadline = Instant::now() + WAIT;
    loop {
        let tasks = s.get_ok("/tasks").await;
        let names: Vec<&str> = tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        if names.contains(&"b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.write_config("baton.yaml", "tasks:\n  a: {command: echo a, bogus: 1}\n");
    hup(s.pid());
    let deadline = Instant::now() + WAIT;
    while !s.stderr().contains("config reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload failure reported; stderr:\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.stderr().contains("baton.yaml:2:"), "{}", s.stderr());
    // The old config (with `b`) is still in force.
    let run = s.trigger("b", &[]).await;
    let run = s.wait_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(status(&run), "success");
}
