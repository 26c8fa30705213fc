//! Agents' credentials are verified through a short-lived in-memory cache on the server (an
//! agent calls on every poll, log chunk and exit report). A credential revoked through the
//! server (an administrator disables the agent, the agent leaves) is refused on its very next
//! request; one revoked by another process on the same database (`baton token revoke`) is
//! refused within the cache's bound (30 s).

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::{BIN, Server};

const CONFIG: &str = "server:\n  agent_queues: [arm]\ntasks:\n  t:\n    command: 'true'\n";

/// The bound on how late another process's revocation is seen (`baton_store::TOKEN_CACHE_TTL`).
const CACHE_BOUND: Duration = Duration::from_secs(30);

/// Runs `baton ARGS --data … [--db …]` on the server's store; its standard output.
fn cli(s: &Server, args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .args(s.data_args())
        .env_remove("BATON_DATA")
        .env_remove("BATON_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "baton {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Joins agent `name` with `join`; its credential.
async fn join(s: &Server, join: &str, name: &str) -> String {
    let r = s
        .http
        .post(s.url("/agents/join"))
        .bearer_auth(join)
        .json(&json!({"name": name, "queues": ["arm"], "slots": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "join {name}");
    let v: Value = r.json().await.unwrap();
    v["credential"].as_str().unwrap().to_owned()
}

/// One poll that returns at once; the status and the answer.
async fn poll(s: &Server, credential: &str) -> (u16, String) {
    let r = s
        .http
        .post(s.url("/agents/poll?wait=0"))
        .bearer_auth(credential)
        .json(&json!({"queues": ["arm"], "slots": 1, "holds": []}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls twice (the first verification is kept, the second is served from the cache): both
/// accepted.
async fn poll_ok_twice(s: &Server, credential: &str, who: &str) {
    for i in 0..2 {
        let (st, body) = poll(s, credential).await;
        assert_eq!(st, 200, "{who}'s poll {i}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_agent_credentials_are_refused_at_once_here_and_within_the_bound_elsewhere() {
    let s = Server::start(CONFIG);
    let join_token = cli(&s, &["token", "create", "--name", "agent-join"])
        .trim()
        .to_owned();
    let a1 = join(&s, &join_token, "a1").await;
    let a2 = join(&s, &join_token, "a2").await;
    let a3 = join(&s, &join_token, "a3").await;
    for (cred, who) in [(&a1, "a1"), (&a2, "a2"), (&a3, "a3")] {
        poll_ok_twice(&s, cred, who).await;
    }

    // Disabled through the API: the very next request is refused.
    let (st, body) = s.post("/agents/a1/disable", json!({})).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = poll(&s, &a1).await;
    assert_eq!(st, 401, "a disabled agent's credential, at once: {body}");
    assert!(body.contains("revoked agent credential"), "{body}");

    // An agent that left: its credential is refused at once too.
    let r = s
        .http
        .post(s.url("/agents/leave"))
        .bearer_auth(&a3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let (st, body) = poll(&s, &a3).await;
    assert_eq!(st, 401, "the credential of an agent that left: {body}");
    // The others are untouched.
    poll_ok_twice(&s, &a2, "a2").await;

    // Revoked by another process on the same database: refused within the cache's bound.
    let list = cli(&s, &["token", "list"]);
    let id = list
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("agent:a2"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("agent:a2 in the token list:\n{list}"))
        .to_owned();
    cli(&s, &["token", "revoke", &id]);
    let step = Duration::from_millis(250);
    let tries = (CACHE_BOUND.as_millis() / step.as_millis()) as usize + 20;
    let mut last = (0, String::new());
    for _ in 0..tries {
        last = poll(&s, &a2).await;
        if last.0 != 200 {
            break;
        }
        tokio::time::sleep(step).await;
    }
    assert_eq!(
        last.0, 401,
        "a credential revoked by `baton token revoke` must be refused within the cache's \
         bound: {}",
        last.1
    );
}
