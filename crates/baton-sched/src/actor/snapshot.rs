//! The snapshot of workers and queue shown by the API and the UI.

use baton_core::decide;
use baton_core::run::Status;
use baton_exec::Health;

use super::Actor;
use crate::handle::{QueueEntry, Snapshot, WaitsFor, WorkerState};

impl Actor {
    pub(super) fn snapshot(&self) -> Snapshot {
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
        let gates = &self.gates;
        let mut queue: Vec<QueueEntry> = self
            .runs
            .values()
            .flat_map(|r| {
                let dag = r.dag();
                let held = gates.gated(&(r.row.kind, r.row.target.clone()), r.row.id);
                r.row
                    .jobs
                    .iter()
                    .filter(|j| j.status == Status::Queued)
                    .map(move |j| QueueEntry {
                        waits_for: waits_for(held, &j.name, &dag),
                        run_id: r.row.id,
                        job_id: j.id,
                        target: r.row.target.clone(),
                        job: j.name.clone(),
                        priority: r.row.priority,
                        enqueued_at: r.row.enqueued_at,
                        queues: r.def.queues(),
                        reason: r
                            .row
                            .reason
                            .clone()
                            .or_else(|| j.reason.clone())
                            .unwrap_or_else(|| "queued".into()),
                    })
            })
            .collect();
        queue.sort_by_key(|q| decide::queue_order(q.enqueued_at, q.priority, q.job_id));
        Snapshot {
            workers,
            queue,
            paused: self.paused.clone(),
            next_fire: self.next_fire.clone(),
        }
    }
}

/// What a queued job waits for: its run's turn (held by its gate: concurrency, start delay),
/// the jobs it depends on, or a free worker.
fn waits_for(gate_held: bool, job: &str, dag: &[decide::DagJob]) -> WaitsFor {
    if gate_held {
        return WaitsFor::Turn;
    }
    match dag.iter().find(|d| d.name == job) {
        Some(d) if decide::dag_wait_reason(d, dag).is_some() => WaitsFor::Dependencies,
        _ => WaitsFor::Worker,
    }
}
