//! The validated configuration model: what the scheduler and executors use.
//!
//! These types are built only by [`crate::config::load_path`] from the raw YAML types, after every
//! check has passed, so code that holds a `Config` never re-validates. The model is immutable and
//! swapped whole on reload; a queued run keeps the definition it was queued with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod secret_values;
mod written;

pub use secret_values::*;
pub use written::*;

/// The whole validated configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub server: ServerConfig,
    pub workers: BTreeMap<String, WorkerDef>,
    pub administrators: Vec<String>,
    /// `variables:` — secret-looking names ([`is_secret_name`]) hold a [`EnvValue::Secret`]
    /// reference; their values are in `hidden`.
    pub variables: BTreeMap<String, EnvValue>,
    /// `secrets: {NAME: env:VAR | file:PATH}` — explicit secrets, resolved at load.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretDef>,
    pub tasks: BTreeMap<String, TaskDef>,
    pub pipelines: BTreeMap<String, PipelineDef>,
    /// `repos:` — repositories whose webhooks (and `.baton/` configs) start runs.
    #[serde(default)]
    pub repos: BTreeMap<String, RepoDef>,
    /// `notify:` — where to tell about runs that end (signed JSON webhooks).
    #[serde(default)]
    pub notify: Vec<NotifyDef>,
    /// `pools:` — autoscaled agent pools: agents started on demand for their queues.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolDef>,
    /// The values behind every [`EnvValue::Secret`] reference of this config (secret-looking
    /// variables and `env` entries), by reference. Memory only: never serialized.
    #[serde(skip)]
    pub hidden: BTreeMap<String, SecretValue>,
    /// Each task's and pipeline's text as written, with its place; values the loader hid are
    /// already `***` in it. Read it through [`Config::written_source`]. Memory only.
    #[serde(skip)]
    pub written: Written,
}

/// `server:` — settings of the server process itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// `listen: 127.0.0.1:8700`; the command line wins over it.
    pub listen: Option<String>,
    /// `database:` — where the store is: a `postgres://` URL (no password: that goes in
    /// `BATON_DB` or PostgreSQL's own `PGPASSWORD`/`~/.pgpass`) or a SQLite file; `None`: the
    /// data directory's `baton.db`. `--db`/`BATON_DB` win over it.
    #[serde(default)]
    pub database: Option<String>,
    /// `jwt_secret:` — HS256 secret for prunner-style JWTs; `None` disables JWT auth.
    pub jwt_secret: Option<String>,
    /// `local_workers:` — how many local workers serve queue `default` when `workers:` defines
    /// none. `None` means one per CPU.
    pub local_workers: Option<u32>,
    /// `kill_grace:` — time between SIGTERM and SIGKILL on cancel and timeout (default 5s).
    pub kill_grace: Option<Duration>,
    /// `agent_queues:` — queues served by pull-mode agents (`baton agent`), which join at run
    /// time; listing them here makes tasks on them valid.
    #[serde(default)]
    pub agent_queues: Vec<String>,
    /// `docker_host:` — the Docker Engine API socket (`unix:///run/podman/podman.sock`,
    /// `tcp://host:2375`); `None` means the engine's standard socket (`DOCKER_HOST` or
    /// `unix:///var/run/docker.sock`).
    #[serde(default)]
    pub docker_host: Option<String>,
    /// `ssh_key:` — private key for SSH workers (`ssh -i`); `None` uses ssh's default identities.
    #[serde(default)]
    pub ssh_key: Option<String>,
    /// `known_hosts:` — the known_hosts file that SSH workers' host keys are checked against
    /// (`StrictHostKeyChecking=yes`); `None` uses ssh's default (`~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// `callback_url:` — base URL (`http://host:port`) by which SSH workers reach this server to
    /// report a job's end; `None` derives it from the address the server listens on.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// `heartbeat_timeout:` — how long a remote worker may be unreachable before its running
    /// job is `broken` (default 30s).
    #[serde(default)]
    pub heartbeat_timeout: Option<Duration>,
    /// `public_url:` — the base URL (`https://ci.example.com`) by which browsers reach the web
    /// UI; single sign-on redirects back to `<public_url>/auth/<provider>/callback`. `None`
    /// derives it from the address the server listens on.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `auth:` — single sign-on providers by name (the name appears in URLs).
    #[serde(default)]
    pub auth: BTreeMap<String, SsoProvider>,
    /// `webhook_secret:` — a forge-wide webhook secret (`env:VAR`/`file:PATH`): a delivery for a
    /// repository not in `repos:` is checked against it before it is answered `404`, so only
    /// the forge learns which repositories exist. Never serialized.
    #[serde(skip)]
    pub webhook_secret: Option<RepoSecret>,
    /// `retention:` — how long ended runs are kept, for tasks without their own.
    #[serde(default)]
    pub retention: Option<RetentionDef>,
    /// `artifacts: {s3: {…}}` — where ended jobs' artifacts are kept; `None`: in the data
    /// directory (`<data>/jobs/…/out/`). Never serialized (it holds keys).
    #[serde(skip)]
    pub artifacts: Option<S3Def>,
}

/// `server.artifacts.s3`: an S3-compatible bucket for artifacts, shared by several servers.
/// The keys are references (`env:VAR`/`file:PATH`), read at load and never shown.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Def {
    pub bucket: String,
    /// `http(s)://host:port` of an S3-compatible service; `None`: AWS.
    pub endpoint: Option<String>,
    /// Default `us-east-1`.
    pub region: String,
    pub access_key: RepoSecret,
    pub secret_key: RepoSecret,
}

/// `retention: {keep_last: N, max_age: 30d, keep_failed: N}`: ended runs of a task beyond its
/// newest `keep_last`, or older than `max_age`, go with their logs, artifacts and results;
/// the newest `keep_failed` failed ones stay anyway. Unset parts keep everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionDef {
    pub keep_last: Option<u32>,
    pub max_age: Option<Duration>,
    pub keep_failed: Option<u32>,
}

/// `server.auth.NAME` — a single sign-on provider: users sign in there and come back as the
/// Baton user the provider names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsoProvider {
    pub name: String,
    pub kind: SsoKind,
    /// `label:` — the sign-in button's text (default `Sign in with NAME`).
    pub label: String,
    pub client_id: String,
    /// Never serialized: the config is shown through the API.
    #[serde(skip_serializing, default)]
    pub client_secret: String,
    /// `scopes:` — asked for besides `openid` (OIDC); default `email profile` for OIDC, none
    /// for GitHub (its public profile needs none).
    pub scopes: Vec<String>,
    /// `allowed_users:` — names that may sign in through this provider (besides the names the
    /// config already mentions: administrators and `authorized_users`).
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// `allowed_domains:` — e-mail domains whose users may sign in (`example.com` admits
    /// `alice@example.com`).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

/// How a provider is spoken to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SsoKind {
    /// `kind: oidc` — any OpenID Connect issuer (Google, Gitea/Forgejo, GitLab, Keycloak, …),
    /// found by discovery at `<issuer>/.well-known/openid-configuration`; the user is named by
    /// `user_claim` of the verified ID token.
    Oidc {
        issuer: String,
        user_claim: UserClaim,
    },
    /// `kind: github` — GitHub's OAuth apps (not OIDC): the user is named by their GitHub login
    /// (`GET <api_url>/user`). `url` is `https://github.com` (or a GitHub Enterprise server).
    Github { url: String, api_url: String },
}

/// Which ID-token claim names the Baton user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserClaim {
    /// The e-mail address, accepted only with `email_verified: true`.
    Email,
    PreferredUsername,
    Sub,
}

/// `image:` / `build:` with `resources:` and `network:` on a task or pipeline task: the job runs
/// in a fresh container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerDef {
    /// `image: NAME`; `None` when the image is built from `build`.
    pub image: Option<String>,
    /// `build: path/to/Dockerfile`, resolved against the directory of the config file that
    /// names it. The Dockerfile's directory is the build context.
    pub build: Option<PathBuf>,
    /// `resources: {cpus: 1.5}`.
    pub cpus: Option<f64>,
    /// `resources: {memory: 512m}`, in bytes.
    pub memory_bytes: Option<u64>,
    /// `network: none|bridge` (default bridge).
    pub network: NetworkMode,
}

/// `network:` of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    None,
    #[default]
    Bridge,
}

/// `pools.NAME` — agents the server starts when the pool's queues have waiting jobs (up to
/// `max`) and that leave by themselves after `idle_timeout` with no work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolDef {
    pub name: String,
    pub queues: Vec<String>,
    pub min: u32,
    pub max: u32,
    pub idle_timeout: Duration,
    /// Jobs each agent runs at once.
    pub slots: u32,
    pub provider: PoolProvider,
}

/// How a pool's agents are started and stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PoolProvider {
    /// `command: {up: PATH, down: PATH}` — programs the operator writes (for a cloud API):
    /// `up` starts `BATON_COUNT` agents, `down NAME` removes the machine of a departed agent.
    Command { up: String, down: Option<String> },
    /// `docker: {image, host, network, env}` — each agent is a container of `image` (which has
    /// `baton` in it) on the engine at `host`.
    Docker(DockerPool),
}

/// The `docker` provider of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerPool {
    /// The image the agents' containers are made from (pulled when the engine lacks it).
    pub image: String,
    /// The engine (`unix:///PATH`, or `tcp://`/`http://` on a loopback address); `None`: the
    /// server's (`server.docker_host`, else `DOCKER_HOST`, else the standard socket).
    pub host: Option<String>,
    /// The network the containers join (`host`, `bridge` or a network's name); `None`: the
    /// engine's default.
    pub network: Option<String>,
    /// Extra environment of the containers: plain settings only (anyone who may inspect the
    /// containers reads them; secret-looking names are refused).
    pub env: BTreeMap<String, String>,
}

impl Config {
    /// The queues pull-mode agents serve: `server.agent_queues` and every pool's.
    #[must_use]
    pub fn agent_queues(&self) -> Vec<String> {
        let mut out = self.server.agent_queues.clone();
        for q in self.pools.values().flat_map(|p| &p.queues) {
            if !out.contains(q) {
                out.push(q.clone());
            }
        }
        out
    }
}

/// `workers.NAME` — a place that runs one job at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDef {
    pub name: String,
    /// `host: user@host[:port]` for an SSH worker; `None` for a local worker.
    pub host: Option<String>,
    pub queues: Vec<String>,
    /// `work_dir:` — SSH workers only: the folder on the worker (relative to the login user's
    /// home unless absolute) that holds `jobs/<job>/<attempt>/` (default `.baton`). Workers on
    /// the same host that share a user should each have their own.
    pub work_dir: Option<String>,
}

/// `tasks.NAME` — a py4CI-style task: one command, one job per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDef {
    pub name: String,
    pub enabled: bool,
    pub description: String,
    /// `args:` — the arguments a trigger may give, in the order written (empty: any).
    #[serde(default)]
    pub args: Vec<ArgDef>,
    pub queues: Vec<String>,
    pub tags: Vec<String>,
    pub period: Option<Duration>,
    pub schedule: Option<CronSchedule>,
    pub debounce: Option<Duration>,
    pub priority: i64,
    pub timeout: Option<Duration>,
    /// The command as written: `${:var}` is filled in from `variables` when a job starts.
    pub command: String,
    /// The `variables` the command names, as they were when the task was loaded (secret-looking
    /// ones as references).
    #[serde(default)]
    pub variables: BTreeMap<String, EnvValue>,
    pub authorized_users: Vec<String>,
    /// `triggered_by: - task: NAME` — run when NAME succeeds.
    pub after_tasks: Vec<String>,
    /// `triggered_by: - ssh_url: …, branches: […]` — kept for the forge webhook issue.
    pub repo_triggers: Vec<RepoTrigger>,
    pub env: BTreeMap<String, EnvValue>,
    /// `secrets: [NAME, …]` — explicit secrets the job gets as environment variables.
    #[serde(default)]
    pub secrets: Vec<String>,
    pub concurrency: u32,
    pub wait_list: Option<WaitList>,
    pub retries: u32,
    /// Run in a container (`image:`/`build:`); `None` runs on the worker itself.
    #[serde(default)]
    pub container: Option<Box<ContainerDef>>,
    /// `on:` — which repository events start it; `None`: the default ([`crate::on::On::default`]
    /// for repo-defined tasks; server-defined tasks without `on:` start on no repo event).
    /// Not kept in a run's definition: it is matched before the run is queued.
    #[serde(skip)]
    pub on: Option<crate::on::On>,
    /// `checkout:` — repo-triggered jobs start in a checkout of the commit (default true).
    #[serde(default = "yes")]
    pub checkout: bool,
    /// `pr_head:` — a pull request's run builds its head alone, not its merge into the target.
    #[serde(default)]
    pub pr_head: bool,
    /// `cancel_superseded:` — a newer run for the same pull request (or branch) cancels this
    /// one; `None`: the default (yes for pull requests, no for pushes).
    #[serde(default)]
    pub cancel_superseded: Option<bool>,
    /// `reports:` — where the job's test reports are among its artifacts.
    #[serde(default)]
    pub reports: Reports,
    /// `artifacts:` — files of the job's working directory kept as artifacts.
    #[serde(default, skip_serializing_if = "Artifacts::is_empty")]
    pub artifacts: Artifacts,
    /// `cache:` — skip the job when a successful one had the same inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Box<CacheDef>>,
    /// `retention:` — how long its ended runs are kept (else `server.retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Box<RetentionDef>>,
}

/// `cache: {inputs: [GLOB, …], env: [NAME, …], key: TEXT, max_age: 30d}`: a job whose inputs
/// (these files of its checkout, its definition, its image, these environment values and the
/// key) are those of a successful job of the same repository within `max_age` is not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheDef {
    /// Globs relative to the job's working directory (its checkout).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Names of environment variables whose values count.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub key: String,
    /// How old a hit may be; `None`: [`CacheDef::DEFAULT_MAX_AGE`].
    #[serde(default)]
    pub max_age: Option<Duration>,
    /// Set on a run triggered with `--no-cache` ("run anyway"): the job runs, and its inputs
    /// are still recorded for later hits. Never read from YAML.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

impl CacheDef {
    /// 30 days.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

    pub fn max_age(&self) -> Duration {
        self.max_age.unwrap_or(Self::DEFAULT_MAX_AGE)
    }
}

/// `reports: {junit: [GLOB, …]}`: the job's JUnit XML reports, as globs relative to its
/// output folder. Empty: every `*.xml` file there that is a JUnit report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reports {
    #[serde(default)]
    pub junit: Vec<String>,
}

/// `artifacts: [GLOB, …]` or `artifacts: {paths: [GLOB, …], required: true}`: files of the
/// job's working directory (globs relative to it, `*` within one folder, `**` across folders)
/// copied into its artifacts when it ends, besides what it wrote to `$BATON_OUTPUT_DIR`. A glob
/// that matches nothing is a warning; with `required`, it fails the job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub required: bool,
}

impl Artifacts {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronSchedule {
    /// The cron expression as written (5 fields, or 6 with seconds).
    pub cron: String,
    /// IANA time zone name (`Europe/Berlin`); `None` means UTC.
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoTrigger {
    pub ssh_url: String,
    pub branches: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitList {
    pub size: u32,
    pub strategy: WaitStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitStrategy {
    Append,
    Replace,
}

/// `args.NAME` — an argument a task or pipeline declares: shown as a form field, checked on
/// every trigger (`crate::args::apply_declared`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDef {
    pub name: String,
    /// What it is for (the form's help text).
    #[serde(default)]
    pub description: String,
    /// The value a trigger that does not give one gets.
    #[serde(default)]
    pub default: Option<String>,
    /// The only values allowed (empty: any value).
    #[serde(default)]
    pub choices: Vec<String>,
    /// A trigger must give it (never with a default).
    #[serde(default)]
    pub required: bool,
}

/// `pipelines.NAME` — a prunner-style pipeline: a DAG of tasks, one job per task per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineDef {
    pub name: String,
    /// `enabled:`, as on tasks (default true; administrators can override it at runtime).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `description:`, as on tasks (shown on the dashboard and the trigger form).
    #[serde(default)]
    pub description: String,
    /// `args:`, as on tasks.
    #[serde(default)]
    pub args: Vec<ArgDef>,
    /// `tags:`, as on tasks.
    #[serde(default)]
    pub tags: Vec<String>,
    pub concurrency: u32,
    /// `queue_limit`; `None` = unbounded. Only with append/replace.
    pub queue_limit: Option<u32>,
    pub queue_strategy: QueueStrategy,
    pub start_delay: Option<Duration>,
    pub continue_running_tasks_after_failure: bool,
    pub on_error: Option<OnError>,
    pub retention_period: Option<Duration>,
    pub retention_count: Option<u32>,
    pub env: BTreeMap<String, EnvValue>,
    /// Baton extension: queues the pipeline's jobs go to (default `[default]`).
    pub queues: Vec<String>,
    /// Baton extension, as on tasks: users who may see and trigger the pipeline (besides the
    /// administrators). Empty: administrators only.
    pub authorized_users: Vec<String>,
    pub tasks: BTreeMap<String, PipelineTask>,
    /// `on:`, as on tasks.
    #[serde(skip)]
    pub on: Option<crate::on::On>,
    /// `checkout:`, as on tasks (default true).
    #[serde(default = "yes")]
    pub checkout: bool,
    /// `pr_head:`, as on tasks.
    #[serde(default)]
    pub pr_head: bool,
    /// `cancel_superseded:`, as on tasks.
    #[serde(default)]
    pub cancel_superseded: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum QueueStrategy {
    Append,
    Replace,
    PartitionedReplace { partition_limit: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnError {
    /// Script lines joined with newlines, templates rewritten (see [`PipelineTask::script`]).
    pub script: String,
    pub env: BTreeMap<String, EnvValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineTask {
    pub name: String,
    /// The `script` lines joined with newlines. Every prunner template reference `{{ .name }}`
    /// has been rewritten at load time to `"${name?…}"`, so an argument's value reaches the
    /// shell only as the value of an environment variable, never as shell syntax, and a
    /// reference to an argument that was not passed fails the job with a message naming it.
    pub script: String,
    pub depends_on: Vec<String>,
    pub env: BTreeMap<String, EnvValue>,
    /// `secrets: [NAME, …]` — explicit secrets the job gets as environment variables.
    #[serde(default)]
    pub secrets: Vec<String>,
    pub allow_failure: bool,
    /// Run in a container (`image:`/`build:`); `None` runs on the worker itself.
    #[serde(default)]
    pub container: Option<Box<ContainerDef>>,
    /// `reports:`, as on tasks.
    #[serde(default)]
    pub reports: Reports,
    /// `artifacts:`, as on tasks.
    #[serde(default, skip_serializing_if = "Artifacts::is_empty")]
    pub artifacts: Artifacts,
    /// `cache:`, as on tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Box<CacheDef>>,
}

/// `true`, for serde defaults.
pub(crate) fn yes() -> bool {
    true
}

/// `forge:` of a repository: whose webhooks it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forge {
    Github,
    Gitea,
    Forgejo,
    Gitlab,
    /// A plain git server: no webhooks (polled, or triggered by hand).
    Git,
}

impl Forge {
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::Gitlab => "gitlab",
            Forge::Git => "git",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Forge> {
        [
            Forge::Github,
            Forge::Gitea,
            Forge::Forgejo,
            Forge::Gitlab,
            Forge::Git,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

/// `secret:` or `token:` of a repository: where it comes from and (memory only) its value.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoSecret {
    pub source: SecretSource,
    pub value: SecretValue,
}

/// One entry of `notify:`: a run's end is told, when its target matches `tasks` and its status
/// is in `on`, either as a JSON POST signed with `secret` to `webhook`, or as a mail to `email`
/// through `smtp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyDef {
    #[serde(default)]
    pub webhook: Option<String>,
    /// The HMAC-SHA256 key of `X-Baton-Signature-256`. Never serialized.
    #[serde(skip)]
    pub secret: Option<RepoSecret>,
    /// Mail recipients (set instead of `webhook`, with `smtp`).
    #[serde(default)]
    pub email: Vec<String>,
    #[serde(default)]
    pub smtp: Option<SmtpDef>,
    /// Target globs (`*` stops at `/`, `**` does not, `!` excludes); empty: every target.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Run statuses told about; empty: every end.
    #[serde(default)]
    pub on: Vec<crate::run::Status>,
}

/// `smtp:` of a mail `notify:` entry: a relay spoken to in plain SMTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmtpDef {
    pub host: String,
    pub port: u16,
    pub from: String,
}

impl NotifyDef {
    /// Whether a run of `target` that ended `status` is told to this entry.
    #[must_use]
    pub fn matches(&self, target: &str, status: crate::run::Status) -> bool {
        let task_ok = self.tasks.is_empty()
            || crate::on::Patterns::new(&self.tasks).is_ok_and(|p| p.is_match(target));
        task_ok && status.is_terminal() && (self.on.is_empty() || self.on.contains(&status))
    }

    /// Who is told: the webhook's URL, or `mailto:` and the addresses.
    #[must_use]
    pub fn receiver(&self) -> String {
        match &self.webhook {
            Some(url) => url.clone(),
            None => format!("mailto:{}", self.email.join(",")),
        }
    }
}

/// `repos.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoDef {
    pub name: String,
    pub url: String,
    pub forge: Forge,
    /// The webhook secret. Never serialized.
    #[serde(skip)]
    pub secret: Option<RepoSecret>,
    /// The token for private repositories and the forge's API. Never serialized.
    #[serde(skip)]
    pub token: Option<RepoSecret>,
    /// `ssh_key: file:PATH` — the private key for ssh URLs (only this key is offered).
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// Branch patterns whose pushes start anything; empty: every branch.
    #[serde(default)]
    pub branches: Vec<String>,
    /// `poll:` — how often to fetch when the forge sends no webhooks.
    #[serde(default)]
    pub poll: Option<Duration>,
    /// `trusted_users:` — forge logins whose pull requests from forks run without approval.
    #[serde(default)]
    pub trusted_users: Vec<String>,
    /// `authorized_users:` (or `users:`) — Baton users who may see, trigger, cancel, rerun and
    /// approve the runs of this repository's own tasks (`REPO/TASK`); `["*"]`: every
    /// signed-in user; empty: administrators only. Never taken from the repository itself.
    #[serde(default)]
    pub authorized_users: Vec<String>,
    /// `api:` — the forge's API base URL (`https://ghe.example.com/api/v3`); `None` derives it
    /// from `url` (github.com → `https://api.github.com`, else the URL's host over https).
    #[serde(default)]
    pub api: Option<String>,
    /// `github_app:` — a GitHub App installation that mints each job a short-lived token for
    /// this repository, and reports check runs instead of commit statuses.
    #[serde(default)]
    pub github_app: Option<GithubAppDef>,
    /// `job_tokens:` — a Gitea/Forgejo account whose password mints each job a scoped token.
    #[serde(default)]
    pub job_tokens: Option<JobTokensDef>,
    /// `trust_local_runs:` — runs imported from developers' pushed result refs count for the
    /// CI cache (off by default: a laptop is not a clean machine).
    #[serde(default)]
    pub trust_local_runs: bool,
}

/// `repos.NAME.github_app`: the app, its installation on the repository's owner, and its
/// private key (by reference only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GithubAppDef {
    pub app_id: u64,
    pub installation_id: u64,
    /// The app's private key (PEM). Always set once loaded; never serialized.
    #[serde(skip)]
    pub private_key: Option<RepoSecret>,
    /// The permissions of a job's token (`contents: read`…); default `{contents: read}`.
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
}

/// `repos.NAME.job_tokens`: the Gitea/Forgejo user whose tokens jobs get, its password (by
/// reference only: the forge's token API takes basic auth), and the tokens' scopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTokensDef {
    pub user: String,
    /// Always set once loaded; never serialized.
    #[serde(skip)]
    pub password: Option<RepoSecret>,
    /// Default `[read:repository]`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl RepoDef {
    /// Every secret this repository's entry holds: `secret`, `token`, the app's private key,
    /// the job-token user's password.
    pub fn secrets(&self) -> impl Iterator<Item = &RepoSecret> {
        let app = self
            .github_app
            .as_ref()
            .and_then(|a| a.private_key.as_ref());
        let tokens = self.job_tokens.as_ref().and_then(|t| t.password.as_ref());
        [self.secret.as_ref(), self.token.as_ref(), app, tokens]
            .into_iter()
            .flatten()
    }
}

/// Reads a secret's value from its source (`env:`/`file:`); the error says what went wrong (it
/// is shown after the secret's name and place). [`super::resolve_os`] reads the server's
/// environment and files, tests pass their own.
pub type Resolver = dyn Fn(&SecretSource) -> Result<String, String>;
