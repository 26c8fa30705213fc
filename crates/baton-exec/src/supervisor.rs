//! The per-job supervisor: `baton __supervise <job-dir>` calls [`main`].
//!
//! It is started by [`LocalExecutor`](crate::LocalExecutor) in its own
//! session, so it outlives the server. It
//!
//! 1. installs its signal handling (SIGTERM/SIGINT = cancel, SIGHUP ignored),
//!    writes `supervisor.json` (pid + start time) and reports readiness,
//! 2. runs `bash -eo pipefail <dir>/script.sh` in `<dir>/work`, in a new
//!    process group and in the job's cgroup when `process.json` names one (the
//!    child starts inside it, see [`crate::spawn`], and dies with the supervisor:
//!    `PR_SET_PDEATHSIG`),
//!    stdin `/dev/null`, stdout and stderr into a pipe each,
//! 3. appends both pipes, in the order their bytes arrive, to ONE `<dir>/log` (with
//!    `splice(2)`, pipe to file inside the kernel, for a stream with no secret to mask; else
//!    through a fixed-size buffer), and notes in `<dir>/log.idx` when bytes arrived and from
//!    which stream ([`crate::logidx`]; the mark is written before its bytes),
//! 4. enforces the timeout and cancellation on the whole tree (cgroup, or
//!    process group; SIGTERM, SIGKILL after `kill_grace`); when the script exits
//!    it SIGKILLs the tree once so backgrounded stragglers cannot keep the job
//!    (or the pipe) alive, and removes the job's cgroup,
//! 5. writes `<dir>/exit.json` durably and exits 0.
//!
//! Secrets: when stdin is a pipe, the supervisor first reads the job's [`JobSecrets`] from it
//! (JSON, until EOF) and holds them in memory only: they are set in the job's environment and
//! masked in its log, and never written beside the job.
//!
//! Readiness protocol: the executor gives the supervisor a pipe as stdout.
//! Once `supervisor.json` is written the supervisor prints `ready\n` there
//! and points stdout at `/dev/null`; if it fails before that it prints
//! `error: ...\n` and exits 1 without running anything. Run by hand, it just
//! prints `ready`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use chrono::Utc;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep_until};

use crate::job::{ExitRecord, JobSecrets, JobSpec};
use crate::layout::{
    CLAIM_FILE, EXIT_FILE, LOG_FILE, OUT_DIR, SCRIPT_FILE, SPEC_FILE, SUPERVISOR_FILE,
    SupervisorInfo, WORK_DIR, try_read_json, write_atomic,
};
use crate::logidx::{MarkWriter, Stream};
use crate::spawn::{JobCommand, JobProcess};
use crate::tree::{ProcessRecord, Tree};
use crate::unix;

/// Size of the copy buffer: memory stays flat whatever the job prints.
const COPY_BUF: usize = 64 * 1024;
/// Pipe capacity we ask for (best effort).
const PIPE_SIZE: i32 = 1024 * 1024;
/// After the script exited and its group was killed, how long we keep
/// reading the pipe before giving up on a writer that escaped the group.
const DRAIN_GRACE: Duration = Duration::from_secs(3);
/// How long the supervisor waits for a killed cgroup to empty before removing it.
const CGROUP_EMPTY_WAIT: Duration = Duration::from_secs(5);

/// Supervise the job in `dir`; returns the process exit status (0 once
/// `exit.json` is written). Builds its own single-threaded tokio runtime, so
/// call it from a plain `main`, not from inside a runtime.
pub fn main(dir: &Path) -> i32 {
    // Leave the server's session and process group first, so that nothing aimed at the
    // server (a terminal's ^C, a service manager's group kill) reaches the job. EPERM means
    // we already lead a session.
    if let Err(e) = unix::new_session()
        && e.raw_os_error() != Some(nix::libc::EPERM)
    {
        return not_ready(&format!("could not start a new session: {e}"));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return not_ready(&format!("could not build runtime: {e}")),
    };
    rt.block_on(run(dir))
}

fn not_ready(msg: &str) -> i32 {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "error: {msg}");
    let _ = out.flush();
    1
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    _hup: tokio::signal::unix::Signal,
}

async fn run(dir: &Path) -> i32 {
    // Handlers first: from the moment supervisor.json exists, a SIGTERM
    // means "cancel", never "die without an exit record". (Handled, not
    // ignored, so the job's bash gets default dispositions back on exec.)
    let mut sigs = match (|| {
        Ok::<_, io::Error>(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            _hup: signal(SignalKind::hangup())?,
        })
    })() {
        Ok(s) => s,
        Err(e) => return not_ready(&format!("could not install signal handlers: {e}")),
    };
    let secrets = match read_secrets() {
        Ok(s) => s,
        Err(e) => return not_ready(&format!("could not read the job's secrets on stdin: {e}")),
    };
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let exit_path = dir.join(EXIT_FILE);
    if exit_path.exists() {
        return not_ready(&format!(
            "{} already exists: this job already ran",
            exit_path.display()
        ));
    }
    let sup_path = dir.join(SUPERVISOR_FILE);
    if let Ok(Some(other)) = try_read_json::<SupervisorInfo>(&sup_path)
        && unix::is_alive(other.pid, other.start_time)
    {
        return not_ready(&format!(
            "{} names a live supervisor (pid {}): this job is already running",
            sup_path.display(),
            other.pid
        ));
    }
    let me = unix::self_pid();
    let info = match unix::proc_stat(me) {
        Ok(st) => SupervisorInfo::here(me, st.start_time),
        Err(e) => return not_ready(&format!("could not read /proc/{me}/stat: {e}")),
    };
    let json = serde_json::to_vec(&info).expect("SupervisorInfo serializes");
    // Take the job before anything runs: if the server stopped while launching us, its
    // recovery may have claimed the job already (it then runs again from the queue).
    let claim = dir.join(CLAIM_FILE);
    match crate::layout::claim(&dir, &json) {
        Ok(true) => {}
        Ok(false) => {
            return not_ready(&format!(
                "{} exists: this job was already taken (by its server's recovery after a \
                 crash, or by another supervisor); nothing ran here",
                claim.display()
            ));
        }
        Err(e) => return not_ready(&format!("could not claim {}: {e}", claim.display())),
    }
    let json = serde_json::to_vec(&info).expect("SupervisorInfo serializes");
    if let Err(e) = write_atomic(&sup_path, &json, false) {
        return not_ready(&format!("could not write {}: {e}", sup_path.display()));
    }
    {
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"ready\n");
        let _ = out.flush();
    }
    let _ = unix::stdout_to_dev_null();

    let (rec, durable) = supervise(&dir, secrets, &mut sigs).await;
    let json = serde_json::to_vec_pretty(&rec).expect("ExitRecord serializes");
    match write_atomic(&exit_path, &json, durable) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "baton supervisor: could not write {}: {e}",
                exit_path.display()
            );
            1
        }
    }
}

/// The job's secrets from stdin when it is a pipe (the executor writes them and closes it);
/// none otherwise (run by hand).
fn read_secrets() -> io::Result<JobSecrets> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let stdin = io::stdin();
    let st = nix::sys::stat::fstat(stdin.as_fd()).map_err(io::Error::from)?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFIFO {
        return Ok(JobSecrets::default());
    }
    let mut bytes = Vec::new();
    stdin.lock().take(16 << 20).read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        // The executor always writes them (`{}` for none): an empty pipe means the server went
        // away before handing them over, and the job must not run without them.
        return Err(io::Error::other(
            "the pipe closed before the server wrote them (did the server stop?); nothing ran",
        ));
    }
    serde_json::from_slice(&bytes).map_err(io::Error::from)
}

/// Everything after readiness; every failure ends up in the record. Also says whether the
/// record must be durable (not for an ephemeral job; a job whose spec could not be read is).
async fn supervise(dir: &Path, secrets: JobSecrets, sigs: &mut Signals) -> (ExitRecord, bool) {
    let mut durable = true;
    let mut rec = ExitRecord {
        exit_code: None,
        signal: None,
        timed_out: false,
        canceled: false,
        error: None,
        started_at: Utc::now(),
        ended_at: Utc::now(),
        log_bytes: 0,
        max_rss_kb: None,
        missing_artifacts: Vec::new(),
    };
    let log_path = dir.join(LOG_FILE);
    match prepare(dir, secrets) {
        Ok((spec, log, child, pipes, tree)) => {
            durable = !spec.ephemeral;
            rec.started_at = Utc::now();
            run_job(&spec, &log_path, &log, child, pipes, &tree, sigs, &mut rec).await;
            keep_artifacts(dir, &spec, &log, &mut rec);
            if durable {
                sync_log(&log, &log_path, &mut rec);
            }
            if tree.cgroup().is_some()
                && let Err(e) = tree.kill_and_wait(CGROUP_EMPTY_WAIT)
            {
                rec.error.get_or_insert(e);
            }
            log_deleted(&log, &log_path, &mut rec);
        }
        Err(e) => {
            // Nothing runs: remove the job's cgroup, if the executor made one.
            if let Ok(ProcessRecord {
                cgroup: Some(cg), ..
            }) = ProcessRecord::read(dir)
            {
                crate::tree::remove_cgroup(&cg);
            }
            rec.error = Some(e);
        }
    }
    rec.log_bytes = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    rec.ended_at = Utc::now();
    rec.max_rss_kb = unix::peak_rss_kb();
    (rec, durable)
}

/// `artifacts:`: the files of `work/` the globs match go into `out/`; what matched nothing is
/// said in the log (and fails the job when required).
fn keep_artifacts(dir: &Path, spec: &JobSpec, mut log: &File, rec: &mut ExitRecord) {
    let found = crate::keep::gather(dir, &spec.artifacts);
    let lines = found.log_lines(spec.artifacts_required);
    if !lines.is_empty() {
        let _ = log.write_all(format!("\n{lines}").as_bytes());
    }
    if spec.artifacts_required {
        rec.missing_artifacts = found.unmatched;
    }
}

/// Makes the log durable before the exit record is written (every byte the job printed, and the
/// artifact lines). An empty log has nothing to sync: the fsync of the job folder after
/// `exit.json`'s rename makes its name durable; a failure is the job's error.
fn sync_log(log: &File, log_path: &Path, rec: &mut ExitRecord) {
    if log.metadata().is_ok_and(|m| m.len() == 0) {
        return;
    }
    if let Err(e) = log.sync_data() {
        rec.error
            .get_or_insert(format!("could not sync log {}: {e}", log_path.display()));
    }
}

/// A log file unlinked while the job ran (nothing left to read it by) is named in the record:
/// the job is `broken`, its output is gone.
fn log_deleted(log: &File, log_path: &Path, rec: &mut ExitRecord) {
    if !log.metadata().is_ok_and(|m| m.nlink() == 0) {
        return;
    }
    let how = match (rec.exit_code, rec.signal) {
        (Some(c), _) => format!("exited {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "did not run to its end".to_string(),
    };
    let msg = format!(
        "log file {} was deleted while the job ran; its output is lost (the command {how})",
        log_path.display()
    );
    rec.error = Some(match rec.error.take() {
        Some(other) => format!("{msg}; {other}"),
        None => msg,
    });
}

/// Read the spec, open the log, write the script, start bash in the job's tree.
fn prepare(
    dir: &Path,
    secrets: JobSecrets,
) -> Result<(JobSpec, File, JobProcess, [OwnedFd; 2], Tree), String> {
    let spec_path = dir.join(SPEC_FILE);
    let mut spec: JobSpec = match try_read_json(&spec_path) {
        Ok(Some(s)) => s,
        Ok(None) => return Err(format!("job spec {} is missing", spec_path.display())),
        Err(e) => return Err(e.to_string()),
    };
    spec.secrets = secrets;
    let log_path = dir.join(LOG_FILE);
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log_path)
        .map_err(|e| format!("could not open log {}: {e}", log_path.display()))?;
    let script_path = dir.join(SCRIPT_FILE);
    std::fs::write(&script_path, spec.script.as_bytes())
        .map_err(|e| format!("could not write script {}: {e}", script_path.display()))?;
    // stdout and stderr apart, so the log can tell them apart; one reader keeps one order.
    let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("could not create output pipe: {e}"))?;
    let (rx2, tx2) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("could not create error pipe: {e}"))?;
    unix::set_pipe_size(&rx, PIPE_SIZE);
    unix::set_pipe_size(&rx2, PIPE_SIZE);
    let out_dir: PathBuf = dir.join(OUT_DIR);
    let rec = ProcessRecord::read(dir).map_err(|e| e.to_string())?;
    let mut tree = Tree::new(dir, rec);
    let (program, args): (PathBuf, Vec<OsString>) = match direct_command(&spec) {
        Some(mut argv) => {
            let program = argv.remove(0);
            (
                program,
                argv.into_iter().map(PathBuf::into_os_string).collect(),
            )
        }
        None => (
            "bash".into(),
            vec![
                "-eo".into(),
                "pipefail".into(),
                script_path.into_os_string(),
            ],
        ),
    };
    // The supervisor's environment, less `unset_env`, plus the job's variables.
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for name in &spec.unset_env {
        env.remove(OsStr::new(name));
    }
    let vars = spec.env.iter().chain(spec.secrets.env.iter());
    env.extend(vars.map(|(k, v)| (k.into(), v.into())));
    for (k, v) in [
        ("BATON_RUN_ID", OsString::from(spec.run_id.to_string())),
        ("BATON_JOB_ID", spec.job_id.to_string().into()),
        ("BATON_TASK", spec.task.clone().into()),
        ("BATON_OUTPUT_DIR", out_dir.into_os_string()),
    ] {
        env.insert(k.into(), v);
    }
    let cmd = JobCommand {
        program,
        args,
        env,
        cwd: dir.join(WORK_DIR),
        stdout: tx,
        stderr: tx2,
        cgroup: tree.cgroup().map(Path::to_path_buf),
        parent: unix::self_pid(),
    };
    // `spawn` takes (and drops) our copies of the pipes' write ends, so the reader sees EOF.
    let child = crate::spawn::spawn(cmd).map_err(|e| match tree.cgroup() {
        Some(cg) => format!("could not start bash: {e} (in cgroup {})", cg.display()),
        None => format!("could not start bash: {e}"),
    })?;
    tree.set_group(child.id() as i32);
    if let Err(e) = tree.record().write(dir) {
        // The cgroup (or the BATON_OUTPUT_DIR scan) still finds the tree.
        eprintln!("baton supervisor: could not record the job's process group: {e}");
    }
    Ok((spec, log, child, [rx, rx2], tree))
}

/// A script that is one simple command (words of plain characters, no quotes, variables,
/// globs, redirections or operators) whose program is an executable file on `PATH` runs
/// without a shell: same exit status and output as under `bash -eo pipefail`, one process
/// spawn fewer. Anything else (builtins such as `exit`, shell syntax) goes to bash.
pub(crate) fn direct_command(spec: &JobSpec) -> Option<Vec<PathBuf>> {
    let line = spec.script.trim();
    if line.is_empty() || line.contains('\n') {
        return None;
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:,+@%-".contains(c);
    let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
    if !words.iter().all(|w| w.chars().all(plain)) {
        return None;
    }
    let program = resolve(words[0], spec)?;
    let mut argv = vec![program];
    argv.extend(words[1..].iter().map(PathBuf::from));
    Some(argv)
}

fn resolve(program: &str, spec: &JobSpec) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        // Relative paths are relative to the work dir; leave those to bash.
        let p = PathBuf::from(program);
        return (p.is_absolute() && executable(&p)).then_some(p);
    }
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())?;
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// The job's output on its way into the log: a masker per stream (a secret is masked however
/// the two streams interleave), the log's length, and its index.
struct Output<'a> {
    log: &'a File,
    log_path: &'a Path,
    len: u64,
    maskers: [crate::mask::Masker; 2],
    marks: MarkWriter,
    /// The log opened again without `O_APPEND` (which `splice(2)` refuses), for moving a
    /// stream's bytes from its pipe into the log in the kernel when it has no secret to mask;
    /// `None` once splicing failed (the bytes then go through `read`/`write`).
    direct: Option<File>,
}

impl Output<'_> {
    /// Masks `bytes` of `stream` and appends what is safe to write, its mark first.
    fn push(&mut self, stream: Stream, bytes: &[u8], rec: &mut ExitRecord) {
        let masker = &mut self.maskers[stream as usize];
        let masked;
        let bytes = if masker.is_empty() {
            bytes
        } else {
            masked = masker.push(bytes);
            &masked[..]
        };
        self.write(stream, bytes, rec);
    }

    fn write(&mut self, stream: Stream, bytes: &[u8], rec: &mut ExitRecord) {
        if bytes.is_empty() {
            return;
        }
        self.marks.note(self.len, stream);
        let mut log = self.log;
        match log.write_all(bytes) {
            Ok(()) => self.len += bytes.len() as u64,
            // Keep draining (and discarding) so the job does not block on a full pipe; the
            // error is recorded.
            Err(e) => {
                self.len = log.metadata().map_or(self.len, |m| m.len());
                rec.error.get_or_insert(format!(
                    "could not write log {}: {e}",
                    self.log_path.display()
                ));
            }
        }
    }

    /// Takes what pipe `fd` of `stream` holds into the log: `Ok(0)` at its end, `WouldBlock`
    /// when it is empty. Unmasked bytes are spliced (the mark first, for exactly the bytes the
    /// pipe holds then); masked ones, and everything once splicing failed, are read into `buf`
    /// and written.
    fn take(
        &mut self,
        fd: std::os::fd::RawFd,
        stream: Stream,
        buf: &mut [u8],
        rec: &mut ExitRecord,
    ) -> io::Result<usize> {
        if self.maskers[stream as usize].is_empty()
            && let Some(direct) = &self.direct
        {
            let avail = unix::pipe_bytes(fd);
            if avail > 0 {
                self.marks.note(self.len, stream);
                match unix::splice_all(fd, direct.as_raw_fd(), &mut self.len, avail) {
                    Ok(()) => return Ok(avail),
                    // The rest is read and written below, which records a write error.
                    Err(_) => self.direct = None,
                }
            }
        }
        // SAFETY: reads into `buf`, which outlives the call.
        let n = unsafe { nix::libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        self.push(stream, &buf[..n], rec);
        Ok(n)
    }

    /// Writes what the maskers still hold (the log is synced later, after the artifact lines:
    /// `sync_log`).
    fn finish(mut self, rec: &mut ExitRecord) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let tail = self.maskers[stream as usize].finish();
            self.write(stream, &tail, rec);
        }
    }
}

type Pipe = Option<tokio::net::unix::pipe::Receiver>;

/// Resolves when `pipe` may have bytes (or its end) to take. Pending forever without a pipe.
async fn readable(pipe: &Pipe) -> io::Result<()> {
    match pipe {
        Some(p) => p.readable().await,
        None => std::future::pending().await,
    }
}

/// Takes what `pipe` holds into the log; its end (or a failure) closes it.
fn took(
    ready: io::Result<()>,
    stream: Stream,
    pipe: &mut Pipe,
    buf: &mut [u8],
    output: &mut Output<'_>,
    rec: &mut ExitRecord,
) {
    let Some(p) = pipe.as_ref() else { return };
    let r = ready.and_then(|()| p.try_io(|| output.take(p.as_raw_fd(), stream, buf, rec)));
    match r {
        Ok(0) => *pipe = None,
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) => {}
        Err(e) => {
            rec.error
                .get_or_insert(format!("could not read output pipe: {e}"));
            *pipe = None;
        }
    }
}

/// Copy output, enforce timeout / cancel, reap. Fills the exit fields of `rec`.
#[allow(clippy::too_many_arguments)]
async fn run_job(
    spec: &JobSpec,
    log_path: &Path,
    log: &File,
    mut child: JobProcess,
    pipes: [OwnedFd; 2],
    tree: &Tree,
    sigs: &mut Signals,
    rec: &mut ExitRecord,
) {
    let pgid = child.id() as i32;
    let mut exited_rx = exit_seen(pgid);

    let [out_fd, err_fd] = pipes;
    let mut open = |fd| match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(p) => Some(p),
        Err(e) => {
            rec.error = Some(format!("could not read output pipe: {e}"));
            None
        }
    };
    let (mut out_pipe, mut err_pipe) = (open(out_fd), open(err_fd));
    let mut out_buf = vec![0u8; COPY_BUF];
    let mut err_buf = vec![0u8; COPY_BUF];
    let len = log.metadata().map_or(0, |m| m.len());
    let mut output = Output {
        log,
        log_path,
        len,
        maskers: [0, 1].map(|_| crate::mask::Masker::new(&spec.secrets.mask)),
        marks: MarkWriter::open(log_path, len),
        direct: OpenOptions::new().write(true).open(log_path).ok(),
    };
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let timeout_at = spec.timeout.map(|t| Instant::now() + t);
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let mut status: Option<ExitStatus> = None;

    loop {
        if out_pipe.is_none() && err_pipe.is_none() && status.is_some() {
            break;
        }
        let alive = status.is_none();
        tokio::select! {
            r = readable(&out_pipe) => {
                took(r, Stream::Stdout, &mut out_pipe, &mut out_buf, &mut output, rec);
            },
            r = readable(&err_pipe) => {
                took(r, Stream::Stderr, &mut err_pipe, &mut err_buf, &mut output, rec);
            },
            _ = &mut exited_rx, if alive => {
                // Stragglers (backgrounded children) die with the script; in a cgroup, all
                // of them, else the group (and, after a cancel or timeout, the tagged ones).
                tree.signal(Signal::SIGKILL, rec.canceled || rec.timed_out);
                match child.wait() {
                    Ok(st) => status = Some(st),
                    Err(e) => {
                        rec.error.get_or_insert(format!("could not reap bash (pid {pgid}): {e}"));
                        status = Some(ExitStatus::from_raw(0x7f00));
                    }
                }
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            },
            _ = sigs.term.recv() => cancel(rec, alive, tree, spec, &mut kill_at),
            _ = sigs.int.recv() => cancel(rec, alive, tree, spec, &mut kill_at),
            _ = sleep_until(timeout_at.unwrap_or(far)), if alive && timeout_at.is_some() && !rec.timed_out => {
                rec.timed_out = true;
                tree.signal(Signal::SIGTERM, true);
                kill_at.get_or_insert(Instant::now() + spec.kill_grace);
            },
            _ = sleep_until(kill_at.unwrap_or(far)), if alive && kill_at.is_some() => {
                tree.signal(Signal::SIGKILL, true);
                kill_at = None;
            },
            _ = sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                // Someone outside the group holds a pipe open; stop here.
                break;
            },
        }
    }

    if let Some(st) = status {
        rec.exit_code = st.code();
        rec.signal = st.signal();
    }
    output.finish(rec);
}

/// Resolves once process `pgid` has exited, WITHOUT reaping it (WNOWAIT): while the zombie
/// exists its pid — the group id — cannot be reused, so killing the group right after the
/// exit cannot hit a stranger.
fn exit_seen(pgid: i32) -> tokio::sync::oneshot::Receiver<()> {
    let (exited_tx, exited_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitid(
            Id::Pid(Pid::from_raw(pgid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {}
        let _ = exited_tx.send(());
    });
    exited_rx
}

fn cancel(
    rec: &mut ExitRecord,
    alive: bool,
    tree: &Tree,
    spec: &JobSpec,
    kill_at: &mut Option<Instant>,
) {
    // A cancel that arrives after the script exited changes nothing.
    if rec.canceled || !alive {
        return;
    }
    rec.canceled = true;
    tree.signal(Signal::SIGTERM, true);
    kill_at.get_or_insert(Instant::now() + spec.kill_grace);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str) -> JobSpec {
        JobSpec {
            run_id: 1,
            job_id: 1,
            task: "t".into(),
            script: script.into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            timeout: None,
            kill_grace: Duration::from_secs(1),
            secrets: Default::default(),
            container: None,
            checkout: None,
            unset_env: Vec::new(),
            artifacts: Vec::new(),
            artifacts_required: false,
            ephemeral: false,
        }
    }

    #[test]
    fn simple_commands_skip_the_shell() {
        let argv = direct_command(&spec("true")).expect("direct");
        assert!(argv[0].ends_with("true"));
        let argv = direct_command(&spec("  /bin/echo a-b c.d  \n")).expect("direct");
        assert_eq!(argv.len(), 3);
    }

    #[test]
    fn shell_syntax_and_builtins_go_to_bash() {
        for s in [
            "exit 3",
            "echo $HOME",
            "echo 'a b'",
            "ls *.rs",
            "true && false",
            "echo a > f",
            "A=1 env",
            "true\nfalse",
            "./build.sh",
            "no-such-program-here",
        ] {
            assert!(direct_command(&spec(s)).is_none(), "{s:?} must go to bash");
        }
    }
}
