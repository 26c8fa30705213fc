//! `repos.NAME.github_app` and `repos.NAME.job_tokens`: how the server mints each job of a
//! repository's run a short-lived credential for that repository (its keys only by reference).

use std::collections::BTreeMap;

use super::diags::{Diags, Entry};
use crate::config::model::{Forge, GithubAppDef, JobTokensDef};
use crate::config::secrets::Resolver;

const APP_KEYS: &[&str] = &["app_id", "installation_id", "private_key", "permissions"];
const TOKENS_KEYS: &[&str] = &["user", "password", "scopes"];

/// The scope of a job's Gitea/Forgejo token when `scopes:` is not given.
pub const DEFAULT_SCOPES: &[&str] = &["read:repository"];
/// The permission of a job's GitHub token when `permissions:` is not given.
pub const DEFAULT_PERMISSIONS: &[(&str, &str)] = &[("contents", "read")];

impl Diags<'_> {
    /// `github_app:` of repository `what` (only for `forge: github`).
    pub(super) fn github_app(
        &mut self,
        e: Option<Entry<'_>>,
        forge: Option<Forge>,
        what: &str,
        resolve: &Resolver,
    ) -> Option<GithubAppDef> {
        let e = e?;
        if forge.is_some_and(|f| f != Forge::Github) {
            self.err(
                e.key,
                format!("\"github_app\" of {what} needs forge: github (GitHub Apps mint GitHub tokens only)"),
            );
        }
        let inner = format!("\"github_app\" of {what}");
        let f = self.fields(e.key.file, e.value, &inner, APP_KEYS)?;
        let app_id = self.positive_id(f.get("app_id"), "app_id", &inner, e);
        let installation_id =
            self.positive_id(f.get("installation_id"), "installation_id", &inner, e);
        let private_key = match f.get("private_key") {
            None => {
                self.err(e.key, format!("{inner} has no \"private_key\" (hint: private_key: file:PATH, the app's .pem file)"));
                None
            }
            Some(k) => self.repo_secret(Some(k), &inner, resolve),
        };
        if let (Some(k), Some(entry)) = (&private_key, f.get("private_key"))
            && !k.value.expose().contains("PRIVATE KEY-----")
        {
            self.err(
                entry.value_loc(),
                format!("\"private_key\" of {inner}: {} is not a PEM private key (hint: the .pem file GitHub gave for the app)", k.source),
            );
        }
        let permissions = self.permissions(f.get("permissions"), &inner);
        Some(GithubAppDef {
            app_id: app_id?,
            installation_id: installation_id?,
            private_key: Some(private_key?),
            permissions,
        })
    }

    /// `job_tokens:` of repository `what` (only for `forge: gitea` or `forgejo`).
    pub(super) fn job_tokens(
        &mut self,
        e: Option<Entry<'_>>,
        forge: Option<Forge>,
        what: &str,
        resolve: &Resolver,
    ) -> Option<JobTokensDef> {
        let e = e?;
        if forge.is_some_and(|f| !matches!(f, Forge::Gitea | Forge::Forgejo)) {
            self.err(
                e.key,
                format!("\"job_tokens\" of {what} needs forge: gitea or forgejo (hint: for GitHub use github_app)"),
            );
        }
        let inner = format!("\"job_tokens\" of {what}");
        let f = self.fields(e.key.file, e.value, &inner, TOKENS_KEYS)?;
        let user = self.nonempty_string(f.get("user"));
        if f.get("user").is_none() {
            self.err(
                e.key,
                format!("{inner} has no \"user\" (the account whose tokens jobs get)"),
            );
        }
        let password = match f.get("password") {
            None => {
                self.err(e.key, format!("{inner} has no \"password\" (hint: password: env:VAR; the forge's token API takes only basic auth)"));
                None
            }
            Some(p) => self.repo_secret(Some(p), &inner, resolve),
        };
        let scopes = match self.string_list(f.get("scopes")) {
            None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            Some(list) => self.scopes(list, &inner),
        };
        Some(JobTokensDef {
            user: user?,
            password: Some(password?),
            scopes,
        })
    }

    fn scopes(&mut self, list: Vec<(String, super::diags::Loc)>, what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (scope, loc) in list {
            let ok = scope.split_once(':').is_some_and(|(level, area)| {
                matches!(level, "read" | "write")
                    && !area.is_empty()
                    && area.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
            if ok {
                out.push(scope);
            } else {
                self.err(loc, format!("invalid scope {scope:?} in \"scopes\" of {what}; expected read:AREA or write:AREA (read:repository…)"));
            }
        }
        out
    }

    /// `permissions:`: `NAME: read|write`; default `{contents: read}`.
    fn permissions(&mut self, e: Option<Entry<'_>>, what: &str) -> BTreeMap<String, String> {
        if e.is_none() {
            let d = DEFAULT_PERMISSIONS.iter();
            return d.map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        }
        let map = self.string_map(e, what);
        let entry = e.expect("present");
        for (name, level) in &map {
            let name_ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !name_ok || !matches!(level.as_str(), "read" | "write") {
                self.err(
                    entry.value_loc(),
                    format!("invalid permission {name}: {level:?} in \"permissions\" of {what}; expected NAME: read or NAME: write (contents: read…)"),
                );
            }
        }
        map
    }

    /// A positive integer id (`app_id`, `installation_id`), required.
    fn positive_id(
        &mut self,
        e: Option<Entry<'_>>,
        name: &str,
        what: &str,
        owner: Entry<'_>,
    ) -> Option<u64> {
        let Some(entry) = e else {
            self.err(owner.key, format!("{what} has no \"{name}\""));
            return None;
        };
        let i = self.integer(Some(entry))?;
        match u64::try_from(i) {
            Ok(v) if v > 0 => Some(v),
            _ => {
                self.err(
                    entry.value_loc(),
                    format!("\"{name}\" of {what} must be a positive integer, found {i}"),
                );
                None
            }
        }
    }
}
