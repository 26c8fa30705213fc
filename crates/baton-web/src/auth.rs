//! Who is asking, and what they may see.
//!
//! A request is authenticated by `Authorization: Bearer <token>` (a Baton API token, stored
//! hashed, that belongs to a user or — made without `--user` — to the operator; or, when
//! `server.jwt_secret` is set, a prunner-style HS256 JWT, which acts as the operator) or by the
//! UI's session cookie. A cookie-authenticated request that changes anything must also carry the
//! session's CSRF secret (`X-CSRF-Token` header or `csrf` form field); bearer requests need not,
//! since browsers never attach them on their own.
//!
//! The decisions are `baton_core::access`; this module only resolves the caller
//! ([`CurrentUser`]) and applies them to routes.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use baton_core::access::{self, Principal};
use baton_core::config::Config;
use baton_core::run::TargetKind;
use baton_store::Visible;

use crate::session::{SESSION_COOKIE, cookie};
use crate::{ApiError, AppState};

/// Token names of agent credentials start with this; such a credential is good for the agent
/// routes (`crate::agents`) only.
pub(crate) const CREDENTIAL_PREFIX: &str = "agent:";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub principal: Principal,
    /// The session's CSRF secret when the caller came with the session cookie.
    pub csrf: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(|| unauthorized("not signed in"))
    }
}

pub(crate) fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

pub(crate) fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// Resolves the caller from the bearer token or the session cookie; `Ok(None)` when the request
/// carries neither.
pub(crate) async fn resolve(
    s: &AppState,
    headers: &HeaderMap,
) -> Result<Option<CurrentUser>, ApiError> {
    if let Some(h) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        if token.starts_with("baton_") {
            let Some(info) = s.store.verify_token(token).await? else {
                return Err(unauthorized("unknown or revoked token"));
            };
            if info.name.starts_with(CREDENTIAL_PREFIX) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "agent_credential",
                    "an agent credential is good for the agent routes only",
                ));
            }
            if info.name.starts_with(baton_store::POOL_JOIN_PREFIX) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "pool_join_token",
                    "a pool's join token is good for one agent join only",
                ));
            }
            let principal = info.user.map_or(Principal::Operator, Principal::User);
            return Ok(Some(CurrentUser {
                principal,
                csrf: None,
            }));
        }
        if let Some(secret) = &s.jwt_secret {
            return match check_jwt(token, secret) {
                Ok(()) => Ok(Some(CurrentUser {
                    principal: Principal::Operator,
                    csrf: None,
                })),
                Err(message) => Err(unauthorized(&message)),
            };
        }
        return Err(unauthorized("unknown token"));
    }
    if let Some(id) = cookie(headers, SESSION_COOKIE)
        && let Some(sess) = s.store.session(id).await?
    {
        return Ok(Some(CurrentUser {
            principal: Principal::User(sess.user),
            csrf: Some(sess.csrf),
        }));
    }
    Ok(None)
}

/// Checks a prunner-style HS256 JWT: the signature, and an `exp` that must be present and
/// not past; `nbf`, when present, must have come (both with a minute's leeway for clocks).
fn check_jwt(token: &str, secret: &str) -> Result<(), String> {
    use jsonwebtoken::errors::ErrorKind;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
    match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            ErrorKind::MissingRequiredClaim(c) => format!(
                "invalid JWT: it has no `{c}` claim (a JWT must say when it expires: add `exp`, \
                 in seconds since 1970)"
            ),
            ErrorKind::ExpiredSignature => "invalid JWT: it has expired (its `exp` is past)".into(),
            ErrorKind::ImmatureSignature => {
                "invalid JWT: it is not valid yet (its `nbf` is in the future)".into()
            }
            _ => format!("invalid JWT: {e}"),
        }),
    }
}

/// Whether the method can change state (and so needs CSRF protection under a cookie).
pub(crate) fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Constant-time comparison of two secrets.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// API middleware: every route needs a caller; cookie callers need the CSRF header on writes.
pub(crate) async fn require_user(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let user = resolve(&state, req.headers()).await?.ok_or_else(|| {
        unauthorized("missing bearer token (hint: send `Authorization: Bearer <token>`; make one with `baton token create`)")
    })?;
    if let Some(csrf) = &user.csrf
        && is_write(req.method())
    {
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(sent, csrf) {
            return Err(forbidden(
                "missing or wrong CSRF token (hint: send the session's token in X-CSRF-Token)",
            ));
        }
    }
    req.extensions_mut().insert(user);
    Ok(next.run(req).await)
}

/// What one caller may see under one config.
pub(crate) struct Access {
    pub config: Arc<Config>,
    pub who: Principal,
}

impl Access {
    pub async fn of(s: &AppState, user: &CurrentUser) -> Result<Access, ApiError> {
        Ok(Access {
            config: s.sched.config().await?,
            who: user.principal.clone(),
        })
    }

    pub fn is_admin(&self) -> bool {
        access::is_admin(&self.who, &self.config.administrators)
    }

    pub fn can_see(&self, kind: TargetKind, name: &str) -> bool {
        access::can_see(&self.who, &self.config, kind, name)
    }

    /// For queue entries and workers, which name a target without its kind: visible only if
    /// every target of that name is.
    pub fn can_see_name(&self, name: &str) -> bool {
        if access::repo_of_target(&self.config, name).is_some() {
            return self.can_see(TargetKind::Task, name);
        }
        let t = !self.config.tasks.contains_key(name) || self.can_see(TargetKind::Task, name);
        let p =
            !self.config.pipelines.contains_key(name) || self.can_see(TargetKind::Pipeline, name);
        let known =
            self.config.tasks.contains_key(name) || self.config.pipelines.contains_key(name);
        if known { t && p } else { self.is_admin() }
    }

    /// The run filter's access part; `None` for administrators.
    pub fn visible(&self) -> Option<Visible> {
        access::visible_targets(&self.who, &self.config).map(|v| Visible {
            tasks: v.tasks,
            pipelines: v.pipelines,
            repos: v.repos,
        })
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(forbidden("only administrators may do this"))
        }
    }
}

/// Run `id` if it exists and `user` may see it; a hidden run answers exactly like a missing one.
pub(crate) async fn load_run(
    s: &AppState,
    user: &CurrentUser,
    id: i64,
) -> Result<baton_store::RunRow, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "run_not_found",
            format!("run {id} not found"),
        )
    };
    let run = s.store.get_run(id).await?.ok_or_else(not_found)?;
    if !Access::of(s, user).await?.can_see(run.kind, &run.target) {
        return Err(not_found());
    }
    Ok(run)
}
