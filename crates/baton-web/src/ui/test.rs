//! A test's own page (`/tests/{task}/{test id}`, both percent-encoded; the task is a task or
//! `PIPELINE/TASK`, the id its suites' names, class and name as the Tests tab makes it): its
//! results across the task's runs, newest first (status, duration, the code it ran on, a link
//! to the run's Tests tab), and the flaky verdict of `baton_results::history` on its last
//! results, shown whatever it does now. Read from the per-test rows the store indexes by
//! (task, test id): no run's result tree is read. A test of runs the caller may not see
//! answers 404 like a missing one.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use chrono::DateTime;

use baton_core::run::TargetKind;
use baton_results::history::is_flaky;
use baton_results::{Past, Status};

use super::format::{dur_ms, when};
use super::page::{Nav, PageResult, not_found, render};
use super::request::page_user;
use super::tests::HISTORY;
use crate::AppState;

/// How many of its results the page lists.
const LISTED: u32 = 200;

struct Line {
    run_id: i64,
    status: String,
    took: String,
    /// The commit's short and full sha, or for a run outside a repository the run it repeats.
    code_short: String,
    code_full: String,
    queued: String,
}

#[derive(Template)]
#[template(path = "test.html")]
struct TestTpl {
    nav: Nav,
    task: String,
    test_id: String,
    /// Its newest result, and whether it flipped on the same code or passed on a rerun.
    now: String,
    flaky: bool,
    window: usize,
    lines: Vec<Line>,
}

fn code_parts(code: Option<&str>) -> (String, String) {
    match code {
        Some(c) => match c.strip_prefix("commit:") {
            Some(sha) => (sha.chars().take(10).collect(), sha.to_owned()),
            None => match c.strip_prefix("run:") {
                Some(run) => (format!("run #{run}"), String::new()),
                None => (c.to_owned(), String::new()),
            },
        },
        None => (String::new(), String::new()),
    }
}

pub(super) async fn test_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    let Path((task, test_id)) = path.map_err(|_| not_found())?;
    let entries: Vec<baton_store::TestRunEntry> = s
        .store
        .test_runs(&task, &test_id, LISTED)
        .await?
        .into_iter()
        .filter(|e| {
            e.kind
                .parse::<TargetKind>()
                .is_ok_and(|k| a.can_see(k, &e.target))
        })
        .collect();
    if entries.is_empty() {
        return Err(not_found());
    }
    let recent: Vec<Past> = entries
        .iter()
        .take(HISTORY as usize)
        .filter_map(|e| {
            Some(Past {
                code: e.code.clone(),
                status: Status::parse(&e.status)?,
            })
        })
        .collect();
    let lines = entries
        .iter()
        .map(|e| {
            let (code_short, code_full) = code_parts(e.code.as_deref());
            Line {
                run_id: e.run_id,
                status: e.status.clone(),
                took: e.duration_ms.map(dur_ms).unwrap_or_default(),
                code_short,
                code_full,
                queued: DateTime::from_timestamp_millis(e.enqueued_ms)
                    .map(when)
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(render(&TestTpl {
        nav,
        now: entries[0].status.clone(),
        flaky: is_flaky(&recent),
        window: recent.len(),
        task,
        test_id,
        lines,
    }))
}

#[cfg(test)]
mod tests {
    use super::code_parts;

    #[test]
    fn the_code_shows_as_a_short_commit_or_the_run_it_repeats() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            code_parts(Some(&format!("commit:{sha}"))),
            ("0123456789".to_owned(), sha.to_owned())
        );
        assert_eq!(
            code_parts(Some("run:12")),
            ("run #12".to_owned(), String::new())
        );
        assert_eq!(code_parts(None), (String::new(), String::new()));
    }
}
