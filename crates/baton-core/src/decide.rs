//! Scheduling decisions as pure functions, one module per concern:
//! - [`admit`](mod@admit): a trigger becomes a queued, skipped or refused run (skip or supersede,
//!   debounce, wait-list append/replace/refuse, partitioned replace, start_delay);
//! - [`chain`]: which tasks a success triggers;
//! - [`cache`]: which earlier job a job's inputs hit (the CI cache);
//! - [`gate`](mod@gate): which waiting runs may start now (concurrency, start_delay);
//! - [`dispatch`](mod@dispatch): which queued job goes to which free worker (priority, then
//!   age), the queue's order, and why a job waits;
//! - [`dag`]: which pipeline jobs are ready, skipped or canceled (DAG order);
//! - [`exit`]: what a job's exit means; [`retry`]: whether an ended attempt is retried;
//! - [`on_error`]: a pipeline's `on_error` job; [`reason`]: why a run ended;
//! - [`mask`]: which secret values the log masker hides;
//! - [`rerun`](mod@rerun): which jobs a rerun of a pipeline's failed jobs carries over;
//! - [`pool`](mod@pool): how many agents an autoscaled pool starts now, and why;
//! - [`supersede`]: which older runs a newer one for the same pull request or branch cancels.
//!
//! The scheduler actor gathers the facts, calls these, and applies the answers.

pub mod admit;
pub mod cache;
pub mod chain;
pub mod dag;
pub mod dispatch;
pub mod exit;
pub mod gate;
pub mod mask;
pub mod on_error;
pub mod pause;
pub mod pool;
pub mod reason;
pub mod rerun;
pub mod retention;
pub mod retry;
pub mod supersede;

pub use admit::{Admission, Admit, Displace, OpenRun, QueuePolicy, admit, partition_of};
pub use cache::{CacheCandidate, cache_hit, hit_of, hit_reason};
pub use chain::chain_targets;
pub use dag::{DagJob, DagStep, dag_step, dag_wait_reason};
pub use dispatch::{QueuedJob, WorkerView, dispatch, queue_order, wait_reason};
pub use exit::{Exit, describe_exit, describe_loss};
pub use gate::{Gate, GateRun, gate};
pub use mask::{MIN_MASKED_LEN, mask_values};
pub use on_error::{
    FAILED_LOG_TAIL_BYTES, FailedTask, ON_ERROR_JOB, adds_on_error, failed_task_args,
};
pub use pause::Paused;
pub use pool::{PoolDecision, PoolFacts};
pub use reason::{ReasonJob, run_reason};
pub use rerun::{RerunJob, RerunRefusal, carried_of, carried_over, carried_reason, result_source};
pub use retention::{RetainRun, doomed_runs};
pub use retry::{AttemptEnd, JobEnd, asked_to_cancel, job_end};
pub use supersede::{
    CodeKey, CodeScope, OpenCode, cancels_superseded, superseded, superseded_reason,
};

#[cfg(test)]
mod tests;
