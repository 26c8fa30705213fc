//! The dashboard (`/`): every visible target with its recent runs, the workers and the queue.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};

use baton_core::run::{Status, TargetKind};
use baton_store::{RunFilter, RunRow};

use super::format::{dur_ms, span};
use super::page::{Nav, PageError, PageResult, render};
use super::request::page_user;
use crate::AppState;

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

pub(super) async fn dashboard(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> PageResult {
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
            targets
                .push(target_view(&s, TargetKind::Pipeline, &p.name, true, &p.description).await?);
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
