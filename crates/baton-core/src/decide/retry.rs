//! What happens when a job's attempt ends: it is retried, or it ends with a status; a cancel
//! asked for wins over what the process says.

use crate::run::Status;

/// The facts about an attempt that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEnd<'a> {
    /// What its exit (or its loss) says ([`super::describe_exit`]).
    pub status: Status,
    pub reason: Option<String>,
    /// A user asked to cancel the run.
    pub cancel_requested: bool,
    /// The reason the job holds now: the scheduler's, when it asked the job to stop
    /// (`canceled: ...` for fail fast or a replacement).
    pub held_reason: Option<&'a str>,
    /// The attempt that ended, from 1.
    pub attempt: u32,
    /// How many times a broken job is tried again (`retries`).
    pub retries: u32,
}

/// The answer for an attempt that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// Queue the job again as attempt `next_attempt`, waiting with `reason`.
    Retry { next_attempt: u32, reason: String },
    /// The job ends with this status and reason.
    End {
        status: Status,
        reason: Option<String>,
    },
}

/// Whether the scheduler asked the job to stop: its reason is a `canceled: ...` one (fail
/// fast, a replacement).
pub fn asked_to_cancel(held: Option<&str>) -> bool {
    held.is_some_and(|r| r.starts_with("canceled:"))
}

/// Decides what an ended attempt becomes. A cancel asked for turns a failure (our own SIGTERM)
/// into `canceled on request`; a canceled job keeps the reason the scheduler gave when it
/// asked; only a `broken` job (lost, could not start) that nobody asked to stop is retried, at
/// most `retries` times.
pub fn job_end(end: AttemptEnd<'_>) -> JobEnd {
    let AttemptEnd {
        mut status,
        mut reason,
        cancel_requested,
        held_reason,
        attempt,
        retries,
    } = end;
    if cancel_requested && !status.is_terminal() {
        status = Status::Canceled;
    }
    if cancel_requested && status == Status::Failed {
        // Killed by our own SIGTERM.
        status = Status::Canceled;
        reason = Some("canceled on request".into());
    }
    if status == Status::Canceled && asked_to_cancel(held_reason) {
        // Keep the reason the scheduler gave when it asked (fail fast, replaced, ...).
        reason = held_reason.map(str::to_string);
    }
    let stopped = cancel_requested || asked_to_cancel(held_reason);
    if status == Status::Broken && !stopped && attempt <= retries {
        let why = reason.unwrap_or_default();
        return JobEnd::Retry {
            next_attempt: attempt + 1,
            reason: format!("queued: retry {attempt} of {retries} after {why}"),
        };
    }
    JobEnd::End { status, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn end(status: Status, attempt: u32, retries: u32) -> AttemptEnd<'static> {
        AttemptEnd {
            status,
            reason: Some(format!("{status}: why")),
            cancel_requested: false,
            held_reason: None,
            attempt,
            retries,
        }
    }

    #[test]
    fn broken_jobs_are_retried_up_to_the_limit() {
        assert_eq!(
            job_end(end(Status::Broken, 1, 2)),
            JobEnd::Retry {
                next_attempt: 2,
                reason: "queued: retry 1 of 2 after broken: why".into()
            }
        );
        assert!(matches!(
            job_end(end(Status::Broken, 2, 2)),
            JobEnd::Retry {
                next_attempt: 3,
                ..
            }
        ));
        assert_eq!(
            job_end(end(Status::Broken, 3, 2)),
            JobEnd::End {
                status: Status::Broken,
                reason: Some("broken: why".into())
            }
        );
        // Only broken jobs: a failure is the script's answer.
        assert!(matches!(
            job_end(end(Status::Failed, 1, 2)),
            JobEnd::End {
                status: Status::Failed,
                ..
            }
        ));
    }

    #[test]
    fn a_cancel_wins_and_keeps_the_schedulers_reason() {
        let mut e = end(Status::Failed, 1, 0);
        e.cancel_requested = true;
        assert_eq!(
            job_end(e),
            JobEnd::End {
                status: Status::Canceled,
                reason: Some("canceled on request".into())
            }
        );
        let mut e = end(Status::Canceled, 1, 0);
        e.held_reason = Some("canceled: task `a` failed (fail fast)");
        assert_eq!(
            job_end(e),
            JobEnd::End {
                status: Status::Canceled,
                reason: Some("canceled: task `a` failed (fail fast)".into())
            }
        );
        // A waiting reason is not the scheduler's cancel.
        let mut e = end(Status::Canceled, 1, 0);
        e.held_reason = Some("queued: retry 1 of 1 after broken: x");
        assert_eq!(
            job_end(e),
            JobEnd::End {
                status: Status::Canceled,
                reason: Some("canceled: why".into())
            }
        );
    }

    fn any_status() -> impl Strategy<Value = Status> {
        proptest::sample::select(Status::ALL.to_vec())
    }

    proptest! {
        /// A job runs at most `retries + 1` times, a retry always moves to the next attempt,
        /// and a job someone asked to stop is never retried.
        #[test]
        fn retries_are_bounded_and_never_follow_a_cancel(
            status in any_status(),
            cancel_requested: bool,
            asked: bool,
            attempt in 1u32..10,
            retries in 0u32..6,
        ) {
            let held = asked.then_some("canceled: replaced by run 9");
            let e = AttemptEnd {
                status,
                reason: Some("broken: lost".into()),
                cancel_requested,
                held_reason: held,
                attempt,
                retries,
            };
            match job_end(e) {
                JobEnd::Retry { next_attempt, .. } => {
                    prop_assert_eq!(next_attempt, attempt + 1);
                    prop_assert!(next_attempt <= retries + 1);
                    prop_assert!(!cancel_requested && !asked);
                    prop_assert_eq!(status, Status::Broken);
                }
                JobEnd::End { status: s, .. } => {
                    if cancel_requested && status == Status::Failed {
                        prop_assert_eq!(s, Status::Canceled);
                    }
                    if status == Status::Broken && !cancel_requested && !asked {
                        prop_assert!(attempt > retries);
                    }
                }
            }
        }
    }
}
