//! What the actor knows about each open run: its definition snapshot and its jobs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use baton_core::config::{ContainerDef, PipelineDef, TaskDef};
use baton_core::decide::{Admission, DagJob};
use baton_core::run::{JobView, Status, TargetKind};
use baton_store::{JobRow, RunRow};

/// The definition a run was queued with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "def")]
pub enum TargetDef {
    /// Boxed, both: definitions are large and a run holds one.
    Task(Box<TaskDef>),
    Pipeline(Box<PipelineDef>),
}

pub(crate) use baton_core::decide::ON_ERROR_JOB;

impl TargetDef {
    /// The `cache:` of job `job` and its task's definition as written (JSON, the cache's
    /// `forced` flag left out): what the cache digest is made of. A repository's task is named
    /// without its `repo` prefix, as `baton run` names it on a laptop.
    pub fn cache(
        &self,
        job: &str,
        repo: Option<&str>,
    ) -> Option<(baton_core::config::CacheDef, String)> {
        match self {
            TargetDef::Task(t) => {
                let own = repo
                    .and_then(|r| t.name.strip_prefix(&format!("{r}/")))
                    .unwrap_or(&t.name);
                t.cache_definition(own)
            }
            TargetDef::Pipeline(p) => p.tasks.get(job)?.cache_definition(),
        }
    }

    /// The same definition with every `cache:` forced or not (`--no-cache`, "run anyway":
    /// its jobs run, and their inputs are still recorded).
    pub fn with_cache_forced(mut self, forced: bool) -> TargetDef {
        match &mut self {
            TargetDef::Task(t) => t.cache.iter_mut().for_each(|c| c.forced = forced),
            TargetDef::Pipeline(p) => p
                .tasks
                .values_mut()
                .flat_map(|t| t.cache.iter_mut())
                .for_each(|c| c.forced = forced),
        }
        self
    }

    /// `enabled:` (with an administrator's override, in the config in force).
    pub fn enabled(&self) -> bool {
        match self {
            TargetDef::Task(t) => t.enabled,
            TargetDef::Pipeline(p) => p.enabled,
        }
    }

    /// The `args:` it declares (empty: it takes any arguments).
    pub fn declared_args(&self) -> &[baton_core::config::ArgDef] {
        match self {
            TargetDef::Task(t) => &t.args,
            TargetDef::Pipeline(p) => &p.args,
        }
    }

    pub fn kind(&self) -> TargetKind {
        match self {
            TargetDef::Task(_) => TargetKind::Task,
            TargetDef::Pipeline(_) => TargetKind::Pipeline,
        }
    }

    pub fn admission(&self) -> Admission {
        match self {
            TargetDef::Task(t) => Admission::for_task(t),
            TargetDef::Pipeline(p) => Admission::for_pipeline(p),
        }
    }

    pub fn queues(&self) -> Vec<String> {
        match self {
            TargetDef::Task(t) => t.queues.clone(),
            TargetDef::Pipeline(p) => p.queues.clone(),
        }
    }

    pub fn priority(&self) -> i64 {
        match self {
            TargetDef::Task(t) => t.priority,
            TargetDef::Pipeline(_) => 0,
        }
    }

    pub fn tags(&self) -> Vec<String> {
        match self {
            TargetDef::Task(t) => t.tags.clone(),
            TargetDef::Pipeline(p) => p.tags.clone(),
        }
    }

    /// Job names of a new run, in a stable order.
    pub fn job_names(&self, name: &str) -> Vec<String> {
        match self {
            TargetDef::Task(_) => vec![name.to_string()],
            TargetDef::Pipeline(p) => p.tasks.keys().cloned().collect(),
        }
    }

    pub fn allow_failure(&self, job: &str) -> bool {
        match self {
            TargetDef::Task(_) => false,
            TargetDef::Pipeline(p) => p.tasks.get(job).is_some_and(|t| t.allow_failure),
        }
    }

    /// The container a job runs in, if it has `image:`/`build:` (`on_error` runs on the worker).
    pub fn container(&self, job: &str) -> Option<&ContainerDef> {
        match self {
            TargetDef::Task(t) => t.container.as_deref(),
            TargetDef::Pipeline(p) => p.tasks.get(job).and_then(|t| t.container.as_deref()),
        }
    }

    /// `cancel_superseded:` as written (`None`: the default for the event).
    pub fn cancel_superseded(&self) -> Option<bool> {
        match self {
            TargetDef::Task(t) => t.cancel_superseded,
            TargetDef::Pipeline(p) => p.cancel_superseded,
        }
    }

    pub fn depends_on(&self, job: &str) -> Vec<String> {
        match self {
            TargetDef::Task(_) => Vec::new(),
            TargetDef::Pipeline(p) => p
                .tasks
                .get(job)
                .map(|t| t.depends_on.clone())
                .unwrap_or_default(),
        }
    }
}

/// An open run as the actor tracks it.
#[derive(Debug, Clone)]
pub(crate) struct LiveRun {
    pub row: RunRow,
    pub def: TargetDef,
    pub cancel_requested: bool,
    /// Why it was canceled, when not on a user's request (`superseded by run N`).
    pub cancel_reason: Option<String>,
    /// The reason last written to the store (to write only changes).
    pub stored_reason: Option<String>,
    pub stored_status: Status,
}

impl LiveRun {
    pub fn new(row: RunRow, def: TargetDef) -> Self {
        LiveRun {
            stored_reason: row.reason.clone(),
            stored_status: row.status,
            row,
            def,
            cancel_requested: false,
            cancel_reason: None,
        }
    }

    pub fn job(&self, id: i64) -> Option<&JobRow> {
        self.row.jobs.iter().find(|j| j.id == id)
    }

    pub fn job_mut(&mut self, id: i64) -> Option<&mut JobRow> {
        self.row.jobs.iter_mut().find(|j| j.id == id)
    }

    /// Started: at least one job was dispatched (it holds a concurrency slot).
    pub fn is_active(&self) -> bool {
        self.row.started_at.is_some()
    }

    pub fn views(&self) -> Vec<JobView> {
        self.row
            .jobs
            .iter()
            .map(|j| JobView {
                status: j.status,
                allow_failure: self.def.allow_failure(&j.name),
                ended_seq: j.ended_seq.unwrap_or(u64::MAX),
            })
            .collect()
    }

    pub fn dag(&self) -> Vec<DagJob> {
        self.row
            .jobs
            .iter()
            .filter(|j| j.name != ON_ERROR_JOB || !matches!(self.def, TargetDef::Pipeline(_)))
            .map(|j| DagJob {
                name: j.name.clone(),
                depends_on: self.def.depends_on(&j.name),
                status: j.status,
                allow_failure: self.def.allow_failure(&j.name),
                cached: baton_core::decide::result_source(j.reason.as_deref()).is_some(),
            })
            .collect()
    }

    /// What it builds, for superseding (`None`: not a repository run, or nothing supersedes
    /// it).
    pub fn code_key(&self) -> Option<baton_core::decide::CodeKey> {
        let r = self.row.repo.as_ref()?;
        baton_core::decide::CodeKey::of(&r.repo, &r.event, r.pr, r.branch.as_deref())
    }

    pub fn partition(args: &BTreeMap<String, String>) -> Option<String> {
        baton_core::decide::partition_of(args)
    }
}
