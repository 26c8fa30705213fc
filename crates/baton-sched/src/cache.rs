//! The CI cache at launch: the actor plans a check from what it holds (the job's `cache:`, its
//! definition, image and environment; pure data), and the job's launch task (outside the actor,
//! where the checkout is) reads the input files, makes the digest, looks for a hit in the store
//! and records the job's digest. A hit ends the job `skipped` without running it.

use std::path::PathBuf;

use baton_core::config::CacheDef;
use baton_core::decide::{self, CacheCandidate};
use baton_exec::{Executor, JobSpec};
use baton_results::cache::{CacheFacts, gather_inputs};
use baton_store::{JobCache, Store};

use crate::jobs::{LiveRun, TargetDef};

/// A cache check to make before a job starts.
#[derive(Debug, Clone)]
pub(crate) struct CacheCheck {
    def: CacheDef,
    scope: String,
    task: String,
    definition: String,
    image: Option<String>,
    env: Vec<(String, Option<String>)>,
    /// Where the input globs are read: the job's checkout, or for a task outside a
    /// repository the directory the server runs in.
    base: PathBuf,
    job_id: i64,
    run_id: i64,
    attempt: u32,
}

/// The image fact: the image as named (by the engine's id once [`CacheCheck::with_image_id`]
/// asked), or the Dockerfile that builds it.
fn image_of(spec: &JobSpec) -> Option<String> {
    let c = spec.container.as_ref()?;
    match (&c.build, &c.image) {
        (Some(build), _) => Some(format!("build:{}", build.display())),
        (None, image) => image.clone(),
    }
}

impl CacheCheck {
    /// The check for job `job` of `run` launched in `dir` with `spec`; `None` when its task has
    /// no `cache:`, or it runs on a remote worker outside a repository (its inputs are only
    /// there). A remote repository job's inputs are read from the server's checkout of its
    /// commit in `dir/work`, made for the check.
    pub(crate) fn plan(
        run: &LiveRun,
        job: &baton_store::JobRow,
        spec: &JobSpec,
        dir: &std::path::Path,
        remote: bool,
    ) -> Option<CacheCheck> {
        let repo = run.row.repo.as_ref().map(|r| r.repo.as_str());
        let (def, definition) = run.def.cache(&job.name, repo)?;
        if remote && run.row.repo.is_none() {
            return None;
        }
        let base = match &run.row.repo {
            Some(_) => dir.join("work"),
            None => std::env::current_dir().ok()?,
        };
        let env = def
            .env
            .iter()
            .map(|name| {
                let v = spec
                    .env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone());
                (name.clone(), v.or_else(|| std::env::var(name).ok()))
            })
            .collect();
        let task = match &run.def {
            TargetDef::Task(_) => run.row.target.clone(),
            TargetDef::Pipeline(_) => format!("{}/{}", run.row.target, job.name),
        };
        Some(CacheCheck {
            scope: run
                .row
                .repo
                .as_ref()
                .map(|r| r.repo.clone())
                .unwrap_or_default(),
            task,
            definition,
            image: image_of(spec),
            env,
            base,
            job_id: job.id,
            run_id: run.row.id,
            attempt: job.attempt,
            def,
        })
    }

    /// The image fact by the id the engine that runs the job gives (`NAME@sha256:…`): the
    /// server's own engine, or an agent's, asked through its polls, so that a new image under
    /// the same tag misses. The name alone when the executor cannot say (an agent too old to
    /// answer) or the engine does not answer (the job then fails to start anyway, logged).
    pub(crate) async fn with_image_id(mut self, exec: &dyn Executor) -> CacheCheck {
        let Some(name) = self.image.clone() else {
            return self;
        };
        match baton_exec::image_fact(exec, &name).await {
            Ok(fact) => self.image = Some(fact),
            Err(e) => tracing::warn!(
                job = self.job_id,
                "cache: cannot get the id of image {name} ({e}); it counts by its name"
            ),
        }
        self
    }

    /// Reads the inputs, records the job's digest, and answers the skip reason on a hit.
    /// Anything that goes wrong (an unreadable input, the store) runs the job, logged.
    pub(crate) async fn check(self, store: &Store) -> Option<String> {
        let (base, globs) = (self.base.clone(), self.def.inputs.clone());
        let files = match tokio::task::spawn_blocking(move || gather_inputs(&base, &globs)).await {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                tracing::warn!(job = self.job_id, "{e}");
                return None;
            }
            Err(_) => return None,
        };
        let facts = CacheFacts::new(
            files,
            &self.definition,
            self.image.clone(),
            &self.env,
            &self.def.key,
        );
        let digest = facts.digest();
        let hit = if self.def.forced {
            None
        } else {
            self.find_hit(store, &digest).await
        };
        let record = JobCache {
            job_id: self.job_id,
            run_id: self.run_id,
            attempt: self.attempt,
            scope: self.scope.clone(),
            task: self.task.clone(),
            digest,
            facts: serde_json::to_string(&facts).unwrap_or_default(),
            hit: hit.map(|h| (h.job_id, h.run_id)),
        };
        if let Err(e) = store.record_job_cache(&record).await {
            tracing::warn!(
                job = self.job_id,
                "cannot record the job's cache digest: {e}"
            );
            return None;
        }
        hit.map(|h| decide::hit_reason(h.job_id, h.run_id))
    }

    async fn find_hit(&self, store: &Store, digest: &str) -> Option<CacheCandidate> {
        let sources = match store.cache_sources(&self.scope, digest, self.job_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = self.job_id, "cannot look up the cache: {e}");
                return None;
            }
        };
        let candidates: Vec<CacheCandidate> = sources
            .iter()
            .filter_map(|s| {
                Some(CacheCandidate {
                    job_id: s.job_id,
                    run_id: s.run_id,
                    success: s.status == "success",
                    ended_ms: s.ended_ms?,
                    was_hit: s.was_hit,
                })
            })
            .collect();
        let now = chrono::Utc::now().timestamp_millis();
        decide::cache_hit(&candidates, now, self.def.max_age())
    }
}
