//! Unit and property tests of the scheduling rules.

use super::*;
use chrono::TimeZone;
use proptest::prelude::*;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn run(id: i64, active: bool) -> OpenRun {
    OpenRun {
        id,
        active,
        partition: None,
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
            replaces: None
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
        Admit::Queue { replaces: None, .. }
    ));
    let open = vec![run(1, true), run(2, false), run(3, false)];
    match admit("x", &p, &open, None, None, t(0)) {
        Admit::Skip { reason } => assert!(reason.contains("wait list of `x` is full (2 of 2")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn replace_replaces_the_newest_waiting_run() {
    let p = policy(QueuePolicy::Replace { limit: Some(1) });
    let open = vec![run(1, true), run(2, false)];
    assert_eq!(
        admit("x", &p, &open, None, None, t(0)),
        Admit::Queue {
            not_before: None,
            replaces: Some(2)
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
        },
    ];
    assert_eq!(
        admit("x", &p, &open, None, Some("b"), t(0)),
        Admit::Queue {
            not_before: None,
            replaces: None
        }
    );
    assert_eq!(
        admit("x", &p, &open, None, Some("a"), t(0)),
        Admit::Queue {
            not_before: None,
            replaces: Some(2)
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
            replaces: None
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
    }
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
                Admit::Queue { replaces, .. } => {
                    if let Some(r) = replaces {
                        prop_assert!(replace);
                        let pos = open.iter().position(|o| o.id == r).unwrap();
                        prop_assert!(!open[pos].active);
                        open.remove(pos);
                    }
                    let active = open.iter().filter(|o| o.active).count() < conc as usize;
                    open.push(OpenRun { id: i, active, partition: None });
                }
                Admit::Skip { .. } => {}
            }
            prop_assert!(open.len() <= (conc + limit) as usize);
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
    assert_eq!(chain_targets(&config.tasks, "build"), vec!["test"]);
    assert_eq!(chain_targets(&config.tasks, "test"), vec!["docs"]);
    assert!(chain_targets(&config.tasks, "docs").is_empty());
}
