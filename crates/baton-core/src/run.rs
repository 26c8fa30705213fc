//! Run and job states, triggers, and how a run's status follows from its jobs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job's (and a run's) status. `queued → started → running → success | failed | jammed |
/// broken | canceled`, and `queued → skipped | canceled`; a run held for approval (a pull
/// request from a fork) is `waiting → queued | canceled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    /// Held until a user approves it (a pull request from a fork); no worker takes it.
    Waiting,
    Started,
    Running,
    Success,
    /// The command exited non-zero.
    Failed,
    /// Infrastructure failure: could not start, worker or supervisor lost.
    Broken,
    /// Timed out and killed.
    Jammed,
    Skipped,
    Canceled,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Queued,
        Status::Waiting,
        Status::Started,
        Status::Running,
        Status::Success,
        Status::Failed,
        Status::Broken,
        Status::Jammed,
        Status::Skipped,
        Status::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Waiting => "waiting",
            Status::Started => "started",
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Broken => "broken",
            Status::Jammed => "jammed",
            Status::Skipped => "skipped",
            Status::Canceled => "canceled",
        }
    }

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Status::Queued | Status::Waiting | Status::Started | Status::Running
        )
    }

    /// Started or running: it holds a worker.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Started | Status::Running)
    }

    /// A terminal status that counts as a failure of the job.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::Broken | Status::Jammed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status {0:?} (expected one of queued, waiting, started, running, success, failed, broken, jammed, skipped, canceled)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// What made a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Cli,
    Api,
    Schedule,
    /// Chained: the success of another run (see the run's ancestors).
    Chained,
    Webhook,
    /// A rerun of an earlier run (see the run's ancestors).
    Rerun,
    /// A new commit the repository poller found (`repos.NAME.poll`).
    Poll,
    /// Run on a developer's machine by `baton run` and imported, read-only, from the result
    /// ref they pushed (`refs/baton-runs/…`, `refs/jci-runs/…`): never run on the server.
    Local,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Cli => "cli",
            TriggerKind::Api => "api",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Chained => "chained",
            TriggerKind::Webhook => "webhook",
            TriggerKind::Rerun => "rerun",
            TriggerKind::Poll => "poll",
            TriggerKind::Local => "local",
        }
    }
}

impl FromStr for TriggerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            TriggerKind::Cli,
            TriggerKind::Api,
            TriggerKind::Schedule,
            TriggerKind::Chained,
            TriggerKind::Webhook,
            TriggerKind::Rerun,
            TriggerKind::Poll,
            TriggerKind::Local,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown trigger {s:?} (expected cli, api, schedule, chained, webhook, rerun, poll or local)"
            )
        })
    }
}

/// Whether a run is of a task (one job) or a pipeline (one job per pipeline task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Task,
    Pipeline,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Task => "task",
            TargetKind::Pipeline => "pipeline",
        }
    }
}

impl FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "task" => Ok(TargetKind::Task),
            "pipeline" => Ok(TargetKind::Pipeline),
            _ => Err(format!("unknown target kind {s:?}")),
        }
    }
}

/// One job's view for deriving a run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobView {
    pub status: Status,
    /// A failure of this job does not fail the run (`allow_failure`).
    pub allow_failure: bool,
    /// Order in which jobs ended (for picking the first failure).
    pub ended_seq: u64,
}

/// A run's status follows from its jobs: active while any job is queued or active, else the
/// status of the first job that failed (not allowed to), else canceled/skipped if every job was,
/// else success.
pub fn run_status(jobs: &[JobView]) -> Status {
    if jobs.is_empty() {
        return Status::Success;
    }
    if jobs.iter().any(|j| j.status.is_active()) {
        return if jobs.iter().any(|j| j.status == Status::Running) {
            Status::Running
        } else {
            Status::Started
        };
    }
    if jobs.iter().any(|j| j.status == Status::Waiting) {
        return Status::Waiting;
    }
    if jobs.iter().any(|j| j.status == Status::Queued) {
        // Some jobs ended and others wait for their dependencies: the run is under way.
        return if jobs.iter().all(|j| j.status == Status::Queued) {
            Status::Queued
        } else {
            Status::Running
        };
    }
    if let Some(first) = jobs
        .iter()
        .filter(|j| j.status.is_failure() && !j.allow_failure)
        .min_by_key(|j| j.ended_seq)
    {
        return first.status;
    }
    if jobs.iter().all(|j| j.status == Status::Skipped) {
        return Status::Skipped;
    }
    if jobs.iter().any(|j| j.status == Status::Canceled) {
        return Status::Canceled;
    }
    Status::Success
}

/// A duration as every Baton surface shows it (pages, their script, the CLI): `0.4s` and `9.9s`
/// under ten seconds, then `14s`, `2m 05s`, `1h 02m`. Negative durations show as `0.0s`.
pub fn format_duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(status: Status, seq: u64) -> JobView {
        JobView {
            status,
            allow_failure: false,
            ended_seq: seq,
        }
    }

    #[test]
    fn durations_have_one_format() {
        let f = format_duration_ms;
        assert_eq!(f(-5), "0.0s");
        assert_eq!(f(420), "0.4s");
        assert_eq!(f(9_999), "9.9s");
        assert_eq!(f(14_200), "14s");
        assert_eq!(f(125_000), "2m 05s");
        assert_eq!(f(3_720_000), "1h 02m");
    }

    #[test]
    fn status_round_trips_through_text() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("done".parse::<Status>().is_err());
    }

    #[test]
    fn run_status_follows_jobs() {
        assert_eq!(run_status(&[j(Status::Queued, 0)]), Status::Queued);
        assert_eq!(
            run_status(&[j(Status::Waiting, 0), j(Status::Waiting, 0)]),
            Status::Waiting
        );
        assert_eq!(
            run_status(&[j(Status::Success, 1), j(Status::Queued, 0)]),
            Status::Running
        );
        assert_eq!(
            run_status(&[j(Status::Jammed, 2), j(Status::Failed, 1)]),
            Status::Failed
        );
        let allowed = JobView {
            status: Status::Failed,
            allow_failure: true,
            ended_seq: 1,
        };
        assert_eq!(
            run_status(&[allowed, j(Status::Success, 2)]),
            Status::Success
        );
        assert_eq!(
            run_status(&[j(Status::Success, 1), j(Status::Canceled, 2)]),
            Status::Canceled
        );
        assert_eq!(run_status(&[j(Status::Skipped, 0)]), Status::Skipped);
    }
}
