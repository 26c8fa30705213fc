//! A run's page: its facts, its jobs (in DAG order), one job's log (the end of it, paged back
//! with "load earlier", or the window around a line), its artifacts and, for pipelines, the DAG;
//! the jobs' timing (`gantt`); and the cancel, approve and rerun buttons (all jobs, the failed
//! ones, or with other arguments). Everything is drawn from the run's own state (the
//! definition it was queued with), so a changed config never redraws an old run.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use chrono::Utc;
use serde::Deserialize;

use baton_core::run::{Status, TargetKind, TriggerKind};
use baton_sched::{SchedError, TargetDef};
use baton_store::{JobRow, RunRow};

use super::code::CodeFacts;
use super::dag::{JobView, dag_svg, depths};
use super::format::{dur_ms, running_since, span, when};
use super::logview::{LogView, Window, read_log};
use super::page::{Nav, PageError, PageResult, not_found, render};
use super::request::{Fields, form_user, page_user};
use crate::AppState;
use crate::auth::Access;

struct RunPageView {
    id: i64,
    target: String,
    kind: &'static str,
    status: &'static str,
    reason: String,
    cancelable: bool,
    /// Held for approval (a pull request from a fork): the page offers Approve.
    approvable: bool,
    trigger: &'static str,
    queued: String,
    waited: String,
    /// Since when the run waits (ms since the epoch), while it does (0 otherwise).
    waiting_since: i64,
    ran: String,
    /// Since when the run runs (ms since the epoch), while it does (0 otherwise).
    running_since: i64,
    worker: String,
    exit_code: String,
    args: Vec<(String, String)>,
    tags: String,
    ancestors: Vec<i64>,
    descendants: Vec<i64>,
    jobs: Vec<JobView>,
    code: Option<CodeFacts>,
    /// Commit statuses told to the forge: (context, state, how far sending got).
    statuses: Vec<(String, &'static str, String)>,
    /// Jobs skipped by a cache hit: (job name, the job hit, its run).
    cache_hits: Vec<(String, i64, i64)>,
    /// Jobs carried over by a rerun of failed jobs: (job name, the job that ran, its run).
    carried: Vec<(String, i64, i64)>,
    /// An ended pipeline run with a job that did not succeed: the page offers "Rerun failed".
    rerun_failed: bool,
    /// One bar per job (pipelines).
    gantt: Vec<super::gantt::Bar>,
    /// The run's duration against the median of its target's last finished runs.
    vs_median: String,
    /// The target is in the config: its name links to its page.
    has_page: bool,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunTpl {
    nav: Nav,
    r: RunPageView,
    log: LogView,
    dag: String,
    artifacts: Vec<ArtifactView>,
    /// The text artifact `?preview=` names: (path, its first bytes as text).
    preview: Option<(String, String)>,
}

/// An artifact as the page lists it.
struct ArtifactView {
    path: String,
    size: String,
    kind: &'static str,
    /// Text (previewed in the page) or HTML (opened as a sandboxed page).
    viewable: bool,
    text: bool,
}

/// The most bytes of a text artifact previewed in the page.
const PREVIEW_BYTES: u64 = 64 * 1024;

#[derive(Deserialize)]
pub(super) struct RunQuery {
    job: Option<String>,
    before: Option<u64>,
    /// Show the window around this line (a `#LN` anchor the page did not hold).
    line: Option<u64>,
    /// A text artifact of the job to show in the page.
    preview: Option<String>,
}

pub(super) async fn visible_run(s: &AppState, a: &Access, id: i64) -> Result<RunRow, PageError> {
    let run = s.store.get_run(id).await?.ok_or_else(not_found)?;
    if !a.can_see(run.kind, &run.target) {
        return Err(not_found());
    }
    Ok(run)
}

/// What the run's own definition says about its jobs: each job's dependencies, and which jobs
/// may fail without failing the run.
#[derive(Default)]
struct Shape {
    deps: BTreeMap<String, Vec<String>>,
    allowed: Vec<String>,
}

fn shape(run: &RunRow) -> Shape {
    match serde_json::from_value::<TargetDef>(run.definition.clone()) {
        Ok(TargetDef::Pipeline(p)) => Shape {
            deps: p
                .tasks
                .values()
                .map(|t| (t.name.clone(), t.depends_on.clone()))
                .collect(),
            allowed: p
                .tasks
                .values()
                .filter(|t| t.allow_failure)
                .map(|t| t.name.clone())
                .collect(),
        },
        _ => Shape::default(),
    }
}

/// The job whose log the page shows when none is asked for: the one that failed the run, else
/// one that runs, else one that ran and was canceled, else the last.
fn default_job<'a>(run: &'a RunRow, shape: &Shape) -> Option<&'a JobRow> {
    let allowed = |j: &JobRow| shape.allowed.contains(&j.name);
    run.jobs
        .iter()
        .filter(|j| j.status.is_failure() && !allowed(j))
        .min_by_key(|j| (j.ended_seq.is_none(), j.ended_seq))
        .or_else(|| run.jobs.iter().find(|j| j.status == Status::Running))
        .or_else(|| {
            run.jobs
                .iter()
                .find(|j| j.status == Status::Canceled && j.started_at.is_some())
        })
        .or_else(|| run.jobs.iter().rev().find(|j| j.started_at.is_some()))
        .or_else(|| run.jobs.last())
}

fn pick_job<'a>(run: &'a RunRow, shape: &Shape, q: &RunQuery) -> Result<&'a JobRow, PageError> {
    match &q.job {
        Some(name) => run
            .jobs
            .iter()
            .find(|j| &j.name == name || j.id.to_string() == *name),
        None => default_job(run, shape),
    }
    .ok_or_else(not_found)
}

pub(super) async fn run_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    let Path(id) = id.map_err(|_| not_found())?;
    let Query(q) = q.map_err(|e| PageError::Page(StatusCode::BAD_REQUEST, e.body_text()))?;
    let mut run = visible_run(&s, &a, id).await?;
    let shape = shape(&run);
    // Jobs in DAG order (dependencies first), then by name.
    let order: BTreeMap<String, usize> = depths(&run, &shape.deps)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    run.jobs
        .sort_by_key(|j| (order.get(&j.name).copied().unwrap_or(0), j.name.clone()));
    let job = pick_job(&run, &shape, &q)?;
    let window = match (q.line, q.before) {
        (Some(n), _) => Window::Line(n),
        (None, Some(b)) => Window::Before(b),
        (None, None) => Window::End,
    };
    let log = read_log(&s, job, window).await;
    let shelf = crate::artifact_store::shelf_of(&s, job).await;
    let (artifacts, preview) = artifact_views(&shelf, q.preview.clone()).await;
    let dag = if run.kind == TargetKind::Pipeline {
        dag_svg(&run, &shape.deps, &shape.allowed)
    } else {
        String::new()
    };
    let mut r = run_view(&run, job, &shape);
    r.vs_median = vs_median(&s, &run).await?;
    r.has_page = match run.kind {
        TargetKind::Task => a.config.tasks.contains_key(&run.target),
        TargetKind::Pipeline => a.config.pipelines.contains_key(&run.target),
    };
    r.code = run.repo.as_ref().map(|c| CodeFacts::of(c, &a.config));
    r.statuses = status_views(&s.store.run_reports(run.id).await?);
    Ok(render(&RunTpl {
        nav,
        r,
        log,
        dag,
        artifacts,
        preview,
    }))
}

/// An ended run's duration against the median of its target's last finished runs before it
/// (empty while it runs, or when there are none).
async fn vs_median(s: &AppState, run: &RunRow) -> Result<String, PageError> {
    let Some(took) = span(run.started_at, run.ended_at) else {
        return Ok(String::new());
    };
    let filter = baton_store::RunFilter {
        target: Some(run.target.clone()),
        before: Some(run.id),
        ..Default::default()
    };
    let earlier = s
        .store
        .list_runs(&filter, 2 * super::stats::MEDIAN_OF)
        .await?;
    let earlier: Vec<RunRow> = earlier
        .into_iter()
        .filter(|r| r.kind == run.kind && r.started_at.is_some() && r.ended_at.is_some())
        .take(super::stats::MEDIAN_OF as usize)
        .collect();
    Ok(super::stats::median_ms(&earlier)
        .map(|m| super::stats::against_median(took, m, earlier.len()))
        .unwrap_or_default())
}

/// The workers the run's jobs ran on, each once, in the order first used.
fn workers(run: &RunRow) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for w in run.jobs.iter().filter_map(|j| j.worker.as_deref()) {
        if !seen.contains(&w) {
            seen.push(w);
        }
    }
    if seen.is_empty() {
        "–".into()
    } else {
        seen.join(", ")
    }
}

/// The job's artifacts as the page lists them, and the preview asked for (a text artifact).
async fn artifact_views(
    shelf: &crate::artifact_store::Shelf,
    preview: Option<String>,
) -> (Vec<ArtifactView>, Option<(String, String)>) {
    let list = shelf
        .list()
        .await
        .into_iter()
        .map(|(path, size)| {
            let kind = crate::artifacts::content_type(&path);
            let text = crate::artifacts::is_text(kind);
            ArtifactView {
                size: format!("{size} bytes"),
                viewable: text || kind.starts_with("text/html"),
                text,
                kind: kind.split(';').next().unwrap_or(kind),
                path,
            }
        })
        .collect();
    let shown = preview.filter(|p| crate::artifacts::is_text(crate::artifacts::content_type(p)));
    let text = match shown {
        Some(p) => shelf.head(&p, PREVIEW_BYTES).await.map(|head| (p, head)),
        None => None,
    };
    (list, text)
}

/// The run's facts as the page shows them; `job` is the job whose log is shown.
fn run_view(run: &RunRow, job: &JobRow, shape: &Shape) -> RunPageView {
    let now = Some(Utc::now());
    let open = !run.status.is_terminal();
    RunPageView {
        id: run.id,
        target: run.target.clone(),
        kind: run.kind.as_str(),
        status: run.status.as_str(),
        reason: run.reason.clone().unwrap_or_default(),
        cancelable: open,
        approvable: run.status == Status::Waiting,
        trigger: run.trigger.as_str(),
        queued: when(run.enqueued_at),
        waited: match span(
            Some(run.enqueued_at),
            run.started_at.or(open.then_some(Utc::now())),
        ) {
            Some(ms) if run.started_at.is_none() => format!("{} so far", dur_ms(ms)),
            Some(ms) => dur_ms(ms),
            None => "–".into(),
        },
        waiting_since: if open && run.started_at.is_none() {
            run.enqueued_at.timestamp_millis()
        } else {
            0
        },
        ran: match span(run.started_at, run.ended_at.or(now)) {
            Some(ms) if run.ended_at.is_none() => format!("{} so far", dur_ms(ms)),
            Some(ms) => dur_ms(ms),
            None => "–".into(),
        },
        running_since: running_since(run.started_at, run.ended_at),
        worker: workers(run),
        exit_code: job.exit_code.map_or("–".into(), |c| c.to_string()),
        args: run
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tags: run.tags.join(", "),
        ancestors: run.ancestors.clone(),
        descendants: run.descendants.clone(),
        jobs: run
            .jobs
            .iter()
            .map(|j| JobView::of(j, shape.allowed.contains(&j.name)))
            .collect(),
        code: None,
        statuses: Vec::new(),
        cache_hits: run
            .jobs
            .iter()
            .filter_map(|j| {
                let (job, run) = baton_core::decide::hit_of(j.reason.as_deref())?;
                Some((j.name.clone(), job, run))
            })
            .collect(),
        carried: run
            .jobs
            .iter()
            .filter_map(|j| {
                let (job, run) = baton_core::decide::carried_of(j.reason.as_deref())?;
                Some((j.name.clone(), job, run))
            })
            .collect(),
        rerun_failed: run.kind == TargetKind::Pipeline
            && !open
            && run.jobs.iter().any(|j| {
                j.status != Status::Success
                    && baton_core::decide::result_source(j.reason.as_deref()).is_none()
            }),
        gantt: if run.kind == TargetKind::Pipeline {
            super::gantt::bars(run, &run.jobs, Utc::now())
        } else {
            Vec::new()
        },
        vs_median: String::new(),
        has_page: false,
    }
}

/// Each commit status of the run: its context, state, and whether it was sent (when), is
/// being retried (after what error), or was given up.
fn status_views(reports: &[baton_store::ReportRow]) -> Vec<(String, &'static str, String)> {
    use baton_store::ReportOutcome as O;
    reports
        .iter()
        .map(|r| {
            let error = r.last_error.as_deref().unwrap_or("");
            let how = match r.outcome {
                O::Sent => format!("sent {}", r.sent_at.map(when).unwrap_or_default()),
                O::Pending if r.attempts == 0 => "to send".to_owned(),
                O::Pending => format!("retrying (try {} failed: {error})", r.attempts),
                O::Failed => format!("not sent: {error}"),
                O::Skipped => format!("not sent: {error}"),
            };
            (r.context.clone(), r.state.as_str(), how)
        })
        .collect()
}

pub(super) async fn cancel(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (_, a, _) = form_user(&s, &headers, &uri, &f).await?;
    visible_run(&s, &a, id).await?;
    match s.sched.cancel(id).await {
        Ok(_) | Err(SchedError::NotCancelable { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

/// The Approve button of a run held `waiting`: queues it (whoever may see the run's task may
/// trigger it, and so approve it).
pub(super) async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (_, a, _) = form_user(&s, &headers, &uri, &f).await?;
    visible_run(&s, &a, id).await?;
    match s.sched.approve(id).await {
        Ok(_) | Err(SchedError::NotWaiting { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

pub(super) async fn rerun(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (_, a, _) = form_user(&s, &headers, &uri, &f).await?;
    visible_run(&s, &a, id).await?;
    let opts = baton_sched::RerunOptions {
        failed_only: !super::field(&f, "failed").is_empty(),
        no_cache: !super::field(&f, "no_cache").is_empty(),
        args: None,
    };
    let run = s.sched.rerun_opts(id, TriggerKind::Rerun, opts).await?;
    Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
}

// ---------------------------------------------------------------------------------------------
