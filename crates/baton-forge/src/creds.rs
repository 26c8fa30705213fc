//! Short-lived credentials for one job, as each forge's API documents them: the requests that
//! mint and revoke them (built, never sent) and what to read from the answers.
//!
//! - GitHub App: an RS256 JWT signed with the app's private key (`iss` the app id, `iat` a
//!   minute back for clock drift, `exp` nine minutes ahead; GitHub takes at most ten) mints an
//!   installation access token: `POST {api}/app/installations/{id}/access_tokens`,
//!   `Authorization: Bearer JWT`, body `{repositories: [NAME], permissions: {...}}`, answer
//!   `201 {token, expires_at}` (an hour). `DELETE {api}/installation/token` with the token itself
//!   as `Bearer` revokes it (`204`).
//! - Gitea and Forgejo: `POST {api}/api/v1/users/{user}/tokens` with basic auth, body `{name,
//!   scopes}`, answer `201 {id, name, sha1}`; `DELETE {api}/api/v1/users/{user}/tokens/{id}`
//!   (the id, or the token's name) with basic auth revokes it (`204`). Such tokens never expire.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Value, json};

/// An HTTP method of a forge request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A request to a forge's API: `body`, if any, goes as `application/json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub url: String,
    /// Headers beyond `Content-Type`; a credential among them (keep it out of logs).
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

/// Why a credential cannot be minted or an answer not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredError {
    #[error(
        "the GitHub App's private key cannot sign a token: {0} (hint: private_key must name the app's .pem file as GitHub gave it)"
    )]
    Key(String),
    #[error("unexpected answer from the forge: {0}")]
    Answer(String),
}

/// How long an app JWT is valid (GitHub takes at most ten minutes).
const JWT_LIFETIME_SECS: i64 = 540;
/// How far back `iat` is set, for clocks that differ.
const JWT_DRIFT_SECS: i64 = 60;

pub(crate) fn github_headers(bearer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Authorization", format!("Bearer {bearer}")),
        ("Accept", "application/vnd.github+json".to_owned()),
        ("X-GitHub-Api-Version", "2022-11-28".to_owned()),
    ]
}

/// The JWT that authenticates GitHub App `app_id` at `now` (Unix seconds), signed with its
/// PEM private key (PKCS#1, as GitHub hands it out, or PKCS#8).
pub fn app_jwt(app_id: u64, private_key_pem: &str, now: i64) -> Result<String, CredError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
        .map_err(|e| CredError::Key(e.to_string()))?;
    let claims = json!({
        "iat": now - JWT_DRIFT_SECS,
        "exp": now + JWT_LIFETIME_SECS,
        "iss": app_id.to_string(),
    });
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| CredError::Key(e.to_string()))
}

/// The request that mints an installation token of `installation_id` for the one repository
/// `repo_name` (its name without the owner) with `permissions` (`contents: read`…).
pub fn github_token_request(
    api: &str,
    installation_id: u64,
    jwt: &str,
    repo_name: &str,
    permissions: &BTreeMap<String, String>,
) -> ApiRequest {
    ApiRequest {
        method: Method::Post,
        url: format!(
            "{}/app/installations/{installation_id}/access_tokens",
            api.trim_end_matches('/')
        ),
        headers: github_headers(jwt),
        body: Some(json!({"repositories": [repo_name], "permissions": permissions})),
    }
}

/// The request that revokes installation token `token`.
pub fn github_revoke_request(api: &str, token: &str) -> ApiRequest {
    ApiRequest {
        method: Method::Delete,
        url: format!("{}/installation/token", api.trim_end_matches('/')),
        headers: github_headers(token),
        body: None,
    }
}

/// The token in GitHub's answer to [`github_token_request`].
pub fn github_token(answer: &[u8]) -> Result<String, CredError> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| CredError::Answer(e.to_string()))?;
    match v["token"].as_str() {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => Err(CredError::Answer("no \"token\" in the answer".into())),
    }
}

fn basic_auth(user: &str, password: &str) -> Vec<(&'static str, String)> {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    vec![
        ("Authorization", format!("Basic {pair}")),
        ("Accept", "application/json".to_owned()),
    ]
}

/// The request that mints a Gitea/Forgejo token named `name` of `user` with `scopes`.
pub fn gitea_token_request(
    api: &str,
    user: &str,
    password: &str,
    name: &str,
    scopes: &[String],
) -> ApiRequest {
    ApiRequest {
        method: Method::Post,
        url: format!("{}/api/v1/users/{user}/tokens", api.trim_end_matches('/')),
        headers: basic_auth(user, password),
        body: Some(json!({"name": name, "scopes": scopes})),
    }
}

/// The request that deletes `user`'s token `id_or_name` (its id, or its name when the id was
/// never learned).
pub fn gitea_revoke_request(api: &str, user: &str, password: &str, id_or_name: &str) -> ApiRequest {
    ApiRequest {
        method: Method::Delete,
        url: format!(
            "{}/api/v1/users/{user}/tokens/{id_or_name}",
            api.trim_end_matches('/')
        ),
        headers: basic_auth(user, password),
        body: None,
    }
}

/// The id and the token in Gitea's answer to [`gitea_token_request`].
pub fn gitea_token(answer: &[u8]) -> Result<(i64, String), CredError> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| CredError::Answer(e.to_string()))?;
    match (v["id"].as_i64(), v["sha1"].as_str()) {
        (Some(id), Some(t)) if !t.is_empty() => Ok((id, t.to_owned())),
        _ => Err(CredError::Answer(
            "no \"id\" and \"sha1\" in the answer".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_each_forges_documented_shape() {
        let perms = BTreeMap::from([("contents".to_owned(), "read".to_owned())]);
        let r = github_token_request("https://api.github.com/", 34, "JWT", "app", &perms);
        assert_eq!(r.method, Method::Post);
        assert_eq!(
            r.url,
            "https://api.github.com/app/installations/34/access_tokens"
        );
        assert!(r.headers.contains(&("Authorization", "Bearer JWT".into())));
        assert_eq!(
            r.body,
            Some(json!({"repositories": ["app"], "permissions": {"contents": "read"}}))
        );
        let r = github_revoke_request("https://api.github.com", "ghs_x");
        assert_eq!(
            (r.method, r.url.as_str()),
            (Method::Delete, "https://api.github.com/installation/token")
        );
        assert!(
            r.headers
                .contains(&("Authorization", "Bearer ghs_x".into()))
        );
        let scopes = vec!["read:repository".to_owned()];
        let r = gitea_token_request("https://g.example", "bot", "pw", "baton-job-7-1", &scopes);
        assert_eq!(r.url, "https://g.example/api/v1/users/bot/tokens");
        // base64("bot:pw")
        assert!(
            r.headers
                .contains(&("Authorization", "Basic Ym90OnB3".into()))
        );
        assert_eq!(
            r.body,
            Some(json!({"name": "baton-job-7-1", "scopes": ["read:repository"]}))
        );
        let r = gitea_revoke_request("https://g.example", "bot", "pw", "12");
        assert_eq!(
            (r.method, r.url.as_str()),
            (
                Method::Delete,
                "https://g.example/api/v1/users/bot/tokens/12"
            )
        );
    }

    #[test]
    fn answers_are_read_and_bad_ones_refused() {
        assert_eq!(
            github_token(br#"{"token":"ghs_1","expires_at":"2026-01-01T00:00:00Z"}"#).unwrap(),
            "ghs_1"
        );
        assert!(github_token(b"{}").is_err());
        assert_eq!(
            gitea_token(br#"{"id":5,"name":"n","sha1":"abc"}"#).unwrap(),
            (5, "abc".to_owned())
        );
        assert!(gitea_token(b"not json").is_err());
    }

    fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is needed (scripts/test.sh installs it)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    }

    #[test]
    fn app_jwts_verify_with_the_public_key_for_pkcs8_keys_too() {
        // OpenSSL 3 writes PKCS#8 (`BEGIN PRIVATE KEY`); GitHub hands out PKCS#1.
        let private = openssl(&["genrsa", "2048"], b"");
        assert!(String::from_utf8_lossy(&private).contains("BEGIN PRIVATE KEY"));
        let public = openssl(&["rsa", "-pubout"], &private);
        let jwt = app_jwt(12, std::str::from_utf8(&private).unwrap(), 1_700_000_000).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_exp = false;
        v.set_issuer(&["12"]);
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
        let claims = jsonwebtoken::decode::<Value>(&jwt, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["iat"], 1_700_000_000 - 60);
        assert_eq!(claims["exp"], 1_700_000_000 + 540);
    }

    #[test]
    fn a_key_that_is_not_a_key_is_a_clear_error() {
        let e = app_jwt(
            1,
            "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n",
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot sign"), "{e}");
    }
}
