//! Looking at a job on the worker ([`Inner::probe`]) and cleaning up after one given up on
//! ([`reap`]): a background loop that stops the job once the worker answers again, copies the
//! rest of its log and removes its folder.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Inner;
use super::shell::{
    cancel_command, log_from_command, parse_secrets, probe_script, remove_command, secrets_command,
};
use super::sink::LogSink;
use crate::background::Loop;
use crate::error::ExecError;

/// What the worker says about a job folder.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Probe {
    Running,
    Exited {
        code: i32,
        canceled: bool,
        timed_out: bool,
    },
    Vanished(String),
}

/// The first line of an answer of `probe.sh` or `finish.sh`.
pub(super) enum Answer {
    Running,
    Vanished(String),
    Exit(i32),
}

impl Inner {
    /// Asks the worker what became of the job in `remote_dir` (see `probe.sh`).
    pub(super) async fn probe(&self, remote_dir: &str) -> Result<Probe, ExecError> {
        let script = probe_script(remote_dir);
        let out = self
            .run(
                "check the job",
                "bash -s",
                Some(script.as_bytes()),
                self.cmd_limit(),
            )
            .await?;
        let text = String::from_utf8_lossy(&out);
        let mut lines = text.lines();
        Ok(match self.answer(remote_dir, lines.next().unwrap_or(""))? {
            Answer::Running => Probe::Running,
            Answer::Vanished(why) => Probe::Vanished(why),
            Answer::Exit(code) => {
                let rest: Vec<&str> = lines.map(str::trim).collect();
                Probe::Exited {
                    code,
                    canceled: rest.contains(&"canceled"),
                    timed_out: rest.contains(&"timed_out"),
                }
            }
        })
    }

    /// What the first line of an answer of `probe.sh` or `finish.sh` says.
    pub(super) fn answer(&self, remote_dir: &str, line: &str) -> Result<Answer, ExecError> {
        let worker = &self.s.worker;
        Ok(match line.trim() {
            "running" => Answer::Running,
            "gone" => Answer::Vanished(format!(
                "the job folder {remote_dir} is gone from worker {worker}"
            )),
            "vanished" => Answer::Vanished(format!(
                "the job's runner on worker {worker} is gone without an exit code (worker rebooted or its processes were killed)"
            )),
            f if f.starts_with("exit ") => Answer::Exit(f[5..].trim().parse().unwrap_or(-1)),
            other => {
                let detail = format!("unexpected answer {other:?} from the worker");
                return Err(self.err("check the job", detail));
            }
        })
    }

    /// The secret values of the job in `remote_dir`, read back from its `secrets.sh` (none if
    /// it has no such file, or no folder): a server that re-attaches after a restart masks
    /// them, as it did before (a minted forge token is known nowhere else). Values shorter
    /// than the scheduler masks (4 bytes) are left out.
    pub(super) async fn read_secrets(&self, remote_dir: &str) -> Result<Vec<String>, ExecError> {
        let cmd = secrets_command(remote_dir);
        let out = self
            .run("read the job's secrets back", &cmd, None, self.cmd_limit())
            .await?;
        let text = String::from_utf8_lossy(&out);
        Ok(parse_secrets(&text)
            .into_iter()
            .filter(|v| v.len() >= 4)
            .collect())
    }

    /// Asks the job's runner to stop it (the watchdog sends SIGTERM, SIGKILL after the grace,
    /// even if the connection drops right after this).
    pub(super) async fn request_cancel(&self, remote_dir: &str) -> Result<(), ExecError> {
        let cmd = cancel_command(remote_dir);
        self.run("cancel the job", &cmd, None, self.cmd_limit())
            .await
            .map(drop)
    }

    pub(super) async fn remove_remote(&self, remote_dir: &str) -> Result<(), ExecError> {
        let cmd = remove_command(remote_dir);
        self.run("remove the job folder", &cmd, None, self.cmd_limit() * 3)
            .await
            .map(drop)
    }

    /// Reads whatever of the remote log the stream has not delivered. Retries until the
    /// heartbeat timeout.
    async fn catch_up(&self, remote_dir: &str, sink: &mut LogSink) -> Result<(), ExecError> {
        let deadline = Instant::now() + self.s.heartbeat_timeout;
        loop {
            let cmd = log_from_command(remote_dir, sink.remote);
            match self
                .run("read the end of the log", &cmd, None, self.cmd_limit() * 3)
                .await
            {
                Ok(bytes) => {
                    sink.push(&bytes).await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// How long a reaper keeps trying.
const REAP_FOR: Duration = Duration::from_secs(600);
/// How often it tries.
const REAP_EVERY: Duration = Duration::from_secs(2);

struct Reaping {
    inner: Arc<Inner>,
    remote_dir: String,
    sink: Option<LogSink>,
    until: Instant,
}

impl Reaping {
    /// One round: whether the job is dealt with (or the reaper gives up).
    async fn round(&mut self) -> ControlFlow<()> {
        if Instant::now() >= self.until {
            tracing::warn!(
                "worker {}: gave up removing the job folder {} after {}s",
                self.inner.s.worker,
                self.remote_dir,
                REAP_FOR.as_secs()
            );
            return ControlFlow::Break(());
        }
        match self.inner.probe(&self.remote_dir).await {
            Ok(Probe::Running) => {
                let _ = self.inner.request_cancel(&self.remote_dir).await;
            }
            Ok(_) => {
                if let Some(mut s) = self.sink.take() {
                    if self.inner.catch_up(&self.remote_dir, &mut s).await.is_err() {
                        self.sink = Some(s);
                        return ControlFlow::Continue(());
                    }
                    s.finish().await;
                }
                if self.inner.remove_remote(&self.remote_dir).await.is_ok() {
                    return ControlFlow::Break(());
                }
            }
            Err(_) => {}
        }
        ControlFlow::Continue(())
    }
}

/// After a job was given up on (worker unreachable or runner gone): for up to ten minutes, or
/// until the executor stops, make sure it stops on the worker once the worker answers again,
/// copy the rest of its log (the output up to its end is kept, even for a `broken` run), then
/// remove its folder.
pub(super) fn reap(inner: Arc<Inner>, remote_dir: String, sink: Option<LogSink>) {
    let name = format!("ssh reaper of {remote_dir} on {}", inner.s.worker);
    let stop = inner.stop.clone();
    let state = Reaping {
        inner,
        remote_dir,
        sink,
        until: Instant::now() + REAP_FOR,
    };
    Loop::new(name, REAP_EVERY, stop).spawn(state, |r| Box::pin(r.round()));
}
