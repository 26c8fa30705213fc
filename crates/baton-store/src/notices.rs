//! The run-end notification outbox (`notifications`): each run's end, recorded with the run
//! change, fanned out to the `notify:` entries it matches, and the sender's progress on each.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use baton_core::run::Status;

use crate::{ReportOutcome, Result, Store, corrupt, from_ms, ms};

/// A run's end not fanned out to receivers yet.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub id: i64,
    pub run_id: i64,
    pub target: String,
    pub status: Status,
}

/// One notification of a run's end to one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeRow {
    pub id: i64,
    pub run_id: i64,
    pub status: Status,
    pub webhook: String,
    pub created_at: DateTime<Utc>,
    pub outcome: ReportOutcome,
    pub attempts: u32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Records, in the caller's transaction, that run `run_id` ended `status` (once per run; a
/// status that is not an end records nothing).
pub(crate) async fn record_run_end(
    tx: &mut sqlx::AnyConnection,
    run_id: i64,
    status: Status,
    at: DateTime<Utc>,
) -> Result<()> {
    if !status.is_terminal() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO notifications (run_id, status, webhook, created_at, outcome, attempts, next_at)
         SELECT $1, $2, NULL, $3, 'pending', 0, $4
          WHERE NOT EXISTS (SELECT 1 FROM notifications WHERE run_id = $5 AND webhook IS NULL)",
    )
    .bind(run_id)
    .bind(status.as_str())
    .bind(ms(at))
    .bind(ms(at))
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn status_of(r: &AnyRow) -> Result<Status> {
    let s: String = r.try_get("status")?;
    s.parse()
        .map_err(|_| corrupt("notifications", format!("unknown status {s:?}")))
}

fn notice_from_row(r: &AnyRow) -> Result<NoticeRow> {
    let outcome: String = r.try_get("outcome")?;
    Ok(NoticeRow {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        status: status_of(r)?,
        webhook: r.try_get("webhook")?,
        created_at: from_ms(r.try_get("created_at")?),
        outcome: ReportOutcome::parse(&outcome)
            .ok_or_else(|| corrupt("notifications", format!("unknown outcome {outcome:?}")))?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_at: from_ms(r.try_get("next_at")?),
        last_error: r.try_get("last_error")?,
        sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(from_ms),
    })
}

impl Store {
    /// Run ends not fanned out yet, oldest first.
    pub async fn run_ends(&self, limit: u32) -> Result<Vec<RunEnd>> {
        let rows = sqlx::query(
            "SELECT n.id, n.run_id, n.status, r.target FROM notifications n
               JOIN runs r ON r.id = n.run_id
              WHERE n.webhook IS NULL AND n.outcome = 'pending'
              ORDER BY n.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunEnd {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    target: r.try_get("target")?,
                    status: status_of(r)?,
                })
            })
            .collect()
    }

    /// Fans run end `end` out to `webhooks` (one notification each), in one transaction.
    pub async fn fan_out(
        &self,
        end: &RunEnd,
        webhooks: &[String],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE notifications SET outcome = 'expanded' WHERE id = $1 AND outcome = 'pending'",
        )
        .bind(end.id)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 1 {
            for w in webhooks {
                sqlx::query(
                    "INSERT INTO notifications (run_id, status, webhook, created_at, outcome,
                         attempts, next_at)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5)",
                )
                .bind(end.run_id)
                .bind(end.status.as_str())
                .bind(w)
                .bind(ms(at))
                .bind(ms(at))
                .execute(&mut *tx)
                .await?;
            }
        }
        // Not the scheduler's write: not counted in `write_commits`.
        tx.commit().await?;
        Ok(())
    }

    /// Notifications not sent yet, oldest first.
    pub async fn next_notices(&self, limit: u32) -> Result<Vec<NoticeRow>> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE webhook IS NOT NULL AND outcome = 'pending'
              ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notice_from_row).collect()
    }

    /// The notifications of run `run_id` to receivers, in order.
    pub async fn run_notices(&self, run_id: i64) -> Result<Vec<NoticeRow>> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE run_id = $1 AND webhook IS NOT NULL ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notice_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::Outbox;
    use std::collections::BTreeMap;

    use baton_core::run::{TargetKind, TriggerKind};

    use super::*;
    use crate::testdb::{TestDb, on_both};
    use crate::{Change, NewJob, NewRun};

    fn to(id: i64, status: Status) -> Change {
        Change::Run {
            id,
            status,
            reason: None,
            started_at: None,
            ended_at: None,
            builds_commit: true,
        }
    }

    async fn a_run_end_is_recorded_once_with_the_change_and_fanned_out_once(db: TestDb) {
        let store = db.open().await;
        let run = store
            .insert_run(&NewRun {
                kind: TargetKind::Task,
                target: "build".into(),
                trigger: TriggerKind::Api,
                args: BTreeMap::new(),
                tags: vec![],
                definition: serde_json::json!({}),
                status: Status::Queued,
                reason: None,
                priority: 0,
                partition: None,
                enqueued_at: Utc::now(),
                not_before: None,
                jobs: vec![NewJob {
                    name: "build".into(),
                }],
                ancestors: vec![],
                repo: None,
            })
            .await
            .unwrap();
        store.apply(&[to(run.id, Status::Running)]).await.unwrap();
        assert!(store.run_ends(10).await.unwrap().is_empty());
        store.apply(&[to(run.id, Status::Failed)]).await.unwrap();
        store.apply(&[to(run.id, Status::Failed)]).await.unwrap();
        let ends = store.run_ends(10).await.unwrap();
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].target, "build");
        assert_eq!(ends[0].status, Status::Failed);
        let hooks = vec!["http://a/".to_owned(), "http://b/".to_owned()];
        store.fan_out(&ends[0], &hooks, Utc::now()).await.unwrap();
        store.fan_out(&ends[0], &hooks, Utc::now()).await.unwrap();
        assert!(store.run_ends(10).await.unwrap().is_empty());
        let next = store.next_notices(10).await.unwrap();
        assert_eq!(next.len(), 2);
        assert_eq!(next[0].webhook, "http://a/");
        store
            .outbox_retry(Outbox::Notices, next[0].id, 1, "HTTP 500", Utc::now())
            .await
            .unwrap();
        store
            .outbox_done(
                Outbox::Notices,
                next[0].id,
                ReportOutcome::Sent,
                2,
                None,
                Utc::now(),
            )
            .await
            .unwrap();
        let all = store.run_notices(run.id).await.unwrap();
        assert_eq!(all[0].outcome, ReportOutcome::Sent);
        assert_eq!(all[0].attempts, 2);
        assert_eq!(store.next_notices(10).await.unwrap().len(), 1);
    }

    on_both!(a_run_end_is_recorded_once_with_the_change_and_fanned_out_once,);
}
