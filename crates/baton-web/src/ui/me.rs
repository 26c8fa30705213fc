//! The user's page (`/me`): their API tokens, made and revoked here; their password, changed
//! here (the current one required; every other session ends); and their sessions, listed and
//! ended here.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};

use super::format::when;
use super::page::{Nav, PageError, PageResult, not_found, render};
use super::request::{Fields, field, form_user, page_user};
use crate::AppState;
use crate::auth::CurrentUser;

struct TokenView {
    id: i64,
    name: String,
    created: String,
}

struct SessionView {
    handle: String,
    created: String,
    expires: String,
    /// The session of the browser looking at the page.
    this: bool,
}

#[derive(Template)]
#[template(path = "me.html")]
struct MeTpl {
    nav: Nav,
    tokens: Vec<TokenView>,
    new_token: String,
    sessions: Vec<SessionView>,
    /// What the password form said: an error, or that it worked.
    password_error: String,
    password_changed: bool,
}

/// What a post to the page says back.
#[derive(Default)]
struct Said {
    new_token: String,
    password_error: String,
    password_changed: bool,
}

async fn me(
    s: &AppState,
    user: &CurrentUser,
    headers: &HeaderMap,
    nav: Nav,
    said: Said,
) -> PageResult {
    let (tokens, sessions) = match &user.principal {
        baton_core::access::Principal::User(n) => (
            s.store.user_tokens(n).await?,
            s.store.user_sessions(n).await?,
        ),
        baton_core::access::Principal::Operator => (Vec::new(), Vec::new()),
    };
    let this = crate::session::cookie(headers, crate::session::SESSION_COOKIE)
        .map(baton_store::session_handle)
        .unwrap_or_default();
    Ok(render(&MeTpl {
        nav,
        tokens: tokens
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                created: when(t.created_at),
            })
            .collect(),
        new_token: said.new_token,
        sessions: sessions
            .into_iter()
            .map(|x| SessionView {
                this: x.handle == this,
                handle: x.handle,
                created: when(x.created_at),
                expires: when(x.expires_at),
            })
            .collect(),
        password_error: said.password_error,
        password_changed: said.password_changed,
    }))
}

pub(super) async fn me_page(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    let (user, _, nav) = page_user(&s, &headers, &uri).await?;
    me(&s, &user, &headers, nav, Said::default()).await
}

/// The password form: the current password, then the new one twice. Every other session of
/// the user ends; this one stays.
pub(super) async fn change_password(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, _, nav) = form_user(&s, &headers, &uri, &f).await?;
    let name = only_users(&user)?.to_owned();
    let (current, new) = (field(&f, "current"), field(&f, "new"));
    let mut said = Said::default();
    if new != field(&f, "confirm") {
        said.password_error = "The new password and its confirmation differ.".into();
    } else {
        let keep = crate::session::cookie(&headers, crate::session::SESSION_COOKIE);
        match s.store.change_password(&name, current, new, keep).await {
            Ok(true) => said.password_changed = true,
            Ok(false) => said.password_error = "The current password is wrong.".into(),
            Err(baton_store::StoreError::Password(why)) => said.password_error = why,
            Err(e) => return Err(e.into()),
        }
    }
    let status = if said.password_changed {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = me(&s, &user, &headers, nav, said).await?;
    Ok((status, page).into_response())
}

/// Ends one of the user's own sessions (another browser, or this one: then they are signed
/// out).
pub(super) async fn end_session(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(handle): Path<String>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, _, _) = form_user(&s, &headers, &uri, &f).await?;
    let name = only_users(&user)?;
    if !s.store.end_user_session(name, &handle).await? {
        return Err(not_found());
    }
    Ok(Redirect::to("/me#sessions").into_response())
}

fn only_users(user: &CurrentUser) -> Result<&str, PageError> {
    match &user.principal {
        baton_core::access::Principal::User(n) => Ok(n),
        baton_core::access::Principal::Operator => Err(PageError::Page(
            StatusCode::BAD_REQUEST,
            "operator tokens have no user page; use `baton token create`".into(),
        )),
    }
}

pub(super) async fn create_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, _, nav) = form_user(&s, &headers, &uri, &f).await?;
    let name = only_users(&user)?;
    let label = field(&f, "name").trim();
    let label = if label.is_empty() { "api" } else { label };
    let new_token = s.store.create_user_token(label, Some(name)).await?;
    let said = Said {
        new_token,
        ..Default::default()
    };
    me(&s, &user, &headers, nav, said).await
}

pub(super) async fn revoke_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (user, _, _) = form_user(&s, &headers, &uri, &f).await?;
    let name = only_users(&user)?;
    if !s.store.revoke_user_token(name, id).await? {
        return Err(not_found());
    }
    Ok(Redirect::to("/me").into_response())
}
