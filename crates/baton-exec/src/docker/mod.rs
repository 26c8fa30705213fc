//! [`DockerExecutor`]: runs a job's script in a fresh container through the Docker Engine API
//! (bollard), against Docker or Podman's Docker-compatible socket.
//!
//! The job folder stays on the server, as for local jobs: the container gets the job's `work/`
//! as its working directory (`/baton/work`), `out/` as `BATON_OUTPUT_DIR` (`/baton/out`) and
//! `script.sh` read-only (`/baton/job/script.sh`). The server streams the container's output
//! (stdout + stderr, in the engine's order) into `log`, masking secrets, and writes `exit.json`
//! when the container has exited; then the container is removed.
//!
//! Restart survival: the container belongs to the engine, not to the server, so a server crash
//! loses nothing. `container.json` (written before the container is created) names the
//! container and the log size before its first output byte; after a restart the engine's log is
//! re-read from its start through a fresh [`Masker`](crate::mask::Masker) and the bytes already in `log` are skipped,
//! so nothing is lost or written twice. Cancel and timeout leave a marker file (`canceled`,
//! `timed_out`) before stopping the container (SIGTERM, SIGKILL after the spec's `kill_grace`),
//! so the reason survives a restart too.
//!
//! Modules: `create` (the container of a new job), `build` (images from a Dockerfile),
//! `follow` (the log follower and the exit record; the log file is written on a blocking
//! thread, never on the async threads), `reattach` (after a restart, and cancel) and `sweep`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::HostConfigLogConfig;
use bollard::query_parameters::{RemoveContainerOptionsBuilder, StopContainerOptionsBuilder};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::background::{CancellationToken, Loop};
use crate::error::ExecError;
use crate::executor::{BoxFuture, Executor, Health, Reattached, RunningJob};
use crate::job::{JobSecrets, JobSpec, Outcome};

mod build;
mod create;
mod follow;
mod reattach;
mod sweep;

/// `container.json`: which container runs the job, written before it is created.
pub const CONTAINER_FILE: &str = "container.json";
/// Marker: the job was cancelled (written before the container is stopped).
pub const CANCELED_MARK: &str = "canceled";
/// Marker: the job's timeout expired (written before the container is stopped).
pub const TIMED_OUT_MARK: &str = "timed_out";

/// Label on every container Baton creates.
pub const LABEL_BATON: &str = "org.baton";
/// Label: the job folder on the server.
pub const LABEL_DIR: &str = "baton.dir";
/// Label: the names (a JSON list, never the values) of the container's secret environment
/// variables. After a restart their values, which only the engine keeps, are masked again,
/// including those the server cannot know any more (a job's minted forge token).
pub const LABEL_SECRET_ENV: &str = "baton.secret_env";

/// How often the engine is pinged for [`Executor::health`].
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// How long a monitor keeps trying when the engine stops answering mid-job.
const ENGINE_PATIENCE: u32 = 60;

/// What `container.json` holds.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct ContainerInfo {
    /// The container's name (unique per job folder).
    name: String,
    /// Size of `log` before the container's first byte (image build output comes before it).
    log_offset: u64,
    /// When the job was started.
    started_at: DateTime<Utc>,
}

/// Runs jobs in containers. Cheap to share: the engine client connects lazily, so a server
/// without an engine starts and reports the reason per job and in [`Executor::health`].
pub struct DockerExecutor {
    host: String,
    client: tokio::sync::OnceCell<Engine>,
    health: Arc<RwLock<Health>>,
    /// Stops the health loop (cancelled when the executor is dropped).
    stop: CancellationToken,
    /// The health loop, if a runtime was there to run it.
    #[cfg_attr(not(test), allow(dead_code))]
    health_task: Option<tokio::task::JoinHandle<Option<Option<Engine>>>>,
}

/// A connected engine.
#[derive(Clone)]
struct Engine {
    docker: Docker,
    /// Podman's Docker-compatible service (no `local` log driver there).
    podman: bool,
}

/// A client for the engine at `host`, after agreeing on an API version with it.
async fn connect(host: &str) -> Result<Engine, ExecError> {
    let err = |action: &str, source| ExecError::Docker {
        action: action.into(),
        host: host.to_owned(),
        source,
    };
    let docker = Docker::connect_with_host(host)
        .map_err(|e| err("connect", e))?
        .negotiate_version()
        .await
        .map_err(|e| err("reach the engine", e))?;
    let version = docker
        .version()
        .await
        .map_err(|e| err("ask the engine its version", e))?;
    let podman = version
        .components
        .unwrap_or_default()
        .iter()
        .any(|c| c.name.to_ascii_lowercase().contains("podman"));
    Ok(Engine { docker, podman })
}

/// The log driver of a job's container. Docker's default (`json-file`) stores output as JSON
/// text and replaces bytes that are not UTF-8; `local` keeps them, and one file that never
/// rotates keeps the whole output for a re-read after a restart. Podman keeps its own.
fn log_config(engine: &Engine) -> Option<HostConfigLogConfig> {
    (!engine.podman).then(|| HostConfigLogConfig {
        typ: Some("local".into()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), "1t".to_owned()),
            ("max-file".to_owned(), "1".to_owned()),
            ("compress".to_owned(), "false".to_owned()),
        ])),
    })
}

impl DockerExecutor {
    /// An executor for the engine at `host` (`unix:///…`, `tcp://…`); `None` = `DOCKER_HOST`
    /// or the standard socket. Nothing is contacted yet (an engine that comes up later is
    /// found then). Within a tokio runtime, a background loop pings the engine every few
    /// seconds for [`Executor::health`] until the executor is dropped.
    pub fn new(host: Option<&str>) -> Self {
        Self::with_shutdown(host, &CancellationToken::new())
    }

    /// Like [`new`](Self::new), with a health loop that also stops when `shutdown` (the
    /// server's) is cancelled.
    pub fn with_shutdown(host: Option<&str>, shutdown: &CancellationToken) -> Self {
        let host = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let health = Arc::new(RwLock::new(Health::Up));
        let stop = shutdown.child_token();
        let health_task = tokio::runtime::Handle::try_current()
            .is_ok()
            .then(|| spawn_health(host.clone(), health.clone(), stop.clone()));
        DockerExecutor {
            host,
            client: tokio::sync::OnceCell::new(),
            health,
            stop,
            health_task,
        }
    }

    /// The engine's address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The client (connected once; retried on each call until it works).
    async fn client(&self) -> Result<Docker, ExecError> {
        Ok(self.engine().await?.docker)
    }

    async fn engine(&self) -> Result<Engine, ExecError> {
        self.client
            .get_or_try_init(|| connect(&self.host))
            .await
            .cloned()
    }

    fn err(&self, action: impl Into<String>, source: BollardError) -> ExecError {
        ExecError::Docker {
            action: action.into(),
            host: self.host.clone(),
            source,
        }
    }
}

/// The health loop: pings the engine at `host` every [`HEALTH_EVERY`] until `stop`.
fn spawn_health(
    host: String,
    cell: Arc<RwLock<Health>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Option<Option<Engine>>> {
    let name = format!("docker health check of {host}");
    let state: Option<Engine> = None;
    Loop::new(name, HEALTH_EVERY, stop).spawn(state, move |client| {
        let (host, cell) = (host.clone(), cell.clone());
        Box::pin(async move {
            if client.is_none() {
                *client = connect(&host).await.ok();
            }
            let state = match client {
                Some(c) => match c.docker.ping().await {
                    Ok(_) => Health::Up,
                    Err(e) => {
                        Health::Down(format!("the Docker engine at {host} does not answer: {e}"))
                    }
                },
                None => Health::Down(format!("no Docker engine answers at {host}")),
            };
            if let Ok(mut h) = cell.write() {
                *h = state;
            }
            std::ops::ControlFlow::Continue(())
        })
    })
}

impl Drop for DockerExecutor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A job running in a container; its monitor task writes `exit.json`.
pub struct DockerJob {
    task: tokio::task::JoinHandle<Outcome>,
}

impl DockerJob {
    async fn outcome(self) -> Outcome {
        match self.task.await {
            Ok(o) => o,
            Err(e) => Outcome::Lost(format!("the container's monitor task failed: {e}")),
        }
    }
}

impl RunningJob for DockerJob {
    fn wait(self: Box<Self>) -> BoxFuture<'static, Outcome> {
        Box::pin(self.outcome())
    }
}

impl Executor for DockerExecutor {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn start<'a>(
        &'a self,
        dir: &'a Path,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<Box<dyn RunningJob>, ExecError>> {
        Box::pin(async move {
            let job = self.start_job(dir, spec).await?;
            Ok(Box::new(job) as Box<dyn RunningJob>)
        })
    }

    fn reattach<'a>(&'a self, dir: &'a Path, secrets: &'a JobSecrets) -> BoxFuture<'a, Reattached> {
        Box::pin(self.reattach_job(dir, secrets))
    }

    fn cancel<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(self.cancel_job(dir))
    }

    fn image_id<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<Option<String>, ExecError>> {
        Box::pin(self.image_id_of(image))
    }

    fn health(&self) -> Health {
        self.health
            .read()
            .map(|h| h.clone())
            .unwrap_or_else(|_| Health::Down("health state poisoned".into()))
    }
}

/// SIGTERM, then SIGKILL after `grace` (the engine's stop).
async fn stop(docker: Docker, name: String, grace: Duration) {
    let t = i32::try_from(grace.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX);
    if let Err(e) = docker
        .stop_container(&name, Some(StopContainerOptionsBuilder::new().t(t).build()))
        .await
    {
        tracing::debug!("stop of container {name}: {e}");
    }
}

async fn remove(docker: &Docker, name: &str) {
    if let Err(e) = docker
        .remove_container(
            name,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
    {
        tracing::warn!("could not remove container {name}: {e}");
    }
}

/// Runs blocking file work `f` on the blocking pool; `what` names it if the task fails.
async fn off_thread<T: Send + 'static>(
    what: &'static str,
    path: &Path,
    f: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExecError::io(what, path, std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ends<T>(task: tokio::task::JoinHandle<T>, what: &str) {
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .unwrap_or_else(|_| panic!("{what}: the health loop still runs after 20 s"))
            .expect("the health loop panicked");
    }

    /// An engine address where nothing answers.
    const NOWHERE: &str = "unix:///nonexistent/baton-test/docker.sock";

    #[tokio::test]
    async fn the_health_loop_stops_with_the_server_or_the_executor() {
        let shutdown = CancellationToken::new();
        let mut ex = DockerExecutor::with_shutdown(Some(NOWHERE), &shutdown);
        let task = ex.health_task.take().expect("started inside a runtime");
        assert!(!task.is_finished(), "the loop runs until told to stop");
        shutdown.cancel();
        ends(task, "after the shutdown token was cancelled").await;

        let mut ex = DockerExecutor::new(Some(NOWHERE));
        let task = ex.health_task.take().expect("started inside a runtime");
        assert!(
            !task.is_finished(),
            "the loop runs while the executor lives"
        );
        drop(ex);
        ends(task, "after the executor was dropped").await;
    }

    #[test]
    fn outside_a_runtime_there_is_no_loop() {
        assert!(DockerExecutor::new(Some(NOWHERE)).health_task.is_none());
    }
}
