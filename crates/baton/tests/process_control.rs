//! Cancel and timeout kill the whole process tree (the job's cgroup where the machine has a
//! usable cgroup v2, and the forced process-group fallback); a lost supervisor is retried or
//! `broken`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, id_of, is_dead, reason, status, text, wait_file};

/// Starts background `sleep 1000`s (one inside a subshell, one that leaves the process group
/// with `setsid`), records every pid, then waits.
const SPAWNER: &str = r#"
      setsid sleep 1000 & echo $! >> "$pids"
      sleep 1000 & echo $! >> "$pids"
      sleep 1000 & echo $! >> "$pids"
      ( sleep 1000 & echo $! >> "$pids"; wait ) &
      echo $! >> "$pids"
      echo $$ >> "$pids"
      while [ "$(wc -l < "$pids")" -lt 6 ]; do sleep 0.01; done
      touch "$pids.ready"
      wait
"#;

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
  kill_grace: 1s
tasks:
  spawner:
    command: |{SPAWNER}
  hang:
    timeout: 1s
    command: |{SPAWNER}
  crashy:
    retries: 1
    command: |
      if [ "$BATON_ATTEMPT" = 1 ]; then kill -9 $PPID; exit 1; fi
      echo "attempt $BATON_ATTEMPT ok"
  crashy0:
    retries: 0
    command: |
      if [ "$BATON_ATTEMPT" = 1 ]; then kill -9 $PPID; exit 1; fi
      echo "attempt $BATON_ATTEMPT ok"
"#
    )
}

fn read_pids(path: &Path) -> Vec<i32> {
    let pids: Vec<i32> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 6, "the script records 6 pids");
    pids
}

/// Every pid must be gone; signals are delivered asynchronously, so allow a bounded moment.
async fn assert_all_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|p| !is_dead(*p)).collect();
        if alive.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let info: Vec<String> = alive
                .iter()
                .map(|p| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
                .collect();
            panic!("processes of the job survived: {info:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_the_whole_process_group() {
    cancel_kills_the_tree(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_the_tree_with_the_process_group_fallback() {
    cancel_kills_the_tree(&["--job-containment", "process-group"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_the_tree_with_the_process_group_fallback() {
    timeout_kills_the_tree(&["--job-containment", "process-group"]).await;
}

async fn cancel_kills_the_tree(serve_args: &[&str]) {
    let s = Server::start_with(&config(), serve_args);
    let pids_file = s.root.path().join("pids");
    let ps = pids_file.to_str().unwrap();
    let id = id_of(&s.trigger("spawner", &[("pids", ps)]).await);
    wait_file(&s.root.path().join("pids.ready")).await;
    let pids = read_pids(&pids_file);
    for p in &pids {
        assert!(!is_dead(*p), "pid {p} should be running before the cancel");
    }
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;

    let out = s.cli(&["cancel", &id.to_string()]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "cancel: {o} {e}");

    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "canceled", "{run:#}");
    assert!(reason(&run).contains("canceled"), "{run:#}");
    assert_all_gone(&pids).await;

    // Canceling an ended run is a clean 409.
    let (st, body) = s
        .post(&format!("/runs/{id}/cancel"), serde_json::json!({}))
        .await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_cancelable");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_jams_and_kills_the_tree() {
    timeout_kills_the_tree(&[]).await;
}

async fn timeout_kills_the_tree(serve_args: &[&str]) {
    let s = Server::start_with(&config(), serve_args);
    let pids_file = s.root.path().join("pids");
    let ps = pids_file.to_str().unwrap();
    let id = id_of(&s.trigger("hang", &[("pids", ps)]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "jammed", "{run:#}");
    assert!(reason(&run).contains("timed out"), "{run:#}");
    let pids = read_pids(&pids_file);
    assert_all_gone(&pids).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_supervisor_is_retried_or_broken() {
    let s = Server::start(&config());

    let id = id_of(&s.trigger("crashy", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let j = &run["jobs"][0];
    assert_eq!(j["attempt"], 2, "{run:#}");
    assert_eq!(s.log_text(id, None).await, "attempt 2 ok\n");

    let id = id_of(&s.trigger("crashy0", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "broken", "{run:#}");
    assert!(reason(&run).starts_with("broken: "), "{run:#}");
    assert!(
        reason(&run).contains("supervisor"),
        "the reason names the lost supervisor: {run:#}"
    );
    assert_eq!(run["jobs"][0]["attempt"], 1);
}

/// A retry puts the job back in the queue with no worker and no start, in the store as in the
/// scheduler: the API (which reads the store) must not show the lost attempt's worker.
#[tokio::test(flavor = "multi_thread")]
async fn a_queued_retry_has_no_worker_in_the_store() {
    let config = format!(
        r#"
server:
  local_workers: 1
tasks:
  crashy:
    retries: 1
    command: |
      if [ "$BATON_ATTEMPT" = 1 ]; then {crash_gate}; kill -9 $PPID; exit 1; fi
      echo "attempt $BATON_ATTEMPT ok"
  hog:
    priority: 100
    command: |
      {hog_gate}
"#,
        crash_gate = common::gate("gcrash"),
        hog_gate = common::gate("ghog"),
    );
    let s = Server::start(&config);
    let gcrash = s.root.path().join("gcrash");
    let ghog = s.root.path().join("ghog");
    let id = id_of(
        &s.trigger("crashy", &[("gcrash", gcrash.to_str().unwrap())])
            .await,
    );
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    assert_eq!(run["jobs"][0]["worker"], "local-1", "{run:#}");
    // The hog waits for the only worker and, with its priority, takes it when the first
    // attempt is lost: the retry then waits in the queue.
    let hog = id_of(&s.trigger("hog", &[("ghog", ghog.to_str().unwrap())]).await);
    std::fs::write(&gcrash, "").unwrap();
    s.wait_until(hog, "running", |r| status(r) == "running")
        .await;
    let run = s.run(id).await;
    let job = &run["jobs"][0];
    assert_eq!(status(job), "queued", "{run:#}");
    assert_eq!(job["attempt"], 2, "{run:#}");
    assert!(
        reason(job).starts_with("queued: retry 1 of 1 after broken"),
        "{run:#}"
    );
    assert!(
        job["worker"].is_null(),
        "a queued retry has no worker: {run:#}"
    );
    assert!(
        job["started_at"].is_null(),
        "a queued retry has not started: {run:#}"
    );

    std::fs::write(&ghog, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    assert_eq!(run["jobs"][0]["worker"], "local-1", "{run:#}");
    assert_eq!(s.log_text(id, None).await, "attempt 2 ok\n");
}
