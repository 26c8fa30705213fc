//! The server's retention: ended runs that their task's `retention:` (or `server.retention`)
//! no longer keeps go with their logs, artifacts, results and database rows. One function,
//! [`prune_server`], behind `baton prune --data DIR [--dry-run]` and the server's hourly
//! background prune (in batches, off the scheduler). A prune holds the prune lock
//! (`baton_web::pending`) from looking at pending records until its runs are gone; a run whose
//! results are being collected or whose artifact upload is in flight (its pending record held,
//! `baton_web::pending::hold_for_prune`) waits for a later prune, and a job the collector had
//! not recorded yet is gone before it does (the collector then writes nothing of it).

use std::path::Path;

use anyhow::Context;

use baton_core::config::{Config, RetentionDef};
use baton_core::decide::{RetainRun, doomed_runs};
use baton_store::{RunFolders, Store};

/// What a prune deleted, or would delete (`--dry-run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PruneReport {
    pub runs: usize,
    pub jobs: usize,
    /// Every byte that went (or would go): `disk_bytes` plus `bucket_bytes`.
    pub bytes: u64,
    /// Bytes of the data directory (logs, results, artifacts not in a bucket).
    pub disk_bytes: u64,
    /// Bytes of the artifact bucket's objects (`server.artifacts.s3`), `None` without one.
    pub bucket_bytes: Option<u64>,
}

/// Bytes of the regular files under `dir` (symlinks are not followed).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn policy(config: &Config, target: &str) -> Option<RetentionDef> {
    config
        .tasks
        .get(target)
        .and_then(|t| t.retention.as_deref().copied())
        .or(config.server.retention)
}

/// Deletes (or with `dry_run` only counts) at most `batch` runs that retention no longer keeps,
/// oldest first: their rows in one transaction, then their folders.
pub(crate) async fn prune_server(
    store: &Store,
    folders: &RunFolders,
    config: &Config,
    dry_run: bool,
    batch: usize,
) -> anyhow::Result<PruneReport> {
    let pinned = store.cache_pinned_runs().await?;
    let runs: Vec<RetainRun> = store
        .ended_runs()
        .await?
        .into_iter()
        .map(|r| RetainRun {
            pinned: pinned.contains(&r.id),
            failed: matches!(r.status.as_str(), "failed" | "broken" | "jammed"),
            id: r.id,
            target: r.target,
            branch: r.branch,
            ended_ms: r.ended_ms,
        })
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let mut doomed = doomed_runs(&runs, &|t| policy(config, t), now);
    doomed.truncate(batch);
    // From here until the runs are gone no collector records a job (it checks first, under
    // the same lock, that the job is still there).
    let lock = {
        let folders = folders.clone();
        tokio::task::spawn_blocking(move || baton_web::pending::lock_for_prune(&folders))
            .await?
            .context("cannot take the prune lock in the data directory's uploads/")?
    };
    // A run being collected, or with an artifact upload in flight, stays (for a later prune);
    // the pending records of the others are held until they are gone, so no retry starts
    // meanwhile.
    let mut holds = Vec::new();
    let mut kept = Vec::new();
    for run in &doomed {
        let jobs = jobs_of(store, &[*run]).await?;
        match baton_web::pending::hold_for_prune(folders, &jobs) {
            Some(held) => holds.extend(held),
            None => {
                tracing::info!(
                    run,
                    "retention: run kept for now, its results or artifacts are being collected"
                );
                kept.push(*run);
            }
        }
    }
    doomed.retain(|r| !kept.contains(r));
    let mut report = PruneReport {
        runs: doomed.len(),
        ..PruneReport::default()
    };
    // The bucket's objects are counted, and deleted first: a failure there leaves the rows for
    // the next prune, so nothing stored is ever left without a run pointing to it.
    let bucket = match &config.server.artifacts {
        Some(def) => Some(baton_web::ArtifactStore::s3(def).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let jobs = jobs_of(store, &doomed).await?;
    if !dry_run {
        // A doomed job's pending record is forgotten first: no retry writes after this.
        for job in &jobs {
            baton_web::pending::forget_pending(folders, *job);
        }
    }
    if let Some(bucket) = &bucket {
        let mut bytes = 0;
        for job in &jobs {
            bytes += if dry_run {
                bucket.job_bytes(*job).await
            } else {
                bucket.delete_job(*job).await
            }
            .map_err(anyhow::Error::msg)?;
        }
        report.bucket_bytes = Some(bytes);
    }
    if !dry_run {
        store.delete_runs(&doomed).await?;
    }
    report.jobs = jobs.len();
    for job in &jobs {
        report.disk_bytes += dir_bytes(&folders.data_dir().join("jobs").join(job.to_string()));
    }
    for run in &doomed {
        report.disk_bytes += dir_bytes(&folders.run_dir(*run));
    }
    report.bytes = report.disk_bytes + report.bucket_bytes.unwrap_or(0);
    if !dry_run {
        for job in jobs {
            folders.remove_job(job)?;
        }
        for run in doomed {
            folders.remove_run(run)?;
        }
    }
    drop(holds);
    drop(lock);
    Ok(report)
}

/// The jobs of `runs`.
async fn jobs_of(store: &Store, runs: &[i64]) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for id in runs {
        if let Some(run) = store.get_run(*id).await? {
            ids.extend(run.jobs.iter().map(|j| j.id));
        }
    }
    Ok(ids)
}

/// `baton prune --data DIR --config P [--dry-run]`: everything retention no longer keeps.
pub(crate) async fn prune_command(
    config: &Path,
    data: &Path,
    db: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let config = baton_core::config::load_path(config).map_err(|e| {
        let text: Vec<String> = e.diagnostics.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the config is invalid:\n{}", text.join("\n"))
    })?;
    let db_arg_given = db.is_some();
    let db = db.map_or_else(
        || baton_store::Database::in_data_dir(data),
        baton_store::Database::parse,
    );
    crate::data::refuse_missing(data, db_arg_given, &db)?;
    let store = Store::connect(&db).await?;
    let folders = RunFolders::new(data);
    let r = prune_server(&store, &folders, &config, dry_run, usize::MAX).await?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    match r.bucket_bytes {
        Some(b) => println!(
            "{verb} {} runs, {} jobs, {} bytes ({} on disk, {b} in the artifact bucket)",
            r.runs, r.jobs, r.bytes, r.disk_bytes
        ),
        None => println!("{verb} {} runs, {} jobs, {} bytes", r.runs, r.jobs, r.bytes),
    }
    Ok(std::process::ExitCode::SUCCESS)
}
