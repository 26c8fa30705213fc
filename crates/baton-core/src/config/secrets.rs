//! Explicit secrets: `secrets: {NAME: env:VAR | file:PATH}` and the `secrets: [NAME, …]` lists
//! that tasks and pipeline tasks reference them by.
//!
//! A secret's value is read when the config loads (and on every reload) through a
//! [`Resolver`]: [`resolve_os`] reads the server's environment and files, tests pass their own.
//! Values live in [`SecretValue`]s, which are never serialized. The parsing here works on any
//! mapping of secrets, so a scope other than the top level (a future per-repo
//! `repos: NAME: {secrets: …}`) can reuse [`Diags::secret_defs`] and [`Diags::secret_refs`] with
//! its own map of available secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::build::diags::{Diags, Entry, Loc};
use super::model::{SecretDef, SecretSource, SecretValue};
use super::node::Value;

pub use super::model::Resolver;

/// The shortest value accepted: shorter ones cannot be masked in logs without mangling them.
pub const MIN_SECRET_LEN: usize = 4;

/// Reads `env:VAR` from the server's environment and `file:PATH` from disk (one trailing
/// newline is dropped).
///
/// # Errors
/// A variable that is not set (or not UTF-8), or a file that cannot be read.
pub fn resolve_os(source: &SecretSource) -> Result<String, String> {
    match source {
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) => Ok(v),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "environment variable {var:?} is not set (hint: set it in the environment of the baton server, or use file:PATH)"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "environment variable {var:?} is not valid UTF-8 (hint: store the value in a file and use file:PATH)"
            )),
        },
        SecretSource::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => Ok(strip_newline(text)),
            Err(e) => Err(format!(
                "cannot read file {}: {e} (hint: create it, readable by the user the baton server runs as, with the secret as its content)",
                path.display()
            )),
        },
    }
}

fn strip_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// `env:VAR` or `file:PATH`; `dir` is the folder of the file that names it (for relative
/// paths).
pub(crate) fn parse_source(text: &str, dir: &Path) -> Result<SecretSource, String> {
    if let Some(var) = text.strip_prefix("env:") {
        let mut chars = var.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "invalid environment variable name {var:?} in {text:?}: expected letters, digits and _, not starting with a digit"
            ));
        }
        return Ok(SecretSource::Env(var.to_owned()));
    }
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() {
            return Err(format!("empty path in {text:?}: expected file:PATH"));
        }
        let path = Path::new(path);
        let path: PathBuf = if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        };
        return Ok(SecretSource::File(path));
    }
    Err(format!(
        "invalid secret source {text:?}: expected env:VARIABLE or file:PATH"
    ))
}

/// Why `name` cannot name a secret (it becomes an environment variable of the job).
fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(
            "secret names become environment variables: letters, digits and _, starting with an upper-case letter or _ (so no trigger argument can have the same name)",
        );
    }
    if name.starts_with("BATON_") {
        return Some("names starting with BATON_ are reserved for Baton's own variables");
    }
    None
}

impl Diags<'_> {
    /// Builds the secrets of one scope from its `NAME: env:VAR | file:PATH` entries (already
    /// unique by name), resolving each value with `resolve`. Every problem is reported at its
    /// place; a secret with a problem is left out.
    pub(crate) fn secret_defs(
        &mut self,
        entries: BTreeMap<&str, Entry<'_>>,
        resolve: &Resolver,
    ) -> BTreeMap<String, SecretDef> {
        let mut out = BTreeMap::new();
        for (name, e) in entries {
            if let Some(why) = name_problem(name) {
                self.err(e.key, format!("invalid secret name {name:?}: {why}"));
                continue;
            }
            let text = match &e.value.value {
                Value::Str(s) => s.clone(),
                _ => {
                    self.err(
                        e.value_loc(),
                        format!(
                            "expected env:VARIABLE or file:PATH for secret {name:?}, found {}",
                            e.value.kind()
                        ),
                    );
                    continue;
                }
            };
            let dir = self
                .file(e.key)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let source = match parse_source(&text, &dir) {
                Ok(s) => s,
                Err(why) => {
                    self.err(e.value_loc(), format!("secret {name:?}: {why}"));
                    continue;
                }
            };
            match resolve(&source) {
                Ok(v) if v.chars().count() < MIN_SECRET_LEN => self.err(
                    e.value_loc(),
                    format!(
                        "secret {name:?}: the value from {source} has {} characters; at least {MIN_SECRET_LEN} are needed so that it can be masked in logs",
                        v.chars().count()
                    ),
                ),
                Ok(v) => {
                    out.insert(
                        name.to_owned(),
                        SecretDef {
                            name: name.to_owned(),
                            source,
                            value: SecretValue::new(v),
                        },
                    );
                }
                Err(why) => self.err(e.value_loc(), format!("secret {name:?}: {why}")),
            }
        }
        out
    }

    /// A `secrets: [NAME, …]` list of `what`, checked against the names `defined` in scope
    /// (`declared` also holds the names whose definition had an error, so they are not
    /// reported twice) and against `env` (a name in both would be ambiguous).
    pub(crate) fn secret_refs(
        &mut self,
        e: Option<Entry<'_>>,
        what: &str,
        declared: &BTreeMap<String, Loc>,
        env_names: &[&String],
    ) -> Vec<String> {
        let Some(e) = e else { return Vec::new() };
        let Some(list) = self.string_list(Some(e)) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (name, loc) in list {
            if seen.contains(&name) {
                self.err(
                    loc,
                    format!("secret {name:?} is listed twice in \"secrets\" of {what}"),
                );
                continue;
            }
            seen.push(name.clone());
            if name.contains(':') {
                self.err(
                    loc,
                    format!(
                        "invalid secret reference {name:?} in \"secrets\" of {what}: list the names of secrets defined under the top-level \"secrets:\" (define it there as NAME: {name})"
                    ),
                );
            } else if !declared.contains_key(&name) {
                let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "no secrets are defined; define it under the top-level \"secrets:\" as NAME: env:VARIABLE or NAME: file:PATH".to_owned()
                } else {
                    format!(
                        "defined secrets: {}; or define it under the top-level \"secrets:\"",
                        known.join(", ")
                    )
                };
                self.err(
                    loc,
                    format!("unknown secret {name:?} in \"secrets\" of {what} ({hint})"),
                );
            } else if env_names.contains(&&name) {
                self.err(
                    loc,
                    format!(
                        "{name:?} is both in \"env\" and in \"secrets\" of {what}: remove one of them"
                    ),
                );
            } else {
                out.push(name);
            }
        }
        out
    }
}
