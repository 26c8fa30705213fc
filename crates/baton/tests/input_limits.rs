//! Bad input at the edges: trigger arguments that could never become a job's environment are
//! refused at trigger time (API and UI form) and record nothing, and `Range` headers on logs
//! follow RFC 9110 (no overflow, suffix ranges, clamped ends, `416` with `bytes */LEN`).

mod common;
#[path = "common/users.rs"]
mod users;

use common::{Server, id_of};
use serde_json::{Value, json};
use users::*;

const CONFIG: &str = r#"
administrators: [root]
tasks:
  echo:
    authorized_users: [root]
    command: printf '%s' "${who:-nobody}"
  digits:
    command: printf '0123456789'
"#;

/// Runs recorded so far (all of them: the operator sees everything).
async fn run_count(s: &Server) -> usize {
    s.get_ok("/runs?limit=500").await["runs"]
        .as_array()
        .expect("runs array")
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_are_400_at_trigger_time_and_record_nothing() {
    let s = Server::start(CONFIG);
    // `big=` + value + NUL may be 128 KiB (the kernel's limit on one environment string).
    let big = "v".repeat(131068);
    let fits = "v".repeat(120 * 1024);
    let many: serde_json::Map<String, Value> = (0..9)
        .map(|i| (format!("a{i}"), Value::String(fits.clone())))
        .collect();
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "NUL byte in a value",
            json!({"args": {"who": "a\u{0}b"}}),
            vec!["\"who\"", "NUL", "byte 1"],
        ),
        (
            "value over 128 KiB",
            json!({"args": {"big": big}}),
            vec!["\"big\"", "131068 bytes", "at most 131067 bytes", "128 KiB"],
        ),
        (
            "values over 1 MiB together",
            json!({ "args": many }),
            vec!["1105920 bytes", "1 MiB"],
        ),
        (
            "empty argument name",
            json!({"args": {"": "x"}}),
            vec!["empty name"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, body, want) in cases {
        let (st, v) = s.post("/tasks/echo/trigger", body).await;
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        if st != 400
            || v["error"]["code"] != "bad_argument"
            || !want.iter().all(|w| msg.contains(w))
        {
            failures.push(format!(
                "{what}: got {st} {v}, want 400 bad_argument naming {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(run_count(&s).await, 0, "a refused trigger recorded a run");

    // The UI's trigger form goes the same way: a 400 page with the reason, no run.
    add_user(&s, "root", "pw-root");
    let cookie = format!("baton_session={}", login(&s, "root", "pw-root").await);
    let http = no_redirects();
    let page = users::page(&s, &cookie, "/trigger/task/echo").await;
    let csrf = csrf_in(&page);
    for (what, extra, want) in [
        ("UI: empty argument name", "=x", "empty name"),
        ("UI: NUL byte", "who=a\0b", "NUL"),
    ] {
        let r = http
            .post(format!("{}/trigger/task/echo", s.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&[("csrf", &csrf), ("extra", extra)]))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let html = r.text().await.unwrap();
        assert_eq!(st, 400, "{what}: {html}");
        assert!(html.contains(want), "{what}: page does not say {want:?}");
    }
    assert_eq!(
        run_count(&s).await,
        0,
        "a refused UI trigger recorded a run"
    );

    // Limits are inclusive: the longest value allowed runs and reaches the job whole.
    let exact = "w".repeat(131072 - "who=".len() - 1);
    let id = id_of(&s.trigger("echo", &[("who", &exact)]).await);
    let run = s.wait_run(id).await;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(s.log(id, None).await.len(), exact.len());
}

/// GET the log of run `id` with `Range: range`; returns (status, Content-Range, body).
async fn ranged(s: &Server, id: i64, range: &str) -> (u16, Option<String>, Vec<u8>) {
    let r = s
        .http
        .get(s.url(&format!("/runs/{id}/log")))
        .bearer_auth(&s.token)
        .header("range", range)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let cr = r
        .headers()
        .get("content-range")
        .map(|v| v.to_str().unwrap().to_owned());
    (st, cr, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn log_ranges_follow_rfc_9110() {
    let s = Server::start(CONFIG);
    let id = id_of(&s.trigger("digits", &[]).await);
    s.wait_run(id).await;
    assert_eq!(s.log(id, None).await, b"0123456789");

    let mut failures = Vec::new();
    for (range, want_st, want_cr, want_body) in [
        // The two reported cases: an end that overflows `end + 1`, and a suffix range.
        (
            "bytes=0-18446744073709551615",
            206,
            Some("bytes 0-9/10"),
            &b"0123456789"[..],
        ),
        ("bytes=-5", 206, Some("bytes 5-9/10"), b"56789"),
        // An end past the last byte is clamped; a suffix longer than the log is all of it.
        ("bytes=3-100", 206, Some("bytes 3-9/10"), b"3456789"),
        ("bytes=-100", 206, Some("bytes 0-9/10"), b"0123456789"),
        ("bytes=2-4", 206, Some("bytes 2-4/10"), b"234"),
        ("bytes=9-", 206, Some("bytes 9-9/10"), b"9"),
        ("bytes=99999999999999999999-", 416, Some("bytes */10"), b""),
        ("bytes=10-", 416, Some("bytes */10"), b""),
        ("bytes=-0", 416, Some("bytes */10"), b""),
        // Several ranges: served whole (the RFC lets a server ignore Range).
        ("bytes=0-1,4-5", 200, None, b"0123456789"),
        // A unit we do not know is ignored.
        ("lines=1-2", 200, None, b"0123456789"),
    ] {
        let (st, cr, body) = ranged(&s, id, range).await;
        let body_ok = st == 416 || body == want_body;
        if st != want_st || cr.as_deref() != want_cr || !body_ok {
            failures.push(format!(
                "Range: {range}: got {st} {cr:?} {:?}, want {want_st} {want_cr:?} {:?}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(want_body)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
