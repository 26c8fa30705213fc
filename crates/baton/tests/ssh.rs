//! Agentless SSH workers against real sshd hosts in network namespaces (see
//! `common/sshhosts.rs`). Every test states the statuses it expects and checks that no log
//! line or artifact is lost and that nothing runs twice (each run appends its id to a shared
//! `counter` file once per execution).

mod common;

use std::time::{Duration, Instant};

use common::sshhosts::TestNet;
use common::{Server, WAIT, id_of, is_dead, job, reason, status};
use serde_json::Value;

/// A task that logs `lines` numbered lines, then waits for the file `$gate` (bounded), then
/// logs `lines` more, writes an artifact and records its run in `$counter`.
fn tasks(lines: u32) -> String {
    format!(
        r#"
tasks:
  work:
    concurrency: 3
    retries: @RETRIES@
    command: |
      echo "$BATON_RUN_ID" >> "$counter"
      echo $$ >> "$pids"
      for i in $(seq 1 {lines}); do echo "line $i of run $BATON_RUN_ID"; done
      : > "$gate.started.$BATON_RUN_ID"
      for i in $(seq 1200); do [ -e "$gate" ] && break; sleep 0.05; done
      [ -e "$gate" ] || exit 9
      for i in $(seq {next} {last}); do echo "line $i of run $BATON_RUN_ID"; done
      echo "artifact of run $BATON_RUN_ID" > "$BATON_OUTPUT_DIR/result.txt"
      mkdir -p "$BATON_OUTPUT_DIR/sub" && echo deep > "$BATON_OUTPUT_DIR/sub/file"
  hang:
    timeout: 2s
    command: |
      echo $$ >> "$pids"
      sleep 300 &
      echo $! >> "$pids"
      echo hanging
      wait
"#,
        next = lines + 1,
        last = 2 * lines,
    )
}

fn expected_log(run: i64, lines: u32) -> String {
    (1..=2 * lines)
        .map(|i| format!("line {i} of run {run}\n"))
        .collect()
}

/// Fields drop in order: the server goes first, then the hosts.
struct Setup {
    s: Server,
    net: TestNet,
}

fn setup(hosts: usize, heartbeat: &str, retries: u32, lines: u32) -> Setup {
    let net = TestNet::new(hosts);
    let yaml = format!(
        "{}{}",
        net.config(heartbeat),
        tasks(lines).replace("@RETRIES@", &retries.to_string())
    );
    let s = Server::start_on(&yaml, &net.gateway);
    Setup { s, net }
}

impl Setup {
    fn args(&self, gate: &str) -> Vec<(String, String)> {
        let p = |n: &str| self.net.path(n).to_string_lossy().into_owned();
        vec![
            ("counter".into(), p("counter")),
            ("pids".into(), p("pids")),
            ("gate".into(), p(gate)),
        ]
    }

    async fn trigger(&self, task: &str, gate: &str) -> i64 {
        let args = self.args(gate);
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        id_of(&self.s.trigger(task, &args).await)
    }

    /// Waits until every worker is up (health checked).
    async fn workers_up(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let w = self.s.get_ok("/workers").await;
            let all = w["workers"].as_array().unwrap();
            if all.iter().all(|w| w["state"] != "down") {
                return;
            }
            assert!(Instant::now() < deadline, "workers never came up: {w:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until run `id` has passed the first half (its gate marker exists).
    async fn wait_started(&self, id: i64, gate: &str) {
        let marker = self.net.path(&format!("{gate}.started.{id}"));
        common::wait_file(&marker).await;
        self.s
            .wait_until(id, "running", |r| status(r) == "running")
            .await;
    }

    fn open_gate(&self, gate: &str) {
        std::fs::write(self.net.path(gate), "").unwrap();
    }

    fn counter(&self) -> Vec<i64> {
        std::fs::read_to_string(self.net.path("counter"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.net.path("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    async fn assert_pids_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let alive: Vec<i32> = self.pids().into_iter().filter(|p| !is_dead(*p)).collect();
            if alive.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job processes still alive on the worker: {alive:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until `n` jobs have ended on the workers: their runners wrote the exit
    /// code into their folders, whatever the server knows (it may be cut off, or dead).
    async fn wait_ended_on_workers(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ended = self
                .net
                .hosts
                .iter()
                .flat_map(|h| h.job_folders())
                .filter(|d| d.join("exit").exists())
                .count();
            if ended >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ended} of {n} jobs ended on the workers within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn assert_folders_cleaned(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left: Vec<_> = self
                .net
                .hosts
                .iter()
                .flat_map(|h| h.job_folders())
                .collect();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job folders left on the workers: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn artifact(&self, run: &Value) -> String {
        let j = job(run, "work");
        let dir = self
            .s
            .job_dir(j["id"].as_i64().unwrap(), j["attempt"].as_u64().unwrap());
        let deep = std::fs::read_to_string(dir.join("out/sub/file")).unwrap_or_default();
        assert_eq!(deep, "deep\n", "nested artifact came back");
        std::fs::read_to_string(dir.join("out/result.txt")).unwrap_or_default()
    }
}

fn worker_of(run: &Value) -> String {
    job(run, "work")["worker"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_run_in_parallel() {
    let t = setup(3, "10s", 0, 300);
    t.workers_up().await;
    let bytes_before = log_bytes(&t.s).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.trigger("work", "gate").await);
    }
    // All three reach the gate at once: they run in parallel, one per worker.
    for id in &ids {
        t.wait_started(*id, "gate").await;
    }
    let mut workers = Vec::new();
    for id in &ids {
        let run = t.s.run(*id).await;
        assert_eq!(status(&run), "running", "{run:#}");
        workers.push(worker_of(&run));
    }
    workers.sort();
    assert_eq!(workers, ["w1", "w2", "w3"]);
    // The first halves stream back while the jobs still run.
    for id in &ids {
        let half: String = (1..=300)
            .map(|i| format!("line {i} of run {id}\n"))
            .collect();
        let deadline = Instant::now() + WAIT;
        while t.s.log_text(*id, None).await != half {
            assert!(
                Instant::now() < deadline,
                "run {id}: the log did not stream while running"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    t.open_gate("gate");
    for id in &ids {
        let run = t.s.wait_run(*id).await;
        assert_eq!(status(&run), "success", "{run:#}\n{}", t.s.stderr());
        assert_eq!(job(&run, "work")["attempt"], 1);
        assert_eq!(t.s.log_text(*id, None).await, expected_log(*id, 300));
        assert_eq!(t.artifact(&run), format!("artifact of run {id}\n"));
    }
    let mut counter = t.counter();
    counter.sort();
    assert_eq!(counter, ids, "each run ran exactly once");
    // `/metrics` counts every byte the workers' logs brought back, once.
    let written: usize = ids.iter().map(|id| expected_log(*id, 300).len()).sum();
    assert_eq!(log_bytes(&t.s).await - bytes_before, written as f64);
    t.assert_folders_cleaned().await;
    t.assert_pids_gone().await;
}

/// `baton_log_bytes_total` from `/metrics`.
async fn log_bytes(s: &Server) -> f64 {
    let text = s.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("baton_log_bytes_total "))
        .unwrap_or_else(|| panic!("no baton_log_bytes_total in:\n{text}"))
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_worker_is_broken_then_retried_elsewhere() {
    let mut t = setup(2, "3s", 1, 50);
    t.workers_up().await;
    let id = t.trigger("work", "gate").await;
    t.wait_started(id, "gate").await;
    let first = worker_of(&t.s.run(id).await);
    t.net.host_mut(&first).kill();
    // The retry on the other worker finds the gate open.
    t.open_gate("gate");
    let run = t.s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}\n{}", t.s.stderr());
    assert_eq!(job(&run, "work")["attempt"], 2, "{run:#}");
    assert_ne!(worker_of(&run), first, "retried on the other worker");
    assert_eq!(t.s.log_text(id, None).await, expected_log(id, 50));
    // Attempt 1 ran once (and died with its worker), attempt 2 once.
    assert_eq!(t.counter(), [id, id]);
    let w = t.s.get_ok("/workers").await;
    let dead = w["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == first)
        .unwrap()
        .clone();
    assert_eq!(dead["state"], "down", "{w:#}");
    assert!(
        dead["reason"].as_str().unwrap_or("").contains("ssh"),
        "{w:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_cut_shorter_than_the_heartbeat_timeout_is_survived() {
    let t = setup(1, "8s", 0, 200);
    t.workers_up().await;
    let id = t.trigger("work", "gate").await;
    t.wait_started(id, "gate").await;
    let h = t.net.host("w1");
    h.cut();
    // The cut lasts a while (time passing is the point here), shorter than the heartbeat.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The job goes on without the network, to its end.
    t.open_gate("gate");
    t.wait_ended_on_workers(1).await;
    h.restore();
    let run = t.s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}\n{}", t.s.stderr());
    assert_eq!(t.s.log_text(id, None).await, expected_log(id, 200));
    assert_eq!(t.artifact(&run), format!("artifact of run {id}\n"));
    assert_eq!(t.counter(), [id]);
    t.assert_folders_cleaned().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn network_cut_longer_than_the_heartbeat_timeout_breaks_the_run() {
    let t = setup(1, "3s", 0, 50);
    t.workers_up().await;
    let id = t.trigger("work", "gate").await;
    t.wait_started(id, "gate").await;
    let h = t.net.host("w1");
    h.cut();
    let run = t.s.wait_run(id).await;
    assert_eq!(status(&run), "broken", "{run:#}");
    assert!(
        reason(&run).contains("unreachable"),
        "the reason says the worker was unreachable: {run:#}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let w = t.s.get_ok("/workers").await;
        if w["workers"][0]["state"] == "down" {
            break;
        }
        assert!(Instant::now() < deadline, "w1 never shown down: {w:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.restore();
    // Back on the network, the abandoned job is stopped, the rest of its log fetched and its
    // folder removed; it never reached its second half.
    t.assert_pids_gone().await;
    t.assert_folders_cleaned().await;
    assert_eq!(t.counter(), [id], "ran once, not retried");
    let log = t.s.log_text(id, None).await;
    assert!(
        expected_log(id, 50).starts_with(&log) && log.contains("line 50 of"),
        "the log up to the cut is kept: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_mid_run_reattaches() {
    let mut t = setup(2, "10s", 0, 400);
    t.workers_up().await;
    let a = t.trigger("work", "gate").await;
    let b = t.trigger("work", "gate").await;
    t.wait_started(a, "gate").await;
    t.wait_started(b, "gate").await;
    t.s.kill9();
    // Both jobs finish while the server is down: their callbacks are missed.
    t.open_gate("gate");
    t.wait_ended_on_workers(2).await;
    t.s.restart();
    for id in [a, b] {
        let run = t.s.wait_run(id).await;
        assert_eq!(status(&run), "success", "{run:#}\n{}", t.s.stderr());
        assert_eq!(job(&run, "work")["attempt"], 1);
        assert_eq!(t.s.log_text(id, None).await, expected_log(id, 400));
        assert_eq!(t.artifact(&run), format!("artifact of run {id}\n"));
    }
    let mut counter = t.counter();
    counter.sort();
    assert_eq!(counter, [a, b], "nothing ran twice");
    t.assert_folders_cleaned().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_then_restarted_while_the_job_still_runs() {
    let mut t = setup(1, "10s", 0, 300);
    t.workers_up().await;
    let id = t.trigger("work", "gate").await;
    t.wait_started(id, "gate").await;
    t.s.restart();
    // Re-attached while still running; then it finishes.
    let run =
        t.s.wait_until(id, "running after restart", |r| status(r) == "running")
            .await;
    assert_eq!(worker_of(&run), "w1");
    t.open_gate("gate");
    let run = t.s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}\n{}", t.s.stderr());
    assert_eq!(t.s.log_text(id, None).await, expected_log(id, 300));
    assert_eq!(t.counter(), [id]);
    t.assert_folders_cleaned().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_and_timeout_stop_the_remote_processes() {
    let t = setup(2, "10s", 0, 20);
    t.workers_up().await;
    let id = t.trigger("work", "never").await;
    t.wait_started(id, "never").await;
    let (st, body) =
        t.s.post(&format!("/runs/{id}/cancel"), serde_json::json!({}))
            .await;
    assert_eq!(st, 200, "{body}");
    let run = t.s.wait_run(id).await;
    assert_eq!(status(&run), "canceled", "{run:#}");

    let id = t.trigger("hang", "never").await;
    let run = t.s.wait_run(id).await;
    assert_eq!(status(&run), "jammed", "{run:#}");
    assert!(reason(&run).contains("timed out"), "{run:#}");
    assert_eq!(t.s.log_text(id, None).await, "hanging\n");
    t.assert_pids_gone().await;
    t.assert_folders_cleaned().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_on_one_host_and_values_never_become_syntax() {
    let net = TestNet::new(1);
    let h = net.host("w1");
    let pwned = net.path("pwned");
    let yaml = format!(
        r#"server:
  ssh_key: {key}
  known_hosts: {kh}
  heartbeat_timeout: 10s
workers:
  a:
    host: root@{addr}:22
    work_dir: {wd}/a
    queues: [default]
  b:
    host: root@{addr}
    queues: [default]
variables:
  api_token: s3cr3t-t0ken-value
tasks:
  echo:
    concurrency: 2
    env:
      API_TOKEN: ${{:api_token}}
    command: |
      printf '%s\n' "$x"
      echo "token=$API_TOKEN"
      printf '%s\n' "$x" > "$BATON_OUTPUT_DIR/x.txt"
      echo "$BATON_RUN_ID" >> "$counter"
      for i in $(seq 1200); do [ -e "$gate" ] && break; sleep 0.05; done
"#,
        key = net.client_key.display(),
        kh = net.known_hosts.display(),
        addr = h.addr,
        wd = h.work_dir.display(),
    );
    let s = Server::start_on(&yaml, &net.gateway);
    let evil = format!(
        "a'b\"c $(touch {p}) `touch {p}` ; touch {p} \\ $HOME *",
        p = pwned.display()
    );
    let counter = net.path("counter").to_string_lossy().into_owned();
    let gate = net.path("gate").to_string_lossy().into_owned();
    let args = [
        ("x", evil.as_str()),
        ("counter", counter.as_str()),
        ("gate", gate.as_str()),
    ];
    let id1 = id_of(&s.trigger("echo", &args).await);
    let id2 = id_of(&s.trigger("echo", &args).await);
    // Both run at once on the one host, through its two workers.
    let mut workers = Vec::new();
    for id in [id1, id2] {
        let run = s
            .wait_until(id, "running", |r| status(r) == "running")
            .await;
        workers.push(job(&run, "echo")["worker"].as_str().unwrap().to_string());
    }
    workers.sort();
    assert_eq!(workers, ["a", "b"]);
    std::fs::write(&gate, "").unwrap();
    for id in [id1, id2] {
        let run = s.wait_run(id).await;
        assert_eq!(status(&run), "success", "{run:#}\n{}", s.stderr());
        assert_eq!(
            s.log_text(id, None).await,
            format!("{evil}\ntoken=***\n"),
            "the value arrives byte for byte, the secret is masked"
        );
        let j = job(&run, "echo");
        let dir = s.job_dir(j["id"].as_i64().unwrap(), j["attempt"].as_u64().unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("out/x.txt")).unwrap(),
            format!("{evil}\n")
        );
    }
    assert!(!pwned.exists(), "an argument was run as shell syntax");
    // The callback route takes no bearer token, only a live job's own token.
    let url = s.url(&format!("/callbacks/jobs/{}", id1 + 1000));
    let resp = s.http.post(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401, "no job token");
    let resp = s
        .http
        .post(&url)
        .header("X-Baton-Job-Token", "0123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404, "no such running job");
    let counter = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(counter.lines().count(), 2, "each run ran once: {counter}");
    assert!(
        h.job_folders().is_empty(),
        "job folders left: {:?}",
        h.job_folders()
    );
    // Worker b uses the default work_dir `.baton` in the login user's home.
    let home_jobs = h.work_dir.parent().unwrap().join("home/.baton/jobs");
    assert!(home_jobs.exists(), "worker b ran in ~/.baton");
    let left: Vec<_> = std::fs::read_dir(&home_jobs)
        .unwrap()
        .flatten()
        .flat_map(|j| std::fs::read_dir(j.path()).into_iter().flatten().flatten())
        .map(|a| a.path())
        .collect();
    assert!(left.is_empty(), "job folders left in ~/.baton: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_worker_gets_no_runs_until_it_is_back() {
    let mut t = setup(1, "3s", 0, 10);
    t.workers_up().await;
    t.net.host_mut("w1").kill();
    let deadline = Instant::now() + WAIT;
    loop {
        let w = t.s.get_ok("/workers").await;
        if w["workers"][0]["state"] == "down" {
            break;
        }
        assert!(Instant::now() < deadline, "w1 never shown down: {w:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.open_gate("gate");
    let id = t.trigger("work", "gate").await;
    let run =
        t.s.wait_until(id, "a waiting reason", |r| !reason(r).is_empty())
            .await;
    assert_eq!(status(&run), "queued", "{run:#}");
    assert!(t.counter().is_empty(), "nothing ran on the down worker");
    t.net.host_mut("w1").start_sshd();
    let run = t.s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}\n{}", t.s.stderr());
    assert_eq!(t.s.log_text(id, None).await, expected_log(id, 10));
    assert_eq!(t.counter(), [id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_host_key_keeps_the_worker_down_with_a_hint() {
    let net = TestNet::new(1);
    // The host's key is not in this known_hosts file: ssh must refuse (no TOFU).
    let empty = net.path("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let yaml = net.config("3s").replace(
        &net.known_hosts.display().to_string(),
        &empty.display().to_string(),
    ) + "tasks:\n  t:\n    command: echo never\n";
    let s = Server::start_on(&yaml, &net.gateway);
    let deadline = Instant::now() + WAIT;
    loop {
        let w = s.get_ok("/workers").await;
        let r = w["workers"][0]["reason"].as_str().unwrap_or("").to_string();
        if r.contains("Host key verification failed") {
            assert_eq!(w["workers"][0]["state"], "down", "{w:#}");
            assert!(r.contains("hint: add the worker's host key"), "{r}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no host key failure shown: {w:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id_of(&s.trigger("t", &[]).await);
    let run = s
        .wait_until(id, "a waiting reason", |r| !reason(r).is_empty())
        .await;
    assert_eq!(
        status(&run),
        "queued",
        "a down worker gets no runs: {run:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_added_by_reload_gets_runs() {
    let net = TestNet::new(2);
    let full = format!("{}{}", net.config("3s"), tasks(5).replace("@RETRIES@", "0"));
    // The server starts with w1 only; w2 comes with a reload.
    let w2_at = full.find("  w2:\n").expect("w2 in the config");
    let tasks_at = full.find("\ntasks:").expect("tasks in the config");
    let first = format!("{}{}", &full[..w2_at], &full[tasks_at + 1..]);
    let s = Server::start_on(&first, &net.gateway);
    let t = Setup { s, net };
    t.workers_up().await;
    assert_eq!(
        t.s.get_ok("/workers").await["workers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    t.s.write_config("baton.yaml", &full);
    let (st, v) = t.s.post("/config/reload", serde_json::json!({})).await;
    assert_eq!(st, 200, "{v}");
    t.workers_up().await;
    let w = t.s.get_ok("/workers").await;
    assert_eq!(w["workers"].as_array().unwrap().len(), 2, "{w:#}");
    // Two runs at once: with w1 busy, the second must run on w2.
    let a = t.trigger("work", "gate").await;
    t.wait_started(a, "gate").await;
    let b = t.trigger("work", "gate").await;
    t.wait_started(b, "gate").await;
    t.open_gate("gate");
    let (ra, rb) = (t.s.wait_run(a).await, t.s.wait_run(b).await);
    assert_eq!(
        (status(&ra), status(&rb)),
        ("success", "success"),
        "{ra:#}\n{rb:#}\n{}",
        t.s.stderr()
    );
    let mut on = [worker_of(&ra), worker_of(&rb)];
    on.sort();
    assert_eq!(on, ["w1".to_string(), "w2".to_string()]);
    assert_eq!(t.s.log_text(b, None).await, expected_log(b, 5));
}

/// Files named `cancel` under `dir` (the runner's cancel request on a worker).
fn cancel_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name() == "cancel" {
            out.push(p);
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(cancel_files(&p));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_to_an_unreachable_worker_does_not_hold_up_the_scheduler() {
    let net = TestNet::new(1);
    let yaml = format!(
        "{}  here:\n    queues: [here]\ntasks:\n  remote:\n    command: |\n      : > \"$started\"\n      for i in $(seq 1200); do [ -e \"$gate\" ] && break; sleep 0.05; done\n  near:\n    queues: [here]\n    command: echo near\n",
        net.config("30s")
    );
    let s = Server::start_on(&yaml, &net.gateway);
    let t = Setup { s, net };
    t.workers_up().await;
    let started = t.net.path("started");
    let gate = t.net.path("gate");
    let run =
        t.s.trigger(
            "remote",
            &[
                ("started", started.to_str().unwrap()),
                ("gate", gate.to_str().unwrap()),
            ],
        )
        .await;
    let id = id_of(&run);
    common::wait_file(&started).await;
    t.s.wait_until(id, "running", |r| status(r) == "running")
        .await;
    let h = t.net.host("w1");
    h.cut();
    // The cancel is recorded and answered; delivering it to the cut-off worker is pending.
    let (st, body) =
        t.s.post(&format!("/runs/{id}/cancel"), serde_json::json!({}))
            .await;
    assert_eq!(st, 200, "{body}");
    // While it is pending, the scheduler goes on: a local task runs to success.
    let near = t.s.trigger("near", &[]).await;
    let near = t.s.wait_run(id_of(&near)).await;
    assert_eq!(status(&near), "success", "{near:#}\n{}", t.s.stderr());
    // Still pending then: the worker got no cancel and the remote run has not ended.
    assert!(
        cancel_files(&h.work_dir).is_empty(),
        "the cancel reached a worker whose network was cut"
    );
    let remote = t.s.run(id).await;
    assert_eq!(
        status(&remote),
        "running",
        "the remote run must still be running while its cancel is pending: {remote:#}"
    );
    h.restore();
    let remote = t.s.wait_run_for(id, Duration::from_secs(120)).await;
    assert_eq!(status(&remote), "canceled", "{remote:#}\n{}", t.s.stderr());
}

/// `artifacts:` globs on an SSH worker: its runner gathers them with bash's globbing and the
/// same rules (no symlink followed), and reports a missing required one.
#[tokio::test(flavor = "multi_thread")]
async fn artifacts_globs_are_kept_on_ssh_workers() {
    let net = TestNet::new(1);
    let yaml = format!("{}{}", net.config("5s"), common::globs::tasks(""));
    let s = Server::start_on(&yaml, &net.gateway);
    common::globs::check(&s, &net.hosts[0].name).await;
    drop(s);
}
