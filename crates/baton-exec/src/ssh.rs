//! [`SshExecutor`]: agentless SSH workers (the py4CI model). One executor per worker.
//!
//! Nothing is installed on the worker: it needs `sshd`, `bash`, coreutils, `dtach` and `curl`
//! (and uses `tar` for the artifacts when it has it, `scp` when not).
//! The server drives it with the system OpenSSH client (`BatchMode`, host keys checked against
//! `server.known_hosts`, one reused `ControlMaster` connection per worker under `<data>/ssh/`).
//!
//! A job costs two ssh sessions when all goes well, both opened when it starts:
//!
//! 1. Start: one `ssh … bash -s` uploads the job folder `<work_dir>/jobs/<job>/<attempt>/`
//!    (script, environment file, runner, callback URL and token, each file one `printf` of a
//!    value single-quoted by [`shell_quote`], so no value is ever shell syntax), starts the
//!    runner detached under `dtach -n`, so it survives a dropped connection and a restarted
//!    server, says `started` and then, in the same session, follows the log
//!    (`tail -c +OFFSET --pid=RUNNER -F log`). The runner (see [`RUNNER`]) runs
//!    `bash -eo pipefail script.sh` in `work/` in its own process group (recorded in `pgid`),
//!    appends stdout + stderr to `log`, enforces the timeout and a cancel request (the file
//!    `cancel`) with SIGTERM then SIGKILL to that group, writes the exit code to `exit`, and
//!    reports to `POST /api/v1/callbacks/jobs/{job}` (header `X-Baton-Job-Token`): through
//!    bash's `/dev/tcp` when the server's URL is plain `http://`, else or if that fails with
//!    `curl`.
//! 2. Finish: a second `ssh … bash -s`, opened beside the first, reads `finish_script` and
//!    waits. The callback wakes the server at once; it stops following the log and says `go`:
//!    the session answers with the end (`exit`, the rest of the log from the recorded offset,
//!    `out/` as a tar stream, a trailer with a fresh nonce that proves the answer complete),
//!    the server stores it all and writes `exit.json`, then says `ok` and the same session
//!    removes the folder on the worker.
//!
//! The server masks the log, appends it to its own job `log` and records `(remote offset, local
//! length)` in `log.offset` after every write; after a dropped connection or a server restart it
//! truncates its log to the recorded length and resumes from the recorded offset: nothing lost,
//! nothing twice. A missed callback is made up for by the log follower ending (the runner is
//! gone) or by the poll of the worker (every `heartbeat_timeout / 3`, at most 5 s); a worker
//! unreachable for longer than `heartbeat_timeout` makes the job [`Outcome::Lost`]. A finishing
//! session that broke is replaced by a new one.
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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::callback::{self, CallbackHub};
use crate::error::ExecError;
use crate::executor::{BoxFuture, Executor, Health, Reattached, RunningJob};
use crate::job::{ExitRecord, JobSecrets, JobSpec, Outcome};
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
cd "${0%/*}" || exit 1
set -m
(
  . ./env.sh
  if [ -e secrets.sh ]; then . ./secrets.sh; rm -f secrets.sh; fi
  BATON_OUTPUT_DIR="$PWD/out"; export BATON_OUTPUT_DIR
  cd work && exec bash -eo pipefail ../script.sh
) </dev/null >>log 2>&1 &
job=$!
echo $$ > runner.pid.tmp && mv runner.pid.tmp runner.pid
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
# The callback: over bash's /dev/tcp when the server's URL is plain http (no process to start),
# else, or if that fails, with curl.
sent=
if [ -s callback.tcp ]; then
  { read -r host; read -r port; } < callback.tcp
  IFS= read -r -d '' req < callback.req
  { printf '%s' "$req" >&3 && read -r -t 10 line <&3 &&
    case $line in "HTTP/1."?" 2"*) sent=1 ;; esac; } 2>/dev/null 3<>"/dev/tcp/$host/$port"
fi
[ -n "$sent" ] && exit 0
read -r url < callback.url
curl -fsS --max-time 10 --retry 3 --retry-delay 1 --retry-all-errors -X POST \
  -H @callback.hdr --data-binary @exit "$url" >/dev/null 2>&1 ||
  curl -fsS --max-time 10 -X POST \
  -H @callback.hdr --data-binary @exit "$url" >/dev/null 2>&1
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
    let fixed = [
        ("BATON_RUN_ID".to_string(), spec.run_id.to_string()),
        ("BATON_JOB_ID".to_string(), spec.job_id.to_string()),
        ("BATON_TASK".to_string(), spec.task.clone()),
    ];
    export_lines(spec.env.iter().chain(fixed.iter()))
}

/// `export K='v'` lines of the job's secrets, for `secrets.sh` on the worker: created 0600
/// (the upload runs under `umask 077`) and removed by the runner as soon as it has read it.
fn secrets_file(spec: &JobSpec) -> Result<String, String> {
    export_lines(spec.secrets.env.iter())
}

fn export_lines<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> Result<String, String> {
    let mut out = String::new();
    for (k, v) in pairs {
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

/// Bash that writes `content` to the file `name` (a fixed name, never a value) in the current
/// folder: one `printf` builtin of the content single-quoted by [`shell_quote`], or, for content
/// with a NUL byte (which no shell word can hold), a base64 here-document.
fn put_file(name: &str, content: &str) -> String {
    if content.contains('\0') {
        format!(
            "base64 -d > {name} <<'BATON_B64'\n{}\nBATON_B64\n",
            base64(content.as_bytes())
        )
    } else {
        format!("printf '%s' {} > {name}\n", shell_quote(content))
    }
}

/// `(host, port, host[:port] as written, path)` of an `http://` URL that bash's
/// `/dev/tcp/HOST/PORT` can reach and an HTTP request line can carry as it is; `None` for
/// anything else (https, user info, odd characters), which the runner leaves to curl.
fn plain_http(url: &str) -> Option<(String, u16, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    // `host`, `host:port`, `[v6]`, `[v6]:port`: the port part is "" or ":port".
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?,
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port = match port {
        "" => 80,
        p => p.strip_prefix(':')?.parse().ok()?,
    };
    let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:".contains(c);
    let path_ok = |c: char| c.is_ascii_graphic() && !"?#%\\\"'`$".contains(c);
    if host.is_empty() || !host.chars().all(host_ok) || !path.chars().all(path_ok) || port == 0 {
        return None;
    }
    Some((
        host.to_string(),
        port,
        authority.to_string(),
        path.to_string(),
    ))
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

    /// Runs the start script (`bash -s`), which ends by following the log: the open stream
    /// once the worker said `started`.
    async fn start_session(&self, setup: &str) -> Result<Stream, ExecError> {
        let action = "start the job";
        let mut cmd = self.ssh("bash -s");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| self.err(action, format!("cannot run ssh: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut out = child.stdout.take().expect("stdout is piped");
        let stderr = tokio::spawn(drain(child.stderr.take().expect("stderr is piped")));
        const STARTED: &[u8] = b"started\n";
        let limit = self.cmd_limit() * 3;
        let answer = tokio::time::timeout(limit, async {
            // stdin stays open: the log follower ends when it closes.
            stdin.write_all(setup.as_bytes()).await?;
            stdin.flush().await?;
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            while got.len() < STARTED.len() {
                let n = out.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            std::io::Result::Ok(got)
        })
        .await;
        match answer {
            Ok(Ok(mut got)) if got.starts_with(STARTED) => {
                let pending = got.split_off(STARTED.len());
                Ok(Stream {
                    child,
                    stdin,
                    out,
                    pending,
                })
            }
            Ok(Ok(got)) if !got.is_empty() => {
                let _ = child.start_kill();
                let detail = format!(
                    "unexpected answer {:?} from the worker",
                    String::from_utf8_lossy(&got)
                );
                Err(self.err(action, detail))
            }
            Ok(_) => Err(self.err(action, failure(child, stderr).await)),
            Err(_) => {
                let _ = child.start_kill();
                let detail = format!("no answer within {}s", limit.as_secs_f64());
                Err(self.err(action, detail))
            }
        }
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

/// Bash (one `{ … }` group, for `bash -s`) that follows the remote log from byte `done`
/// (0-based) until the runner ends (`tail --pid` exits 0), or until the session's stdin closes
/// (the server stopped following, or went away): then it stops `tail` at once, so that no
/// session outlives its use (sshd keeps a session open while its command runs).
fn follow_script(remote_dir: &str, done: u64) -> String {
    format!(
        "{{\n\
         set +e\n\
         cd {d} || exit 1\n\
         exec 3<&0\n\
         tail -s 0.2 -c +{from} --pid=\"$(cat runner.pid)\" -F log </dev/null 2>/dev/null & t=$!\n\
         {{ read -r x <&3; kill $t; }} </dev/null >/dev/null 2>&1 & r=$!\n\
         wait $t; s=$?\n\
         kill $r 2>/dev/null\n\
         exit $s\n\
         }}\n",
        d = shell_quote(remote_dir),
        from = done + 1
    )
}

/// An open ssh session whose stdout is the remote log from the sink's offset on.
struct Stream {
    child: Child,
    /// Open while following (closing it ends the follower on the worker).
    stdin: ChildStdin,
    out: ChildStdout,
    /// Log bytes already read from `out` (behind the start session's `started` line).
    pending: Vec<u8>,
}

/// Reads a child's stderr to its end, keeping the first 64 KiB.
async fn drain(mut r: ChildStderr) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) if kept.len() < 64 * 1024 => kept.extend_from_slice(&buf[..n]),
            Ok(_) => {}
        }
    }
}

/// Why an ssh session ended without the answer we expected: its stderr, or its exit status.
async fn failure(mut child: Child, stderr: JoinHandle<Vec<u8>>) -> String {
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(st)) => Some(st),
        _ => {
            let _ = child.start_kill();
            None
        }
    };
    let text = match tokio::time::timeout(Duration::from_secs(1), stderr).await {
        Ok(Ok(v)) => String::from_utf8_lossy(&v).trim().to_string(),
        _ => String::new(),
    };
    match status {
        _ if !text.is_empty() => text,
        Some(st) => format!("ssh exited with {st}"),
        None => "ssh did not exit".into(),
    }
}

/// Streams the remote log into `sink` until the runner ends (`tail --pid` exits 0) or `stop`.
/// `first` is a stream already open (the start session); later ones are opened here, from the
/// sink's offset, after a short pause whenever one breaks.
async fn stream_log(
    inner: Arc<Inner>,
    remote_dir: String,
    mut sink: LogSink,
    mut stop: watch::Receiver<bool>,
    mut first: Option<Stream>,
) -> LogSink {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if *stop.borrow() {
            return sink;
        }
        let stream = match first.take() {
            Some(s) => Some(s),
            None => {
                tracing::debug!(
                    "ssh: following the log of {remote_dir} from byte {}",
                    sink.remote
                );
                let mut c = inner.ssh("bash -s");
                c.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null());
                match c.spawn() {
                    Ok(mut child) => {
                        let mut stdin = child.stdin.take().expect("stdin is piped");
                        let out = child.stdout.take().expect("stdout is piped");
                        let script = follow_script(&remote_dir, sink.remote);
                        // A few hundred bytes: the pipe takes them at once.
                        let _ = stdin.write_all(script.as_bytes()).await;
                        Some(Stream {
                            child,
                            stdin,
                            out,
                            pending: Vec::new(),
                        })
                    }
                    Err(_) => None,
                }
            }
        };
        if let Some(Stream {
            mut child,
            stdin,
            mut out,
            pending,
        }) = stream
        {
            if !pending.is_empty() {
                sink.push(&pending);
            }
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
            drop(stdin);
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

/// The log follower of a running job: a task that owns the sink until it is stopped or the
/// runner ends.
struct Follower {
    task: JoinHandle<LogSink>,
    stop: watch::Sender<bool>,
}

impl Follower {
    fn spawn(inner: &Arc<Inner>, remote_dir: &str, sink: LogSink, first: Option<Stream>) -> Self {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(stream_log(
            inner.clone(),
            remote_dir.to_string(),
            sink,
            rx,
            first,
        ));
        Follower { task, stop }
    }

    /// Stops following; the sink back (`None` if the task panicked).
    async fn stop(self) -> Option<LogSink> {
        let _ = self.stop.send(true);
        self.task.await.ok()
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
    /// The secrets to mask (to reopen the sink if its task ever failed).
    mask: Vec<String>,
    /// The start session, already following the log.
    first: Option<Stream>,
    /// A finishing session opened with the start.
    finisher: Option<Finisher>,
    /// Whether to look at the worker before anything else (re-attached, or unsure whether the
    /// start went through): the job may have ended already.
    check_first: bool,
}

/// The end of a job as its runner recorded it on the worker.
#[derive(Clone, Copy, Debug)]
struct End {
    code: i32,
    canceled: bool,
    timed_out: bool,
}

/// What the finishing session found.
enum Finished {
    /// The job still runs.
    Running,
    Vanished(String),
    /// The job ended and its log and artifacts came back (`artifacts` says why not all of
    /// them, if so); `session` waits for the word to remove the folder on the worker.
    Ended {
        end: End,
        artifacts: Result<(), String>,
        session: Box<Session>,
    },
}

enum FinishError {
    /// No answer: nothing is known about the job.
    Unknown(ExecError),
    /// The job ended, but the end of its log or its artifacts did not all come back.
    Ended(End, ExecError),
}

/// A finishing session: an ssh `bash -s` that has read [`finish_script`] and waits for the word
/// (`go DONE NONCE`). One is opened when a job starts, so that its end does not wait for ssh to
/// set up a session.
struct Finisher {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Finisher {
    /// Opens a finishing session for the job folder `remote_dir` on the worker.
    async fn open(inner: &Inner, remote_dir: &str) -> Result<Finisher, ExecError> {
        let mut cmd = inner.ssh("bash -s");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| inner.err("check the job", format!("cannot run ssh: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = tokio::spawn(drain(child.stderr.take().expect("stderr is piped")));
        // A few KiB: the pipe takes it at once.
        let script = finish_script(remote_dir);
        if let Err(e) = stdin.write_all(script.as_bytes()).await {
            let detail = format!("{e}; {}", failure(child, stderr).await);
            return Err(inner.err("check the job", detail));
        }
        Ok(Finisher {
            child,
            stdin,
            out,
            stderr,
        })
    }

    /// Says `go` and reads the first line of the answer.
    async fn ask(&mut self, done: u64, nonce: &str, limit: Duration) -> Result<String, String> {
        let word = format!("go {done} {nonce}\n");
        let r = tokio::time::timeout(limit, async {
            self.stdin.write_all(word.as_bytes()).await?;
            self.stdin.flush().await?;
            read_line(&mut self.out).await
        })
        .await;
        match r {
            Ok(Ok(Some(line))) => Ok(line),
            Err(_) => Err(format!("no answer within {}s", limit.as_secs_f64())),
            Ok(Ok(None)) => Err("the session ended without an answer".into()),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }

    /// Why the session failed: its stderr or exit status.
    async fn failure(self) -> String {
        failure(self.child, self.stderr).await
    }
}

/// The finishing session after the job's end came back, waiting for the word to remove the job
/// folder.
struct Session {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Session {
    /// Removes the job folder on the worker; whether that worked.
    async fn remove(mut self: Box<Self>, limit: Duration) -> bool {
        let r = tokio::time::timeout(limit, async {
            self.stdin.write_all(b"ok\n").await?;
            self.stdin.flush().await?;
            read_line(&mut self.out).await
        })
        .await;
        let removed = matches!(r, Ok(Ok(Some(ref l))) if l == "removed");
        // The session ends by itself; reap it in the background.
        let mut child = self.child;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        });
        removed
    }
}

/// The finishing script, read by `bash -s` (as one `{ … }` group, so that bash has read all of
/// it before its `read`s take the rest of stdin). It waits for `go DONE NONCE`, then answers
/// like [`Inner::probe`] while the job runs; once it ended, it prints `exit CODE`, `canceled`,
/// `timed_out`, `log N` and N bytes of the log from byte DONE, then `empty` (nothing in
/// `out/`), `tar` and `out/` as a tar stream, or `notar` (the worker has no tar: `scp` fetches
/// `out/`), then the trailer `BATON-END-<NONCE> <tar exit code> <tar's message>`, which proves
/// the answer complete. Then it waits for `ok`, removes the folder and says `removed`. While
/// it waits for `go` it ends if the server goes away or, every 5 s, if the folder is gone.
fn finish_script(remote_dir: &str) -> String {
    format!(
        "{{\n\
         D={d}\n\
         while :; do\n\
           read -r go done nonce && break\n\
           [ $? -gt 128 ] && [ -d \"$D\" ] || exit 0\n\
         done\n\
         [ \"$go\" = go ] || exit 0\n\
         case $done in ''|*[!0-9]*) exit 0 ;; esac\n\
         case $nonce in ''|*[!0-9a-f]*) exit 0 ;; esac\n\
         cd -- \"$D\" 2>/dev/null || {{ echo gone; exit 0; }}\n\
         D=$PWD\n\
         if [ ! -e exit ]; then\n\
           p=$(cat runner.pid 2>/dev/null)\n\
           if [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null && \
              {{ [ ! -r \"/proc/$p/cmdline\" ] || grep -q run.sh \"/proc/$p/cmdline\"; }}; then echo running; exit 0; fi\n\
           [ -e exit ] || {{ echo vanished; exit 0; }}\n\
         fi\n\
         read -r c < exit || true\n\
         echo \"exit $c\"\n\
         [ -e canceled ] && echo canceled\n\
         [ -e timed_out ] && echo timed_out\n\
         s=$(wc -c < log 2>/dev/null) || s=0\n\
         n=$(( ${{s:-0}} - done )); [ \"$n\" -gt 0 ] || n=0\n\
         echo \"log $n\"\n\
         [ \"$n\" -eq 0 ] || tail -c +$((done + 1)) log </dev/null | head -c \"$n\"\n\
         m=\n\
         shopt -s nullglob dotglob; a=(out/*); r=0\n\
         if [ ${{#a[@]}} -eq 0 ]; then echo empty\n\
         elif command -v tar >/dev/null 2>&1; then echo tar; tar -C out -cf - . </dev/null 2>tar.err; r=$?; \
           [ \"$r\" -eq 0 ] || m=$(head -c 500 tar.err | tr -c '[:print:]' ' ')\n\
         else echo notar; fi\n\
         printf '\\nBATON-END-%s %s %s\\n' \"$nonce\" \"$r\" \"$m\"\n\
         read -r -t 600 ack || exit 0\n\
         [ \"$ack\" = ok ] || exit 0\n\
         cd / && rm -rf -- \"$D\" && echo removed\n\
         }}\n",
        d = shell_quote(remote_dir),
    )
}

/// One line of the finishing session's answer, without its newline (`None` at the end).
async fn read_line(out: &mut BufReader<ChildStdout>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    (&mut *out).take(4096).read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the answer was cut short",
        ));
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Looks at the job on the worker through `opened` (a session opened earlier, if any, else a
/// new one); once it ended, brings the rest of its log into `sink` and its artifacts into
/// `dir/out/` (see [`finish_script`]).
async fn finish(
    inner: &Inner,
    remote_dir: &str,
    dir: &Path,
    sink: &mut LogSink,
    opened: Option<Finisher>,
) -> Result<Finished, FinishError> {
    use FinishError::{Ended, Unknown};
    let nonce = hex::encode(rand::random::<[u8; 8]>());
    let action = "check the job";
    let limit = inner.cmd_limit();
    let mut answer = None;
    if let Some(mut f) = opened {
        // It may have died since (a dropped connection): then a new one.
        if let Ok(line) = f.ask(sink.remote, &nonce, limit).await {
            answer = Some((f, line));
        }
    }
    let (f, first) = match answer {
        Some(a) => a,
        None => {
            let mut f = Finisher::open(inner, remote_dir).await.map_err(Unknown)?;
            match f.ask(sink.remote, &nonce, limit).await {
                Ok(line) => (f, line),
                Err(e) => {
                    let detail = if e.starts_with("no answer") {
                        e
                    } else {
                        f.failure().await
                    };
                    return Err(Unknown(inner.err(action, detail)));
                }
            }
        }
    };
    tracing::debug!("ssh: the worker answers {first:?}");
    let Finisher {
        mut child,
        stdin,
        mut out,
        stderr,
    } = f;
    let code = match first.trim() {
        "running" => return Ok(Finished::Running),
        "gone" => {
            return Ok(Finished::Vanished(format!(
                "the job folder {remote_dir} is gone from worker {}",
                inner.s.worker
            )));
        }
        "vanished" => {
            return Ok(Finished::Vanished(format!(
                "the job's runner on worker {} is gone without an exit code (worker rebooted or its processes were killed)",
                inner.s.worker
            )));
        }
        f if f.starts_with("exit ") => f[5..].trim().parse().unwrap_or(-1),
        other => {
            let detail = format!("unexpected answer {other:?} from the worker");
            return Err(Unknown(inner.err(action, detail)));
        }
    };
    let mut end = End {
        code,
        canceled: false,
        timed_out: false,
    };

    // The job ended: the rest of the log, then the artifacts, within the time scp had.
    let fetch = dir.join("out.fetch");
    let tar_path = dir.join("out.fetch.tar");
    let mut log_done = false;
    let transfer = tokio::time::timeout(Duration::from_secs(300), async {
        let n: u64 = loop {
            let line = read_line(&mut out).await?.unwrap_or_default();
            match line.as_str() {
                "canceled" => end.canceled = true,
                "timed_out" => end.timed_out = true,
                l if l.starts_with("log ") => break l[4..].trim().parse().unwrap_or(0),
                _ => return Err(std::io::Error::other(format!("unexpected answer {line:?}"))),
            }
        };
        let mut left = n;
        while left > 0 {
            let buf = out.fill_buf().await?;
            if buf.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            sink.push(&buf[..k]);
            out.consume(k);
            left -= k as u64;
        }
        log_done = true;
        let kind = read_line(&mut out).await?.unwrap_or_default();
        // Up to the trailer, which ends the answer (the session stays open: the end of its
        // output shows only when it exits, as sshd gives it one socket for stdin and stdout).
        let mut f = tokio::fs::File::create(&tar_path).await?;
        let mut total = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        let found = loop {
            let buf = out.fill_buf().await?;
            if buf.is_empty() {
                break None;
            }
            let n = buf.len();
            f.write_all(buf).await?;
            tail.extend_from_slice(&buf[buf.len().saturating_sub(TRAILER_MAX)..]);
            tail.drain(..tail.len().saturating_sub(TRAILER_MAX));
            out.consume(n);
            total += n as u64;
            if let Some((at, rc, msg)) = trailer(&tail, &nonce) {
                break Some((total - (tail.len() - at) as u64, rc, msg));
            }
        };
        f.flush().await?;
        Ok((kind, found))
    })
    .await;
    let what = |log_done: bool| {
        if log_done {
            "fetch the artifacts"
        } else {
            "fetch the end of the log"
        }
    };
    let (kind, found) = match transfer {
        Ok(Ok(answer)) => answer,
        Err(_) => {
            let _ = fs::remove_file(&tar_path);
            return Err(Ended(end, inner.err(what(log_done), "took over 300s")));
        }
        Ok(Err(e)) => {
            let _ = fs::remove_file(&tar_path);
            let _ = child.start_kill();
            let detail = format!("{e}; {}", failure(child, stderr).await);
            return Err(Ended(end, inner.err(what(log_done), detail)));
        }
    };
    let Some((tar_len, rc, tar_err)) = found else {
        let _ = fs::remove_file(&tar_path);
        let detail = failure(child, stderr).await;
        return Err(Ended(
            end,
            inner.err(
                "fetch the artifacts",
                format!("the transfer was cut short ({detail})"),
            ),
        ));
    };
    let artifacts = match kind.as_str() {
        "tar" => {
            let (tp, fp) = (tar_path.clone(), fetch.clone());
            let unpacked = tokio::task::spawn_blocking(move || unpack(&tp, tar_len, &fp))
                .await
                .unwrap_or_else(|e| Err(format!("unpacking failed: {e}")))
                .and_then(|()| move_into_out(dir, &fetch).map_err(|e| e.to_string()));
            match unpacked {
                Err(e) => Err(e),
                Ok(()) if rc != 0 => Err(format!("tar on the worker exited with {rc}: {tar_err}")),
                Ok(()) => Ok(()),
            }
        }
        "empty" => Ok(()),
        _ => fetch_artifacts(inner, remote_dir, dir)
            .await
            .map_err(|e| e.to_string()),
    };
    let _ = fs::remove_file(&tar_path);
    Ok(Finished::Ended {
        end,
        artifacts,
        session: Box::new(Session { child, stdin, out }),
    })
}

/// The longest trailer (its message is at most 500 bytes).
const TRAILER_MAX: usize = 600;

/// `(where the trailer starts, tar's exit code, tar's message)` if `data` ends with the
/// finishing script's trailer `\nBATON-END-<nonce> <code> <message>\n`. The nonce is fresh for
/// every session, so nothing in the artifacts can pass for it.
fn trailer(data: &[u8], nonce: &str) -> Option<(usize, i32, String)> {
    let mark = format!("\nBATON-END-{nonce} ");
    let body = data.strip_suffix(b"\n")?;
    let at = body
        .windows(mark.len())
        .rposition(|w| w == mark.as_bytes())?;
    let rest = &body[at + mark.len()..];
    if rest.contains(&b'\n') {
        return None;
    }
    let (code, msg) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let code = std::str::from_utf8(code).ok()?.parse().ok()?;
    Some((at, code, String::from_utf8_lossy(msg).trim().to_string()))
}

/// Unpacks the first `len` bytes of the tar file at `path` into `fetch` (made afresh): regular
/// files and directories, as agents upload them; links and special files are left out.
fn unpack(path: &Path, len: u64, fetch: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(fetch);
    fs::create_dir_all(fetch).map_err(|e| format!("cannot create {}: {e}", fetch.display()))?;
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(std::io::Read::take(file, len));
    archive.set_preserve_permissions(false);
    archive.set_overwrite(true);
    let bad = |e: std::io::Error| format!("the artifacts' tar stream is unreadable: {e}");
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if kind.is_file() || kind.is_dir() {
            entry
                .unpack_in(fetch)
                .map_err(|e| format!("cannot unpack an artifact: {e}"))?;
        }
    }
    Ok(())
}

/// Moves what came back into `fetch` into the job's `out/`.
fn move_into_out(dir: &Path, fetch: &Path) -> Result<(), ExecError> {
    let out = dir.join(OUT_DIR);
    fs::create_dir_all(&out).map_err(|e| ExecError::io("create directory", &out, e))?;
    let entries = fs::read_dir(fetch).map_err(|e| ExecError::io("read", fetch, e))?;
    for e in entries {
        let e = e.map_err(|e| ExecError::io("read", fetch, e))?;
        let to = out.join(e.file_name());
        fs::rename(e.path(), &to).map_err(|err| ExecError::io("move artifact to", &to, err))?;
    }
    let _ = fs::remove_dir_all(fetch);
    Ok(())
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
            mask,
            first,
            mut finisher,
            check_first,
        } = self;
        let remote_dir = info.remote_dir.clone();
        let hb = inner.s.heartbeat_timeout;
        // Either the follower owns the sink, or it is here.
        let mut idle: Option<LogSink> = None;
        let mut follower: Option<Follower> = None;
        if check_first {
            idle = Some(sink);
        } else {
            follower = Some(Follower::spawn(&inner, &remote_dir, sink, first));
        }
        let mut check = check_first;
        let mut last_contact = Instant::now();
        let mut failing_since: Option<Instant> = None;
        let lost = |sink: Option<LogSink>, why: String| {
            inner.hub.unregister(job_id);
            tokio::spawn(reap(inner.clone(), remote_dir.clone(), sink));
            Outcome::Lost(why)
        };
        let unreachable = |e: &ExecError| {
            format!(
                "worker {} unreachable for more than {}s: {e}",
                inner.s.worker,
                hb.as_secs_f64()
            )
        };
        loop {
            if check {
                check = false;
                tracing::debug!(job = job_id, "ssh: checking the end");
                let sink = match follower.take() {
                    Some(f) => f.stop().await,
                    None => idle.take(),
                };
                let mut sink = match sink {
                    Some(s) => s,
                    // Only if the follower panicked: the offsets on disk are exact.
                    None => match LogSink::open(&dir, &mask) {
                        Ok(s) => s,
                        Err(e) => return lost(None, format!("cannot reopen the log: {e}")),
                    },
                };
                match finish(&inner, &remote_dir, &dir, &mut sink, finisher.take()).await {
                    Ok(Finished::Running) => {
                        last_contact = Instant::now();
                        follower = Some(Follower::spawn(&inner, &remote_dir, sink, None));
                    }
                    Ok(Finished::Vanished(why)) => return lost(Some(sink), why),
                    Ok(Finished::Ended {
                        end,
                        artifacts,
                        session,
                    }) => {
                        let error = artifacts
                            .err()
                            .map(|e| format!("could not fetch the artifacts: {e}"));
                        let rec = record(&dir, &info, &mut sink, end, error);
                        inner.hub.unregister(job_id);
                        tracing::debug!(job = job_id, "ssh: ended and fetched");
                        if !session.remove(inner.cmd_limit()).await {
                            tokio::spawn(reap(inner.clone(), remote_dir.clone(), None));
                        }
                        tracing::debug!(job = job_id, "ssh: job folder removed");
                        return Outcome::Exited(rec);
                    }
                    Err(FinishError::Unknown(e)) => {
                        if last_contact.elapsed() >= hb {
                            return lost(Some(sink), unreachable(&e));
                        }
                        idle = Some(sink);
                        check = true;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(FinishError::Ended(end, e)) => {
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() < hb {
                            idle = Some(sink);
                            check = true;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                        // Give up on the rest; the folder goes once the worker answers.
                        let rec = record(&dir, &info, &mut sink, end, Some(e.to_string()));
                        inner.hub.unregister(job_id);
                        tokio::spawn(reap(inner.clone(), remote_dir.clone(), None));
                        return Outcome::Exited(rec);
                    }
                }
            }
            let f = follower.as_mut().expect("a follower runs between checks");
            tokio::select! {
                // The runner's callback: the job ended.
                _ = notify.notified() => {
                    tracing::debug!(job = job_id, "ssh: woken by the callback");
                    check = true;
                }
                // The follower ended by itself: the runner is gone.
                r = &mut f.task => {
                    follower = None;
                    idle = r.ok();
                    check = true;
                }
                // The fallback: look at the worker now and then.
                _ = tokio::time::sleep(inner.poll_every()) => match inner.probe(&remote_dir).await {
                    Ok(Probe::Running) => last_contact = Instant::now(),
                    Ok(Probe::Exited { .. }) => check = true,
                    Ok(Probe::Vanished(why)) => {
                        let sink = follower.take().expect("follower").stop().await;
                        return lost(sink, why);
                    }
                    Err(e) => {
                        if last_contact.elapsed() >= hb {
                            let sink = follower.take().expect("follower").stop().await;
                            return lost(sink, unreachable(&e));
                        }
                    }
                },
            }
        }
    }
}

/// Completes the server's log and writes `exit.json` for a job that ended on the worker.
fn record(
    dir: &Path,
    info: &SshJobInfo,
    sink: &mut LogSink,
    end: End,
    mut error: Option<String>,
) -> ExitRecord {
    sink.finish();
    if let Some(e) = sink.error.take() {
        error.get_or_insert(e);
    }
    let End {
        code,
        canceled,
        timed_out,
    } = end;
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
    rec
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

/// `scp -r` of the worker's `out/` into the server's job `out/` (for workers without `tar`).
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
    move_into_out(dir, &fetch)
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
        let secrets = secrets_file(spec).map_err(|d| inner.err("start the job", d))?;
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
            "{}/api/v1/callbacks/jobs/{}",
            inner.s.callback_url.trim_end_matches('/'),
            spec.job_id
        );
        // For a plain-http server the runner calls back through bash's /dev/tcp.
        let (tcp, req) = match plain_http(&url) {
            Some((host, port, authority, path)) => (
                format!("{host}\n{port}\n"),
                format!(
                    "POST {path} HTTP/1.1\r\nHost: {authority}\r\nX-Baton-Job-Token: {token}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            ),
            None => (String::new(), String::new()),
        };
        let mut files: Vec<(&str, String)> = vec![
            ("script.sh", spec.script.clone()),
            ("env.sh", env),
            ("run.sh", runner(spec)),
            ("callback.hdr", format!("X-Baton-Job-Token: {token}\n")),
            ("callback.url", format!("{url}\n")),
            ("callback.tcp", tcp),
            ("callback.req", req),
        ];
        if !secrets.is_empty() {
            files.push(("secrets.sh", secrets));
        }
        let mut setup = format!(
            "set -e\numask 077\nD={d}\n\
             if [ -e \"$D/runner.pid\" ] || [ -e \"$D/exit\" ]; then echo \"job folder $D was already started on this worker\" >&2; exit 17; fi\n\
             if [ -e \"$D\" ]; then rm -rf -- \"$D\"; fi\nmkdir -p -- \"$D/work\" \"$D/out\"\ncd -- \"$D\"\nD=$PWD\n",
            d = shell_quote(&remote_dir)
        );
        for (name, content) in &files {
            setup.push_str(&put_file(name, content));
        }
        let sink = LogSink::open(&dir, &spec.secrets.mask)?;
        setup.push_str(
            ": > log\n\
             command -v dtach >/dev/null || { echo 'dtach: command not found' >&2; exit 127; }\n\
             command -v curl >/dev/null || { echo 'curl: command not found' >&2; exit 127; }\n\
             dtach -n \"$D/sock\" -z bash \"$D/run.sh\" </dev/null >/dev/null 2>&1\n\
             i=0; while [ ! -s runner.pid ] && [ $i -lt 2000 ]; do sleep 0.005; i=$((i+1)); done\n\
             [ -s runner.pid ] || { echo 'the runner did not start under dtach' >&2; exit 18; }\n\
             echo started\n",
        );
        // The same session then follows the log.
        setup.push_str(&follow_script(&remote_dir, sink.remote));
        tracing::debug!(job = spec.job_id, "ssh: starting");
        // The session that will fetch the job's end opens meanwhile (it waits for the word).
        let (started, finisher) = tokio::join!(
            inner.start_session(&setup),
            Finisher::open(inner, &remote_dir)
        );
        let finisher = finisher.ok();
        let (first, check_first) = match started {
            Ok(stream) => {
                tracing::debug!(job = spec.job_id, "ssh: started");
                (Some(stream), false)
            }
            Err(e) => {
                // The answer may be lost while the job did start (connection dropped): ask. If
                // we cannot tell, the job is treated as started and waiting decides (it is
                // running, it vanished, or the worker stays unreachable past the heartbeat
                // timeout).
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
                tracing::warn!(
                    "{e}; the job may have started, so it is watched like a started one"
                );
                (None, true)
            }
        };
        Ok(Box::new(SshJob {
            inner: inner.clone(),
            dir,
            info,
            job_id: spec.job_id,
            notify,
            sink,
            mask: spec.secrets.mask.clone(),
            first,
            finisher,
            check_first,
        }))
    }

    async fn reattach_job(&self, dir: &Path, secrets: &JobSecrets) -> Reattached {
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
        let mask = secrets.mask.clone();
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
        // The job may have ended while we were away (its callback missed): look first.
        Reattached::Running(Box::new(SshJob {
            inner: inner.clone(),
            dir: dir.to_path_buf(),
            info,
            job_id,
            notify,
            sink,
            mask,
            first: None,
            finisher: None,
            check_first: true,
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

    fn reattach<'a>(&'a self, dir: &'a Path, secrets: &'a JobSecrets) -> BoxFuture<'a, Reattached> {
        Box::pin(self.reattach_job(dir, secrets))
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
    fn the_trailer_is_found_only_at_the_very_end_with_the_nonce() {
        let n = "0123456789abcdef";
        let data = b"tar bytes\nBATON-END-0123456789abcdef 0 \n";
        assert_eq!(trailer(data, n), Some((9, 0, String::new())));
        let data = b"xx\nBATON-END-0123456789abcdef 2 tar: a: Cannot open\n";
        assert_eq!(trailer(data, n), Some((2, 2, "tar: a: Cannot open".into())));
        assert_eq!(
            trailer(b"xx\nBATON-END-0123456789abcdef 0 \nmore\n", n),
            None
        );
        assert_eq!(trailer(b"xx\nBATON-END-0123456789abcdef 0 ", n), None);
        assert_eq!(trailer(b"xx\nBATON-END-ffffffffffffffff 0 \n", n), None);
    }

    /// The finishing script, run by a local bash as sshd would run it: the answer up to the
    /// trailer (or the end), then (after `ok`, if `ack`) the rest, and whether bash succeeded.
    fn run_finish(dir: &Path, done: u64, ack: bool) -> (Vec<u8>, Vec<u8>, bool) {
        use std::io::Read;
        // Relative to the login directory, as work_dir may be.
        let name = dir.file_name().unwrap().to_string_lossy();
        let mut child = std::process::Command::new("bash")
            .arg("-s")
            .current_dir(dir.parent().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(finish_script(&name).as_bytes()).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50)); // opened early, told later
        writeln!(stdin, "go {done} 00ff00ff00ff00ff").unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while trailer(&got, "00ff00ff00ff00ff").is_none() {
            let n = out.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if ack {
            stdin.write_all(b"ok\n").unwrap();
        }
        drop(stdin);
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).unwrap();
        let st = child.wait().unwrap();
        (got, rest, st.success())
    }

    #[test]
    fn the_finishing_script_answers_then_removes_the_folder_only_when_told() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job");
        fs::create_dir_all(dir.join("out/sub")).unwrap();
        fs::write(dir.join("log"), b"0123456789").unwrap();
        fs::write(dir.join("out/sub/f"), b"artifact").unwrap();
        // No runner.pid and no exit: the runner is gone.
        let (got, _, ok) = run_finish(&dir, 0, false);
        assert!(ok);
        assert_eq!(got, b"vanished\n");
        // A live process whose command line says run.sh stands in for the runner.
        let mut runner = std::process::Command::new("bash")
            .args(["-c", "read -r -t 30 x", "run.sh"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        fs::write(dir.join("runner.pid"), format!("{}\n", runner.id())).unwrap();
        let (got, _, _) = run_finish(&dir, 0, false);
        runner.kill().unwrap();
        runner.wait().unwrap();
        assert_eq!(got, b"running\n");
        let (got, _, _) = run_finish(&tmp.path().join("nope"), 0, false);
        assert_eq!(got, b"gone\n");

        fs::write(dir.join("exit"), b"143\n").unwrap();
        fs::write(dir.join("canceled"), b"").unwrap();
        let (got, rest, ok) = run_finish(&dir, 4, false);
        assert!(ok);
        assert!(rest.is_empty());
        let head = b"exit 143\ncanceled\nlog 6\n456789tar\n";
        assert!(got.starts_with(head), "{:?}", String::from_utf8_lossy(&got));
        let (at, rc, msg) = trailer(&got, "00ff00ff00ff00ff").unwrap();
        assert_eq!((rc, msg.as_str()), (0, ""));
        let tar_path = tmp.path().join("a.tar");
        fs::write(&tar_path, &got[head.len()..]).unwrap();
        let fetch = tmp.path().join("fetch");
        unpack(&tar_path, (at - head.len()) as u64, &fetch).unwrap();
        assert_eq!(fs::read(fetch.join("sub/f")).unwrap(), b"artifact");
        assert!(dir.exists(), "no word, no removal");

        let (_, rest, ok) = run_finish(&dir, 10, true);
        assert!(ok);
        assert_eq!(rest, b"removed\n");
        assert!(!dir.exists(), "removed once told");
    }

    #[test]
    fn a_waiting_finisher_ends_quietly_with_its_session() {
        use std::io::Read;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("exit"), b"0\n").unwrap();
        let mut child = std::process::Command::new("bash")
            .arg("-s")
            .current_dir(tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(finish_script("job").as_bytes()).unwrap();
        drop(stdin);
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        assert!(child.wait().unwrap().success());
        assert!(out.is_empty());
        assert!(dir.exists());
    }

    #[test]
    fn the_follower_ends_with_the_runner_or_when_its_stdin_closes() {
        use std::io::Read;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("log"), b"0123456789").unwrap();
        let follow = |stdin_open: bool| {
            let mut runner = std::process::Command::new("bash")
                .args(["-c", "read -r -t 30 x", "run.sh"])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            fs::write(dir.join("runner.pid"), format!("{}\n", runner.id())).unwrap();
            let mut child = std::process::Command::new("bash")
                .arg("-s")
                .current_dir(tmp.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take();
            let script = follow_script("job", 4);
            stdin
                .as_mut()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let mut out = child.stdout.take().unwrap();
            let mut got = [0u8; 6];
            out.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"456789");
            let t0 = std::time::Instant::now();
            if stdin_open {
                // The runner ends: so does the follower, successfully.
                runner.kill().unwrap();
                runner.wait().unwrap();
            } else {
                stdin = None;
            }
            let st = child.wait().unwrap();
            assert!(t0.elapsed() < Duration::from_secs(3), "ended promptly");
            drop(stdin);
            let _ = runner.kill();
            let _ = runner.wait();
            st.success()
        };
        assert!(
            follow(true),
            "the runner's end ends the follower with success"
        );
        assert!(!follow(false), "a closed stdin stops it");
    }

    #[test]
    fn an_empty_out_folder_sends_no_tar() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job");
        fs::create_dir_all(dir.join("out")).unwrap();
        fs::write(dir.join("log"), b"abc").unwrap();
        fs::write(dir.join("exit"), b"0\n").unwrap();
        let (got, rest, ok) = run_finish(&dir, 3, true);
        assert!(ok);
        assert_eq!(
            got,
            b"exit 0\nlog 0\nempty\n\nBATON-END-00ff00ff00ff00ff 0 \n"
        );
        assert_eq!(rest, b"removed\n");
        assert!(!dir.exists());
    }

    #[test]
    fn a_worker_without_tar_says_notar() {
        use std::io::Read;
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        for tool in ["bash", "cat", "wc", "tail", "head", "grep", "rm", "tr"] {
            let Some(found) = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
            else {
                return; // an unusual machine: nothing to check here
            };
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
        let dir = tmp.path().join("job");
        fs::create_dir_all(dir.join("out")).unwrap();
        fs::write(dir.join("out/f"), b"x").unwrap();
        fs::write(dir.join("log"), b"abc").unwrap();
        fs::write(dir.join("exit"), b"0\n").unwrap();
        let mut child = std::process::Command::new(bin.join("bash"))
            .arg("-s")
            .current_dir(tmp.path())
            .env_clear()
            .env("PATH", &bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(finish_script("job").as_bytes()).unwrap();
        stdin.write_all(b"go 1 0123456789abcdef\nok\n").unwrap();
        drop(stdin);
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "exit 0\nlog 2\nbcnotar\n\nBATON-END-0123456789abcdef 0 \nremoved\n"
        );
    }

    #[test]
    fn uploaded_files_arrive_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let evil = "a'b\"c $(touch pwned) `touch pwned` ; \\ $HOME * '' \\'\n\tend\r\n\u{e9}";
        for (name, content) in [("one", evil), ("two", "with\0nul'")] {
            let mut child = std::process::Command::new("bash")
                .arg("-s")
                .current_dir(tmp.path())
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let script = put_file(name, content);
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
            assert_eq!(fs::read(tmp.path().join(name)).unwrap(), content.as_bytes());
        }
        assert!(!tmp.path().join("pwned").exists());
    }

    #[test]
    fn plain_http_callbacks_are_split_for_dev_tcp() {
        let p = plain_http;
        assert_eq!(
            p("http://10.0.0.1:8700/api/v1/callbacks/jobs/7"),
            Some((
                "10.0.0.1".into(),
                8700,
                "10.0.0.1:8700".into(),
                "/api/v1/callbacks/jobs/7".into()
            ))
        );
        assert_eq!(
            p("http://ci.example/baton/api/v1/callbacks/jobs/7").map(|x| (x.0, x.1)),
            Some(("ci.example".into(), 80))
        );
        assert_eq!(
            p("http://[fd00::1]:8700/x").map(|x| (x.0, x.1, x.2)),
            Some(("fd00::1".into(), 8700, "[fd00::1]:8700".into()))
        );
        for no in [
            "https://h/x",
            "http://u@h/x",
            "http://h:0/x",
            "http://h:99999/x",
            "http://h/x?y",
            "http://h$(id)/x",
            "http:///x",
        ] {
            assert_eq!(p(no), None, "{no}");
        }
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
            secrets: Default::default(),
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
