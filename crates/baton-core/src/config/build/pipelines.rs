//! The `pipelines` section: prunner pipelines, their queueing settings and their task DAGs.

use std::collections::BTreeMap;

use super::Refs;
use super::args::build_args;
use super::cache::build_cache;
use super::checks::find_cycles;
use super::container::build_container;
use super::diags::{Diags, Entry, Fields, Loc};
use super::reports::{build_artifacts, build_reports};
use crate::config::duration::{MILLIS_UP, SECONDS_UP};
use crate::config::model::{OnError, PipelineDef, PipelineTask, QueueStrategy};

const PIPELINE_KEYS: &[&str] = &[
    "enabled",
    "description",
    "args",
    "tags",
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
    "on",
    "checkout",
    "pr_head",
    "cancel_superseded",
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
    "reports",
    "artifacts",
    "cache",
];

pub(super) fn build_pipeline(
    d: &mut Diags<'_>,
    e: Entry<'_>,
    refs: &mut Refs,
) -> Option<PipelineDef> {
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
    let queue_strategy = build_queue_strategy(d, e, &f);
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
        on: d.on_filter(f.get("on")),
        checkout: d.boolean(f.get("checkout")).unwrap_or(true),
        pr_head: d.boolean(f.get("pr_head")).unwrap_or(false),
        cancel_superseded: d.boolean(f.get("cancel_superseded")),
        name: name.to_owned(),
        enabled: d.boolean(f.get("enabled")).unwrap_or(true),
        description: d.string(f.get("description")).unwrap_or_default(),
        args: build_args(d, &f, &what),
        tags: d.plain_list(f.get("tags")),
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

/// `queue_strategy` with `queue_partition_limit` (and the `queue_limit` it excludes).
fn build_queue_strategy(d: &mut Diags<'_>, e: Entry<'_>, f: &Fields<'_>) -> QueueStrategy {
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
    queue_strategy
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
                reports: build_reports(d, &f, &what),
                artifacts: build_artifacts(d, &f, &what),
                cache: build_cache(d, &f, &what).map(Box::new),
            },
        );
    }
    for (task, list) in &deps {
        for (dep, loc) in list {
            if !entries.contains_key(dep.as_str()) {
                d.err(
                    *loc,
                    format!(
                        "missing task {dep:?} referenced in depends_on of task {task:?}{}",
                        super::diags::did_you_mean(dep, entries.keys().map(|k| &**k))
                    ),
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
