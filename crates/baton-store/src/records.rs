//! The rows the store reads and writes, as plain Rust types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use baton_core::run::{Status, TargetKind, TriggerKind};

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
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub ended_seq: Option<u64>,
}

/// One state change; `None` fields keep their stored value.
#[derive(Debug, Clone)]
pub enum Change {
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
    },
    Mark {
        target: String,
        slot: DateTime<Utc>,
    },
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
}

/// The targets a caller may see, by kind.
#[derive(Debug, Clone, Default)]
pub struct Visible {
    pub tasks: Vec<String>,
    pub pipelines: Vec<String>,
}
