//! Status badges: `GET /badge/{task}.svg?branch=main`, an SVG in the shields.io shape
//! ("baton/TASK | passing") of the newest run of the task (on the branch, when given) that is
//! running or has a result. No sign-in is needed for a task whose `authorized_users` lists `*`;
//! otherwise the caller must be allowed to see the task, and a hidden or unknown task answers
//! 404 exactly alike (no task name leaks). Task names contain `/` (`REPO/TASK`), so the route
//! takes the rest of the path.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use baton_core::access;
use baton_core::run::{Status, TargetKind};

use crate::AppState;
use crate::auth::{self, Access};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/badge/{*path}", get(badge))
}

#[derive(Deserialize)]
struct BadgeQuery {
    branch: Option<String>,
}

/// What a badge says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passing,
    Failing,
    Running,
    Unknown,
}

impl Verdict {
    fn of(status: Option<Status>) -> Verdict {
        match status {
            Some(Status::Success) => Verdict::Passing,
            Some(Status::Failed | Status::Broken | Status::Jammed) => Verdict::Failing,
            Some(Status::Started | Status::Running) => Verdict::Running,
            _ => Verdict::Unknown,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Passing => "passing",
            Verdict::Failing => "failing",
            Verdict::Running => "running",
            Verdict::Unknown => "unknown",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Verdict::Passing => "#4c1",
            Verdict::Failing => "#e05d44",
            Verdict::Running => "#dfb317",
            Verdict::Unknown => "#9f9f9f",
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-cache")],
        "no such badge\n",
    )
        .into_response()
}

async fn badge(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Query(q): Query<BadgeQuery>,
) -> Response {
    let Some(task) = path.strip_suffix(".svg").filter(|t| !t.is_empty()) else {
        return not_found();
    };
    let Ok(config) = s.sched.config().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let anyone = access::anonymous_can_see(&config, TargetKind::Task, task);
    let visible = anyone
        || match auth::resolve(&s, &headers).await {
            Ok(Some(user)) => Access {
                config,
                who: user.principal,
            }
            .can_see(TargetKind::Task, task),
            _ => false,
        };
    if !visible {
        return not_found();
    }
    let branch = q.branch.as_deref().filter(|b| !b.is_empty());
    let latest = match s.store.latest_result(task, branch).await {
        Ok(found) => found,
        Err(e) => return crate::ApiError::from(e).into_response(),
    };
    let verdict = Verdict::of(latest.map(|(_, st)| st));
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        svg(&format!("baton/{task}"), verdict),
    )
        .into_response()
}

/// Text width in the badge's 11px Verdana, roughly (shields measures; this estimates).
fn width(text: &str) -> usize {
    text.chars().count() * 7 + 10
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A flat two-part badge: `label` on grey, the verdict on its colour.
fn svg(label: &str, verdict: Verdict) -> String {
    let (lw, rw) = (width(label), width(verdict.text()));
    let total = lw + rw;
    let label = escape(label);
    let (text, color) = (verdict.text(), verdict.color());
    let (lx, rx) = (lw * 5, lw * 10 + rw * 5);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {text}"><title>{label}: {text}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{color}"/><rect width="{total}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="110"><text x="{lx}" y="140" transform="scale(.1)">{label}</text><text x="{rx}" y="140" transform="scale(.1)">{text}</text></g></svg>
"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_badge_names_the_task_and_its_verdict_escaped() {
        let s = svg("baton/app/<x>", Verdict::Failing);
        assert!(s.starts_with("<svg "));
        assert!(s.contains(">baton/app/&lt;x&gt;</text>"));
        assert!(s.contains(">failing</text>"));
        assert!(s.contains("#e05d44"));
        assert_eq!(Verdict::of(None), Verdict::Unknown);
        assert_eq!(Verdict::of(Some(Status::Canceled)), Verdict::Unknown);
        assert_eq!(Verdict::of(Some(Status::Jammed)), Verdict::Failing);
        assert_eq!(Verdict::of(Some(Status::Running)), Verdict::Running);
    }
}
