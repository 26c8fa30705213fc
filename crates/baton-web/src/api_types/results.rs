//! The result tree of a run (`GET /api/v1/runs/{id}/results`): run → job → suite → (nested
//! suites) → test case, and a job's own steps, each with the counts of everything under it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a test case or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Passed,
    Failed,
    Error,
    Skipped,
    /// Passed after a failed try.
    Flaky,
}

/// What a node stands for; a `warning` says what was wrong with a report and counts nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    Run,
    Job,
    Suite,
    Case,
    Step,
    Warning,
}

/// Counts of the test cases and steps under a node.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct ResultSummary {
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub skipped: u64,
    pub flaky: u64,
    /// Warning nodes (unreadable reports) under it.
    pub warnings: u64,
    /// Seconds.
    pub duration: f64,
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultNode {
    pub name: String,
    pub kind: ResultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResultStatus>,
    /// Seconds, as the report gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The failure's text and the test's captured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// For a job node: the job's id and status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    pub summary: ResultSummary,
    #[serde(default)]
    #[schema(no_recursion)]
    pub children: Vec<ResultNode>,
}

/// A run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunResults {
    pub run_id: i64,
    /// The run's node; with `?status=failed` only the branches that lead to a failed or
    /// errored test or a warning (summaries still count everything).
    pub tree: ResultNode,
}

impl From<&baton_results::Summary> for ResultSummary {
    fn from(s: &baton_results::Summary) -> Self {
        ResultSummary {
            passed: s.passed,
            failed: s.failed,
            errors: s.errors,
            skipped: s.skipped,
            flaky: s.flaky,
            warnings: s.warnings,
            duration: s.duration,
        }
    }
}

impl From<baton_results::Status> for ResultStatus {
    fn from(s: baton_results::Status) -> Self {
        use baton_results::Status as S;
        match s {
            S::Passed => ResultStatus::Passed,
            S::Failed => ResultStatus::Failed,
            S::Error => ResultStatus::Error,
            S::Skipped => ResultStatus::Skipped,
            S::Flaky => ResultStatus::Flaky,
        }
    }
}

impl From<baton_results::Kind> for ResultKind {
    fn from(k: baton_results::Kind) -> Self {
        use baton_results::Kind as K;
        match k {
            K::Run => ResultKind::Run,
            K::Job => ResultKind::Job,
            K::Suite => ResultKind::Suite,
            K::Case => ResultKind::Case,
            K::Step => ResultKind::Step,
            K::Warning => ResultKind::Warning,
        }
    }
}

impl From<&baton_results::Node> for ResultNode {
    fn from(n: &baton_results::Node) -> Self {
        ResultNode {
            name: n.name.clone(),
            kind: n.kind.into(),
            status: n.status.map(Into::into),
            duration: n.duration,
            message: n.message.clone(),
            output: n.output.clone(),
            classname: n.classname.clone(),
            file: n.file.clone(),
            line: n.line,
            job_id: n.job_id,
            job_status: n.job_status.clone(),
            summary: (&n.summary).into(),
            children: n.children.iter().map(Into::into).collect(),
        }
    }
}

impl From<baton_store::ResultCounts> for ResultSummary {
    fn from(c: baton_store::ResultCounts) -> Self {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        ResultSummary {
            passed: u(c.passed),
            failed: u(c.failed),
            errors: u(c.errors),
            skipped: u(c.skipped),
            flaky: u(c.flaky),
            warnings: u(c.warnings),
            duration: c.duration_ms as f64 / 1000.0,
        }
    }
}
