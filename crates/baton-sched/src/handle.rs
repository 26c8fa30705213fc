//! The scheduler's public face: a cheap handle that sends requests to the actor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use baton_core::config::Config;
use baton_core::run::{TargetKind, TriggerKind};
use baton_exec::Outcome;
use baton_store::{RunRepo, RunRow, Store, StoreError};

use crate::jobs::TargetDef;

/// How many batches of changes a subscriber may fall behind before it is told it lagged.
pub const EVENT_BACKLOG: usize = 1024;

/// Why a request to the scheduler failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error(
        "no task or pipeline named `{0}` (hint: `baton validate` lists what the config defines)"
    )]
    UnknownTarget(String),
    #[error("`{0}` is disabled (by its config or by an administrator)")]
    Disabled(String),
    #[error("{0}")]
    BadArgument(#[from] baton_core::args::ArgError),
    /// A rerun that cannot be made as asked (only the failed jobs of a run that has none…).
    #[error("{0}")]
    BadRerun(#[from] baton_core::decide::RerunRefusal),
    #[error("run {0} not found")]
    RunNotFound(i64),
    /// The wait list is full: the trigger is refused (recorded as `skipped` run `run`).
    #[error(
        "trigger refused: {reason} (recorded as skipped run {run}; trigger again once a run ends)"
    )]
    WaitListFull { run: i64, reason: String },
    #[error("run {id} is {status} and cannot be canceled")]
    NotCancelable { id: i64, status: String },
    #[error("run {id} is {status}, not waiting for approval: there is nothing to approve")]
    NotWaiting { id: i64, status: String },
    #[error(
        "run {0} ran on a developer's machine and was imported read-only: the server never runs it (hint: trigger the task for its commit instead)"
    )]
    Imported(i64),
    #[error("could not record the change: {0}")]
    Store(#[from] StoreError),
    /// The store refused the batch that held this request: nothing of it was recorded,
    /// acknowledged or started. The cause is in the server's log.
    #[error(
        "the database could not record this request, so nothing was done (hint: the server's log has the cause; retry once the database is writable again)"
    )]
    StoreUnavailable,
    #[error("the scheduler has stopped")]
    Stopped,
}

/// A request to start a run.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub target: String,
    /// Restrict the lookup to tasks or pipelines; `None` tries tasks first.
    pub kind: Option<TargetKind>,
    pub args: BTreeMap<String, String>,
    pub trigger: TriggerKind,
    pub ancestors: Vec<i64>,
    /// `--no-cache` ("run anyway"): jobs with `cache:` run even on a hit.
    pub no_cache: bool,
}

/// A worker as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerState {
    pub name: String,
    pub kind: &'static str,
    pub queues: Vec<String>,
    /// `idle`, `busy`, `down` or `disabled`.
    pub state: &'static str,
    pub reason: Option<String>,
    pub run_id: Option<i64>,
    pub job_id: Option<i64>,
    /// When a remote worker or agent last answered.
    pub last_heartbeat: Option<DateTime<Utc>>,
}

/// A waiting job and why it waits.
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    pub run_id: i64,
    pub job_id: i64,
    pub target: String,
    pub job: String,
    pub priority: i64,
    pub enqueued_at: DateTime<Utc>,
    pub reason: String,
    /// The queues whose workers may take it.
    pub queues: Vec<String>,
    pub waits_for: WaitsFor,
}

/// What a queued job waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitsFor {
    /// Its run may not start yet (concurrency, start delay, a wait list).
    Turn,
    /// Jobs it depends on (a pipeline's DAG) have not ended.
    Dependencies,
    /// It may start: it waits for a free worker of its queues.
    Worker,
}

impl WaitsFor {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitsFor::Turn => "its turn",
            WaitsFor::Dependencies => "dependencies",
            WaitsFor::Worker => "a worker",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub workers: Vec<WorkerState>,
    pub queue: Vec<QueueEntry>,
    /// The queues that get no new jobs.
    pub paused: baton_core::decide::Paused,
    /// When each timer fires next (a `period:`/`schedule:` task by name, a repository's
    /// `REPO/TASK@BRANCH`).
    pub next_fire: BTreeMap<String, DateTime<Utc>>,
}

/// What one batch of the scheduler changed, for live views that show each user only what
/// they may see (`SchedHandle::subscribe`).
#[derive(Debug, Clone)]
pub struct Changed {
    /// Runs whose state changed (recorded before this is sent).
    pub runs: Vec<ChangedRun>,
    /// The config in force after the batch, when it changed (a reload, an `enabled` override).
    pub config: Option<std::sync::Arc<Config>>,
}

/// A run that changed, with what access decisions need.
#[derive(Debug, Clone)]
pub struct ChangedRun {
    pub id: i64,
    pub kind: TargetKind,
    pub target: String,
    /// The run as recorded when this batch ended it; `None` while it is open (and for an
    /// imported run, which ran elsewhere).
    pub ended: Option<Arc<RunRow>>,
    /// A job of the run reached a terminal state in this batch (ended, skipped, canceled), or
    /// the run was imported with its jobs ended: what a collector of job results looks for.
    pub job_ended: bool,
}

/// A trigger for a repository's commit.
#[derive(Debug, Clone)]
pub struct RepoTriggerRequest {
    /// The run's name: `REPO/TASK` for a repository's own task, the task's name for a
    /// server-defined one.
    pub target: String,
    /// The definition to run (a repository's task or pipeline); `None`: the server config's
    /// task or pipeline named `target`.
    pub def: Option<TargetDef>,
    pub trigger: TriggerKind,
    /// The code: repository, commit, ref, event, delivery.
    pub repo: RunRepo,
    /// Queue the run `waiting` with this reason until a user approves it (a pull request from
    /// a fork); `None`: queue it as usual.
    pub hold: Option<String>,
    /// `--no-cache` ("run anyway"): jobs with `cache:` run even on a hit.
    pub no_cache: bool,
}

/// A repository's task or pipeline with `on: schedule:`, as `.baton/` defines it at the head
/// of one watched branch: the actor keeps it as timer `REPO/TASK@BRANCH`, whose due slots
/// trigger a run of `target` at that commit (event `schedule`).
#[derive(Debug, Clone)]
pub struct RepoSchedule {
    /// The run's name, `REPO/TASK`.
    pub target: String,
    /// The branch whose head the runs build.
    pub branch: String,
    /// The `on: schedule:` cron expressions (UTC; validated when `.baton/` was loaded).
    pub crons: Vec<String>,
    pub def: TargetDef,
    /// The code a fired run builds: the branch's head commit, event `schedule`.
    pub repo: RunRepo,
}

impl RepoSchedule {
    /// The timer's name (and the key of its mark in the store).
    pub fn timer(&self) -> String {
        format!("{}@{}", self.target, self.branch)
    }
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, SchedError>>;

/// Jobs of a new run that a rerun of only the failed jobs carries over from the old run: by
/// job name, the reason naming the job that ran (see `baton_core::decide::carried_over`).
pub(crate) type Carry = BTreeMap<String, String>;

/// How to rerun a run.
#[derive(Debug, Clone, Default)]
pub struct RerunOptions {
    /// Only the jobs that did not succeed (and their dependents) run again; the others are
    /// carried over.
    pub failed_only: bool,
    /// New arguments for the run (`None`: the old run's).
    pub args: Option<BTreeMap<String, String>>,
    /// `--no-cache` ("run anyway": jobs with `cache:` run even on a hit).
    pub no_cache: bool,
}

pub(crate) enum Msg {
    Trigger(TriggerRequest, Carry, Reply<RunRow>),
    /// A repository trigger, with the runs that led to it (a rerun's old run).
    TriggerRepo(Box<RepoTriggerRequest>, Vec<i64>, Carry, Reply<RunRow>),
    /// An ended run imported from a pushed result ref, recorded under new ids.
    Import(Box<(RunRow, baton_store::ImportMark)>, Reply<RunRow>),
    /// Answers `true` once the cancel is recorded, `false` when the run is not open.
    Cancel(i64, Reply<bool>),
    /// Queues a `waiting` run; answers `true` once recorded, `false` when it is not waiting.
    Approve(i64, Reply<bool>),
    Reload(Box<Config>, Reply<()>),
    /// Replaces every schedule of repository `.0` (an empty list stops them all).
    RepoSchedules(String, Vec<RepoSchedule>, Reply<()>),
    SetEnabled(TargetKind, String, Option<bool>, Reply<()>),
    /// Pauses (true) or resumes a queue, or every queue (`None`); answers what is paused.
    SetPaused(Option<String>, bool, Reply<baton_core::decide::Paused>),
    Snapshot(oneshot::Sender<Snapshot>),
    /// A cancel spawned by the actor was delivered (or not: the error says why).
    CancelSent {
        job_id: i64,
        result: Result<(), String>,
    },
    /// Makes the actor panic, to test its supervision.
    #[cfg(test)]
    Panic(String),
    JobRunning {
        job_id: i64,
        attempt: u32,
    },
    /// The job's inputs hit the cache: it ends `skipped` with `reason`, never run.
    JobCached {
        job_id: i64,
        attempt: u32,
        reason: String,
    },
    JobEnded {
        job_id: i64,
        attempt: u32,
        outcome: Outcome,
        /// The end of the job's log, read by the task that waited for the end (for an
        /// `on_error` job's `failedTaskStdout`); empty when the job succeeded.
        tail: String,
    },
}

impl Msg {
    /// A copy of a fact (something that happened to a job), kept to replay it when the
    /// batch that held it could not be recorded; requests are answered instead.
    pub(crate) fn fact(&self) -> Option<Msg> {
        match self {
            Msg::JobRunning { job_id, attempt } => Some(Msg::JobRunning {
                job_id: *job_id,
                attempt: *attempt,
            }),
            Msg::JobCached {
                job_id,
                attempt,
                reason,
            } => Some(Msg::JobCached {
                job_id: *job_id,
                attempt: *attempt,
                reason: reason.clone(),
            }),
            Msg::JobEnded {
                job_id,
                attempt,
                outcome,
                tail,
            } => Some(Msg::JobEnded {
                job_id: *job_id,
                attempt: *attempt,
                outcome: outcome.clone(),
                tail: tail.clone(),
            }),
            _ => None,
        }
    }
}

/// The jobs a rerun of only the failed jobs of `old` carries over (its DAG from the definition
/// it was queued with).
fn carry_of(old: &RunRow) -> Result<Carry, SchedError> {
    let def: Option<TargetDef> = serde_json::from_value(old.definition.clone()).ok();
    let pipeline = matches!(def, Some(TargetDef::Pipeline(_)));
    let jobs: Vec<baton_core::decide::RerunJob> = old
        .jobs
        .iter()
        .filter(|j| j.name != baton_core::decide::ON_ERROR_JOB)
        .map(|j| baton_core::decide::RerunJob {
            id: j.id,
            run_id: old.id,
            name: j.name.clone(),
            depends_on: def
                .as_ref()
                .map(|d| d.depends_on(&j.name))
                .unwrap_or_default(),
            status: j.status,
            reason: j.reason.clone(),
        })
        .collect();
    Ok(baton_core::decide::carried_over(
        old.id,
        old.status.is_terminal(),
        pipeline,
        &jobs,
    )?)
}

/// A handle to the scheduler actor. Cheap to clone.
#[derive(Clone)]
pub struct SchedHandle {
    tx: mpsc::Sender<Msg>,
    generation: watch::Receiver<u64>,
    events: broadcast::Sender<std::sync::Arc<Changed>>,
    /// The config in force, published by the actor on every reload and override.
    config: watch::Receiver<Arc<Config>>,
    /// Tells the actor (and its loops) to stop; `stopped` says when it did.
    shutdown: Arc<watch::Sender<bool>>,
    stopped: watch::Receiver<bool>,
    store: Store,
}

/// The channels a [`SchedHandle`] is made of.
pub(crate) struct HandleParts {
    pub tx: mpsc::Sender<Msg>,
    pub generation: watch::Receiver<u64>,
    pub events: broadcast::Sender<std::sync::Arc<Changed>>,
    pub config: watch::Receiver<Arc<Config>>,
    pub shutdown: Arc<watch::Sender<bool>>,
    pub stopped: watch::Receiver<bool>,
    pub store: Store,
}

impl SchedHandle {
    pub(crate) fn new(p: HandleParts) -> Self {
        SchedHandle {
            tx: p.tx,
            generation: p.generation,
            events: p.events,
            config: p.config,
            shutdown: p.shutdown,
            stopped: p.stopped,
            store: p.store,
        }
    }

    pub(crate) async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Result<T, SchedError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| SchedError::Stopped)?;
        rx.await.map_err(|_| SchedError::Stopped)?
    }

    /// Triggers a task or pipeline; the run is recorded (queued or skipped) before this returns.
    pub async fn trigger(&self, req: TriggerRequest) -> Result<RunRow, SchedError> {
        self.ask(|r| Msg::Trigger(req, Carry::new(), r)).await
    }

    /// Triggers a run for a repository's commit; recorded (queued or skipped) with its
    /// repository fields before this returns.
    pub async fn trigger_repo(&self, req: RepoTriggerRequest) -> Result<RunRow, SchedError> {
        self.ask(|r| Msg::TriggerRepo(Box::new(req), Vec::new(), Carry::new(), r))
            .await
    }

    /// Records an ended run imported from a developer's pushed result ref (`run`'s ids are
    /// given by the scheduler; `mark` makes the import happen once). It is never queued or
    /// run; it reports no commit status and sends no notification.
    pub async fn import_run(
        &self,
        run: RunRow,
        mark: baton_store::ImportMark,
    ) -> Result<RunRow, SchedError> {
        self.ask(|r| Msg::Import(Box::new((run, mark)), r)).await
    }

    /// Tells live views (`subscribe`) about imported runs once their importer wrote their logs
    /// and artifacts: the actor records an import without announcing it, since its files come
    /// after. They are listed as a run the server started.
    pub fn announce_imported(&self, runs: &[RunRow]) {
        if runs.is_empty() {
            return;
        }
        let runs = runs
            .iter()
            .map(|r| ChangedRun {
                id: r.id,
                kind: r.kind,
                target: r.target.clone(),
                // Ran elsewhere: not a run this server dispatched or timed.
                ended: None,
                job_ended: true,
            })
            .collect();
        // No subscriber is fine: nobody is watching.
        let _ = self
            .events
            .send(std::sync::Arc::new(Changed { runs, config: None }));
    }

    /// Cancels an open run; answers with the run as recorded after the cancel.
    pub async fn cancel(&self, run_id: i64) -> Result<RunRow, SchedError> {
        let open = self.ask(|r| Msg::Cancel(run_id, r)).await?;
        let row = self
            .store
            .get_run(run_id)
            .await?
            .ok_or(SchedError::RunNotFound(run_id))?;
        if !open {
            return Err(SchedError::NotCancelable {
                id: run_id,
                status: row.status.to_string(),
            });
        }
        Ok(row)
    }

    /// Approves run `run_id`, held `waiting` (a pull request from a fork): it is queued.
    /// The caller checks that the user may trigger its target.
    pub async fn approve(&self, run_id: i64) -> Result<RunRow, SchedError> {
        let waiting = self.ask(|r| Msg::Approve(run_id, r)).await?;
        let row = self
            .store
            .get_run(run_id)
            .await?
            .ok_or(SchedError::RunNotFound(run_id))?;
        if !waiting {
            return Err(SchedError::NotWaiting {
                id: run_id,
                status: row.status.to_string(),
            });
        }
        Ok(row)
    }

    /// Starts a new run of the same target with the same arguments, linked to the old one.
    pub async fn rerun(&self, run_id: i64, trigger: TriggerKind) -> Result<RunRow, SchedError> {
        self.rerun_with(run_id, trigger, false).await
    }

    /// [`SchedHandle::rerun`], with `no_cache` ("run anyway": jobs with `cache:` run even on a
    /// hit).
    pub async fn rerun_with(
        &self,
        run_id: i64,
        trigger: TriggerKind,
        no_cache: bool,
    ) -> Result<RunRow, SchedError> {
        let opts = RerunOptions {
            no_cache,
            ..Default::default()
        };
        self.rerun_opts(run_id, trigger, opts).await
    }

    /// Starts a new run of the same target, linked to the old one: with new arguments, or only
    /// the jobs that did not succeed (the others carried over, their results and artifacts
    /// referenced).
    pub async fn rerun_opts(
        &self,
        run_id: i64,
        trigger: TriggerKind,
        opts: RerunOptions,
    ) -> Result<RunRow, SchedError> {
        let old = self
            .store
            .get_run(run_id)
            .await?
            .ok_or(SchedError::RunNotFound(run_id))?;
        if old.trigger == TriggerKind::Local {
            return Err(SchedError::Imported(run_id));
        }
        let changed_args = opts.args.as_ref().filter(|a| **a != old.args);
        if changed_args.is_some() {
            if old.repo.is_some() {
                return Err(baton_core::decide::RerunRefusal::RepoArgs { run: run_id }.into());
            }
            if opts.failed_only {
                return Err(baton_core::decide::RerunRefusal::ArgsChanged { run: run_id }.into());
            }
        }
        let carry = if opts.failed_only {
            carry_of(&old)?
        } else {
            Carry::new()
        };
        if let Some(code) = old.repo.clone() {
            return self
                .rerun_repo(run_id, old, code, (trigger, opts.no_cache), carry)
                .await;
        }
        let req = TriggerRequest {
            target: old.target,
            kind: Some(old.kind),
            args: opts.args.unwrap_or(old.args),
            trigger,
            ancestors: vec![run_id],
            no_cache: opts.no_cache,
        };
        self.ask(|r| Msg::Trigger(req, carry, r)).await
    }

    /// A rerun of a repository's run: the same commit, ref and event, with the definition the
    /// old run was queued with when it was a repository's own task (the server config's task
    /// of that name otherwise).
    async fn rerun_repo(
        &self,
        run_id: i64,
        old: RunRow,
        mut code: RunRepo,
        (trigger, no_cache): (TriggerKind, bool),
        carry: Carry,
    ) -> Result<RunRow, SchedError> {
        let server_defined = match old.kind {
            TargetKind::Task => self.config.borrow().tasks.contains_key(&old.target),
            TargetKind::Pipeline => self.config.borrow().pipelines.contains_key(&old.target),
        };
        let def = if server_defined {
            None
        } else {
            let def: TargetDef = serde_json::from_value(old.definition.clone())
                .map_err(|_| SchedError::UnknownTarget(old.target.clone()))?;
            Some(def)
        };
        // Not the webhook's run: a redelivery must not find this one as its own.
        code.delivery = None;
        let req = RepoTriggerRequest {
            target: old.target,
            def,
            trigger,
            repo: code,
            // Asked for by a user who may rerun it, so approved; a fork's code still gets no
            // secrets (that follows the run's code).
            hold: None,
            no_cache,
        };
        self.ask(|r| Msg::TriggerRepo(Box::new(req), vec![run_id], carry, r))
            .await
    }

    /// Swaps in a new (already validated) config. Queued runs keep their definitions.
    pub async fn reload(&self, config: Config) -> Result<(), SchedError> {
        self.ask(|r| Msg::Reload(Box::new(config), r)).await
    }

    /// Replaces the scheduled tasks of repository `repo` with `schedules` (gathered from its
    /// `.baton/` at its watched branches' heads after a fetch): new ones start counting now,
    /// kept ones keep their marks, missing ones stop firing.
    pub async fn set_repo_schedules(
        &self,
        repo: &str,
        schedules: Vec<RepoSchedule>,
    ) -> Result<(), SchedError> {
        let repo = repo.to_owned();
        self.ask(|r| Msg::RepoSchedules(repo, schedules, r)).await
    }

    /// Enables or disables a task at runtime, over its config (`None`: follow the config
    /// again). Persisted; the scheduler's timers and triggers honour it at once.
    pub async fn set_enabled(&self, task: &str, value: Option<bool>) -> Result<(), SchedError> {
        self.set_target_enabled(TargetKind::Task, task, value).await
    }

    /// [`SchedHandle::set_enabled`] for a task or a pipeline.
    pub async fn set_target_enabled(
        &self,
        kind: TargetKind,
        name: &str,
        value: Option<bool>,
    ) -> Result<(), SchedError> {
        let name = name.to_owned();
        self.ask(|r| Msg::SetEnabled(kind, name, value, r)).await
    }

    /// Pauses (`paused`) or resumes dispatch to `queue`, or to every queue (`None`): queued
    /// jobs wait with the reason "queue paused", running ones go on. Answers what is paused.
    pub async fn set_paused(
        &self,
        queue: Option<String>,
        paused: bool,
    ) -> Result<baton_core::decide::Paused, SchedError> {
        self.ask(|r| Msg::SetPaused(queue, paused, r)).await
    }

    /// Pauses every queue, then waits until no worker is busy (every running job has ended)
    /// or `limit` passed; answers how many jobs were still running.
    pub async fn drain(&self, limit: Option<Duration>) -> Result<usize, SchedError> {
        self.set_paused(None, true).await?;
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        loop {
            let busy = self
                .snapshot()
                .await?
                .workers
                .iter()
                .filter(|w| w.state == "busy")
                .count();
            let late = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if busy == 0 || late {
                return Ok(busy);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn snapshot(&self) -> Result<Snapshot, SchedError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Snapshot(tx))
            .await
            .map_err(|_| SchedError::Stopped)?;
        rx.await.map_err(|_| SchedError::Stopped)
    }

    /// The config in force (with the runtime overrides applied): a plain read, the actor is
    /// not asked.
    pub async fn config(&self) -> Result<Arc<Config>, SchedError> {
        Ok(self.config.borrow().clone())
    }

    /// Stops the scheduler: the actor ends after its current batch, with its periodic
    /// wake-ups. Running jobs keep going under their supervisors (the next start re-attaches
    /// to them). Returns once the actor has stopped.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        let mut stopped = self.stopped.clone();
        // An error means the watcher is gone, so the actor is too.
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// Makes the actor panic (tests of its supervision).
    #[cfg(test)]
    pub(crate) async fn panic_actor(&self, why: &str) {
        let _ = self.tx.send(Msg::Panic(why.to_string())).await;
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A receiver that changes whenever any run or job changes state (for waiting and live views).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Every later batch of changes, with the runs it changed. A receiver that falls more
    /// than [`EVENT_BACKLOG`] batches behind is told so (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<std::sync::Arc<Changed>> {
        self.events.subscribe()
    }
}
