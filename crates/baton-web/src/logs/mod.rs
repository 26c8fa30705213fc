//! Logs: byte ranges of a job's log file, and a live follow over Server-Sent Events that resumes
//! from any offset (`Last-Event-ID` or `?offset=`). Both read the file the supervisor appends to;
//! memory stays bounded whatever the log's size. Live viewers of a job share one watcher of its
//! log ([`hub`]); [`follow`] is what each of them runs. The change feed the UI's lists refresh
//! on ([`changes`]) is SSE too and lives here.

mod changes;
mod download;
mod follow;
mod hub;
mod job;
pub(crate) mod marks;

use axum::Router;
use axum::routing::get;

use crate::AppState;

pub(crate) use hub::LogHub;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/log", get(download::log))
        .route("/runs/{id}/log/stream", get(follow::stream))
        .route("/runs/{id}/log/marks", get(marks::marks))
        .route("/events", get(changes::events))
}
