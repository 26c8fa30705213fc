//! A job log's sidecar index (`log.idx`): when its bytes arrived and from which stream.
//!
//! Whoever appends to a job's `log` (the supervisor, the Docker monitor, the SSH sink, the
//! agent route) first appends a [`LogMark`] to `log.idx` saying "the bytes from offset N on
//! arrived at time T on stream S", then writes the bytes. A mark is written only when the
//! stream or the millisecond changes, so a job printing fast costs one 16-byte record per
//! read of its pipe at most, and a quiet job one per write. Readers take, for any byte, the
//! last mark at or before it.
//!
//! Record: 16 bytes, the offset as a little-endian `u64`, the time in milliseconds since the
//! Unix epoch as a 7-byte little-endian unsigned integer, then the stream (0 stdout, 1
//! stderr). Records are in offset order. Crash safety: the mark goes before its bytes, so a
//! reader that sees bytes always finds their mark; a crash may leave a mark past the log's
//! end or a torn last record, both of which readers ignore and [`MarkWriter::open`] cuts off
//! before appending again (a writer that resumes at a shorter length, as the SSH sink does,
//! keeps the index in order).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The index beside a job's `log`.
pub const INDEX_FILE: &str = "log.idx";
const RECORD: u64 = 16;

/// Which output stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stream {
    #[default]
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// From `offset` on, the log's bytes arrived at `time_ms` from `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMark {
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub stream: Stream,
}

impl LogMark {
    fn encode(&self) -> [u8; 16] {
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&self.offset.to_le_bytes());
        let t = u64::try_from(self.time_ms.max(0))
            .unwrap_or(0)
            .to_le_bytes();
        r[8..15].copy_from_slice(&t[..7]);
        r[15] = u8::from(self.stream == Stream::Stderr);
        r
    }

    fn decode(r: &[u8]) -> LogMark {
        let mut off = [0u8; 8];
        off.copy_from_slice(&r[..8]);
        let mut t = [0u8; 8];
        t[..7].copy_from_slice(&r[8..15]);
        LogMark {
            offset: u64::from_le_bytes(off),
            time_ms: i64::try_from(u64::from_le_bytes(t)).unwrap_or(i64::MAX),
            stream: if r[15] == 1 {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
        }
    }
}

/// The index of the log at `log_path` (same folder).
pub fn index_path(log_path: &Path) -> PathBuf {
    log_path.with_file_name(INDEX_FILE)
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Appends marks to a log's index. Failures are remembered, never fatal: the log matters, its
/// index is a help to read it.
#[derive(Debug)]
pub struct MarkWriter {
    file: Option<File>,
    last: Option<(i64, Stream)>,
}

impl MarkWriter {
    /// Opens (or creates) the index of the log at `log_path`, whose length is `log_len`: marks
    /// at or past `log_len` (and a torn last record) are cut off first.
    pub fn open(log_path: &Path, log_len: u64) -> MarkWriter {
        let path = index_path(log_path);
        let file = (|| {
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)?;
            let records = f.metadata()?.len() / RECORD;
            let keep = first_at_or_after(&f, records, log_len)?;
            if keep * RECORD != f.metadata()?.len() {
                f.set_len(keep * RECORD)?;
            }
            Ok::<_, io::Error>(f)
        })();
        match file {
            Ok(f) => MarkWriter {
                file: Some(f),
                last: None,
            },
            Err(e) => {
                tracing::warn!(
                    "cannot write the log index {}: {e}; the log has no timestamps",
                    path.display()
                );
                MarkWriter::none()
            }
        }
    }

    /// A writer that writes nothing.
    pub fn none() -> MarkWriter {
        MarkWriter {
            file: None,
            last: None,
        }
    }

    /// Notes that bytes written from `offset` on arrive now from `stream` (before writing them).
    pub fn note(&mut self, offset: u64, stream: Stream) {
        self.note_at(offset, now_ms(), stream);
    }

    /// As [`note`](Self::note), with the time given.
    pub fn note_at(&mut self, offset: u64, time_ms: i64, stream: Stream) {
        if self.last == Some((time_ms, stream)) {
            return;
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let m = LogMark {
            offset,
            time_ms,
            stream,
        };
        if f.write_all(&m.encode()).is_err() {
            self.file = None;
            return;
        }
        self.last = Some((time_ms, stream));
    }
}

/// The header in which an agent sends the marks of a log chunk it uploads (its own
/// supervisor's index of those bytes), so the server's index keeps each line's stream and time.
/// A server that does not know it ignores it; an agent that does not send it gets arrival
/// marks, all stdout.
pub const MARKS_HEADER: &str = "x-baton-log-marks";

/// At most this many marks go with one uploaded chunk (the header stays a few KiB); an
/// uploader cuts its chunk where the next mark would begin.
pub const MARKS_PER_CHUNK: usize = 256;

/// Marks as [`MARKS_HEADER`] carries them: `OFFSET:TIME_MS:o` (or `:e` for stderr), separated
/// by commas, in offset order.
pub fn encode_marks(marks: &[LogMark]) -> String {
    let mut out = String::with_capacity(marks.len() * 24);
    for (i, m) in marks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let s = match m.stream {
            Stream::Stdout => 'o',
            Stream::Stderr => 'e',
        };
        out.push_str(&format!("{}:{}:{s}", m.offset, m.time_ms.max(0)));
    }
    out
}

/// The marks of a [`MARKS_HEADER`] value: at most [`MARKS_PER_CHUNK`], offsets in increasing
/// order, times not negative. Anything else is refused with what is wrong.
pub fn decode_marks(text: &str) -> Result<Vec<LogMark>, String> {
    let mut out: Vec<LogMark> = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        if out.len() == MARKS_PER_CHUNK {
            return Err(format!("more than {MARKS_PER_CHUNK} marks"));
        }
        let mut f = part.trim().split(':');
        let (Some(off), Some(t), Some(s), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(format!("mark {part:?} is not OFFSET:TIME_MS:o|e"));
        };
        let offset: u64 = off
            .parse()
            .map_err(|_| format!("mark {part:?}: bad offset"))?;
        let time_ms: i64 = t
            .parse()
            .ok()
            .filter(|t| *t >= 0)
            .ok_or_else(|| format!("mark {part:?}: bad time"))?;
        let stream = match s {
            "o" => Stream::Stdout,
            "e" => Stream::Stderr,
            _ => return Err(format!("mark {part:?}: the stream is o or e")),
        };
        if out.last().is_some_and(|l| l.offset >= offset) {
            return Err(format!("mark {part:?}: offsets must increase"));
        }
        out.push(LogMark {
            offset,
            time_ms,
            stream,
        });
    }
    Ok(out)
}

/// The index of the first record whose offset is `>= offset` (records `0..records`).
fn first_at_or_after(f: &File, records: u64, offset: u64) -> io::Result<u64> {
    let (mut lo, mut hi) = (0u64, records);
    let mut r = [0u8; 16];
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        f.read_exact_at(&mut r, mid * RECORD)?;
        if LogMark::decode(&r).offset < offset {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The marks that cover bytes `[from, to)` of the log at `log_path`: the last mark at or before
/// `from`, then every mark before `to`, at most `limit` of them. No index (a job from before
/// Baton kept one) is no marks.
pub fn read_marks(log_path: &Path, from: u64, to: u64, limit: usize) -> io::Result<Vec<LogMark>> {
    let f = match File::open(index_path(log_path)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let records = f.metadata()?.len() / RECORD;
    let mut first = first_at_or_after(&f, records, from.saturating_add(1))?;
    first = first.saturating_sub(1);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = first;
    'read: while at < records && out.len() < limit {
        let n = ((records - at) * RECORD).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], at * RECORD)?;
        for r in buf[..n].chunks_exact(RECORD as usize) {
            let m = LogMark::decode(r);
            if m.offset >= to && !(out.is_empty() && m.offset <= from) {
                break 'read;
            }
            out.push(m);
            if out.len() >= limit {
                break 'read;
            }
        }
        at += (n as u64) / RECORD;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_cover_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut w = MarkWriter::open(&log, 0);
        w.note_at(0, 1_700_000_000_000, Stream::Stdout);
        w.note_at(5, 1_700_000_000_000, Stream::Stdout); // same time and stream: no record
        w.note_at(10, 1_700_000_000_500, Stream::Stderr);
        w.note_at(20, 1_700_000_001_000, Stream::Stdout);
        let all = read_marks(&log, 0, u64::MAX, 100).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].stream, Stream::Stderr);
        assert_eq!(all[1].time_ms, 1_700_000_000_500);
        // The mark in force at 12 is the one at 10; the range ends before 20.
        let some = read_marks(&log, 12, 20, 100).unwrap();
        assert_eq!(some.iter().map(|m| m.offset).collect::<Vec<_>>(), [10]);
        let some = read_marks(&log, 10, 21, 100).unwrap();
        assert_eq!(some.iter().map(|m| m.offset).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(read_marks(&log, 0, u64::MAX, 2).unwrap().len(), 2);
        assert!(
            read_marks(&dir.path().join("none/log"), 0, 9, 9)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn marks_travel_in_a_header_and_bad_ones_are_refused() {
        let marks = [
            LogMark {
                offset: 0,
                time_ms: 1_700_000_000_000,
                stream: Stream::Stdout,
            },
            LogMark {
                offset: 7,
                time_ms: 1_700_000_000_004,
                stream: Stream::Stderr,
            },
        ];
        let text = encode_marks(&marks);
        assert_eq!(text, "0:1700000000000:o,7:1700000000004:e");
        assert_eq!(decode_marks(&text).unwrap(), marks);
        assert_eq!(decode_marks("").unwrap(), []);
        for bad in ["7:1:o,7:2:e", "1:2", "1:2:x", "a:2:o", "1:-5:o", "1:2:o:3"] {
            assert!(decode_marks(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MARKS_PER_CHUNK).map(|i| format!("{i}:1:o")).collect();
        assert!(decode_marks(&many.join(",")).is_err());
    }

    #[test]
    fn reopening_cuts_marks_past_the_log_and_a_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut w = MarkWriter::open(&log, 0);
        w.note_at(0, 1, Stream::Stdout);
        w.note_at(10, 2, Stream::Stdout);
        w.note_at(20, 3, Stream::Stdout);
        drop(w);
        let idx = index_path(&log);
        let mut f = OpenOptions::new().append(true).open(&idx).unwrap();
        f.write_all(&[1, 2, 3]).unwrap(); // a torn record
        drop(f);
        let mut w = MarkWriter::open(&log, 10);
        w.note_at(10, 4, Stream::Stderr);
        let all = read_marks(&log, 0, u64::MAX, 100).unwrap();
        assert_eq!(
            all.iter()
                .map(|m| (m.offset, m.time_ms))
                .collect::<Vec<_>>(),
            [(0, 1), (10, 4)]
        );
    }
}
