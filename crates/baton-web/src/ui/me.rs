//! The user's page (`/me`): their API tokens, made and revoked here.

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

#[derive(Template)]
#[template(path = "me.html")]
struct MeTpl {
    nav: Nav,
    tokens: Vec<TokenView>,
    new_token: String,
}

async fn me(s: &AppState, user: &CurrentUser, nav: Nav, new_token: String) -> PageResult {
    let tokens = match &user.principal {
        baton_core::access::Principal::User(n) => s.store.user_tokens(n).await?,
        baton_core::access::Principal::Operator => Vec::new(),
    };
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
        new_token,
    }))
}

pub(super) async fn me_page(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    let (user, _, nav) = page_user(&s, &headers, &uri).await?;
    me(&s, &user, nav, String::new()).await
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
    let token = s.store.create_user_token(label, Some(name)).await?;
    me(&s, &user, nav, token).await
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
