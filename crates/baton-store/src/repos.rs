//! Repositories: the code a run was triggered for, webhook deliveries with their verdicts, and
//! where each repository's bare mirror lives.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use baton_core::run::Status;
use sqlx::{Any, QueryBuilder};

use crate::{Result, RunFilter, RunFolders, Store, corrupt, from_ms, ms};

/// The code a run was triggered for (columns of `runs`; all unknown for other runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRepo {
    /// The repository's name in `repos:`.
    pub repo: String,
    /// Its clone URL, as configured.
    pub url: String,
    /// The full commit sha.
    pub commit: String,
    /// The full ref (`refs/heads/main`).
    pub git_ref: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// The pull request's number.
    pub pr: Option<i64>,
    /// The pull request's head commit (the run's `commit` is the merge, unless `pr_head`).
    #[serde(default)]
    pub pr_head: Option<String>,
    /// The branch the pull request targets.
    #[serde(default)]
    pub pr_base: Option<String>,
    /// The pull request comes from a fork: its jobs get no secrets.
    #[serde(default)]
    pub pr_fork: bool,
    /// `push`, `pull_request`, `manual`, …
    pub event: String,
    /// The webhook delivery id that started it.
    pub delivery: Option<String>,
    /// `Name <email>` of the commit's author.
    pub author: Option<String>,
    /// The commit message's first line.
    pub subject: Option<String>,
    /// The machine a run imported from a developer's pushed result ref ran on (`None`: the
    /// server ran it).
    #[serde(default)]
    pub ran_on: Option<String>,
}

pub(crate) async fn write_run_repo(
    tx: &mut sqlx::AnyConnection,
    id: i64,
    r: &RunRepo,
) -> Result<()> {
    sqlx::query(
        "UPDATE runs SET repo = $1, repo_url = $2, commit_sha = $3, git_ref = $4, branch = $5, tag = $6,
             pr = $7, event = $8, delivery = $9, author = $10, subject = $11, pr_head = $12,
             pr_base = $13, pr_fork = $14, ran_on = $15
         WHERE id = $16",
    )
    .bind(&r.repo)
    .bind(&r.url)
    .bind(&r.commit)
    .bind(&r.git_ref)
    .bind(&r.branch)
    .bind(&r.tag)
    .bind(r.pr)
    .bind(&r.event)
    .bind(&r.delivery)
    .bind(&r.author)
    .bind(&r.subject)
    .bind(&r.pr_head)
    .bind(&r.pr_base)
    .bind(i64::from(r.pr_fork))
    .bind(&r.ran_on)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(crate) fn read_run_repo(row: &AnyRow) -> Result<Option<RunRepo>> {
    let Some(repo) = row.try_get::<Option<String>, _>("repo")? else {
        return Ok(None);
    };
    Ok(Some(RunRepo {
        repo,
        url: row
            .try_get::<Option<String>, _>("repo_url")?
            .unwrap_or_default(),
        commit: row
            .try_get::<Option<String>, _>("commit_sha")?
            .unwrap_or_default(),
        git_ref: row.try_get("git_ref")?,
        branch: row.try_get("branch")?,
        tag: row.try_get("tag")?,
        pr: row.try_get("pr")?,
        event: row
            .try_get::<Option<String>, _>("event")?
            .unwrap_or_default(),
        delivery: row.try_get("delivery")?,
        author: row.try_get("author")?,
        subject: row.try_get("subject")?,
        pr_head: row.try_get("pr_head")?,
        pr_base: row.try_get("pr_base")?,
        pr_fork: row.try_get::<i64, _>("pr_fork")? != 0,
        ran_on: row.try_get("ran_on")?,
    }))
}

/// A webhook delivery to record.
#[derive(Debug, Clone, Default)]
pub struct NewDelivery {
    pub received_at: DateTime<Utc>,
    pub forge: String,
    pub event: String,
    /// Only for verified deliveries (a forged one must not block the real one's id).
    pub delivery: Option<String>,
    pub repo: Option<String>,
    pub git_ref: Option<String>,
    pub commit: Option<String>,
    pub status_code: u16,
    pub verdict: String,
    /// For an accepted delivery whose runs are not triggered yet: how to process it again.
    pub pending: Option<PendingDelivery>,
}

/// What processing an accepted delivery again needs, kept until it is finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelivery {
    /// The verified payload's file name in [`RunFolders::deliveries`].
    pub payload: String,
    /// The request's headers the parser reads (no signature or token).
    pub headers: Vec<(String, String)>,
}

/// A recorded delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub forge: String,
    pub event: String,
    pub delivery: Option<String>,
    pub repo: Option<String>,
    pub git_ref: Option<String>,
    pub commit: Option<String>,
    pub status_code: u16,
    pub verdict: String,
    pub run_ids: Vec<i64>,
    /// Accepted, its runs not triggered yet (it is being processed, or will be after a restart).
    pub processing: bool,
}

/// What [`Store::claim_delivery`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: recorded with this id; finish it with [`Store::finish_delivery`].
    New(i64),
    /// A redelivery: the first one, as recorded.
    Seen(Box<DeliveryRow>),
}

impl RunFolders {
    /// The bare mirror of repository `name` (`<data>/repos/<name>.git`); names are checked by
    /// the config loader, so the path stays in the data directory.
    pub fn repo_mirror(&self, name: &str) -> PathBuf {
        self.data_dir().join("repos").join(format!("{name}.git"))
    }

    /// Where the ended jobs' working trees of repository `name` wait to be reused
    /// (`<data>/repos/NAME.trees`, beside the job folders so a tree moves by `rename`).
    pub fn repo_trees(&self, name: &str) -> PathBuf {
        self.data_dir().join("repos").join(format!("{name}.trees"))
    }

    /// Where the payloads of accepted, unfinished deliveries are kept (`<data>/deliveries`).
    pub fn deliveries(&self) -> PathBuf {
        self.data_dir().join("deliveries")
    }
}

/// The repository part of a run listing's `WHERE` (repo, branch, commit prefix); each is an
/// indexed equality or range, so a filtered page reads only its rows.
pub(crate) fn push_code_filter(qb: &mut QueryBuilder<Any>, filter: &RunFilter) {
    if let Some(repo) = &filter.repo {
        qb.push(" AND repo = ").push_bind(repo.clone());
    }
    if let Some(branch) = &filter.branch {
        qb.push(" AND branch = ").push_bind(branch.clone());
    }
    if let Some(prefix) = &filter.commit {
        // A prefix as a range (shas are lowercase hex, all below `z`): portable, and it uses
        // the index where `LIKE` would not.
        let prefix = prefix.to_ascii_lowercase();
        qb.push(" AND commit_sha >= ")
            .push_bind(prefix.clone())
            .push(" AND commit_sha < ")
            .push_bind(format!("{prefix}z"));
    }
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow> {
    let run_ids: String = row.try_get("run_ids")?;
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        received_at: from_ms(row.try_get("received_at")?),
        forge: row.try_get("forge")?,
        event: row.try_get("event")?,
        delivery: row.try_get("delivery")?,
        repo: row.try_get("repo")?,
        git_ref: row.try_get("git_ref")?,
        commit: row.try_get("commit_sha")?,
        status_code: u16::try_from(row.try_get::<i64, _>("status_code")?).unwrap_or(0),
        verdict: row.try_get("verdict")?,
        run_ids: serde_json::from_str(&run_ids)
            .map_err(|e| corrupt("webhook_deliveries", e.to_string()))?,
        processing: row.try_get::<Option<String>, _>("pending")?.is_some(),
    })
}

impl Store {
    /// Records a delivery. With a delivery id already recorded for its forge, records nothing
    /// and returns the first one ([`Claim::Seen`]): a redelivery starts nothing new.
    pub async fn claim_delivery(&self, d: &NewDelivery) -> Result<Claim> {
        if let Some(id) = &d.delivery
            && let Some(first) = self.delivery_by_id(&d.forge, id).await?
        {
            return Ok(Claim::Seen(Box::new(first)));
        }
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (received_at, forge, event, delivery, repo, git_ref,
                 commit_sha, status_code, verdict, run_ids, pending)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '[]', $10)
             ON CONFLICT (forge, delivery) DO NOTHING RETURNING id",
        )
        .bind(ms(d.received_at))
        .bind(&d.forge)
        .bind(&d.event)
        .bind(&d.delivery)
        .bind(&d.repo)
        .bind(&d.git_ref)
        .bind(&d.commit)
        .bind(i64::from(d.status_code))
        .bind(&d.verdict)
        .bind(
            d.pending
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap_or_default()),
        )
        .fetch_optional(self.pool())
        .await?;
        match (inserted, &d.delivery) {
            (Some(id), _) => Ok(Claim::New(id)),
            // Lost a race with the same delivery arriving twice at once.
            (None, Some(id)) => match self.delivery_by_id(&d.forge, id).await? {
                Some(first) => Ok(Claim::Seen(Box::new(first))),
                None => Err(corrupt("webhook_deliveries", "claimed delivery vanished")),
            },
            (None, None) => Err(corrupt("webhook_deliveries", "insert returned no id")),
        }
    }

    /// Sets a claimed delivery's answer and the runs it started; it is no longer pending.
    pub async fn finish_delivery(
        &self,
        id: i64,
        status_code: u16,
        verdict: &str,
        run_ids: &[i64],
    ) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status_code = $1, verdict = $2, run_ids = $3, pending = NULL
             WHERE id = $4",
        )
        .bind(i64::from(status_code))
        .bind(verdict)
        .bind(serde_json::to_string(run_ids).unwrap_or_else(|_| "[]".into()))
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn delivery_by_id(&self, forge: &str, delivery: &str) -> Result<Option<DeliveryRow>> {
        sqlx::query("SELECT * FROM webhook_deliveries WHERE forge = $1 AND delivery = $2")
            .bind(forge)
            .bind(delivery)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(delivery_from_row)
            .transpose()
    }

    /// Deliveries accepted but not finished (the server stopped while processing them), oldest
    /// first, with what processing them again needs.
    pub async fn pending_deliveries(&self) -> Result<Vec<(DeliveryRow, PendingDelivery)>> {
        let rows =
            sqlx::query("SELECT * FROM webhook_deliveries WHERE pending IS NOT NULL ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                let pending: String = row.try_get("pending")?;
                let pending = serde_json::from_str(&pending)
                    .map_err(|e| corrupt("webhook_deliveries.pending", e.to_string()))?;
                Ok((delivery_from_row(row)?, pending))
            })
            .collect()
    }

    /// The top-level runs (not started by another run) of repository `repo` that delivery
    /// `delivery` triggered: `(id, target)`, oldest first.
    pub async fn delivery_runs(&self, repo: &str, delivery: &str) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT id, target FROM runs WHERE repo = $1 AND delivery = $2
                 AND NOT EXISTS (SELECT 1 FROM run_links WHERE descendant = runs.id)
             ORDER BY id",
        )
        .bind(repo)
        .bind(delivery)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("target")?)))
            .collect()
    }

    /// Deliveries older than `before` (all without it), newest first, `limit` at most: pass the
    /// last id seen as `before` for the next page.
    pub async fn deliveries_page(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        sqlx::query("SELECT * FROM webhook_deliveries WHERE id < $1 ORDER BY id DESC LIMIT $2")
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    /// The newest run of task `target` (on `branch`, when given) that is running or has ended
    /// with a result (skipped and canceled runs say nothing of the code): its id and status.
    pub async fn latest_result(
        &self,
        target: &str,
        branch: Option<&str>,
    ) -> Result<Option<(i64, Status)>> {
        let mut qb = QueryBuilder::<Any>::new("SELECT id, status FROM runs WHERE kind = 'task'");
        qb.push(" AND target = ").push_bind(target.to_owned());
        if let Some(b) = branch {
            qb.push(" AND branch = ").push_bind(b.to_owned());
        }
        qb.push(" AND status IN (");
        let mut sep = qb.separated(", ");
        for st in [
            Status::Started,
            Status::Running,
            Status::Success,
            Status::Failed,
            Status::Broken,
            Status::Jammed,
        ] {
            sep.push_bind(st.as_str());
        }
        qb.push(") ORDER BY id DESC LIMIT 1");
        let Some(row) = crate::built(&mut qb).fetch_optional(self.pool()).await? else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let status = status
            .parse::<Status>()
            .map_err(|e| corrupt("runs", e.to_string()))?;
        Ok(Some((row.try_get("id")?, status)))
    }

    /// The latest deliveries, newest first.
    pub async fn list_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRow>> {
        sqlx::query("SELECT * FROM webhook_deliveries ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use baton_core::run::{Status, TargetKind, TriggerKind};

    use super::*;
    use crate::{NewJob, NewRun};

    fn delivery(id: Option<&str>) -> NewDelivery {
        NewDelivery {
            received_at: Utc::now(),
            forge: "github".into(),
            event: "push".into(),
            delivery: id.map(str::to_owned),
            repo: Some("app".into()),
            git_ref: Some("refs/heads/main".into()),
            commit: Some("a".repeat(40)),
            status_code: 202,
            verdict: "processing".into(),
            pending: Some(PendingDelivery {
                payload: "1.body".into(),
                headers: vec![("X-GitHub-Event".into(), "push".into())],
            }),
        }
    }

    #[tokio::test]
    async fn a_redelivery_finds_the_first_with_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).await.unwrap();
        let Claim::New(id) = store.claim_delivery(&delivery(Some("d1"))).await.unwrap() else {
            panic!("first delivery seen before");
        };
        let pending = store.pending_deliveries().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].0.processing);
        assert_eq!(pending[0].1, delivery(None).pending.unwrap());
        let Claim::Seen(early) = store.claim_delivery(&delivery(Some("d1"))).await.unwrap() else {
            panic!("redelivery while processing not recognised");
        };
        assert!(early.processing);
        store
            .finish_delivery(id, 202, "started 2 runs", &[4, 5])
            .await
            .unwrap();
        let Claim::Seen(first) = store.claim_delivery(&delivery(Some("d1"))).await.unwrap() else {
            panic!("redelivery not recognised");
        };
        assert_eq!((first.id, first.run_ids.clone()), (id, vec![4, 5]));
        assert_eq!(first.verdict, "started 2 runs");
        assert!(!first.processing);
        assert!(store.pending_deliveries().await.unwrap().is_empty());
        // Another forge may use the same id; deliveries without an id never collide.
        let mut other = delivery(Some("d1"));
        other.forge = "gitea".into();
        assert!(matches!(
            store.claim_delivery(&other).await,
            Ok(Claim::New(_))
        ));
        assert!(matches!(
            store.claim_delivery(&delivery(None)).await,
            Ok(Claim::New(_))
        ));
        assert!(matches!(
            store.claim_delivery(&delivery(None)).await,
            Ok(Claim::New(_))
        ));
        let all = store.list_deliveries(10).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].id, id);
    }

    #[tokio::test]
    async fn runs_keep_their_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let store = Store::open(&path).await.unwrap();
        let repo = RunRepo {
            repo: "app".into(),
            url: "/srv/app".into(),
            commit: "b".repeat(40),
            git_ref: Some("refs/heads/main".into()),
            branch: Some("main".into()),
            tag: None,
            pr: None,
            event: "push".into(),
            delivery: Some("d1".into()),
            author: Some("A <a@x>".into()),
            subject: Some("fix".into()),
            ..RunRepo::default()
        };
        let new = NewRun {
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
            repo: Some(repo.clone()),
        };
        let row = store.insert_run(&new).await.unwrap();
        assert_eq!(row.repo.as_ref(), Some(&repo));
        assert_eq!(
            store.delivery_runs("app", "d1").await.unwrap(),
            vec![(row.id, "app/test".to_owned())]
        );
        assert!(store.delivery_runs("app", "d2").await.unwrap().is_empty());
        drop(store);
        let store = Store::open(&path).await.unwrap();
        assert_eq!(
            store.get_run(row.id).await.unwrap().unwrap().repo,
            Some(repo)
        );
        let plain = NewRun { repo: None, ..new };
        let row = store.insert_run(&plain).await.unwrap();
        assert_eq!(store.get_run(row.id).await.unwrap().unwrap().repo, None);
        assert_eq!(
            RunFolders::new(dir.path()).repo_mirror("app"),
            dir.path().join("repos/app.git")
        );
    }

    /// Four runs of repositories `app` and `lib` on branches and commits; their ids.
    async fn code_runs(store: &Store) -> Vec<i64> {
        let mut ids = Vec::new();
        for (repo, branch, sha, status) in [
            ("app", "main", "abc1", Status::Failed),
            ("app", "main", "abc2", Status::Success),
            ("app", "dev", "abd3", Status::Running),
            ("lib", "main", "ffe4", Status::Canceled),
        ] {
            let new = NewRun {
                kind: TargetKind::Task,
                target: format!("{repo}/test"),
                trigger: TriggerKind::Webhook,
                args: BTreeMap::new(),
                tags: vec![],
                definition: serde_json::json!({}),
                status,
                reason: None,
                priority: 0,
                partition: None,
                enqueued_at: Utc::now(),
                not_before: None,
                jobs: vec![],
                ancestors: vec![],
                repo: Some(RunRepo {
                    repo: repo.into(),
                    commit: sha.repeat(10),
                    branch: Some(branch.into()),
                    event: "push".into(),
                    ..RunRepo::default()
                }),
            };
            ids.push(store.insert_run(&new).await.unwrap().id);
        }
        ids
    }

    #[tokio::test]
    async fn runs_are_found_by_repo_branch_and_commit_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).await.unwrap();
        let ids = code_runs(&store).await;
        let list = |repo: Option<&str>, branch: Option<&str>, commit: Option<&str>| {
            let filter = RunFilter {
                repo: repo.map(str::to_owned),
                branch: branch.map(str::to_owned),
                commit: commit.map(str::to_owned),
                ..RunFilter::default()
            };
            let store = &store;
            async move {
                let runs = store.list_runs(&filter, 50).await.unwrap();
                runs.iter().map(|r| r.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(
            list(Some("app"), None, None).await,
            vec![ids[2], ids[1], ids[0]]
        );
        assert_eq!(
            list(Some("app"), Some("main"), None).await,
            vec![ids[1], ids[0]]
        );
        assert_eq!(
            list(None, Some("main"), None).await,
            vec![ids[3], ids[1], ids[0]]
        );
        assert_eq!(list(None, None, Some("ABC")).await, vec![ids[1], ids[0]]);
        assert_eq!(list(None, None, Some("abc2abc2")).await, vec![ids[1]]);
        assert_eq!(
            list(None, None, Some("ab")).await,
            vec![ids[2], ids[1], ids[0]]
        );
        assert!(list(Some("lib"), Some("dev"), None).await.is_empty());
    }

    #[tokio::test]
    async fn a_badge_reads_the_newest_result_through_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).await.unwrap();
        let ids = code_runs(&store).await;
        // The badge's run: the newest running or ended one; canceled runs say nothing.
        let latest = |t: &'static str, b: Option<&'static str>| store.latest_result(t, b);
        assert_eq!(
            latest("app/test", Some("main")).await.unwrap(),
            Some((ids[1], Status::Success))
        );
        assert_eq!(
            latest("app/test", Some("dev")).await.unwrap(),
            Some((ids[2], Status::Running))
        );
        assert_eq!(
            latest("app/test", None).await.unwrap(),
            Some((ids[2], Status::Running))
        );
        assert_eq!(latest("lib/test", Some("main")).await.unwrap(), None);
        assert_eq!(latest("app/test", Some("nope")).await.unwrap(), None);

        // The query plans use the indexes.
        for (sql, index) in [
            (
                "EXPLAIN QUERY PLAN SELECT * FROM runs WHERE branch = 'main' ORDER BY id DESC LIMIT 50",
                "runs_branch",
            ),
            (
                "EXPLAIN QUERY PLAN SELECT * FROM runs WHERE commit_sha >= 'ab' AND commit_sha < 'abz'",
                "runs_commit",
            ),
            (
                "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE target = 'a' AND branch = 'b' ORDER BY id DESC LIMIT 1",
                "runs_target_branch",
            ),
        ] {
            let plan: Vec<String> = sqlx::query(sql)
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect();
            assert!(plan.iter().any(|d| d.contains(index)), "{sql}: {plan:?}");
        }
    }
}
