//! Sessions and cookies: the cookie names, reading a request's cookies, writing `Set-Cookie`
//! headers (always `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` when browsers reach the
//! server over https), the redirect after a sign-in, and which redirect targets are safe.
//!
//! The pages (`crate::ui`), the password login (`crate::login`) and single sign-on (`crate::sso`)
//! all build on this module; it depends on none of them.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use baton_core::config::Config;
use cookie::{Cookie, SameSite};

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "baton_session";
/// The cookie that carries the login form's signed token (see `crate::guard`).
pub(crate) const LOGIN_CSRF_COOKIE: &str = "baton_login_csrf";
/// How long a session lasts.
pub(crate) const SESSION_DAYS: i64 = 7;

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

/// Whether the request came over https (as a reverse proxy in front tells).
pub(crate) fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Whether cookies must be `Secure`: the request came over https, or browsers reach this
/// server at an https `public_url`.
pub(crate) fn secure_cookies(config: &Config, headers: &HeaderMap) -> bool {
    https(headers)
        || config
            .server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// A `Set-Cookie` value; `max_age` 0 removes the cookie.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let c = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age))
        .secure(secure)
        .build();
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where to go after logging in: only a path on this site. Browsers drop tabs and newlines
/// from URLs (`/\t/evil.example` becomes `//evil.example`), so only visible ASCII passes.
pub(crate) fn safe_next(next: &str) -> &str {
    if next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic())
    {
        next
    } else {
        "/"
    }
}

/// The answer to a successful sign-in (password or single sign-on): the session cookie, and on
/// to `next`.
pub(crate) fn signed_in(session: &baton_store::NewSession, next: &str, secure: bool) -> Response {
    let mut resp = Redirect::to(safe_next(next)).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session.id, SESSION_DAYS * 86400, secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_redirects_stay_on_this_site() {
        assert_eq!(safe_next("/runs?task=a"), "/runs?task=a");
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(evil), "/", "{evil:?}");
        }
    }

    #[test]
    fn cookies_are_read_by_name_from_every_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; baton_x=2"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("baton_session=abc"),
        );
        assert_eq!(cookie(&h, "baton_x"), Some("2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "baton"), None);
    }

    #[test]
    fn set_cookie_is_http_only_lax_and_secure_when_asked() {
        let v = set_cookie("n", "v", 60, true);
        let v = v.to_str().unwrap();
        for attr in [
            "n=v",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
            "Secure",
        ] {
            assert!(v.contains(attr), "{attr} missing from {v}");
        }
        let v = set_cookie("n", "", 0, false);
        let v = v.to_str().unwrap();
        assert!(v.contains("Max-Age=0") && !v.contains("Secure"), "{v}");
    }
}
