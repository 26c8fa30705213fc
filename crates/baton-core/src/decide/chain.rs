//! Chaining: which tasks a success triggers.

use std::collections::BTreeMap;

use crate::config::TaskDef;
use crate::run::Status;

/// The tasks to trigger when a run of `parent` succeeds: every enabled task whose
/// `triggered_by` names it and whose other listed tasks all succeeded in their latest run (py4CI
/// waits for all of them), in name order. `latest` holds each task's latest finished status;
/// `parent` counts as a success.
pub fn chain_targets(
    tasks: &BTreeMap<String, TaskDef>,
    parent: &str,
    latest: &BTreeMap<String, Status>,
) -> Vec<String> {
    tasks
        .values()
        .filter(|t| t.enabled && t.after_tasks.iter().any(|a| a == parent))
        .filter(|t| {
            t.after_tasks
                .iter()
                .all(|a| a == parent || latest.get(a) == Some(&Status::Success))
        })
        .map(|t| t.name.clone())
        .collect()
}
