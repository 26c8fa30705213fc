//! The scheduler actor: the single owner of open runs, workers and timers.
//!
//! This file holds the actor's state, its loop (one batch of messages, then timers, dispatch
//! and one group commit) and the config reloads. Its work is split by event: [`recover`]
//! (start-up), [`admit`] (triggers and chaining), [`timers`], [`dispatch`] (which job runs
//! where, and launching it), [`lifecycle`] (a job's start and end, settling, cancel, rerun),
//! [`workers`] and [`snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, watch};

use baton_core::config::Config;
use baton_core::run::{Status, TargetKind};
use baton_exec::RunningJob;
use baton_store::{Change, JobRow, RunFolders, RunRow, Store};

use crate::Executors;
use crate::handle::{Changed, ChangedRun, Msg, SchedError};
use crate::jobs::LiveRun;

mod admit;
mod dispatch;
mod lifecycle;
mod recover;
mod repo;
mod snapshot;
mod timers;
mod workers;

use workers::build_workers;

struct Worker {
    name: String,
    queues: Vec<String>,
    /// `Some(host)` for SSH workers, which the executors issue brings; until then they are down.
    host: Option<String>,
    /// A slot of a pull-mode agent (`agent:<name>:<slot>`), known from the agent hub.
    agent: bool,
    busy: Option<(i64, i64)>,
}

pub(crate) struct Actor {
    /// The config in force: the loaded file's, with the runtime overrides applied.
    config: Arc<Config>,
    /// The config as loaded from the files, before overrides.
    file_config: Arc<Config>,
    /// Runtime `enabled` overrides of tasks set by administrators (kept in the store).
    overrides: BTreeMap<String, bool>,
    store: Store,
    folders: RunFolders,
    executors: Executors,
    tx: mpsc::Sender<Msg>,
    generation: watch::Sender<u64>,
    workers: Vec<Worker>,
    runs: BTreeMap<i64, LiveRun>,
    last_start: BTreeMap<String, DateTime<Utc>>,
    /// Each task's latest run that started and ended: (run id, status). Loaded from the
    /// store at start, so chaining after a restart knows how every listed task last ended.
    latest_ends: BTreeMap<String, (i64, Status)>,
    marks: BTreeMap<String, DateTime<Utc>>,
    next_fire: BTreeMap<String, DateTime<Utc>>,
    ended_seq: u64,
    changed: bool,
    /// What changed in this batch, told to live views (`SchedHandle::subscribe`) after it:
    /// runs by id, and whether the config in force changed.
    touched: BTreeMap<i64, (TargetKind, String)>,
    config_changed: bool,
    events: broadcast::Sender<Arc<Changed>>,
    /// Changes not yet written: flushed as one transaction per batch (group commit), and
    /// always before anything that depends on them is launched or acknowledged.
    pending: Vec<Change>,
    /// Trigger replies held until the batch's dispatch ran, so they carry the run's state
    /// after it (started, or queued with its reason).
    replies: Vec<(crate::handle::Reply<RunRow>, Result<RunRow, SchedError>)>,
}

impl Actor {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        folders: RunFolders,
        executors: Executors,
        tx: mpsc::Sender<Msg>,
        generation: watch::Sender<u64>,
        events: broadcast::Sender<Arc<Changed>>,
    ) -> Self {
        Actor {
            workers: build_workers(&config),
            file_config: config.clone(),
            overrides: BTreeMap::new(),
            config,
            store,
            folders,
            executors,
            tx,
            generation,
            runs: BTreeMap::new(),
            last_start: BTreeMap::new(),
            latest_ends: BTreeMap::new(),
            marks: BTreeMap::new(),
            next_fire: BTreeMap::new(),
            ended_seq: 0,
            changed: false,
            touched: BTreeMap::new(),
            config_changed: false,
            events,
            pending: Vec::new(),
            replies: Vec::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            let now = Utc::now();
            let wake = self.next_wake(now);
            let sleep = (wake - now).to_std().unwrap_or(Duration::ZERO);
            let agents_changed = self.executors.agents.as_ref().map(|h| h.changed());
            tokio::select! {
                _ = async {
                    match &agents_changed {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => {}
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    self.handle(msg).await;
                    // Take whatever else is waiting as one batch.
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(msg).await;
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
            let now = Utc::now();
            self.fire_timers(now).await;
            self.pump(now).await;
            self.flush().await;
            for (reply, r) in std::mem::take(&mut self.replies) {
                let r = r.map(|row| match self.runs.get(&row.id) {
                    Some(live) => live.row.clone(),
                    None => row,
                });
                let _ = reply.send(r);
            }
            if std::mem::take(&mut self.changed) {
                self.generation.send_modify(|g| *g += 1);
                let runs = std::mem::take(&mut self.touched)
                    .into_iter()
                    .map(|(id, (kind, target))| ChangedRun { id, kind, target })
                    .collect();
                let config = std::mem::take(&mut self.config_changed).then(|| self.config.clone());
                // No subscriber is fine: nobody is watching.
                let _ = self.events.send(Arc::new(Changed { runs, config }));
            }
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Trigger(req, reply) => {
                let r = self.trigger(req).await;
                self.replies.push((reply, r));
            }
            Msg::TriggerRepo(req, reply) => {
                let r = self.trigger_repo(*req).await;
                self.replies.push((reply, r));
            }
            Msg::Cancel(id, reply) => {
                let r = self.cancel(id).await;
                let _ = reply.send(r);
            }
            Msg::Rerun(id, trigger, reply) => {
                let r = self.rerun(id, trigger).await;
                let _ = reply.send(r);
            }
            Msg::Reload(config, reply) => {
                self.reload(*config);
                let _ = reply.send(Ok(()));
            }
            Msg::SetEnabled(task, value, reply) => {
                let r = self.set_enabled(task, value).await;
                let _ = reply.send(r);
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Msg::Config(reply) => {
                let _ = reply.send(self.config.clone());
            }
            Msg::JobRunning { job_id, attempt } => self.job_running(job_id, attempt).await,
            Msg::JobEnded {
                job_id,
                attempt,
                outcome,
            } => self.job_ended(job_id, attempt, outcome).await,
        }
    }

    /// Overrides a task's `enabled` (`None`: follow the config again). Recorded in the store
    /// before it takes effect; survives restarts and reloads.
    async fn set_enabled(&mut self, task: String, value: Option<bool>) -> Result<(), SchedError> {
        if !self.file_config.tasks.contains_key(&task) {
            return Err(SchedError::UnknownTarget(task));
        }
        self.store.set_task_override(&task, value).await?;
        match value {
            Some(v) => self.overrides.insert(task, v),
            None => self.overrides.remove(&task),
        };
        self.reload((*self.file_config).clone());
        Ok(())
    }

    fn reload(&mut self, mut config: Config) {
        self.refresh_ssh_executors(&config);
        self.file_config = Arc::new(config.clone());
        for (task, enabled) in &self.overrides {
            if let Some(t) = config.tasks.get_mut(task) {
                t.enabled = *enabled;
            }
        }
        let mut workers = build_workers(&config);
        // Agent slots come from the agents, not the config: they stay.
        workers.extend(self.workers.drain(..).filter(|w| w.agent));
        for w in &mut workers {
            w.busy = self
                .workers
                .iter()
                .find(|o| o.name == w.name)
                .and_then(|o| o.busy);
        }
        self.workers = workers;
        self.config = Arc::new(config);
        self.reset_timers(Utc::now());
        self.changed = true;
        self.config_changed = true;
    }

    /// Notes that open run `run_id` changed (for live views).
    fn touch(&mut self, run_id: i64) {
        if let Some(r) = self.runs.get(&run_id) {
            self.touched
                .insert(run_id, (r.row.kind, r.row.target.clone()));
        }
        self.changed = true;
    }

    async fn persist(&mut self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            let run = match c {
                Change::Run { id, .. } => Some(*id),
                Change::Job { id, .. } => self
                    .runs
                    .values()
                    .find(|r| r.row.jobs.iter().any(|j| j.id == *id))
                    .map(|r| r.row.id),
                Change::Mark { .. } => None,
            };
            if let Some(run) = run {
                self.touch(run);
            }
        }
        self.changed = true;
        self.pending.extend(changes);
    }

    /// Writes pending changes in one transaction.
    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.pending);
        if let Err(e) = self.store.apply(&changes).await {
            tracing::error!("cannot record state changes: {e}");
        }
    }
}

/// Waits for a job to end and tells the actor.
async fn report_end(tx: mpsc::Sender<Msg>, job_id: i64, attempt: u32, handle: Box<dyn RunningJob>) {
    let outcome = handle.wait().await;
    let _ = tx
        .send(Msg::JobEnded {
            job_id,
            attempt,
            outcome,
        })
        .await;
}

fn job_change(j: &JobRow, ended_at: Option<DateTime<Utc>>) -> Change {
    Change::Job {
        id: j.id,
        status: j.status,
        reason: j.reason.clone(),
        worker: j.worker.clone(),
        exit_code: j.exit_code,
        started_at: j.started_at,
        ended_at,
        ended_seq: j.ended_seq,
        attempt: Some(j.attempt),
    }
}
