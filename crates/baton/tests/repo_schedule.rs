//! `on: schedule:` in a repository's `.baton/`, end to end with the real binary and real git:
//! a fetch (here a hand trigger's) makes the scheduled task a timer that runs the watched
//! branch's head (checked out, event `schedule`); a later commit's definition replaces it; a
//! restart picks it up from the mirror without a fetch; a commit that removes the schedule stops
//! it. The cron fires every second, so time runs at its real pace and nothing asserts how long
//! anything took: the runs are ordered by their ids, which the scheduler gives in order.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::gitrepo::{commit_text, init};
use common::{Server, WAIT, id_of};

fn ci(tick: &str) -> String {
    format!(
        "tasks:
  build:
    command: echo build
    checkout: false
{tick}"
    )
}

const TICK: &str = "  tick:
    command: echo \"tick $BATON_EVENT $BATON_BRANCH $BATON_COMMIT\"; cat version.txt
    on: {schedule: [\"* * * * * *\"]}
";

/// The scheduled runs of `app/tick`, newest first.
async fn ticks(s: &Server) -> Vec<Value> {
    s.get_ok("/runs?task=app%2Ftick&trigger=schedule&limit=500")
        .await["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The first scheduled run of `app/tick` with an id above `after`.
async fn tick_after(s: &Server, after: i64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut later: Vec<Value> = ticks(s)
            .await
            .into_iter()
            .filter(|r| id_of(r) > after)
            .collect();
        if let Some(r) = later.pop() {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled run after run {after}; stderr:\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Triggers `app/build` at `main` by hand (which fetches the mirror); its run id.
async fn build(s: &Server) -> i64 {
    let (st, run) = s
        .post("/tasks/app%2Fbuild/trigger", json!({"ref": "main"}))
        .await;
    assert_eq!(st, 201, "{run}\n{}", s.stderr());
    id_of(&run)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_schedule_runs_the_branch_head_follows_new_commits_and_stops_when_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    let one = commit_text(
        &repo,
        &[(".baton/ci.yml", &ci(TICK)), ("version.txt", "one\n")],
        "one",
    );
    let url = repo.to_str().unwrap();
    let mut s = Server::start(&format!(
        "server: {{local_workers: 4}}\nrepos:\n  app:\n    url: {url}\n    forge: git\n"
    ));

    // Before any fetch nothing is known of the repository's schedules.
    assert!(
        ticks(&s).await.is_empty(),
        "a schedule fired before a fetch"
    );
    let first_build = build(&s).await;
    let run = tick_after(&s, first_build).await;
    let run = s.wait_run(id_of(&run)).await;
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["target"], "app/tick");
    assert_eq!(run["trigger"], "schedule");
    assert_eq!(run["repo"]["commit"], one.as_str());
    assert_eq!(run["repo"]["branch"], "main");
    assert_eq!(run["repo"]["event"], "schedule");
    let log = s.log_text(id_of(&run), None).await;
    assert_eq!(log, format!("tick schedule main {one}\none\n"));

    // A new commit with another definition: later slots build it, with its command.
    let tick_two = TICK.replace("\"tick", "\"tock");
    let two = commit_text(
        &repo,
        &[(".baton/ci.yml", &ci(&tick_two)), ("version.txt", "two\n")],
        "two",
    );
    let second_build = build(&s).await;
    let run = s.wait_run(id_of(&tick_after(&s, second_build).await)).await;
    assert_eq!(run["repo"]["commit"], two.as_str(), "{run:#}");
    let log = s.log_text(id_of(&run), None).await;
    assert_eq!(log, format!("tock schedule main {two}\ntwo\n"));

    // A restart reads the schedules from the mirror: no fetch, no new commit needed.
    s.restart();
    let newest = id_of(&ticks(&s).await[0]);
    let run = tick_after(&s, newest).await;
    assert_eq!(run["repo"]["commit"], two.as_str(), "{run:#}");

    // A commit without the schedule: once fetched, nothing fires any more.
    commit_text(&repo, &[(".baton/ci.yml", &ci(""))], "three");
    let third_build = build(&s).await;
    s.wait_run(third_build).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late: Vec<i64> = ticks(&s)
        .await
        .iter()
        .map(id_of)
        .filter(|id| *id > third_build)
        .collect();
    assert!(
        late.is_empty(),
        "runs {late:?} fired after the schedule was removed"
    );
}
