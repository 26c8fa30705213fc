//! Triggers for a repository's commit (see [`crate::repo`]).

use baton_store::RunRow;

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
