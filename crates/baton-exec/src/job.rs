//! The executor-independent vocabulary: what to run ([`JobSpec`]), how it
//! ended ([`ExitRecord`]) and what waiting on a job yields ([`Outcome`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What to run. Written by the executor to `spec.json`, without [`JobSpec::secrets`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    /// The run this job belongs to (exported as `BATON_RUN_ID`).
    pub run_id: i64,
    /// The job's id (exported as `BATON_JOB_ID`).
    pub job_id: i64,
    /// The task's name (exported as `BATON_TASK`).
    pub task: String,
    /// The script, run as `bash -eo pipefail script.sh`.
    pub script: String,
    /// Extra environment on top of the inherited one.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit, enforced by the supervisor (SIGTERM, then SIGKILL
    /// after `kill_grace`, to the job's whole process group).
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL on timeout or cancel.
    pub kill_grace: Duration,
    /// Secret environment and the values masked in the log: never serialized, so never in
    /// `spec.json`. Each executor hands them over its own way (the supervisor's stdin pipe,
    /// the container's environment at create, an SSH session, an agent's assignment).
    #[serde(skip)]
    pub secrets: JobSecrets,
    /// Run the script in a container (the Docker executor) instead of on the host.
    #[serde(default)]
    pub container: Option<ContainerSpec>,
    /// The commit a job on a remote worker (SSH, agent) checks out into `work/` before its
    /// script, fetched from the server's mirror over smart HTTP with the job's own credential
    /// (local and container jobs get theirs from the scheduler, made on the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<String>,
    /// The server's environment variables that hold secrets (names only): removed from the
    /// job's environment, which is otherwise inherited from the server for local jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset_env: Vec<String>,
    /// `artifacts:` globs, relative to `work/`: the files they match are copied into `out/`
    /// when the script ends (never through a symlink, never from outside `work/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// `artifacts: {required: true}`: a glob that matches nothing fails the job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub artifacts_required: bool,
    /// The job's folder is read once the job ends and then thrown away (`baton run`): nothing
    /// in it has to outlive a crash of the machine, so the supervisor syncs neither its log
    /// nor its exit record to disk. A server's jobs are never ephemeral.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

/// A job's secrets: environment entries (explicit `secrets:`, secret-looking `env` entries and
/// variables) and every value to replace by `***` in its log. `Debug` shows no value.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct JobSecrets {
    /// Set in the job's environment, over [`JobSpec::env`].
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Replaced by `***` in the log (with their base64 forms, see [`crate::mask`]).
    #[serde(default)]
    pub mask: Vec<String>,
}

impl JobSecrets {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.mask.is_empty()
    }
}

impl std::fmt::Debug for JobSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        write!(
            f,
            "JobSecrets {{ env: {names:?}, mask: {} values }}",
            self.mask.len()
        )
    }
}

/// Where and how a containerised job runs (`image:` / `build:`, `resources:`, `network:`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    /// The image to run; with `build`, the Dockerfile's image is used instead (tagged
    /// `baton-build:<content hash>`).
    pub image: Option<String>,
    /// An absolute path to a Dockerfile whose directory is the build context.
    #[serde(default)]
    pub build: Option<std::path::PathBuf>,
    /// CPU limit in CPUs (`1.5` = one and a half).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// `none` or `bridge` (the default).
    #[serde(default)]
    pub network: Network,
}

// `cpus` is finite and positive (the config loader checks), so equality is total.
impl Eq for ContainerSpec {}

/// A container's network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Only a loopback interface.
    None,
    /// The engine's default bridge network.
    #[default]
    Bridge,
}

impl Network {
    /// The engine's `NetworkMode`.
    pub fn mode(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Bridge => "bridge",
        }
    }
}

/// How a job ended. Written by the supervisor to `exit.json`, last.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExitRecord {
    /// The script's exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that killed the script (bash), if one did.
    pub signal: Option<i32>,
    /// The supervisor killed the job because its timeout expired.
    pub timed_out: bool,
    /// The job was cancelled (SIGTERM or SIGINT to the supervisor).
    pub canceled: bool,
    /// The job could not be run (or its log not written), e.g.
    /// `"could not start bash: ..."`.
    pub error: Option<String>,
    /// When the supervisor started the job.
    pub started_at: DateTime<Utc>,
    /// When the job (and the copying of its output) ended.
    pub ended_at: DateTime<Utc>,
    /// Size of `log` at the end.
    pub log_bytes: u64,
    /// The supervisor's own peak resident set size (VmHWM), in KiB.
    #[serde(default)]
    pub max_rss_kb: Option<u64>,
    /// Required `artifacts:` globs that matched no file (the job fails for them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_artifacts: Vec<String>,
}

impl ExitRecord {
    /// The job ran and exited 0, without timeout, cancel or error.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
            && self.error.is_none()
            && !self.timed_out
            && !self.canceled
            && self.missing_artifacts.is_empty()
    }
}

/// What waiting on a job yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The job ended and its exit record was read.
    Exited(ExitRecord),
    /// The job's fate is unknown: its supervisor went away without an exit
    /// record. The string says why we think so.
    Lost(String),
}
