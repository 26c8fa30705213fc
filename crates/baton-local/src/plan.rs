//! What a local run runs: the repository's `.baton/` loaded as the server loads it, the
//! targets chosen (named, or what a push of the current branch starts, by `baton_core::on`),
//! and their jobs with the script and environment each gets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baton_core::config::{
    Config, ContainerDef, EnvValue, NetworkMode, PipelineDef, TaskDef, render_command,
};
use baton_core::on::{EventFact, EventFacts, On, PushTarget, matches};
use baton_exec::{ContainerSpec, Network};

use crate::LocalError;

/// The queue every task runs on unless it names others; the only one this machine serves.
const DEFAULT_QUEUE: &str = "default";

/// The code a local run builds.
#[derive(Debug, Clone)]
pub struct Code {
    /// The commit checked out for the jobs (for `--dirty`, a snapshot commit of the tree).
    pub commit: baton_git::Oid,
    /// What the run is stored against: the commit, or the snapshot's tree id when dirty.
    pub key: String,
    /// `HEAD` when the run started.
    pub head: baton_git::Oid,
    /// The snapshot's tree id (`--dirty` only).
    pub tree: Option<baton_git::Oid>,
    pub dirty: bool,
    pub branch: Option<String>,
    /// The repository's folder name and path (`BATON_REPO`, `BATON_REPO_URL`).
    pub repo_name: String,
    pub repo_path: String,
}

/// A task, or a pipeline's jobs, walked as one DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub target: String,
    pub pipeline: bool,
    pub continue_after_failure: bool,
    /// The pipeline's `on_error` script and environment, if it has one.
    pub on_error: Option<(String, Vec<(String, String)>)>,
}

/// One job to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedJob {
    /// Unique in the run: the task's name, or `pipeline/task`.
    pub key: String,
    /// Index into [`Plan::groups`].
    pub group: usize,
    /// The name the DAG knows (the task's name within its pipeline).
    pub name: String,
    pub depends_on: Vec<String>,
    pub allow_failure: bool,
    pub script: String,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub container: Option<ContainerSpec>,
    /// Start in a checkout of the code (`checkout:`, default yes).
    pub checkout: bool,
    /// Why this job cannot run here (it needs a server's worker or agent).
    pub server_only: Option<String>,
    /// `reports: {junit: [...]}`: the JUnit reports' globs in `out/` (empty: every `*.xml`).
    pub junit: Vec<String>,
    /// `cache:` and the definition its digest covers (`TaskDef::cache_definition`).
    pub cache: Option<(baton_core::config::CacheDef, String)>,
    /// `artifacts:`: files of `work/` kept with the job's `out/` when it ends (the server's
    /// rules, `baton_exec::keep`).
    pub artifacts: baton_core::config::Artifacts,
}

/// The targets of a run and their jobs, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub groups: Vec<Group>,
    pub jobs: Vec<PlannedJob>,
    /// How the targets were chosen: `push` (what a push starts) or `manual` (named).
    pub trigger: String,
    /// Why targets were left out (their `on:` does not match, disabled).
    pub notes: Vec<String>,
}

/// Loads `.baton/` files (`(path, bytes)`, as read at the commit) the way the server loads a
/// repository's config: no server secrets, every mistake as `file:line:col: message`.
pub fn load(files: &[(String, Vec<u8>)], commit: &str) -> Result<Config, LocalError> {
    let sources: Vec<(PathBuf, String)> = files
        .iter()
        .filter(|(p, _)| p.ends_with(".yml") || p.ends_with(".yaml"))
        .map(|(p, b)| (PathBuf::from(p), String::from_utf8_lossy(b).into_owned()))
        .collect();
    if sources.is_empty() {
        return Err(LocalError::NoConfig {
            commit: commit.to_owned(),
        });
    }
    let first = baton_core::config::load_repo_sources(&sources, &Config::default());
    let errors = match first {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    // Queues no machine of ours serves belong to a server's workers or agents: load again as a
    // server serving them would, so that their tasks are reported as server-only, not as errors.
    let queues: Vec<String> = errors
        .diagnostics
        .iter()
        .filter_map(|d| unserved_queue(&d.message))
        .collect();
    if queues.len() == errors.diagnostics.len() {
        let mut server = Config::default();
        server.server.agent_queues = queues;
        if let Ok(config) = baton_core::config::load_repo_sources(&sources, &server) {
            return Ok(config);
        }
    }
    Err(LocalError::Config {
        commit: commit.to_owned(),
        errors: errors.to_string(),
    })
}

/// The queue of a `no worker serves queue "NAME"` error.
fn unserved_queue(message: &str) -> Option<String> {
    let name = message.strip_prefix("no worker serves queue ")?;
    serde_json::from_str::<String>(name.trim()).ok()
}

/// The targets to run: `names` (tasks or pipelines), or when none, every one whose `on:` a
/// push of `branch` matches (a detached `HEAD` counts as a hand trigger).
pub fn select(config: &Config, names: &[String], code: &Code) -> Result<Plan, LocalError> {
    let mut plan = Plan::default();
    if names.is_empty() {
        plan.trigger = "push".into();
        let facts = push_facts(code.branch.as_deref());
        let default = On::default();
        for (name, t) in &config.tasks {
            match matches(t.on.as_ref().unwrap_or(&default), &facts) {
                Ok(()) if t.enabled => add_task(&mut plan, name, t, code),
                Ok(()) => plan.notes.push(format!("{name}: disabled")),
                Err(why) => plan.notes.push(format!("{name}: {why}")),
            }
        }
        for (name, p) in &config.pipelines {
            match matches(p.on.as_ref().unwrap_or(&default), &facts) {
                Ok(()) if p.enabled => add_pipeline(&mut plan, name, p, code),
                Ok(()) => plan.notes.push(format!("{name}: disabled")),
                Err(why) => plan.notes.push(format!("{name}: {why}")),
            }
        }
        return Ok(plan);
    }
    plan.trigger = "manual".into();
    for name in names {
        if let Some(t) = config.tasks.get(name) {
            add_task(&mut plan, name, t, code);
        } else if let Some(p) = config.pipelines.get(name) {
            add_pipeline(&mut plan, name, p, code);
        } else {
            let known: Vec<&str> = config
                .tasks
                .keys()
                .chain(config.pipelines.keys())
                .map(String::as_str)
                .collect();
            return Err(LocalError::UnknownTarget {
                name: name.clone(),
                known: if known.is_empty() {
                    "nothing".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    Ok(plan)
}

fn push_facts(branch: Option<&str>) -> EventFacts {
    let event = match branch {
        Some(b) => EventFact::Push {
            target: PushTarget::Branch(b.to_owned()),
            deleted: false,
            changed_paths: None,
        },
        None => EventFact::Manual,
    };
    EventFacts { repo: None, event }
}

fn add_task(plan: &mut Plan, name: &str, t: &TaskDef, code: &Code) {
    let group = plan.groups.len();
    plan.groups.push(Group {
        target: name.to_owned(),
        pipeline: false,
        continue_after_failure: false,
        on_error: None,
    });
    let (script, _) = render_command(&t.command, &t.variables);
    let mut env = base_env(code, &plan.trigger, name);
    env.extend(plain(&t.env));
    plan.jobs.push(PlannedJob {
        key: name.to_owned(),
        group,
        name: name.to_owned(),
        depends_on: Vec::new(),
        allow_failure: false,
        script,
        env,
        timeout: t.timeout,
        container: t.container.as_deref().map(container),
        checkout: t.checkout,
        server_only: server_only(name, &t.queues),
        junit: t.reports.junit.clone(),
        cache: t.cache_definition(name),
        artifacts: t.artifacts.clone(),
    });
}

fn add_pipeline(plan: &mut Plan, name: &str, p: &PipelineDef, code: &Code) {
    let group = plan.groups.len();
    let on_error = p.on_error.as_ref().map(|o| {
        let mut env = plain(&p.env);
        env.extend(plain(&o.env));
        (o.script.clone(), env)
    });
    plan.groups.push(Group {
        target: name.to_owned(),
        pipeline: true,
        continue_after_failure: p.continue_running_tasks_after_failure,
        on_error,
    });
    for (task_name, t) in &p.tasks {
        let key = format!("{name}/{task_name}");
        let mut env = base_env(code, &plan.trigger, &key);
        env.extend(plain(&p.env));
        env.extend(plain(&t.env));
        plan.jobs.push(PlannedJob {
            key,
            group,
            name: task_name.clone(),
            depends_on: t.depends_on.clone(),
            allow_failure: t.allow_failure,
            script: t.script.clone(),
            env,
            timeout: None,
            container: t.container.as_deref().map(container),
            checkout: p.checkout,
            server_only: server_only(name, &p.queues),
            junit: t.reports.junit.clone(),
            cache: t.cache_definition(),
            artifacts: t.artifacts.clone(),
        });
    }
}

/// The environment every local job gets, like a repository job on the server.
pub(crate) fn base_env(code: &Code, trigger: &str, job: &str) -> Vec<(String, String)> {
    let branch = code.branch.clone().unwrap_or_default();
    let git_ref = code
        .branch
        .as_ref()
        .map(|b| format!("refs/heads/{b}"))
        .unwrap_or_default();
    vec![
        ("CI".into(), "true".into()),
        ("BATON_LOCAL".into(), "true".into()),
        ("BATON_REPO".into(), code.repo_name.clone()),
        ("BATON_REPO_URL".into(), code.repo_path.clone()),
        ("BATON_COMMIT".into(), code.head.to_string()),
        ("BATON_REF".into(), git_ref),
        ("BATON_BRANCH".into(), branch),
        ("BATON_TAG".into(), String::new()),
        ("BATON_PR".into(), String::new()),
        ("BATON_EVENT".into(), trigger.to_owned()),
        ("BATON_DIRTY".into(), code.dirty.to_string()),
        ("BATON_JOB".into(), job.to_owned()),
        ("BATON_ATTEMPT".into(), "1".into()),
    ]
}

/// A repository's values are all plain text (`load_repo_sources` made them so).
fn plain(env: &BTreeMap<String, EnvValue>) -> Vec<(String, String)> {
    env.iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Plain(v) => Some((k.clone(), v.clone())),
            EnvValue::Secret { .. } => None,
        })
        .collect()
}

fn container(c: &ContainerDef) -> ContainerSpec {
    ContainerSpec {
        image: c.image.clone(),
        build: c.build.clone(),
        cpus: c.cpus,
        memory_bytes: c.memory_bytes,
        network: match c.network {
            NetworkMode::None => Network::None,
            NetworkMode::Bridge => Network::Bridge,
        },
    }
}

fn server_only(target: &str, queues: &[String]) -> Option<String> {
    let other: Vec<&str> = queues
        .iter()
        .map(String::as_str)
        .filter(|q| *q != DEFAULT_QUEUE)
        .collect();
    (!other.is_empty()).then(|| {
        format!(
            "skipped: {target} runs on queue {}, served by a Baton server's SSH workers or agents (a server feature); push and let the server run it",
            other.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(branch: Option<&str>) -> Code {
        let head = baton_git::Oid::parse(&"a".repeat(40)).unwrap();
        Code {
            commit: head.clone(),
            key: head.to_string(),
            head,
            tree: None,
            dirty: false,
            branch: branch.map(str::to_owned),
            repo_name: "app".into(),
            repo_path: "/src/app".into(),
        }
    }

    fn config(yaml: &str) -> Config {
        load(&[(".baton/ci.yaml".into(), yaml.as_bytes().to_vec())], "c").unwrap()
    }

    const YAML: &str = "tasks:\n  test:\n    command: make test\n  release:\n    command: make release\n    on: {push: {branches: [main]}}\npipelines:\n  ci:\n    tasks:\n      build: {script: [make]}\n      lint: {script: [make lint], depends_on: [build]}\n";

    #[test]
    fn a_push_of_the_branch_picks_what_its_on_filters_match() {
        let c = config(YAML);
        let plan = select(&c, &[], &code(Some("feature"))).unwrap();
        let keys: Vec<&str> = plan.jobs.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(keys, ["test", "ci/build", "ci/lint"]);
        assert!(plan.notes.iter().any(|n| n.starts_with("release: ")));
        let on_main = select(&c, &[], &code(Some("main"))).unwrap();
        assert_eq!(on_main.groups.len(), 3);
        assert_eq!(on_main.jobs[3].depends_on, ["build"]);
    }

    #[test]
    fn named_targets_run_whatever_their_filter_and_unknown_names_are_refused() {
        let c = config(YAML);
        let plan = select(&c, &["release".into()], &code(Some("x"))).unwrap();
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(plan.trigger, "manual");
        let err = select(&c, &["nope".into()], &code(None)).unwrap_err();
        assert!(err.to_string().contains("test, ci"), "{err}");
    }

    #[test]
    fn tasks_on_a_servers_queues_are_kept_and_marked_server_only() {
        let c = config("tasks:\n  gpu:\n    command: x\n    queues: [gpu]\n");
        let plan = select(&c, &[], &code(Some("main"))).unwrap();
        let why = plan.jobs[0].server_only.as_deref().unwrap();
        assert!(why.contains("queue gpu") && why.contains("server"), "{why}");
    }

    #[test]
    fn a_missing_or_broken_config_says_so() {
        assert!(matches!(load(&[], "c"), Err(LocalError::NoConfig { .. })));
        let bad = load(&[(".baton/x.yaml".into(), b"tasks: [".to_vec())], "c");
        assert!(matches!(bad, Err(LocalError::Config { .. })));
    }
}
