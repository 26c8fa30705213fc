//! What can go wrong without a server, said so that the user can act on it.

use baton_git::GitError;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(
        "no .baton/ (and no .jci/run.sh) at {commit} (hint: add .baton/ci.yaml with `tasks:` and commit it, or run with --dirty to use the working tree)"
    )]
    NoConfig { commit: String },
    #[error(".baton/ at {commit} has errors:\n{errors}")]
    Config { commit: String, errors: String },
    #[error("{name:?} is neither a task nor a pipeline of .baton/ (it defines: {known})")]
    UnknownTarget { name: String, known: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no stored run {0:?} (hint: `baton log` lists the runs of recent commits)")]
    NoRun(String),
    #[error("{0:?} names more than one run: {1} (hint: give more of the run id)")]
    AmbiguousRun(String, String),
    #[error("run {run} has no job {job:?} (its jobs: {known})")]
    NoJob {
        run: String,
        job: String,
        known: String,
    },
    #[error("stored run {run} is unreadable: {why}")]
    BadRecord { run: String, why: String },
    #[error("{0}")]
    Usage(String),
}

impl LocalError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        LocalError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
