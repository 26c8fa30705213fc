//! The commands that work on the server's data directory directly (users and tokens). They never
//! create one: a missing directory is a mistake (the wrong folder, a missing `--data`), and a
//! new empty one would hold users and tokens the server never sees.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use baton_store::Store;

use crate::{DataArgs, TokenCommand, UserCommand};

use baton_store::MIN_PASSWORD_CHARS;

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Opens the store of an existing data directory.
async fn open(d: &DataArgs) -> anyhow::Result<Store> {
    let db = d.data.join("baton.db");
    if !db.is_file() {
        bail!(
            "no Baton data directory at {} (no baton.db in it; looked there because of {}). \
             Pass the server's with --data DIR or BATON_DATA=DIR; `baton serve --data DIR` makes a new one",
            absolute(&d.data).display(),
            if std::env::var_os("BATON_DATA").is_some() {
                "BATON_DATA"
            } else {
                "--data, default ./baton-data"
            }
        );
    }
    Store::open(&db)
        .await
        .with_context(|| format!("cannot open {}", db.display()))
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
