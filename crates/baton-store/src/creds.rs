//! Forge credentials the server must clean up or refer to again: tokens minted for jobs that
//! do not expire on their own (recorded by name and id, never the token), and the GitHub check
//! run that reports each run's task.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, Store, ms};

/// A minted (or being minted) job token not revoked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCredRow {
    pub id: i64,
    pub job_id: i64,
    pub attempt: u32,
    pub repo: String,
    /// The token's name on the forge.
    pub name: String,
    /// The forge's id of the token, once minted.
    pub token_id: Option<i64>,
}

impl Store {
    /// Records that a token named `name` is being minted for job `job_id`'s `attempt`; returns
    /// the row's id.
    pub async fn add_job_cred(
        &self,
        job_id: i64,
        attempt: u32,
        repo: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO job_creds (job_id, attempt, repo, name, token_id, created_at)
             VALUES ($1, $2, $3, $4, NULL, $5) RETURNING id",
        )
        .bind(job_id)
        .bind(i64::from(attempt))
        .bind(repo)
        .bind(name)
        .bind(ms(at))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Records the forge's id of the token of row `id`.
    pub async fn set_job_cred_token_id(&self, id: i64, token_id: i64) -> Result<()> {
        sqlx::query("UPDATE job_creds SET token_id = $1 WHERE id = $2")
            .bind(token_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets row `id`: its token is revoked (or was never minted).
    pub async fn remove_job_cred(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM job_creds WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The tokens not revoked whose job attempt is not running any more (it ended, or the
    /// server stopped before revoking).
    pub async fn leftover_job_creds(&self) -> Result<Vec<JobCredRow>> {
        let rows = sqlx::query(
            "SELECT c.* FROM job_creds c LEFT JOIN jobs j ON j.id = c.job_id
              WHERE j.id IS NULL OR j.attempt != c.attempt
                 OR j.status NOT IN ('started', 'running')
              ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobCredRow {
                    id: r.try_get("id")?,
                    job_id: r.try_get("job_id")?,
                    attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(0),
                    repo: r.try_get("repo")?,
                    name: r.try_get("name")?,
                    token_id: r.try_get("token_id")?,
                })
            })
            .collect()
    }

    /// The GitHub check run that reports `context` of run `run_id`: `None` before any create
    /// was tried, [`CheckRunRecord::Intended`] once one may have been (its id never recorded).
    pub async fn check_run(&self, run_id: i64, context: &str) -> Result<Option<CheckRunRecord>> {
        let id: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT check_run_id FROM check_runs WHERE run_id = $1 AND context = $2",
        )
        .bind(run_id)
        .bind(context)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map(|id| id.map_or(CheckRunRecord::Intended, CheckRunRecord::Created)))
    }

    /// Records, before GitHub is asked, that a check run for `context` of run `run_id` is
    /// being created (a recorded one stays as it is).
    pub async fn intend_check_run(&self, run_id: i64, context: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO check_runs (run_id, context, check_run_id) VALUES ($1, $2, NULL)
             ON CONFLICT (run_id, context) DO NOTHING",
        )
        .bind(run_id)
        .bind(context)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the check run created for `context` of run `run_id`.
    pub async fn set_check_run(&self, run_id: i64, context: &str, check_run_id: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO check_runs (run_id, context, check_run_id) VALUES ($1, $2, $3)
             ON CONFLICT (run_id, context) DO UPDATE SET check_run_id = excluded.check_run_id",
        )
        .bind(run_id)
        .bind(context)
        .bind(check_run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What the store knows of a run's check run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRunRecord {
    /// Its create was (or is about to be) sent; GitHub's answer was never recorded.
    Intended,
    /// Created, with GitHub's id.
    Created(i64),
}
