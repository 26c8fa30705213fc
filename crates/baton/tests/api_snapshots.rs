//! The API's JSON, pinned with `insta` snapshots (in `snapshots/` beside this file): tasks,
//! pipelines, a run, the runs list, the queue, the workers and the error bodies clients rely on.
//! Ids and times are redacted; a change of shape shows as a snapshot diff.

mod common;

use common::{Server, id_of, reason};
use serde_json::{Value, json};

const CONFIG: &str = r#"
server:
  local_workers: 1
  agent_queues: [far]
variables:
  region: eu-west
  api_token: tok-0123456789abcdef
tasks:
  hello:
    description: says hello
    tags: [demo]
    command: echo "hello ${:region}"
    env:
      GREETING: hi
      DEPLOY_PASSWORD: hunter2-hunter2
    timeout: 5m
  nightly:
    schedule: {cron: "0 3 * * *", timezone: Europe/Berlin}
    command: echo nightly
    retries: 2
  boxed:
    image: busybox
    resources: {cpus: 0.5, memory: 64m}
    network: none
    command: echo boxed
  remote:
    queues: [far]
    wait_list: {size: 1, strategy: append}
    command: echo remote
pipelines:
  deploy:
    concurrency: 1
    queue_strategy: replace
    start_delay: 1500ms
    env:
      STAGE: prod
    tasks:
      build:
        script: [echo build]
      ship:
        script:
          - echo "ship {{ .version }}"
        depends_on: [build]
"#;

/// Ids and times change from run to run: replace them (keeping `null`s, which are shape).
fn redact(mut v: Value) -> Value {
    fn walk(key: Option<&str>, v: &mut Value) {
        match v {
            Value::Object(m) => m.iter_mut().for_each(|(k, v)| walk(Some(k), v)),
            Value::Array(a) => {
                let ids = matches!(key, Some("ancestors" | "descendants"));
                for x in a {
                    if ids {
                        *x = json!("[id]");
                    } else {
                        walk(None, x);
                    }
                }
            }
            Value::Null => {}
            Value::String(text) if matches!(key, Some("reason" | "message")) => {
                *text = without_run_ids(text);
            }
            _ => match key {
                Some("id" | "run_id" | "job_id" | "next_cursor") => *v = json!("[id]"),
                Some(k) if k.ends_with("_at") || k == "not_before" || k == "last_heartbeat" => {
                    *v = json!("[time]")
                }
                _ => {}
            },
        }
    }
    walk(None, &mut v);
    v
}

/// `… run 12 …` → `… run [id] …` in messages and reasons.
fn without_run_ids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("run ") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push_str("[id]");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

macro_rules! snap {
    ($name:literal, $v:expr) => {
        insta::assert_json_snapshot!($name, redact($v))
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn api_answers_keep_their_shape() {
    let s = Server::start(CONFIG);

    snap!("tasks", s.get_ok("/tasks").await);
    snap!("pipelines", s.get_ok("/pipelines").await);
    snap!("workers", s.get_ok("/workers").await);

    let id = id_of(&s.trigger("hello", &[("who", "world")]).await);
    let run = s.wait_run(id).await;
    snap!("run", run);
    snap!("runs", s.get_ok("/runs?task=hello").await);

    // `remote` waits on a queue only agents serve: one queued, one on the wait list.
    let first = id_of(&s.trigger("remote", &[]).await);
    s.wait_until(first, "a waiting reason", |r| !reason(r).is_empty())
        .await;
    let second = id_of(&s.trigger("remote", &[]).await);
    s.wait_until(second, "a waiting reason", |r| !reason(r).is_empty())
        .await;
    snap!("queue", s.get_ok("/queue").await);

    // Error bodies: `{"error": {"code", "message"}}` with the status each code goes with.
    let (st, full) = s.post("/tasks/remote/trigger", json!({})).await;
    assert_eq!(st, 409, "{full}");
    snap!("error_409_wait_list_full", full);

    let (st, unknown) = s.post("/tasks/nope/trigger", json!({})).await;
    assert_eq!(st, 404, "{unknown}");
    snap!("error_404_unknown_target", unknown);

    let (st, bad) = s
        .post("/tasks/hello/trigger", json!({"args": {"1bad": "x"}}))
        .await;
    assert_eq!(st, 400, "{bad}");
    snap!("error_400_bad_argument", bad);

    let resp = s.http.get(s.url("/tasks")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    snap!("error_401", body);
}

/// The OpenAPI document is served without credentials and describes the routes and types above.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_is_published() {
    let s = Server::start(CONFIG);
    let resp = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc:#}"
    );
    for path in ["/api/v1/tasks", "/api/v1/runs/{id}", "/api/v1/queue"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    insta::assert_json_snapshot!("openapi", doc);
}
