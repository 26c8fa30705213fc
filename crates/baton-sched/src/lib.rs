//! Baton's scheduler: one actor that owns the queue, the workers and what runs where.
//!
//! Triggers, cancels, reloads and executor events arrive on one channel. For each batch the actor
//! asks `baton_core::decide` what to do, records it in the store (durable before anyone is told),
//! then replies and dispatches jobs to executors.
//!
//! Architecture Invariant: nothing else mutates scheduling state, and this crate speaks no HTTP.

mod actor;
mod handle;
mod jobenv;
mod jobs;
mod repo;

pub use handle::{
    Changed, ChangedRun, EVENT_BACKLOG, QueueEntry, SchedError, SchedHandle, Snapshot,
    TriggerRequest, WorkerState,
};
pub use jobs::TargetDef;
pub use repo::RepoTriggerRequest;

use std::path::PathBuf;
use std::sync::Arc;

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
}

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
/// then starts the actor. Returns the handle everyone else uses.
pub async fn start(parts: SchedulerParts) -> Result<SchedHandle, SchedError> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let (gen_tx, gen_rx) = tokio::sync::watch::channel(0u64);
    let (events_tx, _) = tokio::sync::broadcast::channel(handle::EVENT_BACKLOG);
    let handle = SchedHandle::new(tx.clone(), gen_rx, events_tx.clone(), parts.store.clone());
    let mut actor = actor::Actor::new(
        Arc::new(parts.config),
        parts.store,
        RunFolders::new(&parts.data_dir),
        parts.executors,
        tx,
        gen_tx,
        events_tx,
    );
    actor.recover().await?;
    tokio::spawn(actor.run(rx));
    Ok(handle)
}
