//! The seeds' scheduling semantics with the real binary: prunner's start_delay wait list and
//! refusals, py4CI's supersede of a queued run and its chaining after several tasks.

mod common;

use common::{Server, gate, id_of, reason, status, text};
use serde_json::{Value, json};

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
tasks:
  noop:
    command: "true"
  lint:
    command: echo lint
  test:
    command: test -z "${{fail:-}}"
  deploy:
    triggered_by:
      - task: lint
      - task: test
    command: echo deploy
pipelines:
  delayed:
    concurrency: 1
    start_delay: 1s
    queue_limit: 1
    queue_strategy: replace
    tasks:
      t:
        script: ["echo ran"]
  full:
    concurrency: 1
    queue_limit: 1
    tasks:
      t:
        script:
          - {gate}
  nolist:
    concurrency: 1
    queue_limit: 0
    tasks:
      t:
        script:
          - {gate}
"#,
        gate = gate("gate"),
    )
}

/// All runs of `task`, newest first.
async fn runs_of(s: &Server, task: &str) -> Vec<Value> {
    s.get_ok(&format!("/runs?task={task}")).await["runs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until every earlier message to the scheduler has been handled (a chained trigger
/// happens in the same step as its parent's end): a run triggered now ends after them.
async fn barrier(s: &Server) {
    let id = id_of(&s.trigger("noop", &[]).await);
    s.wait_run(id).await;
}

/// prunner: runs waiting out their start_delay are on the wait list, so `replace` replaces
/// them: of two back-to-back triggers the first ends `canceled` and only the second runs.
#[tokio::test(flavor = "multi_thread")]
async fn start_delay_runs_are_replaced() {
    let s = Server::start(&config());
    let first = id_of(&s.trigger_pipeline("delayed", &[]).await);
    let second = id_of(&s.trigger_pipeline("delayed", &[]).await);
    let r1 = s.wait_run(first).await;
    assert_eq!(status(&r1), "canceled", "{r1:#}");
    assert_eq!(reason(&r1), format!("canceled: replaced by run {second}"));
    assert!(
        r1["started_at"].is_null(),
        "the replaced run never started: {r1:#}"
    );
    let r2 = s.wait_run(second).await;
    assert_eq!(status(&r2), "success", "{r2:#}");
    assert_eq!(s.log_text(second, Some("t")).await, "ran\n");
}

/// prunner refuses a trigger that finds the wait list full: `409 wait_list_full` with the
/// limit in the message, a `skipped` record for the history, and the CLI exits 6.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_wait_list_refuses_the_trigger() {
    let s = Server::start(&config());
    let g = s.root.path().join("gate");
    let gs = g.to_str().unwrap();

    let running = id_of(&s.trigger_pipeline("full", &[("gate", gs)]).await);
    s.wait_until(running, "running", |r| status(r) == "running")
        .await;
    let waiting = id_of(&s.trigger_pipeline("full", &[("gate", gs)]).await);
    let (st, body) = s
        .post("/pipelines/full/trigger", json!({"args": {"gate": gs}}))
        .await;
    assert_eq!(st, 409, "{body:#}");
    assert_eq!(body["error"]["code"], "wait_list_full", "{body:#}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("the wait list of `full` is full (1 of 1 waiting)"),
        "the message gives the limit: {msg}"
    );
    // The refusal is kept for the history as a skipped run that says so.
    let refused = runs_of(&s, "full").await;
    let refused = refused
        .iter()
        .find(|r| status(r) == "skipped")
        .unwrap_or_else(|| panic!("no skipped record: {refused:#?}"));
    assert!(
        reason(refused).starts_with("refused: the wait list"),
        "{refused:#}"
    );
    assert!(
        msg.contains(&format!("skipped run {}", id_of(refused))),
        "{msg}"
    );

    // The CLI prints the refusal and exits 6, with or without --wait.
    for extra in [&[][..], &["--wait"][..]] {
        let mut args = vec!["trigger", "full", "--arg", "gate=x"];
        args.extend_from_slice(extra);
        let out = s.cli(&args);
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(6), "stdout: {o}\nstderr: {e}");
        assert!(e.contains("1 of 1 waiting"), "stderr: {e}");
    }

    // queue_limit: 0 runs one and refuses any that would have to wait.
    let only = id_of(&s.trigger_pipeline("nolist", &[("gate", gs)]).await);
    s.wait_until(only, "running", |r| status(r) == "running")
        .await;
    let (st, body) = s
        .post("/pipelines/nolist/trigger", json!({"args": {"gate": gs}}))
        .await;
    assert_eq!(st, 409, "{body:#}");
    assert_eq!(body["error"]["code"], "wait_list_full");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`nolist` keeps no wait list (limit 0)"),
        "{body:#}"
    );

    std::fs::write(&g, "").unwrap();
    for id in [running, waiting, only] {
        let r = s.wait_run(id).await;
        assert_eq!(status(&r), "success", "{r:#}");
    }
}

/// py4CI: a new trigger of a task whose previous run is still queued supersedes it; while a
/// run runs, a trigger is skipped (Baton's one-run-per-task default).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_trigger_supersedes_a_queued_run() {
    let s = Server::start(&format!(
        r#"
server:
  local_workers: 1
tasks:
  hold:
    command: |
      {gate}
  job:
    command: echo "job $BATON_RUN_ID"
"#,
        gate = gate("gate")
    ));
    let g = s.root.path().join("gate");
    let gs = g.to_str().unwrap();
    // The only worker is busy: runs of `job` stay queued.
    let hold = id_of(&s.trigger("hold", &[("gate", gs)]).await);
    s.wait_until(hold, "running", |r| status(r) == "running")
        .await;
    let first = id_of(&s.trigger("job", &[]).await);
    let second = s.trigger("job", &[]).await;
    assert_eq!(status(&second), "queued", "{second:#}");
    let second = id_of(&second);
    let r1 = s.run(first).await;
    assert_eq!(status(&r1), "skipped", "{r1:#}");
    assert_eq!(reason(&r1), format!("skipped: superseded by run {second}"));
    assert_eq!(status(&r1["jobs"][0]), "skipped", "{r1:#}");

    std::fs::write(&g, "").unwrap();
    let r2 = s.wait_run(second).await;
    assert_eq!(status(&r2), "success", "{r2:#}");
    assert_eq!(s.log_text(second, None).await, format!("job {second}\n"));
    let r1 = s.run(first).await;
    assert!(
        r1["started_at"].is_null(),
        "the superseded run never ran: {r1:#}"
    );
}

/// py4CI: a task after several tasks runs when one of them succeeds and every listed task's
/// latest run is a success; after a restart the server still knows how each last ended.
#[tokio::test(flavor = "multi_thread")]
async fn chaining_waits_for_every_listed_task_across_restarts() {
    let mut s = Server::start(&config());
    let deploys = |runs: Vec<Value>| runs.len();

    // test never ran: lint alone does not deploy.
    let lint1 = id_of(&s.trigger("lint", &[]).await);
    assert_eq!(status(&s.wait_run(lint1).await), "success");
    barrier(&s).await;
    assert_eq!(deploys(runs_of(&s, "deploy").await), 0);

    // test fails: still no deploy, not even on lint's next success.
    let t1 = id_of(&s.trigger("test", &[("fail", "1")]).await);
    assert_eq!(status(&s.wait_run(t1).await), "failed");
    let lint2 = id_of(&s.trigger("lint", &[]).await);
    assert_eq!(status(&s.wait_run(lint2).await), "success");
    barrier(&s).await;
    assert_eq!(deploys(runs_of(&s, "deploy").await), 0);

    // test succeeds: deploy runs, linked to the latest run of each.
    let t2 = id_of(&s.trigger("test", &[]).await);
    assert_eq!(status(&s.wait_run(t2).await), "success");
    barrier(&s).await;
    let d = runs_of(&s, "deploy").await;
    assert_eq!(d.len(), 1, "{d:#?}");
    let d1 = s.wait_run(id_of(&d[0])).await;
    assert_eq!(status(&d1), "success", "{d1:#}");
    assert_eq!(d1["trigger"], "chained");
    assert_eq!(d1["ancestors"], json!([lint2, t2]), "{d1:#}");

    // After a restart, lint's success deploys: test's last success comes from the store.
    s.restart();
    let lint3 = id_of(&s.trigger("lint", &[]).await);
    assert_eq!(status(&s.wait_run(lint3).await), "success");
    barrier(&s).await;
    let d = runs_of(&s, "deploy").await;
    assert_eq!(d.len(), 2, "{d:#?}");
    let d2 = s.run(id_of(&d[0])).await;
    assert_eq!(d2["ancestors"], json!([t2, lint3]), "{d2:#}");

    // test fails, restart: lint's success no longer deploys.
    let t3 = id_of(&s.trigger("test", &[("fail", "1")]).await);
    assert_eq!(status(&s.wait_run(t3).await), "failed");
    s.restart();
    let lint4 = id_of(&s.trigger("lint", &[]).await);
    assert_eq!(status(&s.wait_run(lint4).await), "success");
    barrier(&s).await;
    assert_eq!(deploys(runs_of(&s, "deploy").await), 2);
}
