//! The dashboard (`/`): every visible target with its recent runs, when it last ran and runs
//! next, its tags (a filter), the workers and the queue (with what each job waits for), and
//! each autoscaled pool's size, desired size and why.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use baton_core::run::TargetKind;
use baton_store::{RunFilter, RunRow};

use super::format::{dur_ms, span, when};
use super::page::{Nav, PageError, PageResult, render};
use super::request::page_user;
use super::stats::success_rate;
use crate::AppState;

pub(super) struct StripCell {
    id: i64,
    status: &'static str,
}

pub(super) struct TargetView {
    pub name: String,
    pub kind: &'static str,
    pub enabled: bool,
    pub description: String,
    pub tags: Vec<String>,
    pub strip: Vec<StripCell>,
    pub success_rate: String,
    pub median: String,
    /// When its newest run was queued (empty: never), and that run.
    pub last_run: String,
    pub last_id: i64,
    /// When its timer fires next (empty: it has none).
    pub next_run: String,
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
    /// `dependencies`, `a worker` or `its turn`.
    waits_for: &'static str,
    waits_class: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardTpl {
    nav: Nav,
    targets: Vec<TargetView>,
    /// Every tag of a visible target, and the one the list is filtered by (empty: none).
    tags: Vec<String>,
    tag: String,
    workers: Vec<WorkerView>,
    queue: Vec<QueueView>,
    /// The autoscaled pools as the scaler last saw them.
    pools: Vec<crate::pools::PoolView>,
}

#[derive(Deserialize)]
pub(super) struct DashQuery {
    /// Show only targets with this tag.
    tag: Option<String>,
}

/// A target's row: its last 20 runs, success rate, median, last and next run.
pub(super) struct TargetFacts<'a> {
    pub kind: TargetKind,
    pub name: &'a str,
    pub enabled: bool,
    pub description: &'a str,
    pub tags: &'a [String],
    pub next: Option<DateTime<Utc>>,
}

pub(super) async fn target_view(s: &AppState, f: TargetFacts<'_>) -> Result<TargetView, PageError> {
    let filter = RunFilter {
        target: Some(f.name.to_owned()),
        ..Default::default()
    };
    let runs: Vec<RunRow> = s
        .store
        .list_runs(&filter, 20)
        .await?
        .into_iter()
        .filter(|r| r.kind == f.kind)
        .collect();
    let mut durations: Vec<i64> = runs
        .iter()
        .filter_map(|r| span(r.started_at, r.ended_at))
        .collect();
    durations.sort_unstable();
    Ok(TargetView {
        name: f.name.to_owned(),
        kind: f.kind.as_str(),
        enabled: f.enabled,
        description: f.description.to_owned(),
        tags: f.tags.to_vec(),
        strip: runs
            .iter()
            .rev()
            .map(|r| StripCell {
                id: r.id,
                status: r.status.as_str(),
            })
            .collect(),
        success_rate: success_rate(&runs),
        median: durations
            .get(durations.len() / 2)
            .map_or("–".into(), |d| dur_ms(*d)),
        last_run: runs
            .first()
            .map(|r| when(r.enqueued_at))
            .unwrap_or_default(),
        last_id: runs.first().map_or(0, |r| r.id),
        next_run: f.next.map(when).unwrap_or_default(),
    })
}

pub(super) async fn dashboard(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    q: Result<Query<DashQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let (user, a, nav) = page_user(&s, &headers, &uri).await?;
    let Query(q) = q.map_err(|e| PageError::Page(StatusCode::BAD_REQUEST, e.body_text()))?;
    let tag = q.tag.unwrap_or_default();
    let snap = crate::actions::visible_snapshot(&s, &user).await?;
    let mut all_tags: Vec<String> = Vec::new();
    let mut facts: Vec<TargetFacts<'_>> = Vec::new();
    for t in a.config.tasks.values() {
        if a.can_see(TargetKind::Task, &t.name) {
            facts.push(TargetFacts {
                kind: TargetKind::Task,
                name: &t.name,
                enabled: t.enabled,
                description: &t.description,
                tags: &t.tags,
                next: snap.next_fire.get(&t.name).copied(),
            });
        }
    }
    for p in a.config.pipelines.values() {
        if a.can_see(TargetKind::Pipeline, &p.name) {
            facts.push(TargetFacts {
                kind: TargetKind::Pipeline,
                name: &p.name,
                enabled: p.enabled,
                description: &p.description,
                tags: &p.tags,
                next: None,
            });
        }
    }
    let mut targets = Vec::new();
    for f in facts {
        all_tags.extend(f.tags.iter().cloned());
        if tag.is_empty() || f.tags.contains(&tag) {
            targets.push(target_view(&s, f).await?);
        }
    }
    all_tags.sort();
    all_tags.dedup();
    let t = DashboardTpl {
        nav,
        targets,
        tags: all_tags,
        tag,
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
                waits_for: q.waits_for.as_str(),
                waits_class: match q.waits_for {
                    baton_sched::WaitsFor::Turn => "turn",
                    baton_sched::WaitsFor::Dependencies => "deps",
                    baton_sched::WaitsFor::Worker => "worker",
                },
            })
            .collect(),
        pools: s.pools.views(),
    };
    Ok(render(&t))
}
