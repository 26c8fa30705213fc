//! What retention needs to decide: every ended run (target, branch, end, failed) and the runs
//! a cache hit points to.

use std::collections::BTreeSet;

use sqlx::Row;

use crate::{Result, Store};

/// An ended run, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedRun {
    pub id: i64,
    pub target: String,
    pub branch: Option<String>,
    pub ended_ms: i64,
    pub status: String,
}

impl Store {
    /// Every ended run, oldest first.
    pub async fn ended_runs(&self) -> Result<Vec<EndedRun>> {
        let rows = sqlx::query(
            "SELECT id, target, branch, status, COALESCE(ended_at, enqueued_at) AS ended
             FROM runs WHERE status NOT IN ('queued', 'waiting', 'started', 'running')
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EndedRun {
                    id: r.try_get("id")?,
                    target: r.try_get("target")?,
                    branch: r.try_get("branch")?,
                    ended_ms: r.try_get("ended")?,
                    status: r.try_get("status")?,
                })
            })
            .collect()
    }

    /// The runs whose jobs a cache hit or a carried-over job (a rerun of failed jobs) points
    /// to (their results and artifacts are another job's, so they stay).
    pub async fn cache_pinned_runs(&self) -> Result<BTreeSet<i64>> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT hit_run FROM job_cache WHERE hit_run IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        let pattern = format!("{}%", baton_core::decide::rerun::CARRIED);
        let carried: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT reason FROM jobs WHERE status = 'skipped' AND reason LIKE $1",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?;
        let carried = carried
            .iter()
            .filter_map(|r| baton_core::decide::carried_of(Some(r)).map(|(_, run)| run));
        Ok(ids.into_iter().chain(carried).collect())
    }
}
