//! Baton's scheduler: one actor that owns the queue, the workers and what runs where.
//!
//! Triggers, cancels, reloads and executor events arrive on one channel. For each batch the actor
//! asks `baton_core::decide` what to do, records it in the store (durable before anyone is told),
//! then replies and dispatches jobs to executors.
//!
//! Architecture Invariant: nothing else mutates scheduling state, and this crate speaks no HTTP.

mod actor;
mod cache;
mod creds;
mod handle;
mod jobenv;
mod jobs;
mod repo;

pub use creds::{ForgeCreds, JobCred};
pub use handle::{
    Changed, ChangedRun, EVENT_BACKLOG, QueueEntry, SchedError, SchedHandle, Snapshot,
    TriggerRequest, WaitsFor, WorkerState,
};
pub use handle::{RepoSchedule, RepoTriggerRequest, RerunOptions};
pub use jobs::TargetDef;
pub use repo::git_env;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use baton_core::config::Config;
use std::collections::BTreeMap;

use baton_exec::Executor;
use baton_store::{RunFolders, Store};

/// What the scheduler needs to start.
pub struct SchedulerParts {
    pub config: Config,
    pub store: Store,
    pub data_dir: PathBuf,
    pub executors: Executors,
    /// Mints each repository job's forge credential (`repos.NAME.github_app`/`job_tokens`).
    /// `None`: jobs get none.
    pub creds: Option<Arc<dyn ForgeCreds>>,
    /// Called with the panic's message after the actor panicked (the panic is logged first).
    /// The server ends the process here with a non-zero status, so that a service manager
    /// restarts it and recovery takes over (runs survive that by design).
    pub on_actor_panic: OnActorPanic,
}

/// What to do when the scheduler actor panicked; gets the panic's message.
pub type OnActorPanic = Arc<dyn Fn(&str) + Send + Sync>;

/// Where jobs run: the local executor for local workers, and one executor per remote worker.
#[derive(Clone)]
pub struct Executors {
    pub local: Arc<dyn Executor>,
    /// By worker name (SSH hosts, agents). A remote worker missing here is shown `down`.
    pub remote: BTreeMap<String, Arc<dyn Executor>>,
    /// Pull-mode agents, when the server accepts them.
    pub agents: Option<Arc<baton_exec::agent::AgentHub>>,
    /// Runs jobs with `image:`/`build:` that land on local workers. `None`: such jobs end
    /// `broken` with the reason.
    pub docker: Option<Arc<dyn Executor>>,
    /// Makes the executor of an SSH worker that a reload adds (or changes while it is idle).
    /// `None`: such workers stay `down` until a restart.
    pub ssh: Option<SshFactory>,
}

/// Builds the executor of one SSH worker under the server settings; `Err` says why not.
pub type SshFactory = Arc<
    dyn Fn(
            &baton_core::config::WorkerDef,
            &baton_core::config::ServerConfig,
        ) -> Result<Arc<dyn Executor>, String>
        + Send
        + Sync,
>;

/// Recovers open runs from the store (re-attaching to jobs that outlived a previous server),
/// then starts the actor, supervised: if it panics, [`SchedulerParts::on_actor_panic`] is
/// called. Returns the handle everyone else uses.
pub async fn start(parts: SchedulerParts) -> Result<SchedHandle, SchedError> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let (gen_tx, gen_rx) = watch::channel(0u64);
    let (events_tx, _) = tokio::sync::broadcast::channel(handle::EVENT_BACKLOG);
    let config = Arc::new(parts.config);
    let (config_tx, config_rx) = watch::channel(config.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let handle = SchedHandle::new(handle::HandleParts {
        tx: tx.clone(),
        generation: gen_rx,
        events: events_tx.clone(),
        config: config_rx,
        shutdown: Arc::new(shutdown_tx),
        stopped: stopped_rx,
        store: parts.store.clone(),
    });
    let mut actor = actor::Actor::new(
        config,
        parts.store,
        RunFolders::new(&parts.data_dir),
        parts.executors,
        parts.creds,
        actor::Outlets {
            tx,
            generation: gen_tx,
            events: events_tx,
            config: config_tx,
        },
    );
    actor.recover().await?;
    let task = tokio::spawn(actor.run(rx, shutdown_rx));
    tokio::spawn(supervise(task, parts.on_actor_panic, stopped_tx));
    Ok(handle)
}

/// Waits for the actor to end: a panic is logged with its cause and handed to `on_panic`.
async fn supervise(
    task: tokio::task::JoinHandle<()>,
    on_panic: OnActorPanic,
    stopped: watch::Sender<bool>,
) {
    match task.await {
        Ok(()) => {}
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let cause = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            tracing::error!(
                "the scheduler panicked: {cause} (the server stops so that it is restarted; open runs are recovered then)"
            );
            on_panic(&cause);
        }
        Err(e) => tracing::error!("the scheduler's task ended: {e}"),
    }
    stopped.send_replace(true);
}

#[cfg(test)]
mod tests;
