//! Webhooks end to end against the real binary: the shared fixture payloads replayed with right,
//! wrong and missing signatures, and a push of a real local git repository whose `.baton/`
//! defines the task that runs, in a checkout of exactly the pushed commit.

mod common;

use std::path::Path;

use serde_json::{Value, json};

use common::Server;
use common::gitrepo::{archive_tree, commit_text as commit, files, git, untar};

const FIXTURE_SECRET: &str = "It's a Secret to Everybody";
const SECRET: &str = "test-hook-secret-42";

fn fixture(rel: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/webhooks");
    std::fs::read(Path::new(dir).join(rel)).unwrap()
}

/// A push payload in GitHub's documented shape for the local repository `url`.
fn push_payload(url: &str, branch: &str, before: &str, after: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": after,
        "created": before.bytes().all(|b| b == b'0'),
        "deleted": false,
        "repository": {"full_name": "local/app", "clone_url": url, "html_url": url},
        "pusher": {"name": "ada"},
        "sender": {"login": "ada"},
        "head_commit": {"id": after, "message": message,
            "author": {"name": "Ada Tester", "email": "ada@example.com"}},
        "commits": [{"id": after, "message": message, "added": [], "modified": [], "removed": []}],
    }))
    .unwrap()
}

async fn deliver(
    s: &Server,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> (u16, Value) {
    let mut req = s
        .http
        .post(format!("{}/hooks/github", s.base))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("X-Hub-Signature-256", sig);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    (status, v)
}

fn signed(secret: &str, body: &[u8]) -> Option<String> {
    Some(format!(
        "sha256={}",
        baton_forge::sign(secret.as_bytes(), body)
    ))
}

async fn run_count(s: &Server) -> usize {
    s.get_ok("/runs").await["runs"].as_array().unwrap().len()
}

fn config(app_url: &str) -> String {
    format!(
        "repos:
  hello:
    url: git@github.com:Codertocat/Hello-World.git
    forge: github
    secret: env:FIXTURE_SECRET
    branches: [main]
  octo:
    url: https://github.com/octocoders/hello-world
    forge: github
    secret: env:FIXTURE_SECRET
  app:
    url: {app_url}
    forge: github
    secret: env:APP_SECRET
tasks:
  central:
    command: echo central saw $BATON_REPO at $BATON_COMMIT
    checkout: false
    on: {{repo: [app], push: {{branches: [main]}}}}
  legacy:
    command: echo legacy build of $BATON_BRANCH
    checkout: false
    triggered_by:
      - ssh_url: {app_url}
        branches: [main]
  unrelated:
    command: echo never
"
    )
}

fn start(app_url: &str) -> Server {
    Server::start_env(
        &config(app_url),
        &[("FIXTURE_SECRET", FIXTURE_SECRET), ("APP_SECRET", SECRET)],
    )
}

#[tokio::test]
async fn fixtures_are_verified_and_bad_signatures_queue_nothing() {
    let s = start("/nonexistent/app");
    let push = fixture("github/push_with-new-branch.json");
    for (what, sig) in [
        ("missing", None),
        ("wrong", Some(format!("sha256={}", "0".repeat(64)))),
        ("another secret", signed("not the secret", &push)),
        ("malformed", Some("sha1=abc".to_owned())),
    ] {
        let (st, v) = deliver(&s, "push", &format!("bad-{what}"), &push, sig).await;
        assert_eq!(st, 401, "{what} signature: {v}");
        assert!(v["runs"].as_array().unwrap().is_empty(), "{v}");
    }
    assert_eq!(
        run_count(&s).await,
        0,
        "a refused delivery queued something"
    );

    // The fixture's real signature is accepted (the branch is not one the repo builds).
    let (st, v) = deliver(&s, "push", "good-1", &push, signed(FIXTURE_SECRET, &push)).await;
    assert_eq!(st, 202, "{v}");
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .contains("does not match repos.hello.branches"),
        "{v}"
    );
    let ping = fixture("github/ping_payload.json");
    let (st, v) = deliver(&s, "ping", "ping-1", &ping, signed(FIXTURE_SECRET, &ping)).await;
    assert_eq!(st, 200, "{v}");
    let tag_deletion = fixture("github/push_payload.json");
    let sig = signed(FIXTURE_SECRET, &tag_deletion);
    let (st, v) = deliver(&s, "push", "del-1", &tag_deletion, sig).await;
    assert_eq!(st, 202, "{v}");
    assert!(
        v["verdict"].as_str().unwrap().contains("deletes tag"),
        "{v}"
    );
    // A repository nobody configured: 404.
    let other = String::from_utf8(push.clone())
        .unwrap()
        .replace("Hello-World", "Other");
    let sig = signed(FIXTURE_SECRET, other.as_bytes());
    let (st, v) = deliver(&s, "push", "other-1", other.as_bytes(), sig).await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(run_count(&s).await, 0);

    let deliveries = s.get_ok("/deliveries").await;
    let list = deliveries["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 8, "{deliveries:#}");
    assert_eq!(list[7]["status_code"], 401);
    assert_eq!(
        list[7]["delivery"],
        Value::Null,
        "a refused delivery must not claim its id"
    );
}

#[tokio::test]
async fn a_push_runs_the_repositorys_task_in_a_checkout_of_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let ci = "tasks:\n  test:\n    command: echo \"commit=$BATON_COMMIT branch=$BATON_BRANCH event=$BATON_EVENT ci=$CI\"; cat src/hello.txt; tar --exclude=./.git -cf \"$BATON_OUTPUT_DIR/tree.tar\" .\n";
    let sha = commit(
        &repo,
        &[
            (".baton/ci.yml", ci),
            ("src/hello.txt", "hello from the repo\n"),
            ("README.md", "# app\n"),
        ],
        "first",
    );
    let url = repo.to_str().unwrap().to_owned();
    let s = start(&url);
    let zero = "0".repeat(40);

    let body = push_payload(&url, "main", &zero, &sha, "first");
    let (st, v) = deliver(&s, "push", "push-1", &body, signed(SECRET, &body)).await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    let runs: Vec<i64> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_i64().unwrap())
        .collect();
    assert_eq!(
        runs.len(),
        3,
        "the repo's task, the central one and py4CI's: {v}"
    );

    let mut by_target = std::collections::BTreeMap::new();
    for id in &runs {
        let run = s.wait_run(*id).await;
        by_target.insert(run["target"].as_str().unwrap().to_owned(), run);
    }
    let run = &by_target["app/test"];
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["trigger"], "webhook");
    assert_eq!(run["repo"]["commit"], sha.as_str());
    assert_eq!(run["repo"]["branch"], "main");
    assert_eq!(run["repo"]["git_ref"], "refs/heads/main");
    assert_eq!(run["repo"]["delivery"], "push-1");
    assert_eq!(run["repo"]["author"], "Ada Tester <ada@example.com>");
    assert_eq!(run["repo"]["subject"], "first");
    let id = run["id"].as_i64().unwrap();
    let log = s.log_text(id, None).await;
    assert!(
        log.contains(&format!("commit={sha} branch=main event=push ci=true")),
        "{log}"
    );
    assert!(log.contains("hello from the repo"), "{log}");
    // The job's working directory holds exactly the commit's files.
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let work = tmp.path().join("got/tree");
    untar(&s.job_dir(job, 1).join("out/tree.tar"), &work);
    let expected = tmp.path().join("expected/tree");
    archive_tree(&repo, &sha, &expected);
    assert_eq!(files(&work), files(&expected));
    let central = &by_target["central"];
    assert_eq!(central["status"], "success", "{central:#}");
    let log = s.log_text(central["id"].as_i64().unwrap(), None).await;
    assert!(log.contains(&format!("central saw app at {sha}")), "{log}");
    let legacy = &by_target["legacy"];
    assert_eq!(legacy["status"], "success", "{legacy:#}");
    let log = s.log_text(legacy["id"].as_i64().unwrap(), None).await;
    assert!(log.contains("legacy build of main"), "{log}");
    assert!(!by_target.contains_key("unrelated"));

    // A redelivery answers with the first runs and starts nothing.
    let before = run_count(&s).await;
    let (st, v) = deliver(&s, "push", "push-1", &body, signed(SECRET, &body)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["runs"], json!(runs), "{v}");
    assert!(v["verdict"].as_str().unwrap().contains("redelivery"), "{v}");
    assert_eq!(run_count(&s).await, before);

    // [skip ci] starts nothing, and the delivery says why.
    let skipped = commit(&repo, &[("README.md", "# app 2\n")], "docs only [skip ci]");
    let body = push_payload(&url, "main", &sha, &skipped, "docs only [skip ci]");
    let (st, v) = deliver(&s, "push", "push-2", &body, signed(SECRET, &body)).await;
    assert_eq!(st, 202, "{v}");
    assert!(v["verdict"].as_str().unwrap().contains("[skip ci]"), "{v}");
    assert_eq!(run_count(&s).await, before);
    let deliveries = s.get_ok("/deliveries").await;
    assert!(
        deliveries["deliveries"][0]["verdict"]
            .as_str()
            .unwrap()
            .contains("[skip ci]")
    );

    // A .baton/ with an error gives a failed run whose log shows file:line:col.
    let bad = commit(
        &repo,
        &[(".baton/ci.yml", "tasks:\n  test:\n    comand: make\n")],
        "break the config",
    );
    let body = push_payload(&url, "main", &skipped, &bad, "break the config");
    let (st, v) = deliver(&s, "push", "push-3", &body, signed(SECRET, &body)).await;
    assert_eq!(st, 200, "{v}");
    let ids: Vec<i64> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_i64().unwrap())
        .collect();
    let mut failed = None;
    for id in ids {
        let run = s.wait_run(id).await;
        if run["target"] == "app/.baton" {
            failed = Some(run);
        }
    }
    let failed = failed.unwrap_or_else(|| panic!("no app/.baton run: {v}"));
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let log = s.log_text(failed["id"].as_i64().unwrap(), None).await;
    assert!(
        log.contains(".baton/ci.yml:3:5: unknown key \"comand\""),
        "{log}"
    );
}

/// The deliveries as the API lists them, by forge delivery id.
async fn delivery_row(s: &Server, id: &str) -> Value {
    let all = s.get_ok("/deliveries").await;
    all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["delivery"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no delivery {id}: {all:#}"))
}

/// Processing waits at a gate (`BATON_TEST_DELIVERY_GATE`, read by debug builds only) between
/// accepting a delivery and triggering its runs; the server is SIGKILLed there and restarted.
#[tokio::test]
async fn a_delivery_accepted_before_a_kill_starts_its_runs_once_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let ci = "tasks:\n  test:\n    command: echo built $BATON_COMMIT\n    checkout: false\n";
    let sha = commit(&repo, &[(".baton/ci.yml", ci)], "first");
    let url = repo.to_str().unwrap().to_owned();
    let gate = tmp.path().join("gate");
    let mut s = Server::start_env(
        &config(&url),
        &[
            ("FIXTURE_SECRET", FIXTURE_SECRET),
            ("APP_SECRET", SECRET),
            ("BATON_TEST_DELIVERY_GATE", gate.to_str().unwrap()),
        ],
    );
    let body = push_payload(&url, "main", &"0".repeat(40), &sha, "first");

    // Accepted durably; the answer does not wait for the runs.
    let (st, v) = deliver(&s, "push", "durable-1", &body, signed(SECRET, &body)).await;
    assert_eq!(st, 202, "{v}\n{}", s.stderr());
    assert_eq!(
        (&v["status"], &v["detail"]),
        (&json!("accepted"), &json!("processing"))
    );
    let id = v["delivery"].as_i64().unwrap();
    // A redelivery while it is processed starts nothing and says so.
    let (st, again) = deliver(&s, "push", "durable-1", &body, signed(SECRET, &body)).await;
    assert_eq!(st, 202, "{again}");
    assert_eq!(again["delivery"], id, "{again}");
    assert_eq!(again["detail"], "processing", "{again}");
    assert_eq!(
        run_count(&s).await,
        0,
        "runs started before the gate opened"
    );
    assert_eq!(delivery_row(&s, "durable-1").await["processing"], true);
    let payloads = s.data.join("deliveries");
    let kept: Vec<_> = std::fs::read_dir(&payloads).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept[0].as_ref().unwrap().path();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the payload is readable by others");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        body,
        "the payload is kept byte for byte"
    );

    s.kill9();
    std::fs::write(&gate, "").unwrap();
    s.restart();
    // Pooled connections went with the old process.
    s.http = reqwest::Client::new();

    // The restarted server finishes the delivery: its runs start, once.
    let deadline = std::time::Instant::now() + common::WAIT;
    let row = loop {
        let row = delivery_row(&s, "durable-1").await;
        if row["processing"] == false {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery was never finished: {row:#}\n{}",
            s.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let runs = row["run_ids"].as_array().unwrap().clone();
    assert_eq!(
        runs.len(),
        3,
        "the repo's task, central and legacy: {row:#}"
    );
    assert_eq!(row["status_code"], 200, "{row:#}");
    assert_eq!(run_count(&s).await, 3);
    for r in &runs {
        let run = s.wait_run(r.as_i64().unwrap()).await;
        assert_eq!(run["status"], "success", "{run:#}");
        assert_eq!(run["repo"]["delivery"], "durable-1");
    }
    assert_eq!(std::fs::read_dir(&payloads).unwrap().count(), 0);

    // A kill after its runs were triggered but before the delivery was marked finished (made
    // by putting the delivery back as it was then): the restart starts nothing twice.
    s.kill9();
    std::fs::write(payloads.join("again.body"), &body).unwrap();
    let pending = json!({"payload": "again.body", "headers":
        [["X-GitHub-Event", "push"], ["X-GitHub-Delivery", "durable-1"]]});
    let sql = format!(
        "UPDATE webhook_deliveries SET pending = '{pending}', run_ids = '[]' WHERE id = {id}"
    );
    s.sql(&sql);
    s.restart();
    s.http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + common::WAIT;
    let row = loop {
        let row = delivery_row(&s, "durable-1").await;
        if row["processing"] == false {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never finished: {row:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(row["run_ids"], json!(runs), "{row:#}");
    assert!(
        row["verdict"]
            .as_str()
            .unwrap()
            .contains("started before a restart"),
        "{row:#}"
    );
    assert_eq!(run_count(&s).await, 3);
    assert_eq!(std::fs::read_dir(&payloads).unwrap().count(), 0);

    // A redelivery starts nothing more.
    let (st, v) = deliver(&s, "push", "durable-1", &body, signed(SECRET, &body)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["runs"], json!(runs), "{v}");
    assert_eq!(run_count(&s).await, 3);
}

/// A job's tree goes back to the repository's pool when it ends, and the next job of the repo
/// gets it (the same directory, renamed) with exactly its own commit's files, whatever the job
/// before changed, added or put into `.git`.
#[tokio::test]
async fn the_next_job_reuses_a_tree_and_gets_exactly_its_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    let marker = tmp.path().join("ran");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let ci = format!(
        r#"tasks:
  test:
    command: |
      echo "inode=$(stat -c %i .)"
      tar --exclude=./.git -cf "$BATON_OUTPUT_DIR/tree.tar" .
      echo changed > src/hello.txt; rm README.md; echo junk > untracked.txt
      git config core.fsmonitor "touch {}"
"#,
        marker.display()
    );
    let files_of = [
        (".baton/ci.yml", ci.as_str()),
        ("src/hello.txt", "hello\n"),
        ("README.md", "# app\n"),
    ];
    let first = commit(&repo, &files_of, "first");
    let url = repo.to_str().unwrap().to_owned();
    let s = start(&url);
    let mut inodes = Vec::new();
    let mut before = "0".repeat(40);
    for n in 0..2 {
        let sha = match n {
            0 => first.clone(),
            _ => commit(&repo, &[("src/hello.txt", "hello again\n")], "second"),
        };
        let body = push_payload(&url, "main", &before, &sha, "push");
        let (st, v) = deliver(
            &s,
            "push",
            &format!("reuse-{n}"),
            &body,
            signed(SECRET, &body),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let mut done = Value::Null;
        for id in v["runs"].as_array().unwrap() {
            let run = s.wait_run(id.as_i64().unwrap()).await;
            if run["target"] == "app/test" {
                done = run;
            }
        }
        let id = done["id"].as_i64().unwrap();
        assert_eq!(done["status"], "success", "{done:#}");
        let log = s.log_text(id, None).await;
        let inode = log.lines().find_map(|l| l.strip_prefix("inode=")).unwrap();
        inodes.push(inode.to_owned());
        let got = tmp.path().join(format!("got{n}"));
        let job = done["jobs"][0]["id"].as_i64().unwrap();
        untar(&s.job_dir(job, 1).join("out/tree.tar"), &got);
        let want = tmp.path().join(format!("want{n}"));
        archive_tree(&repo, &sha, &want);
        assert_eq!(files(&got), files(&want), "job {n}");
        before = sha;
        if n == 0 {
            // The tree is handed back once the end is recorded, just after the run turns final.
            let free = s.data.join("repos/app.trees/free");
            for _ in 0..200 {
                if std::fs::read_dir(&free).is_ok_and(|mut d| d.next().is_some()) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(
        inodes[0],
        inodes[1],
        "the second job reused the first one's tree\n{}",
        s.stderr()
    );
    assert!(
        !marker.exists(),
        "the first job's git config ran on the server"
    );
}
