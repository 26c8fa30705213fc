//! What the server knows of each repository between events: the heads its poller last saw
//! (`repo_heads`, so a restart does not trigger the same commit again) and its last fetch
//! (`repo_fetches`: when, and the error if it failed), shown on the repositories page.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::{Result, RunRow, Store, from_ms, ms};

/// A repository's last fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchState {
    /// When the last fetch (with its retries) ended.
    pub fetched_at: DateTime<Utc>,
    /// When a fetch last succeeded.
    pub ok_at: Option<DateTime<Utc>>,
    /// Why the last fetch failed; `None` when it succeeded.
    pub error: Option<String>,
    /// When the poller last recorded the heads.
    pub polled_at: Option<DateTime<Utc>>,
}

impl Store {
    /// The heads the poller last saw for `repo`: full ref → commit. Empty for a repository it
    /// never polled.
    pub async fn repo_heads(&self, repo: &str) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT git_ref, commit_sha FROM repo_heads WHERE repo = $1")
            .bind(repo)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("git_ref")?, r.try_get("commit_sha")?)))
            .collect()
    }

    /// Whether the poller ever recorded heads for `repo` (its first poll records them without
    /// triggering).
    pub async fn repo_polled(&self, repo: &str) -> Result<bool> {
        let at: Option<Option<i64>> =
            sqlx::query_scalar("SELECT polled_at FROM repo_fetches WHERE repo = $1")
                .bind(repo)
                .fetch_optional(self.pool())
                .await?;
        Ok(at.flatten().is_some())
    }

    /// Replaces the heads seen for `repo` with `heads` (full ref → commit), in one transaction.
    pub async fn set_repo_heads(
        &self,
        repo: &str,
        heads: &BTreeMap<String, String>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM repo_heads WHERE repo = $1")
            .bind(repo)
            .execute(&mut *tx)
            .await?;
        for (git_ref, commit) in heads {
            sqlx::query(
                "INSERT INTO repo_heads (repo, git_ref, commit_sha, seen_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(repo)
            .bind(git_ref)
            .bind(commit)
            .bind(ms(at))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO repo_fetches (repo, fetched_at, ok_at, polled_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repo) DO UPDATE SET polled_at = excluded.polled_at",
        )
        .bind(repo)
        .bind(ms(at))
        .bind(ms(at))
        .bind(ms(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that `git_ref` of `repo` is at `commit` (a webhook's push was built), so the
    /// poller does not build it again.
    pub async fn note_repo_head(
        &self,
        repo: &str,
        git_ref: &str,
        commit: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO repo_heads (repo, git_ref, commit_sha, seen_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repo, git_ref) DO UPDATE SET commit_sha = excluded.commit_sha,
                 seen_at = excluded.seen_at",
        )
        .bind(repo)
        .bind(git_ref)
        .bind(commit)
        .bind(ms(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records how a fetch of `repo` ended at `at`: `error` is `None` when it succeeded.
    pub async fn record_fetch(
        &self,
        repo: &str,
        at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<()> {
        let ok_at = error.is_none().then(|| ms(at));
        sqlx::query(
            "INSERT INTO repo_fetches (repo, fetched_at, ok_at, error) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repo) DO UPDATE SET fetched_at = excluded.fetched_at,
                 ok_at = COALESCE(excluded.ok_at, repo_fetches.ok_at), error = excluded.error",
        )
        .bind(repo)
        .bind(ms(at))
        .bind(ok_at)
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The latest top-level runs of repository `repo`, newest first.
    pub async fn repo_runs(&self, repo: &str, limit: u32) -> Result<Vec<RunRow>> {
        let rows = sqlx::query("SELECT * FROM runs WHERE repo = $1 ORDER BY id DESC LIMIT $2")
            .bind(repo)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(crate::run_from_row).collect()
    }

    /// Every repository's last fetch, by name.
    pub async fn repo_fetches(&self) -> Result<BTreeMap<String, FetchState>> {
        let rows =
            sqlx::query("SELECT repo, fetched_at, ok_at, error, polled_at FROM repo_fetches")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                let ok_at: Option<i64> = r.try_get("ok_at")?;
                let polled_at: Option<i64> = r.try_get("polled_at")?;
                Ok((
                    r.try_get("repo")?,
                    FetchState {
                        fetched_at: from_ms(r.try_get("fetched_at")?),
                        ok_at: ok_at.map(from_ms),
                        error: r.try_get("error")?,
                        polled_at: polled_at.map(from_ms),
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::{TestDb, on_both};

    async fn heads_and_fetches_round_trip(db: TestDb) {
        let store = db.open().await;
        assert!(store.repo_heads("app").await.unwrap().is_empty());
        assert!(!store.repo_polled("app").await.unwrap());
        let mut heads = BTreeMap::new();
        heads.insert("refs/heads/main".to_owned(), "a".repeat(40));
        heads.insert("refs/heads/dev".to_owned(), "b".repeat(40));
        store
            .set_repo_heads("app", &heads, Utc::now())
            .await
            .unwrap();
        heads.remove("refs/heads/dev");
        store
            .set_repo_heads("app", &heads, Utc::now())
            .await
            .unwrap();
        assert_eq!(store.repo_heads("app").await.unwrap(), heads);
        store
            .note_repo_head("app", "refs/heads/main", &"c".repeat(40), Utc::now())
            .await
            .unwrap();
        heads.insert("refs/heads/main".to_owned(), "c".repeat(40));
        assert_eq!(store.repo_heads("app").await.unwrap(), heads);
        assert!(store.repo_heads("other").await.unwrap().is_empty());
        assert!(store.repo_polled("app").await.unwrap());
        assert!(!store.repo_polled("other").await.unwrap());

        store.record_fetch("app", Utc::now(), None).await.unwrap();
        store
            .record_fetch("app", Utc::now(), Some("unreachable"))
            .await
            .unwrap();
        let f = &store.repo_fetches().await.unwrap()["app"];
        assert_eq!(f.error.as_deref(), Some("unreachable"));
        assert!(f.ok_at.is_some(), "the last success is kept: {f:?}");
        store.record_fetch("app", Utc::now(), None).await.unwrap();
        assert_eq!(store.repo_fetches().await.unwrap()["app"].error, None);
    }

    on_both!(heads_and_fetches_round_trip,);
}
