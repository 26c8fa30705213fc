//! The rows the store reads and writes, as plain Rust types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use baton_core::run::{Status, TargetKind, TriggerKind};

use crate::ImportMark;

/// A run to record.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub kind: TargetKind,
    pub target: String,
    pub trigger: TriggerKind,
    pub args: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// The definition the run was queued with (a snapshot, kept even if the config changes).
    pub definition: serde_json::Value,
    /// `queued`, or `skipped` when admission refused it.
    pub status: Status,
    pub reason: Option<String>,
    pub priority: i64,
    pub partition: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub not_before: Option<DateTime<Utc>>,
    pub jobs: Vec<NewJob>,
    pub ancestors: Vec<i64>,
    /// The code the run was triggered for, if a repository event (or a hand trigger of a
    /// repository task) started it.
    pub repo: Option<crate::RunRepo>,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub name: String,
}

/// A recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub kind: TargetKind,
    pub target: String,
    pub trigger: TriggerKind,
    pub args: BTreeMap<String, String>,
    pub tags: Vec<String>,
    #[serde(skip)]
    pub definition: serde_json::Value,
    pub status: Status,
    pub reason: Option<String>,
    pub priority: i64,
    pub partition: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub not_before: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub jobs: Vec<JobRow>,
    pub ancestors: Vec<i64>,
    pub descendants: Vec<i64>,
    pub repo: Option<crate::RunRepo>,
}

/// A recorded job: what one worker executes.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
    pub attempt: u32,
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    pub queued_at: DateTime<Utc>,
    /// When its DAG dependencies were done (pipeline jobs; `None`: ready when queued, or not
    /// recorded). Kept once set, also across retries.
    #[serde(skip)]
    pub ready_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub ended_seq: Option<u64>,
    /// Arguments of this job beyond its run's (the `on_error` job's `failedTask*`); they win
    /// over the run's.
    #[serde(skip)]
    pub args: BTreeMap<String, String>,
}

impl JobRow {
    /// A new job of open run `run_id`: queued, attempt 1, with its own arguments beyond the
    /// run's. Times are kept to the millisecond, as the store keeps them.
    pub fn queued(
        id: i64,
        run_id: i64,
        name: &str,
        at: DateTime<Utc>,
        args: BTreeMap<String, String>,
    ) -> JobRow {
        JobRow {
            id,
            run_id,
            name: name.to_string(),
            status: Status::Queued,
            reason: None,
            attempt: 1,
            worker: None,
            exit_code: None,
            queued_at: crate::from_ms(crate::ms(at)),
            ready_at: None,
            started_at: None,
            ended_at: None,
            ended_seq: None,
            args,
        }
    }
}

/// One state change.
#[derive(Debug, Clone)]
pub enum Change {
    /// A job's state as the scheduler now holds it: status, reason, worker, exit code and
    /// start are written as given (`None` clears them: a job queued again for a retry has no
    /// worker); `None` for the end, its order or the attempt keeps the stored value.
    Job {
        id: i64,
        status: Status,
        reason: Option<String>,
        worker: Option<String>,
        exit_code: Option<i32>,
        started_at: Option<DateTime<Utc>>,
        ended_at: Option<DateTime<Utc>>,
        ended_seq: Option<u64>,
        attempt: Option<u32>,
    },
    Run {
        id: i64,
        status: Status,
        reason: Option<String>,
        started_at: Option<DateTime<Utc>>,
        ended_at: Option<DateTime<Utc>>,
        /// The run builds a repository's commit: its state is a commit status to send (the
        /// outbox row is written in the same transaction). `false` skips that statement.
        builds_commit: bool,
    },
    Mark {
        target: String,
        slot: DateTime<Utc>,
    },
    /// A queued job became ready to start at `at` (its DAG dependencies are done); a job keeps
    /// the first time recorded.
    JobReady {
        id: i64,
        at: DateTime<Utc>,
    },
    /// A new run with its jobs and ancestor links, under the ids the scheduler gave them
    /// (see [`NewRun::into_row`] and `Store::next_ids`).
    NewRun(Box<RunRow>),
    /// A job added to an open run (a pipeline's `on_error` job), under its id.
    NewJob(JobRow),
    /// An ended run imported from a developer's pushed result ref, under the ids the scheduler
    /// gave it, with its jobs as they ended and the mark that makes the import happen once.
    Import(Box<RunRow>, ImportMark),
}

impl NewRun {
    /// The row this run is recorded as, with run id `id` and job ids from `first_job` on.
    /// Times are kept to the millisecond, as the store keeps them.
    pub fn into_row(self, id: i64, first_job: i64) -> RunRow {
        let at = crate::from_ms(crate::ms(self.enqueued_at));
        let ended = self.status.is_terminal().then_some(at);
        let jobs = self
            .jobs
            .iter()
            .zip(first_job..)
            .map(|(job, job_id)| JobRow {
                id: job_id,
                run_id: id,
                name: job.name.clone(),
                status: self.status,
                reason: self.reason.clone(),
                attempt: 1,
                worker: None,
                exit_code: None,
                queued_at: at,
                ready_at: None,
                started_at: None,
                ended_at: ended,
                ended_seq: None,
                args: BTreeMap::new(),
            })
            .collect();
        RunRow {
            id,
            kind: self.kind,
            target: self.target,
            trigger: self.trigger,
            args: self.args,
            tags: self.tags,
            definition: self.definition,
            status: self.status,
            reason: self.reason,
            priority: self.priority,
            partition: self.partition,
            enqueued_at: at,
            not_before: self.not_before,
            started_at: None,
            ended_at: ended,
            jobs,
            ancestors: self.ancestors,
            descendants: Vec::new(),
            repo: self.repo,
        }
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub target: Option<String>,
    pub status: Option<Status>,
    pub trigger: Option<TriggerKind>,
    pub tag: Option<String>,
    /// Only runs with an id below this (cursor pagination, newest first).
    pub before: Option<i64>,
    /// Only runs of these targets (access control); `None` = all.
    pub visible: Option<Visible>,
    /// Only runs with a job on this worker.
    pub worker: Option<String>,
    /// Only runs enqueued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs enqueued before this time.
    pub until: Option<DateTime<Utc>>,
    /// Free text found (case-insensitively) in the target's name, the reason or the arguments.
    pub search: Option<String>,
    /// Only runs of this repository (its name in `repos:`).
    pub repo: Option<String>,
    /// Only runs of this branch.
    pub branch: Option<String>,
    /// Only runs of a commit whose full sha starts with this (lowercase hex).
    pub commit: Option<String>,
}

/// The targets a caller may see, by kind, and the repositories whose own runs (recorded with
/// that repository and named `REPO/...`) they may see.
#[derive(Debug, Clone, Default)]
pub struct Visible {
    pub tasks: Vec<String>,
    pub pipelines: Vec<String>,
    pub repos: Vec<String>,
}
