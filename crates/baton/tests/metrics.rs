//! `GET /metrics` against the real server: only administrators get it, and its figures follow
//! what the server holds (runs by status, a job waiting for the only worker, a busy worker,
//! webhook deliveries by answer, and the histograms of ended runs), and the job log bytes it
//! took in (a local job, a Docker job and an agent's job each writing a known number of bytes).

mod common;
#[path = "common/users.rs"]
mod users;

use common::Server;
use users::{add_user, user_token};

const CONFIG: &str = r#"
administrators: [root]
server:
  local_workers: 1
tasks:
  ok:
    command: "true"
  bad:
    command: exit 3
  hold:
    command: |
      GATE="$BATON_OUTPUT_DIR/../../../../go"
      for i in $(seq 1200); do [ -e "$GATE" ] && break; sleep 0.05; done
"#;

async fn scrape(s: &Server, token: &str) -> (u16, String) {
    let resp = s
        .http
        .get(format!("{}/metrics", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value of the sample line that starts with `series ` (name and labels as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.split(' ').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn metrics_count_runs_queues_workers_and_deliveries_for_administrators_only() {
    let s = Server::start(CONFIG);
    add_user(&s, "root", "pw-root-long-enough");
    add_user(&s, "alice", "pw-alice-long-enough");
    let (st, body) = scrape(&s, "not-a-token").await;
    assert_eq!(st, 401, "{body}");
    let (st, body) = scrape(&s, &user_token(&s, "alice")).await;
    assert_eq!(st, 403, "a user who is not an administrator: {body}");
    let root = user_token(&s, "root");

    for task in ["ok", "bad"] {
        let id = common::id_of(&s.trigger(task, &[]).await);
        s.wait_run(id).await;
    }
    // One run holds the only worker; the next waits for it.
    let hold = common::id_of(&s.trigger("hold", &[]).await);
    s.wait_until(hold, "running", |r| r["status"] == "running")
        .await;
    let waiting = common::id_of(&s.trigger("ok", &[]).await);
    // A webhook for a forge nobody configured is recorded with its answer.
    let hook = s
        .http
        .post(format!("{}/hooks/github", s.base))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "d-1")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();

    let (st, text) = scrape(&s, &root).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(
        value(&text, r#"baton_runs{status="success"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"baton_runs{status="failed"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"baton_runs{status="running"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"baton_runs{status="queued"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"baton_queue_depth{queue="default"}"#),
        Some(1.0),
        "{text}"
    );
    let oldest = value(&text, r#"baton_queue_oldest_wait_seconds{queue="default"}"#).unwrap();
    assert!(oldest >= 0.0, "{text}");
    assert_eq!(
        value(&text, r#"baton_workers{kind="local",state="busy"}"#),
        Some(1.0),
        "{text}"
    );
    let code = format!(r#"baton_webhook_deliveries{{code="{hook}"}}"#);
    assert_eq!(value(&text, &code), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "baton_run_duration_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "baton_dispatch_latency_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // Release the worker: both runs end, the queue empties, the histograms count them.
    let job = s.run(hold).await["jobs"][0]["id"].as_i64().unwrap();
    std::fs::write(s.job_dir(job, 1).join("../../../go"), b"").unwrap();
    s.wait_run(hold).await;
    s.wait_run(waiting).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&s, &root).await.1;
        if value(&text, "baton_run_duration_seconds_count") == Some(4.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        value(&text, "baton_run_duration_seconds_count"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"baton_runs{status="success"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"baton_queue_depth{queue="default"}"#),
        None,
        "{text}"
    );
}

const LOG_BYTES: &str = "baton_log_bytes_total";

/// A job of each kind writes a known number of log bytes; the counter grows by exactly that
/// (the agent's log arrives in chunks, the Docker job's through the engine, the local job's
/// size comes with its exit record).
#[tokio::test(flavor = "multi_thread")]
async fn log_bytes_count_what_local_docker_and_agent_jobs_wrote() {
    let image = common::busybox::image();
    let s = Server::start(&format!(
        r#"
server:
  local_workers: 1
  agent_queues: [arm]
tasks:
  local-bytes:
    command: head -c 12345 /dev/zero
  docker-bytes:
    image: {image}
    command: head -c 7007 /dev/zero
  agent-bytes:
    queues: [arm]
    command: |
      head -c 300000 /dev/zero
      echo done
"#
    ));
    let counter =
        |text: &str| value(text, LOG_BYTES).unwrap_or_else(|| panic!("no {LOG_BYTES} in:\n{text}"));
    let (st, text) = scrape(&s, &s.token).await;
    assert_eq!(st, 200, "{text}");
    let before = counter(&text);
    assert!(
        text.contains("# TYPE baton_log_bytes counter"),
        "a counter: {text}"
    );

    let mut expected = before;
    for (task, bytes) in [("local-bytes", 12345.0), ("docker-bytes", 7007.0)] {
        let id = common::id_of(&s.trigger(task, &[]).await);
        let run = s.wait_run(id).await;
        assert_eq!(common::status(&run), "success", "{run:#}\n{}", s.stderr());
        expected += bytes;
        let text = scrape(&s, &s.token).await.1;
        assert_eq!(counter(&text), expected, "after {task}");
    }

    // An agent's job: its log arrives in chunks (300,000 bytes and a line).
    let out = std::process::Command::new(common::BIN)
        .args(["token", "create", "--name", "agent-join"])
        .args(s.data_args())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let join = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let work = s.data.join("agent-arm1");
    let mut agent = std::process::Command::new(common::BIN)
        .args(["agent", "--server", &s.base, "--token", &join])
        .args(["--queues", "arm", "--name", "arm1", "--work-dir"])
        .arg(&work)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = common::id_of(&s.trigger("agent-bytes", &[]).await);
    let run = s.wait_run(id).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(common::status(&run), "success", "{run:#}\n{}", s.stderr());
    assert_eq!(s.log(id, None).await.len(), 300_005);
    expected += 300_005.0;
    let text = scrape(&s, &s.token).await.1;
    assert_eq!(counter(&text), expected, "after the agent's job");
}
