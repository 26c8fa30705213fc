//! Baton's executors: where and how a job's script runs.
//!
//! Every executor implements [`Executor`]: `start` → a running job, `reattach` after a
//! restart, `cancel`, and `wait()` → [`Outcome`].
//!
//! - [`LocalExecutor`] runs a job on this machine under a small per-job supervisor process
//!   (forked by the server's [`launcher`], or `baton __supervise <job-dir>` when there is
//!   none; see [`supervisor`]) that lives in its own session. The
//!   server is never the direct parent of a job's process tree, so jobs survive a server crash
//!   or restart: the supervisor keeps copying output into the job directory's `log` and finally
//!   writes `exit.json`, and a restarted server re-attaches with [`LocalExecutor::reattach`].
//! - [`SshExecutor`] runs jobs on an SSH worker through ssh + dtach with a callback (see
//!   [`ssh`]).
//! - [`DockerExecutor`] runs jobs whose spec names a container (`image:`/`build:`) in a fresh
//!   container through the Docker Engine API (Docker or Podman); the engine owns the container,
//!   so it survives the server too, and the server streams its output into the same job folder.
//! - [`agent`] hands jobs to pull-mode agents.
//!
//! The shared vocabulary ([`JobSpec`], [`ExitRecord`], [`Outcome`], the job-directory files in
//! [`layout`] and [`read_log_range`]) lives outside the executor-specific modules. Background
//! loops (health checks, reapers) share one shape, [`background::Loop`], and stop when their
//! executor is dropped or the server's shutdown token is cancelled. File work of a running job
//! (its log) runs on a blocking thread, never on the async threads.
//!
//! Job directory layout (`<data>/runs/<job-id>/`):
//!
//! | file | written by | content |
//! | --- | --- | --- |
//! | `spec.json` | executor | the [`JobSpec`] (never its secrets) |
//! | `work/` | executor | the job's fresh working directory |
//! | `out/` | executor | `BATON_OUTPUT_DIR` (artifacts) |
//! | `log` | executor (empty), then supervisor | stdout + stderr, byte for byte |
//! | `log.idx` | whoever writes `log` | [`logidx`]: when its bytes arrived, and from which stream |
//! | `script.sh` | supervisor | the script bash runs |
//! | `supervisor.json` | supervisor | [`SupervisorInfo`] (pid + start time) |
//! | `process.json` | executor, then supervisor | [`tree::ProcessRecord`]: the job's cgroup or process group |
//! | `exit.json` | supervisor | the [`ExitRecord`], written last and durably |
//! | `container.json` | Docker executor | the container's name, log offset, start time |
//! | `canceled`, `timed_out` | Docker executor | why the container was stopped |
//! | `ssh.json` | SSH executor | [`ssh::SshJobInfo`]: worker, folder on it, token hash |
//! | `log.offset` | SSH executor | remote log offset and local log length, for resuming |

pub mod agent;
pub mod background;
mod blocking;
pub mod callback;
pub mod docker;
pub mod error;
pub mod executor;
pub mod job;
pub mod keep;
pub mod launcher;
pub mod layout;
pub mod local;
pub mod log;
pub mod logidx;
pub mod mask;
pub mod meter;
mod spawn;
pub mod ssh;
pub mod supervisor;
pub mod tree;
pub mod unix;

pub use callback::{CallbackError, CallbackHub};
pub use docker::DockerExecutor;
pub use error::ExecError;
pub use executor::{BoxFuture, Executor, Health, Reattached, RunningJob, image_fact};
pub use job::{ContainerSpec, ExitRecord, JobSecrets, JobSpec, Network, Outcome};
pub use layout::{SupervisorInfo, read_exit};
pub use local::{JobHandle, LocalExecutor, Reattach};
pub use log::read_log_range;
pub use logidx::{LogMark, MarkWriter, Stream, read_marks};
pub use ssh::{SshExecutor, SshSettings};
pub use tree::{Containment, ContainmentMode};
