//! [`SshExecutor`]: agentless SSH workers (the py4CI model). One executor per worker.
//!
//! Nothing is installed on the worker: it needs `sshd`, `bash`, coreutils, `dtach` and `curl`.
//! The server drives it with the system OpenSSH client (`BatchMode`, host keys checked against
//! `server.known_hosts`, one reused `ControlMaster` connection per worker under `<data>/ssh/`).
//!
//! Start: one `ssh … bash -s` uploads the job folder `<work_dir>/jobs/<job>/<attempt>/` (script,
//! environment file, runner, callback URL and token, all as base64 so no value is ever shell
//! syntax) and starts the runner detached under `dtach -n`, so it survives a dropped connection
//! and a restarted server. The runner (see [`RUNNER`]) runs `bash -eo pipefail script.sh` in
//! `work/` in its own process group (recorded in `pgid`), appends stdout + stderr to `log`,
//! enforces the timeout and a cancel request (the file `cancel`) with SIGTERM then SIGKILL to
//! that group, writes the exit code to `exit`, and reports with `curl` to
//! `POST /api/v1/callbacks/jobs/{job}` (header `X-Baton-Job-Token`).
//!
//! Meanwhile the server streams the log with `tail -c +OFFSET --pid=RUNNER -F log`, masks
//! secrets, appends to its own job `log` and records `(remote offset, local length)` in
//! `log.offset` after every write; after a dropped connection or a server restart it truncates
//! its log to the recorded length and resumes from the recorded offset: nothing lost, nothing
//! twice. Waiting polls the worker (every `heartbeat_timeout / 3`, at most 5 s; the callback only
//! wakes it early) — a missed callback is recovered by that poll, and a worker unreachable for
//! longer than `heartbeat_timeout` makes the job [`Outcome::Lost`]. At the end the artifacts
//! (`out/`) come back over `scp`, the server writes `exit.json` and the folder on the worker is
//! removed.
//!
//! Server-side job folder additions: `ssh.json` ([`SshJobInfo`]) and `log.offset`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::callback::{self, CallbackHub};
use crate::error::ExecError;
use crate::executor::{BoxFuture, Executor, Health, Reattached, RunningJob};
use crate::job::{ExitRecord, JobSpec, Outcome};
use crate::layout::{
    EXIT_FILE, LOG_FILE, OUT_DIR, SPEC_FILE, read_exit, try_read_json, write_atomic,
};
use crate::mask::Masker;

/// What the server keeps about an SSH job, in `ssh.json` of the job folder.
pub const SSH_FILE: &str = "ssh.json";
/// `"<remote offset> <local log length>"`, rewritten after every log write.
pub const OFFSET_FILE: &str = "log.offset";

/// The runner, started under dtach in the job folder on the worker. `@LIMIT@` (timeout in
/// 0.2 s ticks, 0 = none) and `@GRACE@` (seconds) are numbers filled in by the server; every
/// other value comes from files in the folder.
const RUNNER: &str = r#"# Baton job runner: started under dtach in its job folder on the worker.
cd "$(dirname "$0")" || exit 1
echo $$ > runner.pid.tmp && mv runner.pid.tmp runner.pid
set -m
(
  . ./env.sh
  BATON_OUTPUT_DIR="$PWD/out"; export BATON_OUTPUT_DIR
  cd work && exec bash -eo pipefail ../script.sh
) </dev/null >>log 2>&1 &
job=$!
echo "$job" > pgid.tmp && mv pgid.tmp pgid
(
  n=0
  while :; do
    if [ -e cancel ]; then : > canceled; break; fi
    if [ @LIMIT@ -gt 0 ] && [ "$n" -ge @LIMIT@ ]; then : > timed_out; break; fi
    sleep 0.2; n=$((n+1))
  done
  kill -TERM -- "-$job" 2>/dev/null
  sleep @GRACE@
  kill -KILL -- "-$job" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
dog=$!
wait "$job"; code=$?
kill -KILL -- "-$dog" 2>/dev/null
kill -KILL -- "-$job" 2>/dev/null
echo "$code" > exit.tmp && mv exit.tmp exit
curl -fsS --max-time 10 --retry 3 --retry-delay 1 --retry-all-errors -X POST \
  -H @callback.hdr --data-binary @exit "$(cat callback.url)" >/dev/null 2>&1 ||
  curl -fsS --max-time 10 -X POST \
  -H @callback.hdr --data-binary @exit "$(cat callback.url)" >/dev/null 2>&1
exit 0
"#;

/// How one SSH worker is reached.
#[derive(Clone, Debug)]
pub struct SshSettings {
    /// The worker's name (for messages).
    pub worker: String,
    /// `user@host[:port]` as configured.
    pub host: String,
    /// `ssh -i` key; `None` uses ssh's defaults.
    pub key: Option<PathBuf>,
    /// `UserKnownHostsFile`; `None` uses ssh's default.
    pub known_hosts: Option<PathBuf>,
    /// Where the ControlMaster sockets live (`<data>/ssh`).
    pub control_dir: PathBuf,
    /// The folder on the worker that holds `jobs/` (relative to the login home unless absolute).
    pub work_dir: String,
    /// Base URL of this server as the worker reaches it (`http://10.0.0.1:8700`).
    pub callback_url: String,
    /// How long the worker may be unreachable before a running job is lost.
    pub heartbeat_timeout: Duration,
}

/// Runs jobs on one SSH worker. Cheap to share (`Arc` inside); a background task checks the
/// worker's health until the executor is dropped.
pub struct SshExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    s: SshSettings,
    /// `user@host` without the port.
    dest: String,
    port: Option<u16>,
    hub: CallbackHub,
    health: Mutex<Health>,
    /// When the worker last answered a health check.
    last_ok: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

/// `ssh.json`: which worker runs the job, where, and the hash of its callback token.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SshJobInfo {
    pub worker: String,
    pub host: String,
    /// The job folder on the worker.
    pub remote_dir: String,
    /// SHA-256 of the job's callback token, hex.
    pub token_sha256: String,
    pub started_at: DateTime<Utc>,
}

/// What the worker says about a job folder.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Running,
    Exited {
        code: i32,
        canceled: bool,
        timed_out: bool,
    },
    Vanished(String),
}

impl SshExecutor {
    /// An executor for one worker; starts its health check (call inside a tokio runtime).
    pub fn new(settings: SshSettings, hub: CallbackHub) -> Self {
        let (dest, port) = split_host(&settings.host);
        let inner = Arc::new(Inner {
            s: settings,
            dest,
            port,
            hub,
            health: Mutex::new(Health::Down("not checked yet".into())),
            last_ok: Mutex::new(None),
        });
        tokio::spawn(health_loop(Arc::downgrade(&inner)));
        SshExecutor { inner }
    }
}

/// `user@host:port` → (`user@host`, port). Several colons (IPv6) are left alone.
fn split_host(h: &str) -> (String, Option<u16>) {
    let (user, rest) = match h.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, h),
    };
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, port.parse().ok()),
        _ => (rest, None),
    };
    let dest = match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    };
    (dest, port)
}

/// `'…'` quoting for POSIX shells: safe for any value without NUL.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn valid_env_name(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// The job's environment as a file bash sources: `export NAME='value'` lines, every value
/// quoted by [`shell_quote`]. Names must be valid shell names.
fn env_file(spec: &JobSpec) -> Result<String, String> {
    let mut out = String::new();
    let fixed = [
        ("BATON_RUN_ID".to_string(), spec.run_id.to_string()),
        ("BATON_JOB_ID".to_string(), spec.job_id.to_string()),
        ("BATON_TASK".to_string(), spec.task.clone()),
    ];
    for (k, v) in spec.env.iter().chain(fixed.iter()) {
        if !valid_env_name(k) {
            return Err(format!(
                "environment variable name {k:?} cannot be set by a shell on an SSH worker"
            ));
        }
        if v.contains('\0') {
            return Err(format!(
                "environment variable {k} contains a NUL byte, which no environment can carry"
            ));
        }
        out.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    Ok(out)
}

fn runner(spec: &JobSpec) -> String {
    let limit = spec
        .timeout
        .map_or(0, |t| t.as_millis().div_ceil(200).max(1) as u64);
    RUNNER
        .replace("@LIMIT@", &limit.to_string())
        .replace("@GRACE@", &format!("{:.3}", spec.kill_grace.as_secs_f64()))
}

fn hint(detail: &str) -> String {
    let d = detail.trim();
    let h = if d.contains("Host key verification failed") || d.contains("host key") {
        " (hint: add the worker's host key to server.known_hosts, e.g. with ssh-keyscan)"
    } else if d.contains("Permission denied") {
        " (hint: put the public half of server.ssh_key into the worker's ~/.ssh/authorized_keys)"
    } else if d.contains("dtach: command not found") || d.contains("curl: command not found") {
        " (hint: the worker needs dtach and curl installed)"
    } else {
        ""
    };
    format!("{d}{h}")
}

/// Whether an ssh failure happened before any command could run on the worker (or the
/// worker refused to start the job), so the job cannot have started.
fn never_connected(e: &ExecError) -> bool {
    let ExecError::Ssh { detail, .. } = e else {
        return true;
    };
    [
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "Could not resolve",
        "Permission denied",
        "Host key verification failed",
        "cannot run ssh",
        "already started",
        "command not found",
    ]
    .iter()
    .any(|m| detail.contains(m))
}

impl Inner {
    fn err(&self, action: &'static str, detail: impl AsRef<str>) -> ExecError {
        ExecError::Ssh {
            worker: self.s.worker.clone(),
            host: self.s.host.clone(),
            action,
            detail: hint(detail.as_ref()),
        }
    }

    /// Options shared by ssh and scp.
    fn opts(&self) -> Vec<OsString> {
        let connect = self.s.heartbeat_timeout.as_secs().clamp(1, 10);
        let mut o: Vec<OsString> = Vec::new();
        let mut opt = |s: String| {
            o.push("-o".into());
            o.push(s.into());
        };
        opt("BatchMode=yes".into());
        opt("ControlMaster=auto".into());
        // One master connection per worker (not per host): several workers on one host would
        // otherwise share one connection and could exceed sshd's MaxSessions (default 10).
        let tag = &hex::encode(callback::token_hash(&self.s.worker))[..8];
        opt(format!(
            "ControlPath={}/{tag}-%C",
            self.s.control_dir.display()
        ));
        opt("ControlPersist=60".into());
        opt("StrictHostKeyChecking=yes".into());
        opt(format!("ConnectTimeout={connect}"));
        opt("ServerAliveInterval=2".into());
        opt("ServerAliveCountMax=3".into());
        opt("LogLevel=ERROR".into());
        if let Some(k) = &self.s.known_hosts {
            opt(format!("UserKnownHostsFile={}", k.display()));
        }
        if let Some(k) = &self.s.key {
            opt(format!("IdentityFile={}", k.display()));
            opt("IdentitiesOnly=yes".into());
        }
        if let Some(p) = self.port {
            opt(format!("Port={p}"));
        }
        o
    }

    fn ssh(&self, remote_cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.opts())
            .arg("--")
            .arg(&self.dest)
            .arg(remote_cmd)
            .kill_on_drop(true);
        c
    }

    /// Time limit of one short command.
    fn cmd_limit(&self) -> Duration {
        self.s
            .heartbeat_timeout
            .clamp(Duration::from_secs(2), Duration::from_secs(20))
    }

    /// How often a running job is polled.
    fn poll_every(&self) -> Duration {
        (self.s.heartbeat_timeout / 3).clamp(Duration::from_millis(300), Duration::from_secs(5))
    }

    /// Runs `remote_cmd` on the worker (stdin from `input`), bounded by `limit`; its stdout.
    async fn run(
        &self,
        action: &'static str,
        remote_cmd: &str,
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<Vec<u8>, ExecError> {
        let mut cmd = self.ssh(remote_cmd);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| self.err(action, format!("cannot run ssh: {e}")))?;
        let run = async {
            if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
                use tokio::io::AsyncWriteExt;
                stdin.write_all(data).await?;
                stdin.shutdown().await?;
            }
            child.wait_with_output().await
        };
        match tokio::time::timeout(limit, run).await {
            Err(_) => Err(self.err(action, format!("no answer within {}s", limit.as_secs_f64()))),
            Ok(Err(e)) => Err(self.err(action, format!("ssh failed: {e}"))),
            Ok(Ok(out)) if out.status.success() => Ok(out.stdout),
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let detail = if stderr.trim().is_empty() {
                    format!("ssh exited with {}", out.status)
                } else {
                    stderr.trim().to_string()
                };
                Err(self.err(action, detail))
            }
        }
    }

    fn remote_dir(&self, dir: &Path) -> String {
        let attempt = dir.file_name().and_then(|n| n.to_str()).unwrap_or("1");
        let job = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("0");
        format!(
            "{}/jobs/{job}/{attempt}",
            self.s.work_dir.trim_end_matches('/')
        )
    }

    async fn probe(&self, remote_dir: &str) -> Result<Probe, ExecError> {
        let cmd = format!(
            "cd {d} 2>/dev/null || {{ echo gone; exit 0; }}; \
             if [ -e exit ]; then echo \"exit $(cat exit)\"; [ -e canceled ] && echo canceled; \
             [ -e timed_out ] && echo timed_out; exit 0; fi; \
             p=$(cat runner.pid 2>/dev/null); \
             if [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null && \
                {{ [ ! -r \"/proc/$p/cmdline\" ] || grep -q run.sh \"/proc/$p/cmdline\"; }}; then echo running; exit 0; fi; \
             if [ -e exit ]; then echo again; else echo vanished; fi",
            d = shell_quote(remote_dir)
        );
        let out = self
            .run("check the job", &cmd, None, self.cmd_limit())
            .await?;
        let text = String::from_utf8_lossy(&out);
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").trim();
        Ok(match first {
            "running" => Probe::Running,
            "gone" => Probe::Vanished(format!(
                "the job folder {remote_dir} is gone from worker {}",
                self.s.worker
            )),
            "vanished" => Probe::Vanished(format!(
                "the job's runner on worker {} is gone without an exit code (worker rebooted or its processes were killed)",
                self.s.worker
            )),
            "again" => Probe::Running,
            f if f.starts_with("exit ") => {
                let rest: Vec<&str> = lines.map(str::trim).collect();
                Probe::Exited {
                    code: f[5..].trim().parse().unwrap_or(-1),
                    canceled: rest.contains(&"canceled"),
                    timed_out: rest.contains(&"timed_out"),
                }
            }
            other => {
                return Err(self.err(
                    "check the job",
                    format!("unexpected answer {other:?} from the worker"),
                ));
            }
        })
    }

    async fn check(&self) -> Health {
        match self
            .run("check the worker", "true", None, self.cmd_limit())
            .await
        {
            Ok(_) => Health::Up,
            Err(ExecError::Ssh { detail, .. }) => Health::Down(format!("ssh: {detail}")),
            Err(e) => Health::Down(e.to_string()),
        }
    }
}

async fn health_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let h = inner.check().await;
        let every = inner.poll_every();
        {
            let mut cur = inner.health.lock().expect("health poisoned");
            if *cur != h {
                match &h {
                    Health::Up => tracing::info!(worker = inner.s.worker, "SSH worker up"),
                    Health::Down(why) | Health::Disabled(why) => {
                        tracing::warn!(worker = inner.s.worker, "SSH worker down: {why}")
                    }
                }
            }
            if h == Health::Up {
                *inner.last_ok.lock().expect("last_ok poisoned") = Some(chrono::Utc::now());
            }
            *cur = h;
        }
        drop(inner);
        tokio::time::sleep(every).await;
    }
}

/// The server-side log of an SSH job: masks, appends and records the offsets.
struct LogSink {
    log: File,
    log_path: PathBuf,
    offset_path: PathBuf,
    /// Bytes of the remote log received (fed to the masker).
    remote: u64,
    local: u64,
    masker: Masker,
    error: Option<String>,
}

impl LogSink {
    /// Opens the log and resumes from `log.offset` (truncating bytes written after it).
    fn open(dir: &Path, mask: &[String]) -> Result<LogSink, ExecError> {
        let log_path = dir.join(LOG_FILE);
        let offset_path = dir.join(OFFSET_FILE);
        let (remote, local) = match fs::read_to_string(&offset_path) {
            Ok(s) => {
                let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
                (it.next().unwrap_or(0), it.next().unwrap_or(0))
            }
            Err(_) => (0, 0),
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| ExecError::io("open log", &log_path, e))?;
        log.set_len(local)
            .map_err(|e| ExecError::io("truncate log to its recorded length", &log_path, e))?;
        Ok(LogSink {
            log,
            log_path,
            offset_path,
            remote,
            local,
            masker: Masker::new(mask),
            error: None,
        })
    }

    fn push(&mut self, bytes: &[u8]) {
        self.remote += bytes.len() as u64;
        let out = self.masker.push(bytes);
        self.write(&out);
    }

    fn finish(&mut self) {
        let out = self.masker.finish();
        self.write(&out);
        let _ = self.log.sync_data();
    }

    fn write(&mut self, out: &[u8]) {
        if !out.is_empty() {
            match self.log.write_all(out) {
                Ok(()) => self.local += out.len() as u64,
                Err(e) => {
                    self.error.get_or_insert(format!(
                        "could not write log {}: {e}",
                        self.log_path.display()
                    ));
                    return;
                }
            }
        }
        let committed = self.remote - self.masker.held() as u64;
        let rec = format!("{committed} {}\n", self.local);
        if let Err(e) = write_atomic(&self.offset_path, rec.as_bytes(), false) {
            self.error.get_or_insert(format!(
                "could not write {}: {e}",
                self.offset_path.display()
            ));
        }
    }
}

/// Streams the remote log into `sink` until the runner ends (`tail --pid` exits 0) or `stop`.
async fn stream_log(
    inner: Arc<Inner>,
    remote_dir: String,
    mut sink: LogSink,
    mut stop: watch::Receiver<bool>,
) -> LogSink {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if *stop.borrow() {
            return sink;
        }
        let cmd = format!(
            "cd {d} && exec tail -s 0.2 -c +{from} --pid=\"$(cat runner.pid)\" -F log",
            d = shell_quote(&remote_dir),
            from = sink.remote + 1
        );
        let mut c = inner.ssh(&cmd);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Ok(mut child) = c.spawn() {
            let mut out = child.stdout.take().expect("stdout is piped");
            loop {
                tokio::select! {
                    r = out.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink.push(&buf[..n]),
                    },
                    r = stop.changed() => if r.is_err() || *stop.borrow() {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        return sink;
                    },
                }
            }
            if let Ok(st) = child.wait().await
                && st.success()
            {
                return sink;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return sink },
        }
    }
}

/// A job running on an SSH worker.
struct SshJob {
    inner: Arc<Inner>,
    dir: PathBuf,
    info: SshJobInfo,
    job_id: i64,
    notify: Arc<Notify>,
    sink: LogSink,
}

impl SshJob {
    async fn wait(self) -> Outcome {
        let SshJob {
            inner,
            dir,
            info,
            job_id,
            notify,
            sink,
        } = self;
        let remote_dir = info.remote_dir.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut streamer =
            tokio::spawn(stream_log(inner.clone(), remote_dir.clone(), sink, stop_rx));
        let mut last_contact = Instant::now();
        let ended = loop {
            match inner.probe(&remote_dir).await {
                Ok(Probe::Running) => last_contact = Instant::now(),
                Ok(Probe::Exited {
                    code,
                    canceled,
                    timed_out,
                }) => break (code, canceled, timed_out),
                Ok(Probe::Vanished(why)) => {
                    let _ = stop_tx.send(true);
                    let sink = streamer.await.ok();
                    inner.hub.unregister(job_id);
                    tokio::spawn(reap(inner.clone(), remote_dir.clone(), sink));
                    return Outcome::Lost(why);
                }
                Err(e) => {
                    if last_contact.elapsed() >= inner.s.heartbeat_timeout {
                        let _ = stop_tx.send(true);
                        let sink = streamer.await.ok();
                        inner.hub.unregister(job_id);
                        tokio::spawn(reap(inner.clone(), remote_dir.clone(), sink));
                        return Outcome::Lost(format!(
                            "worker {} unreachable for more than {}s: {e}",
                            inner.s.worker,
                            inner.s.heartbeat_timeout.as_secs_f64()
                        ));
                    }
                }
            }
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(inner.poll_every()) => {}
            }
        };
        let (code, canceled, timed_out) = ended;
        // The stream ends by itself once the runner exits; give it a moment, then stop it.
        let mut sink = match tokio::time::timeout(Duration::from_secs(3), &mut streamer).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(_)) => None,
            Err(_) => {
                let _ = stop_tx.send(true);
                streamer.await.ok()
            }
        };
        let mut error: Option<String> = None;
        match sink.as_mut() {
            Some(sink) => {
                if let Err(e) = catch_up(&inner, &remote_dir, sink).await {
                    error = Some(format!("could not fetch the end of the log: {e}"));
                }
                sink.finish();
                if let Some(e) = sink.error.take() {
                    error.get_or_insert(e);
                }
            }
            None => error = Some("the log streaming task failed".into()),
        }
        if let Err(e) = fetch_artifacts(&inner, &remote_dir, &dir).await {
            error.get_or_insert(format!("could not fetch the artifacts: {e}"));
        }
        let signaled = code > 128 && (canceled || timed_out);
        let rec = ExitRecord {
            exit_code: if signaled { None } else { Some(code) },
            signal: signaled.then_some(code - 128),
            timed_out,
            canceled,
            error,
            started_at: info.started_at,
            ended_at: Utc::now(),
            log_bytes: fs::metadata(dir.join(LOG_FILE)).map_or(0, |m| m.len()),
            max_rss_kb: None,
        };
        let json = serde_json::to_vec_pretty(&rec).expect("ExitRecord serializes");
        if let Err(e) = write_atomic(&dir.join(EXIT_FILE), &json, true) {
            tracing::error!("could not write {}: {e}", dir.join(EXIT_FILE).display());
        }
        inner.hub.unregister(job_id);
        if let Err(e) = remove_remote(&inner, &remote_dir).await {
            tracing::warn!("{e}");
        }
        Outcome::Exited(rec)
    }
}

impl RunningJob for SshJob {
    fn wait(self: Box<Self>) -> BoxFuture<'static, Outcome> {
        Box::pin(SshJob::wait(*self))
    }
}

/// Reads whatever of the remote log the stream has not delivered. Retries until the
/// heartbeat timeout.
async fn catch_up(inner: &Inner, remote_dir: &str, sink: &mut LogSink) -> Result<(), ExecError> {
    let deadline = Instant::now() + inner.s.heartbeat_timeout;
    loop {
        let cmd = format!(
            "cd {d} && tail -c +{from} log",
            d = shell_quote(remote_dir),
            from = sink.remote + 1
        );
        match inner
            .run("read the end of the log", &cmd, None, inner.cmd_limit() * 3)
            .await
        {
            Ok(bytes) => {
                sink.push(&bytes);
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// `scp -r` of the worker's `out/` into the server's job `out/`.
async fn fetch_artifacts(inner: &Inner, remote_dir: &str, dir: &Path) -> Result<(), ExecError> {
    let fetch = dir.join("out.fetch");
    let deadline = Instant::now() + inner.s.heartbeat_timeout;
    loop {
        let _ = fs::remove_dir_all(&fetch);
        let mut c = Command::new("scp");
        c.args(inner.opts())
            .arg("-r")
            .arg("-q")
            .arg("--")
            .arg(format!("{}:{remote_dir}/{OUT_DIR}", inner.dest))
            .arg(&fetch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let r = match tokio::time::timeout(Duration::from_secs(300), c.output()).await {
            Err(_) => Err(inner.err("fetch the artifacts", "scp took over 300s")),
            Ok(Err(e)) => Err(inner.err("fetch the artifacts", format!("cannot run scp: {e}"))),
            Ok(Ok(o)) if o.status.success() => Ok(()),
            Ok(Ok(o)) => Err(inner.err(
                "fetch the artifacts",
                String::from_utf8_lossy(&o.stderr).trim(),
            )),
        };
        match r {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let out = dir.join(OUT_DIR);
    fs::create_dir_all(&out).map_err(|e| ExecError::io("create directory", &out, e))?;
    let entries = fs::read_dir(&fetch).map_err(|e| ExecError::io("read", &fetch, e))?;
    for e in entries {
        let e = e.map_err(|e| ExecError::io("read", &fetch, e))?;
        let to = out.join(e.file_name());
        fs::rename(e.path(), &to).map_err(|err| ExecError::io("move artifact to", &to, err))?;
    }
    let _ = fs::remove_dir_all(&fetch);
    Ok(())
}

async fn remove_remote(inner: &Inner, remote_dir: &str) -> Result<(), ExecError> {
    let cmd = format!("rm -rf -- {}", shell_quote(remote_dir));
    inner
        .run("remove the job folder", &cmd, None, inner.cmd_limit() * 3)
        .await
        .map(drop)
}

/// After a job was given up on (worker unreachable or runner gone): for up to ten minutes,
/// make sure it stops on the worker once the worker answers again, copy the rest of its log
/// (the output up to its end is kept, even for a `broken` run), then remove its folder.
async fn reap(inner: Arc<Inner>, remote_dir: String, mut sink: Option<LogSink>) {
    let until = Instant::now() + Duration::from_secs(600);
    let cancel = format!(
        "cd {} 2>/dev/null && : > cancel; true",
        shell_quote(&remote_dir)
    );
    while Instant::now() < until {
        match inner.probe(&remote_dir).await {
            Ok(Probe::Running) => {
                let _ = inner
                    .run("cancel the job", &cancel, None, inner.cmd_limit())
                    .await;
            }
            Ok(_) => {
                if let Some(mut s) = sink.take() {
                    if catch_up(&inner, &remote_dir, &mut s).await.is_ok() {
                        s.finish();
                    } else {
                        sink = Some(s);
                        continue;
                    }
                }
                if remove_remote(&inner, &remote_dir).await.is_ok() {
                    return;
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl SshExecutor {
    async fn start_job(
        &self,
        dir: &Path,
        spec: &JobSpec,
    ) -> Result<Box<dyn RunningJob>, ExecError> {
        let inner = &self.inner;
        let dir = crate::layout::prepare_job_dir(dir, spec, SSH_FILE)?;
        let log_path = dir.join(LOG_FILE);
        File::create(&log_path).map_err(|e| ExecError::io("create log", &log_path, e))?;

        let env = env_file(spec).map_err(|d| inner.err("start the job", d))?;
        let token = callback::new_token();
        let hash = callback::token_hash(&token);
        let remote_dir = self.inner.remote_dir(&dir);
        let info = SshJobInfo {
            worker: inner.s.worker.clone(),
            host: inner.s.host.clone(),
            remote_dir: remote_dir.clone(),
            token_sha256: hex::encode(hash),
            started_at: Utc::now(),
        };
        let info_path = dir.join(SSH_FILE);
        let json = serde_json::to_vec_pretty(&info).expect("SshJobInfo serializes");
        write_atomic(&info_path, &json, true).map_err(|e| ExecError::io("write", &info_path, e))?;
        let notify = inner.hub.register(spec.job_id, hash);

        let url = format!(
            "{}/api/v1/callbacks/jobs/{}\n",
            inner.s.callback_url.trim_end_matches('/'),
            spec.job_id
        );
        let files: [(&str, String); 5] = [
            ("script.sh", spec.script.clone()),
            ("env.sh", env),
            ("run.sh", runner(spec)),
            ("callback.hdr", format!("X-Baton-Job-Token: {token}\n")),
            ("callback.url", url),
        ];
        let mut setup = format!(
            "set -e\numask 077\nD={d}\n\
             if [ -e \"$D/runner.pid\" ] || [ -e \"$D/exit\" ]; then echo \"job folder $D was already started on this worker\" >&2; exit 17; fi\n\
             rm -rf -- \"$D\"\nmkdir -p -- \"$D/work\" \"$D/out\"\ncd -- \"$D\"\nD=$(pwd)\n",
            d = shell_quote(&remote_dir)
        );
        for (name, content) in &files {
            setup.push_str(&format!(
                "base64 -d > {name} <<'BATON_B64'\n{}\nBATON_B64\n",
                base64(content.as_bytes())
            ));
        }
        setup.push_str(
            ": > log\n\
             command -v dtach >/dev/null || { echo 'dtach: command not found' >&2; exit 127; }\n\
             command -v curl >/dev/null || { echo 'curl: command not found' >&2; exit 127; }\n\
             dtach -n \"$D/sock\" -z bash \"$D/run.sh\" </dev/null >/dev/null 2>&1\n\
             i=0; while [ ! -s runner.pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n\
             [ -s runner.pid ] || { echo 'the runner did not start under dtach' >&2; exit 18; }\n\
             echo started\n",
        );
        let r = inner
            .run(
                "start the job",
                "bash -s",
                Some(setup.as_bytes()),
                inner.cmd_limit() * 3,
            )
            .await;
        if let Err(e) = r {
            // The answer may be lost while the job did start (connection dropped): ask. If we
            // cannot tell, the job is treated as started and waiting decides (it is running, it
            // vanished, or the worker stays unreachable past the heartbeat timeout).
            let started = match inner.probe(&remote_dir).await {
                Ok(Probe::Running | Probe::Exited { .. }) => true,
                Ok(Probe::Vanished(_)) => false,
                Err(_) => !never_connected(&e),
            };
            if !started {
                inner.hub.unregister(spec.job_id);
                tokio::spawn(reap(inner.clone(), remote_dir, None));
                return Err(e);
            }
            tracing::warn!("{e}; the job may have started, so it is watched like a started one");
        }
        let sink = LogSink::open(&dir, &spec.mask)?;
        Ok(Box::new(SshJob {
            inner: inner.clone(),
            dir,
            info,
            job_id: spec.job_id,
            notify,
            sink,
        }))
    }

    async fn reattach_job(&self, dir: &Path) -> Reattached {
        let inner = &self.inner;
        if let Some(rec) = read_exit(dir) {
            // Ended; its folder on the worker may be left if we died before removing it.
            if let Ok(Some(info)) = try_read_json::<SshJobInfo>(&dir.join(SSH_FILE)) {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let _ = remove_remote(&inner, &info.remote_dir).await;
                });
            }
            return Reattached::Finished(rec);
        }
        let info = match try_read_json::<SshJobInfo>(&dir.join(SSH_FILE)) {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Reattached::Vanished(format!(
                    "no {SSH_FILE} in {}: the job was never started on worker {}",
                    dir.display(),
                    inner.s.worker
                ));
            }
            Err(e) => return Reattached::Vanished(e.to_string()),
        };
        let spec: Option<JobSpec> = try_read_json(&dir.join(SPEC_FILE)).ok().flatten();
        let job_id = spec.as_ref().map_or(0, |s| s.job_id);
        let mask = spec.map(|s| s.mask).unwrap_or_default();
        let mut hash = [0u8; 32];
        if let Ok(v) = hex::decode(&info.token_sha256)
            && v.len() == 32
        {
            hash.copy_from_slice(&v);
        }
        let notify = inner.hub.register(job_id, hash);
        let sink = match LogSink::open(dir, &mask) {
            Ok(s) => s,
            Err(e) => return Reattached::Vanished(e.to_string()),
        };
        Reattached::Running(Box::new(SshJob {
            inner: inner.clone(),
            dir: dir.to_path_buf(),
            info,
            job_id,
            notify,
            sink,
        }))
    }

    async fn cancel_job(&self, dir: &Path) -> Result<(), ExecError> {
        if read_exit(dir).is_some() {
            return Ok(());
        }
        let info = try_read_json::<SshJobInfo>(&dir.join(SSH_FILE))?.ok_or_else(|| {
            ExecError::NotRunning {
                dir: dir.to_path_buf(),
                reason: format!("no {SSH_FILE}: not started on the worker yet"),
            }
        })?;
        // The runner's watchdog sees the file, sends SIGTERM to the job's process group and
        // SIGKILL after the grace, even if the connection drops right after this.
        let cmd = format!(
            "cd {} 2>/dev/null && : > cancel; true",
            shell_quote(&info.remote_dir)
        );
        self.inner
            .run("cancel the job", &cmd, None, self.inner.cmd_limit())
            .await
            .map(drop)
    }
}

impl Executor for SshExecutor {
    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn start<'a>(
        &'a self,
        dir: &'a Path,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<Box<dyn RunningJob>, ExecError>> {
        Box::pin(self.start_job(dir, spec))
    }

    fn reattach<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Reattached> {
        Box::pin(self.reattach_job(dir))
    }

    fn cancel<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(self.cancel_job(dir))
    }

    fn health(&self) -> Health {
        self.inner.health.lock().expect("health poisoned").clone()
    }

    fn last_heartbeat(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.inner.last_ok.lock().expect("last_ok poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_destination_and_port() {
        assert_eq!(split_host("u@h:2222"), ("u@h".into(), Some(2222)));
        assert_eq!(split_host("u@h"), ("u@h".into(), None));
        assert_eq!(split_host("h:22"), ("h".into(), Some(22)));
        assert_eq!(split_host("u@fe80::1"), ("u@fe80::1".into(), None));
    }

    #[test]
    fn log_resumes_from_the_recorded_offsets_without_loss_or_duplication() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mask = vec!["s3cr3t".to_string()];
        let remote = b"one s3cr3t two s3cr3t three\n";
        let mut sink = LogSink::open(dir, &mask).unwrap();
        sink.push(&remote[..8]); // "one s3cr": the masker holds back a possible secret
        drop(sink);
        // A crash after more bytes reached the log than the offset file records.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(LOG_FILE))
            .unwrap()
            .write_all(b"garbage")
            .unwrap();
        let mut sink = LogSink::open(dir, &mask).unwrap();
        assert!(sink.remote <= 8);
        let from = sink.remote as usize;
        sink.push(&remote[from..]);
        sink.finish();
        assert_eq!(
            std::fs::read(dir.join(LOG_FILE)).unwrap(),
            b"one *** two *** three\n"
        );
        let rec = std::fs::read_to_string(dir.join(OFFSET_FILE)).unwrap();
        assert_eq!(rec, format!("{} 22\n", remote.len()));
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn env_values_are_quoted_never_syntax() {
        let spec = JobSpec {
            run_id: 1,
            job_id: 2,
            task: "t".into(),
            script: String::new(),
            env: vec![("x".into(), "a'b $(rm -rf /) `id` \"q\"\nnl".into())],
            timeout: None,
            kill_grace: Duration::from_secs(1),
            mask: vec![],
            container: None,
        };
        let f = env_file(&spec).unwrap();
        assert!(f.starts_with("export x='a'\\''b $(rm -rf /) `id` \"q\"\nnl'\n"));
        let bad = JobSpec {
            env: vec![("a-b".into(), "v".into())],
            ..spec
        };
        assert!(env_file(&bad).is_err());
    }
}
