//! The CI cache in `baton run` (a task's `cache:`): after a job's checkout, its inputs are
//! read and its digest made exactly as the server makes it (`baton_results::cache`, the
//! definition from `TaskDef::cache_definition`); a successful job of an earlier stored run of
//! this repository with the same digest (`decide::cache_hit`, within `max_age`) is a hit, and
//! the job is skipped without running. Every job with `cache:` stores its digest and facts
//! in `run.json`, which later runs read back (and a server that trusts local runs imports).

use std::path::Path;
use std::sync::Arc;

use baton_core::config::CacheDef;
use baton_core::decide::{CacheCandidate, cache_hit};
use baton_git::LocalRepo;
use baton_results::cache::{CacheFacts, gather_inputs};

use crate::record::{BATON_PREFIX, CacheRecord, RunRecord};

/// A hit's reason starts with this (a skipped job that counts as a success in the DAG).
pub const LOCAL_HIT: &str = "cache hit: same inputs as ";

/// The jobs of earlier stored runs that recorded a digest.
#[derive(Debug, Default)]
pub struct CacheIndex {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    digest: String,
    run: String,
    job: String,
    success: bool,
    ended_ms: i64,
    was_hit: bool,
}

impl CacheIndex {
    /// Every stored Baton run's jobs with a digest (their `run.json` read in one git process).
    pub async fn read(repo: &LocalRepo) -> CacheIndex {
        let Ok(refs) = repo.refs(BATON_PREFIX).await else {
            return CacheIndex::default();
        };
        let specs: Vec<String> = refs.iter().map(|(r, _)| format!("{r}:run.json")).collect();
        let Ok(files) = repo.read_files(&specs).await else {
            return CacheIndex::default();
        };
        let mut entries = Vec::new();
        for json in files.into_iter().flatten() {
            let Ok(rec) = serde_json::from_slice::<RunRecord>(&json) else {
                continue;
            };
            for j in rec.jobs {
                let Some(c) = j.cache else { continue };
                entries.push(Entry {
                    digest: c.digest,
                    run: rec.id.clone(),
                    success: j.status == "success",
                    ended_ms: j.ended_at.unwrap_or(rec.ended_at).timestamp_millis(),
                    was_hit: j
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with(LOCAL_HIT)),
                    job: j.name,
                });
            }
        }
        CacheIndex { entries }
    }
}

/// A job's cache check: its `cache:`, the definition and facts it covers, and where to look.
#[derive(Debug, Clone)]
pub struct Probe {
    pub def: CacheDef,
    pub definition: String,
    pub image: Option<String>,
    pub env: Vec<(String, Option<String>)>,
    pub index: Arc<CacheIndex>,
    /// `--no-cache`: the job runs whatever the index holds (its digest is still stored).
    pub forced: bool,
}

impl Probe {
    /// Reads the inputs under `work` (the job's checkout): the job's digest record and, on a
    /// hit, the reason it is skipped. An input that cannot be read runs the job (`None`).
    pub async fn check(&self, work: &Path) -> (Option<CacheRecord>, Option<String>) {
        let (base, globs) = (work.to_path_buf(), self.def.inputs.clone());
        let files = match tokio::task::spawn_blocking(move || gather_inputs(&base, &globs)).await {
            Ok(Ok(files)) => files,
            _ => return (None, None),
        };
        let facts = CacheFacts::new(
            files,
            &self.definition,
            self.image.clone(),
            &self.env,
            &self.def.key,
        );
        let digest = facts.digest();
        let record = CacheRecord {
            digest: digest.clone(),
            facts: serde_json::to_value(&facts).unwrap_or_default(),
        };
        if self.forced {
            return (Some(record), None);
        }
        let same: Vec<&Entry> = self
            .index
            .entries
            .iter()
            .filter(|e| e.digest == digest)
            .collect();
        let candidates: Vec<CacheCandidate> = same
            .iter()
            .enumerate()
            .map(|(i, e)| CacheCandidate {
                job_id: i as i64,
                run_id: i as i64,
                success: e.success,
                ended_ms: e.ended_ms,
                was_hit: e.was_hit,
            })
            .collect();
        let now = chrono::Utc::now().timestamp_millis();
        let hit = cache_hit(&candidates, now, self.def.max_age()).map(|c| {
            let e = same[c.job_id as usize];
            format!("{LOCAL_HIT}{} in run {}", e.job, e.run)
        });
        (Some(record), hit)
    }
}
