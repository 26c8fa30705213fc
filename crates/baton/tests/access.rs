//! Every permission rule over HTTP: administrators see everything, `authorized_users` see their
//! tasks and pipelines, everyone else sees nothing (404, absent from lists), tokens act as their
//! user, reload is for administrators, and cookie sessions need the CSRF secret on every write.

mod common;
#[path = "common/users.rs"]
mod users;

use common::sse::Events;
use common::*;
use serde_json::{Value, json};
use users::*;

const CONFIG: &str = r#"
administrators: [root]
server:
  local_workers: 2
tasks:
  open:
    authorized_users: [alice]
    command: |
      echo "hi ${who:-nobody}"
      mkdir -p "$BATON_OUTPUT_DIR/sub"
      echo artifact > "$BATON_OUTPUT_DIR/sub/a.txt"
      ln -s /etc/passwd "$BATON_OUTPUT_DIR/pw"
  secret:
    command: echo secret
pipelines:
  p:
    authorized_users: [alice]
    tasks:
      a:
        script: ["true"]
  q:
    tasks:
      a:
        script: ["true"]
"#;

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn setup() -> Server {
    let s = Server::start(CONFIG);
    for u in ["root", "alice", "eve"] {
        add_user(&s, u, &format!("pw-{u}"));
    }
    s
}

#[tokio::test]
async fn lists_show_only_what_each_user_may_see() {
    let s = setup();
    let root = As::user(&s, "root");
    let alice = As::user(&s, "alice");
    let eve = As::user(&s, "eve");
    let op = As {
        s: &s,
        token: s.token.clone(),
    };
    for who in [&root, &op] {
        assert_eq!(
            names(&who.get("/tasks").await.1, "tasks"),
            ["open", "secret"]
        );
        assert_eq!(
            names(&who.get("/pipelines").await.1, "pipelines"),
            ["p", "q"]
        );
    }
    assert_eq!(names(&alice.get("/tasks").await.1, "tasks"), ["open"]);
    assert_eq!(names(&alice.get("/pipelines").await.1, "pipelines"), ["p"]);
    assert!(names(&eve.get("/tasks").await.1, "tasks").is_empty());
    assert!(names(&eve.get("/pipelines").await.1, "pipelines").is_empty());
}

#[tokio::test]
async fn hidden_runs_and_targets_answer_404_everywhere() {
    let s = setup();
    let alice = As::user(&s, "alice");
    let eve = As::user(&s, "eve");
    let secret = id_of(&s.trigger("secret", &[]).await);
    s.wait_run(secret).await;
    let q = id_of(&s.trigger_pipeline("q", &[]).await);
    s.wait_run(q).await;
    for run in [secret, q] {
        for path in [
            format!("/runs/{run}"),
            format!("/runs/{run}/wait?timeout=1"),
            format!("/runs/{run}/log?job=a"),
            format!("/runs/{run}/log"),
            format!("/runs/{run}/log/stream"),
        ] {
            let (st, v) = alice.get(&path).await;
            assert_eq!(st, 404, "alice GET {path}: {v}");
        }
        for path in [format!("/runs/{run}/cancel"), format!("/runs/{run}/rerun")] {
            let (st, v) = alice.post(&path).await;
            assert_eq!(st, 404, "alice POST {path}: {v}");
        }
    }
    // Triggering a hidden target looks exactly like triggering a missing one.
    let (st, hidden) = alice.post("/tasks/secret/trigger").await;
    let (st2, missing) = alice.post("/tasks/nosuch/trigger").await;
    assert_eq!((st, st2), (404, 404));
    assert_eq!(hidden["error"]["code"], missing["error"]["code"]);
    assert_eq!(alice.post("/pipelines/q/trigger").await.0, 404);

    // Alice's own task: trigger, see, read the log, rerun, cancel.
    let (st, run) = alice
        .req(
            "POST",
            "/tasks/open/trigger",
            Some(json!({"args": {"who": "alice"}})),
        )
        .await;
    assert_eq!(st, 201, "{run}");
    let id = id_of(&run);
    s.wait_run(id).await;
    assert_eq!(alice.get(&format!("/runs/{id}")).await.0, 200);
    let (st, _) = alice.get(&format!("/runs/{id}/log")).await;
    assert_eq!(st, 200);
    assert!(s.log_text(id, None).await.contains("hi alice"));
    let (st, rerun) = alice.post(&format!("/runs/{id}/rerun")).await;
    assert_eq!(st, 201, "{rerun}");
    let (st, _) = alice.post(&format!("/runs/{}/cancel", id_of(&rerun))).await;
    assert!(st == 200 || st == 409, "cancel answered {st}");
    let (st, _) = alice.post("/pipelines/p/trigger").await;
    assert_eq!(st, 201);
    // Eve sees none of it.
    assert_eq!(eve.get(&format!("/runs/{id}")).await.0, 404);
    assert_eq!(eve.post("/tasks/open/trigger").await.0, 404);
}

#[tokio::test]
async fn run_lists_are_filtered_in_sql_with_full_pages() {
    let s = setup();
    let alice = As::user(&s, "alice");
    let mut mine = Vec::new();
    for i in 0..3 {
        let r = s.trigger("open", &[]).await;
        mine.push(id_of(&r));
        s.wait_run(id_of(&r)).await;
        for _ in 0..=i {
            let r = s.trigger("secret", &[]).await;
            s.wait_run(id_of(&r)).await;
        }
    }
    mine.reverse();
    let (st, page1) = alice.get("/runs?limit=2").await;
    assert_eq!(st, 200);
    let ids: Vec<i64> = page1["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, mine[..2], "a full first page of alice's runs");
    let cursor = page1["next_cursor"]
        .as_i64()
        .expect("a cursor to the next page");
    let (_, page2) = alice.get(&format!("/runs?limit=2&cursor={cursor}")).await;
    let ids: Vec<i64> = page2["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, mine[2..]);
    let (_, secret) = alice.get("/runs?task=secret").await;
    assert!(secret["runs"].as_array().unwrap().is_empty());
    // The queue and workers never name a hidden run.
    let (_, q) = alice.get("/queue").await;
    assert!(
        q["queue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["target"] != "secret")
    );
}

#[tokio::test]
async fn reload_is_for_administrators_and_tokens_need_to_be_valid() {
    let s = setup();
    let alice = As::user(&s, "alice");
    let root = As::user(&s, "root");
    let (st, v) = alice.post("/config/reload").await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    assert_eq!(root.post("/config/reload").await.0, 200);
    assert_eq!(
        As {
            s: &s,
            token: s.token.clone()
        }
        .post("/config/reload")
        .await
        .0,
        200
    );
    let nobody = As {
        s: &s,
        token: "baton_0000".into(),
    };
    assert_eq!(nobody.get("/tasks").await.0, 401);
    let resp = s.http.get(s.url("/tasks")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // A token for a user that does not exist cannot be made.
    let out = std::process::Command::new(BIN)
        .args(["token", "create", "--user", "ghost"])
        .args(s.data_args())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named `ghost`"));
}

#[tokio::test]
async fn sessions_cookies_and_csrf() {
    let s = setup();
    let http = no_redirects();
    // Not signed in: pages redirect to the login page, the API answers 401.
    let r = http.get(format!("{}/runs", s.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/runs");

    // Login form: the double-submit cookie is required, the password checked.
    let page = http.get(format!("{}/login", s.base)).send().await.unwrap();
    let (login_csrf, _) = set_cookie(&page, "baton_login_csrf").unwrap();
    let body = |csrf: &str, pw: &str| {
        form_encode(&[
            ("csrf", csrf),
            ("next", "/"),
            ("user", "alice"),
            ("password", &long(pw)),
        ])
    };
    let post_login = |cookie: Option<String>, b: String, https: bool| {
        let mut r = http
            .post(format!("{}/login", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b);
        if let Some(c) = cookie {
            r = r.header("cookie", format!("baton_login_csrf={c}"));
        }
        if https {
            r = r.header("x-forwarded-proto", "https");
        }
        r.send()
    };
    let r = post_login(None, body(&login_csrf, "pw-alice"), false)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "login without the CSRF cookie");
    let r = post_login(Some(login_csrf.clone()), body(&login_csrf, "wrong"), false)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(set_cookie(&r, "baton_session").is_none());
    let r = post_login(
        Some(login_csrf.clone()),
        body(&login_csrf, "pw-alice"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let (_, header) = set_cookie(&r, "baton_session").unwrap();
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Lax"),
        "{header}"
    );
    assert!(
        header.contains("Secure"),
        "behind https the cookie is Secure: {header}"
    );
    let r = post_login(
        Some(login_csrf.clone()),
        body(&login_csrf, "pw-alice"),
        false,
    )
    .await
    .unwrap();
    let (session, header) = set_cookie(&r, "baton_session").unwrap();
    assert!(!header.contains("Secure"), "{header}");
    let cookie = format!("baton_session={session}");

    // The API accepts the cookie for reads; writes need the CSRF header.
    let r = http
        .get(s.url("/tasks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let dash = users::page(&s, &cookie, "/").await;
    assert!(
        dash.contains("open") && !dash.contains(">secret<"),
        "{dash}"
    );
    let csrf = csrf_in(&dash);
    let r = http
        .post(s.url("/tasks/open/trigger"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "cookie write without CSRF header");
    let r = http
        .post(s.url("/tasks/open/trigger"))
        .header("cookie", &cookie)
        .header("x-csrf-token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(s.url("/tasks/open/trigger"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // One run per task at a time: let this one end before the form triggers another.
    s.wait_run(id_of(&r.json::<Value>().await.unwrap())).await;

    // UI forms: no or a wrong csrf field is refused; the right one works.
    let form = |fields: String| {
        http.post(format!("{}/trigger/task/open", s.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(fields)
            .send()
    };
    assert_eq!(
        form(form_encode(&[("extra", "who=x")]))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        form(form_encode(&[("csrf", "bad"), ("extra", "who=x")]))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let r = form(form_encode(&[("csrf", &csrf), ("extra", "who=form")]))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let id: i64 = loc.trim_start_matches("/runs/").parse().unwrap();
    s.wait_run(id).await;
    assert!(s.log_text(id, None).await.contains("hi form"));

    // Hidden runs are a 404 page in the UI too, and absent from its lists.
    let secret = id_of(&s.trigger("secret", &[]).await);
    let r = http
        .get(format!("{}/runs/{secret}", s.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let list = users::page(&s, &cookie, "/runs").await;
    assert!(!list.contains(&format!("/runs/{secret}\"")), "{list}");
    for path in ["/trigger/task/secret", "/trigger/pipeline/q"] {
        let r = http
            .get(format!("{}{path}", s.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }

    // Artifacts download, but no path escapes the job's out/ folder (.., symlinks).
    let run = s.run(id).await;
    let job_id = run["jobs"][0]["id"].as_i64().unwrap();
    let art = |p: String| {
        http.get(format!("{}/runs/{id}/artifacts/{job_id}/{p}", s.base))
            .header("cookie", &cookie)
            .send()
    };
    let r = art("sub/a.txt".into()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "artifact\n");
    for bad in [
        "../log",
        "..%2Flog",
        "sub/..%2F..%2Flog",
        "pw",
        "%2Fetc%2Fpasswd",
    ] {
        let r = art(bad.into()).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "artifact path {bad}");
    }

    // Admin-only reload through the UI.
    let r = http
        .post(format!("{}/admin/reload", s.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Logout needs the CSRF secret, then the session is gone.
    let out = |fields: String| {
        http.post(format!("{}/logout", s.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(fields)
            .send()
    };
    assert_eq!(out(String::new()).await.unwrap().status().as_u16(), 403);
    assert_eq!(
        out(form_encode(&[("csrf", &csrf)]))
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    let r = http
        .get(s.url("/tasks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn users_manage_their_own_tokens() {
    let s = setup();
    let alice_session = login(&s, "alice", "pw-alice").await;
    let eve_token = user_token(&s, "eve");
    let http = no_redirects();
    let cookie = format!("baton_session={alice_session}");
    let me = users::page(&s, &cookie, "/me").await;
    let csrf = csrf_in(&me);
    let page = http
        .post(format!("{}/me/tokens", s.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[("csrf", &csrf), ("name", "laptop")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let i = page
        .find("<code id=\"new-token\">")
        .expect("new token shown")
        + 21;
    let token = page[i..i + page[i..].find('<').unwrap()].to_owned();
    let alice = As {
        s: &s,
        token: token.clone(),
    };
    assert_eq!(names(&alice.get("/tasks").await.1, "tasks"), ["open"]);
    // Eve's token id cannot be revoked by alice.
    let eve = As {
        s: &s,
        token: eve_token,
    };
    assert_eq!(eve.get("/tasks").await.0, 200);
    let revoke = |id: &str| {
        http.post(format!("{}/me/tokens/{id}/revoke", s.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&[("csrf", &csrf)]))
            .send()
    };
    let ids: Vec<String> = page
        .match_indices("/me/tokens/")
        .map(|(i, _)| page[i + 11..].split('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{page}");
    // Eve's token was made before alice's: a lower id, not alice's to revoke.
    let mine: i64 = ids[0].parse().unwrap();
    for other in 1..mine {
        assert_eq!(
            revoke(&other.to_string()).await.unwrap().status().as_u16(),
            404
        );
    }
    assert_eq!(eve.get("/tasks").await.0, 200);
    assert_eq!(revoke(&ids[0]).await.unwrap().status().as_u16(), 303);
    assert_eq!(alice.get("/tasks").await.0, 401);
}

#[tokio::test]
async fn administrators_enable_and_disable_tasks_at_runtime() {
    let mut s = setup();
    let alice = As::user(&s, "alice");
    let root = As::user(&s, "root");
    let enabled = |v: Value| json!({ "enabled": v });
    // Users may not; a hidden task stays a 404 for them.
    let (st, _) = alice
        .req("POST", "/tasks/open/enabled", Some(enabled(json!(false))))
        .await;
    assert_eq!(st, 403);
    let (st, _) = alice
        .req("POST", "/tasks/secret/enabled", Some(enabled(json!(false))))
        .await;
    assert_eq!(st, 404);
    let (st, v) = root
        .req("POST", "/tasks/open/enabled", Some(enabled(json!(false))))
        .await;
    assert_eq!((st, &v["enabled"]), (200, &json!(false)), "{v}");
    let (st, v) = alice.post("/tasks/open/trigger").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("disabled")),
        "{v}"
    );
    let tasks = alice.get("/tasks").await.1;
    assert_eq!(tasks["tasks"][0]["enabled"], false);
    drop(alice);
    drop(root);
    // The override is durable: it survives a restart and a reload.
    s.restart();
    // Pooled connections went with the old process.
    s.http = reqwest::Client::new();
    let alice = As::user(&s, "alice");
    let root = As::user(&s, "root");
    assert_eq!(root.post("/config/reload").await.0, 200);
    assert_eq!(alice.post("/tasks/open/trigger").await.0, 409);
    // null follows the config again.
    let (st, v) = root
        .req("POST", "/tasks/open/enabled", Some(enabled(Value::Null)))
        .await;
    assert_eq!((st, &v["enabled"]), (200, &json!(true)), "{v}");
    let (st, v) = alice.post("/tasks/open/trigger").await;
    assert_eq!(st, 201, "{v}");
    s.wait_run(id_of(&v)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_enable_and_disable_pipelines_at_runtime() {
    let mut s = setup();
    let alice = As {
        s: &s,
        token: user_token(&s, "alice"),
    };
    let root = As {
        s: &s,
        token: user_token(&s, "root"),
    };
    let enabled = |v: Value| json!({ "enabled": v });
    // Users may not; a hidden pipeline stays a 404 for them, and a task's name is no
    // pipeline's.
    let (st, v) = alice
        .req("POST", "/pipelines/p/enabled", Some(enabled(json!(false))))
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (st, v) = alice
        .req("POST", "/pipelines/q/enabled", Some(enabled(json!(false))))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("unknown_target"))
    );
    let (st, _) = root
        .req(
            "POST",
            "/pipelines/open/enabled",
            Some(enabled(json!(false))),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = root
        .req(
            "POST",
            "/pipelines/p/enabled",
            Some(json!({"enabled": "no"})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, v) = root
        .req("POST", "/pipelines/p/enabled", Some(enabled(json!(false))))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"pipeline": "p", "enabled": false}));
    let (st, v) = alice.post("/pipelines/p/trigger").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("disabled")),
        "{v}"
    );
    let pipelines = alice.get("/pipelines").await.1;
    assert_eq!(pipelines["pipelines"][0]["enabled"], false, "{pipelines}");
    // The task of the same shape is untouched.
    assert_eq!(alice.get("/tasks").await.1["tasks"][0]["enabled"], true);
    // Who did it is in the server's log.
    assert!(
        s.stderr().contains("pipeline p disabled by root"),
        "{}",
        s.stderr()
    );
    drop(alice);
    drop(root);
    // The override is durable: it survives a restart and a reload.
    s.restart();
    s.http = reqwest::Client::new();
    let alice = As {
        s: &s,
        token: user_token(&s, "alice"),
    };
    let root = As {
        s: &s,
        token: user_token(&s, "root"),
    };
    assert_eq!(root.post("/config/reload").await.0, 200);
    assert_eq!(alice.post("/pipelines/p/trigger").await.0, 409);
    // null follows the config again.
    let (st, v) = root
        .req("POST", "/pipelines/p/enabled", Some(enabled(Value::Null)))
        .await;
    assert_eq!((st, &v["enabled"]), (200, &json!(true)), "{v}");
    let (st, v) = alice.post("/pipelines/p/trigger").await;
    assert_eq!(st, 201, "{v}");
    s.wait_run(id_of(&v)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_tell_each_user_only_about_runs_they_may_see() {
    let s = setup();
    // root (an administrator) may see `secret`; alice may see `open` only.
    let mut root = Events::open(&s, &user_token(&s, "root"), "root").await;
    let mut alice = Events::open(&s, &user_token(&s, "alice"), "alice").await;

    let hidden = id_of(&s.trigger("secret", &[]).await);
    s.wait_run(hidden).await;
    let visible = id_of(&s.trigger("open", &[]).await);
    s.wait_run(visible).await;

    // alice hears of her run, and nothing about the hidden one came before it.
    alice.until_runs(&[visible], &[visible]).await;
    // root hears of both.
    root.until_runs(&[hidden, visible], &[hidden, visible])
        .await;
}
