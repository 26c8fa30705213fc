//! The commit-status outbox: what to tell forges about commits, recorded durably with the run
//! change it reports, and the sender's progress on each (sent, retrying, failed).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use baton_core::report::{CommitState, context};
use baton_core::run::Status;

use crate::{Result, Store, corrupt, from_ms, ms};

/// How far the sender got with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Not sent yet (never tried, or retrying after `last_error`).
    Pending,
    Sent,
    /// The sender gave up (`last_error` says why).
    Failed,
    /// There was nothing to send it with (no token, or a forge without statuses).
    Skipped,
}

impl ReportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::Pending => "pending",
            ReportOutcome::Sent => "sent",
            ReportOutcome::Failed => "failed",
            ReportOutcome::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ReportOutcome> {
        [
            ReportOutcome::Pending,
            ReportOutcome::Sent,
            ReportOutcome::Failed,
            ReportOutcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// A recorded commit status.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub id: i64,
    pub run_id: Option<i64>,
    pub repo: String,
    pub commit: String,
    pub context: String,
    pub state: CommitState,
    /// Set for a status with no run; a run's is derived from the run when it is sent.
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub outcome: ReportOutcome,
    pub attempts: u32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A status for a commit with no run (a pull request that does not merge, say).
#[derive(Debug, Clone)]
pub struct NewReport {
    pub repo: String,
    pub commit: String,
    pub context: String,
    pub state: CommitState,
    pub description: String,
}

/// Records, in the caller's transaction, that run `run_id` reached `status`, if it builds a
/// repository's commit and that commit state was not recorded for it yet (a run that is
/// queued again, or whose waiting reason changes, reports nothing new). A pull request's run
/// reports on the request's head, the commit the forge knows and shows (its merge commit
/// exists only in Baton's mirror).
pub(crate) async fn record_run_state(
    tx: &mut sqlx::AnyConnection,
    run_id: i64,
    status: Status,
    at: DateTime<Utc>,
) -> Result<()> {
    let state = CommitState::of_run(status).as_str();
    sqlx::query(
        "INSERT INTO status_reports (run_id, repo, commit_sha, context, state, description,
             created_at, outcome, attempts, next_at)
         SELECT id, repo, COALESCE(pr_head, commit_sha), $1 || target, $2, NULL, $3, 'pending', 0, $4
           FROM runs
          WHERE id = $5 AND repo IS NOT NULL AND commit_sha IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM status_reports WHERE run_id = $6 AND state = $7)",
    )
    .bind(context(""))
    .bind(state)
    .bind(ms(at))
    .bind(ms(at))
    .bind(run_id)
    .bind(run_id)
    .bind(state)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn report_from_row(r: &AnyRow) -> Result<ReportRow> {
    let state: String = r.try_get("state")?;
    let outcome: String = r.try_get("outcome")?;
    Ok(ReportRow {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        repo: r.try_get("repo")?,
        commit: r.try_get("commit_sha")?,
        context: r.try_get("context")?,
        state: state
            .parse()
            .map_err(|e: String| corrupt("status_reports", e))?,
        description: r.try_get("description")?,
        created_at: from_ms(r.try_get("created_at")?),
        outcome: ReportOutcome::parse(&outcome)
            .ok_or_else(|| corrupt("status_reports", format!("unknown outcome {outcome:?}")))?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_at: from_ms(r.try_get("next_at")?),
        last_error: r.try_get("last_error")?,
        sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(from_ms),
    })
}

impl Store {
    /// Records a status for a commit with no run; the sender sends it like a run's.
    pub async fn add_report(&self, new: &NewReport, at: DateTime<Utc>) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO status_reports (run_id, repo, commit_sha, context, state, description,
                 created_at, outcome, attempts, next_at)
             VALUES (NULL, $1, $2, $3, $4, $5, $6, 'pending', 0, $7) RETURNING id",
        )
        .bind(&new.repo)
        .bind(&new.commit)
        .bind(&new.context)
        .bind(new.state.as_str())
        .bind(&new.description)
        .bind(ms(at))
        .bind(ms(at))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The reports not sent yet, oldest first: for each (repo, commit, context) only the
    /// first, since they go out in order.
    pub async fn next_reports(&self, limit: u32) -> Result<Vec<ReportRow>> {
        let rows = sqlx::query(
            "SELECT * FROM status_reports r
              WHERE outcome = 'pending'
                AND NOT EXISTS (SELECT 1 FROM status_reports e
                                 WHERE e.outcome = 'pending' AND e.id < r.id AND e.repo = r.repo
                                   AND e.commit_sha = r.commit_sha AND e.context = r.context)
              ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(report_from_row).collect()
    }

    /// The reports of run `run_id`, in order.
    pub async fn run_reports(&self, run_id: i64) -> Result<Vec<ReportRow>> {
        let rows = sqlx::query("SELECT * FROM status_reports WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(report_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::Outbox;
    use std::collections::BTreeMap;

    use baton_core::run::{TargetKind, TriggerKind};

    use super::*;
    use crate::testdb::{TestDb, on_both};
    use crate::{Change, NewJob, NewRun, RunRepo};

    fn run(repo: Option<RunRepo>) -> NewRun {
        NewRun {
            kind: TargetKind::Task,
            target: "app/test".into(),
            trigger: TriggerKind::Webhook,
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
                name: "app/test".into(),
            }],
            ancestors: vec![],
            repo,
        }
    }

    fn code() -> RunRepo {
        RunRepo {
            repo: "app".into(),
            url: "/srv/app".into(),
            commit: "a".repeat(40),
            git_ref: Some("refs/heads/main".into()),
            branch: Some("main".into()),
            tag: None,
            pr: None,
            pr_head: None,
            pr_base: None,
            pr_fork: false,
            event: "push".into(),
            delivery: None,
            author: None,
            subject: None,
            ran_on: None,
        }
    }

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

    async fn run_changes_of_a_repository_run_record_each_state_once_in_order(db: TestDb) {
        let store = db.open().await;
        let plain = store.insert_run(&run(None)).await.unwrap();
        let r = store.insert_run(&run(Some(code()))).await.unwrap();
        store
            .apply(&[
                to(r.id, Status::Queued),
                to(r.id, Status::Started),
                to(plain.id, Status::Running),
            ])
            .await
            .unwrap();
        store.apply(&[to(r.id, Status::Running)]).await.unwrap();
        store.apply(&[to(r.id, Status::Failed)]).await.unwrap();
        let reports = store.run_reports(r.id).await.unwrap();
        let states: Vec<_> = reports.iter().map(|x| x.state.as_str()).collect();
        assert_eq!(states, ["pending", "running", "failure"]);
        assert!(reports.iter().all(|x| x.context == "baton/app/test"));
        assert!(store.run_reports(plain.id).await.unwrap().is_empty());

        // Only the first unsent report of a (commit, context) is due; then the next.
        let next = store.next_reports(10).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].id, reports[0].id);
        let other = NewReport {
            repo: "app".into(),
            commit: "b".repeat(40),
            context: "baton/merge".into(),
            state: CommitState::Error,
            description: "does not merge cleanly with main".into(),
        };
        let extra = store.add_report(&other, Utc::now()).await.unwrap();
        let next = store.next_reports(10).await.unwrap();
        assert_eq!(next.len(), 2);
        assert_eq!(next[1].id, extra);
        store
            .outbox_retry(Outbox::Reports, reports[0].id, 1, "HTTP 500", Utc::now())
            .await
            .unwrap();
        store
            .outbox_done(
                Outbox::Reports,
                reports[0].id,
                ReportOutcome::Sent,
                2,
                None,
                Utc::now(),
            )
            .await
            .unwrap();
        let next = store.next_reports(10).await.unwrap();
        assert_eq!(next[0].id, reports[1].id);
        let sent = &store.run_reports(r.id).await.unwrap()[0];
        assert_eq!(sent.outcome, ReportOutcome::Sent);
        assert_eq!(sent.attempts, 2);
        assert!(sent.sent_at.is_some());
    }

    async fn a_pull_requests_run_reports_on_the_requests_head_not_the_merge(db: TestDb) {
        let store = db.open().await;
        let mut pr = code();
        pr.event = "pull_request".into();
        pr.pr = Some(4);
        pr.pr_head = Some("c".repeat(40));
        let r = store.insert_run(&run(Some(pr))).await.unwrap();
        store.apply(&[to(r.id, Status::Running)]).await.unwrap();
        let reports = store.run_reports(r.id).await.unwrap();
        let states: Vec<_> = reports.iter().map(|x| x.state.as_str()).collect();
        assert_eq!(states, ["pending", "running"]);
        assert!(reports.iter().all(|x| x.commit == "c".repeat(40)));
    }

    on_both!(
        run_changes_of_a_repository_run_record_each_state_once_in_order,
        a_pull_requests_run_reports_on_the_requests_head_not_the_merge,
    );
}
