//! Checkouts where the job does not run on the server: an SSH worker (a real sshd in a network
//! namespace) and a pull-mode agent fetch exactly the run's commit from the server's mirror
//! over its smart-HTTP endpoint, with the job's own credential; the tree equals `git archive`
//! of the commit byte for byte. The worker needs no forge credentials or route to the forge.

mod common;

use common::gitrepo;

use std::process::{Child, Command, Stdio};

use common::sshhosts::TestNet;
use common::{BIN, Server};

const SECRET: &str = "remote-checkout-hook-secret";

fn repo_config(url: &str, secret_file: &std::path::Path) -> String {
    format!(
        "repos:\n  app:\n    url: {url}\n    forge: github\n    secret: file:{}\n",
        secret_file.display()
    )
}

#[tokio::test]
async fn an_ssh_worker_checks_out_the_commit_from_the_server() {
    common::sshhosts::require_tools();
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    let sha = gitrepo::sample_repo(&repo, "");
    let secret = tmp.path().join("hook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let url = repo.to_str().unwrap();
    let yaml = format!("{}{}", net.config("10s"), repo_config(url, &secret));
    let s = Server::start_on(&yaml, &net.gateway);

    let runs = gitrepo::push(&s, SECRET, url, &sha, "push-1").await;
    assert_eq!(runs.len(), 2, "test and nocode");
    let mut by_target = std::collections::BTreeMap::new();
    for id in runs {
        let run = s.wait_run(id).await;
        by_target.insert(run["target"].as_str().unwrap().to_owned(), (id, run));
    }
    let (id, run) = &by_target["app/test"];
    let worker = run["jobs"][0]["worker"].as_str().unwrap();
    assert_eq!(worker, net.hosts[0].name, "{run:#}");
    gitrepo::assert_checked_out(&s, &repo, *id, &sha, tmp.path()).await;

    // `checkout: false`: the job starts in an empty directory.
    let (id, run) = &by_target["app/nocode"];
    assert_eq!(run["status"], "success", "{run:#}");
    let log = s.log_text(*id, None).await;
    assert!(log.contains("entries=0"), "{log}");

    // The endpoint serves only the job's holder, and only while it runs.
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let resp = s
        .http
        .get(format!(
            "{}/api/v1/jobs/{job}/1/repo.git/info/refs?service=git-upload-pack",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = s
        .http
        .get(format!(
            "{}/api/v1/jobs/{job}/1/repo.git/info/refs?service=git-upload-pack",
            s.base
        ))
        .header("X-Baton-Job-Token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404, "the job has ended");
}

/// A repository reached over ssh (a netns test host serves it) with `ssh_key:` as its only
/// identity: the server's mirror fetches with the key (git gets no other: its HOME is empty),
/// host keys checked against `server.known_hosts`; the job then runs on the SSH worker.
#[tokio::test]
async fn a_repository_over_ssh_is_fetched_with_its_deploy_key() {
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    let sha = gitrepo::sample_repo(&repo, "");
    let secret = tmp.path().join("hook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let url = format!("root@{}:{}", net.hosts[0].addr, repo.display());
    let yaml = format!(
        "{}{}    ssh_key: file:{}\n",
        net.config("10s"),
        repo_config(&url, &secret),
        net.client_key.display()
    );
    let s = Server::start_on(&yaml, &net.gateway);
    let runs = gitrepo::push(&s, SECRET, &url, &sha, "push-ssh").await;
    let mut checked = 0;
    for id in runs {
        let run = s.wait_run(id).await;
        if run["target"] == "app/test" {
            gitrepo::assert_checked_out(&s, &repo, id, &sha, tmp.path()).await;
            checked += 1;
        }
    }
    assert_eq!(checked, 1);
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(s: &Server) -> Agent {
    let out = Command::new(BIN)
        .args(["token", "create", "--name", "agent-join"])
        .args(s.data_args())
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let work = s.data.join("agent-a1");
    let log = std::fs::File::create(s.root.path().join("agent-a1.log")).unwrap();
    let child = Command::new(BIN)
        .args(["agent", "--server", &s.base, "--token", &token])
        .args(["--queues", "arm", "--name", "a1", "--work-dir"])
        .arg(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn baton agent");
    Agent(child)
}

/// A server whose `arm` queue is served by agents, building the repository at `url`.
fn agent_server(url: &str, secret: &std::path::Path) -> Server {
    let yaml = format!(
        "server:\n  local_workers: 1\n  agent_queues: [arm]\n{}",
        repo_config(url, secret)
    );
    Server::start(&yaml)
}

#[tokio::test]
async fn an_agent_checks_out_the_commit_from_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    let sha = gitrepo::sample_repo(&repo, "queues: [arm]");
    let secret = tmp.path().join("hook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let url = repo.to_str().unwrap();
    let s = agent_server(url, &secret);
    let _agent = start_agent(&s);

    let runs = gitrepo::push(&s, SECRET, url, &sha, "push-1").await;
    let mut checked = 0;
    for id in runs {
        let run = s.wait_run(id).await;
        let worker = run["jobs"][0]["worker"].as_str().unwrap();
        assert!(worker.starts_with("agent:a1:"), "{run:#}");
        if run["target"] == "app/test" {
            gitrepo::assert_checked_out(&s, &repo, id, &sha, tmp.path()).await;
            checked += 1;
        } else {
            assert_eq!(run["status"], "success", "{run:#}");
            let log = s.log_text(id, None).await;
            assert!(log.contains("entries=0"), "{log}");
        }
    }
    assert_eq!(checked, 1);
}

/// What the `extras` task prints: the submodule's file and the LFS file's content.
const EXTRAS_CI: &str = "tasks:
  extras:
    @QUEUES@
    command: cat vendor/lib/lib.txt assets/big.bin; git rev-parse HEAD
";

/// An app at `<dir>/app` whose commit has a submodule (`vendor/lib`, a local repository) and an
/// LFS file (`assets/big.bin`); returns its path and commit.
fn extras_repo(dir: &std::path::Path, queues: &str) -> (std::path::PathBuf, String) {
    let lib = dir.join("lib");
    gitrepo::init(&lib);
    gitrepo::commit_text(&lib, &[("lib.txt", "library file\n")], "lib");
    let app = dir.join("app");
    gitrepo::init(&app);
    gitrepo::git(&app, &["lfs", "install", "--local"]);
    gitrepo::git(&app, &["lfs", "track", "*.bin"]);
    let lib_url = lib.to_str().unwrap();
    gitrepo::git(
        &app,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "-q",
            "add",
            lib_url,
            "vendor/lib",
        ],
    );
    let ci = EXTRAS_CI.replace("@QUEUES@", queues);
    let sha = gitrepo::commit_text(
        &app,
        &[
            (".baton/ci.yml", &ci),
            ("assets/big.bin", "large file content\n"),
        ],
        "extras",
    );
    (app, sha)
}

/// The run's log shows the submodule's file and the LFS content (not its pointer), at `sha`.
async fn assert_extras(s: &Server, id: i64, sha: &str) -> serde_json::Value {
    let run = s.wait_run(id).await;
    let log = s.log_text(id, None).await;
    assert_eq!(run["status"], "success", "{run:#}\n{log}");
    assert_eq!(log, format!("library file\nlarge file content\n{sha}\n"));
    run
}

#[tokio::test]
async fn an_ssh_worker_and_an_agent_get_submodules_and_lfs_files_from_the_server() {
    common::sshhosts::require_tools();
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sha) = extras_repo(&tmp.path().join("ssh"), "");
    let secret = tmp.path().join("hook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let url = repo.to_str().unwrap();
    let yaml = format!("{}{}", net.config("10s"), repo_config(url, &secret));
    let s = Server::start_on(&yaml, &net.gateway);
    let runs = gitrepo::push(&s, SECRET, url, &sha, "push-ssh").await;
    let run = assert_extras(&s, runs[0], &sha).await;
    assert_eq!(
        run["jobs"][0]["worker"],
        net.hosts[0].name.as_str(),
        "{run:#}"
    );
    drop(s);

    let (repo, sha) = extras_repo(&tmp.path().join("agent"), "queues: [arm]");
    let url = repo.to_str().unwrap();
    let s = agent_server(url, &secret);
    let _agent = start_agent(&s);
    let runs = gitrepo::push(&s, SECRET, url, &sha, "push-agent").await;
    let run = assert_extras(&s, runs[0], &sha).await;
    let worker = run["jobs"][0]["worker"].as_str().unwrap();
    assert!(worker.starts_with("agent:a1:"), "{run:#}");
}
