//! The HTTP API: auth (tokens and JWT), clean 4xx errors, reload, SSE logs, the queue.

mod common;

use std::time::Duration;

use common::sse::{SseEvent, take_event};
use common::{Server, gate, id_of, reason, status, text};
use serde_json::{Value, json};

fn config(version: &str) -> String {
    format!(
        r#"
server:
  jwt_secret: s3cret
workers:
  w1:
    queues: [default]
  w2:
    queues: [default]
  g1:
    host: "u@127.0.0.1"
    queues: [gpu]
tasks:
  ping:
    command: echo "pong {version}"
  ver:
    wait_list: {{size: 1, strategy: append}}
    command: |
      {g}
      echo "ver {version}"
  ticker:
    command: |
      for i in $(seq 1 50); do echo "tick $i"; done
      {g}
      for i in $(seq 51 100); do echo "tick $i"; done
  utf8:
    command: |
      head -c 65535 /dev/zero | tr '\0' 'a'
      printf '\303\251\n'
  gputask:
    queues: [gpu]
    command: echo gpu
"#,
        g = gate("gate"),
    )
}

fn jwt(secret: &str, exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "tester", "exp": now + exp_offset}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn jwt_claims(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_need_exp_and_honour_nbf() {
    let s = Server::start(&config("v1"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let call = |claims: Value| {
        s.http
            .get(s.url("/tasks"))
            .bearer_auth(jwt_claims(claims))
            .send()
    };
    for (claims, needle, what) in [
        (json!({"sub": "tester"}), "`exp`", "a JWT without exp"),
        (
            json!({"sub": "tester", "exp": now + 600, "nbf": now + 3600}),
            "`nbf`",
            "a JWT not valid before an hour from now",
        ),
    ] {
        let r = call(claims).await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{what}");
        let v: Value = r.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{what}: {message}");
    }
    let r = call(json!({"sub": "tester", "exp": now + 600, "nbf": now - 10}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "nbf passed, exp ahead");
}

/// Sends a request and checks it answers `want` with an error JSON; returns the code.
async fn expect_error(req: reqwest::RequestBuilder, want: u16, what: &str) -> String {
    let resp = req.send().await.unwrap();
    let st = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(st, want, "{what}: status (body {body})");
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {body:?}"));
    let code = v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error.code in {v}"));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no error.message in {v}"
    );
    code.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_tokens_and_jwt() {
    let s = Server::start(&config("v1"));
    let url = s.url("/tasks");
    let c = &s.http;

    let health = c.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    assert_eq!(
        expect_error(c.get(&url), 401, "no token").await,
        "unauthorized"
    );
    assert_eq!(
        expect_error(
            c.get(&url).bearer_auth("baton_not_a_real_token"),
            401,
            "wrong token"
        )
        .await,
        "unauthorized"
    );
    assert_eq!(
        expect_error(
            c.get(&url).header("Authorization", "Basic dTpw"),
            401,
            "not bearer"
        )
        .await,
        "unauthorized"
    );
    assert_eq!(
        expect_error(
            c.get(&url).bearer_auth(jwt("other-secret", 600)),
            401,
            "JWT, other secret"
        )
        .await,
        "unauthorized"
    );
    assert_eq!(
        expect_error(
            c.get(&url).bearer_auth(jwt("s3cret", -600)),
            401,
            "expired JWT"
        )
        .await,
        "unauthorized"
    );
    assert_eq!(
        expect_error(c.get(&url).bearer_auth("garbage"), 401, "garbage token").await,
        "unauthorized"
    );

    let ok = c
        .get(&url)
        .bearer_auth(jwt("s3cret", 600))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status().as_u16(),
        200,
        "a JWT signed with server.jwt_secret is accepted"
    );
    let v: Value = ok.json().await.unwrap();
    assert!(
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "ping"),
        "{v}"
    );

    let ok = c.get(&url).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200, "the Baton token is accepted");

    // The CLI reports a bad token as an error, not a crash.
    let out = std::process::Command::new(common::BIN)
        .args(["runs"])
        .env("BATON_SERVER", &s.base)
        .env("BATON_TOKEN", "baton_wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("401"), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_clean_4xx_json() {
    let s = Server::start(&config("v1"));
    let c = &s.http;
    let t = &s.token;
    let trig = s.url("/tasks/ping/trigger");

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (
            "bad JSON body",
            c.post(&trig)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .body("{\"args\": "),
            400,
            Some("bad_request"),
        ),
        (
            "unknown body field",
            c.post(&trig).bearer_auth(t).json(&json!({"argz": {}})),
            400,
            Some("bad_request"),
        ),
        (
            "args not strings",
            c.post(&trig)
                .bearer_auth(t)
                .json(&json!({"args": {"a": 1}})),
            400,
            Some("bad_request"),
        ),
        (
            "arg name 1bad",
            c.post(&trig)
                .bearer_auth(t)
                .json(&json!({"args": {"1bad": "x"}})),
            400,
            Some("bad_argument"),
        ),
        (
            "arg name BATON_",
            c.post(&trig)
                .bearer_auth(t)
                .json(&json!({"args": {"BATON_RUN_ID": "7"}})),
            400,
            Some("bad_argument"),
        ),
        (
            "unknown task",
            c.post(s.url("/tasks/nope/trigger"))
                .bearer_auth(t)
                .json(&json!({})),
            404,
            Some("unknown_target"),
        ),
        (
            "unknown pipeline",
            c.post(s.url("/pipelines/nope/trigger")).bearer_auth(t),
            404,
            Some("unknown_target"),
        ),
        (
            "non-numeric run id",
            c.get(s.url("/runs/abc")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "unknown run",
            c.get(s.url("/runs/987654")).bearer_auth(t),
            404,
            Some("run_not_found"),
        ),
        (
            "unknown run wait",
            c.get(s.url("/runs/987654/wait?timeout=1")).bearer_auth(t),
            404,
            Some("run_not_found"),
        ),
        (
            "unknown run log",
            c.get(s.url("/runs/987654/log")).bearer_auth(t),
            404,
            Some("run_not_found"),
        ),
        (
            "cancel unknown run",
            c.post(s.url("/runs/987654/cancel")).bearer_auth(t),
            404,
            Some("run_not_found"),
        ),
        (
            "rerun unknown run",
            c.post(s.url("/runs/987654/rerun")).bearer_auth(t),
            404,
            Some("run_not_found"),
        ),
        (
            "bad status filter",
            c.get(s.url("/runs?status=bogus")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "bad trigger filter",
            c.get(s.url("/runs?trigger=bogus")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "limit=0",
            c.get(s.url("/runs?limit=0")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "limit=-1",
            c.get(s.url("/runs?limit=-1")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "limit=abc",
            c.get(s.url("/runs?limit=abc")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "unknown query parameter",
            c.get(s.url("/runs?colour=red")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "huge run id",
            c.get(s.url("/runs/99999999999999999999")).bearer_auth(t),
            400,
            Some("bad_request"),
        ),
        (
            "unknown endpoint",
            c.get(s.url("/nope")).bearer_auth(t),
            404,
            None,
        ),
        (
            "unknown endpoint outside the API",
            c.get(format!("{}/nope", s.base)),
            404,
            None,
        ),
        (
            "wrong method",
            c.delete(s.url("/runs")).bearer_auth(t),
            405,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (what, req, want, code) in cases {
        let resp = req.send().await.unwrap();
        let st = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        let v: Option<Value> = serde_json::from_str(&body).ok();
        let got_code = v
            .as_ref()
            .and_then(|v| v["error"]["code"].as_str())
            .map(str::to_string);
        let ok =
            st == want && got_code.is_some() && code.is_none_or(|c| got_code.as_deref() == Some(c));
        if !ok {
            failures.push(format!(
                "{what}: got {st} {body:?}, want {want} JSON error{}",
                code.map(|c| format!(" with code {c}")).unwrap_or_default()
            ));
        }
    }

    // Log-specific errors need a run.
    let id = id_of(&s.trigger("ping", &[]).await);
    s.wait_run(id).await;
    for (what, path, range, want) in [
        (
            "log offset past the end",
            format!("/runs/{id}/log?offset=999999"),
            None,
            416,
        ),
        (
            "log unknown job",
            format!("/runs/{id}/log?job=nope"),
            None,
            404,
        ),
        (
            "log bad range",
            format!("/runs/{id}/log"),
            Some("bytes=zz"),
            416,
        ),
        (
            "log reversed range",
            format!("/runs/{id}/log"),
            Some("bytes=5-1"),
            416,
        ),
        (
            "log offset not a number",
            format!("/runs/{id}/log?offset=abc"),
            None,
            400,
        ),
        (
            "stream unknown job",
            format!("/runs/{id}/log/stream?job=nope"),
            None,
            404,
        ),
    ] {
        let mut req = c.get(s.url(&path)).bearer_auth(t);
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let resp = req.send().await.unwrap();
        let st = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        let is_err_json =
            serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"]["code"].is_string());
        if st != want || !is_err_json {
            failures.push(format!("{what}: got {st} {body:?}, want {want} JSON error"));
        }
    }
    assert!(
        failures.is_empty(),
        "malformed requests answered wrongly:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_old_config_on_error_and_queued_runs_keep_their_command() {
    let s = Server::start(&config("v1"));
    let g = s.root.path().join("gate");
    let gs = g.to_str().unwrap();

    // One run of `ver` holds the worker-side slot, one waits in its wait list.
    let v1 = id_of(&s.trigger("ver", &[("gate", gs)]).await);
    s.wait_until(v1, "running", |r| status(r) == "running")
        .await;
    let v2 = id_of(&s.trigger("ver", &[("gate", gs)]).await);
    assert_eq!(status(&s.run(v2).await), "queued");

    // A bad file: 422 with the diagnostics, the old config stays.
    s.write_config(
        "zz-bad.yaml",
        "tasks:\n  broken:\n    command: echo\n    colour: red\n",
    );
    let (st, body) = s.post("/config/reload", json!({})).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("zz-bad.yaml:4:5:"),
        "the message carries the diagnostic: {msg}"
    );
    let out = s.cli(&["reload"]);
    assert!(
        !out.status.success(),
        "CLI reload of a bad config must fail: {:?}",
        text(&out)
    );
    let p = id_of(&s.trigger("ping", &[]).await);
    assert_eq!(status(&s.wait_run(p).await), "success");
    assert_eq!(s.log_text(p, None).await, "pong v1\n");

    // A good config: v2.
    std::fs::remove_file(s.config_dir.join("zz-bad.yaml")).unwrap();
    s.write_config("baton.yaml", &config("v2"));
    let out = s.cli(&["reload"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let p = id_of(&s.trigger("ping", &[]).await);
    assert_eq!(status(&s.wait_run(p).await), "success");
    assert_eq!(s.log_text(p, None).await, "pong v2\n");

    std::fs::write(&g, "").unwrap();
    for id in [v1, v2] {
        let run = s.wait_run(id).await;
        assert_eq!(status(&run), "success", "{run:#}");
        assert_eq!(
            s.log_text(id, None).await,
            "ver v1\n",
            "run {id} was queued before the reload"
        );
    }
    let v3 = id_of(&s.trigger("ver", &[("gate", gs)]).await);
    s.wait_run(v3).await;
    assert_eq!(s.log_text(v3, None).await, "ver v2\n");
}

/// Reads SSE events from `resp` until `stop` says so or the stream ends.
async fn read_events(
    resp: &mut reqwest::Response,
    buf: &mut String,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut out = Vec::new();
    loop {
        while let Some(ev) = take_event(buf) {
            let done = stop(&ev);
            out.push(ev);
            if done {
                return out;
            }
        }
        match resp.chunk().await.unwrap() {
            Some(c) => buf.push_str(std::str::from_utf8(&c).expect("SSE is UTF-8")),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_log_stream_resumes_without_duplicates() {
    let s = Server::start(&config("v1"));
    let g = s.root.path().join("gate");
    let id = id_of(&s.trigger("ticker", &[("gate", g.to_str().unwrap())]).await);
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;

    let mut text = String::new();
    let mut next_offset = 0u64;
    let mut check = |ev: &SseEvent, text: &mut String| {
        assert_eq!(ev.event, "log");
        let d: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(
            d["offset"].as_u64(),
            Some(next_offset),
            "events are contiguous"
        );
        let t = d["text"].as_str().unwrap();
        text.push_str(t);
        next_offset += t.len() as u64;
        assert_eq!(
            ev.id.as_deref(),
            Some(next_offset.to_string().as_str()),
            "id is the next offset"
        );
    };

    // First connection: read until the first half is in, then hang up.
    let mut resp = s
        .http
        .get(s.url(&format!("/runs/{id}/log/stream")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buf = String::new();
    let mut seen = String::new();
    let first = tokio::time::timeout(
        Duration::from_secs(30),
        read_events(&mut resp, &mut buf, |ev| {
            if ev.event != "log" {
                return true;
            }
            let d: Value = serde_json::from_str(&ev.data).unwrap();
            seen.push_str(d["text"].as_str().unwrap_or(""));
            seen.ends_with("tick 50\n")
        }),
    )
    .await
    .expect("the first half of the log within 30 s");
    drop(resp);
    for ev in &first {
        check(ev, &mut text);
    }
    assert!(
        text.ends_with("tick 50\n"),
        "first connection got: {text:?}"
    );
    let last_id = first.last().unwrap().id.clone().unwrap();

    // Let the job finish, then resume from the last event id.
    std::fs::write(&g, "").unwrap();
    let mut resp = s
        .http
        .get(s.url(&format!("/runs/{id}/log/stream")))
        .bearer_auth(&s.token)
        .header("Last-Event-ID", &last_id)
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let rest = tokio::time::timeout(
        Duration::from_secs(30),
        read_events(&mut resp, &mut buf, |ev| ev.event == "end"),
    )
    .await
    .expect("the rest of the log and `end` within 30 s");
    let (end, logs) = rest.split_last().expect("some events");
    assert_eq!(end.event, "end", "the stream ends with `end`");
    let end_data: Value = serde_json::from_str(&end.data).unwrap();
    assert_eq!(end_data["status"], "success", "{end_data}");
    for ev in logs {
        check(ev, &mut text);
    }
    let want: String = (1..=100).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text, want, "the log arrives whole, without duplicates");
    // After `end`, the server closes the stream.
    let tail = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the stream closes after `end`")
        .unwrap();
    assert!(tail.is_none(), "nothing after `end`: {tail:?}");
}

/// A multi-byte character that straddles the server's read chunks must arrive whole.
#[tokio::test(flavor = "multi_thread")]
async fn sse_keeps_multibyte_characters_whole() {
    let s = Server::start(&config("v1"));
    let id = id_of(&s.trigger("utf8", &[]).await);
    assert_eq!(status(&s.wait_run(id).await), "success");
    let want = format!("{}\u{e9}\n", "a".repeat(65535));
    assert_eq!(s.log(id, None).await, want.as_bytes(), "raw log");

    let mut resp = s
        .http
        .get(s.url(&format!("/runs/{id}/log/stream")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let events = tokio::time::timeout(
        Duration::from_secs(30),
        read_events(&mut resp, &mut buf, |ev| ev.event == "end"),
    )
    .await
    .expect("the stream within 30 s");
    let text: String = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text.len(), want.len(), "SSE text differs from the log");
    assert!(
        text == want,
        "SSE text differs from the log near the end: {:?}",
        &text[text.len().saturating_sub(8)..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_and_workers_explain_waiting() {
    let s = Server::start(&config("v1"));
    let id = id_of(&s.trigger("gputask", &[]).await);
    let want = "queued: no worker serves queue `gpu`";
    let run = s
        .wait_until(id, "a waiting reason", |r| !reason(r).is_empty())
        .await;
    assert_eq!(status(&run), "queued");
    assert_eq!(reason(&run), want);

    let q = s.get_ok("/queue").await;
    let entries = q["queue"].as_array().unwrap();
    let e = entries
        .iter()
        .find(|e| e["run_id"] == id)
        .unwrap_or_else(|| panic!("run {id} not in /queue: {q:#}"));
    assert_eq!(e["reason"], want, "{q:#}");
    assert_eq!(e["target"], "gputask");

    let w = s.get_ok("/workers").await;
    let workers = w["workers"].as_array().unwrap();
    let g1 = workers
        .iter()
        .find(|w| w["name"] == "g1")
        .expect("g1 listed");
    assert_eq!(g1["state"], "down", "{w:#}");
    assert!(g1["run_id"].is_null(), "an SSH worker gets no runs: {w:#}");
    for name in ["w1", "w2"] {
        let wk = workers
            .iter()
            .find(|w| w["name"] == name)
            .expect("local worker listed");
        assert_eq!(wk["state"], "idle", "{w:#}");
    }

    // Still queued, and cancelable while queued.
    let (st, body) = s.post(&format!("/runs/{id}/cancel"), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "canceled", "{run:#}");
    let q = s.get_ok("/queue").await;
    assert!(
        !q["queue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["run_id"] == id),
        "{q:#}"
    );
}
