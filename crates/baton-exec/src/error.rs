//! [`ExecError`]: what went wrong while starting, re-attaching to or
//! cancelling a job, always naming the file, directory or process involved.

use std::io;
use std::path::PathBuf;

/// An executor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A file-system operation on a job directory failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What we tried to do, e.g. `"write job spec"`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A JSON file in a job directory could not be (de)serialized.
    #[error("invalid JSON in {}: {source}", path.display())]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The supervisor process could not be spawned.
    #[error("could not spawn supervisor {} for job dir {}: {source}", program.display(), dir.display())]
    Spawn {
        /// The supervisor program.
        program: PathBuf,
        /// The job directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The supervisor was spawned but did not report that it is ready (it
    /// failed early, or took too long and was killed). The job did not start.
    #[error("supervisor for job dir {} did not become ready: {detail}", dir.display())]
    NotReady {
        /// The job directory.
        dir: PathBuf,
        /// What happened (the supervisor's own message when it gave one).
        detail: String,
    },
    /// `--job-containment cgroup` was asked for, but no cgroup v2 is usable here.
    #[error(
        "no usable cgroup v2 for jobs: {0} (hint: use --job-containment auto or process-group)"
    )]
    NoCgroup(String),
    /// The job directory already holds a started job; refusing to run it twice.
    #[error("job dir {} was already started (found {})", dir.display(), found.display())]
    AlreadyStarted {
        /// The job directory.
        dir: PathBuf,
        /// The file whose presence proves it.
        found: PathBuf,
    },
    /// The job has no running supervisor (and no exit record).
    #[error("job in {} is not running: {reason}", dir.display())]
    NotRunning {
        /// The job directory.
        dir: PathBuf,
        /// Why we think so.
        reason: String,
    },
    /// Sending a signal to the supervisor failed.
    #[error("could not send {signal} to supervisor pid {pid} of job dir {}: {source}", dir.display())]
    Signal {
        /// The job directory.
        dir: PathBuf,
        /// The supervisor's pid.
        pid: i32,
        /// The signal's name.
        signal: &'static str,
        /// The underlying error.
        #[source]
        source: nix::errno::Errno,
    },
    /// The Docker Engine API refused or failed a request.
    #[error(
        "could not {action} (Docker engine at {host}): {source} (hint: is the engine running and is server.docker_host right?)"
    )]
    Docker {
        /// What we tried to do, e.g. `"create a container from image busybox"`.
        action: String,
        /// The engine's address.
        host: String,
        /// The underlying error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A job's image is neither in the engine nor could it be pulled.
    #[error(
        "image {image} is not in the Docker engine at {host} and could not be pulled: {detail} (hint: pull, import or build it on that engine)"
    )]
    Image {
        /// The image.
        image: String,
        /// The engine's address.
        host: String,
        /// What the engine said.
        detail: String,
    },
    /// Building a job's image from its Dockerfile failed.
    #[error("could not build the image of {}: {detail}", dockerfile.display())]
    Build {
        /// The Dockerfile.
        dockerfile: PathBuf,
        /// What went wrong (the build's own error when it gave one).
        detail: String,
    },
    /// A job without `image:`/`build:` was given to the Docker executor.
    #[error("job in {} names no image: the Docker executor runs only jobs with image: or build:", dir.display())]
    NotContainer {
        /// The job directory.
        dir: PathBuf,
    },
    /// A pull-mode agent could not do what the server asked of it.
    #[error("could not {action} on agent {agent}: {detail}")]
    Agent {
        /// The agent's name.
        agent: String,
        /// What we asked, e.g. `"get the id of an image from its engine"`.
        action: &'static str,
        /// Why not.
        detail: String,
    },
    /// A command on an SSH worker (or the transfer of a file from it) failed.
    #[error("could not {action} on SSH worker {worker} ({host}): {detail}")]
    Ssh {
        /// The worker's name.
        worker: String,
        /// `user@host[:port]`.
        host: String,
        /// What we tried to do, e.g. `"start the job"`.
        action: &'static str,
        /// What ssh said, with a hint when there is a known fix.
        detail: String,
    },
}

impl ExecError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ExecError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
