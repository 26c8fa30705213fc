//! Start-up recovery: open runs are loaded again and each active job is re-attached to, run
//! again (it never started) or ended (it finished or vanished while the server was down).

use baton_core::run::Status;
use baton_exec::{Outcome, Reattached};
use baton_store::JobRow;
use chrono::Utc;

use super::{Actor, Worker, job_change, read_tail, report_end};
use crate::handle::SchedError;
use crate::jobs::{LiveRun, TargetDef};

impl Actor {
    /// Loads open runs, re-attaches to jobs that outlived the previous server, and records the
    /// end of those that finished or vanished while it was down.
    pub async fn recover(&mut self) -> Result<(), SchedError> {
        self.overrides = self.store.task_overrides().await?;
        if !self.overrides.is_empty() {
            self.reload((*self.file_config).clone());
        }
        self.last_start = self.store.last_starts().await?;
        self.latest_ends = self.store.latest_task_ends().await?;
        self.marks = self.store.schedule_marks().await?;
        (self.next_run_id, self.next_job_id) = self.store.next_ids().await?;
        let now = Utc::now();
        self.ended_seq = now.timestamp_millis() as u64;
        for row in self.store.open_runs().await? {
            let def: TargetDef = match serde_json::from_value(row.definition.clone()) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(run = row.id, "unreadable run definition: {e}");
                    continue;
                }
            };
            let run_id = row.id;
            let active: Vec<JobRow> = row
                .jobs
                .iter()
                .filter(|j| j.status.is_active())
                .cloned()
                .collect();
            self.runs.insert(run_id, LiveRun::new(row, def));
            for job in active {
                self.recover_job(run_id, job).await;
            }
        }
        self.reset_timers(now);
        self.pump(now).await;
        self.commit().await?;
        self.after_commit();
        Ok(())
    }

    /// Re-attaches to an active job of open run `run_id`, or runs it again if it never
    /// started, or records its end if it finished or vanished while the server was down.
    async fn recover_job(&mut self, run_id: i64, job: JobRow) {
        let dir = self.folders.job_dir(job.id, job.attempt);
        let spec = dir.join(baton_exec::layout::SPEC_FILE);
        if !tokio::fs::try_exists(&spec).await.unwrap_or(false) {
            // Recorded as started but never launched: it never ran, so run it now.
            self.requeue(
                run_id,
                job.id,
                job.attempt - 1,
                "queued: the server stopped before the job was launched".into(),
            );
            let change = job_change(self.runs[&run_id].job(job.id).expect("job"), None);
            self.persist(vec![change]).await;
            return;
        }
        let container = self.runs[&run_id].def.container(&job.name).is_some();
        let exec = match self.job_executor(container, job.worker.as_deref()) {
            Ok(e) => e,
            Err(why) => {
                self.job_ended(
                    job.id,
                    job.attempt,
                    super::Ended::Outcome(Outcome::Lost(why)),
                )
                .await;
                return;
            }
        };
        // The secrets to mask come from the current config (the job folder never
        // holds them); one removed meanwhile can no longer be masked by the server.
        let (spec, missing) = self.job_spec_parts(run_id, job.id);
        if !missing.is_empty() {
            tracing::warn!(
                job = job.id,
                "re-attaching: not in the configuration any more, so not masked by the server: {}",
                missing.join(", ")
            );
        }
        let secrets = spec.secrets;
        match exec.reattach(&dir, &secrets).await {
            Reattached::Finished(rec) => {
                let log = self.folders.log_path(job.id, job.attempt);
                let tail = read_tail(log).await;
                self.tails.insert((job.id, job.attempt), tail);
                self.job_ended(
                    job.id,
                    job.attempt,
                    super::Ended::Outcome(Outcome::Exited(rec)),
                )
                .await;
                self.tails.remove(&(job.id, job.attempt));
            }
            Reattached::Vanished(why) => {
                self.job_ended(
                    job.id,
                    job.attempt,
                    super::Ended::Outcome(Outcome::Lost(why)),
                )
                .await;
            }
            Reattached::NeverStarted(why) => {
                // It never ran: run it again, in a fresh folder (this one is claimed).
                tracing::info!(job = job.id, "{why}");
                self.requeue(
                    run_id,
                    job.id,
                    job.attempt,
                    "queued: the server stopped while launching the job; it never ran".into(),
                );
                let change = job_change(self.runs[&run_id].job(job.id).expect("job"), None);
                self.persist(vec![change]).await;
            }
            Reattached::Running(handle) => {
                let name = job.worker.clone().unwrap_or_default();
                tracing::info!(
                    run = run_id,
                    job = job.id,
                    "re-attached to job {} of run {run_id}, still running on {name}",
                    job.name
                );
                match self.workers.iter_mut().find(|w| w.name == name) {
                    Some(w) => w.busy = Some((run_id, job.id)),
                    None if baton_exec::agent::AgentHub::agent_of(&name).is_some() => {
                        // The agent has not polled since the restart; keep its slot busy.
                        self.workers.push(Worker {
                            name,
                            queues: Vec::new(),
                            host: None,
                            agent: true,
                            busy: Some((run_id, job.id)),
                        });
                    }
                    None => {}
                }
                let tx = self.tx.clone();
                let (job_id, attempt) = (job.id, job.attempt);
                if job.status == Status::Started {
                    // Launched before the crash, but its start was never confirmed.
                    self.job_running(job_id, attempt).await;
                }
                let log = self.folders.log_path(job_id, attempt);
                tokio::spawn(report_end(tx, job_id, attempt, handle, log));
            }
        }
    }
}
