//! Short-lived per-job forge credentials and GitHub check runs, end to end: a real git
//! repository, a signed push to the real binary, and local stand-ins for GitHub's and Gitea's
//! APIs that check each request as the forge documents it (GitHub: an RS256 app JWT whose
//! signature verifies with the app's public key, made here with `openssl genrsa`; Gitea: basic
//! auth) and record it. Each job gets one token, masked in its log, revoked after its end;
//! Gitea tokens left over by a SIGKILL are revoked after the restart; a failed mint stops the
//! job with the reason in its log.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};

use common::forgehook::{Kind, deliver_github, make_repo, pr_payload, push, runs_by_target};
use common::gitrepo::{commit_text, git};
use common::standin::{Call, StandIn};
use common::{Server, job};

const SECRET: &str = "creds-hook-secret";
const PUBLIC: &str = "https://ci.example.test";
const APP_ID: &str = "12";
const BOT_PASSWORD: &str = "bot-password-4f2e9a";

/// A job that says whether it got a token and echoes it (the log must show it masked).
const ECHO_TOKEN: &str = "tasks:\n  ok:\n    command: 'if [ -n \"$BATON_FORGE_TOKEN\" ]; then echo forge-token-set; else echo forge-token-unset; fi; echo \"echoed=$BATON_FORGE_TOKEN gh=$GITHUB_TOKEN\"'\n    checkout: false\n  bad:\n    command: exit 3\n    checkout: false\n";

/// An RSA key pair made with `openssl genrsa` (PKCS#1, as GitHub hands out app keys): the
/// private key's path and the public key's PEM.
fn app_key(dir: &Path) -> (String, Vec<u8>) {
    let key = dir.join("app.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is needed (scripts/test.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out.stdout
    };
    run(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        "2048",
    ]);
    let public = run(&["rsa", "-in", key.to_str().unwrap(), "-pubout"]);
    (key.to_str().unwrap().to_owned(), public)
}

/// What the GitHub stand-in handed out and took back.
#[derive(Default)]
struct GitHub {
    /// Installation tokens with their permissions.
    minted: Vec<(String, Value)>,
    revoked: Vec<String>,
    /// Check run id → name.
    checks: BTreeMap<i64, String>,
}

fn github_headers_ok(call: &Call) -> Result<(), String> {
    if call.header("accept") != "application/vnd.github+json"
        || call.header("x-github-api-version") != "2022-11-28"
    {
        return Err(format!(
            "{} {}: headers {:?}",
            call.method, call.path, call.headers
        ));
    }
    Ok(())
}

fn bearer(call: &Call) -> Result<&str, String> {
    call.header("authorization")
        .strip_prefix("Bearer ")
        .ok_or_else(|| format!("{} {}: no bearer token", call.method, call.path))
}

/// Only the keys `allowed` in `body`.
fn only_keys(body: &Value, allowed: &[&str]) -> Result<(), String> {
    let obj = body.as_object().ok_or("body is not an object")?;
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unexpected field {k} in {body}")),
        None => Ok(()),
    }
}

impl GitHub {
    /// `POST /app/installations/34/access_tokens` with the app's JWT.
    fn mint(
        &mut self,
        call: &Call,
        key: &jsonwebtoken::DecodingKey,
    ) -> Result<(u16, Value), String> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[APP_ID]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        jsonwebtoken::decode::<Value>(bearer(call)?, key, &validation)
            .map_err(|e| format!("app JWT: {e}"))?;
        only_keys(&call.body, &["repositories", "permissions"])?;
        if call.body["repositories"] != json!(["app"]) {
            return Err(format!(
                "token not scoped to the one repository: {}",
                call.body
            ));
        }
        let perms = call.body["permissions"].clone();
        let kind = if perms == json!({"contents": "read"}) {
            "job"
        } else if perms == json!({"checks": "write"}) {
            "checks"
        } else {
            return Err(format!("permissions {perms}"));
        };
        let token = format!("ghs_{kind}_{}_5e3a91c07b", self.minted.len());
        self.minted.push((token.clone(), perms));
        Ok((
            201,
            json!({"token": token, "expires_at": "2099-01-01T00:00:00Z",
            "repository_selection": "selected"}),
        ))
    }

    fn is_checks_token(&self, token: &str) -> bool {
        self.minted
            .iter()
            .any(|(t, p)| t == token && p["checks"] == "write")
    }

    /// `POST .../check-runs` and `PATCH .../check-runs/ID`.
    fn check_run(&mut self, call: &Call, sha: &str) -> Result<(u16, Value), String> {
        if !self.is_checks_token(bearer(call)?) {
            return Err(format!(
                "{} {}: not a token allowed to write checks",
                call.method, call.path
            ));
        }
        let b = &call.body;
        let status = b["status"].as_str().unwrap_or("");
        let conclusions = ["success", "failure", "cancelled", "timed_out", "skipped"];
        let ok = match status {
            "queued" | "in_progress" => b.get("conclusion").is_none(),
            "completed" => conclusions.contains(&b["conclusion"].as_str().unwrap_or("")),
            _ => false,
        };
        if !ok
            || b["output"]["title"].as_str().is_none()
            || b["output"]["summary"].as_str().is_none()
        {
            return Err(format!("check run body {b}"));
        }
        if call.method == "POST" {
            only_keys(
                b,
                &[
                    "name",
                    "head_sha",
                    "status",
                    "conclusion",
                    "external_id",
                    "details_url",
                    "output",
                ],
            )?;
            if b["head_sha"] != sha || b["external_id"].as_str().is_none() {
                return Err(format!("check run body {b}"));
            }
            let id = 1000 + self.checks.len() as i64;
            self.checks
                .insert(id, b["name"].as_str().unwrap_or("").to_owned());
            return Ok((201, json!({"id": id, "status": status})));
        }
        only_keys(b, &["status", "conclusion", "details_url", "output"])?;
        let id: i64 = call
            .path
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .map_err(|_| "bad id")?;
        if !self.checks.contains_key(&id) {
            return Err(format!("PATCH of unknown check run {id}"));
        }
        Ok((200, json!({"id": id, "status": status})))
    }

    fn handle(
        &mut self,
        call: &Call,
        key: &jsonwebtoken::DecodingKey,
        sha: &str,
    ) -> Result<(u16, Value), String> {
        github_headers_ok(call)?;
        match (call.method.as_str(), call.path.as_str()) {
            ("POST", "/app/installations/34/access_tokens") => self.mint(call, key),
            // Another installation: GitHub answers 404.
            ("POST", p) if p.starts_with("/app/installations/") => {
                Ok((404, json!({"message": "Not Found"})))
            }
            ("DELETE", "/installation/token") => {
                let token = bearer(call)?.to_owned();
                let job_token = self
                    .minted
                    .iter()
                    .any(|(t, p)| *t == token && p["contents"] == "read");
                if !job_token || self.revoked.contains(&token) {
                    return Err(format!("revoke of {token}: not a live job token"));
                }
                self.revoked.push(token);
                Ok((204, Value::Null))
            }
            ("POST", "/repos/local/app/check-runs") => self.check_run(call, sha),
            ("PATCH", p) if p.starts_with("/repos/local/app/check-runs/") => {
                self.check_run(call, sha)
            }
            (m, p) => Err(format!("unexpected {m} {p}")),
        }
    }
}

/// A GitHub stand-in, a repository with [`ECHO_TOKEN`]'s tasks, and a server whose `repos.app`
/// uses app installation `installation` (plus `extra` lines of `repos.app`). Check runs must
/// name the pushed commit when `check_sha`.
struct GhSetup {
    s: Server,
    forge: StandIn,
    state: Arc<Mutex<GitHub>>,
    url: String,
    sha: String,
}

async fn github_setup(tmp: &Path, installation: u64, extra: &str, check_sha: bool) -> GhSetup {
    let (key_path, public) = app_key(tmp);
    let (url, sha) = make_repo(tmp, ECHO_TOKEN);
    let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
    let state = Arc::new(Mutex::new(GitHub::default()));
    let st = state.clone();
    let head = sha.clone();
    let forge = StandIn::start(Arc::new(move |call: &Call| {
        let any = call.body["head_sha"].as_str().unwrap_or("").to_owned();
        let sha = if check_sha { &head } else { &any };
        st.lock().unwrap().handle(call, &decoding, sha)
    }))
    .await;
    let config = format!(
        "server:\n  public_url: {PUBLIC}\nrepos:\n  app:\n    url: {url}\n    forge: github\n    secret: env:APP_SECRET\n    api: {}\n    github_app:\n      app_id: {APP_ID}\n      installation_id: {installation}\n      private_key: file:{key_path}\n{extra}",
        forge.base
    );
    let s = Server::start_env(&config, &[("APP_SECRET", SECRET)]);
    GhSetup {
        s,
        forge,
        state,
        url,
        sha,
    }
}

/// Each job of a GitHub App repository gets its own installation token for that repository
/// alone, masked in its log and revoked after its end; the runs are reported as check runs
/// (queued → in_progress → completed with the run's conclusion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_jobs_get_their_own_token_and_runs_become_check_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let GhSetup {
        s,
        forge,
        state,
        url,
        sha,
    } = github_setup(tmp.path(), 34, "", true).await;
    let ids = push(&s, Kind::GitHub, &url, &sha, "gh-1", SECRET).await;
    let runs = runs_by_target(&s, &ids).await;
    assert_eq!(runs["app/ok"]["status"], "success", "{}", s.stderr());
    assert_eq!(runs["app/bad"]["status"], "failed");

    let ok = runs["app/ok"]["id"].as_i64().unwrap();
    let log = s.log_text(ok, None).await;
    assert!(log.contains("forge-token-set"), "{log}");
    assert!(
        log.contains("echoed=*** gh=***"),
        "the token is masked: {log}"
    );
    assert!(!log.contains("ghs_"), "{log}");

    // One token per job, each revoked after its job ended.
    forge
        .wait_for("both job tokens revoked", &s, |_| {
            state.lock().unwrap().revoked.len() == 2
        })
        .await;
    {
        let gh = state.lock().unwrap();
        let job_tokens: Vec<&String> = gh
            .minted
            .iter()
            .filter(|(_, p)| p["contents"] == "read")
            .map(|(t, _)| t)
            .collect();
        assert_eq!(job_tokens.len(), 2, "{:?}", gh.minted);
        for t in &job_tokens {
            assert!(gh.revoked.contains(t), "{t} not revoked: {:?}", gh.revoked);
        }
    }

    // Check runs instead of statuses: created queued, then in progress, then completed.
    for (target, conclusion) in [("app/ok", "success"), ("app/bad", "failure")] {
        let name = format!("baton/{target}");
        let id = runs[target]["id"].as_i64().unwrap();
        let of_name = |calls: &[Call]| -> Vec<Call> {
            let gh = state.lock().unwrap();
            calls
                .iter()
                .filter(|c| c.path.contains("/check-runs"))
                .filter(|c| {
                    c.body["name"] == *name
                        || c.path
                            .rsplit('/')
                            .next()
                            .and_then(|i| i.parse().ok())
                            .and_then(|i: i64| gh.checks.get(&i))
                            == Some(&name)
                })
                .cloned()
                .collect()
        };
        let calls = forge
            .wait_for(&format!("three states of {name}"), &s, |c| {
                of_name(c).len() >= 3
            })
            .await;
        let mine = of_name(&calls);
        let seq: Vec<(&str, &str)> = mine
            .iter()
            .map(|c| (c.method.as_str(), c.body["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            seq,
            [
                ("POST", "queued"),
                ("PATCH", "in_progress"),
                ("PATCH", "completed")
            ],
            "{mine:#?}"
        );
        assert_eq!(mine[2].body["conclusion"], conclusion, "{mine:#?}");
        assert_eq!(mine[0].body["external_id"], id.to_string());
        for c in &mine {
            assert_eq!(c.body["details_url"], format!("{PUBLIC}/runs/{id}"));
        }
    }
    assert!(
        !calls_mention_statuses(&forge.calls()),
        "no commit statuses besides check runs"
    );
    assert!(
        !s.stderr().contains("ghs_"),
        "a token reached the server's log"
    );
}

/// A pull request from a fork runs without secrets: its job gets no token either (here a
/// trusted user's, which runs without approval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pull_request_gets_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    // Check runs are for the merge commit, which the test does not know: any sha.
    let GhSetup {
        s,
        forge,
        state,
        url,
        ..
    } = github_setup(tmp.path(), 34, "    trusted_users: [carol]\n", false).await;
    let repo = Path::new(&url);
    git(repo, &["checkout", "-q", "-b", "carol-work"]);
    let head = commit_text(repo, &[("fork.txt", "carol\n")], "carol's work");
    git(repo, &["update-ref", "refs/pull/5/head", &head]);
    git(repo, &["checkout", "-q", "main"]);
    let body = pr_payload(
        &url,
        "opened",
        5,
        &head,
        "carol-work",
        "carol",
        Some("carol"),
    );
    let (st, v) = deliver_github(&s, "pull_request", "fork-1", &body, SECRET).await;
    assert_eq!(st, 200, "{v}\n{}", s.stderr());
    let ids: Vec<i64> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let runs = runs_by_target(&s, &ids).await;
    let ok = runs["app/ok"]["id"].as_i64().unwrap();
    assert_eq!(runs["app/ok"]["status"], "success", "{}", s.stderr());
    let log = s.log_text(ok, None).await;
    assert!(
        log.contains("forge-token-unset"),
        "a fork's job got a token: {log}"
    );
    // The server still reports the run (its own token), but no job token was minted.
    forge
        .wait_for("the check run completed", &s, |c| {
            c.iter().any(|c| c.body["status"] == "completed")
        })
        .await;
    let gh = state.lock().unwrap();
    assert!(
        gh.minted.iter().all(|(_, p)| p["checks"] == "write"),
        "{:?}",
        gh.minted
    );
}

/// An app that is not installed where the config says mints nothing: the job does not run,
/// its log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_that_cannot_mint_stops_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let GhSetup {
        s,
        forge,
        state,
        url,
        sha,
    } = github_setup(tmp.path(), 99, "", true).await;
    let ids = push(&s, Kind::GitHub, &url, &sha, "gh-2", SECRET).await;
    let runs = runs_by_target(&s, &ids).await;
    let ok = runs["app/ok"]["id"].as_i64().unwrap();
    assert_ne!(runs["app/ok"]["status"], "success");
    let log = s.log_text(ok, None).await;
    assert!(
        log.contains(
            "could not start the job: cannot mint a GitHub App token for repos.app: HTTP 404"
        ),
        "{log}"
    );
    assert!(
        !log.contains("forge-token"),
        "the job's command did not run: {log}"
    );
    forge.assert_no_problems();
    assert!(state.lock().unwrap().minted.is_empty());
}

fn calls_mention_statuses(calls: &[Call]) -> bool {
    calls.iter().any(|c| c.path.contains("/statuses/"))
}

/// What the Gitea stand-in handed out and took back.
#[derive(Default)]
struct Gitea {
    /// Token id → name.
    minted: BTreeMap<i64, String>,
    revoked: Vec<i64>,
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

async fn gitea_server(
    url: &str,
    password_var: &str,
    envs: &[(&str, &str)],
) -> (Server, StandIn, Arc<Mutex<Gitea>>) {
    let state = Arc::new(Mutex::new(Gitea::default()));
    let st = state.clone();
    let forge = StandIn::start(Arc::new(move |call: &Call| st.lock().unwrap().handle(call))).await;
    let config = format!(
        "repos:\n  app:\n    url: {url}\n    forge: gitea\n    secret: env:APP_SECRET\n    api: {}\n    job_tokens:\n      user: bot\n      password: env:{password_var}\n",
        forge.base
    );
    let mut all = vec![("APP_SECRET", SECRET)];
    all.extend_from_slice(envs);
    (Server::start_env(&config, &all), forge, state)
}

/// The rows of minted job tokens not revoked yet.
async fn recorded_tokens(s: &Server) -> i64 {
    let db = format!("sqlite://{}?mode=ro", s.data.join("baton.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM job_creds")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// A Gitea job gets a scoped token named after it, masked in its log, deleted after its end;
/// nothing is left recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_jobs_get_a_token_deleted_after_their_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, sha) = make_repo(tmp.path(), ECHO_TOKEN);
    let (s, forge, state) = gitea_server(&url, "BOT_PW", &[("BOT_PW", BOT_PASSWORD)]).await;
    let ids = push(&s, Kind::Gitea, &url, &sha, "tea-1", SECRET).await;
    let runs = runs_by_target(&s, &ids).await;
    let ok = &runs["app/ok"];
    assert_eq!(ok["status"], "success", "{}", s.stderr());
    let log = s.log_text(ok["id"].as_i64().unwrap(), None).await;
    assert!(
        log.contains("forge-token-set") && log.contains("echoed=*** gh="),
        "{log}"
    );
    forge
        .wait_for("both tokens deleted", &s, |_| {
            state.lock().unwrap().revoked.len() == 2
        })
        .await;
    {
        let tea = state.lock().unwrap();
        assert_eq!(tea.minted.len(), 2, "one token per job: {:?}", tea.minted);
        let job_id = job(ok, "app/ok")["id"].as_i64().unwrap();
        assert!(
            tea.minted
                .values()
                .any(|n| *n == format!("baton-job-{job_id}-1")),
            "{:?}",
            tea.minted
        );
    }
    assert_eq!(recorded_tokens(&s).await, 0);
    assert!(!s.stderr().contains(BOT_PASSWORD));
}

/// A job that ends while the server is down (SIGKILL) keeps its token until the restart, which
/// deletes it: it was recorded (by id, never the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitea_token_left_by_a_killed_server_is_deleted_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let gate_file = tmp.path().join("go");
    let ci = format!(
        "tasks:\n  wait:\n    command: 'for i in $(seq 1200); do [ -e {0} ] && exit 0; sleep 0.05; done; exit 9'\n    checkout: false\n",
        gate_file.display()
    );
    let (url, sha) = make_repo(tmp.path(), &ci);
    let (mut s, forge, state) = gitea_server(&url, "BOT_PW", &[("BOT_PW", BOT_PASSWORD)]).await;
    let ids = push(&s, Kind::Gitea, &url, &sha, "tea-2", SECRET).await;
    s.wait_until(ids[0], "running", |r| r["status"] == "running")
        .await;
    forge
        .wait_for("the token minted", &s, |_| {
            state.lock().unwrap().minted.len() == 1
        })
        .await;
    assert_eq!(recorded_tokens(&s).await, 1);
    s.kill9();
    std::fs::write(&gate_file, "").unwrap();
    s.restart();
    let run = s.wait_run(ids[0]).await;
    assert_eq!(run["status"], "success", "{run:#}");
    forge
        .wait_for("the leftover token deleted", &s, |_| {
            state.lock().unwrap().revoked.len() == 1
        })
        .await;
    assert_eq!(recorded_tokens(&s).await, 0);
}

/// A token the forge refuses to mint stops the job before it runs, with the reason in its log;
/// nothing is left to revoke, and the password appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mint_stops_the_job_with_the_reason_in_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, sha) = make_repo(tmp.path(), ECHO_TOKEN);
    let wrong = "not-the-password-77";
    let (s, forge, state) = gitea_server(&url, "BOT_PW", &[("BOT_PW", wrong)]).await;
    let ids = push(&s, Kind::Gitea, &url, &sha, "tea-3", SECRET).await;
    let runs = runs_by_target(&s, &ids).await;
    let ok = &runs["app/ok"];
    assert_ne!(ok["status"], "success", "{ok:#}");
    let log = s.log_text(ok["id"].as_i64().unwrap(), None).await;
    assert!(
        log.contains("could not start the job: cannot mint a job token for repos.app: HTTP 401"),
        "{log}"
    );
    assert!(
        !log.contains("forge-token"),
        "the job's command did not run: {log}"
    );
    let reason = job(ok, "app/ok")["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reason.contains("cannot mint a job token"), "{ok:#}");
    forge.assert_no_problems();
    assert!(state.lock().unwrap().minted.is_empty());
    assert_eq!(recorded_tokens(&s).await, 0);
    assert!(!s.stderr().contains(wrong) && !log.contains(wrong));
}
