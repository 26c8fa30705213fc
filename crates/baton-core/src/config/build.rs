//! From parsed YAML trees to a validated [`Config`].
//!
//! Phases: parse every file into a [`Node`] tree (a syntax error is one diagnostic for that
//! file); split each top level into its sections; merge the sections across files by name;
//! build every worker, task and pipeline independently, reporting every problem found; then run
//! the cross-checks (unknown tasks in `triggered_by`, chaining cycles, unserved queues). Nothing
//! stops at the first error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::Resolver;
use super::model::{Config, EnvValue, SecretValue, is_secret_name};
use super::node::{self, Node, Value};
use super::{ConfigErrors, Diagnostic};

mod args;
mod cache;
mod checks;
mod container;
pub(crate) mod diags;
mod notify;
mod pipelines;
mod pools;
mod repo_creds;
mod reports;
mod repos;
mod server;
mod storage;
mod tasks;
mod workers;
mod written;

use checks::cross_check;
use diags::FileId;
pub(crate) use diags::{Diags, Entry, Loc};
use pipelines::build_pipeline;
use server::build_server;
pub use server::check_base_url;
use tasks::build_task;
use workers::build_worker;

#[cfg(test)]
pub(crate) use container::parse_memory;

const TOP_KEYS: &[&str] = &[
    "server",
    "workers",
    "administrators",
    "variables",
    "secrets",
    "tasks",
    "pipelines",
    "repos",
    "notify",
    "pools",
];

const DEFAULT_QUEUE: &str = "default";

/// `value` as a definition keeps it: a reference `reference` (value moved to `hidden`) when
/// `name` looks secret and the value is not empty, else plain.
fn hide(
    hidden: &mut BTreeMap<String, SecretValue>,
    reference: String,
    name: &str,
    value: String,
) -> EnvValue {
    if is_secret_name(name) && !value.is_empty() {
        hidden.insert(reference.clone(), SecretValue::new(value));
        EnvValue::Secret { secret: reference }
    } else {
        EnvValue::Plain(value)
    }
}

/// Accumulates sources, then builds the configuration.
#[derive(Default)]
pub(crate) struct Loader {
    files: Vec<PathBuf>,
    /// Each file's text (empty for one that could not be read), for definitions as written.
    texts: Vec<String>,
    roots: Vec<(FileId, Node)>,
    diags: Vec<Diagnostic>,
    /// Loading a repository's `.baton/` ([`super::repos::load_repo_sources`]).
    pub(crate) repo: Option<RepoMode>,
}

impl Loader {
    pub(crate) fn add_source(&mut self, path: &Path, text: &str) {
        let id = self.files.len();
        self.files.push(path.to_path_buf());
        self.texts.push(text.to_owned());
        match node::parse(text) {
            Ok(Some(root)) => self.roots.push((id, root)),
            Ok(None) => {}
            Err((pos, message)) => self.diags.push(Diagnostic {
                file: path.to_path_buf(),
                line: pos.line,
                col: pos.col,
                message,
            }),
        }
    }

    pub(crate) fn add_error(&mut self, path: &Path, message: String) {
        self.files.push(path.to_path_buf());
        self.texts.push(String::new());
        self.diags.push(Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message,
        });
    }

    /// Builds the configuration; explicit secrets are read with `resolve`.
    pub(crate) fn finish(self, resolve: &Resolver) -> Result<Config, ConfigErrors> {
        let Loader {
            files,
            texts,
            roots,
            diags,
            repo,
        } = self;
        let mut d = Diags {
            files: &files,
            list: diags,
            hidden_at: Vec::new(),
        };
        let config = build(&mut d, &roots, &texts, resolve, repo.as_ref());
        let mut list = d.list;
        if list.is_empty() {
            return Ok(config);
        }
        list.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        list.dedup();
        Err(ConfigErrors { diagnostics: list })
    }
}

/// Places remembered for the cross-checks.
#[derive(Default)]
struct Refs {
    /// Every queue named (or defaulted) by a task or pipeline.
    queues: Vec<(String, Loc)>,
    /// `(task, triggering task, place)` from `triggered_by: - task:`.
    after: Vec<(String, String, Loc)>,
    /// Where each task is defined.
    task_keys: BTreeMap<String, Loc>,
    /// Where each pipeline is defined.
    pipeline_keys: BTreeMap<String, Loc>,
    /// Every name under the top-level `secrets:` (also those whose value had a problem).
    secrets: BTreeMap<String, Loc>,
    /// Values of secret-looking `env` entries, by reference (see [`hide`]).
    hidden: BTreeMap<String, SecretValue>,
}

fn build(
    d: &mut Diags<'_>,
    roots: &[(FileId, Node)],
    texts: &[String],
    resolve: &Resolver,
    repo: Option<&RepoMode>,
) -> Config {
    let top_keys = if repo.is_some() {
        REPO_TOP_KEYS
    } else {
        TOP_KEYS
    };
    let Sections {
        server,
        workers,
        administrators,
        variables,
        secrets,
        tasks,
        pipelines,
        repos,
        notify,
        pools,
    } = sections(d, roots, top_keys);
    let mut config = Config {
        administrators,
        ..Config::default()
    };
    let mut refs = Refs::default();

    config.server = build_server(d, server, resolve);

    let already = |kind: &'static str| {
        move |name: &str, first: &str| format!("{kind} {name:?} is already defined at {first}")
    };
    config.variables = build_variables(d, variables, &mut refs.hidden);

    let secrets = d.unique(secrets, already("secret"));
    refs.secrets = secrets
        .iter()
        .map(|(n, e)| ((*n).to_owned(), e.key))
        .collect();
    config.secrets = d.secret_defs(secrets, resolve);

    for (name, e) in d.unique(workers, already("worker")) {
        if let Some(w) = build_worker(d, e) {
            config.workers.insert(name.to_owned(), w);
        }
    }

    let tasks = d.unique(tasks, already("task"));
    for (name, e) in &tasks {
        refs.task_keys.insert((*name).to_owned(), e.key);
    }
    for (name, e) in tasks {
        if let Some(t) = build_task(d, e, &config.variables, &mut refs) {
            config.tasks.insert(name.to_owned(), t);
        }
    }

    let pipelines = d.unique(pipelines, |name, first| {
        format!("pipeline {name:?} was already declared at {first}")
    });
    for (name, e) in pipelines {
        refs.pipeline_keys.insert(name.to_owned(), e.key);
        if let Some(p) = build_pipeline(d, e, &mut refs) {
            config.pipelines.insert(name.to_owned(), p);
        }
    }

    for (name, e) in d.unique(repos, already("repository")) {
        if let Some(r) = d.repo(e, resolve) {
            config.repos.insert(name.to_owned(), r);
        }
    }

    for (file, node) in notify {
        config.notify.extend(d.notify(file, node, resolve));
    }

    for (name, e) in d.unique(pools, already("pool")) {
        if let Some(p) = pools::build_pool(d, e) {
            config.pools.insert(name.to_owned(), p);
        }
    }

    if let Some(mode) = repo {
        config.workers = mode.workers.clone();
        config.server.agent_queues = mode.agent_queues.clone();
    }
    cross_check(d, &config, &refs);
    if repo.is_some() {
        config.workers.clear();
        config.server.agent_queues.clear();
    }
    config.hidden = std::mem::take(&mut refs.hidden);
    config.written = written::collect(
        d.files,
        texts,
        &d.hidden_at,
        &refs.task_keys,
        &refs.pipeline_keys,
    );
    config
}

/// The top-level sections of every file, gathered (a section may be split across files).
#[derive(Default)]
struct Sections<'a> {
    server: Vec<Entry<'a>>,
    workers: Vec<Entry<'a>>,
    administrators: Vec<String>,
    variables: Vec<Entry<'a>>,
    secrets: Vec<Entry<'a>>,
    tasks: Vec<Entry<'a>>,
    pipelines: Vec<Entry<'a>>,
    repos: Vec<Entry<'a>>,
    notify: Vec<(FileId, &'a Node)>,
    pools: Vec<Entry<'a>>,
}

fn sections<'a>(d: &mut Diags<'_>, roots: &'a [(FileId, Node)], top_keys: &[&str]) -> Sections<'a> {
    let mut s = Sections::default();
    for (file, root) in roots {
        let file = *file;
        let Some(top) = d.fields(file, root, "the top level", top_keys) else {
            continue;
        };
        for e in &top.entries {
            let section = match e.name {
                "server" => &mut s.server,
                "workers" => &mut s.workers,
                "variables" => &mut s.variables,
                "secrets" => &mut s.secrets,
                "tasks" => &mut s.tasks,
                "pipelines" => &mut s.pipelines,
                "repos" => &mut s.repos,
                "pools" => &mut s.pools,
                "notify" => {
                    s.notify.push((file, e.value));
                    continue;
                }
                "administrators" => {
                    if !e.value.is_null() {
                        s.administrators.extend(d.plain_list(Some(*e)));
                    }
                    continue;
                }
                _ => continue,
            };
            let what = format!("\"{}\"", e.name);
            section.extend(d.entries(file, e.value, &what));
        }
    }
    s
}

/// The top-level `variables`; values of secret-looking names move to `hidden`.
fn build_variables(
    d: &mut Diags<'_>,
    entries: Vec<Entry<'_>>,
    hidden: &mut BTreeMap<String, SecretValue>,
) -> BTreeMap<String, EnvValue> {
    let mut variables = BTreeMap::new();
    let entries = d.unique(entries, |name, first| {
        format!("variable {name:?} is already defined at {first}")
    });
    for (name, e) in entries {
        match (&e.value.value, e.value.scalar_text()) {
            (Value::Null, _) => {
                variables.insert(name.to_owned(), EnvValue::Plain(String::new()));
            }
            (_, Some(text)) => {
                let v = hide(hidden, format!("variables.{name}"), name, text);
                if matches!(v, EnvValue::Secret { .. }) {
                    d.hidden_at.push((e.key.file, e.key.pos, e.value.pos));
                }
                variables.insert(name.to_owned(), v);
            }
            (_, None) => d.err(
                e.value_loc(),
                format!(
                    "expected a string for variable {name:?}, found {}",
                    e.value.kind()
                ),
            ),
        }
    }
    variables
}

/// What a repository's `.baton/` is checked against: the server's workers and agent queues
/// (so `queues:` naming what the server serves validate).
#[derive(Debug, Clone, Default)]
pub(crate) struct RepoMode {
    pub(crate) workers: BTreeMap<String, super::model::WorkerDef>,
    pub(crate) agent_queues: Vec<String>,
}

/// The top-level keys a repository's `.baton/` may use.
pub(crate) const REPO_TOP_KEYS: &[&str] = &["variables", "tasks", "pipelines"];
