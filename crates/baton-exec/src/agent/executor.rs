//! The executor side of an agent: its slots as `Executor`s, each job handed over through the
//! hub's mailbox, and the server's copy of the job's log as the agent sends it.

use super::*;

/// The executor of one agent's slots.
pub struct AgentExecutor {
    hub: Arc<AgentHub>,
    agent: String,
}

impl AgentExecutor {
    pub fn new(hub: Arc<AgentHub>, agent: &str) -> Self {
        AgentExecutor {
            hub,
            agent: agent.to_string(),
        }
    }

    fn job(&self, dir: &Path) -> Box<dyn RunningJob> {
        Box::new(AgentJob {
            hub: self.hub.clone(),
            agent: self.agent.clone(),
            dir: dir.to_path_buf(),
        })
    }
}

/// The server's side of an agent's job folder: `work/`, `out/`, an empty log, the spec.
pub(crate) fn prepare(dir: &Path, spec: &JobSpec) -> Result<(), ExecError> {
    for d in [WORK_DIR, OUT_DIR] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(|e| ExecError::io("create directory", p, e))?;
    }
    let log = dir.join(LOG_FILE);
    std::fs::File::create(&log).map_err(|e| ExecError::io("create log", &log, e))?;
    let spec_path = dir.join(SPEC_FILE);
    let json = serde_json::to_vec_pretty(spec).map_err(|source| ExecError::Json {
        path: spec_path.clone(),
        source,
    })?;
    write_atomic(&spec_path, &json, false)
        .map_err(|e| ExecError::io("write job spec", &spec_path, e))
}

/// The job and attempt of a job folder (`jobs/<job>/<attempt>`).
pub(crate) fn job_ref_of(dir: &Path) -> JobRef {
    JobRef {
        job_id: dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or_default(),
        attempt: attempt_of(dir),
    }
}

pub(crate) fn attempt_of(dir: &Path) -> u32 {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

impl Executor for AgentExecutor {
    fn kind(&self) -> &'static str {
        "agent"
    }

    fn start<'a>(
        &'a self,
        dir: &'a Path,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<Box<dyn RunningJob>, ExecError>> {
        Box::pin(async move {
            let (d, s) = (dir.to_path_buf(), spec.clone());
            tokio::task::spawn_blocking(move || prepare(&d, &s))
                .await
                .map_err(|e| ExecError::io("prepare", dir, std::io::Error::other(e)))??;
            let assignment = Assignment {
                job_id: spec.job_id,
                attempt: attempt_of(dir),
                spec: spec.clone(),
                secrets: spec.secrets.clone(),
            };
            if !self
                .hub
                .push(&self.agent, |a| a.mailbox.push_back(assignment))
            {
                return Err(ExecError::NotRunning {
                    dir: dir.to_path_buf(),
                    reason: format!("agent {} is not connected", self.agent),
                });
            }
            Ok(self.job(dir))
        })
    }

    fn reattach<'a>(
        &'a self,
        dir: &'a Path,
        _secrets: &'a JobSecrets,
    ) -> BoxFuture<'a, Reattached> {
        // The agent's supervisor (or engine) has them and masks the log before uploading it.
        Box::pin(async move {
            if let Some(rec) = read_exit_async(dir).await {
                return Reattached::Finished(rec);
            }
            if tokio::fs::try_exists(dir.join(SPEC_FILE))
                .await
                .unwrap_or(false)
            {
                // The agent re-reports it when it polls again, or is lost after the timeout, or
                // its next poll says it does not have it.
                self.hub.expect(&self.agent, job_ref_of(dir));
                return Reattached::Running(self.job(dir));
            }
            Reattached::Vanished(format!("job folder {} has no spec", dir.display()))
        })
    }

    fn cancel<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let r = job_ref_of(dir);
            self.hub.push(&self.agent, |a| a.cancels.push_back(r));
            Ok(())
        })
    }

    /// Asked of the agent, whose engine runs the job ([`AgentHub::ask_image`]).
    fn image_id<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<Option<String>, ExecError>> {
        Box::pin(self.hub.ask_image(&self.agent, image))
    }

    fn last_heartbeat(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let st = self.hub.lock();
        let a = st.agents.get(&self.agent)?;
        let ago = if a.polling > 0 {
            std::time::Duration::ZERO
        } else {
            a.last_seen.elapsed()
        };
        chrono::Duration::from_std(ago)
            .ok()
            .map(|d| chrono::Utc::now() - d)
    }

    fn health(&self) -> Health {
        let st = self.hub.lock();
        match st.agents.get(&self.agent) {
            Some(a) if a.disabled => Health::Disabled(format!("agent {} is disabled", self.agent)),
            Some(a) if self.hub.alive(a) => Health::Up,
            _ => Health::Down(format!("agent {} is not connected", self.agent)),
        }
    }
}

struct AgentJob {
    hub: Arc<AgentHub>,
    agent: String,
    dir: PathBuf,
}

impl RunningJob for AgentJob {
    fn wait(self: Box<Self>) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            loop {
                let exits = self.hub.exits.clone();
                let notified = exits.notified();
                let job = job_ref_of(&self.dir);
                if let Some(rec) = read_exit_async(&self.dir).await {
                    self.hub.forget(&self.agent, job);
                    return Outcome::Exited(rec);
                }
                if let Some(why) = self.hub.missing(&self.agent, job) {
                    self.hub.forget(&self.agent, job);
                    return Outcome::Lost(why);
                }
                if let Some(why) = self.hub.lost(&self.agent) {
                    // One last look: the report may have raced the timeout.
                    self.hub.forget(&self.agent, job);
                    return match read_exit_async(&self.dir).await {
                        Some(rec) => Outcome::Exited(rec),
                        None => Outcome::Lost(why),
                    };
                }
                let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
            }
        })
    }
}

/// Appends `bytes` reported at `offset` to the log at `path`, idempotently: bytes the log
/// already has are skipped, so an agent may resend after a dropped connection. Returns the
/// log's new size, or `Err(size)` when `offset` is past the end (a gap: resend from `size`).
///
/// `marks` are the agent's own index of these bytes ([`crate::logidx::MARKS_HEADER`]): the new
/// bytes get their streams and times; without them (an older agent) they are marked stdout at
/// the time they reached the server.
pub fn append_at(
    path: &Path,
    offset: u64,
    bytes: &[u8],
    marks: &[crate::logidx::LogMark],
) -> std::io::Result<Result<u64, u64>> {
    use crate::logidx::{MarkWriter, Stream};
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    let size = f.metadata()?.len();
    if offset > size {
        return Ok(Err(size));
    }
    let skip = (size - offset) as usize;
    if skip < bytes.len() {
        let end = offset + bytes.len() as u64;
        let mut w = MarkWriter::open(path, size);
        // The mark in force where the new bytes begin, then those inside them.
        match marks.iter().rev().find(|m| m.offset <= size) {
            Some(m) => w.note_at(size, m.time_ms, m.stream),
            None => w.note(size, Stream::Stdout),
        }
        for m in marks.iter().filter(|m| m.offset > size && m.offset < end) {
            w.note_at(m.offset, m.time_ms, m.stream);
        }
        f.write_all(&bytes[skip..])?;
        crate::meter::log_bytes_taken((bytes.len() - skip) as u64);
    }
    Ok(Ok(size.max(offset + bytes.len() as u64)))
}
