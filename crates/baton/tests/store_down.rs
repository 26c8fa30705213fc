//! A database that refuses writes: nothing is acknowledged or started that is not recorded.
//! The test holds the real SQLite file's write lock from another connection (`BEGIN
//! EXCLUSIVE`), so the server's writes fail once its busy timeout runs out.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Server, id_of, status};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

const CONFIG: &str = r#"
server: {local_workers: 2}
tasks:
  mark:
    command: touch "$dir/$name"
"#;

/// Takes the database's write lock and holds it until the connection rolls back.
async fn lock_database(db: &Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", db.display()));
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .expect("take the database's write lock");
    conn
}

async fn runs_named(s: &Server, name: &str) -> Vec<Value> {
    let runs = s.get_ok("/runs?task=mark&limit=100").await;
    runs["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["args"]["name"] == name)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_write_fails_the_trigger_and_starts_nothing() {
    let s = Server::start(CONFIG);
    let marks = s.root.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let dir = marks.to_str().unwrap();

    let before = s.trigger("mark", &[("dir", dir), ("name", "before")]).await;
    let before = s.wait_run(id_of(&before)).await;
    assert_eq!(status(&before), "success", "{before:#}");

    let mut lock = lock_database(&s.data.join("baton.db")).await;
    let (st, v) = s
        .post(
            "/tasks/mark/trigger",
            json!({"args": {"dir": dir, "name": "outage"}}),
        )
        .await;
    assert_eq!(
        st,
        503,
        "a trigger the store could not record: {v:#}\n{}",
        s.stderr()
    );
    assert_eq!(v["error"]["code"], "store_unavailable", "{v:#}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("release the write lock");
    drop(lock);

    // Triggers work again; the run acknowledged before the outage is intact.
    let after = s.trigger("mark", &[("dir", dir), ("name", "after")]).await;
    let after = s.wait_run(id_of(&after)).await;
    assert_eq!(status(&after), "success", "{after:#}");
    assert!(marks.join("after").exists(), "the later run did not run");
    let again = s.run(id_of(&before)).await;
    assert_eq!(status(&again), "success", "{again:#}");
    assert_eq!(again["jobs"], before["jobs"], "the earlier run changed");

    // The refused trigger left nothing: no run, no job folder, and its job never ran.
    assert!(
        runs_named(&s, "outage").await.is_empty(),
        "the refused trigger was recorded"
    );
    assert!(
        !marks.join("outage").exists(),
        "the refused trigger's job ran"
    );
    let recorded: Vec<String> = [&before, &after]
        .iter()
        .flat_map(|r| r["jobs"].as_array().unwrap().iter())
        .map(|j| j["id"].to_string())
        .collect();
    for e in std::fs::read_dir(s.data.join("jobs")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            recorded.contains(&name),
            "job folder {name} belongs to no recorded run (recorded jobs: {recorded:?})"
        );
    }
}
