//! API errors: JSON with a stable code and a message saying what was wrong and what to do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_sched::SchedError;
use serde_json::json;

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
        let body = json!({"error": {"code": self.code, "message": self.message}});
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
            SchedError::WaitListFull { .. } => (StatusCode::CONFLICT, "wait_list_full"),
            SchedError::BadArgument { .. } => (StatusCode::BAD_REQUEST, "bad_argument"),
            SchedError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            SchedError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<baton_store::StoreError> for ApiError {
    fn from(e: baton_store::StoreError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string())
    }
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
