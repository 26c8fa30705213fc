//! Runs of tasks: CLI trigger and exit codes, chaining, skip and wait lists (a full one refuses),
//! reruns, listing.

mod common;

use common::{Server, gate, id_of, reason, status, text};
use serde_json::Value;

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
tasks:
  greet:
    tags: [demo]
    command: |
      echo "hello ${{who}}"
  fail:
    command: exit 3
  a:
    command: echo "a ran"
  b:
    triggered_by:
      - task: a
    command: echo "b got ${{who:-none}}"
  single:
    command: |
      {single_gate}
      echo single done
  wl:
    wait_list: {{size: 1, strategy: append}}
    command: |
      {wl_gate}
      echo "wl $BATON_RUN_ID"
"#,
        single_gate = gate("gate"),
        wl_gate = gate("gate"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_trigger_wait_exit_codes_and_show() {
    let s = Server::start(&config());

    let out = s.cli(&["trigger", "greet", "--arg", "who=world", "--wait"]);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {o}\nstderr: {e}");

    let out = s.cli(&["runs", "--json", "--task", "greet"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{e}");
    let list: Value =
        serde_json::from_str(&o).unwrap_or_else(|err| panic!("runs --json: {err}: {o}"));
    let runs = list["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{list:#}");
    let id = id_of(&runs[0]);
    assert_eq!(status(&runs[0]), "success");
    assert_eq!(runs[0]["trigger"], "cli");
    assert_eq!(runs[0]["args"]["who"], "world");

    let out = s.cli(&["logs", &id.to_string()]);
    assert_eq!(text(&out).0, "hello world\n");

    let out = s.cli(&["show", &id.to_string()]);
    let (o, _) = text(&out);
    assert!(out.status.success());
    assert!(
        o.contains(&format!("run {id}: task greet")) && o.contains("success"),
        "show: {o}"
    );
    assert!(
        o.contains("\"who\":\"world\""),
        "show must list the args: {o}"
    );
    let out = s.cli(&["show", &id.to_string(), "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(id_of(&shown), id);
    assert_eq!(shown["jobs"][0]["exit_code"], 0);

    let out = s.cli(&["trigger", "fail", "--wait"]);
    let (o, e) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "failed run must exit 1; stdout: {o}\nstderr: {e}"
    );
    assert!(
        e.contains("exit code 3"),
        "stderr must give the reason: {e}"
    );
    let runs = s.get_ok("/runs?task=fail").await;
    let run = &runs["runs"][0];
    assert_eq!(status(run), "failed");
    assert!(reason(run).contains("exit code 3"), "{run:#}");
    assert_eq!(run["jobs"][0]["exit_code"], 3);

    // Without --wait the CLI prints the run id.
    let out = s.cli(&["trigger", "greet", "--arg", "who=x"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{e}");
    let id: i64 = o
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("expected a run id, got {o:?}"));
    assert_eq!(status(&s.wait_run(id).await), "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn chaining_links_ancestors_and_descendants() {
    let s = Server::start(&config());
    let a = s.trigger("a", &[("who", "chain")]).await;
    let a_id = id_of(&a);
    assert_eq!(status(&s.wait_run(a_id).await), "success");

    // b is triggered when a succeeds; find it (bounded).
    let deadline = std::time::Instant::now() + common::WAIT;
    let b = loop {
        let list = s.get_ok("/runs?task=b").await;
        if let Some(r) = list["runs"].as_array().and_then(|r| r.first()) {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b was never triggered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let b_id = id_of(&b);
    assert_eq!(b["trigger"], "chained");
    let listed_ancestors = b["ancestors"].clone();
    let b = s.run(b_id).await;
    assert_eq!(b["ancestors"], serde_json::json!([a_id]), "{b:#}");
    let b_end = s.wait_run(b_id).await;
    assert_eq!(status(&b_end), "success", "{b_end:#}");
    assert_eq!(s.log_text(b_id, None).await, "b got chain\n");
    let a = s.run(a_id).await;
    let desc: Vec<i64> = a["descendants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(
        desc.contains(&b_id),
        "a's descendants {desc:?} must contain b ({b_id})"
    );

    // A rerun links to its original.
    let out = s.cli(&["rerun", &a_id.to_string()]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{e}");
    let r_id: i64 = o
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("rerun printed {o:?}"));
    assert_ne!(r_id, a_id);
    let r = s.wait_run(r_id).await;
    assert_eq!(status(&r), "success");
    assert_eq!(r["trigger"], "rerun");
    assert_eq!(r["ancestors"], serde_json::json!([a_id]));
    assert_eq!(r["args"]["who"], "chain", "a rerun keeps the arguments");
    let a = s.run(a_id).await;
    let desc: Vec<i64> = a["descendants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(
        desc.contains(&r_id),
        "a's descendants {desc:?} must contain the rerun {r_id}"
    );

    // GET /runs must not contradict GET /runs/{id}: a listed run either leaves the links out
    // or shows them as they are.
    assert!(
        listed_ancestors.is_null() || listed_ancestors == serde_json::json!([a_id]),
        "GET /runs lists chained run {b_id} with ancestors {listed_ancestors} but GET /runs/{b_id} says [{a_id}]"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_when_running_and_wait_list_append() {
    let s = Server::start(&config());
    let g = s.root.path().join("gate");
    let gs = g.to_str().unwrap();

    // single: no wait list, so a second trigger while one runs is skipped.
    let first = id_of(&s.trigger("single", &[("gate", gs)]).await);
    s.wait_until(first, "running", |r| status(r) == "running")
        .await;
    let second = s.trigger("single", &[("gate", gs)]).await;
    assert_eq!(status(&second), "skipped", "{second:#}");
    assert_eq!(
        reason(&second),
        format!("skipped: a run of `single` is already running (run {first})")
    );

    // wl: wait list of 1 (append): one runs, one waits, the third is skipped.
    let w1 = id_of(&s.trigger("wl", &[("gate", gs)]).await);
    s.wait_until(w1, "running", |r| status(r) == "running")
        .await;
    let w2 = id_of(&s.trigger("wl", &[("gate", gs)]).await);
    let w2_run = s
        .wait_until(w2, "a waiting reason", |r| !reason(r).is_empty())
        .await;
    assert_eq!(status(&w2_run), "queued");
    assert!(
        reason(&w2_run).contains(&format!("waiting for run {w1}")),
        "queued reason: {w2_run:#}"
    );
    // The third finds the wait list full: refused.
    let (st, w3) = s
        .post(
            "/tasks/wl/trigger",
            serde_json::json!({"args": {"gate": gs}}),
        )
        .await;
    assert_eq!(st, 409, "{w3:#}");
    assert_eq!(w3["error"]["code"], "wait_list_full", "{w3:#}");
    assert!(
        w3["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the wait list of `wl` is full (1 of 1 waiting)"),
        "{w3:#}"
    );

    std::fs::write(&g, "").unwrap();
    let r1 = s.wait_run(first).await;
    assert_eq!(status(&r1), "success", "{r1:#}");
    let w1_end = s.wait_run(w1).await;
    let w2_end = s.wait_run(w2).await;
    assert_eq!(status(&w1_end), "success", "{w1_end:#}");
    assert_eq!(status(&w2_end), "success", "{w2_end:#}");
    assert!(
        w2_end["started_at"].as_str().unwrap() >= w1_end["ended_at"].as_str().unwrap(),
        "the waiting run starts after the first ended: {w1_end:#} {w2_end:#}"
    );
    assert_eq!(s.log_text(w2, None).await, format!("wl {w2}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_cursor_pagination() {
    let s = Server::start(&config());
    let mut greet_ids = Vec::new();
    for i in 0..5 {
        let id = id_of(&s.trigger("greet", &[("who", &format!("n{i}"))]).await);
        greet_ids.push(id);
        s.wait_run(id).await;
    }
    let fail_id = id_of(&s.trigger("fail", &[]).await);
    s.wait_run(fail_id).await;
    let out = s.cli(&["trigger", "greet", "--arg", "who=cli", "--wait"]);
    assert!(out.status.success());

    // All greet runs, newest first, 2 per page, following the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    for _ in 0..10 {
        let path = match cursor {
            Some(c) => format!("/runs?task=greet&limit=2&cursor={c}"),
            None => "/runs?task=greet&limit=2".to_string(),
        };
        let page = s.get_ok(&path).await;
        let runs = page["runs"].as_array().unwrap();
        assert!(runs.len() <= 2, "{page:#}");
        for r in runs {
            assert_eq!(r["target"], "greet");
            seen.push(id_of(r));
        }
        match page["next_cursor"].as_i64() {
            Some(c) => {
                assert_eq!(
                    Some(c),
                    runs.last().map(id_of),
                    "next_cursor is the page's last id"
                );
                cursor = Some(c);
            }
            None => {
                cursor = None;
                break;
            }
        }
    }
    assert!(cursor.is_none(), "pagination did not end");
    assert_eq!(seen.len(), 6, "every greet run exactly once: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no duplicates");
    for id in &greet_ids {
        assert!(seen.contains(id));
    }

    let failed = s.get_ok("/runs?status=failed").await;
    let ids: Vec<i64> = failed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, vec![fail_id]);

    let by_tag = s.get_ok("/runs?tag=demo").await;
    assert_eq!(by_tag["runs"].as_array().unwrap().len(), 6, "{by_tag:#}");

    let by_cli = s.get_ok("/runs?trigger=cli").await;
    let runs = by_cli["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{by_cli:#}");
    assert_eq!(runs[0]["args"]["who"], "cli");

    let out = s.cli(&["runs", "--json", "--status", "success", "--limit", "3"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| status(r) == "success"));
    let out = s.cli(&["runs", "--task", "fail"]);
    let (o, _) = text(&out);
    assert!(
        o.contains("exit code 3") && o.contains("failed"),
        "table: {o}"
    );
}

/// A run held for the concurrency slot names the run that holds it, also when that run took
/// the slot in the same pass and has not started (all workers busy): not "run 0".
#[tokio::test(flavor = "multi_thread")]
async fn a_held_run_names_the_run_holding_the_slot() {
    let config = format!(
        r#"
server:
  local_workers: 1
tasks:
  hold:
    command: |
      {gate}
  limited:
    wait_list: {{size: 2, strategy: append}}
    command: |
      {gate}
"#,
        gate = gate("gate"),
    );
    let s = Server::start(&config);
    let g = s.root.path().join("gate");
    let gs = g.to_str().unwrap();
    let hold = id_of(&s.trigger("hold", &[("gate", gs)]).await);
    s.wait_until(hold, "running", |r| status(r) == "running")
        .await;
    let first = id_of(&s.trigger("limited", &[("gate", gs)]).await);
    let second = id_of(&s.trigger("limited", &[("gate", gs)]).await);
    let run = s
        .wait_until(second, "a waiting reason", |r| !reason(r).is_empty())
        .await;
    assert_eq!(status(&run), "queued", "{run:#}");
    assert_eq!(
        reason(&run),
        format!("queued: waiting for run {first} of `limited` to finish (concurrency 1)"),
        "{run:#}"
    );
    let first_run = s.run(first).await;
    assert_eq!(status(&first_run), "queued", "{first_run:#}");
    assert!(
        reason(&first_run).contains("busy"),
        "the first waits for a worker: {first_run:#}"
    );
    std::fs::write(&g, "").unwrap();
    for id in [hold, first, second] {
        let r = s.wait_run(id).await;
        assert_eq!(status(&r), "success", "{r:#}");
    }
}
