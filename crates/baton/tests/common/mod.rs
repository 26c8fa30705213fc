//! Test harness: runs the real `baton` binary as a server on a free port with a temporary data
//! directory, and talks to it over HTTP and through the CLI.
//!
//! Every wait is bounded and fails loudly with context; nothing asserts on wall time.

#![allow(dead_code)]

pub mod busybox;
pub mod fakeforge;
pub mod forgehook;
pub mod gitea_tokens;
pub mod gitrepo;
pub mod globs;
pub mod idp;
pub mod podman;
pub mod pulls;
pub mod sse;
pub mod sshhosts;
pub mod standin;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_baton");

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(45);

pub struct Server {
    /// Holds the config dir, the data dir and the server's stderr.
    pub root: tempfile::TempDir,
    pub config_dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    /// The address the server listens on (127.0.0.1 unless started with [`Server::start_on`]).
    pub host: String,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    child: Option<Child>,
    starts: u32,
    /// Extra `baton serve` arguments, kept for restarts.
    serve_args: Vec<String>,
    /// Extra environment of the server, kept for restarts.
    envs: Vec<(String, String)>,
    /// The server's `--db` when the suite runs on PostgreSQL (`BATON_TEST_DB=postgres`): a
    /// fresh database of its own; `None`: the data directory's SQLite file.
    pub db: Option<String>,
}

/// A fresh database on `BATON_TEST_PG`'s server; panics (the test fails) without one.
pub fn fresh_postgres() -> String {
    std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(baton_store::testing::fresh_postgres())
    })
    .join()
    .unwrap()
    .map(|db| match db {
        baton_store::Database::Postgres(url) => url,
        baton_store::Database::Sqlite(_) => unreachable!(),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A PostgreSQL client program from Debian's packages (the newest version installed).
pub fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian's postgresql package)")
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no {name} under /usr/lib/postgresql/*/bin"))
}

/// Which database the suite's servers use: `BATON_TEST_DB=postgres` gives each server a fresh
/// database on `BATON_TEST_PG`'s server (and fails loudly without one); unset or `sqlite`, the
/// data directory's SQLite file.
pub fn test_database() -> Option<String> {
    match std::env::var("BATON_TEST_DB").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => None,
        Ok("postgres") => {
            // Its own runtime on its own thread: callers may be inside one already.
            let db = std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(baton_store::testing::fresh_postgres())
            })
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("BATON_TEST_DB=postgres: {e}"));
            let baton_store::Database::Postgres(url) = db else {
                unreachable!("fresh_postgres makes PostgreSQL databases")
            };
            Some(url)
        }
        Ok(other) => panic!("BATON_TEST_DB={other:?}: expected sqlite or postgres"),
    }
}

impl Server {
    /// Writes `config_yaml` to `<root>/config/baton.yaml` and starts the server on it.
    pub fn start(config_yaml: &str) -> Server {
        Self::start_with(config_yaml, &[])
    }

    /// Like [`Server::start`], with extra `baton serve` arguments.
    pub fn start_with(config_yaml: &str, serve_args: &[&str]) -> Server {
        Server::start_full(config_yaml, "127.0.0.1", serve_args)
    }

    /// Like [`Server::start`], with extra environment variables for the server.
    pub fn start_env(config_yaml: &str, envs: &[(&str, &str)]) -> Server {
        Server::start_full_env(config_yaml, "127.0.0.1", &[], envs)
    }

    /// Like [`Server::start`], listening on `host` (e.g. a test bridge's address).
    pub fn start_on(config_yaml: &str, host: &str) -> Server {
        Server::start_full(config_yaml, host, &[])
    }

    /// [`Server::start_on`] with extra environment variables for the server.
    pub fn start_on_env(config_yaml: &str, host: &str, envs: &[(&str, &str)]) -> Server {
        Server::start_full_env(config_yaml, host, &[], envs)
    }

    fn start_full(config_yaml: &str, host: &str, serve_args: &[&str]) -> Server {
        Server::start_full_env(config_yaml, host, serve_args, &[])
    }

    /// Like [`Server::start`], on database `db` (`--db`; `None`: the data directory's SQLite
    /// file), whatever `BATON_TEST_DB` says.
    pub fn start_with_db(config_yaml: &str, db: Option<String>) -> Server {
        Server::start_inner(config_yaml, "127.0.0.1", &[], &[], Some(db), None)
    }

    /// Like [`Server::start_with_db`], on an existing data directory (a restored backup's).
    pub fn start_on_data(config_yaml: &str, db: Option<String>, data: &Path) -> Server {
        Server::start_inner(config_yaml, "127.0.0.1", &[], &[], Some(db), Some(data))
    }

    fn start_full_env(
        config_yaml: &str,
        host: &str,
        serve_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        Server::start_inner(config_yaml, host, serve_args, envs, None, None)
    }

    fn start_inner(
        config_yaml: &str,
        host: &str,
        serve_args: &[&str],
        envs: &[(&str, &str)],
        db: Option<Option<String>>,
        data: Option<&Path>,
    ) -> Server {
        let root = tempfile::Builder::new()
            .prefix("baton-test-")
            .tempdir()
            .expect("tempdir");
        let rootp = root.path().canonicalize().expect("canonical tempdir");
        let config_dir = rootp.join("config");
        let data = data.map_or_else(|| rootp.join("data"), Path::to_path_buf);
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(config_dir.join("baton.yaml"), config_yaml).unwrap();
        // Port 0: the server binds a free port itself and names it in its ready line; restarts
        // reuse that port (agents and SSH workers call back to it).
        let mut s = Server {
            root,
            config_dir,
            data,
            port: 0,
            host: host.to_string(),
            base: String::new(),
            token: String::new(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            child: None,
            starts: 0,
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            db: db.unwrap_or_else(test_database),
        };
        s.spawn();
        s.token = s.create_token();
        s
    }

    fn stderr_path(&self, n: u32) -> PathBuf {
        self.root.path().join(format!("server-stderr-{n}.log"))
    }

    /// Everything the server wrote on stderr so far (all starts).
    pub fn stderr(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            if let Ok(t) = std::fs::read_to_string(self.stderr_path(n)) {
                out.push_str(&format!("--- server start {n} stderr ---\n{t}"));
            }
        }
        out
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let err = std::fs::File::create(self.stderr_path(self.starts)).unwrap();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_dir)
            .arg("--data")
            .arg(&self.data)
            .args(self.db.iter().flat_map(|db| ["--db", db]))
            .arg("--listen")
            .arg(format!("{}:{}", self.host, self.port))
            .args(&self.serve_args)
            .env_remove("BATON_TOKEN")
            .env_remove("BATON_SERVER")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn baton serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                let _ = tx.send(std::mem::take(&mut line));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with("baton ready on http://") => {
                    let addr = line["baton ready on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default();
                    let port = addr
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok());
                    let Some(port) = port else {
                        panic!("no port in the ready line {line:?}")
                    };
                    assert!(
                        self.port == 0 || self.port == port,
                        "restarted on port {port}, not {}",
                        self.port
                    );
                    self.port = port;
                    self.base = format!("http://{}:{port}", self.host);
                    break;
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = child.wait();
                    self.child = None;
                    panic!(
                        "baton serve exited before it was ready ({st:?})\n{}",
                        self.stderr()
                    );
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "baton serve exited before it was ready ({st})\n{}",
                    self.stderr()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "baton serve printed no ready line within 20 s\n{}",
                    self.stderr()
                );
            }
        }
        self.child = Some(child);
    }

    fn create_token(&self) -> String {
        let out = Command::new(BIN)
            .args(["token", "create"])
            .args(self.data_args())
            .output()
            .expect("run baton token create");
        assert!(
            out.status.success(),
            "baton token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(token.starts_with("baton_"), "unexpected token {token:?}");
        token
    }

    /// `--data DIR` and, on PostgreSQL, `--db URL`: for the commands that work on the
    /// server's store directly (`token`, `user`, `migrate`, `backup`, `prune`).
    pub fn data_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec!["--data".into(), self.data.clone().into_os_string()];
        if let Some(db) = &self.db {
            args.extend(["--db".into(), db.into()]);
        }
        args
    }

    /// Runs `sql` on the server's database with its own client (`sqlite3` on the data
    /// directory's file, or Debian's `psql` on PostgreSQL) and returns what it printed: one line
    /// a row, columns separated by `|`. Fails the test if the statement fails.
    pub fn sql(&self, sql: &str) -> String {
        let out = match &self.db {
            None => Command::new("sqlite3")
                .arg(self.data.join("baton.db"))
                .arg(sql)
                .output()
                .expect("run sqlite3 (Debian's sqlite3)"),
            Some(url) => Command::new(pg_bin("psql"))
                .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", url, "-c", sql])
                .output()
                .expect("run psql"),
        };
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// SIGKILL the server (its jobs' supervisors live on) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (bounded by [`WAIT`]) for the server to exit on its own; its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("server running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {WAIT:?}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start again with the same config, data dir and port.
    pub fn restart(&mut self) {
        self.kill9();
        // A new client: a kept-alive connection to the killed server is dead.
        self.http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        self.spawn();
    }

    /// Replaces the config file (for reloads).
    pub fn write_config(&self, name: &str, yaml: &str) {
        std::fs::write(self.config_dir.join(name), yaml).unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn json_of(&self, what: &str, resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: answer {status} is not JSON ({e}): {text:?}"))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.stderr()));
        self.json_of(&format!("GET {path}"), resp).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.stderr()));
        self.json_of(&format!("POST {path}"), resp).await
    }

    /// GET that must answer 200; returns the JSON.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (st, v) = self.get(path).await;
        assert_eq!(st, 200, "GET {path} answered {st}: {v}");
        v
    }

    /// `GET /metrics` as the administrator (Prometheus text); must answer 200.
    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let st = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(st, 200, "GET /metrics answered {st}: {text}");
        text
    }

    /// Triggers a task (or pipeline with `pipeline = true`); must answer 201.
    pub async fn trigger_kind(&self, kind: &str, name: &str, args: &[(&str, &str)]) -> Value {
        let args: serde_json::Map<String, Value> = args
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let path = format!("/{kind}/{name}/trigger");
        let (st, v) = self.post(&path, json!({ "args": args })).await;
        assert_eq!(st, 201, "POST {path} answered {st}: {v}");
        v
    }

    pub async fn trigger(&self, task: &str, args: &[(&str, &str)]) -> Value {
        self.trigger_kind("tasks", task, args).await
    }

    pub async fn trigger_pipeline(&self, name: &str, args: &[(&str, &str)]) -> Value {
        self.trigger_kind("pipelines", name, args).await
    }

    pub async fn run(&self, id: i64) -> Value {
        self.get_ok(&format!("/runs/{id}")).await
    }

    /// Long-polls `/runs/{id}/wait` until the run is terminal; panics after [`WAIT`].
    pub async fn wait_run(&self, id: i64) -> Value {
        self.wait_run_for(id, WAIT).await
    }

    pub async fn wait_run_for(&self, id: i64, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let run = self.get_ok(&format!("/runs/{id}/wait?timeout=2")).await;
            if is_terminal(&run) {
                return run;
            }
            if Instant::now() > deadline {
                panic!(
                    "run {id} did not end within {limit:?}; last seen: {run:#}\nqueue: {}\n{}",
                    self.get_ok("/queue").await,
                    self.stderr()
                );
            }
        }
    }

    /// Polls the run until `pred` holds; panics with the last state after [`WAIT`].
    pub async fn wait_until(&self, id: i64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let run = self.run(id).await;
            if pred(&run) {
                return run;
            }
            if Instant::now() > deadline {
                panic!(
                    "run {id}: {what} did not happen within {WAIT:?}; last seen: {run:#}\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The raw log of a run's job.
    pub async fn log(&self, id: i64, job: Option<&str>) -> Vec<u8> {
        let mut path = format!("/runs/{id}/log");
        if let Some(j) = job {
            path.push_str(&format!("?job={j}"));
        }
        let resp = self
            .http
            .get(self.url(&path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        resp.bytes().await.unwrap().to_vec()
    }

    /// The stream (`stdout`, `stderr`) the log's index gives byte `offset` of run `id`'s log.
    pub async fn stream_at(&self, id: i64, offset: u64) -> String {
        let marks = self.get_ok(&format!("/runs/{id}/log/marks")).await;
        let mark = marks["marks"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|m| m["offset"].as_u64().unwrap() <= offset)
            .unwrap_or_else(|| panic!("no mark at {offset}: {marks}"));
        mark["stream"].as_str().unwrap().to_string()
    }

    pub async fn log_text(&self, id: i64, job: Option<&str>) -> String {
        String::from_utf8_lossy(&self.log(id, job).await).into_owned()
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("BATON_SERVER", &self.base)
            .env("BATON_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()
            .expect("run the baton CLI")
    }

    /// The server's peak resident set size (`VmHWM`), in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// The working directory of a job attempt.
    pub fn job_dir(&self, job_id: i64, attempt: u64) -> PathBuf {
        self.data
            .join("jobs")
            .join(job_id.to_string())
            .join(attempt.to_string())
    }

    /// SIGKILLs every process that belongs to this server's jobs: supervisors (their command
    /// line names a job dir under the data dir) and whatever runs in a job's work dir, and
    /// their process groups.
    pub fn kill_leftovers(&self) {
        for _ in 0..5 {
            let pids = processes_under(&self.data);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: plain syscalls on pids we found under our own data dir.
                unsafe {
                    let pgid = libc::getpgid(pid);
                    if pgid > 1 && pgid != libc::getpgrp() {
                        libc::kill(-pgid, libc::SIGKILL);
                    }
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        self.kill_leftovers();
        self.remove_job_cgroups();
    }
}

impl Server {
    /// Removes the cgroups that `process.json` files under the data dir (the server's jobs and
    /// those of agents working there) name, so jobs cut short by the end of a test leave
    /// nothing behind on the machine.
    fn remove_job_cgroups(&self) {
        fn walk(dir: &Path, depth: u32, found: &mut Vec<PathBuf>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if e.file_name() == "process.json" {
                    found.push(p);
                } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, depth - 1, found);
                }
            }
        }
        let mut records = Vec::new();
        walk(&self.data, 5, &mut records);
        for path in records {
            let rec: Value = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if let Some(cg) = rec["cgroup"].as_str()
                && cg.contains("/baton-jobs/job-")
            {
                let cg = Path::new(cg);
                let _ = std::fs::write(cg.join("cgroup.kill"), "1");
                // Killed processes leave the cgroup asynchronously: a bounded retry.
                for _ in 0..100 {
                    if std::fs::remove_dir(cg).is_ok() || !cg.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Pids (other than ours) whose command line or working directory is under `dir`.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let mut cmdline = Vec::new();
        let _ = std::fs::File::open(e.path().join("cmdline"))
            .and_then(|mut f| f.read_to_end(&mut cmdline));
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        if cmd.contains(&needle) || cwd.starts_with(dir) {
            // Zombies have an empty cmdline; skip those that are already dead.
            if !is_dead(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// Whether `pid` is gone (or a zombie).
pub fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.trim_start().starts_with('Z') || rest.trim_start().starts_with('X')
            })
            .unwrap_or(false),
    }
}

pub fn is_terminal(run: &Value) -> bool {
    !matches!(
        run["status"].as_str(),
        Some("queued" | "started" | "running") | None
    )
}

pub fn id_of(run: &Value) -> i64 {
    run["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no run id in {run}"))
}

/// The job named `name` of a run.
pub fn job<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["jobs"]
        .as_array()
        .and_then(|js| js.iter().find(|j| j["name"] == name))
        .unwrap_or_else(|| panic!("run has no job {name:?}: {run:#}"))
}

pub fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("")
}

pub fn reason(v: &Value) -> &str {
    v["reason"].as_str().unwrap_or("")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Waits (bounded) until `path` exists.
pub async fn wait_file(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {WAIT:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A shell snippet that waits (bounded, 60 s) for the file named by the env var `var`, then
/// exits the loop; exits 9 if it never appears.
pub fn gate(var: &str) -> String {
    format!(
        "for i in $(seq 1200); do [ -e \"${var}\" ] && break; sleep 0.05; done; [ -e \"${var}\" ] || exit 9"
    )
}
