//! Triggers: admission of a new run (skip, supersede, wait lists, refusal), the runs it
//! displaces, and chaining to the tasks whose `triggered_by` lists a task that succeeded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use baton_core::config::Config;
use baton_core::decide::{self, Admit, Displace, OpenRun};
use baton_core::run::{Status, TargetKind, TriggerKind};
use baton_store::{Change, NewJob, NewRun, RunRow};

use super::{Actor, job_change};
use crate::handle::{SchedError, TriggerRequest};
use crate::jobs::{LiveRun, TargetDef};

impl Actor {
    pub(super) async fn trigger(&mut self, req: TriggerRequest) -> Result<RunRow, SchedError> {
        let def = lookup(&self.config, &req.target, req.kind)
            .ok_or_else(|| SchedError::UnknownTarget(req.target.clone()))?;
        self.admit_and_record(req, def, None, None).await
    }

    pub(super) async fn admit_and_record(
        &mut self,
        mut req: TriggerRequest,
        def: TargetDef,
        repo: Option<baton_store::RunRepo>,
        hold: Option<String>,
    ) -> Result<RunRow, SchedError> {
        if !def.enabled() {
            return Err(SchedError::Disabled(req.target.clone()));
        }
        // Every trigger path (API, UI, CLI, chaining, reruns, timers) passes here: bad
        // arguments are refused before anything is recorded, declared ones get their defaults.
        baton_core::args::apply_declared(&req.target, def.declared_args(), &mut req.args)?;
        baton_core::args::check(&req.args)?;
        let def = def.with_cache_forced(req.no_cache);
        let now = Utc::now();
        let partition = LiveRun::partition(&req.args);
        let doomed = self.superseded_by(&req.target, &def, repo.as_ref());
        let open: Vec<OpenRun> = self
            .runs
            .of_target(&(def.kind(), req.target.clone()))
            .map(|id| &self.runs[&id])
            .filter(|r| r.row.target == req.target && r.def.kind() == def.kind())
            .filter(|r| !doomed.contains(&r.row.id))
            .map(|r| OpenRun {
                id: r.row.id,
                active: r.is_active(),
                partition: r.row.partition.clone(),
                not_before: r.row.not_before,
            })
            .collect();
        let decision = decide::admit(
            &req.target,
            &def.admission(),
            &open,
            self.last_start.get(&req.target).copied(),
            partition.as_deref(),
            now,
        );
        let (status, reason, not_before, displaces, refused) = outcome(decision, hold);
        let new = NewRun {
            kind: def.kind(),
            target: req.target.clone(),
            trigger: req.trigger,
            args: req.args.clone(),
            tags: def.tags(),
            definition: serde_json::to_value(&def).unwrap_or_default(),
            status,
            reason,
            priority: def.priority(),
            partition,
            enqueued_at: now,
            not_before,
            jobs: def
                .job_names(&req.target)
                .into_iter()
                .map(|name| NewJob { name })
                .collect(),
            ancestors: req.ancestors.clone(),
            repo,
        };
        let row = self.record_new_run(new);
        self.changed = true;
        self.touched.insert(row.id, (row.kind, row.target.clone()));
        if let Some(reason) = refused {
            return Err(SchedError::WaitListFull {
                run: row.id,
                reason,
            });
        }
        match displaces {
            Some(Displace::Replace(old)) => {
                let why = format!("canceled: replaced by run {}", row.id);
                self.displace(old, Status::Canceled, why, now).await;
            }
            Some(Displace::Supersede(old)) => {
                let why = format!("skipped: superseded by run {}", row.id);
                self.displace(old, Status::Skipped, why, now).await;
            }
            None => {}
        }
        if matches!(status, Status::Queued | Status::Waiting) {
            self.runs.insert(row.id, LiveRun::new(row.clone(), def));
            let why = decide::superseded_reason(row.id);
            for old in doomed {
                // Boxed: a cancel settles the run, which may chain into a new trigger.
                Box::pin(self.cancel_because(old, Some(why.clone()))).await;
            }
        }
        Ok(row)
    }

    /// The open runs a new run of `target` for `repo` supersedes, when its task says
    /// `cancel_superseded` (see [`decide::superseded`]): canceled once it is admitted, and not
    /// counted against its admission.
    fn superseded_by(
        &self,
        target: &str,
        def: &TargetDef,
        repo: Option<&baton_store::RunRepo>,
    ) -> Vec<i64> {
        let Some(key) =
            repo.and_then(|r| decide::CodeKey::of(&r.repo, &r.event, r.pr, r.branch.as_deref()))
        else {
            return Vec::new();
        };
        let open: Vec<decide::OpenCode> = self
            .runs
            .values()
            .filter(|r| r.def.kind() == def.kind())
            .map(|r| decide::OpenCode {
                id: r.row.id,
                target: r.row.target.clone(),
                key: r.code_key(),
            })
            .collect();
        decide::superseded(target, &key, def.cancel_superseded(), &open)
    }

    /// A waiting run that a newer trigger takes the place of ends with `status` (`canceled`
    /// when replaced from a wait list, `skipped` when superseded) and `reason`.
    async fn displace(&mut self, old: i64, status: Status, reason: String, now: DateTime<Utc>) {
        let Some(run) = self.runs.get_mut(&old) else {
            return;
        };
        let mut changes = Vec::new();
        for j in run
            .row
            .jobs
            .iter_mut()
            .filter(|j| matches!(j.status, Status::Queued | Status::Waiting))
        {
            j.status = status;
            j.reason = Some(reason.clone());
            changes.push(job_change(j, Some(now)));
        }
        changes.push(Change::Run {
            id: old,
            status,
            reason: Some(reason),
            started_at: None,
            ended_at: Some(now),
            builds_commit: run.row.repo.is_some(),
        });
        self.touch(old);
        self.runs.remove(&old);
        self.persist(changes).await;
    }

    /// Records how a task's run that started has ended (for chaining), then, on success,
    /// triggers the tasks whose `triggered_by` lists it and whose other listed tasks last
    /// succeeded too. The chained run's ancestors are those latest runs.
    pub(super) async fn task_ended(&mut self, run: &RunRow) {
        if run.kind != TargetKind::Task || run.started_at.is_none() {
            return;
        }
        self.latest_ends
            .insert(run.target.clone(), (run.id, run.status));
        if run.status != Status::Success {
            return;
        }
        let latest: BTreeMap<String, Status> = self
            .latest_ends
            .iter()
            .map(|(name, (_, status))| (name.clone(), *status))
            .collect();
        let children = decide::chain_targets(&self.config.tasks, &run.target, &latest);
        for child in children {
            let mut ancestors: Vec<i64> = self.config.tasks[&child]
                .after_tasks
                .iter()
                .filter_map(|a| self.latest_ends.get(a).map(|(id, _)| *id))
                .collect();
            ancestors.sort_unstable();
            ancestors.dedup();
            let req = TriggerRequest {
                target: child.clone(),
                kind: Some(TargetKind::Task),
                args: run.args.clone(),
                trigger: TriggerKind::Chained,
                ancestors,
                no_cache: false,
            };
            if let Err(e) = self.trigger(req).await {
                tracing::warn!(task = child, parent = run.id, "chained trigger failed: {e}");
            }
        }
    }
}

/// What an admission decision records: status, reason, not_before, the run it displaces, and
/// the refusal to answer with. A run `hold` names is admitted like any other but `waiting`
/// (no worker takes it until it is approved).
type Outcome = (
    Status,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<Displace>,
    Option<String>,
);

fn outcome(decision: Admit, hold: Option<String>) -> Outcome {
    match decision {
        Admit::Queue {
            not_before,
            displaces,
        } => match hold {
            Some(why) => (Status::Waiting, Some(why), not_before, displaces, None),
            None => (Status::Queued, None, not_before, displaces, None),
        },
        Admit::Skip { reason } => (Status::Skipped, Some(reason), None, None, None),
        // Kept as a `skipped` run for the history; the trigger is answered with a refusal.
        Admit::Refuse { reason } => (
            Status::Skipped,
            Some(format!("refused: {reason}")),
            None,
            None,
            Some(reason),
        ),
    }
}

pub(super) fn lookup(config: &Config, name: &str, kind: Option<TargetKind>) -> Option<TargetDef> {
    let task = || {
        config
            .tasks
            .get(name)
            .cloned()
            .map(|t| TargetDef::Task(Box::new(t)))
    };
    let pipeline = || {
        config
            .pipelines
            .get(name)
            .cloned()
            .map(|p| TargetDef::Pipeline(Box::new(p)))
    };
    match kind {
        Some(TargetKind::Task) => task(),
        Some(TargetKind::Pipeline) => pipeline(),
        None => task().or_else(pipeline),
    }
}
