//! When a log's bytes arrived and from which stream (`GET /api/v1/runs/{id}/log/marks`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// From byte `offset` of the log on (to the next mark), the bytes arrived at `time_ms` from
/// `stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogMark {
    pub offset: u64,
    /// Milliseconds since the Unix epoch: when the bytes reached Baton (the supervisor, the
    /// agent's supervisor for agent jobs, the server for SSH jobs and older agents) or, for
    /// containers, when the engine says they were written.
    pub time_ms: i64,
    /// `stdout` or `stderr` (SSH workers and agents from before their uploads carried streams give one stream,
    /// told as `stdout`).
    pub stream: String,
}

/// The marks covering a range of a job's log, in offset order: the one in force at the range's
/// start, then every later one before its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogMarks {
    pub job_id: i64,
    /// The log's length in bytes now.
    pub size: u64,
    pub marks: Vec<LogMark>,
    /// Set when `limit` cut the answer short: ask again with `offset` set to it.
    pub next: Option<u64>,
}

impl From<baton_exec::LogMark> for LogMark {
    fn from(m: baton_exec::LogMark) -> Self {
        LogMark {
            offset: m.offset,
            time_ms: m.time_ms,
            stream: m.stream.as_str().to_string(),
        }
    }
}
