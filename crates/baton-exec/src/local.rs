//! [`LocalExecutor`]: runs each job on this machine under its own
//! [supervisor](crate::supervisor) process, started in a new session so that
//! the job survives the server. Each job gets its own cgroup (or process group,
//! see [`crate::tree`]); a job whose supervisor vanished has its whole tree
//! killed before it is reported lost.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;

use crate::error::ExecError;
use crate::job::{JobSpec, Outcome};
use crate::launcher::{LaunchError, Launcher};
use crate::layout::{
    CLAIM_FILE, CLAIMED_BY_RECOVERY, LOG_FILE, SUPERVISOR_FILE, SupervisorInfo, read_exit,
    read_supervisor,
};
use crate::tree::{self, Containment, ContainmentMode};
use crate::unix;
use crate::{ExitRecord, layout};

/// How long [`LocalExecutor::start`] waits for the supervisor to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a re-attached [`JobHandle`] looks for the exit record.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Starts supervisors: `<program> <args...> <job-dir>`, e.g.
/// `/usr/bin/baton __supervise /var/lib/baton/runs/42`.
#[derive(Clone, Debug)]
pub struct LocalExecutor {
    program: PathBuf,
    args: Vec<OsString>,
    containment: Containment,
    /// Forks supervisors without an exec, when the server started one ([`crate::launcher`]).
    launcher: Option<Arc<Launcher>>,
}

/// What [`LocalExecutor::reattach`] found in a job directory.
#[derive(Debug)]
pub enum Reattach {
    /// The job ended; here is its record.
    Finished(ExitRecord),
    /// The supervisor is still running; wait on the handle.
    Running(JobHandle),
    /// No exit record and no live supervisor: the job is lost (reason given).
    Vanished(String),
    /// The server stopped while launching the job, before its supervisor claimed it; recovery
    /// has claimed it instead, so it never runs from this folder (reason given).
    NeverStarted(String),
}

/// A started (or re-attached) job.
#[derive(Debug)]
pub struct JobHandle {
    dir: PathBuf,
    info: SupervisorInfo,
    /// Set when the supervisor is our own child (started by this process).
    child: Option<tokio::process::Child>,
    /// Set when the launcher forked the supervisor: readable once it has exited.
    pidfd: Option<OwnedFd>,
}

impl LocalExecutor {
    /// An executor whose supervisors are `program args... <job-dir>`; each job gets a cgroup
    /// where a cgroup v2 is usable, else its process group ([`ContainmentMode::Auto`]).
    pub fn new(program: PathBuf, args: Vec<OsString>) -> Self {
        let containment = Containment::detect(ContainmentMode::Auto)
            .expect("auto containment always has a fallback");
        Self::with_containment(program, args, containment)
    }

    /// Like [`new`](Self::new), with the containment decided by the caller
    /// ([`Containment::detect`]).
    pub fn with_containment(
        program: PathBuf,
        args: Vec<OsString>,
        containment: Containment,
    ) -> Self {
        match &containment {
            Containment::Cgroups(p) => {
                tracing::info!("local jobs run in their own cgroups under {}", p.display())
            }
            Containment::ProcessGroups(why) => {
                tracing::info!("local jobs run in their own process groups: {why}")
            }
        }
        LocalExecutor {
            program,
            args,
            containment,
            launcher: None,
        }
    }

    /// Starts supervisors through `launcher` (forked, no exec) while it runs; by exec when it
    /// is gone.
    pub fn with_launcher(mut self, launcher: Option<Launcher>) -> Self {
        self.launcher = launcher.map(Arc::new);
        self
    }

    /// Like [`with_launcher`](Self::with_launcher), with a launcher shared with others (each
    /// request is sent whole under its lock).
    pub fn with_shared_launcher(mut self, launcher: Option<Arc<Launcher>>) -> Self {
        self.launcher = launcher;
        self
    }

    /// How this executor contains its jobs.
    pub fn containment(&self) -> &Containment {
        &self.containment
    }

    /// Prepare `dir` (`work/`, `out/`, `spec.json`, an empty `log`), spawn the
    /// supervisor in its own session, wait until it has written
    /// `supervisor.json` and return a handle.
    ///
    /// Refuses a directory that already has `supervisor.json` or `exit.json`
    /// (use [`reattach`](Self::reattach) for those): a job never runs twice.
    pub async fn start(&self, dir: &Path, spec: &JobSpec) -> Result<JobHandle, ExecError> {
        let (dir, record) = self.prepare(dir, spec).await?;
        if let Some(launcher) = &self.launcher
            && let Some(started) = start_forked(launcher, &dir, spec).await
        {
            return started;
        }
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .arg(&dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // No pre_exec hook: that would force fork() of the whole server; without one the
        // spawn uses posix_spawn. The supervisor calls setsid() itself as its first act.
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                if let Some(cg) = record.cgroup {
                    let _ = tokio::task::spawn_blocking(move || tree::remove_cgroup(&cg)).await;
                }
                return Err(ExecError::Spawn {
                    program: self.program.clone(),
                    dir: dir.clone(),
                    source,
                });
            }
        };

        // The job's secrets reach the supervisor on its stdin pipe, never through a file; it
        // reads them to EOF before it reports ready. They are always written (`{}` when there
        // are none), so a supervisor whose server died before handing them over refuses to run
        // rather than run without them.
        let secrets = serde_json::to_vec(&spec.secrets).expect("JobSecrets serialize");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let fed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let r = stdin.write_all(&secrets).await;
            drop(stdin);
            r
        });
        let out = child.stdout.take().expect("stdout is piped");
        let (read, text) = read_ready(out).await;
        if let Ok(Err(e)) = fed.await
            && text == "ready"
        {
            // Cannot happen once it is ready (it read to EOF first); say so if it does.
            tracing::warn!(
                "writing secrets to the supervisor of {}: {e}",
                dir.display()
            );
        }
        if text == "ready" {
            // supervisor.json is written before "ready"; should reading it
            // fail anyway, the job IS running, so fall back to what we know.
            let pid = child.id().map(|p| p as i32).unwrap_or(0);
            let d = dir.clone();
            let info = tokio::task::spawn_blocking(move || {
                read_supervisor(&d).ok().flatten().unwrap_or_else(|| {
                    let start_time = unix::proc_stat(pid).map(|s| s.start_time).unwrap_or(0);
                    SupervisorInfo::here(pid, start_time)
                })
            })
            .await
            .unwrap_or(SupervisorInfo::here(pid, 0));
            return Ok(JobHandle {
                dir,
                info,
                child: Some(child),
                pidfd: None,
            });
        }
        let detail = not_ready(&mut child, read, &text).await;
        // Nothing should run; make sure, and remove the job's cgroup.
        let d = dir.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || tree::kill_tree(&d)).await {
            tracing::warn!("{e}");
        }
        Err(ExecError::NotReady { dir, detail })
    }

    /// The folder, the log, the cgroup (file work, on the blocking pool): the job folder and
    /// the record of how its process tree is kept.
    async fn prepare(
        &self,
        dir: &Path,
        spec: &JobSpec,
    ) -> Result<(PathBuf, tree::ProcessRecord), ExecError> {
        let (d, s, containment) = (dir.to_path_buf(), spec.clone(), self.containment.clone());
        tokio::task::spawn_blocking(move || {
            let dir = crate::layout::prepare_job_dir(&d, &s, SUPERVISOR_FILE)?;
            let log_path = dir.join(LOG_FILE);
            File::create(&log_path).map_err(|e| ExecError::io("create log", &log_path, e))?;
            // The job's cgroup (or process group) is recorded before anything runs, so the
            // tree can be killed whatever becomes of the supervisor.
            let record = containment.prepare(&dir, s.job_id);
            let process_path = dir.join(tree::PROCESS_FILE);
            record
                .write(&dir)
                .map_err(|e| ExecError::io("write", &process_path, e))?;
            Ok((dir, record))
        })
        .await
        .map_err(|e| ExecError::io("prepare", dir, std::io::Error::other(e)))?
    }

    /// After a server restart: what became of the job in `dir`? A job whose supervisor is gone
    /// without an exit record has its whole tree killed first (waiting at most
    /// [`tree::KILL_WAIT`]); should some process outlive that, the job is returned as running
    /// and its handle's `wait` keeps killing until the tree is gone.
    pub fn reattach(&self, dir: &Path) -> Reattach {
        // A folder another host's server launched (a shared data directory): its pids and
        // process groups are not this machine's, so nothing here is waited on or signalled.
        if read_exit(dir).is_none()
            && let Ok(Some(info)) = read_supervisor(dir)
            && let Some(why) = info.elsewhere()
        {
            return Reattach::Vanished(why);
        }
        match self.reattach_inner(dir) {
            Reattach::NeverStarted(why) => {
                // Nothing ran; remove the cgroup the launch made.
                if let Err(e) = tree::kill_tree(dir) {
                    tracing::warn!("{e}");
                }
                Reattach::NeverStarted(why)
            }
            Reattach::Vanished(why) => match tree::kill_tree(dir) {
                Ok(done) => Reattach::Vanished(format!("{why}; {done}")),
                Err(e) => {
                    tracing::warn!("{e}; will keep trying");
                    let info = read_supervisor(dir)
                        .ok()
                        .flatten()
                        .unwrap_or(SupervisorInfo::here(0, 0));
                    Reattach::Running(JobHandle {
                        dir: dir.to_path_buf(),
                        info,
                        child: None,
                        pidfd: None,
                    })
                }
            },
            other => other,
        }
    }

    fn reattach_inner(&self, dir: &Path) -> Reattach {
        if let Some(rec) = read_exit(dir) {
            return Reattach::Finished(rec);
        }
        let info = match read_supervisor(dir) {
            Ok(Some(info)) => info,
            Ok(None) => match claim_or_wait(dir) {
                Ok(info) => info,
                Err(r) => return r,
            },
            Err(e) => return Reattach::Vanished(e.to_string()),
        };
        if unix::is_alive(info.pid, info.start_time) {
            return Reattach::Running(JobHandle {
                dir: dir.to_path_buf(),
                info,
                child: None,
                pidfd: None,
            });
        }
        // It may have written exit.json and exited since we first looked.
        match read_exit(dir) {
            Some(rec) => Reattach::Finished(rec),
            None => Reattach::Vanished(vanished(info)),
        }
    }

    /// Ask the supervisor of the job in `dir` to cancel it (SIGTERM to the
    /// supervisor, which terminates the job's process group). A job that has
    /// already finished is not an error.
    pub fn cancel(&self, dir: &Path) -> Result<(), ExecError> {
        if read_exit(dir).is_some() {
            return Ok(());
        }
        let info = read_supervisor(dir)?.ok_or_else(|| ExecError::NotRunning {
            dir: dir.to_path_buf(),
            reason: format!("no {SUPERVISOR_FILE}"),
        })?;
        let not_running = || {
            if read_exit(dir).is_some() {
                Ok(())
            } else {
                Err(ExecError::NotRunning {
                    dir: dir.to_path_buf(),
                    reason: vanished(info),
                })
            }
        };
        if info.elsewhere().is_some() || !unix::is_alive(info.pid, info.start_time) {
            return not_running();
        }
        match unix::signal_process(info.pid, Signal::SIGTERM) {
            Ok(()) => Ok(()),
            Err(Errno::ESRCH) => not_running(),
            Err(source) => Err(ExecError::Signal {
                dir: dir.to_path_buf(),
                pid: info.pid,
                signal: "SIGTERM",
                source,
            }),
        }
    }
}

/// How reading the supervisor's first line went (`Err`: no line within [`READY_TIMEOUT`]).
type ReadyRead = Result<std::io::Result<()>, tokio::time::error::Elapsed>;

/// The supervisor prints "ready\n" (or "error: ...\n") on its stdout: that line, trimmed.
async fn read_ready(mut out: impl tokio::io::AsyncRead + Unpin) -> (ReadyRead, String) {
    let mut msg = Vec::new();
    let read = tokio::time::timeout(READY_TIMEOUT, async {
        let mut chunk = [0u8; 512];
        loop {
            let n = out.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            msg.extend_from_slice(&chunk[..n]);
            if msg.contains(&b'\n') {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    (read, String::from_utf8_lossy(&msg).trim().to_string())
}

/// Why a supervisor did not say `ready` (killing it if it still runs).
async fn not_ready(child: &mut tokio::process::Child, read: ReadyRead, text: &str) -> String {
    match read {
        Err(_) => {
            let _ = child.start_kill();
            format!("no answer within {READY_TIMEOUT:?}; killed it")
        }
        Ok(Err(e)) => {
            let _ = child.start_kill();
            format!("could not read its readiness pipe: {e}; killed it")
        }
        Ok(Ok(())) => {
            let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            let status = match status {
                Ok(Ok(st)) => st.to_string(),
                _ => {
                    let _ = child.start_kill();
                    "still running; killed it".to_string()
                }
            };
            if text.is_empty() {
                format!("it exited ({status}) without a word")
            } else {
                format!("{text} ({status})")
            }
        }
    }
}

/// A job folder with a spec but no `supervisor.json` and no `exit.json`: the server stopped
/// while launching it. Either its supervisor has claimed it (then wait, bounded, for the
/// supervisor to say who it is) or recovery claims it now, and the supervisor, if it still
/// comes, will refuse it.
// Called once per job at recovery; the large `Err` is the answer itself, not an error path.
#[allow(clippy::result_large_err)]
fn claim_or_wait(dir: &Path) -> Result<SupervisorInfo, Reattach> {
    let claim = dir.join(CLAIM_FILE);
    match crate::layout::claim(dir, CLAIMED_BY_RECOVERY) {
        Ok(true) => {
            return Err(Reattach::NeverStarted(format!(
                "the server stopped while launching the job, before its supervisor took it; \
                 claimed by recovery ({}), so it never ran there",
                claim.display()
            )));
        }
        Ok(false) => {}
        Err(e) => {
            return Err(Reattach::Vanished(format!(
                "cannot claim {}: {e}",
                claim.display()
            )));
        }
    }
    // Claimed by its supervisor (or by an earlier recovery): wait for supervisor.json while
    // the claimant lives.
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(rec) = read_exit(dir) {
            return Err(Reattach::Finished(rec));
        }
        if let Ok(Some(info)) = read_supervisor(dir) {
            return Ok(info);
        }
        let bytes = std::fs::read(&claim).unwrap_or_default();
        if bytes == CLAIMED_BY_RECOVERY {
            return Err(Reattach::NeverStarted(format!(
                "claimed by an earlier recovery ({}); it never ran there",
                claim.display()
            )));
        }
        let claimant: Option<SupervisorInfo> = serde_json::from_slice(&bytes).ok();
        let alive = claimant.is_some_and(|c| unix::is_alive(c.pid, c.start_time));
        if !alive || std::time::Instant::now() > deadline {
            return Err(Reattach::Vanished(match claimant {
                Some(c) if alive => format!(
                    "its supervisor (pid {}) claimed the job but did not start it within {READY_TIMEOUT:?}",
                    c.pid
                ),
                Some(c) => vanished(c),
                None => format!(
                    "its supervisor claimed the job ({}) and vanished before it started",
                    claim.display()
                ),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the job's supervisor through the launcher; `None` when nothing runs from this try
/// (the launcher is gone, or its supervisor died before it took the job): start it by exec.
async fn start_forked(
    launcher: &Arc<Launcher>,
    dir: &Path,
    spec: &JobSpec,
) -> Option<Result<JobHandle, ExecError>> {
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (secrets_r, secrets_w) = nix::unistd::pipe2(cloexec).ok()?;
    let (ready_r, ready_w) = nix::unistd::pipe2(cloexec).ok()?;
    let (l, d) = (launcher.clone(), dir.to_path_buf());
    let launched = tokio::task::spawn_blocking(move || l.launch(&d, secrets_r, ready_w))
        .await
        .ok()?;
    let forked = match launched {
        Ok(f) => Some(f),
        Err(LaunchError::NoAnswer(e)) => {
            // It may have forked: the readiness pipe tells.
            tracing::warn!(
                "the supervisor launcher did not answer ({e}); starting by exec from now on"
            );
            None
        }
        Err(LaunchError::Gone(e) | LaunchError::Fork(e)) => {
            tracing::warn!(
                "the supervisor launcher could not start a supervisor ({e}); starting it by exec"
            );
            return None;
        }
    };
    // Secrets first, as for an exec'd supervisor: it reads them to EOF before it takes the job.
    let secrets = serde_json::to_vec(&spec.secrets).expect("JobSecrets serialize");
    let tx = tokio::net::unix::pipe::Sender::from_owned_fd(secrets_w).ok()?;
    let fed = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut tx = tx;
        tx.write_all(&secrets).await
    });
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r).ok()?;
    let (read, text) = read_ready(rx).await;
    let _ = fed.await;
    if text == "ready" {
        let pid = forked.as_ref().map(|f| f.pid).unwrap_or(0);
        let d = dir.to_path_buf();
        let info = tokio::task::spawn_blocking(move || {
            read_supervisor(&d).ok().flatten().unwrap_or_else(|| {
                let start_time = unix::proc_stat(pid).map(|s| s.start_time).unwrap_or(0);
                SupervisorInfo::here(pid, start_time)
            })
        })
        .await
        .unwrap_or(SupervisorInfo::here(pid, 0));
        return Some(Ok(JobHandle {
            dir: dir.to_path_buf(),
            info,
            child: None,
            pidfd: forked.map(|f| f.pidfd),
        }));
    }
    let detail = match read {
        // The readiness pipe closed without a word: no supervisor holds it any more, so none
        // runs from this try (one that died after taking the job makes the exec'd one refuse).
        Ok(Ok(())) if text.is_empty() => return None,
        Ok(Ok(())) => text,
        Err(_) => format!("no answer within {READY_TIMEOUT:?}; killed it"),
        Ok(Err(e)) => format!("could not read its readiness pipe: {e}; killed it"),
    };
    if let Some(f) = &forked {
        // SAFETY: a signal through a pidfd we own (never a recycled pid).
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                f.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
    // Nothing should run; make sure, and remove the job's cgroup.
    let d = dir.to_path_buf();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || tree::kill_tree(&d)).await {
        tracing::warn!("{e}");
    }
    Some(Err(ExecError::NotReady {
        dir: dir.to_path_buf(),
        detail,
    }))
}

fn vanished(info: SupervisorInfo) -> String {
    format!(
        "supervisor vanished (pid {} no longer running) without an exit record",
        info.pid
    )
}

impl JobHandle {
    /// The job directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The supervisor's identity.
    pub fn supervisor(&self) -> SupervisorInfo {
        self.info
    }

    /// The job's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(layout::LOG_FILE)
    }

    /// Wait for the job to end. Dropping the handle instead leaves the job
    /// running (it can be re-attached later). The size of the log its supervisor wrote is
    /// counted in [`crate::meter`] once its exit record is read.
    pub async fn wait(self) -> Outcome {
        let outcome = self.wait_for_end().await;
        if let Outcome::Exited(rec) = &outcome {
            crate::meter::log_bytes_taken(rec.log_bytes);
        }
        outcome
    }

    async fn wait_for_end(self) -> Outcome {
        if let Some(pidfd) = self.pidfd {
            // SAFETY: the AsyncFd owns the pidfd, which stays open until it is dropped.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    pidfd,
                    tokio::io::Interest::READABLE,
                )
            };
            match fd {
                Ok(fd) => {
                    if let Err(e) = fd.readable().await {
                        tracing::warn!("waiting on supervisor pid {}: {e}", self.info.pid);
                    }
                    return match crate::layout::read_exit_async(&self.dir).await {
                        Some(rec) => Outcome::Exited(rec),
                        None => {
                            let why = "supervisor exited without an exit record".to_string();
                            lost(&self.dir, why).await
                        }
                    };
                }
                Err(e) => tracing::warn!(
                    "could not wait for supervisor pid {}: {e}; polling",
                    self.info.pid
                ),
            }
        }
        if let Some(mut child) = self.child {
            match child.wait().await {
                Ok(status) => {
                    return match crate::layout::read_exit_async(&self.dir).await {
                        Some(rec) => Outcome::Exited(rec),
                        None => {
                            lost(
                                &self.dir,
                                format!("supervisor exited with {status} without an exit record"),
                            )
                            .await
                        }
                    };
                }
                // Could not wait on our child (should not happen): poll.
                Err(e) => tracing::warn!(
                    "could not wait for supervisor pid {}: {e}; polling",
                    self.info.pid
                ),
            }
        }
        // A supervisor that is not our child (re-attached): poll, with the file and /proc
        // reads on the blocking pool.
        loop {
            let (dir, info) = (self.dir.clone(), self.info);
            let look = tokio::task::spawn_blocking(move || look(&dir, info)).await;
            match look {
                Ok(Look::Running) => {}
                Ok(Look::Exited(rec)) => return Outcome::Exited(rec),
                Ok(Look::Gone) => return lost(&self.dir, vanished(self.info)).await,
                Err(e) => tracing::warn!("looking at {}: {e}; trying again", self.dir.display()),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// What a poll of a re-attached job finds.
enum Look {
    Running,
    Exited(ExitRecord),
    /// The supervisor is gone without an exit record.
    Gone,
}

fn look(dir: &Path, info: SupervisorInfo) -> Look {
    if let Some(rec) = read_exit(dir) {
        return Look::Exited(rec);
    }
    if unix::is_alive(info.pid, info.start_time) {
        return Look::Running;
    }
    // It may have written exit.json and exited since the first look.
    match read_exit(dir) {
        Some(rec) => Look::Exited(rec),
        None => Look::Gone,
    }
}

/// The job's supervisor is gone without an exit record: kill the job's whole tree, retrying
/// until it is gone, and only then report it lost (so a retry never overlaps it).
async fn lost(dir: &Path, why: String) -> Outcome {
    loop {
        let d = dir.to_path_buf();
        match tokio::task::spawn_blocking(move || tree::kill_tree(&d)).await {
            Ok(Ok(done)) => return Outcome::Lost(format!("{why}; {done}")),
            Ok(Err(e)) => tracing::warn!("{e}; trying again"),
            Err(e) => {
                return Outcome::Lost(format!(
                    "{why}; could not make sure its processes are dead: {e}"
                ));
            }
        }
    }
}
