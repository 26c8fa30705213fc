//! Which database a store lives in (`--db`, `server.database`, `BATON_DB`), its migrations,
//! and the few places where SQLite and PostgreSQL SQL differ.
//!
//! One implementation over sqlx's Any driver: every statement is written once, in SQL both
//! databases read (numbered `$N` placeholders, `BIGINT` times in ms, `ON CONFLICT` upserts), and
//! each database has its own migrations directory with the same numbered steps.

use std::fmt;
use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;

use crate::{Result, Store};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The kind of database behind a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        }
    }
}

/// Where a store's database is: a SQLite file (the embedded default, `<data>/baton.db`) or a
/// PostgreSQL database given by its URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` or `postgres:///DB?host=/run/postgresql`.
    Postgres(String),
}

impl Database {
    /// Reads `--db`: a `postgres://` or `postgresql://` URL, a `sqlite:` URL, or a file path.
    pub fn parse(s: &str) -> Database {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Database::Postgres(s.to_string());
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .unwrap_or(s);
        Database::Sqlite(PathBuf::from(path))
    }

    /// The SQLite file of a data directory: the default database.
    pub fn in_data_dir(data: &Path) -> Database {
        Database::Sqlite(data.join("baton.db"))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Database::Sqlite(_) => Backend::Sqlite,
            Database::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL sqlx connects to (SQLite: created if missing).
    pub(crate) fn url(&self) -> String {
        match self {
            Database::Sqlite(p) => {
                let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                let mut url = String::from("sqlite://");
                for b in abs.to_string_lossy().bytes() {
                    if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
                        url.push(b as char);
                    } else {
                        url.push_str(&format!("%{b:02X}"));
                    }
                }
                url.push_str("?mode=rwc");
                url
            }
            Database::Postgres(u) => u.clone(),
        }
    }
}

/// Shows where the database is, never a password in a URL.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(u) => f.write_str(&redact_url(u)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

/// `scheme://user:***@host/...`: the URL without its password.
pub(crate) fn redact_url(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else {
        return u.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    // A password can also be a query parameter.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `url` without its password, and the password (percent-decoded): for tools such as
/// `pg_dump`, which get it in `PGPASSWORD` rather than on their command line.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some((user, host)) = authority.rsplit_once('@')
        && let Some((name, password)) = user.split_once(':')
    {
        return (
            format!("{scheme}://{name}@{host}{tail}"),
            Some(percent_decode(password)),
        );
    }
    (url.to_string(), None)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A migration the database has not had yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMigration {
    pub version: i64,
    pub description: String,
}

impl Store {
    /// Writes a consistent copy of a SQLite store to `file` while it is in use (`VACUUM INTO`).
    /// The copy holds no lease: a server restored from it takes the scheduler lease at once.
    pub async fn backup_sqlite(&self, file: &Path) -> Result<()> {
        sqlx::query("VACUUM INTO $1")
            .bind(file.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await?;
        let copy = Store::connect_unmigrated(&Database::Sqlite(file.to_path_buf())).await?;
        sqlx::query("DELETE FROM leases")
            .execute(&copy.pool)
            .await?;
        copy.pool.close().await;
        Ok(())
    }

    /// Applies the migrations this database lacks (under sqlx's lock: on PostgreSQL an
    /// advisory lock, so servers starting together migrate once).
    pub async fn migrate(&self) -> Result<()> {
        self.backend.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// The migrations [`Store::migrate`] would apply, in order, changing nothing.
    pub async fn pending_migrations(&self) -> Result<Vec<PendingMigration>> {
        let exists: i64 = sqlx::query_scalar(match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        })
        .fetch_one(&self.pool)
        .await?;
        let applied: Vec<i64> = if exists > 0 {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(self
            .backend
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(|m| PendingMigration {
                version: m.version,
                description: m.description.to_string(),
            })
            .collect())
    }
}

/// For tests (the store's and the end-to-end suite's): fresh PostgreSQL databases on the server
/// `BATON_TEST_PG` names.
#[doc(hidden)]
pub mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    use sqlx::Connection;
    use sqlx::postgres::PgConnection;

    use super::Database;

    /// The variable naming the test PostgreSQL server (an admin URL, e.g.
    /// `postgres://baton@localhost/postgres?host=/tmp/pg`).
    pub const TEST_PG_VAR: &str = "BATON_TEST_PG";

    /// Creates a new, empty database on `BATON_TEST_PG`'s server and names it. Fails (never
    /// skips) when the variable is not set or the server cannot be reached.
    pub async fn fresh_postgres() -> Result<Database, String> {
        let admin = std::env::var(TEST_PG_VAR).map_err(|_| {
            format!(
                "{TEST_PG_VAR} is not set: this test needs a PostgreSQL server (scripts/test.sh \
                 starts a throwaway one and sets it; or run scripts/pg-test-cluster.sh and export \
                 what it prints)"
            )
        })?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "baton_t_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let redacted = super::redact_url(&admin);
        let mut conn = PgConnection::connect(&admin)
            .await
            .map_err(|e| format!("cannot reach {TEST_PG_VAR} ({redacted}): {e}"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("cannot create database {name} on {redacted}: {e}"))?;
        let _ = conn.close().await;
        Ok(Database::Postgres(with_database(&admin, &name)))
    }

    /// `url` with its database (the path) replaced by `name`.
    pub fn with_database(url: &str, name: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let query = tail.split_once('?').map(|(_, q)| q);
        match query {
            Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
            None => format!("{scheme}://{authority}/{name}"),
        }
    }
}
