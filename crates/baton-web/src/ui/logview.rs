//! The window of a job's log a run page shows: the end by default, an earlier window
//! (`?before=OFFSET`, "load earlier"), or the window around a line (`?line=N`, what a `#LN`
//! anchor outside the shown lines loads). Never more than [`LOG_WINDOW`] bytes are read for the
//! lines, and lines are counted only in a bounded prefix.

use std::path::Path as FsPath;

use baton_store::JobRow;

use super::logmeta::{LineMeta, Marker, line_meta};
use crate::AppState;
use crate::ansi::render_lines;

/// The most index marks a window reads (one per line is usual; a window has fewer lines).
const MAX_MARKS: usize = 100_000;

/// How much of a log a run page shows at once; "load earlier" pages back by this much.
pub(super) const LOG_WINDOW: u64 = 256 * 1024;
/// Line numbers are counted only below this prefix size; past it, lines are labelled by offset.
const COUNT_LINES_UP_TO: u64 = 64 * 1024 * 1024;

pub(super) struct LineView {
    pub anchor: String,
    pub label: String,
    pub html: String,
    /// When the line arrived (ms since the epoch; 0 when the log has no index, or when it is
    /// the time of the line above).
    pub time_ms: i64,
    /// The line came from stderr.
    pub err: bool,
    /// `start` or `end` of a collapsible section, or empty.
    pub sec: &'static str,
    /// A section's name (its header and GitLab's end name it).
    pub sec_name: String,
    /// The section starts collapsed (GitLab's `[collapsed=true]`).
    pub collapsed: bool,
    /// GitLab's own time of a section marker (Unix seconds; 0 for GitHub's groups).
    pub sec_ts: i64,
    /// A section header's duration, formatted (empty when its end is not in the window).
    pub dur: String,
}

pub(super) struct LogView {
    pub job: String,
    pub job_id: i64,
    pub start: u64,
    pub end: u64,
    pub size: u64,
    pub live: bool,
    /// The number of the last line shown (0 when lines are labelled by offset).
    pub last_line: u64,
    /// The `before=` of the next newer window (0: the newer window is the end of the log).
    pub newer: u64,
    pub lines: Vec<LineView>,
    /// [`LOG_WINDOW`], for the page's links.
    pub window: u64,
}

impl LogView {
    /// Lines after the window exist (the page shows an earlier window).
    pub fn has_newer(&self) -> bool {
        self.end < self.size
    }
}

/// Which window of the log to show.
#[derive(Clone, Copy)]
pub(super) enum Window {
    End,
    Before(u64),
    Line(u64),
}

/// Counts the newlines in the first `upto` bytes of `path`, reading in bounded chunks.
fn count_newlines(path: &FsPath, upto: u64) -> std::io::Result<u64> {
    let mut n = 0;
    let mut pos = 0;
    while pos < upto {
        let chunk = baton_exec::read_log_range(path, pos, (upto - pos).min(1 << 20))?;
        if chunk.is_empty() {
            break;
        }
        n += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        pos += chunk.len() as u64;
    }
    Ok(n)
}

/// The offset where line `n` (1-based) starts, if it starts within the counted prefix.
fn offset_of_line(path: &FsPath, n: u64) -> Option<u64> {
    if n <= 1 {
        return Some(0);
    }
    let (mut seen, mut pos) = (0u64, 0u64);
    while pos < COUNT_LINES_UP_TO {
        let chunk = baton_exec::read_log_range(path, pos, 1 << 20).ok()?;
        if chunk.is_empty() {
            return None;
        }
        for (i, _) in chunk.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            seen += 1;
            if seen == n - 1 {
                return Some(pos + i as u64 + 1);
            }
        }
        pos += chunk.len() as u64;
    }
    None
}

/// The end offset of the window to show.
fn window_end(path: &FsPath, size: u64, w: Window) -> u64 {
    match w {
        Window::End => size,
        Window::Before(b) => b.min(size),
        Window::Line(n) => match offset_of_line(path, n) {
            // The line a little below the middle, so lines after it show too.
            Some(at) => offset_of_line(path, n + 200)
                .unwrap_or(size)
                .min(at + LOG_WINDOW / 2)
                .max((at + 1).min(size)),
            None => size,
        },
    }
}

/// Reads `[end - LOG_WINDOW, end)` starting at a whole line, with the number of the line before
/// it (`None` past the counted prefix).
fn read_window(path: &FsPath, end: u64) -> (u64, Vec<u8>, Option<u64>) {
    let mut start = end.saturating_sub(LOG_WINDOW);
    let mut bytes = baton_exec::read_log_range(path, start, end - start).unwrap_or_default();
    if start > 0
        && let Some(i) = bytes.iter().position(|&b| b == b'\n')
    {
        bytes.drain(..=i);
        start += i as u64 + 1;
    }
    let first = if start == 0 {
        Some(0)
    } else if start <= COUNT_LINES_UP_TO {
        count_newlines(path, start).ok()
    } else {
        None
    };
    (start, bytes, first)
}

fn line_views(
    rendered: Vec<String>,
    meta: Vec<LineMeta>,
    first_line: Option<u64>,
    start: u64,
) -> Vec<LineView> {
    let mut meta = meta.into_iter();
    // A line arriving in the same millisecond as the one above carries no time of its own
    // (the page's script fills it in): a fast job's window stays small.
    let mut last_time = 0;
    rendered
        .into_iter()
        .enumerate()
        .map(|(i, html)| {
            let (anchor, label) = match first_line {
                Some(f) => {
                    let n = f + i as u64 + 1;
                    (format!("L{n}"), n.to_string())
                }
                None => (format!("B{start}-{i}"), format!("+{i}")),
            };
            let m = meta.next().unwrap_or_default();
            let time_ms = if m.time_ms == last_time { 0 } else { m.time_ms };
            last_time = m.time_ms;
            let mut v = LineView {
                anchor,
                label,
                html,
                time_ms,
                err: m.stderr,
                sec: "",
                sec_name: String::new(),
                collapsed: false,
                sec_ts: 0,
                dur: m
                    .duration_ms
                    .map(baton_core::run::format_duration_ms)
                    .unwrap_or_default(),
            };
            match m.marker {
                Some(Marker::Start {
                    name,
                    title,
                    collapsed,
                    ts,
                }) => {
                    // The header reads as its title, not as the marker.
                    v.html = render_lines(title.as_bytes()).pop().unwrap_or_default();
                    (v.sec, v.sec_name, v.collapsed) = ("start", name, collapsed);
                    v.sec_ts = ts.unwrap_or(0);
                }
                Some(Marker::End { name, ts }) => {
                    (v.sec, v.sec_name) = ("end", name.unwrap_or_default());
                    v.sec_ts = ts.unwrap_or(0);
                }
                None => {}
            }
            v
        })
        .collect()
}

pub(super) async fn read_log(s: &AppState, job: &JobRow, w: Window) -> LogView {
    let path = s.folders.log_path(job.id, job.attempt);
    let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
    let (end, (start, bytes, first_line), marks) = tokio::task::spawn_blocking(move || {
        let end = window_end(&path, size, w);
        let window = read_window(&path, end);
        let marks = baton_exec::read_marks(&path, window.0, end, MAX_MARKS).unwrap_or_default();
        (end, window, marks)
    })
    .await
    .unwrap_or_default();
    let rendered = render_lines(&bytes);
    let meta = line_meta(&bytes, start, &marks);
    let last_line = first_line.map_or(0, |f| f + rendered.len() as u64);
    let newer = end.saturating_add(LOG_WINDOW);
    LogView {
        job: job.name.clone(),
        job_id: job.id,
        start,
        end,
        size,
        live: !job.status.is_terminal() && end == size && matches!(w, Window::End),
        last_line,
        newer: if newer >= size { 0 } else { newer },
        lines: line_views(rendered, meta, first_line, start),
        window: LOG_WINDOW,
    }
}
