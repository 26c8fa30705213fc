//! Server-Sent Events as a test reads them off a response body, and a subscription to the
//! run change events (`/api/v1/events`).

#![allow(dead_code)]

use serde_json::Value;

use super::{Server, WAIT};

/// One event: its name (`message` when unnamed), its data lines joined by `\n`, and its id.
#[derive(Debug)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// Takes the first complete event off the front of `buf`, skipping keep-alive comments; `None`
/// when no complete event is buffered (what is left stays for the next call).
pub fn take_event(buf: &mut String) -> Option<SseEvent> {
    while let Some(end) = buf.find("\n\n") {
        let raw: String = buf.drain(..end + 2).collect();
        let mut ev = SseEvent {
            event: "message".into(),
            data: String::new(),
            id: None,
        };
        let mut any = false;
        for line in raw.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                ev.event = v.trim_start().to_string();
                any = true;
            } else if let Some(v) = line.strip_prefix("data:") {
                if !ev.data.is_empty() {
                    ev.data.push('\n');
                }
                ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                any = true;
            } else if let Some(v) = line.strip_prefix("id:") {
                ev.id = Some(v.trim_start().to_string());
            }
        }
        if any {
            return Some(ev);
        }
    }
    None
}

/// Takes every complete event off the front of `buf`.
pub fn take_events(buf: &mut String) -> Vec<SseEvent> {
    std::iter::from_fn(|| take_event(buf)).collect()
}

/// A subscription to `/api/v1/events` as the holder of `token`.
pub struct Events {
    resp: reqwest::Response,
    buf: String,
    who: &'static str,
}

impl Events {
    pub async fn open(s: &Server, token: &str, who: &'static str) -> Events {
        let resp = s
            .http
            .get(s.url("/events"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{who}: GET /events");
        Events {
            resp,
            buf: String::new(),
            who,
        }
    }

    /// The data of the next `change` event, within [`WAIT`].
    pub async fn next(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                if raw.lines().any(|l| l == "event: change") {
                    let data = raw.lines().find_map(|l| l.strip_prefix("data: "));
                    return data.unwrap_or_default().to_owned();
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("{}: no change event within {WAIT:?}", self.who))
                .unwrap()
                .unwrap_or_else(|| panic!("{}: the event stream ended", self.who));
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads events until every run of `want` was named; every event read must name only runs
    /// in `allowed`.
    pub async fn until_runs(&mut self, want: &[i64], allowed: &[i64]) {
        let mut seen = Vec::new();
        while !want.iter().all(|w| seen.contains(w)) {
            let data = self.next().await;
            let runs: Vec<i64> = serde_json::from_str::<Value>(&data)
                .ok()
                .and_then(|v| v["runs"].as_array().cloned())
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            assert!(
                !runs.is_empty() && runs.iter().all(|r| allowed.contains(r)),
                "{}: told about a change that is not one of runs {allowed:?}: {data:?}",
                self.who
            );
            seen.extend(runs);
        }
    }
}
