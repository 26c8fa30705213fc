//! A stand-in for Gitea's token API (`POST`/`DELETE /api/v1/users/bot/tokens`, basic auth
//! of user `bot`) as job tokens use it, and a server whose `repos.app` mints them there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};

use super::Server;
use super::standin::{Call, StandIn, only_keys};

/// The repository's webhook secret.
pub const SECRET: &str = "creds-hook-secret";
/// The password of the Gitea user `bot` that mints job tokens.
pub const BOT_PASSWORD: &str = "bot-password-4f2e9a";

/// What the Gitea stand-in handed out and took back.
#[derive(Default)]
pub struct Gitea {
    /// Token id → name.
    pub minted: BTreeMap<i64, String>,
    pub revoked: Vec<i64>,
}

impl Gitea {
    fn handle(&mut self, call: &Call) -> Result<(u16, Value), String> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("bot:{BOT_PASSWORD}"));
        if !call.header("authorization").starts_with("Basic ") {
            return Err(format!("{} {}: no basic auth", call.method, call.path));
        }
        if call.header("authorization") != format!("Basic {basic}") {
            return Ok((
                401,
                json!({"message": "user does not exist [uid: 0, name: bot]"}),
            ));
        }
        match (call.method.as_str(), call.path.as_str()) {
            ("POST", "/api/v1/users/bot/tokens") => {
                only_keys(&call.body, &["name", "scopes"])?;
                let name = call.body["name"].as_str().unwrap_or("").to_owned();
                let well_named = name
                    .strip_prefix("baton-job-")
                    .and_then(|r| r.split_once('-'))
                    .is_some_and(|(j, a)| j.parse::<u64>().is_ok() && a.parse::<u64>().is_ok());
                if !well_named || call.body["scopes"] != json!(["read:repository"]) {
                    return Err(format!("token request {}", call.body));
                }
                if self.minted.values().any(|n| *n == name) {
                    return Ok((
                        422,
                        json!({"message": "access token name has been used already"}),
                    ));
                }
                let id = 40 + self.minted.len() as i64;
                self.minted.insert(id, name.clone());
                let sha1 = format!("{id:0>40}").replace('0', "a");
                Ok((
                    201,
                    json!({"id": id, "name": name, "sha1": sha1, "token_last_eight": &sha1[32..]}),
                ))
            }
            ("DELETE", p) if p.starts_with("/api/v1/users/bot/tokens/") => {
                let id: i64 = p
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .parse()
                    .map_err(|_| format!("DELETE {p}: not an id"))?;
                if !self.minted.contains_key(&id) || self.revoked.contains(&id) {
                    return Ok((404, json!({"message": "token does not exist"})));
                }
                self.revoked.push(id);
                Ok((204, Value::Null))
            }
            (m, p) => Err(format!("unexpected {m} {p}")),
        }
    }
}

pub async fn gitea_server(
    url: &str,
    password_var: &str,
    envs: &[(&str, &str)],
) -> (Server, StandIn, Arc<Mutex<Gitea>>) {
    gitea_server_on("", "127.0.0.1", url, password_var, envs).await
}

/// [`gitea_server`] listening on `host`, its config `before` the repository (workers, say).
pub async fn gitea_server_on(
    before: &str,
    host: &str,
    url: &str,
    password_var: &str,
    envs: &[(&str, &str)],
) -> (Server, StandIn, Arc<Mutex<Gitea>>) {
    let state = Arc::new(Mutex::new(Gitea::default()));
    let st = state.clone();
    let forge = StandIn::start(Arc::new(move |call: &Call| st.lock().unwrap().handle(call))).await;
    let config = format!(
        "{before}repos:\n  app:\n    url: {url}\n    forge: gitea\n    secret: env:APP_SECRET\n    api: {}\n    job_tokens:\n      user: bot\n      password: env:{password_var}\n",
        forge.base
    );
    let mut all = vec![("APP_SECRET", SECRET)];
    all.extend_from_slice(envs);
    (Server::start_on_env(&config, host, &all), forge, state)
}

/// The rows of minted job tokens not revoked yet.
/// Waits (bounded) until no job credential is recorded: the server deletes a record right
/// after the forge confirmed the revocation, so a test that saw the revocation waits for it.
pub async fn wait_no_recorded_tokens(s: &Server) {
    for _ in 0..600 {
        if recorded_tokens(s).await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "job credentials are still recorded after their revocation: {}",
        recorded_tokens(s).await
    );
}

pub async fn recorded_tokens(s: &Server) -> i64 {
    let db = format!("sqlite://{}?mode=ro", s.data.join("baton.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM job_creds")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}
