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

use serde_json::{Value, json};

use common::forgehook::{Kind, deliver_github, make_repo, pr_payload, push, runs_by_target};
use common::gitea_tokens::{
    BOT_PASSWORD, SECRET, gitea_server, recorded_tokens, wait_no_recorded_tokens,
};
use common::gitrepo::{commit_text, git};
use common::standin::{Call, StandIn, only_keys};
use common::{Server, job};

const PUBLIC: &str = "https://ci.example.test";
const APP_ID: &str = "12";

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
    /// Check run id → (external id, commit).
    external: BTreeMap<i64, (String, String)>,
    /// SIGKILLs this process (the server) on the next create of a check run, once the check
    /// run exists and before its id is answered.
    kill_on_create: Option<u32>,
    /// Answers creates of check runs `503` (GitHub busy) while set.
    busy: bool,
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
        if call.method == "POST" && self.busy {
            return Ok((503, json!({"message": "Service Unavailable"})));
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
            let external = b["external_id"].as_str().unwrap_or("").to_owned();
            self.external.insert(id, (external, sha.to_owned()));
            if let Some(pid) = self.kill_on_create.take() {
                // SAFETY: kill(2) on the server's pid, which this test started and has not reaped.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
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

    /// `GET /repos/local/app/commits/SHA/check-runs?check_name=NAME&filter=all&per_page=100&page=1`.
    fn list_checks(&self, call: &Call) -> Result<(u16, Value), String> {
        if !self.is_checks_token(bearer(call)?) || !call.body.is_null() {
            return Err(format!("GET {}: not a checks token, or a body", call.path));
        }
        let sha = call
            .path
            .strip_prefix("/repos/local/app/commits/")
            .and_then(|p| p.strip_suffix("/check-runs"))
            .ok_or_else(|| format!("GET {}", call.path))?;
        let query: BTreeMap<&str, String> = call
            .query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.replace("%2F", "/")))
            .collect();
        let name = query.get("check_name").ok_or("no check_name")?;
        if query.get("filter").map(String::as_str) != Some("all")
            || query.get("per_page").map(String::as_str) != Some("100")
            || query.get("page").map(String::as_str) != Some("1")
        {
            return Err(format!("GET {}?{}", call.path, call.query));
        }
        let runs: Vec<Value> = self
            .checks
            .iter()
            .filter(|(id, n)| *n == name && self.external[id].1 == sha)
            .map(|(id, n)| json!({"id": id, "name": n, "head_sha": sha, "external_id": self.external[id].0}))
            .collect();
        Ok((200, json!({"total_count": runs.len(), "check_runs": runs})))
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
            ("GET", p) if p.starts_with("/repos/local/app/commits/") => self.list_checks(call),
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

/// A server SIGKILLed after GitHub created a check run but before it recorded the id creates
/// no second one after the restart: it recorded its intent first, finds the check run by its
/// external id (the run's id) through the list API and updates it to the run's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_run_created_just_before_a_crash_is_not_created_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let GhSetup {
        mut s,
        forge,
        state,
        url,
        sha,
    } = github_setup(tmp.path(), 34, "", true).await;
    // Creates fail until the webhook was answered; the next one is cut short by the kill.
    state.lock().unwrap().busy = true;
    let ids = push(&s, Kind::GitHub, &url, &sha, "gh-crash", SECRET).await;
    {
        let mut gh = state.lock().unwrap();
        gh.busy = false;
        gh.kill_on_create = Some(s.pid());
    }
    forge
        .wait_for("a check run created", &s, |_| {
            state.lock().unwrap().kill_on_create.is_none()
        })
        .await;
    assert!(!s.wait_exit().success(), "the server was killed");
    s.restart();
    let runs = runs_by_target(&s, &ids).await;
    for (target, conclusion) in [("app/ok", "success"), ("app/bad", "failure")] {
        let name = format!("baton/{target}");
        let calls = forge
            .wait_for(&format!("{name} completed"), &s, |calls| {
                let gh = state.lock().unwrap();
                calls.iter().any(|c| {
                    c.method == "PATCH"
                        && c.body["conclusion"] == conclusion
                        && c.path
                            .rsplit('/')
                            .next()
                            .and_then(|i| i.parse::<i64>().ok())
                            .and_then(|i| gh.checks.get(&i))
                            == Some(&name)
                })
            })
            .await;
        let gh = state.lock().unwrap();
        let mine: Vec<i64> = gh
            .checks
            .iter()
            .filter(|(_, n)| **n == name)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(mine.len(), 1, "{name} created once: {calls:#?}");
        let run = runs[target]["id"].as_i64().unwrap();
        assert_eq!(gh.external[&mine[0]], (run.to_string(), sha.clone()));
        let patched = format!("/repos/local/app/check-runs/{}", mine[0]);
        assert!(
            calls
                .iter()
                .any(|c| c.method == "PATCH" && c.path == patched),
            "{calls:#?}"
        );
    }
    // The check run whose create the kill cut short was looked up, not created again.
    let calls = forge.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.method == "GET"
                && c.path == format!("/repos/local/app/commits/{sha}/check-runs")),
        "{calls:#?}"
    );
    assert_eq!(state.lock().unwrap().checks.len(), 2, "{calls:#?}");
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
    wait_no_recorded_tokens(&s).await;
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
