//! The supervisor launcher: `baton serve` forks a small helper before its runtime starts, and
//! the helper forks each job's supervisor (no exec) in the supervisor's own session. When the
//! helper is gone, supervisors are started by exec again and no job is lost.

mod common;

use std::time::{Duration, Instant};

use common::{Server, gate, id_of, is_dead, status, wait_file};
use serde_json::Value;

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
tasks:
  gated:
    command: |
      {gate}
      echo done
  quick:
    command: echo quick
"#,
        gate = gate("gate"),
    )
}

/// `/proc/PID/stat` fields after the command name: [0] is the state, [1] the parent pid,
/// [3] the session id.
fn stat(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The server's launcher: its child named `baton-launcher`.
fn launcher_of(server_pid: u32) -> i32 {
    let kids = std::fs::read_to_string(format!("/proc/{server_pid}/task/{server_pid}/children"))
        .expect("the server's children");
    let found: Vec<i32> = kids
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| comm(*p) == "baton-launcher")
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one launcher among the server's children {kids:?}"
    );
    found[0]
}

fn supervisor_pid(s: &Server, job: i64) -> i32 {
    let sup: Value = serde_json::from_slice(
        &std::fs::read(s.job_dir(job, 1).join("supervisor.json")).expect("supervisor.json"),
    )
    .unwrap();
    sup["pid"].as_i64().unwrap() as i32
}

fn first_job(run: &Value) -> i64 {
    run["jobs"][0]["id"].as_i64().expect("job id")
}

#[tokio::test(flavor = "multi_thread")]
async fn supervisors_are_forked_by_the_launcher_in_their_own_session() {
    let s = Server::start(&config());
    let launcher = launcher_of(s.pid());
    let g = s.root.path().join("gate");
    let run = s.trigger("gated", &[("gate", g.to_str().unwrap())]).await;
    let id = id_of(&run);
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    let job = first_job(&run);
    wait_file(&s.job_dir(job, 1).join("supervisor.json")).await;
    let sup = supervisor_pid(&s, job);
    let st = stat(sup);
    assert_eq!(
        st[1],
        launcher.to_string(),
        "the launcher is the supervisor's parent: {st:?}"
    );
    assert_eq!(
        st[3],
        sup.to_string(),
        "the supervisor leads its own session: {st:?}"
    );
    let cmdline = std::fs::read(format!("/proc/{sup}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("__supervise"),
        "forked, not exec'd: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    std::fs::write(&g, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let log = s.log_text(id, None).await;
    assert!(log.contains("done"), "{log}");
    // The supervisor wrote its exit record and is gone (reaped by the launcher).
    assert!(s.job_dir(job, 1).join("exit.json").exists());
    let deadline = Instant::now() + common::WAIT;
    while !is_dead(sup) {
        assert!(Instant::now() < deadline, "supervisor {sup} did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_still_start_by_exec_when_the_launcher_is_gone() {
    let s = Server::start(&config());
    let launcher = launcher_of(s.pid());
    // SAFETY: a plain syscall on the launcher this test's server forked.
    assert_eq!(unsafe { libc::kill(launcher, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + common::WAIT;
    while !is_dead(launcher) {
        assert!(Instant::now() < deadline, "launcher {launcher} did not die");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        let id = id_of(&s.trigger("quick", &[]).await);
        let run = s.wait_run(id).await;
        assert_eq!(status(&run), "success", "{run:#}");
        assert!(s.log_text(id, None).await.contains("quick"));
    }
    // A running job's supervisor is now the exec'd `baton __supervise`.
    let g = s.root.path().join("gate");
    let id = id_of(&s.trigger("gated", &[("gate", g.to_str().unwrap())]).await);
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    let job = first_job(&run);
    wait_file(&s.job_dir(job, 1).join("supervisor.json")).await;
    let sup = supervisor_pid(&s, job);
    let cmdline = std::fs::read(format!("/proc/{sup}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("__supervise"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    std::fs::write(&g, "").unwrap();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
}
