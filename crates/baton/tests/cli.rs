//! The CLI as a user meets it: help, refusals with what to do, tables, a pipeline followed job by
//! job, completions and the man page. Outputs that do not depend on time are `insta` snapshots.

mod common;
#[path = "common/users.rs"]
mod users;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;

fn run(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("BATON_DATA")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run baton");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CONFIG: &str = r#"
tasks:
  hello:
    description: says hello
    command: echo hello
pipelines:
  build:
    description: fetches and compiles
    tasks:
      fetch: {script: ["echo fetched; echo twice"]}
      compile: {script: ["echo compiled"], depends_on: [fetch]}
"#;

#[test]
fn help_describes_baton_and_every_option() {
    let o = run(&["--help"], &[], "");
    assert!(o.status.success());
    insta::assert_snapshot!("help", out(&o));
    let o = run(&["runs", "--help"], &[], "");
    insta::assert_snapshot!("help_runs", out(&o));
}

#[test]
fn data_dir_commands_never_create_a_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let m = missing.to_str().unwrap();
    for args in [
        vec!["token", "create", "--data", m],
        vec!["token", "list", "--data", m],
        vec!["user", "list", "--data", m],
    ] {
        let o = run(&args, &[], "");
        assert!(!o.status.success(), "{args:?}");
        let e = err(&o);
        assert!(
            e.contains(&format!("no Baton data directory at {m}")),
            "{e}"
        );
        assert!(e.contains("--data DIR or BATON_DATA=DIR"), "{e}");
        assert!(!missing.exists(), "{args:?} created {m}");
    }
    // BATON_DATA is read too, and named as where the command looked.
    let o = run(&["token", "create"], &[("BATON_DATA", m)], "");
    assert!(err(&o).contains("because of BATON_DATA"), "{}", err(&o));
    assert!(!missing.exists());
}

#[tokio::test]
async fn users_and_tokens_are_listed_and_removed() {
    let s = Server::start(CONFIG);
    let data = s.data.to_str().unwrap().to_owned();
    // On PostgreSQL (BATON_TEST_DB) the commands also need the server's database.
    let db: Vec<(&str, &str)> = s.db.iter().map(|d| ("BATON_DB", d.as_str())).collect();
    let o = run(
        &["user", "add", "ann", "--password-stdin", "--data", &data],
        &db,
        "short\n",
    );
    assert!(!o.status.success());
    insta::assert_snapshot!("short_password", err(&o));
    users::add_user(&s, "ann", "pw");
    users::add_user(&s, "bob", "pw");
    let t = users::user_token(&s, "bob");
    assert!(t.starts_with("baton_"));
    let o = run(
        &["user", "list"],
        &[db.as_slice(), &[("BATON_DATA", &data)]].concat(),
        "",
    );
    let users = out(&o);
    let names: Vec<&str> = users
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["NAME", "ann", "bob"]);
    let o = run(&["token", "list", "--data", &data], &db, "");
    let list = out(&o);
    assert!(list.starts_with("ID  NAME"), "{list}");
    assert!(
        list.contains("(operator)") && list.contains(" bob "),
        "{list}"
    );
    assert!(
        list.lines().all(|l| !l.ends_with(' ')),
        "trailing spaces:\n{list}"
    );
    let bob_id = list
        .lines()
        .find(|l| l.contains(" bob "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let o = run(&["token", "revoke", &bob_id, "--data", &data], &db, "");
    assert!(o.status.success(), "{}", err(&o));
    let st = s
        .http
        .get(s.url("/runs"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(st, 401, "a revoked token is refused");
    let o = run(&["user", "remove", "ann", "--data", &data], &db, "");
    assert!(o.status.success(), "{}", err(&o));
    let o = run(&["user", "list", "--data", &data], &db, "");
    assert!(!out(&o).contains("ann"));
}

#[tokio::test]
async fn pipelines_are_followed_job_by_job_and_listed() {
    let s = Server::start(CONFIG);
    let o = s.cli(&["tasks"]);
    assert!(o.status.success(), "{}", err(&o));
    insta::assert_snapshot!("tasks", out(&o));

    let o = s.cli(&["trigger", "build", "--follow"]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    for line in ["fetch   | fetched", "fetch   | twice", "compile | compiled"] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    let header = text
        .lines()
        .find(|l| l.starts_with("JOB"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    assert_eq!(header, "JOB      STATUS   DURATION  WORKER   EXIT  REASON");
    assert!(
        text.lines().any(|l| l.starts_with("compile  success")),
        "{text}"
    );

    // `logs` of a pipeline names the option and the jobs.
    let o = s.cli(&["logs", "1"]);
    assert!(!o.status.success());
    insta::assert_snapshot!("logs_of_a_pipeline", err(&o));
    let o = s.cli(&["logs", "1", "--job", "compile"]);
    assert_eq!(out(&o), "compiled\n");

    // `show`: jobs in the order they ran, no `null`s; `runs`: aligned, with a duration.
    let o = s.cli(&["show", "1"]);
    let shown = out(&o);
    assert!(!shown.contains("null"), "{shown}");
    let fetch = shown.find("fetch ").unwrap();
    assert!(fetch < shown.find("compile ").unwrap(), "{shown}");
    let o = s.cli(&["runs"]);
    let runs = out(&o);
    assert!(
        runs.starts_with("ID  TARGET  STATUS   TRIGGER  QUEUED"),
        "{runs}"
    );
    assert!(runs.contains("DURATION"), "{runs}");
    assert!(
        runs.lines().all(|l| !l.ends_with(' ')),
        "trailing spaces:\n{runs}"
    );
}

#[tokio::test]
async fn cancel_says_the_run_is_being_canceled_and_can_wait() {
    let s = Server::start("tasks:\n  sleepy: {command: \"sleep 300\"}\n");
    let id = id_of(&s.trigger("sleepy", &[]).await);
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;
    let o = s.cli(&["cancel", &id.to_string(), "--wait"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        format!("run {id} is being canceled (it was running)\nrun {id}: canceled\n")
    );
}

#[test]
fn completions_and_man_page() {
    let o = run(&["completions", "bash"], &[], "");
    assert!(o.status.success());
    assert!(out(&o).contains("_baton()"), "{}", out(&o));
    let o = run(&["completions", "zsh"], &[], "");
    assert!(out(&o).contains("#compdef baton"));
    let o = run(&["man"], &[], "");
    assert!(o.status.success());
    let man = out(&o);
    assert!(man.starts_with(".ie") || man.contains(".TH baton"), "{man}");
}
