//! JSON routes: tasks, pipelines, workers, queue, runs, trigger, cancel, approve, rerun, reload.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::api_types as t;

use baton_core::run::{Status, TargetKind, TriggerKind};
use baton_sched::TriggerRequest;
use baton_store::RunFilter;

use crate::actions::{commit_prefix, log_enabled_change, reload_summary, visible_snapshot};
use crate::auth::load_run;
use crate::auth::{Access, CurrentUser};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(tasks))
        .route("/pipelines", get(pipelines))
        .route("/workers", get(workers))
        .route("/queue", get(queue))
        .route("/tasks/{name}/trigger", post(trigger_task))
        .route("/tasks/{repo}/{task}/trigger", post(trigger_repo_task))
        .route("/pipelines/{name}/trigger", post(trigger_pipeline))
        .route("/runs", get(list_runs))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/wait", get(wait_run))
        .route("/runs/{id}/results", get(crate::results::get_results))
        .route("/jobs/{id}/cache", get(crate::cache::job_cache))
        .route("/runs/{id}/artifacts", get(crate::archive::list))
        .route("/runs/{id}/artifacts.tar.gz", get(crate::archive::tar_gz))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/approve", post(approve))
        .route("/runs/{id}/rerun", post(rerun))
        .route("/config/reload", post(reload))
        .route("/tasks/{name}/enabled", post(set_enabled))
        .route("/pipelines/{name}/enabled", post(set_pipeline_enabled))
}

type ApiResult<T> = Result<T, ApiError>;

/// Tasks as users see them (`api_types::Task`): commands as written (`${:name}`), secret
/// `env` entries and variables as `***`, explicit secrets only by name.
#[utoipa::path(get, path = "/api/v1/tasks",
    responses(
        (status = 200, description = "the tasks the caller may see", body = t::TaskList),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn tasks(State(s): State<AppState>, user: CurrentUser) -> ApiResult<Json<t::TaskList>> {
    let a = Access::of(&s, &user).await?;
    let tasks = a
        .config
        .tasks
        .values()
        .filter(|t| a.can_see(TargetKind::Task, &t.name))
        .map(t::Task::from)
        .collect();
    Ok(Json(t::TaskList { tasks }))
}

#[utoipa::path(get, path = "/api/v1/pipelines",
    responses(
        (status = 200, description = "the pipelines the caller may see", body = t::PipelineList),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn pipelines(
    State(s): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<t::PipelineList>> {
    let a = Access::of(&s, &user).await?;
    let pipelines = a
        .config
        .pipelines
        .values()
        .filter(|p| a.can_see(TargetKind::Pipeline, &p.name))
        .map(t::Pipeline::from)
        .collect();
    Ok(Json(t::PipelineList { pipelines }))
}

#[utoipa::path(get, path = "/api/v1/workers",
    responses(
        (status = 200, description = "workers; runs the caller may not see are left out", body = t::WorkerList),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn workers(State(s): State<AppState>, user: CurrentUser) -> ApiResult<Json<t::WorkerList>> {
    let snap = visible_snapshot(&s, &user).await?;
    Ok(Json(t::WorkerList {
        workers: snap.workers.into_iter().map(t::Worker::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/queue",
    responses(
        (status = 200, description = "waiting jobs the caller may see, and why they wait", body = t::Queue),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn queue(State(s): State<AppState>, user: CurrentUser) -> ApiResult<Json<t::Queue>> {
    let snap = visible_snapshot(&s, &user).await?;
    Ok(Json(t::Queue {
        queue: snap.queue.into_iter().map(t::QueueEntry::from).collect(),
    }))
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
) -> ApiResult<(StatusCode, Json<t::Run>)> {
    let Path(name) = name?;
    if !Access::of(&s, &user).await?.can_see(kind, &name) {
        // Exactly what an unknown name gets: a hidden target does not exist for this caller.
        return Err(baton_sched::SchedError::UnknownTarget(name).into());
    }
    let body: t::TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        t::TriggerBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid JSON body: {e} (expected {{\"args\": {{\"name\": \"value\"}}}} or, for REPO/TASK, {{\"ref\": \"main\"}})"
            ))
        })?
    };
    let config = s.sched.config().await?;
    if let Some(repo) = crate::repos::manual::repo_of(&config, &name) {
        if !body.args.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{name} is a repository's task: it takes a \"ref\", not arguments"
            )));
        }
        let trigger = trigger_kind(&headers);
        let git_ref = body.git_ref.as_deref();
        let id = crate::repos::manual::trigger(
            &s,
            &config,
            repo,
            &name,
            git_ref,
            (trigger, body.no_cache),
        )
        .await?;
        let run = s
            .store
            .get_run(id)
            .await?
            .ok_or(baton_sched::SchedError::RunNotFound(id))?;
        return Ok((StatusCode::CREATED, Json(run.into())));
    }
    if body.git_ref.is_some() {
        return Err(ApiError::bad_request(format!(
            "\"ref\" is for a repository's task (REPO/TASK); {name} is not one"
        )));
    }
    let run = s
        .sched
        .trigger(TriggerRequest {
            target: name,
            kind: Some(kind),
            args: body.args,
            trigger: trigger_kind(&headers),
            ancestors: vec![],
            no_cache: body.no_cache,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

#[utoipa::path(post, path = "/api/v1/tasks/{name}/trigger",
    params(("name" = String, Path, description = "task or pipeline name")),
    request_body = Option<t::TriggerBody>,
    responses(
        (status = 201, description = "the new run (possibly `skipped`, with its reason)", body = t::Run),
        (status = 400, description = "bad JSON body or argument (`bad_request`, `bad_argument`)", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 404, description = "no such target, or hidden (`unknown_target`)", body = t::ErrorBody),
        (status = 409, description = "disabled, or the wait list is full (`disabled`, `wait_list_full`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn trigger_task(
    State(s): State<AppState>,
    user: CurrentUser,
    name: Result<Path<String>, PathRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<t::Run>)> {
    trigger(s, user, TargetKind::Task, headers, name, body).await
}

/// `POST /tasks/REPO/TASK/trigger`: a repository's task, without escaping its `/`.
async fn trigger_repo_task(
    State(s): State<AppState>,
    user: CurrentUser,
    names: Result<Path<(String, String)>, PathRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<t::Run>)> {
    let Path((repo, task)) = names?;
    let name = Ok(Path(format!("{repo}/{task}")));
    trigger(s, user, TargetKind::Task, headers, name, body).await
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/trigger",
    params(("name" = String, Path, description = "task or pipeline name")),
    request_body = Option<t::TriggerBody>,
    responses(
        (status = 201, description = "the new run (possibly `skipped`, with its reason)", body = t::Run),
        (status = 400, description = "bad JSON body or argument (`bad_request`, `bad_argument`)", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 404, description = "no such target, or hidden (`unknown_target`)", body = t::ErrorBody),
        (status = 409, description = "disabled, or the wait list is full (`disabled`, `wait_list_full`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn trigger_pipeline(
    State(s): State<AppState>,
    user: CurrentUser,
    name: Result<Path<String>, PathRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<t::Run>)> {
    trigger(s, user, TargetKind::Pipeline, headers, name, body).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Runs of this task or pipeline.
    task: Option<String>,
    #[param(value_type = Option<t::Status>)]
    status: Option<String>,
    tag: Option<String>,
    #[param(value_type = Option<t::TriggerKind>)]
    trigger: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<i64>,
    /// Runs per page (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Free-text search in target names, reasons and arguments.
    q: Option<String>,
    /// Runs of this repository (its name in `repos:`).
    repo: Option<String>,
    /// Runs of this branch.
    branch: Option<String>,
    /// Runs of the commit whose sha starts with this (hex, up to 40 digits).
    commit: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/runs",
    params(ListQuery),
    responses(
        (status = 200, description = "runs the caller may see, newest first", body = t::RunList),
        (status = 400, description = "bad filter or limit", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn list_runs(
    State(s): State<AppState>,
    user: CurrentUser,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<t::RunList>> {
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
        repo: q.repo.filter(|r| !r.is_empty()),
        branch: q.branch.filter(|b| !b.is_empty()),
        commit: commit_prefix(q.commit.as_deref().unwrap_or("")).map_err(ApiError::bad_request)?,
        ..Default::default()
    };
    let runs = s.store.list_runs(&filter, limit).await?;
    let next = (runs.len() == limit as usize)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let counts = s.store.run_result_counts(&ids).await?;
    let runs = runs
        .into_iter()
        .map(|r| {
            let results = counts
                .get(&r.id)
                .filter(|c| c.passed + c.failed + c.errors + c.skipped + c.flaky + c.warnings > 0)
                .map(|c| t::ResultSummary::from(*c));
            t::Run {
                results,
                ..t::Run::from(r)
            }
        })
        .collect();
    Ok(Json(t::RunList {
        runs,
        next_cursor: next,
    }))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}",
    params(("id" = i64, Path, description = "run id")),
    responses(
        (status = 200, description = "the run", body = t::Run),
        (status = 400, description = "bad id", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 404, description = "no such run, or hidden (`run_not_found`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn get_run(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<t::Run>> {
    let Path(id) = id?;
    let mut run: t::Run = load_run(&s, &user, id).await?.into();
    run.statuses = s
        .store
        .run_reports(id)
        .await?
        .into_iter()
        .map(t::StatusReport::from)
        .collect();
    Ok(Json(run))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// Seconds to wait at most (default 30, at most 300).
    timeout: Option<u64>,
}

/// Long-polls until the run ends or the timeout passes; returns the run either way.
#[utoipa::path(get, path = "/api/v1/runs/{id}/wait",
    params(("id" = i64, Path, description = "run id"), WaitQuery),
    responses(
        (status = 200, description = "the run, once it ended or the timeout passed", body = t::Run),
        (status = 400, description = "bad id or timeout", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 404, description = "no such run, or hidden (`run_not_found`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn wait_run(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Json<t::Run>> {
    let Path(id) = id?;
    let Query(q) = q?;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.timeout.unwrap_or(30).min(300));
    // Subscribed before the first read: an end recorded after it is among the events.
    let mut events = s.sched.subscribe();
    let run = load_run(&s, &user, id).await?;
    if run.status.is_terminal() {
        return Ok(Json(run.into()));
    }
    // Read again only once a batch ended this run (or some batches were missed), not on
    // every batch of every other run.
    loop {
        use tokio::sync::broadcast::error::RecvError;
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(changed)) if !changed.runs.iter().any(|r| r.id == id && r.ended.is_some()) => {}
            Ok(Err(RecvError::Lagged(_))) => {
                let run = load_run(&s, &user, id).await?;
                if run.status.is_terminal() {
                    return Ok(Json(run.into()));
                }
            }
            _ => return Ok(Json(load_run(&s, &user, id).await?.into())),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel",
    params(("id" = i64, Path, description = "run id")),
    responses(
        (status = 200, description = "the run, being canceled", body = t::Run),
        (status = 400, description = "bad id", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 404, description = "no such run, or hidden (`run_not_found`)", body = t::ErrorBody),
        (status = 409, description = "the run already ended (`not_cancelable`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn cancel(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<t::Run>> {
    let Path(id) = id?;
    load_run(&s, &user, id).await?;
    Ok(Json(s.sched.cancel(id).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/approve",
    params(("id" = i64, Path, description = "run id")),
    responses(
        (status = 200, description = "the run, approved and queued", body = t::Run),
        (status = 400, description = "bad id", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 404, description = "no such run, or hidden (`run_not_found`)", body = t::ErrorBody),
        (status = 409, description = "the run is not waiting for approval (`not_waiting`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
/// Approves a run held `waiting` (a pull request from a fork): it is queued. Whoever may
/// trigger the run's task may approve it.
async fn approve(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<t::Run>> {
    let Path(id) = id?;
    load_run(&s, &user, id).await?;
    Ok(Json(s.sched.approve(id).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/rerun",
    params(("id" = i64, Path, description = "run id"), RerunQuery),
    request_body = Option<t::RerunBody>,
    responses(
        (status = 201, description = "the new run", body = t::Run),
        (status = 400, description = "bad id, body or argument (`bad_request`, `bad_argument`), or a rerun that cannot be made as asked (`bad_rerun`: only the failed jobs of a run that is not an ended pipeline or has none, new arguments with them)", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 404, description = "no such run or target, or hidden", body = t::ErrorBody),
        (status = 409, description = "disabled, the wait list is full, or the run was imported from a developer's machine (`imported_run`: never run here)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
/// Starts a new run of the run's target, linked to it: the same arguments or new ones (the
/// body's `args`), or with `failed=true` only the jobs that did not succeed and the jobs that
/// depend on them (the others are carried over: `skipped`, their reason naming the job that
/// ran, whose results and artifacts they show).
async fn rerun(
    State(s): State<AppState>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<axum::extract::Query<RerunQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<t::Run>)> {
    let Path(id) = id?;
    let axum::extract::Query(q) = q?;
    let body: t::RerunBody = if body.iter().all(u8::is_ascii_whitespace) {
        t::RerunBody::default()
    } else {
        // `null` is no body, as an empty one.
        serde_json::from_slice::<Option<t::RerunBody>>(&body)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid JSON body: {e} (expected {{}} or {{\"args\": {{\"name\": \"value\"}}}})"
                ))
            })?
            .unwrap_or_default()
    };
    load_run(&s, &user, id).await?;
    let opts = baton_sched::RerunOptions {
        failed_only: q.failed.unwrap_or(false),
        args: body.args,
        no_cache: q.no_cache.unwrap_or(false),
    };
    let run = s.sched.rerun_opts(id, TriggerKind::Rerun, opts).await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RerunQuery {
    /// Run jobs with `cache:` even when a successful job had the same inputs ("run anyway").
    no_cache: Option<bool>,
    /// Rerun only the jobs that did not succeed (and those that depend on them); carry the
    /// others over.
    failed: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/config/reload",
    responses(
        (status = 200, description = "the new config is in force", body = t::Reloaded),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 403, description = "administrators only (`forbidden`)", body = t::ErrorBody),
        (status = 422, description = "the new config is invalid; the old one stays (`invalid_config`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn reload(State(s): State<AppState>, user: CurrentUser) -> ApiResult<Json<t::Reloaded>> {
    Access::of(&s, &user).await?.require_admin()?;
    reload_summary(&s).await.map(Json)
}

/// Administrators enable or disable a task at runtime (kept in the store, over the config).
#[utoipa::path(post, path = "/api/v1/tasks/{name}/enabled",
    params(("name" = String, Path, description = "task name")),
    request_body = t::EnabledBody,
    responses(
        (status = 200, description = "the task's state now", body = t::EnabledState),
        (status = 400, description = "bad JSON body", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 403, description = "administrators only (`forbidden`)", body = t::ErrorBody),
        (status = 404, description = "no such task, or hidden (`unknown_target`)", body = t::ErrorBody),
        (status = 415, description = "the body is not JSON", body = t::ErrorBody),
        (status = 422, description = "the JSON body does not fit (`bad_request`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn set_enabled(
    State(s): State<AppState>,
    user: CurrentUser,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<t::EnabledBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<t::EnabledState>> {
    let Path(name) = name?;
    let enabled = set_target_enabled(&s, &user, TargetKind::Task, &name, body).await?;
    Ok(Json(t::EnabledState {
        task: name,
        enabled,
    }))
}

/// Administrators enable or disable a pipeline at runtime (kept in the store, over the
/// config), as `POST /tasks/{name}/enabled` does a task.
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/enabled",
    params(("name" = String, Path, description = "pipeline name")),
    request_body = t::EnabledBody,
    responses(
        (status = 200, description = "the pipeline's state now", body = t::PipelineEnabledState),
        (status = 400, description = "bad JSON body", body = t::ErrorBody),
        (status = 401, description = "no or bad credentials", body = t::ErrorBody),
        (status = 403, description = "administrators only (`forbidden`)", body = t::ErrorBody),
        (status = 404, description = "no such pipeline, or hidden (`unknown_target`)", body = t::ErrorBody),
        (status = 415, description = "the body is not JSON", body = t::ErrorBody),
        (status = 422, description = "the JSON body does not fit (`bad_request`)", body = t::ErrorBody),
        (status = 503, description = "the scheduler is stopping", body = t::ErrorBody)
    )
)]
async fn set_pipeline_enabled(
    State(s): State<AppState>,
    user: CurrentUser,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<t::EnabledBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<t::PipelineEnabledState>> {
    let Path(name) = name?;
    let enabled = set_target_enabled(&s, &user, TargetKind::Pipeline, &name, body).await?;
    Ok(Json(t::PipelineEnabledState {
        pipeline: name,
        enabled,
    }))
}

/// The one path of both routes above: a target the caller may not see is unknown (404) before
/// the administrator check (403); the change is logged with who made it. Answers whether the
/// target is enabled now.
async fn set_target_enabled(
    s: &AppState,
    user: &CurrentUser,
    kind: TargetKind,
    name: &str,
    body: Result<Json<t::EnabledBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<bool> {
    let a = Access::of(s, user).await?;
    if !a.can_see(kind, name) {
        return Err(baton_sched::SchedError::UnknownTarget(name.to_owned()).into());
    }
    a.require_admin()?;
    let Json(body) = body?;
    s.sched.set_target_enabled(kind, name, body.enabled).await?;
    let config = s.sched.config().await?;
    let enabled = match kind {
        TargetKind::Task => config.tasks.get(name).is_some_and(|t| t.enabled),
        TargetKind::Pipeline => config.pipelines.get(name).is_some_and(|p| p.enabled),
    };
    log_enabled_change(user.principal.name(), kind, name, body.enabled, enabled);
    Ok(enabled)
}

/// The OpenAPI 3 document of the routes above, generated from `api_types`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Baton API",
        description = "Every route takes `Authorization: Bearer <token>` (a `baton token create` \
            token, or a JWT when `server.jwt_secret` is set) or a session cookie. Errors are \
            `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        tasks, pipelines, workers, queue, trigger_task, trigger_pipeline, list_runs, get_run,
        wait_run, cancel, approve, rerun, reload, set_enabled, set_pipeline_enabled,
        crate::repos::list,
        crate::results::get_results, crate::cache::job_cache, crate::archive::list,
        crate::archive::tar_gz, crate::logs::marks::marks
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the bearer scheme and requires it on every route.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

/// `GET /api/v1/openapi.json`: served without credentials (it describes this version of
/// Baton, not this server's tasks or runs).
pub(crate) fn public_routes() -> Router<AppState> {
    let doc = std::sync::Arc::new(openapi_json());
    Router::new().route(
        "/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    (*doc).clone(),
                )
            }
        }),
    )
}
