//! A run's Tests tab: its counts, the failing tests first with their message and output, the
//! tree to drill down (job → suite → test, open where something failed) and a search by name
//! (a GET form, so it works without JavaScript).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::Deserialize;

use baton_results::{Kind, Node};

use super::format::dur_ms;
use super::page::{Nav, PageError, PageResult, not_found, render};
use super::request::page_user;
use super::run::visible_run;
use crate::AppState;

/// The most failing tests listed at the top (the tree below has them all).
const MAX_FAILURES: usize = 200;
/// How many of a failing test's last results its history strip shows (and its flaky verdict
/// looks at, here and on the test's own page).
pub(super) const HISTORY: u32 = 30;

#[derive(Deserialize)]
pub(super) struct TestsQuery {
    q: Option<String>,
    status: Option<String>,
}

struct Counts {
    passed: u64,
    failed: u64,
    errors: u64,
    skipped: u64,
    flaky: u64,
    warnings: u64,
    duration: String,
}

impl Counts {
    fn of(n: &Node) -> Counts {
        let s = n.summary;
        Counts {
            passed: s.passed,
            failed: s.failed,
            errors: s.errors,
            skipped: s.skipped,
            flaky: s.flaky,
            warnings: s.warnings,
            duration: dur_ms((s.duration * 1000.0).round() as i64),
        }
    }
}

struct Failure {
    path: String,
    status: &'static str,
    message: String,
    output: String,
    place: String,
    /// (run, status, is this run) of the test's last results, oldest first.
    history: Vec<(i64, String, bool)>,
    /// It flipped on the same code, or the runner saw it pass on a rerun.
    flaky: bool,
    /// Its own page (its history across the task's runs); empty in `report.html`.
    link: String,
}

/// One line of the tree: opens a container, closes one, or is a leaf.
struct Row {
    open: bool,
    close: bool,
    expand: bool,
    kind: &'static str,
    name: String,
    status: &'static str,
    counts: String,
    took: String,
    message: String,
    output: String,
    /// A test case's own page; empty for other rows and in `report.html`.
    link: String,
}

#[derive(Template)]
#[template(path = "tests.html")]
struct TestsTpl {
    nav: Nav,
    d: TestsData,
}

/// The same tree as one self-contained file: its CSS inline, no scripts, nothing fetched.
#[derive(Template)]
#[template(path = "report.html")]
struct ReportTpl {
    css: &'static str,
    d: TestsData,
}

struct TestsData {
    standalone: bool,
    id: i64,
    target: String,
    q: String,
    failed_only: bool,
    c: Counts,
    failures: Vec<Failure>,
    more_failures: usize,
    rows: Vec<Row>,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Run => "run",
        Kind::Job => "job",
        Kind::Suite => "suite",
        Kind::Case => "case",
        Kind::Step => "step",
        Kind::Warning => "warning",
    }
}

fn status_name(n: &Node) -> &'static str {
    match n.kind {
        Kind::Warning => "warning",
        _ => n.status.map_or("none", |s| s.as_str()),
    }
}

fn took(n: &Node) -> String {
    n.duration
        .map(|d| dur_ms((d * 1000.0).round() as i64))
        .unwrap_or_default()
}

/// What a path segment keeps as it is: a `/` in a task (`PIPELINE/TASK`) is encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The page of test `test_id` of `task` (a task, or `PIPELINE/TASK`), each one path segment.
pub(super) fn test_link(task: &str, test_id: &str) -> String {
    let seg = |t: &str| percent_encoding::utf8_percent_encode(t, SEGMENT).to_string();
    format!("/tests/{}/{}", seg(task), seg(test_id))
}

/// The rows of `n` and everything under it. `task` is the job's history key (`None`: no links,
/// as in `report.html`); `path` the names from the job (excluded) down to `n`'s parent.
fn rows<'a>(
    n: &'a Node,
    expand_all: bool,
    task: Option<&str>,
    path: &mut Vec<&'a str>,
    out: &mut Vec<Row>,
) {
    let leaf = n.children.is_empty() && n.kind != Kind::Job;
    if n.kind != Kind::Job {
        path.push(&n.name);
    }
    let link = match task {
        Some(task) if leaf && n.kind == Kind::Case => {
            test_link(task, &baton_results::test_id(path, n))
        }
        _ => String::new(),
    };
    let s = n.summary;
    let counts = format!(
        "{} passed · {} failed · {} errors · {} skipped",
        s.passed, s.failed, s.errors, s.skipped
    );
    out.push(Row {
        open: !leaf,
        close: false,
        expand: expand_all || n.kind == Kind::Job || s.failed + s.errors + s.warnings > 0,
        kind: kind_name(n.kind),
        name: n.name.clone(),
        status: status_name(n),
        counts: if leaf { String::new() } else { counts },
        took: took(n),
        message: n.message.clone().unwrap_or_default(),
        output: n.output.clone().unwrap_or_default(),
        link,
    });
    if !leaf {
        for c in &n.children {
            rows(c, expand_all, task, path, out);
        }
        out.push(Row::close());
    }
    if n.kind != Kind::Job {
        path.pop();
    }
}

impl Row {
    fn close() -> Row {
        Row {
            open: false,
            close: true,
            expand: false,
            kind: "",
            name: String::new(),
            status: "",
            counts: String::new(),
            took: String::new(),
            message: String::new(),
            output: String::new(),
            link: String::new(),
        }
    }
}

/// The failing tests under `tree` (a run's node), each with what identifies it across runs.
fn failures(tree: &Node) -> Vec<(Option<i64>, String, Failure)> {
    let mut out = Vec::new();
    for job in &tree.children {
        for (path, n) in job.leaves() {
            if !n.status.is_some_and(|s| s.is_failing()) {
                continue;
            }
            let failure = Failure {
                path: format!("{} › {}", job.name, path.join(" › ")),
                status: status_name(n),
                message: n.message.clone().unwrap_or_default(),
                output: n.output.clone().unwrap_or_default(),
                place: match (&n.file, n.line) {
                    (Some(f), Some(l)) => format!("{f}:{l}"),
                    (Some(f), None) => f.clone(),
                    _ => String::new(),
                },
                history: Vec::new(),
                flaky: false,
                link: String::new(),
            };
            out.push((job.job_id, baton_results::test_id(&path, n), failure));
        }
    }
    out
}

fn past(h: &[baton_store::TestHistoryEntry]) -> Vec<baton_results::Past> {
    h.iter()
        .filter_map(|e| {
            Some(baton_results::Past {
                code: e.code.clone(),
                status: baton_results::Status::parse(&e.status)?,
            })
        })
        .collect()
}

/// The last [`HISTORY`] results of each failing test across its task's runs, oldest first.
async fn add_history(
    s: &AppState,
    run: &baton_store::RunRow,
    found: Vec<(Option<i64>, String, Failure)>,
) -> Vec<Failure> {
    let mut out = Vec::with_capacity(found.len());
    for (job_id, test_id, mut f) in found {
        if let Some(job) = run.jobs.iter().find(|j| Some(j.id) == job_id) {
            let task = crate::results::history_key(run, job);
            f.link = test_link(&task, &test_id);
            if let Ok(h) = s.store.test_history(&task, &test_id, HISTORY).await {
                f.flaky = baton_results::is_flaky(&past(&h));
                f.history = h
                    .into_iter()
                    .rev()
                    .map(|e| (e.run_id, e.status, e.run_id == run.id))
                    .collect();
            }
        }
        out.push(f);
    }
    out
}

/// What the Tests tab and `report.html` show.
async fn tests_data(
    s: &AppState,
    run: &baton_store::RunRow,
    q: TestsQuery,
    standalone: bool,
) -> Result<TestsData, PageError> {
    let tree = crate::results::run_tree(s, run).await?;
    let failed_only = q.status.as_deref() == Some("failed");
    let query = q.q.unwrap_or_default();
    let counts = Counts::of(&tree);
    let shown = crate::results::filtered(tree, failed_only, Some(&query));
    let mut failures = failures(&shown);
    let more_failures = failures.len().saturating_sub(MAX_FAILURES);
    failures.truncate(MAX_FAILURES);
    let mut failures = add_history(s, run, failures).await;
    if standalone {
        // `report.html` is read away from the server: no links into it.
        failures.iter_mut().for_each(|f| f.link.clear());
    }
    let mut list = Vec::new();
    for job in &shown.children {
        let task = run
            .jobs
            .iter()
            .find(|j| Some(j.id) == job.job_id)
            .filter(|_| !standalone)
            .map(|j| crate::results::history_key(run, j));
        let expand = standalone || !query.trim().is_empty();
        rows(job, expand, task.as_deref(), &mut Vec::new(), &mut list);
    }
    Ok(TestsData {
        standalone,
        id: run.id,
        target: run.target.clone(),
        q: query,
        failed_only,
        c: counts,
        failures,
        more_failures,
        rows: list,
    })
}

pub(super) async fn tests_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<TestsQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    let Path(id) = id.map_err(|_| not_found())?;
    let Query(q) = q.map_err(|e| PageError::Page(StatusCode::BAD_REQUEST, e.body_text()))?;
    let run = visible_run(&s, &a, id).await?;
    let d = tests_data(&s, &run, q, false).await?;
    Ok(render(&TestsTpl { nav, d }))
}

/// The run's `report.html` as it is now.
async fn render_report(s: &AppState, run: &baton_store::RunRow) -> Result<String, PageError> {
    let q = TestsQuery {
        q: None,
        status: None,
    };
    let d = tests_data(s, run, q, true).await?;
    ReportTpl {
        css: include_str!("../../static/app.css"),
        d,
    }
    .render()
    .map_err(|e| {
        PageError::Page(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template error: {e}"),
        )
    })
}

/// Stores an ended run's `report.html` once (beside its jobs in the data dir), so it is kept
/// as it was when the run ended; written to a temporary file and renamed into place.
pub(crate) async fn store_report(s: &AppState, run: &baton_store::RunRow) {
    let path = s.folders.report_path(run.id);
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return;
    }
    let html = match render_report(s, run).await {
        Ok(html) => html,
        Err(_) => {
            tracing::warn!(run = run.id, "cannot render the run's report.html");
            return;
        }
    };
    // Written only while the run is still there (under the prune lock): a prune that deleted
    // it meanwhile leaves no folder behind.
    let Some(_guard) = crate::pending::guard_run(s, run.id).await else {
        return;
    };
    let tmp = path.with_extension("html.tmp");
    let write = async {
        tokio::fs::create_dir_all(s.folders.run_dir(run.id)).await?;
        tokio::fs::write(&tmp, html).await?;
        tokio::fs::rename(&tmp, &path).await
    };
    if let Err(e) = write.await {
        tracing::warn!(
            run = run.id,
            "cannot store the run's report.html at {}: {e}",
            path.display()
        );
    }
}

/// `report.html`: the run's whole result tree as one self-contained page, downloaded: the one
/// stored when the run ended, or (still running, or ended before reports were stored) as it
/// is now.
pub(super) async fn report(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> PageResult {
    use axum::http::{HeaderValue, header};
    use axum::response::{Html, IntoResponse};
    let (_, a, _) = page_user(&s, &headers, &uri).await?;
    let Path(id) = id.map_err(|_| not_found())?;
    let run = visible_run(&s, &a, id).await?;
    let html = match tokio::fs::read_to_string(s.folders.report_path(run.id)).await {
        Ok(stored) => stored,
        Err(_) => render_report(&s, &run).await?,
    };
    let mut resp = Html(html).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"baton-run-{}-report.html\"",
        run.id
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Opened from Baton's origin anyway, it is sandboxed like an artifact.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::headers::ARTIFACT_CSP),
    );
    Ok(resp)
}
