//! Every API call needs `Authorization: Bearer <token>`: a Baton token (stored hashed) or, when
//! `server.jwt_secret` is set, a prunner-style HS256 JWT signed with it.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiError, AppState};

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

pub(crate) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized("missing bearer token (hint: send `Authorization: Bearer <token>`; make one with `baton token create`)")
        })?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    if token.starts_with("baton_") {
        match state.store.verify_token(token).await? {
            Some(t) if t.name.starts_with(crate::agents::CREDENTIAL_PREFIX) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "agent_credential",
                    "an agent credential is good for the agent routes only",
                ));
            }
            Some(_) => return Ok(next.run(req).await),
            None => {}
        }
        return Err(unauthorized("unknown or revoked token"));
    }
    if let Some(secret) = &state.jwt_secret {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
        return match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
            Ok(_) => Ok(next.run(req).await),
            Err(e) => Err(unauthorized(&format!("invalid JWT: {e}"))),
        };
    }
    Err(unauthorized("unknown token"))
}
