//! What the two outboxes share (commit statuses in `status_reports`, run-end notifications in
//! `notifications`): how their senders record the end of the work on a row, or a failed try.

use chrono::{DateTime, Utc};

use crate::{ReportOutcome, Result, Store, ms};

/// One of the outbox tables: `Reports` (commit statuses), `Notices` (run-end notifications).
#[derive(Debug, Clone, Copy)]
pub enum Outbox {
    Reports,
    Notices,
}

impl Outbox {
    fn done_sql(self) -> &'static str {
        match self {
            Outbox::Reports => {
                "UPDATE status_reports SET outcome = $1, attempts = $2, last_error = $3, sent_at = $4
                  WHERE id = $5"
            }
            Outbox::Notices => {
                "UPDATE notifications SET outcome = $1, attempts = $2, last_error = $3, sent_at = $4
                  WHERE id = $5"
            }
        }
    }

    fn retry_sql(self) -> &'static str {
        match self {
            Outbox::Reports => {
                "UPDATE status_reports SET attempts = $1, last_error = $2, next_at = $3 WHERE id = $4"
            }
            Outbox::Notices => {
                "UPDATE notifications SET attempts = $1, last_error = $2, next_at = $3 WHERE id = $4"
            }
        }
    }
}

impl Store {
    /// Records the end of the sender's work on row `id` of `outbox`: sent, failed or skipped
    /// (with why), after `attempts` tries.
    pub async fn outbox_done(
        &self,
        outbox: Outbox,
        id: i64,
        outcome: ReportOutcome,
        attempts: u32,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sent = (outcome == ReportOutcome::Sent).then_some(ms(at));
        sqlx::query(outbox.done_sql())
            .bind(outcome.as_str())
            .bind(i64::from(attempts))
            .bind(error)
            .bind(sent)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a failed try of row `id` of `outbox`; the sender tries again at `next_at`.
    pub async fn outbox_retry(
        &self,
        outbox: Outbox,
        id: i64,
        attempts: u32,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(outbox.retry_sql())
            .bind(i64::from(attempts))
            .bind(error)
            .bind(ms(next_at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
