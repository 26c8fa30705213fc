//! Pending records and the prune lock: how the collector of an ended job's results (and the
//! upload of its artifacts to a bucket) and retention (`baton prune`, this server's or another
//! process's, over the same data directory) stay out of each other's way.
//!
//! Every job the collector takes on is recorded first: one file `JOB-ATTEMPT` (holding the run's
//! id) in `<data>/uploads/`, held with an exclusive `flock` while its collection (or a retry of
//! its upload) is in flight, and removed once its results are stored and its artifacts, with a
//! bucket, are in it; a failed upload leaves it for the retries (`results::start_retries`).
//! A prune never deletes a run one of whose records is held.
//!
//! That alone leaves a window: between a job's end and the moment its record is written, a
//! prune sees nothing held. The prune lock (`<data>/uploads/prune.lock`) closes it. A prune holds
//! it exclusively from looking at the records until the rows and folders it deletes are gone;
//! the collector holds it shared while it checks that the job is still in the store and writes
//! its record. So either the record is written first (the prune sees it held and leaves the
//! run), or the prune deleted the run first (the collector finds it gone and writes nothing of
//! it: no result rows, no `report.html`, no object in the bucket).

use std::path::PathBuf;

use crate::AppState;

/// The folder of pending records.
fn pending_dir(folders: &baton_store::RunFolders) -> PathBuf {
    folders.data_dir().join("uploads")
}

fn pending_file(folders: &baton_store::RunFolders, job: i64, attempt: u32) -> PathBuf {
    pending_dir(folders).join(format!("{job}-{attempt}"))
}

/// A pending record held by whoever collects or uploads it now: an exclusive `flock` on its
/// file, released when dropped. A prune never deletes a run while one of its records is held
/// ([`hold_for_prune`]).
pub struct UploadHold(#[allow(dead_code)] std::fs::File);

/// The prune lock, held (exclusively by a prune, shared by the collector) until dropped.
pub struct PruneLock(#[allow(dead_code)] std::fs::File);

fn open_lock(folders: &baton_store::RunFolders) -> std::io::Result<std::fs::File> {
    let dir = pending_dir(folders);
    std::fs::create_dir_all(&dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("prune.lock"))
}

/// Takes the prune lock for a prune (exclusive; blocks while a collector writes a record).
pub fn lock_for_prune(folders: &baton_store::RunFolders) -> std::io::Result<PruneLock> {
    let f = open_lock(folders)?;
    f.lock()?;
    Ok(PruneLock(f))
}

/// Takes the prune lock for the collector (shared; blocks while a prune deletes runs).
fn lock_for_collect(folders: &baton_store::RunFolders) -> std::io::Result<PruneLock> {
    let f = open_lock(folders)?;
    f.lock_shared()?;
    Ok(PruneLock(f))
}

/// Records that job attempt `job`/`attempt` of run `run` is being collected (and, with a
/// bucket, has artifacts to upload), held until the returned hold is dropped. The record is
/// locked before it gets its name, so no prune ever sees it unheld. `durable` (an upload to
/// come): the file and its folder are fsynced, so a retry finds it after a crash.
pub(crate) fn record_pending(
    folders: &baton_store::RunFolders,
    run: i64,
    job: i64,
    attempt: u32,
    durable: bool,
) -> std::io::Result<UploadHold> {
    use std::io::Write;
    let dir = pending_dir(folders);
    std::fs::create_dir_all(&dir)?;
    let path = pending_file(folders, job, attempt);
    let tmp = dir.join(format!(".{job}-{attempt}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.lock()?;
    f.write_all(run.to_string().as_bytes())?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    if durable {
        std::fs::File::open(&dir)?.sync_all()?;
    }
    Ok(UploadHold(f))
}

/// What [`hold_collection`] found.
pub(crate) enum Collection {
    /// The job is still in the store and its record is written and held.
    Held(UploadHold),
    /// A prune deleted the job's run: nothing of it may be written.
    Gone,
}

/// Before the collector reads or writes anything of job `job`/`attempt` of run `run`: under the
/// prune lock (shared), checks that the job is still in the store and records it as pending
/// (held). `durable`: an upload to the bucket follows. An error (the data directory cannot be
/// written, the store cannot be read) says what failed; the caller collects unprotected then.
pub(crate) async fn hold_collection(
    s: &AppState,
    run: i64,
    job: i64,
    attempt: u32,
    durable: bool,
) -> Result<Collection, String> {
    let folders = s.folders.clone();
    let lock = tokio::task::spawn_blocking(move || lock_for_collect(&folders))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot take the prune lock: {e}"))?;
    let there = match s.store.job_exists(run, job).await {
        Ok(there) => there,
        Err(e) => return Err(format!("cannot read run {run}: {e}")),
    };
    if !there {
        return Ok(Collection::Gone);
    }
    let folders = s.folders.clone();
    let held =
        tokio::task::spawn_blocking(move || record_pending(&folders, run, job, attempt, durable))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot record the pending collection: {e}"))?;
    drop(lock);
    Ok(Collection::Held(held))
}

/// The prune lock (shared) held while a file of a run is written ([`guard_run`]).
pub(crate) struct RunGuard(#[allow(dead_code)] Option<PruneLock>);

/// Before a file of run `run` is written (its `report.html`): the prune lock, shared, once the
/// run is known to be still in the store; `None` when a prune deleted it. When the lock cannot
/// be taken the file is written anyway (logged), as before there was a lock.
pub(crate) async fn guard_run(s: &AppState, run: i64) -> Option<RunGuard> {
    let folders = s.folders.clone();
    let lock = match tokio::task::spawn_blocking(move || lock_for_collect(&folders)).await {
        Ok(Ok(l)) => Some(l),
        Ok(Err(e)) => {
            tracing::warn!(run, "cannot take the prune lock: {e}");
            None
        }
        Err(_) => None,
    };
    match s.store.run_exists(run).await {
        Ok(false) => None,
        _ => Some(RunGuard(lock)),
    }
}

/// Holds the pending record of `job`/`attempt`: `None` when someone else holds it (it is in
/// flight), or it is gone (done, or forgotten by a prune).
pub(crate) fn hold_pending(
    folders: &baton_store::RunFolders,
    job: i64,
    attempt: u32,
) -> Option<UploadHold> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::open(pending_file(folders, job, attempt)).ok()?;
    f.try_lock().ok()?;
    // Forgotten between the open and the lock: nothing to upload any more.
    (f.metadata().ok()?.nlink() > 0).then_some(UploadHold(f))
}

/// For a prune of the run whose jobs are `jobs` (the caller holds the prune lock): holds every
/// pending record of them (kept until the prune has forgotten them and deleted the run, so no
/// retry starts meanwhile). `None` when one of them is in flight: the run is left for a later
/// prune.
pub fn hold_for_prune(folders: &baton_store::RunFolders, jobs: &[i64]) -> Option<Vec<UploadHold>> {
    let mut held = Vec::new();
    for (_, job, attempt) in pending(folders) {
        if !jobs.contains(&job) {
            continue;
        }
        // Gone since it was listed: done meanwhile.
        let Ok(f) = std::fs::File::open(pending_file(folders, job, attempt)) else {
            continue;
        };
        if f.try_lock().is_err() {
            return None;
        }
        held.push(UploadHold(f));
    }
    Some(held)
}

/// The record of `job`/`attempt` is no longer pending (done, or nothing is left to do).
/// `durable`, as the record was written ([`record_pending`]): its removal is fsynced too, so a
/// finished upload is not tried again after a crash. A record that was not durable (no upload)
/// may outlive a crash whether or not its removal is synced, so that fsync would guard nothing.
pub(crate) fn done_pending(
    folders: &baton_store::RunFolders,
    job: i64,
    attempt: u32,
    durable: bool,
) {
    let dir = pending_dir(folders);
    if std::fs::remove_file(pending_file(folders, job, attempt)).is_ok()
        && durable
        && let Ok(d) = std::fs::File::open(&dir)
    {
        let _ = d.sync_all();
    }
}

/// Forgets every pending record of `job` (retention deletes the job).
pub fn forget_pending(folders: &baton_store::RunFolders, job: i64) {
    for (_, j, attempt) in pending(folders) {
        if j == job {
            done_pending(folders, j, attempt, true);
        }
    }
}

/// Every pending record as (run, job, attempt).
pub(crate) fn pending(folders: &baton_store::RunFolders) -> Vec<(i64, i64, u32)> {
    let Ok(entries) = std::fs::read_dir(pending_dir(folders)) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((job, attempt)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let (Ok(job), Ok(attempt)) = (job.parse::<i64>(), attempt.parse::<u32>()) else {
            continue;
        };
        let run = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok());
        if let Some(run) = run {
            found.push((run, job, attempt));
        }
    }
    found.sort_unstable();
    found
}

/// Tests only (debug builds): the collector waits, once it has decided what a job's collection
/// involves and before it records the job, until the file `BATON_TEST_COLLECT_GATE` names
/// exists; a test runs a prune meanwhile.
#[cfg(debug_assertions)]
pub(crate) async fn test_gate(job: i64) {
    let Some(gate) = std::env::var_os("BATON_TEST_COLLECT_GATE") else {
        return;
    };
    tracing::warn!("the collector waits at the test gate before recording job {job}");
    while !std::path::Path::new(&gate).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(not(debug_assertions))]
pub(crate) async fn test_gate(_job: i64) {}
