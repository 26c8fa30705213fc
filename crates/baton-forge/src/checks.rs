//! GitHub check runs, for repositories with a GitHub App (the app's installation token
//! authenticates them): one check run per Baton run and task, created when the first state is
//! told and updated after.
//!
//! - `POST {api}/repos/{owner}/{repo}/check-runs`, body `{name, head_sha, status, external_id,
//!   details_url, output: {title, summary}}` (and `conclusion` when completed); answer
//!   `201 {id, ...}`.
//! - `PATCH {api}/repos/{owner}/{repo}/check-runs/{id}`, body `{status, details_url, output}`
//!   (and `conclusion` when completed).
//! - `GET {api}/repos/{owner}/{repo}/commits/{ref}/check-runs?check_name=NAME&filter=all`
//!   (`per_page` at most 100, `page` from 1); answer `200 {total_count, check_runs: [{id, name,
//!   external_id, ...}]}`: how a check run created just before a crash (its id never recorded)
//!   is found again by its `external_id` instead of being created twice.
//!
//! `status` is queued, in_progress or completed; a completed run's `conclusion` is success,
//! failure, cancelled, timed_out or skipped here.

use serde_json::{Map, Value, json};

use crate::StatusState;
use crate::creds::{ApiRequest, CredError, Method, github_headers};

/// A check run's status, and its conclusion once completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Queued,
    InProgress,
    Completed(&'static str),
}

impl CheckState {
    /// The check state for Baton's commit state; `run_status` (Baton's word for the run's
    /// status, when the report has a run) tells a timeout (`jammed`) and a skip apart.
    pub fn of(state: StatusState, run_status: Option<&str>) -> CheckState {
        match state {
            StatusState::Pending => CheckState::Queued,
            StatusState::Running => CheckState::InProgress,
            StatusState::Success => CheckState::Completed("success"),
            StatusState::Failure => CheckState::Completed("failure"),
            StatusState::Error if run_status == Some("jammed") => {
                CheckState::Completed("timed_out")
            }
            StatusState::Error => CheckState::Completed("failure"),
            StatusState::Canceled if run_status == Some("skipped") => {
                CheckState::Completed("skipped")
            }
            StatusState::Canceled => CheckState::Completed("cancelled"),
        }
    }
}

/// One state of a check run to tell.
#[derive(Debug, Clone)]
pub struct CheckRun<'a> {
    /// `baton/TASK`.
    pub name: &'a str,
    pub head_sha: &'a str,
    pub state: CheckState,
    /// The run's id (or another key of Baton's for the check).
    pub external_id: &'a str,
    pub description: &'a str,
    /// The run's page; `None` sends no URL.
    pub details_url: Option<&'a str>,
}

fn body(check: &CheckRun<'_>) -> Map<String, Value> {
    let mut body = Map::new();
    let (status, conclusion) = match check.state {
        CheckState::Queued => ("queued", None),
        CheckState::InProgress => ("in_progress", None),
        CheckState::Completed(c) => ("completed", Some(c)),
    };
    body.insert("status".into(), json!(status));
    if let Some(c) = conclusion {
        body.insert("conclusion".into(), json!(c));
    }
    if let Some(url) = check.details_url {
        body.insert("details_url".into(), json!(url));
    }
    body.insert(
        "output".into(),
        json!({"title": check.description, "summary": check.description}),
    );
    body
}

/// The request that creates `check` on repository `path` (`owner/name`) at `api`.
pub fn create_check_run(api: &str, path: &str, token: &str, check: &CheckRun<'_>) -> ApiRequest {
    let mut body = body(check);
    body.insert("name".into(), json!(check.name));
    body.insert("head_sha".into(), json!(check.head_sha));
    body.insert("external_id".into(), json!(check.external_id));
    ApiRequest {
        method: Method::Post,
        url: format!("{}/repos/{path}/check-runs", api.trim_end_matches('/')),
        headers: github_headers(token),
        body: Some(Value::Object(body)),
    }
}

/// The request that moves check run `id` to `check`'s state.
pub fn update_check_run(
    api: &str,
    path: &str,
    token: &str,
    id: i64,
    check: &CheckRun<'_>,
) -> ApiRequest {
    ApiRequest {
        method: Method::Patch,
        url: format!("{}/repos/{path}/check-runs/{id}", api.trim_end_matches('/')),
        headers: github_headers(token),
        body: Some(Value::Object(body(check))),
    }
}

/// Check runs listed per page by [`list_check_runs`] (GitHub's largest page).
pub const CHECK_RUNS_PER_PAGE: usize = 100;

/// The request that lists page `page` (from 1) of every check run named `name` at commit `sha`
/// of repository `path`, not only the latest one of that name.
pub fn list_check_runs(
    api: &str,
    path: &str,
    token: &str,
    sha: &str,
    name: &str,
    page: u32,
) -> ApiRequest {
    ApiRequest {
        method: Method::Get,
        url: format!(
            "{}/repos/{path}/commits/{}/check-runs?check_name={}&filter=all&per_page={CHECK_RUNS_PER_PAGE}&page={page}",
            api.trim_end_matches('/'),
            query_escape(sha),
            query_escape(name)
        ),
        headers: github_headers(token),
        body: None,
    }
}

/// In an answer to [`list_check_runs`]: the id of the check run whose `external_id` is
/// `external_id`, if listed, and whether the page was full (a next page may hold it).
pub fn find_check_run(answer: &[u8], external_id: &str) -> Result<(Option<i64>, bool), CredError> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| CredError::Answer(e.to_string()))?;
    let runs = v["check_runs"]
        .as_array()
        .ok_or_else(|| CredError::Answer("no \"check_runs\" list in the answer".into()))?;
    let found = runs
        .iter()
        .find(|r| r["external_id"].as_str() == Some(external_id))
        .map(|r| {
            r["id"]
                .as_i64()
                .ok_or_else(|| CredError::Answer("a listed check run has no \"id\"".into()))
        })
        .transpose()?;
    Ok((found, runs.len() >= CHECK_RUNS_PER_PAGE))
}

/// `text` as a URL query value: every byte but the unreserved ones percent-encoded.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The id in GitHub's answer to [`create_check_run`].
pub fn check_run_id(answer: &[u8]) -> Result<i64, CredError> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| CredError::Answer(e.to_string()))?;
    v["id"]
        .as_i64()
        .ok_or_else(|| CredError::Answer("no \"id\" in the check run".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(state: CheckState) -> CheckRun<'static> {
        CheckRun {
            name: "baton/app/test",
            head_sha: "abc",
            state,
            external_id: "7",
            description: "running",
            details_url: Some("https://ci.example/runs/7"),
        }
    }

    #[test]
    fn states_map_to_statuses_and_conclusions() {
        assert_eq!(
            CheckState::of(StatusState::Pending, None),
            CheckState::Queued
        );
        assert_eq!(
            CheckState::of(StatusState::Running, Some("running")),
            CheckState::InProgress
        );
        assert_eq!(
            CheckState::of(StatusState::Error, Some("jammed")),
            CheckState::Completed("timed_out")
        );
        assert_eq!(
            CheckState::of(StatusState::Error, Some("broken")),
            CheckState::Completed("failure")
        );
        assert_eq!(
            CheckState::of(StatusState::Canceled, Some("canceled")),
            CheckState::Completed("cancelled")
        );
    }

    #[test]
    fn requests_have_the_documented_shape() {
        let r = create_check_run(
            "https://api.github.com",
            "a/b",
            "T",
            &check(CheckState::Queued),
        );
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url, "https://api.github.com/repos/a/b/check-runs");
        assert!(r.headers.contains(&("Authorization", "Bearer T".into())));
        let b = r.body.unwrap();
        assert_eq!(b["status"], "queued");
        assert_eq!(b["name"], "baton/app/test");
        assert_eq!(b["external_id"], "7");
        assert!(b.get("conclusion").is_none());
        let r = update_check_run(
            "https://api.github.com",
            "a/b",
            "T",
            99,
            &check(CheckState::Completed("failure")),
        );
        assert_eq!(r.method, Method::Patch);
        assert_eq!(r.url, "https://api.github.com/repos/a/b/check-runs/99");
        let b = r.body.unwrap();
        assert_eq!(
            (b["status"].as_str(), b["conclusion"].as_str()),
            (Some("completed"), Some("failure"))
        );
        assert!(b.get("name").is_none());
        assert_eq!(check_run_id(br#"{"id": 99}"#).unwrap(), 99);
    }

    #[test]
    fn a_check_run_is_found_again_by_its_external_id() {
        let r = list_check_runs(
            "https://api.github.com/",
            "a/b",
            "T",
            "abc",
            "baton/app/t e",
            2,
        );
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.url,
            "https://api.github.com/repos/a/b/commits/abc/check-runs?check_name=baton%2Fapp%2Ft%20e&filter=all&per_page=100&page=2"
        );
        assert!(r.body.is_none());
        assert!(r.headers.contains(&("Authorization", "Bearer T".into())));
        let answer = br#"{"total_count": 2, "check_runs": [
            {"id": 5, "name": "baton/app/t e", "external_id": "6"},
            {"id": 8, "name": "baton/app/t e", "external_id": "7"}]}"#;
        assert_eq!(find_check_run(answer, "7").unwrap(), (Some(8), false));
        assert_eq!(find_check_run(answer, "9").unwrap(), (None, false));
        assert!(find_check_run(b"{}", "7").is_err());
        let full: Vec<Value> = (0..100)
            .map(|i| json!({"id": i, "external_id": "x"}))
            .collect();
        let answer = serde_json::to_vec(&json!({"check_runs": full})).unwrap();
        assert_eq!(find_check_run(&answer, "7").unwrap(), (None, true));
    }
}
