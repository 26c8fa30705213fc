//! What a run page tells about each line of a log beyond its text: when it arrived and from
//! which stream (the log's index, [`baton_exec::logidx`]), and the collapsible sections that
//! GitHub's `::group::NAME` / `::endgroup::` and GitLab's `section_start:TS:NAME[collapsed=true]`
//! / `section_end:TS:NAME` markers open and close. `static/app.js` reads the same markers in
//! lines appended live, so both must agree (see its `marker`).

use baton_exec::{LogMark, Stream};

/// A section marker found in a line's raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Marker {
    /// A section opens: its name, the header to show, GitLab's Unix time (seconds) if given,
    /// and whether it starts collapsed.
    Start {
        name: String,
        title: String,
        ts: Option<i64>,
        collapsed: bool,
    },
    /// A section closes (GitLab names it; GitHub closes the innermost one).
    End {
        name: Option<String>,
        ts: Option<i64>,
    },
}

/// The characters GitLab allows in a section name.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-".contains(c)
}

/// Strips ANSI escape sequences and carriage returns: what the marker grammar is checked on.
fn plain(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' => out.push('\r'),
            c => out.push(c),
        }
    }
    out
}

/// GitLab's `section_start:TS:NAME[opts]` or `section_end:TS:NAME` at `s`; the rest after it.
fn gitlab(s: &str, word: &str) -> Option<(i64, String, String, String)> {
    let at = s.find(word)?;
    let rest = &s[at + word.len()..];
    let (ts, rest) = rest.split_once(':')?;
    let ts: i64 = ts.parse().ok()?;
    let end = rest.find(|c: char| !name_char(c)).unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &rest[end..];
    let mut opts = "";
    if let Some(r) = rest.strip_prefix('[')
        && let Some((o, after)) = r.split_once(']')
    {
        opts = o;
        rest = after;
    }
    // What a terminal shows: the text after the last carriage return.
    let shown = rest.rsplit('\r').next().unwrap_or("").trim().to_string();
    Some((ts, name.to_string(), opts.to_string(), shown))
}

/// The section marker in a line, if it has one.
pub(super) fn marker(raw: &str) -> Option<Marker> {
    let p = plain(raw);
    let t = p.trim_start_matches([' ', '\t', '\r']);
    if let Some(name) = t.strip_prefix("::group::") {
        let name = name.trim().to_string();
        return Some(Marker::Start {
            title: name.clone(),
            name,
            ts: None,
            collapsed: false,
        });
    }
    if t.trim_end().starts_with("::endgroup::") {
        return Some(Marker::End {
            name: None,
            ts: None,
        });
    }
    if let Some((ts, name, opts, shown)) = gitlab(&p, "section_start:") {
        return Some(Marker::Start {
            title: if shown.is_empty() {
                name.clone()
            } else {
                shown
            },
            name,
            ts: Some(ts),
            collapsed: opts.split(',').any(|o| o.trim() == "collapsed=true"),
        });
    }
    if let Some((ts, name, _, _)) = gitlab(&p, "section_end:") {
        return Some(Marker::End {
            name: Some(name),
            ts: Some(ts),
        });
    }
    None
}

/// What the page shows of a line beside its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct LineMeta {
    /// When the line's first byte arrived (ms since the epoch; 0 when unknown).
    pub time_ms: i64,
    pub stderr: bool,
    pub marker: Option<Marker>,
    /// For a section's header: how long it took (to its end, when that is in the window).
    pub duration_ms: Option<i64>,
}

/// The metadata of each line of `bytes` (the log from byte `start` on), given the index marks
/// covering them, in line order (one per `\n`-ended line, and one for a last partial line).
pub(super) fn line_meta(bytes: &[u8], start: u64, marks: &[LogMark]) -> Vec<LineMeta> {
    let mut out = Vec::new();
    let mut m = 0;
    let mut line_start = 0usize;
    let mut push = |from: usize, to: usize, out: &mut Vec<LineMeta>| {
        let offset = start + from as u64;
        while m + 1 < marks.len() && marks[m + 1].offset <= offset {
            m += 1;
        }
        let mark = marks.get(m).filter(|k| k.offset <= offset);
        let raw = String::from_utf8_lossy(&bytes[from..to]);
        out.push(LineMeta {
            time_ms: mark.map_or(0, |k| k.time_ms),
            stderr: mark.is_some_and(|k| k.stream == Stream::Stderr),
            marker: marker(&raw),
            duration_ms: None,
        });
    };
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        push(line_start, i, &mut out);
        line_start = i + 1;
    }
    if line_start < bytes.len() {
        push(line_start, bytes.len(), &mut out);
    }
    durations(&mut out);
    out
}

/// Sets each header's duration from its end marker (GitLab's own times, else arrival times).
fn durations(lines: &mut [LineMeta]) {
    let mut open: Vec<(usize, Option<String>)> = Vec::new();
    for i in 0..lines.len() {
        match &lines[i].marker {
            Some(Marker::Start { name, .. }) => open.push((i, Some(name.clone()))),
            Some(Marker::End { name, ts }) => {
                let at = match name {
                    Some(n) => open.iter().rposition(|(_, o)| o.as_deref() == Some(n)),
                    None => open.len().checked_sub(1),
                };
                let Some(at) = at else { continue };
                let (h, _) = open[at];
                open.truncate(at);
                let started = match &lines[h].marker {
                    Some(Marker::Start { ts: Some(s), .. }) => Some(s * 1000),
                    _ => None,
                };
                let d = match (started, ts) {
                    (Some(s), Some(e)) => e * 1000 - s,
                    _ if lines[h].time_ms > 0 && lines[i].time_ms > 0 => {
                        lines[i].time_ms - lines[h].time_ms
                    }
                    _ => continue,
                };
                lines[h].duration_ms = Some(d.max(0));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_and_gitlab_markers_are_read() {
        assert_eq!(
            marker("::group::Build it"),
            Some(Marker::Start {
                name: "Build it".into(),
                title: "Build it".into(),
                ts: None,
                collapsed: false
            })
        );
        assert_eq!(
            marker("::endgroup::"),
            Some(Marker::End {
                name: None,
                ts: None
            })
        );
        assert_eq!(
            marker("\x1b[0Ksection_start:1700000000:deps[collapsed=true]\r\x1b[0KInstalling deps"),
            Some(Marker::Start {
                name: "deps".into(),
                title: "Installing deps".into(),
                ts: Some(1_700_000_000),
                collapsed: true
            })
        );
        assert_eq!(
            marker("section_end:1700000042:deps\r\x1b[0K"),
            Some(Marker::End {
                name: Some("deps".into()),
                ts: Some(1_700_000_042)
            })
        );
        assert_eq!(marker("echo ::group:: is not at the start"), None);
        assert_eq!(marker("section_start:soon:x"), None);
    }

    #[test]
    fn lines_get_their_time_stream_and_section_durations() {
        let bytes = b"::group::A\none\n::endgroup::\nsection_start:100:b\r\x1b[0KB\nsection_end:103:b\r\x1b[0K\nlast";
        let marks = [
            LogMark {
                offset: 0,
                time_ms: 1000,
                stream: Stream::Stdout,
            },
            LogMark {
                offset: 11,
                time_ms: 1500,
                stream: Stream::Stderr,
            },
            LogMark {
                offset: 15,
                time_ms: 4000,
                stream: Stream::Stdout,
            },
        ];
        let meta = line_meta(bytes, 0, &marks);
        assert_eq!(meta.len(), 6);
        assert_eq!((meta[0].time_ms, meta[0].stderr), (1000, false));
        assert_eq!((meta[1].time_ms, meta[1].stderr), (1500, true));
        assert_eq!(meta[0].duration_ms, Some(3000), "arrival times");
        assert_eq!(meta[3].duration_ms, Some(3000), "GitLab's own times");
        assert_eq!(meta[5].marker, None);
    }
}
