//! Administration from the UI: reloading the config, enabling and disabling tasks.

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
    let flash = match crate::api::reload_config(&s).await {
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

pub(super) async fn set_enabled(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (_, a, _) = form_user(&s, &headers, &uri, &f).await?;
    if !a.can_see(TargetKind::Task, &name) {
        return Err(not_found());
    }
    a.require_admin()?;
    let value = match field(&f, "enabled") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    s.sched.set_enabled(&name, value).await?;
    Ok(Redirect::to("/").into_response())
}
