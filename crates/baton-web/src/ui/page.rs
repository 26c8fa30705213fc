//! What every page shares: the header's facts ([`Nav`]), rendering, and failures shown as an
//! HTML error page (or a redirect to the login page).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use baton_sched::SchedError;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::ApiError;

/// What every page's header needs.
#[derive(Default, Clone)]
pub(crate) struct Nav {
    pub user: String,
    pub admin: bool,
    pub csrf: String,
    pub flash: String,
    /// Show the plain navigation links without a user (error pages).
    pub links: bool,
}

/// A page failure: rendered as an HTML page (or a redirect to the login page).
pub(crate) enum PageError {
    Login(String),
    Page(StatusCode, String),
}

impl Nav {
    /// The server's clock when the page was rendered (ms since the epoch): the page's script
    /// ticks running durations against it, whatever the browser's clock says.
    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login(next) => {
                Redirect::to(&format!("/login?next={}", urlencode(&next))).into_response()
            }
            PageError::Page(code, message) => error_page(code, &message),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Page(e.status, e.message)
    }
}

impl From<SchedError> for PageError {
    fn from(e: SchedError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<baton_store::StoreError> for PageError {
    fn from(e: baton_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

pub(crate) fn not_found() -> PageError {
    PageError::Page(
        StatusCode::NOT_FOUND,
        "There is nothing here, or you may not see it.".into(),
    )
}

/// The HTML 404 page for paths that are not routes.
pub(crate) fn not_found_page() -> Response {
    not_found().into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
pub(super) struct ErrorTpl {
    pub nav: Nav,
    pub code: u16,
    pub title: String,
    pub message: String,
}

/// What an error page showed, kept on its response so `request::error_nav` can draw it again with the
/// signed-in user's header.
#[derive(Clone)]
pub(super) struct ErrorShown {
    pub(super) code: StatusCode,
    pub(super) message: String,
}

pub(super) fn error_html(code: StatusCode, message: &str, nav: Nav) -> Response {
    let t = ErrorTpl {
        nav,
        code: code.as_u16(),
        title: code.canonical_reason().unwrap_or("error").to_owned(),
        message: message.to_owned(),
    };
    (code, render(&t)).into_response()
}

pub(crate) fn error_page(code: StatusCode, message: &str) -> Response {
    let nav = Nav {
        links: true,
        ..Nav::default()
    };
    let mut resp = error_html(code, message, nav);
    resp.extensions_mut().insert(ErrorShown {
        code,
        message: message.to_owned(),
    });
    resp
}

pub(crate) fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template error: {e}"),
        )
            .into_response(),
    }
}

/// What `urlencode` leaves as it is: letters, digits, `-_.~` and `/` (so paths stay readable).
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes `s` for a query value or a path.
pub(crate) fn urlencode(s: &str) -> String {
    utf8_percent_encode(s, URL_KEEP).to_string()
}
