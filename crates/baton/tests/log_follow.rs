//! Live log follow over SSE: many viewers of one busy job each get every byte, in order,
//! exactly once (a late one too, from the start); the server watches the job's log with one
//! inotify watch however many viewers there are, and none once they are gone and the job ended.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::sse::take_events;
use common::{Server, WAIT, gate, id_of, status};
use serde_json::Value;

const VIEWERS: usize = 50;

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
tasks:
  busy:
    command: |
      {g1}
      for i in $(seq 1 150); do echo "first half, line $i: some padding to make the line longer"; sleep 0.005; done
      seq 40000 | sed 's/.*/é/' | tr -d '\n'; echo
      {g2}
      for i in $(seq 1 150); do echo "second half, line $i: more padding to make it longer"; sleep 0.005; done
      echo done
"#,
        g1 = gate("g1"),
        g2 = gate("g2"),
    )
}

/// What one viewer received: the text of its `log` events, checked to be contiguous, and the
/// data of its `end` event.
struct Received {
    text: String,
    end: Value,
}

/// Opens the job's live log (the answer's headers are in when this returns).
async fn connect(s: &Server, id: i64) -> reqwest::Response {
    let resp = s
        .http
        .get(s.url(&format!("/runs/{id}/log/stream")))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("connect to the log stream");
    assert_eq!(resp.status().as_u16(), 200, "log stream answer");
    resp
}

/// Reads a viewer's stream to its `end` event, checking that the offsets are contiguous from 0
/// and that each event's id is the next offset.
async fn read_all(viewer: usize, mut resp: reqwest::Response) -> Received {
    let mut buf = String::new();
    let mut bytes = Vec::new();
    let mut text = String::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .unwrap_or_else(|e| panic!("viewer {viewer}: reading the stream failed: {e}"))
            .unwrap_or_else(|| panic!("viewer {viewer}: the stream ended without an end event"));
        bytes.extend_from_slice(&chunk);
        // SSE is UTF-8 text; a chunk may end inside a character.
        let upto = match std::str::from_utf8(&bytes) {
            Ok(_) => bytes.len(),
            Err(e) => e.valid_up_to(),
        };
        buf.push_str(std::str::from_utf8(&bytes[..upto]).unwrap());
        bytes.drain(..upto);
        for ev in take_events(&mut buf) {
            match ev.event.as_str() {
                "log" => {
                    let d: Value = serde_json::from_str(&ev.data).unwrap();
                    assert_eq!(
                        d["offset"].as_u64(),
                        Some(text.len() as u64),
                        "viewer {viewer}: events are contiguous"
                    );
                    text.push_str(d["text"].as_str().unwrap());
                    assert_eq!(
                        ev.id.as_deref(),
                        Some(text.len().to_string().as_str()),
                        "viewer {viewer}: the id is the next offset"
                    );
                }
                "end" => {
                    return Received {
                        text,
                        end: serde_json::from_str(&ev.data).unwrap(),
                    };
                }
                other => panic!("viewer {viewer}: unexpected event {other:?}"),
            }
        }
    }
}

/// The inotify watches the process holds, over all its inotify descriptors.
fn inotify_watches(pid: u32) -> usize {
    let dir = format!("/proc/{pid}/fdinfo");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir}: {e}"));
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

/// Waits (bounded) until `pred` holds of the server's watch count; fails with what was awaited.
async fn wait_watches(s: &Server, what: &str, pred: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = inotify_watches(s.pid());
        if pred(n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what}; the server holds {n} inotify watches\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server running the `busy` task, held at its first gate: the server, the run, and the two
/// gate files that let it go on.
async fn busy_running() -> (Server, i64, PathBuf, PathBuf) {
    let s = Server::start(&config());
    let g1 = s.root.path().join("g1");
    let g2 = s.root.path().join("g2");
    let run = s
        .trigger(
            "busy",
            &[("g1", g1.to_str().unwrap()), ("g2", g2.to_str().unwrap())],
        )
        .await;
    let id = id_of(&run);
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;
    (s, id, g1, g2)
}

#[tokio::test(flavor = "multi_thread")]
async fn many_viewers_share_one_watch_and_each_gets_every_byte() {
    let (s, id, g1, g2) = busy_running().await;
    assert_eq!(
        inotify_watches(s.pid()),
        0,
        "no watch before anyone follows"
    );

    // Fifty viewers, all connected before the job prints anything.
    let mut viewers = Vec::new();
    for _ in 0..VIEWERS {
        viewers.push(connect(&s, id).await);
    }
    let held = wait_watches(&s, "the job's log to be watched", |n| n >= 1).await;
    assert!(held <= 2, "{VIEWERS} viewers of one job: {held} watches");
    let readers: Vec<_> = viewers
        .into_iter()
        .enumerate()
        .map(|(i, resp)| tokio::spawn(read_all(i, resp)))
        .collect();

    // While they follow the first half, the count stays put.
    std::fs::write(&g1, "").unwrap();
    let log_has = |needle: &'static str| {
        let s = &s;
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let log = s.log_text(id, None).await;
                if log.contains(needle) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the log did not show {needle:?} within {WAIT:?}: {log:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    log_has("first half, line 75:").await;
    let mid = inotify_watches(s.pid());
    assert!(
        (1..=2).contains(&mid),
        "{VIEWERS} viewers mid-job: {mid} watches"
    );

    // A viewer that joins late, halfway through, still gets everything from the start.
    log_has("first half, line 150:").await;
    let late = tokio::spawn(read_all(VIEWERS, connect(&s, id).await));
    let with_late = inotify_watches(s.pid());
    assert!(
        (1..=2).contains(&with_late),
        "{} viewers: {with_late} watches",
        VIEWERS + 1
    );
    std::fs::write(&g2, "").unwrap();

    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let log = String::from_utf8(s.log(id, None).await).expect("the log is UTF-8");
    assert!(log.ends_with("done\n") && log.contains("éé"), "{log:?}");
    for (i, r) in readers.into_iter().chain([late]).enumerate() {
        let got = tokio::time::timeout(WAIT, r)
            .await
            .unwrap_or_else(|_| panic!("viewer {i} did not see the end within {WAIT:?}"))
            .expect("viewer task");
        assert!(
            got.text == log,
            "viewer {i} got {} bytes, the log has {}; first difference at byte {}",
            got.text.len(),
            log.len(),
            got.text
                .bytes()
                .zip(log.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(got.text.len().min(log.len()))
        );
        assert_eq!(got.end["status"], "success", "viewer {i}: {}", got.end);
    }

    // Everyone has left and the job has ended: no watch is left behind.
    wait_watches(&s, "every watch to be removed", |n| n == 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_that_hang_up_release_the_watch() {
    let (s, id, g1, g2) = busy_running().await;
    let viewers: Vec<_> = connect_many(&s, id, 5).await;
    wait_watches(&s, "the job's log to be watched", |n| n >= 1).await;
    // Every viewer hangs up while the job still runs (it waits at its first gate).
    drop(viewers);
    wait_watches(&s, "the watch to go with the last viewer", |n| n == 0).await;
    // And a new viewer after that gets the whole log and the end.
    let again = tokio::spawn(read_all(0, connect(&s, id).await));
    std::fs::write(&g1, "").unwrap();
    std::fs::write(&g2, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let got = tokio::time::timeout(WAIT, again)
        .await
        .expect("the new viewer sees the end")
        .unwrap();
    assert_eq!(got.text.as_bytes(), s.log(id, None).await.as_slice());
    wait_watches(&s, "every watch to be removed", |n| n == 0).await;
}

async fn connect_many(s: &Server, id: i64, n: usize) -> Vec<reqwest::Response> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect(s, id).await);
    }
    out
}

/// Viewers take turns to read the log file (a few at a time, server-wide): a viewer that stops
/// reading its stream must not hold up the others, and when it reads again it still gets every
/// byte, in order, and the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_that_stops_reading_holds_up_no_one_and_still_gets_every_byte() {
    let (s, id, g1, g2) = busy_running().await;
    // Connected, then not read until everyone else is done.
    let stalled = connect(&s, id).await;
    let readers: Vec<_> = connect_many(&s, id, 5)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, resp)| tokio::spawn(read_all(i + 1, resp)))
        .collect();
    std::fs::write(&g1, "").unwrap();
    std::fs::write(&g2, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let log = s.log(id, None).await;
    for r in readers {
        let got = tokio::time::timeout(WAIT, r)
            .await
            .expect("the reading viewers end while one viewer reads nothing")
            .unwrap();
        assert_eq!(got.text.as_bytes(), log.as_slice());
    }
    let got = tokio::time::timeout(WAIT, read_all(0, stalled))
        .await
        .expect("the stalled viewer gets the rest once it reads");
    assert_eq!(got.text.as_bytes(), log.as_slice());
    assert_eq!(got.end["status"], "success", "{}", got.end);
}
