//! The change feed (`GET /api/v1/events`): what the UI's lists refresh on.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Access, CurrentUser};
use crate::{ApiError, AppState};

/// SSE: a `change` event whenever runs the caller may see change state, at most about once a
/// second, carrying `{"runs": [ids]}` (and `"config": true` when the config in force changed);
/// the UI refreshes its lists on it. Changes to runs the caller may not see send nothing: not
/// even their timing reaches them.
pub(super) async fn events(
    State(s): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    // Subscribe before anything else, so no change after the answer's headers is missed.
    let rx = s.sched.subscribe();
    let access = Access::of(&s, &user).await?;
    let events = futures::stream::unfold((rx, access), |(mut rx, mut access)| async move {
        let mut runs = std::collections::BTreeSet::new();
        let mut config = false;
        let mut deadline = None;
        loop {
            let next = match deadline {
                None => rx.recv().await,
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => break, // the window is over: tell what gathered
                },
            };
            match next {
                Ok(batch) => {
                    if let Some(c) = &batch.config {
                        access = Access {
                            config: c.clone(),
                            who: access.who.clone(),
                        };
                        config = true;
                    }
                    runs.extend(
                        batch
                            .runs
                            .iter()
                            .filter(|r| access.can_see(r.kind, &r.target))
                            .map(|r| r.id),
                    );
                }
                // Fell behind: what was missed is unknown, so only an administrator (who may
                // see everything) is told to refresh.
                Err(RecvError::Lagged(_)) => config |= access.is_admin(),
                Err(RecvError::Closed) => return None,
            }
            if deadline.is_none() && (config || !runs.is_empty()) {
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            }
        }
        let mut data = json!({ "runs": runs });
        if config {
            data["config"] = json!(true);
        }
        let ev = Event::default().event("change").data(data.to_string());
        Some((Ok::<_, Infallible>(ev), (rx, access)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
