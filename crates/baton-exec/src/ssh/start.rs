//! Starting, re-attaching and cancelling a job on an SSH worker.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use super::finish::Finisher;
use super::job::SshJob;
use super::reap::{Probe, reap};
use super::shell::{RUNNER, env_file, plain_http, secrets_file, start_script};
use super::sink::LogSink;
use super::transport::{Stream, never_connected};
use super::{Inner, SSH_FILE, SshExecutor, SshJobInfo};
use crate::callback;
use crate::error::ExecError;
use crate::executor::{Reattached, RunningJob};
use crate::job::{JobSecrets, JobSpec};
use crate::layout::{LOG_FILE, SPEC_FILE, read_exit, try_read_json, write_atomic};

/// The files uploaded into the job folder on the worker: the script, its environment, the
/// runner and what the runner's callback needs (the secrets, if any, come last).
fn upload_files(
    inner: &Inner,
    spec: &JobSpec,
    attempt: &str,
    token: &str,
) -> Result<Vec<(&'static str, String)>, ExecError> {
    let env = env_file(spec).map_err(|d| inner.err("start the job", d))?;
    let secrets = secrets_file(spec).map_err(|d| inner.err("start the job", d))?;
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
    let mut files = vec![
        ("script.sh", spec.script.clone()),
        ("env.sh", env),
        ("run.sh", RUNNER.to_string()),
        ("callback.hdr", format!("X-Baton-Job-Token: {token}\n")),
        ("callback.url", format!("{url}\n")),
        ("callback.tcp", tcp),
        ("callback.req", req),
    ];
    if let Some(commit) = &spec.checkout {
        // The runner fetches the commit from the server's smart-HTTP endpoint of the job's
        // repository with the job's token (the header in callback.hdr).
        if commit.len() < 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(inner.err(
                "start the job",
                format!("{commit:?} is not a commit id to check out"),
            ));
        }
        let repo = format!(
            "{}/api/v1/jobs/{}/{attempt}/repo.git",
            inner.s.callback_url.trim_end_matches('/'),
            spec.job_id
        );
        files.push(("checkout.commit", format!("{commit}\n")));
        files.push(("checkout.url", format!("{repo}\n")));
    }
    if !spec.artifacts.is_empty() {
        // One glob a line (the config loader refuses line breaks in them).
        let globs: String = spec.artifacts.iter().map(|g| format!("{g}\n")).collect();
        files.push(("artifacts.globs", globs));
        if spec.artifacts_required {
            files.push(("artifacts.required", String::new()));
        }
    }
    if !secrets.is_empty() {
        files.push(("secrets.sh", secrets));
    }
    Ok(files)
}

/// Writes `ssh.json` (durably) before anything happens on the worker.
async fn write_info(dir: &Path, info: &SshJobInfo) -> Result<(), ExecError> {
    let path = dir.join(SSH_FILE);
    let json = serde_json::to_vec_pretty(info).expect("SshJobInfo serializes");
    let p = path.clone();
    tokio::task::spawn_blocking(move || write_atomic(&p, &json, true))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| ExecError::io("write", &path, e))
}

impl SshExecutor {
    pub(super) async fn start_job(
        &self,
        dir: &Path,
        spec: &JobSpec,
    ) -> Result<Box<dyn RunningJob>, ExecError> {
        let inner = &self.inner;
        let (d, s) = (dir.to_path_buf(), spec.clone());
        let dir = tokio::task::spawn_blocking(move || {
            let dir = crate::layout::prepare_job_dir(&d, &s, SSH_FILE)?;
            let log_path = dir.join(LOG_FILE);
            std::fs::File::create(&log_path)
                .map_err(|e| ExecError::io("create log", &log_path, e))?;
            Ok::<_, ExecError>(dir)
        })
        .await
        .map_err(|e| ExecError::io("prepare", dir, std::io::Error::other(e)))??;

        let token = callback::new_token();
        let attempt = dir.file_name().and_then(|n| n.to_str()).unwrap_or("1");
        let files = upload_files(inner, spec, attempt, &token)?;
        let hash = callback::token_hash(&token);
        let remote_dir = inner.remote_dir(&dir);
        let info = SshJobInfo {
            worker: inner.s.worker.clone(),
            host: inner.s.host.clone(),
            remote_dir: remote_dir.clone(),
            token_sha256: hex::encode(hash),
            started_at: Utc::now(),
        };
        write_info(&dir, &info).await?;
        let notify = inner.hub.register(spec.job_id, hash);
        let sink = LogSink::open(&dir, &spec.secrets.mask).await?;
        let setup = start_script(&remote_dir, spec, &files, sink.remote);
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
            Err(e) => (
                None,
                self.after_failed_start(e, &remote_dir, spec.job_id).await?,
            ),
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
            reread_secrets: false,
        }))
    }

    /// The start session failed with `e`, but the answer may be lost while the job did start
    /// (connection dropped): ask. If we cannot tell, the job is treated as started and waiting
    /// decides (it is running, it vanished, or the worker stays unreachable past the
    /// heartbeat timeout). `Ok(true)`: watch it like a started job, checking first.
    async fn after_failed_start(
        &self,
        e: ExecError,
        remote_dir: &str,
        job_id: i64,
    ) -> Result<bool, ExecError> {
        let inner = &self.inner;
        let started = match inner.probe(remote_dir).await {
            Ok(Probe::Running | Probe::Exited { .. }) => true,
            Ok(Probe::Vanished(_)) => false,
            Err(_) => !never_connected(&e),
        };
        if !started {
            inner.hub.unregister(job_id);
            reap(inner.clone(), remote_dir.to_string(), None);
            return Err(e);
        }
        tracing::warn!("{e}; the job may have started, so it is watched like a started one");
        Ok(true)
    }

    pub(super) async fn reattach_job(&self, dir: &Path, secrets: &JobSecrets) -> Reattached {
        let inner = &self.inner;
        let d = dir.to_path_buf();
        let (exit, info, spec) = match tokio::task::spawn_blocking(move || {
            (
                read_exit(&d),
                try_read_json::<SshJobInfo>(&d.join(SSH_FILE)),
                try_read_json::<JobSpec>(&d.join(SPEC_FILE)).ok().flatten(),
            )
        })
        .await
        {
            Ok(found) => found,
            Err(e) => return Reattached::Vanished(format!("cannot read {}: {e}", dir.display())),
        };
        if let Some(rec) = exit {
            // Ended; its folder on the worker may be left if we died before removing it.
            if let Ok(Some(info)) = info {
                let inner = Arc::clone(inner);
                tokio::spawn(async move {
                    let _ = inner.remove_remote(&info.remote_dir).await;
                });
            }
            return Reattached::Finished(rec);
        }
        let info = match info {
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
        let job_id = spec.as_ref().map_or(0, |s| s.job_id);
        let mask = secrets.mask.clone();
        let mut hash = [0u8; 32];
        if let Ok(v) = hex::decode(&info.token_sha256)
            && v.len() == 32
        {
            hash.copy_from_slice(&v);
        }
        let notify = inner.hub.register(job_id, hash);
        let sink = match LogSink::open(dir, &mask).await {
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
            first: None::<Stream>,
            finisher: None,
            check_first: true,
            reread_secrets: true,
        }))
    }

    pub(super) async fn cancel_job(&self, dir: &Path) -> Result<(), ExecError> {
        let d = dir.to_path_buf();
        let (exit, info) = tokio::task::spawn_blocking(move || {
            (
                read_exit(&d),
                try_read_json::<SshJobInfo>(&d.join(SSH_FILE)),
            )
        })
        .await
        .map_err(|e| ExecError::io("read", dir.join(SSH_FILE), std::io::Error::other(e)))?;
        if exit.is_some() {
            return Ok(());
        }
        let info = info?.ok_or_else(|| ExecError::NotRunning {
            dir: dir.to_path_buf(),
            reason: format!("no {SSH_FILE}: not started on the worker yet"),
        })?;
        self.inner.request_cancel(&info.remote_dir).await
    }
}
