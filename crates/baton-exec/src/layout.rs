//! The files of a job directory, and reading / atomically writing them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ExecError;
use crate::job::ExitRecord;

/// The [`JobSpec`](crate::JobSpec), written by the executor.
pub const SPEC_FILE: &str = "spec.json";
/// The job's working directory.
pub const WORK_DIR: &str = "work";
/// `BATON_OUTPUT_DIR`: the job's artifacts.
pub const OUT_DIR: &str = "out";
/// stdout + stderr of the job, byte for byte.
pub const LOG_FILE: &str = "log";
/// The script as bash runs it.
pub const SCRIPT_FILE: &str = "script.sh";
/// [`SupervisorInfo`], written by the supervisor before the job starts.
pub const SUPERVISOR_FILE: &str = "supervisor.json";
/// Created exclusively (`O_EXCL`) by whoever gets a launched job first: its supervisor (which
/// then runs it, the file holding its pid and start time) or, after the server stopped while
/// launching it, the server's recovery (`recovery`; the job then runs again from the queue and
/// the late supervisor refuses). So a job folder is run at most once.
pub const CLAIM_FILE: &str = "claim";
/// What recovery writes in [`CLAIM_FILE`].
pub const CLAIMED_BY_RECOVERY: &[u8] = b"recovery\n";

/// Tries to claim the job in `dir` (creates [`CLAIM_FILE`] exclusively, holding `who`):
/// `Ok(true)` when this caller got it, `Ok(false)` when someone else already had.
pub fn claim(dir: &Path, who: &[u8]) -> std::io::Result<bool> {
    use std::io::Write;
    let path = dir.join(CLAIM_FILE);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => f.write_all(who).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
/// The [`ExitRecord`], written by the supervisor at the end.
pub const EXIT_FILE: &str = "exit.json";

/// Who supervises a job: enough to find the process again after a server
/// restart without being fooled by pid reuse.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupervisorInfo {
    /// The supervisor's pid.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
    pub start_time: u64,
    /// The boot the supervisor ran in (`/proc/sys/kernel/random/boot_id`): a job folder seen
    /// from another host (servers sharing a data directory) or after a reboot names a process
    /// that is not this machine's. `None` in folders written before Baton kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<u128>,
    /// The supervisor's pid namespace (the inode of `/proc/self/ns/pid`): a server in another
    /// container on the same host sees other pids. `None` in older folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidns: Option<u64>,
}

impl SupervisorInfo {
    /// The supervisor `pid`, started at `start_time`, of this boot.
    pub fn here(pid: i32, start_time: u64) -> SupervisorInfo {
        SupervisorInfo {
            pid,
            start_time,
            boot: this_boot(),
            pidns: this_pidns(),
        }
    }

    /// Why this supervisor is not a process of this machine as it runs now (another host, or
    /// before a reboot): its pid means nothing here, and nothing may be signalled by it.
    pub fn elsewhere(&self) -> Option<String> {
        if let (Some(theirs), Some(ours)) = (self.pidns, this_pidns())
            && theirs != ours
        {
            return Some(format!(
                "its supervisor (pid {}) ran in another pid namespace (another container or \
                 host: namespace {theirs}, this one is {ours}): a local job cannot be \
                 re-attached from here",
                self.pid
            ));
        }
        match (self.boot, this_boot()) {
            (Some(theirs), Some(ours)) if theirs != ours => Some(format!(
                "its supervisor (pid {}) ran on another host or before this machine restarted \
                 (boot {theirs:032x}, this one is {ours:032x}): a local job cannot be \
                 re-attached from here",
                self.pid
            )),
            _ => None,
        }
    }
}

/// This process's pid namespace (the inode `/proc/self/ns/pid` names), read once.
pub fn this_pidns() -> Option<u64> {
    static NS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *NS.get_or_init(|| {
        let link = fs::read_link("/proc/self/ns/pid").ok()?;
        let text = link.to_str()?;
        text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
    })
}

/// This machine's boot id, read once.
pub fn this_boot() -> Option<u128> {
    static BOOT: std::sync::OnceLock<Option<u128>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let text = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        u128::from_str_radix(&text.trim().replace('-', ""), 16).ok()
    })
}

/// Read `exit.json` of a job directory; `None` if it is absent (or unreadable,
/// which is logged: the file is written atomically, so that should not happen).
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    match try_read_json::<ExitRecord>(&dir.join(EXIT_FILE)) {
        Ok(rec) => rec,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// [`read_exit`] on the blocking pool, for async code.
pub async fn read_exit_async(dir: &Path) -> Option<ExitRecord> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || read_exit(&dir))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("reading an exit record failed: {e}");
            None
        })
}

/// Read `supervisor.json` of a job directory.
pub fn read_supervisor(dir: &Path) -> Result<Option<SupervisorInfo>, ExecError> {
    try_read_json(&dir.join(SUPERVISOR_FILE))
}

/// Read and parse a JSON file; `Ok(None)` if it does not exist.
pub(crate) fn try_read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ExecError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ExecError::io("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ExecError::Json {
            path: path.to_path_buf(),
            source,
        })
}

/// Write `bytes` to `path` atomically: write `path.tmp`, then rename. With
/// `durable`, fsync the file before and the directory after the rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let mut tmp: PathBuf = path.to_path_buf().into_os_string().into();
    tmp.as_mut_os_string().push(".tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    fs::rename(&tmp, path)?;
    if durable && let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Prepares a job folder for a first start: resolves it to an absolute path, refuses it when
/// it already holds `exit.json` or the executor's own start marker (`started_marker`: a job
/// never runs twice), creates `work/` and `out/`, and writes `spec.json`. Returns the absolute
/// folder.
pub fn prepare_job_dir(
    dir: &Path,
    spec: &crate::JobSpec,
    started_marker: &str,
) -> Result<PathBuf, ExecError> {
    let dir = std::path::absolute(dir).map_err(|e| ExecError::io("resolve", dir, e))?;
    for f in [EXIT_FILE, started_marker] {
        let p = dir.join(f);
        if p.exists() {
            return Err(ExecError::AlreadyStarted { dir, found: p });
        }
    }
    for d in [WORK_DIR, OUT_DIR] {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(|e| ExecError::io("create directory", p, e))?;
    }
    let spec_path = dir.join(SPEC_FILE);
    let json = serde_json::to_vec_pretty(spec).map_err(|source| ExecError::Json {
        path: spec_path.clone(),
        source,
    })?;
    fs::write(&spec_path, json).map_err(|e| ExecError::io("write job spec", &spec_path, e))?;
    Ok(dir)
}
