//! A job's results: the JUnit reports among its artifacts (`out/`) and its own
//! `.baton/results.json`, as the children of its job node. Nothing here fails: a report that
//! cannot be used becomes a warning node that says why.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSetBuilder};

use crate::junit::{self, Budget};
use crate::model::{Kind, Node};

/// Where a job adds its own nodes, relative to its output folder.
pub const RESULTS_JSON: &str = ".baton/results.json";

/// The largest `results.json` read.
pub const MAX_RESULTS_JSON: u64 = 16 * 1024 * 1024;

/// The most files of `out/` looked at (a job could write millions).
const MAX_FILES: usize = 10_000;

/// The job's nodes from `out_dir`: every JUnit `*.xml` file (or, when `junit_globs` is not
/// empty, the files they match, relative to `out_dir`), then `results.json`'s nodes. Symbolic
/// links are never followed. The nodes are not summarized.
pub fn collect_job(out_dir: &Path, junit_globs: &[String]) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut budget = Budget::default();
    let mut files = Vec::new();
    if out_dir.is_dir() {
        walk(out_dir, Path::new(""), &mut files, &mut nodes);
    }
    files.sort();
    let matcher = match build_globs(junit_globs) {
        Ok(m) => m,
        Err(w) => {
            nodes.push(*w);
            None
        }
    };
    let mut matched = vec![false; junit_globs.len()];
    for rel in &files {
        let chosen = match &matcher {
            Some(set) => {
                let hits = set.matches(rel);
                for i in &hits {
                    matched[*i] = true;
                }
                !hits.is_empty()
            }
            None => rel.extension().is_some_and(|e| e == "xml") && !rel.starts_with(".baton"),
        };
        if !chosen {
            continue;
        }
        let shown = rel.display().to_string();
        match open_plain(&out_dir.join(rel)) {
            Err(e) => nodes.push(Node::warning(
                &shown,
                format!("cannot open the report: {e}"),
            )),
            Ok(_) => match junit::parse_file(&out_dir.join(rel), &mut budget) {
                Ok(Some(suites)) => nodes.extend(suites),
                Ok(None) if matcher.is_some() => nodes.push(Node::warning(
                    &shown,
                    "not a JUnit report: its root element is neither <testsuites> nor \
                     <testsuite>; fix the reports.junit globs or the test runner's output",
                )),
                Ok(None) => {}
                Err(e) => nodes.push(Node::warning(
                    &shown,
                    format!("JUnit report not read: {e}; its tests are missing from the results"),
                )),
            },
        }
    }
    for (glob, hit) in junit_globs.iter().zip(matched) {
        if !hit && matcher.is_some() {
            nodes.push(Node::warning(
                glob,
                format!("reports.junit: {glob:?} matched no file in the job's artifacts"),
            ));
        }
    }
    if budget.exhausted {
        nodes.push(Node::warning(
            "reports",
            "the reports are too big to keep whole: some texts were cut and some tests dropped",
        ));
    }
    nodes.extend(own_results(out_dir, &mut budget));
    nodes
}

fn build_globs(globs: &[String]) -> Result<Option<globset::GlobSet>, Box<Node>> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| {
            Box::new(Node::warning(
                g,
                format!("reports.junit: {g:?} is not a valid glob: {e}"),
            ))
        })?;
        b.add(glob);
    }
    b.build().map(Some).map_err(|e| {
        Box::new(Node::warning(
            "reports.junit",
            format!("invalid globs: {e}"),
        ))
    })
}

/// Regular files under `dir`, relative to the walk's root, without following links.
fn walk(root: &Path, rel: &Path, files: &mut Vec<PathBuf>, nodes: &mut Vec<Node>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        let path = rel.join(entry.file_name());
        if ft.is_dir() {
            walk(root, &path, files, nodes);
        } else if ft.is_file() {
            if files.len() == MAX_FILES {
                nodes.push(Node::warning(
                    "artifacts",
                    format!("more than {MAX_FILES} files in the job's artifacts: only the first were searched for reports"),
                ));
                return;
            }
            files.push(path);
        }
    }
}

/// Opens a file that is not a symbolic link.
pub(crate) fn open_plain(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
}

const fn libc_o_nofollow() -> i32 {
    // O_NOFOLLOW on Linux (all architectures Baton builds for).
    0o400000
}

/// The nodes of `.baton/results.json`: one node or a list of them.
fn own_results(out_dir: &Path, budget: &mut Budget) -> Vec<Node> {
    let path = out_dir.join(RESULTS_JSON);
    let file = match open_plain(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![Node::warning(RESULTS_JSON, format!("cannot open it: {e}"))],
    };
    let mut text = String::new();
    if let Err(e) = file.take(MAX_RESULTS_JSON + 1).read_to_string(&mut text) {
        return vec![Node::warning(RESULTS_JSON, format!("cannot read it: {e}"))];
    }
    if text.len() as u64 > MAX_RESULTS_JSON {
        return vec![Node::warning(
            RESULTS_JSON,
            format!("it is larger than {MAX_RESULTS_JSON} bytes and was not read"),
        )];
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Box<Node>),
        Many(Vec<Node>),
    }
    let nodes = match serde_json::from_str::<OneOrMany>(&text) {
        Ok(OneOrMany::One(n)) => vec![*n],
        Ok(OneOrMany::Many(v)) => v,
        Err(e) => {
            return vec![Node::warning(
                RESULTS_JSON,
                format!("not a result node or a list of them ({e}); see docs/results.md"),
            )];
        }
    };
    let mut out = Vec::new();
    for mut n in nodes {
        tame(&mut n);
        let size = n.size();
        if size > budget.nodes {
            out.push(Node::warning(
                RESULTS_JSON,
                "too many nodes: the rest were dropped",
            ));
            break;
        }
        budget.nodes -= size;
        out.push(n);
    }
    out
}

/// A job's own nodes may not pose as runs or jobs.
fn tame(n: &mut Node) {
    if matches!(n.kind, Kind::Run | Kind::Job) {
        n.kind = Kind::Step;
    }
    n.job_id = None;
    n.job_status = None;
    n.duration = n
        .duration
        .filter(|d| d.is_finite() && *d >= 0.0 && *d < 1e12);
    for c in &mut n.children {
        tame(c);
    }
}
