//! The `docker` provider: each agent is a container of the pool's image (which has `baton` in
//! it) on the pool's engine, running `baton agent --server URL --idle-timeout …`. Its one-time
//! join token is in the container's environment only (`BATON_AGENT_TOKEN`), never in its
//! command line nor in a log. Containers are labelled `baton.pool=POOL` and `baton.agent=NAME`:
//! `down` removes an agent's container once it left, and the scaler's survey lists a pool's
//! containers (after a restart too) to count those still starting and remove those that ended.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use futures::future::BoxFuture;

use baton_core::config::DockerPool;

use super::{Found, Launch, Provider};

/// Label: the pool a container's agent belongs to.
pub const LABEL_POOL: &str = "baton.pool";
/// Label: the agent a container runs.
pub const LABEL_AGENT: &str = "baton.agent";
/// How long `down` lets a departed agent's container end by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How long one call to the engine may take.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(60);

/// Engine clients by address, connected once.
#[derive(Default)]
pub(crate) struct Engines(Mutex<BTreeMap<String, Docker>>);

impl Engines {
    async fn get(&self, host: &str) -> Result<Docker, String> {
        if let Some(d) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(host) {
            return Ok(d.clone());
        }
        let docker = Docker::connect_with_host(host)
            .map_err(|e| format!("cannot connect to the Docker engine at {host}: {e}"))?;
        let docker = tokio::time::timeout(ENGINE_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| format!("the Docker engine at {host} does not answer"))?
            .map_err(|e| format!("cannot reach the Docker engine at {host}: {e}"))?;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), docker.clone());
        Ok(docker)
    }
}

pub(super) struct DockerProvider {
    pub(super) spec: DockerPool,
    /// The engine's address (`unix:///…`, `tcp://…`).
    pub(super) host: String,
    pub(super) engines: Arc<super::Pools>,
}

/// The engine of a pool: its `host`, else the server's `docker_host`, else `DOCKER_HOST`, else
/// the standard socket; a bare path is a unix socket.
pub(super) fn engine_address(spec: &DockerPool, server: Option<&str>) -> String {
    let host = spec
        .host
        .clone()
        .or_else(|| server.map(str::to_owned))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    if host.starts_with('/') {
        format!("unix://{host}")
    } else {
        host
    }
}

/// The name of an agent's container.
fn container_name(agent: &str) -> String {
    format!("baton-{agent}")
}

impl DockerProvider {
    async fn docker(&self) -> Result<Docker, String> {
        self.engines.engines.get(&self.host).await
    }

    /// Makes sure the image is in the engine: present, or pulled.
    async fn ensure_image(&self, docker: &Docker) -> Result<(), String> {
        let image = &self.spec.image;
        if docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let mut pull = docker.create_image(
            Some(CreateImageOptionsBuilder::new().from_image(image).build()),
            None,
            None,
        );
        let failed = |d: String| {
            format!(
                "image {image} is not in the engine at {} and cannot be pulled: {d}",
                self.host
            )
        };
        while let Some(item) = pull.next().await {
            match item {
                Ok(info) => {
                    if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                        return Err(failed(msg));
                    }
                }
                Err(e) => return Err(failed(e.to_string())),
            }
        }
        Ok(())
    }

    /// The container of one agent: `baton agent` with the non-secret settings as arguments
    /// and the join token in the environment.
    fn body(&self, l: &Launch, agent: &str, token: &str) -> ContainerCreateBody {
        let mut env: Vec<String> = self
            .spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("BATON_AGENT_TOKEN={token}"));
        let labels = HashMap::from([
            (LABEL_POOL.to_owned(), l.pool.clone()),
            (LABEL_AGENT.to_owned(), agent.to_owned()),
        ]);
        let cmd = [
            "agent",
            "--server",
            &l.server,
            "--idle-timeout",
            &l.idle_timeout_arg(),
            "--name",
            agent,
            "--queues",
            &l.queues.join(","),
            "--slots",
            &l.slots.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        ContainerCreateBody {
            image: Some(self.spec.image.clone()),
            entrypoint: Some(vec!["baton".into()]),
            cmd: Some(cmd),
            env: Some(env),
            labels: Some(labels),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                network_mode: self.spec.network.clone(),
                // A small init as PID 1 reaps the jobs' orphans and forwards signals.
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn start_one(
        &self,
        docker: &Docker,
        l: &Launch,
        agent: &str,
        token: &str,
    ) -> Result<(), String> {
        let name = container_name(agent);
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                self.body(l, agent, token),
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot create container {name} from {}: {e}",
                    self.spec.image
                )
            })?;
        if let Err(e) = docker.start_container(&created.id, None).await {
            remove(docker, &name).await;
            return Err(format!("cannot start container {name}: {e}"));
        }
        tracing::info!(pool = %l.pool, agent, container = %name, "started a pool's agent container");
        Ok(())
    }
}

/// Force-removes a container; one already gone is fine.
async fn remove(docker: &Docker, name: &str) -> Option<String> {
    match docker
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
        Ok(()) => None,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => None,
        Err(e) => Some(format!("cannot remove container {name}: {e}")),
    }
}

impl Provider for DockerProvider {
    fn up<'a>(&'a self, l: &'a Launch) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            self.ensure_image(&docker).await?;
            let mut started: Vec<&str> = Vec::new();
            for (agent, token) in &l.agents {
                let one =
                    tokio::time::timeout(ENGINE_TIMEOUT, self.start_one(&docker, l, agent, token))
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "the Docker engine at {} does not answer",
                                self.host
                            ))
                        });
                if let Err(e) = one {
                    // All or nothing: the caller gives every token of this launch up.
                    for a in started {
                        remove(&docker, &container_name(a)).await;
                    }
                    return Err(e);
                }
                started.push(agent);
            }
            Ok(())
        })
    }

    fn down<'a>(&'a self, _pool: &'a str, agent: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            let name = container_name(agent);
            // The agent exits right after it left: give it a moment to end on its own.
            let _ = tokio::time::timeout(
                EXIT_GRACE,
                docker
                    .wait_container(
                        &name,
                        None::<bollard::query_parameters::WaitContainerOptions>,
                    )
                    .next(),
            )
            .await;
            match remove(&docker, &name).await {
                None => Ok(()),
                Some(e) => Err(e),
            }
        })
    }

    fn abandon<'a>(&'a self, pool: &'a str, agent: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            match remove(&docker, &container_name(agent)).await {
                None => {
                    tracing::info!(
                        pool,
                        agent,
                        "removed the container of an agent that never joined"
                    );
                    Ok(())
                }
                Some(e) => Err(e),
            }
        })
    }

    fn survey<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, Result<Option<Vec<Found>>, String>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            let filters = HashMap::from([("label", vec![format!("{LABEL_POOL}={pool}")])]);
            let list = tokio::time::timeout(
                ENGINE_TIMEOUT,
                docker.list_containers(Some(
                    ListContainersOptionsBuilder::new()
                        .all(true)
                        .filters(&filters)
                        .build(),
                )),
            )
            .await
            .map_err(|_| format!("the Docker engine at {} does not answer", self.host))?
            .map_err(|e| {
                format!(
                    "cannot list the containers of pool {pool} at {}: {e}",
                    self.host
                )
            })?;
            let mut out = Vec::new();
            for c in list {
                let Some(agent) = c.labels.as_ref().and_then(|l| l.get(LABEL_AGENT)).cloned()
                else {
                    continue;
                };
                let state = c.state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
                let running = matches!(
                    state,
                    ContainerSummaryStateEnum::RUNNING
                        | ContainerSummaryStateEnum::RESTARTING
                        | ContainerSummaryStateEnum::PAUSED
                );
                let ended = matches!(
                    state,
                    ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD
                );
                let detail = if ended {
                    let status = c.status.clone().unwrap_or_default();
                    let last = last_output(&docker, &container_name(&agent)).await;
                    Some(if last.is_empty() {
                        status
                    } else {
                        format!("{status}: {last}")
                    })
                } else {
                    None
                };
                out.push(Found {
                    agent,
                    running,
                    ended: detail,
                });
            }
            Ok(Some(out))
        })
    }
}

/// The last lines a container's agent printed (it never prints its token), for the pool's
/// error when it ended before it joined.
async fn last_output(docker: &Docker, name: &str) -> String {
    let mut logs = docker.logs(
        name,
        Some(
            LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .tail("5")
                .build(),
        ),
    );
    let mut text = String::new();
    let read = async {
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    super::tail(text.trim(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DockerPool {
        DockerPool {
            image: "baton:1".into(),
            host: None,
            network: Some("host".into()),
            env: [("LEVEL".to_string(), "3".to_string())].into(),
        }
    }

    #[test]
    fn the_token_is_in_the_environment_and_nowhere_else() {
        let p = DockerProvider {
            spec: spec(),
            host: "unix:///nowhere".into(),
            engines: Arc::default(),
        };
        let l = Launch {
            pool: "box".into(),
            server: "http://127.0.0.1:8700".into(),
            agents: vec![("box-1-00ff".into(), "baton_secret".into())],
            queues: vec!["a".into(), "b".into()],
            slots: 2,
            idle_timeout: Duration::from_millis(1500),
        };
        let b = p.body(&l, "box-1-00ff", "baton_secret");
        assert_eq!(b.entrypoint, Some(vec!["baton".to_string()]));
        assert_eq!(
            b.cmd.clone().unwrap().join(" "),
            "agent --server http://127.0.0.1:8700 --idle-timeout 1s --name box-1-00ff --queues a,b --slots 2"
        );
        assert_eq!(
            b.env,
            Some(vec![
                "LEVEL=3".to_string(),
                "BATON_AGENT_TOKEN=baton_secret".to_string()
            ])
        );
        let labels = b.labels.clone().unwrap();
        assert_eq!(labels[LABEL_POOL], "box");
        assert_eq!(labels[LABEL_AGENT], "box-1-00ff");
        let hc = b.host_config.clone().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(hc.init, Some(true));
        let shown = format!("{:?} {:?} {:?}", b.cmd, b.labels, b.entrypoint);
        assert!(!shown.contains("baton_secret"), "{shown}");
    }

    #[test]
    fn the_engine_is_the_pools_then_the_servers() {
        let mut s = spec();
        assert_eq!(
            engine_address(&s, Some("unix:///srv.sock")),
            "unix:///srv.sock"
        );
        s.host = Some("/run/other.sock".into());
        assert_eq!(
            engine_address(&s, Some("unix:///srv.sock")),
            "unix:///run/other.sock"
        );
    }
}
