//! What the two outbox senders share (commit statuses in `statuses`, run-end notifications in
//! `notify`): what one try of a row came to, and the loop that runs their rounds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use baton_sched::SchedHandle;
use baton_store::{Outbox, ReportOutcome, Store, StoreError};

/// What one try of an outbox row came to.
pub(crate) enum Try {
    /// Finished: sent, failed for good or skipped, with why.
    Done(ReportOutcome, Option<String>),
    /// Failed for now (the reason): tried again after a backoff.
    Again(String),
}

/// Runs `round` until `shutdown`: again at once after a round that finished something (`None`:
/// the next row of the same key may be due now), else when the next row is due (`Some`), on any
/// run change ([`CHANGE_GAP`] after it), on `wake`, and at least every `idle`. `what` names the sender in the log.
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
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                // The batches of a burst (a run's start, its jobs, its end; many triggers)
                // make one round after a short gap, not one round of queries each.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(CHANGE_GAP) => {}
                }
                changes.borrow_and_update();
            }
        }
    }
}

/// How long a round waits after the first run change that woke it, so that the changes of
/// the next few batches are looked at in the same round.
const CHANGE_GAP: Duration = Duration::from_millis(50);

/// Records what try number `attempts` of row `id` of `outbox` came to: finished (`None`), or
/// when to try again. After `max_attempts` failed tries it gives up (`gave_up` logs why).
pub(crate) async fn record(
    store: &Store,
    outbox: Outbox,
    id: i64,
    attempts: u32,
    max_attempts: u32,
    outcome: Try,
    gave_up: impl FnOnce(&str),
) -> Result<Option<DateTime<Utc>>, StoreError> {
    match outcome {
        Try::Done(outcome, error) => {
            let error = error.as_deref();
            (store.outbox_done(outbox, id, outcome, attempts, error, Utc::now())).await?;
            Ok(None)
        }
        Try::Again(error) if attempts >= max_attempts => {
            gave_up(&error);
            let why = format!("gave up after {attempts} tries: {error}");
            let failed = ReportOutcome::Failed;
            (store.outbox_done(outbox, id, failed, attempts, Some(&why), Utc::now())).await?;
            Ok(None)
        }
        Try::Again(error) => {
            let at = Utc::now() + backoff(attempts);
            store.outbox_retry(outbox, id, attempts, &error, at).await?;
            Ok(Some(at))
        }
    }
}

/// The first retry waits this long; each next one twice as long as the one before.
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest wait between two tries.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(300);

/// The wait before try `attempts + 1`: 1 s, 2 s, 4 s… at most [`MAX_BACKOFF`].
pub(crate) fn backoff(attempts: u32) -> chrono::Duration {
    let d = FIRST_BACKOFF
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), chrono::Duration::seconds(1));
        assert_eq!(backoff(2), chrono::Duration::seconds(2));
        assert_eq!(backoff(4), chrono::Duration::seconds(8));
        assert_eq!(backoff(30), chrono::Duration::seconds(300));
    }
}
