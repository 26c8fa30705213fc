//! Baton's HTTP interface: the JSON API under `/api/v1`, live logs over Server-Sent Events, the
//! server-rendered web UI at `/`, and authentication (tokens, JWTs, session cookies) with the
//! access rules of `baton_core::access` applied to every route.
//!
//! Architecture Invariant: this crate holds no scheduling state. It reads runs from the store and
//! sends every change to the scheduler through its handle. Only this crate knows HTTP; the API's
//! JSON shapes are the types of [`api_types`], which the CLI reads too.

mod actions;
mod agents;
pub mod ansi;
mod api;
pub mod api_types;
mod archive;
pub mod artifact_store;
mod artifacts;
mod auth;
mod badge;
mod cache;
mod callbacks;
pub mod cluster_key;
mod code;
mod creds;
mod error;
mod forge_http;
mod guard;
mod headers;
mod hooks;
mod http_client;
pub mod local_page;
pub mod local_site;
mod login;
mod logs;
pub mod metrics;
pub mod notify;
mod ops;
mod outbox;
pub mod pending;
pub mod pools;
mod range;
mod repo_http;
mod repos;
mod results;
mod session;
mod sso;
pub mod standby;
pub mod statuses;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use baton_core::config::Config;
use baton_sched::SchedHandle;
use baton_store::{RunFolders, Store};

pub use api::openapi_json;
pub use artifact_store::ArtifactStore;
pub use auth::CurrentUser;
pub use cluster_key::{ClusterKey, ClusterKeyError};
pub use creds::{ForgeTokens, spawn_sweeper};
pub use error::ApiError;
pub use guard::LoginGuard;
pub use hooks::{resume_deliveries, resume_imports};
pub use notify::spawn_notifier;
pub use pools::start as start_pool_scaler;
pub use repos::poll::start as start_polling;
pub use repos::schedules::load_all as load_repo_schedules;
pub use sso::Sso;
pub use statuses::{Statuses, spawn_sender};

/// Starts the results collector: each ended job's reports become its result tree, and each
/// ended run's `report.html` is stored once; with an artifact bucket, the retries of pending
/// uploads too.
pub fn start_results(state: &AppState) {
    let store_report: results::StoreReport = |s, run| Box::pin(ui::store_report(s, run));
    results::start_collector(state, store_report);
    results::start_retries(state, store_report);
}

/// Loads and validates the config from wherever the server was told; `Err` holds the
/// diagnostics, one per line.
pub type ConfigLoader = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pub sched: SchedHandle,
    pub store: Store,
    pub folders: RunFolders,
    /// HS256 secret for prunner-style JWTs; `None` accepts only Baton tokens.
    pub jwt_secret: Option<String>,
    pub load_config: ConfigLoader,
    /// Pull-mode agents, when the server accepts them.
    pub agents: Option<Arc<baton_exec::agent::AgentHub>>,
    /// Where job-end callbacks from SSH workers are delivered.
    pub callbacks: baton_exec::CallbackHub,
    /// Single sign-on flows in progress.
    pub sso: Sso,
    /// The base URL browsers reach the server at, from the listen address; `server.public_url`
    /// overrides it.
    pub public_url: String,
    /// The password login's flood defences (signing key, hashing slots, failure backoff).
    pub login: LoginGuard,
    /// The commit-status outbox (`Statuses::report_commit` sets a status with no run).
    pub statuses: Statuses,
    /// What `GET /metrics` reports.
    pub metrics: Arc<metrics::Metrics>,
    /// Cancelled to stop the server gracefully (a finished drain); running jobs keep going.
    pub stop: tokio_util::sync::CancellationToken,
    /// `server.artifacts.s3`: the bucket ended jobs' artifacts go to; `None`: the data dir.
    pub artifact_store: Option<Arc<ArtifactStore>>,
    /// Autoscaled agent pools: what the scaler last saw and the agents it started.
    pub pools: Arc<pools::Pools>,
    /// This server's id among the servers that share its database (`/healthz` names it).
    pub server_id: Arc<str>,
    /// The key standbys sign the client's address with (`cluster_key`).
    pub cluster_key: Arc<ClusterKey>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = api::routes()
        .merge(logs::routes())
        .merge(agents::admin_routes())
        .merge(hooks::api_routes())
        .merge(repos::api_routes())
        .merge(ops::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_user,
        ));
    Router::new()
        .route(
            "/healthz",
            axum::routing::get(|State(s): State<AppState>| async move {
                axum::Json(
                    serde_json::json!({"status": "ok", "role": "active", "server": &*s.server_id}),
                )
            }),
        )
        .nest(
            "/api/v1",
            api.merge(agents::agent_routes())
                .merge(api::public_routes()),
        )
        .merge(
            metrics::routes().layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_user,
            )),
        )
        .merge(callbacks::routes())
        .merge(repo_http::routes())
        .merge(hooks::routes())
        .merge(badge::routes())
        .merge(ui::routes())
        .merge(login::routes())
        .merge(sso::routes())
        .fallback(
            |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                // Browsers (which ask for HTML) get the 404 page; API clients get JSON.
                let wants_html = headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/html"));
                if wants_html && !uri.path().starts_with("/api/") {
                    ui::not_found_page()
                } else {
                    ApiError::not_found("no such endpoint (the API lives under /api/v1)")
                        .into_response()
                }
            },
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ui::error_nav,
        ))
        .layer(axum::middleware::map_response(headers::security))
        // The client's address: the peer's, or the one a standby vouched for.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster_key::client_addr,
        ))
        // Live log viewers of a job share one watcher (made per router: one per server).
        .layer(axum::Extension(logs::LogHub::default()))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method (see the API table in README.md)",
    )
}
