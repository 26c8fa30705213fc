//! A target's own page (`/targets/{task|pipeline}/{name}`): its last runs, its success rate and
//! duration trend, when it runs next, its definition as written in its config file (with the
//! file and line; no secret value can show: the loader's hidden values and every secret value
//! the config holds are `***`) and its trigger button.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};

use baton_core::run::TargetKind;
use baton_store::{RunFilter, RunRow};

use super::dashboard::{TargetFacts, TargetView, target_view};
use super::format::{TestCounts, took, when};
use super::page::{Nav, PageResult, not_found, render};
use super::request::page_user;
use super::stats::{median_ms, success_rate, trend_svg};
use crate::AppState;
use crate::api_types as t;

/// How many runs the page lists and measures.
const RUNS: u32 = 50;

struct RunLine {
    id: i64,
    status: &'static str,
    reason: String,
    trigger: &'static str,
    queued: String,
    took: String,
    tests: Option<TestCounts>,
}

#[derive(Template)]
#[template(path = "target.html")]
struct TargetTpl {
    nav: Nav,
    t: TargetView,
    /// `every 10m`, `cron 0 3 * * *`, or empty.
    timer: String,
    rate: String,
    median: String,
    trend: String,
    runs: Vec<RunLine>,
    /// `FILE:LINE` of the definition as written (empty: shown as loaded instead).
    source: String,
    /// The definition's lines with their numbers in the file.
    lines: Vec<(usize, String)>,
}

pub(super) async fn target_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((kind, name)): Path<(String, String)>,
) -> PageResult {
    let (user, a, nav) = page_user(&s, &headers, &uri).await?;
    let kind = match kind.as_str() {
        "task" => TargetKind::Task,
        "pipeline" => TargetKind::Pipeline,
        _ => return Err(not_found()),
    };
    if !a.can_see(kind, &name) {
        return Err(not_found());
    }
    let snap = crate::actions::visible_snapshot(&s, &user).await?;
    let (facts, timer, definition) = match kind {
        TargetKind::Task => {
            let d = a.config.tasks.get(&name).ok_or_else(not_found)?;
            let timer = match (&d.schedule, d.period) {
                (Some(c), _) => format!("cron {}", c.cron),
                (None, Some(p)) => format!("every {}", humantime_ish(p)),
                _ => String::new(),
            };
            let facts = TargetFacts {
                kind,
                name: &d.name,
                enabled: d.enabled,
                description: &d.description,
                tags: &d.tags,
                next: snap.next_fire.get(&d.name).copied(),
            };
            let shown = a.config.written_source(false, &name);
            (facts, timer, shown.ok_or_else(|| pretty(&t::Task::from(d))))
        }
        TargetKind::Pipeline => {
            let d = a.config.pipelines.get(&name).ok_or_else(not_found)?;
            let facts = TargetFacts {
                kind,
                name: &d.name,
                enabled: d.enabled,
                description: &d.description,
                tags: &d.tags,
                next: None,
            };
            let shown = a.config.written_source(true, &name);
            (
                facts,
                String::new(),
                shown.ok_or_else(|| pretty(&t::Pipeline::from(d))),
            )
        }
    };
    let view = target_view(&s, facts).await?;
    let filter = RunFilter {
        target: Some(name.clone()),
        ..Default::default()
    };
    let runs: Vec<RunRow> = s
        .store
        .list_runs(&filter, RUNS)
        .await?
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect();
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let counts = s.store.run_result_counts(&ids).await?;
    Ok(render(&TargetTpl {
        nav,
        t: view,
        timer,
        rate: success_rate(&runs),
        median: median_ms(&runs).map_or("–".into(), super::format::dur_ms),
        trend: trend_svg(&runs),
        runs: runs
            .iter()
            .map(|r| RunLine {
                id: r.id,
                status: r.status.as_str(),
                reason: r.reason.clone().unwrap_or_default(),
                trigger: r.trigger.as_str(),
                queued: when(r.enqueued_at),
                took: took(r),
                tests: TestCounts::of(r, &counts),
            })
            .collect(),
        source: match &definition {
            Ok(w) => format!("{}:{}", w.file.display(), w.line),
            Err(_) => String::new(),
        },
        lines: match definition {
            Ok(w) => w
                .text
                .lines()
                .enumerate()
                .map(|(i, l)| (w.line + i, l.to_owned()))
                .collect(),
            Err(json) => json.lines().map(|l| (0, l.to_owned())).collect(),
        },
    }))
}

fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A period as written in configs: `90s` → `1m 30s`.
fn humantime_ish(d: std::time::Duration) -> String {
    super::format::dur_ms(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
