//! `cancel_superseded`: a newer run for the same pull request (or, for pushes, the same branch)
//! of the same task cancels that task's older open runs for it.
//!
//! The default is yes for pull requests (only the latest head matters) and no for pushes (every
//! commit of a branch may deserve its build); a task says otherwise with
//! `cancel_superseded: true|false`. Tags, hand triggers and schedules never supersede.

/// What a repository run builds, as far as superseding goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CodeScope {
    /// Pull request number N of the repository.
    PullRequest(i64),
    /// Pushes to this branch.
    Branch(String),
}

/// The run's repository and scope: two runs with the same key (and target) build successive
/// versions of the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodeKey {
    pub repo: String,
    pub scope: CodeScope,
}

impl CodeKey {
    /// The key of a run with these recorded facts (`event` as runs record it: `push`,
    /// `pull_request`…); `None` for runs nothing supersedes (tags, hand triggers).
    pub fn of(repo: &str, event: &str, pr: Option<i64>, branch: Option<&str>) -> Option<CodeKey> {
        let scope = match (event, pr, branch) {
            ("pull_request", Some(n), _) => CodeScope::PullRequest(n),
            ("push", None, Some(b)) => CodeScope::Branch(b.to_owned()),
            _ => return None,
        };
        Some(CodeKey {
            repo: repo.to_owned(),
            scope,
        })
    }

    /// Words for a reason: `pull request #4` or `branch main`.
    pub fn describe(&self) -> String {
        match &self.scope {
            CodeScope::PullRequest(n) => format!("pull request #{n}"),
            CodeScope::Branch(b) => format!("branch {b}"),
        }
    }
}

/// An open (queued, waiting or running) run as superseding sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCode {
    pub id: i64,
    pub target: String,
    pub key: Option<CodeKey>,
}

/// Whether a task with `cancel_superseded: setting` cancels older runs for `scope`.
pub fn cancels_superseded(setting: Option<bool>, scope: &CodeScope) -> bool {
    setting.unwrap_or(matches!(scope, CodeScope::PullRequest(_)))
}

/// The open runs that a new run of `target` building `key` supersedes (every open run is
/// older than a new one): the same target and key. Empty when the task does not cancel
/// superseded runs. Asked before the new run is admitted, so the runs it cancels hold no slot.
pub fn superseded(
    target: &str,
    key: &CodeKey,
    setting: Option<bool>,
    open: &[OpenCode],
) -> Vec<i64> {
    if !cancels_superseded(setting, &key.scope) {
        return Vec::new();
    }
    let mut ids: Vec<i64> = open
        .iter()
        .filter(|o| o.target == target && o.key.as_ref() == Some(key))
        .map(|o| o.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// The reason a superseded run is canceled with.
pub fn superseded_reason(by: i64) -> String {
    format!("superseded by run {by}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pr(n: i64) -> Option<CodeKey> {
        CodeKey::of("app", "pull_request", Some(n), None)
    }

    fn branch(b: &str) -> Option<CodeKey> {
        CodeKey::of("app", "push", None, Some(b))
    }

    fn open(id: i64, target: &str, key: Option<CodeKey>) -> OpenCode {
        OpenCode {
            id,
            target: target.into(),
            key,
        }
    }

    #[test]
    fn keys_of_recorded_runs() {
        assert_eq!(pr(3).unwrap().scope, CodeScope::PullRequest(3));
        assert_eq!(
            branch("main").unwrap().scope,
            CodeScope::Branch("main".into())
        );
        assert_eq!(CodeKey::of("app", "push", None, None), None, "a tag");
        assert_eq!(CodeKey::of("app", "manual", None, Some("main")), None);
        assert_eq!(CodeKey::of("app", "pull_request", None, None), None);
        assert_eq!(pr(4).unwrap().describe(), "pull request #4");
        assert_eq!(branch("dev").unwrap().describe(), "branch dev");
    }

    #[test]
    fn defaults_yes_for_pull_requests_no_for_pushes() {
        assert!(cancels_superseded(None, &CodeScope::PullRequest(1)));
        assert!(!cancels_superseded(None, &CodeScope::Branch("main".into())));
        assert!(cancels_superseded(
            Some(true),
            &CodeScope::Branch("main".into())
        ));
        assert!(!cancels_superseded(Some(false), &CodeScope::PullRequest(1)));
    }

    #[test]
    fn only_runs_of_the_same_target_and_code() {
        let runs = [
            open(1, "app/test", pr(7)),
            open(2, "app/test", pr(8)),
            open(3, "app/lint", pr(7)),
            open(4, "app/test", branch("main")),
            open(5, "app/test", pr(7)),
            open(6, "app/test", None),
        ];
        let key = pr(7).unwrap();
        assert_eq!(superseded("app/test", &key, None, &runs), vec![1, 5]);
        assert!(superseded("app/test", &key, Some(false), &runs).is_empty());
        let main = branch("main").unwrap();
        assert!(superseded("app/test", &main, None, &runs).is_empty());
        assert_eq!(superseded("app/test", &main, Some(true), &runs), vec![4]);
        let other = CodeKey::of("lib", "pull_request", Some(7), None).unwrap();
        assert!(superseded("app/test", &other, None, &runs).is_empty());
        assert_eq!(superseded_reason(8), "superseded by run 8");
    }

    proptest! {
        #[test]
        fn exactly_the_same_target_and_scope(
            runs in proptest::collection::vec((0usize..2, 0i64..3), 0..30),
            n in 0i64..3,
            setting in proptest::option::of(any::<bool>()),
        ) {
            let targets = ["app/a", "app/b"];
            let open: Vec<OpenCode> = runs
                .iter()
                .enumerate()
                .map(|(i, (t, k))| open(i as i64, targets[*t], pr(*k)))
                .collect();
            let key = pr(n).unwrap();
            let out = superseded("app/a", &key, setting, &open);
            let want: Vec<i64> = open
                .iter()
                .filter(|o| o.target == "app/a" && o.key == Some(key.clone()))
                .map(|o| o.id)
                .collect();
            if setting == Some(false) {
                prop_assert!(out.is_empty());
            } else {
                prop_assert_eq!(out, want);
            }
        }
    }
}
