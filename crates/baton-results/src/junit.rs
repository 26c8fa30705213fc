//! JUnit XML, streamed: `<testsuites>`/`<testsuite>` (nested to any depth) with `<testcase>`s
//! as pytest, Maven Surefire, jest-junit, cargo-nextest and others write them. Memory stays
//! bounded by a [`Budget`] whatever the file's size: past it, texts are cut and nodes dropped
//! (the caller adds a warning).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::model::{Kind, Node, Status};

/// Limits that keep memory flat for one job's reports.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Nodes that may still be kept.
    pub nodes: usize,
    /// Bytes of message and output text that may still be kept.
    pub text: usize,
    /// Of those, bytes of captured output (`system-out`, `system-err`) of passing and skipped
    /// cases that may still be kept: a big suite's passing tests' output is what fills memory
    /// and is the least looked at, so past this it is not kept (as GitLab's test reports show
    /// only failed tests' output); failing, errored and flaky cases keep theirs under `text`.
    pub quiet_text: usize,
    /// Set when something was dropped or cut.
    pub exhausted: bool,
}

/// The most text kept from one element (a failure's body, a test's stdout).
pub const MAX_FIELD: usize = 64 * 1024;

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: 100_000,
            text: 32 * 1024 * 1024,
            quiet_text: 1024 * 1024,
            exhausted: false,
        }
    }
}

/// Why a file could not be read as JUnit XML.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid XML at line {line}: {message}")]
    Xml { line: u64, message: String },
    #[error("the file ends inside <{0}> (a truncated report?)")]
    Truncated(String),
}

/// What the outcome elements of a case say.
#[derive(Default)]
struct CaseState {
    node: Node,
    failed: bool,
    error: bool,
    skipped: bool,
    retried: bool,
    output: String,
    /// Bytes of `output` taken from the budget's `text`.
    charged: usize,
}

enum Frame {
    Suite(Box<Node>),
    Case(Box<CaseState>),
    /// An element whose text is kept: `failure`, `error`, `system-out`…
    Text(String, bool),
    /// `<testsuites>`: suites under it belong to its parent.
    Root,
    Other,
}

/// Parses one file. `Ok(None)`: well-formed XML that is not a JUnit report (its root is not
/// `testsuites` or `testsuite`). The suites come back with their cases, not summarized.
pub fn parse_file(path: &Path, budget: &mut Budget) -> Result<Option<Vec<Node>>, JunitError> {
    let file = File::open(path)?;
    parse_reader(BufReader::with_capacity(64 * 1024, file), budget).map_err(|e| match e {
        JunitError::Xml { line: pos, message } => JunitError::Xml {
            line: line_of(path, pos).unwrap_or(0),
            message,
        },
        e => e,
    })
}

/// The 1-based line of byte offset `pos` of a file.
fn line_of(path: &Path, pos: u64) -> std::io::Result<u64> {
    let mut r = BufReader::new(File::open(path)?.take(pos));
    let mut line = 1;
    let mut buf = Vec::new();
    while r.read_until(b'\n', &mut buf)? > 0 {
        if buf.last() == Some(&b'\n') {
            line += 1;
        }
        buf.clear();
    }
    Ok(line)
}

/// Parses a stream; on an XML error, `line` holds the byte offset (see [`parse_file`]).
pub fn parse_reader<R: BufRead>(
    input: R,
    budget: &mut Budget,
) -> Result<Option<Vec<Node>>, JunitError> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut p = Parser {
        stack: Vec::new(),
        top: Vec::new(),
        budget,
        seen_root: false,
    };
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| JunitError::Xml {
                line: reader.error_position(),
                message: e.to_string(),
            })?;
        let junit = match ev {
            Event::Start(e) => p.start(&e, false)?,
            Event::Empty(e) => p.start(&e, true)?,
            Event::End(_) => {
                p.end();
                true
            }
            Event::Text(t) => {
                p.text(&t.xml_content().unwrap_or_default());
                true
            }
            Event::CData(t) => {
                p.text(&t.xml_content().unwrap_or_default());
                true
            }
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.decode().unwrap_or_default();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("&{name};"))
                    }
                };
                p.text(&text);
                true
            }
            Event::Eof => break,
            _ => true,
        };
        if !junit {
            return Ok(None);
        }
        buf.clear();
    }
    if let Some(open) = p.stack.last() {
        let name = match open {
            Frame::Suite(_) => "testsuite",
            Frame::Case(_) => "testcase",
            _ => "an element",
        };
        return Err(JunitError::Truncated(name.to_owned()));
    }
    if !p.seen_root {
        return Err(JunitError::Xml {
            line: 0,
            message: "no element found".into(),
        });
    }
    Ok(Some(p.top))
}

struct Parser<'b> {
    stack: Vec<Frame>,
    top: Vec<Node>,
    budget: &'b mut Budget,
    seen_root: bool,
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.try_get_attribute(name)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// `time="1.5"` (also `1,234.5`) in seconds.
fn seconds(e: &BytesStart<'_>) -> Option<f64> {
    attr(e, "time")
        .and_then(|t| t.replace(',', "").trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
}

impl Parser<'_> {
    /// Handles an opening (or empty) element; `Ok(false)`: the root is not JUnit.
    fn start(&mut self, e: &BytesStart<'_>, empty: bool) -> Result<bool, JunitError> {
        let name = e.local_name();
        let name = name.as_ref();
        if !self.seen_root {
            self.seen_root = true;
            if name != b"testsuites" && name != b"testsuite" {
                return Ok(false);
            }
        }
        let frame = match (name, self.stack.last_mut()) {
            (b"testsuites", None | Some(Frame::Suite(_) | Frame::Root)) => Frame::Root,
            (b"testsuite", None | Some(Frame::Suite(_) | Frame::Root)) => {
                let mut n = Node::new(Kind::Suite, attr(e, "name").unwrap_or_default());
                n.duration = seconds(e);
                n.file = attr(e, "file");
                Frame::Suite(Box::new(n))
            }
            (b"testcase", None | Some(Frame::Suite(_) | Frame::Root)) => {
                let mut n = Node::new(Kind::Case, attr(e, "name").unwrap_or_default());
                n.duration = seconds(e);
                n.classname = attr(e, "classname");
                n.file = attr(e, "file");
                n.line = attr(e, "line").and_then(|l| l.trim().parse().ok());
                Frame::Case(Box::new(CaseState {
                    node: n,
                    ..CaseState::default()
                }))
            }
            (outcome, Some(Frame::Case(c))) => {
                let message = attr(e, "message").or_else(|| attr(e, "type"));
                match outcome {
                    b"failure" => c.failed = true,
                    b"error" => c.error = true,
                    b"skipped" => c.skipped = true,
                    b"flakyFailure" | b"flakyError" | b"rerunFailure" | b"rerunError" => {
                        c.retried = true
                    }
                    b"system-out" | b"system-err" => {}
                    _ => return Ok(self.push(Frame::Other, empty)),
                }
                let first = matches!(outcome, b"failure" | b"error")
                    || (outcome == b"skipped" && !c.failed && !c.error);
                if first && message.is_some() {
                    c.node.message = message.map(|m| cut(m, MAX_FIELD));
                }
                let label = String::from_utf8_lossy(outcome).into_owned();
                Frame::Text(label, false)
            }
            _ => Frame::Other,
        };
        Ok(self.push(frame, empty))
    }

    fn push(&mut self, frame: Frame, empty: bool) -> bool {
        self.stack.push(frame);
        if empty {
            self.end();
        }
        true
    }

    fn text(&mut self, t: &str) {
        let [.., Frame::Case(c), Frame::Text(label, begun)] = self.stack.as_mut_slice() else {
            return;
        };
        if !*begun {
            if t.trim().is_empty() {
                return;
            }
            *begun = true;
            let had = !c.output.is_empty();
            if had {
                c.output.push('\n');
            }
            if label.starts_with("system-") || had {
                c.output.push_str(&format!("--- {label} ---\n"));
            }
        }
        let room = MAX_FIELD
            .saturating_sub(c.output.len())
            .min(self.budget.text);
        let piece = &t[..floor_char_boundary(t, room)];
        if piece.len() < t.len() {
            self.budget.exhausted = true;
        }
        self.budget.text -= piece.len();
        c.charged += piece.len();
        c.output.push_str(piece);
    }

    fn end(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let node = match frame {
            Frame::Suite(n) => *n,
            Frame::Case(c) => finish_case(*c, self.budget),
            Frame::Text(..) | Frame::Root | Frame::Other => return,
        };
        if self.budget.nodes == 0 {
            self.budget.exhausted = true;
            return;
        }
        self.budget.nodes -= 1;
        match self.stack.iter_mut().rev().find_map(|f| match f {
            Frame::Suite(s) => Some(s),
            _ => None,
        }) {
            Some(parent) => parent.children.push(node),
            None => self.top.push(node),
        }
    }
}

/// A case's status by precedence error > failure > skipped > (rerun) flaky > passed; its
/// output kept when it failed, or while the budget of passing cases' output lasts (what is not
/// kept goes back to the budget).
fn finish_case(c: CaseState, budget: &mut Budget) -> Node {
    let mut n = c.node;
    let status = if c.error {
        Status::Error
    } else if c.failed {
        Status::Failed
    } else if c.skipped {
        Status::Skipped
    } else if c.retried {
        Status::Flaky
    } else {
        Status::Passed
    };
    n.status = Some(status);
    let mut out = c.output;
    // What the case took goes back; what is kept is taken again.
    budget.text += c.charged;
    trim_in_place(&mut out);
    let quiet = matches!(status, Status::Passed | Status::Skipped);
    let keep = !out.is_empty() && (!quiet || out.len() <= budget.quiet_text);
    if keep {
        if n.message.is_none() && status.is_failing() {
            let first = out
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with("--- "));
            n.message = first.map(|l| l.trim().to_owned());
        }
        if quiet {
            budget.quiet_text -= out.len();
        }
        budget.text = budget.text.saturating_sub(out.len());
        out.shrink_to_fit();
        n.output = Some(out);
    }
    n
}

/// Removes leading and trailing whitespace without a new allocation.
fn trim_in_place(s: &mut String) {
    let end = s.trim_end().len();
    s.truncate(end);
    let start = s.len() - s.trim_start().len();
    s.drain(..start);
}

/// The largest index `<= at` that is a character boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut at = at;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}
