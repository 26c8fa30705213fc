//! Retention end to end: `baton prune --data DIR --config P [--dry-run]` counts and then
//! deletes the ended runs a task's `retention:` no longer keeps (rows, logs, artifacts,
//! results), keeping the newest; the server prunes on its own when it starts and every hour.

mod common;

use std::time::{Duration, Instant};

use common::{Server, id_of, status};

fn config(keep: u32) -> String {
    format!(
        "server:\n  local_workers: 1\ntasks:\n  kept:\n    retention: {{keep_last: {keep}}}\n    command: echo output > \"$BATON_OUTPUT_DIR/n.txt\"\n  forever:\n    command: \"true\"\n"
    )
}

/// `baton prune` on the server's data directory and database (`--db` on PostgreSQL).
fn prune(s: &Server, dry_run: bool) -> String {
    let mut out = std::process::Command::new(common::BIN);
    out.arg("prune")
        .args(s.data_args())
        .arg("--config")
        .arg(&s.config_dir);
    if dry_run {
        out.arg("--dry-run");
    }
    let out = out
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run baton prune");
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_beyond_keep_last_go_with_their_folders_and_the_newest_stay() {
    let mut s = Server::start(&config(2));
    let mut runs = Vec::new();
    for _ in 0..4 {
        let id = id_of(&s.trigger("kept", &[]).await);
        assert_eq!(status(&s.wait_run(id).await), "success");
        runs.push(id);
    }
    let other = id_of(&s.trigger("forever", &[]).await);
    s.wait_run(other).await;
    let old_job = s.run(runs[0]).await["jobs"][0]["id"].as_i64().unwrap();
    assert!(s.job_dir(old_job, 1).join("out/n.txt").exists());

    let dry = prune(&s, true);
    assert!(dry.starts_with("would delete 2 runs, 2 jobs, "), "{dry}");
    let bytes: u64 = dry
        .trim()
        .rsplit(", ")
        .next()
        .unwrap()
        .trim_end_matches(" bytes")
        .parse()
        .unwrap();
    assert!(bytes > 0, "{dry}");
    assert_eq!(
        s.get(&format!("/runs/{}", runs[0])).await.0,
        200,
        "a dry run deletes nothing"
    );

    let done = prune(&s, false);
    assert_eq!(
        done.trim(),
        format!("deleted 2 runs, 2 jobs, {bytes} bytes")
    );
    for gone in &runs[..2] {
        assert_eq!(s.get(&format!("/runs/{gone}")).await.0, 404);
    }
    for kept in runs[2..].iter().chain([&other]) {
        assert_eq!(s.get(&format!("/runs/{kept}")).await.0, 200);
    }
    assert!(!s.job_dir(old_job, 1).exists(), "its folder went with it");
    assert_eq!(prune(&s, false).trim(), "deleted 0 runs, 0 jobs, 0 bytes");

    // The server prunes on its own (when it starts, then hourly).
    s.write_config("baton.yaml", &config(1));
    s.restart();
    let deadline = Instant::now() + common::WAIT;
    while s.get(&format!("/runs/{}", runs[2])).await.0 != 404 {
        assert!(Instant::now() < deadline, "never pruned\n{}", s.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get(&format!("/runs/{}", runs[3])).await.0, 200);
}
