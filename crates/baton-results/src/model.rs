//! The one result shape: a tree of nodes (run, job, suite, test case, step, warning), each
//! with a status where it has one and a summary of everything under it.

use serde::{Deserialize, Serialize};

/// How one test case or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    Error,
    Skipped,
    /// Passed after a failed try (a rerun or a retry of the test runner).
    Flaky,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::Flaky => "flaky",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "passed" => Status::Passed,
            "failed" => Status::Failed,
            "error" => Status::Error,
            "skipped" => Status::Skipped,
            "flaky" => Status::Flaky,
            _ => return None,
        })
    }

    /// Failed or error: what a user opening a run wants to see first.
    pub fn is_failing(self) -> bool {
        matches!(self, Status::Failed | Status::Error)
    }
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Run,
    Job,
    Suite,
    Case,
    /// A job's own sub-step (from its `results.json`).
    #[default]
    Step,
    /// Something was wrong with a report (corrupt, too big, not found); never counted.
    Warning,
}

/// Counts of the test cases and steps under a node (itself included when it is a leaf).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub skipped: u64,
    pub flaky: u64,
    /// Warning nodes under it.
    #[serde(default)]
    pub warnings: u64,
    /// Seconds: the node's own duration when the report gives one, else its children's sum.
    pub duration: f64,
}

impl Summary {
    pub fn total(&self) -> u64 {
        self.passed + self.failed + self.errors + self.skipped + self.flaky
    }

    fn count(&mut self, s: Status) {
        match s {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Error => self.errors += 1,
            Status::Skipped => self.skipped += 1,
            Status::Flaky => self.flaky += 1,
        }
    }

    fn add(&mut self, o: &Summary) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.flaky += o.flaky;
        self.warnings += o.warnings;
        self.duration += o.duration;
    }

    /// The status a container shows: the worst of what it holds.
    pub fn status(&self) -> Option<Status> {
        if self.errors > 0 {
            Some(Status::Error)
        } else if self.failed > 0 {
            Some(Status::Failed)
        } else if self.flaky > 0 {
            Some(Status::Flaky)
        } else if self.passed > 0 {
            Some(Status::Passed)
        } else if self.skipped > 0 {
            Some(Status::Skipped)
        } else {
            None
        }
    }
}

/// One node of the result tree. The same shape is read from a job's `results.json` (where
/// `summary` is ignored and recomputed).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(default)]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// The failure's or skip's message; a warning's explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Details: the failure's text, the test's captured stdout and stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// JUnit `classname` (with `name`, what identifies a test across runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The job a job node stands for, and how it ended (`succeeded`, `failed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    #[serde(default)]
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

impl Node {
    pub fn new(kind: Kind, name: impl Into<String>) -> Node {
        Node {
            kind,
            name: name.into(),
            ..Node::default()
        }
    }

    /// A warning node: `name` says which report, `message` what was wrong with it.
    pub fn warning(name: impl Into<String>, message: impl Into<String>) -> Node {
        Node {
            message: Some(message.into()),
            ..Node::new(Kind::Warning, name)
        }
    }

    /// Computes the summary of this node and of every node under it; a container without a
    /// status of its own gets the worst of its children's.
    pub fn summarize(&mut self) {
        let mut s = Summary::default();
        if self.kind == Kind::Warning {
            s.warnings = 1;
        } else if self.children.is_empty()
            && let Some(st) = self.status
        {
            s.count(st);
        }
        for c in &mut self.children {
            c.summarize();
            s.add(&c.summary);
        }
        if let Some(d) = self.duration {
            s.duration = d;
        }
        if !s.duration.is_finite() {
            s.duration = 0.0;
        }
        self.summary = s;
        if self.status.is_none() && !self.children.is_empty() {
            self.status = s.status();
        }
    }

    /// Only the branches that lead to a failed or errored test (or a warning); `None` when
    /// there is none. Summaries keep counting the whole subtree.
    pub fn failing(&self) -> Option<Node> {
        self.filter(&|n| {
            n.kind == Kind::Warning
                || (n.children.is_empty() && n.status.is_some_and(Status::is_failing))
        })
    }

    /// Only the branches that lead to a node whose name contains `query` (case-insensitive).
    pub fn matching(&self, query: &str) -> Option<Node> {
        let q = query.to_lowercase();
        self.filter(&|n| {
            n.name.to_lowercase().contains(&q)
                || n.classname
                    .as_deref()
                    .is_some_and(|c| c.to_lowercase().contains(&q))
        })
    }

    /// Keeps a node that `keep` accepts (whole), or a node with a kept descendant (with only
    /// its kept children).
    fn filter(&self, keep: &dyn Fn(&Node) -> bool) -> Option<Node> {
        if keep(self) {
            return Some(self.clone());
        }
        let children: Vec<Node> = self
            .children
            .iter()
            .filter_map(|c| c.filter(keep))
            .collect();
        if children.is_empty() {
            return None;
        }
        let mut n = self.clone_shallow();
        n.children = children;
        Some(n)
    }

    fn clone_shallow(&self) -> Node {
        Node {
            name: self.name.clone(),
            kind: self.kind,
            status: self.status,
            duration: self.duration,
            message: self.message.clone(),
            output: self.output.clone(),
            classname: self.classname.clone(),
            file: self.file.clone(),
            line: self.line,
            job_id: self.job_id,
            job_status: self.job_status.clone(),
            summary: self.summary,
            children: Vec::new(),
        }
    }

    /// Every test case and step leaf under this node with its path of names from here
    /// (excluded) to it (included).
    pub fn leaves(&self) -> Vec<(Vec<&str>, &Node)> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        for c in &self.children {
            c.walk_leaves(&mut path, &mut out);
        }
        out
    }

    fn walk_leaves<'a>(&'a self, path: &mut Vec<&'a str>, out: &mut Vec<(Vec<&'a str>, &'a Node)>) {
        path.push(&self.name);
        if self.children.is_empty() {
            if self.status.is_some() && self.kind != Kind::Warning {
                out.push((path.clone(), self));
            }
        } else {
            for c in &self.children {
                c.walk_leaves(path, out);
            }
        }
        path.pop();
    }

    /// Number of nodes in this subtree (itself included).
    pub fn size(&self) -> usize {
        1 + self.children.iter().map(Node::size).sum::<usize>()
    }
}
