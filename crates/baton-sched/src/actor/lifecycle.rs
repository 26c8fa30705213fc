//! A run's life after admission: its jobs start and end (retried, or followed by the
//! pipeline's `on_error` job), runs settle into their status, old runs are pruned, and users
//! cancel or rerun.

use std::sync::Arc;
use std::time::Duration;

use baton_core::decide::{self, AttemptEnd, FailedTask, JobEnd, ReasonJob};
use baton_core::run::{Status, TargetKind, run_status};
use baton_exec::{ExitRecord, Outcome};
use baton_store::Change;
use chrono::{DateTime, Utc};

use super::{Actor, job_change};

use crate::jobs::{ON_ERROR_JOB, TargetDef};

/// How a job's attempt ended: as its executor reported, or skipped by a cache hit.
pub(crate) enum Ended {
    Outcome(Outcome),
    /// The reason of the hit (`cache hit: same inputs as job N (run M)`).
    Cached(String),
}

/// A job that failed: its name, exit code, reason, id and attempt.
type FailedJob = (String, Option<i32>, Option<String>, i64, u32);

impl Actor {
    /// Cancels open run `id`; `false` if it is not open (the handle says why from the store).
    pub(super) async fn cancel(&mut self, id: i64) -> bool {
        self.cancel_because(id, None).await
    }

    /// Cancels open run `id` with `reason` (`None`: on a user's request).
    pub(super) async fn cancel_because(&mut self, id: i64, reason: Option<String>) -> bool {
        let now = Utc::now();
        let Some(run) = self.runs.get_mut(&id) else {
            return false;
        };
        run.cancel_requested = true;
        run.cancel_reason.clone_from(&reason);
        let job_reason = reason.unwrap_or_else(|| "canceled on request".into());
        let mut changes = Vec::new();
        let mut signal = Vec::new();
        for j in run.row.jobs.iter_mut() {
            match j.status {
                Status::Queued | Status::Waiting => {
                    j.status = Status::Canceled;
                    j.reason = Some(job_reason.clone());
                    changes.push(job_change(j, Some(now)));
                }
                s if s.is_active() => signal.push((
                    j.id,
                    self.folders.job_dir(j.id, j.attempt),
                    j.worker.clone(),
                    run.def.container(&j.name).is_some(),
                )),
                _ => {}
            }
        }
        self.persist(changes).await;
        for (job_id, dir, worker, container) in signal {
            let Ok(exec) = self.job_executor(container, worker.as_deref()) else {
                continue;
            };
            // A job still launching is signalled once it reports running.
            self.send_cancel(job_id, dir, exec);
        }
        self.settle(id, now).await;
        true
    }

    /// Queues `waiting` run `id` (approved by a user); `false` if it is not waiting.
    pub(super) async fn approve(&mut self, id: i64) -> bool {
        let Some(run) = self.runs.get_mut(&id) else {
            return false;
        };
        if run.row.status != Status::Waiting {
            return false;
        }
        let mut changes = Vec::new();
        for j in run
            .row
            .jobs
            .iter_mut()
            .filter(|j| j.status == Status::Waiting)
        {
            j.status = Status::Queued;
            j.reason = None;
            changes.push(job_change(j, None));
        }
        run.row.status = Status::Queued;
        run.row.reason = None;
        run.stored_status = Status::Queued;
        run.stored_reason = None;
        changes.push(Change::Run {
            id,
            status: Status::Queued,
            reason: None,
            started_at: None,
            ended_at: None,
            builds_commit: run.row.repo.is_some(),
        });
        self.touch(id);
        self.changed = true;
        self.persist(changes).await;
        true
    }

    pub(super) async fn job_running(&mut self, job_id: i64, attempt: u32) {
        let Some(run) = self
            .runs
            .run_of_job(job_id)
            .and_then(|id| self.runs.get_mut(&id))
        else {
            return;
        };
        let cancel = run.cancel_requested;
        let container = run
            .job(job_id)
            .is_some_and(|j| run.def.container(&j.name).is_some());
        let Some(j) = run.job_mut(job_id) else { return };
        let worker = j.worker.clone();
        if j.attempt != attempt || j.status != Status::Started {
            return;
        }
        // A cancel asked for while the job was still launching (by a user, or by the DAG's
        // fail fast) could not reach it then: deliver it now.
        let cancel = cancel || decide::asked_to_cancel(j.reason.as_deref());
        j.status = Status::Running;
        let change = job_change(j, None);
        let run_id = run.row.id;
        self.persist(vec![change]).await;
        if cancel {
            let dir = self.folders.job_dir(job_id, attempt);
            if let Ok(exec) = self.job_executor(container, worker.as_deref()) {
                self.send_cancel(job_id, dir, exec);
            }
        }
        self.settle(run_id, Utc::now()).await;
    }

    pub(super) async fn job_ended(&mut self, job_id: i64, attempt: u32, outcome: Ended) {
        let now = Utc::now();
        let Some(run) = self
            .runs
            .run_of_job(job_id)
            .and_then(|id| self.runs.get_mut(&id))
        else {
            return;
        };
        let run_id = run.row.id;
        let timeout = match &run.def {
            TargetDef::Task(t) => t.timeout,
            TargetDef::Pipeline(_) => None,
        };
        let retries = match &run.def {
            TargetDef::Task(t) => t.retries,
            TargetDef::Pipeline(_) => 0,
        };
        let cancel_requested = run.cancel_requested;
        let Some(j) = run.job_mut(job_id) else { return };
        if j.attempt != attempt || j.status.is_terminal() {
            return;
        }
        let ((status, reason), exit_code) = match outcome {
            Ended::Outcome(Outcome::Exited(rec)) => (describe_exit(&rec, timeout), rec.exit_code),
            Ended::Outcome(Outcome::Lost(why)) => (decide::describe_loss(&why), None),
            Ended::Cached(reason) => ((Status::Skipped, Some(reason)), None),
        };
        let end = decide::job_end(AttemptEnd {
            status,
            reason,
            cancel_requested,
            held_reason: j.reason.as_deref(),
            attempt,
            retries,
        });
        for w in self.workers.iter_mut() {
            if w.busy.is_some_and(|(_, jid)| jid == job_id) {
                w.busy = None;
            }
        }
        let (status, reason) = match end {
            JobEnd::Retry { reason, .. } => {
                self.requeue(run_id, job_id, attempt, reason);
                let run = &self.runs[&run_id];
                let j = run.job(job_id).expect("job present");
                let change = job_change(j, None);
                self.persist(vec![change]).await;
                return;
            }
            JobEnd::End { status, reason } => (status, reason),
        };
        self.ended_seq += 1;
        let seq = self.ended_seq;
        let run = self.runs.get_mut(&run_id).expect("run present");
        let allow_failure = run.def.allow_failure(&run.job(job_id).expect("job").name);
        let has_on_error = matches!(&run.def, TargetDef::Pipeline(p) if p.on_error.is_some());
        let added = run.row.jobs.iter().any(|j| j.name == ON_ERROR_JOB);
        let j = run.job_mut(job_id).expect("job present");
        j.status = status;
        j.reason = reason;
        j.exit_code = exit_code;
        j.ended_at = Some(now);
        j.ended_seq = Some(seq);
        let failed_job = decide::adds_on_error(&j.name, status, allow_failure, has_on_error, added)
            .then(|| (j.name.clone(), exit_code, j.reason.clone(), j.id, j.attempt));
        let change = job_change(j, Some(now));
        self.persist(vec![change]).await;
        if let Some(failed) = failed_job {
            self.add_on_error_job(run_id, failed, now).await;
        }
        self.settle(run_id, now).await;
    }

    /// Adds a pipeline's `on_error` job to run `run_id` after job `failed` failed, with the
    /// failed job's name, exit code, error and log tail as its own arguments.
    async fn add_on_error_job(&mut self, run_id: i64, failed: FailedJob, now: DateTime<Utc>) {
        let (name, code, why, fid, fattempt) = failed;
        let args = decide::failed_task_args(FailedTask {
            name: &name,
            exit_code: code,
            reason: why.as_deref(),
            log_tail: self.take_tail(fid, fattempt),
        });
        // Kept with the job, so that it is told the same after a restart.
        let job = self.record_new_job(run_id, ON_ERROR_JOB, now, args);
        let run = self.runs.get_mut(&run_id).expect("run present");
        run.row.jobs.push(job);
    }

    /// Puts a job back in the queue with the next attempt number.
    pub(super) fn requeue(&mut self, run_id: i64, job_id: i64, attempt: u32, reason: String) {
        if let Some(j) = self.runs.get_mut(&run_id).and_then(|r| r.job_mut(job_id)) {
            j.status = Status::Queued;
            j.attempt = attempt + 1;
            j.reason = Some(reason);
            j.worker = None;
            j.started_at = None;
        }
        for w in self.workers.iter_mut() {
            if w.busy.is_some_and(|(_, jid)| jid == job_id) {
                w.busy = None;
            }
        }
        self.touch(run_id);
    }

    /// Recomputes a run's status from its jobs; records and finishes it when it ended.
    pub(super) async fn settle(&mut self, run_id: i64, now: DateTime<Utc>) {
        let Some(run) = self.runs.get_mut(&run_id) else {
            return;
        };
        let status = run_status(&run.views());
        if status == run.stored_status && !status.is_terminal() {
            return;
        }
        let jobs: Vec<ReasonJob<'_>> = run
            .row
            .jobs
            .iter()
            .map(|j| ReasonJob {
                name: &j.name,
                status: j.status,
                reason: j.reason.as_deref(),
                allow_failure: run.def.allow_failure(&j.name),
                ended_seq: j.ended_seq,
            })
            .collect();
        let mut reason = decide::run_reason(status, &jobs, run.row.kind == TargetKind::Pipeline);
        if status == Status::Canceled && run.cancel_reason.is_some() {
            reason.clone_from(&run.cancel_reason);
        }
        run.row.status = status;
        run.row.reason = reason.clone();
        run.stored_status = status;
        run.stored_reason = reason.clone();
        let ended = status.is_terminal().then_some(now);
        if ended.is_some() {
            run.row.ended_at = ended;
        }
        let builds_commit = run.row.repo.is_some();
        self.persist(vec![Change::Run {
            id: run_id,
            status,
            reason,
            started_at: None,
            ended_at: ended,
            builds_commit,
        }])
        .await;
        if status.is_terminal() {
            // The end is recorded in the same transaction as its consequences (chained runs).
            let run = self.runs.remove(&run_id).expect("run present");
            self.touched
                .insert(run_id, (run.row.kind, run.row.target.clone()));
            self.ended_rows.insert(run_id, Arc::new(run.row.clone()));
            let why = run
                .row
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            tracing::info!(
                run = run_id,
                "run {run_id} of {} ended: {status}{why}",
                run.row.target
            );
            self.task_ended(&run.row).await;
            if let TargetDef::Pipeline(p) = &run.def {
                self.retain(p.name.as_str(), p.retention_count, p.retention_period, now)
                    .await;
            }
        }
    }

    /// Applies a pipeline's retention settings: older ended runs and their folders go, once
    /// this batch (with the end that makes them older) is recorded.
    async fn retain(
        &mut self,
        name: &str,
        count: Option<u32>,
        period: Option<Duration>,
        now: DateTime<Utc>,
    ) {
        if count.is_none() && period.is_none() {
            return;
        }
        let before = period
            .and_then(|p| chrono::Duration::from_std(p).ok())
            .map(|p| now - p);
        self.prunes.push(super::Prune {
            name: name.to_string(),
            count,
            before,
        });
    }
}

fn describe_exit(rec: &ExitRecord, timeout: Option<Duration>) -> (Status, Option<String>) {
    let exit = decide::Exit {
        exit_code: rec.exit_code,
        signal: rec.signal,
        timed_out: rec.timed_out,
        canceled: rec.canceled,
        error: rec.error.as_deref(),
        missing_artifacts: &rec.missing_artifacts,
    };
    decide::describe_exit(&exit, timeout)
}
