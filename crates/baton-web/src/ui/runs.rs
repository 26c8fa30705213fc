//! The runs list (`/runs`): filters, free-text search and paging by cursor.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use baton_core::run::{Status, TargetKind, TriggerKind};
use baton_store::RunFilter;

use super::code::CodeView;
use super::format::{TestCounts, took, when};
use super::page::{Nav, PageError, PageResult, render, urlencode};
use super::request::page_user;
use crate::AppState;

#[derive(Deserialize, Default)]
pub(super) struct RunsQuery {
    #[serde(default)]
    task: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    worker: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// Free-text search.
    #[serde(default)]
    q: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    branch: String,
    /// A commit sha or its prefix.
    #[serde(default)]
    commit: String,
    cursor: Option<i64>,
}

struct RunView {
    id: i64,
    target: String,
    kind: &'static str,
    status: &'static str,
    reason: String,
    trigger: &'static str,
    queued: String,
    took: String,
    code: Option<CodeView>,
    /// The target is in the config: its name links to its page.
    has_page: bool,
    /// Jobs carried over by a rerun of failed jobs: (job name, the job that ran, its run).
    carried: Vec<(String, i64, i64)>,
    /// The test counts of an ended run with results.
    tests: Option<TestCounts>,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsTpl {
    nav: Nav,
    f: RunsQuery,
    statuses: Vec<String>,
    triggers: Vec<String>,
    target_names: Vec<String>,
    repo_names: Vec<String>,
    runs: Vec<RunView>,
    next: String,
}

fn day(s: &str) -> Result<Option<DateTime<Utc>>, PageError> {
    if s.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| Some(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()))
        .map_err(|_| {
            PageError::Page(
                StatusCode::BAD_REQUEST,
                format!("bad date {s:?} (use YYYY-MM-DD)"),
            )
        })
}

/// The link to the next page of runs, with the same filters; empty on the last page.
fn next_page(q: &RunsQuery, runs: &[baton_store::RunRow], limit: u32) -> String {
    if runs.len() == limit as usize {
        let last = runs.last().map_or(0, |r| r.id);
        let mut parts = Vec::new();
        for (k, v) in [
            ("task", &q.task),
            ("status", &q.status),
            ("tag", &q.tag),
            ("trigger", &q.trigger),
            ("worker", &q.worker),
            ("since", &q.since),
            ("until", &q.until),
            ("q", &q.q),
            ("repo", &q.repo),
            ("branch", &q.branch),
            ("commit", &q.commit),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        parts.push(format!("cursor={last}"));
        format!("/runs?{}", parts.join("&"))
    } else {
        String::new()
    }
}

pub(super) async fn runs_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    let Query(q) = q.map_err(|e| PageError::Page(StatusCode::BAD_REQUEST, e.body_text()))?;
    let bad = |m: String| PageError::Page(StatusCode::BAD_REQUEST, m);
    let limit = 50;
    let filter = RunFilter {
        target: (!q.task.is_empty()).then(|| q.task.clone()),
        status: if q.status.is_empty() {
            None
        } else {
            Some(q.status.parse::<Status>().map_err(|e| bad(e.to_string()))?)
        },
        trigger: if q.trigger.is_empty() {
            None
        } else {
            Some(q.trigger.parse::<TriggerKind>().map_err(bad)?)
        },
        tag: (!q.tag.is_empty()).then(|| q.tag.clone()),
        before: q.cursor,
        visible: a.visible(),
        worker: (!q.worker.is_empty()).then(|| q.worker.clone()),
        since: day(&q.since)?,
        until: day(&q.until)?.map(|d| d + chrono::Duration::days(1)),
        search: (!q.q.is_empty()).then(|| q.q.clone()),
        repo: (!q.repo.is_empty()).then(|| q.repo.clone()),
        branch: (!q.branch.is_empty()).then(|| q.branch.clone()),
        commit: crate::actions::commit_prefix(&q.commit).map_err(bad)?,
    };
    let runs = s.store.list_runs(&filter, limit).await?;
    let next = next_page(&q, &runs, limit);
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let counts = s.store.run_result_counts(&ids).await?;
    let mut target_names: Vec<String> = a
        .config
        .tasks
        .keys()
        .filter(|n| a.can_see(TargetKind::Task, n))
        .chain(
            a.config
                .pipelines
                .keys()
                .filter(|n| a.can_see(TargetKind::Pipeline, n)),
        )
        .cloned()
        .collect();
    target_names.sort();
    let t = RunsTpl {
        nav,
        statuses: Status::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
        triggers: [
            "cli", "api", "schedule", "chained", "webhook", "rerun", "poll",
        ]
        .map(String::from)
        .to_vec(),
        target_names,
        repo_names: a.config.repos.keys().cloned().collect(),
        runs: runs
            .iter()
            .map(|r| RunView {
                id: r.id,
                target: r.target.clone(),
                kind: r.kind.as_str(),
                status: r.status.as_str(),
                reason: r.reason.clone().unwrap_or_default(),
                trigger: r.trigger.as_str(),
                queued: when(r.enqueued_at),
                took: took(r),
                code: r.repo.as_ref().map(CodeView::of),
                has_page: match r.kind {
                    TargetKind::Task => a.config.tasks.contains_key(&r.target),
                    TargetKind::Pipeline => a.config.pipelines.contains_key(&r.target),
                },
                carried: r
                    .jobs
                    .iter()
                    .filter_map(|j| {
                        let (job, run) = baton_core::decide::carried_of(j.reason.as_deref())?;
                        Some((j.name.clone(), job, run))
                    })
                    .collect(),
                tests: TestCounts::of(r, &counts),
            })
            .collect(),
        next,
        f: q,
    };
    Ok(render(&t))
}
