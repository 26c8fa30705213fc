//! Rows to and from SQL: inserting a run or job row, reading one back, the shared pieces of
//! built queries, and deleting runs with everything that hangs off them.

use super::*;

pub(crate) async fn insert_run_row(tx: &mut sqlx::AnyConnection, run: &RunRow) -> Result<()> {
    let definition = serde_json::to_string(&run.definition).unwrap_or_default();
    let args = serde_json::to_string(&run.args).unwrap_or_default();
    let tags = serde_json::to_string(&run.tags).unwrap_or_default();
    sqlx::query(
        "INSERT INTO runs (id, kind, target, trigger, args, tags, definition, status, reason,
             priority, partition_key, enqueued_at, not_before, started_at, ended_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, $14)",
    )
    .bind(run.id)
    .bind(run.kind.as_str())
    .bind(&run.target)
    .bind(run.trigger.as_str())
    .bind(args)
    .bind(tags)
    .bind(definition)
    .bind(run.status.as_str())
    .bind(&run.reason)
    .bind(run.priority)
    .bind(&run.partition)
    .bind(ms(run.enqueued_at))
    .bind(run.not_before.map(ms))
    .bind(run.ended_at.map(ms))
    .execute(&mut *tx)
    .await?;
    for job in &run.jobs {
        insert_job_row(tx, job).await?;
    }
    for ancestor in &run.ancestors {
        sqlx::query("INSERT INTO run_links (ancestor, descendant) VALUES ($1, $2)")
            .bind(ancestor)
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(repo) = &run.repo {
        repos::write_run_repo(tx, run.id, repo).await?;
    }
    Ok(())
}

/// Inserts a new job (attempt 1, not started) under its id.
pub(crate) async fn insert_job_row(tx: &mut sqlx::AnyConnection, job: &JobRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (id, run_id, name, status, reason, attempt, queued_at, ended_at, args)
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)",
    )
    .bind(job.id)
    .bind(job.run_id)
    .bind(&job.name)
    .bind(job.status.as_str())
    .bind(&job.reason)
    .bind(ms(job.queued_at))
    .bind(job.ended_at.map(ms))
    .bind((!job.args.is_empty()).then(|| serde_json::to_string(&job.args).unwrap_or_default()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The query `qb` built, with its placeholders numbered (`$1`, `$2`…), which both SQLite and
/// PostgreSQL read (the Any driver's builder writes `?`, which PostgreSQL does not).
pub(crate) fn built(qb: &mut QueryBuilder<Any>) -> sqlx::query::Query<'static, Any, AnyArguments> {
    let mut sql = String::new();
    let mut n = 0;
    for c in qb.sql().as_str().chars() {
        if c == '?' {
            n += 1;
            sql.push_str(&format!("${n}"));
        } else {
            sql.push(c);
        }
    }
    let args = qb
        .build()
        .take_arguments()
        .ok()
        .flatten()
        .unwrap_or_default();
    sqlx::query_with(AssertSqlSafe(sql), args)
}

/// `text` with LIKE's wildcards and its escape character (`\\`) escaped.
pub(crate) fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub(crate) fn parse<T: FromStr>(table: &'static str, v: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| corrupt(table, e.to_string()))
}

pub(crate) fn run_from_row(row: &AnyRow) -> Result<RunRow> {
    let args: String = row.try_get("args")?;
    let tags: String = row.try_get("tags")?;
    let definition: String = row.try_get("definition")?;
    Ok(RunRow {
        id: row.try_get("id")?,
        kind: parse::<TargetKind>("runs", row.try_get::<&str, _>("kind")?)?,
        target: row.try_get("target")?,
        trigger: parse::<TriggerKind>("runs", row.try_get::<&str, _>("trigger")?)?,
        args: serde_json::from_str(&args).map_err(|e| corrupt("runs", e.to_string()))?,
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("runs", e.to_string()))?,
        definition: serde_json::from_str(&definition)
            .map_err(|e| corrupt("runs", e.to_string()))?,
        status: parse::<Status>("runs", row.try_get::<&str, _>("status")?)?,
        reason: row.try_get("reason")?,
        priority: row.try_get("priority")?,
        partition: row.try_get("partition_key")?,
        enqueued_at: from_ms(row.try_get("enqueued_at")?),
        not_before: row.try_get::<Option<i64>, _>("not_before")?.map(from_ms),
        started_at: row.try_get::<Option<i64>, _>("started_at")?.map(from_ms),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(from_ms),
        jobs: Vec::new(),
        ancestors: Vec::new(),
        descendants: Vec::new(),
        repo: repos::read_run_repo(row)?,
    })
}

pub(crate) fn job_from_row(row: &AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        name: row.try_get("name")?,
        status: parse::<Status>("jobs", row.try_get::<&str, _>("status")?)?,
        reason: row.try_get("reason")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        worker: row.try_get("worker")?,
        exit_code: row
            .try_get::<Option<i64>, _>("exit_code")?
            .map(|c| c as i32),
        queued_at: from_ms(row.try_get("queued_at")?),
        ready_at: row.try_get::<Option<i64>, _>("ready_at")?.map(from_ms),
        started_at: row.try_get::<Option<i64>, _>("started_at")?.map(from_ms),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(from_ms),
        ended_seq: row
            .try_get::<Option<i64>, _>("ended_seq")?
            .map(|s| s as u64),
        args: match row.try_get::<Option<String>, _>("args")? {
            Some(a) => serde_json::from_str(&a).map_err(|e| corrupt("jobs", e.to_string()))?,
            None => BTreeMap::new(),
        },
    })
}

/// Deletes runs with their jobs, links, results and cache records in the caller's
/// transaction; returns their jobs' ids (for their folders).
pub(crate) async fn delete_runs_in(
    tx: &mut sqlx::AnyConnection,
    doomed: &[i64],
) -> Result<Vec<i64>> {
    let mut jobs = Vec::new();
    for &id in doomed {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE run_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        jobs.extend(ids);
        for sql in [
            "DELETE FROM jobs WHERE run_id = $1",
            "DELETE FROM job_results WHERE run_id = $1",
            "DELETE FROM test_results WHERE run_id = $1",
            "DELETE FROM job_cache WHERE run_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM run_links WHERE ancestor = $1 OR descendant = $2")
            .bind(id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM runs WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(jobs)
}
