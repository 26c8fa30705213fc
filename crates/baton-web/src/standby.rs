//! A standby server. Several `baton serve` processes can share one database; the one that holds
//! the scheduler lease is active (it runs the scheduler and everything beside it), and each of
//! the others is a standby until the lease lapses: it takes every request it is sent (API, UI,
//! webhooks, agents' long polls, live logs) and forwards it, as it came, to the active server at
//! the URL the lease records, streaming both ways. So any server may take any traffic, and one
//! server decides. A standby answers only `/healthz` itself. The client's address goes along
//! in `X-Baton-Forwarded-For`, signed with the cluster key (`crate::cluster_key`), so the active
//! server's sign-in backoff counts the client, not the standby.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_store::{SCHEDULER_LEASE, Store};
use chrono::Utc;
use tokio::sync::Mutex;

use crate::cluster_key::{CLIENT_HEADER, ClusterKey, now_secs};
use crate::error::ApiError;

/// How long a standby trusts the active server's URL it read before reading it again.
const ACTIVE_FOR: Duration = Duration::from_secs(1);

/// A standby's view of the cluster: the database, its own id, and the active server's URL.
pub struct Standby {
    store: Store,
    id: String,
    /// Signs the client's address for the active server (`crate::cluster_key`).
    key: Arc<ClusterKey>,
    client: reqwest::Client,
    /// The active server's URL and when it was read (`None`: read it again).
    active: Mutex<Option<(String, Instant)>>,
}

impl Standby {
    pub fn new(store: Store, id: String, key: Arc<ClusterKey>) -> Standby {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // Redirects (a sign-in's 303) go back to the client as they are.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS settings");
        Standby {
            store,
            id,
            key,
            client,
            active: Mutex::new(None),
        }
    }

    /// The active server's URL, or why there is none to forward to.
    async fn active_url(&self) -> Result<String, String> {
        let mut active = self.active.lock().await;
        if let Some((url, at)) = &*active
            && at.elapsed() < ACTIVE_FOR
        {
            return Ok(url.clone());
        }
        *active = None;
        let lease = self
            .store
            .lease(SCHEDULER_LEASE)
            .await
            .map_err(|e| format!("cannot read which server is active: {e}"))?;
        match lease {
            Some(l) if l.holder == self.id => {
                Err("this server is taking over the scheduler lease; retry in a moment".to_owned())
            }
            Some(l) if l.expires_at > Utc::now() => {
                *active = Some((l.url.clone(), Instant::now()));
                Ok(l.url)
            }
            Some(l) => Err(format!(
                "no server is active: server {} stopped renewing its lease at {}; a standby \
                 takes over within moments",
                l.holder,
                l.expires_at.to_rfc3339()
            )),
            None => Err("no server is active yet".to_owned()),
        }
    }

    /// The active server did not answer: read its URL again next time.
    async fn forget(&self) {
        *self.active.lock().await = None;
    }
}

/// The standby's whole HTTP application: `/healthz`, and everything else forwarded.
pub fn standby_router(standby: Arc<Standby>) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(health))
        .fallback(forward)
        .with_state(standby)
}

/// A standby's health: up, and which server it forwards to.
async fn health(State(s): State<Arc<Standby>>) -> Response {
    let active = s.active_url().await.ok();
    axum::Json(serde_json::json!({"status": "standby", "server": s.id, "active": active}))
        .into_response()
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and `Host`.
fn per_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

/// Sends the request to the active server and streams its answer back.
async fn forward(
    State(s): State<Arc<Standby>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let unavailable = |why: String| {
        let mut r =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_active_server", why).into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    let base = match s.active_url().await {
        Ok(url) => url,
        Err(why) => return unavailable(why),
    };
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = s.client.request(
        parts.method.clone(),
        format!("{}{path}", base.trim_end_matches('/')),
    );
    for (name, value) in &parts.headers {
        // A client's own `X-Baton-Forwarded-For` is dropped: only this standby's signed one goes on.
        if !per_hop(name) && *name != CLIENT_HEADER {
            out = out.header(name, value);
        }
    }
    out = out
        .header(CLIENT_HEADER, s.key.sign(peer.ip(), now_secs()))
        .header("x-forwarded-for", peer.ip().to_string())
        .header("x-baton-forwarded-by", s.id.as_str())
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            s.forget().await;
            let mut r = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "active_server_unreachable",
                format!(
                    "this standby could not reach the active server at {base}: {e}; retry (if \
                     that server is gone, a standby takes over once its lease lapses)"
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let mut back = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !per_hop(name) {
            back = back.header(name, value);
        }
    }
    back.body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|e| unavailable(format!("cannot pass the active server's answer on: {e}")))
}
