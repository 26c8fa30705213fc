//! Dispatch: the DAG steps of open pipelines, which queued jobs start on which free worker
//! (and why the others wait), their specs and executors, and launching them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use baton_core::config::{NetworkMode, RepoDef, render_command};
use baton_core::decide::{self, QueuedJob};
use baton_core::run::{Status, TargetKind, run_status};
use baton_exec::{ContainerSpec, Executor, JobSpec, Network, Outcome};
use baton_store::Change;
use chrono::{DateTime, Utc};

use super::{Actor, Launch, job_change, report_end};
use crate::creds::{ForgeCreds, hand_over};
use crate::handle::Msg;
use crate::jobenv::JobEnv;
use crate::jobs::{LiveRun, ON_ERROR_JOB, TargetDef};

impl Actor {
    /// Applies DAG steps, dispatches ready jobs to free workers, and records why the others
    /// wait. Only the targets whose runs changed are gated again ([`super::runs::Gates`]), and
    /// only the runs of those, the candidates and the runs started are looked at for their
    /// status and reason.
    pub(super) async fn pump(&mut self, now: DateTime<Utc>) {
        self.sync_agent_workers();
        self.apply_dag_steps(now).await;
        let mut check: BTreeSet<i64> = self
            .gates
            .refresh(&mut self.runs, &self.paused, now)
            .into_iter()
            .collect();
        let candidates: Vec<QueuedJob> = self.gates.candidates().cloned().collect();
        let views = self.worker_views();
        let assignments = decide::dispatch(&candidates, &views);
        let assigned: BTreeSet<i64> = assignments.iter().map(|(j, _)| *j).collect();
        // Why a run waits: what held it before dispatch, else why its first candidate that
        // got no worker waits (only those runs' reasons are made here).
        let mut waiting: BTreeMap<i64, String> = BTreeMap::new();
        for c in &candidates {
            check.insert(c.run_id);
            if !assigned.contains(&c.job_id) && !waiting.contains_key(&c.run_id) {
                let held = self.runs.get(&c.run_id).and_then(|r| {
                    let key = (r.row.kind, r.row.target.clone());
                    self.gates.held(&key, c.run_id).cloned()
                });
                waiting.insert(
                    c.run_id,
                    held.unwrap_or_else(|| decide::wait_reason(c, &views)),
                );
            }
        }

        // Record the starts (durable before launch), then launch.
        let (mut changes, launches) = self.record_starts(assignments, now);
        check.extend(launches.iter().filter_map(|l| self.runs.run_of_job(l.3)));
        changes.extend(self.run_status_changes(&check, &waiting));
        self.persist(changes).await;
        // Launched once the batch is recorded: after a crash the job is re-attached, never
        // run twice.
        self.launches.extend(launches);
    }

    /// Pipelines: skips or cancels what their DAG says.
    async fn apply_dag_steps(&mut self, now: DateTime<Utc>) {
        let mut changes = Vec::new();
        let mut to_signal = Vec::new();
        let mut touched = BTreeSet::new();
        let pipelines: Vec<i64> = self
            .runs
            .targets()
            .filter(|(kind, _)| *kind == TargetKind::Pipeline)
            .flat_map(|key| self.runs.of_target(key).collect::<Vec<_>>())
            .collect();
        for id in pipelines {
            let Some(run) = self.runs.get(&id) else {
                continue;
            };
            let TargetDef::Pipeline(p) = &run.def else {
                continue;
            };
            let step = decide::dag_step(&run.dag(), p.continue_running_tasks_after_failure);
            // Only a run the step changes is taken for change (and gated again).
            let changes_run = run.row.jobs.iter().any(|j| {
                (j.status == Status::Queued
                    && j.ready_at.is_none()
                    && (step.ready.contains(&j.name) || j.name == ON_ERROR_JOB))
                    || (j.status == Status::Queued && step.skip.contains_key(&j.name))
                    || step.cancel.get(&j.name).is_some_and(|why| {
                        j.status == Status::Queued
                            || (j.status.is_active() && j.reason.as_deref() != Some(why))
                    })
            });
            if !changes_run {
                continue;
            }
            let run = self.runs.get_mut(&id).expect("run present");
            for j in run.row.jobs.iter_mut() {
                // From here on it waits for a worker, no longer for its dependencies.
                if j.status == Status::Queued
                    && j.ready_at.is_none()
                    && (step.ready.contains(&j.name) || j.name == ON_ERROR_JOB)
                {
                    // One with no dependencies (and the `on_error` job) was ready when queued.
                    let at = if j.name == ON_ERROR_JOB || run.def.depends_on(&j.name).is_empty() {
                        j.queued_at
                    } else {
                        now
                    };
                    j.ready_at = Some(at);
                    changes.push(Change::JobReady { id: j.id, at });
                }
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
                            j.id,
                            self.folders.job_dir(j.id, j.attempt),
                            j.worker.clone(),
                            container,
                        ));
                    }
                }
            }
        }
        self.persist(changes).await;
        for (job_id, dir, worker, container) in to_signal {
            if let Ok(exec) = self.job_executor(container, worker.as_deref()) {
                self.send_cancel(job_id, dir, exec);
            }
        }
        for id in touched {
            self.settle(id, now).await;
        }
    }

    /// Marks the assigned jobs started on their workers; returns the changes to record and
    /// the launches to make once they are recorded.
    fn record_starts(
        &mut self,
        assignments: Vec<(i64, String)>,
        now: DateTime<Utc>,
    ) -> (Vec<Change>, Vec<Launch>) {
        let mut changes = Vec::new();
        let mut launches = Vec::new();
        for (job_id, worker) in assignments {
            let Some(run) = self
                .runs
                .run_of_job(job_id)
                .and_then(|id| self.runs.get_mut(&id))
            else {
                continue;
            };
            let run_id = run.row.id;
            if run.row.started_at.is_none() {
                run.row.started_at = Some(now);
                self.last_start.insert(run.row.target.clone(), now);
                tracing::info!(run = run_id, "run {run_id} of {} started", run.row.target);
            }
            let j = run.job_mut(job_id).expect("job present");
            j.status = Status::Started;
            j.worker = Some(worker.clone());
            j.started_at = Some(now);
            j.reason = None;
            changes.push(job_change(j, None));
            let attempt = j.attempt;
            let spec = self.job_spec(run_id, job_id);
            let dir = self.folders.job_dir(job_id, attempt);
            if let Some(w) = self.workers.iter_mut().find(|w| w.name == worker) {
                w.busy = Some((run_id, job_id));
            }
            launches.push((dir, spec, worker, job_id, attempt));
        }
        (changes, launches)
    }

    /// The changes of the runs in `check` whose status or waiting reason changed (`waiting`:
    /// why candidates that got no worker wait; the gates know why the others do).
    fn run_status_changes(
        &mut self,
        check: &BTreeSet<i64>,
        waiting: &BTreeMap<i64, String>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for &id in check {
            let Some(run) = self.runs.get(&id) else {
                continue;
            };
            let status = run_status(&run.views());
            let reason = match status {
                Status::Queued => waiting.get(&id).cloned().or_else(|| {
                    let key = (run.row.kind, run.row.target.clone());
                    self.gates.held(&key, id).cloned()
                }),
                // Why it waits for approval, as recorded when it was queued.
                Status::Waiting => run.row.reason.clone(),
                _ => None,
            };
            if status != run.stored_status || reason != run.stored_reason {
                let run = self.runs.get_mut_shown(&id).expect("run present");
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
                    builds_commit: run.row.repo.is_some(),
                });
            }
        }
        changes
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
    pub(super) fn job_spec_parts(&self, run_id: i64, job_id: i64) -> (JobSpec, Vec<String>) {
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
        let artifacts = job_artifacts(&run.def, &job.name);
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
        // A pull request from a fork runs code nobody trusted yet: no secret reaches it.
        if crate::repo::withholds_secrets(&run.row) {
            env.hidden.clear();
            env.secrets.clear();
        }
        // The job's own arguments (the `on_error` job's `failedTask*`) win over the run's.
        let mut args = run.row.args.clone();
        args.extend(job.args.iter().map(|(k, v)| (k.clone(), v.clone())));
        let (mut plain, secrets, missing) = env.resolve(&self.config, &args);
        plain.extend(crate::repo::job_env(&run.row));
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
            checkout: None,
            unset_env: self.config.secret_env_vars(),
            artifacts: artifacts.paths,
            artifacts_required: artifacts.required,
            ephemeral: false,
        };
        (spec, missing)
    }

    /// The executor for a job: containerised jobs on local workers go to the Docker executor
    /// (an error, with the reason, when this server has none).
    pub(super) fn job_executor(
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
    pub(super) fn executor_for(&self, worker: Option<&str>) -> Arc<dyn Executor> {
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

    pub(super) fn launch(
        &self,
        dir: PathBuf,
        spec: Result<JobSpec, String>,
        worker: &str,
        job_id: i64,
        attempt: u32,
    ) {
        let tx = self.tx.clone();
        let mut spec = match spec {
            Ok(s) => s,
            Err(why) => {
                tokio::spawn(send_lost(tx, job_id, attempt, why));
                return;
            }
        };
        let exec = self.job_executor(spec.container.is_some(), Some(worker));
        // Repository runs start in a checkout of their commit: made here from the server's
        // mirror for local and container jobs; a remote worker (SSH, agent) fetches it from the
        // server itself, told which commit by the spec.
        let remote = self.executors.remote.contains_key(worker)
            || baton_exec::agent::AgentHub::agent_of(worker).is_some();
        let run = self.runs.get(&spec.run_id);
        let mut checkout =
            run.and_then(|run| crate::repo::checkout_plan(&self.folders, &self.config, run));
        let cache = run.and_then(|run| {
            let job = run.job(job_id)?;
            crate::cache::CacheCheck::plan(run, job, &spec, &dir, remote)
        });
        // A remote job's cache digest is made here too, from the server's own checkout of the
        // commit (made for the check, then given back to the pool).
        let mut cache_tree = None;
        if remote {
            let plan = checkout.take();
            spec.checkout = plan.as_ref().map(|plan| plan.commit().to_string());
            cache_tree = plan.filter(|_| cache.is_some());
        }
        let mint = run.and_then(|run| self.mint_plan(run));
        let start = Start {
            tx,
            log: self.folders.log_path(job_id, attempt),
            dir,
            spec,
            job_id,
            attempt,
            checkout,
            cache,
            cache_tree,
            store: self.store.clone(),
            exec,
            mint,
        };
        tokio::spawn(start.run());
    }

    /// Who mints a credential for the jobs of `run`, and for which repository: a repository
    /// run that may have secrets (not a fork's pull request), when the server mints any.
    fn mint_plan(&self, run: &LiveRun) -> Option<(Arc<dyn ForgeCreds>, RepoDef)> {
        let code = run.row.repo.as_ref()?;
        if crate::repo::withholds_secrets(&run.row) {
            return None;
        }
        let def = self.config.repos.get(&code.repo)?;
        if def.github_app.is_none() && def.job_tokens.is_none() {
            return None;
        }
        Some((self.creds.clone()?, def.clone()))
    }
}

/// A job's launch, off the actor: its checkout, its forge credential, its start; then it waits
/// for the end, tells the actor, and revokes the credential.
struct Start {
    tx: tokio::sync::mpsc::Sender<Msg>,
    dir: PathBuf,
    log: PathBuf,
    spec: JobSpec,
    job_id: i64,
    attempt: u32,
    checkout: Option<crate::repo::CheckoutPlan>,
    /// The CI cache check to make once the checkout exists (a hit skips the job).
    cache: Option<crate::cache::CacheCheck>,
    /// For a job on a remote worker with a cache check: the server's checkout of its commit,
    /// made only to read the inputs.
    cache_tree: Option<crate::repo::CheckoutPlan>,
    store: baton_store::Store,
    exec: Result<Arc<dyn Executor>, String>,
    mint: Option<(Arc<dyn ForgeCreds>, RepoDef)>,
}

impl Start {
    async fn run(mut self) {
        let (tx, job_id, attempt) = (self.tx.clone(), self.job_id, self.attempt);
        if let Some(plan) = &self.checkout
            && let Err(why) = plan.make(&self.dir).await
        {
            return send_lost(tx, job_id, attempt, why).await;
        }
        if let Some(check) = self.cache.take()
            && let Some(reason) = self.cache_check(check).await
        {
            let _ = tx
                .send(Msg::JobCached {
                    job_id,
                    attempt,
                    reason,
                })
                .await;
            if let Some(plan) = self.checkout {
                plan.give_back(&self.dir, job_id, attempt).await;
            }
            return;
        }
        let cred = match &self.mint {
            None => None,
            Some((creds, repo)) => match creds.mint(repo, job_id, attempt).await {
                Ok(cred) => cred,
                Err(why) => {
                    let why = format!("could not start the job: {why}");
                    write_log_line(&self.dir, &self.log, &why).await;
                    return send_lost(tx, job_id, attempt, why).await;
                }
            },
        };
        if let Some(c) = &cred {
            hand_over(&mut self.spec, c.as_ref());
        }
        self.start_and_wait().await;
        if let Some(c) = cred {
            c.revoke().await;
        }
    }

    /// The cache check; for a remote job, on the server's own checkout of the commit, which
    /// goes back to the pool right after (the worker makes its own).
    async fn cache_check(&mut self, check: crate::cache::CacheCheck) -> Option<String> {
        let check = match &self.exec {
            Ok(exec) => check.with_image_id(exec.as_ref()).await,
            Err(_) => check,
        };
        let Some(tree) = self.cache_tree.take() else {
            return check.check(&self.store).await;
        };
        if let Err(why) = tree.make(&self.dir).await {
            tracing::warn!(job = self.job_id, "no cache check: {why}");
            return None;
        }
        let hit = check.check(&self.store).await;
        tree.give_back(&self.dir, self.job_id, self.attempt).await;
        hit
    }

    async fn start_and_wait(self) {
        let (tx, job_id, attempt) = (self.tx, self.job_id, self.attempt);
        let exec = match self.exec {
            Ok(e) => e,
            Err(why) => return send_lost(tx, job_id, attempt, why).await,
        };
        match exec.start(&self.dir, &self.spec).await {
            Ok(handle) => {
                let _ = tx.send(Msg::JobRunning { job_id, attempt }).await;
                report_end(tx, job_id, attempt, handle, self.log).await;
                // Its end is recorded and nothing of it runs: the tree goes back to the pool.
                if let Some(plan) = self.checkout {
                    plan.give_back(&self.dir, job_id, attempt).await;
                }
            }
            Err(e) => {
                let why = format!("could not start the job: {e}");
                send_lost(tx, job_id, attempt, why).await;
            }
        }
    }
}

/// Writes why a job could not start into its log (made for it: the job never ran).
async fn write_log_line(dir: &std::path::Path, log: &std::path::Path, line: &str) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::fs::create_dir_all(dir).await;
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await;
    if let Ok(mut f) = file {
        let _ = f.write_all(format!("baton: {line}\n").as_bytes()).await;
    }
}

/// Tells the actor that job `job_id`'s attempt could not be launched: it is lost, with `why`.
async fn send_lost(tx: tokio::sync::mpsc::Sender<Msg>, job_id: i64, attempt: u32, why: String) {
    let outcome = Outcome::Lost(why);
    let _ = tx
        .send(Msg::JobEnded {
            job_id,
            attempt,
            outcome,
            tail: String::new(),
        })
        .await;
}

/// The `artifacts:` of a job's task (none for the `on_error` job).
fn job_artifacts(def: &TargetDef, job: &str) -> baton_core::config::Artifacts {
    match def {
        TargetDef::Task(t) => t.artifacts.clone(),
        TargetDef::Pipeline(_) if job == ON_ERROR_JOB => Default::default(),
        TargetDef::Pipeline(p) => p
            .tasks
            .get(job)
            .map(|t| t.artifacts.clone())
            .unwrap_or_default(),
    }
}
