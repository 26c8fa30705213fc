//! The database choice end to end: a server on PostgreSQL (`--db`) keeps its runs across a
//! SIGKILL, and `baton migrate` and `baton backup` work on both databases, a backup restoring
//! into a server that finds every run. The PostgreSQL tests need `BATON_TEST_PG` (scripts/test.sh
//! starts a throwaway cluster) and fail without it.

mod common;

use std::path::{Path, PathBuf};

use std::process::{Command, Output};

use common::*;

const CONFIG: &str = r#"
tasks:
  hello:
    command: echo hello from the store test
"#;

fn baton(args: &[std::ffi::OsString]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("BATON_DATA")
        .env_remove("BATON_DB")
        .output()
        .expect("run baton")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "baton failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn args(words: &[&str], rest: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    words.iter().map(Into::into).chain(rest).collect()
}

async fn one_run(s: &Server) -> i64 {
    let run = s.trigger("hello", &[]).await;
    let id = id_of(&run);
    let done = s.wait_run(id).await;
    assert_eq!(status(&done), "success", "{done}");
    id
}

#[tokio::test]
async fn a_server_on_postgres_keeps_its_runs_and_tokens_across_a_kill() {
    let mut s = Server::start_with_db(CONFIG, Some(fresh_postgres()));
    let id = one_run(&s).await;
    assert!(
        s.stderr().contains("database: postgres://"),
        "{}",
        s.stderr()
    );
    // Nothing of the store went to the data directory.
    assert!(!s.data.join("baton.db").exists());
    s.restart();
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run}");
    assert!(
        s.log_text(id, None)
            .await
            .contains("hello from the store test")
    );
    // The token made before the kill still works (it is in PostgreSQL, hashed).
    let later = one_run(&s).await;
    assert!(later > id);
}

async fn migrate_and_backup(db: Option<String>) {
    let s = Server::start_with_db(CONFIG, db.clone());
    let id = one_run(&s).await;
    let out = ok(&baton(&args(&["migrate", "--dry-run"], s.data_args())));
    assert!(out.contains("up to date"), "{out}");
    let keep = tempfile::tempdir().unwrap();
    let dest = keep.path().join("backup");
    ok(&baton(&args(
        &["backup", dest.to_str().unwrap()],
        s.data_args(),
    )));
    // The job's log is in the backup's files; the database is dumped beside them.
    let job = job(&s.run(id).await, "hello")["id"].as_i64().unwrap();
    let log = find_file(&dest.join("data").join("jobs").join(job.to_string()), "log");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("hello from the store test")
    );
    // A backup never overwrites.
    let again = baton(&args(&["backup", dest.to_str().unwrap()], s.data_args()));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    drop(s);

    // Restore as docs/database.md says, into a new data directory (and database), and start a
    // server on it: the run is there with its log.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    copy(&dest.join("data"), &data);
    let restored_db = match &db {
        None => {
            std::fs::copy(dest.join("baton.db"), data.join("baton.db")).unwrap();
            None
        }
        Some(_) => {
            let url = fresh_postgres();
            let o = Command::new(pg_bin("pg_restore"))
                .args(["--no-owner", "--dbname", &url])
                .arg(dest.join("baton.pgdump"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            Some(url)
        }
    };
    let s = Server::start_on_data(CONFIG, restored_db, &data);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run}");
    assert!(
        s.log_text(id, None)
            .await
            .contains("hello from the store test")
    );
}

fn find_file(dir: &Path, name: &str) -> PathBuf {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            let f = p.join(name);
            if f.is_file() {
                return f;
            }
        }
    }
    panic!("no {name} under {}", dir.display())
}

fn copy(from: &Path, to: &Path) {
    let o = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test]
async fn migrate_and_backup_on_sqlite_restore_every_run() {
    migrate_and_backup(None).await;
}

#[tokio::test]
async fn migrate_and_backup_on_postgres_restore_every_run() {
    migrate_and_backup(Some(fresh_postgres())).await;
}

#[test]
fn migrate_dry_run_lists_what_an_empty_postgres_database_lacks_and_changes_nothing() {
    let url = fresh_postgres();
    let data = tempfile::tempdir().unwrap();
    let base: Vec<std::ffi::OsString> = vec![
        "--data".into(),
        data.path().into(),
        "--db".into(),
        url.clone().into(),
    ];
    let out = ok(&baton(&args(&["migrate", "--dry-run"], base.clone())));
    assert!(out.contains("would apply 0001 init"), "{out}");
    let again = ok(&baton(&args(&["migrate", "--dry-run"], base.clone())));
    assert_eq!(out, again, "a dry run changed the database");
    let applied = ok(&baton(&args(&["migrate"], base.clone())));
    assert!(applied.contains("applying 0001 init"), "{applied}");
    let now = ok(&baton(&args(&["migrate", "--dry-run"], base.clone())));
    assert!(now.contains("up to date"), "{now}");
    // Users and tokens work on it through --db.
    ok(&baton(&args(
        &["token", "create", "--name", "ops"],
        base.clone(),
    )));
    let list = ok(&baton(&args(&["token", "list"], base)));
    assert!(list.contains("ops"), "{list}");
}
