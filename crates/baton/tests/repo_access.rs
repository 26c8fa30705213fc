//! Who may see and run a repository's own tasks (`REPO/TASK`): the `authorized_users` of its
//! `repos:` entry, never what its `.baton/` says. Checked over HTTP as in `access.rs`: the run,
//! the run list (filtered in SQL), hand triggers, approval of a fork's pull request, rerun,
//! cancel, the live events and the badge.

mod common;
#[path = "common/users.rs"]
mod users;

use serde_json::{Value, json};

use common::pulls::{SECRET, deliver, make_repo, open_pr, pr_payload, run_ids};
use common::sse::Events;
use common::{Server, id_of};
use users::{As, add_user};

/// The repository's own `.baton/` tries to open its task to eve and everyone: it must not.
const CI: &str = "tasks:
  test:
    authorized_users: [eve, '*']
    command: echo tested
";

fn config(url: &str) -> String {
    format!(
        "administrators: [root]
server: {{local_workers: 2}}
repos:
  app:
    url: {url}
    forge: github
    secret: env:APP_SECRET
    authorized_users: [alice]
tasks:
  eves:
    authorized_users: [eve]
    command: echo eve
"
    )
}

async fn badge(s: &Server, token: Option<&str>) -> u16 {
    let mut req = s
        .http
        .get(format!("{}/badge/app/test.svg?branch=main", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

fn listed(v: &Value) -> Vec<i64> {
    v["runs"].as_array().unwrap().iter().map(id_of).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repositorys_users_see_trigger_and_approve_its_runs_and_nobody_else_does() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(tmp.path(), CI);
    let url = repo.to_str().unwrap().to_owned();
    let s = Server::start_env(&config(&url), &[("APP_SECRET", SECRET)]);
    for u in ["alice", "eve"] {
        add_user(&s, u, &format!("pw-{u}"));
    }
    let (alice, eve) = (As::user(&s, "alice"), As::user(&s, "eve"));
    let mut alice_events = Events::open(&s, &alice.token, "alice").await;
    let mut eve_events = Events::open(&s, &eve.token, "eve").await;

    // A fork's pull request waits for approval.
    let head = open_pr(&repo, "fork-work", 3, &[("f.txt", "fork\n")]);
    let body = pr_payload(&url, "opened", 3, &head, "fork-work", "mal", Some("mal"));
    let (st, v) = deliver(&s, "pull_request", "fork-3", &body).await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    let waiting = run_ids(&v)[0];
    assert_eq!(s.run(waiting).await["status"], "waiting");

    // Eve: the repository's runs and task do not exist for her, whatever .baton/ says.
    for path in [format!("/runs/{waiting}"), format!("/runs/{waiting}/log")] {
        assert_eq!(eve.get(&path).await.0, 404, "eve GET {path}");
    }
    for path in [
        format!("/runs/{waiting}/approve"),
        format!("/runs/{waiting}/cancel"),
        format!("/runs/{waiting}/rerun"),
        "/tasks/app%2Ftest/trigger".to_owned(),
    ] {
        assert_eq!(eve.post(&path).await.0, 404, "eve POST {path}");
    }
    assert!(listed(&eve.get("/runs?repo=app").await.1).is_empty());
    let repo_names = |v: &Value| v["repos"].as_array().unwrap().len();
    assert_eq!(
        repo_names(&eve.get("/repos").await.1),
        0,
        "eve sees no repository"
    );
    assert_eq!(repo_names(&alice.get("/repos").await.1), 1);
    assert_eq!(s.run(waiting).await["status"], "waiting", "eve approved it");

    // Alice: sees it in the list, approves it, triggers and reruns the task, cancels a run.
    let (st, one) = alice.get(&format!("/runs/{waiting}")).await;
    assert_eq!((st, &one["target"]), (200, &json!("app/test")), "{one}");
    assert_eq!(listed(&alice.get("/runs").await.1), vec![waiting]);
    let (st, v) = alice.post(&format!("/runs/{waiting}/approve")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(s.wait_run(waiting).await["status"], "success");
    let (st, run) = alice
        .req(
            "POST",
            "/tasks/app%2Ftest/trigger",
            Some(json!({"ref": "main"})),
        )
        .await;
    assert_eq!(st, 201, "{run}");
    let by_hand = id_of(&run);
    assert_eq!(s.wait_run(by_hand).await["repo"]["branch"], "main");
    let (st, rerun) = alice.post(&format!("/runs/{by_hand}/rerun")).await;
    assert_eq!(st, 201, "{rerun}");
    let (st, v) = alice.post(&format!("/runs/{}/cancel", id_of(&rerun))).await;
    assert!(st == 200 || st == 409, "cancel answered {st}: {v}");
    let rerun = s.wait_run(id_of(&rerun)).await;

    // Live events: alice hears of the repository's runs; eve hears only of her own task.
    let mine = [waiting, by_hand, id_of(&rerun)];
    alice_events.until_runs(&mine, &mine).await;
    let eves = id_of(&s.trigger("eves", &[]).await);
    s.wait_run(eves).await;
    eve_events.until_runs(&[eves], &[eves]).await;

    // The badge: alice's, not eve's, and not public although .baton/ says '*'.
    assert_eq!(badge(&s, Some(&alice.token)).await, 200);
    assert_eq!(badge(&s, Some(&eve.token)).await, 404);
    assert_eq!(badge(&s, None).await, 404);
}
