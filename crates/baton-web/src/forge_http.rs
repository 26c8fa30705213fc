//! Sends a request `baton_forge` built (a forge's API) and reads the answer.

use baton_core::report::clip;
use baton_forge::{ApiRequest, Method};

/// A forge's answer.
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// `HTTP 401 from POST URL: the answer's start`.
    pub(crate) fn describe(&self, req: &ApiRequest) -> String {
        let text = String::from_utf8_lossy(&self.body);
        format!(
            "HTTP {} from {} {}: {}",
            self.status,
            req.method.as_str(),
            req.url,
            clip(text.trim(), 200)
        )
    }
}

/// Sends `req`; `Err` when no answer came (the error names the request, never its headers).
pub(crate) async fn send(http: &reqwest::Client, req: &ApiRequest) -> Result<Answer, String> {
    let method = match req.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    };
    let mut builder = http.request(method, &req.url);
    if let Some(body) = &req.body {
        builder = builder.json(body);
    }
    for (name, value) in &req.headers {
        builder = builder.header(*name, value);
    }
    let failed = |e: reqwest::Error| {
        let chain = crate::error::error_chain(&e);
        format!("{} {} failed: {chain}", req.method.as_str(), req.url)
    };
    let resp = builder.send().await.map_err(failed)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(failed)?.to_vec();
    Ok(Answer { status, body })
}
