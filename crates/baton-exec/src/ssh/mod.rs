//! [`SshExecutor`]: agentless SSH workers (the py4CI model). One executor per worker.
//!
//! Nothing is installed on the worker: it needs `sshd`, `bash`, coreutils, `dtach` and `curl`
//! (and uses `tar` for the artifacts when it has it, `scp` when not), and `git` for a
//! repository job that checks out its commit (a task with `checkout: false` needs none): the
//! runner fetches exactly that commit from the server's smart-HTTP endpoint of the job's
//! repository (`<callback_url>/api/v1/jobs/{job}/{attempt}/repo.git`) with the job's token,
//! so the worker needs no forge credentials and no way to the forge.
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
//!    (`tail -c +OFFSET --pid=RUNNER -F log`). The runner (`runner.sh`) runs
//!    `bash -eo pipefail script.sh` in `work/` in its own process group (recorded in `pgid`),
//!    appends stdout + stderr to `log`, enforces the timeout and a cancel request (the file
//!    `cancel`) with SIGTERM then SIGKILL to that group, writes the exit code to `exit`, and
//!    reports to `POST /api/v1/callbacks/jobs/{job}` (header `X-Baton-Job-Token`): through
//!    bash's `/dev/tcp` when the server's URL is plain `http://`, else or if that fails with
//!    `curl`.
//! 2. Finish: a second `ssh … bash -s`, opened beside the first, reads `finish.sh` and
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
//! unreachable for longer than `heartbeat_timeout` makes the job
//! [`Outcome::Lost`](crate::Outcome::Lost). A finishing
//! session that broke is replaced by a new one.
//!
//! Server-side job folder additions: `ssh.json` ([`SshJobInfo`]) and `log.offset`.
//!
//! Modules: `transport` (ssh options, bounded commands, sessions), `shell` (the `.sh` scripts
//! and how values reach them: a prelude of single-quoted inputs), `health`, `start` (upload and
//! launch, re-attach, cancel), `follow` and `sink` (the log), `finish` (the finishing
//! protocol), `artifacts`, `job` (waiting) and `reap` (probing, and cleaning up after a job
//! given up on).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::background::CancellationToken;
use crate::callback::CallbackHub;
use crate::error::ExecError;
use crate::executor::{BoxFuture, Executor, Health, Reattached, RunningJob};
use crate::job::{JobSecrets, JobSpec};

mod artifacts;
mod finish;
mod follow;
mod health;
mod job;
#[cfg(test)]
mod loop_tests;
mod reap;
mod shell;
mod sink;
mod start;
#[cfg(test)]
mod tests;
mod transport;

pub use shell::shell_quote;

/// What the server keeps about an SSH job, in `ssh.json` of the job folder.
pub const SSH_FILE: &str = "ssh.json";
/// `"<remote offset> <local log length>"`, rewritten after every log write.
pub const OFFSET_FILE: &str = "log.offset";

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

/// Runs jobs on one SSH worker. Cheap to share (`Arc` inside). Its background loops (the
/// health check, the reapers of jobs given up on) stop when it is dropped or its shutdown
/// token is cancelled; running jobs are not affected by either.
pub struct SshExecutor {
    inner: Arc<Inner>,
    /// The health loop (it ends when `inner.stop` is cancelled).
    #[cfg_attr(not(test), allow(dead_code))]
    health_task: tokio::task::JoinHandle<Option<std::sync::Weak<Inner>>>,
}

struct Inner {
    s: SshSettings,
    /// `user@host` without the port.
    dest: String,
    port: Option<u16>,
    hub: CallbackHub,
    health: Mutex<Health>,
    /// When the worker last answered a health check.
    last_ok: Mutex<Option<DateTime<Utc>>>,
    /// Stops the background loops.
    stop: CancellationToken,
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

impl SshExecutor {
    /// An executor for one worker; starts its health check (call inside a tokio runtime).
    pub fn new(settings: SshSettings, hub: CallbackHub) -> Self {
        Self::with_shutdown(settings, hub, &CancellationToken::new())
    }

    /// Like [`new`](Self::new), with background loops that also stop when `shutdown` (the
    /// server's) is cancelled.
    pub fn with_shutdown(
        settings: SshSettings,
        hub: CallbackHub,
        shutdown: &CancellationToken,
    ) -> Self {
        let (dest, port) = transport::split_host(&settings.host);
        let inner = Arc::new(Inner {
            s: settings,
            dest,
            port,
            hub,
            health: Mutex::new(Health::Down("not checked yet".into())),
            last_ok: Mutex::new(None),
            stop: shutdown.child_token(),
        });
        let health_task = health::spawn(Arc::downgrade(&inner));
        SshExecutor { inner, health_task }
    }
}

impl Drop for SshExecutor {
    fn drop(&mut self) {
        self.inner.stop.cancel();
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

    fn last_heartbeat(&self) -> Option<DateTime<Utc>> {
        *self.inner.last_ok.lock().expect("last_ok poisoned")
    }
}
