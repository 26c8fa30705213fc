//! Password login and logout. The login form carries a token the server signed (see
//! `crate::guard`), checked before any password hashing; the hashing itself runs in a bounded
//! number of slots, and failed logins back off per source address and per user name.

use std::time::Instant;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::AppState;
use baton_core::config::Config;

use crate::auth;
use crate::cluster_key::ClientAddr;
use crate::guard::{LOGIN_TOKEN_SECS, LoginGuard, TokenError};
use crate::session::{
    LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_DAYS, cookie, https, safe_next, secure_cookies,
    set_cookie, signed_in,
};
use crate::ui::{Fields, Nav, PageResult, check_csrf, error_page, field, render, urlencode};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A single sign-on provider's link on the login page.
pub(crate) struct SsoLink {
    pub name: String,
    pub label: String,
}

/// The single sign-on providers of `config`, for the login page.
pub(crate) fn links(config: &Config) -> Vec<SsoLink> {
    config
        .server
        .auth
        .values()
        .map(|p| SsoLink {
            name: p.name.clone(),
            label: p.label.clone(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTpl {
    nav: Nav,
    csrf: String,
    next: String,
    error: String,
    providers: Vec<SsoLink>,
    /// `?next=…` for the single sign-on links (empty when it is `/`).
    next_query: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let config = s.sched.config().await.unwrap_or_default();
    login_form(
        &s.login,
        &headers,
        q.next.as_deref().unwrap_or("/"),
        "",
        StatusCode::OK,
        links(&config),
    )
}

/// The login page with a fresh signed token in its form and cookie.
pub(crate) fn login_form(
    guard: &LoginGuard,
    headers: &HeaderMap,
    next: &str,
    error: &str,
    code: StatusCode,
    providers: Vec<SsoLink>,
) -> Response {
    let csrf = guard.issue_token(now_unix());
    let next = safe_next(next).to_owned();
    let t = LoginTpl {
        nav: Nav::default(),
        csrf: csrf.clone(),
        next_query: if next == "/" {
            String::new()
        } else {
            format!("?next={}", urlencode(&next))
        },
        next,
        error: error.to_owned(),
        providers,
    };
    let mut resp = (code, render(&t)).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_CSRF_COOKIE,
            &csrf,
            LOGIN_TOKEN_SECS as i64,
            https(headers),
        ),
    );
    resp
}

/// The login page again with `429 Too Many Requests` and `Retry-After`.
fn too_many(
    s: &AppState,
    headers: &HeaderMap,
    next: &str,
    message: &str,
    retry_after: u64,
    providers: Vec<SsoLink>,
) -> Response {
    let mut resp = login_form(
        &s.login,
        headers,
        next,
        message,
        StatusCode::TOO_MANY_REQUESTS,
        providers,
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    resp
}

fn backoff_message(secs: u64) -> String {
    format!(
        "Too many failed logins from your address or for this user name. \
         Wait {secs} second{} and try again.",
        if secs == 1 { "" } else { "s" }
    )
}

/// Why a login form's token was refused, for the person signing in.
fn refused_form(e: &TokenError) -> &'static str {
    match e {
        TokenError::Expired => "The login form expired (a form is good for an hour). Try again.",
        TokenError::Forged => {
            "The login form was not sent from this site (or was issued before the server \
             restarted). Try again."
        }
    }
}

async fn login(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let next = safe_next(field(&f, "next")).to_owned();
    let config = s.sched.config().await.unwrap_or_default();
    let providers = || links(&config);
    // No hashing before the form proves it came from a page this server rendered.
    let cookie = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if let Err(e) = s.login.check_token(cookie, field(&f, "csrf"), now_unix()) {
        let (msg, code) = (refused_form(&e), StatusCode::FORBIDDEN);
        return login_form(&s.login, &headers, &next, msg, code, providers());
    }
    let user = field(&f, "user").trim().to_owned();
    let wait_secs = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if let Some(wait) = s.login.blocked(addr, &user, Instant::now()) {
        let secs = wait_secs(wait);
        return too_many(
            &s,
            &headers,
            &next,
            &backoff_message(secs),
            secs,
            providers(),
        );
    }
    // A name that cannot exist fails without hashing (that tells nobody anything).
    let valid = baton_store::valid_user_name(&user);
    let slot = if valid {
        match s.login.hashing_slot().await {
            Ok(slot) => Some(slot),
            Err(secs) => {
                return too_many(
                    &s,
                    &headers,
                    &next,
                    "The server is busy checking other logins. Wait a moment and try again.",
                    secs,
                    providers(),
                );
            }
        }
    } else {
        None
    };
    // Counted as a failure from here on, until the password proves right.
    if let Err(wait) = s.login.begin(addr, &user, Instant::now()) {
        let secs = wait_secs(wait);
        return too_many(
            &s,
            &headers,
            &next,
            &backoff_message(secs),
            secs,
            providers(),
        );
    }
    let ok = match slot {
        Some(slot) => {
            match s
                .store
                .check_password_holding(&user, field(&f, "password"), slot)
                .await
            {
                Ok(ok) => ok,
                Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        None => false,
    };
    if !ok {
        s.login.failed(addr, &user, Instant::now());
        return login_form(
            &s.login,
            &headers,
            &next,
            "Unknown user or wrong password.",
            StatusCode::UNAUTHORIZED,
            providers(),
        );
    }
    s.login.succeeded(addr, &user);
    match s
        .store
        .create_session(&user, chrono::Duration::days(SESSION_DAYS))
        .await
    {
        Ok(session) => signed_in(&session, &next, secure_cookies(&config, &headers)),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> PageResult {
    if let Ok(Some(user)) = auth::resolve(&s, &headers).await {
        check_csrf(&user, &f)?;
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        s.store.delete_session(id).await?;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, https(&headers)),
    );
    Ok(resp)
}
