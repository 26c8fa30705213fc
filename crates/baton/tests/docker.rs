//! The Docker executor against the real engine (`/var/run/docker.sock`, or `DOCKER_HOST`).
//!
//! There is no image registry here: the test image is made in the setup from Debian's
//! `busybox-static` (`/bin/busybox` plus one symlink per applet, `docker import`ed as
//! `baton-test-busybox:latest`). The setup uses the docker CLI; the product never does. If the
//! engine or busybox is missing, every test fails and says so: nothing is skipped.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::busybox::{IMAGE, Leftovers, docker, docker_ok, image};
use common::podman::Podman;
use common::{Server, WAIT, id_of, job, reason, status};

/// Containers of run `run` whose job folder is `dir` that the engine still has (run ids repeat
/// across the servers of parallel tests; folders do not).
fn containers_of(run: i64, dir: &Path) -> String {
    containers_where(run, dir, &[])
}

/// Like [`containers_of`], with more `docker ps` filters (`status=exited`).
fn containers_where(run: i64, dir: &Path, filters: &[&str]) -> String {
    let (run, dir) = (
        format!("label=baton.run={run}"),
        format!("label=baton.dir={}", dir.display()),
    );
    let mut args = vec!["ps", "-aq", "--filter", &run, "--filter", &dir];
    for f in filters {
        args.extend(["--filter", f]);
    }
    docker_ok(&args).trim().to_string()
}

/// Waits (bounded) until the engine has no container of run `run` in `dir`.
async fn wait_gone(run: i64, dir: &Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = containers_of(run, dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers of run {run} still there: {left}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until the container of run `run` in `dir` has exited (seen by the engine,
/// whatever the server knows: it may be dead).
async fn wait_exited(run: i64, dir: &Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        if !containers_where(run, dir, &["status=exited"]).is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the container of run {run} did not exit within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn job_id(run: &serde_json::Value, name: &str) -> i64 {
    job(run, name)["id"].as_i64().expect("job id")
}

#[tokio::test(flavor = "multi_thread")]
async fn container_runs_with_env_artifacts_masking_and_exit_codes() {
    let img = image();
    let s = Server::start(&format!(
        r#"
tasks:
  hello:
    image: {img}
    env: {{GREETING: bonjour, API_TOKEN: s3cr3t-value}}
    command: |
      echo "hello from $(hostname)"
      echo "greeting=$GREETING run=$BATON_RUN_ID task=$BATON_TASK job=$BATON_JOB_ID"
      echo "token=$API_TOKEN"
      echo "to stderr" >&2
      echo artifact > "$BATON_OUTPUT_DIR/result.txt"
      pwd
      printf 'raw \377\376 end'
  fails:
    image: {img}
    command: |
      echo before
      exit 3
"#
    ));
    let _leftovers = Leftovers::of(&s);
    let run = s.trigger("hello", &[]).await;
    let id = id_of(&run);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    let log = s.log_text(id, None).await;
    // stdout and stderr are two streams: where stderr's line lands is checked below.
    assert!(
        log.replacen("to stderr\n", "", 1)
            .starts_with("hello from "),
        "{log}"
    );
    assert!(
        log.contains(&format!("greeting=bonjour run={id} task=hello job=")),
        "{log}"
    );
    assert!(log.contains("token=***\n"), "secret not masked: {log}");
    assert!(!log.contains("s3cr3t-value"), "{log}");
    assert!(log.contains("/baton/work\n"), "{log}");
    // Raw bytes and a last line without a newline stay; stderr lands where it arrived, marked.
    let mut raw = s.log(id, None).await;
    let err = raw.windows(10).position(|w| w == b"to stderr\n").unwrap();
    assert_eq!(s.stream_at(id, err as u64).await, "stderr");
    raw.drain(err..err + 10);
    assert!(
        raw.ends_with(b"/baton/work\nraw \xff\xfe end"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    let dir = s.job_dir(job_id(&done, "hello"), 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("out/result.txt")).unwrap(),
        "artifact\n"
    );
    wait_gone(id, &dir).await;

    let run = s.trigger("fails", &[]).await;
    let id = id_of(&run);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "failed", "{done:#}");
    assert!(reason(&done).contains("exit code 3"), "{done:#}");
    assert_eq!(s.log_text(id, None).await, "before\n");
    wait_gone(id, &s.job_dir(job_id(&done, "fails"), 1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn network_none_and_resource_limits_reach_the_container() {
    let img = image();
    let s = Server::start(&format!(
        r#"
tasks:
  limited:
    image: {img}
    network: none
    resources: {{cpus: 0.5, memory: 64m}}
    command: |
      echo "net: $(ls /sys/class/net | tr '\n' ' ')"
      if [ -e /sys/fs/cgroup/memory.max ]; then
        echo "mem: $(cat /sys/fs/cgroup/memory.max)"
        echo "cpu: $(cat /sys/fs/cgroup/cpu.max)"
      else
        echo "mem: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
        echo "cpu: $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
      fi
  bridged:
    image: {img}
    command: ls /sys/class/net
"#
    ));
    let _leftovers = Leftovers::of(&s);
    let id = id_of(&s.trigger("limited", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    let log = s.log_text(id, None).await;
    assert!(log.contains("net: lo \n"), "only lo expected: {log}");
    assert!(log.contains("mem: 67108864\n"), "{log}");
    assert!(log.contains("cpu: 50000 100000\n"), "{log}");

    let id = id_of(&s.trigger("bridged", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}");
    let log = s.log_text(id, None).await;
    assert!(
        log.lines().any(|l| l != "lo"),
        "bridge has more than lo: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_and_removes_the_container_and_timeout_jams() {
    let img = image();
    let s = Server::start(&format!(
        r#"
server:
  kill_grace: 1s
tasks:
  long:
    image: {img}
    command: |
      echo started
      sleep 300
  slow:
    image: {img}
    timeout: 2s
    command: |
      echo going
      sleep 300
"#
    ));
    let _leftovers = Leftovers::of(&s);
    let id = id_of(&s.trigger("long", &[]).await);
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    let dir = s.job_dir(job_id(&run, "long"), 1);
    let deadline = Instant::now() + WAIT;
    while s.log_text(id, None).await != "started\n" {
        assert!(Instant::now() < deadline, "no output from the container");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !containers_of(id, &dir).is_empty(),
        "the container should run"
    );
    let t0 = Instant::now();
    let (code, _) = s
        .post(&format!("/runs/{id}/cancel"), serde_json::json!({}))
        .await;
    assert!(code < 300, "cancel answered {code}");
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "canceled", "{done:#}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "cancel took {:?}",
        t0.elapsed()
    );
    wait_gone(id, &dir).await;

    let id = id_of(&s.trigger("slow", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "jammed", "{done:#}");
    assert!(reason(&done).contains("timed out"), "{done:#}");
    // The shell may report the kill ("Terminated").
    let log = s.log_text(id, None).await;
    assert!(log.starts_with("going\n"), "{log}");
    wait_gone(id, &s.job_dir(job_id(&done, "slow"), 1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sigkill_mid_run_then_restart_finishes_with_the_whole_log_once() {
    let img = image();
    let mut s = Server::start(&format!(
        r#"
variables: {{api_key: hunter2hunter2}}
tasks:
  work:
    image: {img}
    env: {{SECRET_WORD: hunter2hunter2}}
    command: |
      for i in $(seq 1 500); do echo "line $i $SECRET_WORD"; done
      for i in $(seq 1200); do [ -e /baton/work/go ] && break; sleep 0.05; done
      [ -e /baton/work/go ] || exit 9
      for i in $(seq 501 1000); do echo "line $i $SECRET_WORD"; done
"#
    ));
    let _leftovers = Leftovers::of(&s);
    let id = id_of(&s.trigger("work", &[]).await);
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    let dir = s.job_dir(job_id(&run, "work"), 1);
    let deadline = Instant::now() + WAIT;
    // The masker may hold back the last few bytes (a secret could start there).
    while !s.log_text(id, None).await.contains("line 500 ***") {
        assert!(
            Instant::now() < deadline,
            "first half never arrived: {}\n{}",
            s.log_text(id, None).await,
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.kill9();
    // The job goes on while the server is down, to its end: the second half is written by
    // the engine only.
    std::fs::write(dir.join("work/go"), "").unwrap();
    wait_exited(id, &dir).await;
    s.restart();
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    let expected: String = (1..=1000).map(|i| format!("line {i} ***\n")).collect();
    let log = s.log_text(id, None).await;
    assert_eq!(log.len(), expected.len(), "log differs:\n{log}");
    assert_eq!(log, expected);
    wait_gone(id, &dir).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn build_makes_the_image_once_and_reuses_it() {
    let img = image();
    let unique = format!("{}-{}", std::process::id(), chrono_free_nanos());
    let s = Server::start(
        r#"
tasks:
  built:
    build: img/Dockerfile
    command: cat /built
"#,
    );
    let _leftovers = Leftovers::of(&s);
    let ctx = s.config_dir.join("img");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {img}\nCOPY note.txt /note.txt\nRUN echo built-{unique} > /built\n"),
    )
    .unwrap();
    std::fs::write(ctx.join("note.txt"), "context file\n").unwrap();

    let id = id_of(&s.trigger("built", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    let log = s.log_text(id, None).await;
    assert!(
        log.starts_with("baton: building image baton-build:"),
        "{log}"
    );
    assert!(log.ends_with(&format!("built-{unique}\n")), "{log}");
    let tag = log
        .split_whitespace()
        .find(|w| w.starts_with("baton-build:"))
        .expect("tag in log")
        .to_string();

    let id = id_of(&s.trigger("built", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}");
    let log = s.log_text(id, None).await;
    assert_eq!(
        log,
        format!(
            "baton: using cached image {tag} (from {})\nbuilt-{unique}\n",
            ctx.join("Dockerfile").display()
        )
    );
    docker(&["rmi", "-f", &tag]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_engine_container_jobs_are_broken_with_the_reason() {
    let s = Server::start(
        r#"
server:
  docker_host: unix:///nonexistent/baton-docker.sock
tasks:
  boxed:
    image: busybox
    command: echo never
  plain:
    command: echo plain
"#,
    );
    let _leftovers = Leftovers::of(&s);
    let id = id_of(&s.trigger("boxed", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "broken", "{done:#}");
    assert!(
        reason(&done).contains("unix:///nonexistent/baton-docker.sock"),
        "{done:#}"
    );
    let id = id_of(&s.trigger("plain", &[]).await);
    assert_eq!(status(&s.wait_run(id).await), "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn start_removes_containers_of_jobs_that_are_over() {
    let img = image();
    let over = tempfile::tempdir().unwrap();
    std::fs::write(over.path().join("exit.json"), "{}").unwrap();
    let label = format!("baton.dir={}", over.path().display());
    let name = format!("baton-test-leftover-{}", std::process::id());
    docker_ok(&[
        "create",
        "--name",
        &name,
        "--label",
        "org.baton=1",
        "--label",
        &label,
        img,
        "true",
    ]);
    let s = Server::start("tasks: {}\n");
    let _leftovers = Leftovers::of(&s);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = docker_ok(&["ps", "-aq", "--filter", &format!("name={name}")]);
        if left.trim().is_empty() {
            break;
        }
        if Instant::now() > deadline {
            docker(&["rm", "-f", &name]);
            panic!("leftover container {name} was not removed");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chrono_free_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_executor_runs_jobs_on_podman() {
    image();
    let podman = Podman::start();
    // The same busybox rootfs, imported into Podman's storage.
    let saved = tempfile::tempdir().unwrap();
    let tar = saved.path().join("image.tar");
    docker_ok(&["save", "-o", tar.to_str().unwrap(), IMAGE]);
    let out = podman.docker(&["load", "-i", tar.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "loading the test image into podman failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start(&format!(
        r#"
server:
  docker_host: "{host}"
  kill_grace: 1s
tasks:
  hello:
    image: {IMAGE}
    network: none
    command: |
      echo "hello from podman, run $BATON_RUN_ID"
      ls /sys/class/net
      echo art > "$BATON_OUTPUT_DIR/a.txt"
      printf 'raw \377\376 end'
  fails:
    image: {IMAGE}
    command: exit 4
  long:
    image: {IMAGE}
    command: |
      echo started
      sleep 300
"#,
        host = podman.host()
    ));
    let _leftovers = Leftovers::on_host(&s, podman.host());
    let id = id_of(&s.trigger("hello", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    let raw = s.log(id, None).await;
    assert_eq!(
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(
            format!("hello from podman, run {id}\nlo\nraw \u{fffd}\u{fffd} end").as_bytes()
        )
    );
    assert!(
        raw.ends_with(b"raw \xff\xfe end"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    let dir = s.job_dir(job_id(&done, "hello"), 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("out/a.txt")).unwrap(),
        "art\n"
    );

    let id = id_of(&s.trigger("fails", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "failed", "{done:#}");
    assert!(reason(&done).contains("exit code 4"), "{done:#}");

    let id = id_of(&s.trigger("long", &[]).await);
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;
    let deadline = Instant::now() + WAIT;
    while s.log_text(id, None).await != "started\n" {
        assert!(
            Instant::now() < deadline,
            "no output from the podman container"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = s
        .post(&format!("/runs/{id}/cancel"), serde_json::json!({}))
        .await;
    assert!(code < 300, "cancel answered {code}");
    assert_eq!(status(&s.wait_run(id).await), "canceled");
    let left = podman.docker(&["ps", "-aq", "--filter", "label=org.baton=1"]);
    let deadline = Instant::now() + WAIT;
    let mut left = String::from_utf8_lossy(&left.stdout).trim().to_string();
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "podman containers left: {left}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = podman.docker(&["ps", "-aq", "--filter", "label=org.baton=1"]);
        left = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_mixes_container_and_local_tasks() {
    let img = image();
    let s = Server::start(&format!(
        r#"
pipelines:
  mixed:
    tasks:
      boxed:
        image: {img}
        network: none
        script:
          - echo "boxed in $(pwd), nets $(ls /sys/class/net)"
          - echo boxed > "$BATON_OUTPUT_DIR/b.txt"
      plain:
        depends_on: [boxed]
        script:
          - echo "plain in $(basename $(pwd))"
"#
    ));
    let _leftovers = Leftovers::of(&s);
    let id = id_of(&s.trigger_pipeline("mixed", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    assert_eq!(
        s.log_text(id, Some("boxed")).await,
        "boxed in /baton/work, nets lo\n"
    );
    assert_eq!(s.log_text(id, Some("plain")).await, "plain in work\n");
    let dir = s.job_dir(job_id(&done, "boxed"), 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("out/b.txt")).unwrap(),
        "boxed\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_job_survives_server_and_engine_restarts() {
    image();
    let mut podman = Podman::start();
    let saved = tempfile::tempdir().unwrap();
    let tar = saved.path().join("image.tar");
    docker_ok(&["save", "-o", tar.to_str().unwrap(), IMAGE]);
    let out = podman.docker(&["load", "-i", tar.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = Server::start(&format!(
        r#"
server:
  docker_host: "{host}"
tasks:
  work:
    image: {IMAGE}
    command: |
      for i in $(seq 1 300); do echo "line $i"; done
      for i in $(seq 1200); do [ -e /baton/work/go ] && break; sleep 0.05; done
      [ -e /baton/work/go ] || exit 9
      for i in $(seq 301 600); do echo "line $i"; done
"#,
        host = podman.host()
    ));
    let _leftovers = Leftovers::on_host(&s, podman.host());
    let id = id_of(&s.trigger("work", &[]).await);
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    let dir = s.job_dir(job_id(&run, "work"), 1);
    let deadline = Instant::now() + WAIT;
    while !s.log_text(id, None).await.contains("line 300\n") {
        assert!(Instant::now() < deadline, "first half never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Server and engine API both go; the container runs on under conmon.
    s.kill9();
    podman.stop_service();
    std::fs::write(dir.join("work/go"), "").unwrap();
    // The server comes back before the engine does: it waits for the engine.
    s.restart();
    let deadline = Instant::now() + WAIT;
    while !s.stderr().contains("re-attaching") {
        assert!(
            Instant::now() < deadline,
            "the restarted server never said it is waiting for the engine (re-attaching):\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    podman.start_service();
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    let expected: String = (1..=600).map(|i| format!("line {i}\n")).collect();
    assert_eq!(s.log_text(id, None).await, expected);
    assert!(
        s.stderr().contains("re-attaching"),
        "the restarted server should have waited for the engine:\n{}",
        s.stderr()
    );
}

/// An explicit secret reaches the container as an environment variable (given to the engine at
/// create), is masked in the log with its base64 form, and no file of the job folder holds it.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_the_container_and_no_file() {
    let img = image();
    let secret = "d0cker-s3cr3t-Qm4Rt8";
    let s = Server::start_env(
        &format!(
            r#"
secrets: {{TOKEN: env:BATON_E2E_DOCKER_TOKEN}}
tasks:
  work:
    image: {img}
    secrets: [TOKEN]
    command: |
      echo "token=$TOKEN"
      printf %s "$TOKEN" | base64
"#
        ),
        &[("BATON_E2E_DOCKER_TOKEN", secret)],
    );
    let _leftovers = Leftovers::of(&s);
    let id = id_of(&s.trigger("work", &[]).await);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done:#}\n{}", s.stderr());
    assert_eq!(s.log_text(id, None).await, "token=***\n***\n");
    let dir = s.job_dir(job_id(&done, "work"), 1);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the secret",
                path.display()
            );
        }
    }
}
