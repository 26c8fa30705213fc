//! Retention: which ended runs go. Per task (its `retention:`, else the server's): beyond the
//! newest `keep_last`, or ended more than `max_age` ago, except the newest `keep_failed` failed
//! runs, the newest run of each task and branch, and runs a cache hit points to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::RetentionDef;

/// An ended run, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainRun {
    pub id: i64,
    pub target: String,
    pub branch: Option<String>,
    /// When it ended, in ms since the epoch.
    pub ended_ms: i64,
    pub failed: bool,
    /// A cache hit points to it: its results and artifacts are another job's.
    pub pinned: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The ids of the runs to delete, oldest first. `policy` gives a target's retention (`None`:
/// keep everything of it).
pub fn doomed_runs(
    runs: &[RetainRun],
    policy: &dyn Fn(&str) -> Option<RetentionDef>,
    now_ms: i64,
) -> Vec<i64> {
    let mut by_target: BTreeMap<&str, Vec<&RetainRun>> = BTreeMap::new();
    for r in runs {
        by_target.entry(&r.target).or_default().push(r);
    }
    let mut out = Vec::new();
    for (target, mut list) in by_target {
        let Some(p) = policy(target) else { continue };
        list.sort_by_key(|r| std::cmp::Reverse(r.id));
        let mut newest_of_branch: BTreeSet<&Option<String>> = BTreeSet::new();
        let mut failed_kept = 0;
        for (i, r) in list.iter().enumerate() {
            let newest = newest_of_branch.insert(&r.branch);
            let keep_failed = r.failed && failed_kept < p.keep_failed.unwrap_or(0);
            if keep_failed {
                failed_kept += 1;
            }
            let too_many = p.keep_last.is_some_and(|k| i >= k as usize);
            let too_old = p
                .max_age
                .is_some_and(|a| r.ended_ms < now_ms.saturating_sub(ms(a)));
            if (too_many || too_old) && !newest && !keep_failed && !r.pinned {
                out.push(r.id);
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, branch: Option<&str>, failed: bool) -> RetainRun {
        RetainRun {
            id,
            target: "t".into(),
            branch: branch.map(str::to_owned),
            ended_ms: id * 1000,
            failed,
            pinned: false,
        }
    }

    fn keep(
        keep_last: Option<u32>,
        max_age: Option<Duration>,
        keep_failed: Option<u32>,
    ) -> RetentionDef {
        RetentionDef {
            keep_last,
            max_age,
            keep_failed,
        }
    }

    #[test]
    fn beyond_keep_last_go_but_the_newest_of_each_branch_and_pinned_runs_stay() {
        let mut runs: Vec<RetainRun> = (1..=5).map(|i| run(i, Some("main"), false)).collect();
        runs.push(run(6, Some("feature"), false));
        runs[0].pinned = true;
        runs.push(run(0, Some("old"), false));
        let p = keep(Some(2), None, None);
        // Newest first: 6 (feature), 5, 4, 3, 2, 1 (pinned), 0 (newest of `old`).
        assert_eq!(doomed_runs(&runs, &|_| Some(p), 10_000), vec![2, 3, 4]);
        assert!(doomed_runs(&runs, &|_| None, 10_000).is_empty());
    }

    #[test]
    fn too_old_go_but_the_newest_failed_stay() {
        let runs = vec![
            run(1, None, true),
            run(2, None, true),
            run(3, None, false),
            run(4, None, false),
        ];
        let p = keep(None, Some(Duration::from_secs(2)), Some(1));
        // Now 5 s: runs that ended before 3 s are too old; 2 is the newest failed one.
        assert_eq!(doomed_runs(&runs, &|_| Some(p), 5_000), vec![1]);
    }
}
