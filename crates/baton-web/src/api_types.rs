//! The JSON API's own types, shared by the server (which converts store rows and the config into
//! them explicitly) and the CLI (which reads its answers as them); the OpenAPI document at
//! `/api/v1/openapi.json` is generated from them.
//!
//! These are plain serde types: no HTTP here. A definition's secret `env` entries and
//! `variables` can only be shown as `***`: [`Shown`] is built from a config value and has no
//! way to hold a secret's value (the config keeps those in `secrecy` types anyway).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A run's or job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    /// Held until a user approves it (a pull request from a fork).
    Waiting,
    Started,
    Running,
    Success,
    Failed,
    Broken,
    Jammed,
    Skipped,
    Canceled,
}

impl Status {
    /// The status as written in JSON (`success`, `failed`, …).
    pub fn as_str(self) -> &'static str {
        baton_core::run::Status::from(self).as_str()
    }

    /// Whether the run or job has ended.
    pub fn is_terminal(self) -> bool {
        baton_core::run::Status::from(self).is_terminal()
    }
}

/// Whether a run is of a task or of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Task,
    Pipeline,
}

/// What made a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Cli,
    Api,
    Schedule,
    Chained,
    Webhook,
    Rerun,
    Poll,
    /// Ran on a developer's machine (`baton run`) and imported read-only from its pushed
    /// result ref: never run on the server.
    Local,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        baton_core::run::TriggerKind::from(self).as_str()
    }
}

/// One job of a run: what one worker executes (a retry is a new attempt of the same job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
    pub attempt: u32,
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A run of a task or pipeline, with its jobs and its links to other runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: i64,
    pub kind: TargetKind,
    pub target: String,
    pub trigger: TriggerKind,
    pub args: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub priority: i64,
    pub partition: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub not_before: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub jobs: Vec<Job>,
    /// Runs that led to this one (the run it chains after, the run it reruns).
    pub ancestors: Vec<i64>,
    /// Runs this one led to.
    pub descendants: Vec<i64>,
    /// The code a repository event (or hand trigger of a repository task) started it for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RunCode>,
    /// The counts of the run's test results, once it has any (lists only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultSummary>,
    /// The commit statuses reported to the forge for this run, in order (`GET /runs/{id}`
    /// only; absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<StatusReport>,
}

/// One commit status of a run and how far its sending got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    /// `baton/TASK`.
    pub context: String,
    /// `pending`, `running`, `success`, `failure`, `error` or `canceled` (Baton's words; each
    /// forge gets its own).
    pub state: String,
    /// `sent`; `pending` (not tried yet); `retrying` (see `last_error`); `failed` (given up);
    /// `skipped` (no token, or a forge without statuses).
    pub outcome: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The repository, commit and ref a run builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunCode {
    /// The repository's name in `repos:`.
    pub repo: String,
    pub url: String,
    /// The full commit sha.
    pub commit: String,
    pub git_ref: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub pr: Option<i64>,
    /// A pull request's head commit (`commit` is its merge into `pr_base` unless the task
    /// says `pr_head: true`).
    #[serde(default)]
    pub pr_head: Option<String>,
    /// The branch a pull request targets.
    #[serde(default)]
    pub pr_base: Option<String>,
    /// The pull request comes from a fork (its jobs get no secrets).
    #[serde(default)]
    pub pr_fork: bool,
    pub event: String,
    /// The webhook delivery id that started it.
    pub delivery: Option<String>,
    pub author: Option<String>,
    pub subject: Option<String>,
    /// The machine (`user@host`) a run made by `baton run` on a developer's machine ran on;
    /// such a run was imported read-only from its pushed result ref (trigger `local`). `None`:
    /// the server ran it.
    #[serde(default)]
    pub ran_on: Option<String>,
}

/// `GET /runs`: newest first; `next_cursor` is the `cursor` of the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
    pub next_cursor: Option<i64>,
}

/// A duration as `{secs, nanos}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Span {
    pub secs: u64,
    pub nanos: u32,
}

/// A value of a definition's `env` or `variables` as users see it: the value as written, or
/// `***` for a secret one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Shown(pub String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CronSchedule {
    pub cron: String,
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RepoTrigger {
    pub ssh_url: String,
    pub branches: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitStrategy {
    Append,
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WaitList {
    pub size: u32,
    pub strategy: WaitStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    None,
    Bridge,
}

/// `image:`/`build:`: the job runs in a fresh container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Container {
    pub image: Option<String>,
    pub build: Option<String>,
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub network: NetworkMode,
}

/// A task as users see it: its command as written (`${:name}` unfilled), secrets as `***`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub name: String,
    pub enabled: bool,
    pub description: String,
    /// `args:`: the arguments a trigger may give (empty: any).
    #[serde(default)]
    pub args: Vec<ArgDecl>,
    pub queues: Vec<String>,
    pub tags: Vec<String>,
    pub period: Option<Span>,
    pub schedule: Option<CronSchedule>,
    pub debounce: Option<Span>,
    pub priority: i64,
    pub timeout: Option<Span>,
    pub command: String,
    pub variables: BTreeMap<String, Shown>,
    pub authorized_users: Vec<String>,
    pub after_tasks: Vec<String>,
    pub repo_triggers: Vec<RepoTrigger>,
    pub env: BTreeMap<String, Shown>,
    /// Names of the explicit secrets the job gets (never their values).
    pub secrets: Vec<String>,
    pub concurrency: u32,
    pub wait_list: Option<WaitList>,
    pub retries: u32,
    pub container: Option<Container>,
}

/// An argument a task or pipeline declares (`args:`), in the order written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArgDecl {
    pub name: String,
    pub description: String,
    /// The value a trigger that gives none gets.
    pub default: Option<String>,
    /// The only values allowed (empty: any).
    pub choices: Vec<String>,
    /// A trigger must give it.
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum QueueStrategy {
    Append,
    Replace,
    PartitionedReplace { partition_limit: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OnError {
    pub script: String,
    pub env: BTreeMap<String, Shown>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineTask {
    pub name: String,
    pub script: String,
    pub depends_on: Vec<String>,
    pub env: BTreeMap<String, Shown>,
    pub secrets: Vec<String>,
    pub allow_failure: bool,
    pub container: Option<Container>,
}

/// A pipeline as users see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    pub name: String,
    /// `enabled:`, as on tasks (with an administrator's override).
    #[serde(default)]
    pub enabled: bool,
    /// `description:`, as on tasks.
    #[serde(default)]
    pub description: String,
    /// `args:`, as on tasks.
    #[serde(default)]
    pub args: Vec<ArgDecl>,
    /// `tags:`, as on tasks.
    #[serde(default)]
    pub tags: Vec<String>,
    pub concurrency: u32,
    pub queue_limit: Option<u32>,
    pub queue_strategy: QueueStrategy,
    pub start_delay: Option<Span>,
    pub continue_running_tasks_after_failure: bool,
    pub on_error: Option<OnError>,
    pub retention_period: Option<Span>,
    pub retention_count: Option<u32>,
    pub env: BTreeMap<String, Shown>,
    pub queues: Vec<String>,
    pub authorized_users: Vec<String>,
    pub tasks: BTreeMap<String, PipelineTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineList {
    pub pipelines: Vec<Pipeline>,
}

/// A worker: `state` is `idle`, `busy`, `down` or `disabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Worker {
    pub name: String,
    pub kind: String,
    pub queues: Vec<String>,
    pub state: String,
    pub reason: Option<String>,
    pub run_id: Option<i64>,
    pub job_id: Option<i64>,
    pub last_heartbeat: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<Worker>,
}

/// A waiting job and why it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueEntry {
    pub run_id: i64,
    pub job_id: i64,
    pub target: String,
    pub job: String,
    pub priority: i64,
    pub enqueued_at: DateTime<Utc>,
    pub reason: String,
    /// What it waits for: `turn` (its run's concurrency or start delay), `dependencies` (a
    /// pipeline's jobs before it) or `worker` (a free worker of its queues).
    #[serde(default)]
    pub waits_for: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub queue: Vec<QueueEntry>,
}

/// The body of `POST /tasks/{name}/trigger` and `/pipelines/{name}/trigger` (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// For a repository's task (`REPO/TASK`): the branch, tag or commit to build (`main`,
    /// `v1.2`, `refs/heads/main`, a full sha); default: the repository's default branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Run jobs with `cache:` even when a successful job had the same inputs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
}

/// The body of `POST /runs/{id}/rerun` (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// New arguments for the run (checked like a trigger's); absent: the old run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<BTreeMap<String, String>>,
}

/// The body of `POST /tasks/{name}/enabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnabledBody {
    /// `true` or `false` override the config; `null` follows the config again.
    pub enabled: Option<bool>,
}

/// The answer of `POST /tasks/{name}/enabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnabledState {
    pub task: String,
    pub enabled: bool,
}

/// The answer of `POST /pipelines/{name}/enabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineEnabledState {
    pub pipeline: String,
    pub enabled: bool,
}

/// The answer of `POST /config/reload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    pub reloaded: bool,
    pub tasks: usize,
    pub pipelines: usize,
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// `code` is stable (`unknown_target`, `bad_argument`, `wait_list_full`, …); `message` says
/// what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

mod artifacts;
mod cache;
mod convert;
mod logs;

/// `GET /repos`: the repositories of `repos:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RepoList {
    pub repos: Vec<Repo>,
}

/// A repository of `repos:` and how the server keeps up with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Repo {
    pub name: String,
    /// Its clone URL, without credentials.
    pub url: String,
    /// `github`, `gitea`, `forgejo`, `gitlab` or `git`.
    pub forge: String,
    /// Branch patterns whose pushes start anything; empty: every branch.
    pub branches: Vec<String>,
    /// How often the server fetches it (`poll:`), in seconds; `None`: on webhooks only.
    pub poll_secs: Option<u64>,
    /// When the last fetch (with its retries) ended.
    pub last_fetch_at: Option<DateTime<Utc>>,
    /// When a fetch last succeeded.
    pub last_fetch_ok_at: Option<DateTime<Utc>>,
    /// Why the last fetch failed; `None` when it worked (or none ran yet).
    pub last_fetch_error: Option<String>,
    /// When the poller last compared its branches with those seen before.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Its latest runs the caller may see, newest first.
    pub recent_runs: Vec<Run>,
}
mod results;

pub use artifacts::{ArtifactEntry, JobArtifacts, RunArtifacts};
pub use cache::{JobCacheInfo, JobLink};
pub use logs::{LogMark, LogMarks};
pub use results::{ResultKind, ResultNode, ResultStatus, ResultSummary, RunResults};
