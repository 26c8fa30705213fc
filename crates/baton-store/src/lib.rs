//! Baton's durable store: the only place that writes SQL, and the owner of run folders on disk.
//!
//! Architecture Invariant: the store makes no scheduling decision; it records what the
//! scheduler decided, in one transaction per batch, and a write is durable (WAL, synchronous
//! FULL) before the call returns — so before anyone is told.

mod cache;
mod counts;
mod creds;
mod database;
mod folders;
mod imports;
mod leases;
mod notices;
mod outbox;
mod records;
mod repo_state;
mod reports;
mod repos;
mod results;
mod retention;
mod rows;
mod token_cache;
mod tokens;
mod users;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Execute, QueryBuilder, Row};

use baton_core::run::{Status, TargetKind, TriggerKind};

pub use cache::{CacheSource, JobCache};
pub use creds::{CheckRunRecord, JobCredRow};
pub use database::{Backend, Database, PendingMigration, split_password, testing};
pub use folders::RunFolders;
pub use imports::{ImportMark, ImportedRef, UnfinishedImport};
pub use leases::{Fence, Lease, SCHEDULER_LEASE};
pub use notices::{NoticeRow, RunEnd};
pub use outbox::Outbox;
pub use records::{Change, JobRow, NewJob, NewRun, RunFilter, RunRow, Visible};
pub use repo_state::FetchState;
pub use reports::{NewReport, ReportOutcome, ReportRow};
pub use repos::{Claim, DeliveryRow, NewDelivery, PendingDelivery, RunRepo};
pub use results::{
    JobResultsRow, NewJobResults, ResultCounts, TestHistoryEntry, TestResult, TestRunEntry,
};
pub use retention::EndedRun;
pub use token_cache::{TOKEN_CACHE_MAX, TOKEN_CACHE_TTL};
pub use tokens::{POOL_JOIN_PREFIX, TokenInfo};
pub use users::{
    MIN_PASSWORD_CHARS, NewSession, SessionInfo, SessionRow, UserInfo, session_handle,
    valid_user_name,
};

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "could not open the database at {path}: {source} (hint: for SQLite, check the data directory's permissions and free space; for PostgreSQL, that the server runs and the URL's user, password and database are right)"
    )]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("no user named `{0}` (hint: add one with `baton user add NAME`)")]
    NoSuchUser(String),
    #[error("{0}")]
    Password(String),
    #[error(
        "the name `{user}` belongs to {owner} here, not to this account of {provider} (hint: an administrator can rename one of them)"
    )]
    IdentityConflict {
        user: String,
        provider: String,
        /// `a password user`, `a user of OTHER` or `another account of PROVIDER`.
        owner: String,
    },
    #[error(
        "refused: {0}; this server stops scheduling (hint: another server took over; nothing was recorded)"
    )]
    Fenced(String),
    #[error("corrupt row in table {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Which database the pool talks to (SQL differs in a few places).
    backend: Backend,
    /// Committed write transactions (see [`Store::write_commits`]).
    commits: Arc<AtomicU64>,
    /// The scheduler lease every [`Store::apply`] checks, once this server holds it.
    fence: Arc<std::sync::OnceLock<Arc<Fence>>>,
    /// One connection of its own for taking and renewing leases.
    lease_pool: AnyPool,
    /// Tokens verified lately ([`Store::verify_token_cached`]); every revocation through this
    /// store forgets its entries.
    token_cache: Arc<token_cache::TokenCache>,
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

pub(crate) fn corrupt(table: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        message: message.into(),
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        Store::connect(&Database::Sqlite(path.to_path_buf())).await
    }

    /// Opens the database `db` names (SQLite: creating the file if needed) and applies the
    /// migrations it lacks.
    pub async fn connect(db: &Database) -> Result<Store> {
        let store = Store::connect_unmigrated(db).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens `db` without touching its schema (`baton migrate --dry-run`).
    pub async fn connect_unmigrated(db: &Database) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = db.backend();
        let open_err = |source| StoreError::Open {
            path: db.to_string(),
            source,
        };
        let opts: AnyConnectOptions = db.url().parse().map_err(open_err)?;
        // Durability: a write is on disk before the call returns (SQLite: WAL with synchronous
        // FULL; PostgreSQL: synchronous commit, whatever the server's default).
        let setup = match backend {
            Backend::Sqlite => {
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
            }
            Backend::Postgres => "SET synchronous_commit = on",
        };
        let options = |max| {
            AnyPoolOptions::new()
                .max_connections(max)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        sqlx::raw_sql(setup).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
        };
        // The scheduler lease's own connection, made when first used: renewals never queue
        // behind a busy pool (a burst of requests must not cost the server its lease).
        let lease_pool = options(1).connect_lazy_with(opts.clone());
        let pool = options(match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        })
        .connect_with(opts)
        .await
        .map_err(open_err)?;
        Ok(Store {
            pool,
            backend,
            commits: Arc::default(),
            fence: Arc::default(),
            lease_pool,
            token_cache: Arc::default(),
        })
    }

    /// Which database this store is in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Records a new run with its jobs and ancestor links, in one transaction.
    pub async fn insert_run(&self, new: &NewRun) -> Result<RunRow> {
        let (run_id, job_id) = self.next_ids().await?;
        let row = new.clone().into_row(run_id, job_id);
        self.apply(&[Change::NewRun(Box::new(row.clone()))]).await?;
        Ok(row)
    }

    /// The ids the next run and the next job get: one past the highest recorded (as SQLite
    /// would pick them). The scheduler, the only one that adds runs and jobs, counts on from
    /// there, so a batch knows its runs' ids before it is recorded.
    pub async fn next_ids(&self) -> Result<(i64, i64)> {
        let run: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM runs")
            .fetch_one(&self.pool)
            .await?;
        let job: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs")
            .fetch_one(&self.pool)
            .await?;
        Ok((run, job))
    }

    /// How many write transactions of scheduling state (runs, jobs, timers, overrides) this
    /// store committed since it was opened. Group commit shows here: one per scheduler
    /// batch, however many triggers it held.
    pub fn write_commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Commits `tx` and counts it.
    async fn commit(&self, tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
        tx.commit().await?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies a batch of changes in one transaction (one fsync).
    pub async fn apply(&self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        for c in changes {
            match c {
                Change::Job {
                    id,
                    status,
                    reason,
                    worker,
                    exit_code,
                    started_at,
                    ended_at,
                    ended_seq,
                    attempt,
                } => {
                    sqlx::query(
                        "UPDATE jobs SET status = $1, reason = $2, worker = $3, exit_code = $4,
                            started_at = $5, ended_at = COALESCE($6, ended_at),
                            ended_seq = COALESCE($7, ended_seq), attempt = COALESCE($8, attempt)
                         WHERE id = $9",
                    )
                    .bind(status.as_str())
                    .bind(reason)
                    .bind(worker)
                    .bind(exit_code.map(i64::from))
                    .bind(started_at.map(ms))
                    .bind(ended_at.map(ms))
                    .bind(ended_seq.map(|s| s as i64))
                    .bind(attempt.map(i64::from))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::Run {
                    id,
                    status,
                    reason,
                    started_at,
                    ended_at,
                    builds_commit,
                } => {
                    sqlx::query(
                        "UPDATE runs SET status = $1, reason = $2,
                            started_at = COALESCE(started_at, $3), ended_at = COALESCE($4, ended_at)
                         WHERE id = $5",
                    )
                    .bind(status.as_str())
                    .bind(reason)
                    .bind(started_at.map(ms))
                    .bind(ended_at.map(ms))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    // The commit status it means, in the same transaction (the outbox).
                    if *builds_commit {
                        reports::record_run_state(&mut tx, *id, *status, now).await?;
                    }
                    notices::record_run_end(&mut tx, *id, *status, now).await?;
                }
                Change::JobReady { id, at } => {
                    sqlx::query("UPDATE jobs SET ready_at = COALESCE(ready_at, $1) WHERE id = $2")
                        .bind(ms(*at))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Change::Mark { target, slot } => {
                    sqlx::query(
                        "INSERT INTO schedule_marks (target, last_slot) VALUES ($1, $2)
                         ON CONFLICT (target) DO UPDATE SET last_slot = excluded.last_slot",
                    )
                    .bind(target)
                    .bind(ms(*slot))
                    .execute(&mut *tx)
                    .await?;
                }
                Change::NewRun(run) => {
                    insert_run_row(&mut tx, run).await?;
                    if run.repo.is_some() {
                        reports::record_run_state(&mut tx, run.id, run.status, now).await?;
                    }
                    notices::record_run_end(&mut tx, run.id, run.status, now).await?;
                }
                Change::NewJob(job) => insert_job_row(&mut tx, job).await?,
                // No commit status and no notification: the server did not run it.
                Change::Import(run, mark) => imports::insert(&mut tx, run, mark, now).await?,
            }
        }
        // Last, once this transaction holds the write lock: no lease change slips in between.
        let renewed = self.check_fence(&mut tx).await?;
        self.commit(tx).await?;
        if let (Some(at), Some(fence)) = (renewed, self.fence.get()) {
            fence.renewed(at);
        }
        Ok(())
    }

    /// Adds a job to an open run (a pipeline's `on_error` job), with its own arguments beyond
    /// the run's (none: empty).
    pub async fn add_job(
        &self,
        run_id: i64,
        name: &str,
        at: DateTime<Utc>,
        args: &BTreeMap<String, String>,
    ) -> Result<JobRow> {
        let (_, id) = self.next_ids().await?;
        let job = JobRow::queued(id, run_id, name, at, args.clone());
        self.apply(&[Change::NewJob(job.clone())]).await?;
        Ok(job)
    }

    /// Deletes ended runs of `target` beyond the newest `keep` or that ended before `before`
    /// (prunner's `retention_count` / `retention_period`). Returns the deleted runs' and jobs'
    /// ids, whose folders the caller removes.
    pub async fn prune(
        &self,
        target: &str,
        keep: Option<u32>,
        before: Option<DateTime<Utc>>,
    ) -> Result<(Vec<i64>, Vec<i64>)> {
        let rows = sqlx::query(
            "SELECT id, ended_at FROM runs WHERE target = $1 AND kind = 'pipeline'
               AND status NOT IN ('queued', 'waiting', 'started', 'running') ORDER BY id DESC",
        )
        .bind(target)
        .fetch_all(&self.pool)
        .await?;
        let mut doomed = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let id: i64 = r.try_get("id")?;
            let ended: Option<i64> = r.try_get("ended_at")?;
            let too_many = keep.is_some_and(|k| i >= k as usize);
            let too_old = before.zip(ended).is_some_and(|(b, e)| e < ms(b));
            if too_many || too_old {
                doomed.push(id);
            }
        }
        let jobs = self.delete_runs(&doomed).await?;
        Ok((doomed, jobs))
    }

    /// Deletes ended runs with their jobs, links, results and cache records, in one
    /// transaction. Returns the deleted jobs' ids, whose folders the caller removes.
    pub async fn delete_runs(&self, doomed: &[i64]) -> Result<Vec<i64>> {
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let jobs = delete_runs_in(&mut tx, doomed).await?;
        self.commit(tx).await?;
        Ok(jobs)
    }

    /// The worker a job's current attempt runs on (`None` if unknown or not that attempt).
    pub async fn job_worker(&self, job: i64, attempt: u32) -> Result<Option<String>> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT worker FROM jobs WHERE id = $1 AND attempt = $2",
        )
        .bind(job)
        .bind(i64::from(attempt))
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Whether run `id` is in the store (not pruned): one indexed read, where [`Store::get_run`]
    /// reads the run, its jobs and its links.
    pub async fn run_exists(&self, id: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Whether job `job` of run `run` is in the store (not pruned).
    pub async fn job_exists(&self, run: i64, job: i64) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1 AND run_id = $2")
                .bind(job)
                .bind(run)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// One run with its jobs and links.
    pub async fn get_run(&self, id: i64) -> Result<Option<RunRow>> {
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut run = run_from_row(&row)?;
        run.jobs = self.jobs_of(&[id]).await?.remove(&id).unwrap_or_default();
        run.ancestors = sqlx::query_scalar(
            "SELECT ancestor FROM run_links WHERE descendant = $1 ORDER BY ancestor",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        run.descendants = sqlx::query_scalar(
            "SELECT descendant FROM run_links WHERE ancestor = $1 ORDER BY descendant",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(run))
    }

    async fn jobs_of(&self, run_ids: &[i64]) -> Result<BTreeMap<i64, Vec<JobRow>>> {
        let mut out: BTreeMap<i64, Vec<JobRow>> = BTreeMap::new();
        if run_ids.is_empty() {
            return Ok(out);
        }
        let mut qb = QueryBuilder::new("SELECT * FROM jobs WHERE run_id IN (");
        let mut sep = qb.separated(", ");
        for id in run_ids {
            sep.push_bind(*id);
        }
        qb.push(") ORDER BY id");
        for row in crate::built(&mut qb).fetch_all(&self.pool).await? {
            let job = job_from_row(&row)?;
            out.entry(job.run_id).or_default().push(job);
        }
        Ok(out)
    }

    /// Runs that have not ended (queued, started, running), oldest first, with their jobs.
    pub async fn open_runs(&self) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE status IN ('queued', 'waiting', 'started', 'running') ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let mut jobs = self.jobs_of(&ids).await?;
        for r in &mut runs {
            r.jobs = jobs.remove(&r.id).unwrap_or_default();
        }
        Ok(runs)
    }

    /// Runs matching `filter`, newest first, `limit` at most, with jobs. Pass the last id seen
    /// as `filter.before` for the next page.
    pub async fn list_runs(&self, filter: &RunFilter, limit: u32) -> Result<Vec<RunRow>> {
        let mut qb = QueryBuilder::new("SELECT * FROM runs WHERE 1 = 1");
        if let Some(t) = &filter.target {
            qb.push(" AND target = ").push_bind(t.clone());
        }
        if let Some(s) = filter.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = filter.trigger {
            qb.push(" AND trigger = ").push_bind(t.as_str());
        }
        if let Some(tag) = &filter.tag {
            // Tags are stored as a JSON array of strings; match the quoted element.
            let needle = serde_json::to_string(tag).unwrap_or_default();
            // (LIKE would ignore case on SQLite; each has its own case-sensitive search.)
            let find = match self.backend {
                Backend::Sqlite => " AND instr(tags, ",
                Backend::Postgres => " AND strpos(tags, ",
            };
            qb.push(find).push_bind(needle).push(") > 0");
        }
        if let Some(b) = filter.before {
            qb.push(" AND id < ").push_bind(b);
        }
        if let Some(v) = &filter.visible {
            // Only the targets the caller may see, filtered here so pages stay full.
            qb.push(" AND (1 = 0");
            for (kind, names) in [("task", &v.tasks), ("pipeline", &v.pipelines)] {
                if names.is_empty() {
                    continue;
                }
                qb.push(" OR (kind = ")
                    .push_bind(kind)
                    .push(" AND target IN (");
                let mut sep = qb.separated(", ");
                for n in names {
                    sep.push_bind(n.clone());
                }
                qb.push("))");
            }
            for repo in &v.repos {
                // A repository's own runs: its name, then a slash, then the task.
                let prefix = format!("{repo}/");
                qb.push(" OR (repo = ")
                    .push_bind(repo.clone())
                    .push(" AND substr(target, 1, CAST(")
                    .push_bind(prefix.chars().count() as i64)
                    .push(" AS INTEGER)) = ")
                    .push_bind(prefix)
                    .push(")");
            }
            qb.push(")");
        }
        if let Some(w) = &filter.worker {
            qb.push(" AND id IN (SELECT run_id FROM jobs WHERE worker = ")
                .push_bind(w.clone())
                .push(")");
        }
        if let Some(t) = filter.since {
            qb.push(" AND enqueued_at >= ").push_bind(ms(t));
        }
        if let Some(t) = filter.until {
            qb.push(" AND enqueued_at < ").push_bind(ms(t));
        }
        if let Some(text) = filter.search.as_deref().filter(|t| !t.is_empty()) {
            // LIKE with the wildcards of the text escaped: portable to PostgreSQL.
            let pattern = format!("%{}%", like_escape(&text.to_lowercase()));
            qb.push(" AND (lower(target) LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR lower(COALESCE(reason, '')) LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR lower(args) LIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
        repos::push_code_filter(&mut qb, filter);
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = crate::built(&mut qb).fetch_all(&self.pool).await?;
        let mut runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let mut jobs = self.jobs_of(&ids).await?;
        let links = self.links_of(&ids).await?;
        for r in &mut runs {
            r.jobs = jobs.remove(&r.id).unwrap_or_default();
            for (a, d) in &links {
                if *d == r.id {
                    r.ancestors.push(*a);
                }
                if *a == r.id {
                    r.descendants.push(*d);
                }
            }
        }
        Ok(runs)
    }

    /// Links touching any of `ids`, as (ancestor, descendant), ordered.
    async fn links_of(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb =
            QueryBuilder::new("SELECT ancestor, descendant FROM run_links WHERE ancestor IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(") OR descendant IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(") ORDER BY ancestor, descendant");
        crate::built(&mut qb)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("ancestor")?, r.try_get("descendant")?)))
            .collect()
    }

    /// The last start of each target, for debounce after a restart.
    pub async fn last_starts(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        let rows = sqlx::query(
            "SELECT target, MAX(started_at) AS s FROM runs WHERE started_at IS NOT NULL AND trigger <> 'local' GROUP BY target",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("target")?, from_ms(r.try_get("s")?))))
            .collect()
    }

    /// Each task's latest run that started and ended (the one that ended last): its id and
    /// status. Chaining asks whether every task a `triggered_by` lists last succeeded.
    pub async fn latest_task_ends(&self) -> Result<BTreeMap<String, (i64, Status)>> {
        let rows = sqlx::query(
            "SELECT target, id, status FROM (
                SELECT target, id, status, ROW_NUMBER() OVER (
                    PARTITION BY target ORDER BY ended_at DESC, id DESC) AS n
                FROM runs
                WHERE kind = 'task' AND started_at IS NOT NULL AND ended_at IS NOT NULL
                  AND trigger <> 'local') AS latest
             WHERE n = 1",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("target")?,
                    (
                        r.try_get("id")?,
                        parse::<Status>("runs", r.try_get::<&str, _>("status")?)?,
                    ),
                ))
            })
            .collect()
    }

    /// The last fired slot of each timed task.
    pub async fn schedule_marks(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        let rows = sqlx::query("SELECT target, last_slot FROM schedule_marks")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("target")?, from_ms(r.try_get("last_slot")?))))
            .collect()
    }

    /// Sets (`Some`) or clears (`None`) the runtime `enabled` override of a task.
    pub async fn set_task_override(&self, task: &str, enabled: Option<bool>) -> Result<()> {
        match enabled {
            Some(e) => {
                sqlx::query(
                    "INSERT INTO task_overrides (task, enabled, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (task) DO UPDATE SET enabled = excluded.enabled,
                       updated_at = excluded.updated_at",
                )
                .bind(task)
                .bind(i64::from(e))
                .bind(ms(Utc::now()))
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM task_overrides WHERE task = $1")
                    .bind(task)
                    .execute(&self.pool)
                    .await?;
            }
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Every runtime `enabled` override, by task.
    pub async fn task_overrides(&self) -> Result<BTreeMap<String, bool>> {
        let rows = sqlx::query("SELECT task, enabled FROM task_overrides")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("task")?, r.try_get::<i64, _>("enabled")? != 0)))
            .collect()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Inserts a run, its jobs and its ancestor links under the ids `run` holds.
pub(crate) use rows::{
    built, delete_runs_in, insert_job_row, insert_run_row, job_from_row, like_escape, parse,
    run_from_row,
};

#[cfg(test)]
mod testdb;
#[cfg(test)]
mod tests;
