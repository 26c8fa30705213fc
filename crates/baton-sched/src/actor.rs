//! The scheduler actor: the single owner of open runs, workers and timers.
//!
//! This file holds the actor's state, its loop and message handling, and the config reloads.
//! Its work is split by event: [`batch`] (one batch of messages, then one group commit, and
//! what waits for it), [`recover`] (start-up), [`admit`] (triggers and chaining), [`timers`],
//! [`dispatch`] (which job runs where, and launching it), [`lifecycle`] (a job's start and
//! end, settling, cancel), [`workers`] and [`snapshot`]. The actor awaits no I/O but the
//! store's commit: executor cancels, pruning and log reads run spawned and report back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, watch};

use baton_core::config::Config;
use baton_core::run::{Status, TargetKind};
use baton_exec::{Executor, JobSpec, Outcome, RunningJob};
use baton_store::{Change, JobRow, NewRun, RunFolders, RunRow, Store};

use crate::Executors;
use crate::handle::{Changed, Msg, SchedError};

mod admit;
mod batch;
mod dispatch;
mod lifecycle;
mod recover;
mod repo;
mod runs;
mod snapshot;
mod timers;
mod workers;

use batch::Prune;
use lifecycle::Ended;
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

/// Where the actor tells the world: its own queue (for spawned work reporting back), the
/// generation counter and change events of live views, and the config in force.
pub(crate) struct Outlets {
    pub tx: mpsc::Sender<Msg>,
    pub generation: watch::Sender<u64>,
    pub events: broadcast::Sender<Arc<Changed>>,
    pub config: watch::Sender<Arc<Config>>,
}

/// The most messages one batch takes (the rest wait for the next batch).
const MAX_BATCH: usize = 256;

/// How soon the actor tries again to record the job events of a batch the store refused.
const RETRY_AFTER: chrono::Duration = chrono::Duration::seconds(1);

/// A job to launch: its folder, its spec (or why it cannot run), its worker and its id.
pub(crate) type Launch = (PathBuf, Result<JobSpec, String>, String, i64, u32);

pub(crate) struct Actor {
    /// The config in force: the loaded file's, with the runtime overrides applied.
    config: Arc<Config>,
    /// The config as loaded from the files, before overrides.
    file_config: Arc<Config>,
    /// Runtime `enabled` overrides of tasks (by name) and pipelines (`pipeline:NAME`) set by
    /// administrators (kept in the store).
    overrides: BTreeMap<String, bool>,
    /// Queues that get no new jobs (`baton pause`, `baton drain`); not kept across restarts.
    paused: baton_core::decide::Paused,
    store: Store,
    folders: RunFolders,
    executors: Executors,
    /// Mints repository jobs' forge credentials in their launch tasks.
    creds: Option<Arc<dyn crate::ForgeCreds>>,
    tx: mpsc::Sender<Msg>,
    generation: watch::Sender<u64>,
    config_out: watch::Sender<Arc<Config>>,
    workers: Vec<Worker>,
    /// The open runs (with the batch's undo log).
    runs: runs::Runs,
    last_start: BTreeMap<String, DateTime<Utc>>,
    /// Each task's latest run that started and ended: (run id, status). Loaded from the
    /// store at start, so chaining after a restart knows how every listed task last ended.
    latest_ends: BTreeMap<String, (i64, Status)>,
    marks: BTreeMap<String, DateTime<Utc>>,
    next_fire: BTreeMap<String, DateTime<Utc>>,
    /// Each target's gate as of the last dispatch: its candidates, and why its other runs
    /// wait.
    gates: runs::Gates,
    /// Repositories' scheduled tasks, by repository, then by timer name (`REPO/TASK@BRANCH`).
    repo_timers: BTreeMap<String, BTreeMap<String, crate::handle::RepoSchedule>>,
    ended_seq: u64,
    /// The ids the next new run and job get (the actor is the only one that adds them).
    next_run_id: i64,
    next_job_id: i64,
    changed: bool,
    /// What changed in this batch, told to live views (`SchedHandle::subscribe`) after it:
    /// runs by id, and whether the config in force changed.
    touched: BTreeMap<i64, (TargetKind, String)>,
    /// The runs of `touched` a job of which reached a terminal state in this batch.
    jobs_ended: BTreeSet<i64>,
    /// Runs this batch ended, as last recorded, told to live views with their change.
    ended_rows: BTreeMap<i64, Arc<RunRow>>,
    config_changed: bool,
    events: broadcast::Sender<Arc<Changed>>,
    /// Changes not yet written: committed as one transaction per batch (group commit),
    /// before anything that depends on them is launched or acknowledged.
    pending: Vec<Change>,
    /// Trigger replies held until the batch is recorded; they carry the run's state after
    /// the batch's dispatch (started, or queued with its reason).
    replies: Vec<(crate::handle::Reply<RunRow>, Result<RunRow, SchedError>)>,
    /// Cancel replies held until the batch is recorded.
    cancel_replies: Vec<crate::handle::Reply<bool>>,
    /// Work that waits for the batch to be recorded, then runs spawned: launches, cancels
    /// sent to executors, pruning.
    launches: Vec<Launch>,
    cancels: Vec<(i64, PathBuf, Arc<dyn Executor>)>,
    prunes: Vec<Prune>,
    /// The job events of this batch, replayed if the store refuses it.
    batch_facts: Vec<Msg>,
    /// Job events of a refused batch, handled again first in the next one.
    replay: Vec<Msg>,
    /// The log tails of the jobs whose ends this batch handles, by (job, attempt).
    tails: BTreeMap<(i64, u32), String>,
}

impl Actor {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        folders: RunFolders,
        executors: Executors,
        creds: Option<Arc<dyn crate::ForgeCreds>>,
        out: Outlets,
    ) -> Self {
        Actor {
            workers: build_workers(&config),
            file_config: config.clone(),
            overrides: BTreeMap::new(),
            paused: baton_core::decide::Paused::default(),
            config,
            store,
            folders,
            executors,
            creds,
            tx: out.tx,
            generation: out.generation,
            config_out: out.config,
            runs: Default::default(),
            last_start: BTreeMap::new(),
            latest_ends: BTreeMap::new(),
            marks: BTreeMap::new(),
            next_fire: BTreeMap::new(),
            gates: Default::default(),
            repo_timers: BTreeMap::new(),
            ended_seq: 0,
            next_run_id: 1,
            next_job_id: 1,
            changed: false,
            touched: BTreeMap::new(),
            jobs_ended: BTreeSet::new(),
            ended_rows: BTreeMap::new(),
            config_changed: false,
            events: out.events,
            pending: Vec::new(),
            replies: Vec::new(),
            cancel_replies: Vec::new(),
            launches: Vec::new(),
            cancels: Vec::new(),
            prunes: Vec::new(),
            batch_facts: Vec::new(),
            replay: Vec::new(),
            tails: BTreeMap::new(),
        }
    }

    /// The actor's loop: waits for messages, a timer or agents, then handles one batch.
    /// Ends on shutdown (or when every handle is gone).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = Utc::now();
            let wake = self.next_wake(now);
            let sleep = (wake - now).to_std().unwrap_or(Duration::ZERO);
            let agents_changed = self.executors.agents.as_ref().map(|h| h.changed());
            let mut batch = Vec::new();
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = async {
                    match &agents_changed {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => {}
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    batch.push(msg);
                    // Take whatever else is waiting as one batch (bounded).
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(msg) => batch.push(msg),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
            self.step(batch).await;
        }
    }

    async fn handle(&mut self, msg: Msg) {
        if let Some(fact) = msg.fact() {
            self.batch_facts.push(fact);
        }
        match msg {
            Msg::Trigger(req, carry, reply) => {
                let r = self.trigger(req).await;
                let r = r.map(|row| self.carry_over(row, &carry));
                self.replies.push((reply, r));
            }
            Msg::TriggerRepo(req, ancestors, carry, reply) => {
                let r = self.trigger_repo(*req, ancestors).await;
                let r = r.map(|row| self.carry_over(row, &carry));
                self.replies.push((reply, r));
            }
            Msg::Import(import, reply) => {
                let (run, mark) = *import;
                let row = self.record_import(run, mark);
                self.replies.push((reply, Ok(row)));
            }
            Msg::Cancel(id, reply) => {
                if self.cancel(id).await {
                    self.cancel_replies.push(reply);
                } else {
                    let _ = reply.send(Ok(false));
                }
            }
            Msg::Approve(id, reply) => {
                if self.approve(id).await {
                    self.cancel_replies.push(reply);
                } else {
                    let _ = reply.send(Ok(false));
                }
            }
            Msg::Reload(config, reply) => {
                self.reload(*config);
                let _ = reply.send(Ok(()));
            }
            Msg::RepoSchedules(repo, list, reply) => {
                self.set_repo_schedules(repo, list);
                let _ = reply.send(Ok(()));
            }
            Msg::SetEnabled(kind, name, value, reply) => {
                let r = self.set_enabled(kind, name, value).await;
                let _ = reply.send(r);
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Msg::SetPaused(queue, paused, reply) => {
                self.paused.set(queue.as_deref(), paused);
                self.runs.all_dirty();
                let _ = reply.send(Ok(self.paused.clone()));
            }
            Msg::CancelSent { job_id, result } => {
                if let Err(e) = result {
                    // A job still launching is signalled once it reports running.
                    tracing::debug!(job = job_id, "cancel not delivered: {e}");
                }
            }
            #[cfg(test)]
            Msg::Panic(why) => panic!("{why}"),
            Msg::JobRunning { job_id, attempt } => self.job_running(job_id, attempt).await,
            Msg::JobCached {
                job_id,
                attempt,
                reason,
            } => self.job_ended(job_id, attempt, Ended::Cached(reason)).await,
            Msg::JobEnded {
                job_id,
                attempt,
                outcome,
                tail,
            } => {
                self.tails.insert((job_id, attempt), tail);
                self.job_ended(job_id, attempt, Ended::Outcome(outcome))
                    .await;
                self.tails.remove(&(job_id, attempt));
            }
        }
    }

    /// The log tail of a job attempt whose end is being handled (read by the task that
    /// waited for the end, off the actor).
    pub(super) fn take_tail(&mut self, job_id: i64, attempt: u32) -> String {
        self.tails.remove(&(job_id, attempt)).unwrap_or_default()
    }

    /// Ends the jobs of new run `row` that a rerun of only the failed jobs carries over
    /// (`skipped`, the reason naming the job that ran), in the batch that records the run and
    /// before any dispatch; answers the run as it now is.
    fn carry_over(&mut self, row: RunRow, carry: &crate::handle::Carry) -> RunRow {
        if carry.is_empty() {
            return row;
        }
        let Some(run) = self.runs.get_mut(&row.id) else {
            return row;
        };
        let now = Utc::now();
        for j in run.row.jobs.iter_mut() {
            if let Some(why) = carry.get(&j.name).filter(|_| j.status == Status::Queued) {
                j.status = Status::Skipped;
                j.reason = Some(why.clone());
                self.pending.push(job_change(j, Some(now)));
            }
        }
        run.row.clone()
    }

    /// Gives a new run its ids (and its jobs theirs) and records it with the batch.
    pub(super) fn record_new_run(&mut self, new: NewRun) -> RunRow {
        let row = new.into_row(self.next_run_id, self.next_job_id);
        self.next_run_id += 1;
        self.next_job_id += row.jobs.len() as i64;
        self.pending.push(Change::NewRun(Box::new(row.clone())));
        row
    }

    /// Gives a job added to open run `run_id` its id and records it, with its own arguments
    /// beyond the run's, with the batch.
    pub(super) fn record_new_job(
        &mut self,
        run_id: i64,
        name: &str,
        at: DateTime<Utc>,
        args: BTreeMap<String, String>,
    ) -> JobRow {
        let job = JobRow::queued(self.next_job_id, run_id, name, at, args);
        self.next_job_id += 1;
        self.pending.push(Change::NewJob(job.clone()));
        job
    }

    /// Overrides a task's or pipeline's `enabled` (`None`: follow the config again). Recorded
    /// in the store before it takes effect; survives restarts and reloads.
    async fn set_enabled(
        &mut self,
        kind: TargetKind,
        name: String,
        value: Option<bool>,
    ) -> Result<(), SchedError> {
        let known = match kind {
            TargetKind::Task => self.file_config.tasks.contains_key(&name),
            TargetKind::Pipeline => self.file_config.pipelines.contains_key(&name),
        };
        if !known {
            return Err(SchedError::UnknownTarget(name));
        }
        let key = override_key(kind, &name);
        self.store.set_task_override(&key, value).await?;
        match value {
            Some(v) => self.overrides.insert(key, v),
            None => self.overrides.remove(&key),
        };
        self.reload((*self.file_config).clone());
        Ok(())
    }

    fn reload(&mut self, mut config: Config) {
        self.refresh_ssh_executors(&config);
        self.file_config = Arc::new(config.clone());
        for (key, enabled) in &self.overrides {
            if let Some(p) = key.strip_prefix(PIPELINE_OVERRIDE) {
                if let Some(p) = config.pipelines.get_mut(p) {
                    p.enabled = *enabled;
                }
            } else if let Some(t) = config.tasks.get_mut(key) {
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
        // A repository no longer configured schedules nothing.
        self.repo_timers
            .retain(|repo, _| config.repos.contains_key(repo));
        self.config = Arc::new(config);
        self.config_out.send_replace(self.config.clone());
        self.reset_timers(Utc::now());
        self.runs.all_dirty();
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
                Change::Job { id, status, .. } => {
                    let run = self.runs.run_of_job(*id);
                    if let Some(run) = run.filter(|_| status.is_terminal()) {
                        self.jobs_ended.insert(run);
                    }
                    run
                }
                Change::JobReady { id, .. } => self.runs.run_of_job(*id),
                Change::NewRun(run) => Some(run.id),
                Change::NewJob(job) => Some(job.run_id),
                Change::Mark { .. } | Change::Import(..) => None,
            };
            if let Some(run) = run {
                self.touch(run);
            }
        }
        self.changed = true;
        self.pending.extend(changes);
    }
}

/// Waits for a job to end, reads the end of its log when it did not succeed (for the
/// `on_error` job's arguments; off the async threads), and tells the actor.
async fn report_end(
    tx: mpsc::Sender<Msg>,
    job_id: i64,
    attempt: u32,
    handle: Box<dyn RunningJob>,
    log: PathBuf,
) {
    let outcome = handle.wait().await;
    let succeeded = matches!(&outcome, Outcome::Exited(rec)
        if rec.exit_code == Some(0) && rec.error.is_none() && !rec.timed_out && !rec.canceled);
    let tail = if succeeded {
        String::new()
    } else {
        read_tail(log).await
    };
    let _ = tx
        .send(Msg::JobEnded {
            job_id,
            attempt,
            outcome,
            tail,
        })
        .await;
}

/// The last 64 KiB of a job's log as text (empty if there is none), read on a blocking
/// thread.
pub(crate) async fn read_tail(log: PathBuf) -> String {
    tokio::task::spawn_blocking(move || log_tail(&log, baton_core::decide::FAILED_LOG_TAIL_BYTES))
        .await
        .unwrap_or_default()
}

fn log_tail(path: &std::path::Path, max: u64) -> String {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max);
    baton_exec::read_log_range(path, start, max)
        .map(|b| String::from_utf8_lossy(&b).replace('\0', ""))
        .unwrap_or_default()
}

/// How a pipeline's `enabled` override is keyed in the store (a task's is its name).
const PIPELINE_OVERRIDE: &str = "pipeline:";

fn override_key(kind: TargetKind, name: &str) -> String {
    match kind {
        TargetKind::Task => name.to_owned(),
        TargetKind::Pipeline => format!("{PIPELINE_OVERRIDE}{name}"),
    }
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
