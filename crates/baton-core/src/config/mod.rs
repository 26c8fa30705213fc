//! Loading and validating Baton's YAML configuration.
//!
//! A configuration is one YAML file or a directory of them: every `*.yaml` / `*.yml` below the
//! directory (recursively, in sorted path order, skipping names that start with `.`) is read and
//! the files are merged. The top level of each file may hold:
//!
//! | key              | shape                              | merged across files          |
//! |------------------|------------------------------------|------------------------------|
//! | `server`         | `{listen, database, jwt_secret, local_workers, kill_grace, docker_host}` | by key |
//! | `workers`        | `NAME: {host, queues}`             | by name; twice is an error   |
//! | `administrators` | list of user names                 | concatenated                 |
//! | `variables`      | `NAME: value`                      | by name; twice is an error   |
//! | `secrets`        | `NAME: env:VAR \| file:PATH`        | by name; twice is an error   |
//! | `tasks`          | `NAME: {command, …}` (py4CI tasks) | by name; twice is an error   |
//! | `pipelines`      | `NAME: {tasks, …}` (prunner)       | by name; twice is an error   |
//!
//! Tasks follow py4CI (`enabled`, `description`, `queues`, `tags`, `period`, `debounce`,
//! `priority`, `timeout`, `command`, `authorized_users`, `triggered_by`) plus Baton's `schedule`,
//! `env`, `concurrency`, `wait_list`, `retries` and the container keys `image`, `build` (a
//! Dockerfile, relative to the file that names it), `resources: {cpus, memory}` and
//! `network: none|bridge` (pipeline tasks take the container keys too), and `secrets: [NAME, …]`
//! (pipeline tasks too); `${:name}` in a command is filled in from `variables` when a job starts
//! ([`render_command`]). Values of secret-looking `variables` and `env` entries
//! ([`is_secret_name`]) and of `secrets:` are kept out of every serialized definition. Pipelines follow prunner's `pipelines.yml`, with prunner's
//! error messages, plus Baton's `queues` and `authorized_users`; their script templates `{{ .name }}` are rewritten by
//! [`rewrite_templates`].
//!
//! Validation never stops at the first problem: every error of every file is collected, with its
//! file, line and column, into [`ConfigErrors`], sorted by file and position. Only a value that
//! passed every check becomes a [`Config`].

use std::fmt;
use std::path::{Path, PathBuf};

mod build;
mod cache_def;
mod duration;
pub mod model;
mod node;
mod repos;
mod secrets;
mod template;

pub use build::check_base_url;
pub use duration::{
    ALL_UNITS, MILLIS_UP, SECONDS_UP, format_duration, invalid_duration, parse_duration,
    parse_duration_in,
};
pub use model::*;
pub use model::{Forge, RepoDef, RepoSecret};
pub use repos::load_repo_sources;
pub use secrets::{MIN_SECRET_LEN, Resolver, resolve_os};
pub use template::{UNSET_MESSAGE, render_command, rewrite_templates, template_vars};

/// One configuration error at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every error found while loading a configuration, sorted by file, line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.diagnostics))]
pub struct ConfigErrors {
    pub diagnostics: Vec<Diagnostic>,
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// One error without a meaningful position (reported at 1:1).
    fn at_file(file: &Path, message: String) -> Self {
        ConfigErrors {
            diagnostics: vec![Diagnostic {
                file: file.to_path_buf(),
                line: 1,
                col: 1,
                message,
            }],
        }
    }
}

/// Loads a configuration file, or every `*.yaml` / `*.yml` file below a directory.
///
/// # Errors
/// All problems found, including unreadable files and a directory without YAML files.
pub fn load_path(path: &Path) -> Result<Config, ConfigErrors> {
    if path.is_dir() {
        let mut files = Vec::new();
        collect_yaml_files(path, &mut files)
            .map_err(|e| ConfigErrors::at_file(path, format!("cannot read directory: {e}")))?;
        if files.is_empty() {
            return Err(ConfigErrors::at_file(
                path,
                "no *.yaml or *.yml files found in directory".to_owned(),
            ));
        }
        files.sort();
        load_files(&files)
    } else {
        load_files(&[path.to_path_buf()])
    }
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Loads and merges the given files, in the given order.
///
/// # Errors
/// All problems found in all files.
pub fn load_files(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    let mut loader = build::Loader::default();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => loader.add_source(path, &text),
            Err(e) => loader.add_error(path, format!("cannot read file: {e}")),
        }
    }
    loader.finish(&resolve_os)
}

/// Loads one in-memory YAML file; `file_name` is used in error messages.
///
/// # Errors
/// All problems found.
pub fn load_str(file_name: &Path, yaml: &str) -> Result<Config, ConfigErrors> {
    let mut loader = build::Loader::default();
    loader.add_source(file_name, yaml);
    loader.finish(&resolve_os)
}

/// Loads several in-memory YAML files as if they were files of one directory, in the given
/// order.
///
/// # Errors
/// All problems found in all sources.
pub fn load_sources(sources: &[(PathBuf, String)]) -> Result<Config, ConfigErrors> {
    load_sources_with(sources, &resolve_os)
}

/// [`load_sources`] with explicit secrets read by `resolve` instead of from the server's
/// environment and files: with a resolver that does no I/O, loading does none.
///
/// # Errors
/// All problems found in all sources.
pub fn load_sources_with(
    sources: &[(PathBuf, String)],
    resolve: &Resolver,
) -> Result<Config, ConfigErrors> {
    let mut loader = build::Loader::default();
    for (path, text) in sources {
        loader.add_source(path, text);
    }
    loader.finish(resolve)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_args;
#[cfg(test)]
mod tests_cache;
#[cfg(test)]
mod tests_notify;
#[cfg(test)]
mod tests_pools;
#[cfg(test)]
mod tests_reports;
#[cfg(test)]
mod tests_repos;
#[cfg(test)]
mod tests_secrets;
