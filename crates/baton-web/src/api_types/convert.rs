//! Explicit conversions from the store's rows, the scheduler's snapshot and the config into the
//! API's types: a field added to a row or a definition reaches clients only when added here.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_core::config::{self as cfg, EnvValue};
use baton_core::run as core;

use super::*;

macro_rules! same_enum {
    ($api:ident, $core:ty, $($v:ident),*) => {
        impl From<$core> for $api {
            fn from(v: $core) -> Self {
                match v { $(<$core>::$v => $api::$v),* }
            }
        }
        impl From<$api> for $core {
            fn from(v: $api) -> Self {
                match v { $($api::$v => <$core>::$v),* }
            }
        }
    };
}
same_enum!(
    Status,
    core::Status,
    Queued,
    Waiting,
    Started,
    Running,
    Success,
    Failed,
    Broken,
    Jammed,
    Skipped,
    Canceled
);
same_enum!(TargetKind, core::TargetKind, Task, Pipeline);
same_enum!(
    TriggerKind,
    core::TriggerKind,
    Cli,
    Api,
    Schedule,
    Chained,
    Webhook,
    Rerun,
    Poll,
    Local
);

impl From<baton_store::JobRow> for Job {
    fn from(j: baton_store::JobRow) -> Self {
        Job {
            id: j.id,
            run_id: j.run_id,
            name: j.name,
            status: j.status.into(),
            reason: j.reason,
            attempt: j.attempt,
            worker: j.worker,
            exit_code: j.exit_code,
            queued_at: j.queued_at,
            started_at: j.started_at,
            ended_at: j.ended_at,
        }
    }
}

impl From<baton_store::RunRow> for Run {
    fn from(r: baton_store::RunRow) -> Self {
        Run {
            id: r.id,
            kind: r.kind.into(),
            target: r.target,
            trigger: r.trigger.into(),
            args: r.args,
            tags: r.tags,
            status: r.status.into(),
            reason: r.reason,
            priority: r.priority,
            partition: r.partition,
            enqueued_at: r.enqueued_at,
            not_before: r.not_before,
            started_at: r.started_at,
            ended_at: r.ended_at,
            jobs: r.jobs.into_iter().map(Job::from).collect(),
            ancestors: r.ancestors,
            descendants: r.descendants,
            results: None,
            repo: r.repo.map(|c| RunCode {
                repo: c.repo,
                url: baton_forge::public_url(&c.url),
                commit: c.commit,
                git_ref: c.git_ref,
                branch: c.branch,
                tag: c.tag,
                pr: c.pr,
                pr_head: c.pr_head,
                pr_base: c.pr_base,
                pr_fork: c.pr_fork,
                event: c.event,
                delivery: c.delivery,
                author: c.author,
                subject: c.subject,
                ran_on: c.ran_on,
            }),
            statuses: Vec::new(),
        }
    }
}

impl From<baton_store::ReportRow> for StatusReport {
    fn from(r: baton_store::ReportRow) -> Self {
        let outcome = match r.outcome {
            baton_store::ReportOutcome::Pending if r.attempts > 0 => "retrying",
            o => o.as_str(),
        };
        StatusReport {
            context: r.context,
            state: r.state.as_str().to_owned(),
            outcome: outcome.to_owned(),
            attempts: r.attempts,
            last_error: r.last_error,
            sent_at: r.sent_at,
        }
    }
}

impl From<baton_sched::WorkerState> for Worker {
    fn from(w: baton_sched::WorkerState) -> Self {
        Worker {
            name: w.name,
            kind: w.kind.to_owned(),
            queues: w.queues,
            state: w.state.to_owned(),
            reason: w.reason,
            run_id: w.run_id,
            job_id: w.job_id,
            last_heartbeat: w.last_heartbeat,
        }
    }
}

impl From<baton_sched::QueueEntry> for QueueEntry {
    fn from(q: baton_sched::QueueEntry) -> Self {
        QueueEntry {
            run_id: q.run_id,
            job_id: q.job_id,
            target: q.target,
            job: q.job,
            priority: q.priority,
            enqueued_at: q.enqueued_at,
            reason: q.reason,
            waits_for: match q.waits_for {
                baton_sched::WaitsFor::Turn => "turn",
                baton_sched::WaitsFor::Dependencies => "dependencies",
                baton_sched::WaitsFor::Worker => "worker",
            }
            .to_owned(),
        }
    }
}

fn span(d: Option<Duration>) -> Option<Span> {
    d.map(|d| Span {
        secs: d.as_secs(),
        nanos: d.subsec_nanos(),
    })
}

impl From<&EnvValue> for Shown {
    fn from(v: &EnvValue) -> Self {
        Shown(v.plain().unwrap_or("***").to_owned())
    }
}

fn shown(m: &BTreeMap<String, EnvValue>) -> BTreeMap<String, Shown> {
    m.iter().map(|(k, v)| (k.clone(), Shown::from(v))).collect()
}

fn container(c: Option<&cfg::ContainerDef>) -> Option<Container> {
    c.map(|c| Container {
        image: c.image.clone(),
        build: c.build.as_ref().map(|p| p.to_string_lossy().into_owned()),
        cpus: c.cpus,
        memory_bytes: c.memory_bytes,
        network: match c.network {
            cfg::NetworkMode::None => NetworkMode::None,
            cfg::NetworkMode::Bridge => NetworkMode::Bridge,
        },
    })
}

fn arg_decls(args: &[cfg::ArgDef]) -> Vec<ArgDecl> {
    args.iter()
        .map(|a| ArgDecl {
            name: a.name.clone(),
            description: a.description.clone(),
            default: a.default.clone(),
            choices: a.choices.clone(),
            required: a.required,
        })
        .collect()
}

impl From<&cfg::TaskDef> for Task {
    fn from(t: &cfg::TaskDef) -> Self {
        Task {
            name: t.name.clone(),
            enabled: t.enabled,
            description: t.description.clone(),
            args: arg_decls(&t.args),
            queues: t.queues.clone(),
            tags: t.tags.clone(),
            period: span(t.period),
            schedule: t.schedule.as_ref().map(|s| CronSchedule {
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
            }),
            debounce: span(t.debounce),
            priority: t.priority,
            timeout: span(t.timeout),
            command: t.command.clone(),
            variables: shown(&t.variables),
            authorized_users: t.authorized_users.clone(),
            after_tasks: t.after_tasks.clone(),
            repo_triggers: t
                .repo_triggers
                .iter()
                .map(|r| RepoTrigger {
                    ssh_url: r.ssh_url.clone(),
                    branches: r.branches.clone(),
                })
                .collect(),
            env: shown(&t.env),
            secrets: t.secrets.clone(),
            concurrency: t.concurrency,
            wait_list: t.wait_list.map(|w| WaitList {
                size: w.size,
                strategy: match w.strategy {
                    cfg::WaitStrategy::Append => WaitStrategy::Append,
                    cfg::WaitStrategy::Replace => WaitStrategy::Replace,
                },
            }),
            retries: t.retries,
            container: container(t.container.as_deref()),
        }
    }
}

impl From<&cfg::PipelineDef> for Pipeline {
    fn from(p: &cfg::PipelineDef) -> Self {
        Pipeline {
            enabled: p.enabled,
            description: p.description.clone(),
            args: arg_decls(&p.args),
            tags: p.tags.clone(),
            name: p.name.clone(),
            concurrency: p.concurrency,
            queue_limit: p.queue_limit,
            queue_strategy: match p.queue_strategy {
                cfg::QueueStrategy::Append => QueueStrategy::Append,
                cfg::QueueStrategy::Replace => QueueStrategy::Replace,
                cfg::QueueStrategy::PartitionedReplace { partition_limit } => {
                    QueueStrategy::PartitionedReplace { partition_limit }
                }
            },
            start_delay: span(p.start_delay),
            continue_running_tasks_after_failure: p.continue_running_tasks_after_failure,
            on_error: p.on_error.as_ref().map(|o| OnError {
                script: o.script.clone(),
                env: shown(&o.env),
            }),
            retention_period: span(p.retention_period),
            retention_count: p.retention_count,
            env: shown(&p.env),
            queues: p.queues.clone(),
            authorized_users: p.authorized_users.clone(),
            tasks: p
                .tasks
                .iter()
                .map(|(k, t)| {
                    let task = PipelineTask {
                        name: t.name.clone(),
                        script: t.script.clone(),
                        depends_on: t.depends_on.clone(),
                        env: shown(&t.env),
                        secrets: t.secrets.clone(),
                        allow_failure: t.allow_failure,
                        container: container(t.container.as_deref()),
                    };
                    (k.clone(), task)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_enums_spell_like_the_core() {
        for s in core::Status::ALL {
            let api = Status::from(s);
            assert_eq!(
                serde_json::to_value(api).unwrap(),
                serde_json::to_value(s).unwrap()
            );
            assert_eq!(api.as_str(), s.as_str());
            assert_eq!(api.is_terminal(), s.is_terminal());
            assert_eq!(core::Status::from(api), s);
        }
        for k in [core::TargetKind::Task, core::TargetKind::Pipeline] {
            assert_eq!(
                serde_json::to_value(TargetKind::from(k)).unwrap(),
                serde_json::to_value(k).unwrap()
            );
        }
        for k in [
            "cli", "api", "schedule", "chained", "webhook", "rerun", "poll", "local",
        ] {
            let core: core::TriggerKind = k.parse().unwrap();
            assert_eq!(TriggerKind::from(core).as_str(), k);
            assert_eq!(serde_json::to_value(TriggerKind::from(core)).unwrap(), k);
        }
    }

    #[test]
    fn a_secret_env_value_shows_only_as_stars() {
        let secret = EnvValue::Secret {
            secret: "tasks.t.env.API_TOKEN".into(),
        };
        assert_eq!(Shown::from(&secret), Shown("***".into()));
        assert_eq!(Shown::from(&EnvValue::Plain("v".into())), Shown("v".into()));
    }
}
