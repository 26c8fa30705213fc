//! What Baton tells a forge about a commit: the state of a run as a commit status, and its
//! one-line description. The forge's own words for each state are `baton_forge`'s business.
//!
//! Run statuses map to commit states so: `queued` → pending, `started`/`running` → running,
//! `success` → success, `failed` → failure (the command failed), `broken` and `jammed` → error
//! (infrastructure trouble or a timeout, not the code's verdict), `canceled` and `skipped` →
//! canceled (nobody judged the commit; forges without a canceled state get `error`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::run::Status;

/// The state of a commit status as Baton says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommitState {
    Pending,
    Running,
    Success,
    Failure,
    Error,
    Canceled,
}

impl CommitState {
    pub const ALL: [CommitState; 6] = [
        CommitState::Pending,
        CommitState::Running,
        CommitState::Success,
        CommitState::Failure,
        CommitState::Error,
        CommitState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Pending => "pending",
            CommitState::Running => "running",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
            CommitState::Canceled => "canceled",
        }
    }

    /// The commit state that reports a run in `status`.
    pub fn of_run(status: Status) -> CommitState {
        match status {
            Status::Queued | Status::Waiting => CommitState::Pending,
            Status::Started | Status::Running => CommitState::Running,
            Status::Success => CommitState::Success,
            Status::Failed => CommitState::Failure,
            Status::Broken | Status::Jammed => CommitState::Error,
            Status::Canceled | Status::Skipped => CommitState::Canceled,
        }
    }
}

impl fmt::Display for CommitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommitState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommitState::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown commit state {s:?} (expected pending, running, success, failure, error or canceled)"
                )
            })
    }
}

/// The context of a run's statuses: `baton/TARGET`.
pub fn context(target: &str) -> String {
    format!("baton/{target}")
}

/// The longest description GitHub keeps (the others take at least as much).
pub const MAX_DESCRIPTION: usize = 140;

/// A one-line description of a run in `status` (with its reason and how long it ran, if it
/// ended): `queued`, `running`, `succeeded after 12s`, `failed: test exited 1 after 12s`.
pub fn describe(status: Status, reason: Option<&str>, took: Option<Duration>) -> String {
    let word = match status {
        Status::Queued => "queued",
        Status::Waiting => "waiting for approval",
        Status::Started | Status::Running => "running",
        Status::Success => "succeeded",
        Status::Failed => "failed",
        Status::Broken => "broken",
        Status::Jammed => "timed out",
        Status::Canceled => "canceled",
        Status::Skipped => "skipped",
    };
    let mut text = word.to_owned();
    if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        text.push_str(": ");
        text.push_str(r.lines().next().unwrap_or(r));
    }
    if status.is_terminal()
        && let Some(t) = took
    {
        text.push_str(&format!(" after {}", short_duration(t)));
    }
    clip(&text, MAX_DESCRIPTION)
}

/// `12s`, `3m4s`, `1h2m`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `text` cut to at most `max` characters, ending in `…` when cut, on one line.
pub fn clip(text: &str, max: usize) -> String {
    let line = text.replace(['\n', '\r'], " ");
    if line.chars().count() <= max {
        return line;
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_state_and_states_round_trip() {
        for s in Status::ALL {
            let c = CommitState::of_run(s);
            assert_eq!(c.as_str().parse::<CommitState>(), Ok(c));
        }
        assert_eq!(CommitState::of_run(Status::Jammed), CommitState::Error);
        assert_eq!(CommitState::of_run(Status::Failed), CommitState::Failure);
    }

    #[test]
    fn descriptions_are_one_short_line() {
        assert_eq!(describe(Status::Queued, None, None), "queued");
        assert_eq!(
            describe(
                Status::Failed,
                Some("test exited 1"),
                Some(Duration::from_secs(12))
            ),
            "failed: test exited 1 after 12s"
        );
        assert_eq!(
            describe(Status::Success, None, Some(Duration::from_secs(65))),
            "succeeded after 1m5s"
        );
        let long = describe(Status::Failed, Some(&"x\n".repeat(400)), None);
        assert!(long.chars().count() <= MAX_DESCRIPTION && !long.contains('\n'));
        let long = describe(Status::Failed, Some(&"é".repeat(400)), None);
        assert_eq!(long.chars().count(), MAX_DESCRIPTION);
    }
}
