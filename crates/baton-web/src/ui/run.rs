//! A run's page: its facts, its jobs (in DAG order), one job's log (the end of it, paged back
//! with "load earlier"), its artifacts and, for pipelines, the DAG; and the cancel, approve and rerun
//! buttons.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use chrono::Utc;
use serde::Deserialize;

use baton_core::run::{Status, TargetKind, TriggerKind};
use baton_sched::SchedError;
use baton_store::{JobRow, RunRow};

use super::code::CodeFacts;
use super::dag::{dag_svg, depths};
use super::format::{dur_ms, job_took, took, when};
use super::page::{Nav, PageError, PageResult, not_found, render};
use super::request::{Fields, form_user, page_user};
use crate::AppState;
use crate::ansi::render_lines;
use crate::auth::Access;

/// How much of a log's end a run page shows; "load earlier" pages back by this much.
const LOG_WINDOW: u64 = 256 * 1024;
/// Line numbers are counted only below this prefix size; past it, lines are labelled by offset.
const COUNT_LINES_UP_TO: u64 = 64 * 1024 * 1024;

struct JobView {
    name: String,
    status: &'static str,
    took: String,
}

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
    ran: String,
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
}

struct LineView {
    anchor: String,
    label: String,
    html: String,
}

struct LogView {
    job: String,
    job_id: i64,
    start: u64,
    end: u64,
    size: u64,
    shown: u64,
    live: bool,
    /// The number of the last line shown (0 when lines are labelled by offset).
    last_line: u64,
    lines: Vec<LineView>,
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

/// Counts the newlines in the first `upto` bytes of `path`, reading in bounded chunks.
fn count_newlines(path: &FsPath, upto: u64) -> std::io::Result<u64> {
    let mut n = 0;
    let mut pos = 0;
    while pos < upto {
        let chunk = baton_exec::read_log_range(path, pos, (upto - pos).min(1 << 20))?;
        if chunk.is_empty() {
            break;
        }
        n += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        pos += chunk.len() as u64;
    }
    Ok(n)
}

async fn read_log(s: &AppState, job: &JobRow, before: Option<u64>) -> LogView {
    let path = s.folders.log_path(job.id, job.attempt);
    let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
    let end = before.map_or(size, |b| b.min(size));
    let mut start = end.saturating_sub(LOG_WINDOW);
    let p = path.clone();
    let (bytes, first_line) = tokio::task::spawn_blocking(move || {
        let mut bytes = baton_exec::read_log_range(&p, start, end - start).unwrap_or_default();
        if start > 0 {
            // Start at a whole line.
            if let Some(i) = bytes.iter().position(|&b| b == b'\n') {
                bytes.drain(..=i);
                start += i as u64 + 1;
            }
        }
        let first = if start == 0 {
            Some(0)
        } else if start <= COUNT_LINES_UP_TO {
            count_newlines(&p, start).ok()
        } else {
            None
        };
        (bytes, first)
    })
    .await
    .unwrap_or_default();
    let rendered = render_lines(&bytes);
    let last_line = first_line.map_or(0, |f| f + rendered.len() as u64);
    let lines = rendered
        .into_iter()
        .enumerate()
        .map(|(i, html)| match first_line {
            Some(f) => {
                let n = f + i as u64 + 1;
                LineView {
                    anchor: format!("L{n}"),
                    label: n.to_string(),
                    html,
                }
            }
            None => LineView {
                anchor: format!("B{start}-{i}"),
                label: format!("+{i}"),
                html,
            },
        })
        .collect();
    LogView {
        job: job.name.clone(),
        job_id: job.id,
        start,
        end,
        size,
        shown: end - start,
        live: !job.status.is_terminal() && before.is_none(),
        last_line,
        lines,
    }
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
    let deps: BTreeMap<String, Vec<String>> = a
        .config
        .pipelines
        .get(&run.target)
        .filter(|_| run.kind == TargetKind::Pipeline)
        .map(|p| {
            p.tasks
                .values()
                .map(|t| (t.name.clone(), t.depends_on.clone()))
                .collect()
        })
        .unwrap_or_default();
    // Jobs in DAG order (dependencies first), then by name.
    let order: BTreeMap<String, usize> = depths(&run, &deps)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    run.jobs
        .sort_by_key(|j| (order.get(&j.name).copied().unwrap_or(0), j.name.clone()));
    let job = match &q.job {
        Some(name) => run
            .jobs
            .iter()
            .find(|j| &j.name == name || j.id.to_string() == *name)
            .ok_or_else(not_found)?,
        None => run
            .jobs
            .iter()
            .find(|j| matches!(j.status, Status::Failed | Status::Broken | Status::Jammed))
            .or_else(|| run.jobs.iter().find(|j| j.status == Status::Running))
            .or_else(|| run.jobs.last())
            .ok_or_else(not_found)?,
    };
    let log = read_log(&s, job, q.before).await;
    let out = crate::results::out_dir(&s, job).await;
    let (artifacts, preview) = artifact_views(out, q.preview.clone()).await;
    let dag = if run.kind == TargetKind::Pipeline {
        dag_svg(&run, &deps)
    } else {
        String::new()
    };
    let mut r = run_view(&run, job);
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

/// The job's artifacts as the page lists them, and the preview asked for (a text artifact).
async fn artifact_views(
    out: std::path::PathBuf,
    preview: Option<String>,
) -> (Vec<ArtifactView>, Option<(String, String)>) {
    tokio::task::spawn_blocking(move || {
        let list = crate::artifacts::list(&out)
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
        let shown =
            preview.filter(|p| crate::artifacts::is_text(crate::artifacts::content_type(p)));
        let text = shown.and_then(|p| {
            let head = crate::artifacts::head(&out, &p, PREVIEW_BYTES)?;
            Some((p, head))
        });
        (list, text)
    })
    .await
    .unwrap_or_default()
}

/// The run's facts as the page shows them; `job` is the job whose log is shown.
fn run_view(run: &RunRow, job: &JobRow) -> RunPageView {
    let mut workers: Vec<&str> = run
        .jobs
        .iter()
        .filter_map(|j| j.worker.as_deref())
        .collect();
    workers.dedup();
    RunPageView {
        id: run.id,
        target: run.target.clone(),
        kind: run.kind.as_str(),
        status: run.status.as_str(),
        reason: run.reason.clone().unwrap_or_default(),
        cancelable: !run.status.is_terminal(),
        approvable: run.status == baton_core::run::Status::Waiting,
        trigger: run.trigger.as_str(),
        queued: when(run.enqueued_at),
        waited: match run.started_at {
            Some(st) => dur_ms((st - run.enqueued_at).num_milliseconds()),
            None if !run.status.is_terminal() => format!(
                "{} so far",
                dur_ms((Utc::now() - run.enqueued_at).num_milliseconds())
            ),
            None => "–".into(),
        },
        ran: took(run),
        worker: if workers.is_empty() {
            "–".into()
        } else {
            workers.join(", ")
        },
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
            .map(|j| JobView {
                name: j.name.clone(),
                status: j.status.as_str(),
                took: job_took(j),
            })
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
    let no_cache = !super::field(&f, "no_cache").is_empty();
    let run = s.sched.rerun_with(id, TriggerKind::Rerun, no_cache).await?;
    Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
}

// ---------------------------------------------------------------------------------------------
