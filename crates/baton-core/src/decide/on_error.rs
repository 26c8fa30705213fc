//! A pipeline's `on_error` job: when it is added, and what it is told about the failure.

use std::collections::BTreeMap;

use crate::run::Status;

/// The name of a pipeline's `on_error` job.
pub const ON_ERROR_JOB: &str = "on_error";

/// How much of the failed job's log its `failedTaskStdout` holds (the end of it), in bytes.
pub const FAILED_LOG_TAIL_BYTES: u64 = 64 * 1024;

/// Whether job `job` ending with `status` adds the pipeline's `on_error` job: it failed, may
/// not fail, is not `on_error` itself, the pipeline has one and has not added it yet.
pub fn adds_on_error(
    job: &str,
    status: Status,
    allow_failure: bool,
    has_on_error: bool,
    already_added: bool,
) -> bool {
    status.is_failure() && !allow_failure && job != ON_ERROR_JOB && has_on_error && !already_added
}

/// The job that failed, as the `on_error` job is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTask<'a> {
    pub name: &'a str,
    pub exit_code: Option<i32>,
    pub reason: Option<&'a str>,
    /// The end of its log ([`FAILED_LOG_TAIL_BYTES`]).
    pub log_tail: String,
}

/// The arguments of the `on_error` job (prunner's names): the failed job's name, exit code
/// (empty if none), error and log. stderr is in the one log, so in `failedTaskStdout`;
/// `failedTaskStderr` is set empty so that a script naming it does not stop on an unset
/// variable.
pub fn failed_task_args(failed: FailedTask<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("failedTaskName".into(), failed.name.to_string()),
        (
            "failedTaskExitCode".into(),
            failed.exit_code.map_or(String::new(), |c| c.to_string()),
        ),
        (
            "failedTaskError".into(),
            failed.reason.unwrap_or_default().to_string(),
        ),
        ("failedTaskStdout".into(), failed.log_tail),
        ("failedTaskStderr".into(), String::new()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_error_is_added_once_for_a_failure_that_counts() {
        assert!(adds_on_error("a", Status::Failed, false, true, false));
        assert!(adds_on_error("a", Status::Jammed, false, true, false));
        assert!(!adds_on_error("a", Status::Failed, true, true, false));
        assert!(!adds_on_error("a", Status::Failed, false, false, false));
        assert!(!adds_on_error("a", Status::Failed, false, true, true));
        assert!(!adds_on_error(
            ON_ERROR_JOB,
            Status::Failed,
            false,
            true,
            false
        ));
        assert!(!adds_on_error("a", Status::Success, false, true, false));
    }

    #[test]
    fn the_failure_is_told_in_prunners_names() {
        let args = failed_task_args(FailedTask {
            name: "build",
            exit_code: Some(5),
            reason: Some("failed: exit code 5"),
            log_tail: "out\n".into(),
        });
        assert_eq!(args["failedTaskName"], "build");
        assert_eq!(args["failedTaskExitCode"], "5");
        assert_eq!(args["failedTaskError"], "failed: exit code 5");
        assert_eq!(args["failedTaskStdout"], "out\n");
        assert_eq!(args["failedTaskStderr"], "");
        // Valid argument names, as every trigger's are.
        assert_eq!(crate::args::check(&args), Ok(()));
    }
}
