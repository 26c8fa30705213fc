//! The monitor of a job's container: follows its output into the job's `log` (masking
//! secrets), enforces the timeout, and once the container has exited writes `exit.json` and
//! removes it. The log file is owned by one blocking thread per job ([`OnThread`]): the async
//! task never writes or syncs a file itself.
//!
//! Each pass re-reads the engine's log from its start through a fresh [`Masker`] and skips what
//! `log` already has: a resumed stream (a broken connection, a restarted server) neither loses
//! nor repeats a byte.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerState;
use bollard::query_parameters::LogsOptionsBuilder;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::time::{Instant, sleep_until};

use super::{CANCELED_MARK, ContainerInfo, ENGINE_PATIENCE, TIMED_OUT_MARK, remove, stop};
use crate::blocking::OnThread;
use crate::job::{ExitRecord, JobSpec, Outcome};
use crate::layout::{EXIT_FILE, LOG_FILE, SPEC_FILE, write_atomic};
use crate::logidx::{MarkWriter, Stream, now_ms};
use crate::mask::Masker;

/// A job's log as its writer thread sees it.
pub(super) struct LogFile {
    file: File,
    path: PathBuf,
    /// The file's length.
    pub(super) len: u64,
    /// Bytes of the current pass still to drop (the log has them already).
    skip: u64,
    /// The first write that failed.
    pub(super) error: Option<String>,
    /// The log's index: when the engine says each line was written, and on which stream.
    marks: MarkWriter,
}

impl LogFile {
    /// Creates (or empties) the log at `path`.
    pub(super) fn create(path: &Path) -> std::io::Result<LogFile> {
        let file = File::create(path)?;
        Ok(Self::with(file, path, 0))
    }

    /// Opens the log at `path` for appending.
    pub(super) fn append(path: &Path) -> std::io::Result<LogFile> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Self::with(file, path, len))
    }

    fn with(file: File, path: &Path, len: u64) -> LogFile {
        LogFile {
            file,
            path: path.to_path_buf(),
            len,
            skip: 0,
            error: None,
            marks: MarkWriter::open(path, len),
        }
    }

    /// A new pass over the engine's log, whose first byte is the log's byte `offset`.
    fn begin_pass(&mut self, offset: u64) {
        self.skip = self.len.saturating_sub(offset);
    }

    /// Appends `bytes` of the current pass, first dropping those the log has already.
    pub(super) fn append_pass(&mut self, bytes: &[u8]) {
        self.append_pass_from(bytes, now_ms(), Stream::Stdout);
    }

    /// As [`append_pass`](Self::append_pass), for bytes written at `time_ms` on `stream`.
    pub(super) fn append_pass_from(&mut self, bytes: &[u8], time_ms: i64, stream: Stream) {
        let drop_n = usize::try_from(self.skip)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.skip -= drop_n as u64;
        self.write(&bytes[drop_n..], time_ms, stream);
    }

    /// Appends `bytes` as they are (Baton's own lines).
    pub(super) fn note(&mut self, bytes: &[u8]) {
        self.write(bytes, now_ms(), Stream::Stdout);
    }

    fn write(&mut self, bytes: &[u8], time_ms: i64, stream: Stream) {
        if bytes.is_empty() {
            return;
        }
        self.marks.note_at(self.len, time_ms, stream);
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                crate::meter::log_bytes_taken(bytes.len() as u64);
            }
            Err(e) => {
                self.error
                    .get_or_insert(format!("could not write log {}: {e}", self.path.display()));
            }
        }
    }

    fn sync(&mut self) {
        if let Err(e) = self.file.sync_data() {
            self.error
                .get_or_insert(format!("could not sync log {}: {e}", self.path.display()));
        }
    }
}

/// How a pass over the engine's log ended.
enum Pass {
    /// Read the log again (the stream broke, or one final plain read is due).
    Again,
    /// The container has exited.
    Over(ContainerState),
    Lost(String),
}

struct Monitor {
    docker: Docker,
    dir: PathBuf,
    spec: JobSpec,
    info: ContainerInfo,
    log: OnThread<LogFile>,
    timeout_at: Option<Instant>,
    timed_out: bool,
    failures: u32,
    /// A followed stream may end when the container stops, before its last bytes (a final
    /// line without a newline) are delivered: once it has exited, one more plain read collects
    /// the whole log, and the skipping drops what is already there.
    final_pass: bool,
}

/// Follows the container to its end: log, timeout, exit record, removal.
pub(super) async fn monitor(
    docker: Docker,
    dir: PathBuf,
    spec: JobSpec,
    info: ContainerInfo,
) -> Outcome {
    let log_path = dir.join(LOG_FILE);
    let (lp, marker) = (log_path.clone(), dir.join(TIMED_OUT_MARK));
    let opened = tokio::task::spawn_blocking(move || (LogFile::append(&lp), marker.exists()))
        .await
        .map_err(std::io::Error::other);
    let (log, timed_out) = match opened {
        Ok((Ok(log), timed_out)) => (log, timed_out),
        Ok((Err(e), _)) | Err(e) => {
            // Without a log the job's output would be lost: stop it and say why.
            stop(docker.clone(), info.name.clone(), spec.kill_grace).await;
            let mut rec = empty_record(&info);
            rec.error = Some(format!("could not open log {}: {e}", log_path.display()));
            return finish(&docker, &dir, &info, rec).await;
        }
    };
    let timeout_at = spec.timeout.map(|t| {
        let elapsed = (Utc::now() - info.started_at).to_std().unwrap_or_default();
        Instant::now() + t.saturating_sub(elapsed)
    });
    let mut m = Monitor {
        docker,
        dir,
        spec,
        info,
        log: OnThread::new(log),
        timeout_at,
        timed_out,
        failures: 0,
        final_pass: false,
    };
    loop {
        match m.pass().await {
            Pass::Again => {}
            Pass::Over(state) => return m.conclude(state).await,
            Pass::Lost(why) => return Outcome::Lost(why),
        }
    }
}

fn empty_record(info: &ContainerInfo) -> ExitRecord {
    ExitRecord {
        exit_code: None,
        signal: None,
        timed_out: false,
        canceled: false,
        error: None,
        started_at: info.started_at,
        ended_at: info.started_at,
        log_bytes: 0,
        max_rss_kb: None,
        missing_artifacts: Vec::new(),
    }
}

impl Monitor {
    /// One read of the engine's log (followed, or plain for the final pass), then a look at
    /// the container.
    async fn pass(&mut self) -> Pass {
        let offset = self.info.log_offset;
        self.log.post(move |f| f.begin_pass(offset)).await;
        let mut masker = Masker::new(&self.spec.secrets.mask);
        let options = LogsOptionsBuilder::new()
            .follow(!self.final_pass)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .build();
        let (docker, name) = (self.docker.clone(), self.info.name.clone());
        let mut stream = docker.logs(&name, Some(options));
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let mut stream_error = None;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(out)) => {
                        let stream = match out {
                            LogOutput::StdErr { .. } => Stream::Stderr,
                            _ => Stream::Stdout,
                        };
                        let (time_ms, body) = split_timestamp(out.as_ref());
                        let bytes = masker.push(body);
                        self.log.post(move |f| f.append_pass_from(&bytes, time_ms, stream)).await;
                    }
                    Some(Err(e)) => { stream_error = Some(e); break; }
                    None => break,
                },
                _ = sleep_until(self.timeout_at.unwrap_or(far)),
                    if self.timeout_at.is_some() && !self.timed_out => self.time_out().await,
            }
        }
        // A stream that ended early must not flush the masker's held-back bytes: the re-read
        // decides whether they belong to a secret.
        let tail = masker.finish();
        let pass = self.look(stream_error).await;
        if matches!(pass, Pass::Over(_)) {
            self.log.post(move |f| f.append_pass(&tail)).await;
        }
        pass
    }

    /// The timeout expired: mark it (before the stop, so the reason survives a restart) and
    /// stop the container.
    async fn time_out(&mut self) {
        self.timed_out = true;
        let marker = self.dir.join(TIMED_OUT_MARK);
        self.log
            .post(move |_| {
                let _ = write_atomic(&marker, b"", false);
            })
            .await;
        let (docker, name) = (self.docker.clone(), self.info.name.clone());
        tokio::spawn(stop(docker, name, self.spec.kill_grace));
    }

    /// Is it over, or did only the stream break?
    async fn look(&mut self, stream_error: Option<BollardError>) -> Pass {
        let name = &self.info.name;
        match self.docker.inspect_container(name, None).await {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                if state.running == Some(true) {
                    match stream_error {
                        Some(e) => {
                            tracing::warn!("log stream of container {name} broke: {e}; resuming")
                        }
                        None => tracing::debug!("log stream of {name} ended early"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return Pass::Again;
                }
                if let Some(e) = stream_error {
                    // Exited, but the last read failed: read once more to collect the end.
                    tracing::warn!("log stream of container {name} broke: {e}; re-reading");
                    self.failures += 1;
                    if self.failures < ENGINE_PATIENCE {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return Pass::Again;
                    }
                }
                if !self.final_pass {
                    self.final_pass = true;
                    return Pass::Again;
                }
                Pass::Over(state)
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Pass::Lost(format!(
                "container {name} disappeared before it was seen to exit"
            )),
            Err(e) => {
                self.failures += 1;
                if self.failures >= ENGINE_PATIENCE {
                    return Pass::Lost(format!(
                        "the Docker engine stopped answering about container {name}: {e}"
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Pass::Again
            }
        }
    }

    /// The container exited in `state`: complete and sync the log, write the exit record.
    async fn conclude(self, state: ContainerState) -> Outcome {
        let mut rec = empty_record(&self.info);
        rec.exit_code = state.exit_code.and_then(|c| i32::try_from(c).ok());
        let oom = state.oom_killed == Some(true);
        if oom {
            rec.signal = Some(9);
        }
        if let Some(f) = state
            .finished_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            rec.ended_at = f.with_timezone(&Utc);
        }
        let dir = self.dir.clone();
        let (canceled, timed_out) = self
            .log
            .call(move |f| {
                if oom {
                    f.note(b"\nbaton: the container ran out of memory and was killed\n");
                }
                f.sync();
                (
                    dir.join(CANCELED_MARK).exists(),
                    dir.join(TIMED_OUT_MARK).exists(),
                )
            })
            .await;
        let log = self.log.into_inner().await;
        rec.error = log.error;
        rec.timed_out = self.timed_out || timed_out;
        rec.canceled = canceled;
        if rec.ended_at < rec.started_at {
            rec.ended_at = Utc::now();
        }
        finish(&self.docker, &self.dir, &self.info, rec).await
    }
}

/// The engine's timestamp at the start of a log message (`timestamps=true`: RFC 3339 and a
/// space) and the message without it; the time now when there is none.
fn split_timestamp(msg: &[u8]) -> (i64, &[u8]) {
    let parsed = msg.iter().take(40).position(|&b| b == b' ').and_then(|i| {
        let t = std::str::from_utf8(&msg[..i]).ok()?;
        let t = DateTime::parse_from_rfc3339(t).ok()?;
        Some((t.timestamp_millis(), &msg[i + 1..]))
    });
    parsed.unwrap_or((now_ms(), msg))
}

/// Keeps the `artifacts:` of the container's `work/` (the job folder's, mounted), writes
/// `exit.json`, then has the container removed in the background.
async fn finish(docker: &Docker, dir: &Path, info: &ContainerInfo, mut rec: ExitRecord) -> Outcome {
    let exit_path = dir.join(EXIT_FILE);
    let (d, p) = (dir.to_path_buf(), exit_path.clone());
    let written = tokio::task::spawn_blocking(move || {
        keep_artifacts(&d, &mut rec);
        rec.log_bytes = std::fs::metadata(d.join(LOG_FILE)).map_or(0, |m| m.len());
        let json = serde_json::to_vec_pretty(&rec).expect("ExitRecord serializes");
        write_atomic(&p, &json, true).map(|()| rec)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    match written {
        Ok(rec) => {
            // Off the job's path: the end is reported now, the engine removes the container
            // meanwhile (a server that stops first leaves it to the next start's sweep, which
            // removes containers whose folder has `exit.json`).
            let (docker, name) = (docker.clone(), info.name.clone());
            tokio::spawn(async move { remove(&docker, &name).await });
            Outcome::Exited(rec)
        }
        // The container stays: the next server start re-reads it.
        Err(e) => Outcome::Lost(format!("could not write {}: {e}", exit_path.display())),
    }
}

/// `artifacts:` of the job's spec: copied from `work/` into `out/` (see [`crate::keep`]), what
/// matched nothing said at the end of the log.
fn keep_artifacts(dir: &Path, rec: &mut ExitRecord) {
    let Ok(Some(spec)) = crate::layout::try_read_json::<JobSpec>(&dir.join(SPEC_FILE)) else {
        return;
    };
    let found = crate::keep::gather(dir, &spec.artifacts);
    let lines = found.log_lines(spec.artifacts_required);
    if !lines.is_empty()
        && let Ok(mut log) = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(LOG_FILE))
    {
        use std::io::Write;
        let _ = log.write_all(format!("\n{lines}").as_bytes());
    }
    if spec.artifacts_required {
        rec.missing_artifacts = found.unmatched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumed_masked_stream_continues_exactly_where_the_log_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let secrets = vec!["hunter2".to_string()];
        let raw: Vec<&[u8]> = vec![b"a hun", b"ter2 b\n", b"c hunter2", b"\nd"];
        // First server: takes the first two chunks, then dies.
        let mut log = LogFile::create(&path).unwrap();
        let mut m = Masker::new(&secrets);
        log.begin_pass(0);
        for c in &raw[..2] {
            log.append_pass(&m.push(c));
        }
        drop(log);
        // Second server: re-reads everything (in other chunks) and skips what is there.
        let mut log = LogFile::append(&path).unwrap();
        log.begin_pass(0);
        let mut m = Masker::new(&secrets);
        let all: Vec<u8> = raw.concat();
        for c in all.chunks(3) {
            log.append_pass(&m.push(c));
        }
        log.append_pass(&m.finish());
        assert!(log.error.is_none());
        assert_eq!(std::fs::read(&path).unwrap(), b"a *** b\nc ***\nd");
    }

    #[test]
    fn engine_timestamps_are_split_off_into_the_index() {
        let (t, body) = split_timestamp(b"2026-01-02T03:04:05.678901234Z hello world\n");
        assert_eq!(body, b"hello world\n");
        assert_eq!(t, 1_767_323_045_678);
        let (_, body) = split_timestamp(b"no stamp here\n");
        assert_eq!(body, b"no stamp here\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = LogFile::create(&path).unwrap();
        log.begin_pass(0);
        log.append_pass_from(b"out\n", 1000, Stream::Stdout);
        log.append_pass_from(b"err\n", 2000, Stream::Stderr);
        let marks = crate::logidx::read_marks(&path, 0, u64::MAX, 10).unwrap();
        assert_eq!(
            marks
                .iter()
                .map(|m| (m.offset, m.time_ms, m.stream))
                .collect::<Vec<_>>(),
            [(0, 1000, Stream::Stdout), (4, 2000, Stream::Stderr)]
        );
    }

    #[test]
    fn bytes_before_the_containers_first_are_never_skipped_over() {
        // Build output (10 bytes) precedes the container's; a re-read skips only its own.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = LogFile::create(&path).unwrap();
        log.note(b"building.\n");
        log.begin_pass(10);
        log.append_pass(b"one\n");
        log.begin_pass(10);
        log.append_pass(b"one\ntwo\n");
        assert_eq!(log.len, 18);
        assert_eq!(std::fs::read(&path).unwrap(), b"building.\none\ntwo\n");
    }
}
