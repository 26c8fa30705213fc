//! Runs a [`Plan`]'s jobs on this machine, at most `parallel` at a time: each in its own job
//! folder with a clean checkout of the code in `work/`, under the server's own supervisor
//! (`LocalExecutor`) or, for `image:`/`build:`, on the local Docker engine (`DockerExecutor`).
//! Which job may start, is skipped or is canceled is `baton_core::decide::dag::dag_step`'s
//! answer, asked again after every change, exactly as the scheduler asks it.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_core::decide::dag::{DagJob, dag_step};
use baton_core::decide::exit::{Exit, describe_exit, describe_loss};
use baton_core::decide::on_error::{
    FAILED_LOG_TAIL_BYTES, FailedTask, ON_ERROR_JOB, adds_on_error, failed_task_args,
};
use baton_core::run::Status;
use baton_exec::{DockerExecutor, Executor, JobSpec, LocalExecutor, Outcome};
use baton_git::{Checkout, GitError, Mirror, Oid};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use crate::cache::{CacheIndex, Probe};
use crate::plan::{Code, Plan, PlannedJob, base_env};
use crate::record::CacheRecord;

/// Where and how jobs run.
#[derive(Debug, Clone)]
pub struct Options {
    /// At most this many jobs at once.
    pub parallel: usize,
    /// The supervisor: `program args… <job dir>` (`baton __supervise`).
    pub supervisor: PathBuf,
    pub supervisor_args: Vec<OsString>,
    /// The Docker engine for `image:` jobs (`None`: `DOCKER_HOST` or the standard socket).
    pub docker_host: Option<String>,
    /// Earlier stored runs' cache digests (empty when no job has `cache:`).
    pub cache: Arc<CacheIndex>,
    /// `--no-cache`: jobs with `cache:` run even on a hit.
    pub no_cache: bool,
    /// Forks supervisors without an exec (`baton_exec::launcher`), when one was started.
    pub launcher: Option<Arc<baton_exec::launcher::Launcher>>,
    /// A checkout of the run's commit started before the plan was made.
    pub ahead: Ahead,
}

/// A checkout of the run's commit started while `.baton/` is read and planned (most jobs check
/// out): the first job that checks out takes it, moved into its folder by a rename; a job that
/// finds it gone, or failed, checks out as usual.
pub type Ahead = Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<Result<Checkout, GitError>>>>>;

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub status: Status,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The job folder (`log`, `out/`), if it got one.
    pub dir: Option<PathBuf>,
    /// Its CI cache digest (a task with `cache:`).
    pub cache: Option<CacheRecord>,
    /// Skipped by a cache hit: it counts as a success in the DAG.
    pub cached: bool,
}

impl JobResult {
    fn without_start(status: Status, reason: String) -> JobResult {
        JobResult {
            status,
            reason: Some(reason),
            exit_code: None,
            started_at: None,
            ended_at: None,
            dir: None,
            cache: None,
            cached: false,
        }
    }
}

/// Told about each job as it starts and ends (the terminal display).
pub trait Progress: Send + Sync {
    fn started(&self, key: &str, log: &Path);
    fn ended(&self, key: &str, result: &JobResult);
}

/// Runs `plan` (which may grow by `on_error` jobs); returns each job's result, in plan order.
pub async fn execute(
    plan: &mut Plan,
    code: &Code,
    mirror: &Mirror,
    opts: &Options,
    workdir: &Path,
    progress: &dyn Progress,
) -> Vec<JobResult> {
    let mut run = Running::new(plan, code, mirror, opts, workdir);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    loop {
        let ready = run.step(plan, progress);
        let mut ended_at_once = false;
        for idx in ready {
            if run.tasks.len() >= opts.parallel.max(1) {
                break;
            }
            ended_at_once |= run.launch(plan, idx, progress);
        }
        if run.tasks.is_empty() {
            if ended_at_once {
                continue;
            }
            break;
        }
        tokio::select! {
            Some(joined) = run.tasks.join_next() => {
                if let Ok((idx, result)) = joined {
                    run.finish(plan, idx, result, progress);
                }
            }
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                run.cancel_all(plan, progress);
            }
        }
    }
    run.close(plan, progress)
}

/// The state of a run's jobs while it runs.
struct Running {
    status: Vec<Status>,
    results: Vec<Option<JobResult>>,
    dirs: HashMap<usize, PathBuf>,
    cancel_sent: BTreeSet<usize>,
    on_error_added: BTreeSet<usize>,
    tasks: JoinSet<(usize, JobResult)>,
    local: Arc<dyn Executor>,
    docker: Option<Arc<dyn Executor>>,
    code: Code,
    mirror: Mirror,
    workdir: PathBuf,
    cache: Arc<CacheIndex>,
    no_cache: bool,
    ahead: Ahead,
}

impl Running {
    fn new(plan: &Plan, code: &Code, mirror: &Mirror, opts: &Options, workdir: &Path) -> Self {
        let local = LocalExecutor::new(opts.supervisor.clone(), opts.supervisor_args.clone())
            .with_shared_launcher(opts.launcher.clone());
        let docker = plan.jobs.iter().any(|j| j.container.is_some()).then(|| {
            Arc::new(DockerExecutor::new(opts.docker_host.as_deref())) as Arc<dyn Executor>
        });
        Running {
            status: vec![Status::Queued; plan.jobs.len()],
            results: vec![None; plan.jobs.len()],
            dirs: HashMap::new(),
            cancel_sent: BTreeSet::new(),
            on_error_added: BTreeSet::new(),
            tasks: JoinSet::new(),
            local: Arc::new(local),
            docker,
            code: code.clone(),
            mirror: mirror.clone(),
            workdir: workdir.to_path_buf(),
            cache: opts.cache.clone(),
            no_cache: opts.no_cache,
            ahead: opts.ahead.clone(),
        }
    }

    /// Asks the DAG rules of every group what to do now; applies skips and cancels; returns
    /// the jobs that may start, in plan order.
    fn step(&mut self, plan: &Plan, progress: &dyn Progress) -> Vec<usize> {
        let mut ready = Vec::new();
        for (g, group) in plan.groups.iter().enumerate() {
            let members: Vec<usize> = (0..plan.jobs.len())
                .filter(|&i| plan.jobs[i].group == g && plan.jobs[i].name != ON_ERROR_JOB)
                .collect();
            let dag: Vec<DagJob> = members
                .iter()
                .map(|&i| DagJob {
                    name: plan.jobs[i].name.clone(),
                    depends_on: plan.jobs[i].depends_on.clone(),
                    status: self.status[i],
                    allow_failure: plan.jobs[i].allow_failure,
                    cached: self.results[i].as_ref().is_some_and(|r| r.cached),
                })
                .collect();
            let step = dag_step(&dag, group.continue_after_failure);
            for &i in &members {
                let name = &plan.jobs[i].name;
                if let Some(why) = step.skip.get(name) {
                    self.end(
                        plan,
                        i,
                        JobResult::without_start(Status::Skipped, why.clone()),
                        progress,
                    );
                } else if let Some(why) = step.cancel.get(name) {
                    self.cancel(plan, i, why, progress);
                } else if step.ready.contains(name) {
                    ready.push(i);
                }
            }
        }
        // `on_error` jobs are outside the DAG: they run once added.
        ready
            .extend((0..plan.jobs.len()).filter(|&i| {
                plan.jobs[i].name == ON_ERROR_JOB && self.status[i] == Status::Queued
            }));
        ready.sort_unstable();
        ready
    }

    /// Starts job `idx`; `true` when it ended at once instead (it cannot run here).
    fn launch(&mut self, plan: &Plan, idx: usize, progress: &dyn Progress) -> bool {
        let job = &plan.jobs[idx];
        if let Some(why) = &job.server_only {
            let result = JobResult::without_start(Status::Skipped, why.clone());
            self.end(plan, idx, result, progress);
            return true;
        }
        let exec = match (&job.container, &self.docker) {
            (Some(_), Some(d)) => d.clone(),
            _ => self.local.clone(),
        };
        let dir = self.workdir.join(format!("{:02}", idx + 1));
        let spec = JobSpec {
            run_id: 0,
            job_id: idx as i64 + 1,
            task: job.key.clone(),
            script: job.script.clone(),
            env: job.env.clone(),
            timeout: job.timeout,
            kill_grace: Duration::from_secs(5),
            secrets: Default::default(),
            container: job.container.clone(),
            checkout: None,
            unset_env: Vec::new(),
            artifacts: job.artifacts.paths.clone(),
            artifacts_required: job.artifacts.required,
            // Read into the result ref, then deleted: no fsync of the log or exit record.
            ephemeral: true,
        };
        let checkout = job
            .checkout
            .then(|| (self.mirror.clone(), self.code.commit.clone()));
        let ahead = job
            .checkout
            .then(|| self.ahead.lock().expect("ahead checkout poisoned").take())
            .flatten();
        let probe = self.probe(job);
        self.status[idx] = Status::Running;
        self.dirs.insert(idx, dir.clone());
        progress.started(&job.key, &dir.join(baton_exec::layout::LOG_FILE));
        self.tasks.spawn(async move {
            let result = run_job(exec, checkout, ahead, dir, spec, probe).await;
            (idx, result)
        });
        false
    }

    /// The cache check of a job with `cache:` in a checkout (its inputs are files of it).
    fn probe(&self, job: &PlannedJob) -> Option<Probe> {
        let (def, definition) = job.cache.clone().filter(|_| job.checkout)?;
        let env = def
            .env
            .iter()
            .map(|name| {
                let v = job
                    .env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone());
                (name.clone(), v.or_else(|| std::env::var(name).ok()))
            })
            .collect();
        let image = job
            .container
            .as_ref()
            .and_then(|c| match (&c.build, &c.image) {
                (Some(build), _) => Some(format!("build:{}", build.display())),
                (None, image) => image.clone(),
            });
        Some(Probe {
            def,
            definition,
            image,
            env,
            index: self.cache.clone(),
            forced: self.no_cache,
        })
    }

    /// A job ended: record it, and add its pipeline's `on_error` job when the rules say so.
    fn finish(&mut self, plan: &mut Plan, idx: usize, result: JobResult, progress: &dyn Progress) {
        self.dirs.remove(&idx);
        let group = plan.jobs[idx].group;
        let has = plan.groups[group].on_error.is_some();
        let added = self.on_error_added.contains(&group);
        let job = &plan.jobs[idx];
        if adds_on_error(&job.name, result.status, job.allow_failure, has, added) {
            self.on_error_added.insert(group);
            self.add_on_error(plan, idx, &result);
        }
        self.end(plan, idx, result, progress);
    }

    fn add_on_error(&mut self, plan: &mut Plan, failed: usize, result: &JobResult) {
        let job = &plan.jobs[failed];
        let group = &plan.groups[job.group];
        let Some((script, env)) = group.on_error.clone() else {
            return;
        };
        let log_tail = result
            .dir
            .as_deref()
            .map(|d| tail(&d.join(baton_exec::layout::LOG_FILE)))
            .unwrap_or_default();
        let args = failed_task_args(FailedTask {
            name: &job.name,
            exit_code: result.exit_code,
            reason: result.reason.as_deref(),
            log_tail,
        });
        let key = format!("{}/{ON_ERROR_JOB}", group.target);
        let mut all = base_env(&self.code, &plan.trigger, &key);
        all.extend(env);
        all.extend(args);
        plan.jobs.push(PlannedJob {
            key,
            group: job.group,
            name: ON_ERROR_JOB.into(),
            depends_on: Vec::new(),
            allow_failure: true,
            script,
            env: all,
            timeout: None,
            container: None,
            checkout: job.checkout,
            server_only: None,
            junit: Vec::new(),
            cache: None,
            artifacts: Default::default(),
        });
        self.status.push(Status::Queued);
        self.results.push(None);
    }

    fn end(&mut self, plan: &Plan, idx: usize, result: JobResult, progress: &dyn Progress) {
        self.status[idx] = result.status;
        progress.ended(&plan.jobs[idx].key, &result);
        self.results[idx] = Some(result);
    }

    /// Cancels job `idx`: a queued one ends now, a running one is asked to stop (its end
    /// arrives like any other).
    fn cancel(&mut self, plan: &Plan, idx: usize, why: &str, progress: &dyn Progress) {
        match self.status[idx] {
            Status::Queued => {
                let result = JobResult::without_start(Status::Canceled, why.to_owned());
                self.end(plan, idx, result, progress);
            }
            Status::Running if self.cancel_sent.insert(idx) => {
                let exec = match (&plan.jobs[idx].container, &self.docker) {
                    (Some(_), Some(d)) => d.clone(),
                    _ => self.local.clone(),
                };
                if let Some(dir) = self.dirs.get(&idx).cloned() {
                    tokio::spawn(async move {
                        let _ = exec.cancel(&dir).await;
                    });
                }
            }
            _ => {}
        }
    }

    fn cancel_all(&mut self, plan: &Plan, progress: &dyn Progress) {
        for idx in 0..self.status.len() {
            self.cancel(plan, idx, "canceled: interrupted (Ctrl-C)", progress);
        }
    }

    /// The results, in plan order; a job that never became ready is skipped.
    fn close(mut self, plan: &Plan, progress: &dyn Progress) -> Vec<JobResult> {
        for idx in 0..self.status.len() {
            if self.results[idx].is_none() {
                let why = "skipped: it never became ready".to_owned();
                self.end(
                    plan,
                    idx,
                    JobResult::without_start(Status::Skipped, why),
                    progress,
                );
            }
        }
        self.results.into_iter().flatten().collect()
    }
}

/// One job: its checkout, its start, its end.
async fn run_job(
    exec: Arc<dyn Executor>,
    checkout: Option<(Mirror, Oid)>,
    ahead: Option<tokio::task::JoinHandle<Result<Checkout, GitError>>>,
    dir: PathBuf,
    spec: JobSpec,
    probe: Option<Probe>,
) -> JobResult {
    let broken = |why: String| {
        let (status, reason) = describe_loss(&why);
        JobResult {
            status,
            reason,
            exit_code: None,
            started_at: None,
            ended_at: None,
            dir: Some(dir.clone()),
            cache: None,
            cached: false,
        }
    };
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return broken(format!(
            "could not make the job folder {}: {e}",
            dir.display()
        ));
    }
    if let Some((mirror, commit)) = checkout {
        let work = dir.join("work");
        let taken = match ahead {
            Some(handle) => match handle.await {
                Ok(Ok(early)) => tokio::fs::rename(early.path(), &work).await.is_ok(),
                _ => false,
            },
            None => false,
        };
        if !taken && let Err(e) = mirror.checkout_borrowing(&commit, &work).await {
            return broken(format!("could not check out {commit}: {e}"));
        }
    }
    let (cache, hit) = match probe {
        Some(mut p) => {
            // The image by the engine's id, as the server counts it (a new image under the
            // same tag misses); by its name when the engine cannot say.
            if let Some(name) = p.image.clone() {
                p.image = Some(
                    baton_exec::image_fact(exec.as_ref(), &name)
                        .await
                        .unwrap_or(name),
                );
            }
            p.check(&dir.join("work")).await
        }
        None => (None, None),
    };
    if let Some(reason) = hit {
        return JobResult {
            status: Status::Skipped,
            reason: Some(reason),
            exit_code: None,
            started_at: None,
            ended_at: None,
            dir: Some(dir),
            cache,
            cached: true,
        };
    }
    let outcome = match exec.start(&dir, &spec).await {
        Ok(handle) => handle.wait().await,
        Err(e) => return broken(format!("could not start the job: {e}")),
    };
    match outcome {
        Outcome::Exited(rec) => {
            let exit = Exit {
                exit_code: rec.exit_code,
                signal: rec.signal,
                timed_out: rec.timed_out,
                canceled: rec.canceled,
                error: rec.error.as_deref(),
                missing_artifacts: &rec.missing_artifacts,
            };
            let (status, reason) = describe_exit(&exit, spec.timeout);
            JobResult {
                status,
                reason,
                exit_code: rec.exit_code,
                started_at: Some(rec.started_at),
                ended_at: Some(rec.ended_at),
                dir: Some(dir),
                cache,
                cached: false,
            }
        }
        Outcome::Lost(why) => broken(why),
    }
}

/// The end of a log, for `on_error`'s `failedTaskStdout`.
fn tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(FAILED_LOG_TAIL_BYTES as usize);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
