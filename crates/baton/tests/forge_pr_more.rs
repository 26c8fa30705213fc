//! Pull requests from Gitea, Forgejo and GitLab end to end, like the GitHub ones in
//! `forge_pr.rs`: real git, the real binary, deliveries signed as each forge signs them, and
//! the forge's status API played by the documented stand-in (`common::fakeforge`). The
//! payloads start from the real fixtures in `tests/fixtures/webhooks/` (Gitea's push fixture
//! for its `repository` and `sender` objects, GitLab's merge request fixture whole), with the
//! fields that name the repository, the commits and the branches set to the local ones.
//!
//! Each forge: a pull request runs on the merge of its head into main (statuses on its head), a
//! conflicting one starts nothing and gets an error status `baton/merge` in the forge's words,
//! and one from a fork waits for approval, then runs.

mod common;

use std::path::Path;

use serde_json::{Value, json};

use common::Server;
use common::fakeforge::{FakeForge, Kind, TOKEN};
use common::gitrepo::{commit_text as commit, git};
use common::pulls::{SECRET, make_repo, open_pr, run_ids};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Forge {
    Gitea,
    Forgejo,
    GitLab,
}

impl Forge {
    fn name(self) -> &'static str {
        match self {
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::GitLab => "gitlab",
        }
    }

    /// The status API the forge speaks (Forgejo's is Gitea's).
    fn api(self) -> Kind {
        match self {
            Forge::Gitea | Forge::Forgejo => Kind::Gitea,
            Forge::GitLab => Kind::GitLab,
        }
    }

    /// The states a run that succeeds reports, in the forge's words (Gitea has no `running`).
    fn run_states(self) -> [&'static str; 3] {
        match self {
            Forge::Gitea | Forge::Forgejo => ["pending", "pending", "success"],
            Forge::GitLab => ["pending", "running", "success"],
        }
    }

    /// The forge's word for Baton's `error` commit state.
    fn error_state(self) -> &'static str {
        match self {
            Forge::Gitea | Forge::Forgejo => "error",
            Forge::GitLab => "failed",
        }
    }
}

const CI: &str = "tasks:
  test:
    command: echo \"commit=$BATON_COMMIT pr=$BATON_PR event=$BATON_EVENT\"; cat main.txt feature.txt
";

fn fixture(rel: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/webhooks");
    serde_json::from_slice(&std::fs::read(Path::new(dir).join(rel)).unwrap()).unwrap()
}

/// One pull request as a delivery describes it.
struct Pr<'a> {
    url: &'a str,
    number: u64,
    head: &'a str,
    branch: &'a str,
    sender: &'a str,
    /// The owner of the fork the head comes from, if it does.
    fork: Option<&'a str>,
}

/// A Gitea/Forgejo `pull_request` payload (Gitea's API shape; GitHub's with `repo_id`s), its
/// `repository` and `sender` taken from Gitea's push fixture.
fn gitea_payload(pr: &Pr<'_>) -> Value {
    let push = fixture("gitea/push-event.json");
    let mut repo = push["repository"].clone();
    for key in ["clone_url", "html_url", "ssh_url"] {
        repo[key] = json!(pr.url);
    }
    repo["full_name"] = json!("local/app");
    let mut sender = push["sender"].clone();
    sender["login"] = json!(pr.sender);
    sender["username"] = json!(pr.sender);
    let head_repo = match pr.fork {
        Some(owner) => {
            let mut fork = repo.clone();
            let at = format!("/forks/{owner}/app");
            fork["id"] = json!(2);
            fork["full_name"] = json!(format!("{owner}/app"));
            fork["fork"] = json!(true);
            for key in ["clone_url", "html_url", "ssh_url"] {
                fork[key] = json!(at);
            }
            fork
        }
        None => repo.clone(),
    };
    let side = |name: &str, sha: Option<&str>, r: &Value| json!({"label": name, "ref": name, "sha": sha, "repo_id": r["id"], "repo": r});
    json!({
        "action": "opened",
        "number": pr.number,
        "pull_request": {
            "id": 100 + pr.number, "number": pr.number, "user": sender,
            "title": format!("PR {}", pr.number), "state": "open",
            "head": side(pr.branch, Some(pr.head), &head_repo),
            "base": side("main", None, &repo),
        },
        "repository": repo,
        "sender": sender,
    })
}

/// GitLab's merge request fixture, pointed at the local repository and this request.
fn gitlab_payload(pr: &Pr<'_>) -> Value {
    let mut v = fixture("gitlab/merge-request-event.json");
    let url_keys = [
        "web_url",
        "git_http_url",
        "git_ssh_url",
        "http_url",
        "ssh_url",
        "url",
    ];
    let point = |at: &mut Value, url: &str, path: &str| {
        for key in url_keys {
            at[key] = json!(url);
        }
        at["path_with_namespace"] = json!(path);
    };
    point(&mut v["project"], pr.url, "local/app");
    v["repository"]["url"] = json!(pr.url);
    v["user"]["username"] = json!(pr.sender);
    let oa = &mut v["object_attributes"];
    oa["action"] = json!("open");
    oa["iid"] = json!(pr.number);
    oa["source_branch"] = json!(pr.branch);
    oa["target_branch"] = json!("main");
    oa["last_commit"]["id"] = json!(pr.head);
    point(&mut oa["target"], pr.url, "local/app");
    match pr.fork {
        Some(owner) => {
            oa["source_project_id"] = json!(15);
            point(
                &mut oa["source"],
                &format!("/forks/{owner}/app"),
                &format!("{owner}/app"),
            );
        }
        None => {
            oa["source_project_id"] = oa["target_project_id"].clone();
            point(&mut oa["source"], pr.url, "local/app");
        }
    }
    v
}

/// Delivers `pr` as `forge` sends a pull request: its headers, signed (or with the token).
async fn deliver(s: &Server, forge: Forge, pr: &Pr<'_>, delivery: &str) -> (u16, Value) {
    let body = match forge {
        Forge::Gitea | Forge::Forgejo => gitea_payload(pr),
        Forge::GitLab => gitlab_payload(pr),
    };
    let body = serde_json::to_vec_pretty(&body).unwrap();
    let hex = baton_forge::sign(SECRET.as_bytes(), &body);
    let req = s
        .http
        .post(format!("{}/hooks/{}", s.base, forge.name()))
        .header("Content-Type", "application/json")
        .body(body);
    let req = match forge {
        Forge::Gitea => req
            .header("X-Gitea-Event", "pull_request")
            .header("X-Gitea-Event-Type", "pull_request")
            .header("X-Gitea-Delivery", delivery)
            .header("X-Gitea-Signature", hex),
        Forge::Forgejo => req
            .header("X-Forgejo-Event", "pull_request")
            .header("X-Forgejo-Event-Type", "pull_request")
            .header("X-Forgejo-Delivery", delivery)
            .header("X-Forgejo-Signature", hex),
        Forge::GitLab => req
            .header("X-Gitlab-Event", "Merge Request Hook")
            .header("X-Gitlab-Event-UUID", delivery)
            .header("X-Gitlab-Token", SECRET),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Publishes the head as `forge` does (`refs/pull/N/head`, GitLab `refs/merge-requests/N/head`).
fn open(forge: Forge, repo: &Path, branch: &str, n: u64, files: &[(&str, &str)]) -> String {
    let head = open_pr(repo, branch, n, files);
    if forge == Forge::GitLab {
        git(repo, &["update-ref", "-d", &format!("refs/pull/{n}/head")]);
        let name = format!("refs/merge-requests/{n}/head");
        git(repo, &["update-ref", &name, &head]);
    }
    head
}

fn start(forge: Forge, url: &str, api: &str) -> Server {
    let config = format!(
        "administrators: [root]
repos:
  app:
    url: {url}
    forge: {}
    secret: env:APP_SECRET
    token: env:APP_TOKEN
    api: {api}
",
        forge.name()
    );
    Server::start_env(&config, &[("APP_SECRET", SECRET), ("APP_TOKEN", TOKEN)])
}

async fn pull_requests_on(forge: Forge) {
    let api = FakeForge::start(forge.api()).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(&tmp.path().join("local"), CI);
    let url = repo.to_str().unwrap().to_owned();
    let s = start(forge, &url, &api.base);

    // A pull request runs on the merge of its head into main; statuses go on its head.
    let head = open(forge, &repo, "feature", 1, &[("feature.txt", "feature\n")]);
    let main2 = commit(&repo, &[("main.txt", "main 2\n")], "main moves on");
    let pr = Pr {
        url: &url,
        number: 1,
        head: &head,
        branch: "feature",
        sender: "ada",
        fork: None,
    };
    let (st, v) = deliver(&s, forge, &pr, "pr-1").await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    let run = s.wait_run(run_ids(&v)[0]).await;
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["target"], "app/test");
    assert_eq!(run["repo"]["pr"], 1);
    assert_eq!(run["repo"]["pr_head"], head.as_str());
    assert_eq!(run["repo"]["pr_fork"], false);
    let merge = run["repo"]["commit"].as_str().unwrap().to_owned();
    let parents = git(
        &s.data.join("repos/app.git"),
        &["rev-list", "--parents", "-n", "1", &merge],
    );
    assert_eq!(parents, format!("{merge} {main2} {head}"));
    let log = s.log_text(run["id"].as_i64().unwrap(), None).await;
    assert!(
        log.contains(&format!("commit={merge} pr=1 event=pull_request")),
        "{log}"
    );
    assert!(log.contains("main 2\nfeature\n"), "both sides: {log}");
    let seen = api.wait_for("baton/app/test", 3, &s).await;
    let states: Vec<&str> = seen.iter().map(|x| x.state.as_str()).collect();
    assert_eq!(states, forge.run_states(), "{seen:#?}");
    assert!(seen.iter().all(|x| x.sha == head), "{seen:#?}");

    conflict(forge, &s, &api, &repo, &url).await;
    fork(forge, &s, &api, &repo, &url).await;
}

/// A pull request that does not merge: no run, an error status `baton/merge` on its head.
async fn conflict(forge: Forge, s: &Server, api: &FakeForge, repo: &Path, url: &str) {
    let bad = open(forge, repo, "clash", 2, &[("main.txt", "clash\n")]);
    commit(
        repo,
        &[("main.txt", "main 3\n")],
        "main changes the same line",
    );
    let pr = Pr {
        url,
        number: 2,
        head: &bad,
        branch: "clash",
        sender: "ada",
        fork: None,
    };
    let (st, v) = deliver(s, forge, &pr, "pr-2").await;
    assert_eq!(st, 202, "{v}");
    let why = "pull request #2 does not merge cleanly into main: conflict in main.txt";
    assert_eq!(v["verdict"], why, "{v}");
    assert!(run_ids(&v).is_empty());
    let seen = api.wait_for("baton/merge", 1, s).await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].sha, bad);
    assert_eq!(seen[0].state, forge.error_state());
    assert_eq!(seen[0].description, why);
}

/// A fork's pull request waits for approval, then runs (its status follows).
async fn fork(forge: Forge, s: &Server, api: &FakeForge, repo: &Path, url: &str) {
    let head = open(forge, repo, "fork-work", 3, &[("feature.txt", "fork\n")]);
    let pr = Pr {
        url,
        number: 3,
        head: &head,
        branch: "fork-work",
        sender: "mallory",
        fork: Some("mallory"),
    };
    let (st, v) = deliver(s, forge, &pr, "pr-3").await;
    assert_eq!(st, 200, "{v}");
    let id = run_ids(&v)[0];
    let run = s.run(id).await;
    assert_eq!(run["status"], "waiting", "{run:#}");
    assert_eq!(
        run["reason"],
        "needs approval (pull request from a fork by mallory)"
    );
    assert_eq!(run["repo"]["pr_fork"], true);
    let (st, e) = s.post(&format!("/runs/{id}/approve"), json!({})).await;
    assert_eq!(st, 200, "{e}");
    let run = s.wait_run(id).await;
    assert_eq!(run["status"], "success", "{run:#}");
    assert!(s.log_text(id, None).await.contains("fork\n"));
    let seen = api.wait_for("baton/app/test", 6, s).await;
    let mine: Vec<&str> = seen
        .iter()
        .filter(|x| x.sha == head)
        .map(|x| x.state.as_str())
        .collect();
    assert_eq!(mine, forge.run_states(), "{seen:#?}");
}

#[tokio::test]
async fn gitea_pull_requests_merge_conflict_and_fork_approval() {
    pull_requests_on(Forge::Gitea).await;
}

#[tokio::test]
async fn forgejo_pull_requests_merge_conflict_and_fork_approval() {
    pull_requests_on(Forge::Forgejo).await;
}

#[tokio::test]
async fn gitlab_merge_requests_merge_conflict_and_fork_approval() {
    pull_requests_on(Forge::GitLab).await;
}
