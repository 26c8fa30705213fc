//! Triggers for a repository's commit (see [`crate::repo`]), and runs imported from a
//! repository's pushed result refs.

use baton_store::{Change, ImportMark, RunRow};

use super::Actor;
use crate::handle::RepoTriggerRequest;
use crate::handle::{SchedError, TriggerRequest};

impl Actor {
    pub(crate) async fn trigger_repo(
        &mut self,
        req: RepoTriggerRequest,
        ancestors: Vec<i64>,
    ) -> Result<RunRow, SchedError> {
        let def = match req.def {
            Some(def) => def,
            None => super::admit::lookup(&self.config, &req.target, None)
                .ok_or_else(|| SchedError::UnknownTarget(req.target.clone()))?,
        };
        let base = TriggerRequest {
            target: req.target,
            kind: Some(def.kind()),
            args: Default::default(),
            trigger: req.trigger,
            ancestors,
            no_cache: req.no_cache,
        };
        self.admit_and_record(base, def, Some(req.repo), req.hold)
            .await
    }
}

impl Actor {
    /// Gives an imported run (ended: it never becomes an open run) its ids and records it with
    /// the batch. It is not told to the change feed here: its importer writes its logs and
    /// artifacts once it has its ids, collects its results itself, then announces it
    /// (`SchedHandle::announce_imported`).
    pub(crate) fn record_import(&mut self, mut run: RunRow, mark: ImportMark) -> RunRow {
        run.id = self.next_run_id;
        self.next_run_id += 1;
        for job in &mut run.jobs {
            job.id = self.next_job_id;
            job.run_id = run.id;
            self.next_job_id += 1;
        }
        self.pending
            .push(Change::Import(Box::new(run.clone()), mark));
        self.changed = true;
        run
    }
}
