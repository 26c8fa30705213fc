//! Baton's result tree: one shape for runs, jobs, test suites, test cases and a job's own
//! steps ([`Node`]), filled from the JUnit XML reports among a job's artifacts (streamed, with
//! bounded memory) and from its `.baton/results.json`.
//!
//! Architecture Invariant: no database, no network, no clock; the only I/O is reading the
//! files of the folder it is given. A report that cannot be used never fails anything: it
//! becomes a warning node.

pub mod cache;
pub mod collect;
pub mod history;
pub mod junit;
pub mod model;

pub use collect::{RESULTS_JSON, collect_job};
pub use history::{Past, is_flaky};
pub use model::{Kind, Node, Status, Summary};

/// A run's tree from its jobs' nodes (already built with [`job_node`]), summarized.
pub fn run_tree(name: impl Into<String>, jobs: Vec<Node>) -> Node {
    let mut run = Node::new(Kind::Run, name);
    run.children = jobs;
    run.summarize();
    run
}

/// A job's node over its collected children, summarized.
pub fn job_node(name: &str, job_id: i64, job_status: &str, children: Vec<Node>) -> Node {
    let mut n = Node::new(Kind::Job, name);
    n.job_id = Some(job_id);
    n.job_status = Some(job_status.to_owned());
    n.children = children;
    n.summarize();
    n
}

/// The id of a test across runs of its task: its suites' names, its class and its name.
pub fn test_id(path: &[&str], node: &Node) -> String {
    let mut parts: Vec<&str> = path[..path.len().saturating_sub(1)].to_vec();
    if let Some(c) = node.classname.as_deref() {
        parts.push(c);
    }
    parts.push(&node.name);
    parts.join(" > ")
}
