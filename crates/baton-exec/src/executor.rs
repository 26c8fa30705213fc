//! The one interface every place that runs jobs implements: the server itself
//! ([`crate::LocalExecutor`]), and later Docker containers, SSH workers and pull-mode agents.
//!
//! The scheduler only ever talks to `dyn Executor`: it starts a job in a job folder on the
//! server (where the log, the exit record and the artifacts end up, whatever the executor),
//! re-attaches after a restart, cancels, and waits for an [`Outcome`].

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::{ExecError, ExitRecord, JobSecrets, JobSpec, Outcome};

/// A boxed future, so executors stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether an executor can take work now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Down, with the reason shown to users ("ssh: connection refused").
    Down(String),
    /// Turned off by an administrator (an agent), with the reason.
    Disabled(String),
}

impl Health {
    /// Why work cannot go here, if it cannot.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Health::Up => None,
            Health::Down(why) | Health::Disabled(why) => Some(why),
        }
    }
}

/// A place that runs jobs.
pub trait Executor: Send + Sync + 'static {
    /// A short name for the API: `local`, `docker`, `ssh`, `agent`.
    fn kind(&self) -> &'static str;

    /// Starts the job; returns once it is running (or could not start).
    fn start<'a>(
        &'a self,
        dir: &'a Path,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<Box<dyn RunningJob>, ExecError>>;

    /// After a server restart: the job's end if it ended, a handle if it still runs, or why it
    /// is gone. `secrets` are the job's secrets as the current config gives them (the job
    /// folder never holds them): executors that mask on the server mask these.
    fn reattach<'a>(&'a self, dir: &'a Path, secrets: &'a JobSecrets) -> BoxFuture<'a, Reattached>;

    /// Asks the job to stop (SIGTERM, then SIGKILL after the spec's grace); its end arrives
    /// through the running job's `wait`.
    fn cancel<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Whether new jobs may go here.
    fn health(&self) -> Health {
        Health::Up
    }

    /// When the place last answered (remote workers and agents); `None` where that means
    /// nothing (this server, the local engine).
    fn last_heartbeat(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// The engine's id of container image `image` (`sha256:…`, pulled first when it is not
    /// there) in the engine that runs this place's containers (an agent asks its own), for
    /// the CI cache: a new image under the same tag has another id. `Ok(None)`: this place
    /// cannot say (it runs no containers, as SSH workers, or an agent too old to answer).
    fn image_id<'a>(&'a self, _image: &'a str) -> BoxFuture<'a, Result<Option<String>, ExecError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The CI cache's fact of container image `image` (as a task names it) on `exec`:
/// `IMAGE@ID` with the engine's id, so that a new image under the same tag makes another
/// digest; the name alone when `exec` cannot say or a `build:` image.
pub async fn image_fact(exec: &dyn Executor, image: &str) -> Result<String, ExecError> {
    if image.starts_with("build:") {
        return Ok(image.to_owned());
    }
    Ok(match exec.image_id(image).await? {
        Some(id) => format!("{image}@{id}"),
        None => image.to_owned(),
    })
}

/// A job that is running somewhere.
pub trait RunningJob: Send {
    fn wait(self: Box<Self>) -> BoxFuture<'static, Outcome>;
}

/// What [`Executor::reattach`] finds.
pub enum Reattached {
    Finished(ExitRecord),
    Running(Box<dyn RunningJob>),
    Vanished(String),
    /// The server stopped while launching the job and it never started (nor will it, from
    /// that folder): queue it again.
    NeverStarted(String),
}

impl RunningJob for crate::JobHandle {
    fn wait(self: Box<Self>) -> BoxFuture<'static, Outcome> {
        Box::pin(crate::JobHandle::wait(*self))
    }
}

impl Executor for crate::LocalExecutor {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn start<'a>(
        &'a self,
        dir: &'a Path,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<Box<dyn RunningJob>, ExecError>> {
        Box::pin(async move {
            let handle = crate::LocalExecutor::start(self, dir, spec).await?;
            Ok(Box::new(handle) as Box<dyn RunningJob>)
        })
    }

    fn reattach<'a>(
        &'a self,
        dir: &'a Path,
        _secrets: &'a JobSecrets,
    ) -> BoxFuture<'a, Reattached> {
        // The supervisor has them in memory. Re-attaching reads files, kills a vanished
        // job's tree and may wait for a supervisor that is starting: on the blocking pool.
        let (ex, d) = (self.clone(), dir.to_path_buf());
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || ex.reattach(&d)).await;
            match found {
                Ok(crate::Reattach::Finished(r)) => Reattached::Finished(r),
                Ok(crate::Reattach::Running(h)) => Reattached::Running(Box::new(h)),
                Ok(crate::Reattach::Vanished(w)) => Reattached::Vanished(w),
                Ok(crate::Reattach::NeverStarted(w)) => Reattached::NeverStarted(w),
                Err(e) => {
                    Reattached::Vanished(format!("re-attaching {} failed: {e}", dir.display()))
                }
            }
        })
    }

    fn cancel<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        let (ex, d) = (self.clone(), dir.to_path_buf());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || ex.cancel(&d))
                .await
                .map_err(|e| ExecError::io("cancel the job in", dir, std::io::Error::other(e)))?
        })
    }
}
