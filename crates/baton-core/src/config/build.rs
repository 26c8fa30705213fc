//! From parsed YAML trees to a validated [`Config`].
//!
//! Phases: parse every file into a [`Node`] tree (a syntax error is one diagnostic for that
//! file); split each top level into its sections; merge the sections across files by name;
//! build every worker, task and pipeline independently, reporting every problem found; then run
//! the cross-checks (unknown tasks in `triggered_by`, chaining cycles, unserved queues). Nothing
//! stops at the first error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::{MILLIS_UP, SECONDS_UP, invalid_duration, parse_duration_in};
use super::model::{
    Config, ContainerDef, CronSchedule, EnvValue, NetworkMode, OnError, PipelineDef, PipelineTask,
    QueueStrategy, RepoTrigger, SecretValue, ServerConfig, SsoKind, SsoProvider, TaskDef,
    UserClaim, WaitList, WaitStrategy, WorkerDef, is_secret_name,
};
use super::node::{self, Node, Pos, Value};
use super::secrets::Resolver;
use super::template::{rewrite_templates, unsupported_templates};
use super::{ConfigErrors, Diagnostic};

const TOP_KEYS: &[&str] = &[
    "server",
    "workers",
    "administrators",
    "variables",
    "secrets",
    "tasks",
    "pipelines",
];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "jwt_secret",
    "local_workers",
    "kill_grace",
    "agent_queues",
    "docker_host",
    "ssh_key",
    "known_hosts",
    "callback_url",
    "heartbeat_timeout",
    "public_url",
    "auth",
];
const SSO_KEYS: &[&str] = &[
    "kind",
    "label",
    "client_id",
    "client_secret",
    "scopes",
    "issuer",
    "user_claim",
    "url",
    "api_url",
    "allowed_users",
    "allowed_domains",
];
const WORKER_KEYS: &[&str] = &["host", "queues", "work_dir"];
const TASK_KEYS: &[&str] = &[
    "enabled",
    "description",
    "queues",
    "tags",
    "period",
    "schedule",
    "debounce",
    "priority",
    "timeout",
    "command",
    "authorized_users",
    "triggered_by",
    "env",
    "concurrency",
    "wait_list",
    "retries",
    "secrets",
    "image",
    "build",
    "resources",
    "network",
];
const RESOURCES_KEYS: &[&str] = &["cpus", "memory"];
const SCHEDULE_KEYS: &[&str] = &["cron", "timezone"];
const WAIT_LIST_KEYS: &[&str] = &["size", "strategy"];
const TRIGGER_TASK_KEYS: &[&str] = &["task"];
const TRIGGER_REPO_KEYS: &[&str] = &["ssh_url", "branches"];
const PIPELINE_KEYS: &[&str] = &[
    "concurrency",
    "queue_limit",
    "queue_strategy",
    "queue_partition_limit",
    "start_delay",
    "continue_running_tasks_after_failure",
    "on_error",
    "retention_period",
    "retention_count",
    "env",
    "queues",
    "tasks",
    "authorized_users",
];
const ON_ERROR_KEYS: &[&str] = &["script", "env"];
const PIPELINE_TASK_KEYS: &[&str] = &[
    "script",
    "depends_on",
    "env",
    "allow_failure",
    "secrets",
    "image",
    "build",
    "resources",
    "network",
];

const DEFAULT_QUEUE: &str = "default";

type FileId = usize;

/// A position in one of the loaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    file: FileId,
    pos: Pos,
}

/// A `key: value` pair of a mapping, with the key's name and place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'n> {
    pub(crate) name: &'n str,
    pub(crate) key: Loc,
    pub(crate) value: &'n Node,
}

impl Entry<'_> {
    pub(crate) fn value_loc(&self) -> Loc {
        Loc {
            file: self.key.file,
            pos: self.value.pos,
        }
    }
}

/// The fields of a mapping, after unknown and repeated keys have been reported.
/// Fields whose value is null are treated as absent.
#[derive(Debug, Default)]
struct Fields<'n> {
    entries: Vec<Entry<'n>>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<Entry<'n>> {
        self.entries
            .iter()
            .find(|e| e.name == key && !e.value.is_null())
            .copied()
    }
}

/// Collects the diagnostics.
pub(crate) struct Diags<'f> {
    files: &'f [PathBuf],
    list: Vec<Diagnostic>,
}

impl Diags<'_> {
    /// The file a place is in.
    pub(crate) fn file(&self, loc: Loc) -> &Path {
        &self.files[loc.file]
    }

    pub(crate) fn err(&mut self, loc: Loc, message: impl Into<String>) {
        self.list.push(Diagnostic {
            file: self.files[loc.file].clone(),
            line: loc.pos.line,
            col: loc.pos.col,
            message: message.into(),
        });
    }

    fn place(&self, loc: Loc) -> String {
        format!(
            "{}:{}:{}",
            self.files[loc.file].display(),
            loc.pos.line,
            loc.pos.col
        )
    }

    /// The entries of a mapping (null = empty). Keys must be scalars.
    fn entries<'n>(&mut self, file: FileId, node: &'n Node, what: &str) -> Vec<Entry<'n>> {
        let loc = Loc {
            file,
            pos: node.pos,
        };
        match &node.value {
            Value::Null => Vec::new(),
            Value::Map(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let key = Loc { file, pos: k.pos };
                    match &k.value {
                        Value::Str(name) => out.push(Entry {
                            name,
                            key,
                            value: v,
                        }),
                        _ => self.err(
                            key,
                            format!("expected a string key in {what}, found {}", k.kind()),
                        ),
                    }
                }
                out
            }
            _ => {
                self.err(
                    loc,
                    format!("expected a mapping for {what}, found {}", node.kind()),
                );
                Vec::new()
            }
        }
    }

    /// `entries`, keeping the first of repeated names; `dup(name, first_place)` is the message
    /// for a repeat.
    fn unique<'n>(
        &mut self,
        entries: Vec<Entry<'n>>,
        dup: impl Fn(&str, &str) -> String,
    ) -> BTreeMap<&'n str, Entry<'n>> {
        let mut out: BTreeMap<&'n str, Entry<'n>> = BTreeMap::new();
        for e in entries {
            if let Some(first) = out.get(e.name) {
                let msg = dup(e.name, &self.place(first.key));
                self.err(e.key, msg);
            } else {
                out.insert(e.name, e);
            }
        }
        out
    }

    /// The fields of the mapping `node` (null = no fields), reporting unknown and repeated keys.
    /// `None` when `node` is not a mapping (reported).
    fn fields<'n>(
        &mut self,
        file: FileId,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        if !matches!(node.value, Value::Null | Value::Map(_)) {
            self.err(
                Loc {
                    file,
                    pos: node.pos,
                },
                format!("expected a mapping for {what}, found {}", node.kind()),
            );
            return None;
        }
        let mut fields = Fields::default();
        for e in self.entries(file, node, what) {
            if !allowed.contains(&e.name) {
                self.err(
                    e.key,
                    format!(
                        "unknown key {:?} in {what}; expected one of: {}",
                        e.name,
                        allowed.join(", ")
                    ),
                );
            } else if let Some(first) = fields.entries.iter().find(|f| f.name == e.name) {
                let msg = format!(
                    "duplicate key {:?} in {what}, first defined at {}",
                    e.name,
                    self.place(first.key)
                );
                self.err(e.key, msg);
            } else {
                fields.entries.push(e);
            }
        }
        Some(fields)
    }

    fn type_err(&mut self, e: Entry<'_>, expected: &str) {
        self.err(
            e.value_loc(),
            format!(
                "expected {expected} for {:?}, found {}",
                e.name,
                e.value.kind()
            ),
        );
    }

    fn string(&mut self, e: Option<Entry<'_>>) -> Option<String> {
        let e = e?;
        match &e.value.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.type_err(e, "a string");
                None
            }
        }
    }

    /// A string that must not be empty.
    fn nonempty_string(&mut self, e: Option<Entry<'_>>) -> Option<String> {
        let s = self.string(e)?;
        if s.trim().is_empty() {
            let e = e.expect("string() returned Some");
            self.err(e.value_loc(), format!("{:?} must not be empty", e.name));
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, e: Option<Entry<'_>>) -> Option<bool> {
        let e = e?;
        match &e.value.value {
            Value::Bool(b) => Some(*b),
            // YAML 1.1 spellings, as py4CI (PyYAML) reads them.
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "yes" | "on" => Some(true),
                "no" | "off" => Some(false),
                _ => {
                    self.type_err(e, "a boolean");
                    None
                }
            },
            _ => {
                self.type_err(e, "a boolean");
                None
            }
        }
    }

    fn integer(&mut self, e: Option<Entry<'_>>) -> Option<i128> {
        let e = e?;
        match &e.value.value {
            Value::Int(i) => Some(*i),
            _ => {
                self.type_err(e, "an integer");
                None
            }
        }
    }

    /// An integer in `min..=u32::MAX`.
    fn uint(&mut self, e: Option<Entry<'_>>, min: u32) -> Option<u32> {
        let entry = e?;
        let i = self.integer(e)?;
        if i < i128::from(min) {
            self.err(
                entry.value_loc(),
                format!("{:?} must be >= {min}, found {i}", entry.name),
            );
            None
        } else if let Ok(v) = u32::try_from(i) {
            Some(v)
        } else {
            self.err(
                entry.value_loc(),
                format!("{:?} is too large: {i}", entry.name),
            );
            None
        }
    }

    /// A duration in one of `units` (a bare integer is seconds). An error names the key and
    /// lists the units it takes: `start_delay: invalid duration "-1s": expected a positive
    /// number followed by ms, s, m, h, d or w`.
    fn duration(&mut self, e: Option<Entry<'_>>, units: &[&str]) -> Option<Duration> {
        let e = e?;
        let parsed = match &e.value.value {
            Value::Int(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| invalid_duration(&i.to_string(), units)),
            Value::Str(s) => parse_duration_in(s, units),
            _ => {
                self.type_err(e, "a duration");
                return None;
            }
        };
        match parsed {
            Ok(d) => Some(d),
            Err(msg) => {
                self.err(e.value_loc(), format!("{}: {msg}", e.name));
                None
            }
        }
    }

    /// A list of strings, each with its place. `None` when absent or not a list.
    pub(crate) fn string_list(&mut self, e: Option<Entry<'_>>) -> Option<Vec<(String, Loc)>> {
        let e = e?;
        let file = e.key.file;
        match &e.value.value {
            Value::Seq(items) => Some(
                items
                    .iter()
                    .filter_map(|item| {
                        let loc = Loc {
                            file,
                            pos: item.pos,
                        };
                        match &item.value {
                            Value::Str(s) => Some((s.clone(), loc)),
                            _ => {
                                self.err(
                                    loc,
                                    format!(
                                        "expected a string in {:?}, found {}",
                                        e.name,
                                        item.kind()
                                    ),
                                );
                                None
                            }
                        }
                    })
                    .collect(),
            ),
            _ => {
                self.type_err(e, "a list of strings");
                None
            }
        }
    }

    fn plain_list(&mut self, e: Option<Entry<'_>>) -> Vec<String> {
        self.string_list(e)
            .unwrap_or_default()
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// `queues:` — default `[default]` at `owner`; an empty list is an error.
    fn queues(&mut self, e: Option<Entry<'_>>, owner: Loc) -> Vec<(String, Loc)> {
        match (e, self.string_list(e)) {
            (Some(entry), Some(list)) if list.is_empty() => {
                self.err(entry.value_loc(), "\"queues\" must not be empty");
                list
            }
            (_, Some(list)) => list,
            (_, None) => vec![(DEFAULT_QUEUE.to_owned(), owner)],
        }
    }

    /// A map of scalar values; null values become empty strings.
    fn string_map(&mut self, e: Option<Entry<'_>>, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(e) = e else { return out };
        let what = format!("\"{}\" of {what}", e.name);
        let entries = self.entries(e.key.file, e.value, &what);
        for item in self
            .unique(entries, |name, first| {
                format!("duplicate key {name:?} in {what}, first defined at {first}")
            })
            .into_values()
        {
            match (&item.value.value, item.value.scalar_text()) {
                (Value::Null, _) => {
                    out.insert(item.name.to_owned(), String::new());
                }
                (_, Some(text)) => {
                    out.insert(item.name.to_owned(), text);
                }
                (_, None) => self.err(
                    item.value_loc(),
                    format!(
                        "expected a string for {:?} in {what}, found {}",
                        item.name,
                        item.value.kind()
                    ),
                ),
            }
        }
        out
    }

    /// An `env:` map whose secret-looking entries ([`is_secret_name`], non-empty) are kept
    /// as references `<scope>.env.<KEY>` with their values in `hidden`.
    fn env_map(
        &mut self,
        e: Option<Entry<'_>>,
        what: &str,
        scope: &str,
        hidden: &mut BTreeMap<String, SecretValue>,
    ) -> BTreeMap<String, EnvValue> {
        self.string_map(e, what)
            .into_iter()
            .map(|(k, v)| {
                let v = hide(hidden, format!("{scope}.env.{k}"), &k, v);
                (k, v)
            })
            .collect()
    }

    /// A prunner script: a list of lines or a single string; lines joined with `\n`, templates
    /// checked and rewritten.
    fn script(&mut self, e: Option<Entry<'_>>) -> String {
        let Some(e) = e else {
            return String::new();
        };
        let file = e.key.file;
        let lines: Vec<(String, Loc)> = match &e.value.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| {
                    let loc = Loc {
                        file,
                        pos: item.pos,
                    };
                    match item.scalar_text() {
                        Some(text) => Some((text, loc)),
                        None => {
                            self.err(
                                loc,
                                format!("expected a string in \"script\", found {}", item.kind()),
                            );
                            None
                        }
                    }
                })
                .collect(),
            Value::Str(s) => vec![(s.clone(), e.value_loc())],
            _ => {
                self.type_err(e, "a list of strings");
                Vec::new()
            }
        };
        for (text, loc) in &lines {
            for t in unsupported_templates(text) {
                self.err(
                    *loc,
                    format!(
                        "unsupported template {t:?}: only {{{{ .name }}}} references are supported"
                    ),
                );
            }
        }
        let joined = lines
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>()
            .join("\n");
        rewrite_templates(&joined)
    }
}

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
    roots: Vec<(FileId, Node)>,
    diags: Vec<Diagnostic>,
}

impl Loader {
    pub(crate) fn add_source(&mut self, path: &Path, text: &str) {
        let id = self.files.len();
        self.files.push(path.to_path_buf());
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
            roots,
            diags,
        } = self;
        let mut d = Diags {
            files: &files,
            list: diags,
        };
        let config = build(&mut d, &roots, resolve);
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

fn build(d: &mut Diags<'_>, roots: &[(FileId, Node)], resolve: &Resolver) -> Config {
    let mut server = Vec::new();
    let mut workers = Vec::new();
    let mut administrators = Vec::new();
    let mut variables = Vec::new();
    let mut secrets = Vec::new();
    let mut tasks = Vec::new();
    let mut pipelines = Vec::new();
    for (file, root) in roots {
        let file = *file;
        let Some(top) = d.fields(file, root, "the top level", TOP_KEYS) else {
            continue;
        };
        for e in &top.entries {
            let section = match e.name {
                "server" => &mut server,
                "workers" => &mut workers,
                "variables" => &mut variables,
                "secrets" => &mut secrets,
                "tasks" => &mut tasks,
                "pipelines" => &mut pipelines,
                "administrators" => {
                    if !e.value.is_null() {
                        administrators.extend(d.plain_list(Some(*e)));
                    }
                    continue;
                }
                _ => continue,
            };
            let what = format!("\"{}\"", e.name);
            section.extend(d.entries(file, e.value, &what));
        }
    }

    let mut config = Config {
        administrators,
        ..Config::default()
    };
    let mut refs = Refs::default();

    config.server = build_server(d, server);

    let already = |kind: &'static str| {
        move |name: &str, first: &str| format!("{kind} {name:?} is already defined at {first}")
    };
    for (name, e) in d.unique(variables, already("variable")) {
        match (&e.value.value, e.value.scalar_text()) {
            (Value::Null, _) => {
                config
                    .variables
                    .insert(name.to_owned(), EnvValue::Plain(String::new()));
            }
            (_, Some(text)) => {
                let v = hide(&mut refs.hidden, format!("variables.{name}"), name, text);
                config.variables.insert(name.to_owned(), v);
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

    cross_check(d, &config, &refs);
    config.hidden = std::mem::take(&mut refs.hidden);
    config
}

/// The queues that the workers `pick` accepts serve, and those of `server.agent_queues`
/// (served by pull-mode agents that join later). With no `workers:`, the server adds local
/// workers that serve `default` only.
fn served_queues(config: &Config, pick: impl Fn(&WorkerDef) -> bool) -> BTreeSet<&str> {
    let mut served: BTreeSet<&str> = if config.workers.is_empty() {
        BTreeSet::from([DEFAULT_QUEUE])
    } else {
        config
            .workers
            .values()
            .filter(|w| pick(w))
            .flat_map(|w| w.queues.iter().map(String::as_str))
            .collect()
    };
    served.extend(config.server.agent_queues.iter().map(String::as_str));
    served
}

fn build_server(d: &mut Diags<'_>, entries: Vec<Entry<'_>>) -> ServerConfig {
    let mut fields = Fields::default();
    for e in entries {
        if !SERVER_KEYS.contains(&e.name) {
            d.err(
                e.key,
                format!(
                    "unknown key {:?} in \"server\"; expected one of: {}",
                    e.name,
                    SERVER_KEYS.join(", ")
                ),
            );
        } else if let Some(first) = fields.entries.iter().find(|f| f.name == e.name) {
            let msg = format!(
                "server key {:?} is already defined at {}",
                e.name,
                d.place(first.key)
            );
            d.err(e.key, msg);
        } else {
            fields.entries.push(e);
        }
    }
    ServerConfig {
        listen: d.string(fields.get("listen")),
        jwt_secret: d.string(fields.get("jwt_secret")),
        local_workers: d.uint(fields.get("local_workers"), 1),
        kill_grace: d.duration(fields.get("kill_grace"), MILLIS_UP),
        agent_queues: d
            .string_list(fields.get("agent_queues"))
            .map(|l| l.into_iter().map(|(q, _)| q).collect())
            .unwrap_or_default(),
        docker_host: d.string(fields.get("docker_host")),
        ssh_key: d.nonempty_string(fields.get("ssh_key")),
        known_hosts: d.nonempty_string(fields.get("known_hosts")),
        callback_url: {
            let url = d.string(fields.get("callback_url"));
            if let (Some(u), Some(entry)) = (&url, fields.get("callback_url"))
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                d.err(
                    entry.value_loc(),
                    format!("invalid callback_url {u:?}: expected http://host:port or https://host:port (the address SSH workers reach this server at)"),
                );
            }
            url
        },
        public_url: {
            let url = d.string(fields.get("public_url"));
            if let (Some(u), Some(entry)) = (&url, fields.get("public_url"))
                && let Err(msg) = check_base_url(u, false)
            {
                d.err(
                    entry.value_loc(),
                    format!("invalid public_url {u:?}: {msg} (the address browsers reach this server at)"),
                );
            }
            url.map(|u| u.trim_end_matches('/').to_owned())
        },
        auth: build_auth(d, fields.get("auth")),
        heartbeat_timeout: {
            let t = d.duration(fields.get("heartbeat_timeout"), SECONDS_UP);
            if let (Some(t), Some(entry)) = (t, fields.get("heartbeat_timeout"))
                && t.is_zero()
            {
                d.err(
                    entry.value_loc(),
                    "heartbeat_timeout must be longer than 0s".to_string(),
                );
            }
            t
        },
    }
}

/// `server.auth`: single sign-on providers by name.
fn build_auth(d: &mut Diags<'_>, e: Option<Entry<'_>>) -> BTreeMap<String, SsoProvider> {
    let Some(e) = e else {
        return BTreeMap::new();
    };
    let entries = d.entries(e.key.file, e.value, "\"server.auth\"");
    let entries = d.unique(entries, |name, first| {
        format!("auth provider {name:?} was already declared at {first}")
    });
    let mut out = BTreeMap::new();
    for (name, e) in entries {
        if let Some(p) = build_sso_provider(d, e) {
            out.insert(name.to_owned(), p);
        }
    }
    out
}

fn build_sso_provider(d: &mut Diags<'_>, e: Entry<'_>) -> Option<SsoProvider> {
    let what = format!("auth provider {:?}", e.name);
    let mut ok = true;
    if e.name.is_empty()
        || e.name.len() > 32
        || !e
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        d.err(
            e.key,
            format!("invalid {what}: a provider name is 1-32 of a-z, 0-9, `-`, `_` (it appears in the callback URL)"),
        );
        ok = false;
    }
    let f = d.fields(e.key.file, e.value, &what, SSO_KEYS)?;
    let kind = d.string(f.get("kind")).unwrap_or_else(|| "oidc".into());
    let mut required = |d: &mut Diags<'_>, key: &str| {
        let v = d.nonempty_string(f.get(key));
        if v.is_none() && f.get(key).is_none() {
            d.err(e.key, format!("{what} has no {key:?}"));
        }
        if v.is_none() {
            ok = false;
        }
        v.unwrap_or_default()
    };
    let client_id = required(d, "client_id");
    let client_secret = required(d, "client_secret");
    let url_key = |d: &mut Diags<'_>, key: &str, default: &str| -> Option<String> {
        let v = d.string(f.get(key));
        if let (Some(u), Some(entry)) = (&v, f.get(key))
            && let Err(msg) = check_base_url(u, true)
        {
            d.err(
                entry.value_loc(),
                format!("invalid {key} {u:?} in {what}: {msg}"),
            );
            return None;
        }
        Some(v.unwrap_or_else(|| default.to_owned()))
    };
    let only_for = |d: &mut Diags<'_>, keys: &[&str], kind: &str| {
        for key in keys {
            if let Some(entry) = f.get(key) {
                d.err(
                    entry.key,
                    format!("{key:?} is for providers of kind {kind}"),
                );
            }
        }
    };
    let kind = match kind.as_str() {
        "oidc" => {
            only_for(d, &["url", "api_url"], "github");
            let issuer = match f.get("issuer") {
                None => {
                    d.err(e.key, format!("{what} of kind oidc has no \"issuer\""));
                    None
                }
                Some(_) => url_key(d, "issuer", ""),
            };
            let user_claim = match d.string(f.get("user_claim")).as_deref() {
                None | Some("email") => Some(UserClaim::Email),
                Some("preferred_username") => Some(UserClaim::PreferredUsername),
                Some("sub") => Some(UserClaim::Sub),
                Some(other) => {
                    let entry = f.get("user_claim").expect("string() returned Some");
                    d.err(
                        entry.value_loc(),
                        format!("unknown user_claim {other:?} in {what}; expected one of: email, preferred_username, sub"),
                    );
                    None
                }
            };
            match (issuer, user_claim) {
                (Some(issuer), Some(user_claim)) => Some(SsoKind::Oidc { issuer, user_claim }),
                _ => None,
            }
        }
        "github" => {
            only_for(d, &["issuer", "user_claim"], "oidc");
            // Paths are appended to these: no trailing slash. (An OIDC issuer stays exactly as
            // written: it must equal the issuer its provider names, slash or not.)
            let base = |u: String| u.trim_end_matches('/').to_owned();
            let url = url_key(d, "url", "https://github.com").map(base);
            let api_url = url_key(d, "api_url", "https://api.github.com").map(base);
            match (url, api_url) {
                (Some(url), Some(api_url)) => Some(SsoKind::Github { url, api_url }),
                _ => None,
            }
        }
        other => {
            let entry = f.get("kind").expect("kind was given");
            d.err(
                entry.value_loc(),
                format!("unknown kind {other:?} in {what}; expected oidc (any OpenID Connect issuer: Google, Gitea, GitLab, …) or github"),
            );
            None
        }
    };
    let scopes = d
        .string_list(f.get("scopes"))
        .map(|l| l.into_iter().map(|(s, _)| s).collect::<Vec<_>>());
    let label = d
        .string(f.get("label"))
        .unwrap_or_else(|| format!("Sign in with {}", e.name));
    let kind = kind?;
    let scopes = scopes.unwrap_or_else(|| match kind {
        SsoKind::Oidc { .. } => vec!["email".into(), "profile".into()],
        SsoKind::Github { .. } => Vec::new(),
    });
    ok.then(|| SsoProvider {
        name: e.name.to_owned(),
        kind,
        label,
        client_id,
        client_secret,
        scopes,
        allowed_users: d.plain_list(f.get("allowed_users")),
        allowed_domains: d
            .plain_list(f.get("allowed_domains"))
            .into_iter()
            .map(|dom| dom.trim_start_matches('@').to_ascii_lowercase())
            .collect(),
    })
}

/// A base URL: `http(s)://host[:port][/path]`. With `tls_unless_loopback`, plain http is
/// refused except on a loopback host (tokens crossing a network must be protected).
pub fn check_base_url(u: &str, tls_unless_loopback: bool) -> Result<(), String> {
    let rest = if let Some(rest) = u.strip_prefix("https://") {
        rest
    } else if let Some(rest) = u.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        };
        let loopback = host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        if tls_unless_loopback && !loopback {
            return Err("use https:// (plain http is allowed only for localhost)".into());
        }
        rest
    } else {
        return Err("expected http://host[:port] or https://host[:port]".into());
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err("expected http://host[:port] or https://host[:port]".into());
    }
    Ok(())
}

fn build_worker(d: &mut Diags<'_>, e: Entry<'_>) -> Option<WorkerDef> {
    let what = format!("worker {:?}", e.name);
    let f = d.fields(e.key.file, e.value, &what, WORKER_KEYS)?;
    let host = d.string(f.get("host"));
    if let (Some(h), Some(entry)) = (&host, f.get("host"))
        && let Err(msg) = check_host(h)
    {
        d.err(entry.value_loc(), msg);
    }
    let queues = d.queues(f.get("queues"), e.key);
    let work_dir = d.string(f.get("work_dir"));
    if let (Some(w), Some(entry)) = (&work_dir, f.get("work_dir")) {
        if let Err(msg) = check_work_dir(w) {
            d.err(entry.value_loc(), msg);
        } else if host.is_none() {
            d.err(
                entry.key,
                format!(
                    "worker {:?} has a work_dir but no host: work_dir is for SSH workers",
                    e.name
                ),
            );
        }
    }
    Some(WorkerDef {
        name: e.name.to_owned(),
        work_dir,
        host,
        queues: queues.into_iter().map(|(q, _)| q).collect(),
    })
}

/// The folder on an SSH worker: plain path characters only, no `..`, so it needs no quoting
/// anywhere (scp paths included).
fn check_work_dir(w: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
    if w.is_empty() || !w.chars().all(plain) {
        return Err(format!(
            "invalid work_dir {w:?}: use letters, digits, '.', '_', '-' and '/' only"
        ));
    }
    if w.split('/').any(|part| part == "..") {
        return Err(format!("invalid work_dir {w:?}: \"..\" is not allowed"));
    }
    Ok(())
}

/// `[user@]host[:port]`.
fn check_host(h: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid host {h:?}: {why}; expected user@host[:port]"
        ))
    };
    let host_port = match h.rsplit_once('@') {
        Some(("", _)) => return bad("empty user"),
        Some((_, rest)) => rest,
        None => h,
    };
    if host_port.is_empty() || host_port.chars().any(char::is_whitespace) {
        return bad("empty host or whitespace");
    }
    // A single colon separates a port (several colons: an IPv6 address, left alone).
    if host_port.matches(':').count() == 1
        && let Some((host, port)) = host_port.split_once(':')
    {
        if host.is_empty() {
            return bad("empty host");
        }
        if port.parse::<u16>().is_err() {
            return bad("the port is not a number");
        }
    }
    Ok(())
}

fn build_task(
    d: &mut Diags<'_>,
    e: Entry<'_>,
    variables: &BTreeMap<String, EnvValue>,
    refs: &mut Refs,
) -> Option<TaskDef> {
    let name = e.name;
    let what = format!("task {name:?}");
    let f = d.fields(e.key.file, e.value, &what, TASK_KEYS)?;

    let (command, used) = match f.get("command") {
        None => {
            d.err(e.key, format!("task {name:?} has no \"command\""));
            (String::new(), BTreeMap::new())
        }
        Some(c) => match d.string(Some(c)) {
            Some(text) => {
                let used = command_variables(d, &text, c.value_loc(), variables);
                (text, used)
            }
            None => (String::new(), BTreeMap::new()),
        },
    };
    let env = d.env_map(
        f.get("env"),
        &what,
        &format!("tasks.{name}"),
        &mut refs.hidden,
    );
    let env_names: Vec<&String> = env.keys().collect();
    let secrets = d.secret_refs(f.get("secrets"), &what, &refs.secrets, &env_names);

    let queues = d.queues(f.get("queues"), e.key);
    refs.queues.extend(queues.iter().cloned());

    let (after_tasks, repo_triggers) = build_triggers(d, f.get("triggered_by"));
    for (task, loc) in &after_tasks {
        refs.after.push((name.to_owned(), task.clone(), *loc));
    }

    let schedule = f.get("schedule").and_then(|s| build_schedule(d, s));
    let wait_list = f.get("wait_list").and_then(|w| build_wait_list(d, w));

    Some(TaskDef {
        name: name.to_owned(),
        enabled: d.boolean(f.get("enabled")).unwrap_or(true),
        description: d.string(f.get("description")).unwrap_or_default(),
        queues: queues.into_iter().map(|(q, _)| q).collect(),
        tags: d.plain_list(f.get("tags")),
        period: d.duration(f.get("period"), SECONDS_UP),
        schedule,
        debounce: d.duration(f.get("debounce"), SECONDS_UP),
        priority: d
            .integer(f.get("priority"))
            .and_then(|p| {
                let r = i64::try_from(p);
                if r.is_err()
                    && let Some(entry) = f.get("priority")
                {
                    d.err(entry.value_loc(), format!("\"priority\" is too large: {p}"));
                }
                r.ok()
            })
            .unwrap_or(0),
        timeout: d.duration(f.get("timeout"), SECONDS_UP),
        command,
        variables: used,
        authorized_users: d.plain_list(f.get("authorized_users")),
        after_tasks: after_tasks.into_iter().map(|(t, _)| t).collect(),
        repo_triggers,
        env,
        secrets,
        concurrency: d.uint(f.get("concurrency"), 1).unwrap_or(1),
        wait_list,
        retries: d.uint(f.get("retries"), 0).unwrap_or(0),
        container: build_container(d, &f, &what).map(Box::new),
    })
}

/// `image`, `build`, `resources` and `network` of a task or pipeline task (`what`).
fn build_container(d: &mut Diags<'_>, f: &Fields<'_>, what: &str) -> Option<ContainerDef> {
    let image_entry = f.get("image");
    let build_entry = f.get("build");
    let image = d.string(image_entry);
    if let (Some(i), Some(e)) = (&image, image_entry)
        && (i.trim().is_empty() || i.chars().any(char::is_whitespace))
    {
        d.err(
            e.value_loc(),
            format!("invalid image name {i:?}: expected NAME[:TAG] without spaces"),
        );
    }
    let build = match (build_entry, d.string(build_entry)) {
        (Some(e), Some(p)) => {
            if p.trim().is_empty() {
                d.err(e.value_loc(), "\"build\" must name a Dockerfile");
                None
            } else {
                // Relative to the directory of the file that says it (no I/O here: the file is
                // read when a job needs the image).
                let base = d.files[e.key.file]
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                Some(base.join(p))
            }
        }
        _ => None,
    };
    if let (Some(_), Some(b)) = (image_entry, build_entry) {
        d.err(
            b.key,
            format!("{what} has both \"image\" and \"build\"; use one: \"build\" makes the image"),
        );
    }
    let mut cpus = None;
    let mut memory_bytes = None;
    if let Some(r) = f.get("resources")
        && let Some(rf) = d.fields(r.key.file, r.value, "\"resources\"", RESOURCES_KEYS)
    {
        if let Some(c) = rf.get("cpus") {
            let n = match &c.value.value {
                Value::Int(i) => Some(*i as f64),
                Value::Float(x) => Some(*x),
                Value::Str(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n.is_finite() && n > 0.0 && n <= 1024.0 => cpus = Some(n),
                _ => d.err(
                    c.value_loc(),
                    format!(
                        "invalid cpus {}: expected a number of CPUs greater than 0, e.g. 1.5",
                        c.value
                            .scalar_text()
                            .unwrap_or_else(|| c.value.kind().to_owned())
                    ),
                ),
            }
        }
        if let Some(m) = rf.get("memory") {
            match m.value.scalar_text().map(|t| parse_memory(&t)) {
                Some(Ok(bytes)) => memory_bytes = Some(bytes),
                Some(Err(msg)) => d.err(m.value_loc(), msg),
                None => d.type_err(m, "a memory size such as 512m"),
            }
        }
    }
    let network = match (f.get("network"), d.string(f.get("network")).as_deref()) {
        (_, None | Some("bridge")) => NetworkMode::Bridge,
        (_, Some("none")) => NetworkMode::None,
        (Some(e), Some(other)) => {
            d.err(
                e.value_loc(),
                format!("unknown network {other:?}; expected none or bridge"),
            );
            NetworkMode::Bridge
        }
        (None, Some(_)) => NetworkMode::Bridge,
    };
    if image_entry.is_none() && build_entry.is_none() {
        for key in ["resources", "network"] {
            if let Some(e) = f.get(key) {
                d.err(
                    e.key,
                    format!(
                        "{key:?} applies to containers only: {what} has no \"image\" or \"build\""
                    ),
                );
            }
        }
        return None;
    }
    Some(ContainerDef {
        image: if build.is_some() { None } else { image },
        build,
        cpus,
        memory_bytes,
        network,
    })
}

/// A memory size as Docker reads it: a number with an optional unit `b`, `k`, `m`, `g` or `t`
/// (powers of 1024; `kb`/`kib`, `mb`/`mib`, … mean the same). At least 6 MiB, the engine's
/// minimum.
pub(crate) fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!(
            "invalid memory size {text:?}: expected a number with an optional unit b, k, m, g or t, e.g. 512m"
        )
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("memory size {text:?} is too large"));
    }
    let bytes = bytes as u64;
    if bytes < 6 << 20 {
        return Err(format!(
            "memory size {text:?} is below 6m, the smallest limit the engine accepts"
        ));
    }
    Ok(bytes)
}

/// The `variables` that `${:name}` references in `command` name (the command is kept as
/// written and filled in when a job starts); unknown names are reported at `loc`.
fn command_variables(
    d: &mut Diags<'_>,
    command: &str,
    loc: Loc,
    variables: &BTreeMap<String, EnvValue>,
) -> BTreeMap<String, EnvValue> {
    let mut used = BTreeMap::new();
    for name in super::template::command_variable_names(command) {
        match variables.get(name) {
            Some(value) => {
                used.insert(name.to_owned(), value.clone());
            }
            None => d.err(loc, format!("unknown variable {name:?} in command")),
        }
    }
    used
}

type AfterTasks = Vec<(String, Loc)>;

fn build_triggers(d: &mut Diags<'_>, e: Option<Entry<'_>>) -> (AfterTasks, Vec<RepoTrigger>) {
    let mut after = Vec::new();
    let mut repos = Vec::new();
    let Some(e) = e else {
        return (after, repos);
    };
    let file = e.key.file;
    let Value::Seq(items) = &e.value.value else {
        d.type_err(e, "a list");
        return (after, repos);
    };
    let shape =
        "a \"triggered_by\" item must be {task: NAME} or {ssh_url: URL, branches: [BRANCH, ...]}";
    for item in items {
        let loc = Loc {
            file,
            pos: item.pos,
        };
        let keys: Vec<&str> = match &item.value {
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, _)| match &k.value {
                    Value::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => {
                d.err(loc, format!("{shape}, found {}", item.kind()));
                continue;
            }
        };
        if keys.contains(&"task") {
            let Some(f) = d.fields(file, item, "\"triggered_by\" item", TRIGGER_TASK_KEYS) else {
                continue;
            };
            if let Some(t) = f.get("task")
                && let Some(name) = d.string(Some(t))
            {
                after.push((name, t.value_loc()));
            }
        } else if keys.contains(&"ssh_url") || keys.contains(&"branches") {
            let Some(f) = d.fields(file, item, "\"triggered_by\" item", TRIGGER_REPO_KEYS) else {
                continue;
            };
            let ssh_url = d.string(f.get("ssh_url"));
            let branches = d.string_list(f.get("branches"));
            if f.get("ssh_url").is_none() {
                d.err(loc, "\"triggered_by\" item has no \"ssh_url\"");
            }
            if f.get("branches").is_none() {
                d.err(loc, "\"triggered_by\" item has no \"branches\"");
            }
            if let (Some(ssh_url), Some(branches)) = (ssh_url, branches) {
                repos.push(RepoTrigger {
                    ssh_url,
                    branches: branches.into_iter().map(|(b, _)| b).collect(),
                });
            }
        } else {
            d.err(loc, shape.to_owned());
        }
    }
    (after, repos)
}

fn build_schedule(d: &mut Diags<'_>, e: Entry<'_>) -> Option<CronSchedule> {
    let (cron_entry, tz_entry) = match &e.value.value {
        Value::Str(_) => (e, None),
        Value::Map(_) => {
            let f = d.fields(e.key.file, e.value, "\"schedule\"", SCHEDULE_KEYS)?;
            let Some(cron) = f.get("cron") else {
                d.err(e.value_loc(), "\"schedule\" has no \"cron\"");
                return None;
            };
            (cron, f.get("timezone"))
        }
        _ => {
            d.type_err(e, "a cron string or {cron, timezone}");
            return None;
        }
    };
    let cron = d.string(Some(cron_entry))?;
    let timezone = d.string(tz_entry);
    let mut ok = true;
    if let Err(msg) = check_cron(&cron) {
        d.err(cron_entry.value_loc(), msg);
        ok = false;
    }
    if let (Some(tz), Some(entry)) = (&timezone, tz_entry)
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        d.err(entry.value_loc(), format!("unknown time zone {tz:?}"));
        ok = false;
    }
    ok.then_some(CronSchedule { cron, timezone })
}

/// A cron expression of 5 fields, or 6 with seconds (or a `@daily`-style nickname).
fn check_cron(cron: &str) -> Result<(), String> {
    let fields = cron.split_whitespace().count();
    if !(cron.trim_start().starts_with('@') || fields == 5 || fields == 6) {
        return Err(format!(
            "invalid cron expression {cron:?}: expected 5 fields (or 6 with seconds), found {fields}"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(cron)
        .map(|_| ())
        .map_err(|e| format!("invalid cron expression {cron:?}: {e}"))
}

fn build_wait_list(d: &mut Diags<'_>, e: Entry<'_>) -> Option<WaitList> {
    let f = d.fields(e.key.file, e.value, "\"wait_list\"", WAIT_LIST_KEYS)?;
    if f.get("size").is_none() {
        d.err(e.key, "\"wait_list\" has no \"size\"");
    }
    let size = d.uint(f.get("size"), 1);
    let strategy = match (f.get("strategy"), d.string(f.get("strategy"))) {
        (_, None) => Some(WaitStrategy::Append),
        (_, Some(s)) if s == "append" => Some(WaitStrategy::Append),
        (_, Some(s)) if s == "replace" => Some(WaitStrategy::Replace),
        (Some(entry), Some(s)) => {
            d.err(
                entry.value_loc(),
                format!("unknown wait_list strategy {s:?}; expected append or replace"),
            );
            None
        }
        (None, Some(_)) => None,
    };
    Some(WaitList {
        size: size?,
        strategy: strategy?,
    })
}

fn build_pipeline(d: &mut Diags<'_>, e: Entry<'_>, refs: &mut Refs) -> Option<PipelineDef> {
    let name = e.name;
    let what = format!("pipeline {name:?}");
    let f = d.fields(e.key.file, e.value, &what, PIPELINE_KEYS)?;

    let concurrency = match d.integer(f.get("concurrency")) {
        None => 1,
        Some(c) => match u32::try_from(c) {
            Ok(c) if c > 0 => c,
            _ => {
                if let Some(entry) = f.get("concurrency") {
                    d.err(entry.value_loc(), "concurrency must be greater than 0");
                }
                1
            }
        },
    };
    let queue_limit = match (f.get("queue_limit"), d.integer(f.get("queue_limit"))) {
        (Some(entry), Some(l)) => match u32::try_from(l) {
            Ok(l) => Some(l),
            Err(_) => {
                let msg = if l < 0 {
                    "queue_limit must not be negative".to_owned()
                } else {
                    format!("queue_limit is too large: {l}")
                };
                d.err(entry.value_loc(), msg);
                None
            }
        },
        _ => None,
    };
    let partition_limit = d.integer(f.get("queue_partition_limit"));
    let strategy_entry = f.get("queue_strategy");
    let strategy_name = d.string(strategy_entry);
    let queue_strategy = match strategy_name.as_deref() {
        None | Some("append") => QueueStrategy::Append,
        Some("replace") => QueueStrategy::Replace,
        Some("partitioned_replace") => {
            if let Some(entry) = f.get("queue_limit") {
                d.err(
                    entry.key,
                    "queue_limit is not allowed if queue_strategy=partitioned_replace, use queue_partition_limit instead",
                );
            }
            let limit = partition_limit
                .and_then(|l| u32::try_from(l).ok())
                .filter(|l| *l >= 1);
            let at = f
                .get("queue_partition_limit")
                .or(strategy_entry)
                .map_or(e.key, |x| x.value_loc());
            match limit {
                Some(partition_limit) => QueueStrategy::PartitionedReplace { partition_limit },
                None => {
                    d.err(
                        at,
                        "queue_partition_limit must be defined and >=1 if queue_strategy=partitioned_replace",
                    );
                    QueueStrategy::PartitionedReplace { partition_limit: 1 }
                }
            }
        }
        Some(other) => {
            if let Some(entry) = strategy_entry {
                d.err(
                    entry.value_loc(),
                    format!("unknown queue strategy {other:?}"),
                );
            }
            QueueStrategy::Append
        }
    };
    if matches!(
        queue_strategy,
        QueueStrategy::Append | QueueStrategy::Replace
    ) && partition_limit.is_some_and(|l| l > 0)
        && let Some(entry) = f.get("queue_partition_limit")
    {
        d.err(
            entry.key,
            "queue_partition_limit is not allowed if queue_strategy=append|replace, use queue_limit instead",
        );
    }
    let start_delay = d.duration(f.get("start_delay"), MILLIS_UP);
    if start_delay.is_some_and(|s| !s.is_zero())
        && queue_limit == Some(0)
        && let Some(entry) = f.get("start_delay")
    {
        d.err(entry.key, "start_delay requires queue_limit > 0");
    }

    let on_error = f.get("on_error").and_then(|oe| {
        let of = d.fields(e.key.file, oe.value, "\"on_error\"", ON_ERROR_KEYS)?;
        Some(OnError {
            script: d.script(of.get("script")),
            env: d.env_map(
                of.get("env"),
                "\"on_error\"",
                &format!("pipelines.{name}.on_error"),
                &mut refs.hidden,
            ),
        })
    });

    let queues = d.queues(f.get("queues"), e.key);
    refs.queues.extend(queues.iter().cloned());

    let tasks = build_pipeline_tasks(d, name, f.get("tasks"), refs);

    Some(PipelineDef {
        name: name.to_owned(),
        concurrency,
        queue_limit,
        queue_strategy,
        start_delay,
        continue_running_tasks_after_failure: d
            .boolean(f.get("continue_running_tasks_after_failure"))
            .unwrap_or(false),
        on_error,
        retention_period: d.duration(f.get("retention_period"), SECONDS_UP),
        retention_count: d.uint(f.get("retention_count"), 0),
        env: d.env_map(
            f.get("env"),
            &what,
            &format!("pipelines.{name}"),
            &mut refs.hidden,
        ),
        queues: queues.into_iter().map(|(q, _)| q).collect(),
        authorized_users: d.plain_list(f.get("authorized_users")),
        tasks,
    })
}

fn build_pipeline_tasks(
    d: &mut Diags<'_>,
    pipeline: &str,
    e: Option<Entry<'_>>,
    refs: &mut Refs,
) -> BTreeMap<String, PipelineTask> {
    let mut out = BTreeMap::new();
    let Some(e) = e else { return out };
    let what = format!("\"tasks\" of pipeline {pipeline:?}");
    let entries = d.entries(e.key.file, e.value, &what);
    let entries = d.unique(entries, |name, first| {
        format!("task {name:?} is already defined in pipeline {pipeline:?} at {first}")
    });
    let mut deps: BTreeMap<String, Vec<(String, Loc)>> = BTreeMap::new();
    for (name, te) in &entries {
        let what = format!("task {name:?} of pipeline {pipeline:?}");
        let Some(f) = d.fields(te.key.file, te.value, &what, PIPELINE_TASK_KEYS) else {
            continue;
        };
        let depends_on = d.string_list(f.get("depends_on")).unwrap_or_default();
        deps.insert((*name).to_owned(), depends_on.clone());
        let env = d.env_map(
            f.get("env"),
            &what,
            &format!("pipelines.{pipeline}.tasks.{name}"),
            &mut refs.hidden,
        );
        let env_names: Vec<&String> = env.keys().collect();
        let secrets = d.secret_refs(f.get("secrets"), &what, &refs.secrets, &env_names);
        out.insert(
            (*name).to_owned(),
            PipelineTask {
                name: (*name).to_owned(),
                script: d.script(f.get("script")),
                depends_on: depends_on.into_iter().map(|(t, _)| t).collect(),
                env,
                secrets,
                allow_failure: d.boolean(f.get("allow_failure")).unwrap_or(false),
                container: build_container(d, &f, &what).map(Box::new),
            },
        );
    }
    for (task, list) in &deps {
        for (dep, loc) in list {
            if !entries.contains_key(dep.as_str()) {
                d.err(
                    *loc,
                    format!("missing task {dep:?} referenced in depends_on of task {task:?}"),
                );
            }
        }
    }
    let graph = deps
        .iter()
        .map(|(t, list)| (t.clone(), list.iter().map(|(x, _)| x.clone()).collect()))
        .collect();
    for cycle in find_cycles(&graph) {
        if let Some(te) = cycle.first().and_then(|t| entries.get(t.as_str())) {
            d.err(te.key, format!("dependency cycle: {}", cycle.join(" -> ")));
        }
    }
    out
}

/// The cycles of a directed graph, each as a path that starts and ends at the same node
/// (`[a, b, a]`). Edges to unknown nodes are ignored. Deterministic: nodes and edges are visited
/// in order.
fn find_cycles(graph: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<&'g str, Mark>,
        stack: &mut Vec<&'g str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(node, Mark::Active);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied() {
                Some(Mark::New) => visit(next, graph, marks, stack, cycles),
                Some(Mark::Active) => {
                    if let Some(start) = stack.iter().position(|n| *n == next.as_str()) {
                        let mut cycle: Vec<String> =
                            stack[start..].iter().map(|s| (*s).to_owned()).collect();
                        cycle.push(next.clone());
                        cycles.push(cycle);
                    }
                }
                Some(Mark::Done) | None => {}
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
    }
    let mut marks: BTreeMap<&str, Mark> = graph.keys().map(|k| (k.as_str(), Mark::New)).collect();
    let mut cycles = Vec::new();
    for node in graph.keys() {
        if marks.get(node.as_str()) == Some(&Mark::New) {
            visit(node, graph, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

fn cross_check(d: &mut Diags<'_>, config: &Config, refs: &Refs) {
    for (_, trigger, loc) in &refs.after {
        if !refs.task_keys.contains_key(trigger) {
            d.err(*loc, format!("unknown task {trigger:?} in triggered_by"));
        }
    }
    let mut chain: BTreeMap<String, Vec<String>> = refs
        .task_keys
        .keys()
        .map(|k| (k.clone(), Vec::new()))
        .collect();
    for (task, trigger, _) in &refs.after {
        if let Some(list) = chain.get_mut(task) {
            list.push(trigger.clone());
        }
    }
    for cycle in find_cycles(&chain) {
        if let Some(loc) = cycle.first().and_then(|t| refs.task_keys.get(t)) {
            d.err(*loc, format!("chaining cycle: {}", cycle.join(" -> ")));
        }
    }

    let served = served_queues(config, |_| true);
    for (queue, loc) in &refs.queues {
        if !served.contains(queue.as_str()) {
            d.err(*loc, format!("no worker serves queue {queue:?}"));
        }
    }

    // Container jobs run on the server's engine (local workers) or on an agent's: a container
    // task whose queues only SSH workers serve would never run.
    let containers = served_queues(config, |w| w.host.is_none());
    let mut check = |what: String, queues: &[String], loc: Option<&Loc>| {
        let queues: Vec<&String> = queues
            .iter()
            .filter(|q| served.contains(q.as_str()))
            .collect();
        if let Some(loc) = loc
            && !queues.is_empty()
            && !queues.iter().any(|q| containers.contains(q.as_str()))
        {
            let names: Vec<String> = queues.iter().map(|q| format!("{q:?}")).collect();
            d.err(
                *loc,
                format!(
                    "{what} runs in a container (image:/build:), but only SSH workers serve its queue{} {}, and they run plain scripts (hint: serve the queue with a local worker, i.e. one without host:, or list it in server.agent_queues)",
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", ")
                ),
            );
        }
    };
    for t in config.tasks.values().filter(|t| t.container.is_some()) {
        check(
            format!("task {:?}", t.name),
            &t.queues,
            refs.task_keys.get(&t.name),
        );
    }
    for p in config.pipelines.values() {
        for t in p.tasks.values().filter(|t| t.container.is_some()) {
            check(
                format!("task {:?} of pipeline {:?}", t.name, p.name),
                &p.queues,
                refs.pipeline_keys.get(&p.name),
            );
        }
    }
}
