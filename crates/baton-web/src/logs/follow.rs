//! The live follow of a job's log over Server-Sent Events. Each viewer reads the file from its
//! own offset; it waits for new output on the job's shared watcher ([`super::hub`]), never by
//! polling on its own.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::json;

use super::hub::{Follower, LogHub, Seen};
use super::job::{CHUNK, pick_job};
use crate::api_types::LogMark;
use crate::auth::CurrentUser;
use crate::auth::load_run;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
    job: Option<String>,
    offset: Option<u64>,
}

/// SSE: `log` events carry `{"offset": N, "text": "...", "marks": [...]}` (the text decoded
/// lossily, the raw bytes are at `/log`; the marks are those of `/log/marks` covering the
/// event's bytes: when they arrived and from which stream), with the next offset as the event
/// id; an `end` event carries the final status.
pub(super) async fn stream(
    State(s): State<AppState>,
    Extension(hub): Extension<LogHub>,
    user: CurrentUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    let Query(q) = q?;
    let run = load_run(&s, &user, id).await?;
    let job = pick_job(&run, q.job.as_deref())?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let state = FollowState {
        follower: hub.follow(&s, id, job.id),
        offset: resume.or(q.offset).unwrap_or(0),
        done: false,
    };
    let events = futures::stream::unfold(state, follow_step);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct FollowState {
    follower: Follower,
    offset: u64,
    done: bool,
}

async fn follow_step(mut st: FollowState) -> Option<(Result<Event, Infallible>, FollowState)> {
    if st.done {
        return None;
    }
    loop {
        // Marked seen before the file is read: a change after the read wakes the wait below.
        let seen = st.follower.rx.borrow_and_update().clone();
        match seen {
            Seen::Pending => {}
            Seen::Gone => return None,
            Seen::Log(log) => {
                if let Some(ev) = next_event(&mut st, log.path, log.end).await {
                    return Some((Ok(ev), st));
                }
            }
        }
        if st.follower.rx.changed().await.is_err() {
            tracing::warn!("a live log's watcher stopped; ending the stream");
            return None;
        }
    }
}

/// The next event for a viewer at `st.offset` of the log at `path`: new text, the end, or
/// `None` to wait for more.
async fn next_event(
    st: &mut FollowState,
    path: std::path::PathBuf,
    end: Option<serde_json::Value>,
) -> Option<Event> {
    let offset = st.offset;
    let ended = end.is_some();
    // One blocking hop reads the text and its marks, in the viewer's turn (a viewer waiting for
    // one holds nothing but its place in the queue).
    let read = {
        let _turn = st.follower.reads.acquire().await.ok()?;
        tokio::task::spawn_blocking(move || read_step(&path, offset, ended))
            .await
            .ok()
    };
    let (sent, text, marks) = read.unwrap_or_default();
    if sent > 0 {
        st.offset += sent;
        let marks: Vec<LogMark> = marks.into_iter().map(LogMark::from).collect();
        let data = json!({"offset": offset, "text": text, "marks": marks}).to_string();
        return Some(
            Event::default()
                .event("log")
                .id(st.offset.to_string())
                .data(data),
        );
    }
    let end = end?;
    st.done = true;
    Some(Event::default().event("end").data(end.to_string()))
}

/// Reads the next chunk of the log at `path` from `offset` and the marks that cover it: how
/// many bytes it takes (0: nothing new), their text (decoded lossily) and their marks. `ended`:
/// the job has ended, so the log is final.
fn read_step(
    path: &std::path::Path,
    offset: u64,
    ended: bool,
) -> (u64, String, Vec<baton_exec::LogMark>) {
    let bytes = baton_exec::read_log_range(path, offset, CHUNK).unwrap_or_default();
    // Never split a UTF-8 character between two events: hold back an incomplete one at the end
    // of the chunk until its other bytes arrive (or the job ends without them).
    let keep = if ended && (bytes.len() as u64) < CHUNK {
        bytes.len()
    } else {
        complete_utf8_prefix(&bytes)
    };
    if keep == 0 {
        return (0, String::new(), Vec::new());
    }
    // The supervisor writes a mark before its bytes: every byte read has its mark.
    let to = offset + keep as u64;
    let marks =
        baton_exec::read_marks(path, offset, to, super::marks::MAX_MARKS).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[..keep]).into_owned();
    (keep as u64, text, marks)
}

/// The length of `bytes` without a trailing, incomplete UTF-8 sequence (invalid bytes elsewhere
/// are left for lossy decoding).
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    let tail_start = bytes.len().saturating_sub(3);
    for i in (tail_start..bytes.len()).rev() {
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return bytes.len(),
        };
        return if bytes.len() - i < need {
            i
        } else {
            bytes.len()
        };
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::complete_utf8_prefix;

    #[test]
    fn holds_back_only_an_incomplete_trailing_character() {
        let e = "é".as_bytes();
        assert_eq!(complete_utf8_prefix(b"abc"), 3);
        assert_eq!(complete_utf8_prefix(&[b'a', e[0]]), 1);
        assert_eq!(complete_utf8_prefix(&[b'a', e[0], e[1]]), 3);
        let euro = "€".as_bytes();
        assert_eq!(complete_utf8_prefix(&[b'x', euro[0], euro[1]]), 1);
        assert_eq!(complete_utf8_prefix(&[b'x', 0xff, 0xfe]), 3);
    }
}
