//! The CI cache's records: each job with `cache:` and the digest of its inputs (with the facts
//! it was made of, hashes only), the earlier jobs a digest may hit, and the job a hit points to.

use chrono::Utc;
use sqlx::Row;

use crate::{Result, Store, ms};

/// A job's cache record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCache {
    pub job_id: i64,
    pub run_id: i64,
    pub attempt: u32,
    /// The repository's name, or `""` outside a repository.
    pub scope: String,
    /// The task, or `PIPELINE/TASK`.
    pub task: String,
    pub digest: String,
    /// `baton_results::cache::CacheFacts` as JSON.
    pub facts: String,
    /// The job (and its run) whose results are this job's: set when it was a hit.
    pub hit: Option<(i64, i64)>,
}

/// An earlier job with the same digest: how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSource {
    pub job_id: i64,
    pub run_id: i64,
    pub status: String,
    pub ended_ms: Option<i64>,
    pub was_hit: bool,
}

fn job_cache(row: &sqlx::any::AnyRow) -> Result<JobCache> {
    let hit_job: Option<i64> = row.try_get("hit_job")?;
    let hit_run: Option<i64> = row.try_get("hit_run")?;
    Ok(JobCache {
        job_id: row.try_get("job_id")?,
        run_id: row.try_get("run_id")?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        scope: row.try_get("scope")?,
        task: row.try_get("task")?,
        digest: row.try_get("digest")?,
        facts: row.try_get("facts")?,
        hit: hit_job.zip(hit_run),
    })
}

/// The most candidates a digest lookup reads (newest first).
const MAX_SOURCES: i64 = 50;

impl Store {
    /// Records a job's cache digest (a later attempt's replaces an earlier one's).
    pub async fn record_job_cache(&self, c: &JobCache) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_cache (job_id, run_id, attempt, scope, task, digest, facts,
                 hit_job, hit_run, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (job_id) DO UPDATE SET run_id = excluded.run_id,
                 attempt = excluded.attempt, scope = excluded.scope, task = excluded.task,
                 digest = excluded.digest, facts = excluded.facts, hit_job = excluded.hit_job,
                 hit_run = excluded.hit_run, created_at = excluded.created_at",
        )
        .bind(c.job_id)
        .bind(c.run_id)
        .bind(i64::from(c.attempt))
        .bind(&c.scope)
        .bind(&c.task)
        .bind(&c.digest)
        .bind(&c.facts)
        .bind(c.hit.map(|h| h.0))
        .bind(c.hit.map(|h| h.1))
        .bind(ms(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest earlier jobs of `scope` with `digest` (not `job_id` itself), with how they
    /// ended.
    pub async fn cache_sources(
        &self,
        scope: &str,
        digest: &str,
        job_id: i64,
    ) -> Result<Vec<CacheSource>> {
        let rows = sqlx::query(
            "SELECT c.job_id, c.run_id, c.hit_job, j.status, j.ended_at FROM job_cache c
             JOIN jobs j ON j.id = c.job_id AND j.attempt = c.attempt
             WHERE c.scope = $1 AND c.digest = $2 AND c.job_id != $3
             ORDER BY c.job_id DESC LIMIT $4",
        )
        .bind(scope)
        .bind(digest)
        .bind(job_id)
        .bind(MAX_SOURCES)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CacheSource {
                    job_id: r.try_get("job_id")?,
                    run_id: r.try_get("run_id")?,
                    status: r.try_get("status")?,
                    ended_ms: r.try_get("ended_at")?,
                    was_hit: r.try_get::<Option<i64>, _>("hit_job")?.is_some(),
                })
            })
            .collect()
    }

    /// A job's cache record.
    pub async fn job_cache(&self, job_id: i64) -> Result<Option<JobCache>> {
        let row = sqlx::query("SELECT * FROM job_cache WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_cache).transpose()
    }

    /// The newest job of the same task and scope before `job`'s that ran and succeeded: what
    /// `baton cache why` compares with.
    pub async fn previous_cache_source(&self, job: &JobCache) -> Result<Option<JobCache>> {
        let row = sqlx::query(
            "SELECT c.* FROM job_cache c JOIN jobs j ON j.id = c.job_id AND j.attempt = c.attempt
             WHERE c.scope = $1 AND c.task = $2 AND c.job_id < $3 AND c.hit_job IS NULL
               AND j.status = 'success'
             ORDER BY c.job_id DESC LIMIT 1",
        )
        .bind(&job.scope)
        .bind(&job.task)
        .bind(job.job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_cache).transpose()
    }
}
