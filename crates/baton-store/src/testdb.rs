//! The store's tests run on both databases: each test is an `async fn(TestDb)`, and
//! [`on_both!`] makes a `sqlite` and a `postgres` test of it. The PostgreSQL one needs a server
//! (`BATON_TEST_PG`, which scripts/test.sh sets to a throwaway cluster) and fails when it is
//! not set: it never passes by skipping.

use std::path::PathBuf;

use crate::{Database, Store};

pub(crate) struct TestDb {
    pub db: Database,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            db: Database::Sqlite(dir.path().join("baton.db")),
            _dir: dir,
        }
    }

    pub async fn postgres() -> TestDb {
        let db = crate::testing::fresh_postgres()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        TestDb {
            db,
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Opens the store (again: a reopen sees only what was committed).
    pub async fn open(&self) -> Store {
        Store::connect(&self.db)
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.db))
    }

    /// The SQLite file, if that is where the store is.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.db {
            Database::Sqlite(p) => Some(p.clone()),
            Database::Postgres(_) => None,
        }
    }

    /// Whether `needle` is anywhere in the database: SQLite's file and WAL bytes, or every
    /// text column of every table of the PostgreSQL database.
    pub async fn holds(&self, needle: &str) -> bool {
        if let Some(path) = self.sqlite_path() {
            let bytes = std::fs::read(&path).unwrap();
            let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
            let hay = [bytes, wal].concat();
            return hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        }
        let store = self.open().await;
        let cols: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND data_type = 'text'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert!(!cols.is_empty(), "no text columns found");
        for (table, column) in cols {
            let sql =
                format!("SELECT COUNT(*) FROM \"{table}\" WHERE strpos(\"{column}\", $1) > 0");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(needle)
                .fetch_one(store.pool())
                .await
                .unwrap();
            if n > 0 {
                return true;
            }
        }
        false
    }
}

/// For each `async fn NAME(db: TestDb)` listed, a module `NAME` with a `sqlite` and a
/// `postgres` test.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::testdb::TestDb::sqlite().await).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::testdb::TestDb::postgres().await).await
                }
            }
        )*
    };
}
pub(crate) use on_both;
