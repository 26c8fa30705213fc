//! A small local stand-in for a forge's HTTP API: every request is checked by the test's
//! handler (method, path, headers, auth, JSON body, as the forge documents them) and recorded;
//! what the handler refuses is a problem the test fails on, answered `400`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use super::{Server, WAIT};

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The query string (without `?`), empty when none.
    pub query: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    /// `Null` for an empty body.
    pub body: Value,
}

impl Call {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// What the handler answers: a status and a JSON body, or what is wrong with the request.
pub type Handler = dyn Fn(&Call) -> Result<(u16, Value), String> + Send + Sync;

#[derive(Clone)]
pub struct StandIn {
    pub base: String,
    calls: Arc<Mutex<Vec<Call>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    pub async fn start(handler: Arc<Handler>) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let standin = StandIn {
            base,
            calls: Arc::default(),
            problems: Arc::default(),
        };
        let me = standin.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (me, handler) = (me.clone(), handler.clone());
                async move { me.answer(&*handler, method, uri, headers, body) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        standin
    }

    fn answer(
        &self,
        handler: &Handler,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let json = if body.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&body).map_err(|e| format!("{method} {uri}: body: {e}"))
        };
        let call = json.map(|body| Call {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body,
        });
        let answer = call.and_then(|call| {
            if !call.body.is_null() && !call.header("content-type").starts_with("application/json")
            {
                return Err(format!(
                    "{} {}: content-type {:?}",
                    call.method,
                    call.path,
                    call.header("content-type")
                ));
            }
            let a = handler(&call);
            self.calls.lock().unwrap().push(call);
            a
        });
        match answer {
            Ok((204, _)) => StatusCode::NO_CONTENT.into_response(),
            Ok((code, v)) => (StatusCode::from_u16(code).unwrap(), axum::Json(v)).into_response(),
            Err(p) => {
                self.problems.lock().unwrap().push(p);
                StatusCode::BAD_REQUEST.into_response()
            }
        }
    }

    /// The requests received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Fails the test if any request was refused.
    pub fn assert_no_problems(&self) {
        let problems = self.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "bad requests: {problems:#?}");
    }

    /// Waits until the calls satisfy `done`; returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        s: &Server,
        done: impl Fn(&[Call]) -> bool,
    ) -> Vec<Call> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.assert_no_problems();
            let calls = self.calls();
            if done(&calls) {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen; calls: {calls:#?}\n{}",
                s.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Only the keys `allowed` in `body`.
pub fn only_keys(body: &Value, allowed: &[&str]) -> Result<(), String> {
    let obj = body.as_object().ok_or("body is not an object")?;
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unexpected field {k} in {body}")),
        None => Ok(()),
    }
}
