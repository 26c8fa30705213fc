//! The container of a new job: the image (pulled or built), `container.json`, then the
//! container itself, started; its monitor ([`super::follow`]) takes it from there.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, CreateImageOptionsBuilder};
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::follow::{LogFile, monitor};
use super::{
    CONTAINER_FILE, ContainerInfo, DockerExecutor, DockerJob, Engine, LABEL_BATON, LABEL_DIR,
    LABEL_SECRET_ENV, log_config, off_thread, remove,
};
use crate::blocking::OnThread;
use crate::error::ExecError;
use crate::job::{ContainerSpec, JobSpec};
use crate::layout::{LOG_FILE, OUT_DIR, SCRIPT_FILE, WORK_DIR, write_atomic};

const CONTAINER_WORK: &str = "/baton/work";
const CONTAINER_OUT: &str = "/baton/out";
const CONTAINER_SCRIPT: &str = "/baton/job/script.sh";
/// The container's command (`/bin/sh -c` of this; see the file).
const SHELL_LINE: &str = include_str!("container.sh");

impl DockerExecutor {
    pub(super) async fn start_job(
        &self,
        dir: &Path,
        spec: &JobSpec,
    ) -> Result<DockerJob, ExecError> {
        let Some(c) = &spec.container else {
            return Err(ExecError::NotContainer {
                dir: dir.to_path_buf(),
            });
        };
        let (d, s) = (dir.to_path_buf(), spec.clone());
        let dir = off_thread("prepare the job folder", dir, move || {
            let dir = crate::layout::prepare_job_dir(&d, &s, CONTAINER_FILE)?;
            let script = dir.join(SCRIPT_FILE);
            std::fs::write(&script, s.script.as_bytes())
                .map_err(|e| ExecError::io("write script", &script, e))?;
            Ok(dir)
        })
        .await?;
        let log_path = dir.join(LOG_FILE);
        let lp = log_path.clone();
        let log = off_thread("create log", &log_path, move || {
            LogFile::create(&lp).map_err(|e| ExecError::io("create log", &lp, e))
        })
        .await?;
        let log = OnThread::new(log);

        let engine = self.engine().await?;
        let docker = engine.docker.clone();
        let image = match (&c.build, &c.image) {
            (Some(dockerfile), _) => self.ensure_built(&docker, dockerfile, &log).await?,
            (None, Some(image)) => {
                self.ensure_present(&docker, image).await?;
                image.clone()
            }
            (None, None) => return Err(ExecError::NotContainer { dir }),
        };
        let log = log.into_inner().await;
        if let Some(e) = log.error {
            return Err(ExecError::io(
                "write build output to",
                &log_path,
                std::io::Error::other(e),
            ));
        }

        let attempt = dir.file_name().and_then(|n| n.to_str()).unwrap_or("1");
        // Several servers may share an engine: the folder's hash keeps names apart.
        let dir_hash = hex::encode(Sha256::digest(dir.as_os_str().as_encoded_bytes()));
        let info = ContainerInfo {
            name: format!("baton-job-{}-{attempt}-{}", spec.job_id, &dir_hash[..12]),
            log_offset: log.len,
            started_at: Utc::now(),
        };
        let info_path = dir.join(CONTAINER_FILE);
        let json = serde_json::to_vec(&info).expect("ContainerInfo serializes");
        let ip = info_path.clone();
        off_thread("write container record", &info_path, move || {
            write_atomic(&ip, &json, true)
                .map_err(|e| ExecError::io("write container record", &ip, e))
        })
        .await?;
        self.create_and_start(&engine, &dir, spec, c, &image, &info)
            .await?;
        let task = tokio::spawn(monitor(docker, dir, spec.clone(), info));
        Ok(DockerJob { task })
    }

    /// Creates the job's container from `image` and starts it (removing it if it won't start).
    async fn create_and_start(
        &self,
        engine: &Engine,
        dir: &Path,
        spec: &JobSpec,
        c: &ContainerSpec,
        image: &str,
        info: &ContainerInfo,
    ) -> Result<(), ExecError> {
        let docker = &engine.docker;
        let body = ContainerCreateBody {
            host_config: Some(HostConfig {
                binds: Some(binds(dir)),
                nano_cpus: c.cpus.map(|n| (n * 1e9) as i64),
                memory: c.memory_bytes.map(|m| m as i64),
                network_mode: Some(c.network.mode().into()),
                log_config: log_config(engine),
                ..Default::default()
            }),
            ..container_body(dir, spec, image)
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&info.name)
            .build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.err(format!("create a container from image {image}"), e))?;
        if let Err(e) = docker.start_container(&created.id, None).await {
            remove(docker, &created.id).await;
            return Err(self.err(format!("start container {}", info.name), e));
        }
        Ok(())
    }

    /// The engine's id of `image` (pulled first when it is not there).
    pub(super) async fn image_id_of(&self, image: &str) -> Result<Option<String>, ExecError> {
        let docker = self.client().await?;
        self.ensure_present(&docker, image).await?;
        let found = docker
            .inspect_image(image)
            .await
            .map_err(|e| self.err(format!("inspect image {image}"), e))?;
        Ok(found.id)
    }

    /// Makes sure `image` is in the engine: present, or pulled.
    async fn ensure_present(&self, docker: &Docker, image: &str) -> Result<(), ExecError> {
        if docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let failed = |detail: String| ExecError::Image {
            image: image.into(),
            host: self.host.clone(),
            detail,
        };
        let mut pull = docker.create_image(
            Some(CreateImageOptionsBuilder::new().from_image(image).build()),
            None,
            None,
        );
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
}

/// The job folder's parts the container sees: `work/`, `out/` and the script (read-only).
fn binds(dir: &Path) -> Vec<String> {
    let bind = |sub: &str, to: &str, mode: &str| format!("{}:{to}{mode}", dir.join(sub).display());
    vec![
        bind(WORK_DIR, CONTAINER_WORK, ""),
        bind(OUT_DIR, CONTAINER_OUT, ""),
        bind(SCRIPT_FILE, CONTAINER_SCRIPT, ":ro"),
    ]
}

/// The container's command, environment and labels.
fn container_body(dir: &Path, spec: &JobSpec, image: &str) -> ContainerCreateBody {
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
    let mut labels = HashMap::from([
        (LABEL_BATON.to_owned(), "1".to_owned()),
        ("baton.job".to_owned(), spec.job_id.to_string()),
        ("baton.run".to_owned(), spec.run_id.to_string()),
        (LABEL_DIR.to_owned(), dir.display().to_string()),
    ]);
    if !spec.secrets.env.is_empty() {
        let names: Vec<&str> = spec.secrets.env.iter().map(|(k, _)| k.as_str()).collect();
        labels.insert(
            LABEL_SECRET_ENV.to_owned(),
            serde_json::Value::from(names).to_string(),
        );
    }
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), SHELL_LINE.into()]),
        entrypoint: Some(vec![]),
        env: Some(env),
        labels: Some(labels),
        working_dir: Some(CONTAINER_WORK.into()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        ..Default::default()
    }
}
