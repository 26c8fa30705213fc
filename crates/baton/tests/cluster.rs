//! Several servers on one PostgreSQL: one is active (it holds the scheduler lease), the others
//! are standbys that forward every request to it. Three servers share a database and a data
//! directory; 300 triggers are spread over them; the active one is SIGKILLed mid-run; a standby
//! takes over. Every accepted run ends `success`, ran exactly once, and its log is complete,
//! read through any server. Sign-ins through a standby back off per client address, which the
//! standby vouches for with the cluster key. Needs `BATON_TEST_PG` (scripts/test.sh starts a
//! throwaway cluster) and fails without it.

mod common;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/users.rs"]
mod users;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{BIN, fresh_postgres, id_of, is_terminal, status};
use nodes::{HELLO, Node, baton, health, pair};

const RUNS: usize = 300;
const LINES: usize = 100;

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

/// A browser at loopback address `from` signing in through `node`.
struct Browser<'a> {
    node: &'a Node,
    http: reqwest::Client,
}

impl<'a> Browser<'a> {
    fn at(node: &'a Node, from: &str) -> Browser<'a> {
        let ip: IpAddr = from.parse().unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(ip)
            .build()
            .unwrap();
        Browser { node, http }
    }

    /// Fetches the login form and posts it back with `user` and `pw`, with `extra` headers on
    /// the post; the status.
    async fn login_with(&self, user: &str, pw: &str, extra: &[(&str, String)]) -> u16 {
        let page = self
            .http
            .get(format!("{}/login", self.node.base))
            .send()
            .await
            .unwrap();
        let (csrf, _) = users::set_cookie(&page, "baton_login_csrf").expect("login csrf cookie");
        let mut post = self
            .http
            .post(format!("{}/login", self.node.base))
            .header("cookie", format!("baton_login_csrf={csrf}"))
            .header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in extra {
            post = post.header(*name, value);
        }
        let r = post
            .body(users::form_encode(&[
                ("csrf", &csrf),
                ("next", "/"),
                ("user", user),
                ("password", &users::long(pw)),
            ]))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    async fn login(&self, user: &str, pw: &str) -> u16 {
        self.login_with(user, pw, &[]).await
    }
}

/// `baton user add NAME --password-stdin` on the cluster's store.
fn add_user(root: &Path, db: &str, name: &str, pw: &str) {
    let mut child = Command::new(BIN)
        .args(["user", "add", name, "--password-stdin", "--db", db])
        .arg("--data")
        .arg(root.join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", users::long(pw)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The active server's sign-in backoff counts the client's address, which the standby passes on
/// signed with the cluster key: failures from one address behind the standby do not hold back
/// another address behind the same standby. A header naming another address, sent to the
/// active server directly, is ignored (its HMAC does not check), and one a client sends to the
/// standby is replaced by the standby's own.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_backoff_through_a_standby_is_per_client_address() {
    let (db, tmp) = (fresh_postgres(), tempfile::tempdir().unwrap());
    let root = tmp.path().canonicalize().unwrap();
    let (a, b) = pair(&root, &db, "10s", HELLO);
    add_user(&root, &db, "carol", "pw-carol");
    let key = root.join("data").join(baton_web::cluster_key::KEY_FILE);
    let meta = std::fs::metadata(&key).expect("the first server made the cluster key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let failing = Browser::at(&b, "127.0.0.2");
    // Three failures (under different names: the address is what counts here)...
    for name in ["x1", "x2", "x3"] {
        assert_eq!(failing.login(name, "guess").await, 401, "{name}");
    }
    // ...and now that address must wait, even with the right password.
    assert_eq!(
        failing.login("carol", "pw-carol").await,
        429,
        "127.0.0.2 backs off\n{}{}",
        a.stderr(),
        b.stderr()
    );
    // Another client behind the same standby is not held back.
    assert_eq!(
        Browser::at(&b, "127.0.0.3")
            .login("carol", "pw-carol")
            .await,
        303,
        "127.0.0.3 signs in through the same standby\n{}",
        a.stderr()
    );

    // Forged headers sent to the active server directly are ignored: the failures count
    // against the real peer, 127.0.0.4, which then backs off.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let direct = Browser::at(&a, "127.0.0.4");
    for (i, name) in ["y1", "y2", "y3"].iter().enumerate() {
        let forged = format!("127.0.1.{i} {now} {}", "ab".repeat(32));
        let st = direct
            .login_with(name, "guess", &[("x-baton-forwarded-for", forged)])
            .await;
        assert_eq!(st, 401, "{name}");
    }
    let forged = format!("127.0.1.9 {now} {}", "ab".repeat(32));
    assert_eq!(
        direct
            .login_with("carol", "pw-carol", &[("x-baton-forwarded-for", forged)])
            .await,
        429,
        "the forged address was ignored: 127.0.0.4 backs off"
    );

    // A client that sends the standby a header signed with the real key (naming the address
    // that backs off) still counts as itself: the standby passes on only its own.
    let cluster_key = baton_web::ClusterKey::load_or_create(&root.join("data")).unwrap();
    let signed = cluster_key.sign("127.0.0.2".parse().unwrap(), now);
    let signed = signed.to_str().unwrap().to_owned();
    assert_eq!(
        Browser::at(&b, "127.0.0.5")
            .login_with("carol", "pw-carol", &[("x-baton-forwarded-for", signed)])
            .await,
        303,
        "the standby replaced the client's header with its own"
    );
}
