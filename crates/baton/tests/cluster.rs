//! Several servers on one PostgreSQL: one is active (it holds the scheduler lease), the others
//! are standbys that forward every request to it. Three servers share a database and a data
//! directory; 300 triggers are spread over them; the active one is SIGKILLed mid-run; a standby
//! takes over. Every accepted run ends `success`, ran exactly once, and its log is complete,
//! read through any server. Needs `BATON_TEST_PG` (scripts/test.sh starts a throwaway cluster)
//! and fails without it.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{BIN, fresh_postgres, id_of, is_terminal, status};

const RUNS: usize = 300;
const LINES: usize = 100;

/// One `baton serve` of the cluster.
struct Node {
    name: &'static str,
    base: String,
    child: Option<Child>,
    stderr: PathBuf,
    /// Its first line: `baton ready on …` (active) or `baton standby on …`.
    first: String,
}

impl Node {
    fn start(name: &'static str, root: &Path, db: &str) -> Node {
        Node::start_ttl(name, root, db, "2s")
    }

    /// Starts server `name` with leases of `ttl`; waits for its first line.
    fn start_ttl(name: &'static str, root: &Path, db: &str, ttl: &str) -> Node {
        let stderr = root.join(format!("{name}.stderr"));
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--lease-ttl", ttl])
            .args(["--server-id", name, "--db", db])
            .arg("--config")
            .arg(root.join("config"))
            .arg("--data")
            .arg(root.join("data"))
            .env_remove("BATON_TOKEN")
            .env_remove("BATON_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn baton serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                let _ = tx.send(std::mem::take(&mut line));
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "server {name} printed no first line ({e})\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            });
        let addr = ["baton ready on http://", "baton standby on http://"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or_else(|| panic!("server {name}: unexpected first line {line:?}"))
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(':')
            .to_owned();
        // Later lines (a standby's "took over …", then its ready line) are drained.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Node {
            name,
            base: format!("http://{addr}"),
            child: Some(child),
            stderr,
            first: line,
        }
    }

    fn stderr(&self) -> String {
        format!(
            "--- {} stderr ---\n{}",
            self.name,
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Cluster {
    nodes: Vec<Node>,
    token: String,
    http: reqwest::Client,
}

impl Cluster {
    fn logs(&self) -> String {
        self.nodes.iter().map(Node::stderr).collect()
    }

    /// GET through `node`: the status and JSON, or the transport error.
    async fn get(&self, node: usize, path: &str) -> Result<(u16, Value), String> {
        let r = self
            .http
            .get(format!("{}{path}", self.nodes[node].base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let st = r.status().as_u16();
        let text = r.text().await.map_err(|e| e.to_string())?;
        Ok((
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// GET through any live node (tried in turn, bounded) that answers 200.
    async fn get_ok(&self, live: &[usize], path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        for i in 0.. {
            let n = live[i % live.len()];
            match self.get(n, path).await {
                Ok((200, v)) => return v,
                Ok((st, v)) => last = format!("{} answered {st}: {v}", self.nodes[n].name),
                Err(e) => last = format!("{}: {e}", self.nodes[n].name),
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "GET {path}: no server answered 200; last: {last}\n{}",
            self.logs()
        );
    }
}

fn baton(args: &[&str], root: &Path, db: &str) -> String {
    let o = Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(root.join("data"))
        .args(["--db", db])
        .env_remove("BATON_DATA")
        .env_remove("BATON_DB")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "baton {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_servers_one_killed_every_run_once_and_complete() {
    let (db, tmp) = (fresh_postgres(), tempfile::tempdir().unwrap());
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let marks = root.join("executed");
    std::fs::write(
        root.join("config/baton.yaml"),
        format!(
            r#"
server:
  local_workers: 4
tasks:
  work:
    concurrency: 4
    wait_list: {{size: 400}}
    command: |
      for i in $(seq 1 {LINES}); do echo "line $i of run $BATON_RUN_ID"; done
      echo "$BATON_RUN_ID" >> {marks}
      sleep 0.3
"#,
            marks = marks.display()
        ),
    )
    .unwrap();

    let a = Node::start("a", &root, &db);
    assert!(a.first.starts_with("baton ready on"), "a: {}", a.first);
    let b = Node::start("b", &root, &db);
    let c = Node::start("c", &root, &db);
    for n in [&b, &c] {
        assert!(
            n.first.starts_with("baton standby on") && n.first.contains("server a at"),
            "{} is a standby of a: {}",
            n.name,
            n.first
        );
    }
    let token = baton(&["token", "create"], &root, &db);
    let mut cl = Cluster {
        nodes: vec![a, b, c],
        token,
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    };
    let (_, h) = cl.get(1, "/healthz").await.unwrap();
    assert_eq!(h["status"], "standby", "{h}");
    assert_eq!(h["active"], json!(cl.nodes[0].base), "{h}");
    let (_, h) = cl.get(0, "/healthz").await.unwrap();
    assert_eq!(
        (h["role"].as_str(), h["server"].as_str()),
        (Some("active"), Some("a"))
    );

    // 300 triggers, round robin over the servers; a is SIGKILLed after the first 100 are in.
    let mut accepted: Vec<i64> = Vec::new();
    let mut ambiguous = 0usize;
    let mut live = vec![0usize, 1, 2];
    let mut killed_with_work = None;
    for i in 0..RUNS {
        if i == RUNS / 3 {
            let (_, page) = cl.get(0, "/api/v1/runs?limit=500").await.unwrap();
            let open: Vec<String> = page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| !is_terminal(r))
                .map(|r| format!("{} {}", id_of(r), status(r)))
                .collect();
            killed_with_work = Some(open);
            cl.nodes[0].kill9();
            live = vec![1, 2];
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut k = i;
        let id = loop {
            let n = live[k % live.len()];
            k += 1;
            let sent = cl
                .http
                .post(format!("{}/api/v1/tasks/work/trigger", cl.nodes[n].base))
                .bearer_auth(&cl.token)
                .json(&json!({"args": {}}))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().as_u16() == 201 => {
                    break id_of(&r.json::<Value>().await.unwrap());
                }
                // Refused before it reached anyone: not accepted.
                Err(e) if e.is_connect() => {}
                // Anything else may have been recorded before the answer was lost.
                Ok(r) => {
                    let st = r.status().as_u16();
                    assert!(
                        [502, 503].contains(&st),
                        "trigger {i} through {}: {st} {}",
                        cl.nodes[n].name,
                        r.text().await.unwrap_or_default()
                    );
                    ambiguous += 1;
                }
                Err(_) => ambiguous += 1,
            }
            assert!(
                Instant::now() < deadline,
                "trigger {i}: no server accepted it within 60 s\n{}",
                cl.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        accepted.push(id);
    }
    let open = killed_with_work.unwrap();
    assert!(
        open.iter().any(|r| r.ends_with("running")),
        "a was killed with jobs running, not idle: {open:?}"
    );

    // One of b and c took over; the other forwards to it.
    let active = cl.get_ok(&[1, 2], "/healthz").await;
    let mut roles = BTreeMap::new();
    for n in [1, 2] {
        let (_, h) = cl.get(n, "/healthz").await.unwrap();
        roles.insert(cl.nodes[n].name, h);
    }
    let actives: Vec<_> = roles.values().filter(|h| h["role"] == "active").collect();
    assert_eq!(
        actives.len(),
        1,
        "one active server after the kill: {roles:?} ({active})"
    );

    // Every accepted run ends, successfully (a's jobs were re-attached by the new active
    // server: same host, same data directory).
    for &id in &accepted {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let run = cl
                .get_ok(&[1, 2], &format!("/api/v1/runs/{id}/wait?timeout=5"))
                .await;
            if is_terminal(&run) {
                assert_eq!(status(&run), "success", "run {id}: {run}\n{}", cl.logs());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} never ended: {run:#}\n{}",
                cl.logs()
            );
        }
    }

    // Every run there is: the accepted ones, and at most one per ambiguous answer.
    let mut all: Vec<Value> = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/v1/runs?limit=500&cursor={c}"),
            None => "/api/v1/runs?limit=500".to_owned(),
        };
        let page = cl.get_ok(&[1, 2], &path).await;
        all.extend(page["runs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let ids: Vec<i64> = all.iter().map(id_of).collect();
    for id in &accepted {
        assert!(ids.contains(id), "accepted run {id} is listed");
    }
    assert!(
        ids.len() >= RUNS && ids.len() <= RUNS + ambiguous,
        "{} runs for {RUNS} accepted triggers and {ambiguous} ambiguous answers",
        ids.len()
    );
    for r in &all {
        assert!(is_terminal(r), "every run is final: {r:#}\n{}", cl.logs());
    }

    // Each ran exactly once.
    let executed = std::fs::read_to_string(&marks).unwrap();
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for l in executed.lines() {
        *times.entry(l.trim().parse().unwrap()).or_default() += 1;
    }
    for id in &ids {
        let ran = times.get(id).copied().unwrap_or(0);
        let run = all.iter().find(|r| id_of(r) == *id).unwrap();
        let want = usize::from(status(run) == "success");
        assert_eq!(ran, want, "run {id} ({}) ran {ran} times", status(run));
    }
    assert!(
        times.keys().all(|id| ids.contains(id)),
        "nothing ran that is not a run"
    );

    // Every log is complete, read through either server.
    for (k, id) in ids.iter().enumerate() {
        let n = [1, 2][k % 2];
        let want: String = (1..=LINES)
            .map(|i| format!("line {i} of run {id}\n"))
            .collect();
        let r = cl
            .http
            .get(format!("{}/api/v1/runs/{id}/log", cl.nodes[n].base))
            .bearer_auth(&cl.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let got = r.text().await.unwrap();
        assert_eq!(got, want, "run {id}'s log through {}", cl.nodes[n].name);
    }
    for n in cl.nodes.iter_mut() {
        n.kill9();
    }
    // Every run ended, so the supervisors that outlived a server end too (a supervisor exits
    // just after writing its job's end): soon nothing is left under the data dir.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = common::processes_under(&root.join("data"));
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left under the data dir: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const HELLO: &str = "tasks:\n  hello:\n    command: echo hello\n";

/// Starts a two-server cluster (a active, b standby) on a fresh database with `ttl` leases.
fn pair(root: &Path, db: &str, ttl: &str, config: &str) -> (Node, Node) {
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("config/baton.yaml"), config).unwrap();
    let a = Node::start_ttl("a", root, db, ttl);
    assert!(a.first.starts_with("baton ready on"), "{}", a.first);
    let b = Node::start_ttl("b", root, db, ttl);
    assert!(b.first.starts_with("baton standby on"), "{}", b.first);
    (a, b)
}

async fn health(http: &reqwest::Client, n: &Node) -> Option<Value> {
    let r = http.get(format!("{}/healthz", n.base)).send().await.ok()?;
    r.json().await.ok()
}

/// A server whose lease another server took (here: rewritten in the database, as a server that
/// took it over after this one was cut off would) stops at once, with status 75.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_finds_its_lease_taken_stops_at_once() {
    let (db, tmp) = (fresh_postgres(), tempfile::tempdir().unwrap());
    let root = tmp.path().canonicalize().unwrap();
    let (mut a, _b) = pair(&root, &db, "3s", HELLO);
    let store = baton_store::Store::connect(&baton_store::Database::parse(&db))
        .await
        .unwrap();
    let lease = store
        .lease(baton_store::SCHEDULER_LEASE)
        .await
        .unwrap()
        .expect("a holds the lease");
    assert_eq!(lease.holder, "a");
    // Another server "takes it over": a new holder and epoch, far from lapsing.
    let far = chrono::Utc::now() + chrono::Duration::hours(1);
    let taken = store
        .take_lease(
            baton_store::SCHEDULER_LEASE,
            "intruder",
            "intruder-1",
            "http://127.0.0.1:9",
            lease.expires_at + chrono::Duration::milliseconds(1),
            (far - chrono::Utc::now()).to_std().unwrap(),
        )
        .await
        .unwrap()
        .expect("a lease taken with a clock past its expiry");
    assert_eq!(taken.epoch, lease.epoch + 1);
    let child = a.child.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "a kept running without its lease\n{}",
            a.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    a.child = None;
    assert_eq!(st.code(), Some(75), "{}", a.stderr());
    assert!(
        a.stderr()
            .contains("server intruder (epoch 2) holds the scheduler lease now"),
        "{}",
        a.stderr()
    );
}

/// A cleanly stopped server gives its lease up: the standby takes over long before the lease
/// (60 s) would have lapsed, and answers as the active server.
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_hands_over_at_once() {
    let (db, tmp) = (fresh_postgres(), tempfile::tempdir().unwrap());
    let root = tmp.path().canonicalize().unwrap();
    let (mut a, b) = pair(&root, &db, "60s", HELLO);
    let http = reqwest::Client::new();
    let h = health(&http, &b).await.expect("b answers");
    assert_eq!(h["status"], "standby", "{h}");
    // SIGINT: stop now, jobs keep running; the lease is given up.
    let pid = a.child.as_ref().unwrap().id() as i32;
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let st = a.child.take().unwrap().wait().unwrap();
    assert!(st.success(), "a stopped cleanly: {st}\n{}", a.stderr());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(h) = health(&http, &b).await
            && h["role"] == "active"
        {
            assert_eq!(h["server"], "b");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b did not take over\n{}",
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A live log followed through the standby: lines arrive while the job runs (the standby
/// streams the active server's answer as it comes), then its end.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_log_streams_through_a_standby() {
    let (db, tmp) = (fresh_postgres(), tempfile::tempdir().unwrap());
    let root = tmp.path().canonicalize().unwrap();
    let gate = root.join("gate");
    let config = format!(
        "tasks:\n  slow:\n    command: |\n      echo first\n      \
         while [ ! -e {g} ]; do sleep 0.05; done\n      echo second\n",
        g = gate.display()
    );
    let (_a, b) = pair(&root, &db, "10s", &config);
    let token = baton(&["token", "create"], &root, &db);
    let http = reqwest::Client::new();
    let id = trigger_through(&http, &b, &token, "slow").await;
    let mut resp = http
        .get(format!("{}/api/v1/runs/{id}/log/stream", b.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut buf = String::new();
    let mut text = String::new();
    let mut opened = false;
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(45), resp.chunk())
            .await
            .expect("the stream kept coming")
            .expect("read the stream")
            .expect("the stream did not end before its end event");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        let mut ended = false;
        for ev in common::sse::take_events(&mut buf) {
            match ev.event.as_str() {
                "log" => {
                    let d: Value = serde_json::from_str(&ev.data).unwrap();
                    text.push_str(d["text"].as_str().unwrap());
                }
                "end" => ended = true,
                _ => {}
            }
        }
        if !opened && text.contains("first") {
            // Only now may the job go on: "first" came through while it ran.
            assert!(!text.contains("second"), "{text}");
            std::fs::write(&gate, "").unwrap();
            opened = true;
        }
        if ended {
            break;
        }
        assert!(Instant::now() < deadline, "no end event; so far {text:?}");
    }
    assert!(opened, "the first line arrived before the end: {text:?}");
    assert_eq!(text, "first\nsecond\n");
}

/// Triggers `task` through `node`; the run's id.
async fn trigger_through(http: &reqwest::Client, node: &Node, token: &str, task: &str) -> i64 {
    let r = http
        .post(format!("{}/api/v1/tasks/{task}/trigger", node.base))
        .bearer_auth(token)
        .json(&json!({"args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "trigger {task} through {}",
        node.name
    );
    id_of(&r.json::<Value>().await.unwrap())
}

/// GET `path` through `node` until it answers 200 (a standby answers 502/503 while no server is
/// active); its body.
async fn get_through(http: &reqwest::Client, node: &Node, token: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http
            .get(format!("{}{path}", node.base))
            .bearer_auth(token)
            .send()
            .await
            && r.status().as_u16() == 200
        {
            return r.text().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} through {}\n{}",
            node.name,
            node.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An agent given both servers keeps its job running when the active server is SIGKILLed: it
/// goes on with the other, which takes over the lease and re-attaches the job; the run ends
/// `success` with its whole log.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_job_survives_the_active_server_and_ends_on_the_next() {
    let (db, tmp) = (fresh_postgres(), tempfile::tempdir().unwrap());
    let root = tmp.path().canonicalize().unwrap();
    let gate = root.join("gate");
    let config = format!(
        r#"
server:
  agent_queues: [arm]
tasks:
  remote:
    queues: [arm]
    command: |
      for i in $(seq 1 100); do echo "before $i"; done
      while [ ! -e {g} ]; do sleep 0.05; done
      for i in $(seq 1 100); do echo "after $i"; done
"#,
        g = gate.display()
    );
    let (mut a, b) = pair(&root, &db, "2s", &config);
    let token = baton(&["token", "create"], &root, &db);
    let join = baton(&["token", "create", "--name", "agent-join"], &root, &db);
    let agent_log = root.join("agent.log");
    let mut agent = Command::new(BIN)
        .args(["agent", "--server", &format!("{},{}", a.base, b.base)])
        .args(["--token", &join, "--queues", "arm", "--name", "arm1"])
        .arg("--work-dir")
        .arg(root.join("agent"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let id = trigger_through(&http, &b, &token, "remote").await;
    let log_path = format!("/api/v1/runs/{id}/log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get_through(&http, &b, &token, &log_path)
        .await
        .contains("before 100\n")
    {
        assert!(
            Instant::now() < deadline,
            "the agent's first lines never reached the server\n{}\n{}",
            a.stderr(),
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill9();
    std::fs::write(&gate, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let run: Value = serde_json::from_str(
            &get_through(
                &http,
                &b,
                &token,
                &format!("/api/v1/runs/{id}/wait?timeout=5"),
            )
            .await,
        )
        .unwrap();
        if is_terminal(&run) {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never ended: {run}\n{}\n{}",
            b.stderr(),
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
    };
    let said = std::fs::read_to_string(&agent_log).unwrap_or_default();
    assert_eq!(status(&run), "success", "{run}\n{}\n{said}", b.stderr());
    let want: String = (1..=100)
        .map(|i| format!("before {i}\n"))
        .chain((1..=100).map(|i| format!("after {i}\n")))
        .collect();
    assert_eq!(get_through(&http, &b, &token, &log_path).await, want);
    assert!(said.contains("going on with"), "{said}");
    let _ = agent.kill();
    let _ = agent.wait();
}
