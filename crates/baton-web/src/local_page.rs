//! The `index.html` stored with a local run (`baton run`): the run page's look in one file,
//! its stylesheet inline and no script, so it opens from a checkout of the run's tree or a
//! browser's file view with no server and no network request.

use askama::Template;
use baton_local::record::RunRecord;

/// The most log bytes of one job shown on the page (its end); the raw log has all of it.
const PAGE_LOG_BYTES: usize = 512 * 1024;

struct JobView {
    name: String,
    status: String,
    took: String,
    reason: String,
    log: String,
    artifacts: Vec<String>,
    /// Its test results counted (empty: it reported none), and the failing tests.
    tests: String,
    failing: Vec<String>,
    lines: Vec<String>,
    cut: usize,
}

#[derive(Template)]
#[template(path = "local_run.html")]
struct LocalRunTpl<'a> {
    r: &'a RunRecord,
    css: String,
    targets: String,
    commit_short: String,
    started: String,
    took: String,
    jobs: Vec<JobView>,
}

/// The page of run `record`, with `logs[i]` the log of `record.jobs[i]`.
pub fn run_page(record: &RunRecord, logs: &[Vec<u8>]) -> String {
    let jobs = record
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let log = logs.get(i).map(Vec::as_slice).unwrap_or_default();
            let cut = log.len().saturating_sub(PAGE_LOG_BYTES);
            JobView {
                name: j.name.clone(),
                status: j.status.clone(),
                took: j.duration_ms.map(millis).unwrap_or_else(|| "-".into()),
                reason: j.reason.clone().unwrap_or_default(),
                log: j.log.clone(),
                artifacts: j.artifacts.clone(),
                tests: j.tests.as_ref().map(|t| t.describe()).unwrap_or_default(),
                failing: j
                    .tests
                    .as_ref()
                    .map(|t| t.failing.clone())
                    .unwrap_or_default(),
                lines: crate::ansi::render_lines(&log[cut..]),
                cut,
            }
        })
        .collect();
    let tpl = LocalRunTpl {
        r: record,
        css: inline_css(),
        targets: record.targets.join(", "),
        commit_short: record.commit.chars().take(12).collect(),
        started: record
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        took: millis(record.duration_ms),
        jobs,
    };
    tpl.render()
        .unwrap_or_else(|e| format!("<!doctype html><p>page error: {e}</p>"))
}

/// The UI's stylesheet, to put inline in a page that must load nothing.
pub(crate) fn inline_css() -> String {
    format!(
        "{}\n{}",
        include_str!("../static/app.css"),
        crate::ansi::palette_css()
    )
}

fn millis(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_local::record::{JobRecord, Machine};

    #[test]
    fn the_page_is_self_contained_and_escapes_what_it_shows() {
        let t = chrono::Utc::now();
        let rec = RunRecord {
            format: 1,
            id: "20261207T000000000Z-abcdef".into(),
            status: "failed".into(),
            targets: vec!["ci".into()],
            commit: "a".repeat(40),
            head: "a".repeat(40),
            tree: None,
            dirty: false,
            branch: Some("main<script>".into()),
            trigger: "push".into(),
            started_at: t,
            ended_at: t,
            duration_ms: 1500,
            machine: Machine {
                hostname: "laptop".into(),
                user: "ada".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            baton_version: "0.1.0".into(),
            jobs: vec![JobRecord {
                name: "ci/test".into(),
                target: "ci".into(),
                status: "failed".into(),
                reason: Some("failed: exit code 1".into()),
                exit_code: Some(1),
                started_at: Some(t),
                ended_at: Some(t),
                duration_ms: Some(1200),
                log: "jobs/01-ci_test/log".into(),
                artifacts: vec!["jobs/01-ci_test/out/report.txt".into()],
                allow_failure: false,
                cache: None,
                tests: None,
            }],
            notes: Vec::new(),
        };
        let page = run_page(&rec, &[b"\x1b[31mboom\x1b[0m <b>\n".to_vec()]);
        assert!(page.contains("boom") && !page.contains("<b>"), "{page}");
        assert!(page.contains("main&") && !page.contains("main<script>"));
        assert!(page.contains("<style>") && !page.contains("<link") && !page.contains("<script"));
        assert!(page.contains("href=\"jobs/01-ci_test/out/report.txt\""));
        assert!(!page.contains("\x1b"));
    }
}
