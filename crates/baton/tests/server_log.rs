//! The server's own log (its stderr) says what it does, with the default filter: each run's
//! start and end at info level, the jobs it re-attached to after a restart, config reloads on
//! SIGHUP (and a bad config kept out), and what SIGINT and SIGTERM do with running jobs — which
//! the next start then re-attaches, as the SIGINT message promises.

mod common;

use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
tasks:
  quick:
    command: echo quick
  hold:
    command: |
      echo holding
      @GATE@
      echo released
"#;

fn config() -> String {
    CONFIG.replace("@GATE@", &gate("go"))
}

/// Waits (bounded) until the server's stderr has a line containing `needle`; that line.
async fn wait_line(s: &Server, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = s.stderr();
        if let Some(l) = log.lines().find(|l| l.contains(needle)) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the server never logged {needle:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the server's config has the task `name`.
async fn has_task(s: &Server, name: &str) -> bool {
    let tasks = s.get_ok("/tasks").await;
    tasks["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no task list: {tasks}"))
        .iter()
        .any(|t| t["name"] == name)
}

/// Sends `sig` to the server.
fn signal(s: &Server, sig: libc::c_int) {
    // SAFETY: a plain signal to the server this test started.
    let rc = unsafe { libc::kill(s.pid() as i32, sig) };
    assert_eq!(rc, 0, "cannot signal the server");
}

#[tokio::test]
async fn the_server_says_what_it_does() {
    assert!(
        std::env::var_os("RUST_LOG").is_none(),
        "this test reads the server's log with its default filter: run it without RUST_LOG"
    );
    let mut s = Server::start(&config());

    // A run's start and end, at info level.
    let quick = id_of(&s.trigger("quick", &[]).await);
    s.wait_run(quick).await;
    for msg in [
        format!("run {quick} of quick started"),
        format!("run {quick} of quick ended: success"),
    ] {
        let line = wait_line(&s, &msg).await;
        assert!(line.contains("INFO"), "not at info level: {line}");
    }

    // A job still running when the server dies is re-attached by the next start, which says so.
    let go = s.root.path().join("go");
    let hold = id_of(&s.trigger("hold", &[("go", go.to_str().unwrap())]).await);
    let run = s
        .wait_until(hold, "running", |r| status(r) == "running")
        .await;
    let worker = job(&run, "hold")["worker"].as_str().unwrap().to_owned();
    s.restart();
    let line = wait_line(
        &s,
        &format!("re-attached to job hold of run {hold}, still running on {worker}"),
    )
    .await;
    assert!(line.contains("INFO"), "{line}");

    // SIGHUP reloads the config and says from where; a bad config is refused, the old one kept.
    assert!(!has_task(&s, "added").await);
    s.write_config(
        "baton.yaml",
        &format!("{}  added:\n    command: echo added\n", config()),
    );
    signal(&s, libc::SIGHUP);
    wait_line(
        &s,
        &format!("config reloaded from {}", s.config_dir.display()),
    )
    .await;
    assert!(has_task(&s, "added").await);
    s.write_config("baton.yaml", "tasks:\n  broken: {commnd: x}\n");
    signal(&s, libc::SIGHUP);
    wait_line(
        &s,
        "error: config reload failed; the old config stays in force",
    )
    .await;
    assert!(
        has_task(&s, "added").await,
        "the bad config replaced the good one"
    );
    s.write_config("baton.yaml", &config());

    // SIGINT stops at once and says the running job goes on; the next start re-attaches it.
    signal(&s, libc::SIGINT);
    assert!(s.wait_exit().success(), "{}", s.stderr());
    wait_line(
        &s,
        "SIGINT: stopping the server; running jobs keep running under their supervisors and are \
         re-attached at the next start",
    )
    .await;
    s.restart();
    let again = format!("re-attached to job hold of run {hold}");
    let deadline = Instant::now() + WAIT;
    while s.stderr().matches(&again).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the start after SIGINT did not re-attach:\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&go, b"").unwrap();
    assert_eq!(status(&s.wait_run(hold).await), "success");
    wait_line(&s, &format!("run {hold} of hold ended: success")).await;

    // SIGTERM drains: it says so, and that every job has ended, before it exits.
    signal(&s, libc::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.stderr());
    wait_line(&s, "SIGTERM: draining (no new jobs start").await;
    wait_line(&s, "drained: every job has ended").await;
}
