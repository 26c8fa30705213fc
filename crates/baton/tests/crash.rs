//! SIGKILL the server mid-run: after a restart every run completes exactly once, logs intact.

mod common;

use std::collections::BTreeMap;

use common::{Server, gate, id_of, status, wait_file};

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
tasks:
  work:
    concurrency: 4
    command: |
      echo "$BATON_RUN_ID" >> "$counter"
      for i in $(seq 1 500); do echo "line $i of run $BATON_RUN_ID"; done
      {gate}
      for i in $(seq 501 1000); do echo "line $i of run $BATON_RUN_ID"; done
"#,
        gate = gate("gate"),
    )
}

fn expected_log(run: i64) -> String {
    (1..=1000)
        .map(|i| format!("line {i} of run {run}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_survive_a_server_kill() {
    let mut s = Server::start(&config());
    let root = s.root.path().to_path_buf();
    let counter = root.join("counter");
    let cs = counter.to_str().unwrap().to_string();
    let gates: Vec<_> = (0..4).map(|i| root.join(format!("gate{i}"))).collect();
    // The queued runs find their gate open.
    std::fs::write(&gates[2], "").unwrap();
    std::fs::write(&gates[3], "").unwrap();

    let mut ids = Vec::new();
    for g in &gates {
        let run = s
            .trigger("work", &[("counter", &cs), ("gate", g.to_str().unwrap())])
            .await;
        ids.push(id_of(&run));
    }
    // Two run (both wrote their counter line), two wait for a worker.
    let r0 = s
        .wait_until(ids[0], "running", |r| status(r) == "running")
        .await;
    s.wait_until(ids[1], "running", |r| status(r) == "running")
        .await;
    let deadline = std::time::Instant::now() + common::WAIT;
    while std::fs::read_to_string(&counter)
        .unwrap_or_default()
        .lines()
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first two runs never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for id in &ids[2..] {
        let r = s.run(*id).await;
        assert_eq!(status(&r), "queued", "{r:#}");
    }

    s.kill9();

    // Run 0 finishes while the server is down; run 1 is still running at the restart.
    std::fs::write(&gates[0], "").unwrap();
    let job0 = r0["jobs"][0]["id"].as_i64().unwrap();
    wait_file(&s.job_dir(job0, 1).join("exit.json")).await;

    s.restart();
    std::fs::write(&gates[1], "").unwrap();

    for id in &ids {
        let run = s.wait_run(*id).await;
        assert_eq!(status(&run), "success", "{run:#}");
        assert_eq!(
            run["jobs"][0]["attempt"], 1,
            "no job was relaunched: {run:#}"
        );
        let log = s.log_text(*id, None).await;
        assert!(
            log == expected_log(*id),
            "log of run {id} is incomplete or mixed: {} bytes, starts {:?}",
            log.len(),
            &log[..log.len().min(200)]
        );
    }

    let lines = std::fs::read_to_string(&counter).unwrap();
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for l in lines.lines() {
        *counts.entry(l.trim().parse().unwrap()).or_default() += 1;
    }
    let want: BTreeMap<i64, usize> = ids.iter().map(|i| (*i, 1)).collect();
    assert_eq!(
        counts, want,
        "each run executed exactly once; counter:\n{lines}"
    );

    // Same ids, nothing new: the store still has exactly these four runs.
    let list = s.get_ok("/runs?task=work").await;
    let mut listed: Vec<i64> = list["runs"].as_array().unwrap().iter().map(id_of).collect();
    listed.sort_unstable();
    assert_eq!(listed, ids);
}

/// The `on_error` job is told which job failed and how; that is kept with the job, so a
/// server that restarts before the `on_error` job runs still tells it.
#[tokio::test(flavor = "multi_thread")]
async fn on_error_arguments_survive_a_restart() {
    let config = format!(
        r#"
server:
  local_workers: 2
tasks:
  blocker:
    priority: 100
    command: |
      {blocker_gate}
pipelines:
  guarded:
    continue_running_tasks_after_failure: true
    on_error:
      script:
        - echo "failed=$failedTaskName code=$failedTaskExitCode"
    tasks:
      bad:
        script:
          - {bad_gate}
          - exit 4
      hold:
        script:
          - {hold_gate}
"#,
        blocker_gate = gate("gblk"),
        bad_gate = gate("gbad"),
        hold_gate = gate("ghold"),
    );
    let mut s = Server::start(&config);
    let root = s.root.path().to_path_buf();
    let [gbad, ghold, gblk] = ["gbad", "ghold", "gblk"].map(|n| root.join(n));
    let arg = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (gb, gh, gk) = (arg(&gbad), arg(&ghold), arg(&gblk));
    let id = id_of(
        &s.trigger_pipeline("guarded", &[("gbad", &gb), ("ghold", &gh)])
            .await,
    );
    s.wait_until(id, "both jobs running", |r| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| status(j) == "running")
    })
    .await;
    // Both workers are busy: the blocker waits, and with its priority it goes before the
    // on_error job that `bad`'s failure adds.
    let blocker = id_of(&s.trigger("blocker", &[("gblk", &gk)]).await);
    std::fs::write(&gbad, "").unwrap();
    s.wait_until(blocker, "running", |r| status(r) == "running")
        .await;
    let run = s
        .wait_until(id, "on_error queued", |r| {
            r["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["name"] == "on_error" && status(j) == "queued")
        })
        .await;
    assert_eq!(status(common::job(&run, "bad")), "failed", "{run:#}");

    s.restart();
    std::fs::write(&gblk, "").unwrap();
    std::fs::write(&ghold, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "failed", "{run:#}");
    assert_eq!(status(common::job(&run, "on_error")), "success", "{run:#}");
    let log = s.log_text(id, Some("on_error")).await;
    assert_eq!(
        log, "failed=bad code=4\n",
        "the on_error job after a restart"
    );
    let blocker = s.wait_run(blocker).await;
    assert_eq!(status(&blocker), "success", "{blocker:#}");
}
