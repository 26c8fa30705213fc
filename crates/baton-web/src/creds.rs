//! Per-job forge credentials over HTTP: the server's implementation of
//! [`baton_sched::ForgeCreds`], with the requests `baton_forge` builds.
//!
//! - `github_app`: an installation token scoped to the one repository, with the configured
//!   permissions, in `BATON_FORGE_TOKEN` and `GITHUB_TOKEN`; revoked when the job ends. Nothing
//!   is stored: GitHub lets it expire after an hour if the server died first.
//! - `job_tokens`: a Gitea/Forgejo token `baton-job-JOB-ATTEMPT` with the configured scopes, in
//!   `BATON_FORGE_TOKEN`. It never expires, so it is recorded (name, then id; never the token)
//!   before the forge is asked, and the sweeper ([`spawn_sweeper`]) revokes every recorded token
//!   whose job attempt no longer runs (after a restart, or when a revoke failed).
//!
//! The server's own installation tokens for check runs ([`AppTokens`]) are kept in memory and
//! used until shortly before they expire.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_core::config::{Config, GithubAppDef, JobTokensDef, RepoDef};
use baton_exec::BoxFuture;
use baton_forge::{ApiRequest, Forge};
use baton_sched::{ForgeCreds, JobCred, SchedHandle};
use baton_store::{JobCredRow, Store, StoreError};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::forge_http::{Answer, send};
use crate::http_client::SharedClient;

/// How long the server reuses its own installation token (GitHub's last an hour).
const APP_TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);
/// How often the sweeper looks for tokens left over when nothing wakes it.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Mints and revokes jobs' forge credentials. Cheap to clone.
#[derive(Clone)]
pub struct ForgeTokens {
    store: Store,
    http: SharedClient,
}

impl ForgeTokens {
    pub fn new(store: Store) -> ForgeTokens {
        ForgeTokens {
            store,
            http: SharedClient,
        }
    }
}

/// The API base and `owner/name` of a repository's forge.
fn api_and_path(forge: Forge, def: &RepoDef) -> Result<(String, String), String> {
    let api = baton_forge::api_base(forge, &def.url, def.api.as_deref());
    let path = baton_forge::repo_path(&def.url);
    match (api, path) {
        (Ok(api), Ok(path)) => Ok((api, path)),
        (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
    }
}

fn gitea_forge(def: &RepoDef) -> Forge {
    match def.forge {
        baton_core::config::Forge::Forgejo => Forge::Forgejo,
        _ => Forge::Gitea,
    }
}

impl ForgeCreds for ForgeTokens {
    fn mint<'a>(
        &'a self,
        repo: &'a RepoDef,
        job_id: i64,
        attempt: u32,
    ) -> BoxFuture<'a, Result<Option<Box<dyn JobCred>>, String>> {
        Box::pin(async move {
            let cred: Box<dyn JobCred> = if let Some(app) = &repo.github_app {
                let permissions = &app.permissions;
                let token = installation_token(&self.http, repo, app, permissions).await?;
                Box::new(token)
            } else if let Some(tokens) = &repo.job_tokens {
                Box::new(self.mint_gitea(repo, tokens, job_id, attempt).await?)
            } else {
                return Ok(None);
            };
            Ok(Some(cred))
        })
    }
}

/// An installation token of `app` for `repo` alone, with `permissions`.
async fn installation_token(
    http: &reqwest::Client,
    repo: &RepoDef,
    app: &GithubAppDef,
    permissions: &BTreeMap<String, String>,
) -> Result<GithubToken, String> {
    let what = format!("cannot mint a GitHub App token for repos.{}", repo.name);
    let (api, path) = api_and_path(Forge::GitHub, repo).map_err(|e| format!("{what}: {e}"))?;
    let name = path.rsplit('/').next().unwrap_or(&path);
    let key = app
        .private_key
        .as_ref()
        .map(|k| k.value.expose().to_owned());
    let jwt = baton_forge::app_jwt(app.app_id, &key.unwrap_or_default(), Utc::now().timestamp())
        .map_err(|e| format!("{what}: {e}"))?;
    let req = baton_forge::github_token_request(&api, app.installation_id, &jwt, name, permissions);
    let body = expect_success(send(http, &req).await, &req).map_err(|e| format!("{what}: {e} (hint: check the app's id, installation and private key, and that it is installed on {path})"))?;
    let token = baton_forge::github_token(&body).map_err(|e| format!("{what}: {e}"))?;
    Ok(GithubToken {
        http: http.clone(),
        api,
        token,
    })
}

/// The body of a 2xx answer, or what went wrong.
fn expect_success(answer: Result<Answer, String>, req: &ApiRequest) -> Result<Vec<u8>, String> {
    let a = answer?;
    if a.status.is_success() {
        Ok(a.body)
    } else {
        Err(a.describe(req))
    }
}

/// A job's GitHub installation token.
struct GithubToken {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl JobCred for GithubToken {
    fn token(&self) -> &str {
        &self.token
    }

    fn variables(&self) -> &'static [&'static str] {
        &["BATON_FORGE_TOKEN", "GITHUB_TOKEN"]
    }

    fn revoke(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let req = baton_forge::github_revoke_request(&self.api, &self.token);
            if let Err(e) = expect_success(send(&self.http, &req).await, &req) {
                tracing::warn!(
                    "a job's GitHub token was not revoked (it expires within the hour): {e}"
                );
            }
        })
    }
}

impl ForgeTokens {
    async fn mint_gitea(
        &self,
        repo: &RepoDef,
        tokens: &JobTokensDef,
        job_id: i64,
        attempt: u32,
    ) -> Result<GiteaToken, String> {
        let what = format!("cannot mint a job token for repos.{}", repo.name);
        let (api, _) = api_and_path(gitea_forge(repo), repo).map_err(|e| format!("{what}: {e}"))?;
        let name = format!("baton-job-{job_id}-{attempt}");
        let store_err = |e: StoreError| format!("{what}: cannot record it: {e}");
        let row = (self
            .store
            .add_job_cred(job_id, attempt, &repo.name, &name, Utc::now()))
        .await
        .map_err(store_err)?;
        let password = tokens
            .password
            .as_ref()
            .map(|p| p.value.expose().to_owned());
        let password = password.unwrap_or_default();
        let req =
            baton_forge::gitea_token_request(&api, &tokens.user, &password, &name, &tokens.scopes);
        let answer = send(&self.http, &req).await;
        if answer.as_ref().is_ok_and(|a| !a.status.is_success()) {
            // The forge refused: there is no token to revoke.
            let _ = self.store.remove_job_cred(row).await;
        }
        let body = expect_success(answer, &req).map_err(|e| format!("{what}: {e} (hint: check job_tokens' user and password, and that the user may create tokens)"))?;
        let (token_id, token) =
            baton_forge::gitea_token(&body).map_err(|e| format!("{what}: {e}"))?;
        self.store
            .set_job_cred_token_id(row, token_id)
            .await
            .map_err(store_err)?;
        Ok(GiteaToken {
            tokens: self.clone(),
            api,
            user: tokens.user.clone(),
            password,
            row,
            token_id,
            token,
        })
    }

    /// Deletes `user`'s token `id_or_name`; forgets row `row` once it is gone (a token the
    /// forge does not know is gone too).
    async fn revoke_gitea(
        &self,
        api: &str,
        user: &str,
        password: &str,
        row: i64,
        id_or_name: &str,
    ) -> Result<(), String> {
        let req = baton_forge::gitea_revoke_request(api, user, password, id_or_name);
        let answer = send(&self.http, &req).await?;
        if !answer.status.is_success() && answer.status != reqwest::StatusCode::NOT_FOUND {
            return Err(answer.describe(&req));
        }
        self.store
            .remove_job_cred(row)
            .await
            .map_err(|e| format!("revoked, but cannot forget it: {e}"))
    }

    /// Revokes a recorded token whose job attempt no longer runs, with the config in force.
    async fn revoke_leftover(&self, row: &JobCredRow, config: &Config) -> Result<(), String> {
        let def = config.repos.get(&row.repo);
        let Some((def, tokens)) = def.and_then(|d| d.job_tokens.as_ref().map(|t| (d, t))) else {
            return Err(format!(
                "repos.{}.job_tokens is no longer in the configuration, so it cannot be revoked until it is back (or delete it on the forge)",
                row.repo
            ));
        };
        let (api, _) = api_and_path(gitea_forge(def), def)?;
        let password = tokens
            .password
            .as_ref()
            .map(|p| p.value.expose().to_owned());
        let id = row
            .token_id
            .map_or_else(|| row.name.clone(), |id| id.to_string());
        self.revoke_gitea(
            &api,
            &tokens.user,
            &password.unwrap_or_default(),
            row.id,
            &id,
        )
        .await
    }
}

/// A job's Gitea/Forgejo token.
struct GiteaToken {
    tokens: ForgeTokens,
    api: String,
    user: String,
    password: String,
    row: i64,
    token_id: i64,
    token: String,
}

impl JobCred for GiteaToken {
    fn token(&self) -> &str {
        &self.token
    }

    fn variables(&self) -> &'static [&'static str] {
        &["BATON_FORGE_TOKEN"]
    }

    fn revoke(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let id = self.token_id.to_string();
            let done =
                self.tokens
                    .revoke_gitea(&self.api, &self.user, &self.password, self.row, &id);
            if let Err(e) = done.await {
                tracing::warn!("a job's forge token was not revoked yet (tried again later): {e}");
            }
        })
    }
}

/// Starts the sweeper of leftover job tokens; it stops when `shutdown` is cancelled.
pub fn spawn_sweeper(tokens: ForgeTokens, sched: SchedHandle, shutdown: CancellationToken) {
    tokio::spawn(async move {
        // Rows whose failure the log named already (said once each; tried again every round).
        let told = Mutex::new(std::collections::BTreeSet::new());
        let round = async || -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
            let next = Utc::now() + chrono::Duration::from_std(SWEEP_EVERY).unwrap_or_default();
            let rows = tokens.store.leftover_job_creds().await?;
            let Ok(config) = sched.config().await else {
                return Ok(Some(next));
            };
            for row in rows {
                if let Err(e) = tokens.revoke_leftover(&row, &config).await
                    && told.lock().unwrap().insert(row.id)
                {
                    tracing::warn!(
                        job = row.job_id,
                        "leftover forge token {} not revoked yet: {e}",
                        row.name
                    );
                }
            }
            Ok(Some(next))
        };
        crate::outbox::drive("forge tokens", &sched, None, shutdown, SWEEP_EVERY, round).await;
    });
}

/// The server's own installation tokens (for check runs), reused until near their end.
#[derive(Default, Clone)]
pub(crate) struct AppTokens {
    cache: Arc<Mutex<BTreeMap<String, (String, Instant)>>>,
}

impl AppTokens {
    /// A token of `repo`'s app allowed to write its check runs.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        repo: &RepoDef,
        app: &GithubAppDef,
    ) -> Result<String, String> {
        if let Some((token, at)) = self.cache.lock().unwrap().get(&repo.name)
            && at.elapsed() < APP_TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let permissions = BTreeMap::from([("checks".to_owned(), "write".to_owned())]);
        let minted = installation_token(http, repo, app, &permissions).await?;
        let token = minted.token.clone();
        self.cache
            .lock()
            .unwrap()
            .insert(repo.name.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }
}
