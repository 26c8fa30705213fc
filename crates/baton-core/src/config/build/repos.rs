//! `repos:` entries and the `on:` filter, read from the tree.

use std::path::Path;

use serde::Deserialize;

use super::diags::{Diags, Entry};
use crate::config::duration::SECONDS_UP;
use crate::config::model::SecretValue;
use crate::config::model::{Forge, RepoDef, RepoSecret};
use crate::config::node::Value;
use crate::config::repos::NodeDe;
use crate::config::secrets::{Resolver, parse_source};
use crate::on::On;

const REPO_KEYS: &[&str] = &[
    "url",
    "forge",
    "secret",
    "token",
    "ssh_key",
    "branches",
    "poll",
    "trusted_users",
    "authorized_users",
    "users",
    "api",
    "github_app",
    "job_tokens",
    "trust_local_runs",
];

/// Whether `name` may name a repository: it becomes a directory (`<data>/repos/NAME.git`) and
/// the prefix of run names (`NAME/TASK`).
fn repo_name_problem(name: &str) -> Option<&'static str> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!ok).then_some(
        "repository names are letters, digits, `-`, `_` and `.`, not starting with `.` or `-`",
    )
}

impl Diags<'_> {
    /// One entry of `repos:`.
    pub(super) fn repo(&mut self, e: Entry<'_>, resolve: &Resolver) -> Option<RepoDef> {
        let name = e.name;
        if let Some(why) = repo_name_problem(name) {
            self.err(e.key, format!("invalid repository name {name:?}: {why}"));
            return None;
        }
        let what = format!("repository {name:?}");
        let f = self.fields(e.key.file, e.value, &what, REPO_KEYS)?;
        let url = match f.get("url") {
            None => {
                self.err(e.key, format!("{what} has no \"url\""));
                None
            }
            Some(u) => self.nonempty_string(Some(u)),
        };
        let forge = match (f.get("forge"), self.string(f.get("forge"))) {
            (_, None) => Some(Forge::Git),
            (Some(entry), Some(text)) => {
                let forge = Forge::from_name(&text);
                if forge.is_none() {
                    self.err(
                        entry.value_loc(),
                        format!(
                            "unknown forge {text:?} in {what}; expected one of: github, gitea, forgejo, gitlab, git"
                        ),
                    );
                }
                forge
            }
            (None, Some(_)) => None,
        };
        let secret = self.repo_secret(f.get("secret"), &what, resolve);
        let token = self.repo_secret(f.get("token"), &what, resolve);
        let ssh_key = self.ssh_key(f.get("ssh_key"), &what);
        let branches = self.string_list(f.get("branches")).unwrap_or_default();
        let texts: Vec<&str> = branches.iter().map(|(b, _)| b.as_str()).collect();
        if let (Err(why), Some(entry)) = (crate::on::Patterns::new(&texts), f.get("branches")) {
            self.err(entry.value_loc(), format!("\"branches\" of {what}: {why}"));
        }
        let poll = self.duration(f.get("poll"), SECONDS_UP);
        let api = self.string(f.get("api"));
        if let (Some(u), Some(entry)) = (&api, f.get("api"))
            && let Err(msg) = super::server::check_base_url(u, true)
        {
            self.err(
                entry.value_loc(),
                format!("invalid \"api\" {u:?} of {what}: {msg} (the forge's API base URL, where commit statuses are sent with the token)"),
            );
        }
        if forge.is_some_and(|f| f != Forge::Git) && secret.is_none() && f.get("secret").is_none() {
            self.err(
                e.key,
                format!(
                    "{what} has no \"secret\", so its webhooks cannot be verified (hint: secret: env:VAR, the secret set on the forge's webhook; or forge: git for a repository without webhooks)"
                ),
            );
        }
        let github_app = self.github_app(f.get("github_app"), forge, &what, resolve);
        let job_tokens = self.job_tokens(f.get("job_tokens"), forge, &what, resolve);
        let authorized_users = self.repo_users(&f, &what);
        let trust_local_runs = self.boolean(f.get("trust_local_runs")).unwrap_or(false);
        Some(RepoDef {
            name: name.to_owned(),
            url: url?,
            forge: forge?,
            secret,
            token,
            ssh_key,
            branches: branches.into_iter().map(|(b, _)| b).collect(),
            poll,
            trusted_users: self.plain_list(f.get("trusted_users")),
            authorized_users,
            api: api.map(|u| u.trim_end_matches('/').to_owned()),
            github_app,
            job_tokens,
            trust_local_runs,
        })
    }

    /// `authorized_users:`, or its short name `users:` (not both).
    fn repo_users(&mut self, f: &super::diags::Fields<'_>, what: &str) -> Vec<String> {
        match (f.get("authorized_users"), f.get("users")) {
            (Some(_), Some(second)) => {
                self.err(
                    second.key,
                    format!("{what} has both \"authorized_users\" and \"users\" (they are the same list: keep one)"),
                );
                Vec::new()
            }
            (Some(e), None) | (None, Some(e)) => self.plain_list(Some(e)),
            (None, None) => Vec::new(),
        }
    }

    /// `ssh_key:`: only `file:PATH` (a relative path from the config file's directory); git reads
    /// the key when it fetches, so it is not read here.
    fn ssh_key(&mut self, e: Option<Entry<'_>>, what: &str) -> Option<std::path::PathBuf> {
        let e = e?;
        let Value::Str(text) = &e.value.value else {
            self.type_err(e, "file:PATH");
            return None;
        };
        let dir = self
            .file(e.key)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        match parse_source(text, &dir) {
            Ok(crate::config::model::SecretSource::File(p)) => Some(p),
            _ => {
                self.err(
                    e.value_loc(),
                    format!(
                        "\"ssh_key\" of {what} must be file:PATH, the private key's file (hint: readable only by the server)"
                    ),
                );
                None
            }
        }
    }

    /// `secret:`/`token:` (and `server.webhook_secret`): only `env:VAR` or `file:PATH`, read now.
    pub(super) fn repo_secret(
        &mut self,
        e: Option<Entry<'_>>,
        what: &str,
        resolve: &Resolver,
    ) -> Option<RepoSecret> {
        let e = e?;
        let Value::Str(text) = &e.value.value else {
            self.type_err(e, "env:VARIABLE or file:PATH");
            return None;
        };
        let dir = self
            .file(e.key)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let source = match parse_source(text, &dir) {
            Ok(s) => s,
            Err(_) => {
                // Never echo the text: it may be a secret written inline by mistake.
                self.err(
                    e.value_loc(),
                    format!(
                        "\"{}\" of {what} must be a reference, env:VARIABLE or file:PATH, never the value itself (hint: move the value into an environment variable or a file readable only by the server)",
                        e.name
                    ),
                );
                return None;
            }
        };
        match resolve(&source) {
            Ok(v) if v.is_empty() => {
                self.err(
                    e.value_loc(),
                    format!("\"{}\" of {what}: {source} is empty", e.name),
                );
                None
            }
            Ok(v) => Some(RepoSecret {
                source,
                value: SecretValue::new(v),
            }),
            Err(why) => {
                self.err(e.value_loc(), format!("\"{}\" of {what}: {why}", e.name));
                None
            }
        }
    }

    /// `on:` of a task or pipeline, reported at its value on error.
    pub(super) fn on_filter(&mut self, e: Option<Entry<'_>>) -> Option<On> {
        let e = e?;
        match On::deserialize(NodeDe(e.value)) {
            Ok(on) => {
                for cron in &on.schedule {
                    if let Err(why) = super::tasks::check_cron(cron) {
                        self.err(e.value_loc(), format!("\"on\": {why}"));
                    }
                }
                Some(on)
            }
            Err(err) => {
                self.err(e.value_loc(), format!("invalid \"on\": {err}"));
                None
            }
        }
    }
}
