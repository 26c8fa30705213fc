//! Autoscaled agent pools with the `command` provider: the server starts real `baton agent`
//! processes through an `up` script when the pool's queue has waiting jobs (up to `max`), the
//! runs finish on them, the agents leave after their idle timeout (credentials revoked, `down`
//! run with each name), and `GET /api/v1/pools`, the queue page and `/metrics` show size,
//! desired size and why.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{BIN, Server, WAIT, gate, id_of, status};

/// The pool's scripts and the agents' folders, outside the server's; the agents the `up`
/// script started are killed when it is dropped (a failing test leaves none behind).
struct PoolDir {
    dir: tempfile::TempDir,
}

impl PoolDir {
    fn new() -> PoolDir {
        let dir = tempfile::Builder::new()
            .prefix("baton-pool-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("pids")).unwrap();
        PoolDir { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\nset -eu\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// The pids of the agents the `up` script started, by agent name.
    fn agents(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = std::fs::read_dir(self.path().join("pids"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = std::fs::read_to_string(e.path())
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                Some((name, pid))
            })
            .collect();
        out.sort();
        out
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for PoolDir {
    fn drop(&mut self) {
        for (_, pid) in self.agents() {
            // SAFETY: kill(2) on a pid this test's `up` script started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by init) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The `up` script: one real `baton agent` per name, its join token only in its environment.
fn up_script(pd: &PoolDir) -> PathBuf {
    let dir = pd.path();
    pd.script(
        "up.sh",
        &format!(
            r#"echo "up $BATON_POOL $BATON_COUNT" >> {dir}/up.log
# Nothing of the environment but names reaches the log: tokens stay secret.
i=0
for name in $BATON_AGENT_NAMES; do
  i=$((i+1))
  token=$(echo "$BATON_JOIN_TOKENS" | tr ' ' '\n' | sed -n "${{i}}p")
  BATON_AGENT_TOKEN="$token" BATON_AGENT_NAME="$name" \
    nohup {bin} agent --work-dir {dir}/agent-$name \
    </dev/null >>{dir}/agent-$name.log 2>&1 &
  echo $! > {dir}/pids/$name
done
"#,
            bin = BIN,
            dir = dir.display(),
        ),
    )
}

fn config(pd: &PoolDir, up: &Path, down: &Path, min: u32) -> String {
    let _ = pd;
    format!(
        r#"
server:
  local_workers: 1
  kill_grace: 1s
pools:
  arm:
    queues: [arm]
    min: {min}
    max: 2
    idle_timeout: 2s
    provider:
      command: {{up: {up}, down: {down}}}
tasks:
  on-arm:
    queues: [arm]
    concurrency: 5
    wait_list: {{size: 10}}
    command: |
      echo "on $BATON_WORKER"
      {gate}
"#,
        up = up.display(),
        down = down.display(),
        gate = gate("gate"),
    )
}

async fn pool(s: &Server) -> Value {
    let v = s.get_ok("/pools").await;
    v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "arm")
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_pool(s: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = pool(s).await;
        if pred(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "the pool never got {what}: {p:#}\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_starts_agents_for_its_backlog_and_they_leave_when_idle() {
    let pd = PoolDir::new();
    let up = up_script(&pd);
    let down = pd.script(
        "down.sh",
        &format!(
            "echo \"$1 $BATON_POOL\" >> {}/down.log\n",
            pd.path().display()
        ),
    );
    let s = Server::start(&config(&pd, &up, &down, 0));
    // No backlog: nothing is started.
    let p = wait_pool(&s, "a first look", |p| !p.is_null()).await;
    assert_eq!(
        (p["size"].as_u64(), p["desired"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        p["why"].as_str().unwrap().starts_with("no backlog"),
        "{p:#}"
    );
    assert!(pd.lines("up.log").is_empty());

    let open = s.root.path().join("open");
    let args = [("gate", open.to_str().unwrap())];
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(id_of(&s.trigger("on-arm", &args).await));
    }
    // Four jobs wait, max is 2: two agents start, and the pool says it is at max.
    let p = wait_pool(&s, "two agents", |p| p["size"] == 2).await;
    assert_eq!(p["desired"], 2, "{p:#}");
    let p = wait_pool(&s, "'at max'", |p| {
        p["why"].as_str().unwrap_or("").starts_with("at max")
    })
    .await;
    assert_eq!(p["max"], 2);
    // The queue page and /metrics show the pool's size, desired size and why.
    let page = s
        .http
        .get(format!("{}/", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    let row = html
        .split("<tr data-pool=\"arm\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for pool arm on the queue page:\n{html}"));
    assert!(row.contains("<td class=\"pool-size\">2"), "{row}");
    assert!(row.contains("<td class=\"pool-desired\">2 "), "{row}");
    assert!(row.contains("at max: backlog"), "{row}");
    let metrics = s.metrics().await;
    for (series, want) in [
        ("baton_pool_size{pool=\"arm\"} ", "2"),
        ("baton_pool_desired_size{pool=\"arm\"} ", "2"),
        ("baton_pool_starting{pool=\"arm\"} ", "0"),
    ] {
        let got = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series}in:\n{metrics}"));
        assert_eq!(got, want, "{series}");
    }
    let agents = pd.agents();
    assert_eq!(agents.len(), 2, "never more than max: {agents:?}");
    for (name, pid) in &agents {
        assert!(name.starts_with("arm-"), "{name}");
        // The join token reached the agent in its environment, never on its command line.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("baton_"),
            "a token on the command line of {name}"
        );
    }
    // Credentials, kept to try them after the agents left.
    let creds: Vec<String> = agents
        .iter()
        .map(|(name, _)| {
            std::fs::read_to_string(pd.path().join(format!("agent-{name}/credential")))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    // The server's log never holds a join token or a credential.
    let log = s.stderr();
    for c in &creds {
        assert!(!log.contains(c.as_str()));
    }

    std::fs::write(&open, "").unwrap();
    for id in &ids {
        let run = s.wait_run(*id).await;
        assert_eq!(status(&run), "success", "{run:#}");
        let worker = run["jobs"][0]["worker"].as_str().unwrap();
        assert!(worker.starts_with("agent:arm-"), "{run:#}");
    }
    let up_calls = pd.lines("up.log");
    let started: u32 = up_calls
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(started, 2, "{up_calls:?}");

    // Idle for 2 s, each agent leaves and exits; the server runs `down` with its name.
    let deadline = Instant::now() + WAIT;
    while agents.iter().any(|(_, pid)| alive(*pid)) {
        assert!(Instant::now() < deadline, "the agents never left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let mut down_calls = pd.lines("down.log");
        down_calls.sort();
        let want: Vec<String> = agents.iter().map(|(n, _)| format!("{n} arm")).collect();
        if down_calls == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "down ran for {down_calls:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, _) in &agents {
        let out = std::fs::read_to_string(pd.path().join(format!("agent-{name}.log"))).unwrap();
        assert!(out.contains("left the server"), "{name}: {out}");
    }
    // Their credentials are revoked.
    for c in &creds {
        let resp = s
            .http
            .post(s.url("/agents/poll?wait=1"))
            .bearer_auth(c)
            .json(&json!({"queues": ["arm"], "slots": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    let p = wait_pool(&s, "no agents", |p| p["size"] == 0).await;
    assert_eq!(p["desired"], 0, "{p:#}");
    assert!(
        p["why"].as_str().unwrap().starts_with("no backlog"),
        "{p:#}"
    );
    // Their worker slots are gone from the workers list too.
    let w = s.get_ok("/workers").await;
    assert!(
        !w.to_string().contains("agent:arm-"),
        "left agents still listed: {w:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_join_token_is_good_for_one_join_of_its_agent() {
    let pd = PoolDir::new();
    // This `up` keeps the token for the test instead of starting an agent (a file only the
    // test reads, in the test's own folder).
    let up = pd.script(
        "up.sh",
        &format!(
            "umask 077\necho \"$BATON_AGENT_NAME $BATON_JOIN_TOKEN $BATON_COUNT\" > {dir}/token.tmp\nmv {dir}/token.tmp {dir}/token\n",
            dir = pd.path().display()
        ),
    );
    let down = pd.script("down.sh", "true\n");
    // min: 1 starts an agent with no backlog.
    let s = Server::start(&config(&pd, &up, &down, 1));
    common::wait_file(&pd.path().join("token")).await;
    let line = std::fs::read_to_string(pd.path().join("token")).unwrap();
    let mut parts = line.split_whitespace();
    let (name, token, count) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap(),
    );
    assert_eq!(count, "1");
    let p = wait_pool(&s, "one starting", |p| p["starting"] == 1).await;
    assert_eq!(p["desired"], 1, "{p:#}");
    assert!(p["why"].as_str().unwrap().starts_with("min"), "{p:#}");

    let join = |name: String| {
        let (s, token) = (&s, token.clone());
        async move {
            s.http
                .post(s.url("/agents/join"))
                .bearer_auth(token)
                .json(&json!({"name": name, "queues": ["other"], "slots": 7}))
                .send()
                .await
                .unwrap()
        }
    };
    // Not an API token.
    let resp = s
        .http
        .get(s.url("/runs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // Only for the agent it was made for (and that does not use it up).
    let resp = join("someone-else".into()).await;
    assert_eq!(resp.status().as_u16(), 403);
    let resp = join(name.clone()).await;
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["pool"], "arm");
    assert!(body["credential"].as_str().unwrap().starts_with("baton_"));
    // The agent serves the pool's queues, whatever it asked for.
    let agents = s.get_ok("/agents").await;
    let a = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name.as_str())
        .unwrap()
        .clone();
    assert_eq!(a["queues"], json!(["arm"]), "{a:#}");
    assert_eq!(a["slots"], 1);
    assert_eq!(a["pool"], "arm");
    // Used once: a second join is refused.
    let resp = join(name.clone()).await;
    assert_eq!(resp.status().as_u16(), 401);
    let p = wait_pool(&s, "the agent joined", |p| p["starting"] == 0).await;
    assert_eq!(p["size"], 1, "{p:#}");
}
