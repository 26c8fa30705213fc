//! The scheduler actor: the single owner of open runs, workers and timers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, watch};

use baton_core::config::{Config, NetworkMode, render_command};
use baton_core::decide::{self, QueuedJob, WorkerView};
use baton_core::run::{Status, TargetKind, TriggerKind, run_status};
use baton_core::schedule::{self, Rule};
use baton_exec::{
    ContainerSpec, Executor, ExitRecord, Health, JobSpec, Network, Outcome, Reattached, RunningJob,
};
use baton_store::{Change, JobRow, RunFolders, RunRow, Store};

use crate::Executors;
use crate::handle::{
    Changed, ChangedRun, Msg, QueueEntry, SchedError, Snapshot, TriggerRequest, WorkerState,
};
use crate::jobenv::JobEnv;
use crate::jobs::{LiveRun, ON_ERROR_JOB, TargetDef};

mod trigger;

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

fn build_workers(config: &Config) -> Vec<Worker> {
    let mut workers: Vec<Worker> = config
        .workers
        .values()
        .map(|w| Worker {
            name: w.name.clone(),
            queues: w.queues.clone(),
            host: w.host.clone(),
            agent: false,
            busy: None,
        })
        .collect();
    if workers.is_empty() {
        let n = config
            .server
            .local_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        workers = (1..=n.max(1))
            .map(|i| Worker {
                name: format!("local-{i}"),
                queues: vec!["default".into()],
                host: None,
                agent: false,
                busy: None,
            })
            .collect();
    }
    workers
}

fn describe_exit(rec: &ExitRecord, timeout: Option<Duration>) -> (Status, Option<String>) {
    if let Some(err) = &rec.error {
        return (Status::Broken, Some(format!("broken: {err}")));
    }
    if rec.timed_out {
        let limit = timeout.map_or(String::new(), |t| format!(" after {}s", t.as_secs()));
        return (
            Status::Jammed,
            Some(format!("jammed: timed out{limit} and was killed")),
        );
    }
    if rec.canceled {
        return (Status::Canceled, Some("canceled on request".into()));
    }
    match (rec.exit_code, rec.signal) {
        (Some(0), _) => (Status::Success, None),
        (Some(code), _) => (Status::Failed, Some(format!("failed: exit code {code}"))),
        (None, Some(sig)) => (
            Status::Failed,
            Some(format!("failed: killed by signal {sig}")),
        ),
        (None, None) => (
            Status::Broken,
            Some("broken: the job ended without an exit code".into()),
        ),
    }
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
                let dir = self.folders.job_dir(job.id, job.attempt);
                if !dir.join(baton_exec::layout::SPEC_FILE).exists() {
                    // Recorded as started but never launched: it never ran, so run it now.
                    self.requeue(
                        run_id,
                        job.id,
                        job.attempt - 1,
                        "queued: the server stopped before the job was launched".into(),
                    );
                    let change = job_change(self.runs[&run_id].job(job.id).expect("job"), None);
                    self.persist(vec![change]).await;
                    continue;
                }
                let container = self.runs[&run_id].def.container(&job.name).is_some();
                let exec = match self.job_executor(container, job.worker.as_deref()) {
                    Ok(e) => e,
                    Err(why) => {
                        self.job_ended(job.id, job.attempt, Outcome::Lost(why))
                            .await;
                        continue;
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
                        self.job_ended(job.id, job.attempt, Outcome::Exited(rec))
                            .await;
                    }
                    Reattached::Vanished(why) => {
                        self.job_ended(job.id, job.attempt, Outcome::Lost(why))
                            .await;
                    }
                    Reattached::NeverStarted(why) => {
                        // It never ran: run it again, in a fresh folder (this one is claimed).
                        tracing::info!(job = job.id, "{why}");
                        self.requeue(
                            run_id,
                            job.id,
                            job.attempt,
                            "queued: the server stopped while launching the job; it never ran"
                                .into(),
                        );
                        let change = job_change(self.runs[&run_id].job(job.id).expect("job"), None);
                        self.persist(vec![change]).await;
                    }
                    Reattached::Running(handle) => {
                        let name = job.worker.clone().unwrap_or_default();
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
                        tokio::spawn(report_end(tx, job_id, attempt, handle));
                    }
                }
            }
        }
        self.reset_timers(now);
        self.pump(now).await;
        self.flush().await;
        Ok(())
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

    fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        // Remote workers come and go (health checks): look at the queue every second then.
        let cap = if self.executors.remote.is_empty() {
            now + chrono::Duration::seconds(60)
        } else {
            now + chrono::Duration::seconds(1)
        };
        let delays = self
            .runs
            .values()
            .filter_map(|r| r.row.not_before)
            .filter(|t| *t > now);
        self.next_fire
            .values()
            .copied()
            .chain(delays)
            .fold(cap, |a, b| a.min(b))
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Trigger(req, reply) => {
                let r = self.trigger(req).await;
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

    /// SSH workers that `config` adds get an executor; one whose host, work_dir or the server's
    /// SSH settings changed gets a new one if it is idle (a busy one keeps its executor until a
    /// later reload finds it idle, so its running job is followed where it runs).
    fn refresh_ssh_executors(&mut self, config: &Config) {
        let Some(factory) = self.executors.ssh.clone() else {
            return;
        };
        let old = &self.file_config;
        let ssh_settings = |c: &Config| {
            let s = &c.server;
            (
                s.ssh_key.clone(),
                s.known_hosts.clone(),
                s.callback_url.clone(),
                s.heartbeat_timeout,
            )
        };
        let server_changed = ssh_settings(old) != ssh_settings(config);
        for w in config.workers.values().filter(|w| w.host.is_some()) {
            let known = self.executors.remote.contains_key(&w.name);
            let changed = server_changed || old.workers.get(&w.name) != Some(w);
            if known && !changed {
                continue;
            }
            let busy = self
                .workers
                .iter()
                .any(|o| o.name == w.name && o.busy.is_some());
            if known && busy {
                tracing::warn!(
                    "worker {:?} changed while it runs a job: the change applies at a reload after the job ends",
                    w.name
                );
                continue;
            }
            match factory(w, &config.server) {
                Ok(exec) => {
                    self.executors.remote.insert(w.name.clone(), exec);
                }
                Err(e) => tracing::warn!("worker {:?} stays down: {e}", w.name),
            }
        }
    }

    fn rules(&self) -> Vec<(String, Rule)> {
        self.config
            .tasks
            .values()
            .filter(|t| t.enabled)
            .filter_map(|t| {
                let rule = match (&t.schedule, t.period) {
                    (Some(c), _) => Rule::Cron(c.clone()),
                    (None, Some(p)) => Rule::Every(p),
                    (None, None) => return None,
                };
                Some((t.name.clone(), rule))
            })
            .collect()
    }

    fn reset_timers(&mut self, now: DateTime<Utc>) {
        self.next_fire.clear();
        for (name, rule) in self.rules() {
            let mark = self.marks.get(&name).copied();
            let next = match mark {
                Some(m) => schedule::next_slot(&rule, m),
                None => schedule::next_slot(&rule, now),
            };
            match next {
                Ok(t) => {
                    self.next_fire.insert(name, t);
                }
                Err(e) => tracing::error!(task = name, "cannot schedule: {e}"),
            }
        }
        // A task seen for the first time starts counting now, and remembers that across
        // restarts (or a server restarting more often than the period would never fire it).
        for name in self.next_fire.keys() {
            if !self.marks.contains_key(name) {
                self.marks.insert(name.clone(), now);
                self.pending.push(Change::Mark {
                    target: name.clone(),
                    slot: now,
                });
            }
        }
    }

    async fn fire_timers(&mut self, now: DateTime<Utc>) {
        let due_names: Vec<String> = self
            .next_fire
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        if due_names.is_empty() {
            return;
        }
        let rules: BTreeMap<String, Rule> = self.rules().into_iter().collect();
        for name in due_names {
            let Some(rule) = rules.get(&name) else {
                self.next_fire.remove(&name);
                continue;
            };
            match schedule::due(rule, self.marks.get(&name).copied(), now) {
                Ok(d) => {
                    if let Err(e) = self
                        .store
                        .apply(&[Change::Mark {
                            target: name.clone(),
                            slot: d.mark,
                        }])
                        .await
                    {
                        tracing::error!(task = name, "cannot record schedule mark: {e}");
                    }
                    self.marks.insert(name.clone(), d.mark);
                    self.next_fire.insert(name.clone(), d.next);
                    if d.fire {
                        let req = TriggerRequest {
                            target: name.clone(),
                            kind: Some(TargetKind::Task),
                            args: BTreeMap::new(),
                            trigger: TriggerKind::Schedule,
                            ancestors: vec![],
                        };
                        if let Err(e) = self.trigger(req).await {
                            tracing::error!(task = name, "scheduled trigger failed: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(task = name, "cannot schedule: {e}");
                    self.next_fire.remove(&name);
                }
            }
        }
    }

    async fn rerun(&mut self, id: i64, trigger: TriggerKind) -> Result<RunRow, SchedError> {
        let old = self
            .store
            .get_run(id)
            .await?
            .ok_or(SchedError::RunNotFound(id))?;
        self.trigger(TriggerRequest {
            target: old.target,
            kind: Some(old.kind),
            args: old.args,
            trigger,
            ancestors: vec![id],
        })
        .await
    }

    async fn cancel(&mut self, id: i64) -> Result<RunRow, SchedError> {
        let now = Utc::now();
        let Some(run) = self.runs.get_mut(&id) else {
            let row = self
                .store
                .get_run(id)
                .await?
                .ok_or(SchedError::RunNotFound(id))?;
            return Err(SchedError::NotCancelable {
                id,
                status: row.status.to_string(),
            });
        };
        run.cancel_requested = true;
        let mut changes = Vec::new();
        let mut signal = Vec::new();
        for j in run.row.jobs.iter_mut() {
            match j.status {
                Status::Queued => {
                    j.status = Status::Canceled;
                    j.reason = Some("canceled on request".into());
                    changes.push(job_change(j, Some(now)));
                }
                s if s.is_active() => signal.push((
                    self.folders.job_dir(j.id, j.attempt),
                    j.worker.clone(),
                    run.def.container(&j.name).is_some(),
                )),
                _ => {}
            }
        }
        self.persist(changes).await;
        for (dir, worker, container) in signal {
            let Ok(exec) = self.job_executor(container, worker.as_deref()) else {
                continue;
            };
            // A job still launching is signalled once it reports running.
            if let Err(e) = exec.cancel(&dir).await {
                tracing::debug!("cancel of {} deferred: {e}", dir.display());
            }
        }
        self.settle(id, now).await;
        self.flush().await;
        self.store
            .get_run(id)
            .await?
            .ok_or(SchedError::RunNotFound(id))
    }

    async fn job_running(&mut self, job_id: i64, attempt: u32) {
        let Some(run) = self.runs.values_mut().find(|r| r.job(job_id).is_some()) else {
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
        let cancel = cancel
            || j.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("canceled:"));
        j.status = Status::Running;
        let change = job_change(j, None);
        let run_id = run.row.id;
        self.persist(vec![change]).await;
        if cancel {
            let dir = self.folders.job_dir(job_id, attempt);
            if let Ok(exec) = self.job_executor(container, worker.as_deref()) {
                let _ = exec.cancel(&dir).await;
            }
        }
        self.settle(run_id, Utc::now()).await;
    }

    async fn job_ended(&mut self, job_id: i64, attempt: u32, outcome: Outcome) {
        let now = Utc::now();
        let Some(run) = self.runs.values_mut().find(|r| r.job(job_id).is_some()) else {
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
        let (mut status, mut reason, exit_code) = match &outcome {
            Outcome::Exited(rec) => {
                let (s, r) = describe_exit(rec, timeout);
                (s, r, rec.exit_code)
            }
            Outcome::Lost(why) => (Status::Broken, Some(format!("broken: {why}")), None),
        };
        if cancel_requested && !status.is_terminal() {
            status = Status::Canceled;
        }
        if cancel_requested && status == Status::Failed {
            // Killed by our own SIGTERM.
            status = Status::Canceled;
            reason = Some("canceled on request".into());
        }
        if status == Status::Canceled {
            // Keep the reason the scheduler gave when it asked (fail fast, replaced, ...).
            if let Some(why) = self
                .runs
                .get(&run_id)
                .and_then(|r| r.job(job_id))
                .and_then(|j| j.reason.clone())
                .filter(|r| r.starts_with("canceled:"))
            {
                reason = Some(why);
            }
        }
        for w in self.workers.iter_mut() {
            if w.busy.is_some_and(|(_, jid)| jid == job_id) {
                w.busy = None;
            }
        }
        if status == Status::Broken && !cancel_requested && attempt <= retries {
            let why = reason.unwrap_or_default();
            self.requeue(
                run_id,
                job_id,
                attempt,
                format!("queued: retry {attempt} of {retries} after {why}"),
            );
            let run = &self.runs[&run_id];
            let j = run.job(job_id).expect("job present");
            let change = job_change(j, None);
            self.persist(vec![change]).await;
            return;
        }
        self.ended_seq += 1;
        let seq = self.ended_seq;
        let run = self.runs.get_mut(&run_id).expect("run present");
        let allow_failure = run.def.allow_failure(&run.job(job_id).expect("job").name);
        let has_on_error = matches!(&run.def, TargetDef::Pipeline(p) if p.on_error.is_some())
            && !run.row.jobs.iter().any(|j| j.name == ON_ERROR_JOB);
        let j = run.job_mut(job_id).expect("job present");
        j.status = status;
        j.reason = reason;
        j.exit_code = exit_code;
        j.ended_at = Some(now);
        j.ended_seq = Some(seq);
        let failed_job = (status.is_failure() && !allow_failure && j.name != ON_ERROR_JOB)
            .then(|| (j.name.clone(), exit_code, j.reason.clone(), j.id, j.attempt));
        let change = job_change(j, Some(now));
        self.persist(vec![change]).await;
        if let Some((name, code, why, fid, fattempt)) = failed_job
            && has_on_error
        {
            match self.store.add_job(run_id, ON_ERROR_JOB, now).await {
                Ok(job) => {
                    let run = self.runs.get_mut(&run_id).expect("run present");
                    run.row.args.insert("failedTaskName".into(), name);
                    run.row.args.insert(
                        "failedTaskExitCode".into(),
                        code.map_or(String::new(), |c| c.to_string()),
                    );
                    run.row
                        .args
                        .insert("failedTaskError".into(), why.unwrap_or_default());
                    let log = self.folders.log_path(fid, fattempt);
                    run.row
                        .args
                        .insert("failedTaskStdout".into(), log_tail(&log, 64 * 1024));
                    // One stream: stderr is in the log, so in failedTaskStdout. Set, so that an
                    // on_error script that names it does not stop on an unset variable.
                    run.row.args.entry("failedTaskStderr".into()).or_default();
                    run.row.jobs.push(job);
                }
                Err(e) => tracing::error!(run = run_id, "cannot add on_error job: {e}"),
            }
        }
        self.settle(run_id, now).await;
    }

    /// Puts a job back in the queue with the next attempt number.
    fn requeue(&mut self, run_id: i64, job_id: i64, attempt: u32, reason: String) {
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
    async fn settle(&mut self, run_id: i64, now: DateTime<Utc>) {
        let Some(run) = self.runs.get_mut(&run_id) else {
            return;
        };
        let status = run_status(&run.views());
        if status == run.stored_status && !status.is_terminal() {
            return;
        }
        let reason = if status.is_terminal() {
            run.row
                .jobs
                .iter()
                .filter(|j| j.status == status)
                .min_by_key(|j| j.ended_seq)
                .and_then(|j| j.reason.clone())
                .map(|r| {
                    if run.row.kind == TargetKind::Pipeline {
                        let job = run
                            .row
                            .jobs
                            .iter()
                            .filter(|j| j.status == status)
                            .min_by_key(|j| j.ended_seq)
                            .map(|j| j.name.clone())
                            .unwrap_or_default();
                        format!("task `{job}` {r}")
                    } else {
                        r
                    }
                })
        } else {
            None
        };
        run.row.status = status;
        run.row.reason = reason.clone();
        run.stored_status = status;
        run.stored_reason = reason.clone();
        let ended = status.is_terminal().then_some(now);
        self.persist(vec![Change::Run {
            id: run_id,
            status,
            reason,
            started_at: None,
            ended_at: ended,
        }])
        .await;
        if status.is_terminal() {
            // The end is on disk before its consequences (chained runs) exist.
            self.flush().await;
            let run = self.runs.remove(&run_id).expect("run present");
            self.task_ended(&run.row).await;
            if let TargetDef::Pipeline(p) = &run.def {
                self.retain(p.name.as_str(), p.retention_count, p.retention_period, now)
                    .await;
            }
        }
    }

    /// Applies a pipeline's retention settings: older ended runs and their folders go.
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
        match self.store.prune(name, count, before).await {
            Ok(jobs) => {
                for job in jobs {
                    if let Err(e) = self.folders.remove_job(job) {
                        tracing::warn!(job, "cannot remove the folder of a pruned job: {e}");
                    }
                }
            }
            Err(e) => tracing::error!(pipeline = name, "cannot prune old runs: {e}"),
        }
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

    /// Walks every open run: applies DAG steps, dispatches ready jobs to free workers, and
    /// records why the others wait.
    async fn pump(&mut self, now: DateTime<Utc>) {
        self.sync_agent_workers();
        // 1. Pipelines: skip or cancel what their DAG says.
        let mut changes = Vec::new();
        let mut to_signal = Vec::new();
        let mut touched = BTreeSet::new();
        for run in self.runs.values_mut() {
            let TargetDef::Pipeline(p) = &run.def else {
                continue;
            };
            let step = decide::dag_step(&run.dag(), p.continue_running_tasks_after_failure);
            for j in run.row.jobs.iter_mut() {
                if let Some(why) = step
                    .skip
                    .get(&j.name)
                    .filter(|_| j.status == Status::Queued)
                {
                    j.status = Status::Skipped;
                    j.reason = Some(why.clone());
                    changes.push(job_change(j, Some(now)));
                    touched.insert(run.row.id);
                } else if let Some(why) = step.cancel.get(&j.name) {
                    if j.status == Status::Queued {
                        j.status = Status::Canceled;
                        j.reason = Some(why.clone());
                        changes.push(job_change(j, Some(now)));
                        touched.insert(run.row.id);
                    } else if j.status.is_active() && j.reason.as_deref() != Some(why) {
                        j.reason = Some(why.clone());
                        let container = run.def.container(&j.name).is_some();
                        to_signal.push((
                            self.folders.job_dir(j.id, j.attempt),
                            j.worker.clone(),
                            container,
                        ));
                    }
                }
            }
        }
        self.persist(changes).await;
        for (dir, worker, container) in to_signal {
            if let Ok(exec) = self.job_executor(container, worker.as_deref()) {
                let _ = exec.cancel(&dir).await;
            }
        }
        for id in touched {
            self.settle(id, now).await;
        }

        // 2. Which queued jobs may start, and why the others wait.
        let mut candidates: Vec<QueuedJob> = Vec::new();
        let mut held: BTreeMap<i64, String> = BTreeMap::new();
        let mut by_target: BTreeMap<(TargetKind, &str), Vec<&LiveRun>> = BTreeMap::new();
        for run in self.runs.values() {
            by_target
                .entry((run.def.kind(), run.row.target.as_str()))
                .or_default()
                .push(run);
        }
        for ((_, target), runs) in &by_target {
            let concurrency = runs[0].def.admission().concurrency as usize;
            let active: Vec<i64> = runs
                .iter()
                .filter(|r| r.is_active())
                .map(|r| r.row.id)
                .collect();
            let mut slots = concurrency.saturating_sub(active.len());
            for run in runs {
                let queued: Vec<&JobRow> = run
                    .row
                    .jobs
                    .iter()
                    .filter(|j| j.status == Status::Queued)
                    .collect();
                if queued.is_empty() {
                    continue;
                }
                if !run.is_active() {
                    if run.not_yet(now) {
                        let until = run.row.not_before.unwrap_or(now);
                        held.insert(
                            run.row.id,
                            format!("queued: start_delay until {}", until.format("%H:%M:%S")),
                        );
                        continue;
                    }
                    if slots == 0 {
                        held.insert(
                            run.row.id,
                            format!(
                                "queued: waiting for run {} of `{target}` to finish (concurrency {concurrency})",
                                active.first().copied().unwrap_or_default()
                            ),
                        );
                        continue;
                    }
                    slots -= 1;
                }
                let ready: Option<BTreeSet<String>> = match &run.def {
                    TargetDef::Pipeline(p) => Some(
                        decide::dag_step(&run.dag(), p.continue_running_tasks_after_failure).ready,
                    ),
                    TargetDef::Task(_) => None,
                };
                let dag = run.dag();
                for j in queued {
                    let is_ready = j.name == ON_ERROR_JOB
                        || ready.as_ref().is_none_or(|r| r.contains(&j.name));
                    if is_ready {
                        candidates.push(QueuedJob {
                            job_id: j.id,
                            run_id: run.row.id,
                            queues: run.def.queues(),
                            priority: run.row.priority,
                            enqueued_at: run.row.enqueued_at,
                            container: run.def.container(&j.name).is_some(),
                        });
                    } else if let Some(d) = dag.iter().find(|d| d.name == j.name)
                        && let Some(why) = decide::dag_wait_reason(d, &dag)
                    {
                        held.entry(run.row.id).or_insert(why);
                    }
                }
            }
        }
        let views = self.worker_views();
        let assignments = decide::dispatch(&candidates, &views);
        let assigned: BTreeSet<i64> = assignments.iter().map(|(j, _)| *j).collect();
        let mut reasons: BTreeMap<i64, String> = held;
        for c in &candidates {
            if !assigned.contains(&c.job_id) {
                reasons
                    .entry(c.run_id)
                    .or_insert_with(|| decide::wait_reason(c, &views));
            }
        }

        // 3. Record the starts (durable before launch), then launch.
        let mut changes = Vec::new();
        let mut launches = Vec::new();
        for (job_id, worker) in assignments {
            let Some(run) = self.runs.values_mut().find(|r| r.job(job_id).is_some()) else {
                continue;
            };
            let run_id = run.row.id;
            if run.row.started_at.is_none() {
                run.row.started_at = Some(now);
                self.last_start.insert(run.row.target.clone(), now);
            }
            let j = run.job_mut(job_id).expect("job present");
            j.status = Status::Started;
            j.worker = Some(worker.clone());
            j.started_at = Some(now);
            j.reason = None;
            changes.push(job_change(j, None));
            let spec = self.job_spec(run_id, job_id);
            let dir = self
                .folders
                .job_dir(job_id, self.runs[&run_id].job(job_id).expect("job").attempt);
            if let Some(w) = self.workers.iter_mut().find(|w| w.name == worker) {
                w.busy = Some((run_id, job_id));
            }
            launches.push((dir, spec, worker, job_id));
        }
        // Runs whose waiting reason changed, and runs that just started.
        for run in self.runs.values_mut() {
            let status = run_status(&run.views());
            let reason = if status == Status::Queued {
                reasons.get(&run.row.id).cloned()
            } else {
                None
            };
            if status != run.stored_status || reason != run.stored_reason {
                run.row.status = status;
                run.row.reason = reason.clone();
                run.stored_status = status;
                run.stored_reason = reason.clone();
                changes.push(Change::Run {
                    id: run.row.id,
                    status,
                    reason,
                    started_at: run.row.started_at,
                    ended_at: None,
                });
            }
        }
        self.persist(changes).await;
        // Durable before launch: after a crash the job is re-attached, never run twice.
        self.flush().await;
        for (dir, spec, worker, job_id) in launches {
            self.launch(dir, spec, &worker, job_id);
        }
    }

    /// The job's spec, with its secrets resolved from the current config; the error names
    /// what the config no longer holds (the job then ends `broken` with it).
    fn job_spec(&self, run_id: i64, job_id: i64) -> Result<JobSpec, String> {
        let (spec, missing) = self.job_spec_parts(run_id, job_id);
        match missing.first() {
            None => Ok(spec),
            Some(what) => Err(format!(
                "{what} is no longer in the configuration (it was removed after the run was queued); add it back and rerun"
            )),
        }
    }

    /// The job's spec with whatever secrets the current config still holds, and what it no
    /// longer holds.
    fn job_spec_parts(&self, run_id: i64, job_id: i64) -> (JobSpec, Vec<String>) {
        let run = &self.runs[&run_id];
        let job = run.job(job_id).expect("job present");
        let container = run.def.container(&job.name).map(|c| ContainerSpec {
            image: c.image.clone(),
            build: c.build.clone(),
            cpus: c.cpus,
            memory_bytes: c.memory_bytes,
            network: match c.network {
                NetworkMode::None => Network::None,
                NetworkMode::Bridge => Network::Bridge,
            },
        });
        let mut env = JobEnv::default();
        let (script, timeout) = match &run.def {
            TargetDef::Task(t) => {
                env.add(&t.env);
                env.secrets.extend(t.secrets.iter().cloned());
                let (script, vars) = render_command(&t.command, &t.variables);
                env.hidden.extend(vars);
                (script, t.timeout)
            }
            TargetDef::Pipeline(p) => {
                env.add(&p.env);
                if job.name == ON_ERROR_JOB {
                    let on_error = p.on_error.as_ref();
                    if let Some(o) = on_error {
                        env.add(&o.env);
                    }
                    (on_error.map(|o| o.script.clone()).unwrap_or_default(), None)
                } else {
                    let t = p.tasks.get(&job.name);
                    if let Some(t) = t {
                        env.add(&t.env);
                        env.secrets.extend(t.secrets.iter().cloned());
                    }
                    (t.map(|t| t.script.clone()).unwrap_or_default(), None)
                }
            }
        };
        let (mut plain, secrets, missing) = env.resolve(&self.config, &run.row.args);
        plain.push(("BATON_JOB".into(), job.name.clone()));
        plain.push(("BATON_ATTEMPT".into(), job.attempt.to_string()));
        let spec = JobSpec {
            run_id,
            job_id,
            task: run.row.target.clone(),
            script,
            env: plain,
            timeout,
            kill_grace: self
                .config
                .server
                .kill_grace
                .unwrap_or(Duration::from_secs(5)),
            secrets,
            container,
        };
        (spec, missing)
    }

    /// Adds the slots of agents that joined (agents that left stay, shown down).
    fn sync_agent_workers(&mut self) {
        let Some(hub) = &self.executors.agents else {
            return;
        };
        for (name, queues, _) in hub.workers() {
            match self.workers.iter_mut().find(|w| w.name == name) {
                Some(w) => w.queues = queues,
                None => self.workers.push(Worker {
                    name,
                    queues,
                    host: None,
                    agent: true,
                    busy: None,
                }),
            }
        }
    }

    /// The executor for a job: containerised jobs on local workers go to the Docker executor
    /// (an error, with the reason, when this server has none).
    fn job_executor(
        &self,
        container: bool,
        worker: Option<&str>,
    ) -> Result<Arc<dyn Executor>, String> {
        // Agent slots run containers on their own engine; SSH workers get no container jobs
        // (dispatch keeps them off), so a container job reaching one was started by an older
        // version and is re-attached as it was started.
        let remote = worker.is_some_and(|w| {
            self.executors.remote.contains_key(w)
                || baton_exec::agent::AgentHub::agent_of(w).is_some()
        });
        if container && !remote {
            return self.executors.docker.clone().ok_or_else(|| {
                "no Docker engine: this server has no Docker executor for jobs with image: or build: (hint: see the server's log for why; set server.docker_host)".to_string()
            });
        }
        Ok(self.executor_for(worker))
    }

    /// The executor that runs jobs on `worker` (local workers share the local executor).
    fn executor_for(&self, worker: Option<&str>) -> Arc<dyn Executor> {
        if let (Some(hub), Some(agent)) = (
            &self.executors.agents,
            worker.and_then(baton_exec::agent::AgentHub::agent_of),
        ) {
            return Arc::new(baton_exec::agent::AgentExecutor::new(hub.clone(), agent));
        }
        worker
            .and_then(|w| self.executors.remote.get(w))
            .cloned()
            .unwrap_or_else(|| self.executors.local.clone())
    }

    fn launch(&self, dir: PathBuf, spec: Result<JobSpec, String>, worker: &str, job_id: i64) {
        let spec = match spec {
            Ok(s) => s,
            Err(why) => {
                let attempt = attempt_of(&dir);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let outcome = Outcome::Lost(why);
                    let _ = tx
                        .send(Msg::JobEnded {
                            job_id,
                            attempt,
                            outcome,
                        })
                        .await;
                });
                return;
            }
        };
        let exec = self.job_executor(spec.container.is_some(), Some(worker));
        let tx = self.tx.clone();
        let attempt = attempt_of(&dir);
        tokio::spawn(async move {
            let exec = match exec {
                Ok(e) => e,
                Err(why) => {
                    let outcome = Outcome::Lost(why);
                    let _ = tx
                        .send(Msg::JobEnded {
                            job_id,
                            attempt,
                            outcome,
                        })
                        .await;
                    return;
                }
            };
            match exec.start(&dir, &spec).await {
                Ok(handle) => {
                    let _ = tx.send(Msg::JobRunning { job_id, attempt }).await;
                    report_end(tx, job_id, attempt, handle).await;
                }
                Err(e) => {
                    let outcome = Outcome::Lost(format!("could not start the job: {e}"));
                    let _ = tx
                        .send(Msg::JobEnded {
                            job_id,
                            attempt,
                            outcome,
                        })
                        .await;
                }
            }
        });
    }

    /// Whether a worker can take work: local workers always; a remote worker or agent slot
    /// as its executor says (down without an executor in this build).
    fn worker_health(&self, w: &Worker) -> Health {
        if w.agent {
            return self.executor_for(Some(&w.name)).health();
        }
        match (&w.host, self.executors.remote.get(&w.name)) {
            (None, _) => Health::Up,
            (Some(h), None) => Health::Down(format!("no executor for the worker at {h}")),
            (Some(_), Some(e)) => e.health(),
        }
    }

    fn worker_down(&self, w: &Worker) -> Option<String> {
        self.worker_health(w).problem().map(str::to_string)
    }

    fn worker_views(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .filter(|w| self.worker_down(w).is_none())
            .map(|w| WorkerView {
                name: w.name.clone(),
                queues: w.queues.clone(),
                busy: w.busy.is_some(),
                // SSH workers run plain scripts; containers run on the server's engine (local
                // workers) or on an agent's own.
                containers: w.host.is_none(),
            })
            .collect()
    }

    fn snapshot(&self) -> Snapshot {
        let workers = self
            .workers
            .iter()
            .map(|w| {
                let health = self.worker_health(w);
                let exec = self.executor_for(Some(&w.name));
                WorkerState {
                    name: w.name.clone(),
                    kind: exec.kind(),
                    queues: w.queues.clone(),
                    state: match (&health, w.busy) {
                        (Health::Disabled(_), _) => "disabled",
                        (Health::Down(_), _) => "down",
                        (Health::Up, Some(_)) => "busy",
                        (Health::Up, None) => "idle",
                    },
                    reason: health.problem().map(str::to_string),
                    run_id: w.busy.map(|(r, _)| r),
                    job_id: w.busy.map(|(_, j)| j),
                    last_heartbeat: exec.last_heartbeat(),
                }
            })
            .collect();
        let mut queue: Vec<QueueEntry> = self
            .runs
            .values()
            .flat_map(|r| {
                r.row
                    .jobs
                    .iter()
                    .filter(|j| j.status == Status::Queued)
                    .map(move |j| QueueEntry {
                        run_id: r.row.id,
                        job_id: j.id,
                        target: r.row.target.clone(),
                        job: j.name.clone(),
                        priority: r.row.priority,
                        enqueued_at: r.row.enqueued_at,
                        reason: r
                            .row
                            .reason
                            .clone()
                            .or_else(|| j.reason.clone())
                            .unwrap_or_else(|| "queued".into()),
                    })
            })
            .collect();
        queue.sort_by_key(|q| {
            (
                q.enqueued_at.timestamp_millis() - q.priority * 1000,
                q.job_id,
            )
        });
        Snapshot { workers, queue }
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

/// The attempt number of a job folder (`jobs/<job>/<attempt>`).
fn attempt_of(dir: &std::path::Path) -> u32 {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
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

fn log_tail(path: &std::path::Path, max: u64) -> String {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max);
    baton_exec::read_log_range(path, start, max)
        .map(|b| String::from_utf8_lossy(&b).replace('\0', ""))
        .unwrap_or_default()
}
