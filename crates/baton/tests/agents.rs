//! Pull-mode agents: joining, running jobs with logs and artifacts, surviving their own restart
//! and the server's, being lost after the heartbeat timeout, cancel, and being disabled.

mod common;
#[path = "common/users.rs"]
mod users;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Server, WAIT, gate, id_of, reason, status, wait_file};

const HEARTBEAT: &str = "2s";

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 1
  kill_grace: 1s
  agent_queues: [arm]
tasks:
  on-arm:
    queues: [arm]
    concurrency: 4
    wait_list: {{size: 10}}
    command: |
      echo "start $BATON_RUN_ID"
      echo "$BATON_RUN_ID" >> "$counter"
      echo "artifact of $BATON_RUN_ID" > "$BATON_OUTPUT_DIR/result.txt"
      mkdir -p "$BATON_OUTPUT_DIR/sub" && echo nested > "$BATON_OUTPUT_DIR/sub/n.txt"
      {gate}
      for i in $(seq 1 300); do echo "line $i"; done
  big:
    queues: [arm]
    command: |
      {gate}
      (yes "baton artifact line" || true) | head -c 209715200 > "$BATON_OUTPUT_DIR/big.bin"
      echo odd > "$BATON_OUTPUT_DIR/report #1 ?x=%41.txt"
      echo made
  sleeper:
    queues: [arm]
    command: |
      sleep 1000 & echo $! > "$pids.tmp"; mv "$pids.tmp" "$pids"
      wait
  streams:
    queues: [arm]
    command: |
      echo out-1
      sleep 0.2
      echo err-1 >&2
      sleep 0.2
      echo out-2
  slow:
    queues: [arm]
    timeout: 1s
    command: |
      sleep 1000 & echo $! > "$pids.tmp"; mv "$pids.tmp" "$pids"
      wait
"#,
        gate = gate("gate"),
    )
}

struct AgentProc {
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl AgentProc {
    /// Starts `baton agent` with its work dir under the server's data dir (so the harness's
    /// cleanup finds its jobs).
    fn start(s: &Server, join_token: &str, name: &str, slots: u32) -> AgentProc {
        Self::start_env(s, join_token, name, slots, &[])
    }

    /// Like [`AgentProc::start`], with these environment variables (`DOCKER_HOST`).
    fn start_env(
        s: &Server,
        join_token: &str,
        name: &str,
        slots: u32,
        env: &[(&str, String)],
    ) -> AgentProc {
        let work = s.data.join(format!("agent-{name}"));
        let args = vec![
            "agent".to_string(),
            "--server".into(),
            s.base.clone(),
            "--token".into(),
            join_token.into(),
            "--queues".into(),
            "arm".into(),
            "--name".into(),
            name.into(),
            "--slots".into(),
            slots.to_string(),
            "--work-dir".into(),
            work.to_string_lossy().into_owned(),
        ];
        let mut a = AgentProc {
            child: None,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            log: s.root.path().join(format!("agent-{name}.log")),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(BIN)
                .args(&self.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn baton agent"),
        );
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn join_token(s: &Server) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--name", "agent-join"])
        .args(s.data_args())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn expected_tail() -> String {
    (1..=300).map(|i| format!("line {i}\n")).collect()
}

async fn wait_agent_worker(s: &Server, name: &str, state: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let w = s.get_ok("/workers").await;
        let found = w["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == format!("agent:{name}:1") && w["state"] == state);
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent {name} never became {state}: {w:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_runs_jobs_with_logs_and_artifacts() {
    let s = Server::start_with(&config(), &["--agent-heartbeat-timeout", HEARTBEAT]);
    let counter = s.root.path().join("counter");
    let open_gate = s.root.path().join("open");
    std::fs::write(&open_gate, "").unwrap();
    let args = [
        ("counter", counter.to_str().unwrap()),
        ("gate", open_gate.to_str().unwrap()),
    ];
    // Queued before any agent exists: it waits with a reason.
    let first = id_of(&s.trigger("on-arm", &args).await);
    let r = s.run(first).await;
    assert_eq!(status(&r), "queued");
    assert_eq!(reason(&r), "queued: no worker serves queue `arm`");

    let token = join_token(&s);
    let _agent = AgentProc::start(&s, &token, "a1", 2);
    let mut ids = vec![first];
    for _ in 0..3 {
        ids.push(id_of(&s.trigger("on-arm", &args).await));
    }
    for id in &ids {
        let run = s.wait_run(*id).await;
        assert_eq!(status(&run), "success", "{run:#}");
        let worker = run["jobs"][0]["worker"].as_str().unwrap();
        assert!(worker.starts_with("agent:a1:"), "{run:#}");
        let log = s.log_text(*id, None).await;
        assert_eq!(log, format!("start {id}\n{}", expected_tail()));
        let job = run["jobs"][0]["id"].as_i64().unwrap();
        let out = s.job_dir(job, 1).join("out");
        assert_eq!(
            std::fs::read_to_string(out.join("result.txt")).unwrap(),
            format!("artifact of {id}\n")
        );
        assert_eq!(
            std::fs::read_to_string(out.join("sub/n.txt")).unwrap(),
            "nested\n"
        );
    }
    let lines = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(lines.lines().count(), ids.len(), "each run once: {lines}");

    // An agent credential is good for the agent routes only.
    let cred = std::fs::read_to_string(s.data.join("agent-a1/credential")).unwrap();
    let resp = s
        .http
        .get(s.url("/runs"))
        .bearer_auth(cred.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_jobs_stderr_lines_are_marked_apart_on_the_server() {
    let s = Server::start_with(&config(), &["--agent-heartbeat-timeout", HEARTBEAT]);
    let token = join_token(&s);
    let agent = AgentProc::start(&s, &token, "a1", 1);
    let id = id_of(&s.trigger("streams", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(
        status(&run),
        "success",
        "{run:#}\nagent:\n{}",
        agent.output()
    );
    let log = s.log_text(id, None).await;
    assert_eq!(log, "out-1\nerr-1\nout-2\n");
    // The server's index says which stream each byte came from, as the agent's did.
    let marks = s.get_ok(&format!("/runs/{id}/log/marks")).await;
    let list = marks["marks"].as_array().unwrap();
    let stream_at = |off: u64| {
        list.iter()
            .rev()
            .find(|m| m["offset"].as_u64().unwrap() <= off)
            .map(|m| m["stream"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (o1, e1, o2) = (0, log.find("err-1").unwrap(), log.find("out-2").unwrap());
    assert_eq!(
        [
            stream_at(o1 as u64),
            stream_at(e1 as u64),
            stream_at(o2 as u64)
        ],
        ["stdout", "stderr", "stdout"],
        "{marks:#}"
    );
    // Times are the agent's: the stderr line came at least 0.2 s after the first.
    let time_at = |off: u64| {
        list.iter()
            .rev()
            .find(|m| m["offset"].as_u64().unwrap() <= off)
            .and_then(|m| m["time_ms"].as_i64())
            .unwrap()
    };
    assert!(time_at(e1 as u64) - time_at(0) >= 150, "{marks:#}");
    // The run page marks the stderr line, and only it.
    let html = s
        .http
        .get(format!("{}/runs/{id}", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let err_lines: Vec<&str> = html
        .split("<span class=\"line")
        .skip(1)
        .filter(|l| l.starts_with(" err"))
        .collect();
    assert_eq!(err_lines.len(), 1, "{html}");
    assert!(err_lines[0].contains("err-1"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_restart_resumes_and_a_lost_agent_breaks_its_run() {
    let mut s = Server::start_with(&config(), &["--agent-heartbeat-timeout", HEARTBEAT]);
    let counter = s.root.path().join("counter");
    let g1 = s.root.path().join("g1");
    let token = join_token(&s);
    let mut agent = AgentProc::start(&s, &token, "a1", 1);
    wait_agent_worker(&s, "a1", "idle").await;

    // 1. The agent dies mid-run and comes back before the timeout: the job (under its own
    //    supervisor) goes on and the new agent process reports it in full.
    let id = id_of(
        &s.trigger(
            "on-arm",
            &[
                ("counter", counter.to_str().unwrap()),
                ("gate", g1.to_str().unwrap()),
            ],
        )
        .await,
    );
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;
    // Its script has started under its supervisor (before that, the job is the agent's alone).
    wait_started(&counter, id, &agent).await;
    agent.kill9();
    agent.spawn();
    std::fs::write(&g1, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(
        status(&run),
        "success",
        "{run:#}\nagent:\n{}",
        agent.output()
    );
    assert_eq!(
        s.log_text(id, None).await,
        format!("start {id}\n{}", expected_tail())
    );

    // 2. The server dies mid-run: after its restart the agent re-reports and the run ends.
    let g2 = s.root.path().join("g2");
    let id2 = id_of(
        &s.trigger(
            "on-arm",
            &[
                ("counter", counter.to_str().unwrap()),
                ("gate", g2.to_str().unwrap()),
            ],
        )
        .await,
    );
    s.wait_until(id2, "running", |r| status(r) == "running")
        .await;
    wait_started(&counter, id2, &agent).await;
    s.restart();
    std::fs::write(&g2, "").unwrap();
    let run = s.wait_run(id2).await;
    assert_eq!(
        status(&run),
        "success",
        "{run:#}\nagent:\n{}",
        agent.output()
    );
    assert_eq!(
        s.log_text(id2, None).await,
        format!("start {id2}\n{}", expected_tail())
    );

    // 3. The agent dies and stays away: the run is broken after the heartbeat timeout.
    let g3 = s.root.path().join("g3-never");
    let id3 = id_of(
        &s.trigger(
            "on-arm",
            &[
                ("counter", counter.to_str().unwrap()),
                ("gate", g3.to_str().unwrap()),
            ],
        )
        .await,
    );
    s.wait_until(id3, "running", |r| status(r) == "running")
        .await;
    // Mid-run: its script has started (it counts itself first).
    wait_started(&counter, id3, &agent).await;
    agent.kill9();
    let run = s.wait_run(id3).await;
    assert_eq!(status(&run), "broken", "{run:#}");
    assert!(reason(&run).contains("agent a1 lost"), "{run:#}");
    wait_agent_worker(&s, "a1", "down").await;

    let lines = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        vec![id.to_string(), id2.to_string(), id3.to_string()],
        "each run started once"
    );
}

/// Waits until run `id`'s script has counted itself in `counter`.
async fn wait_started(counter: &std::path::Path, id: i64, agent: &AgentProc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(counter)
        .unwrap_or_default()
        .lines()
        .any(|l| l == id.to_string())
    {
        assert!(
            Instant::now() < deadline,
            "run {id}'s script did not start within 30 s; agent:\n{}",
            agent.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the server sees agent `name` waiting in a poll.
async fn connected(s: &Server, name: &str) -> bool {
    let a = s.get_ok("/agents").await;
    a["agents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == name && a["connected"] == true)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_that_never_reached_the_agent_breaks_its_run_at_its_next_poll() {
    // A long heartbeat timeout: the run must end because the agent's next poll does not hold
    // the job, not because the agent went quiet.
    let s = Server::start_with(&config(), &["--agent-heartbeat-timeout", "600s"]);
    let counter = s.root.path().join("counter");
    let gate = s.root.path().join("gate");
    std::fs::write(&gate, "").unwrap();
    let args = [
        ("counter", counter.to_str().unwrap()),
        ("gate", gate.to_str().unwrap()),
    ];
    let token = join_token(&s);
    let mut agent = AgentProc::start(&s, &token, "a1", 1);
    wait_agent_worker(&s, "a1", "idle").await;
    let deadline = Instant::now() + WAIT;
    while !connected(&s, "a1").await {
        assert!(Instant::now() < deadline, "agent a1 never polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Frozen in its long poll: the server hands the job out, the agent never reads it.
    let pid = agent.child.as_ref().unwrap().id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let id = id_of(&s.trigger("on-arm", &args).await);
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;
    while connected(&s, "a1").await {
        assert!(Instant::now() < deadline, "the poll never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The agent dies with the answer unread, and a new one polls with no job on its disk.
    agent.kill9();
    agent.spawn();
    let run = s.wait_run(id).await;
    assert_eq!(
        status(&run),
        "broken",
        "{run:#}\nagent:\n{}",
        agent.output()
    );
    assert!(
        reason(&run).contains("agent a1 does not have job"),
        "{run:#}"
    );
    assert!(!counter.exists(), "the job never ran");
    // The agent goes on serving: the next run succeeds.
    let next = id_of(&s.trigger("on-arm", &args).await);
    let run = s.wait_run(next).await;
    assert_eq!(
        status(&run),
        "success",
        "{run:#}\nagent:\n{}",
        agent.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_on_an_agent_and_disabling_it() {
    let s = Server::start_with(&config(), &["--agent-heartbeat-timeout", HEARTBEAT]);
    let token = join_token(&s);
    let mut agent = AgentProc::start(&s, &token, "a1", 1);
    let pids = s.root.path().join("pids");
    let id = id_of(
        &s.trigger("sleeper", &[("pids", pids.to_str().unwrap())])
            .await,
    );
    wait_file(&pids).await;
    let pid: i32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = s.cli(&["cancel", &id.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "canceled", "{run:#}");
    let deadline = Instant::now() + WAIT;
    while !common::is_dead(pid) {
        assert!(
            Instant::now() < deadline,
            "the job's sleep survived the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A timeout on the agent's machine jams the run and kills its processes.
    let pids2 = s.root.path().join("pids2");
    let id = id_of(
        &s.trigger("slow", &[("pids", pids2.to_str().unwrap())])
            .await,
    );
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "jammed", "{run:#}");
    assert!(reason(&run).contains("timed out"), "{run:#}");
    let pid: i32 = std::fs::read_to_string(&pids2)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !common::is_dead(pid) {
        assert!(
            Instant::now() < deadline,
            "the timed-out job's sleep survived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The agent's slot shows when it was last heard from.
    let w = s.get_ok("/workers").await;
    let slot = w["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "agent:a1:1")
        .unwrap()
        .clone();
    assert!(slot["last_heartbeat"].is_string(), "{slot:#}");

    let (st, body) = s.post("/agents/a1/disable", serde_json::json!({})).await;
    assert_eq!(st, 200, "{body}");
    wait_agent_worker(&s, "a1", "disabled").await;
    // Its credential is revoked: the agent process is told so and exits.
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if let Some(st) = agent.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "disabled agent kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code.code(), Some(1));
    assert!(agent.output().contains("disabled"), "{}", agent.output());
    // A queued run on `arm` now waits with a reason naming the down worker.
    let id = id_of(
        &s.trigger("sleeper", &[("pids", pids.to_str().unwrap())])
            .await,
    );
    let r = s.run(id).await;
    assert_eq!(status(&r), "queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_runs_container_steps_on_its_own_engine() {
    let image = common::busybox::image();
    let s = Server::start_with(
        &format!(
            r#"
server:
  local_workers: 1
  agent_queues: [arm]
tasks:
  boxed:
    queues: [arm]
    image: {image}
    command: |
      echo "sh is $(readlink /bin/sh)"
      echo made-inside > "$BATON_OUTPUT_DIR/inside.txt"
"#
        ),
        &["--agent-heartbeat-timeout", HEARTBEAT],
    );
    let token = join_token(&s);
    let _agent = AgentProc::start(&s, &token, "a1", 1);
    let id = id_of(&s.trigger("boxed", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    assert!(
        run["jobs"][0]["worker"]
            .as_str()
            .unwrap()
            .starts_with("agent:a1:")
    );
    // The image's /bin/sh is busybox; the host's is not: the step ran in a container.
    assert_eq!(s.log_text(id, None).await, "sh is busybox\n");
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(s.job_dir(job, 1).join("out/inside.txt")).unwrap(),
        "made-inside\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_operators_and_administrators_manage_agents() {
    let s = Server::start_with(
        &format!("administrators: [boss]\n{}", config()),
        &["--agent-heartbeat-timeout", HEARTBEAT],
    );
    users::add_user(&s, "boss", "pw-boss-123");
    users::add_user(&s, "eve", "pw-eve-1234");
    let eve = users::user_token(&s, "eve");
    let boss = users::user_token(&s, "boss");
    let join = |token: String, name: &'static str| {
        let http = s.http.clone();
        let url = s.url("/agents/join");
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"name": name, "queues": ["arm"], "slots": 1}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A plain user could otherwise pull other people's jobs (and their secrets).
    assert_eq!(join(eve.clone(), "evil").await, 403);
    assert_eq!(join(boss.clone(), "good").await, 201);
    for (path, expect) in [("/agents", 403), ("/agents/good/disable", 403)] {
        let req = if path.ends_with("disable") {
            s.http.post(s.url(path))
        } else {
            s.http.get(s.url(path))
        };
        let st = req
            .bearer_auth(&eve)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(st, expect, "{path} as a plain user");
    }
    let st = s
        .http
        .post(s.url("/agents/good/disable"))
        .bearer_auth(&boss)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(st, 200);
}

/// The SHA-256 of a file, read in chunks.
fn sha256_file(path: &std::path::Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// A 200 MB artifact arrives whole (the upload streams past any body limit), a name with URL
/// syntax in it arrives as it is, and an artifact the server cannot store fails the run
/// visibly instead of letting it succeed without it.
#[tokio::test(flavor = "multi_thread")]
async fn big_artifacts_arrive_and_a_lost_one_breaks_the_run() {
    let s = Server::start_with(&config(), &["--agent-heartbeat-timeout", HEARTBEAT]);
    let open_gate = s.root.path().join("open");
    std::fs::write(&open_gate, "").unwrap();
    let token = join_token(&s);
    let _agent = AgentProc::start(&s, &token, "a1", 1);
    let id = id_of(
        &s.trigger("big", &[("gate", open_gate.to_str().unwrap())])
            .await,
    );
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}\n{}", s.stderr());
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let out = s.job_dir(job, 1).join("out");
    let big = out.join("big.bin");
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 209_715_200);
    let want: String = {
        use sha2::Digest;
        let line = b"baton artifact line\n";
        let mut h = sha2::Sha256::new();
        let mut left = 209_715_200usize;
        while left > 0 {
            let n = left.min(line.len());
            h.update(&line[..n]);
            left -= n;
        }
        hex::encode(h.finalize())
    };
    assert_eq!(sha256_file(&big), want, "the artifact arrived intact");
    assert_eq!(
        std::fs::read_to_string(out.join("report #1 ?x=%41.txt")).unwrap(),
        "odd\n"
    );

    // The server's folder for the next run's artifacts is made unusable while the job waits at
    // its gate: the uploads fail, and the run says so.
    let closed_gate = s.root.path().join("closed");
    let id = id_of(
        &s.trigger("big", &[("gate", closed_gate.to_str().unwrap())])
            .await,
    );
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let out = s.job_dir(job, 1).join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::write(&out, "not a folder").unwrap();
    std::fs::write(&closed_gate, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "broken", "{run:#}");
    assert!(
        reason(&run).contains("artifacts not stored on the server")
            && reason(&run).contains("big.bin"),
        "the reason names the lost artifact: {run:#}"
    );
}

/// `artifacts:` globs on an agent: its supervisor gathers them before the agent uploads `out/`,
/// and a missing required one fails the job through the exit record it reports.
#[tokio::test(flavor = "multi_thread")]
async fn artifacts_globs_are_kept_on_agents() {
    let yaml = format!(
        "server:\n  local_workers: 1\n  agent_queues: [arm]\n{}",
        common::globs::tasks("    queues: [arm]")
    );
    let s = Server::start_with(&yaml, &["--agent-heartbeat-timeout", HEARTBEAT]);
    let token = join_token(&s);
    let _agent = AgentProc::start(&s, &token, "g1", 1);
    common::globs::check(&s, "agent:g1:").await;
}

/// The CI cache for a repository job on an agent: the digest is made on the server, from its
/// own checkout of the commit, before the job is handed out; a commit that changes no input is
/// a hit the agent never runs, one that changes an input runs there.
#[tokio::test(flavor = "multi_thread")]
async fn the_cache_digest_of_an_agent_job_is_made_on_the_server() {
    use common::gitrepo::{commit, init};
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    let ran = tmp.path().join("ran");
    let ci = format!(
        "tasks:\n  build:\n    queues: [arm]\n    cache: {{inputs: [\"src/**\"]}}\n    command: cat src/a.c; echo \"$BATON_RUN_ID\" >> {}\n",
        ran.display()
    );
    commit(
        &repo,
        &[
            (".baton/ci.yml", ci.as_bytes()),
            ("src/a.c", b"one\n"),
            ("README.md", b"# a\n"),
        ],
        "one",
    );
    let yaml = format!(
        "server:\n  local_workers: 1\n  agent_queues: [arm]\nrepos:\n  app:\n    url: {}\n    forge: git\n",
        repo.display()
    );
    let s = Server::start_with(&yaml, &["--agent-heartbeat-timeout", HEARTBEAT]);
    let token = join_token(&s);
    let _agent = AgentProc::start(&s, &token, "c1", 1);
    let trigger = || async {
        let (st, run) = s
            .post("/tasks/app%2Fbuild/trigger", serde_json::json!({}))
            .await;
        assert_eq!(st, 201, "{run}");
        s.wait_run(run["id"].as_i64().unwrap()).await
    };
    let first = trigger().await;
    assert_eq!(status(&first), "success", "{first:#}");
    let job1 = &first["jobs"][0];
    assert!(
        job1["worker"].as_str().unwrap().starts_with("agent:c1:"),
        "{first:#}"
    );
    assert_eq!(s.log_text(id_of(&first), None).await, "one\n");

    commit(&repo, &[("README.md", b"# b\n")], "docs only");
    let second = trigger().await;
    let job2 = &second["jobs"][0];
    assert_eq!(status(job2), "skipped", "{second:#}");
    assert_eq!(
        reason(job2),
        format!(
            "cache hit: same inputs as job {} (run {})",
            job1["id"],
            id_of(&first)
        ),
        "{second:#}"
    );

    commit(&repo, &[("src/a.c", b"two\n")], "code");
    let third = trigger().await;
    assert_eq!(status(&third), "success", "{third:#}");
    assert_eq!(s.log_text(id_of(&third), None).await, "two\n");
    // The hit never reached the agent: two runs ran there.
    let lines = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(
        lines,
        format!("{}\n{}\n", id_of(&first), id_of(&third)),
        "runs that ran"
    );
}

/// The CI cache of a container job on an agent counts its image by the id the agent's own
/// engine gives: here a private Podman the agent talks to (`DOCKER_HOST`) holds the tag, and the
/// server's Docker engine has never heard of it. The same image hits; another image imported
/// under the same tag into the agent's engine misses, and `cache why` names both ids.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_jobs_image_counts_by_the_id_its_own_engine_gives() {
    use common::busybox::{Leftovers, docker};
    use common::gitrepo::{commit, init};
    use common::podman::Podman;
    let podman = Podman::start();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag = format!("baton-test-agent-cache-{nanos}:v1");
    let one = podman.import_as(&tag, "one");
    assert!(
        !docker(&["image", "inspect", &tag]).status.success(),
        "the server's engine must not have {tag}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    let ci = format!(
        "tasks:\n  build:\n    queues: [arm]\n    image: {tag}\n    cache: {{inputs: [\"src/**\"]}}\n    command: cat /marker\n"
    );
    commit(
        &repo,
        &[(".baton/ci.yml", ci.as_bytes()), ("src/a.c", b"one\n")],
        "one",
    );
    let yaml = format!(
        "server:\n  local_workers: 1\n  agent_queues: [arm]\nrepos:\n  app:\n    url: {}\n    forge: git\n",
        repo.display()
    );
    let s = Server::start_with(&yaml, &["--agent-heartbeat-timeout", HEARTBEAT]);
    let _leftovers = Leftovers::on_host(&s, podman.host());
    let token = join_token(&s);
    let agent = AgentProc::start_env(&s, &token, "p1", 1, &[("DOCKER_HOST", podman.host())]);
    let trigger = || async {
        let (st, run) = s
            .post("/tasks/app%2Fbuild/trigger", serde_json::json!({}))
            .await;
        assert_eq!(st, 201, "{run}");
        s.wait_run(run["id"].as_i64().unwrap()).await
    };
    let job_of = |run: &serde_json::Value| run["jobs"][0]["id"].as_i64().unwrap();

    let first = trigger().await;
    assert_eq!(status(&first), "success", "{first:#}\n{}", agent.output());
    assert!(
        first["jobs"][0]["worker"]
            .as_str()
            .unwrap()
            .starts_with("agent:p1:"),
        "{first:#}"
    );
    assert_eq!(s.log_text(id_of(&first), None).await, "one");

    let same = trigger().await;
    assert_eq!(status(&same["jobs"][0]), "skipped", "{same:#}");
    assert_eq!(
        reason(&same["jobs"][0]),
        format!(
            "cache hit: same inputs as job {} (run {})",
            job_of(&first),
            id_of(&first)
        )
    );

    // Another image under the same tag in the agent's engine: a miss, run there.
    let two = podman.import_as(&tag, "two");
    assert_ne!(one, two);
    let again = trigger().await;
    assert_eq!(status(&again), "success", "{again:#}\n{}", agent.output());
    assert_eq!(s.log_text(id_of(&again), None).await, "two");
    // Both facts carry the ids the agent's engine gave (the server's engine has no such tag).
    let why = s.cli(&["cache", "why", &job_of(&again).to_string()]);
    let (stdout, stderr) = common::text(&why);
    assert!(why.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("image: {tag}@{one} -> {tag}@{two}")),
        "{stdout}"
    );
}
