//! A Docker job's minted forge token (short-lived, never stored by the server) stays masked in
//! its log after a server SIGKILL and restart: the re-attached server reads the container's
//! secret variables back from the engine, which keeps them with the container. Real Docker
//! (the busybox test image), real git, a Gitea stand-in that mints the token.

mod common;

use std::time::Instant;

use common::busybox::{Leftovers, image};
use common::forgehook::{Kind, make_repo, push};
use common::gitea_tokens::{BOT_PASSWORD, SECRET, gitea_server};
use common::{WAIT, job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattached_docker_job_still_masks_its_minted_token() {
    let img = image();
    let tmp = tempfile::tempdir().unwrap();
    // It prints its token, waits for `go` in its checkout (written while the server is down),
    // then prints it again: that line reaches the log only through the restarted server.
    let ci = format!(
        "tasks:\n  wait:\n    image: {img}\n    command: 'echo \"before=$BATON_FORGE_TOKEN\"; for i in $(seq 1200); do [ -e go ] && break; sleep 0.05; done; echo \"after=$BATON_FORGE_TOKEN\"; [ -e go ]'\n"
    );
    let (url, sha) = make_repo(tmp.path(), &ci);
    let (mut s, forge, state) = gitea_server(&url, "BOT_PW", &[("BOT_PW", BOT_PASSWORD)]).await;
    let _leftovers = Leftovers::of(&s);
    let ids = push(&s, Kind::Gitea, &url, &sha, "tea-docker", SECRET).await;
    let run = s
        .wait_until(ids[0], "running", |r| r["status"] == "running")
        .await;
    let job_id = job(&run, "app/wait")["id"].as_i64().unwrap();
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
    std::fs::write(s.job_dir(job_id, 1).join("work/go"), "").unwrap();
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
    forge.assert_no_problems();
}
