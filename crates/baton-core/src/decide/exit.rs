//! What a job's end means: its status and reason from how its process ended.

use std::time::Duration;

use crate::run::Status;

/// How a job's process ended, as its executor recorded it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exit<'a> {
    /// The script's exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that killed the script, if one did.
    pub signal: Option<i32>,
    /// Killed because its timeout expired.
    pub timed_out: bool,
    /// Stopped on request (SIGTERM or SIGINT to its supervisor).
    pub canceled: bool,
    /// It could not be run (or its log not written).
    pub error: Option<&'a str>,
    /// Required `artifacts:` globs that matched no file: a job that exited 0 fails for them.
    pub missing_artifacts: &'a [String],
}

/// The status and reason of a job that ended as `exit` says; `timeout` is the task's limit, for
/// the reason of a job that ran out of time. An error wins over a timeout, a timeout over a
/// cancel, a cancel over the exit code.
pub fn describe_exit(exit: &Exit<'_>, timeout: Option<Duration>) -> (Status, Option<String>) {
    if let Some(err) = exit.error {
        return (Status::Broken, Some(format!("broken: {err}")));
    }
    if exit.timed_out {
        let limit = timeout.map_or(String::new(), |t| format!(" after {}s", t.as_secs()));
        return (
            Status::Jammed,
            Some(format!("jammed: timed out{limit} and was killed")),
        );
    }
    if exit.canceled {
        return (Status::Canceled, Some("canceled on request".into()));
    }
    match (exit.exit_code, exit.signal) {
        (Some(0), _) if !exit.missing_artifacts.is_empty() => (
            Status::Failed,
            Some(format!(
                "failed: required artifacts not found: {} matched no file",
                exit.missing_artifacts.join(", ")
            )),
        ),
        (Some(0), _) => (Status::Success, None),
        (Some(code), _) => (Status::Failed, Some(format!("failed: exit code {code}"))),
        (None, Some(sig)) => (
            Status::Failed,
            Some(format!("failed: killed by signal {sig}")),
        ),
        (None, None) => (
            Status::Broken,
            Some("broken: the job ended without an exit code".into()),
        ),
    }
}

/// The status and reason of a job whose process was lost (it could not start, or vanished):
/// `broken`, with `why`.
pub fn describe_loss(why: &str) -> (Status, Option<String>) {
    (Status::Broken, Some(format!("broken: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_missing_required_artifact_fails_a_job_that_exited_zero() {
        let missing = vec!["dist/*.tar.gz".to_string()];
        let ok = Exit {
            exit_code: Some(0),
            missing_artifacts: &missing,
            ..Exit::default()
        };
        assert_eq!(
            describe_exit(&ok, None),
            (
                Status::Failed,
                Some("failed: required artifacts not found: dist/*.tar.gz matched no file".into())
            )
        );
        // The script's own failure is the reason when it failed too.
        let failed = Exit {
            exit_code: Some(2),
            ..ok
        };
        assert_eq!(
            describe_exit(&failed, None),
            (Status::Failed, Some("failed: exit code 2".into()))
        );
    }

    #[test]
    fn exits_are_described() {
        let ok = Exit {
            exit_code: Some(0),
            ..Exit::default()
        };
        assert_eq!(describe_exit(&ok, None), (Status::Success, None));
        let code = Exit {
            exit_code: Some(3),
            ..Exit::default()
        };
        assert_eq!(
            describe_exit(&code, None),
            (Status::Failed, Some("failed: exit code 3".into()))
        );
        let sig = Exit {
            signal: Some(9),
            ..Exit::default()
        };
        assert_eq!(
            describe_exit(&sig, None),
            (Status::Failed, Some("failed: killed by signal 9".into()))
        );
        let timed = Exit {
            timed_out: true,
            signal: Some(15),
            ..Exit::default()
        };
        assert_eq!(
            describe_exit(&timed, Some(Duration::from_secs(7))),
            (
                Status::Jammed,
                Some("jammed: timed out after 7s and was killed".into())
            )
        );
        let none = Exit::default();
        assert_eq!(describe_exit(&none, None).0, Status::Broken);
        assert_eq!(
            describe_loss("gone"),
            (Status::Broken, Some("broken: gone".into()))
        );
    }

    proptest! {
        /// Every ended job gets a terminal status, and only success goes without a reason.
        #[test]
        fn every_exit_is_terminal_and_explained(
            exit_code in proptest::option::of(-1i32..300),
            signal in proptest::option::of(1i32..64),
            timed_out: bool,
            canceled: bool,
            error in proptest::option::of("[a-z ]{0,12}"),
        ) {
            let exit = Exit { exit_code, signal, timed_out, canceled, error: error.as_deref(), missing_artifacts: &[] };
            let (status, reason) = describe_exit(&exit, None);
            prop_assert!(status.is_terminal());
            prop_assert_eq!(status == Status::Success, reason.is_none());
            let reason = reason.unwrap_or_default();
            prop_assert!(status == Status::Success || reason.starts_with(status.as_str()));
            if error.is_some() {
                prop_assert_eq!(status, Status::Broken);
            } else if timed_out {
                prop_assert_eq!(status, Status::Jammed);
            } else if canceled {
                prop_assert_eq!(status, Status::Canceled);
            }
        }
    }
}
