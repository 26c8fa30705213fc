//! Administration from the UI: reloading the config, enabling and disabling tasks and
//! pipelines.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect};

use baton_core::run::TargetKind;

use super::page::{ErrorTpl, PageResult, not_found, render};
use super::request::{Fields, field, form_user};
use crate::AppState;

pub(super) async fn reload(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<Fields>,
) -> PageResult {
    let (_, a, mut nav) = form_user(&s, &headers, &uri, &f).await?;
    a.require_admin()?;
    let flash = match crate::actions::reload_config(&s).await {
        Ok(v) => format!(
            "Config reloaded: {} tasks, {} pipelines.",
            v["tasks"], v["pipelines"]
        ),
        Err(e) => e.message,
    };
    nav.flash = flash;
    let t = ErrorTpl {
        nav,
        code: 200,
        title: "Reload".into(),
        message: String::new(),
    };
    Ok(render(&t))
}

/// `POST /admin/{tasks|pipelines}/{name}/enabled`: `enabled=true|false` overrides the config,
/// anything else follows it again; back to the page the form was on (`back`, a path here).
pub(super) async fn set_enabled(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((kind, name)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, a, _) = form_user(&s, &headers, &uri, &f).await?;
    let kind = match kind.as_str() {
        "tasks" => TargetKind::Task,
        "pipelines" => TargetKind::Pipeline,
        _ => return Err(not_found()),
    };
    if !a.can_see(kind, &name) {
        return Err(not_found());
    }
    a.require_admin()?;
    let value = match field(&f, "enabled") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    s.sched.set_target_enabled(kind, &name, value).await?;
    let config = s.sched.config().await?;
    let enabled = match kind {
        TargetKind::Task => config.tasks.get(&name).is_some_and(|t| t.enabled),
        TargetKind::Pipeline => config.pipelines.get(&name).is_some_and(|p| p.enabled),
    };
    crate::actions::log_enabled_change(user.principal.name(), kind, &name, value, enabled);
    let back = crate::session::safe_next(field(&f, "back"));
    Ok(Redirect::to(back).into_response())
}
