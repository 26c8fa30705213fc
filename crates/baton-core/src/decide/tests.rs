//! Unit and property tests of the scheduling rules.

use super::*;
use crate::run::Status;
use chrono::TimeZone;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn run(id: i64, active: bool) -> OpenRun {
    OpenRun {
        id,
        active,
        partition: None,
        not_before: None,
    }
}

/// A run waiting out its start_delay until `t(until)`.
fn delayed(id: i64, until: i64, partition: Option<&str>) -> OpenRun {
    OpenRun {
        id,
        active: false,
        partition: partition.map(str::to_owned),
        not_before: Some(t(until)),
    }
}

fn policy(queue: QueuePolicy) -> Admission {
    Admission {
        concurrency: 1,
        queue,
        debounce: None,
        start_delay: None,
    }
}

#[test]
fn skip_when_a_run_is_already_running() {
    let p = policy(QueuePolicy::Skip);
    assert_eq!(
        admit("deploy", &p, &[], None, None, t(0)),
        Admit::Queue {
            not_before: None,
            displaces: None
        }
    );
    match admit("deploy", &p, &[run(41, true)], None, None, t(0)) {
        Admit::Skip { reason } => {
            assert_eq!(
                reason,
                "skipped: a run of `deploy` is already running (run 41)"
            )
        }
        other => panic!("expected skip, got {other:?}"),
    }
}

#[test]
fn debounce_skips_within_window_after_last_start() {
    let mut p = policy(QueuePolicy::Skip);
    p.debounce = Some(Duration::from_secs(60));
    assert!(matches!(
        admit("x", &p, &[], Some(t(0)), None, t(59)),
        Admit::Skip { .. }
    ));
    assert!(matches!(
        admit("x", &p, &[], Some(t(0)), None, t(60)),
        Admit::Queue { .. }
    ));
}

#[test]
fn append_queues_until_the_wait_list_is_full() {
    let p = policy(QueuePolicy::Append { limit: Some(2) });
    let open = vec![run(1, true), run(2, false)];
    assert!(matches!(
        admit("x", &p, &open, None, None, t(0)),
        Admit::Queue {
            displaces: None,
            ..
        }
    ));
    let open = vec![run(1, true), run(2, false), run(3, false)];
    assert_eq!(
        admit("x", &p, &open, None, None, t(0)),
        Admit::Refuse {
            reason: "the wait list of `x` is full (2 of 2 waiting); a run of `x` is already running (run 1)".into()
        }
    );
}

#[test]
fn replace_replaces_the_newest_waiting_run() {
    let p = policy(QueuePolicy::Replace { limit: Some(1) });
    let open = vec![run(1, true), run(2, false)];
    assert_eq!(
        admit("x", &p, &open, None, None, t(0)),
        Admit::Queue {
            not_before: None,
            displaces: Some(Displace::Replace(2))
        }
    );
}

#[test]
fn partitioned_replace_counts_per_partition() {
    let p = policy(QueuePolicy::PartitionedReplace { limit: 1 });
    let open = vec![
        run(1, true),
        OpenRun {
            id: 2,
            active: false,
            partition: Some("a".into()),
            not_before: None,
        },
    ];
    assert_eq!(
        admit("x", &p, &open, None, Some("b"), t(0)),
        Admit::Queue {
            not_before: None,
            displaces: None
        }
    );
    assert_eq!(
        admit("x", &p, &open, None, Some("a"), t(0)),
        Admit::Queue {
            not_before: None,
            displaces: Some(Displace::Replace(2))
        }
    );
}

#[test]
fn start_delay_sets_not_before() {
    let mut p = policy(QueuePolicy::Append { limit: None });
    p.start_delay = Some(Duration::from_secs(15));
    assert_eq!(
        admit("x", &p, &[], None, None, t(0)),
        Admit::Queue {
            not_before: Some(t(15)),
            displaces: None
        }
    );
}

fn qj(id: i64, queue: &str, priority: i64, age: i64) -> QueuedJob {
    QueuedJob {
        job_id: id,
        run_id: id,
        queues: vec![queue.into()],
        priority,
        enqueued_at: t(-age),
        container: false,
    }
}

fn w(name: &str, queue: &str, busy: bool) -> WorkerView {
    WorkerView {
        name: name.into(),
        queues: vec![queue.into()],
        busy,
        containers: true,
    }
}

#[test]
fn container_jobs_go_only_to_workers_that_run_containers() {
    let ssh = WorkerView {
        containers: false,
        ..w("ssh1", "default", false)
    };
    let boxed = QueuedJob {
        container: true,
        ..qj(1, "default", 0, 50)
    };
    let plain = qj(2, "default", 0, 10);
    // The older container job skips the SSH worker; the plain job after it takes it.
    let got = dispatch(
        &[boxed.clone(), plain.clone()],
        &[ssh.clone(), w("local", "default", true)],
    );
    assert_eq!(got, vec![(2, "ssh1".to_string())]);
    assert_eq!(
        wait_reason(&boxed, std::slice::from_ref(&ssh)),
        "queued: no worker of `default` runs containers (SSH workers run plain scripts; use a local worker or an agent)"
    );
    assert_eq!(
        wait_reason(&boxed, &[ssh.clone(), w("local", "default", true)]),
        "queued: all 1 worker of `default` busy"
    );
    let got = dispatch(&[boxed], &[ssh, w("local", "default", false)]);
    assert_eq!(got, vec![(1, "local".to_string())]);
}

#[test]
fn dispatch_prefers_priority_then_age() {
    let jobs = vec![
        qj(1, "default", 0, 10),
        qj(2, "default", 100, 0),
        qj(3, "default", 0, 50),
    ];
    let workers = vec![w("a", "default", false), w("b", "default", false)];
    let got = dispatch(&jobs, &workers);
    assert_eq!(got, vec![(2, "a".to_string()), (3, "b".to_string())]);
}

#[test]
fn dispatch_respects_queues_and_busy_workers() {
    let jobs = vec![qj(1, "gpu", 0, 10), qj(2, "default", 0, 0)];
    let workers = vec![w("a", "default", true), w("b", "default", false)];
    assert_eq!(dispatch(&jobs, &workers), vec![(2, "b".to_string())]);
    assert_eq!(
        wait_reason(&jobs[0], &workers),
        "queued: no worker serves queue `gpu`"
    );
    let all_busy = vec![w("a", "default", true), w("b", "default", true)];
    assert_eq!(
        wait_reason(&jobs[1], &all_busy),
        "queued: all 2 workers of `default` busy"
    );
}

fn dj(name: &str, deps: &[&str], status: Status) -> DagJob {
    DagJob {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        status,
        allow_failure: false,
        cached: false,
    }
}

#[test]
fn a_cache_hit_counts_as_a_success_for_its_dependents() {
    let mut hit = dj("build", &[], Status::Skipped);
    hit.cached = true;
    let jobs = vec![hit, dj("test", &["build"], Status::Queued)];
    let step = dag_step(&jobs, false);
    assert!(step.ready.contains("test"), "{step:?}");
    // A skip for any other reason still skips its dependents.
    let jobs = vec![
        dj("build", &[], Status::Skipped),
        dj("test", &["build"], Status::Queued),
    ];
    assert!(dag_step(&jobs, false).skip.contains_key("test"));
}

#[test]
fn dag_runs_in_dependency_order() {
    let jobs = vec![
        dj("lint", &[], Status::Queued),
        dj("test", &[], Status::Queued),
        dj("build", &["lint", "test"], Status::Queued),
    ];
    let step = dag_step(&jobs, false);
    assert_eq!(
        step.ready.iter().cloned().collect::<Vec<_>>(),
        vec!["lint", "test"]
    );
    let jobs = vec![
        dj("lint", &[], Status::Success),
        dj("test", &[], Status::Running),
        dj("build", &["lint", "test"], Status::Queued),
    ];
    assert!(dag_step(&jobs, false).ready.is_empty());
    assert_eq!(
        dag_wait_reason(&jobs[2], &jobs).unwrap(),
        "queued: waiting for `test`"
    );
}

#[test]
fn dag_fail_fast_cancels_the_rest() {
    let jobs = vec![
        dj("a", &[], Status::Failed),
        dj("b", &[], Status::Running),
        dj("c", &["a"], Status::Queued),
    ];
    let step = dag_step(&jobs, false);
    assert_eq!(step.cancel.len(), 2);
    assert!(step.ready.is_empty());
}

#[test]
fn dag_continue_skips_only_dependants() {
    let jobs = vec![
        dj("a", &[], Status::Failed),
        dj("b", &[], Status::Queued),
        dj("c", &["a"], Status::Queued),
        dj("d", &["c"], Status::Queued),
    ];
    let step = dag_step(&jobs, true);
    assert_eq!(step.ready.iter().cloned().collect::<Vec<_>>(), vec!["b"]);
    assert_eq!(
        step.skip.keys().cloned().collect::<Vec<_>>(),
        vec!["c", "d"]
    );
    assert!(step.cancel.is_empty());
}

#[test]
fn dag_allow_failure_lets_dependants_run() {
    let mut a = dj("a", &[], Status::Failed);
    a.allow_failure = true;
    let jobs = vec![a, dj("b", &["a"], Status::Queued)];
    let step = dag_step(&jobs, false);
    assert!(step.cancel.is_empty());
    assert!(step.ready.contains("b"));
}

proptest! {
    /// Dispatch never gives a worker two jobs, never uses a busy worker, and only matches
    /// queues the worker serves; it places as many jobs as a greedy match can.
    #[test]
    fn dispatch_is_sound(
        jobs in prop::collection::vec((0usize..3, -50i64..50, 0i64..100, any::<bool>()), 0..20),
        workers in prop::collection::vec((0usize..3, any::<bool>(), any::<bool>()), 0..8),
    ) {
        let queues = ["default", "gpu", "arm64"];
        let jobs: Vec<QueuedJob> = jobs.iter().enumerate()
            .map(|(i, (q, p, age, container))| QueuedJob {
                container: *container,
                ..qj(i as i64, queues[*q], *p, *age)
            }).collect();
        let workers: Vec<WorkerView> = workers.iter().enumerate()
            .map(|(i, (q, busy, containers))| WorkerView {
                containers: *containers,
                ..w(&format!("w{i}"), queues[*q], *busy)
            }).collect();
        let got = dispatch(&jobs, &workers);
        let mut used = std::collections::HashSet::new();
        for (job, worker) in &got {
            prop_assert!(used.insert(worker.clone()), "worker used twice");
            let wv = workers.iter().find(|x| &x.name == worker).unwrap();
            prop_assert!(!wv.busy);
            let jv = jobs.iter().find(|x| x.job_id == *job).unwrap();
            prop_assert!(wv.queues.iter().any(|q| jv.queues.contains(q)));
            prop_assert!(wv.containers || !jv.container, "a container job on a worker without containers");
        }
        // No free worker stays idle while a job it could serve waits.
        for wv in workers.iter().filter(|x| !x.busy && !used.contains(&x.name)) {
            for jv in jobs.iter().filter(|j| !got.iter().any(|(id, _)| *id == j.job_id)) {
                prop_assert!(
                    !wv.queues.iter().any(|q| jv.queues.contains(q)) || (jv.container && !wv.containers)
                );
            }
        }
    }

    /// Among jobs of one queue, dispatch picks in (age - priority seconds) order.
    #[test]
    fn dispatch_orders_by_priority_seconds(
        jobs in prop::collection::vec((-50i64..50, 0i64..100), 1..15),
        free in 1usize..5,
    ) {
        let jobs: Vec<QueuedJob> = jobs.iter().enumerate()
            .map(|(i, (p, age))| qj(i as i64, "default", *p, *age)).collect();
        let workers: Vec<WorkerView> = (0..free).map(|i| w(&format!("w{i}"), "default", false)).collect();
        let got: Vec<i64> = dispatch(&jobs, &workers).into_iter().map(|(j, _)| j).collect();
        let mut expected = jobs.clone();
        expected.sort_by_key(|j| (j.enqueued_at.timestamp_millis() - j.priority * 1000, j.job_id));
        let expected: Vec<i64> = expected.iter().take(free).map(|j| j.job_id).collect();
        prop_assert_eq!(got, expected);
    }

    /// Admission never lets more than concurrency + limit runs be open under append, and a
    /// replace never grows the wait list.
    #[test]
    fn wait_list_bounds_hold(limit in 0u32..4, conc in 1u32..3, triggers in 1usize..20, replace in any::<bool>()) {
        let p = Admission {
            concurrency: conc,
            queue: if replace { QueuePolicy::Replace { limit: Some(limit) } } else { QueuePolicy::Append { limit: Some(limit) } },
            debounce: None,
            start_delay: None,
        };
        let mut open: Vec<OpenRun> = Vec::new();
        for i in 0..triggers as i64 {
            match admit("x", &p, &open, None, None, t(i)) {
                Admit::Queue { displaces, .. } => {
                    if let Some(d) = displaces {
                        let Displace::Replace(r) = d else {
                            return Err(TestCaseError::fail("supersede under a wait list"));
                        };
                        prop_assert!(replace);
                        let pos = open.iter().position(|o| o.id == r).unwrap();
                        prop_assert!(!open[pos].active);
                        open.remove(pos);
                    }
                    let active = open.iter().filter(|o| o.active).count() < conc as usize;
                    open.push(OpenRun { id: i, active, partition: None, not_before: None });
                }
                Admit::Refuse { .. } => prop_assert!(!replace || limit == 0),
                Admit::Skip { .. } => return Err(TestCaseError::fail("a wait list skips nothing")),
            }
            prop_assert!(open.len() <= (conc + limit) as usize);
        }
    }

    /// With start delays, time passing, runs starting and ending: after every admission the
    /// wait list (delayed runs, and waiting runs beyond the free slots) holds at most `limit`
    /// runs, a displaced run never had started, replace never refuses a non-zero limit, and
    /// the default policy never leaves two runs queued beyond the slots.
    #[test]
    fn wait_list_bounds_hold_with_delays(
        limit in 0u32..3,
        conc in 1u32..3,
        delay in prop::sample::select(vec![0u64, 1500, 3000]),
        strategy in 0usize..3,
        steps in prop::collection::vec((0i64..3, any::<bool>(), any::<bool>()), 1..25),
    ) {
        let queue = match strategy {
            0 => QueuePolicy::Append { limit: Some(limit) },
            1 => QueuePolicy::Replace { limit: Some(limit) },
            _ => QueuePolicy::Skip,
        };
        let p = Admission {
            concurrency: conc,
            queue,
            debounce: None,
            start_delay: Some(Duration::from_millis(delay)),
        };
        let mut open: Vec<OpenRun> = Vec::new();
        let mut now = t(0);
        for (i, (advance, start, end)) in steps.into_iter().enumerate() {
            now += chrono::Duration::seconds(advance);
            // Runs whose delay is over start, oldest first, while slots are free.
            if start {
                let mut slots = (conc as usize).saturating_sub(open.iter().filter(|r| r.active).count());
                for r in open.iter_mut().filter(|r| !r.active) {
                    if slots > 0 && r.not_before.is_none_or(|t| t <= now) {
                        r.active = true;
                        slots -= 1;
                    }
                }
            }
            if end && let Some(pos) = open.iter().position(|r| r.active) {
                open.remove(pos);
            }
            let id = i as i64;
            match admit("x", &p, &open, None, None, now) {
                Admit::Queue { not_before, displaces } => {
                    match displaces {
                        Some(Displace::Replace(_)) => prop_assert_eq!(strategy, 1),
                        Some(Displace::Supersede(_)) => prop_assert_eq!(strategy, 2),
                        None => {}
                    }
                    if let Some(Displace::Replace(old) | Displace::Supersede(old)) = displaces {
                        let pos = open.iter().position(|o| o.id == old).unwrap();
                        prop_assert!(!open[pos].active, "displaced a started run");
                        open.remove(pos);
                    }
                    open.push(OpenRun { id, active: false, partition: None, not_before });
                }
                Admit::Refuse { .. } => prop_assert!(strategy == 0 || limit == 0),
                Admit::Skip { .. } => prop_assert_eq!(strategy, 2),
            }
            let active = open.iter().filter(|r| r.active).count();
            let mut free = (conc as usize).saturating_sub(active);
            let mut waiting = 0;
            for r in open.iter().filter(|r| !r.active) {
                if r.not_before.is_none_or(|t| t <= now) && free > 0 {
                    free -= 1;
                } else {
                    waiting += 1;
                }
            }
            if strategy == 2 {
                // The default keeps no wait list: every open run holds a slot.
                prop_assert!(open.len() <= conc as usize, "{open:?}");
            } else {
                prop_assert!(waiting <= limit as usize, "{waiting} waiting over {limit}: {open:?}");
            }
        }
    }

    /// In a DAG, a job is ready only when all its dependencies succeeded.
    #[test]
    fn dag_ready_implies_deps_succeeded(statuses in prop::collection::vec(0usize..4, 6)) {
        let st = [Status::Queued, Status::Running, Status::Success, Status::Failed];
        let names = ["a", "b", "c", "d", "e", "f"];
        let jobs: Vec<DagJob> = (0..6).map(|i| {
            let deps: Vec<&str> = names[..i].iter().copied().filter(|_| i % 2 == 0).collect();
            dj(names[i], &deps, st[statuses[i]])
        }).collect();
        let step = dag_step(&jobs, true);
        for r in &step.ready {
            let j = jobs.iter().find(|j| &j.name == r).unwrap();
            prop_assert_eq!(j.status, Status::Queued);
            for d in &j.depends_on {
                prop_assert_eq!(jobs.iter().find(|x| &x.name == d).unwrap().status, Status::Success);
            }
            prop_assert!(!step.skip.contains_key(r));
        }
    }
}

#[test]
fn chaining_follows_triggered_by_of_enabled_tasks() {
    let config = crate::config::load_str(
        std::path::Path::new("c.yaml"),
        "tasks:\n  build: {command: make}\n  test: {command: make test, triggered_by: [{task: build}]}\n  deploy: {command: deploy, triggered_by: [{task: build}], enabled: false}\n  docs: {command: docs, triggered_by: [{task: test}]}\n",
    )
    .expect("valid config");
    let none = BTreeMap::new();
    assert_eq!(chain_targets(&config.tasks, "build", &none), vec!["test"]);
    assert_eq!(chain_targets(&config.tasks, "test", &none), vec!["docs"]);
    assert!(chain_targets(&config.tasks, "docs", &none).is_empty());
}

/// py4CI: a task listed after several tasks runs when one of them succeeds and every listed
/// task's latest run is a success.
#[test]
fn chaining_waits_for_every_listed_task() {
    let config = crate::config::load_str(
        std::path::Path::new("c.yaml"),
        "tasks:\n  lint: {command: x}\n  test: {command: x}\n  deploy: {command: x, triggered_by: [{task: lint}, {task: test}]}\n",
    )
    .expect("valid config");
    let latest = |pairs: &[(&str, Status)]| -> BTreeMap<String, Status> {
        pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    };
    // test never ran: lint's success alone does not deploy.
    assert!(chain_targets(&config.tasks, "lint", &latest(&[("lint", Status::Success)])).is_empty());
    // test's latest run failed.
    let failed = latest(&[("lint", Status::Success), ("test", Status::Failed)]);
    assert!(chain_targets(&config.tasks, "lint", &failed).is_empty());
    // Both succeeded last: either one's success deploys.
    let both = latest(&[("lint", Status::Success), ("test", Status::Success)]);
    assert_eq!(chain_targets(&config.tasks, "lint", &both), vec!["deploy"]);
    assert_eq!(chain_targets(&config.tasks, "test", &both), vec!["deploy"]);
    // The run that just succeeded counts whatever the map says about it.
    let stale = latest(&[("lint", Status::Failed), ("test", Status::Success)]);
    assert_eq!(chain_targets(&config.tasks, "lint", &stale), vec!["deploy"]);
}

fn prunner_policy(queue: QueuePolicy, start_delay_ms: u64) -> Admission {
    Admission {
        concurrency: 1,
        queue,
        debounce: None,
        start_delay: Some(Duration::from_millis(start_delay_ms)),
    }
}

/// prunner: runs waiting out their start_delay are on the wait list, so `replace` replaces
/// them (prunner's TestPipelineRunner_ScheduleAsync_WithStartDelayNoQueueAndReplace…).
#[test]
fn start_delay_runs_are_on_the_wait_list() {
    let p = prunner_policy(QueuePolicy::Replace { limit: Some(1) }, 1000);
    assert_eq!(
        admit("x", &p, &[], None, None, t(0)),
        Admit::Queue {
            not_before: Some(t(1)),
            displaces: None
        }
    );
    assert_eq!(
        admit("x", &p, &[delayed(1, 1, None)], None, None, t(0)),
        Admit::Queue {
            not_before: Some(t(1)),
            displaces: Some(Displace::Replace(1))
        }
    );
    // Limit 2: the second waits too, the third replaces the second.
    let p2 = prunner_policy(QueuePolicy::Replace { limit: Some(2) }, 1000);
    assert_eq!(
        admit("x", &p2, &[delayed(1, 1, None)], None, None, t(0)),
        Admit::Queue {
            not_before: Some(t(1)),
            displaces: None
        }
    );
    assert_eq!(
        admit(
            "x",
            &p2,
            &[delayed(1, 1, None), delayed(2, 1, None)],
            None,
            None,
            t(0)
        ),
        Admit::Queue {
            not_before: Some(t(1)),
            displaces: Some(Displace::Replace(2))
        }
    );
    // Once its delay is over and it runs, it is off the wait list: the next one waits.
    assert_eq!(
        admit("x", &p, &[run(1, true)], None, None, t(2)),
        Admit::Queue {
            not_before: Some(t(3)),
            displaces: None
        }
    );
    // Append with the delayed run on a wait list of 1: refused.
    let a = prunner_policy(QueuePolicy::Append { limit: Some(1) }, 1000);
    assert!(matches!(
        admit("x", &a, &[delayed(1, 1, None)], None, None, t(0)),
        Admit::Refuse { .. }
    ));
}

/// prunner's TestPipelineRunner_ScheduleAsync_PartitionedReplaceWorksAsExpected: a(1) b(2)
/// c(1) d(2) all wait out their delay; e(2) replaces d; f(1) replaces c.
#[test]
fn partitioned_replace_counts_delayed_runs() {
    let p = prunner_policy(QueuePolicy::PartitionedReplace { limit: 2 }, 50);
    let mut open: Vec<OpenRun> = Vec::new();
    let mut canceled = Vec::new();
    for (id, part) in [(1, "1"), (2, "2"), (3, "1"), (4, "2"), (5, "2"), (6, "1")] {
        match admit("x", &p, &open, None, Some(part), t(0)) {
            Admit::Queue {
                not_before,
                displaces,
            } => {
                if let Some(Displace::Replace(old)) = displaces {
                    open.retain(|r| r.id != old);
                    canceled.push(old);
                }
                open.push(OpenRun {
                    not_before,
                    ..delayed(id, 0, Some(part))
                });
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(canceled, vec![4, 3]);
    assert_eq!(
        open.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2, 5, 6]
    );
}

/// prunner refuses a trigger that finds the wait list full (`append`) or that would have to
/// wait when `queue_limit` is 0 (`append` or `replace`); the reason gives the limit.
#[test]
fn full_wait_list_refuses() {
    let a0 = policy(QueuePolicy::Append { limit: Some(0) });
    let r0 = policy(QueuePolicy::Replace { limit: Some(0) });
    for p in [&a0, &r0] {
        // A free slot needs no wait list.
        assert!(matches!(
            admit("x", p, &[], None, None, t(0)),
            Admit::Queue { .. }
        ));
        assert_eq!(
            admit("x", p, &[run(7, true)], None, None, t(0)),
            Admit::Refuse {
                reason: "`x` keeps no wait list (limit 0); a run of `x` is already running (run 7)"
                    .into()
            }
        );
    }
    let a1 = policy(QueuePolicy::Append { limit: Some(1) });
    assert_eq!(
        admit("x", &a1, &[run(7, true), run(8, false)], None, None, t(0)),
        Admit::Refuse {
            reason: "the wait list of `x` is full (1 of 1 waiting); a run of `x` is already running (run 7)".into()
        }
    );
}

/// py4CI (Baton's default): a new trigger supersedes a run still queued; one that runs makes
/// it skip.
#[test]
fn a_new_trigger_supersedes_a_queued_run() {
    let p = policy(QueuePolicy::Skip);
    assert_eq!(
        admit("t", &p, &[run(3, false)], None, None, t(0)),
        Admit::Queue {
            not_before: None,
            displaces: Some(Displace::Supersede(3))
        }
    );
    assert!(matches!(
        admit("t", &p, &[run(3, true)], None, None, t(0)),
        Admit::Skip { .. }
    ));
    let p2 = Admission {
        concurrency: 2,
        ..p.clone()
    };
    assert_eq!(
        admit("t", &p2, &[run(3, true), run(4, false)], None, None, t(0)),
        Admit::Queue {
            not_before: None,
            displaces: Some(Displace::Supersede(4))
        }
    );
    assert!(matches!(
        admit("t", &p2, &[run(3, true)], None, None, t(0)),
        Admit::Queue {
            displaces: None,
            ..
        }
    ));
    // Debounce still skips first.
    let mut d = p.clone();
    d.debounce = Some(Duration::from_secs(60));
    assert!(matches!(
        admit("t", &d, &[run(3, false)], Some(t(0)), None, t(1)),
        Admit::Skip { .. }
    ));
}
