//! The actor with a real store (SQLite in a temporary directory): group commit and
//! supervision. Its only worker is an SSH worker without an executor, so it is down and
//! nothing is launched: these tests are about recording and answering, not running.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::run::{Status, TriggerKind};
use baton_exec::LocalExecutor;
use baton_store::Store;

use super::*;

const CONFIG: &str = r#"
workers:
  far:
    host: nobody@192.0.2.1
tasks:
  t:
    concurrency: 100
    command: echo hi
"#;

/// How long a test waits for anything before it fails.
const WAIT: Duration = Duration::from_secs(30);

async fn scheduler(dir: &std::path::Path, on_panic: OnActorPanic) -> SchedHandle {
    let config = baton_core::config::load_str(std::path::Path::new("baton.yaml"), CONFIG)
        .unwrap_or_else(|e| panic!("test config is invalid: {:?}", e.diagnostics));
    let store = Store::open(&dir.join("baton.db"))
        .await
        .expect("open store");
    start(SchedulerParts {
        config,
        store,
        data_dir: dir.to_path_buf(),
        executors: Executors {
            local: Arc::new(LocalExecutor::new("/bin/false".into(), vec![])),
            remote: BTreeMap::new(),
            agents: None,
            docker: None,
            ssh: None,
        },
        creds: None,
        on_actor_panic: on_panic,
    })
    .await
    .expect("start the scheduler")
}

fn no_panic() -> OnActorPanic {
    Arc::new(|cause| panic!("the actor panicked: {cause}"))
}

fn request() -> TriggerRequest {
    TriggerRequest {
        target: "t".into(),
        kind: None,
        args: BTreeMap::new(),
        trigger: TriggerKind::Api,
        ancestors: vec![],
        no_cache: false,
    }
}

#[tokio::test]
async fn concurrent_triggers_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let sched = scheduler(dir.path(), no_panic()).await;
    let before = sched.store().write_commits();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let s = sched.clone();
        set.spawn(async move { s.trigger(request()).await });
    }
    let mut ids = Vec::new();
    while let Some(r) = set.join_next().await {
        let run = r.expect("trigger task").expect("trigger acknowledged");
        assert_eq!(run.status, Status::Queued, "{run:?}");
        ids.push(run.id);
    }
    let commits = sched.store().write_commits() - before;
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every trigger gets its own run: {ids:?}");
    for id in &ids {
        let run = sched.store().get_run(*id).await.unwrap();
        assert!(run.is_some(), "acknowledged run {id} is not in the store");
    }
    assert!(
        commits <= 10,
        "50 triggers took {commits} write transactions; group commit should batch them"
    );
}

#[tokio::test]
async fn a_panicking_actor_is_reported_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let tx = Mutex::new(Some(tx));
    let hook: OnActorPanic = Arc::new(move |cause| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(cause.to_string());
        }
    });
    let sched = scheduler(dir.path(), hook).await;
    // Alive before.
    sched
        .trigger(request())
        .await
        .expect("trigger before the panic");
    sched.panic_actor("boom in a test").await;
    let cause = tokio::time::timeout(WAIT, rx)
        .await
        .expect("the panic hook was not called")
        .expect("hook dropped");
    assert!(cause.contains("boom in a test"), "cause: {cause:?}");
    assert!(
        matches!(sched.trigger(request()).await, Err(SchedError::Stopped)),
        "a trigger after the panic must say the scheduler stopped"
    );
}

#[tokio::test]
async fn config_reads_do_not_ask_the_actor_and_follow_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let sched = scheduler(dir.path(), no_panic()).await;
    assert!(sched.config().await.unwrap().tasks["t"].enabled);
    sched.set_enabled("t", Some(false)).await.unwrap();
    assert!(!sched.config().await.unwrap().tasks["t"].enabled);
    // The actor is gone: the config is still readable.
    sched.shutdown().await;
    assert!(!sched.config().await.unwrap().tasks["t"].enabled);
    assert!(matches!(
        sched.trigger(request()).await,
        Err(SchedError::Stopped)
    ));
}

/// The run's entry in the next event that names it.
async fn next_change_of(
    events: &mut tokio::sync::broadcast::Receiver<Arc<Changed>>,
    id: i64,
) -> ChangedRun {
    loop {
        let changed = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("no event in time")
            .expect("event stream");
        if let Some(r) = changed.runs.iter().find(|r| r.id == id) {
            return r.clone();
        }
    }
}

#[tokio::test]
async fn events_say_which_runs_had_a_job_end() {
    let dir = tempfile::tempdir().unwrap();
    let sched = scheduler(dir.path(), no_panic()).await;
    let mut events = sched.subscribe();
    // Queued (its only worker is down): no job ended, the run is open.
    let run = sched.trigger(request()).await.expect("trigger");
    let queued = next_change_of(&mut events, run.id).await;
    assert!(
        !queued.job_ended,
        "a queued run has no ended job: {queued:?}"
    );
    assert!(queued.ended.is_none(), "{queued:?}");
    // Canceled while queued: its job ended (canceled) in the batch that ended the run.
    sched.cancel(run.id).await.expect("cancel");
    let canceled = next_change_of(&mut events, run.id).await;
    assert!(canceled.job_ended, "the canceled job ended: {canceled:?}");
    let row = canceled.ended.expect("the run ended in this batch");
    assert_eq!(row.status, Status::Canceled);
}
