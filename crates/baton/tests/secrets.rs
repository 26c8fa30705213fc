//! Secrets end to end, on the real binary: `secrets:` from `env:` and `file:` reach the job as
//! environment variables and are masked in its log (with their base64 forms); no secret value
//! (explicit, secret-looking variable or env entry) appears in an API answer, a UI page, the
//! database or any file under the data dir; the data dir and job files are private; a queued
//! run survives a restart with its secrets, and one whose secret left the config ends broken.

mod common;
#[path = "common/users.rs"]
mod users;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use users::*;

const ENV_SECRET: &str = "env-s3cr3t-Vq8Zk2";
const FILE_SECRET: &str = "file-s3cr3t-Wp3Lm7";
const VAR_SECRET: &str = "var-s3cr3t-Hx5Tn1";
const ENV_ENTRY_SECRET: &str = "entry-s3cr3t-Jr6Yd4";

fn config(with_token: bool) -> String {
    let (token_def, token_ref) = if with_token {
        ("  TOKEN: env:BATON_E2E_TOKEN\n", "TOKEN, ")
    } else {
        ("", "")
    };
    format!(
        r#"
administrators: [root]
server:
  local_workers: 1
secrets:
{token_def}  FILE_TOKEN: file:token.txt
variables:
  api_password: {VAR_SECRET}
  greeting: hello
tasks:
  peek:
    authorized_users: [alice]
    command: echo "peek=${{BATON_E2E_TOKEN:-unset}}"
  block:
    authorized_users: [alice]
    command: |
      {gate}
  leak:
    authorized_users: [alice]
    secrets: [{token_ref}FILE_TOKEN]
    env: {{DEPLOY_KEY: {ENV_ENTRY_SECRET}, PLAIN: visible-value}}
    command: |
      echo "token=$TOKEN file=$FILE_TOKEN key=$DEPLOY_KEY var=${{:api_password}} greet=${{:greeting}}"
      printf %s "$TOKEN" | base64
      printf %s "$FILE_TOKEN" | base64
      echo "$TOKEN" | base64
      printf 'ab%s' "$FILE_TOKEN" | base64 -w0; echo
      printf %s '${{:api_password}}' | base64
"#,
        gate = gate("BATON_E2E_GATE"),
    )
}

fn secrets() -> [&'static str; 4] {
    [ENV_SECRET, FILE_SECRET, VAR_SECRET, ENV_ENTRY_SECRET]
}

/// `text` holds no secret value, nor the plain base64 of one.
fn assert_clean(what: &str, text: &str) {
    for s in secrets() {
        assert!(!text.contains(s), "{what} holds the secret {s}:\n{text}");
        let b = STANDARD.encode(s);
        assert!(
            !text.contains(b.trim_end_matches('=')),
            "{what} holds base64 of {s}:\n{text}"
        );
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            files_under(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

async fn page(s: &Server, token: &str, path: &str) -> String {
    let r = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.text().await.unwrap()
}

async fn api(s: &Server, token: &str, path: &str) -> String {
    let r = s
        .http
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn secrets_reach_the_job_and_nothing_else() {
    let gate_path = tempfile::tempdir().unwrap();
    let gate_file = gate_path.path().join("open");
    let mut s = Server::start_env(
        "server: {local_workers: 1}\n",
        &[
            ("BATON_E2E_TOKEN", ENV_SECRET),
            ("BATON_E2E_GATE", gate_file.to_str().unwrap()),
        ],
    );
    std::fs::write(s.config_dir.join("token.txt"), format!("{FILE_SECRET}\n")).unwrap();
    s.write_config("baton.yaml", &config(true));
    let (st, body) = s.post("/config/reload", serde_json::json!({})).await;
    assert_eq!(st, 200, "{body}");
    add_user(&s, "alice", "pw-alice");
    let alice = user_token(&s, "alice");

    // The one worker is busy, so `leak` waits in the queue across a restart: it then runs
    // with its secrets resolved from the config.
    let block = id_of(&s.trigger("block", &[]).await);
    s.wait_until(block, "running", |r| status(r) == "running")
        .await;
    let run = id_of(&s.trigger("leak", &[]).await);
    s.restart();
    // A fresh client: a pooled connection to the killed server would fail the next request.
    s.http = reqwest::Client::new();
    std::fs::write(&gate_file, "").unwrap();
    let done = s.wait_run(run).await;
    assert_eq!(status(&done), "success", "{done}\n{}", s.stderr());

    let log = s.log_text(run, None).await;
    assert_clean("the log", &log);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0], "token=*** file=*** key=*** var=*** greet=hello",
        "{log}"
    );
    // Each base64 line is masked; at most a character or two of the neighbours is left.
    for l in &lines[1..] {
        assert!(l.contains("***"), "unmasked base64 line {l:?} in\n{log}");
        assert!(l.replace("***", "").len() <= 6, "{l:?} in\n{log}");
    }

    // A task that names no secret does not inherit one from the server's environment.
    let peek = s.wait_run(id_of(&s.trigger("peek", &[]).await)).await;
    let peek_log = s.log_text(peek["id"].as_i64().unwrap(), None).await;
    assert_eq!(peek_log.trim(), "peek=unset", "{peek_log}");

    // The API and the UI, as a user who may trigger the task.
    let tasks = api(&s, &alice, "/tasks").await;
    assert_clean("GET /api/v1/tasks", &tasks);
    assert!(
        tasks.contains("var=${:api_password} greet=${:greeting}"),
        "{tasks}"
    );
    assert!(tasks.contains(r#""DEPLOY_KEY":"***""#), "{tasks}");
    assert!(tasks.contains("visible-value"), "{tasks}");
    assert!(tasks.contains("FILE_TOKEN"), "{tasks}");
    for path in [
        format!("/runs/{run}"),
        "/runs".to_owned(),
        "/queue".to_owned(),
    ] {
        assert_clean(&path, &api(&s, &alice, &path).await);
    }
    for path in [
        format!("/runs/{run}"),
        "/trigger/task/leak".to_owned(),
        "/".to_owned(),
        "/runs".to_owned(),
    ] {
        assert_clean(&format!("page {path}"), &page(&s, &alice, &path).await);
    }

    // Nothing stored: the database (on SQLite its file and WAL, among the data directory's
    // files; on PostgreSQL everything `pg_dump` gives of it) and every job file.
    let mut files = Vec::new();
    files_under(&s.data, &mut files);
    match &s.db {
        None => assert!(files.iter().any(|f| f.ends_with("baton.db")), "{files:?}"),
        Some(url) => {
            let out = std::process::Command::new(pg_bin("pg_dump"))
                .args(["--no-owner", url])
                .output()
                .expect("run pg_dump");
            let dump = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && dump.contains("COPY public.runs"),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_clean("the PostgreSQL database", &dump);
        }
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert_clean(&f.display().to_string(), &String::from_utf8_lossy(&bytes));
    }

    // Private modes.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.data), 0o700, "data dir");
    let job = done["jobs"][0]["id"].as_i64().unwrap();
    let dir = s.job_dir(job, 1);
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    for f in [
        "spec.json",
        "log",
        "exit.json",
        "script.sh",
        "supervisor.json",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    if s.db.is_none() {
        assert_eq!(mode(&s.data.join("baton.db")), 0o600, "baton.db");
    }

    // A run queued with a secret that the config then drops ends broken, naming it.
    std::fs::remove_file(&gate_file).unwrap();
    let block = id_of(&s.trigger("block", &[]).await);
    s.wait_until(block, "running", |r| status(r) == "running")
        .await;
    let run = id_of(&s.trigger("leak", &[]).await);
    s.write_config("baton.yaml", &config(false));
    let (st, body) = s.post("/config/reload", serde_json::json!({})).await;
    assert_eq!(st, 200, "{body}");
    std::fs::write(&gate_file, "").unwrap();
    let done = s.wait_run(run).await;
    assert_eq!(status(&done), "broken", "{done}");
    let why = reason(job_of(&done));
    assert!(
        why.contains("secret \"TOKEN\" is no longer in the configuration"),
        "{done}"
    );
}

fn job_of(run: &serde_json::Value) -> &serde_json::Value {
    &run["jobs"][0]
}
