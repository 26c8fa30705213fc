//! Security headers on every answer. UI pages get a Content-Security-Policy that allows only
//! this site's own script and style files (no inline code) and forbids framing; every answer
//! gets `X-Content-Type-Options: nosniff`. A handler that sets its own policy keeps it: served
//! artifacts carry [`ARTIFACT_CSP`], which sandboxes them.

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// The policy of UI pages (and of every other answer that sets none).
pub(crate) const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The policy of served artifacts: a sandbox (an opaque origin, no scripts, no forms), so an
/// HTML artifact opened in the browser cannot act as the user; it may show its own inline
/// styles and images, nothing else.
pub(crate) const ARTIFACT_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; \
     img-src data:; frame-ancestors 'none'";

/// Adds the headers a handler did not set itself.
pub(crate) async fn security(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(UI_CSP),
        );
    }
    if !h.contains_key(header::X_CONTENT_TYPE_OPTIONS) {
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    if !h.contains_key(header::X_FRAME_OPTIONS) {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}
