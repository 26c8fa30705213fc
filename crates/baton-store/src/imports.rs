//! Runs imported from developers' pushed result refs: each ref a repository's import has seen
//! (`imported_runs`), with the run it became or why it was refused, so an import happens once
//! whatever redelivers it; and the imported run itself, recorded as it ended. A run's mark is
//! recorded unfinished with it and finished once the importer wrote its files
//! ([`Store::finish_import`]); an unfinished one is undone ([`Store::forget_import`]) and the ref
//! imported again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, RunRow, Store, ms};

/// What makes an import happen once: the repository, the result ref, the target within it and
/// the result commit that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportMark {
    pub repo: String,
    pub run_ref: String,
    pub target: String,
    pub ref_commit: String,
}

/// A result ref the import has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRef {
    pub run_ref: String,
    /// The run it became (one of them, for a ref with several targets); `None`: refused.
    pub run_id: Option<i64>,
    pub refused: Option<String>,
}

/// Records an imported run (ended, with its jobs as they ended) and its mark (unfinished), in
/// the caller's transaction. A mark recorded before fails the transaction: the importer checks
/// first.
pub(crate) async fn insert(
    tx: &mut sqlx::AnyConnection,
    run: &RunRow,
    mark: &ImportMark,
    now: DateTime<Utc>,
) -> Result<()> {
    crate::insert_run_row(tx, run).await?;
    sqlx::query("UPDATE runs SET started_at = $1 WHERE id = $2")
        .bind(run.started_at.map(ms))
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
    for j in &run.jobs {
        sqlx::query(
            "UPDATE jobs SET worker = $1, exit_code = $2, started_at = $3, ended_at = $4
             WHERE id = $5",
        )
        .bind(&j.worker)
        .bind(j.exit_code.map(i64::from))
        .bind(j.started_at.map(ms))
        .bind(j.ended_at.map(ms))
        .bind(j.id)
        .execute(&mut *tx)
        .await?;
    }
    mark_seen(tx, mark, Some(run.id), None, now).await
}

async fn mark_seen(
    tx: &mut sqlx::AnyConnection,
    mark: &ImportMark,
    run_id: Option<i64>,
    refused: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    // A refusal is finished as it is recorded; a run once its files are written.
    sqlx::query(
        "INSERT INTO imported_runs (repo, run_ref, target, ref_commit, run_id, refused,
             imported_at, finished) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&mark.repo)
    .bind(&mark.run_ref)
    .bind(&mark.target)
    .bind(&mark.ref_commit)
    .bind(run_id)
    .bind(refused)
    .bind(ms(now))
    .bind(i64::from(run_id.is_none()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A result ref whose import recorded runs but did not finish writing their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedImport {
    pub run_ref: String,
    /// The runs it recorded (those still in the store).
    pub runs: Vec<i64>,
    /// Their jobs (whose folders may hold part of the files).
    pub jobs: Vec<i64>,
}

impl Store {
    /// The result refs of `repo` the import has seen (imported or refused).
    pub async fn imported_refs(&self, repo: &str) -> Result<BTreeSet<String>> {
        let rows = sqlx::query("SELECT DISTINCT run_ref FROM imported_runs WHERE repo = $1")
            .bind(repo)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("run_ref")?)).collect()
    }

    /// What became of `repo`'s result ref `run_ref`, if the import has seen it.
    pub async fn imported_ref(&self, repo: &str, run_ref: &str) -> Result<Option<ImportedRef>> {
        let row = sqlx::query(
            "SELECT run_ref, MIN(run_id) AS run_id, MAX(refused) AS refused FROM imported_runs
              WHERE repo = $1 AND run_ref = $2 GROUP BY run_ref",
        )
        .bind(repo)
        .bind(run_ref)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ImportedRef {
                run_ref: r.try_get("run_ref")?,
                run_id: r.try_get("run_id")?,
                refused: r.try_get("refused")?,
            })
        })
        .transpose()
    }

    /// How many imported runs of `repo` the store still holds (pruned ones do not count).
    pub async fn imported_run_count(&self, repo: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM imported_runs i JOIN runs r ON r.id = i.run_id
              WHERE i.repo = $1",
        )
        .bind(repo)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    /// The result refs of `repo` whose import did not finish (the server stopped between
    /// recording their runs and writing their files).
    pub async fn unfinished_imports(&self, repo: &str) -> Result<Vec<UnfinishedImport>> {
        let rows = sqlx::query(
            "SELECT i.run_ref, i.run_id, j.id AS job_id FROM imported_runs i
               LEFT JOIN jobs j ON j.run_id = i.run_id
              WHERE i.repo = $1 AND i.finished = 0
              ORDER BY i.run_ref, i.run_id, j.id",
        )
        .bind(repo)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<UnfinishedImport> = Vec::new();
        for r in rows {
            let run_ref: String = r.try_get("run_ref")?;
            let run: Option<i64> = r.try_get("run_id")?;
            let job: Option<i64> = r.try_get("job_id")?;
            if out.last().is_none_or(|u| u.run_ref != run_ref) {
                out.push(UnfinishedImport {
                    run_ref,
                    runs: Vec::new(),
                    jobs: Vec::new(),
                });
            }
            let u = out.last_mut().expect("pushed above");
            if let Some(run) = run
                && !u.runs.contains(&run)
            {
                u.runs.push(run);
            }
            u.jobs.extend(job);
        }
        Ok(out)
    }

    /// The repositories with an unfinished import.
    pub async fn repos_with_unfinished_imports(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT repo FROM imported_runs WHERE finished = 0 ORDER BY repo",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks every run imported from `repo`'s result ref `run_ref` finished (its files written).
    pub async fn finish_import(&self, repo: &str, run_ref: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE imported_runs SET finished = 1 WHERE repo = $1 AND run_ref = $2")
            .bind(repo)
            .bind(run_ref)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await
    }

    /// Undoes an unfinished import of `repo`'s result ref `run_ref`: its runs (with their jobs,
    /// results and cache records) and its marks go, in one transaction, so the next import
    /// reads the ref again. The caller removed the runs' folders first.
    pub async fn forget_import(&self, repo: &str, run_ref: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let runs: Vec<i64> = sqlx::query_scalar(
            "SELECT run_id FROM imported_runs
              WHERE repo = $1 AND run_ref = $2 AND finished = 0 AND run_id IS NOT NULL",
        )
        .bind(repo)
        .bind(run_ref)
        .fetch_all(&mut *tx)
        .await?;
        crate::delete_runs_in(&mut tx, &runs).await?;
        sqlx::query("DELETE FROM imported_runs WHERE repo = $1 AND run_ref = $2 AND finished = 0")
            .bind(repo)
            .bind(run_ref)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await
    }

    /// Records that `mark`'s ref was refused and why (it is not tried again).
    pub async fn refuse_import(&self, mark: &ImportMark, why: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        mark_seen(&mut tx, mark, None, Some(why), Utc::now()).await?;
        self.commit(tx).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use baton_core::run::{Status, TargetKind, TriggerKind};

    use super::*;
    use crate::testdb::{TestDb, on_both};
    use crate::{Change, JobRow, RunRepo};

    fn imported(id: i64, job: i64) -> RunRow {
        let t = crate::from_ms(1_700_000_000_000);
        RunRow {
            id,
            kind: TargetKind::Task,
            target: "app/test".into(),
            trigger: TriggerKind::Local,
            args: BTreeMap::new(),
            tags: vec![],
            definition: serde_json::Value::Null,
            status: Status::Failed,
            reason: Some("failed: exit code 3".into()),
            priority: 0,
            partition: None,
            enqueued_at: t,
            not_before: None,
            started_at: Some(t),
            ended_at: Some(t),
            jobs: vec![JobRow {
                id: job,
                run_id: id,
                name: "app/test".into(),
                status: Status::Failed,
                reason: Some("failed: exit code 3".into()),
                attempt: 1,
                worker: Some("local:ada@laptop".into()),
                exit_code: Some(3),
                queued_at: t,
                ready_at: None,
                started_at: Some(t),
                ended_at: Some(t),
                ended_seq: None,
                args: BTreeMap::new(),
            }],
            ancestors: vec![],
            descendants: vec![],
            repo: Some(RunRepo {
                repo: "app".into(),
                commit: "a".repeat(40),
                event: "local".into(),
                ran_on: Some("ada@laptop".into()),
                ..RunRepo::default()
            }),
        }
    }

    fn mark(run_ref: &str) -> ImportMark {
        ImportMark {
            repo: "app".into(),
            run_ref: run_ref.into(),
            target: "test".into(),
            ref_commit: "b".repeat(40),
        }
    }

    async fn an_import_is_recorded_as_it_ended_with_its_mark_and_no_status_to_send(db: TestDb) {
        let store = db.open().await;
        let r = "refs/baton-runs/aaaa/20261207T000000000Z-000001";
        store
            .apply(&[Change::Import(Box::new(imported(1, 1)), mark(r))])
            .await
            .unwrap();
        let got = store.get_run(1).await.unwrap().unwrap();
        assert_eq!(
            (got.trigger, got.status),
            (TriggerKind::Local, Status::Failed)
        );
        assert_eq!(got.repo.unwrap().ran_on.as_deref(), Some("ada@laptop"));
        let job = &got.jobs[0];
        assert_eq!(job.exit_code, Some(3));
        assert_eq!(job.worker.as_deref(), Some("local:ada@laptop"));
        assert!(job.started_at.is_some() && got.started_at.is_some());
        assert_eq!(store.imported_refs("app").await.unwrap().len(), 1);
        assert_eq!(store.imported_run_count("app").await.unwrap(), 1);
        let seen = store.imported_ref("app", r).await.unwrap().unwrap();
        assert_eq!((seen.run_id, seen.refused), (Some(1), None));
        // Once: the same mark again fails the whole transaction.
        let again = store
            .apply(&[Change::Import(Box::new(imported(2, 2)), mark(r))])
            .await;
        assert!(again.is_err());
        assert!(store.get_run(2).await.unwrap().is_none());
        // No commit status or notification for a run the server did not run.
        assert!(store.run_reports(1).await.unwrap().is_empty());
        // A refused ref is seen, with why, and counts for nothing.
        let bad = "refs/jci-runs/aaaa/x";
        store
            .refuse_import(&mark(bad), "not imported: no")
            .await
            .unwrap();
        let seen = store.imported_ref("app", bad).await.unwrap().unwrap();
        assert_eq!(
            (seen.run_id, seen.refused.as_deref()),
            (None, Some("not imported: no"))
        );
        assert_eq!(store.imported_refs("app").await.unwrap().len(), 2);
        assert_eq!(store.imported_run_count("app").await.unwrap(), 1);
        // Pruned runs no longer count towards the cap; their ref stays seen.
        store.delete_runs(&[1]).await.unwrap();
        assert_eq!(store.imported_run_count("app").await.unwrap(), 0);
        assert_eq!(store.imported_refs("app").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_unfinished_import_is_listed_until_finished_and_forgetting_it_removes_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("i.db")).await.unwrap();
        let (a, b) = (
            "refs/baton-runs/aaaa/20261207T000000000Z-000001",
            "refs/baton-runs/aaaa/20261207T000000000Z-000002",
        );
        store
            .apply(&[
                Change::Import(Box::new(imported(1, 1)), mark(a)),
                Change::Import(Box::new(imported(2, 2)), mark(b)),
            ])
            .await
            .unwrap();
        store
            .refuse_import(&mark("refs/jci-runs/aaaa/x"), "not imported: no")
            .await
            .unwrap();
        // Recorded, files not yet written: both unfinished; a refusal is finished.
        let open = store.unfinished_imports("app").await.unwrap();
        assert_eq!(
            open.iter().map(|u| u.run_ref.as_str()).collect::<Vec<_>>(),
            [a, b]
        );
        assert_eq!(
            (open[0].runs.clone(), open[0].jobs.clone()),
            (vec![1], vec![1])
        );
        assert_eq!(
            store.repos_with_unfinished_imports().await.unwrap(),
            ["app"]
        );
        store.finish_import("app", a).await.unwrap();
        let open = store.unfinished_imports("app").await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].run_ref, b);
        // Forgetting `b` removes its run and its mark: the ref is new to the next import.
        store.forget_import("app", b).await.unwrap();
        assert!(store.get_run(2).await.unwrap().is_none());
        assert!(store.imported_ref("app", b).await.unwrap().is_none());
        assert!(store.unfinished_imports("app").await.unwrap().is_empty());
        assert!(
            store
                .repos_with_unfinished_imports()
                .await
                .unwrap()
                .is_empty()
        );
        // A finished import is never forgotten.
        store.forget_import("app", a).await.unwrap();
        assert!(store.get_run(1).await.unwrap().is_some());
        assert!(store.imported_ref("app", a).await.unwrap().is_some());
    }

    on_both!(an_import_is_recorded_as_it_ended_with_its_mark_and_no_status_to_send,);
}
