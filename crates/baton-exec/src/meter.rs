//! What this process's executors took in, counted for the server's `/metrics`: job log bytes.
//! Process-wide counters (like Prometheus' own), read by `baton_web::metrics` at each scrape;
//! they count from the process's start.

use std::sync::atomic::{AtomicU64, Ordering};

static LOG_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts `n` bytes of job log this process took in: bytes it wrote to a job's log (a Docker
/// job's engine output, an SSH job's streamed log, an agent's log chunks), or the size of a
/// local job's log that its supervisor wrote, counted once as its exit record is read.
pub fn log_bytes_taken(n: u64) {
    LOG_BYTES.fetch_add(n, Ordering::Relaxed);
}

/// The job log bytes counted since this process started.
pub fn log_bytes() -> u64 {
    LOG_BYTES.load(Ordering::Relaxed)
}
