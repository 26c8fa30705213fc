//! After a server restart: finding a job's container again (waiting a while for an engine that
//! restarts with the server); and cancelling a job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};

use super::follow::monitor;
use super::{
    CANCELED_MARK, CONTAINER_FILE, ContainerInfo, DockerExecutor, DockerJob, ENGINE_PATIENCE,
    LABEL_SECRET_ENV, connect, off_thread, remove, stop,
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
        // The values to mask come from the scheduler (spec.json never holds them), plus those
        // of the container's secret variables, which the engine kept (see `secret_values`).
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
            Ok(c) => {
                spec.secrets.mask.extend(secret_values(&c));
                c.state.and_then(|s| s.status)
            }
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
async fn resume_later(
    host: String,
    dir: PathBuf,
    mut spec: JobSpec,
    info: ContainerInfo,
) -> Outcome {
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
                    Ok(c) => {
                        spec.secrets.mask.extend(secret_values(&c));
                        monitor(docker, dir, spec, info).await
                    }
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

/// The values of the container's secret environment variables (named by its
/// [`LABEL_SECRET_ENV`] label): the engine keeps a container's environment until it is
/// removed, so a restarted server masks them again even when it no longer knows them itself
/// (a job's minted forge token, a secret removed from the configuration meanwhile).
fn secret_values(c: &ContainerInspectResponse) -> Vec<String> {
    let Some(config) = &c.config else {
        return Vec::new();
    };
    let names: Vec<String> = config
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SECRET_ENV))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let env = config.env.as_deref().unwrap_or_default();
    env.iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, v)| !v.is_empty() && names.iter().any(|n| n == k))
        .map(|(_, v)| v.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ContainerConfig;

    #[test]
    fn only_the_labelled_variables_are_secret() {
        let c = ContainerInspectResponse {
            config: Some(ContainerConfig {
                env: Some(vec![
                    "PATH=/usr/bin:/bin".into(),
                    "BATON_FORGE_TOKEN=tok=en-1234".into(),
                    "API_KEY=hunter2hunter2".into(),
                    "EMPTY=".into(),
                ]),
                labels: Some(std::collections::HashMap::from([(
                    LABEL_SECRET_ENV.to_owned(),
                    r#"["BATON_FORGE_TOKEN","API_KEY","EMPTY","GONE"]"#.to_owned(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(secret_values(&c), ["tok=en-1234", "hunter2hunter2"]);
        assert!(secret_values(&ContainerInspectResponse::default()).is_empty());
    }
}
