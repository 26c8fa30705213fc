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
