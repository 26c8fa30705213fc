//! Autoscaled agent pools with the `docker` provider, on the real engine: a backlog makes the
//! pool start a container from an image with `baton` in it (made here with `docker import`:
//! busybox-static, bash, the test's `baton` binary, the shared libraries `ldd` lists and the CA
//! certificates), its
//! agent joins with the one-time token it got in its environment only, runs the job and
//! leaves after its idle timeout, and its container is removed. Containers of the pool that
//! this server did not start (a restart) are found: a running one counts as starting, ended
//! ones are removed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{BIN, Server, WAIT, id_of, status};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `docker {}`: {e} (this test needs docker.io and a running engine)",
                args.join(" ")
            )
        })
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copies `file` (following symlinks) to the same path under `root`.
fn copy_in(root: &Path, file: &Path) {
    let to = root.join(file.strip_prefix("/").unwrap());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
}

/// The shared libraries and the loader `ldd` lists for `bin`.
fn libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .expect("ldd (Debian's libc-bin) is needed to build the agent image");
    assert!(out.status.success(), "ldd {}: {out:?}", bin.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim().split(' ').next()?,
                None => l.split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The agent image, its tag unique to this test (its pool); removed (with every container of
/// the pool) when dropped.
struct AgentImage {
    tag: String,
    pool: String,
}

impl AgentImage {
    fn build(pool: &str) -> AgentImage {
        let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
        assert!(
            info.status.success(),
            "the Docker engine does not answer (this test needs it): {}",
            String::from_utf8_lossy(&info.stderr)
        );
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install Debian's busybox-static (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox, bin.join("busybox")).unwrap();
        let list = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        // Jobs run under bash; the agent is the test's own binary.
        std::fs::copy("/bin/bash", bin.join("bash")).unwrap();
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        std::fs::copy(BIN, root.join("usr/local/bin/baton")).unwrap();
        let mut libs = BTreeSet::new();
        libs.extend(libraries(Path::new(BIN)));
        libs.extend(libraries(Path::new("/bin/bash")));
        for lib in &libs {
            copy_in(&root, lib);
        }
        // The agent's HTTP client loads the system's CA certificates.
        copy_in(&root, Path::new("/etc/ssl/certs/ca-certificates.crt"));
        for d in ["tmp", "proc", "sys", "dev", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        let tar = dir.path().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success(), "tar of the agent's rootfs failed");
        // One image per test (the pool's name holds the process id): a test's cleanup never
        // removes another's image while it runs.
        let tag = format!("baton-test-pool-agent:{pool}");
        docker_ok(&[
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/bin",
            tar.to_str().unwrap(),
            &tag,
        ]);
        AgentImage {
            tag,
            pool: pool.to_string(),
        }
    }

    /// The containers of the pool: (name, agent label, state).
    fn containers(&self) -> Vec<(String, String, String)> {
        let out = docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=baton.pool={}", self.pool),
            "--format",
            "{{.Names}} {{.Label \"baton.agent\"}} {{.State}}",
        ]);
        let mut v: Vec<(String, String, String)> = out
            .lines()
            .filter_map(|l| {
                let mut p = l.split(' ');
                Some((
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                ))
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for AgentImage {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=baton.pool={}", self.pool),
        ]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}

fn config(pool: &str, image: &str) -> String {
    format!(
        r#"
server:
  local_workers: 1
pools:
  {pool}:
    queues: [boxed]
    max: 2
    idle_timeout: 3s
    provider:
      docker:
        image: {image}
        network: host
        env: {{GREETING: hello-from-the-pool}}
tasks:
  in-a-box:
    queues: [boxed]
    command: |
      echo "in a container: $GREETING"
      echo "agent token: ${{BATON_AGENT_TOKEN:-none}}"
"#
    )
}

async fn pool(s: &Server, name: &str) -> Value {
    let v = s.get_ok("/pools").await;
    v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_for<T>(what: &str, s: &Server, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_pool_starts_a_container_for_its_backlog_that_leaves_when_idle() {
    let name = format!("dock-{}", std::process::id());
    let img = AgentImage::build(&name);
    let s = Server::start(&config(&name, &img.tag));
    let p = wait_for("the pool", &s, async || {
        let p = pool(&s, &name).await;
        (!p.is_null()).then_some(p)
    })
    .await;
    assert_eq!(
        (p["size"].as_u64(), p["desired"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(img.containers().is_empty(), "{:?}", img.containers());

    let id = id_of(&s.trigger("in-a-box", &[]).await);
    // The backlog makes the pool start one container, labelled with its pool and agent.
    let (container, agent, _) = wait_for("a container", &s, async || {
        img.containers().into_iter().next()
    })
    .await;
    assert!(agent.starts_with(&format!("{name}-")), "{agent}");
    assert_eq!(container, format!("baton-{agent}"));
    // Its join token is in its environment only: not in its command line, nor in the server's log.
    let inspect = wait_for("the container's inspect", &s, async || {
        let out = docker(&["inspect", &container]);
        out.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone())
    })
    .await;
    let env: Vec<&str> = inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let token = env
        .iter()
        .find_map(|e| e.strip_prefix("BATON_AGENT_TOKEN="))
        .unwrap_or_else(|| panic!("no join token in the environment: {env:?}"));
    assert!(token.starts_with("baton_"), "{token}");
    assert!(env.contains(&"GREETING=hello-from-the-pool"), "{env:?}");
    let argv = format!(
        "{} {}",
        inspect["Config"]["Entrypoint"], inspect["Config"]["Cmd"]
    );
    assert!(
        !argv.contains(token),
        "the token is on the command line: {argv}"
    );
    assert!(
        argv.contains("agent") && argv.contains("--idle-timeout"),
        "{argv}"
    );
    assert_eq!(inspect["Config"]["Labels"]["baton.pool"], name.as_str());
    assert_eq!(inspect["Config"]["Labels"]["baton.agent"], agent.as_str());
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "host");

    // The agent joins and runs the job.
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}\n{}", s.stderr());
    let worker = run["jobs"][0]["worker"].as_str().unwrap();
    assert_eq!(worker, format!("agent:{agent}:1"), "{run:#}");
    // GREETING is only in the container's environment (the pool's `env`).
    let log = s.log_text(id, None).await;
    assert!(log.contains("in a container: hello-from-the-pool"), "{log}");
    // The agent's join token is the agent's, never its jobs'.
    assert!(log.contains("agent token: none"), "{log}");
    // Used up: the token joins no more.
    let resp = s
        .http
        .post(s.url("/agents/join"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": agent, "queues": ["boxed"], "slots": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Idle for 3 s, the agent leaves; its container is removed and the pool is empty again.
    wait_for("the container removed", &s, async || {
        img.containers().is_empty().then_some(())
    })
    .await;
    let p = wait_for("an empty pool", &s, async || {
        let p = pool(&s, &name).await;
        (p["size"] == 0 && p["starting"] == 0).then_some(p)
    })
    .await;
    assert_eq!(p["desired"], 0, "{p:#}");
    assert!(p["error"].is_null(), "{p:#}");
    let agents = s.get_ok("/agents").await;
    assert!(
        !agents.to_string().contains(&agent),
        "the agent is still listed: {agents:#}"
    );
    let log = s.stderr();
    assert!(!log.contains(token), "the server logged a join token");
    assert!(log.contains("agent left"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_pool_finds_containers_it_did_not_start() {
    let name = format!("left-{}", std::process::id());
    let img = AgentImage::build(&name);
    let label = |agent: &str| {
        vec![
            "--name".to_string(),
            format!("baton-{agent}"),
            "--label".to_string(),
            format!("baton.pool={name}"),
            "--label".to_string(),
            format!("baton.agent={agent}"),
        ]
    };
    // As a server that stopped would leave them: one agent still running (not joined yet),
    // one that ended, one created and never started.
    let run_args = |agent: &str, cmd: &[&str]| {
        let mut a = vec!["run".to_string(), "-d".to_string()];
        a.extend(label(agent));
        a.push(img.tag.clone());
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    };
    let running = format!("{name}-1-0000aaaa");
    let ended = format!("{name}-2-0000bbbb");
    let created = format!("{name}-3-0000cccc");
    let args = run_args(&running, &["sleep", "300"]);
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = run_args(
        &ended,
        &["sh", "-c", "echo cannot reach the server; exit 3"],
    );
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut args = vec!["create".to_string()];
    args.extend(label(&created));
    args.push(img.tag.clone());
    args.push("true".into());
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let s = Server::start(&config(&name, &img.tag));
    // The running one counts as starting (no more agents are started for it) ...
    let p = wait_for("the running container counted", &s, async || {
        let p = pool(&s, &name).await;
        (p["starting"] == 1).then_some(p)
    })
    .await;
    assert_eq!(
        (p["size"].as_u64(), p["desired"].as_u64()),
        (Some(0), Some(1)),
        "{p:#}"
    );
    // ... and the others are removed.
    let left = wait_for("the ended containers removed", &s, async || {
        let c = img.containers();
        (c.len() == 1).then_some(c)
    })
    .await;
    assert_eq!(left[0].1, running, "{left:?}");
    assert_eq!(left[0].2, "running", "{left:?}");
}
