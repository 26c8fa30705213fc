//! Dispatch: which queued job goes to which free worker (priority, then age), and why the
//! others wait.

use chrono::{DateTime, Utc};

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

/// The order of the queue, for dispatch and for every view of the queue: lower goes first.
/// py4CI: a point of priority is worth a second of queue age; ties go to the older job id.
pub fn queue_order(enqueued_at: DateTime<Utc>, priority: i64, job_id: i64) -> (i64, i64) {
    (
        enqueued_at
            .timestamp_millis()
            .saturating_sub(priority.saturating_mul(1000)),
        job_id,
    )
}

impl QueuedJob {
    /// Its place in the queue ([`queue_order`]).
    pub fn order_key(&self) -> (i64, i64) {
        queue_order(self.enqueued_at, self.priority, self.job_id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    proptest! {
        /// A point of priority is worth a second of age, and extreme priorities saturate
        /// instead of wrapping round to the other end of the queue.
        #[test]
        fn priority_buys_seconds_of_age(
            secs in 0i64..1_000_000,
            priority in any::<i64>(),
            job_id in any::<i64>(),
        ) {
            let t = Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap();
            let (key, id) = queue_order(t, priority, job_id);
            prop_assert_eq!(id, job_id);
            let older = t - chrono::Duration::seconds(1);
            if let Some(p) = priority.checked_add(1) {
                prop_assert!(queue_order(t, p, job_id) <= queue_order(t, priority, job_id));
                if priority.abs() < 1_000_000_000 {
                    prop_assert_eq!(queue_order(t, p, job_id).0, queue_order(older, priority, job_id).0);
                }
            }
            prop_assert!(key <= t.timestamp_millis() || priority < 0);
        }
    }
}
