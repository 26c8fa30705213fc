//! Operating the server, for administrators: pause and resume dispatch (to one queue or to
//! all), and drain (pause everything, let running jobs end, then stop the server) for upgrades.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Access, CurrentUser};
use crate::{ApiError, AppState};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueBody {
    /// One queue; absent: every queue.
    #[serde(default)]
    queue: Option<String>,
}

async fn set(st: &AppState, user: &CurrentUser, body: QueueBody, paused: bool) -> ApiResult {
    Access::of(st, user).await?.require_admin()?;
    if body.queue.as_deref().is_some_and(|q| q.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "\"queue\" must not be empty (leave it out for every queue)",
        ));
    }
    let now = st.sched.set_paused(body.queue, paused).await?;
    Ok((StatusCode::OK, Json(json!({ "paused": now }))))
}

type ApiResult = Result<(StatusCode, Json<Value>), ApiError>;

/// `POST /api/v1/pause` `{"queue": "gpu"}` (or `{}` for every queue).
async fn pause(State(st): State<AppState>, user: CurrentUser, body: Json<QueueBody>) -> ApiResult {
    set(&st, &user, body.0, true).await
}

/// `POST /api/v1/resume`, the same body.
async fn resume(State(st): State<AppState>, user: CurrentUser, body: Json<QueueBody>) -> ApiResult {
    set(&st, &user, body.0, false).await
}

/// `GET /api/v1/paused`.
async fn paused(State(st): State<AppState>, user: CurrentUser) -> ApiResult {
    Access::of(&st, &user).await?.require_admin()?;
    let snap = st.sched.snapshot().await?;
    Ok((StatusCode::OK, Json(json!({ "paused": snap.paused }))))
}

/// `POST /api/v1/drain`: pauses every queue and answers `202` at once with how many jobs are
/// running; the server stops (as on SIGINT) once they have all ended.
async fn drain(State(st): State<AppState>, user: CurrentUser) -> ApiResult {
    Access::of(&st, &user).await?.require_admin()?;
    st.sched.set_paused(None, true).await?;
    let snap = st.sched.snapshot().await?;
    let running = snap.workers.iter().filter(|w| w.state == "busy").count();
    tracing::info!(
        running,
        "draining: no new jobs start; the server stops when the running ones end"
    );
    let (sched, stop) = (st.sched.clone(), st.stop.clone());
    tokio::spawn(async move {
        if sched.drain(None).await.is_ok() {
            tracing::info!("drained: every job has ended; stopping");
            stop.cancel();
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "draining": true, "running": running })),
    ))
}

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/paused", get(paused))
        .route("/drain", post(drain))
}
