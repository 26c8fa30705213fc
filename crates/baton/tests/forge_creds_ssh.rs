//! An SSH job's minted forge token (short-lived, never stored by the server) stays masked in
//! its log after a server SIGKILL and restart: the re-attached server reads the job's secret
//! values back from the worker (its `secrets.sh`, mode 0600, kept until the server removes the
//! job folder). A real sshd test host in a network namespace, real git, a Gitea stand-in that
//! mints the token.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use common::forgehook::{Kind, make_repo, push};
use common::gitea_tokens::{BOT_PASSWORD, SECRET, gitea_server_on};
use common::sshhosts::TestNet;
use common::{WAIT, job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattached_ssh_job_still_masks_its_minted_token() {
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    // It prints its token, waits for the file `go` (written while the server is down), then
    // prints it again: that line reaches the log only through the restarted server.
    let go = net.path("go");
    let ci = format!(
        "tasks:\n  wait:\n    checkout: false\n    command: 'echo \"before=$BATON_FORGE_TOKEN\"; for i in $(seq 1200); do [ -e {go} ] && break; sleep 0.05; done; echo \"after=$BATON_FORGE_TOKEN\"; [ -e {go} ]'\n",
        go = go.display()
    );
    let (url, sha) = make_repo(tmp.path(), &ci);
    let (mut s, forge, state) = gitea_server_on(
        &net.config("10s"),
        &net.gateway,
        &url,
        "BOT_PW",
        &[("BOT_PW", BOT_PASSWORD)],
    )
    .await;
    let ids = push(&s, Kind::Gitea, &url, &sha, "tea-ssh", SECRET).await;
    let run = s
        .wait_until(ids[0], "running", |r| r["status"] == "running")
        .await;
    assert_eq!(job(&run, "app/wait")["worker"], "w1", "{run:#}");
    let deadline = Instant::now() + WAIT;
    while !s.log_text(ids[0], None).await.contains("before=***") {
        assert!(
            Instant::now() < deadline,
            "the first line never arrived: {}\n{}",
            s.log_text(ids[0], None).await,
            s.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The stand-in's token for the one job (its `sha1`).
    let token = {
        let tea = state.lock().unwrap();
        assert_eq!(tea.minted.len(), 1, "{:?}", tea.minted);
        let id = *tea.minted.keys().next().unwrap();
        format!("{id:0>40}").replace('0', "a")
    };
    s.kill9();
    // The worker keeps the values for the server only, in a file no one else can read
    // (checked below, once the log is).
    let kept: Vec<_> = walk(&net.hosts[0].work_dir)
        .into_iter()
        .filter(|p| p.ends_with("secrets.sh"))
        .map(|p| {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            (p, mode)
        })
        .collect();
    std::fs::write(&go, "").unwrap();
    s.restart();
    let done = s.wait_run(ids[0]).await;
    assert_eq!(done["status"], "success", "{done:#}\n{}", s.stderr());
    let log = s.log_text(ids[0], None).await;
    assert_eq!(log, "before=***\nafter=***\n", "the token must stay masked");
    assert!(!log.contains(&token));
    assert!(
        !s.stderr().contains(&token),
        "the token reached the server's log"
    );
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].1 & 0o077, 0, "secrets.sh is mode {:o}", kept[0].1);
    // The job folder, and the file with it, is gone from the worker once the job has ended.
    let deadline = Instant::now() + WAIT;
    while walk(&net.hosts[0].work_dir)
        .iter()
        .any(|p| p.ends_with("secrets.sh"))
    {
        assert!(Instant::now() < deadline, "secrets.sh left on the worker");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    forge.assert_no_problems();
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
