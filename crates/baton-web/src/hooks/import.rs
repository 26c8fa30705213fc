//! Runs made on developers' machines (`baton run`, git-jci) that were pushed to a repository
//! the server knows as result refs (`refs/baton-runs/…`, `refs/jci-runs/…`): imported
//! read-only when a webhook reports the push of such a ref, or at the next poll. They appear
//! in the runs list and on their run page marked "ran locally on MACHINE"; they are never run,
//! report no commit status and send no notification.
//!
//! Once and bounded: each ref is imported (or refused, with why) once, whatever redelivers it
//! (`imported_runs`, written in the transaction that records the run); at most
//! [`MAX_REFS_PER_ROUND`] refs are fetched per import (the rest at the next one); a repository
//! keeps at most [`MAX_KEPT`] imported runs; a ref's tree is sized before any of it is read
//! ([`MAX_FILES`], [`MAX_FILE_BYTES`], [`MAX_RUN_BYTES`]). Result refs are fetched into the
//! mirror only here, under `refs/baton/import/`, and dropped after.
//!
//! Crash-safe: a ref's runs are recorded with an unfinished mark, their files, results and
//! cache records written, then the mark finished. An import that did not finish (the server
//! stopped in between) is undone before the next import of its repository (its runs' folders,
//! then its runs and marks) and the ref read again; at start-up the repositories with one are
//! imported again ([`resume`]).
//!
//! Their jobs count for the CI cache only when the repository says `trust_local_runs: true`.

mod layout;

use std::path::Path;

use baton_core::config::{Config, RepoDef};
use baton_git::{Mirror, Oid};
use baton_local::history::RunRef;
use baton_store::{ImportMark, JobCache};

use axum::http::StatusCode;

use super::Verdict;
use super::push::fetched_mirror;
use crate::AppState;
use layout::{Blob, JobFiles, Known, Planned, Refusal};

/// The most result refs one import fetches; the rest wait for the next push or poll.
pub(crate) const MAX_REFS_PER_ROUND: usize = 20;
/// The most imported runs a repository keeps (pruned ones do not count).
pub(crate) const MAX_KEPT: u64 = 2000;
/// The most result refs a repository may list; beyond, nothing is imported.
const MAX_LISTED: usize = 50_000;
/// The most files a run's tree may hold.
pub(crate) const MAX_FILES: usize = 1000;
/// The largest file of a run's tree.
pub(crate) const MAX_FILE_BYTES: u64 = 16 << 20;
/// The most bytes a run's tree may hold.
pub(crate) const MAX_RUN_BYTES: u64 = 64 << 20;

/// One import at a time in this process (a webhook and the poller may both ask).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What an import did: the runs it recorded, and one note per ref it did not import.
#[derive(Debug, Default)]
pub(crate) struct Imported {
    pub runs: Vec<i64>,
    pub notes: Vec<String>,
}

impl Imported {
    /// One line for a webhook's verdict or the log.
    pub(crate) fn describe(&self) -> String {
        let head = format!("imported {} local run(s)", self.runs.len());
        if self.notes.is_empty() {
            head
        } else {
            format!("{head}; {}", self.notes.join("; "))
        }
    }
}

/// A webhook's push of result ref `run_ref`: fetch the mirror, then import every result ref
/// not seen before (a `baton push` sends many refs, each its own delivery: the first imports
/// them, the others find nothing new). A deleted ref keeps its imported runs.
pub(crate) async fn from_push(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    run_ref: &str,
    deleted: bool,
) -> Verdict {
    if deleted {
        return Verdict::new(
            StatusCode::ACCEPTED,
            format!("the push deletes result ref {run_ref}: its imported runs stay"),
        );
    }
    let mirror = match fetched_mirror(st, config, repo).await {
        Ok(m) => m,
        Err(v) => return v,
    };
    let done = import_pushed_runs(st, config, repo, &mirror).await;
    let mut text = done.describe();
    if done.runs.is_empty()
        && let Ok(Some(seen)) = st.store.imported_ref(&repo.name, run_ref).await
    {
        text = match (seen.run_id, seen.refused) {
            (_, Some(why)) => format!("{text}; {run_ref} was refused before: {why}"),
            (Some(id), None) => format!("{text}; {run_ref} was imported before as run {id}"),
            (None, None) => text,
        };
    }
    let status = if done.runs.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Verdict {
        status,
        text,
        runs: done.runs,
    }
}

/// Imports the result refs of `repo`'s remote not seen before (`mirror` fetched).
pub(crate) async fn import_pushed_runs(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    mirror: &Mirror,
) -> Imported {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut done = Imported::default();
    if let Err(e) = undo_unfinished(st, &repo.name).await {
        done.notes
            .push(format!("could not undo an unfinished import: {e}"));
        return done;
    }
    let listed = match mirror.remote_run_refs().await {
        Ok(l) => l,
        Err(e) => {
            done.notes
                .push(format!("could not list the result refs: {e}"));
            return done;
        }
    };
    if listed.len() > MAX_LISTED {
        done.notes.push(format!(
            "the repository holds {} result refs (at most {MAX_LISTED} are looked at): prune them with `baton prune --remote origin`",
            listed.len()
        ));
        return done;
    }
    let seen = match st.store.imported_refs(&repo.name).await {
        Ok(s) => s,
        Err(e) => {
            done.notes
                .push(format!("could not read the imports recorded: {e}"));
            return done;
        }
    };
    let mut new: Vec<RunRef> = listed
        .into_iter()
        .filter(|(name, _)| !seen.contains(name))
        .filter_map(|(name, oid)| RunRef::parse(&name, oid))
        .collect();
    if new.is_empty() {
        return done;
    }
    match st.store.imported_run_count(&repo.name).await {
        Ok(n) if n >= MAX_KEPT => {
            done.notes.push(format!(
                "{} result ref(s) not imported: repository {} already keeps {n} imported runs (at most {MAX_KEPT}; `baton prune --data` removes old ones)",
                new.len(),
                repo.name
            ));
            return done;
        }
        Ok(_) => {}
        Err(e) => {
            done.notes
                .push(format!("could not count the imported runs: {e}"));
            return done;
        }
    }
    // Oldest first (run ids sort by time); the rest at the next import.
    new.sort_by(|a, b| a.id.cmp(&b.id));
    if new.len() > MAX_REFS_PER_ROUND {
        done.notes.push(format!(
            "{} more result ref(s) wait for the next push or poll (at most {MAX_REFS_PER_ROUND} per import)",
            new.len() - MAX_REFS_PER_ROUND
        ));
        new.truncate(MAX_REFS_PER_ROUND);
    }
    let names: Vec<String> = new.iter().map(|r| r.refname.clone()).collect();
    match mirror.fetch_run_refs(&names).await {
        Ok(fetched) => {
            for (run, oid) in new.iter_mut().zip(fetched) {
                let Some(oid) = oid else {
                    done.notes
                        .push(format!("{}: gone from the remote", run.refname));
                    continue;
                };
                run.oid = oid;
                import_one(st, config, repo, mirror, run, &mut done).await;
            }
        }
        Err(e) => done
            .notes
            .push(format!("could not fetch the result refs: {e}")),
    }
    if let Err(e) = mirror.drop_fetched_run_refs().await {
        tracing::warn!(repo = %repo.name, "could not drop the fetched result refs: {e}");
    }
    done
}

/// Reads, checks and records one result ref (its runs, or why it is refused).
async fn import_one(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    mirror: &Mirror,
    run: &RunRef,
    done: &mut Imported,
) {
    let mark = |target: &str| ImportMark {
        repo: repo.name.clone(),
        run_ref: run.refname.clone(),
        target: target.to_owned(),
        ref_commit: run.oid.to_string(),
    };
    let planned = match read_tree(mirror, &run.oid).await {
        Ok(files) => {
            let known = known(mirror, &run.key).await;
            layout::plan(repo, run, files, &known, chrono::Utc::now())
        }
        Err(e) => Err(e),
    };
    let planned = match planned {
        Ok(p) => p,
        Err(Refusal::Later(why)) => {
            done.notes.push(format!("{}: not yet: {why}", run.refname));
            return;
        }
        Err(Refusal::Never(why)) => {
            let why = format!("not imported: {why}");
            if let Err(e) = st.store.refuse_import(&mark(""), &why).await {
                tracing::warn!(repo = %repo.name, "could not record a refused import: {e}");
            }
            tracing::info!(repo = %repo.name, run_ref = %run.refname, "{why}");
            done.notes.push(format!("{}: {why}", run.refname));
            return;
        }
    };
    let mut recorded = Vec::new();
    for Planned {
        row,
        files,
        cache,
        tests,
        target,
    } in planned
    {
        let row = match st.sched.import_run(row, mark(&target)).await {
            Ok(row) => row,
            Err(e) => {
                done.notes
                    .push(format!("{} ({target}): not recorded: {e}", run.refname));
                return;
            }
        };
        #[cfg(debug_assertions)]
        test_gate().await;
        write_folders(st, &row, files).await;
        if config
            .repos
            .get(&repo.name)
            .is_some_and(|r| r.trust_local_runs)
        {
            record_cache(st, &row, &cache).await;
        }
        for (job, node) in row.jobs.iter().zip(tests) {
            if let Some(node) = node {
                crate::results::save_imported(st, &row, job, node).await;
            }
        }
        // Jobs that came without results (git-jci's) are read from their artifacts.
        crate::results::collect_run(st, &row).await;
        done.runs.push(row.id);
        recorded.push(row);
    }
    if let Err(e) = st.store.finish_import(&repo.name, &run.refname).await {
        // Undone and imported again by the next import.
        tracing::warn!(repo = %repo.name, run_ref = %run.refname, "could not mark an import finished: {e}");
    }
    st.sched.announce_imported(&recorded);
}

/// Undoes `repo`'s imports that recorded runs but did not finish (the server stopped before
/// their files were written): their folders go first, then their runs and marks, so the refs
/// are read again. Called with [`ONE_AT_A_TIME`] held: no import of this process is under way.
async fn undo_unfinished(st: &AppState, repo: &str) -> Result<(), baton_store::StoreError> {
    for u in st.store.unfinished_imports(repo).await? {
        tracing::warn!(
            repo,
            run_ref = %u.run_ref,
            runs = ?u.runs,
            "an import of this result ref did not finish: its runs are removed and the ref imported again"
        );
        let folders = st.folders.clone();
        let (runs, jobs) = (u.runs.clone(), u.jobs.clone());
        let removed = tokio::task::spawn_blocking(move || {
            for job in jobs {
                folders.remove_job(job)?;
            }
            for run in runs {
                folders.remove_run(run)?;
            }
            std::io::Result::Ok(())
        })
        .await;
        match removed {
            Ok(Ok(())) => st.store.forget_import(repo, &u.run_ref).await?,
            // Kept unfinished: tried again at the next import.
            Ok(Err(e)) => {
                tracing::warn!(repo, run_ref = %u.run_ref, "could not remove an unfinished import's folders: {e}")
            }
            Err(e) => tracing::error!(repo, "removing an unfinished import's folders failed: {e}"),
        }
    }
    Ok(())
}

/// On start: imports again the result refs whose import the previous server left unfinished
/// (in the background; a pending delivery or the next poll may get there first, which is fine).
pub async fn resume(st: &AppState) {
    let repos = match st.store.repos_with_unfinished_imports().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("could not list the unfinished imports: {e}");
            return;
        }
    };
    if repos.is_empty() {
        return;
    }
    let st = st.clone();
    tokio::spawn(async move {
        let config = match st.sched.config().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("could not resume the unfinished imports: {e}");
                return;
            }
        };
        for name in repos {
            let Some(repo) = config.repos.get(&name) else {
                tracing::warn!(repo = %name, "an unfinished import of a repository no longer configured stays as it is");
                continue;
            };
            match fetched_mirror(&st, &config, repo).await {
                Ok(mirror) => {
                    let done = import_pushed_runs(&st, &config, repo, &mirror).await;
                    tracing::info!(repo = %name, "resumed imports: {}", done.describe());
                }
                Err(v) => {
                    tracing::warn!(repo = %name, "could not resume its imports: {}", v.text)
                }
            }
        }
    });
}

/// Tests only (debug builds): an import waits after recording a run, before its files, until
/// the file `BATON_TEST_IMPORT_GATE` names exists, so a test can kill the server in between.
#[cfg(debug_assertions)]
async fn test_gate() {
    let Some(gate) = std::env::var_os("BATON_TEST_IMPORT_GATE") else {
        return;
    };
    while !Path::new(&gate).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The ref's regular files, sized before any is read, or why they are refused.
async fn read_tree(mirror: &Mirror, oid: &Oid) -> Result<Vec<Blob>, Refusal> {
    let fail = |e: baton_git::GitError| Refusal::Later(format!("could not read its tree: {e}"));
    let entries = mirror
        .tree_entries(oid, MAX_FILES)
        .await
        .map_err(fail)?
        .ok_or(format!("it holds more than {MAX_FILES} files"))?;
    let mut total = 0u64;
    for e in &entries {
        if e.size > MAX_FILE_BYTES {
            return Err(format!(
                "its file {} has {} bytes (at most {MAX_FILE_BYTES})",
                e.path, e.size
            )
            .into());
        }
        if !layout::safe_path(&e.path) {
            return Err(format!("it holds a file with an unusable path {:?}", e.path).into());
        }
        total += e.size;
    }
    if total > MAX_RUN_BYTES {
        return Err(format!("it holds {total} bytes (at most {MAX_RUN_BYTES})").into());
    }
    let specs: Vec<String> = entries
        .iter()
        .map(|e| format!("{oid}:{}", e.path))
        .collect();
    let blobs = mirror.read_files(&specs).await.map_err(fail)?;
    Ok(entries
        .into_iter()
        .zip(blobs)
        .filter_map(|(e, b)| {
            Some(Blob {
                path: e.path,
                executable: e.executable,
                bytes: b?,
            })
        })
        .collect())
}

/// The commit's author and subject, when the mirror has it.
async fn known(mirror: &Mirror, commit: &str) -> Known {
    let info = match Oid::parse(commit) {
        Ok(oid) => mirror.commit_info(&oid).await.ok(),
        Err(_) => None,
    };
    Known {
        author: info
            .as_ref()
            .map(|i| format!("{} <{}>", i.author_name, i.author_email)),
        subject: info.map(|i| i.subject),
    }
}

/// Writes each job's log and artifacts into its folder (on a blocking thread).
async fn write_folders(st: &AppState, row: &baton_store::RunRow, files: Vec<JobFiles>) {
    let dirs: Vec<_> = row
        .jobs
        .iter()
        .map(|j| st.folders.job_dir(j.id, j.attempt))
        .collect();
    let written = tokio::task::spawn_blocking(move || {
        for (dir, f) in dirs.iter().zip(files) {
            if let Err(e) = write_job(dir, f) {
                tracing::warn!(dir = %dir.display(), "could not write an imported job's files: {e}");
            }
        }
    })
    .await;
    if let Err(e) = written {
        tracing::error!(run = row.id, "writing an imported run's files failed: {e}");
    }
}

fn write_job(dir: &Path, f: JobFiles) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if let Some(log) = f.log {
        std::fs::write(dir.join(baton_exec::layout::LOG_FILE), log)?;
    }
    let out = dir.join(baton_exec::layout::OUT_DIR);
    for (rel, executable, bytes) in f.out {
        // `rel` is plain components only (`layout::safe_path`), in a folder made here.
        let path = out.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        if executable {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// The jobs' cache digests, as a server-run job's would be recorded (a trusting repository).
async fn record_cache(
    st: &AppState,
    row: &baton_store::RunRow,
    cache: &[Option<baton_local::record::CacheRecord>],
) {
    for (job, c) in row.jobs.iter().zip(cache) {
        let Some(c) = c else { continue };
        let entry = JobCache {
            job_id: job.id,
            run_id: row.id,
            attempt: job.attempt,
            scope: row
                .repo
                .as_ref()
                .map(|r| r.repo.clone())
                .unwrap_or_default(),
            task: crate::results::history_key(row, job),
            digest: c.digest.clone(),
            facts: c.facts.to_string(),
            hit: None,
        };
        if let Err(e) = st.store.record_job_cache(&entry).await {
            tracing::warn!(
                job = job.id,
                "could not record an imported job's cache digest: {e}"
            );
        }
    }
}
