//! What the JSON API and the web UI both do, in one place so that neither imports the other:
//! the scheduler's snapshot as a caller may see it, the runs list's commit filter, reloading
//! the config, and the audit line of an `enabled` override. `api` and `ui` build on this
//! module; it imports neither.

use axum::http::StatusCode;
use baton_core::run::TargetKind;

use crate::api_types as t;
use crate::auth::{Access, CurrentUser};
use crate::{ApiError, AppState};

/// Workers and queue as `user` may see them: runs of targets they cannot see are hidden.
pub(crate) async fn visible_snapshot(
    s: &AppState,
    user: &CurrentUser,
) -> Result<baton_sched::Snapshot, ApiError> {
    let a = Access::of(s, user).await?;
    let mut snap = s.sched.snapshot().await?;
    if a.is_admin() {
        return Ok(snap);
    }
    snap.queue.retain(|q| a.can_see_name(&q.target));
    snap.next_fire
        .retain(|t, _| a.can_see_name(t.split('@').next().unwrap_or(t)));
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

/// A commit filter: empty means none; else 1 to 40 hex digits, lowercased.
pub(crate) fn commit_prefix(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > 40 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "commit {text:?} is not a commit sha or its prefix (use 1 to 40 hex digits)"
        ));
    }
    Ok(Some(text.to_ascii_lowercase()))
}

/// [`reload_summary`] as JSON, for the UI's reload form.
pub(crate) async fn reload_config(s: &AppState) -> Result<serde_json::Value, ApiError> {
    let summary = reload_summary(s).await?;
    serde_json::to_value(summary).map_err(|e| ApiError::internal(e.to_string()))
}

/// Loads the config again and swaps it in; `422` with the diagnostics when it is invalid.
pub(crate) async fn reload_summary(s: &AppState) -> Result<t::Reloaded, ApiError> {
    let loader = s.load_config.clone();
    let loaded = tokio::task::spawn_blocking(move || loader())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match loaded {
        Ok(config) => {
            let summary = t::Reloaded {
                reloaded: true,
                tasks: config.tasks.len(),
                pipelines: config.pipelines.len(),
            };
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

/// The audit line of an `enabled` override, from the API or the UI: who set what.
pub(crate) fn log_enabled_change(
    who: &str,
    kind: TargetKind,
    name: &str,
    value: Option<bool>,
    enabled: bool,
) {
    let set = match value {
        Some(true) => "enabled",
        Some(false) => "disabled",
        None => "set to follow its config",
    };
    tracing::info!(
        user = who,
        kind = kind.as_str(),
        target = name,
        enabled,
        "{} {name} {set} by {who}",
        kind.as_str()
    );
}
