//! A local run's test results: each job's JUnit reports (every `*.xml` of its `out/`, or its
//! task's `reports: {junit: [...]}` globs) and its own `.baton/results.json`, read with
//! `baton_results` exactly as the server reads them. The run's result tree (the shape of
//! docs/results.md) is stored as `results.json` in the run's tree; each job's counts and
//! failing tests go in `run.json`, for `baton show` and the stored `index.html`.

use baton_results::{Kind, Node};

use crate::engine::JobResult;
use crate::plan::Plan;
use crate::record::TestCounts;

/// The run tree's file in the stored run.
pub const RESULTS_FILE: &str = "results.json";

/// The most failing tests named per job in `run.json` (`results.json` has them all).
pub const MAX_FAILING: usize = 20;

/// The run's result tree (`None` when no job reported anything) and each job's counts.
pub fn collect(
    plan: &Plan,
    results: &[JobResult],
    run_id: &str,
) -> (Option<Node>, Vec<Option<TestCounts>>) {
    let mut nodes = Vec::new();
    let mut counts = Vec::new();
    for (i, (job, r)) in plan.jobs.iter().zip(results).enumerate() {
        let children = match &r.dir {
            Some(dir) => {
                baton_results::collect_job(&dir.join(baton_exec::layout::OUT_DIR), &job.junit)
            }
            None => Vec::new(),
        };
        let node = baton_results::job_node(&job.key, i as i64 + 1, r.status.as_str(), children);
        counts.push((!node.children.is_empty()).then(|| counts_of(&node)));
        nodes.push(node);
    }
    if counts.iter().all(Option::is_none) {
        return (None, counts);
    }
    (Some(baton_results::run_tree(run_id, nodes)), counts)
}

fn counts_of(job: &Node) -> TestCounts {
    let s = job.summary;
    let failing = job
        .leaves()
        .into_iter()
        .filter(|(_, n)| n.kind != Kind::Warning && n.status.is_some_and(|s| s.is_failing()))
        .take(MAX_FAILING)
        .map(|(path, n)| baton_results::test_id(&path, n))
        .collect();
    TestCounts {
        passed: s.passed,
        failed: s.failed,
        errors: s.errors,
        skipped: s.skipped,
        flaky: s.flaky,
        warnings: s.warnings,
        failing,
    }
}
