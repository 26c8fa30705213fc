//! JSON routes: tasks, pipelines, workers, queue, runs, trigger, cancel, rerun, reload.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use baton_core::run::{Status, TargetKind, TriggerKind};
use baton_sched::TriggerRequest;
use baton_store::{RunFilter, RunRow};

use crate::auth::{Access, CurrentUser};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(tasks))
        .route("/pipelines", get(pipelines))
        .route("/workers", get(workers))
        .route("/queue", get(queue))
        .route("/tasks/{name}/trigger", post(trigger_task))
        .route("/pipelines/{name}/trigger", post(trigger_pipeline))
        .route("/runs", get(list_runs))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/wait", get(wait_run))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/rerun", post(rerun))
        .route("/config/reload", post(reload))
        .route("/tasks/{name}/enabled", post(set_enabled))
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

async fn tasks(State(s): State<AppState>, user: CurrentUser) -> ApiResult {
    let a = Access::of(&s, &user).await?;
    let tasks: Vec<_> = a
        .config
        .tasks
        .values()
        .filter(|t| a.can_see(TargetKind::Task, &t.name))
        .collect();
    Ok(Json(redact(json!({ "tasks": tasks }))))
}

async fn pipelines(State(s): State<AppState>, user: CurrentUser) -> ApiResult {
    let a = Access::of(&s, &user).await?;
    let pipelines: Vec<_> = a
        .config
        .pipelines
        .values()
        .filter(|p| a.can_see(TargetKind::Pipeline, &p.name))
        .collect();
    Ok(Json(redact(json!({ "pipelines": pipelines }))))
}

/// Definitions as users see them: a secret-looking `env` entry or variable (serialized as a
/// reference, `{"secret": "…"}`, never its value) shows as `***`. Commands are shown as
/// written (`${:name}`), and explicit secrets only by name.
fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) if m.len() == 1 && m.get("secret").is_some_and(Value::is_string) => {
                *v = Value::String("***".into());
            }
            Value::Object(m) => m.values_mut().for_each(walk),
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Workers and queue as `user` may see them: runs of targets they cannot see are hidden.
pub(crate) async fn visible_snapshot(
    s: &AppState,
    user: &CurrentUser,
) -> ApiResult<baton_sched::Snapshot> {
    let a = Access::of(s, user).await?;
    let mut snap = s.sched.snapshot().await?;
    if a.is_admin() {
        return Ok(snap);
    }
    snap.queue.retain(|q| a.can_see_name(&q.target));
    for w in &mut snap.workers {
        if let Some(run_id) = w.run_id {
            let visible = s
                .store
                .get_run(run_id)
                .await?
                .is_some_and(|r| a.can_see(r.kind, &r.target));
            if !visible {
                w.run_id = None;
                w.job_id = None;
            }
        }
    }
    Ok(snap)
}

async fn workers(State(s): State<AppState>, user: CurrentUser) -> ApiResult {
    Ok(Json(
        json!({ "workers": visible_snapshot(&s, &user).await?.workers }),
    ))
}

async fn queue(State(s): State<AppState>, user: CurrentUser) -> ApiResult {
    Ok(Json(
        json!({ "queue": visible_snapshot(&s, &user).await?.queue }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default)]
    args: BTreeMap<String, String>,
}

/// The CLI marks its requests so runs show `cli` as their trigger.
fn trigger_kind(headers: &axum::http::HeaderMap) -> TriggerKind {
    match headers.get("x-baton-client").and_then(|v| v.to_str().ok()) {
        Some("cli") => TriggerKind::Cli,
        _ => TriggerKind::Api,
    }
}

async fn trigger(
    s: AppState,
    user: CurrentUser,
    kind: TargetKind,
    headers: axum::http::HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<RunRow>)> {
    let Path(name) = name?;
    if !Access::of(&s, &user).await?.can_see(kind, &name) {
        // Exactly what an unknown name gets: a hidden target does not exist for this caller.
        return Err(baton_sched::SchedError::UnknownTarget(name).into());
    }
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid JSON body: {e} (expected {{\"args\": {{\"name\": \"value\"}}}})"
            ))
        })?
    };
    let run = s
        .sched
        .trigger(TriggerRequest {
            target: name,
            kind: Some(kind),
            args: body.args,
            trigger: trigger_kind(&headers),
            ancestors: vec![],
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run)))
}

async fn trigger_task(
    State(s): State<AppState>,
    user: CurrentUser,
    name: Result<Path<String>, PathRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<RunRow>)> {
    trigger(s, user, TargetKind::Task, headers, name, body).await
}

async fn trigger_pipeline(
    State(s): State<AppState>,
    user: CurrentUser,
    name: Result<Path<String>, PathRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<RunRow>)> {
    trigger(s, user, TargetKind::Pipeline, headers, name, body).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    task: Option<String>,
    status: Option<String>,
    tag: Option<String>,
    trigger: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
    /// Free-text search in target names, reasons and arguments.
    q: Option<String>,
}

async fn list_runs(
    State(s): State<AppState>,
    user: CurrentUser,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let status = q
        .status
        .map(|v| v.parse::<Status>())
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let trigger = q
        .trigger
        .map(|v| v.parse::<TriggerKind>())
        .transpose()
        .map_err(ApiError::bad_request)?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::bad_request("limit must be between 1 and 500"));
    }
    let filter = RunFilter {
        target: q.task,
        status,
        trigger,
        tag: q.tag,
        before: q.cursor,
        visible: Access::of(&s, &user).await?.visible(),
        search: q.q,
        ..Default::default()
    };
    let runs = s.store.list_runs(&filter, limit).await?;
    let next = (runs.len() == limit as usize)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({ "runs": runs, "next_cursor": next })))
}

/// Run `id` if it exists and `user` may see it; a hidden run answers exactly like a missing one.
pub(crate) async fn load_run(s: &AppState, user: &CurrentUser, id: i64) -> ApiResult<RunRow> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "run_not_found",
            format!("run {id} not found"),
        )
    };
    let run = s.store.get_run(id).await?.ok_or_else(not_found)?;
    if !Access::of(s, user).await?.can_see(run.kind, &run.target) {
        return Err(not_found());
    }
    Ok(run)
}

async fn get_run(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<RunRow>> {
    let Path(id) = id?;
    Ok(Json(load_run(&s, &user, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Seconds to wait at most (default 30, at most 300).
    timeout: Option<u64>,
}

/// Long-polls until the run ends or the timeout passes; returns the run either way.
async fn wait_run(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Json<RunRow>> {
    let Path(id) = id?;
    let Query(q) = q?;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.timeout.unwrap_or(30).min(300));
    let mut changes = s.sched.changes();
    loop {
        changes.borrow_and_update();
        let run = load_run(&s, &user, id).await?;
        if run.status.is_terminal() {
            return Ok(Json(run));
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return Ok(Json(load_run(&s, &user, id).await?)),
        }
    }
}

async fn cancel(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<RunRow>> {
    let Path(id) = id?;
    load_run(&s, &user, id).await?;
    Ok(Json(s.sched.cancel(id).await?))
}

async fn rerun(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<(StatusCode, Json<RunRow>)> {
    let Path(id) = id?;
    load_run(&s, &user, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(s.sched.rerun(id, TriggerKind::Rerun).await?),
    ))
}

async fn reload(State(s): State<AppState>, user: CurrentUser) -> ApiResult {
    Access::of(&s, &user).await?.require_admin()?;
    reload_config(&s).await.map(Json)
}

/// Loads the config again and swaps it in; `422` with the diagnostics when it is invalid.
pub(crate) async fn reload_config(s: &AppState) -> ApiResult<Value> {
    let loader = s.load_config.clone();
    let loaded = tokio::task::spawn_blocking(move || loader())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match loaded {
        Ok(config) => {
            let summary = json!({
                "reloaded": true,
                "tasks": config.tasks.len(),
                "pipelines": config.pipelines.len(),
            });
            s.sched.reload(config).await?;
            Ok(summary)
        }
        Err(diagnostics) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!("the new config is invalid; the old one stays in force:\n{diagnostics}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnabledBody {
    /// `true` or `false` override the config; `null` follows the config again.
    enabled: Option<bool>,
}

/// Administrators enable or disable a task at runtime (kept in the store, over the config).
async fn set_enabled(
    State(s): State<AppState>,
    user: CurrentUser,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<EnabledBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Path(name) = name?;
    let a = Access::of(&s, &user).await?;
    if !a.can_see(TargetKind::Task, &name) {
        return Err(baton_sched::SchedError::UnknownTarget(name).into());
    }
    a.require_admin()?;
    let Json(body) = body?;
    s.sched.set_enabled(&name, body.enabled).await?;
    let enabled = s
        .sched
        .config()
        .await?
        .tasks
        .get(&name)
        .is_some_and(|t| t.enabled);
    Ok(Json(json!({ "task": name, "enabled": enabled })))
}
