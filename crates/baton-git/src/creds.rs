//! Credentials for private repositories, given to git without ever reaching its argv (the
//! process list), a log or a file: an HTTP `Authorization` header as `http.extraHeader` config
//! through `GIT_CONFIG_*` environment variables, and an ssh deploy key through
//! `GIT_SSH_COMMAND`.

use std::path::Path;

use base64::Engine;

use crate::cmd::{GitEnv, GitError};

impl GitEnv {
    /// Adds `header` (`Name: value`) to every HTTP request git makes. The value lives only in
    /// git's environment (`GIT_CONFIG_VALUE_n`), readable by the same user alone.
    pub fn with_http_header(mut self, header: &str) -> GitEnv {
        self.config
            .push(("http.extraHeader".to_owned(), header.to_owned()));
        self
    }

    /// Authenticates https fetches from `url`'s host with a forge token: HTTP Basic with
    /// `user` and the token as the password (GitHub takes `x-access-token`, GitLab `oauth2`,
    /// Gitea and Forgejo any name). The header is scoped to `scheme://host[:port]/` of `url`
    /// (`http.<url>.extraHeader`), so a submodule on another host never receives it.
    pub fn with_token(mut self, user: &str, token: &str, url: &str) -> GitEnv {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        let Some(origin) = http_origin(url) else {
            // Not an http(s) URL: the token has no use (ssh URLs take `ssh_key:`).
            return self;
        };
        self.config.push((
            format!("http.{origin}.extraHeader"),
            format!("Authorization: Basic {pair}"),
        ));
        self
    }

    /// Authenticates ssh fetches with the private key at `key` only (`IdentitiesOnly`), host
    /// keys checked against `known_hosts` when given. The paths reach ssh through the shell git
    /// runs `GIT_SSH_COMMAND` with, single-quoted; a path with a quote or a newline is refused.
    pub fn with_ssh_key(
        mut self,
        key: &Path,
        known_hosts: Option<&Path>,
    ) -> Result<GitEnv, GitError> {
        let quote = |p: &Path| -> Result<String, GitError> {
            let s = p
                .to_str()
                .filter(|s| !s.contains(['\'', '\n']))
                .ok_or_else(|| GitError::BadArgument {
                    what: "ssh key or known_hosts path",
                    given: p.display().to_string(),
                    reason: "it must be UTF-8 without quotes or newlines",
                })?;
            Ok(format!("'{s}'"))
        };
        let mut cmd = format!(
            "ssh -o BatchMode=yes -o IdentitiesOnly=yes -i {}",
            quote(key)?
        );
        if let Some(k) = known_hosts {
            cmd.push_str(&format!(
                " -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
                quote(k)?
            ));
        }
        self.vars.push(("GIT_SSH_COMMAND".to_owned(), cmd));
        Ok(self)
    }
}

/// `https://host[:port]/` of an http(s) URL (without any user or password in it).
fn http_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    (!host.is_empty()).then(|| format!("{}://{host}/", scheme.to_ascii_lowercase()))
}

/// The user name a forge expects beside a token in HTTP Basic auth.
pub fn token_user(forge: &str) -> &'static str {
    match forge {
        "github" => "x-access-token",
        "gitlab" => "oauth2",
        _ => "baton",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_become_a_basic_header_and_debug_hides_it() {
        let env = GitEnv::default().with_token(
            "x-access-token",
            "s3cret",
            "https://bob:pw@GitHub.com:8443/acme/app.git",
        );
        assert_eq!(env.config.len(), 1);
        assert_eq!(env.config[0].0, "http.https://GitHub.com:8443/.extraHeader");
        assert_eq!(
            env.config[0].1,
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46czNjcmV0"
        );
        assert!(!format!("{env:?}").contains("Basic"));
        let ssh = GitEnv::default().with_token("u", "t", "git@github.com:acme/app.git");
        assert!(ssh.config.is_empty());
    }

    #[test]
    fn ssh_keys_are_quoted_and_odd_paths_refused() {
        let env = GitEnv::default()
            .with_ssh_key(Path::new("/k/id"), Some(Path::new("/k/known")))
            .unwrap();
        assert_eq!(
            env.vars[0].1,
            "ssh -o BatchMode=yes -o IdentitiesOnly=yes -i '/k/id' -o StrictHostKeyChecking=yes -o UserKnownHostsFile='/k/known'"
        );
        assert!(
            GitEnv::default()
                .with_ssh_key(Path::new("/k/i'd"), None)
                .is_err()
        );
    }
}
