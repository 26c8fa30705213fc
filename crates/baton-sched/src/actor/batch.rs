//! One batch of the actor: its messages, then one group commit; what waits for the commit
//! (replies, launches, cancels sent to executors, pruning) runs after it, and a commit the
//! store refuses puts the scheduling state back as the store has it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use baton_core::run::Status;
use baton_exec::Executor;
use baton_store::{RunFolders, Store};
use chrono::{DateTime, Utc};

use super::Actor;
use crate::handle::{Changed, ChangedRun, Msg, SchedError};

/// Retention of a pipeline to apply once the end of one of its runs is recorded.
pub(crate) struct Prune {
    pub name: String,
    pub count: Option<u32>,
    pub before: Option<DateTime<Utc>>,
}

/// The scheduling state before a batch, put back when the store refuses the batch (the open
/// runs it changed are in their own undo log, [`super::runs::Runs`]).
struct Saved {
    busy: Vec<(String, Option<(i64, i64)>)>,
    last_start: BTreeMap<String, DateTime<Utc>>,
    latest_ends: BTreeMap<String, (i64, Status)>,
    marks: BTreeMap<String, DateTime<Utc>>,
    ended_seq: u64,
    next_ids: (i64, i64),
}

impl Actor {
    /// One batch: its messages, due timers and dispatch, then one group commit; replies,
    /// launches and other spawned work only once that is recorded.
    pub(super) async fn step(&mut self, batch: Vec<Msg>) {
        let saved = self.save();
        for msg in std::mem::take(&mut self.replay) {
            self.handle(msg).await;
        }
        for msg in batch {
            self.handle(msg).await;
        }
        let now = Utc::now();
        self.fire_timers(now).await;
        self.pump(now).await;
        match self.commit().await {
            Ok(()) => {
                self.runs.commit();
                self.after_commit();
            }
            Err(e) => self.roll_back(saved, e),
        }
        self.notify();
    }

    /// Writes the batch's changes in one transaction.
    pub(super) async fn commit(&mut self) -> Result<(), baton_store::StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let changes = std::mem::take(&mut self.pending);
        self.store.apply(&changes).await
    }

    /// The batch is recorded: answer, launch, and spawn what waited for it.
    pub(super) fn after_commit(&mut self) {
        self.batch_facts.clear();
        if !self.launches.is_empty() && self.store.fence().is_some_and(|f| !f.valid(Utc::now())) {
            // Paused past its lease between recording these jobs' start and launching them:
            // another server may hold the lease now and run them (it finds them started but
            // never launched). Launching them too could run them twice; stopping cannot. The
            // panic ends the server (`on_actor_panic`); its restart or a standby goes on.
            panic!(
                "this server's hold on the scheduler lease ran out before it launched {} \
                 recorded jobs; stopping so that they run once, on the server that holds it",
                self.launches.len()
            );
        }
        for (dir, spec, worker, job_id, attempt) in std::mem::take(&mut self.launches) {
            self.launch(dir, spec, &worker, job_id, attempt);
        }
        for (job_id, dir, exec) in std::mem::take(&mut self.cancels) {
            let tx = self.tx.clone();
            // A cancel can take long (an SSH worker that does not answer): spawned, it
            // reports back, and the actor goes on.
            tokio::spawn(async move {
                let result = exec.cancel(&dir).await.map_err(|e| e.to_string());
                let _ = tx.send(Msg::CancelSent { job_id, result }).await;
            });
        }
        for prune in std::mem::take(&mut self.prunes) {
            tokio::spawn(prune_runs(self.store.clone(), self.folders.clone(), prune));
        }
        for (reply, r) in std::mem::take(&mut self.replies) {
            let r = r.map(|row| match self.runs.get(&row.id) {
                Some(live) => live.row.clone(),
                None => row,
            });
            let _ = reply.send(r);
        }
        for reply in std::mem::take(&mut self.cancel_replies) {
            let _ = reply.send(Ok(true));
        }
    }

    /// The store refused the batch: nothing of it is acknowledged or started, the scheduling
    /// state is put back as the store has it, and the batch's job events are kept to be
    /// handled again (they happened; they are recorded once the store takes writes again).
    fn roll_back(&mut self, saved: Saved, e: baton_store::StoreError) {
        tracing::error!(
            "cannot record the scheduler's changes: {e}; the triggers and cancels they held were refused (503 store_unavailable) and no job was started; job events are retried"
        );
        self.restore(saved);
        self.launches.clear();
        self.cancels.clear();
        self.prunes.clear();
        for (reply, r) in std::mem::take(&mut self.replies) {
            // A refusal that needed no write stays what it was; anything else was not recorded.
            let r = match r {
                Ok(_) | Err(SchedError::WaitListFull { .. }) => Err(SchedError::StoreUnavailable),
                Err(e) => Err(e),
            };
            let _ = reply.send(r);
        }
        for reply in std::mem::take(&mut self.cancel_replies) {
            let _ = reply.send(Err(SchedError::StoreUnavailable));
        }
        self.replay = std::mem::take(&mut self.batch_facts);
        self.touched.clear();
        self.jobs_ended.clear();
        self.ended_rows.clear();
        self.changed = self.config_changed;
        // The timers follow the marks put back (a reload in the batch still counts).
        self.reset_timers(Utc::now());
    }

    fn save(&mut self) -> Saved {
        self.runs.begin();
        Saved {
            busy: self
                .workers
                .iter()
                .map(|w| (w.name.clone(), w.busy))
                .collect(),
            last_start: self.last_start.clone(),
            latest_ends: self.latest_ends.clone(),
            marks: self.marks.clone(),
            ended_seq: self.ended_seq,
            next_ids: (self.next_run_id, self.next_job_id),
        }
    }

    fn restore(&mut self, saved: Saved) {
        self.runs.roll_back();
        for w in &mut self.workers {
            w.busy = saved
                .busy
                .iter()
                .find(|(name, _)| *name == w.name)
                .and_then(|(_, busy)| *busy);
        }
        self.last_start = saved.last_start;
        self.latest_ends = saved.latest_ends;
        self.marks = saved.marks;
        self.ended_seq = saved.ended_seq;
        (self.next_run_id, self.next_job_id) = saved.next_ids;
        self.pending.clear();
    }

    /// Tells waiters and live views what the batch changed.
    fn notify(&mut self) {
        if std::mem::take(&mut self.changed) {
            self.generation.send_modify(|g| *g += 1);
            let runs = std::mem::take(&mut self.touched)
                .into_iter()
                .map(|(id, (kind, target))| ChangedRun {
                    id,
                    kind,
                    target,
                    ended: self.ended_rows.remove(&id),
                    job_ended: self.jobs_ended.contains(&id),
                })
                .collect();
            self.ended_rows.clear();
            self.jobs_ended.clear();
            let config = std::mem::take(&mut self.config_changed).then(|| self.config.clone());
            // No subscriber is fine: nobody is watching.
            let _ = self.events.send(Arc::new(Changed { runs, config }));
        }
    }

    /// Sends a cancel to a job's executor once the batch is recorded (spawned: the actor
    /// never waits for it).
    pub(super) fn send_cancel(&mut self, job_id: i64, dir: PathBuf, exec: Arc<dyn Executor>) {
        self.cancels.push((job_id, dir, exec));
    }
}

/// Applies a pipeline's retention: older ended runs go from the store, then their folders
/// (on a blocking thread). Spawned once the end that triggers it is recorded.
async fn prune_runs(store: Store, folders: RunFolders, p: Prune) {
    match store.prune(&p.name, p.count, p.before).await {
        Ok((runs, jobs)) => {
            let removed = tokio::task::spawn_blocking(move || {
                for job in jobs {
                    if let Err(e) = folders.remove_job(job) {
                        tracing::warn!(job, "cannot remove the folder of a pruned job: {e}");
                    }
                }
                // Its stored report.html.
                for run in runs {
                    if let Err(e) = folders.remove_run(run) {
                        tracing::warn!(run, "cannot remove the folder of a pruned run: {e}");
                    }
                }
            })
            .await;
            if let Err(e) = removed {
                tracing::error!(pipeline = p.name, "removing pruned folders failed: {e}");
            }
        }
        Err(e) => tracing::error!(pipeline = p.name, "cannot prune old runs: {e}"),
    }
}
