//! Run folders on disk: `<data>/jobs/<job-id>/<attempt>/{log, exit.json, work/, out/}`.

use std::path::{Path, PathBuf};

/// Where job folders live.
#[derive(Debug, Clone)]
pub struct RunFolders {
    root: PathBuf,
}

impl RunFolders {
    pub fn new(data_dir: &Path) -> Self {
        RunFolders {
            root: data_dir.join("jobs"),
        }
    }

    /// The data directory the folders are in.
    pub fn data_dir(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    /// The folder of one attempt of a job. Job ids and attempts are numbers, so the path can
    /// never escape the data directory.
    pub fn job_dir(&self, job_id: i64, attempt: u32) -> PathBuf {
        self.root.join(job_id.to_string()).join(attempt.to_string())
    }

    pub fn log_path(&self, job_id: i64, attempt: u32) -> PathBuf {
        self.job_dir(job_id, attempt).join("log")
    }

    /// The folder of a run's own files (its stored `report.html`).
    pub fn run_dir(&self, run_id: i64) -> PathBuf {
        self.data_dir().join("runs").join(run_id.to_string())
    }

    /// The run's `report.html`, written once when it ended.
    pub fn report_path(&self, run_id: i64) -> PathBuf {
        self.run_dir(run_id).join("report.html")
    }

    /// Removes a run's own folder (after the run was pruned).
    pub fn remove_run(&self, run_id: i64) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.run_dir(run_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes every attempt's folder of a job (after its run was pruned).
    pub fn remove_job(&self, job_id: i64) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.root.join(job_id.to_string())) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
