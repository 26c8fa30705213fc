//! The server-side log of an SSH job: masks the bytes, appends them to the job's `log` and
//! records `(remote offset, local length)` in `log.offset` after every write, so that after a
//! dropped connection or a server restart the log resumes exactly (nothing lost, nothing twice).
//! The file work runs on one blocking thread per job ([`OnThread`]), never on the async threads.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{OFFSET_FILE, SshJobInfo};
use crate::blocking::OnThread;
use crate::error::ExecError;
use crate::job::ExitRecord;
use crate::layout::{EXIT_FILE, LOG_FILE, write_atomic};
use crate::logidx::{MarkWriter, Stream};
use crate::mask::Masker;

/// The end of a job as its runner recorded it on the worker.
#[derive(Clone, Debug)]
pub(super) struct End {
    pub(super) code: i32,
    pub(super) canceled: bool,
    pub(super) timed_out: bool,
    /// Required `artifacts:` globs the runner found no file for.
    pub(super) missing: Vec<String>,
}

/// The log of a running SSH job, written off the async threads.
pub(super) struct LogSink {
    /// Bytes of the remote log received so far (where a new follower starts).
    pub(super) remote: u64,
    file: OnThread<SinkFile>,
}

impl LogSink {
    /// Opens the log and resumes from `log.offset` (truncating bytes written after it).
    pub(super) async fn open(dir: &Path, mask: &[String]) -> Result<LogSink, ExecError> {
        let (dir, mask) = (dir.to_path_buf(), mask.to_vec());
        let log_path = dir.join(LOG_FILE);
        let file = tokio::task::spawn_blocking(move || SinkFile::open(&dir, &mask))
            .await
            .map_err(|e| ExecError::io("open log", log_path, std::io::Error::other(e)))??;
        Ok(LogSink {
            remote: file.remote,
            file: OnThread::new(file),
        })
    }

    /// Masks and appends the next bytes of the remote log.
    pub(super) async fn push(&mut self, bytes: &[u8]) {
        self.remote += bytes.len() as u64;
        let bytes = bytes.to_vec();
        self.file.post(move |f| f.push(&bytes)).await;
    }

    /// Flushes the masker's held-back bytes and syncs the log (the job's output is over).
    pub(super) async fn finish(&mut self) {
        self.file.call(SinkFile::finish).await;
    }

    /// Waits for every write, then lets the sink's thread go.
    pub(super) async fn close(self) {
        drop(self.file.into_inner().await);
    }

    /// Completes the log and writes `exit.json` (durably) for a job that ended on the worker.
    pub(super) async fn record(
        &mut self,
        dir: &Path,
        info: &SshJobInfo,
        end: End,
        error: Option<String>,
    ) -> ExitRecord {
        let (dir, started_at) = (dir.to_path_buf(), info.started_at);
        self.file
            .call(move |f| f.record(&dir, started_at, end, error))
            .await
    }
}

/// What the sink's thread owns.
pub(super) struct SinkFile {
    log: File,
    log_path: PathBuf,
    offset_path: PathBuf,
    /// Bytes of the remote log received (fed to the masker).
    pub(super) remote: u64,
    local: u64,
    masker: Masker,
    error: Option<String>,
    /// When bytes reached the server (the worker's one stream is stdout and stderr together).
    marks: MarkWriter,
}

impl SinkFile {
    pub(super) fn open(dir: &Path, mask: &[String]) -> Result<SinkFile, ExecError> {
        let log_path = dir.join(LOG_FILE);
        let offset_path = dir.join(OFFSET_FILE);
        let (remote, local) = match fs::read_to_string(&offset_path) {
            Ok(s) => {
                let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
                (it.next().unwrap_or(0), it.next().unwrap_or(0))
            }
            Err(_) => (0, 0),
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| ExecError::io("open log", &log_path, e))?;
        log.set_len(local)
            .map_err(|e| ExecError::io("truncate log to its recorded length", &log_path, e))?;
        let marks = MarkWriter::open(&log_path, local);
        Ok(SinkFile {
            log,
            log_path,
            offset_path,
            remote,
            local,
            masker: Masker::new(mask),
            error: None,
            marks,
        })
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.remote += bytes.len() as u64;
        let out = self.masker.push(bytes);
        self.write(&out);
    }

    pub(super) fn finish(&mut self) {
        let out = self.masker.finish();
        self.write(&out);
        let _ = self.log.sync_data();
    }

    fn write(&mut self, out: &[u8]) {
        if !out.is_empty() {
            self.marks.note(self.local, Stream::Stdout);
            match self.log.write_all(out) {
                Ok(()) => {
                    self.local += out.len() as u64;
                    crate::meter::log_bytes_taken(out.len() as u64);
                }
                Err(e) => {
                    self.error.get_or_insert(format!(
                        "could not write log {}: {e}",
                        self.log_path.display()
                    ));
                    return;
                }
            }
        }
        let committed = self.remote - self.masker.held() as u64;
        let rec = format!("{committed} {}\n", self.local);
        if let Err(e) = write_atomic(&self.offset_path, rec.as_bytes(), false) {
            self.error.get_or_insert(format!(
                "could not write {}: {e}",
                self.offset_path.display()
            ));
        }
    }

    fn record(
        &mut self,
        dir: &Path,
        started_at: chrono::DateTime<Utc>,
        end: End,
        mut error: Option<String>,
    ) -> ExitRecord {
        self.finish();
        if let Some(e) = self.error.take() {
            error.get_or_insert(e);
        }
        let End {
            code,
            canceled,
            timed_out,
            missing,
        } = end;
        let signaled = code > 128 && (canceled || timed_out);
        let rec = ExitRecord {
            exit_code: if signaled { None } else { Some(code) },
            signal: signaled.then_some(code - 128),
            timed_out,
            canceled,
            error,
            started_at,
            ended_at: Utc::now(),
            log_bytes: fs::metadata(dir.join(LOG_FILE)).map_or(0, |m| m.len()),
            max_rss_kb: None,
            missing_artifacts: missing,
        };
        let json = serde_json::to_vec_pretty(&rec).expect("ExitRecord serializes");
        if let Err(e) = write_atomic(&dir.join(EXIT_FILE), &json, true) {
            tracing::error!("could not write {}: {e}", dir.join(EXIT_FILE).display());
        }
        rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_resumes_from_the_recorded_offsets_without_loss_or_duplication() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mask = vec!["s3cr3t".to_string()];
        let remote = b"one s3cr3t two s3cr3t three\n";
        let mut sink = SinkFile::open(dir, &mask).unwrap();
        sink.push(&remote[..8]); // "one s3cr": the masker holds back a possible secret
        drop(sink);
        // A crash after more bytes reached the log than the offset file records.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(LOG_FILE))
            .unwrap()
            .write_all(b"garbage")
            .unwrap();
        let mut sink = SinkFile::open(dir, &mask).unwrap();
        assert!(sink.remote <= 8);
        let from = sink.remote as usize;
        sink.push(&remote[from..]);
        sink.finish();
        assert_eq!(
            std::fs::read(dir.join(LOG_FILE)).unwrap(),
            b"one *** two *** three\n"
        );
        let rec = std::fs::read_to_string(dir.join(OFFSET_FILE)).unwrap();
        assert_eq!(rec, format!("{} 22\n", remote.len()));
        // The index holds the bytes' arrival, in order, none past what the log kept.
        let marks = crate::logidx::read_marks(&dir.join(LOG_FILE), 0, u64::MAX, 100).unwrap();
        assert_eq!(marks.first().map(|m| m.offset), Some(0), "{marks:?}");
        assert!(
            marks.windows(2).all(|w| w[0].offset < w[1].offset),
            "{marks:?}"
        );
        assert!(
            marks
                .iter()
                .all(|m| m.offset < 22 && m.stream == Stream::Stdout)
        );
    }

    #[tokio::test]
    async fn the_async_sink_writes_in_order_and_records_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut sink = LogSink::open(dir, &["pw".to_string()]).await.unwrap();
        for chunk in [&b"a p"[..], b"w b\n", b"c"] {
            sink.push(chunk).await;
        }
        assert_eq!(sink.remote, 8);
        let info = SshJobInfo {
            worker: "w".into(),
            host: "h".into(),
            remote_dir: "d".into(),
            token_sha256: String::new(),
            started_at: Utc::now(),
        };
        let end = End {
            code: 143,
            canceled: true,
            timed_out: false,
            missing: Vec::new(),
        };
        let rec = sink.record(dir, &info, end, None).await;
        assert_eq!(
            (rec.exit_code, rec.signal, rec.log_bytes),
            (None, Some(15), 9)
        );
        assert_eq!(std::fs::read(dir.join(LOG_FILE)).unwrap(), b"a *** b\nc");
        assert!(crate::layout::read_exit(dir).is_some());
    }
}
