//! The web UI: server-rendered HTML pages (askama templates, compiled and auto-escaped) with a
//! little embedded CSS and JavaScript. Every page works without JavaScript; with it, a running
//! job's log follows live over the API's SSE endpoint.
//!
//! Access rules are the API's (`crate::auth::Access`): a hidden run or target answers 404 like a
//! missing one. Every form carries the session's CSRF secret; the login form (`crate::login`)
//! carries a token the server signed, since there is no session yet.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use baton_core::run::{Status, TargetKind, TriggerKind};
use baton_sched::{SchedError, TriggerRequest};
use baton_store::{JobRow, RunFilter, RunRow};

use crate::ansi::render_lines;
use crate::auth::{self, Access, CurrentUser, same_secret};
use crate::range::Ranged;
use crate::{ApiError, AppState};

/// How much of a log's end a run page shows; "load earlier" pages back by this much.
const LOG_WINDOW: u64 = 256 * 1024;
/// Line numbers are counted only below this prefix size; past it, lines are labelled by offset.
const COUNT_LINES_UP_TO: u64 = 64 * 1024 * 1024;
pub(crate) const SESSION_DAYS: i64 = 7;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/rerun", post(rerun))
        .route("/runs/{id}/artifacts/{job}/{*path}", get(artifact))
        .route("/trigger/{kind}/{name}", get(trigger_page).post(trigger))
        .route("/me", get(me_page))
        .route("/me/tokens", post(create_token))
        .route("/me/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/reload", post(reload))
        .route("/admin/tasks/{name}/enabled", post(set_enabled))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
}

/// `app.css` and the terminal palette's classes (entries 16–255, see `ansi`).
async fn css() -> impl IntoResponse {
    static CSS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{}\n{}",
            include_str!("../static/app.css"),
            crate::ansi::palette_css()
        )
    });
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        CSS.as_str(),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
}

/// What every page's header needs.
#[derive(Default, Clone)]
pub(crate) struct Nav {
    pub user: String,
    pub admin: bool,
    pub csrf: String,
    pub flash: String,
    /// Show the plain navigation links without a user (error pages).
    pub links: bool,
}

/// A page failure: rendered as an HTML page (or a redirect to the login page).
pub(crate) enum PageError {
    Login(String),
    Page(StatusCode, String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login(next) => {
                Redirect::to(&format!("/login?next={}", urlencode(&next))).into_response()
            }
            PageError::Page(code, message) => error_page(code, &message),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Page(e.status, e.message)
    }
}

impl From<SchedError> for PageError {
    fn from(e: SchedError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<baton_store::StoreError> for PageError {
    fn from(e: baton_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

fn not_found() -> PageError {
    PageError::Page(
        StatusCode::NOT_FOUND,
        "There is nothing here, or you may not see it.".into(),
    )
}

/// The HTML 404 page for paths that are not routes.
pub(crate) fn not_found_page() -> Response {
    not_found().into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTpl {
    nav: Nav,
    code: u16,
    title: String,
    message: String,
}

pub(crate) fn error_page(code: StatusCode, message: &str) -> Response {
    let t = ErrorTpl {
        nav: Nav {
            links: true,
            ..Nav::default()
        },
        code: code.as_u16(),
        title: code.canonical_reason().unwrap_or("error").to_owned(),
        message: message.to_owned(),
    };
    (code, render(&t)).into_response()
}

pub(crate) fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template error: {e}"),
        )
            .into_response(),
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The signed-in caller of a page, or a redirect to the login page.
async fn page_user(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(CurrentUser, Access, Nav), PageError> {
    let next = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let user = match auth::resolve(s, headers).await {
        Ok(Some(u)) => u,
        Ok(None) | Err(_) => return Err(PageError::Login(next)),
    };
    let access = Access::of(s, &user).await?;
    let nav = Nav {
        user: user.principal.name().to_owned(),
        admin: access.is_admin(),
        csrf: user.csrf.clone().unwrap_or_default(),
        flash: String::new(),
        links: true,
    };
    Ok((user, access, nav))
}

/// Form fields as pairs (some forms have dynamic field names).
pub(crate) type Fields = Vec<(String, String)>;

pub(crate) fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A form write must carry the session's CSRF secret (bearer callers have none to carry).
pub(crate) fn check_csrf(user: &CurrentUser, f: &Fields) -> Result<(), PageError> {
    match &user.csrf {
        Some(secret) if !same_secret(field(f, "csrf"), secret) => Err(PageError::Page(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong. Reload the page and try again.".into(),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let v = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where to go after logging in: only a path on this site. Browsers drop tabs and newlines
/// from URLs (`/\t/evil.example` becomes `//evil.example`), so only visible ASCII passes.
pub(crate) fn safe_next(next: &str) -> &str {
    if next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic())
    {
        next
    } else {
        "/"
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn dur_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

fn span(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<i64> {
    Some((b? - a?).num_milliseconds())
}

fn took(r: &RunRow) -> String {
    match (r.started_at, r.ended_at) {
        (Some(s), Some(e)) => dur_ms((e - s).num_milliseconds()),
        (Some(s), None) => format!("{} so far", dur_ms((Utc::now() - s).num_milliseconds())),
        _ => "–".into(),
    }
}

fn job_took(j: &JobRow) -> String {
    match (j.started_at, j.ended_at) {
        (Some(s), Some(e)) => dur_ms((e - s).num_milliseconds()),
        (Some(_), None) => "running".into(),
        _ => j.status.as_str().into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboard

struct StripCell {
    id: i64,
    status: &'static str,
}

struct TargetView {
    name: String,
    kind: &'static str,
    enabled: bool,
    description: String,
    strip: Vec<StripCell>,
    success_rate: String,
    median: String,
}

struct WorkerView {
    name: String,
    queues: String,
    state: &'static str,
    reason: String,
    run_id: i64,
}

struct QueueView {
    run_id: i64,
    target: String,
    job: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardTpl {
    nav: Nav,
    targets: Vec<TargetView>,
    workers: Vec<WorkerView>,
    queue: Vec<QueueView>,
}

async fn target_view(
    s: &AppState,
    kind: TargetKind,
    name: &str,
    enabled: bool,
    description: &str,
) -> Result<TargetView, PageError> {
    let runs = s
        .store
        .list_runs(
            &RunFilter {
                target: Some(name.to_owned()),
                ..Default::default()
            },
            20,
        )
        .await?;
    let ended: Vec<&RunRow> = runs.iter().filter(|r| r.status.is_terminal()).collect();
    let ok = ended.iter().filter(|r| r.status == Status::Success).count();
    let mut durations: Vec<i64> = runs
        .iter()
        .filter_map(|r| span(r.started_at, r.ended_at))
        .collect();
    durations.sort_unstable();
    Ok(TargetView {
        name: name.to_owned(),
        kind: kind.as_str(),
        enabled,
        description: description.to_owned(),
        strip: runs
            .iter()
            .rev()
            .map(|r| StripCell {
                id: r.id,
                status: r.status.as_str(),
            })
            .collect(),
        success_rate: if ended.is_empty() {
            "–".into()
        } else {
            format!("{}%", ok * 100 / ended.len())
        },
        median: durations
            .get(durations.len() / 2)
            .map_or("–".into(), |d| dur_ms(*d)),
    })
}

async fn dashboard(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    let (user, a, nav) = page_user(&s, &headers, &uri).await?;
    let mut targets = Vec::new();
    for t in a.config.tasks.values() {
        if a.can_see(TargetKind::Task, &t.name) {
            targets
                .push(target_view(&s, TargetKind::Task, &t.name, t.enabled, &t.description).await?);
        }
    }
    for p in a.config.pipelines.values() {
        if a.can_see(TargetKind::Pipeline, &p.name) {
            targets.push(target_view(&s, TargetKind::Pipeline, &p.name, true, "").await?);
        }
    }
    let snap = crate::api::visible_snapshot(&s, &user).await?;
    let t = DashboardTpl {
        nav,
        targets,
        workers: snap
            .workers
            .iter()
            .map(|w| WorkerView {
                name: w.name.clone(),
                queues: w.queues.join(", "),
                state: w.state,
                reason: w.reason.clone().unwrap_or_default(),
                run_id: w.run_id.unwrap_or(0),
            })
            .collect(),
        queue: snap
            .queue
            .iter()
            .map(|q| QueueView {
                run_id: q.run_id,
                target: q.target.clone(),
                job: q.job.clone(),
                reason: q.reason.clone(),
            })
            .collect(),
    };
    Ok(render(&t))
}

// ---------------------------------------------------------------------------------------------
// Runs list

#[derive(Deserialize, Default)]
struct RunsQuery {
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
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsTpl {
    nav: Nav,
    f: RunsQuery,
    statuses: Vec<String>,
    triggers: Vec<String>,
    target_names: Vec<String>,
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

async fn runs_page(
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
    };
    let runs = s.store.list_runs(&filter, limit).await?;
    let next = if runs.len() == limit as usize {
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
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        parts.push(format!("cursor={last}"));
        format!("/runs?{}", parts.join("&"))
    } else {
        String::new()
    };
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
        triggers: ["cli", "api", "schedule", "chained", "webhook", "rerun"]
            .map(String::from)
            .to_vec(),
        target_names,
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
            })
            .collect(),
        next,
        f: q,
    };
    Ok(render(&t))
}

// ---------------------------------------------------------------------------------------------
// Run page

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
    artifacts: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RunQuery {
    job: Option<String>,
    before: Option<u64>,
}

async fn visible_run(s: &AppState, a: &Access, id: i64) -> Result<RunRow, PageError> {
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

/// Each job's depth in the pipeline's DAG (0 for jobs without dependencies).
fn depths<'a>(
    run: &'a RunRow,
    deps: &'a BTreeMap<String, Vec<String>>,
) -> BTreeMap<&'a str, usize> {
    fn depth_of<'a>(
        n: &'a str,
        deps: &'a BTreeMap<String, Vec<String>>,
        memo: &mut BTreeMap<&'a str, usize>,
        guard: usize,
    ) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        let d = if guard > 64 {
            0
        } else {
            deps.get(n)
                .map(|ds| {
                    ds.iter()
                        .map(|p| depth_of(p, deps, memo, guard + 1) + 1)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        };
        memo.insert(n, d);
        d
    }
    let mut depth = BTreeMap::new();
    for j in &run.jobs {
        depth_of(&j.name, deps, &mut depth, 0);
    }
    depth
}

/// The pipeline's DAG as an SVG: columns by depth, nodes coloured by status, linking to logs.
fn dag_svg(run: &RunRow, deps: &BTreeMap<String, Vec<String>>) -> String {
    let depth = depths(run, deps);
    let (w, h, gx, gy) = (170, 46, 60, 18);
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pos: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for j in &run.jobs {
        let d = depth.get(j.name.as_str()).copied().unwrap_or(0);
        let r = rows.entry(d).or_default();
        pos.insert(&j.name, (d * (w + gx) + 10, *r * (h + gy) + 10));
        *r += 1;
    }
    let width = rows.len() * (w + gx) + 20;
    let height = rows.values().max().copied().unwrap_or(1) * (h + gy) + 20;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"pipeline graph\">"
    );
    for j in &run.jobs {
        let Some(&(x, y)) = pos.get(j.name.as_str()) else {
            continue;
        };
        for d in deps.get(&j.name).into_iter().flatten() {
            if let Some(&(px, py)) = pos.get(d.as_str()) {
                let (x1, y1, x2, y2) = (px + w, py + h / 2, x, y + h / 2);
                let mx = (x1 + x2) / 2;
                svg.push_str(&format!(
                    "<path class=\"edge\" d=\"M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}\"/>"
                ));
            }
        }
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    for j in &run.jobs {
        let Some(&(x, y)) = pos.get(j.name.as_str()) else {
            continue;
        };
        let colour = match j.status {
            Status::Success => "#1f9d55",
            Status::Failed | Status::Broken | Status::Jammed => "#d63a3a",
            Status::Running | Status::Started => "#2f80ed",
            Status::Queued => "#c58a00",
            Status::Skipped | Status::Canceled => "#8a8f98",
        };
        let label: String = j.name.chars().take(22).collect();
        svg.push_str(&format!(
            "<a href=\"/runs/{}?job={}\" class=\"node\" data-job=\"{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"7\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\" font-weight=\"600\">{}</text><text x=\"{}\" y=\"{}\">{} · {}</text></a>",
            run.id,
            urlencode(&j.name),
            esc(&j.name),
            x + 10,
            y + 19,
            esc(&label),
            x + 10,
            y + 36,
            j.status.as_str(),
            esc(&job_took(j)),
        ));
    }
    svg.push_str("</svg>");
    svg
}

async fn run_page(
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
    let out = s.folders.job_dir(job.id, job.attempt).join("out");
    let artifacts = tokio::task::spawn_blocking(move || crate::artifacts::list(&out))
        .await
        .unwrap_or_default();
    let dag = if run.kind == TargetKind::Pipeline {
        dag_svg(&run, &deps)
    } else {
        String::new()
    };
    let mut workers: Vec<&str> = run
        .jobs
        .iter()
        .filter_map(|j| j.worker.as_deref())
        .collect();
    workers.dedup();
    let r = RunPageView {
        id: run.id,
        target: run.target.clone(),
        kind: run.kind.as_str(),
        status: run.status.as_str(),
        reason: run.reason.clone().unwrap_or_default(),
        cancelable: !run.status.is_terminal(),
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
        ran: took(&run),
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
    };
    Ok(render(&RunTpl {
        nav,
        r,
        log,
        dag,
        artifacts,
    }))
}

/// Serves one artifact: a regular file inside the job's `out/` folder, opened without following
/// any symlink (`crate::artifacts`); anything else is a 404. `Range` works as on logs.
async fn artifact(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, job_id, rel)): Path<(i64, i64, String)>,
) -> PageResult {
    let (_, a, _) = page_user(&s, &headers, &uri).await?;
    let run = visible_run(&s, &a, id).await?;
    let job = run
        .jobs
        .iter()
        .find(|j| j.id == job_id)
        .ok_or_else(not_found)?;
    let out = s.folders.job_dir(job.id, job.attempt).join("out");
    let art = tokio::task::spawn_blocking(move || crate::artifacts::open(&out, &rel))
        .await
        .ok()
        .flatten()
        .ok_or_else(not_found)?;
    let size = art.size;
    let (start, len) = match crate::range::of_request(&headers, size) {
        Ranged::Full => (0, size),
        Ranged::Part { start, end } => (start, end - start + 1),
        Ranged::Unsatisfiable => {
            return Ok(crate::range::unsatisfiable(&headers, size, "artifact"));
        }
    };
    let name = art.name.replace(['"', '\\', '\r', '\n'], "_");
    let mut resp = Response::new(Body::from_stream(crate::artifacts::stream(
        art.file, start, len,
    )));
    if len != size {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            Ranged::content_range(start, start + len - 1, size),
        );
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Sandboxed: an HTML artifact opened in the browser cannot act as the user.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::headers::ARTIFACT_CSP),
    );
    Ok(resp)
}

async fn cancel(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, a, _) = page_user(&s, &headers, &uri).await?;
    check_csrf(&user, &f)?;
    visible_run(&s, &a, id).await?;
    match s.sched.cancel(id).await {
        Ok(_) | Err(SchedError::NotCancelable { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

async fn rerun(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, a, _) = page_user(&s, &headers, &uri).await?;
    check_csrf(&user, &f)?;
    visible_run(&s, &a, id).await?;
    let run = s.sched.rerun(id, TriggerKind::Rerun).await?;
    Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Trigger

#[derive(Template)]
#[template(path = "trigger.html")]
struct TriggerTpl {
    nav: Nav,
    kind: &'static str,
    name: String,
    description: String,
    known_args: Vec<String>,
    error: String,
}

fn target_kind(kind: &str) -> Result<TargetKind, PageError> {
    match kind {
        "task" => Ok(TargetKind::Task),
        "pipeline" => Ok(TargetKind::Pipeline),
        _ => Err(not_found()),
    }
}

async fn trigger_form(
    a: &Access,
    nav: Nav,
    kind: TargetKind,
    name: &str,
    error: &str,
) -> Result<TriggerTpl, PageError> {
    if !a.can_see(kind, name) {
        return Err(not_found());
    }
    let description = match kind {
        TargetKind::Task => a.config.tasks.get(name).map(|t| t.description.clone()),
        TargetKind::Pipeline => a.config.pipelines.get(name).map(|_| String::new()),
    }
    .ok_or_else(not_found)?;
    Ok(TriggerTpl {
        nav,
        kind: kind.as_str(),
        name: name.to_owned(),
        description,
        known_args: Vec::new(),
        error: error.to_owned(),
    })
}

async fn trigger_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((kind, name)): Path<(String, String)>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    let kind = target_kind(&kind)?;
    Ok(render(&trigger_form(&a, nav, kind, &name, "").await?))
}

async fn trigger(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((kind, name)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, a, nav) = page_user(&s, &headers, &uri).await?;
    check_csrf(&user, &f)?;
    let kind = target_kind(&kind)?;
    if !a.can_see(kind, &name) {
        return Err(not_found());
    }
    let mut args = BTreeMap::new();
    for (k, v) in &f {
        if let Some(arg) = k.strip_prefix("arg.")
            && !v.is_empty()
        {
            args.insert(arg.to_owned(), v.clone());
        }
    }
    for line in field(&f, "extra").lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                args.insert(k.trim().to_owned(), v.to_owned());
            }
            None => {
                let msg = format!("{line:?} is not name=value");
                let t = trigger_form(&a, nav, kind, &name, &msg).await?;
                return Ok((StatusCode::BAD_REQUEST, render(&t)).into_response());
            }
        }
    }
    let req = TriggerRequest {
        target: name.clone(),
        kind: Some(kind),
        args,
        trigger: TriggerKind::Api,
        ancestors: vec![],
    };
    match s.sched.trigger(req).await {
        Ok(run) => Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response()),
        Err(e @ (SchedError::BadArgument { .. } | SchedError::Disabled(_))) => {
            let t = trigger_form(&a, nav, kind, &name, &e.to_string()).await?;
            Ok((StatusCode::BAD_REQUEST, render(&t)).into_response())
        }
        Err(e @ SchedError::WaitListFull { .. }) => {
            let t = trigger_form(&a, nav, kind, &name, &e.to_string()).await?;
            Ok((StatusCode::CONFLICT, render(&t)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// The user's page: API tokens

struct TokenView {
    id: i64,
    name: String,
    created: String,
}

#[derive(Template)]
#[template(path = "me.html")]
struct MeTpl {
    nav: Nav,
    tokens: Vec<TokenView>,
    new_token: String,
}

async fn me(s: &AppState, user: &CurrentUser, nav: Nav, new_token: String) -> PageResult {
    let tokens = match &user.principal {
        baton_core::access::Principal::User(n) => s.store.user_tokens(n).await?,
        baton_core::access::Principal::Operator => Vec::new(),
    };
    Ok(render(&MeTpl {
        nav,
        tokens: tokens
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                created: when(t.created_at),
            })
            .collect(),
        new_token,
    }))
}

async fn me_page(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    let (user, _, nav) = page_user(&s, &headers, &uri).await?;
    me(&s, &user, nav, String::new()).await
}

fn only_users(user: &CurrentUser) -> Result<&str, PageError> {
    match &user.principal {
        baton_core::access::Principal::User(n) => Ok(n),
        baton_core::access::Principal::Operator => Err(PageError::Page(
            StatusCode::BAD_REQUEST,
            "operator tokens have no user page; use `baton token create`".into(),
        )),
    }
}

async fn create_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, _, nav) = page_user(&s, &headers, &uri).await?;
    check_csrf(&user, &f)?;
    let name = only_users(&user)?;
    let label = field(&f, "name").trim();
    let label = if label.is_empty() { "api" } else { label };
    let token = s.store.create_user_token(label, Some(name)).await?;
    me(&s, &user, nav, token).await
}

async fn revoke_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, _, _) = page_user(&s, &headers, &uri).await?;
    check_csrf(&user, &f)?;
    let name = only_users(&user)?;
    if !s.store.revoke_user_token(name, id).await? {
        return Err(not_found());
    }
    Ok(Redirect::to("/me").into_response())
}

// ---------------------------------------------------------------------------------------------
// Administration

async fn reload(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, a, mut nav) = page_user(&s, &headers, &uri).await?;
    check_csrf(&user, &f)?;
    a.require_admin()?;
    let flash = match crate::api::reload_config(&s).await {
        Ok(v) => format!(
            "Config reloaded: {} tasks, {} pipelines.",
            v["tasks"], v["pipelines"]
        ),
        Err(e) => e.message,
    };
    nav.flash = flash;
    let t = ErrorTpl {
        nav,
        code: 200,
        title: "Reload".into(),
        message: String::new(),
    };
    Ok(render(&t))
}

async fn set_enabled(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, a, _) = page_user(&s, &headers, &uri).await?;
    check_csrf(&user, &f)?;
    if !a.can_see(TargetKind::Task, &name) {
        return Err(not_found());
    }
    a.require_admin()?;
    let value = match field(&f, "enabled") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    s.sched.set_enabled(&name, value).await?;
    Ok(Redirect::to("/").into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn login_redirects_stay_on_this_site() {
        assert_eq!(safe_next("/runs?task=a"), "/runs?task=a");
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(evil), "/", "{evil:?}");
        }
    }
}
