//! What a page handler learns from its request: the signed-in caller (or a redirect to the login
//! page), and form fields with their CSRF check.

use axum::http::{HeaderMap, StatusCode, Uri};

use super::page::{ErrorShown, Nav, PageError, error_html};
use crate::AppState;
use crate::auth::{self, Access, CurrentUser, same_secret};

/// The signed-in caller of a page, or a redirect to the login page.
pub(super) async fn page_user(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(CurrentUser, Access, Nav), PageError> {
    let next = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let user = match auth::resolve(s, headers).await {
        Ok(Some(u)) => u,
        Ok(None) | Err(_) => return Err(PageError::Login(next)),
    };
    let access = Access::of(s, &user).await?;
    let nav = Nav {
        user: user.principal.name().to_owned(),
        admin: access.is_admin(),
        csrf: user.csrf.clone().unwrap_or_default(),
        flash: String::new(),
        links: true,
    };
    Ok((user, access, nav))
}

/// Form fields as pairs (some forms have dynamic field names).
pub(crate) type Fields = Vec<(String, String)>;

pub(crate) fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A form write must carry the session's CSRF secret (bearer callers have none to carry).
/// The user of a form post: [`page_user`], with the form's CSRF token checked.
pub(super) async fn form_user(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    f: &Fields,
) -> Result<(CurrentUser, Access, Nav), PageError> {
    let found = page_user(s, headers, uri).await?;
    check_csrf(&found.0, f)?;
    Ok(found)
}

pub(crate) fn check_csrf(user: &CurrentUser, f: &Fields) -> Result<(), PageError> {
    match &user.csrf {
        Some(secret) if !same_secret(field(f, "csrf"), secret) => Err(PageError::Page(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong. Reload the page and try again.".into(),
        )),
        _ => Ok(()),
    }
}

/// Middleware: an error page (a 404 for a path that is no route, a hidden run, a bad link) keeps
/// the signed-in user's header (their name, the administrators' links, Log out).
pub(crate) async fn error_nav(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (headers, uri) = (req.headers().clone(), req.uri().clone());
    let resp = next.run(req).await;
    let Some(e) = resp.extensions().get::<ErrorShown>().cloned() else {
        return resp;
    };
    match page_user(&s, &headers, &uri).await {
        Ok((_, _, nav)) => error_html(e.code, &e.message, nav),
        Err(_) => resp,
    }
}
