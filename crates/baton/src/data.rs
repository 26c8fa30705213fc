//! The commands that work on the server's data directory directly (users and tokens). They never
//! create one: a missing directory is a mistake (the wrong folder, a missing `--data`), and a
//! new empty one would hold users and tokens the server never sees.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use baton_store::{Database, Store};

use crate::{DataArgs, TokenCommand, UserCommand};

use baton_store::MIN_PASSWORD_CHARS;

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Where the store is: `--db`/`BATON_DB`, else the data directory's SQLite file.
fn database(d: &DataArgs) -> Database {
    match &d.db {
        Some(db) => Database::parse(db),
        None => Database::in_data_dir(&d.data),
    }
}

/// Says why there is no store to open: a SQLite file that does not exist (never created here).
fn check_exists(d: &DataArgs, db: &Database) -> anyhow::Result<()> {
    refuse_missing(&d.data, d.db.is_some(), db)
}

/// [`check_exists`] for commands with their own `--data` and `--db` (`baton prune --data`):
/// `db_given` says whether the database was named apart from the data directory.
pub(crate) fn refuse_missing(data: &Path, db_given: bool, db: &Database) -> anyhow::Result<()> {
    let Database::Sqlite(file) = db else {
        return Ok(());
    };
    if file.is_file() {
        return Ok(());
    }
    if db_given {
        bail!(
            "no Baton database at {} (from --db or BATON_DB); pass the file `baton serve` uses",
            absolute(file).display()
        );
    }
    bail!(
        "no Baton data directory at {} (no baton.db in it; looked there because of {}). \
         Pass the server's with --data DIR or BATON_DATA=DIR (or its database with --db); \
         `baton serve --data DIR` makes a new one",
        absolute(data).display(),
        if std::env::var_os("BATON_DATA").is_some() {
            "BATON_DATA"
        } else {
            "--data, default ./baton-data"
        }
    );
}

/// Opens the store of an existing server.
async fn open(d: &DataArgs) -> anyhow::Result<Store> {
    let db = database(d);
    check_exists(d, &db)?;
    Store::connect(&db)
        .await
        .with_context(|| format!("cannot open {db}"))
}

/// `baton migrate [--dry-run]`: the migrations the database lacks, listed or applied. A SQLite
/// file is created in an existing data directory; a PostgreSQL database must exist.
pub(crate) async fn migrate(d: &DataArgs, dry_run: bool) -> anyhow::Result<ExitCode> {
    let db = database(d);
    if let Database::Sqlite(file) = &db
        && !file.is_file()
        && (dry_run
            || !file
                .parent()
                .is_some_and(|p| p.as_os_str().is_empty() || p.is_dir()))
    {
        check_exists(d, &db)?;
    }
    let store = Store::connect_unmigrated(&db)
        .await
        .with_context(|| format!("cannot open {db}"))?;
    let pending = store.pending_migrations().await?;
    if pending.is_empty() {
        println!("{db}: up to date");
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would apply" } else { "applying" };
    for m in &pending {
        println!("{verb} {:04} {}", m.version, m.description);
    }
    if !dry_run {
        store
            .migrate()
            .await
            .with_context(|| format!("migrating {db}"))?;
        println!("{db}: {} migrations applied", pending.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `baton backup DEST`: the database (SQLite: `VACUUM INTO`, a consistent copy taken while the
/// server runs; PostgreSQL: `pg_dump --format=custom`) and the data directory's other files.
pub(crate) async fn backup(d: &DataArgs, dest: &Path) -> anyhow::Result<ExitCode> {
    let db = database(d);
    check_exists(d, &db)?;
    if !d.data.is_dir() {
        bail!(
            "no Baton data directory at {} (its logs and artifacts are part of a backup); pass the server's with --data DIR",
            absolute(&d.data).display()
        );
    }
    if dest.exists() {
        bail!(
            "{} already exists; name a new directory for the backup",
            dest.display()
        );
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let dump = match &db {
        Database::Sqlite(_) => {
            let store = open(d).await?;
            let file = dest.join("baton.db");
            store
                .backup_sqlite(&file)
                .await
                .with_context(|| format!("backing up {db}"))?;
            file
        }
        Database::Postgres(url) => {
            let file = dest.join("baton.pgdump");
            pg_dump(url, &file).with_context(|| format!("backing up {db}"))?;
            file
        }
    };
    // The files: logs, artifacts, results, mirrors; never the live SQLite files.
    let mut files = 0u64;
    copy_tree(&d.data, &dest.join("data"), true, &mut files)?;
    eprintln!(
        "backed up {db} into {} and {files} files of {} into {}",
        dump.display(),
        d.data.display(),
        dest.join("data").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `pg_dump --format=custom` of `url` into `file` (restore: `pg_restore --dbname URL FILE`
/// into an empty database). The password goes in PGPASSWORD, never in argv.
fn pg_dump(url: &str, file: &Path) -> anyhow::Result<()> {
    let (url, password) = baton_store::split_password(url);
    let program = pg_tool("pg_dump");
    let mut cmd = std::process::Command::new(&program);
    // Leases are who runs the scheduler now: a restored database starts without one.
    cmd.arg("--format=custom")
        .arg("--no-owner")
        .arg("--exclude-table-data=leases")
        .arg("--file")
        .arg(file)
        .arg("--dbname")
        .arg(&url);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {} (install PostgreSQL's client tools: Debian's postgresql-client)",
            program.display()
        )
    })?;
    if !out.status.success() {
        bail!(
            "pg_dump failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A PostgreSQL client program: on PATH, else the newest under /usr/lib/postgresql (Debian
/// keeps them there, with a wrapper on PATH only with postgresql-client-common).
fn pg_tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if on_path {
        return PathBuf::from(name);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((v, p))
        })
        .collect();
    found.sort();
    found.pop().map_or_else(|| PathBuf::from(name), |(_, p)| p)
}

fn copy_tree(from: &Path, to: &Path, top: bool, files: &mut u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if top
            && ["baton.db", "baton.db-wal", "baton.db-shm"]
                .iter()
                .any(|n| name == *n)
        {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, false, files)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            // A file that went away meanwhile (a pruned run) is not an error.
            match std::fs::copy(entry.path(), &target) {
                Ok(_) => *files += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot copy {}", entry.path().display()));
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { name, user, data } => {
            let store = open(&data).await?;
            let token = store.create_user_token(&name, user.as_deref()).await?;
            println!("{token}");
        }
        TokenCommand::List { data } => {
            let store = open(&data).await?;
            let mut rows = vec![vec![
                "ID".into(),
                "NAME".into(),
                "USER".into(),
                "CREATED".into(),
            ]];
            for t in store.all_tokens().await? {
                rows.push(vec![
                    t.id.to_string(),
                    t.name,
                    t.user.unwrap_or_else(|| "(operator)".into()),
                    crate::text::local_time(t.created_at),
                ]);
            }
            print!("{}", crate::text::table(&rows));
        }
        TokenCommand::Revoke { id, data } => {
            let store = open(&data).await?;
            if !store.revoke_token(id).await? {
                bail!("no live token {id} (see `baton token list`)");
            }
            eprintln!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn user(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            data,
        } => {
            let store = open(&data).await?;
            let password = crate::password::read(password_stdin)?;
            let n = password.chars().count();
            if n < MIN_PASSWORD_CHARS {
                bail!(
                    "the password has {n} characters; a password needs at least {MIN_PASSWORD_CHARS}"
                );
            }
            if store.upsert_user(&name, &password).await? {
                eprintln!("user {name} added");
            } else {
                eprintln!("password of {name} changed; their sessions ended");
            }
        }
        UserCommand::List { data } => {
            let store = open(&data).await?;
            let mut rows = vec![vec!["NAME".into(), "CREATED".into()]];
            for u in store.users().await? {
                rows.push(vec![u.name, crate::text::local_time(u.created_at)]);
            }
            print!("{}", crate::text::table(&rows));
        }
        UserCommand::Remove { name, data } => {
            let store = open(&data).await?;
            if !store.remove_user(&name).await? {
                bail!("no user {name:?} (see `baton user list`)");
            }
            eprintln!("user {name} removed, with their sessions and tokens");
        }
    }
    Ok(ExitCode::SUCCESS)
}
