//! The web UI: server-rendered HTML pages (askama templates, compiled and auto-escaped) with a
//! little embedded CSS and JavaScript. Every page works without JavaScript; with it, a running
//! job's log follows live over the API's SSE endpoint.
//!
//! Access rules are the API's (`crate::auth::Access`): a hidden run or target answers 404 like a
//! missing one. Every form carries the session's CSRF secret; the login form (`crate::login`)
//! carries a token the server signed, since there is no session yet.
//!
//! One module per page or concern: [`page`] (header facts, rendering, error pages) and
//! [`request`] (the caller, forms, CSRF) are shared; the pages build on them and never on each
//! other, except the artifact download and the Tests tab, which share the run page's visibility
//! check, and a test's own page, which shares the Tests tab's history window.

mod admin;
mod artifact;
mod code;
mod dag;
mod dashboard;
mod deliveries;
mod format;
mod gantt;
mod logmeta;
mod logview;
mod me;
mod page;
mod repos;
mod request;
mod run;
mod runs;
mod stats;
mod target;
mod test;
mod tests;
mod trigger;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::AppState;

pub(crate) use page::{Nav, PageResult, error_page, not_found_page, render, urlencode};
pub(crate) use request::error_nav;
pub(crate) use request::{Fields, check_csrf, field};
pub(crate) use tests::store_report;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::dashboard))
        .route("/runs", get(runs::runs_page))
        .route("/runs/{id}", get(run::run_page))
        .route("/runs/{id}/tests", get(tests::tests_page))
        .route("/runs/{id}/report.html", get(tests::report))
        .route("/tests/{task}/{test}", get(test::test_page))
        .route("/runs/{id}/cancel", post(run::cancel))
        .route("/runs/{id}/approve", post(run::approve))
        .route("/runs/{id}/rerun", post(run::rerun))
        .route(
            "/runs/{id}/artifacts/{job}/{*path}",
            get(artifact::artifact),
        )
        .route(
            "/trigger/{kind}/{name}",
            get(trigger::trigger_page).post(trigger::trigger),
        )
        .route("/repos", get(repos::repos_page))
        .route("/repos/{repo}/trigger", post(repos::trigger))
        .route("/deliveries", get(deliveries::deliveries_page))
        .route("/me", get(me::me_page))
        .route("/me/tokens", post(me::create_token))
        .route("/me/tokens/{id}/revoke", post(me::revoke_token))
        .route("/me/password", post(me::change_password))
        .route("/me/sessions/{handle}/end", post(me::end_session))
        .route("/admin/reload", post(admin::reload))
        .route("/admin/{kind}/{name}/enabled", post(admin::set_enabled))
        .route("/targets/{kind}/{name}", get(target::target_page))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/favicon/{file}", get(favicon))
        .route(
            "/favicon.ico",
            get(|| favicon(axum::extract::Path("idle.svg".into()))),
        )
}

/// The favicon: a dot in the colour of a status (`/static/favicon/running.svg`); a run's page
/// uses its run's status, the page's script changes it as the run goes on, others use `idle`.
async fn favicon(
    axum::extract::Path(file): axum::extract::Path<String>,
) -> axum::response::Response {
    let colour = match file.strip_suffix(".svg").unwrap_or("") {
        "success" => "#1f9d55",
        "failed" | "broken" | "jammed" => "#d63a3a",
        "running" | "started" => "#2f80ed",
        "queued" | "waiting" => "#c58a00",
        "canceled" | "skipped" => "#8a8f98",
        "idle" => "#2f5fd0",
        _ => return not_found_page(),
    };
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\"><circle cx=\"16\" cy=\"16\" r=\"13\" fill=\"{colour}\"/><path d=\"M10 16h12\" stroke=\"#fff\" stroke-width=\"4\" stroke-linecap=\"round\"/></svg>"
    );
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        svg,
    )
        .into_response()
}
/// `app.css` and the terminal palette's classes (entries 16–255, see `ansi`).
async fn css() -> impl IntoResponse {
    static CSS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{}\n{}",
            include_str!("../../static/app.css"),
            crate::ansi::palette_css()
        )
    });
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        CSS.as_str(),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
}
