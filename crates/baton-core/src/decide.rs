//! Scheduling decisions as pure functions: admission of a trigger (skip or supersede, debounce,
//! wait-list append/replace/refuse, partitioned replace, start_delay), which tasks a success
//! chains to, which queued job goes to which free worker
//! (priority, then age), which pipeline jobs are ready (DAG order), and why a run waits.
//!
//! The scheduler actor gathers the facts, calls these, and applies the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{PipelineDef, QueueStrategy, TaskDef, WaitStrategy};
use crate::run::Status;

/// How a task or pipeline admits new runs while others are queued or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// How many runs may be active at once.
    pub concurrency: u32,
    pub queue: QueuePolicy,
    /// Triggers within this window after the last start are skipped.
    pub debounce: Option<Duration>,
    /// A queued run waits at least this long before it may start.
    pub start_delay: Option<Duration>,
}

/// What happens to a trigger when `concurrency` runs are already queued or active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// py4CI default: no wait list. A trigger supersedes a run that has not started yet (it
    /// ends `skipped`); while every slot runs, the trigger is skipped.
    Skip,
    /// Wait in line; `None` is unbounded. When full the trigger is refused.
    Append { limit: Option<u32> },
    /// Wait in line; when full the newest waiting run is replaced.
    Replace { limit: Option<u32> },
    /// One wait list per partition (a trigger argument), each of `limit` runs; when full the
    /// partition's newest waiting run is replaced.
    PartitionedReplace { limit: u32 },
}

impl Admission {
    pub fn for_task(t: &TaskDef) -> Self {
        let queue = match t.wait_list {
            None => QueuePolicy::Skip,
            Some(w) => match w.strategy {
                WaitStrategy::Append => QueuePolicy::Append {
                    limit: Some(w.size),
                },
                WaitStrategy::Replace => QueuePolicy::Replace {
                    limit: Some(w.size),
                },
            },
        };
        Admission {
            concurrency: t.concurrency.max(1),
            queue,
            debounce: t.debounce,
            start_delay: None,
        }
    }

    pub fn for_pipeline(p: &PipelineDef) -> Self {
        let queue = match p.queue_strategy {
            QueueStrategy::Append => QueuePolicy::Append {
                limit: p.queue_limit,
            },
            QueueStrategy::Replace => QueuePolicy::Replace {
                limit: p.queue_limit,
            },
            QueueStrategy::PartitionedReplace { partition_limit } => {
                QueuePolicy::PartitionedReplace {
                    limit: partition_limit,
                }
            }
        };
        Admission {
            concurrency: p.concurrency.max(1),
            queue,
            debounce: None,
            start_delay: p.start_delay,
        }
    }
}

/// A run of the same task or pipeline that has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRun {
    pub id: i64,
    /// Started (holds or held a worker) rather than waiting.
    pub active: bool,
    pub partition: Option<String>,
    /// It may not start before this (`start_delay`).
    pub not_before: Option<DateTime<Utc>>,
}

/// A waiting run that a new one takes the place of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Displace {
    /// prunner's `replace`: the waiting run becomes `canceled` ("canceled: replaced by run N").
    Replace(i64),
    /// py4CI: a run still queued (not started) becomes `skipped` ("skipped: superseded by run
    /// N").
    Supersede(i64),
}

/// The answer to a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Queue the run; it may start from `not_before` on.
    Queue {
        not_before: Option<DateTime<Utc>>,
        /// A waiting run this one takes the place of.
        displaces: Option<Displace>,
    },
    /// Record the run as `skipped` with this reason.
    Skip { reason: String },
    /// Refuse the trigger: the wait list is full. The reason says so and gives the limit; the
    /// caller tells whoever triggered that it was refused (and may keep a `skipped` record).
    Refuse { reason: String },
}

/// Decides what a trigger of `name` becomes, given the runs of it that have not ended (oldest
/// first) and its last start.
///
/// The wait list (prunner's) is every run that waits out its `start_delay`, plus the waiting
/// runs beyond the free concurrency slots: a waiting run without a delay takes a free slot
/// (oldest first) and starts as soon as a worker is free, like a run prunner started at once.
/// A new run needs the wait list when no slot is free or when it has a `start_delay` itself.
pub fn admit(
    name: &str,
    policy: &Admission,
    open: &[OpenRun],
    last_start: Option<DateTime<Utc>>,
    partition: Option<&str>,
    now: DateTime<Utc>,
) -> Admit {
    if let (Some(window), Some(last)) = (policy.debounce, last_start) {
        let until = last + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        if now < until {
            return Admit::Skip {
                reason: format!(
                    "skipped: `{name}` started at {} and debounces triggers until {}",
                    last.format("%H:%M:%S"),
                    until.format("%H:%M:%S")
                ),
            };
        }
    }
    let not_before = policy
        .start_delay
        .filter(|d| !d.is_zero())
        .map(|d| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
    let queue = |displaces| Admit::Queue {
        not_before,
        displaces,
    };
    let capacity = policy.concurrency as usize;
    let busy_reason = || match open.iter().find(|r| r.active) {
        Some(r) => format!("a run of `{name}` is already running (run {})", r.id),
        None => format!(
            "a run of `{name}` is already queued (run {})",
            open.first().map_or(0, |r| r.id)
        ),
    };
    let active = open.iter().filter(|r| r.active).count();
    let mut free = capacity.saturating_sub(active);
    let mut wait_list: Vec<&OpenRun> = Vec::new();
    for r in open.iter().filter(|r| !r.active) {
        let delayed = r.not_before.is_some_and(|t| t > now);
        if !delayed && free > 0 {
            free -= 1;
        } else {
            wait_list.push(r);
        }
    }
    let needs_wait_list = free == 0 || not_before.is_some();
    let full = |limit: u32, waiting: usize| {
        let what = if limit == 0 {
            format!("`{name}` keeps no wait list (limit 0)")
        } else {
            format!("the wait list of `{name}` is full ({waiting} of {limit} waiting)")
        };
        Admit::Refuse {
            reason: format!("{what}; {}", busy_reason()),
        }
    };
    match policy.queue {
        // No wait list: every open run holds a slot. py4CI: a new trigger supersedes a run
        // that has not started yet; while every slot runs, it is skipped.
        QueuePolicy::Skip if open.len() < capacity => queue(None),
        QueuePolicy::Skip => match open.iter().rev().find(|r| !r.active) {
            Some(queued) => queue(Some(Displace::Supersede(queued.id))),
            None => Admit::Skip {
                reason: format!("skipped: {}", busy_reason()),
            },
        },
        _ if !needs_wait_list => queue(None),
        QueuePolicy::Append { limit } => match limit {
            Some(l) if wait_list.len() >= l as usize => full(l, wait_list.len()),
            _ => queue(None),
        },
        QueuePolicy::Replace { limit } => match limit {
            Some(0) => full(0, 0),
            Some(l) if wait_list.len() >= l as usize => match wait_list.last() {
                Some(newest) => queue(Some(Displace::Replace(newest.id))),
                None => full(l, 0),
            },
            _ => queue(None),
        },
        QueuePolicy::PartitionedReplace { limit } => {
            let in_partition: Vec<&&OpenRun> = wait_list
                .iter()
                .filter(|r| r.partition.as_deref() == partition)
                .collect();
            if in_partition.len() < limit as usize {
                queue(None)
            } else {
                match in_partition.last() {
                    Some(newest) => queue(Some(Displace::Replace(newest.id))),
                    None => full(limit, 0),
                }
            }
        }
    }
}

/// The tasks to trigger when a run of `parent` succeeds: every enabled task whose
/// `triggered_by` names it and whose other listed tasks all succeeded in their latest run (py4CI
/// waits for all of them), in name order. `latest` holds each task's latest finished status;
/// `parent` counts as a success.
pub fn chain_targets(
    tasks: &BTreeMap<String, TaskDef>,
    parent: &str,
    latest: &BTreeMap<String, Status>,
) -> Vec<String> {
    tasks
        .values()
        .filter(|t| t.enabled && t.after_tasks.iter().any(|a| a == parent))
        .filter(|t| {
            t.after_tasks
                .iter()
                .all(|a| a == parent || latest.get(a) == Some(&Status::Success))
        })
        .map(|t| t.name.clone())
        .collect()
}

/// A job waiting for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub job_id: i64,
    pub run_id: i64,
    pub queues: Vec<String>,
    pub priority: i64,
    pub enqueued_at: DateTime<Utc>,
    /// The job runs in a container (`image:`/`build:`): only workers that run containers
    /// take it.
    pub container: bool,
}

impl QueuedJob {
    /// py4CI: a point of priority is worth a second of queue age. Lower goes first.
    fn order_key(&self) -> (i64, i64) {
        (
            self.enqueued_at.timestamp_millis() - self.priority.saturating_mul(1000),
            self.job_id,
        )
    }
}

/// A worker and the queues it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    pub name: String,
    pub queues: Vec<String>,
    pub busy: bool,
    /// Runs container jobs (local workers through the server's engine, agents through
    /// theirs); SSH workers run plain scripts only.
    pub containers: bool,
}

impl WorkerView {
    fn takes(&self, job: &QueuedJob) -> bool {
        (self.containers || !job.container) && self.queues.iter().any(|q| job.queues.contains(q))
    }
}

/// Matches dispatchable jobs to free workers: highest priority first, then oldest; each job goes
/// to the first free worker serving one of its queues. Returns `(job_id, worker name)` pairs.
pub fn dispatch(jobs: &[QueuedJob], workers: &[WorkerView]) -> Vec<(i64, String)> {
    let mut order: Vec<&QueuedJob> = jobs.iter().collect();
    order.sort_by_key(|j| j.order_key());
    let mut free: Vec<&WorkerView> = workers.iter().filter(|w| !w.busy).collect();
    let mut out = Vec::new();
    for job in order {
        if free.is_empty() {
            break;
        }
        if let Some(pos) = free.iter().position(|w| w.takes(job)) {
            out.push((job.job_id, free.remove(pos).name.clone()));
        }
    }
    out
}

/// Why a job that [`dispatch`] did not place still waits.
pub fn wait_reason(job: &QueuedJob, workers: &[WorkerView]) -> String {
    let serving: Vec<&WorkerView> = workers
        .iter()
        .filter(|w| w.queues.iter().any(|q| job.queues.contains(q)))
        .collect();
    let queues = job
        .queues
        .iter()
        .map(|q| format!("`{q}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if serving.is_empty() {
        return format!("queued: no worker serves queue {queues}");
    }
    let serving: Vec<&WorkerView> = serving.into_iter().filter(|w| w.takes(job)).collect();
    if serving.is_empty() {
        return format!(
            "queued: no worker of {queues} runs containers (SSH workers run plain scripts; use a local worker or an agent)"
        );
    }
    if serving.iter().all(|w| w.busy) {
        return format!(
            "queued: all {} worker{} of {queues} busy",
            serving.len(),
            if serving.len() == 1 { "" } else { "s" }
        );
    }
    format!("queued: behind higher-priority or older runs in {queues}")
}

/// A pipeline job's view for DAG decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagJob {
    pub name: String,
    pub depends_on: Vec<String>,
    pub status: Status,
    pub allow_failure: bool,
}

/// What to do with the queued jobs of a pipeline run after its jobs' statuses changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagStep {
    /// Queued jobs whose dependencies all succeeded: they may be dispatched.
    pub ready: BTreeSet<String>,
    /// Queued jobs that will never run, with the reason (`skipped`).
    pub skip: BTreeMap<String, String>,
    /// Queued or active jobs to cancel because the pipeline fails fast.
    pub cancel: BTreeMap<String, String>,
}

fn counts_as_success(j: &DagJob) -> bool {
    j.status == Status::Success || (j.allow_failure && j.status.is_failure())
}

/// Walks a pipeline run's DAG. A failed job (not `allow_failure`) either cancels every other
/// unfinished job (fail fast, prunner's default) or, with `continue_after_failure`, skips only
/// the jobs that depend on it, transitively.
pub fn dag_step(jobs: &[DagJob], continue_after_failure: bool) -> DagStep {
    let by_name: BTreeMap<&str, &DagJob> = jobs.iter().map(|j| (j.name.as_str(), j)).collect();
    let mut step = DagStep::default();
    let failed: Vec<&DagJob> = jobs
        .iter()
        .filter(|j| j.status.is_failure() && !j.allow_failure)
        .collect();
    if let Some(first) = failed.first()
        && !continue_after_failure
    {
        for j in jobs.iter().filter(|j| !j.status.is_terminal()) {
            step.cancel.insert(
                j.name.clone(),
                format!(
                    "canceled: task `{}` {} (fail fast)",
                    first.name, first.status
                ),
            );
        }
        return step;
    }
    // Skipped/failed propagate transitively: iterate to a fixpoint over the queued jobs.
    let mut doomed: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut changed = false;
        for j in jobs.iter().filter(|j| j.status == Status::Queued) {
            if doomed.contains_key(&j.name) {
                continue;
            }
            for dep in &j.depends_on {
                let dep_dead = match by_name.get(dep.as_str()) {
                    Some(d) => {
                        (d.status.is_terminal() && !counts_as_success(d))
                            || doomed.contains_key(dep)
                    }
                    None => true,
                };
                if dep_dead {
                    doomed.insert(
                        j.name.clone(),
                        format!("skipped: dependency `{dep}` did not succeed"),
                    );
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for j in jobs.iter().filter(|j| j.status == Status::Queued) {
        if doomed.contains_key(&j.name) {
            continue;
        }
        let deps_done = j.depends_on.iter().all(|d| {
            by_name
                .get(d.as_str())
                .is_some_and(|d| counts_as_success(d))
        });
        if deps_done {
            step.ready.insert(j.name.clone());
        }
    }
    step.skip = doomed;
    step
}

/// The first thing a queued pipeline job waits for, for its reason.
pub fn dag_wait_reason(job: &DagJob, jobs: &[DagJob]) -> Option<String> {
    let pending: Vec<&str> = job
        .depends_on
        .iter()
        .filter(|d| {
            jobs.iter()
                .find(|j| &j.name == *d)
                .is_some_and(|j| !j.status.is_terminal())
        })
        .map(String::as_str)
        .collect();
    (!pending.is_empty()).then(|| {
        format!(
            "queued: waiting for {}",
            pending
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

#[cfg(test)]
mod tests;
