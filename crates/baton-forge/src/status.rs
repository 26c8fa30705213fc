//! Commit statuses as each forge's API documents them: the request (URL, headers, JSON body)
//! that sets one status, built without sending it.
//!
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, `Authorization: Bearer T`,
//!   `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`; body `{state,
//!   target_url, description, context}`, state one of pending, success, failure, error.
//! - Gitea and Forgejo: `POST {api}/api/v1/repos/{owner}/{repo}/statuses/{sha}`,
//!   `Authorization: token T`; the same body, state one of pending, success, error, failure,
//!   warning.
//! - GitLab: `POST {api}/api/v4/projects/{url-encoded path}/statuses/{sha}`, `PRIVATE-TOKEN: T`;
//!   body `{state, name, target_url, description}`, state one of pending, running, success,
//!   failed, canceled.

use serde_json::{Map, Value, json};

use crate::{Forge, RepoUrl};

/// Baton's commit states, as forges are told them (see `baton_core::report::CommitState`;
/// this crate takes the word, so it stays free of the domain crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Pending,
    Running,
    Success,
    Failure,
    Error,
    Canceled,
}

impl StatusState {
    /// The state for Baton's word (`pending`, `running`, `success`, `failure`, `error`,
    /// `canceled`).
    pub fn from_word(word: &str) -> Option<StatusState> {
        Some(match word {
            "pending" => StatusState::Pending,
            "running" => StatusState::Running,
            "success" => StatusState::Success,
            "failure" => StatusState::Failure,
            "error" => StatusState::Error,
            "canceled" => StatusState::Canceled,
            _ => return None,
        })
    }

    /// The forge's word for this state. GitHub, Gitea and Forgejo have no running or canceled
    /// state: running is pending there (the description says running), canceled is error.
    pub fn on(self, forge: Forge) -> &'static str {
        match (forge, self) {
            (_, StatusState::Pending) => "pending",
            (Forge::GitLab, StatusState::Running) => "running",
            (_, StatusState::Running) => "pending",
            (_, StatusState::Success) => "success",
            (Forge::GitLab, StatusState::Failure | StatusState::Error) => "failed",
            (_, StatusState::Failure) => "failure",
            (Forge::GitLab, StatusState::Canceled) => "canceled",
            (_, StatusState::Error | StatusState::Canceled) => "error",
        }
    }
}

/// One commit status to set.
#[derive(Debug, Clone)]
pub struct CommitStatus<'a> {
    pub sha: &'a str,
    pub state: StatusState,
    /// `baton/TASK`.
    pub context: &'a str,
    pub description: &'a str,
    /// The run's page; `None` sends no URL.
    pub target_url: Option<&'a str>,
}

/// An HTTP request to make: always a `POST` of `body` as `application/json`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRequest {
    pub url: String,
    /// Headers beyond `Content-Type`; the token's header among them (keep it out of logs).
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

/// Why no status request can be built for a repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error(
        "cannot tell the forge's API from repository URL {0} (hint: set \"api\" in the repository's entry of repos:)"
    )]
    NoApi(String),
    #[error("cannot tell owner/name from repository URL {0}")]
    NoPath(String),
}

/// The API base URL of the forge hosting `url`: `override_api` if given, else
/// `https://api.github.com` for github.com, else the URL's scheme and host (https for ssh
/// URLs). A local path has none.
pub fn api_base(
    forge: Forge,
    url: &str,
    override_api: Option<&str>,
) -> Result<String, StatusError> {
    if let Some(api) = override_api {
        return Ok(api.trim_end_matches('/').to_owned());
    }
    let host = match RepoUrl::parse(url) {
        Ok(RepoUrl::Remote { host, .. }) => host,
        _ => return Err(StatusError::NoApi(url.to_owned())),
    };
    if forge == Forge::GitHub && host == "github.com" {
        return Ok("https://api.github.com".into());
    }
    let lower = url.to_ascii_lowercase();
    if let Some(scheme) = ["https://", "http://"]
        .iter()
        .find(|s| lower.starts_with(*s))
    {
        let rest = &url[scheme.len()..];
        let authority = rest.split('/').next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return Ok(format!("{scheme}{host_port}"));
    }
    Ok(format!("https://{host}"))
}

/// `owner/name` (GitLab: `group/subgroup/name`) of the repository at `url`; for a local path,
/// its last two components.
pub fn repo_path(url: &str) -> Result<String, StatusError> {
    match RepoUrl::parse(url) {
        Ok(RepoUrl::Remote { path, .. }) if !path.is_empty() => Ok(path),
        Ok(RepoUrl::Local { path }) => {
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            match parts.as_slice() {
                [.., owner, name] => Ok(format!("{owner}/{}", name.trim_end_matches(".git"))),
                _ => Err(StatusError::NoPath(url.to_owned())),
            }
        }
        _ => Err(StatusError::NoPath(url.to_owned())),
    }
}

/// The request that sets `status` on `forge` for the repository `path` (`owner/name`) through
/// the API at `api`, authenticated by `token`.
pub fn status_request(
    forge: Forge,
    api: &str,
    path: &str,
    token: &str,
    status: &CommitStatus<'_>,
) -> StatusRequest {
    let api = api.trim_end_matches('/');
    let mut body = Map::new();
    body.insert("state".into(), json!(status.state.on(forge)));
    if let Some(url) = status.target_url {
        body.insert("target_url".into(), json!(url));
    }
    body.insert("description".into(), json!(status.description));
    let (url, headers) = match forge {
        Forge::GitHub => {
            body.insert("context".into(), json!(status.context));
            (
                format!("{api}/repos/{path}/statuses/{}", status.sha),
                vec![
                    ("Authorization", format!("Bearer {token}")),
                    ("Accept", "application/vnd.github+json".to_owned()),
                    ("X-GitHub-Api-Version", "2022-11-28".to_owned()),
                ],
            )
        }
        Forge::Gitea | Forge::Forgejo => {
            body.insert("context".into(), json!(status.context));
            (
                format!("{api}/api/v1/repos/{path}/statuses/{}", status.sha),
                vec![
                    ("Authorization", format!("token {token}")),
                    ("Accept", "application/json".to_owned()),
                ],
            )
        }
        Forge::GitLab => {
            body.insert("name".into(), json!(status.context));
            (
                format!(
                    "{api}/api/v4/projects/{}/statuses/{}",
                    encode_component(path),
                    status.sha
                ),
                vec![("PRIVATE-TOKEN", token.to_owned())],
            )
        }
    };
    StatusRequest {
        url,
        headers,
        body: Value::Object(body),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`group/app` →
/// `group%2Fapp`, as GitLab wants a project path).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: StatusState) -> CommitStatus<'static> {
        CommitStatus {
            sha: "abc123",
            state,
            context: "baton/app/test",
            description: "running",
            target_url: Some("https://ci.example.com/runs/7"),
        }
    }

    #[test]
    fn api_bases_follow_the_url() {
        let gh = |u| api_base(Forge::GitHub, u, None);
        assert_eq!(
            gh("git@github.com:Acme/App.git").unwrap(),
            "https://api.github.com"
        );
        assert_eq!(
            gh("https://github.com/acme/app").unwrap(),
            "https://api.github.com"
        );
        assert_eq!(
            api_base(
                Forge::Gitea,
                "https://tok@git.example.com:3000/a/b.git",
                None
            )
            .unwrap(),
            "https://git.example.com:3000"
        );
        assert_eq!(
            api_base(Forge::GitLab, "git@gitlab.example.com:g/s/app.git", None).unwrap(),
            "https://gitlab.example.com"
        );
        assert!(api_base(Forge::Gitea, "/srv/git/app", None).is_err());
        assert_eq!(
            api_base(Forge::Gitea, "/srv/git/app", Some("http://127.0.0.1:9/")).unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            repo_path("git@github.com:Acme/App.git").unwrap(),
            "acme/app"
        );
        assert_eq!(repo_path("/tmp/x/local/app.git").unwrap(), "local/app");
    }

    #[test]
    fn requests_have_each_forges_documented_shape() {
        let r = status_request(
            Forge::GitHub,
            "https://api.github.com",
            "a/b",
            "T",
            &status(StatusState::Running),
        );
        assert_eq!(r.url, "https://api.github.com/repos/a/b/statuses/abc123");
        assert!(r.headers.contains(&("Authorization", "Bearer T".into())));
        assert_eq!(r.body["state"], "pending");
        assert_eq!(r.body["context"], "baton/app/test");
        let r = status_request(
            Forge::Forgejo,
            "https://f.example",
            "a/b",
            "T",
            &status(StatusState::Canceled),
        );
        assert_eq!(r.url, "https://f.example/api/v1/repos/a/b/statuses/abc123");
        assert!(r.headers.contains(&("Authorization", "token T".into())));
        assert_eq!(r.body["state"], "error");
        let r = status_request(
            Forge::GitLab,
            "https://gl.example",
            "g/s/app",
            "T",
            &status(StatusState::Failure),
        );
        assert_eq!(
            r.url,
            "https://gl.example/api/v4/projects/g%2Fs%2Fapp/statuses/abc123"
        );
        assert!(r.headers.contains(&("PRIVATE-TOKEN", "T".into())));
        assert_eq!(r.body["state"], "failed");
        assert_eq!(r.body["name"], "baton/app/test");
        assert!(r.body.get("context").is_none());
        let mut no_url = status(StatusState::Success);
        no_url.target_url = None;
        let r = status_request(Forge::GitLab, "https://gl.example", "g/app", "T", &no_url);
        assert!(r.body.get("target_url").is_none());
    }
}
