//! The `tasks` section: py4CI tasks with their commands, triggers, schedules and wait lists.

use std::collections::BTreeMap;

use super::Refs;
use super::args::{build_args, check_timed_args};
use super::cache::{build_cache, build_retention};
use super::container::build_container;
use super::diags::{Diags, Entry, Loc};
use super::reports::{build_artifacts, build_reports};
use crate::config::duration::SECONDS_UP;
use crate::config::model::{CronSchedule, EnvValue, RepoTrigger, TaskDef, WaitList, WaitStrategy};
use crate::config::node::Value;

const TASK_KEYS: &[&str] = &[
    "enabled",
    "description",
    "args",
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
    "on",
    "checkout",
    "reports",
    "artifacts",
    "cache",
    "retention",
    "pr_head",
    "cancel_superseded",
];

const SCHEDULE_KEYS: &[&str] = &["cron", "timezone"];
const WAIT_LIST_KEYS: &[&str] = &["size", "strategy"];
const TRIGGER_TASK_KEYS: &[&str] = &["task"];
const TRIGGER_REPO_KEYS: &[&str] = &["ssh_url", "branches"];

pub(super) fn build_task(
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
    let args = build_args(d, &f, &what);
    check_timed_args(d, &f, name, &args);

    Some(TaskDef {
        name: name.to_owned(),
        enabled: d.boolean(f.get("enabled")).unwrap_or(true),
        description: d.string(f.get("description")).unwrap_or_default(),
        args,
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
        on: d.on_filter(f.get("on")),
        checkout: d.boolean(f.get("checkout")).unwrap_or(true),
        reports: build_reports(d, &f, &what),
        artifacts: build_artifacts(d, &f, &what),
        cache: build_cache(d, &f, &what).map(Box::new),
        retention: build_retention(d, &f, &what).map(Box::new),
        pr_head: d.boolean(f.get("pr_head")).unwrap_or(false),
        cancel_superseded: d.boolean(f.get("cancel_superseded")),
    })
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
    for name in crate::config::template::command_variable_names(command) {
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
pub(crate) fn check_cron(cron: &str) -> Result<(), String> {
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
