//! The executor's background loops end with it, or with the server's shutdown token.

use std::time::Duration;

use super::{SshExecutor, SshSettings};
use crate::background::CancellationToken;
use crate::callback::CallbackHub;

fn settings(dir: &std::path::Path) -> SshSettings {
    SshSettings {
        worker: "w".into(),
        // Nothing listens on port 1: every check fails at once, and the loop goes on.
        host: "nobody@127.0.0.1:1".into(),
        key: None,
        known_hosts: None,
        control_dir: dir.to_path_buf(),
        work_dir: ".baton".into(),
        callback_url: "http://127.0.0.1:1".into(),
        heartbeat_timeout: Duration::from_secs(1),
    }
}

async fn ends<T>(task: tokio::task::JoinHandle<T>, what: &str) {
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap_or_else(|_| panic!("{what}: the health loop still runs after 20 s"))
        .expect("the health loop panicked");
}

#[tokio::test]
async fn the_health_loop_stops_when_the_server_shuts_down() {
    let tmp = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut ex =
        SshExecutor::with_shutdown(settings(tmp.path()), CallbackHub::default(), &shutdown);
    let task = std::mem::replace(&mut ex.health_task, tokio::spawn(async { None }));
    assert!(!task.is_finished(), "the loop runs until told to stop");
    shutdown.cancel();
    ends(task, "after the shutdown token was cancelled").await;
    drop(ex);
}

#[tokio::test]
async fn the_health_loop_stops_when_the_executor_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ex = SshExecutor::new(settings(tmp.path()), CallbackHub::default());
    let task = std::mem::replace(&mut ex.health_task, tokio::spawn(async { None }));
    // A job still holding the executor's state does not keep the loop alive.
    let held_by_a_job = ex.inner.clone();
    assert!(
        !task.is_finished(),
        "the loop runs while the executor lives"
    );
    drop(ex);
    ends(task, "after the executor was dropped").await;
    drop(held_by_a_job);
}
