//! Test results: each ended job's result tree (kept as JSON, built by `baton-results`) with
//! its counts, and per-test rows indexed by (task, test id) for a test's history.

use std::collections::BTreeMap;

use chrono::Utc;
use sqlx::{QueryBuilder, Row};

use crate::{Result, Store, ms};

/// Counts of test cases and steps (see `baton_results::Summary`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultCounts {
    pub passed: i64,
    pub failed: i64,
    pub errors: i64,
    pub skipped: i64,
    pub flaky: i64,
    pub warnings: i64,
    pub duration_ms: i64,
}

impl ResultCounts {
    fn add(&mut self, o: &ResultCounts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.flaky += o.flaky;
        self.warnings += o.warnings;
        self.duration_ms += o.duration_ms;
    }
}

/// One test case's outcome in a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub test_id: String,
    pub status: String,
    pub duration_ms: Option<i64>,
}

/// An ended job's results, to record once.
#[derive(Debug, Clone)]
pub struct NewJobResults {
    pub job_id: i64,
    pub run_id: i64,
    pub attempt: u32,
    pub task: String,
    /// The code the job ran on (`baton_results::history`): its commit or its run chain.
    pub code: Option<String>,
    pub counts: ResultCounts,
    /// The job's node as JSON.
    pub tree: String,
    pub tests: Vec<TestResult>,
}

/// A job's recorded results.
#[derive(Debug, Clone)]
pub struct JobResultsRow {
    pub job_id: i64,
    pub attempt: u32,
    pub counts: ResultCounts,
    pub tree: String,
}

/// One entry of a test's history: newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestHistoryEntry {
    pub run_id: i64,
    pub code: Option<String>,
    pub status: String,
    pub duration_ms: Option<i64>,
}

fn counts(row: &sqlx::any::AnyRow) -> Result<ResultCounts> {
    Ok(ResultCounts {
        passed: row.try_get("passed")?,
        failed: row.try_get("failed")?,
        errors: row.try_get("errors")?,
        skipped: row.try_get("skipped")?,
        flaky: row.try_get("flaky")?,
        warnings: row.try_get("warnings")?,
        duration_ms: row.try_get("duration_ms")?,
    })
}

impl Store {
    /// Records a job's results with its per-test rows, in one transaction. A job's results
    /// are recorded once: `false` when they already were (the first stays).
    pub async fn save_job_results(&self, r: &NewJobResults) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let c = &r.counts;
        let done = sqlx::query(
            "INSERT INTO job_results (job_id, run_id, attempt, task, collected_at, passed, failed,
                 errors, skipped, flaky, warnings, duration_ms, tree)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(r.job_id)
        .bind(r.run_id)
        .bind(i64::from(r.attempt))
        .bind(&r.task)
        .bind(ms(Utc::now()))
        .bind(c.passed)
        .bind(c.failed)
        .bind(c.errors)
        .bind(c.skipped)
        .bind(c.flaky)
        .bind(c.warnings)
        .bind(c.duration_ms)
        .bind(&r.tree)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        for chunk in r.tests.chunks(150) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO test_results (task, test_id, run_id, job_id, status, duration_ms, code) ",
            );
            qb.push_values(chunk, |mut b, t| {
                b.push_bind(&r.task)
                    .push_bind(&t.test_id)
                    .push_bind(r.run_id)
                    .push_bind(r.job_id)
                    .push_bind(&t.status)
                    .push_bind(t.duration_ms)
                    .push_bind(&r.code);
            });
            crate::built(&mut qb).execute(&mut *tx).await?;
        }
        self.commit(tx).await?;
        Ok(true)
    }

    /// The recorded results of a run's jobs.
    pub async fn run_results(&self, run_id: i64) -> Result<Vec<JobResultsRow>> {
        let rows = sqlx::query("SELECT * FROM job_results WHERE run_id = $1 ORDER BY job_id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(JobResultsRow {
                    job_id: row.try_get("job_id")?,
                    attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
                    counts: counts(row)?,
                    tree: row.try_get("tree")?,
                })
            })
            .collect()
    }

    /// The jobs of a run whose results are recorded.
    pub async fn collected_jobs(&self, run_id: i64) -> Result<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT job_id FROM job_results WHERE run_id = $1 ORDER BY job_id")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The summed counts of each run's recorded results (runs without any are absent).
    pub async fn run_result_counts(&self, run_ids: &[i64]) -> Result<BTreeMap<i64, ResultCounts>> {
        let mut out: BTreeMap<i64, ResultCounts> = BTreeMap::new();
        if run_ids.is_empty() {
            return Ok(out);
        }
        let mut qb = QueryBuilder::new(
            "SELECT run_id, passed, failed, errors, skipped, flaky, warnings, duration_ms
             FROM job_results WHERE run_id IN (",
        );
        let mut sep = qb.separated(", ");
        for id in run_ids {
            sep.push_bind(*id);
        }
        qb.push(")");
        for row in crate::built(&mut qb).fetch_all(&self.pool).await? {
            let run: i64 = row.try_get("run_id")?;
            out.entry(run).or_default().add(&counts(&row)?);
        }
        Ok(out)
    }

    /// The last `limit` results of one test across its task's runs, newest first.
    pub async fn test_history(
        &self,
        task: &str,
        test_id: &str,
        limit: u32,
    ) -> Result<Vec<TestHistoryEntry>> {
        let rows = sqlx::query(
            "SELECT run_id, code, status, duration_ms FROM test_results
             WHERE task = $1 AND test_id = $2 ORDER BY run_id DESC LIMIT $3",
        )
        .bind(task)
        .bind(test_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TestHistoryEntry {
                    run_id: r.try_get("run_id")?,
                    code: r.try_get("code")?,
                    status: r.try_get("status")?,
                    duration_ms: r.try_get("duration_ms")?,
                })
            })
            .collect()
    }
}

/// One result of a test with the run it is in, for the test's own page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunEntry {
    pub run_id: i64,
    pub job_id: i64,
    /// The run's kind (`task` or `pipeline`) and target: who may see it.
    pub kind: String,
    pub target: String,
    pub enqueued_ms: i64,
    pub code: Option<String>,
    pub status: String,
    pub duration_ms: Option<i64>,
}

impl Store {
    /// The last `limit` results of one test across its task's runs, newest first, each with
    /// its run's target and queue time (one indexed query, no result tree read).
    pub async fn test_runs(
        &self,
        task: &str,
        test_id: &str,
        limit: u32,
    ) -> Result<Vec<TestRunEntry>> {
        let rows = sqlx::query(
            "SELECT t.run_id, t.job_id, t.code, t.status, t.duration_ms, r.kind, r.target,
                 r.enqueued_at
             FROM test_results t JOIN runs r ON r.id = t.run_id
             WHERE t.task = $1 AND t.test_id = $2 ORDER BY t.run_id DESC, t.job_id DESC
             LIMIT $3",
        )
        .bind(task)
        .bind(test_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TestRunEntry {
                    run_id: r.try_get("run_id")?,
                    job_id: r.try_get("job_id")?,
                    kind: r.try_get("kind")?,
                    target: r.try_get("target")?,
                    enqueued_ms: r.try_get("enqueued_at")?,
                    code: r.try_get("code")?,
                    status: r.try_get("status")?,
                    duration_ms: r.try_get("duration_ms")?,
                })
            })
            .collect()
    }

    /// Replaces a recorded job's tree and counts (its per-test rows stay: only nodes that are
    /// not tests, such as a warning that no longer holds, may change). `false`: no results
    /// recorded for the job.
    pub async fn replace_job_tree(
        &self,
        job_id: i64,
        counts: &ResultCounts,
        tree: &str,
    ) -> Result<bool> {
        let c = counts;
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE job_results SET passed = $1, failed = $2, errors = $3, skipped = $4,
                 flaky = $5, warnings = $6, duration_ms = $7, tree = $8 WHERE job_id = $9",
        )
        .bind(c.passed)
        .bind(c.failed)
        .bind(c.errors)
        .bind(c.skipped)
        .bind(c.flaky)
        .bind(c.warnings)
        .bind(c.duration_ms)
        .bind(tree)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.commit(tx).await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use baton_core::run::{Status, TargetKind, TriggerKind};
    use chrono::Utc;

    use super::*;
    use crate::testdb::{TestDb, on_both};
    use crate::{NewJob, NewRun};

    fn run_of(target: &str) -> NewRun {
        NewRun {
            kind: TargetKind::Task,
            target: target.into(),
            trigger: TriggerKind::Api,
            args: BTreeMap::new(),
            tags: vec![],
            definition: serde_json::json!({"command": "true"}),
            status: Status::Success,
            reason: None,
            priority: 0,
            partition: None,
            enqueued_at: Utc::now(),
            not_before: None,
            jobs: vec![NewJob {
                name: target.into(),
            }],
            ancestors: vec![],
            repo: None,
        }
    }

    fn results(run: &crate::RunRow, status: &str, warnings: i64) -> NewJobResults {
        NewJobResults {
            job_id: run.jobs[0].id,
            run_id: run.id,
            attempt: 1,
            task: "t".into(),
            code: Some(format!("commit:{}", run.id % 2)),
            counts: ResultCounts {
                passed: 1,
                warnings,
                ..ResultCounts::default()
            },
            tree: r#"{"name":"t","warning":true}"#.into(),
            tests: vec![TestResult {
                test_id: "s > a".into(),
                status: status.into(),
                duration_ms: Some(7),
            }],
        }
    }

    async fn a_tests_runs_come_newest_first_with_their_run(db: TestDb) {
        let store = db.open().await;
        let mut runs = Vec::new();
        for status in ["passed", "failed", "passed"] {
            let run = store.insert_run(&run_of("t")).await.unwrap();
            assert!(
                store
                    .save_job_results(&results(&run, status, 0))
                    .await
                    .unwrap()
            );
            runs.push(run);
        }
        let got = store.test_runs("t", "s > a", 2).await.unwrap();
        assert_eq!(
            got.iter()
                .map(|e| (e.run_id, e.status.as_str()))
                .collect::<Vec<_>>(),
            [(runs[2].id, "passed"), (runs[1].id, "failed")]
        );
        assert_eq!(
            (got[0].kind.as_str(), got[0].target.as_str()),
            ("task", "t")
        );
        assert_eq!(got[0].job_id, runs[2].jobs[0].id);
        assert_eq!(got[0].duration_ms, Some(7));
        assert!(got[0].enqueued_ms > 0);
        assert!(store.test_runs("t", "s > b", 5).await.unwrap().is_empty());
    }

    async fn a_jobs_tree_and_counts_are_replaced_and_its_tests_stay(db: TestDb) {
        let store = db.open().await;
        let run = store.insert_run(&run_of("t")).await.unwrap();
        let job = run.jobs[0].id;
        assert!(
            store
                .save_job_results(&results(&run, "passed", 1))
                .await
                .unwrap()
        );
        let counts = ResultCounts {
            passed: 1,
            ..ResultCounts::default()
        };
        assert!(
            store
                .replace_job_tree(job, &counts, "{\"name\":\"t\"}")
                .await
                .unwrap()
        );
        let rows = store.run_results(run.id).await.unwrap();
        assert_eq!(rows[0].counts, counts);
        assert_eq!(rows[0].tree, "{\"name\":\"t\"}");
        assert_eq!(
            store.run_result_counts(&[run.id]).await.unwrap()[&run.id].warnings,
            0
        );
        assert_eq!(store.test_runs("t", "s > a", 5).await.unwrap().len(), 1);
        assert!(
            !store
                .replace_job_tree(job + 1000, &counts, "{}")
                .await
                .unwrap()
        );
    }

    on_both!(
        a_tests_runs_come_newest_first_with_their_run,
        a_jobs_tree_and_counts_are_replaced_and_its_tests_stay,
    );
}
