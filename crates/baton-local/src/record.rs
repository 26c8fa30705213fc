//! A local run as git objects: `run.json`, each job's log and artifacts and a self-contained
//! `index.html`, written as one parentless commit under `refs/baton-runs/<commit>/<run-id>`.

use std::path::Path;

use baton_git::{LocalRepo, Oid, TreeFile};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::LocalError;

/// Where Baton's runs live; git-jci's are under [`JCI_PREFIX`].
pub const BATON_PREFIX: &str = "refs/baton-runs/";
pub const JCI_PREFIX: &str = "refs/jci-runs/";

/// The version of `run.json`'s shape.
pub const FORMAT: u32 = 1;

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub id: String,
    pub status: String,
    /// The tasks and pipelines run.
    pub targets: Vec<String>,
    /// What the run is stored against: the commit, or for a dirty run its tree id.
    pub commit: String,
    /// `HEAD` when the run started.
    pub head: String,
    /// The working tree's snapshot (dirty runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    pub dirty: bool,
    #[serde(default)]
    pub branch: Option<String>,
    /// `push` (what a push would start) or `manual` (named on the command line).
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub machine: Machine,
    pub baton_version: String,
    pub jobs: Vec<JobRecord>,
    /// Targets left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Where a run ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub user: String,
    pub os: String,
    pub arch: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Machine {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_default();
        Machine {
            hostname,
            user,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }
    }
}

/// One job of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub target: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// The log's path in the run's tree.
    pub log: String,
    /// The artifacts' paths in the run's tree.
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// A failure of this job does not fail its pipeline (`allow_failure`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_failure: bool,
    /// The CI cache's digest of a job whose task has `cache:`, and what it was made of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheRecord>,
    /// Its test results, counted (the whole tree is the run's `results.json`); `None`: it
    /// reported none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
}

/// A job's test results, counted, with the failing tests named (at most
/// [`crate::results::MAX_FAILING`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub skipped: u64,
    pub flaky: u64,
    /// Reports that could not be used (corrupt, too big, not found).
    #[serde(default)]
    pub warnings: u64,
    /// The failing tests' ids (`suite > class > name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

impl TestCounts {
    /// `12 passed, 1 failed, 2 skipped` (only the counts that are not zero).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.passed, "passed"),
            (self.failed, "failed"),
            (self.errors, "errors"),
            (self.skipped, "skipped"),
            (self.flaky, "flaky"),
            (self.warnings, "report warnings"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "no tests".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A job's CI cache digest and its facts (`baton_results::cache::CacheFacts`, hashes only), as
/// the server computes them: a server trusting local runs takes them as cache entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub digest: String,
    pub facts: serde_json::Value,
}

/// A new run id: the UTC time to the millisecond, then random hex, so ids sort by time and two
/// machines never make the same one (`20261207T031502123Z-9f3a1c`).
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let suffix: u32 = rand::random();
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%S%3fZ"),
        suffix & 0xff_ffff
    )
}

/// When a run id says its run started (`None` for ids of another shape, such as git-jci's).
pub fn run_id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.get(..19)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The ref of run `id` of `key` (a commit or tree id).
pub fn ref_name(key: &str, id: &str) -> String {
    format!("{BATON_PREFIX}{key}/{id}")
}

/// The folder of job number `index` in the run's tree: its number and a path-safe name.
pub fn job_folder(index: usize, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("jobs/{:02}-{safe}", index + 1)
}

/// Every regular file under `dir` (not following symlinks), as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<(String, bool)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, bool)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let path = e.path();
            if ft.is_dir() {
                walk(root, &path, out);
            } else if ft.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let exec = e
                    .metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
                if let Ok(rel) = path.strip_prefix(root) {
                    out.push((rel.to_string_lossy().into_owned(), exec));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A file for the run's tree, read from disk.
pub fn file_from_disk(path_in_tree: String, disk: &Path, executable: bool) -> TreeFile {
    TreeFile {
        path: path_in_tree,
        executable,
        bytes: std::fs::read(disk).unwrap_or_default(),
    }
}

/// Writes the run under `refname`: `run.json` first, then `files` (logs, artifacts,
/// `index.html`).
pub async fn save(
    repo: &LocalRepo,
    record: &RunRecord,
    mut files: Vec<TreeFile>,
    refname: &str,
) -> Result<Oid, LocalError> {
    let json = serde_json::to_vec_pretty(record).expect("a run record serializes");
    files.insert(
        0,
        TreeFile {
            path: "run.json".into(),
            executable: false,
            bytes: json,
        },
    );
    let message = format!(
        "baton run {}: {} on {}",
        record.id,
        record.status,
        &record.commit[..record.commit.len().min(12)]
    );
    Ok(repo.write_run(refname, &message, &files).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_carry_it() {
        let t1 = DateTime::parse_from_rfc3339("2026-12-07T03:15:02.123Z")
            .unwrap()
            .to_utc();
        let t2 = t1 + chrono::Duration::milliseconds(5);
        let (a, b) = (new_run_id(t1), new_run_id(t2));
        assert!(a.starts_with("20261207T031502123Z-"), "{a}");
        assert_eq!(a.len(), 26);
        assert!(a < b);
        assert_eq!(run_id_time(&a), Some(t1));
        assert_eq!(run_id_time("not-a-time-stamp-at-all"), None);
    }

    #[test]
    fn job_folders_are_numbered_and_path_safe() {
        assert_eq!(job_folder(0, "ci/build it"), "jobs/01-ci_build_it");
    }
}
