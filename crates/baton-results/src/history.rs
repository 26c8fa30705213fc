//! A test's history across its task's runs: when it counts as flaky.

use crate::Status;

/// One past result of a test: the code it ran on and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Past {
    /// What identifies the code a run built: its commit, or for a run without a repository,
    /// the run that a rerun repeats (see [`code_of_run`]). `None`: unknown, never compared.
    pub code: Option<String>,
    pub status: Status,
}

/// The code key of a run without a repository: its own id, or for a rerun the id of the run
/// it repeats (the first of the chain), so a run and its reruns compare as the same code.
pub fn code_of_run(root_run: i64) -> String {
    format!("run:{root_run}")
}

/// The code key of a repository's run: its commit.
pub fn code_of_commit(commit: &str) -> String {
    format!("commit:{commit}")
}

fn passing(s: Status) -> bool {
    matches!(s, Status::Passed | Status::Flaky)
}

/// A test is flaky when the runner itself saw it pass after a failed try (a `flaky` result),
/// or when it both passed and failed on the same code: flipped on the same commit, or passed
/// on a rerun of a run where it failed.
pub fn is_flaky(history: &[Past]) -> bool {
    if history.iter().any(|p| p.status == Status::Flaky) {
        return true;
    }
    history.iter().enumerate().any(|(i, a)| {
        a.code.is_some()
            && a.status != Status::Skipped
            && history[i + 1..].iter().any(|b| {
                b.code == a.code
                    && b.status != Status::Skipped
                    && passing(a.status) != passing(b.status)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(code: Option<&str>, status: Status) -> Past {
        Past {
            code: code.map(str::to_owned),
            status,
        }
    }

    #[test]
    fn a_flip_on_the_same_code_is_flaky() {
        let h = [
            p(Some("commit:a"), Status::Passed),
            p(Some("commit:b"), Status::Failed),
            p(Some("commit:a"), Status::Failed),
        ];
        assert!(is_flaky(&h));
        // Errors count as failing too.
        assert!(is_flaky(&[
            p(Some("run:1"), Status::Error),
            p(Some("run:1"), Status::Passed)
        ]));
    }

    #[test]
    fn a_fix_on_a_new_commit_is_not_flaky() {
        let h = [
            p(Some("commit:a"), Status::Failed),
            p(Some("commit:a"), Status::Failed),
            p(Some("commit:b"), Status::Passed),
        ];
        assert!(!is_flaky(&h));
    }

    #[test]
    fn skips_and_unknown_code_never_flip() {
        assert!(!is_flaky(&[
            p(Some("commit:a"), Status::Skipped),
            p(Some("commit:a"), Status::Failed)
        ]));
        assert!(!is_flaky(&[
            p(None, Status::Passed),
            p(None, Status::Failed)
        ]));
        assert!(!is_flaky(&[]));
    }

    #[test]
    fn a_rerun_inside_the_report_is_flaky() {
        assert!(is_flaky(&[p(None, Status::Flaky)]));
    }
}
