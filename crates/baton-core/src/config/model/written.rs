//! Definitions as written in their files, and what of them may be shown.

use super::*;

/// The source text of every task and pipeline, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    pub tasks: BTreeMap<String, WrittenDef>,
    pub pipelines: BTreeMap<String, WrittenDef>,
}

/// A definition as written: the file, the line of its name (1-based), and its lines from that
/// one to the last that belongs to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrittenDef {
    pub file: std::path::PathBuf,
    pub line: usize,
    pub text: String,
}

impl Config {
    /// A task's (`pipeline` false) or pipeline's text as written, safe to show: the values
    /// the loader hid are `***`, and so is every occurrence of any secret value this config
    /// holds (explicit secrets, hidden values, repositories' secrets) of at least
    /// [`crate::decide::MIN_MASKED_LEN`] bytes.
    #[must_use]
    pub fn written_source(&self, pipeline: bool, name: &str) -> Option<WrittenDef> {
        let map = if pipeline {
            &self.written.pipelines
        } else {
            &self.written.tasks
        };
        let mut w = map.get(name)?.clone();
        let values = self
            .hidden
            .values()
            .chain(self.secrets.values().map(|s| &s.value))
            .chain(
                self.repos
                    .values()
                    .flat_map(|r| r.secrets().map(|s| &s.value)),
            )
            .map(|v| v.expose().to_owned());
        let mut mask = crate::decide::mask_values(values);
        // Longest first, so a value that contains another is hidden whole.
        mask.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for v in &mask {
            if w.text.contains(v.as_str()) {
                w.text = w.text.replace(v.as_str(), "***");
            }
        }
        Some(w)
    }

    /// The value of an explicit secret (`secrets:`) by name, or of a secret-looking variable
    /// or `env` entry by its reference ([`EnvValue::Secret`]).
    #[must_use]
    pub fn secret(&self, name: &str) -> Option<&SecretValue> {
        self.secrets.get(name).map(|s| &s.value)
    }

    /// The value behind a [`EnvValue::Secret`] reference.
    #[must_use]
    pub fn hidden(&self, reference: &str) -> Option<&SecretValue> {
        self.hidden.get(reference)
    }

    /// The server's environment variables that hold a secret (every `env:VAR` source: `secrets:`,
    /// repositories' `secret:`/`token:`, `server.webhook_secret`): a job's process must not
    /// inherit them from the server, it gets only the secrets its task names.
    #[must_use]
    pub fn secret_env_vars(&self) -> Vec<String> {
        let repos = self.repos.values().flat_map(RepoDef::secrets);
        let sources = self.secrets.values().map(|s| &s.source).chain(
            repos
                .chain(self.server.webhook_secret.as_ref())
                .chain(
                    self.server
                        .artifacts
                        .iter()
                        .flat_map(|s3| [&s3.access_key, &s3.secret_key]),
                )
                .map(|s| &s.source),
        );
        let mut names: Vec<String> = sources
            .filter_map(|s| match s {
                SecretSource::Env(v) => Some(v.clone()),
                SecretSource::File(_) => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
