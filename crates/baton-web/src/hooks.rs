//! Webhooks: `POST /hooks/github|gitea|forgejo|gitlab`.
//!
//! No session or token: the forge's signature over the raw body is the authentication. The
//! delivery is parsed only to find which repository of `repos:` it names (by any of its clone
//! URLs); nothing of it is used before it verified against that repository's secret. A bad or
//! missing signature is `401` and queues nothing; an unknown repository `404` (after the check
//! against `server.webhook_secret`, when set: a bad signature is `401`); a ping `200`; an
//! event that starts nothing `202` with why; a redelivery (same delivery id) answers with the
//! runs the first one started and starts nothing. Every delivery is recorded with its verdict.
//! A verified delivery is kept durably before it is processed (see `durable`): the answer waits
//! a few seconds for its runs, else is `202` "processing", and a restart finishes it.

mod durable;
pub(crate) mod import;
mod pr;
pub(crate) mod push;

pub use durable::resume as resume_deliveries;
pub use import::resume as resume_imports;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde_json::json;

use baton_core::config::{Config, RepoDef};
use baton_forge::{Event, EventKind, Forge, RefTarget};
use baton_store::{Claim, NewDelivery, PendingDelivery};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/hooks/{forge}", post(receive))
        .layer(DefaultBodyLimit::max(baton_forge::MAX_BODY_BYTES))
}

/// The repository forge `forge` sends for, among `repos:`, by any of the payload's URLs.
fn find_repo<'c>(config: &'c Config, forge: Forge, urls: &[String]) -> Option<&'c RepoDef> {
    use baton_core::config::Forge as F;
    config.repos.values().find(|r| {
        let same_forge = matches!(
            (r.forge, forge),
            (F::Github, Forge::GitHub)
                | (F::Gitea, Forge::Gitea)
                | (F::Forgejo, Forge::Forgejo)
                | (F::Gitlab, Forge::GitLab)
        );
        same_forge && urls.iter().any(|u| baton_forge::same_repo(u, &r.url))
    })
}

/// An answer and what is recorded of it.
pub(crate) struct Verdict {
    pub(crate) status: StatusCode,
    pub(crate) text: String,
    pub(crate) runs: Vec<i64>,
}

impl Verdict {
    pub(crate) fn new(status: StatusCode, text: impl Into<String>) -> Verdict {
        Verdict {
            status,
            text: text.into(),
            runs: Vec::new(),
        }
    }
}

/// `GET /api/v1/deliveries`: the latest webhook deliveries with their verdicts, for
/// administrators ("why didn't CI run?").
pub(crate) fn api_routes() -> Router<AppState> {
    Router::new().route("/deliveries", axum::routing::get(deliveries))
}

async fn deliveries(
    State(st): State<AppState>,
    user: crate::auth::CurrentUser,
) -> Result<axum::Json<serde_json::Value>, crate::ApiError> {
    crate::auth::Access::of(&st, &user).await?.require_admin()?;
    let list = st
        .store
        .list_deliveries(200)
        .await
        .map_err(|e| crate::ApiError::internal(e.to_string()))?;
    Ok(axum::Json(json!({ "deliveries": list })))
}

fn answer(status: StatusCode, verdict: &str, runs: &[i64], delivery: Option<i64>) -> Response {
    let body = json!({"verdict": verdict, "runs": runs, "delivery": delivery});
    (status, axum::Json(body)).into_response()
}

async fn receive(
    State(st): State<AppState>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(forge) = Forge::from_name(&forge) else {
        return answer(
            StatusCode::NOT_FOUND,
            &format!(
                "no webhook endpoint for forge {forge:?} (expected github, gitea, forgejo or gitlab)"
            ),
            &[],
            None,
        );
    };
    let hdrs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let config = match st.sched.config().await {
        Ok(c) => c,
        Err(e) => return answer(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), &[], None),
    };
    let mut record = NewDelivery {
        received_at: Utc::now(),
        forge: forge.as_str().to_owned(),
        event: event_header(forge, &hdrs),
        ..NewDelivery::default()
    };
    // Read (not trusted) only to find whose secret verifies it.
    let unverified = match baton_forge::parse(forge, &hdrs, &body) {
        Ok(ev) => ev,
        Err(e) => {
            let v = Verdict::new(StatusCode::BAD_REQUEST, e.to_string());
            return refuse(&st, record, v).await;
        }
    };
    let Some(repo) = find_repo(&config, forge, &unverified.repo.urls) else {
        // With a forge-wide secret, only a delivery signed with it learns that the repository
        // is unknown; anyone else gets 401, as for a known repository.
        if let Some(secret) = &config.server.webhook_secret
            && let Err(e @ baton_forge::HookError::Verify(_)) =
                baton_forge::receive(forge, &hdrs, &body, secret.value.expose().as_bytes())
        {
            let v = Verdict::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{e} (checked against server.webhook_secret: the repository is not in repos:)"
                ),
            );
            return refuse(&st, record, v).await;
        }
        let v = Verdict::new(
            StatusCode::NOT_FOUND,
            format!(
                "no repository in repos: with forge {forge} has any of the URLs {:?} (hint: add it to repos: with its url and secret)",
                unverified.repo.urls
            ),
        );
        return refuse(&st, record, v).await;
    };
    record.repo = Some(repo.name.clone());
    let secret = repo.secret.as_ref().map(|s| s.value.expose()).unwrap_or("");
    let event = match baton_forge::receive(forge, &hdrs, &body, secret.as_bytes()) {
        Ok(ev) => ev,
        Err(e) => {
            let status = match e {
                baton_forge::HookError::Verify(_) => StatusCode::UNAUTHORIZED,
                baton_forge::HookError::Parse(_) => StatusCode::BAD_REQUEST,
            };
            return refuse(&st, record, Verdict::new(status, e.to_string())).await;
        }
    };
    // Verified from here on.
    record.delivery = event.delivery.clone();
    match &event.kind {
        EventKind::Push(p) => {
            record.git_ref = Some(p.git_ref.clone());
            record.commit = Some(p.after.clone());
        }
        EventKind::PullRequest(pr) => {
            record.git_ref = Some(pr::head_ref(forge, pr.number));
            record.commit = Some(pr.head_sha.clone());
        }
        _ => {}
    }
    let since = prefetch(&st, &config, repo, &event).await;
    accept(&st, record, &repo.name, event, body, &hdrs, since).await
}

/// Starts fetching the mirror of `repo` for a verified push or pull request event, while the
/// delivery is kept and recorded (two fsyncs): processing then shares this fetch, which
/// started after the event arrived (the ticket says when). Only for a mirror this process has
/// set up already; `None` when nothing was started (processing fetches as usual).
async fn prefetch(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    event: &Event,
) -> Option<baton_git::FetchTicket> {
    let wanted = match &event.kind {
        EventKind::Push(p) => {
            !p.deleted
                && matches!(p.target, RefTarget::Branch(_) | RefTarget::Tag(_))
                && p.head_commit
                    .as_ref()
                    .is_none_or(|h| baton_forge::skip_ci(&h.message).is_none())
        }
        EventKind::PullRequest(_) => true,
        _ => false,
    };
    if !wanted {
        return None;
    }
    let env = baton_sched::git_env(config, repo).ok()?;
    let dir = st.folders.repo_mirror(&repo.name);
    let mirror = baton_git::Mirror::ready(&repo.url, &dir, env).await?;
    let ticket = mirror.ticket();
    // Its result is recorded by the processing that shares it.
    tokio::spawn(async move {
        let _ = mirror.fetch().await;
    });
    Some(ticket)
}

/// A verified delivery: kept durably, then processed in a task of its own; answers with its
/// runs when they start within [`ANSWER_WAIT`], else `202` "processing".
async fn accept(
    st: &AppState,
    mut record: NewDelivery,
    repo: &str,
    event: Event,
    body: Bytes,
    hdrs: &[(String, String)],
    since: Option<baton_git::FetchTicket>,
) -> Response {
    record.status_code = StatusCode::ACCEPTED.as_u16();
    record.verdict = "processing".into();
    let dir = st.folders.deliveries();
    let payload = match durable::keep_payload(dir.clone(), body).await {
        Ok(name) => name,
        Err(e) => {
            let text = format!(
                "could not keep the delivery's payload in {}: {e} (check the data directory's free space and permissions; the forge may redeliver)",
                dir.display()
            );
            return answer(StatusCode::SERVICE_UNAVAILABLE, &text, &[], None);
        }
    };
    record.pending = Some(PendingDelivery {
        payload: payload.clone(),
        headers: durable::kept_headers(hdrs),
    });
    let id = match st.store.claim_delivery(&record).await {
        Ok(Claim::New(id)) => id,
        Ok(Claim::Seen(first)) => {
            durable::drop_payload(&dir, &payload).await;
            if first.processing {
                return processing(first.id);
            }
            let text = format!(
                "redelivery of delivery {} (recorded as {}): started nothing new; first answer: {}",
                event.delivery.as_deref().unwrap_or_default(),
                first.id,
                first.verdict
            );
            return answer(StatusCode::OK, &text, &first.run_ids, Some(first.id));
        }
        Err(e) => {
            durable::drop_payload(&dir, &payload).await;
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("could not record the delivery: {e}"),
                &[],
                None,
            );
        }
    };
    // Accepted durably: processing goes on (or resumes after a restart) whatever the answer.
    let task = tokio::spawn(durable::process(
        st.clone(),
        id,
        repo.to_owned(),
        event,
        payload,
        since,
    ));
    match tokio::time::timeout(ANSWER_WAIT, task).await {
        Ok(Ok(v)) => answer(v.status, &v.text, &v.runs, Some(id)),
        Ok(Err(e)) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("processing the delivery failed: {e}"),
            &[],
            Some(id),
        ),
        Err(_) => processing(id),
    }
}

/// How long a webhook's answer waits for its processing (forges give up after about 10 s).
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `202`: accepted durably and still being processed; its runs will start once.
fn processing(id: i64) -> Response {
    let body = json!({
        "delivery": id,
        "status": "accepted",
        "detail": "processing",
        "verdict": "accepted: processing (see GET /api/v1/deliveries for the runs it starts)",
        "runs": [],
    });
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

/// Records a refused delivery (without its delivery id, which a forged one must not take).
async fn refuse(st: &AppState, mut record: NewDelivery, v: Verdict) -> Response {
    record.status_code = v.status.as_u16();
    record.verdict.clone_from(&v.text);
    let id = match st.store.claim_delivery(&record).await {
        Ok(Claim::New(id)) => Some(id),
        _ => None,
    };
    answer(v.status, &v.text, &[], id)
}

fn event_header(forge: Forge, hdrs: &[(String, String)]) -> String {
    let name = match forge {
        Forge::GitHub => "X-GitHub-Event",
        Forge::Gitea => "X-Gitea-Event",
        Forge::Forgejo => "X-Forgejo-Event",
        Forge::GitLab => "X-Gitlab-Event",
    };
    baton_forge::Headers::get(hdrs, name)
        .unwrap_or_default()
        .chars()
        .take(100)
        .collect()
}

/// What a verified event does (`since`: when it arrived, if a fetch of the mirror was started
/// for it then).
async fn handle(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    event: &Event,
    since: Option<baton_git::FetchTicket>,
) -> Verdict {
    let p = match &event.kind {
        EventKind::Ping => return Verdict::new(StatusCode::OK, "pong: the webhook works"),
        EventKind::Other(name) => {
            return Verdict::new(StatusCode::ACCEPTED, format!("event {name} starts nothing"));
        }
        EventKind::PullRequest(pr) => return pr::build(st, config, repo, event, pr, since).await,
        EventKind::Push(p) => p,
    };
    if let RefTarget::Other(r) = &p.target
        && baton_git::RUN_REF_PREFIXES.iter().any(|x| r.starts_with(x))
    {
        return import::from_push(st, config, repo, r, p.deleted).await;
    }
    let (kind, name) = match &p.target {
        RefTarget::Branch(b) => ("branch", b),
        RefTarget::Tag(t) => ("tag", t),
        RefTarget::Other(r) => {
            return Verdict::new(
                StatusCode::ACCEPTED,
                format!("a push of {r} starts nothing (only branches and tags)"),
            );
        }
    };
    if p.deleted {
        return Verdict::new(
            StatusCode::ACCEPTED,
            format!("the push deletes {kind} {name}: starts nothing"),
        );
    }
    if let Some(head) = &p.head_commit
        && let Some(marker) = baton_forge::skip_ci(&head.message)
    {
        return Verdict::new(
            StatusCode::ACCEPTED,
            format!("the head commit's message contains {marker}: starts nothing"),
        );
    }
    if kind == "branch"
        && !repo.branches.is_empty()
        && let Ok(patterns) = baton_core::on::Patterns::new(&repo.branches)
        && !patterns.is_match(name)
    {
        return Verdict::new(
            StatusCode::ACCEPTED,
            format!(
                "branch {name} does not match repos.{}.branches {patterns}: starts nothing",
                repo.name
            ),
        );
    }
    push::build(st, config, repo, event, p, since).await
}
