//! API errors: JSON with a stable code and a message saying what was wrong and what to do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_sched::SchedError;

/// An error as the API returns it: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::api_types::ErrorBody {
            error: crate::api_types::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> Self {
        let (status, code) = match &e {
            SchedError::UnknownTarget(_) => (StatusCode::NOT_FOUND, "unknown_target"),
            SchedError::RunNotFound(_) => (StatusCode::NOT_FOUND, "run_not_found"),
            SchedError::Disabled(_) => (StatusCode::CONFLICT, "disabled"),
            SchedError::NotCancelable { .. } => (StatusCode::CONFLICT, "not_cancelable"),
            SchedError::NotWaiting { .. } => (StatusCode::CONFLICT, "not_waiting"),
            SchedError::Imported(_) => (StatusCode::CONFLICT, "imported_run"),
            SchedError::WaitListFull { .. } => (StatusCode::CONFLICT, "wait_list_full"),
            SchedError::BadArgument { .. } => (StatusCode::BAD_REQUEST, "bad_argument"),
            SchedError::BadRerun(_) => (StatusCode::BAD_REQUEST, "bad_rerun"),
            SchedError::Store(e) => return store_failure(e),
            SchedError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
            SchedError::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<baton_store::StoreError> for ApiError {
    fn from(e: baton_store::StoreError) -> Self {
        store_failure(&e)
    }
}

/// A database failure: the details (SQL, paths, driver text) go to the server's log, the
/// client gets a stable code and a message that says where to look.
fn store_failure(e: &baton_store::StoreError) -> ApiError {
    tracing::error!("database error while answering a request: {e}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store",
        "the database could not complete this request (the server's log has the details)",
    )
}

macro_rules! rejection {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(r: $t) -> Self {
                ApiError::new(r.status(), "bad_request", r.body_text())
            }
        }
    )*};
}
rejection!(
    axum::extract::rejection::JsonRejection,
    axum::extract::rejection::QueryRejection,
    axum::extract::rejection::PathRejection
);

/// An error and its sources, as one line (`outer: inner: root`); a source whose words the line
/// already holds is not repeated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_do_not_reach_clients() {
        for e in [
            ApiError::from(baton_store::StoreError::Corrupt {
                table: "tokens",
                message: "near \"SELECT secret FROM tokens\": syntax error".into(),
            }),
            ApiError::from(SchedError::Store(baton_store::StoreError::Corrupt {
                table: "runs",
                message: "/var/lib/baton/db.sqlite row 7".into(),
            })),
        ] {
            assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(e.code, "store");
            assert!(
                !e.message.contains("SELECT") && !e.message.contains("/var/lib"),
                "{}",
                e.message
            );
        }
    }
}
