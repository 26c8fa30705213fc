//! What the two outbox senders share (commit statuses in `statuses`, run-end notifications in
//! `notify`): what one try of a row came to, and the loop that runs their rounds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use baton_sched::SchedHandle;
use baton_store::{ReportOutcome, StoreError};

/// What one try of an outbox row came to.
pub(crate) enum Try {
    /// Finished: sent, failed for good or skipped, with why.
    Done(ReportOutcome, Option<String>),
    /// Failed for now (the reason): tried again after a backoff.
    Again(String),
}

/// Runs `round` until `shutdown`: again at once after a round that finished something (`None`:
/// the next row of the same key may be due now), else when the next row is due (`Some`), on any
/// run change, on `wake`, and at least every `idle`. `what` names the sender in the log.
pub(crate) async fn drive<R, F>(
    what: &'static str,
    sched: &SchedHandle,
    wake: Option<&Notify>,
    shutdown: CancellationToken,
    idle: Duration,
    mut round: R,
) where
    R: FnMut() -> F,
    F: Future<Output = Result<Option<DateTime<Utc>>, StoreError>>,
{
    let mut changes = sched.changes();
    loop {
        let next = match round().await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!("{what}: cannot read the outbox: {e}; trying again");
                Some(Utc::now() + idle)
            }
        };
        let Some(next) = next else { continue };
        let wait = (next - Utc::now()).to_std().unwrap_or_default().min(idle);
        let woken = async {
            match wake {
                Some(w) => w.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = woken => {}
            r = changes.changed() => if r.is_err() { return },
        }
    }
}
