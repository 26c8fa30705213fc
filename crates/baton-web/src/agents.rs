//! The agent protocol: join, long-poll, log upload by offset, artifact upload, exit report.
//!
//! Agents authenticate with their own credential (a token named `agent:<name>`, made when the
//! agent joins with any API token, and revoked when the agent is disabled). Such a credential is
//! good for these routes only; the rest of the API refuses it.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use baton_exec::ExitRecord;
use baton_exec::agent::{AgentHub, AgentInfo, ImageAnswer, PollBody, append_at};

use crate::auth::{Access, CREDENTIAL_PREFIX, CurrentUser};
use crate::{ApiError, AppState};

/// Routes the agents call (their own auth).
pub(crate) fn agent_routes() -> Router<AppState> {
    Router::new()
        .route("/agents/join", post(join))
        .route("/agents/leave", post(leave))
        .route("/agents/poll", post(poll))
        .route("/agents/images/{id}", post(image_answer))
        .route("/agents/jobs/{job}/{attempt}/log", post(log))
        .route(
            "/agents/jobs/{job}/{attempt}/artifacts/{*path}",
            // Artifacts have no size cap: the body streams to disk, never into memory.
            put(artifact).layer(DefaultBodyLimit::disable()),
        )
        .route("/agents/jobs/{job}/{attempt}/exit", post(exit))
}

/// Routes for people (behind the normal API auth).
pub(crate) fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/agents", get(list))
        .route("/pools", get(crate::pools::list))
        .route("/agents/{name}/disable", post(disable))
        .route("/agents/{name}/enable", post(enable))
}

fn hub(s: &AppState) -> Result<&std::sync::Arc<AgentHub>, ApiError> {
    s.agents.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "agents_disabled",
            "this server does not accept agents",
        )
    })
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token",
            )
        })
}

/// The agent a credential belongs to. Verified through the store's cache of recently verified
/// tokens (an agent calls on every poll, log chunk and exit): a revocation through this server
/// (disable, leave) takes effect at once, one by another process (`baton token revoke`) within
/// `baton_store::TOKEN_CACHE_TTL`.
pub(crate) async fn agent_of(s: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = bearer(headers)?;
    let info = s.store.verify_token_cached(token).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked agent credential (disabled agents lose theirs; join again with a join token)",
        )
    })?;
    info.name
        .strip_prefix(CREDENTIAL_PREFIX)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "not_an_agent",
                "this token is not an agent credential (hint: agents join first with POST /api/v1/agents/join)",
            )
        })
}

fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    name: String,
    queues: Vec<String>,
    slots: u32,
}

async fn join(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let hub = hub(&s)?.clone();
    let token = bearer(&headers)?;
    let by = s.store.verify_token(token).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked join token",
        )
    })?;
    // An agent receives jobs (and their secrets) of every task on its queues: only operators
    // and administrators may let one join.
    let b: JoinBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid join request: {e}")))?;
    if let Some(rest) = by.name.strip_prefix(baton_store::POOL_JOIN_PREFIX) {
        return join_pool(&s, &hub, token, rest, &b).await;
    }
    if let Some(user) = &by.user {
        let config = s.sched.config().await?;
        if !config.administrators.iter().any(|a| a == user) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only administrators (or operator tokens) may let agents join",
            ));
        }
    }
    if by.name.starts_with(CREDENTIAL_PREFIX) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_join_token",
            "an agent credential cannot make another agent; use a join token (baton token create --name agent-join)",
        ));
    }
    if !valid_agent_name(&b.name) {
        return Err(ApiError::bad_request(
            "agent names are 1-64 letters, digits, '-', '_' or '.'",
        ));
    }
    if b.slots == 0 || b.slots > 256 || b.queues.is_empty() {
        return Err(ApiError::bad_request(
            "an agent needs at least one queue and 1-256 slots",
        ));
    }
    let credential = s
        .store
        .create_token(&format!("{CREDENTIAL_PREFIX}{}", b.name))
        .await?;
    hub.set_disabled(&b.name, false);
    hub.register(
        &b.name,
        AgentInfo {
            queues: b.queues,
            slots: b.slots,
        },
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": b.name, "credential": credential})),
    ))
}

/// A join with a pool's one-time token (`pool-join:POOL:AGENT`): the agent must be the one
/// the token was made for; it gets the pool's queues and slots whatever it asks for, and the
/// token is used up.
async fn join_pool(
    s: &AppState,
    hub: &std::sync::Arc<AgentHub>,
    token: &str,
    names: &str,
    b: &JoinBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (pool, agent) = names.split_once(':').unwrap_or((names, ""));
    if b.name != agent {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_agent",
            format!(
                "this join token is for agent {agent:?} of pool {pool:?}, not {:?} (hint: start the agent with --name \"$BATON_AGENT_NAME\")",
                b.name
            ),
        ));
    }
    let config = s.sched.config().await?;
    let Some(def) = config.pools.get(pool) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_such_pool",
            format!("pool {pool:?} is no longer in the config"),
        ));
    };
    // Used up here: a second join with the same token finds nothing.
    if s.store.consume_pool_token(token).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this pool's join token was already used or revoked (each is good for one join)",
        ));
    }
    let credential = s
        .store
        .create_token(&format!("{CREDENTIAL_PREFIX}{agent}"))
        .await?;
    s.pools.joined(agent);
    hub.register_pool(
        agent,
        pool,
        AgentInfo {
            queues: def.queues.clone(),
            slots: def.slots,
        },
    );
    tracing::info!(pool, agent, "a pool's agent joined");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": agent,
            "credential": credential,
            "pool": pool,
            "queues": def.queues,
            "slots": def.slots,
            "idle_timeout_secs": def.idle_timeout.as_secs(),
        })),
    ))
}

/// An agent leaves (a pool's agent after its idle timeout): its credential is revoked, and a
/// pool's agent is removed with the pool's `down`. Refused while it has work to report.
async fn leave(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let hub = hub(&s)?.clone();
    let name = agent_of(&s, &headers).await?;
    let pool = hub
        .leave(&name)
        .map_err(|why| ApiError::new(StatusCode::CONFLICT, "agent_busy", why))?;
    s.store
        .revoke_tokens_named(&format!("{CREDENTIAL_PREFIX}{name}"))
        .await?;
    tracing::info!(agent = %name, pool = pool.as_deref().unwrap_or(""), "agent left");
    if let Some(pool) = &pool {
        crate::pools::agent_left(&s, pool.clone(), name.clone());
    }
    Ok(Json(json!({"name": name, "left": true, "pool": pool})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    /// Seconds to wait for work (default 25, at most 60).
    wait: Option<u64>,
}

async fn poll(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PollQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let hub = hub(&s)?.clone();
    let name = agent_of(&s, &headers).await?;
    let body: PollBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid poll body: {e}")))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(25).min(60));
    let resp = hub.poll(&name, body, wait).await;
    Ok(Json(serde_json::to_value(resp).unwrap_or_default()))
}

/// An agent's answer to an image question of its last polls (the id its engine gives an image,
/// for the CI cache of a job about to be handed to it).
async fn image_answer(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<u64>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = p?;
    let hub = hub(&s)?.clone();
    let agent = agent_of(&s, &headers).await?;
    let answer: ImageAnswer = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid image answer: {e}")))?;
    if !hub.answer_image(&agent, id, answer) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_question",
            format!(
                "agent {agent} was asked no image question {id} that is still waiting (answered already, or its job went)"
            ),
        ));
    }
    Ok(Json(json!({"recorded": true})))
}

/// Checks that job `job`/`attempt` is assigned to `agent` and returns its folder.
pub(crate) async fn job_dir(
    s: &AppState,
    agent: &str,
    job: i64,
    attempt: u32,
) -> Result<std::path::PathBuf, ApiError> {
    let worker = s.store.job_worker(job, attempt).await?;
    match worker.as_deref().and_then(AgentHub::agent_of) {
        Some(a) if a == agent => Ok(s.folders.job_dir(job, attempt)),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_assigned",
            format!("job {job} attempt {attempt} is not assigned to agent {agent}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    offset: u64,
}

async fn log(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(i64, u32)>, PathRejection>,
    q: Result<Query<LogQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path((job, attempt)) = p?;
    let Query(q) = q?;
    let agent = agent_of(&s, &headers).await?;
    let dir = job_dir(&s, &agent, job, attempt).await?;
    let path = dir.join(baton_exec::layout::LOG_FILE);
    // The agent's own index of these bytes (an older agent sends none).
    let marks = match headers.get(baton_exec::logidx::MARKS_HEADER) {
        None => Vec::new(),
        Some(v) => v
            .to_str()
            .map_err(|_| "not ASCII".to_owned())
            .and_then(baton_exec::logidx::decode_marks)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "bad {} header: {e}",
                    baton_exec::logidx::MARKS_HEADER
                ))
            })?,
    };
    let res = tokio::task::spawn_blocking(move || append_at(&path, q.offset, &body, &marks))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot append to the log: {e}")))?;
    match res {
        Ok(size) => Ok(Json(json!({"size": size}))),
        Err(size) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "log_gap",
            format!(
                "offset {} is past the end of the log; resend from {size}",
                q.offset
            ),
        )),
    }
}

/// A relative artifact path with no `..`, no absolute part and no empty segment.
fn safe_relative(path: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(path);
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(part) => out.push(part),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

async fn artifact(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(i64, u32, String)>, PathRejection>,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let Path((job, attempt, path)) = p?;
    let agent = agent_of(&s, &headers).await?;
    let dir = job_dir(&s, &agent, job, attempt).await?;
    let rel = safe_relative(&path).ok_or_else(|| {
        ApiError::bad_request(format!(
            "artifact path {path:?} must stay inside the run's folder"
        ))
    })?;
    let dest = dir.join(baton_exec::layout::OUT_DIR).join(&rel);
    let n = store_stream(&dest, body).await.map_err(|e| {
        tracing::warn!(job, attempt, artifact = %rel.display(), "cannot store an agent's artifact: {e}");
        ApiError::internal(format!("cannot store the artifact {}", rel.display()))
    })?;
    Ok(Json(json!({"stored": rel, "bytes": n})))
}

/// Streams `body` into `dest` through `dest.part` (renamed once complete and synced), so a
/// dropped upload never leaves a truncated artifact under its real name. Returns the size.
async fn store_stream(dest: &std::path::Path, body: axum::body::Body) -> std::io::Result<u64> {
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut part = dest.as_os_str().to_owned();
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    let mut file = tokio::fs::File::create(&part).await?;
    let mut stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        file.write_all(&chunk).await?;
        n += chunk.len() as u64;
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&part, dest).await?;
    Ok(n)
}

async fn exit(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(i64, u32)>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path((job, attempt)) = p?;
    let hub = hub(&s)?.clone();
    let agent = agent_of(&s, &headers).await?;
    let dir = job_dir(&s, &agent, job, attempt).await?;
    let rec: ExitRecord = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid exit record: {e}")))?;
    tokio::task::spawn_blocking(move || hub.report_exit(&dir, &rec))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({"recorded": true})))
}

async fn list(State(s): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    Access::of(&s, &user).await?.require_admin()?;
    Ok(Json(json!({"agents": hub(&s)?.agents()})))
}

async fn set_disabled(
    s: &AppState,
    user: &CurrentUser,
    name: &str,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    Access::of(s, user).await?.require_admin()?;
    let hub = hub(s)?;
    if !hub.set_disabled(name, disabled) {
        return Err(ApiError::not_found(format!("no agent named {name:?}")));
    }
    if disabled {
        s.store
            .revoke_tokens_named(&format!("{CREDENTIAL_PREFIX}{name}"))
            .await?;
    }
    Ok(Json(json!({"name": name, "disabled": disabled})))
}

async fn disable(
    State(s): State<AppState>,
    user: CurrentUser,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = p?;
    set_disabled(&s, &user, &name, true).await
}

async fn enable(
    State(s): State<AppState>,
    user: CurrentUser,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = p?;
    set_disabled(&s, &user, &name, false).await
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn artifact_paths_cannot_escape() {
        assert!(safe_relative("a/b.txt").is_some());
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "./"] {
            assert!(safe_relative(bad).is_none(), "{bad:?}");
        }
    }
}
