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
//! re-read from its start through a fresh [`Masker`] and the bytes already in `log` are skipped,
//! so nothing is lost or written twice. Cancel and timeout leave a marker file (`canceled`,
//! `timed_out`) before stopping the container (SIGTERM, SIGKILL after the spec's `kill_grace`),
//! so the reason survives a restart too.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, HostConfigLogConfig,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::{Instant, sleep_until};

use crate::error::ExecError;
use crate::executor::{BoxFuture, Executor, Health, Reattached, RunningJob};
use crate::job::{ExitRecord, JobSecrets, JobSpec, Outcome};
use crate::layout::{
    EXIT_FILE, LOG_FILE, OUT_DIR, SCRIPT_FILE, SPEC_FILE, WORK_DIR, read_exit, try_read_json,
    write_atomic,
};
use crate::mask::Masker;

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

const CONTAINER_WORK: &str = "/baton/work";
const CONTAINER_OUT: &str = "/baton/out";
const CONTAINER_SCRIPT: &str = "/baton/job/script.sh";
/// The container's command (`/bin/sh -c` of this). The script runs under `sh -e`, with
/// `pipefail` where the image's shell has it, and stderr joined to stdout: one stream keeps the
/// order of the output (the engine copies two streams separately and may interleave them
/// differently from how they were written). The outer shell is PID 1, which the kernel shields
/// from signals it does not handle, so it traps SIGTERM and passes it on: `stop` (cancel,
/// timeout) reaches the script without an init binary in the engine (Podman may lack one).
const SHELL_LINE: &str = r#"exec 2>&1
trap 'kill -TERM $child 2>/dev/null' TERM INT
/bin/sh -ec '(set -o pipefail) 2>/dev/null && set -o pipefail; . /baton/job/script.sh' </dev/null &
child=$!
wait $child
status=$?
while kill -0 $child 2>/dev/null; do wait $child; status=$?; done
exit $status
"#;
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
    /// found then). Within a tokio runtime, a background task pings the engine every few
    /// seconds for [`Executor::health`].
    pub fn new(host: Option<&str>) -> Self {
        let host = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let health = Arc::new(RwLock::new(Health::Up));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (cell, host) = (health.clone(), host.clone());
            rt.spawn(async move {
                let mut client: Option<Engine> = None;
                loop {
                    if client.is_none() {
                        client = connect(&host).await.ok();
                    }
                    let state = match &client {
                        Some(c) => match c.docker.ping().await {
                            Ok(_) => Health::Up,
                            Err(e) => Health::Down(format!(
                                "the Docker engine at {host} does not answer: {e}"
                            )),
                        },
                        None => Health::Down(format!("no Docker engine answers at {host}")),
                    };
                    if let Ok(mut h) = cell.write() {
                        *h = state;
                    }
                    tokio::time::sleep(HEALTH_EVERY).await;
                }
            });
        }
        DockerExecutor {
            host,
            client: tokio::sync::OnceCell::new(),
            health,
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

    /// Removes Baton's containers (label `org.baton=1`) whose job is over (`exit.json` in the
    /// folder their `baton.dir` label names). Returns how many it removed.
    pub async fn sweep(&self) -> Result<usize, ExecError> {
        let docker = self.client().await?;
        let filters = HashMap::from([("label", vec![format!("{LABEL_BATON}=1")])]);
        let list = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| self.err("list Baton's containers", e))?;
        let mut removed = 0;
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let Some(dir) = labels.get(LABEL_DIR) else {
                continue;
            };
            if Path::new(dir).join(EXIT_FILE).exists() {
                remove(&docker, &id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn start_job(&self, dir: &Path, spec: &JobSpec) -> Result<DockerJob, ExecError> {
        let Some(c) = &spec.container else {
            return Err(ExecError::NotContainer {
                dir: dir.to_path_buf(),
            });
        };
        let dir = crate::layout::prepare_job_dir(dir, spec, CONTAINER_FILE)?;
        let script = dir.join(SCRIPT_FILE);
        fs::write(&script, spec.script.as_bytes())
            .map_err(|e| ExecError::io("write script", &script, e))?;
        let log_path = dir.join(LOG_FILE);
        let mut log =
            File::create(&log_path).map_err(|e| ExecError::io("create log", &log_path, e))?;

        let engine = self.engine().await?;
        let docker = engine.docker.clone();
        let image = match (&c.build, &c.image) {
            (Some(dockerfile), _) => self.ensure_built(&docker, dockerfile, &mut log).await?,
            (None, Some(image)) => {
                self.ensure_present(&docker, image).await?;
                image.clone()
            }
            (None, None) => return Err(ExecError::NotContainer { dir }),
        };
        let log_offset = log
            .metadata()
            .map_err(|e| ExecError::io("read size of", &log_path, e))?
            .len();
        drop(log);

        let attempt = dir.file_name().and_then(|n| n.to_str()).unwrap_or("1");
        // Several servers may share an engine: the folder's hash keeps names apart.
        let dir_hash = hex::encode(Sha256::digest(dir.as_os_str().as_encoded_bytes()));
        let info = ContainerInfo {
            name: format!("baton-job-{}-{attempt}-{}", spec.job_id, &dir_hash[..12]),
            log_offset,
            started_at: Utc::now(),
        };
        let info_path = dir.join(CONTAINER_FILE);
        let json = serde_json::to_vec(&info).expect("ContainerInfo serializes");
        write_atomic(&info_path, &json, true)
            .map_err(|e| ExecError::io("write container record", &info_path, e))?;

        // Secrets go to the engine as the container's environment at create (the engine keeps
        // them with the container until it is removed), never into a file of the job folder.
        let mut env: Vec<String> = spec
            .env
            .iter()
            .chain(&spec.secrets.env)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("BATON_RUN_ID={}", spec.run_id));
        env.push(format!("BATON_JOB_ID={}", spec.job_id));
        env.push(format!("BATON_TASK={}", spec.task));
        env.push(format!("BATON_OUTPUT_DIR={CONTAINER_OUT}"));
        let labels = HashMap::from([
            (LABEL_BATON.to_owned(), "1".to_owned()),
            ("baton.job".to_owned(), spec.job_id.to_string()),
            ("baton.run".to_owned(), spec.run_id.to_string()),
            (LABEL_DIR.to_owned(), dir.display().to_string()),
        ]);
        let bind =
            |sub: &str, to: &str, mode: &str| format!("{}:{to}{mode}", dir.join(sub).display());
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), SHELL_LINE.into()]),
            entrypoint: Some(vec![]),
            env: Some(env),
            labels: Some(labels),
            working_dir: Some(CONTAINER_WORK.into()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    bind(WORK_DIR, CONTAINER_WORK, ""),
                    bind(OUT_DIR, CONTAINER_OUT, ""),
                    bind(SCRIPT_FILE, CONTAINER_SCRIPT, ":ro"),
                ]),
                nano_cpus: c.cpus.map(|n| (n * 1e9) as i64),
                memory: c.memory_bytes.map(|m| m as i64),
                network_mode: Some(c.network.mode().into()),
                log_config: log_config(&engine),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&info.name)
                        .build(),
                ),
                body,
            )
            .await
            .map_err(|e| self.err(format!("create a container from image {image}"), e))?;
        if let Err(e) = docker.start_container(&created.id, None).await {
            remove(&docker, &created.id).await;
            return Err(self.err(format!("start container {}", info.name), e));
        }
        let task = tokio::spawn(monitor(docker, dir, spec.clone(), info));
        Ok(DockerJob { task })
    }

    /// Makes sure `image` is in the engine: present, or pulled.
    async fn ensure_present(&self, docker: &Docker, image: &str) -> Result<(), ExecError> {
        if docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let mut pull = docker.create_image(
            Some(CreateImageOptionsBuilder::new().from_image(image).build()),
            None,
            None,
        );
        while let Some(item) = pull.next().await {
            match item {
                Ok(info) => {
                    if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                        return Err(ExecError::Image {
                            image: image.into(),
                            host: self.host.clone(),
                            detail: msg,
                        });
                    }
                }
                Err(e) => {
                    return Err(ExecError::Image {
                        image: image.into(),
                        host: self.host.clone(),
                        detail: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Builds the image of `dockerfile` (its directory is the context) unless an image with the
    /// same content hash is there already; returns its tag. Build output goes to the job log.
    async fn ensure_built(
        &self,
        docker: &Docker,
        dockerfile: &Path,
        log: &mut File,
    ) -> Result<String, ExecError> {
        let df = dockerfile.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || context_hash(&df))
            .await
            .map_err(|e| ExecError::Build {
                dockerfile: dockerfile.into(),
                detail: format!("hashing task failed: {e}"),
            })??;
        let tag = format!("baton-build:{hashed}");
        let note = |log: &mut File, text: String| {
            let _ = log.write_all(text.as_bytes());
        };
        if docker.inspect_image(&tag).await.is_ok() {
            note(
                log,
                format!(
                    "baton: using cached image {tag} (from {})\n",
                    dockerfile.display()
                ),
            );
            return Ok(tag);
        }
        note(
            log,
            format!(
                "baton: building image {tag} from {}\n",
                dockerfile.display()
            ),
        );
        let df = dockerfile.to_path_buf();
        let tarball = tokio::task::spawn_blocking(move || context_tar(&df))
            .await
            .map_err(|e| ExecError::Build {
                dockerfile: dockerfile.into(),
                detail: format!("packing task failed: {e}"),
            })??;
        let name = dockerfile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(&name)
            .t(&tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            docker.build_image(options, None, Some(bollard::body_full(tarball.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| ExecError::Build {
                dockerfile: dockerfile.into(),
                detail: e.to_string(),
            })?;
            if let Some(s) = info.stream {
                note(log, s);
            }
            if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                note(log, format!("{msg}\n"));
                return Err(ExecError::Build {
                    dockerfile: dockerfile.into(),
                    detail: msg,
                });
            }
        }
        if docker.inspect_image(&tag).await.is_err() {
            return Err(ExecError::Build {
                dockerfile: dockerfile.into(),
                detail: format!("the build ended but {tag} is not in the engine"),
            });
        }
        Ok(tag)
    }

    async fn reattach_job(&self, dir: &Path, secrets: &JobSecrets) -> Reattached {
        if let Some(rec) = read_exit(dir) {
            return Reattached::Finished(rec);
        }
        let info = match try_read_json::<ContainerInfo>(&dir.join(CONTAINER_FILE)) {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Reattached::Vanished(format!(
                    "no {CONTAINER_FILE} in {}: the container was never created",
                    dir.display()
                ));
            }
            Err(e) => return Reattached::Vanished(e.to_string()),
        };
        let mut spec = match try_read_json::<JobSpec>(&dir.join(SPEC_FILE)) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Reattached::Vanished(format!("no {SPEC_FILE} in {}", dir.display()));
            }
            Err(e) => return Reattached::Vanished(e.to_string()),
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
                return match read_exit(dir) {
                    Some(rec) => Reattached::Finished(rec),
                    None => Reattached::Vanished(format!(
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

    async fn cancel_job(&self, dir: &Path) -> Result<(), ExecError> {
        if read_exit(dir).is_some() {
            return Ok(());
        }
        let info = try_read_json::<ContainerInfo>(&dir.join(CONTAINER_FILE))?.ok_or_else(|| {
            ExecError::NotRunning {
                dir: dir.to_path_buf(),
                reason: format!("no {CONTAINER_FILE} yet"),
            }
        })?;
        let grace = try_read_json::<JobSpec>(&dir.join(SPEC_FILE))?
            .map_or(Duration::from_secs(5), |s| s.kill_grace);
        let mark = dir.join(CANCELED_MARK);
        write_atomic(&mark, b"", false).map_err(|e| ExecError::io("write", &mark, e))?;
        let docker = self.client().await?;
        // Stopping waits up to the grace period: never block the caller (the scheduler).
        tokio::spawn(stop(docker, info.name, grace));
        Ok(())
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

    fn health(&self) -> Health {
        self.health
            .read()
            .map(|h| h.clone())
            .unwrap_or_else(|_| Health::Down("health state poisoned".into()))
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
                    Err(e) => match read_exit(&dir) {
                        Some(rec) => Outcome::Exited(rec),
                        None => Outcome::Lost(format!(
                            "container {} is gone and left no exit record ({e})",
                            info.name
                        )),
                    },
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

/// Follows the container to its end: log, timeout, exit record, removal.
async fn monitor(docker: Docker, dir: PathBuf, spec: JobSpec, info: ContainerInfo) -> Outcome {
    let log_path = dir.join(LOG_FILE);
    let mut rec = ExitRecord {
        exit_code: None,
        signal: None,
        timed_out: false,
        canceled: false,
        error: None,
        started_at: info.started_at,
        ended_at: info.started_at,
        log_bytes: 0,
        max_rss_kb: None,
    };
    let mut log = match OpenOptions::new().append(true).create(true).open(&log_path) {
        Ok(f) => f,
        Err(e) => {
            // Without a log the job's output would be lost: stop it and say why.
            stop(docker.clone(), info.name.clone(), spec.kill_grace).await;
            rec.error = Some(format!("could not open log {}: {e}", log_path.display()));
            return finish(&docker, &dir, &info, rec).await;
        }
    };
    let timeout_at = spec.timeout.map(|t| {
        let elapsed = (Utc::now() - info.started_at).to_std().unwrap_or_default();
        Instant::now() + t.saturating_sub(elapsed)
    });
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut timed_out = dir.join(TIMED_OUT_MARK).exists();
    let mut failures = 0u32;
    // A followed stream may end when the container stops, before its last bytes (a final line
    // without a newline) are delivered: once it has exited, one more plain read collects the
    // whole log, and the skipping drops what is already there.
    let mut final_pass = false;
    loop {
        // Each pass re-reads the engine's log from its start through a fresh masker and skips
        // what `log` already has: a resumed stream neither loses nor repeats a byte.
        let written = fs::metadata(&log_path).map_or(0, |m| m.len());
        let mut skip = written.saturating_sub(info.log_offset);
        let mut masker = Masker::new(&spec.secrets.mask);
        let mut stream = docker.logs(
            &info.name,
            Some(
                LogsOptionsBuilder::new()
                    .follow(!final_pass)
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        );
        let mut stream_error = None;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(out)) => {
                        let bytes = masker.push(out.as_ref());
                        append_skipping(&mut log, &bytes, &mut skip, &log_path, &mut rec);
                    }
                    Some(Err(e)) => { stream_error = Some(e); break; }
                    None => break,
                },
                _ = sleep_until(timeout_at.unwrap_or(far)), if timeout_at.is_some() && !timed_out => {
                    timed_out = true;
                    let _ = write_atomic(&dir.join(TIMED_OUT_MARK), b"", false);
                    tokio::spawn(stop(docker.clone(), info.name.clone(), spec.kill_grace));
                }
            }
        }
        let tail = masker.finish();
        // Is it over, or did only the stream break?
        match docker.inspect_container(&info.name, None).await {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                // A stream that ended early must not flush the masker's held-back bytes: the
                // re-read decides whether they belong to a secret.
                if state.running == Some(true) {
                    match stream_error {
                        Some(e) => tracing::warn!(
                            "log stream of container {} broke: {e}; resuming",
                            info.name
                        ),
                        None => tracing::debug!("log stream of {} ended early", info.name),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                if let Some(e) = stream_error {
                    // Exited, but the last read failed: read once more to collect the end.
                    tracing::warn!(
                        "log stream of container {} broke: {e}; re-reading",
                        info.name
                    );
                    failures += 1;
                    if failures < ENGINE_PATIENCE {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                if !final_pass {
                    final_pass = true;
                    continue;
                }
                append_skipping(&mut log, &tail, &mut skip, &log_path, &mut rec);
                rec.exit_code = state.exit_code.and_then(|c| i32::try_from(c).ok());
                if state.oom_killed == Some(true) {
                    let _ =
                        log.write_all(b"\nbaton: the container ran out of memory and was killed\n");
                    rec.signal = Some(9);
                }
                if let Some(f) = state
                    .finished_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                {
                    rec.ended_at = f.with_timezone(&Utc);
                }
                break;
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Outcome::Lost(format!(
                    "container {} disappeared before it was seen to exit",
                    info.name
                ));
            }
            Err(e) => {
                failures += 1;
                if failures >= ENGINE_PATIENCE {
                    return Outcome::Lost(format!(
                        "the Docker engine stopped answering about container {}: {e}",
                        info.name
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    if let Err(e) = log.sync_data() {
        rec.error
            .get_or_insert(format!("could not sync log {}: {e}", log_path.display()));
    }
    rec.timed_out = timed_out || dir.join(TIMED_OUT_MARK).exists();
    rec.canceled = dir.join(CANCELED_MARK).exists();
    if rec.ended_at < rec.started_at {
        rec.ended_at = Utc::now();
    }
    finish(&docker, &dir, &info, rec).await
}

/// Writes `exit.json`, then removes the container.
async fn finish(docker: &Docker, dir: &Path, info: &ContainerInfo, mut rec: ExitRecord) -> Outcome {
    rec.log_bytes = fs::metadata(dir.join(LOG_FILE)).map_or(0, |m| m.len());
    let exit_path = dir.join(EXIT_FILE);
    let json = serde_json::to_vec_pretty(&rec).expect("ExitRecord serializes");
    if let Err(e) = write_atomic(&exit_path, &json, true) {
        // The container stays: the next server start re-reads it.
        return Outcome::Lost(format!("could not write {}: {e}", exit_path.display()));
    }
    remove(docker, &info.name).await;
    Outcome::Exited(rec)
}

/// Appends `bytes` to the log, first dropping `skip` bytes already there.
fn append_skipping(
    log: &mut File,
    bytes: &[u8],
    skip: &mut u64,
    path: &Path,
    rec: &mut ExitRecord,
) {
    let drop_n = usize::try_from(*skip)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    *skip -= drop_n as u64;
    let rest = &bytes[drop_n..];
    if !rest.is_empty()
        && let Err(e) = log.write_all(rest)
        && rec.error.is_none()
    {
        rec.error = Some(format!("could not write log {}: {e}", path.display()));
    }
}

/// The files of a build context (the Dockerfile's directory), sorted, relative paths.
fn context_files(dockerfile: &Path) -> Result<(PathBuf, Vec<PathBuf>), ExecError> {
    let ctx = dockerfile
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if !dockerfile.is_file() {
        return Err(ExecError::Build {
            dockerfile: dockerfile.into(),
            detail: "no such file (hint: `build:` is relative to the config file's directory)"
                .into(),
        });
    }
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = ctx.join(&rel);
        let entries = fs::read_dir(&abs).map_err(|e| ExecError::io("read directory", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ExecError::io("read directory", &abs, e))?;
            let rel = rel.join(entry.file_name());
            let ft = entry
                .file_type()
                .map_err(|e| ExecError::io("stat", entry.path(), e))?;
            if ft.is_dir() {
                stack.push(rel);
            } else if ft.is_file() {
                files.push(rel);
            }
        }
    }
    files.sort();
    Ok((ctx, files))
}

/// sha256 over the Dockerfile and the context listing (path, mode, content of every file).
fn context_hash(dockerfile: &Path) -> Result<String, ExecError> {
    use std::os::unix::fs::PermissionsExt;
    let (ctx, files) = context_files(dockerfile)?;
    let mut h = Sha256::new();
    let df = fs::read(dockerfile).map_err(|e| ExecError::io("read", dockerfile, e))?;
    h.update(b"dockerfile\0");
    h.update(
        dockerfile
            .file_name()
            .map_or(&b""[..], |n| n.as_encoded_bytes()),
    );
    h.update(b"\0");
    h.update(&df);
    for rel in files {
        let abs = ctx.join(&rel);
        let meta = fs::metadata(&abs).map_err(|e| ExecError::io("stat", &abs, e))?;
        h.update(b"\0file\0");
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{:o}\0{}\0", meta.permissions().mode(), meta.len()).as_bytes());
        let mut f = File::open(&abs).map_err(|e| ExecError::io("read", &abs, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| ExecError::io("read", &abs, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The build context as a tar archive.
fn context_tar(dockerfile: &Path) -> Result<Vec<u8>, ExecError> {
    let (ctx, files) = context_files(dockerfile)?;
    let mut b = tar::Builder::new(Vec::new());
    for rel in files {
        let abs = ctx.join(&rel);
        b.append_path_with_name(&abs, &rel)
            .map_err(|e| ExecError::io("pack into the build context", &abs, e))?;
    }
    b.into_inner()
        .map_err(|e| ExecError::io("pack the build context of", dockerfile, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> ExitRecord {
        ExitRecord {
            exit_code: None,
            signal: None,
            timed_out: false,
            canceled: false,
            error: None,
            started_at: Utc::now(),
            ended_at: Utc::now(),
            log_bytes: 0,
            max_rss_kb: None,
        }
    }

    #[test]
    fn resumed_masked_stream_continues_exactly_where_the_log_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let secrets = vec!["hunter2".to_string()];
        let raw: Vec<&[u8]> = vec![b"a hun", b"ter2 b\n", b"c hunter2", b"\nd"];
        // First server: takes the first two chunks, then dies.
        let mut log = File::create(&path).unwrap();
        let mut m = Masker::new(&secrets);
        let mut skip = 0;
        for c in &raw[..2] {
            append_skipping(&mut log, &m.push(c), &mut skip, &path, &mut rec());
        }
        drop(log);
        // Second server: re-reads everything (in other chunks) and skips what is there.
        let mut log = OpenOptions::new().append(true).open(&path).unwrap();
        let mut skip = fs::metadata(&path).unwrap().len();
        let mut m = Masker::new(&secrets);
        let all: Vec<u8> = raw.concat();
        for c in all.chunks(3) {
            append_skipping(&mut log, &m.push(c), &mut skip, &path, &mut rec());
        }
        append_skipping(&mut log, &m.finish(), &mut skip, &path, &mut rec());
        assert_eq!(fs::read(&path).unwrap(), b"a *** b\nc ***\nd");
    }

    #[test]
    fn context_hash_follows_content_not_time() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("Dockerfile");
        fs::write(&df, "FROM x\n").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/a"), "1").unwrap();
        let h1 = context_hash(&df).unwrap();
        assert_eq!(h1.len(), 64);
        fs::write(dir.path().join("sub/a"), "1").unwrap();
        assert_eq!(context_hash(&df).unwrap(), h1, "rewriting the same bytes");
        fs::write(dir.path().join("sub/a"), "2").unwrap();
        let h2 = context_hash(&df).unwrap();
        assert_ne!(h2, h1, "a context file changed");
        fs::write(&df, "FROM y\n").unwrap();
        assert_ne!(context_hash(&df).unwrap(), h2, "the Dockerfile changed");
        let tar = context_tar(&df).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["Dockerfile", "sub/a"]);
        assert!(matches!(
            context_hash(&dir.path().join("missing")),
            Err(ExecError::Build { .. })
        ));
    }
}
