//! After a server restart: finding a job's container again (waiting a while for an engine that
//! restarts with the server); and cancelling a job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::ContainerStateStatusEnum;

use super::follow::monitor;
use super::{
    CANCELED_MARK, CONTAINER_FILE, ContainerInfo, DockerExecutor, DockerJob, ENGINE_PATIENCE,
    connect, off_thread, remove, stop,
};
use crate::error::ExecError;
use crate::executor::Reattached;
use crate::job::{ExitRecord, JobSecrets, JobSpec, Outcome};
use crate::layout::{SPEC_FILE, read_exit, try_read_json, write_atomic};

/// What a job folder holds for re-attaching: its exit record, else its container and spec.
enum Found {
    Finished(ExitRecord),
    Running(ContainerInfo, Box<JobSpec>),
    Vanished(String),
}

fn read_folder(dir: &Path) -> Found {
    if let Some(rec) = read_exit(dir) {
        return Found::Finished(rec);
    }
    let info = match try_read_json::<ContainerInfo>(&dir.join(CONTAINER_FILE)) {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Found::Vanished(format!(
                "no {CONTAINER_FILE} in {}: the container was never created",
                dir.display()
            ));
        }
        Err(e) => return Found::Vanished(e.to_string()),
    };
    match try_read_json::<JobSpec>(&dir.join(SPEC_FILE)) {
        Ok(Some(spec)) => Found::Running(info, Box::new(spec)),
        Ok(None) => Found::Vanished(format!("no {SPEC_FILE} in {}", dir.display())),
        Err(e) => Found::Vanished(e.to_string()),
    }
}

impl DockerExecutor {
    pub(super) async fn reattach_job(&self, dir: &Path, secrets: &JobSecrets) -> Reattached {
        let d = dir.to_path_buf();
        let (info, mut spec) = match tokio::task::spawn_blocking(move || read_folder(&d)).await {
            Ok(Found::Running(info, spec)) => (info, *spec),
            Ok(Found::Finished(rec)) => return Reattached::Finished(rec),
            Ok(Found::Vanished(why)) => return Reattached::Vanished(why),
            Err(e) => return Reattached::Vanished(format!("cannot read {}: {e}", dir.display())),
        };
        // The values to mask come from the scheduler (spec.json never holds them).
        spec.secrets = secrets.clone();
        let docker = match self.client().await {
            Ok(d) => d,
            Err(e) => {
                // The engine may be restarting with the server (same host): the container is
                // its, not ours, so wait for it a while rather than calling the job lost.
                tracing::warn!("re-attaching {} later: {e}", dir.display());
                let (host, dir) = (self.host.clone(), dir.to_path_buf());
                let task = tokio::spawn(resume_later(host, dir, spec, info));
                return Reattached::Running(Box::new(DockerJob { task }));
            }
        };
        let state = match docker.inspect_container(&info.name, None).await {
            Ok(c) => c.state.and_then(|s| s.status),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                let d = dir.to_path_buf();
                return match tokio::task::spawn_blocking(move || read_exit(&d)).await {
                    Ok(Some(rec)) => Reattached::Finished(rec),
                    _ => Reattached::Vanished(format!(
                        "container {} is gone and left no exit record",
                        info.name
                    )),
                };
            }
            Err(e) => {
                return Reattached::Vanished(
                    self.err(format!("inspect container {}", info.name), e)
                        .to_string(),
                );
            }
        };
        if state == Some(ContainerStateStatusEnum::CREATED) {
            remove(&docker, &info.name).await;
            return Reattached::Vanished(format!(
                "container {} was created but never started",
                info.name
            ));
        }
        let running = state == Some(ContainerStateStatusEnum::RUNNING);
        let task = tokio::spawn(monitor(docker, dir.to_path_buf(), spec, info));
        if running {
            Reattached::Running(Box::new(DockerJob { task }))
        } else {
            match (DockerJob { task }).outcome().await {
                Outcome::Exited(rec) => Reattached::Finished(rec),
                Outcome::Lost(why) => Reattached::Vanished(why),
            }
        }
    }

    pub(super) async fn cancel_job(&self, dir: &Path) -> Result<(), ExecError> {
        let d = dir.to_path_buf();
        let found = off_thread("cancel the job in", dir, move || {
            if read_exit(&d).is_some() {
                return Ok(None);
            }
            let info =
                try_read_json::<ContainerInfo>(&d.join(CONTAINER_FILE))?.ok_or_else(|| {
                    ExecError::NotRunning {
                        dir: d.clone(),
                        reason: format!("no {CONTAINER_FILE} yet"),
                    }
                })?;
            let grace = try_read_json::<JobSpec>(&d.join(SPEC_FILE))?
                .map_or(Duration::from_secs(5), |s| s.kill_grace);
            let mark = d.join(CANCELED_MARK);
            write_atomic(&mark, b"", false).map_err(|e| ExecError::io("write", &mark, e))?;
            Ok(Some((info, grace)))
        })
        .await?;
        let Some((info, grace)) = found else {
            return Ok(());
        };
        let docker = self.client().await?;
        // Stopping waits up to the grace period: never block the caller (the scheduler).
        tokio::spawn(stop(docker, info.name, grace));
        Ok(())
    }
}

/// Re-attaches once the engine at `host` answers (for up to [`ENGINE_PATIENCE`] seconds).
async fn resume_later(host: String, dir: PathBuf, spec: JobSpec, info: ContainerInfo) -> Outcome {
    let mut last = String::new();
    for _ in 0..ENGINE_PATIENCE {
        match connect(&host).await {
            Ok(engine) => {
                let docker = engine.docker;
                return match docker.inspect_container(&info.name, None).await {
                    Ok(c)
                        if c.state.as_ref().and_then(|s| s.status)
                            == Some(ContainerStateStatusEnum::CREATED) =>
                    {
                        remove(&docker, &info.name).await;
                        Outcome::Lost(format!(
                            "container {} was created but never started",
                            info.name
                        ))
                    }
                    Ok(_) => monitor(docker, dir, spec, info).await,
                    Err(e) => {
                        let d = dir.clone();
                        match tokio::task::spawn_blocking(move || read_exit(&d)).await {
                            Ok(Some(rec)) => Outcome::Exited(rec),
                            _ => Outcome::Lost(format!(
                                "container {} is gone and left no exit record ({e})",
                                info.name
                            )),
                        }
                    }
                };
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Outcome::Lost(format!(
        "could not re-attach to container {} within {ENGINE_PATIENCE} s: {last}",
        info.name
    ))
}
